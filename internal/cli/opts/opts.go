// Package opts holds the pflag value types and small parsers behind the
// berth CLI's flags. They mirror the docker CLI's own (same syntax, same
// error messages), so that a Docker user's command lines and scripts keep
// working unchanged.
package opts

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/client"
)

// ValidatorFunc checks (and may normalise) one flag value.
type ValidatorFunc func(val string) (string, error)

// ListOpts is a repeatable string flag whose values are checked one by one
// as they are set.
type ListOpts struct {
	values    *[]string
	validator ValidatorFunc
}

// NewListOpts returns an empty ListOpts that validates values with
// validator (nil accepts anything).
func NewListOpts(validator ValidatorFunc) ListOpts {
	var values []string
	return ListOpts{values: &values, validator: validator}
}

// String renders the values the way pflag shows defaults.
func (o *ListOpts) String() string {
	if len(*o.values) == 0 {
		return ""
	}
	return fmt.Sprintf("%v", *o.values)
}

// Set validates value and appends it.
func (o *ListOpts) Set(value string) error {
	if o.validator != nil {
		v, err := o.validator(value)
		if err != nil {
			return err
		}
		value = v
	}
	*o.values = append(*o.values, value)
	return nil
}

// Type is the value's name in help output ("list", as docker's).
func (o *ListOpts) Type() string { return "list" }

// GetSlice returns the values in the order they were given.
func (o *ListOpts) GetSlice() []string { return *o.values }

// GetAllOrEmpty returns the values, never nil (the API distinguishes an
// empty list from a missing one for DNS settings).
func (o *ListOpts) GetAllOrEmpty() []string {
	if *o.values == nil {
		return []string{}
	}
	return *o.values
}

// GetMap returns the values as a set.
func (o *ListOpts) GetMap() map[string]struct{} {
	m := make(map[string]struct{}, len(*o.values))
	for _, v := range *o.values {
		m[v] = struct{}{}
	}
	return m
}

// Get reports whether key is one of the values.
func (o *ListOpts) Get(key string) bool {
	for _, v := range *o.values {
		if v == key {
			return true
		}
	}
	return false
}

// Len is the number of values.
func (o *ListOpts) Len() int { return len(*o.values) }

// MapOpts is a repeatable key=value flag collected into a map.
type MapOpts struct {
	values    map[string]string
	validator ValidatorFunc
}

// NewMapOpts returns an empty MapOpts that validates values with validator.
func NewMapOpts(validator ValidatorFunc) *MapOpts {
	return &MapOpts{values: map[string]string{}, validator: validator}
}

// Set validates value and stores it, split at the first '='.
func (o *MapOpts) Set(value string) error {
	if o.validator != nil {
		v, err := o.validator(value)
		if err != nil {
			return err
		}
		value = v
	}
	k, v, _ := strings.Cut(value, "=")
	o.values[k] = v
	return nil
}

// GetAll returns the collected map.
func (o *MapOpts) GetAll() map[string]string { return o.values }

// String renders the map the way pflag shows defaults.
func (o *MapOpts) String() string { return fmt.Sprintf("%v", o.values) }

// Type is the value's name in help output.
func (o *MapOpts) Type() string { return "map" }

// NewEnvValidator returns docker's -e/--env validator: "KEY=VALUE" is kept,
// a bare "KEY" takes its value from lookup (the CLI's environment) when it
// is set there.
func NewEnvValidator(lookup func(string) (string, bool)) ValidatorFunc {
	return func(val string) (string, error) {
		k, _, hasValue := strings.Cut(val, "=")
		if k == "" {
			return "", errors.New("invalid environment variable: " + val)
		}
		if hasValue {
			return val, nil
		}
		if lookup != nil {
			if v, ok := lookup(k); ok {
				return k + "=" + v, nil
			}
		}
		return val, nil
	}
}

const whiteSpaces = " \t"

