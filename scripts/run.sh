#!/usr/bin/env bash
# `make run`: the reference backend on 127.0.0.1:8081 (control on 8091) and syncgate on its
# default config (conf/syncgate.conf, listening on 127.0.0.1:8080) in front of it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/deps.sh test
node tests/backend/server.js --listen 127.0.0.1:8081 --control 127.0.0.1:8091 \
	--app demo=sk_test_demo_secret &
backend=$!
trap 'kill $backend 2>/dev/null; wait $backend 2>/dev/null' EXIT
for _ in $(seq 50); do
	curl -s -o /dev/null http://127.0.0.1:8091/log && break
	sleep 0.1
done
cat <<MSG >&2

syncgate is starting on http://127.0.0.1:8080 in front of the reference backend (127.0.0.1:8081).
  App "demo" (secret key sk_test_demo_secret) has user and conversation sync from the browser OFF.
  Point @talkjs/core at it:   getTalkSession({ appId: "demo", userId: "alice", host: "127.0.0.1:8080", token })
  REST through it:            curl -H 'Authorization: Bearer sk_test_demo_secret' http://127.0.0.1:8080/v1/demo/users/alice
  Backend log and seeding:    http://127.0.0.1:8091/log, POST /seed
Ctrl-C stops both.

MSG
"$build/syncgate" -c conf/syncgate.conf
