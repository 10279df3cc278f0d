// Package formatter renders lists (containers, images, history) the way the
// docker CLI does: its default tables, the "table TEMPLATE" directive,
// "json", and free Go templates with docker's template functions and
// placeholders.
package formatter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"text/template"
	"unicode"
)

// Format keys with special meaning in --format.
const (
	TableFormatKey = "table"
	RawFormatKey   = "raw"
	JSONFormatKey  = "json"

	// DefaultQuietFormat is what -q prints: one ID a line.
	DefaultQuietFormat = "{{.ID}}"
	jsonFormat         = "{{json .}}"
)

// Format is a --format value: "table", "table TEMPLATE", "json" or a Go
// template.
type Format string

// IsTable reports whether the output is a table with a header row.
func (f Format) IsTable() bool { return strings.HasPrefix(string(f), TableFormatKey) }

// IsJSON reports whether each row is printed as a JSON object.
func (f Format) IsJSON() bool { return string(f) == JSONFormatKey }

// Contains reports whether the format mentions sub.
func (f Format) Contains(sub string) bool { return strings.Contains(string(f), sub) }

// basicFunctions are the template functions docker offers in --format.
var basicFunctions = template.FuncMap{
	"json": func(v any) string {
		buf := &bytes.Buffer{}
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		return strings.TrimSpace(buf.String())
	},
	"split": strings.Split,
	"join":  strings.Join,
	"title": titleCase,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"pad":   padWithSpace,
	"truncate": func(s string, n int) string {
		if n < 0 || len(s) < n {
			return s
		}
		return s[:n]
	},
}

// headerFunctions replace basicFunctions when rendering a table header so
// the column names stay intact.
var headerFunctions = template.FuncMap{
	"json":     func(v string) string { return v },
	"split":    func(v string, _ string) string { return v },
	"join":     func(v string, _ string) string { return v },
	"title":    func(v string) string { return v },
	"lower":    func(v string) string { return v },
	"upper":    func(v string) string { return v },
	"truncate": func(v string, _ int) string { return v },
}

func titleCase(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		p := prev
		prev = r
		if unicode.IsSpace(p) || unicode.IsPunct(p) {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}

func padWithSpace(source string, prefix, suffix int) string {
	if source == "" {
		return source
	}
	if prefix < 0 {
		prefix = 0
	}
	if suffix < 0 {
		suffix = 0
	}
	return strings.Repeat(" ", prefix) + source + strings.Repeat(" ", suffix)
}

// NewTemplate returns an empty template with docker's functions.
func NewTemplate(name string) *template.Template {
	return template.New(name).Funcs(basicFunctions)
}

// ParseTemplate parses a user template with docker's functions.
func ParseTemplate(format string) (*template.Template, error) {
	return NewTemplate("").Parse(format)
}

// SubContext is one row's data; FullHeader gives the table's column names.
type SubContext interface {
	FullHeader() any
}

// SubHeaderContext maps placeholders to their column names.
type SubHeaderContext map[string]string

// Label is the column name of a {{.Label "name"}} placeholder: the label's
// own name, as docker prints it.
func (c SubHeaderContext) Label(name string) string {
	n := strings.Split(name, ".")
	return strings.NewReplacer("-", " ", "_", " ").Replace(n[len(n)-1])
}

// HeaderContext carries the column names of a table.
type HeaderContext struct {
	Header SubHeaderContext
}

// FullHeader returns the column names.
func (c *HeaderContext) FullHeader() any { return c.Header }

// Context renders rows in a Format to Output.
type Context struct {
	Output io.Writer
	Format Format
	// Trunc shortens IDs, commands and the like, unless --no-trunc.
	Trunc bool
}

func (c Context) finalFormat() string {
	f := string(c.Format)
	switch {
	case c.Format.IsTable():
		f = f[len(TableFormatKey):]
	case c.Format.IsJSON():
		f = jsonFormat
	}
	f = strings.Trim(f, " ")
	return strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(f)
}

// Write renders each row produced by rows with the context's format; a
// table gets a header from header and aligned columns.
func (c Context) Write(header SubContext, rows func(emit func(SubContext) error) error) error {
	tmpl, err := ParseTemplate(c.finalFormat())
	if err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	var body bytes.Buffer
	err = rows(func(row SubContext) error {
		if err := tmpl.Execute(&body, row); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		body.WriteString("\n")
		return nil
	})
	if err != nil {
		return err
	}
	if !c.Format.IsTable() {
		_, err := body.WriteTo(c.Output)
		return err
	}
	tw := tabwriter.NewWriter(c.Output, 10, 1, 3, ' ', 0)
	var head bytes.Buffer
	if err := tmpl.Funcs(headerFunctions).Execute(&head, header.FullHeader()); err != nil {
		// A header that cannot be rendered (a method call on the header
		// map, say) leaves the header row empty, as docker does.
		head.Reset()
	}
	head.WriteString("\n")
	_, _ = head.WriteTo(tw)
	_, _ = body.WriteTo(tw)
	return tw.Flush()
}

// MarshalJSON renders a row for "json" output: every exported method
// without arguments and with one result becomes a key, as docker's
// formatter does.
func MarshalJSON(x any) ([]byte, error) {
	val := reflect.ValueOf(x)
	if val.Kind() != reflect.Pointer || val.IsNil() || val.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("expected a pointer to a struct, got %T", x)
	}
	typ := val.Type()
	m := map[string]any{}
	for i := 0; i < val.NumMethod(); i++ {
		meth := typ.Method(i)
		fn := val.Method(i)
		name := meth.Name
		if name == "FullHeader" || name == "MarshalJSON" || !unicode.IsUpper(rune(name[0])) {
			continue
		}
		if fn.Type().NumIn() != 0 || fn.Type().NumOut() != 1 {
			continue
		}
		m[name] = fn.Call(nil)[0].Interface()
	}
	return json.Marshal(m)
}

// Ellipsis shortens s to at most maxWidth display columns, ending in "…".
func Ellipsis(s string, maxWidth int) string {
	if maxWidth <= 0 {
		return ""
	}
	rs := []rune(s)
	if len(rs) == 0 {
		return s
	}
	if maxWidth == 1 {
		return string(rs[0])
	}
	width := 0
	for _, r := range rs {
		width += charWidth(r)
	}
	if width <= maxWidth {
		return s
	}
	width = 0
	for i, r := range rs {
		if width+charWidth(r) > maxWidth-1 {
			return string(rs[:i]) + "…"
		}
		width += charWidth(r)
	}
	return s
}

// charWidth is 2 for East Asian wide and full-width characters, else 1.
func charWidth(r rune) int {
	switch {
	case r >= 0x1100 && r <= 0x115F, r >= 0x2E80 && r <= 0x303E, r >= 0x3041 && r <= 0x33FF,
		r >= 0x3400 && r <= 0x4DBF, r >= 0x4E00 && r <= 0x9FFF, r >= 0xA000 && r <= 0xA4CF,
		r >= 0xAC00 && r <= 0xD7A3, r >= 0xF900 && r <= 0xFAFF, r >= 0xFE30 && r <= 0xFE4F,
		r >= 0xFF00 && r <= 0xFF60, r >= 0xFFE0 && r <= 0xFFE6, r >= 0x1F300 && r <= 0x1F64F,
		r >= 0x1F900 && r <= 0x1F9FF, r >= 0x20000 && r <= 0x3FFFD:
		return 2
	}
	return 1
}

// TruncateID shortens an ID ("sha256:" prefix dropped) to 12 characters.
func TruncateID(id string) string {
	if i := strings.IndexRune(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
