package opts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/moby/moby/api/types/container"
)

// ErrBadKey is returned for a variable name that cannot be valid in an
// env or label file.
type ErrBadKey struct{ msg string }

func (e ErrBadKey) Error() string { return "poorly formatted environment: " + e.msg }

// ParseKeyValueFile reads docker's env-file format from r: one KEY=VALUE a
// line, '#' comments and blank lines skipped, values passed through
// untouched. A bare KEY takes its value from lookup when lookup knows it,
// and is dropped otherwise. name is used in error messages.
func ParseKeyValueFile(r io.Reader, name string, lookup func(string) (string, bool)) ([]string, error) {
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	utf8bom := []byte{0xEF, 0xBB, 0xBF}
	for n := 1; sc.Scan(); n++ {
		b := sc.Bytes()
		if !utf8.Valid(b) {
			return nil, fmt.Errorf("env file %s contains invalid utf8 bytes at line %d: %v", name, n, b)
		}
		if n == 1 {
			b = bytes.TrimPrefix(b, utf8bom)
		}
		line := strings.TrimLeftFunc(string(b), unicode.IsSpace)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		variable, value, hasValue := strings.Cut(line, "=")
		variable = strings.TrimLeft(variable, whiteSpaces)
		if strings.ContainsAny(variable, whiteSpaces) {
			return nil, ErrBadKey{fmt.Sprintf("variable '%s' contains whitespaces", variable)}
		}
		if variable == "" {
			return nil, ErrBadKey{fmt.Sprintf("no variable name on line '%s'", line)}
		}
		if hasValue {
			lines = append(lines, variable+"="+value)
			continue
		}
		if lookup != nil {
			if v, ok := lookup(strings.TrimSpace(variable)); ok {
				lines = append(lines, strings.TrimSpace(variable)+"="+v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return lines, nil
}

// ReadKVStrings reads label files (a bare key is dropped, as docker does)
// and appends override, whose values win over the files'.
func ReadKVStrings(files []string, override []string) ([]string, error) {
	return readKV(files, override, nil)
}

// ReadKVEnvStrings is ReadKVStrings for env files: a bare key takes its
// value from lookup (the CLI's environment).
func ReadKVEnvStrings(files []string, override []string, lookup func(string) (string, bool)) ([]string, error) {
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	return readKV(files, override, lookup)
}

func readKV(files, override []string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		lines, err := ParseKeyValueFile(fh, f, lookup)
		fh.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, lines...)
	}
	return append(out, override...), nil
}

// ParseRestartPolicy parses --restart ("no", "always", "on-failure[:N]",
// "unless-stopped"). The name itself is checked by the daemon, as docker
// does, so old and new policies keep working across versions.
func ParseRestartPolicy(policy string) (container.RestartPolicy, error) {
	if policy == "" {
		return container.RestartPolicy{}, nil
	}
	k, v, ok := strings.Cut(policy, ":")
	if ok && k == "" {
		return container.RestartPolicy{}, errors.New("invalid restart policy format: no policy provided before colon")
	}
	p := container.RestartPolicy{Name: container.RestartPolicyMode(k)}
	if v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return container.RestartPolicy{}, errors.New("invalid restart policy format: maximum retry count must be an integer")
		}
		p.MaximumRetryCount = n
	}
	return p, nil
}
