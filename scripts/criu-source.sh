# Sourced by deps.sh and zdtm.sh: the CRIU release ckptd is built and
# tested against, and how its source arrives (Debian's source package,
# checked against a pinned hash).

# CRIU 4.2.1: 4.1.x hangs in every dump and restore where hardware
# breakpoints never fire, and cannot dump TCP/UDP sockets on kernels >= 6.16.
CRIU_VERSION=4.2.1
CRIU_SUITE=unstable
CRIU_ORIG_SHA256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
CRIU_BUILD_PACKAGES="build-essential pkgconf libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
	libprotobuf-dev libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev
	libnftables-dev uuid-dev libaio-dev python3-protobuf python3 dpkg-dev xz-utils git"

log() { echo "${LOG_PREFIX:-ckptd}: $*" >&2; }

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

# criu_source unpacks CRIU $CRIU_VERSION's source into $1/criu-$CRIU_VERSION.
criu_source() {
	local dir=$1 uri src srcver orig
	uri=$(debian_uri | head -n1)
	[ -n "$uri" ] || { log "no Debian archive URI found in apt sources"; exit 1; }
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
	srcver=$(apt-cache showsrc criu | awk -v v="$CRIU_VERSION" '$1 == "Version:" && index($2, v "-") == 1 { print $2; exit }')
	[ -n "$srcver" ] || {
		log "no criu $CRIU_VERSION source package in $CRIU_SUITE; it offers: $(apt-cache showsrc criu | awk '$1 == "Version:" { printf "%s ", $2 }')"
		exit 1
	}
	# The .dsc may 404 on some mirrors; the pinned hash of the orig tarball is
	# what we trust, so a partial download is fine as long as it arrived.
	(cd "$dir" && apt-get source --download-only -qq "criu=$srcver" >/dev/null 2>&1 || true)
	orig=$(ls "$dir"/criu_"${CRIU_VERSION}".orig.tar.* 2>/dev/null | head -n1)
	[ -n "$orig" ] || { log "could not download criu_${CRIU_VERSION}.orig.tar.*"; exit 1; }
	echo "$CRIU_ORIG_SHA256  $orig" | sha256sum -c --quiet - ||
		{ log "criu source tarball hash mismatch"; exit 1; }
	tar -xf "$orig" -C "$dir"
}