// ValidateLabel accepts "key[=value]" with a non-empty key free of blanks.
func ValidateLabel(value string) (string, error) {
	key, _, _ := strings.Cut(value, "=")
	key = strings.TrimLeft(key, whiteSpaces)
	if key == "" {
		return "", fmt.Errorf("invalid label '%s': empty name", value)
	}
	if strings.ContainsAny(key, whiteSpaces) {
		return "", fmt.Errorf("label '%s' contains whitespaces", key)
	}
	return value, nil
}

// ValidateIPAddress accepts an IPv4 or IPv6 address and returns it in
// canonical form.
func ValidateIPAddress(val string) (string, error) {
	if ip := net.ParseIP(strings.TrimSpace(val)); ip != nil {
		return ip.String(), nil
	}
	return "", fmt.Errorf("IP address is not correctly formatted: %s", val)
}

var (
	alphaRegexp  = regexp.MustCompile(`[a-zA-Z]`)
	domainRegexp = regexp.MustCompile(`^(:?(:?[a-zA-Z0-9]|(:?[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))(:?\.(:?[a-zA-Z0-9]|(:?[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])))*)\.?\s*$`)
)

// ValidateDNSSearch accepts a search domain for resolv.conf ("." means
// none).
func ValidateDNSSearch(val string) (string, error) {
	if val = strings.Trim(val, " "); val == "." {
		return val, nil
	}
	if alphaRegexp.FindString(val) == "" {
		return "", fmt.Errorf("%s is not a valid domain", val)
	}
	ns := domainRegexp.FindSubmatch([]byte(val))
	if len(ns) > 0 && len(ns[1]) < 255 {
		return string(ns[1]), nil
	}
	return "", fmt.Errorf("%s is not a valid domain", val)
}

// HostGatewayName is the special --add-host address the daemon replaces
// with the host's gateway IP.
const HostGatewayName = "host-gateway"

// ValidateExtraHost accepts "host:ip" or "host=ip" (IPv6 may be bracketed)
// and returns the "host:ip" form the API expects.
func ValidateExtraHost(val string) (string, error) {
	k, v, ok := strings.Cut(val, "=")
	if !ok {
		k, v, ok = strings.Cut(val, ":")
	}
	if !ok || k == "" || strings.Contains(k, ":") {
		return "", fmt.Errorf("bad format for add-host: %q", val)
	}
	if v != HostGatewayName {
		if len(v) > 2 && v[0] == '[' && v[len(v)-1] == ']' {
			v = v[1 : len(v)-1]
		}
		if _, err := ValidateIPAddress(v); err != nil {
			return "", fmt.Errorf("invalid IP address in add-host: %q", v)
		}
	}
	return k + ":" + v, nil
}

// ValidateSysctl accepts the namespaced sysctls docker allows in a
// container (kernel IPC settings, net.*, fs.mqueue.*).
func ValidateSysctl(val string) (string, error) {
	allowed := map[string]bool{
		"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
		"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
	}
	k, _, ok := strings.Cut(val, "=")
	if !ok || k == "" {
		return "", fmt.Errorf("sysctl '%s' is not allowed", val)
	}
	if allowed[k] || strings.HasPrefix(k, "net.") || strings.HasPrefix(k, "fs.mqueue.") {
		return val, nil
	}
	return "", fmt.Errorf("sysctl '%s' is not allowed", val)
}

// ValidateLink accepts a legacy link "name[:alias]".
func ValidateLink(val string) (string, error) {
	if val == "" {
		return "", errors.New("empty string specified for links")
	}
	if strings.Count(val, ":") > 1 {
		return "", errors.New("bad format for links: " + val)
	}
	return val, nil
}

// ConvertKVStringsToMap turns ["k=v", "k2"] into {k: v, k2: ""}.
func ConvertKVStringsToMap(values []string) map[string]string {
	result := make(map[string]string, len(values))
	for _, value := range values {
		k, v, _ := strings.Cut(value, "=")
		result[k] = v
	}
	return result
}

// MemBytes is a size flag in docker's human form ("64m", "1g").
type MemBytes int64

