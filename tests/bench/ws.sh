#!/usr/bin/env bash
# WebSocket relay benchmark (not a test): round trips per second of small realtime call
# frames over 100 sockets, direct vs through nginx (a blind tunnel) vs through syncgate
# (inspecting and deciding every frame), with le_relay (a blind relay on libevent) as the
# control and syncgate as a tunnel (sg_tunnel: frames not read) to show what inspection costs;
# rounds unpinned, then relay-bound (relay and backend sharing one core); CPU per round trip of
# each relay pinned to its own core; then resident memory per idle socket with N sockets open
# through nginx and through syncgate.
# Usage: tests/bench/ws.sh [seconds] [idle_sockets]   (RUNS=5 rounds by default)
# The backend is ws_bench's minimal realtime server. On a 2-core machine the client, the
# backend and the relay share the cores, so the unpinned round trips measure the whole
# machine and rank relays no more finely than a few percent; the relay-bound rounds do.
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
# sg_tunnel: syncgate on a WebSocket path outside the API paths (there an upgrade that is not
# the realtime socket is refused), which it relays as a tunnel (upgrade checked, frames not
# read): what syncgate's relay costs without inspection
relays=(nginx le_relay syncgate sg_tunnel)
port() { case $1 in nginx) echo $NG ;; le_relay) echo $LE ;; syncgate | sg_tunnel) echo $SG ;; esac; }
target_path() { if [ "$1" = sg_tunnel ]; then echo /bench/tunnel/alice; else echo $path; fi; }
ngw=$(pgrep -P "$(cat "$dir/b.pid")" | head -1)
sgp=$(cat "$dir/c.pid")
lep=$(cat "$dir/d.pid")

# rounds [CLIENT_PREFIX...]: $runs rounds of direct, then the relays in an order that rotates
# from round to round (so that a drift of the machine favours none); prints each target's
# median and each relay's per-round ratios against the nginx run of the same round.
rounds() {
	local run k t r n=${#relays[@]}
	declare -A got=([direct]="") this ratios
	for run in $(seq "$runs"); do
		got[direct]="${got[direct]} $("$@" "$tool" rtt $BE 100 "$secs" $path)"
		for k in $(seq 0 $((n - 1))); do
			t=${relays[$(((run + k) % n))]}
			r=$("$@" "$tool" rtt "$(port "$t")" 100 "$secs" "$(target_path "$t")")
			this[$t]=$r
			got[$t]="${got[$t]:-} $r"
		done
		for t in "${relays[@]:1}"; do
			ratios[$t]="${ratios[$t]:-} $(ratio "${this[nginx]}" "${this[$t]}")"
		done
	done
	printf '%-10s %14s   %s\n' target round-trips/s runs
	for t in direct "${relays[@]}"; do
		printf '%-10s %14s  %s\n' "$t" "$(median <<<"${got[$t]}")" "${got[$t]}"
	done
	for t in "${relays[@]:1}"; do
		echo "$t/nginx run by run:${ratios[$t]} (median $(median <<<"${ratios[$t]}")x)"
	done
}

# pin CPU PID...: moves the processes to CPU (a list such as 0-1).
pin() {
	local cpu=$1 p
	shift
	for p in "$@"; do taskset -pc "$cpu" "$p" >/dev/null; done
}
all=0-$(($(nproc) - 1))

echo "Unpinned: client, backend and relay share the machine's cores"
rounds

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	# On 2 cores the unpinned figure measures the whole machine: ~90% of a relay's CPU is the
	# kernel's TCP work, the same for every relay, and client and backend need as much again.
	# Relay-bound: the relay shares CPU 1 with the backend only, the client has CPU 0, so
	# that CPU 1 is the bottleneck and the relay's own cost (and how it batches work between
	# the backend's wake-ups) decides the rate. This is the figure that ranks relays.
	echo "Relay-bound: relay and backend on CPU 1, client on CPU 0"
	pin 1 "$(cat "$dir/a.pid")" "$ngw" "$sgp" "$lep"
	rounds taskset -c 0
	pin "$all" "$(cat "$dir/a.pid")" "$ngw" "$sgp" "$lep"
fi

# CPU per round trip, the efficiency figure that scheduling noise moves least: each relay
# pinned to CPU 1, client and backend to CPU 0, user and system time from /proc over a run.
# (Pinned, the client and backend saturate CPU 0 at about the rate any of the relays reach:
# the round trips of this part measure the load generator, not the relays.)
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	echo "CPU time per round trip, relay pinned to CPU 1, client and backend to CPU 0 (${secs}s each, twice)"
	pin 0 "$(cat "$dir/a.pid")"
	for t in "nginx $NG $ngw" "le_relay $LE $lep" "syncgate $SG $sgp" "nginx $NG $ngw" "le_relay $LE $lep" "syncgate $SG $sgp"; do
		set -- $t
		pin 1 "$3"
		b=$(awk '{print $14, $15}' "/proc/$3/stat")
		r=$(taskset -c 0 "$tool" rtt "$2" 100 "$secs" $path)
		a=$(awk '{print $14, $15}' "/proc/$3/stat")
		awk -v n="$1" -v r="$r" -v s="$secs" -v b="$b" -v a="$a" -v hz="$(getconf CLK_TCK)" 'BEGIN {
			split(b, x, " "); split(a, y, " "); k = 1e6 / hz / (r * s)
			printf "%-10s %8d round-trips/s  user %.2f us  system %.2f us per round trip\n", n, r, (y[1] - x[1]) * k, (y[2] - x[2]) * k }'
	done
	pin "$all" "$(cat "$dir/a.pid")" "$ngw" "$sgp" "$lep"
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
