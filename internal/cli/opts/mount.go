package opts

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/mount"
)

// MountOpt is the repeatable --mount flag in docker's CSV syntax
// ("type=bind,source=/src,target=/dst,readonly").
type MountOpt struct {
	values []mount.Mount
}

// Set parses one mount specification.
func (m *MountOpt) Set(value string) error {
	mnt, err := ParseMount(value)
	if err != nil {
		return err
	}
	m.values = append(m.values, mnt)
	return nil
}

// ParseMount parses one --mount specification. The type defaults to
// volume; a relative "./src" source is made absolute, as docker does.
func ParseMount(value string) (mount.Mount, error) {
	r := csv.NewReader(strings.NewReader(value))
	fields, err := r.Read()
	if err != nil {
		return mount.Mount{}, err
	}
	mnt := mount.Mount{Type: mount.TypeVolume}
	volumeOptions := func() *mount.VolumeOptions {
		if mnt.VolumeOptions == nil {
			mnt.VolumeOptions = &mount.VolumeOptions{Labels: map[string]string{}}
		}
		if mnt.VolumeOptions.DriverConfig == nil {
			mnt.VolumeOptions.DriverConfig = &mount.Driver{}
		}
		return mnt.VolumeOptions
	}
	bindOptions := func() *mount.BindOptions {
		if mnt.BindOptions == nil {
			mnt.BindOptions = &mount.BindOptions{}
		}
		return mnt.BindOptions
	}
	tmpfsOptions := func() *mount.TmpfsOptions {
		if mnt.TmpfsOptions == nil {
			mnt.TmpfsOptions = &mount.TmpfsOptions{}
		}
		return mnt.TmpfsOptions
	}
	imageOptions := func() *mount.ImageOptions {
		if mnt.ImageOptions == nil {
			mnt.ImageOptions = &mount.ImageOptions{}
		}
		return mnt.ImageOptions
	}
	setOnMap := func(target map[string]string, v string) {
		k, val, _ := strings.Cut(v, "=")
		if k != "" {
			target[k] = val
		}
	}
	for _, field := range fields {
		key, val, ok := strings.Cut(field, "=")
		key = strings.ToLower(key)
		if !ok {
			switch key {
			case "readonly", "ro":
				mnt.ReadOnly = true
				continue
			case "volume-nocopy":
				volumeOptions().NoCopy = true
				continue
			case "bind-nonrecursive":
				bindOptions().NonRecursive = true
				continue
			default:
				return mount.Mount{}, fmt.Errorf("invalid field '%s' must be a key=value pair", field)
			}
		}
		switch key {
		case "type":
			mnt.Type = mount.Type(strings.ToLower(val))
		case "source", "src":
			mnt.Source = val
			if strings.HasPrefix(val, "."+string(filepath.Separator)) || val == "." {
				if abs, err := filepath.Abs(val); err == nil {
					mnt.Source = abs
				}
			}
		case "target", "dst", "destination":
			mnt.Target = val
		case "readonly", "ro":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return mount.Mount{}, fmt.Errorf("invalid value for %s: %s", key, val)
			}
			mnt.ReadOnly = b
		case "consistency":
			mnt.Consistency = mount.Consistency(strings.ToLower(val))
		case "bind-propagation":
			bindOptions().Propagation = mount.Propagation(strings.ToLower(val))
		case "bind-nonrecursive":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return mount.Mount{}, fmt.Errorf("invalid value for %s: %s", key, val)
			}
			bindOptions().NonRecursive = b
		case "bind-recursive":
			switch val {
			case "enabled":
			case "disabled":
				bindOptions().NonRecursive = true
			case "writable":
				bindOptions().ReadOnlyNonRecursive = true
			case "readonly":
				bindOptions().ReadOnlyForceRecursive = true
			default:
				return mount.Mount{}, fmt.Errorf("invalid value for %s: %s (must be \"enabled\", \"disabled\", \"writable\", or \"readonly\")", key, val)
			}
		case "bind-create-mountpoint":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return mount.Mount{}, fmt.Errorf("invalid value for %s: %s", key, val)
			}
			bindOptions().CreateMountpoint = b
		case "volume-subpath":
			volumeOptions().Subpath = val
		case "volume-nocopy":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return mount.Mount{}, fmt.Errorf("invalid value for volume-nocopy: %s", val)
			}
			volumeOptions().NoCopy = b
		case "volume-label":
			setOnMap(volumeOptions().Labels, val)
		case "volume-driver":
			volumeOptions().DriverConfig.Name = val
		case "volume-opt":
			vo := volumeOptions()
			if vo.DriverConfig.Options == nil {
				vo.DriverConfig.Options = map[string]string{}
			}
			setOnMap(vo.DriverConfig.Options, val)
		case "image-subpath":
			imageOptions().Subpath = val
		case "tmpfs-size":
			n, err := units.RAMInBytes(val)
			if err != nil {
				return mount.Mount{}, fmt.Errorf("invalid value for %s: %s", key, val)
			}
			tmpfsOptions().SizeBytes = n
		case "tmpfs-mode":
			n, err := strconv.ParseUint(val, 8, 32)
			if err != nil {
				return mount.Mount{}, fmt.Errorf("invalid value for %s: %s", key, val)
			}
			tmpfsOptions().Mode = os.FileMode(n)
		default:
			return mount.Mount{}, fmt.Errorf("unexpected key '%s' in '%s'", key, field)
		}
	}
	if mnt.Type == "" {
		return mount.Mount{}, errors.New("type is required")
	}
	if mnt.Target == "" {
		return mount.Mount{}, errors.New("target is required")
	}
	if mnt.VolumeOptions != nil && mnt.Type != mount.TypeVolume {
		return mount.Mount{}, fmt.Errorf("cannot mix 'volume-*' options with mount type '%s'", mnt.Type)
	}
	if mnt.ImageOptions != nil && mnt.Type != mount.TypeImage {
		return mount.Mount{}, fmt.Errorf("cannot mix 'image-*' options with mount type '%s'", mnt.Type)
	}
	if mnt.BindOptions != nil && mnt.Type != mount.TypeBind {
		return mount.Mount{}, fmt.Errorf("cannot mix 'bind-*' options with mount type '%s'", mnt.Type)
	}
	if mnt.TmpfsOptions != nil && mnt.Type != mount.TypeTmpfs {
		return mount.Mount{}, fmt.Errorf("cannot mix 'tmpfs-*' options with mount type '%s'", mnt.Type)
	}
	if b := mnt.BindOptions; b != nil {
		if b.ReadOnlyNonRecursive && !mnt.ReadOnly {
			return mount.Mount{}, errors.New("option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction")
		}
		if b.ReadOnlyForceRecursive {
			if !mnt.ReadOnly {
				return mount.Mount{}, errors.New("option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction")
			}
			if b.Propagation != mount.PropagationRPrivate {
				return mount.Mount{}, errors.New("option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be specified in conjunction")
			}
		}
	}
	return mnt, nil
}

