#!/usr/bin/env bash
# Issue 11's benchmark: 2,000,000 seed-003 events (20,000 subscribers, 24 h)
# through `cdrflow process` with everything on (usage summaries, windows,
# late events, anomaly rules, dedup, exactly-once commits) into a fresh SQLite
# store, alternated with DuckDB doing the same as one batch job
# (../shared/bench/duckdb_analytics_peer.py: raw events, windows, daily usage,
# the four seed 003 rules).
#
#   bench/analytics_throughput.sh [WORKDIR] [RUNS]   (default /tmp/cdrflow-bench, 3)
#
# Needs: python3 with duckdb (pip install duckdb; set PYTHON to a venv's),
# GNU time (/usr/bin/time).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/cdrflow-bench}
runs=${2:-3}
python=${PYTHON:-python3}
shared=${CDRFLOW_SHARED:-$here/../shared}
mkdir -p "$work/events"
events="$work/events/events.jsonl"
if [ ! -s "$events" ]; then
  python3 "$shared/bench/gen_events.py" "$events" 2000000 20000
fi
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/cdrflow"

for run in $(seq 1 "$runs"); do
  rm -rf "$work/events/store"
  /usr/bin/time -f "cdrflow: wall %e s, user %U s, peak RSS %M KB" "$bin" --data-dir "$work/events/store" \
    process "$events" 2>&1 | grep -E "^cdrflow:|records in"
  rm -f "$work/events/peer.db"
  /usr/bin/time -f "duckdb:  wall %e s, user %U s, peak RSS %M KB" "$python" \
    "$shared/bench/duckdb_analytics_peer.py" "$events" "$work/events/peer.db" 2>&1 | tail -1
done
"$bin" --data-dir "$work/events/store" export windows | wc -l | sed 's/^/window rows + header: /'
