#!/bin/sh
# Prepares berth-runtime's build in DIR and prints the go.mod to build it
# with (`go build -modfile=$(scripts/runtime-overlay.sh DIR) -tags
# seccomp,berthseccompcache ./cmd/berth-runtime`): a copy of runc's module
# in DIR/runc where libcontainer/seccomp loads seccomp programs compiled
# ahead of time (cmd/berth-runtime/_overlay), a copy of the cgroups module
# in DIR/cgroups with a working fast path to the cgroup root and the v1
# hierarchies found with listmount/statmount, and DIR/runtime.mod, the
# repo's go.mod with both replaced by those copies. The repo's own go.mod is
# untouched: everything else builds against the stock modules.
set -eu
dir=$1
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
runc=$(cd "$root" && go list -m -f '{{.Dir}}' github.com/opencontainers/runc)
ov=$root/cmd/berth-runtime/_overlay
rm -rf "$dir/runc"
cp -R "$runc" "$dir/runc"
chmod -R u+w "$dir/runc"
sc=$dir/runc/libcontainer/seccomp
cp "$ov/seccomp_linux.go" "$sc/seccomp_linux.go"
cp "$ov/seccomp_cache_linux.go" "$sc/berth_cache_linux.go"
cp "$ov/patchbpf_cache_linux.go" "$sc/patchbpf/berth_cache_linux.go"
# configs.Seccomp carries the compiled program in the container's config
# (state.json), so an exec's init, which already sees only the container's
# filesystem when its Go code starts, gets it over the init pipe.
cfg=$dir/runc/libcontainer/configs/config.go
sed -i '/^\tListenerMetadata string .*json:"listener_metadata,omitempty"`$/a\
\tBerthProgram []byte `json:"berth_program,omitempty"` // compiled by berth-runtime' "$cfg"
grep -q 'BerthProgram' "$cfg" || { echo "runtime-overlay: could not patch $cfg" >&2; exit 1; }
# cgroups' fs/paths.go with a fast path to the cgroup root that works on a
# v1 hybrid host (see the file's header): no mountinfo parse per create.
cgver=$(cd "$root" && go list -m -f '{{.Version}}' github.com/opencontainers/cgroups)
[ "$cgver" = v0.1.0 ] || { echo "runtime-overlay: cgroups_fs_paths.go is v0.1.0's, go.mod has $cgver: update it" >&2; exit 1; }
# It also finds the cgroup v1 hierarchies below /sys/fs/cgroup with
# listmount/statmount instead of reading the whole mountinfo, which grows
# with every running container (cmd/berth-runtime/_overlay/cgroup_mounts_linux.go).
cg=$(cd "$root" && go list -m -f '{{.Dir}}' github.com/opencontainers/cgroups)
rm -rf "$dir/cgroups"
cp -R "$cg" "$dir/cgroups"
chmod -R u+w "$dir/cgroups"
cp "$ov/cgroups_fs_paths.go" "$dir/cgroups/fs/paths.go"
cp "$ov/cgroup_mounts_linux.go" "$dir/cgroups/berth_mounts_linux.go"
mkdir -p "$dir/cgroups/internal/berthmountlist"
cp "$root/internal/mountlist/mountlist_linux.go" "$dir/cgroups/internal/berthmountlist/mountlist_linux.go"
cp "$ov/cgroup_mounts_linux_test.go" "$dir/cgroups/berth_mounts_linux_test.go"
v1=$dir/cgroups/v1_utils.go
sed -i 's/cgroupMountinfo, readMountinfoErr = mountinfo.GetMounts(/cgroupMountinfo, readMountinfoErr = berthGetMounts(/' "$v1"
grep -q 'berthGetMounts(' "$v1" || { echo "runtime-overlay: could not patch $v1" >&2; exit 1; }
cp "$root/go.mod" "$dir/runtime.mod"
cp "$root/go.sum" "$dir/runtime.sum"
printf '\nreplace github.com/opencontainers/runc => %s\n' "$dir/runc" >> "$dir/runtime.mod"
printf 'replace github.com/opencontainers/cgroups => %s\n' "$dir/cgroups" >> "$dir/runtime.mod"
echo "$dir/runtime.mod"
