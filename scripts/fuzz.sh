#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (default 60) on its seed corpus and the shared
# dictionary, and prints coverage. A crash leaves its input in build-fuzz/artifacts/ and fails;
# copy it to tests/fuzz/regressions/<target>/ so that `make test` replays it from then on.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=${*:-http wsframe classify path jwt config lenient proxyproto route}
scripts/deps.sh test >/dev/null
CC=clang cmake -S . -B build-fuzz -DSYNCGATE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
for t in $targets; do cmake --build build-fuzz -j2 --target "fuzz_$t" >/dev/null; done
mkdir -p build-fuzz/artifacts
status=0
for t in $targets; do
	work=build-fuzz/corpus-work/$t
	mkdir -p "$work"
	cp -n tests/fuzz/corpus/$t/* "$work"/ 2>/dev/null || true
	log=build-fuzz/fuzz_$t.log
	if ! build-fuzz/tests/fuzz_$t "$work" -dict=tests/fuzz/dict -max_total_time="$secs" \
		-max_len=8192 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=build-fuzz/artifacts/$t- \
		-print_final_stats=1 >"$log" 2>&1; then
		echo "fuzz_$t: FAILED (see $log and build-fuzz/artifacts/)"
		tail -30 "$log"
		status=1
		continue
	fi
	execs=$(awk '/stat::number_of_executed_units/ {print $NF}' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1)
	echo "fuzz_$t: ${secs}s, $execs runs, $cov, $ft, corpus $(ls "$work" | wc -l) inputs, no crash"
done
exit $status
