// Package jsonlite reads and writes the few flat JSON objects that
// berth-shim and the json-file log driver exchange, without reflection.
// encoding/json costs a shim, which exists once per container, ~55 KiB of
// memory for its type caches (measured); the log reader also gains speed.
// Only what those formats need is here: objects, arrays, strings,
// integers, booleans and null, parsed strictly, and strings written the
// way encoding/json writes them.
package jsonlite

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Kind is the type of a JSON value.
type Kind byte

// The kinds of JSON values.
const (
	Null Kind = iota
	Bool
	Number
	String
	Array
	Object
)

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 64

// Value is one JSON value, still in its encoded form.
type Value struct {
	raw  []byte
	kind Kind
}

// Kind is the type of v.
func (v Value) Kind() Kind { return v.kind }

// Raw is v's encoded form.
func (v Value) Raw() []byte { return v.raw }

var (
	errSyntax = errors.New("json: syntax error")
	errType   = errors.New("json: value of the wrong type")
	errDepth  = errors.New("json: nesting too deep")
)

// Str decodes a string value (null gives "").
func (v Value) Str() (string, error) {
	b, err := v.Bytes()
	return string(b), err
}

// Bytes decodes a string value into a new slice (null gives nil).
func (v Value) Bytes() ([]byte, error) {
	switch v.kind {
	case Null:
		return nil, nil
	case String:
		return unquote(v.raw)
	}
	return nil, errType
}

// Int decodes an integer value (null gives 0).
func (v Value) Int() (int64, error) {
	switch v.kind {
	case Null:
		return 0, nil
	case Number:
		n, err := strconv.ParseInt(string(v.raw), 10, 64)
		if err != nil {
			return 0, errType
		}
		return n, nil
	}
	return 0, errType
}

// Bool decodes a boolean value (null gives false).
func (v Value) Bool() (bool, error) {
	switch v.kind {
	case Null:
		return false, nil
	case Bool:
		return v.raw[0] == 't', nil
	}
	return false, errType
}

// Each calls fn for each element of an array value (null has none).
func (v Value) Each(fn func(Value) error) error {
	switch v.kind {
	case Null:
		return nil
	case Array:
	default:
		return errType
	}
	s := scanner{data: v.raw}
	s.pos++ // [
	s.skipSpace()
	if s.peek() == ']' {
		return nil
	}
	for {
		e, err := s.value(1)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
		s.skipSpace()
		switch s.next() {
		case ',':
		case ']':
			return nil
		default:
			return errSyntax
		}
	}
}

// Members calls fn for each member of an object value (null has none).
func (v Value) Members(fn func(key string, val Value) error) error {
	switch v.kind {
	case Null:
		return nil
	case Object:
	default:
		return errType
	}
	return members(v.raw, fn)
}

// Members parses data as exactly one JSON object (surrounding whitespace
// allowed) and calls fn for each member, in order.
func Members(data []byte, fn func(key string, val Value) error) error {
	s := scanner{data: data}
	v, err := s.value(0)
	if err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return errSyntax
	}
	if v.kind != Object {
		return errType
	}
	return members(v.raw, fn)
}

// members walks an object already validated by scanner.value.
func members(raw []byte, fn func(string, Value) error) error {
	s := scanner{data: raw}
	s.pos++ // {
	s.skipSpace()
	if s.peek() == '}' {
		return nil
	}
	for {
		s.skipSpace()
		k, err := s.value(1)
		if err != nil {
			return err
		}
		if k.kind != String {
			return errSyntax
		}
		key, err := unquote(k.raw)
		if err != nil {
			return err
		}
		s.skipSpace()
		if s.next() != ':' {
			return errSyntax
		}
		val, err := s.value(1)
		if err != nil {
			return err
		}
		if err := fn(string(key), val); err != nil {
			return err
		}
		s.skipSpace()
		switch s.next() {
		case ',':
		case '}':
			return nil
		default:
			return errSyntax
		}
	}
}

type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) next() byte {
	if s.pos < len(s.data) {
		c := s.data[s.pos]
		s.pos++
		return c
	}
	return 0
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value scans one complete value and returns it.
func (s *scanner) value(depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, errDepth
	}
	s.skipSpace()
	start := s.pos
	var kind Kind
	switch c := s.peek(); {
	case c == '{':
		kind = Object
		if err := s.composite(depth, '}', true); err != nil {
			return Value{}, err
		}
	case c == '[':
		kind = Array
		if err := s.composite(depth, ']', false); err != nil {
			return Value{}, err
		}
	case c == '"':
		kind = String
		if err := s.str(); err != nil {
			return Value{}, err
		}
	case c == '-' || c >= '0' && c <= '9':
		kind = Number
		if err := s.number(); err != nil {
			return Value{}, err
		}
	case c == 't':
		kind = Bool
		if err := s.literal("true"); err != nil {
			return Value{}, err
		}
	case c == 'f':
		kind = Bool
		if err := s.literal("false"); err != nil {
			return Value{}, err
		}
	case c == 'n':
		kind = Null
		if err := s.literal("null"); err != nil {
			return Value{}, err
		}
	default:
		return Value{}, errSyntax
	}
	return Value{raw: s.data[start:s.pos], kind: kind}, nil
}

