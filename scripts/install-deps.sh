#!/bin/sh
# Installs what berth's tests need on a fresh Debian machine, skipping what is
# already there: busybox-static (test images), runc (--runtime runc tests),
# docker-registry (the CNCF registry, a foreign peer for the registry
# interop test), libseccomp-dev (berth-runtime's seccomp filter, built
# with the seccomp tag), iproute2 (ip netns in the daemon-access tests),
# iptables (iptables-nft reads berth's FORWARD accepts back in a network
# test), strace (berth-runtime's test that create parses no mountinfo),
# and staticcheck (from the Go module proxy).
set -eu
need=""
[ -x /bin/busybox ] || need="$need busybox-static"
command -v runc >/dev/null 2>&1 || need="$need runc"
[ -x /usr/bin/docker-registry ] || need="$need docker-registry"
[ -f /usr/include/seccomp.h ] || need="$need libseccomp-dev"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v iptables-nft >/dev/null 2>&1 || need="$need iptables"
command -v strace >/dev/null 2>&1 || need="$need strace"
if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: need root to apt-get install:$need" >&2
		exit 1
	fi
	echo "install-deps: apt-get install$need"
	apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
gobin=$(go env GOPATH)/bin
if [ ! -x "$gobin/staticcheck" ]; then
	echo "install-deps: go install staticcheck"
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
