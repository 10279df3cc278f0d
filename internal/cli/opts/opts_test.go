package opts

import (
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

func TestParseKeyValueFile(t *testing.T) {
	env := map[string]string{"FROM_ENV": "env-value", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cases := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"A=1\nB=two words\n", []string{"A=1", "B=two words"}, ""},
		{"\ufeffA=1", []string{"A=1"}, ""},
		{"# comment\n\n   \n  A=x", []string{"A=x"}, ""},
		{"FROM_ENV\nEMPTY\nNOT_SET\n", []string{"FROM_ENV=env-value", "EMPTY="}, ""},
		{"A=  spaced value  \n", []string{"A=  spaced value  "}, ""},
		{"A==b\n", []string{"A==b"}, ""},
		{"A B=1\n", nil, "variable 'A B' contains whitespaces"},
		{"=1\n", nil, "no variable name on line '=1'"},
		{"A=\xff\n", nil, "invalid utf8 bytes at line 1"},
	}
	for _, c := range cases {
		got, err := ParseKeyValueFile(strings.NewReader(c.in), "f", lookup)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzParseKeyValueFile(f *testing.F) {
	for _, s := range []string{"A=1\n", "# c\nB\n", "\ufeffX=y", "=", "A B=1", "A=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		lines, err := ParseKeyValueFile(strings.NewReader(in), "fuzz", func(k string) (string, bool) { return "v", true })
		if err != nil {
			return
		}
		for _, l := range lines {
			k, _, ok := strings.Cut(l, "=")
			if !ok || k == "" || strings.ContainsAny(k, " \t") {
				t.Fatalf("bad line %q from %q", l, in)
			}
		}
	})
}

func TestParseRestartPolicy(t *testing.T) {
	cases := []struct {
		in   string
		want container.RestartPolicy
		err  bool
	}{
		{"", container.RestartPolicy{}, false},
		{"no", container.RestartPolicy{Name: "no"}, false},
		{"always", container.RestartPolicy{Name: "always"}, false},
		{"on-failure:5", container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 5}, false},
		{"unless-stopped", container.RestartPolicy{Name: "unless-stopped"}, false},
		// Unknown names are the daemon's to reject, as with docker.
		{"sometimes", container.RestartPolicy{Name: "sometimes"}, false},
		{":3", container.RestartPolicy{}, true},
		{"on-failure:x", container.RestartPolicy{}, true},
	}
	for _, c := range cases {
		got, err := ParseRestartPolicy(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%q: got %+v, %v", c.in, got, err)
		}
	}
}

func FuzzParseRestartPolicy(f *testing.F) {
	for _, s := range []string{"always", "on-failure:3", ":", "a:b:c", "on-failure:99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParseRestartPolicy(in)
		if err == nil && in != "" && !strings.HasPrefix(in, string(p.Name)) {
			t.Fatalf("%q parsed as %+v", in, p)
		}
	})
}

func TestParseMount(t *testing.T) {
	m, err := ParseMount("type=bind,source=/src,target=/dst,readonly,bind-propagation=rshared")
	if err != nil || m.Type != mount.TypeBind || m.Source != "/src" || m.Target != "/dst" || !m.ReadOnly || m.BindOptions.Propagation != "rshared" {
		t.Fatalf("bind: %+v %v", m, err)
	}
	m, err = ParseMount("src=data,dst=/data,volume-label=a=b,volume-driver=local,volume-opt=o=1,volume-nocopy")
	if err != nil || m.Type != mount.TypeVolume || m.Source != "data" || m.VolumeOptions.Labels["a"] != "b" ||
		m.VolumeOptions.DriverConfig.Name != "local" || m.VolumeOptions.DriverConfig.Options["o"] != "1" || !m.VolumeOptions.NoCopy {
		t.Fatalf("volume: %+v %v", m, err)
	}
	m, err = ParseMount(`type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770`)
	if err != nil || m.TmpfsOptions.SizeBytes != 64<<20 || m.TmpfsOptions.Mode != 0o1770 {
		t.Fatalf("tmpfs: %+v %v", m, err)
	}
	for in, want := range map[string]string{
		"type=bind":                              "target is required",
		"type=tmpfs,target=/t,volume-nocopy":     "cannot mix 'volume-*' options with mount type 'tmpfs'",
		"target=/t,bogus=1":                      "unexpected key 'bogus' in 'bogus=1'",
		"target=/t,readonly=maybe":               "invalid value for readonly: maybe",
		"type=bind,target=/t,bind-recursive=odd": "invalid value for bind-recursive",
		"type=tmpfs,target=/t,tmpfs-size=lots":   "invalid value for tmpfs-size: lots",
		"target=/t,justaword":                    "invalid field 'justaword' must be a key=value pair",
		`"unterminated`:                          "",
	} {
		if _, err := ParseMount(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

func FuzzParseMount(f *testing.F) {
	for _, s := range []string{"type=bind,src=/a,dst=/b,ro", "type=tmpfs,dst=/t,tmpfs-size=1m", `"a,b"`, "volume-opt==", "dst=/x,bind-recursive=readonly,readonly"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMount(in)
		if err == nil && m.Target == "" {
			t.Fatalf("%q: accepted without a target: %+v", in, m)
		}
	})
}

func TestParseHost(t *testing.T) {
	cases := map[string]string{
		"":                      "unix:///run/berth/berth.sock",
		"unix:///tmp/b.sock":    "unix:///tmp/b.sock",
		"unix://":               "unix:///run/berth/berth.sock",
		"tcp://1.2.3.4:5":       "tcp://1.2.3.4:5",
		"tcp://1.2.3.4":         "tcp://1.2.3.4:2375",
		"tcp://":                "tcp://localhost:2375",
		"tcp://[::1]":           "tcp://[::1]:2375",
		"host.example:2376":     "tcp://host.example:2376",
		"tcp://h:1/base/":       "tcp://h:1/base",
		"  unix:///padded.sock": "unix:///padded.sock",
	}
	for in, want := range cases {
		if got, err := ParseHost(in, false); err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"udp://x", "ssh://user@host", "tcp://h:", "tcp://u@h:1", "unix://a://b", "tcp://h?x=1"} {
		if got, err := ParseHost(in, false); err == nil {
			t.Errorf("%q accepted as %q", in, got)
		}
	}
}

func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"unix:///x", "tcp://h:1", "h:1", "tcp://[::1]:2", "", "fd://", "tcp://%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseHost(in, false)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "unix://") && !strings.HasPrefix(got, "tcp://") {
			t.Fatalf("%q parsed as %q", in, got)
		}
	})
}

