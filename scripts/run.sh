#!/usr/bin/env bash
# `make run`: the reference backend on 127.0.0.1:8081 (control on 8091) and syncgate on its
# default config (conf/syncgate.conf, listening on 127.0.0.1:8080) in front of it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/deps.sh run
node tests/backend/server.js --listen 127.0.0.1:8081 --control 127.0.0.1:8091 \
	--app demo=sk_test_demo_secret &
backend=$!
trap 'kill $backend 2>/dev/null; wait $backend 2>/dev/null' EXIT
for _ in $(seq 50); do
	curl -s -o /dev/null http://127.0.0.1:8091/log && break
	sleep 0.1
done
# demo users and a conversation, so that what the banner prints works as it is
curl -s -o /dev/null -X POST http://127.0.0.1:8091/seed -H 'Content-Type: application/json' \
	-d '{"appId":"demo","users":{"alice":{"name":"Alice"},"bob":{"name":"Bob"}},"conversations":{"welcome":{"subject":"Welcome","participants":{"alice":{},"bob":{}}}}}'
token=$("$build/syncgate" token -c conf/syncgate.conf --app demo --user alice --ttl 86400)
cat <<MSG >&2

syncgate is starting on http://127.0.0.1:8080 in front of the reference backend (127.0.0.1:8081).
  App "demo" (secret key sk_test_demo_secret) has user and conversation sync from the browser OFF.
  Users alice and bob and conversation "welcome" are there. A token for alice (24 h):
    $token
  Point @talkjs/core at it:   getTalkSession({ appId: "demo", userId: "alice", host: "127.0.0.1:8080", token: "<the token>" })
  Refused (user sync off):    curl -X PUT -H 'Authorization: Bearer $token' -d '{"name":"x"}' http://127.0.0.1:8080/v1/demo/users/alice
  REST through it:            curl -H 'Authorization: Bearer sk_test_demo_secret' http://127.0.0.1:8080/v1/demo/users/alice
  New tokens:                 $build/syncgate token -c conf/syncgate.conf --app demo --user USERID
  Backend log and seeding:    http://127.0.0.1:8091/log, POST /seed
Ctrl-C stops both.

MSG
"$build/syncgate" -c conf/syncgate.conf
