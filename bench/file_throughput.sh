#!/usr/bin/env bash
# Issue 2's benchmark: 2,000,000 seed-000 CDRs (half data, half voice, 20,000
# subscribers, 3 days) through `cdrflow process` into a fresh SQLite store,
# against DuckDB computing the same summaries from the same files.
#
#   bench/file_throughput.sh [WORKDIR]      (default /tmp/cdrflow-bench)
#
# Needs: python3 with duckdb (pip install duckdb), GNU time (/usr/bin/time).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/cdrflow-bench}
shared=${CDRFLOW_SHARED:-$here/../shared}
mkdir -p "$work"
if [ ! -s "$work/perf/voice.jsonl" ]; then
  python3 "$shared/bench/gen_perf.py" "$work/perf" 2000000 20000 3
fi
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/cdrflow"

echo "== cdrflow process (dedup + exactly-once commits on) =="
for run in 1 2 3; do
  rm -rf "$work/store"
  /usr/bin/time -f "wall %e s, peak RSS %M KB" "$bin" --data-dir "$work/store" process \
    "$work/perf/data.jsonl" "$work/perf/voice.jsonl" 2>&1 | tail -2
done
"$bin" --data-dir "$work/store" export summaries --format csv > "$work/cdrflow.csv"

echo "== DuckDB peer =="
for run in 1 2 3; do
  /usr/bin/time -f "wall %e s, peak RSS %M KB" python3 "$shared/bench/duckdb_peer.py" "$work/perf" "$work/duckdb.csv" 2>&1 | tail -1
done

echo "== same summaries? =="
python3 "$here/bench/compare_summaries.py" "$work/cdrflow.csv" "$work/duckdb.csv"
