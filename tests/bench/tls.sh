#!/usr/bin/env bash
# TLS termination benchmark (not a test): wrk over https against nginx and against syncgate,
# each terminating TLS 1.3 (ECDSA P-256, one worker) in front of the same plain nginx backend.
# Two loads: keep-alive requests (record encryption cost) and a new connection per request
# (handshake cost; wrk offers its last session, so these are mostly resumed handshakes). Then
# resident memory per idle TLS connection for both.
# Usage: tests/bench/tls.sh [seconds] [connections] [idle_connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
secs=${1:-8}
conns=${2:-50}
idle=${3:-2000}
bin=${SYNCGATE_BIN:-build/syncgate}
command -v wrk >/dev/null && command -v nginx >/dev/null && command -v openssl >/dev/null || scripts/deps.sh test
[ -x "$bin" ] || make build >/dev/null
ulimit -n 20000
dir=$(mktemp -d)
trap 'kill $(cat "$dir"/*.pid 2>/dev/null) 2>/dev/null; sleep 0.3; rm -rf "$dir"' EXIT
BE=18501 NG=18502 SG=18503

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

cat >"$dir/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $dir/proxy.nginx.pid; error_log $dir/proxy.err;
worker_rlimit_nofile 20000;
events { worker_connections 10000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 600s;
  upstream be { server 127.0.0.1:$BE; keepalive 256; }
  server { listen 127.0.0.1:$NG ssl;
    ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto https; } } }
CONF
cat >"$dir/syncgate.conf" <<CONF
[syncgate]
listen = 127.0.0.1:$SG tls
upstream = http://127.0.0.1:$BE
access_log = off
[tls]
cert = $dir/cert.pem
key = $dir/key.pem
[app:*]
user_sync = off
conversation_sync = off
[limits]
max_connections = 19000
max_connections_per_client = 0
keepalive_idle = 10m
CONF
start_json_backend "$BE"
start_proxies "$bin"

path=/v1/bench/users/alice
run() { # name port [extra wrk args]
	wrk_at https "$@" | { read -r n r p; printf '%-10s %12s %10s\n' "$n" "$r" "$p"; }
}
echo "TLS termination benchmark: wrk -t1 -c$conns -d${secs}s https GET $path, TLS 1.3, ECDSA P-256 (nproc=$(nproc))"
echo "keep-alive (one handshake per connection):"
printf '%-10s %12s %10s\n' target req/s p99
run nginx $NG
run syncgate $SG
echo "a new connection per request (Connection: close; wrk resumes the TLS session, both servers allow it):"
printf '%-10s %12s %10s\n' target req/s p99
run nginx $NG -H "Connection: close"
run syncgate $SG -H "Connection: close"

ngw=$(pgrep -P "$(cat "$dir/b.pid")" | head -1)
sgp=$(cat "$dir/c.pid")
echo "Idle TLS connections: $idle to each, resident memory per connection"
for t in "nginx $NG $ngw" "syncgate $SG $sgp"; do
	set -- $t
	before=$(rss "$3")
	node -e '
		const tls = require("node:tls"); const [port, n] = process.argv.slice(1).map(Number); const socks = [];
		(async () => {
			for (let i = 0; i < n; i += 100)
				await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => new Promise((res, rej) => {
					const s = tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false }, res); s.on("error", rej); socks.push(s); })));
			console.log("open"); setTimeout(() => process.exit(0), 4000);
		})();' "$2" "$idle" >"$dir/holder.out" &
	holder=$!
	for _ in $(seq 100); do grep -q open "$dir/holder.out" 2>/dev/null && break; sleep 0.1; done
	sleep 1
	after=$(rss "$3")
	wait $holder || true
	per_conn "$1" "$before" "$after" "$idle" "TLS connection"
	sleep 1
done