// String renders the size; "0" hides the default in help output.
func (m *MemBytes) String() string {
	if *m != 0 {
		return units.BytesSize(float64(*m))
	}
	return "0"
}

// Set parses a human size.
func (m *MemBytes) Set(value string) error {
	v, err := units.RAMInBytes(value)
	*m = MemBytes(v)
	return err
}

// Type is the value's name in help output.
func (m *MemBytes) Type() string { return "bytes" }

// Value is the size in bytes.
func (m *MemBytes) Value() int64 { return int64(*m) }

// MemSwapBytes is like MemBytes but also accepts -1 (unlimited swap).
type MemSwapBytes int64

// String renders the size.
func (m *MemSwapBytes) String() string {
	b := MemBytes(*m)
	return b.String()
}

// Set parses a human size or -1.
func (m *MemSwapBytes) Set(value string) error {
	if value == "-1" {
		*m = -1
		return nil
	}
	v, err := units.RAMInBytes(value)
	*m = MemSwapBytes(v)
	return err
}

// Type is the value's name in help output.
func (m *MemSwapBytes) Type() string { return "bytes" }

// Value is the size in bytes (-1 for unlimited).
func (m *MemSwapBytes) Value() int64 { return int64(*m) }

// NanoCPUs is a fractional CPU count ("0.5") held in billionths of a CPU.
type NanoCPUs int64

// String renders the count with three decimals, or nothing when unset.
func (c *NanoCPUs) String() string {
	if *c == 0 {
		return ""
	}
	return big.NewRat(int64(*c), 1e9).FloatString(3)
}

// Set parses a decimal CPU count.
func (c *NanoCPUs) Set(value string) error {
	n, err := ParseCPUs(value)
	*c = NanoCPUs(n)
	return err
}

// Type is the value's name in help output.
func (c *NanoCPUs) Type() string { return "decimal" }

// Value is the count in billionths of a CPU.
func (c *NanoCPUs) Value() int64 { return int64(*c) }

// ParseCPUs turns a decimal CPU count into nano CPUs.
func ParseCPUs(value string) (int64, error) {
	cpu, ok := new(big.Rat).SetString(value)
	if !ok {
		return 0, fmt.Errorf("failed to parse %v as a rational number", value)
	}
	nano := cpu.Mul(cpu, big.NewRat(1e9, 1))
	if !nano.IsInt() {
		return 0, errors.New("value is too precise")
	}
	if !nano.Num().IsInt64() {
		return 0, fmt.Errorf("value is out of range: %v", value)
	}
	return nano.Num().Int64(), nil
}

// UlimitOpt is the repeatable --ulimit flag ("nofile=1024:2048").
type UlimitOpt struct {
	values map[string]*units.Ulimit
}

// NewUlimitOpt returns an empty UlimitOpt.
func NewUlimitOpt() *UlimitOpt { return &UlimitOpt{values: map[string]*units.Ulimit{}} }

// Set parses one ulimit; a later one for the same resource wins.
func (o *UlimitOpt) Set(val string) error {
	l, err := units.ParseUlimit(val)
	if err != nil {
		return err
	}
	o.values[l.Name] = l
	return nil
}

// String renders the ulimits the way pflag shows defaults.
func (o *UlimitOpt) String() string {
	out := make([]string, 0, len(o.values))
	for _, v := range o.GetList() {
		out = append(out, v.String())
	}
	return fmt.Sprintf("%v", out)
}

// Type is the value's name in help output.
func (o *UlimitOpt) Type() string { return "ulimit" }

