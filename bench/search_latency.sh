#!/usr/bin/env bash
# Issue 14's search indexer: GET /search latency over 1,000,000
# subscribers, 200,000 customers and 500 plans (bench/search_load.py
# generates them), on the embedded SQLite store (FTS5) or PostgreSQL
# (STORE=postgres: a tsvector under a GIN index). 2,000 searches one after
# another over one connection, in a fixed mix of name words, number
# prefixes, plan words and fee ranges; the target is p99 under 10 ms.
#
#   bench/search_latency.sh [WORKDIR]   (default /tmp/cdrflow-search-bench)
#   STORE=postgres bench/search_latency.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/cdrflow-search-bench}
port=${PORT:-18091}
count=${COUNT:-2000}
mkdir -p "$work"
cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p cdrflow
bin="$here/target/release/cdrflow"
store=()
if [ "${STORE:-sqlite}" = postgres ]; then
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS cdrflow_search_bench" \
    -c "CREATE DATABASE cdrflow_search_bench"
  store=(--store postgres://postgres@127.0.0.1/cdrflow_search_bench)
else
  rm -rf "$work/store"
fi
cdrflow() { "$bin" --data-dir "$work/store" "${store[@]}" --default-country-code 212 "$@"; }
[ -s "$work/subscribers.csv" ] || python3 "$here/bench/search_load.py" generate "$work"
for kind in customers plans subscribers; do
  started=$(date +%s.%N)
  cdrflow reference load "$kind" "$work/$kind.csv" >/dev/null
  echo "loaded $kind in $(echo "$(date +%s.%N) - $started" | bc) s"
done
password=bench-password-1
printf '%s\n' "$password" | cdrflow user add bench 2>/dev/null
# Started directly, not through the function: $! must be the server itself.
"$bin" --data-dir "$work/store" "${store[@]}" --default-country-code 212 \
  serve --listen "127.0.0.1:$port" --no-metrics 2>/dev/null &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 1 100); do curl -s "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
kill -0 $server   # still running: the port was free
python3 "$here/bench/search_load.py" query "$port" "bench:$password" 200 >/dev/null  # warm up
python3 "$here/bench/search_load.py" query "$port" "bench:$password" "$count"
