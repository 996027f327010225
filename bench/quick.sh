#!/usr/bin/env bash
# A first, rough measurement of the hit and pass paths (the full benchmark is issue 3):
# sidecache pinned to CPU 0, wrk (64 connections, 8 s) on CPU 1, a 2 KiB page, loopback only.
# Prints requests/s and sidecache's CPU time per request (from /proc/PID/stat).
# Needs wrk (apt-get install wrk) and sidecache on PATH (scripts/demo or pip install .).
set -euo pipefail
cd "$(dirname "$0")"
UP=${UP:-15099} PX=${PX:-18090} SECONDS_EACH=${SECONDS_EACH:-8}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
python3 upstream.py $UP 2048 & up_pid=$!
# The embedded default's rule with a 1 h ttl and no access log (as before: --log-level no
# longer silences it, [server] access_log does).
config=$(mktemp --suffix .toml)
printf '[server]\naccess_log = false\n[caches.default]\nttl = "1h"\n[[rules]]\nname = "anonymous-reads"\n' \
    > "$config"
taskset -c 0 sidecache --config "$config" --upstream http://127.0.0.1:$UP --listen 127.0.0.1:$PX \
    --log-level WARNING & px_pid=$!
trap 'kill $px_pid $up_pid 2>/dev/null; rm -f "$config"' EXIT
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PX/page && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' /proc/$px_pid/stat; }
run() {  # name, extra wrk args
    local before after requests
    before=$(ticks)
    out=$(taskset -c 1 wrk -t1 -c64 -d"${SECONDS_EACH}s" "${@:2}" http://127.0.0.1:$PX/page)
    after=$(ticks)
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    printf '%-5s %8s req/s  %6.1f µs CPU/request  mean latency %s\n' "$1" \
        "$(echo "$out" | awk '/Requests\/sec/ {print int($2)}')" \
        "$(echo "($after - $before) * 10000 / $requests" | bc -l)" \
        "$(echo "$out" | awk '/Latency/ {print $2}')"
}
run hit
run pass -H 'Cookie: remember_token=x'
