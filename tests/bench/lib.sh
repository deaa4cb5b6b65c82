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

# wrk_at SCHEME NAME PORT [wrk args]: wrk_run against SCHEME://127.0.0.1:PORT$path.
wrk_at() {
	local scheme=$1 name=$2 port=$3
	shift 3
	wrk_run "$name" "$scheme://127.0.0.1:$port$path" "$@"
}

# rss PID: resident memory in KiB.
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# per_conn NAME BEFORE_KIB AFTER_KIB COUNT WHAT: the memory line for COUNT idle WHATs.
per_conn() {
	awk -v n="$1" -v b="$2" -v a="$3" -v k="$4" -v w="$5" \
		'BEGIN { printf "%-10s RSS %7d KiB -> %7d KiB: %6.0f bytes per idle %s\n", n, b, a, (a - b) * 1024 / k, w }'
}

# start_proxies BIN: the nginx proxy ($dir/proxy.conf) and syncgate BIN ($dir/syncgate.conf),
# their pids in $dir/b.pid and $dir/c.pid (the caller starts the backend, $dir/a.pid).
start_proxies() {
	nginx -c "$dir/proxy.conf" -p "$dir" & echo $! >"$dir/b.pid"
	"$1" -c "$dir/syncgate.conf" 2>"$dir/syncgate.log" & echo $! >"$dir/c.pid"
	sleep 1
}

# start_json_backend PORT: the HTTP benchmarks' backend, an nginx answering every request with a
# small JSON user ($dir/a.pid), so that the proxies in front of it are the bottleneck.
start_json_backend() {
	cat >"$dir/backend.conf" <<CONF
worker_processes 1; daemon off; pid $dir/backend.nginx.pid; error_log $dir/backend.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$1;
    location / { default_type application/json; return 200 '{"id":"alice","name":"Alice","custom":{"team":"red"},"locale":"nl-NL","photoUrl":null,"role":"default"}'; } } }
CONF
	nginx -c "$dir/backend.conf" -p "$dir" & echo $! >"$dir/a.pid"
}
