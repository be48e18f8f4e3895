#!/usr/bin/env bash
# Installs what ckptd needs to build, run and test. Idempotent: every step
# checks before it acts, so a second run on a ready machine does nothing.
set -euo pipefail

# CRIU 4.2.1: 4.1.x hangs in every dump and restore where hardware
# breakpoints never fire, and cannot dump TCP/UDP sockets on kernels >= 6.16.
CRIU_MIN=40201
CRIU_VERSION=4.2.1
CRIU_SUITE=unstable
CRIU_ORIG_SHA256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
CRIU_PREFIX=/usr/local/sbin

log() { echo "deps: $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "deps: must run as root (apt-get, criu install)" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

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

# debian_uri prints the Debian archive URI already configured on this machine,
# so that no host name lives in this repository.
debian_uri() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f"
	done | head -n1
	if [ -f /etc/apt/sources.list ]; then
		awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list
	fi
}

build_criu() {
	log "building CRIU $CRIU_VERSION from Debian's source package"
	apt_install build-essential pkgconf libprotobuf-c-dev protobuf-c-compiler protobuf-compiler \
		libprotobuf-dev libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev \
		libnftables-dev uuid-dev libaio-dev python3-protobuf python3 dpkg-dev xz-utils git

	local uri src work
	uri=$(debian_uri | head -n1)
	[ -n "$uri" ] || { echo "deps: no Debian archive URI found in apt sources" >&2; exit 1; }
	# An older ckptd added a trixie source; one source suite is enough.
	rm -f /etc/apt/sources.list.d/ckptd-trixie-src.sources
	src=/etc/apt/sources.list.d/ckptd-criu-src.sources
	cat >"$src" <<SRC
Types: deb-src
URIs: $uri
Suites: $CRIU_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	apt-get update -qq
	APT_UPDATED=1

	work=$(mktemp -d /tmp/ckptd-criu-build.XXXXXX)
	trap 'rm -rf "$work"' RETURN
	# The .dsc may 404 on some mirrors; the pinned hash of the orig tarball is
	# what we trust, so a partial download is fine as long as it arrived.
	local srcver
	srcver=$(apt-cache showsrc criu | awk -v v="$CRIU_VERSION" '$1 == "Version:" && index($2, v "-") == 1 { print $2; exit }')
	[ -n "$srcver" ] || {
		echo "deps: no criu $CRIU_VERSION source package in $CRIU_SUITE; it offers: $(apt-cache showsrc criu | awk '$1 == "Version:" { printf "%s ", $2 }')" >&2
		exit 1
	}
	(cd "$work" && apt-get source --download-only -qq "criu=$srcver" >/dev/null 2>&1 || true)
	local orig
	orig=$(ls "$work"/criu_"${CRIU_VERSION}".orig.tar.* 2>/dev/null | head -n1)
	[ -n "$orig" ] || { echo "deps: could not download criu_${CRIU_VERSION}.orig.tar.*" >&2; exit 1; }
	echo "$CRIU_ORIG_SHA256  $orig" | sha256sum -c --quiet - ||
		{ echo "deps: criu source tarball hash mismatch" >&2; exit 1; }
	tar -xf "$orig" -C "$work"
	make -C "$work/criu-$CRIU_VERSION" -j"$(nproc)" criu >"$work/build.log" 2>&1 ||
		{ tail -n 30 "$work/build.log" >&2; echo "deps: criu build failed" >&2; exit 1; }
	install -D -m 0755 "$work/criu-$CRIU_VERSION/criu/criu" "$CRIU_PREFIX/criu"
	hash -r
}

# containerd and runc for ctr: targets; busybox-static for the tests' image;
# docker-registry (distribution 2.8) for the push and pull tests; podman
# for the tests that import its checkpoint archives; python3 for the
# terminal session tests.
apt_install iptables nftables iproute2 libprotobuf-c1 libnl-3-200 libnet1 libnftables1 \
	libbsd0 libgnutls30 libuuid1 libcap2 ca-certificates containerd runc busybox-static docker-registry podman python3
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
