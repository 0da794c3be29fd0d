#!/usr/bin/env bash
# Issue 3's benchmark: generator → broker (Tansu) → `cdrflow process --from kafka`
# → PostgreSQL.
#   1. sustained throughput of one consumer process over 1,000,000 preloaded CDRs;
#   2. end-to-end latency (producer timestamp → commit visible in PostgreSQL)
#      at a fixed offered load of 50,000 CDR/s for 20 s.
#
#   bench/kafka_throughput.sh            (needs tansu on PATH, PostgreSQL on 127.0.0.1:5432)
#   CDRFLOW_BIN=/path/to/cdrflow bench/kafka_throughput.sh   (another build, for before/after)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${CDRFLOW_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
fi
bin=${CDRFLOW_BIN:-$here/target/release/cdrflow}
port=${PORT:-29092}
bootstrap="127.0.0.1:$port"
count=${COUNT:-500000}     # per topic
rate=${RATE:-50000}        # total offered load in phase 2

# A fresh in-memory broker per phase: Tansu's memory storage still holding
# phase 1's million records made phase 2's latency tail several times longer.
fresh_broker() {
  [ -n "${broker:-}" ] && { kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null || true; }
  tansu broker --storage-engine memory://tansu/ --listener-url "tcp://$bootstrap" --advertised-listener-url "tcp://$bootstrap" >/dev/null 2>&1 &
  broker=$!
  sleep 1
}
trap 'kill $broker 2>/dev/null' EXIT
fresh_broker

fresh_db() {
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
  echo "postgres://postgres@127.0.0.1:5432/$1"
}
export CDRFLOW_LOG=warn

echo "== 1. throughput: $((2 * count)) preloaded CDRs, one consumer process =="
store=$(fresh_db cdrflow_bench_tp)
for f in cdr-data cdr-voice; do
  "$bin" generate --to kafka --bootstrap "$bootstrap" --format "$f" --count "$count" --seed 7 --partitions 6 &
done
wait %2 %3 2>/dev/null || wait
/usr/bin/time -f "consumer: wall %e s, peak RSS %M KB" \
  "$bin" --store "$store" process --from kafka --bootstrap "$bootstrap" --idle-exit-secs 3 --no-dlq

echo "== 2. latency at $rate CDR/s offered for $((2 * count / rate)) s =="
fresh_broker
store=$(fresh_db cdrflow_bench_lat)
"$bin" generate --to kafka --bootstrap "$bootstrap" --topic-data lat_data --topic-voice lat_voice --count 0 --partitions 6
"$bin" --store "$store" process --from kafka --bootstrap "$bootstrap" --topics lat_data,lat_voice \
  --group latency --idle-exit-secs 5 --no-dlq &
consumer=$!
sleep 4
for f in cdr-data cdr-voice; do
  "$bin" generate --to kafka --bootstrap "$bootstrap" --topic-data lat_data --topic-voice lat_voice \
    --format "$f" --count "$count" --seed 8 --rate $((rate / 2)) &
done
wait $consumer
