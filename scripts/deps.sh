#!/usr/bin/env bash
# Installs what syncgate's build and tests need, from Debian's packages and npm only, when it
# is missing. Idempotent and quiet when everything is there. Usage: scripts/deps.sh [build|run|test]
#   build: compile syncgate; run: also what `make run` starts (Node.js for the reference
#   backend); test: everything the suites and the profile-guided build's training use
set -euo pipefail
cd "$(dirname "$0")/.."

want=build
[ $# -gt 0 ] && want=$1

build_pkgs="cmake make gcc pkg-config libevent-dev libcjson-dev libssl-dev libinih-dev node-llhttp libhiredis-dev"
run_pkgs="nodejs curl"
test_pkgs="nodejs npm clang libclang-rt-14-dev nginx wrk chromium haproxy openssl curl redis-server"

missing=()
pkgs=$build_pkgs
[ "$want" = run ] && pkgs="$build_pkgs $run_pkgs"
[ "$want" = test ] && pkgs="$build_pkgs $test_pkgs"
for p in $pkgs; do
	case $p in
	nodejs | npm) command -v "${p%js}" >/dev/null 2>&1 && continue ;; # node may come from elsewhere
	esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs from a non-Debian repository provides npm itself
if command -v node >/dev/null 2>&1; then
	missing=("${missing[@]/nodejs/}")
	missing=("${missing[@]/npm/}")
fi
missing=(${missing[@]+"${missing[@]}"})
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}" >&2
	SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$want" = test ]; then
	if [ ! -d node_modules/@talkjs/core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
		echo "deps: npm ci" >&2
		npm ci --no-audit --no-fund --loglevel=error >/dev/null
	fi
fi
