# Shared by the bench scripts (sourced): one wrk measurement, resident memory, per-connection
# memory lines. Uses $conns and $secs from the caller.

# wrk_run NAME URL [wrk args]: a 1 s warm-up, then a measured run; prints "NAME req/s p99".
wrk_run() {
	local name=$1 url=$2 out rps p99
	shift 2
	wrk -t1 -c"$conns" -d1s "$@" "$url" >/dev/null 2>&1 || true
	out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$@" "$url")
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	echo "$name $rps $p99"
}

# rss PID: resident memory in KiB.
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# per_conn NAME BEFORE_KIB AFTER_KIB COUNT WHAT: the memory line for COUNT idle WHATs.
per_conn() {
	awk -v n="$1" -v b="$2" -v a="$3" -v k="$4" -v w="$5" \
		'BEGIN { printf "%-10s RSS %7d KiB -> %7d KiB: %6.0f bytes per idle %s\n", n, b, a, (a - b) * 1024 / k, w }'
}
