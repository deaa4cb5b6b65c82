#!/usr/bin/env bash
# `make build`: configures and builds BUILD. The release build (PGO=1, the default) is
# profile-guided: an instrumented syncgate is built in BUILD/pgo-train, scripts/pgo_train.mjs
# runs a few seconds of mixed traffic through it, and BUILD is compiled with the counts. If
# the training fails the build goes on without a profile and says so (the binary is correct
# either way, only its code layout differs), except under CI=true, where it fails. PGO=0: a
# plain build (sanitizer and debug builds).
# Usage: scripts/build.sh BUILD JOBS [cmake flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=$1 jobs=$2
shift 2
pgo=${PGO:-1}
profile=$PWD/$build/pgo-profile
fresh=
# no "Entering directory" lines from the generated makefiles
export MAKEFLAGS="${MAKEFLAGS:-} --no-print-directory"
if [ "$pgo" = auto ]; then
	# `make run`: profile-guided when the training's dependencies (the test ones: Node.js
	# packages, openssl) are there, else a plain build; running needs neither
	if [ -d node_modules/@talkjs/core ] && command -v openssl >/dev/null && command -v node >/dev/null; then
		pgo=1
	else
		echo "build: without a profile (the profile's training needs the test dependencies: make test installs them)" >&2
		pgo=0
	fi
fi

if [ "$pgo" = 1 ]; then
	train=$build/pgo-train
	# a profile is made once per source tree state: kept while no source is newer than it
	# (a source newer than the counts would not match them: GCC refuses such a profile)
	if [ -f "$profile/.done" ] && [ -z "$(find policy proxy tests/bench CMakeLists.txt scripts/pgo_train.mjs tests/lib/traffic.mjs -newer "$profile/.done" -print -quit)" ]; then
		echo "build: profile in $profile is current" >&2
	else
		echo "build: profile-guided build: instrumented syncgate in $train, training run" >&2
		rm -rf "$profile"
		cmake -S . -B "$train" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSG_PGO=generate -DSG_PGO_DIR="$profile" "$@" >/dev/null
		cmake --build "$train" -j"$jobs" --target syncgate ws_bench >/dev/null
		if SYNCGATE_BIN=$train/syncgate WS_BENCH=$train/ws_bench timeout 120 node scripts/pgo_train.mjs 6; then
			touch "$profile/.done"
			fresh=--clean-first # every object compiled with the new counts
		else
			echo "build: WARNING: the PGO training run failed; building without a profile" >&2
			rm -rf "$profile"
			[ "${CI:-}" = true ] && exit 1 # CI builds what is released: there it is an error
			pgo=0
		fi
	fi
fi
if [ "$pgo" = 1 ]; then
	cmake -S . -B "$build" -DSG_PGO=use -DSG_PGO_DIR="$profile" "$@" >/dev/null
else
	cmake -S . -B "$build" -DSG_PGO= "$@" >/dev/null
fi
cmake --build "$build" -j"$jobs" $fresh