// String renders the mounts the way pflag shows defaults.
func (m *MountOpt) String() string {
	out := make([]string, 0, len(m.values))
	for _, v := range m.values {
		out = append(out, fmt.Sprintf("%s %s %s", v.Type, v.Source, v.Target))
	}
	return strings.Join(out, ", ")
}

// Type is the value's name in help output.
func (m *MountOpt) Type() string { return "mount" }

// Value returns the parsed mounts.
func (m *MountOpt) Value() []mount.Mount { return m.values }

// NetworkAttachment is one --network value: a network to connect to and,
// in the long syntax ("name=n,alias=a,ip=…"), the endpoint's settings.
type NetworkAttachment struct {
	Target       string
	Aliases      []string
	DriverOpts   map[string]string
	Links        []string
	IPv4Address  netip.Addr
	IPv6Address  netip.Addr
	LinkLocalIPs []netip.Addr
	MacAddress   string
	GwPriority   int
}

// NetworkOpt is the repeatable --network/--net flag.
type NetworkOpt struct {
	options []NetworkAttachment
}

var longNetworkSyntax = regexp.MustCompile(`\w+=\w+(,\w+=\w+)*`)

// Set parses a network name or docker's long syntax.
func (n *NetworkOpt) Set(value string) error {
	a, err := ParseNetworkAttachment(value)
	if err != nil {
		return err
	}
	n.options = append(n.options, a)
	return nil
}

// ParseNetworkAttachment parses one --network value.
func ParseNetworkAttachment(value string) (NetworkAttachment, error) {
	if !longNetworkSyntax.MatchString(value) {
		return NetworkAttachment{Target: value}, nil
	}
	r := csv.NewReader(strings.NewReader(value))
	fields, err := r.Read()
	if err != nil {
		return NetworkAttachment{}, err
	}
	a := NetworkAttachment{Aliases: []string{}}
	for _, field := range fields {
		key, val, ok := strings.Cut(strings.ToLower(field), "=")
		if !ok || key == "" {
			return NetworkAttachment{}, fmt.Errorf("invalid field %s", field)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "name":
			a.Target = val
		case "alias":
			a.Aliases = append(a.Aliases, val)
		case "ip":
			ip, err := netip.ParseAddr(val)
			if err != nil {
				return NetworkAttachment{}, fmt.Errorf("invalid IPv4 address: %w", err)
			}
			a.IPv4Address = ip
		case "ip6":
			ip, err := netip.ParseAddr(val)
			if err != nil {
				return NetworkAttachment{}, fmt.Errorf("invalid IPv6 address: %w", err)
			}
			a.IPv6Address = ip
		case "mac-address":
			a.MacAddress = val
		case "link-local-ip":
			ip, err := netip.ParseAddr(val)
			if err != nil {
				return NetworkAttachment{}, fmt.Errorf("invalid link-local IP address: %w", err)
			}
			a.LinkLocalIPs = append(a.LinkLocalIPs, ip)
		case "driver-opt":
			k, v, ok := strings.Cut(val, "=")
			if !ok || k == "" {
				return NetworkAttachment{}, errors.New("invalid key value pair format in driver options")
			}
			if a.DriverOpts == nil {
				a.DriverOpts = map[string]string{}
			}
			a.DriverOpts[strings.TrimSpace(strings.ToLower(k))] = strings.TrimSpace(strings.ToLower(v))
		case "gw-priority":
			p, err := strconv.Atoi(val)
			if err != nil {
				return NetworkAttachment{}, fmt.Errorf("invalid gw-priority: %w", err)
			}
			a.GwPriority = p
		default:
			return NetworkAttachment{}, errors.New("invalid field key " + key)
		}
	}
	if a.Target == "" {
		return NetworkAttachment{}, errors.New("network name/id is not specified")
	}
	return a, nil
}

// String renders the networks the way pflag shows defaults.
func (n *NetworkOpt) String() string { return "" }

// Type is the value's name in help output.
func (n *NetworkOpt) Type() string { return "network" }

// Value returns the parsed attachments in order.
func (n *NetworkOpt) Value() []NetworkAttachment { return n.options }

// NetworkMode is the container's network mode: the first network given,
// or "default".
func (n *NetworkOpt) NetworkMode() string {
	if len(n.options) > 0 {
		return n.options[0].Target
	}
	return "default"
}