func (s *scanner) composite(depth int, end byte, object bool) error {
	s.pos++
	s.skipSpace()
	if s.peek() == end {
		s.pos++
		return nil
	}
	for {
		if object {
			s.skipSpace()
			if s.peek() != '"' {
				return errSyntax
			}
			if err := s.str(); err != nil {
				return err
			}
			s.skipSpace()
			if s.next() != ':' {
				return errSyntax
			}
		}
		if _, err := s.value(depth + 1); err != nil {
			return err
		}
		s.skipSpace()
		switch s.next() {
		case ',':
		case end:
			return nil
		default:
			return errSyntax
		}
	}
}

// str scans a string, checking its escapes.
func (s *scanner) str() error {
	s.pos++ // "
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return nil
		case c == '\\':
			if s.pos+1 >= len(s.data) {
				return errSyntax
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) {
					return errSyntax
				}
				for _, h := range s.data[s.pos+2 : s.pos+6] {
					if unhex(h) < 0 {
						return errSyntax
					}
				}
				s.pos += 6
			default:
				return errSyntax
			}
		case c < 0x20:
			return errSyntax
		default:
			s.pos++
		}
	}
	return errSyntax
}

func (s *scanner) number() error {
	start := s.pos
	if s.peek() == '-' {
		s.pos++
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case c >= '1' && c <= '9':
		for c := s.peek(); c >= '0' && c <= '9'; c = s.peek() {
			s.pos++
		}
	default:
		return errSyntax
	}
	if s.peek() == '.' {
		s.pos++
		if c := s.peek(); c < '0' || c > '9' {
			return errSyntax
		}
		for c := s.peek(); c >= '0' && c <= '9'; c = s.peek() {
			s.pos++
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if c := s.peek(); c < '0' || c > '9' {
			return errSyntax
		}
		for c := s.peek(); c >= '0' && c <= '9'; c = s.peek() {
			s.pos++
		}
	}
	if s.pos == start {
		return errSyntax
	}
	return nil
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return errSyntax
	}
	s.pos += len(lit)
	return nil
}

func unhex(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// unquote decodes a scanned string literal as encoding/json does: invalid
// UTF-8 and lone surrogates become U+FFFD.
func unquote(raw []byte) ([]byte, error) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, errSyntax
	}
	raw = raw[1 : len(raw)-1]
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c == '\\' {
			if i+1 >= len(raw) {
				return nil, errSyntax
			}
			switch raw[i+1] {
			case '"', '\\', '/':
				out = append(out, raw[i+1])
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				if i+6 > len(raw) {
					return nil, errSyntax
				}
				r, ok := hex4(raw[i+2:])
				if !ok {
					return nil, errSyntax
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						r2, _ := hex4(raw[i+2:])
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				return nil, errSyntax
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, raw[i:i+size]...)
		}
		i += size
	}
	return out, nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		h := unhex(c)
		if h < 0 {
			return 0, false
		}
		r = r<<4 | h
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string the way encoding/json writes it
// with HTML escaping on (docker's json-file encoder matches it): invalid
// UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped.
func AppendString(dst []byte, s string) []byte {
	return appendString(dst, s, utf8.DecodeRuneInString)
}

// AppendBytes is AppendString for a byte slice.
func AppendBytes(dst, s []byte) []byte {
	return appendString(dst, s, utf8.DecodeRune)
}

func appendString[S string | []byte](dst []byte, s S, decode func(S) (rune, int)) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := decode(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Writer builds one flat JSON object.
type Writer struct {
	buf   []byte
	first bool
}

// NewObject starts an object, appending to dst.
func NewObject(dst []byte) *Writer {
	return &Writer{buf: append(dst, '{'), first: true}
}

func (w *Writer) key(k string) {
	if !w.first {
		w.buf = append(w.buf, ',')
	}
	w.first = false
	w.buf = AppendString(w.buf, k)
	w.buf = append(w.buf, ':')
}

// String adds a string member.
func (w *Writer) String(k, v string) *Writer {
	w.key(k)
	w.buf = AppendString(w.buf, v)
	return w
}

// Int adds an integer member.
func (w *Writer) Int(k string, v int64) *Writer {
	w.key(k)
	w.buf = strconv.AppendInt(w.buf, v, 10)
	return w
}

// Bool adds a boolean member.
func (w *Writer) Bool(k string, v bool) *Writer {
	w.key(k)
	w.buf = strconv.AppendBool(w.buf, v)
	return w
}

// Strings adds an array-of-strings member.
func (w *Writer) Strings(k string, v []string) *Writer {
	w.key(k)
	w.buf = append(w.buf, '[')
	for i, s := range v {
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		w.buf = AppendString(w.buf, s)
	}
	w.buf = append(w.buf, ']')
	return w
}

// Raw adds a member whose value is already encoded JSON.
func (w *Writer) Raw(k string, v []byte) *Writer {
	w.key(k)
	w.buf = append(w.buf, v...)
	return w
}

// End closes the object and returns the buffer.
func (w *Writer) End() []byte {
	return append(w.buf, '}')
}
