#!/usr/bin/env bash
# Issue 12's file-job comparison: 2,000,000 records of seed 001's network
# (`generate --profile ma`, 20,000 subscribers, 3 days of March 2024)
# through `cdrflow process` into a fresh SQLite store, priced three ways,
# the runs alternated:
#   flat       the flat tariff (seed 000's), no rated records (its default)
#   flat+rated the flat tariff with a rated record per record
#   catalogue  config/catalogue.toml on each subscriber's plan (reference
#              data loaded beforehand), rated records, allowances, balances
#   catalogue+lake  the same with the Parquet lake on (`--lake`): mediated
#              and rated records to Parquet, rated records not in the store
#   flat+lake  the flat tariff with the lake on
#
#   bench/rating_throughput.sh [WORKDIR] [RUNS] [BATCH]
#   (defaults /tmp/cdrflow-bench, 3, and `process`'s own --batch-size)
#
# Needs GNU time (/usr/bin/time).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/cdrflow-bench}
runs=${2:-3}
batch=(${3:+--batch-size "$3"})
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/cdrflow"
data="$work/ma"
if [ ! -s "$data/traffic.jsonl" ]; then
  mkdir -p "$data"
  "$bin" generate --profile ma --format telecom-events --count 2000000 --subscribers 20000 \
    --days 3 --start 2024-03-04 --seed 3 --reference-dir "$data/ref" --output "$data/traffic.jsonl"
fi
# A store with the reference data loaded, copied before each catalogue run.
rm -rf "$work/reference-store"
for kind in subscribers customers cells; do
  "$bin" --data-dir "$work/reference-store" --default-country-code 212 \
    reference load "$kind" "$data/ref/$kind.csv" > /dev/null
done
common=(--default-country-code 212)
catalogue=(--catalogue "$here/config/catalogue.toml" --default-plan prepaid-basic)
for run in $(seq 1 "$runs"); do
  for setup in flat flat+rated catalogue catalogue+lake flat+lake; do
    rm -rf "$work/store" "$work/lake"
    case $setup in
      flat) extra=() ;;
      flat+rated) extra=(--rated-records on) ;;
      catalogue) cp -r "$work/reference-store" "$work/store"; extra=("${catalogue[@]}") ;;
      catalogue+lake) cp -r "$work/reference-store" "$work/store"
        extra=("${catalogue[@]}" --lake "$work/lake" --rated-records off) ;;
      flat+lake) extra=(--lake "$work/lake") ;;
    esac
    /usr/bin/time -f "$setup: wall %e s, user %U s, peak RSS %M KB" "$bin" --data-dir "$work/store" \
      "${common[@]}" "${extra[@]}" process --no-metrics "${batch[@]}" "$data/traffic.jsonl" 2>&1 | grep -F -e "$setup: wall" -e "records in"
  done
done
