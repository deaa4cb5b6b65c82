#!/usr/bin/env bash
# HTTP relay benchmark: wrk against the same backend direct, through nginx and through
# syncgate (one worker each, upstream keep-alive), in one run; prints req/s and p99 and the
# ratios. Not a test. Usage: tests/bench/http.sh [seconds] [connections]
# The backend is an nginx serving a small JSON body, so that the proxies are the bottleneck.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
secs=${1:-10}
conns=${2:-50}
bin=${SYNCGATE_BIN:-build/syncgate}
command -v wrk >/dev/null && command -v nginx >/dev/null || scripts/deps.sh test
[ -x "$bin" ] || make build >/dev/null
dir=$(mktemp -d)
trap 'kill $(cat "$dir"/*.pid 2>/dev/null) 2>/dev/null; sleep 0.3; rm -rf "$dir"' EXIT
BE=18301 NG=18302 SG=18303

cat >"$dir/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $dir/proxy.nginx.pid; error_log $dir/proxy.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream be { server 127.0.0.1:$BE; keepalive 256; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto http; } } }
CONF
cat >"$dir/syncgate.conf" <<CONF
[syncgate]
listen = 127.0.0.1:$SG
upstream = http://127.0.0.1:$BE
workers = 1
access_log = off                 ; as the nginx proxy above (access_log off)
[app:*]
user_sync = off
conversation_sync = off
[limits]
max_connections = 9000
CONF
start_json_backend "$BE"
start_proxies "$bin"

path=/v1/bench/users/alice
run() { wrk_at http "$@"; } # name port [extra wrk args]
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v * 1000 } }'; }

echo "HTTP relay benchmark: wrk -t1 -c$conns -d${secs}s GET $path (nproc=$(nproc))"
results=$(run direct $BE; run nginx $NG; run syncgate $SG)
printf '%-10s %12s %10s\n' target req/s p99
while read -r name rps p99; do printf '%-10s %12s %10s\n' "$name" "$rps" "$p99"; done <<<"$results"
ng=$(awk '$1 == "nginx" {print $2}' <<<"$results"); sg=$(awk '$1 == "syncgate" {print $2}' <<<"$results")
ngp=$(to_ms "$(awk '$1 == "nginx" {print $3}' <<<"$results")"); sgp=$(to_ms "$(awk '$1 == "syncgate" {print $3}' <<<"$results")")
awk -v a="$sg" -v b="$ng" -v pa="$sgp" -v pb="$ngp" 'BEGIN { printf "syncgate/nginx: req/s %.2fx, p99 %.2f ms vs %.2f ms (%.2fx)\n", a / b, pa, pb, pa / pb }'

# Clients that close after each request (legacy clients, some health checkers): a new client
# connection per request, while the backend connection should stay pooled.
echo "a new client connection per request (Connection: close):"
results=$(run nginx $NG -H "Connection: close"; run syncgate $SG -H "Connection: close")
printf '%-10s %12s %10s\n' target req/s p99
while read -r name rps p99; do printf '%-10s %12s %10s\n' "$name" "$rps" "$p99"; done <<<"$results"
ng=$(awk '$1 == "nginx" {print $2}' <<<"$results"); sg=$(awk '$1 == "syncgate" {print $2}' <<<"$results")
awk -v a="$sg" -v b="$ng" 'BEGIN { printf "syncgate/nginx: req/s %.2fx\n", a / b }'
