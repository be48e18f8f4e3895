#!/usr/bin/env bash
# make zdtm: CRIU's own zdtm static tests, host flavour, from the source of
# the CRIU that make deps installs: first run with that criu, then through
# ckptd (test/zdtmcriu turns zdtm's dump into `ckptctl create` and its
# restore into `ckptctl restore`, against a ckptd in the test's own
# namespaces), then compared test by test.
#
# ZDTM_WORK keeps the CRIU tree between runs (default /var/tmp/ckptd-zdtm);
# ZDTM_TESTS is zdtm.py's test regexp (default every static test);
# ZDTM_SIDES is "raw ckptd" or one of them. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
LOG_PREFIX=zdtm
. scripts/criu-source.sh

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
work=${ZDTM_WORK:-/var/tmp/ckptd-zdtm}
tests=${ZDTM_TESTS:-zdtm/static/.*}
sides=${ZDTM_SIDES:-raw ckptd}
criu_bin=$(command -v criu) || { log "no criu: run make deps"; exit 1; }
src=$work/criu-$CRIU_VERSION
results=$work/results

# What CRIU's own CI installs for zdtm's static tests.
apt_install $CRIU_BUILD_PACKAGES python3-yaml libnl-route-3-dev iproute2 nftables iptables kmod util-linux time
mkdir -p "$work" "$results"
if [ ! -f "$src/lib/pycriu/images/inventory_pb2.py" ]; then
	log "unpacking and building CRIU $CRIU_VERSION's tree in $src"
	rm -rf "$src"
	criu_source "$work"
	make -C "$src" -j"$(nproc)" lib >"$work/build.log" 2>&1 ||
		{ tail -n 30 "$work/build.log" >&2; log "building CRIU's tree failed (log: $work/build.log)"; exit 1; }
fi
# zdtm.py lists the tests it finds built, then builds: build them first.
make -C "$src/test/zdtm" -j"$(nproc)" >"$work/build-tests.log" 2>&1 ||
	{ tail -n 30 "$work/build-tests.log" >&2; log "building zdtm's tests failed (log: $work/build-tests.log)"; exit 1; }
go build -o "$work/bin/zdtmcriu" ./test/zdtmcriu
go build -o "$work/bin/zdtmreport" ./test/zdtmreport

# zdtm (and the copies of itself it starts) runs with Debian's python,
# whose yaml and protobuf modules are installed above.
run_zdtm() { # side criu-bin
	rm -rf "$results/$1" "$src/test/dump"
	mkdir -p "$results/$1"
	log "running $tests through $1 (output: $results/$1/zdtm.log)"
	(cd "$src/test" && PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin python3 zdtm.py run -T "$tests" -f h --keep-going \
		--criu-bin "$2" --report "$results/$1" >"$results/$1/zdtm.log" 2>&1) || true
	grep -a -A3 '^####' "$results/$1/zdtm.log" | head -n 4 >&2 || true
	[ -f "$results/$1/criu-testreport.tap" ] ||
		{ tail -n 20 "$results/$1/zdtm.log" >&2; log "zdtm.py wrote no report for $1"; exit 1; }
}

# zdtm runs every test and its criu in new namespaces; through ckptd, the
# first dump of each test starts a ckptd there (test/zdtmcriu), whose
# state goes here.
state=$(mktemp -d /tmp/ckptd-zdtm.XXXXXX)
trap 'rm -rf "$state"' EXIT

for side in $sides; do
	case $side in
	raw) run_zdtm raw "$criu_bin" ;;
	ckptd)
		ZDTM_CKPTD=$repo/bin/ckptd ZDTM_CKPTCTL=$repo/bin/ckptctl ZDTM_REAL_CRIU=$criu_bin ZDTM_CKPTD_STATE=$state \
			run_zdtm ckptd "$work/bin/zdtmcriu"
		;;
	*) log "unknown side $side"; exit 1 ;;
	esac
done

if [ -f "$results/raw/criu-testreport.tap" ] && [ -f "$results/ckptd/criu-testreport.tap" ]; then
	"$work/bin/zdtmreport" "$results/raw/criu-testreport.tap" "$results/ckptd/criu-testreport.tap" | tee "$results/summary.txt"
fi
