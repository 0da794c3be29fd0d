#!/usr/bin/env bash
# Issue 14's benchmark: rows changed in PostgreSQL → `cdrflow cdc capture` →
# Kafka (Tansu) → `cdrflow process --cdc` → reference state in PostgreSQL.
#   1. throughput: COUNT new subscribers written as fast as PostgreSQL takes
#      them; changes/s from the first write to the last one applied;
#   2. latency at RATE changes/s for SECONDS: source commit → visible in
#      cdrflow's store, p50/p90/p99.
#
#   bench/cdc_throughput.sh     (needs tansu on PATH, PostgreSQL with wal_level=logical
#                                on 127.0.0.1:5432, python3 with psycopg: made in target/tools-venv)
#   CDRFLOW_BIN=/path/to/cdrflow bench/cdc_throughput.sh   (another build, for before/after)
#   STORE=sqlite bench/cdc_throughput.sh   (the consumer on the embedded store; default postgres)
#   CONSUMER_ARGS='--commit-interval-ms 200' bench/cdc_throughput.sh   (more flags for the consumer)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${CDRFLOW_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
fi
bin=${CDRFLOW_BIN:-$here/target/release/cdrflow}
venv=$here/target/tools-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import psycopg" 2>/dev/null || "$venv/bin/pip" install --quiet "psycopg[binary]"
port=${PORT:-29192}
bootstrap="127.0.0.1:$port"
count=${COUNT:-200000}
rate=${RATE:-5000}
seconds=${SECONDS_OF_LOAD:-20}
work=$(mktemp -d)
export CDRFLOW_LOG=warn

pids=()
drop_slot() {
  psql -qAt -h 127.0.0.1 -U postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'cdrflow_bench'" >/dev/null
}
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; drop_slot; rm -rf "$work"' EXIT

fresh_db() {
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
  echo "postgres://postgres@127.0.0.1:5432/$1"
}

run_phase() {
  drop_slot
  source_db=$(fresh_db cdrflow_bench_cdc_source)
  if [ "${STORE:-postgres}" = sqlite ]; then
    store="sqlite://$work/store-$1.db"
  else
    store=$(fresh_db cdrflow_bench_cdc_store)
  fi
  psql -q -d "$source_db" -c "CREATE TABLE subscribers (msisdn text PRIMARY KEY, customer_id text NOT NULL,
    plan_id text NOT NULL, region text, status text, payment text, activation_date date)"
  tansu broker --storage-engine memory://tansu/ --listener-url "tcp://$bootstrap" --advertised-listener-url "tcp://$bootstrap" >/dev/null 2>&1 &
  pids+=($!)
  sleep 1
  "$bin" --data-dir "$work/capture-$1" cdc capture --source "$source_db" --slot cdrflow_bench \
    --tables public.subscribers --bootstrap "$bootstrap" &
  pids+=($!)
  "$bin" generate --to kafka --bootstrap "$bootstrap" --count 0 >/dev/null
  sleep 3
  "$bin" --store "$store" --default-country-code 212 process --from kafka --bootstrap "$bootstrap" \
    --topics cdr_voice --cdc --no-dlq ${CONSUMER_ARGS:-} &
  pids+=($!)
  sleep 5
  "$venv/bin/python" "$here/bench/cdc_load.py" "$1" --source "$source_db" --store "$store" \
    --count "$count" --rate "$rate" --seconds "$seconds"
  kill "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}

echo "== 1. throughput: $count row changes =="
run_phase throughput
echo "== 2. latency at $rate changes/s for $seconds s =="
run_phase latency
