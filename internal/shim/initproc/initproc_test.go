package initproc

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		in    []string
		group bool
		args  []string
		err   bool
	}{
		{in: []string{"--", "sh", "-c", "x"}, args: []string{"sh", "-c", "x"}},
		{in: []string{"sh", "-c", "x"}, args: []string{"sh", "-c", "x"}},
		{in: []string{"-g", "--", "top"}, group: true, args: []string{"top"}},
		{in: []string{"-s", "-vv", "--", "top", "--", "-g"}, args: []string{"top", "--", "-g"}},
		{in: []string{"--", "-weird-name"}, args: []string{"-weird-name"}},
		{in: []string{"--"}, err: true},
		{in: nil, err: true},
		{in: []string{"-x", "--", "top"}, err: true},
	} {
		o, err := ParseArgs(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseArgs(%q) error = %v", tc.in, err)
			continue
		}
		if !tc.err && (o.Group != tc.group || !reflect.DeepEqual(o.Args, tc.args)) {
			t.Errorf("ParseArgs(%q) = %+v", tc.in, o)
		}
	}
}

func TestLookPathAndCodes(t *testing.T) {
	t.Setenv("PATH", "/nonexistent:/bin:/usr/bin")
	if p, err := lookPath("sh"); err != nil || p == "" {
		t.Errorf("lookPath(sh) = %q, %v", p, err)
	}
	_, err := lookPath("no-such-command-anywhere")
	if err == nil || execErrorCode(err) != 127 {
		t.Errorf("missing command: %v (code %d)", err, execErrorCode(err))
	}
	dir := t.TempDir()
	if _, err := lookPath(dir); err == nil || execErrorCode(err) != 126 {
		t.Errorf("a directory: %v", err)
	}
	if execErrorCode(os.ErrPermission) != 126 || execErrorCode(errors.New("exec format error")) != 126 {
		t.Error("not executable must give 126")
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("--\x00sh\x00-c\x00x")
	f.Add("-g\x00-v\x00top")
	f.Fuzz(func(t *testing.T, joined string) {
		var args []string
		start := 0
		for i := 0; i <= len(joined); i++ {
			if i == len(joined) || joined[i] == 0 {
				args = append(args, joined[start:i])
				start = i + 1
			}
		}
		o, err := ParseArgs(args)
		if err == nil && len(o.Args) == 0 {
			t.Fatalf("ParseArgs(%q) gave no command", args)
		}
	})
}
