#!/bin/sh
# berth quick start (run as root on Linux, after `make build`):
#  1. starts `berth daemon` in the background unless one already answers;
#  2. gets a small image in without any network: a busybox rootfs built from
#     Debian's busybox-static, imported as busybox:latest;
#  3. runs a container that says hello.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
HOST=${BERTH_HOST:-unix:///run/berth/berth.sock}
export BERTH_HOST="$HOST"
berth="$BIN/berth"

if [ "$(id -u)" != 0 ]; then
	echo "quickstart: run as root (containers need namespaces, mounts and cgroups)" >&2
	exit 1
fi

if ! "$berth" version >/dev/null 2>&1; then
	echo "quickstart: starting berth daemon (log: /var/log/berth.log)"
	nohup "$berth" daemon -H "$HOST" >>/var/log/berth.log 2>&1 &
	i=0
	until "$berth" version >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			echo "quickstart: the daemon did not come up; see /var/log/berth.log" >&2
			exit 1
		fi
		sleep 0.1
	done
fi

if ! "$berth" image inspect busybox:latest >/dev/null 2>&1; then
	if [ ! -x /bin/busybox ]; then
		echo "quickstart: installing Debian's busybox-static"
		apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
	fi
	echo "quickstart: importing a busybox rootfs as busybox:latest"
	rootfs=$(mktemp -d)
	trap 'rm -rf "$rootfs"' EXIT
	mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
	chmod 1777 "$rootfs/tmp"
	cp /bin/busybox "$rootfs/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
	tar -C "$rootfs" -c . | "$berth" import -c 'CMD ["sh"]' - busybox:latest
	# Now, not at exit: the exec below replaces this shell, traps and all.
	rm -rf "$rootfs"
	trap - EXIT
fi

exec "$berth" run --rm busybox echo "Hello from a berth container!"