func TestParseNetworkAttachment(t *testing.T) {
	a, err := ParseNetworkAttachment("mynet")
	if err != nil || a.Target != "mynet" {
		t.Fatalf("%+v %v", a, err)
	}
	a, err = ParseNetworkAttachment("name=n1,alias=a1,alias=a2,ip=10.0.0.2,driver-opt=k=v,gw-priority=5")
	if err != nil || a.Target != "n1" || !reflect.DeepEqual(a.Aliases, []string{"a1", "a2"}) || a.IPv4Address.String() != "10.0.0.2" ||
		a.DriverOpts["k"] != "v" || a.GwPriority != 5 {
		t.Fatalf("%+v %v", a, err)
	}
	for _, in := range []string{"alias=a", "name=n,bogus=1", "name=n,ip=notanip", "name=n,driver-opt=x"} {
		if _, err := ParseNetworkAttachment(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func FuzzParseNetworkAttachment(f *testing.F) {
	for _, s := range []string{"bridge", "name=n,alias=a", "name=n,ip=1.2.3.4,ip6=::1", `name="x,y"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := ParseNetworkAttachment(in)
		if err == nil && longNetworkSyntax.MatchString(in) && a.Target == "" {
			t.Fatalf("%q: no target", in)
		}
	})
}

func TestFlagValues(t *testing.T) {
	var m MemBytes
	if err := m.Set("64m"); err != nil || m.Value() != 64<<20 || m.String() != "64MiB" {
		t.Errorf("MemBytes: %v %d %s", err, m.Value(), m.String())
	}
	if err := m.Set("lots"); err == nil || err.Error() != "invalid size: 'lots'" {
		t.Errorf("MemBytes error: %v", err)
	}
	var s MemSwapBytes
	if err := s.Set("-1"); err != nil || s.Value() != -1 {
		t.Errorf("MemSwapBytes: %v %d", err, s.Value())
	}
	var c NanoCPUs
	if err := c.Set("1.5"); err != nil || c.Value() != 1_500_000_000 || c.String() != "1.500" {
		t.Errorf("NanoCPUs: %v %d %s", err, c.Value(), c.String())
	}
	if err := c.Set("0.0000000001"); err == nil || err.Error() != "value is too precise" {
		t.Errorf("NanoCPUs precision: %v", err)
	}
	if err := c.Set("1e30"); err == nil {
		t.Errorf("NanoCPUs overflow accepted")
	}
	u := NewUlimitOpt()
	if err := u.Set("nofile=10:20"); err != nil || u.GetList()[0].Hard != 20 {
		t.Errorf("ulimit: %v", err)
	}
	if err := u.Set("nofile=20:10"); err == nil {
		t.Errorf("soft > hard accepted")
	}
	fo := NewFilterOpt()
	if err := fo.Set("Label = role=a"); err != nil || !fo.Value()["label"]["role=a"] {
		t.Errorf("filter: %v %v", err, fo.Value())
	}
	if err := fo.Set("novalue"); err == nil {
		t.Errorf("filter without = accepted")
	}
	wd := WeightDeviceOpt{}
	if err := wd.Set("/dev/sda:200"); err != nil || wd.GetList()[0].Weight != 200 {
		t.Errorf("weight device: %v", err)
	}
	if err := wd.Set("/dev/sda:5"); err == nil {
		t.Errorf("weight 5 accepted")
	}
	td := NewThrottleDeviceOpt(true)
	if err := td.Set("/dev/sda:1mb"); err != nil || td.GetList()[0].Rate != 1<<20 {
		t.Errorf("throttle: %v %+v", err, td.GetList())
	}
	for in, want := range map[string]string{"h:1.2.3.4": "h:1.2.3.4", "h=::1": "h:::1", "h=[::1]": "h:::1", "h:host-gateway": "h:host-gateway"} {
		if got, err := ValidateExtraHost(in); err != nil || got != want {
			t.Errorf("extra host %q: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"nohost", ":1.2.3.4", "h:notip"} {
		if _, err := ValidateExtraHost(in); err == nil {
			t.Errorf("extra host %q accepted", in)
		}
	}
	if _, err := ValidateSysctl("kernel.domainname=x"); err == nil {
		t.Errorf("non-namespaced sysctl accepted")
	}
	if v, err := ValidateDNSSearch("example.org"); err != nil || v != "example.org" {
		t.Errorf("dns search: %v %v", v, err)
	}
}
