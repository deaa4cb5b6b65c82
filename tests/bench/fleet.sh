#!/usr/bin/env bash
# Fleet benchmark (not a test; issue 19): three syncgates (A, B, C) sharing one redis-server,
# in front of ws_bench's minimal realtime backend, and a fourth (N) without [fleet].
# 1. Flip propagation: FLIPS flips of a switch through A's admin API; for each, the time from
#    sending the PUT until B and C both show it (GET /apps/bench polled every ~1 ms on each):
#    p50, p99, max (and the PUT's own reply time, which waits for Redis).
# 2. Realtime round trips with Redis up, paused (SIGSTOP: a Redis that answers nothing) and down
#    (stopped), through A, against N: ws_bench rtt (100 sockets of /ping frames, round trips
#    per second) and fleet_probe.mjs's sequential change calls, p50/p99 in microseconds: an
#    allowed user change (forwarded; its fact is dropped and the drop published to the fleet)
#    and a refused one (counted for the fleet's refusal budget). Decisions never wait on Redis,
#    so the paused and down rows should be within noise of N's.
# Usage: tests/bench/fleet.sh [flips] [seconds]   (RUNS=3 rounds of part 2, states in rotating
# order; CALLS=2000 calls of each kind per state and round)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
flips=${1:-100}
secs=${2:-5}
bin=${SYNCGATE_BIN:-build/syncgate}
tool=${WS_BENCH:-build/ws_bench}
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || scripts/deps.sh test
[ -x "$bin" ] && [ -x "$tool" ] || make build >/dev/null
dir=$(mktemp -d)
# (a stopped Redis would never see the TERM: continue it first)
trap 'kill -CONT $(cat "$dir/redis.pid" 2>/dev/null) 2>/dev/null; kill $(cat "$dir"/*.pid 2>/dev/null) 2>/dev/null; sleep 0.3; rm -rf "$dir"' EXIT
BE=18431 RD=18432 SGA=18433 SGB=18434 SGC=18435 SGN=18436 ADA=18437 ADB=18438 ADC=18439 ADN=18440
path=/v1/bench/realtime/alice

# sg_conf NAME PORT ADMIN_PORT [fleet]: a syncgate's config in $dir/NAME.conf
sg_conf() {
	cat >"$dir/$1.conf" <<CONF
[syncgate]
listen = 127.0.0.1:$2
upstream = http://127.0.0.1:$BE
access_log = off
[admin]
listen = 127.0.0.1:$3
[app:bench]
user_sync = on
conversation_sync = off
[app:benchoff]
user_sync = off
refusal_budget = 1000000/1m
[limits]
max_connections_per_client = 0
ws_idle = 1h
CONF
	if [ "${4:-}" = fleet ]; then
		printf '[fleet]\nredis = 127.0.0.1:%s\ninstance = bench-%s\npoll = 1s\ntimeout = 1s\n' "$RD" "$1" >>"$dir/$1.conf"
	fi
}

redis_start() {
	redis-server --port $RD --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no --daemonize no \
		>>"$dir/redis.log" 2>&1 &
	echo $! >"$dir/redis.pid"
	for _ in $(seq 100); do
		[ "$(redis-cli -p $RD ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.05
	done
	echo "redis-server did not start:" >&2
	cat "$dir/redis.log" >&2
	exit 1
}
redis_stop() {
	local p
	p=$(cat "$dir/redis.pid" 2>/dev/null) || return 0
	kill -CONT "$p" 2>/dev/null || true
	kill "$p" 2>/dev/null || true
	while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
	rm -f "$dir/redis.pid"
}
# connected ADMIN_PORT...: waits until each syncgate says syncgate_fleet_connected 1
connected() {
	local a
	for a in "$@"; do
		for _ in $(seq 300); do
			curl -s "http://127.0.0.1:$a/metrics" | grep -q '^syncgate_fleet_connected 1$' && continue 2
			sleep 0.05
		done
		echo "syncgate on admin port $a never connected to Redis" >&2
		exit 1
	done
}

# set_state STATE: Redis up (and A connected), paused or down
set_state() {
	case $1 in
	up)
		[ -f "$dir/redis.pid" ] || redis_start
		kill -CONT "$(cat "$dir/redis.pid")"
		connected $ADA
		;;
	paused)
		[ -f "$dir/redis.pid" ] || { redis_start; connected $ADA; }
		kill -STOP "$(cat "$dir/redis.pid")"
		sleep 1.5 # past A's timeout: its commands time out, it reconnects in a loop
		;;
	down)
		redis_stop
		sleep 0.5
		;;
	esac
}

"$tool" server $BE & echo $! >"$dir/a.pid"
redis_start
for s in "A $SGA $ADA" "B $SGB $ADB" "C $SGC $ADC"; do
	set -- $s
	sg_conf "$1" "$2" "$3" fleet
	"$bin" -c "$dir/$1.conf" 2>"$dir/$1.log" & echo $! >"$dir/sg$1.pid"
done
sg_conf N $SGN $ADN
"$bin" -c "$dir/N.conf" 2>"$dir/N.log" & echo $! >"$dir/sgN.pid"
sleep 1
connected $ADA $ADB $ADC

echo "Fleet benchmark: 3 syncgates and redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on loopback (nproc=$(nproc))"
echo "Flip propagation: $flips flips of user_sync through A's admin API until B and C both show it (polled every ~1 ms)"
node tests/bench/fleet_probe.mjs flips "$flips" $ADA $ADB $ADC bench

runs=${RUNS:-3}
calls=${CALLS:-2000}
echo "Realtime round trips with Redis up, paused and down (through A) and without [fleet] (N): ${secs}s of ws_bench rtt (100 sockets of /ping), then $calls sequential change calls of each kind; $runs rounds, medians"
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
targets=(no_fleet up paused down)
declare -A rtt al50 al99 re50 re99
for run in $(seq "$runs"); do
	for k in 0 1 2 3; do
		t=${targets[$(((run + k) % 4))]}
		port=$SGA
		if [ "$t" = no_fleet ]; then port=$SGN; set_state up; else set_state "$t"; fi
		r=$("$tool" rtt $port 100 "$secs" $path)
		read -r _ a50 a99 _ f50 f99 <<<"$(node tests/bench/fleet_probe.mjs calls $port "$calls")"
		rtt[$t]="${rtt[$t]:-} $r"
		al50[$t]="${al50[$t]:-} $a50"; al99[$t]="${al99[$t]:-} $a99"
		re50[$t]="${re50[$t]:-} $f50"; re99[$t]="${re99[$t]:-} $f99"
	done
done
set_state up
printf '%-9s %14s   %-26s %-26s   %s\n' target round-trips/s 'allowed change p50/p99 us' 'refused change p50/p99 us' 'round trips/s, run by run'
for t in "${targets[@]}"; do
	printf '%-9s %14s   %-26s %-26s  %s\n' "$t" "$(median <<<"${rtt[$t]}")" \
		"$(median <<<"${al50[$t]}") / $(median <<<"${al99[$t]}")" \
		"$(median <<<"${re50[$t]}") / $(median <<<"${re99[$t]}")" "${rtt[$t]}"
done
for n in A B C N; do
	if grep -q '"level":"error"\|AddressSanitizer\|runtime error' "$dir/$n.log"; then
		echo "syncgate $n logged errors:" >&2
		grep '"level":"error"\|AddressSanitizer\|runtime error' "$dir/$n.log" | head -5 >&2
	fi
done
