#!/usr/bin/env bash
# Issue 13's billing figure: `cdrflow bill` over about 1,000,000 rated records (1,021,700 generated, 2% without a rate) of
# 100,000 customers (seed 001's network, `generate --profile ma`, every
# subscriber made postpaid so every record is billable; 27–29 March 2024,
# in period 2024-03 for every bill-cycle day),
# in SQLite. The records are processed once; each run starts from a copy
# of that store and times, in order:
#   draft      bill --period 2024-03             (every invoice computed and written)
#   again      bill --period 2024-03             (nothing new: nothing written)
#   finalise   bill --period 2024-03 --finalise  (numbered and rewritten)
# and then, from a fresh copy,
#   issue      bill --period 2024-03 --finalise  (computed, numbered, written in one step)
#
#   bench/billing_throughput.sh [WORKDIR] [RUNS]   (defaults /tmp/cdrflow-billing-bench, 3)
#
# Needs GNU time (/usr/bin/time).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/cdrflow-billing-bench}
runs=${2:-3}
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/cdrflow"
cli=("$bin" --default-country-code 212 --catalogue "$here/config/catalogue.toml" --default-plan prepaid-basic)
if [ ! -s "$work/rated-store/cdrflow.db" ]; then
  rm -rf "$work" && mkdir -p "$work"
  "$bin" generate --profile ma --format telecom-events --count "${count:-1021700}" --subscribers 100000 \
    --days 3 --start 2024-03-27 --seed 13 --reference-dir "$work/ref" --output "$work/traffic.jsonl"
  sed -i 's/,prepaid,/,postpaid,/' "$work/ref/subscribers.csv"
  for kind in subscribers customers cells; do
    "${cli[@]}" --data-dir "$work/rated-store" reference load "$kind" "$work/ref/$kind.csv" > /dev/null
  done
  "${cli[@]}" --data-dir "$work/rated-store" process --no-metrics "$work/traffic.jsonl" 2>&1 | grep -F "records in"
fi
for run in $(seq 1 "$runs"); do
  rm -rf "$work/store" && cp -r "$work/rated-store" "$work/store"
  for step in draft again finalise; do
    extra=()
    if [ "$step" = finalise ]; then extra=(--finalise); fi
    /usr/bin/time -f "$step: wall %e s, user %U s, peak RSS %M KB" \
      "${cli[@]}" --data-dir "$work/store" bill --period 2024-03 "${extra[@]}" 2>&1 | grep -v "^  "
  done
  rm -rf "$work/store" && cp -r "$work/rated-store" "$work/store"
  /usr/bin/time -f "issue: wall %e s, user %U s, peak RSS %M KB" \
    "${cli[@]}" --data-dir "$work/store" bill --period 2024-03 --finalise 2>&1 | grep -v "^  "
done
