#!/usr/bin/env python3
"""Compares two summary CSVs (cdrflow's export and the DuckDB peer's) row by row.
Usage: compare_summaries.py OURS.csv PEER.csv
Keys: kind,msisdn,date,type. Counters must match exactly; costs must match to
6 decimals (the peer prints some sums as binary floats, e.g. 10.271215999999999,
so its side is rounded to 6 places before comparing)."""
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
diff = [k for k in ours.keys() & peer.keys() if ours[k] != peer[k]]
print(f"rows: ours {len(ours)}, peer {len(peer)}; missing {len(missing)}, extra {len(extra)}, different {len(diff)}")
for k in list(diff)[:5]:
    print("  differs:", k, ours[k], peer[k])
sys.exit(1 if missing or extra or diff else 0)
