#!/usr/bin/env python3
"""Issue 14's load for bench/cdc_throughput.sh: rows written to the source
PostgreSQL, and cdrflow's store watched until they are there.

  throughput: COUNT new subscribers as fast as PostgreSQL takes them (a
              transaction per 1,000 rows); changes/s from the first write to
              the moment the last one is in cdrflow's reference state.
  latency:    RATE new subscribers per second for SECONDS (a transaction every
              10 ms); for each transaction, the time from its commit returning
              to the store first showing it (sampled every 10 ms).

Each subscriber is a new MSISDN, numbered in the order written, and the
changes apply in that order (one partition): the highest number in the
store says how many are in. It is read off the primary key's index — a
`count(*)` every few milliseconds over a table growing to 200,000 rows
kept a PostgreSQL backend at a third of a core, taken from the system
being measured.
"""
import argparse
import sqlite3
import threading
import time

import psycopg


def connect_store(url):
    """cdrflow's store: postgres://… or sqlite://PATH (read beside the writer: WAL mode)."""
    if url.startswith("sqlite://"):
        return sqlite3.connect(url[len("sqlite://"):], isolation_level=None, check_same_thread=False)
    return psycopg.connect(url, autocommit=True)


def store_count(store, first):
    """How many of the rows numbered from `first` are in: the highest number's place + 1."""
    highest = store.execute("SELECT max(msisdn) FROM subscribers").fetchone()[0]
    return 0 if highest is None else max(0, int(highest[len("+2127"):]) - first + 1)


def insert(source, first, count):
    source.execute(
        "INSERT INTO subscribers SELECT '+2127' || lpad(n::text, 8, '0'), 'C' || (n %% 1000), "
        "'P' || (n %% 5), 'Casablanca', 'active', 'prepaid', DATE '2024-01-01' "
        "FROM generate_series(%s::bigint, %s::bigint) AS n",
        (first, first + count - 1),
    )


def wait_for(store, first, count, timeout):
    started = time.monotonic()
    while store_count(store, first) < count:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"cdrflow's store has {store_count(store, first)} of {count} rows after {timeout} s")
        time.sleep(0.005)
    return time.monotonic()


def throughput(args, source, store):
    base = store_count(store, 0)
    started = time.monotonic()
    for first in range(0, args.count, 1000):
        insert(source, first, min(1000, args.count - first))
    written = time.monotonic()
    done = wait_for(store, 0, base + args.count, 600)
    print(f"{args.count} changes written in {written - started:.2f} s "
          f"({args.count / (written - started):,.0f}/s); all applied after {done - started:.2f} s: "
          f"{args.count / (done - started):,.0f} changes/s end to end")


def latency(args, source, store):
    base = store_count(store, args.first)
    per_tick = max(1, args.rate // 100)
    ticks = args.seconds * 100
    commits = []  # (monotonic time the commit returned, rows written so far)
    samples = []  # (monotonic time, rows in cdrflow's store)
    stop = threading.Event()

    def sample():
        watcher = connect_store(args.store)
        while not stop.is_set():
            samples.append((time.monotonic(), store_count(watcher, args.first) - base))
            time.sleep(0.01)
        watcher.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    for tick in range(ticks):
        due = started + tick * 0.01
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        insert(source, args.first + tick * per_tick, per_tick)
        commits.append((time.monotonic(), (tick + 1) * per_tick))
    offered = ticks * per_tick / (time.monotonic() - started)
    wait_for(store, args.first, base + ticks * per_tick, 120)
    time.sleep(0.05)
    stop.set()
    sampler.join()
    latencies = []
    j = 0
    for committed_at, rows in commits:
        while j < len(samples) and (samples[j][1] < rows or samples[j][0] < committed_at):
            j += 1
        if j == len(samples):
            raise SystemExit("a commit was never seen in the store")
        latencies.append(samples[j][0] - committed_at)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"{ticks * per_tick} changes at {offered:,.0f}/s offered ({args.rate}/s asked): "
          f"commit → in cdrflow's store p50 {pick(0.5):.0f} ms, p90 {pick(0.9):.0f} ms, "
          f"p99 {pick(0.99):.0f} ms, max {latencies[-1] * 1000:.0f} ms (sampled every 10 ms)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["throughput", "latency"])
    parser.add_argument("--source", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--first", type=int, default=50_000_000)
    args = parser.parse_args()
    with psycopg.connect(args.source, autocommit=True) as source:
        store = connect_store(args.store)
        (throughput if args.mode == "throughput" else latency)(args, source, store)
        store.close()


if __name__ == "__main__":
    main()
