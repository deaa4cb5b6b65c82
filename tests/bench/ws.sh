#!/usr/bin/env bash
# WebSocket relay benchmark (not a test): round trips per second of small realtime call
# frames over 100 sockets, direct vs through nginx (a blind tunnel) vs through syncgate
# (inspecting and deciding every frame), with le_relay (a blind relay on libevent) as the
# control; CPU per round trip of each relay pinned to its own core; then resident memory per
# idle socket with N sockets open through nginx and through syncgate.
# Usage: tests/bench/ws.sh [seconds] [idle_sockets]   (RUNS=5 rounds by default)
# The backend is ws_bench's minimal realtime server. On a 2-core machine the client, the
# backend and the relay share the cores, so the round trips measure the whole machine: a
# relay's own cost shows only through CPU per round trip, and le_relay shows how finely the
# round trips can rank relays at all.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
secs=${1:-8}
idle=${2:-9900}
bin=${SYNCGATE_BIN:-build/syncgate}
tool=${WS_BENCH:-build/ws_bench}
relay=${LE_RELAY:-build/le_relay}
command -v nginx >/dev/null || scripts/deps.sh test
[ -x "$bin" ] && [ -x "$tool" ] && [ -x "$relay" ] || make build >/dev/null
ulimit -n 20000
dir=$(mktemp -d)
trap 'kill $(cat "$dir"/*.pid 2>/dev/null) 2>/dev/null; sleep 0.3; rm -rf "$dir"' EXIT
BE=18411 NG=18412 SG=18413 LE=18414
path=/v1/bench/realtime/alice

cat >"$dir/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $dir/proxy.nginx.pid; error_log $dir/proxy.err;
worker_rlimit_nofile 20000;
events { worker_connections 20000; }
http { access_log off;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass http://127.0.0.1:$BE; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 3600s; proxy_send_timeout 3600s; } } }
CONF
cat >"$dir/syncgate.conf" <<CONF
[syncgate]
listen = 127.0.0.1:$SG
upstream = http://127.0.0.1:$BE
access_log = off
[app:bench]
user_sync = off
conversation_sync = off
[limits]
max_connections = 19000
max_connections_per_client = 0
ws_idle = 1h
CONF
"$tool" server $BE & echo $! >"$dir/a.pid"
"$relay" $LE $BE & echo $! >"$dir/d.pid"
start_proxies "$bin"

runs=${RUNS:-5}
echo "WebSocket relay benchmark: 100 sockets, [seq,\"GET\",\"/ping\",{},{}] round trips, ${secs}s per run, $runs runs, medians (nproc=$(nproc))"
echo "le_relay is the control: a blind relay on libevent (tests/bench/le_relay.c), the least a libevent proxy can do"
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }
declare -A got=([direct]="" [nginx]="" [le_relay]="" [syncgate]="")
order=(nginx le_relay syncgate)
port() { case $1 in nginx) echo $NG ;; le_relay) echo $LE ;; syncgate) echo $SG ;; esac; }
sr=""; lr=""
for run in $(seq "$runs"); do
	got[direct]="${got[direct]} $("$tool" rtt $BE 100 "$secs" $path)"
	# the relays take turns going first, so that a drift of the machine favours none
	for k in 0 1 2; do
		t=${order[$(((run + k) % 3))]}
		r[$k]=$("$tool" rtt "$(port "$t")" 100 "$secs" $path)
		eval "this_$t=${r[$k]}"
		got[$t]="${got[$t]} ${r[$k]}"
	done
	sr="$sr $(ratio "$this_nginx" "$this_syncgate")"
	lr="$lr $(ratio "$this_nginx" "$this_le_relay")"
done
printf '%-10s %14s   %s\n' target round-trips/s runs
for t in direct nginx le_relay syncgate; do
	printf '%-10s %14s  %s\n' "$t" "$(median <<<"${got[$t]}")" "${got[$t]}"
done
# each relay against the nginx run of the same round: drifts of the machine cancel out
echo "syncgate/nginx run by run:$sr (median $(median <<<"$sr")x)"
echo "le_relay/nginx run by run:$lr (median $(median <<<"$lr")x)"

ngw=$(pgrep -P "$(cat "$dir/b.pid")" | head -1)
sgp=$(cat "$dir/c.pid")
lep=$(cat "$dir/d.pid")

# CPU per round trip, the efficiency figure that scheduling noise moves least: each relay
# pinned to CPU 1, client and backend to CPU 0, user and system time from /proc over a run.
# (Pinned, the client and backend saturate CPU 0 at about the rate any of the relays reach:
# the round trips of this part measure the load generator, not the relays.)
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	echo "CPU time per round trip, relay pinned to CPU 1, client and backend to CPU 0 (${secs}s each, twice)"
	taskset -pc 0 "$(cat "$dir/a.pid")" >/dev/null
	for t in "nginx $NG $ngw" "le_relay $LE $lep" "syncgate $SG $sgp" "nginx $NG $ngw" "le_relay $LE $lep" "syncgate $SG $sgp"; do
		set -- $t
		taskset -pc 1 "$3" >/dev/null
		b=$(awk '{print $14, $15}' "/proc/$3/stat")
		r=$(taskset -c 0 "$tool" rtt "$2" 100 "$secs" $path)
		a=$(awk '{print $14, $15}' "/proc/$3/stat")
		awk -v n="$1" -v r="$r" -v s="$secs" -v b="$b" -v a="$a" -v hz="$(getconf CLK_TCK)" 'BEGIN {
			split(b, x, " "); split(a, y, " "); k = 1e6 / hz / (r * s)
			printf "%-10s %8d round-trips/s  user %.2f us  system %.2f us per round trip\n", n, r, (y[1] - x[1]) * k, (y[2] - x[2]) * k }'
	done
	for p in "$(cat "$dir/a.pid")" "$ngw" "$sgp" "$lep"; do
		taskset -pc 0-$(($(nproc) - 1)) "$p" >/dev/null
	done
fi

echo "Idle sockets: $idle through each proxy, resident memory per socket"
for t in "nginx $NG $ngw" "syncgate $SG $sgp"; do
	set -- $t
	before=$(rss "$3")
	"$tool" idle "$2" "$idle" $path 4 >/dev/null &
	holder=$!
	sleep 3.5
	after=$(rss "$3")
	wait $holder || true
	per_conn "$1" "$before" "$after" "$idle" socket
	sleep 1
done