// GetList returns the ulimits sorted by resource name.
func (o *UlimitOpt) GetList() []*units.Ulimit {
	out := make([]*units.Ulimit, 0, len(o.values))
	for _, v := range o.values {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// FilterOpt is the repeatable --filter flag ("name=value").
type FilterOpt struct {
	filter client.Filters
}

// NewFilterOpt returns an empty FilterOpt.
func NewFilterOpt() FilterOpt { return FilterOpt{filter: client.Filters{}} }

// Set parses one "name=value" filter; names are case-insensitive, as
// docker's.
func (o *FilterOpt) Set(value string) error {
	if value == "" {
		return nil
	}
	name, val, ok := strings.Cut(value, "=")
	if !ok {
		return errors.New("bad format of filter (expected name=value)")
	}
	o.filter.Add(strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(val))
	return nil
}

// String renders the filters the way pflag shows defaults.
func (o *FilterOpt) String() string {
	if len(o.filter) == 0 {
		return ""
	}
	var parts []string
	for k, vs := range o.filter {
		for v := range vs {
			parts = append(parts, k+"="+v)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Type is the value's name in help output.
func (o *FilterOpt) Type() string { return "filter" }

// Value returns the filters for an API call.
func (o *FilterOpt) Value() client.Filters { return o.filter }

// WeightDeviceOpt is a repeatable "device-path:weight" flag
// (--blkio-weight-device).
type WeightDeviceOpt struct {
	values []*blkiodev.WeightDevice
}

// Set parses one "path:weight" pair (weight 10..1000, or 0).
func (o *WeightDeviceOpt) Set(val string) error {
	k, v, ok := strings.Cut(val, ":")
	if !ok || k == "" {
		return fmt.Errorf("bad format: %s", val)
	}
	if !strings.HasPrefix(k, "/dev/") {
		return fmt.Errorf("bad format for device path: %s", val)
	}
	w, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return fmt.Errorf("invalid weight for device: %s", val)
	}
	if w > 0 && (w < 10 || w > 1000) {
		return fmt.Errorf("invalid weight for device: %s", val)
	}
	o.values = append(o.values, &blkiodev.WeightDevice{Path: k, Weight: uint16(w)})
	return nil
}

// String renders the values the way pflag shows defaults.
func (o *WeightDeviceOpt) String() string {
	out := make([]string, 0, len(o.values))
	for _, v := range o.values {
		out = append(out, v.String())
	}
	return fmt.Sprintf("%v", out)
}

// Type is the value's name in help output.
func (o *WeightDeviceOpt) Type() string { return "list" }

// GetList returns the parsed values.
func (o *WeightDeviceOpt) GetList() []*blkiodev.WeightDevice { return o.values }

// ThrottleDeviceOpt is a repeatable "device-path:rate" flag
// (--device-read-bps with sizes like "1mb", --device-read-iops with
// plain numbers).
type ThrottleDeviceOpt struct {
	values []*blkiodev.ThrottleDevice
	bytes  bool
}

// NewThrottleDeviceOpt returns an empty flag; bytes selects human sizes
// (bps) over plain counts (iops).
func NewThrottleDeviceOpt(bytes bool) ThrottleDeviceOpt { return ThrottleDeviceOpt{bytes: bytes} }

// Set parses one "path:rate" pair.
func (o *ThrottleDeviceOpt) Set(val string) error {
	k, v, ok := strings.Cut(val, ":")
	if !ok || k == "" {
		return fmt.Errorf("bad format: %s", val)
	}
	if !strings.HasPrefix(k, "/dev/") {
		return fmt.Errorf("bad format for device path: %s", val)
	}
	var rate uint64
	if o.bytes {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid rate for device: %s. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb", val)
		}
		rate = uint64(n)
	} else {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid rate for device: %s. The correct format is <device-path>:<number>. Number must be a positive integer", val)
		}
		rate = n
	}
	o.values = append(o.values, &blkiodev.ThrottleDevice{Path: k, Rate: rate})
	return nil
}

// String renders the values the way pflag shows defaults.
func (o *ThrottleDeviceOpt) String() string {
	out := make([]string, 0, len(o.values))
	for _, v := range o.values {
		out = append(out, v.String())
	}
	return fmt.Sprintf("%v", out)
}

// Type is the value's name in help output.
func (o *ThrottleDeviceOpt) Type() string { return "list" }

// GetList returns the parsed values.
func (o *ThrottleDeviceOpt) GetList() []*blkiodev.ThrottleDevice { return o.values }
