//! `cdrflow bill` (issue 13) on seed 001's network, in SQLite and in
//! PostgreSQL: every invoice's figures equal a computation made here from
//! the exported rated records and the reference files (no pipeline code);
//! re-runs write the same bytes; finalised numbers have no gaps; records
//! that arrive after their period's invoice was finalised land on the next
//! invoice as prior-period usage, and no record is billed twice; a voided
//! invoice's records are billed again by the next run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{cdrflow, postgres_database, run_ok, temp_dir};

/// Decimal text as micro-units, computed here.
fn micros(text: &str) -> i128 {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    let value = units.parse::<i128>().unwrap() * 1_000_000
        + format!("{fraction:0<6}").parse::<i128>().unwrap();
    if negative {
        -value
    } else {
        value
    }
}

/// `n / d` micro-units rounded half up to cents, in micro-units.
fn cents_half_up(n: i128, d: i128) -> i128 {
    let step = d * 10_000;
    (n + step / 2).div_euclid(step) * 10_000
}

fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{line}");
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` (Howard Hinnant's algorithm).
fn day_number(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

struct Network {
    /// customer → (bill-cycle day, its postpaid numbers).
    postpaid: BTreeMap<String, (i64, Vec<String>)>,
    prepaid_numbers: BTreeSet<String>,
}

fn network(reference: &Path) -> Network {
    let read = |name: &str| std::fs::read_to_string(reference.join(name)).unwrap();
    let mut cycle = BTreeMap::new();
    for row in csv_rows(&read("customers.csv")) {
        cycle.insert(
            row["customer_id"].clone(),
            row["bill_cycle_day"].parse().unwrap(),
        );
    }
    let mut network = Network {
        postpaid: BTreeMap::new(),
        prepaid_numbers: BTreeSet::new(),
    };
    for row in csv_rows(&read("subscribers.csv")) {
        assert_eq!(row["status"], "active");
        assert!(row["activation_date"].as_str() < "2024-01-01");
        if row["payment"] == "postpaid" {
            let customer = row["customer_id"].clone();
            network
                .postpaid
                .entry(customer.clone())
                .or_insert((cycle[&customer], Vec::new()))
                .1
                .push(row["msisdn"].clone());
        } else {
            network.prepaid_numbers.insert(row["msisdn"].clone());
        }
    }
    network
}

/// What the customer's invoice for 2024-03 must say, from `records`
/// (cost, kind, class, period) not billed before: config/catalogue.toml's
/// monthly fee is 49.00 until 2024-04-01 and 59.00 from then, prorated by
/// day over the customer's period; 20% tax on the exact sum; half up.
fn expected(cycle: i64, numbers: usize, records: &[(i128, String, String, String)]) -> [i128; 7] {
    let (start, end) = (day_number(2024, 3, cycle), day_number(2024, 4, cycle));
    let april = day_number(2024, 4, 1);
    let days = end - start;
    let mut lines: BTreeMap<(String, String, String), i128> = BTreeMap::new();
    for (cost, kind, class, period) in records {
        *lines
            .entry((period.clone(), kind.clone(), class.clone()))
            .or_default() += cost;
    }
    let [mut voice, mut sms, mut data, mut other] = [0i128; 4];
    let mut exact_times_days: i128 = 0;
    for ((_, kind, _), sum) in &lines {
        exact_times_days += sum * i128::from(days);
        let rounded = cents_half_up(*sum, 1);
        match kind.as_str() {
            "voice" => voice += rounded,
            "sms" => sms += rounded,
            "data" => data += rounded,
            "activation" | "recharge" => other += rounded,
            kind => panic!("a {kind} record"),
        }
    }
    let (days_at_49, days_at_59) = ((april - start).min(days), (end - april).max(0));
    let mut recurring = 0;
    for _ in 0..numbers {
        for (fee, n) in [(49_000_000i128, days_at_49), (59_000_000, days_at_59)] {
            if n > 0 {
                recurring += cents_half_up(fee * i128::from(n), i128::from(days));
                exact_times_days += fee * i128::from(n);
            }
        }
    }
    let tax = cents_half_up(exact_times_days * 20, 100 * i128::from(days));
    let subtotal = voice + sms + data + other + recurring;
    [voice, sms, data, other, recurring, tax, subtotal + tax]
}

fn billing_matches(name: &str, store_args: &[&str]) {
    let dir = temp_dir(name);
    let reference = dir.join("reference");
    let (first, late) = (dir.join("first.jsonl"), dir.join("late.jsonl"));
    // Three days around the turn of the month (cycle days 1–28 cut the
    // traffic into two periods); every other record held back, to come
    // after March was finalised.
    let all = dir.join("all.jsonl");
    run_ok(
        cdrflow()
            .args(["generate", "--profile", "ma", "--format", "telecom-events"])
            .args(["--count", "24000", "--seed", "5", "--subscribers", "300"])
            .args(["--days", "3", "--start", "2024-03-30"])
            .args(["--faults", "bad=0.01,dup=0.02"])
            .arg("--output")
            .arg(&all)
            .arg("--reference-dir")
            .arg(&reference),
    );
    let text = std::fs::read_to_string(&all).unwrap();
    let (mut now, mut later) = (String::new(), String::new());
    for (i, line) in text.lines().enumerate() {
        let part = if i % 2 == 0 { &mut now } else { &mut later };
        part.push_str(line);
        part.push('\n');
    }
    std::fs::write(&first, now).unwrap();
    std::fs::write(&late, later).unwrap();
    let catalogue = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalogue.toml");
    let cli = || {
        let mut cmd = cdrflow();
        cmd.args(store_args)
            .args(["--default-country-code", "212", "--catalogue", catalogue])
            .args(["--default-plan", "prepaid-basic"]);
        cmd
    };
    for kind in ["subscribers", "customers", "cells"] {
        run_ok(
            cli()
                .args(["reference", "load", kind])
                .arg(reference.join(format!("{kind}.csv"))),
        );
    }
    let stdout = |cmd: &mut std::process::Command| String::from_utf8(run_ok(cmd).stdout).unwrap();
    let invoices = |period: &str| stdout(cli().args(["export", "invoices", "--period", period]));
    let documents = |period: &str| {
        stdout(cli().args([
            "export", "invoices", "--format", "jsonl", "--period", period,
        ]))
    };
    let rated = || csv_rows(&stdout(cli().args(["export", "rated"])));
    let network = network(&reference);

    run_ok(cli().args(["process"]).arg(&first));
    run_ok(cli().args(["bill", "--period", "2024-03"]));
    let drafts = documents("2024-03");
    run_ok(cli().args(["bill", "--period", "2024-03"]));
    assert_eq!(documents("2024-03"), drafts, "a second run changed a draft");

    // Every customer's figures, computed here.
    let by_customer = |rows: &[BTreeMap<String, String>], up_to: &str| {
        let mut out: BTreeMap<String, Vec<(i128, String, String, String)>> = BTreeMap::new();
        for r in rows {
            if network.prepaid_numbers.contains(&r["msisdn"])
                || r["billing_period"].as_str() > up_to
            {
                continue;
            }
            out.entry(r["customer_id"].clone()).or_default().push((
                micros(&r["cost"]),
                r["kind"].clone(),
                r["destination_class"].clone(),
                r["billing_period"].clone(),
            ));
        }
        out
    };
    let first_rated = rated();
    let usage = by_customer(&first_rated, "2024-03");
    let check = |csv: &str| {
        let rows = csv_rows(csv);
        assert_eq!(
            rows.len(),
            network.postpaid.len(),
            "an invoice per postpaid customer"
        );
        for row in &rows {
            let (cycle, numbers) = &network.postpaid[&row["customer_id"]];
            let records = usage
                .get(&row["customer_id"])
                .map_or(&[][..], Vec::as_slice);
            let want = expected(*cycle, numbers.len(), records);
            let got = ["voice", "sms", "data", "other", "recurring", "tax", "total"]
                .map(|c| micros(&row[c]));
            assert_eq!(got, want, "{row:?}");
            assert_eq!(row["currency"], "MAD");
        }
    };
    check(&invoices("2024-03"));

    // Finalise: gapless numbers, the same figures, then nothing changes.
    run_ok(cli().args(["bill", "--period", "2024-03", "--finalise"]));
    let finalised = invoices("2024-03");
    check(&finalised);
    let numbers: BTreeSet<String> = csv_rows(&finalised)
        .iter()
        .map(|r| r["invoice_number"].clone())
        .collect();
    let gapless: BTreeSet<String> = (1..=network.postpaid.len())
        .map(|n| format!("INV-{n:08}"))
        .collect();
    assert_eq!(numbers, gapless);
    let issued = documents("2024-03");
    assert!(issued.contains("\"status\":\"finalised\""));
    run_ok(cli().args(["bill", "--period", "2024-03", "--finalise"]));
    assert_eq!(documents("2024-03"), issued, "a finalised invoice changed");

    // Late records of March after finalisation: on April's invoices, once.
    run_ok(cli().args(["process"]).arg(&late));
    run_ok(cli().args(["bill", "--period", "2024-03"]));
    assert_eq!(
        documents("2024-03"),
        issued,
        "late records edited an issued invoice"
    );
    run_ok(cli().args(["bill", "--period", "2024-04", "--finalise"]));
    let april_documents = documents("2024-04");
    assert!(april_documents.contains("\"category\":\"prior_period_usage\""));
    let all_rated = rated();
    let billed: i128 = ["2024-03", "2024-04"]
        .iter()
        .flat_map(|p| csv_rows(&invoices(p)))
        .map(|r| micros(&r["voice"]) + micros(&r["sms"]) + micros(&r["data"]) + micros(&r["other"]))
        .sum();
    let postpaid_cost: i128 = by_customer(&all_rated, "2024-04")
        .values()
        .flatten()
        .map(|(cost, ..)| cost)
        .sum();
    assert_eq!(
        billed, postpaid_cost,
        "every postpaid record billed exactly once"
    );
    let april_numbers: BTreeSet<String> = csv_rows(&invoices("2024-04"))
        .iter()
        .map(|r| r["invoice_number"].clone())
        .collect();
    let next: BTreeSet<String> = (network.postpaid.len() + 1..=2 * network.postpaid.len())
        .map(|n| format!("INV-{n:08}"))
        .collect();
    assert_eq!(april_numbers, next);

    // Void one: its records go on the period's next revision.
    let voided = csv_rows(&finalised)
        .into_iter()
        .max_by_key(|r| micros(&r["voice"]))
        .unwrap();
    run_ok(cli().args(["bill", "--void", &voided["invoice_number"]]));
    run_ok(cli().args(["bill", "--period", "2024-03"]));
    let rows = csv_rows(&invoices("2024-03"));
    let revisions: Vec<&BTreeMap<String, String>> = rows
        .iter()
        .filter(|r| r["customer_id"] == voided["customer_id"])
        .collect();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert_eq!(revisions[0]["status"], "void");
    assert_eq!(revisions[1]["status"], "draft");
    assert_eq!(revisions[1]["voice"], voided["voice"]);
    assert_eq!(revisions[1]["total"], voided["total"]);
}

#[test]
fn invoices_in_sqlite_match_a_computation_made_outside_the_pipeline() {
    let dir = temp_dir("billing-sqlite-store");
    billing_matches("billing-sqlite", &["--data-dir", dir.to_str().unwrap()]);
}

#[test]
fn invoices_in_postgres_match_a_computation_made_outside_the_pipeline() {
    let url = postgres_database("cdrflow_billing");
    billing_matches("billing-postgres", &["--store", &url]);
}
