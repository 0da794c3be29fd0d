#!/usr/bin/env python3
"""Issue 14's search benchmark, two parts (bench/search_latency.sh runs both).

`generate DIR`: reference files for one operator — 1,000,000 subscribers
(Moroccan mobile numbers), 200,000 customers named from a vocabulary with
accents (so a name word matches hundreds to thousands of customers), 500
plans with descriptions and fees. Deterministic (seeded).

`query PORT USER:PASSWORD N`: N searches, one at a time over one kept-alive
connection, in a fixed mix — a customer's one or two name words (folded or
not), a number prefix of 4 to 9 digits in national or international
spelling, plan words, a plan fee range — and prints the latency
percentiles and how many results came back.
"""
import base64
import http.client
import random
import sys
import time
import urllib.parse

FIRST = ["Mohamed", "Fatima", "Youssef", "Khadija", "Ahmed", "Aïcha", "Omar", "Zineb",
         "Hamza", "Salma", "Mehdi", "Imane", "Rachid", "Nadia", "Karim", "Hélène",
         "Amine", "Souad", "Anass", "Meryem", "Idriss", "Chloé", "Bilal", "Noémie"]
LAST = ["Alaoui", "Bennani", "El Idrissi", "Tazi", "Berrada", "Chraïbi", "Fassi",
        "Benjelloun", "Lahlou", "Sqalli", "Amrani", "Ouazzani", "Kettani", "Sebti",
        "Zniber", "Guessous", "Bouzoubaa", "Mernissi", "Lamrani", "Filali"]
TRADES = ["Hôtel", "Épicerie", "Café", "Garage", "Pharmacie", "Riad", "Boulangerie", "Atelier"]
CITIES = ["Fès", "Rabat", "Casablanca", "Marrakech", "Tanger", "Agadir", "Meknès", "Oujda"]
WORDS = ["illimités", "appels", "données", "nuit", "week-end", "international",
         "roaming", "famille", "jeunes", "entreprise", "fibre", "mobile"]


def customer_name(rng, i):
    if i % 10 == 0:
        return f"{rng.choice(TRADES)} {rng.choice(LAST)} {rng.choice(CITIES)}"
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def generate(out):
    rng = random.Random(14)
    with open(f"{out}/customers.csv", "w") as f:
        f.write("customer_id,name,billing_country,bill_cycle_day\n")
        for i in range(200_000):
            f.write(f"C{i:06d},{customer_name(rng, i)},MA,{1 + i % 28}\n")
    with open(f"{out}/plans.csv", "w") as f:
        f.write("plan_id,name,description,monthly_fee,currency\n")
        for i in range(500):
            words = " ".join(rng.sample(WORDS, 3))
            f.write(f"P{i:03d},Forfait {rng.choice(CITIES)} {i},\"{words}\",{rng.randint(10, 600)}.{rng.randint(0, 99):02d},MAD\n")
    with open(f"{out}/subscribers.csv", "w") as f:
        f.write("msisdn,customer_id,plan_id,region,payment\n")
        numbers = rng.sample(range(100_000_000), 1_000_000)
        for i, n in enumerate(numbers):
            prefix = "06" if i % 3 else "07"
            f.write(f"{prefix}{n:08d},C{i % 200_000:06d},P{i % 500:03d},{rng.choice(CITIES)},"
                    f"{'prepaid' if i % 2 else 'postpaid'}\n")


KINDS = ["name words", "number prefix", "plan words", "fee range"]


def queries(rng, n):
    for i in range(n):
        pick = i % 4
        if pick == 0:
            words = [rng.choice(FIRST), rng.choice(LAST)][: rng.randint(1, 2)]
            if rng.random() < 0.5:
                words = [w.lower() for w in words]
            yield KINDS[0], {"q": " ".join(words)}
        elif pick == 1:
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 7)))
            yield KINDS[1], {"q": rng.choice(["06", "07", "+212 6", "002127"]) + digits}
        elif pick == 2:
            yield KINDS[2], {"q": " ".join(rng.sample(WORDS, rng.randint(1, 2))), "kind": "plans"}
        else:
            low = rng.randint(10, 500)
            yield KINDS[3], {"min_fee": f"{low}.00", "max_fee": f"{low + 50}.00", "kind": "plans"}


def query(port, credentials, n):
    auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", int(port))
    rng = random.Random(7)
    latencies, results, by_kind = [], 0, {k: [] for k in KINDS}
    for kind, params in queries(rng, int(n)):
        path = "/search?" + urllib.parse.urlencode(params)
        started = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": auth})
        response = conn.getresponse()
        body = response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        by_kind[kind].append(latencies[-1])
        if response.status != 200:
            sys.exit(f"{path}: {response.status} {body[:200]!r}")
        results += body.count(b'"kind"')
    def line(name, values):
        values.sort()
        at = lambda p: values[min(len(values) - 1, int(len(values) * p))]
        return (f"{name}: {len(values)} searches, p50 {at(0.5):.2f} ms, p90 {at(0.9):.2f} ms, "
                f"p99 {at(0.99):.2f} ms, max {values[-1]:.2f} ms")
    print(line("all", latencies) + f", {results} results")
    for kind, values in by_kind.items():
        print("  " + line(kind, values))


if __name__ == "__main__":
    {"generate": generate, "query": query}[sys.argv[1]](*sys.argv[2:])
