#!/usr/bin/env bash
# Installs what ckptd needs to build, run and test. Idempotent: every step
# checks before it acts, so a second run on a ready machine does nothing.
set -euo pipefail

CRIU_MIN=40201
CRIU_PREFIX=/usr/local/sbin
LOG_PREFIX=deps
. "$(dirname "$0")/criu-source.sh"

[ "$(id -u)" = 0 ] || { echo "deps: must run as root (apt-get, criu install)" >&2; exit 1; }

# criu_version_code prints the version of the criu at $1 as MMmmpp, or nothing.
criu_version_code() {
	"$1" --version 2>/dev/null | awk '/^Version:/ { split($2, v, "."); printf "%d%02d%02d\n", v[1], v[2], v[3] }'
}

criu_ok() {
	local bin code
	bin=$(command -v criu 2>/dev/null) || return 1
	code=$(criu_version_code "$bin")
	[ -n "$code" ] && [ "$code" -ge "$CRIU_MIN" ] && "$bin" check >/dev/null 2>&1
}

build_criu() {
	log "building CRIU $CRIU_VERSION from Debian's source package"
	apt_install $CRIU_BUILD_PACKAGES

	local work
	work=$(mktemp -d /tmp/ckptd-criu-build.XXXXXX)
	trap 'rm -rf "$work"' RETURN
	criu_source "$work"
	make -C "$work/criu-$CRIU_VERSION" -j"$(nproc)" criu >"$work/build.log" 2>&1 ||
		{ tail -n 30 "$work/build.log" >&2; echo "deps: criu build failed" >&2; exit 1; }
	install -D -m 0755 "$work/criu-$CRIU_VERSION/criu/criu" "$CRIU_PREFIX/criu"
	hash -r
}

# containerd and runc for ctr: targets; busybox-static for the tests' image;
# docker-registry (distribution 2.8) for the push and pull tests; podman
# for the tests that import its checkpoint archives; python3 for the
# terminal session tests; the CNI plugins for workloads' own networks;
# nginx and curl for the tests of servers in those networks; systemd for
# systemd-analyze, which checks the unit make install puts in place.
apt_install iptables nftables iproute2 libprotobuf-c1 libnl-3-200 libnet1 libnftables1 \
	libbsd0 libgnutls30 libuuid1 libcap2 ca-certificates containerd runc busybox-static docker-registry podman python3 \
	containernetworking-plugins nginx curl systemd
if ! criu_ok; then
	build_criu
	criu_ok || { echo "deps: criu at $(command -v criu) is not >= 4.1 or 'criu check' fails" >&2; exit 1; }
fi
log "criu $(criu --version | awk '/^Version:/ {print $2}') at $(command -v criu)"
log "$(containerd --version | awk '{print "containerd", $3}'), $(runc --version | head -n1)"

# checkpointctl, the field's archive inspector: the tests read ckptd's
# exports with it. A Go module, pinned; go version -m says which is here.
CHECKPOINTCTL_VERSION=v1.6.0
if ! go version -m "$(command -v checkpointctl 2>/dev/null || echo /nonexistent)" 2>/dev/null |
	grep -q "checkpointctl[[:space:]]*$CHECKPOINTCTL_VERSION"; then
	log "installing checkpointctl $CHECKPOINTCTL_VERSION"
	GOBIN=/usr/local/bin go install "github.com/checkpoint-restore/checkpointctl@$CHECKPOINTCTL_VERSION"
fi
log "checkpointctl $CHECKPOINTCTL_VERSION at $(command -v checkpointctl)"

# containers/image, the library skopeo is, for the sigstore interoperability
# test (Debian's skopeo is built without sigstore). test/cimage is its own
# module; its sources are fetched here, and the test builds it.
(cd "$(dirname "$0")/../test/cimage" && GOWORK=off go mod download)
log "containers/image for test/cimage fetched"
