#!/usr/bin/env bash
# Runs every fuzzer of outside input for FUZZTIME each (default 60s).
# make test runs it briefly, by count (2000x): a duration can fail with a
# bare "context deadline exceeded" at its end, a race in Go 1.26's fuzz
# coordinator (Go issue 75804, fixed in 1.27), seen here in CI. make fuzz
# runs it longer. A failing input is written under the package's
# testdata/fuzz/ and then replays in go test.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${FUZZTIME:-60s}
targets=(
	"./config FuzzParse"
	"./store FuzzValidateName"
	"./store FuzzCheckpointRecord"
	"./container FuzzParseRef"
	"./migrate FuzzReadMessage"
	"./migrate FuzzReadFrames"
	"./migrate FuzzGroupStep"
	"./images FuzzRead"
	"./archive FuzzRead"
	"./chain FuzzChain"
	"./foreign FuzzConvert"
	"./ingest FuzzSpec"
	"./imagesig FuzzVerify"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz $pkg $name for $time"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$time" "$pkg" >/tmp/ckptd-fuzz.$$ 2>&1 || {
		cat /tmp/ckptd-fuzz.$$
		rm -f /tmp/ckptd-fuzz.$$
		exit 1
	}
	tail -1 /tmp/ckptd-fuzz.$$
done
rm -f /tmp/ckptd-fuzz.$$
