package jsonlite

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestMembers(t *testing.T) {
	type kv struct {
		k    string
		kind Kind
		raw  string
	}
	for _, tc := range []struct {
		in   string
		want []kv
		err  bool
	}{
		{in: `{}`},
		{in: ` { "a" : 1 , "b":"x\n" } `, want: []kv{{"a", Number, "1"}, {"b", String, `"x\n"`}}},
		{in: `{"a":[1,{"b":null}],"c":true,"d":false,"e":-1.5e3}`, want: []kv{
			{"a", Array, `[1,{"b":null}]`}, {"c", Bool, "true"}, {"d", Bool, "false"}, {"e", Number, "-1.5e3"},
		}},
		{in: `{"\u0061":0}`, want: []kv{{"a", Number, "0"}}},
		{in: ``, err: true},
		{in: `[]`, err: true},
		{in: `{"a":1,}`, err: true},
		{in: `{"a":01}`, err: true},
		{in: `{"a":1}x`, err: true},
		{in: `{"a":"x}`, err: true},
		{in: `{"a":"\x"}`, err: true},
		{in: "{\"a\":\"\x01\"}", err: true},
		{in: `{"a" 1}`, err: true},
		{in: `{a:1}`, err: true},
		{in: `{"a":tru}`, err: true},
		{in: `{"a":-}`, err: true},
		{in: `{"a":1.}`, err: true},
		{in: `{"a":"\u12"}`, err: true},
	} {
		var got []kv
		err := Members([]byte(tc.in), func(k string, v Value) error {
			got = append(got, kv{k, v.Kind(), string(v.Raw())})
			return nil
		})
		if (err != nil) != tc.err {
			t.Errorf("Members(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && len(got) != len(tc.want) {
			t.Errorf("Members(%q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Members(%q)[%d] = %v, want %v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

func TestDepthLimit(t *testing.T) {
	deep := `{"a":` + string(bytes.Repeat([]byte("["), 100)) + string(bytes.Repeat([]byte("]"), 100)) + `}`
	if err := Members([]byte(deep), func(string, Value) error { return nil }); err == nil {
		t.Error("nesting beyond the limit was accepted")
	}
}

func TestAccessors(t *testing.T) {
	in := `{"s":"h\u00e9\ud83d\ude00\ud800x","n":-42,"b":true,"z":null,"a":["x","y"],"o":{"k":7}}`
	err := Members([]byte(in), func(k string, v Value) error {
		switch k {
		case "s":
			s, err := v.Str()
			if err != nil || s != "hé😀\uFFFDx" {
				t.Errorf("Str = %q, %v", s, err)
			}
			if _, err := v.Int(); err == nil {
				t.Error("Int of a string succeeded")
			}
		case "n":
			if n, err := v.Int(); err != nil || n != -42 {
				t.Errorf("Int = %d, %v", n, err)
			}
		case "b":
			if b, err := v.Bool(); err != nil || !b {
				t.Errorf("Bool = %v, %v", b, err)
			}
		case "z":
			if s, err := v.Str(); err != nil || s != "" {
				t.Errorf("Str of null = %q, %v", s, err)
			}
		case "a":
			var got []string
			if err := v.Each(func(e Value) error { s, err := e.Str(); got = append(got, s); return err }); err != nil || len(got) != 2 {
				t.Errorf("Each = %v, %v", got, err)
			}
		case "o":
			if err := v.Members(func(k string, v Value) error {
				if n, _ := v.Int(); k != "k" || n != 7 {
					t.Errorf("nested member %s=%d", k, n)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriter(t *testing.T) {
	got := NewObject(nil).String("a", "x<y").Int("b", -3).Bool("c", true).Strings("d", []string{"p", "q"}).Raw("e", []byte(`{"f":1}`)).End()
	want := `{"a":"x\u003cy","b":-3,"c":true,"d":["p","q"],"e":{"f":1}}`
	if string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// FuzzString checks strings against encoding/json both ways: what
// AppendString writes is byte for byte what json.Marshal writes, and
// decoding gives what json.Unmarshal gives.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "plain", "a\"b\\c", "\n\r\t\b\f\x00\x1f", "<a href='x'>&amp;</a>", "héllo wörld 😀", "\u2028\u2029", "\xff\xfe bad utf8", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := AppendString(nil, s)
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, want) {
			t.Fatalf("AppendString(%q) = %s, json.Marshal = %s", s, enc, want)
		}
		if b := AppendBytes(nil, []byte(s)); !bytes.Equal(b, enc) {
			t.Fatalf("AppendBytes differs from AppendString: %s vs %s", b, enc)
		}
		obj := append(append([]byte(`{"k":`), enc...), '}')
		var got string
		if err := Members(obj, func(k string, v Value) error {
			var err error
			got, err = v.Str()
			return err
		}); err != nil {
			t.Fatalf("Members(%s): %v", obj, err)
		}
		var ref string
		if err := json.Unmarshal(enc, &ref); err != nil {
			t.Fatal(err)
		}
		if got != ref {
			t.Fatalf("decoded %q, encoding/json decoded %q", got, ref)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
	})
}

// FuzzMembers feeds arbitrary bytes: no panic, never accept what
// encoding/json rejects, and decode strings as encoding/json does.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, `{"log":"x\n","stream":"stdout","time":"2024-05-01T10:00:00Z"}`, `{"a":[1,2,{"b":"\ud83d\ude00"}]}`, `{"a":"\u00"}`, `{"a`, `{"a":1e5,"b":-0.5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var strs []Value
		err := Members(data, func(k string, v Value) error {
			if v.Kind() == String {
				strs = append(strs, v)
			}
			if v.Kind() == Array {
				return v.Each(func(Value) error { return nil })
			}
			if v.Kind() == Object {
				return v.Members(func(string, Value) error { return nil })
			}
			return nil
		})
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		for _, v := range strs {
			got, err := v.Str()
			if err != nil {
				t.Fatalf("Str(%s): %v", v.Raw(), err)
			}
			var ref string
			if err := json.Unmarshal(v.Raw(), &ref); err != nil {
				t.Fatal(err)
			}
			if got != ref {
				t.Fatalf("Str(%s) = %q, encoding/json %q", v.Raw(), got, ref)
			}
		}
	})
}
