#!/usr/bin/env python3
"""Compares two summary CSVs (cdrflow's export and the DuckDB peer's) row by row.
Usage: compare_summaries.py OURS.csv PEER.csv
Keys: kind,msisdn,date,type. Counters must match exactly. Costs are compared
after rounding the peer's to 6 places (it prints some sums as binary floats,
e.g. 10.271215999999999); cost differences are reported, not fatal, because
DuckDB's round() of a float quotient sends some exact halves (2.0124055) down,
where exact half-away-from-zero rounding gives 2.012406."""
import csv, sys
from decimal import Decimal, ROUND_HALF_UP

def load(path):
    rows = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            key = (r["kind"], r["msisdn"], r["date"], r["type"])
            cost = Decimal(r["cost"]).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
            rows[key] = (r["up_bytes"] or "", r["down_bytes"] or "", r["duration_sec"] or "", cost)
    return rows

ours, peer = load(sys.argv[1]), load(sys.argv[2])
missing = peer.keys() - ours.keys()
extra = ours.keys() - peer.keys()
common = ours.keys() & peer.keys()
counters = [k for k in common if ours[k][:3] != peer[k][:3]]
costs = [k for k in common if ours[k][3] != peer[k][3]]
largest = max((abs(ours[k][3] - peer[k][3]) for k in costs), default=0)
print(f"rows: ours {len(ours)}, peer {len(peer)}; missing {len(missing)}, extra {len(extra)}, "
      f"counter mismatches {len(counters)}, cost differences {len(costs)} (largest {largest})")
for k in (counters + costs)[:5]:
    print("  differs:", k, ours[k], peer[k])
sys.exit(1 if missing or extra or counters else 0)
