//! `cdrflow bill` (issue 13) on seed 001's network, in SQLite and in
//! PostgreSQL: every invoice's figures equal a computation made here from
//! the exported rated records and the reference files (no pipeline code);
//! re-runs write the same bytes; finalised numbers have no gaps; records
//! that arrive after their period's invoice was finalised land on the next
//! invoice as prior-period usage, and no record is billed twice; a voided
//! invoice's records are billed again by the next run; a re-rating under a
//! corrected catalogue re-prices exactly the records it should, leaves
//! issued invoices as issued and corrects them with credit notes that
//! bring each to the figures computed here at the new prices, and a second
//! re-rating changes nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::browser::{data_attribute, element_text, rendered_dom, table_rows};
use common::{
    add_user, add_user_with, cdrflow, duckdb, micros, micros_text, postgres_database, run_ok,
    serve_on_free_port, temp_dir,
};

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

/// Returns the lake the runs wrote.
fn billing_matches(name: &str, store_args: &[&str]) -> std::path::PathBuf {
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
    let lake = dir.join("lake");
    let bill = |args: &[&str]| {
        let mut cmd = cli();
        cmd.arg("--lake").arg(&lake).arg("bill").args(args);
        run_ok(&mut cmd);
    };
    let stdout = |cmd: &mut std::process::Command| String::from_utf8(run_ok(cmd).stdout).unwrap();
    let invoices = |period: &str| stdout(cli().args(["export", "invoices", "--period", period]));
    let documents = |period: &str| {
        stdout(cli().args([
            "export", "invoices", "--format", "jsonl", "--period", period,
        ]))
    };
    let rated = || csv_rows(&stdout(cli().args(["export", "rated"])));
    let network = network(&reference);
    if let Some(data_dir) = store_args.iter().position(|a| *a == "--data-dir") {
        let copy = Path::new(store_args[data_dir + 1]).join("billing-reference");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(
            reference.join("subscribers.csv"),
            copy.join("subscribers.csv"),
        )
        .unwrap();
    }

    run_ok(cli().arg("--lake").arg(&lake).arg("process").arg(&first));
    bill(&["--period", "2024-03"]);
    let drafts = documents("2024-03");
    bill(&["--period", "2024-03"]);
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
    bill(&["--period", "2024-03", "--finalise"]);
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
    let march_file = lake.join("invoices/period=2024-03/invoices.parquet");
    let parquet = std::fs::read(&march_file).unwrap();
    bill(&["--period", "2024-03", "--finalise"]);
    assert_eq!(documents("2024-03"), issued, "a finalised invoice changed");
    assert!(
        std::fs::read(&march_file).unwrap() == parquet,
        "the lake's invoices changed"
    );

    // Late records of March after finalisation: on April's invoices, once.
    run_ok(cli().arg("--lake").arg(&lake).arg("process").arg(&late));
    bill(&["--period", "2024-03"]);
    assert_eq!(
        documents("2024-03"),
        issued,
        "late records edited an issued invoice"
    );
    bill(&["--period", "2024-04", "--finalise"]);
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

    // The lake's invoices, read by DuckDB: the store's, period by period.
    for period in ["2024-03", "2024-04"] {
        let rows = csv_rows(&invoices(period));
        let total: i128 = rows.iter().map(|r| micros(&r["total"])).sum();
        let tax: i128 = rows.iter().map(|r| micros(&r["tax"])).sum();
        let read = duckdb(&format!(
            "SELECT count(*), sum(total), sum(tax), count(DISTINCT number) FROM read_parquet('{}/invoices/period={period}/*.parquet')",
            lake.display()
        ));
        let cells: Vec<&str> = read[0].split(',').collect();
        assert_eq!(cells[0].parse::<usize>().unwrap(), rows.len(), "{period}");
        assert_eq!(micros(cells[1]), total, "{period}");
        assert_eq!(micros(cells[2]), tax, "{period}");
        assert_eq!(cells[3].parse::<usize>().unwrap(), rows.len(), "{period}");
    }

    // Void one: its records go on the period's next revision.
    let voided = csv_rows(&finalised)
        .into_iter()
        .max_by_key(|r| micros(&r["voice"]))
        .unwrap();
    run_ok(cli().args(["bill", "--void", &voided["invoice_number"]]));
    bill(&["--period", "2024-03"]);
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

    // Re-rating March under a corrected catalogue: national SMS at 0.20,
    // not 0.35. Every record of March on that rate costs 0.20 (one message,
    // two decimals), every other record what it cost; issued invoices stay
    // as issued and credit notes bring each to its figures at the new prices.
    let text = std::fs::read_to_string(catalogue).unwrap();
    assert_eq!(
        text.matches("price = \"0.35\"").count(),
        1,
        "the national SMS rate"
    );
    let corrected = dir.join("corrected.toml");
    std::fs::write(
        &corrected,
        text.replace("price = \"0.35\"", "price = \"0.20\""),
    )
    .unwrap();
    let rerate = |extra: &[&str]| {
        let mut cmd = cdrflow();
        cmd.args(store_args)
            .args([
                "--default-country-code",
                "212",
                "--default-plan",
                "prepaid-basic",
            ])
            .arg("--catalogue")
            .arg(&corrected)
            .args(["rerate", "--period", "2024-03"])
            .args(extra);
        stdout(&mut cmd)
    };
    let before_rerate = rated();
    let issued_before = documents("2024-03");
    let dry_run = rerate(&["--dry-run"]);
    assert_eq!(rated(), before_rerate, "a dry run wrote");
    let report_file = dir.join("rerate-report.csv");
    let first_report = rerate(&["--report", report_file.to_str().unwrap()]);
    assert_eq!(
        dry_run.replace("would be", "were"),
        first_report,
        "the dry run said otherwise"
    );
    let after_rerate = rated();
    let key = |r: &BTreeMap<String, String>| (r["record_id"].clone(), r["kind"].clone());
    let new_cost: BTreeMap<_, i128> = after_rerate
        .iter()
        .map(|r| (key(r), micros(&r["cost"])))
        .collect();
    assert_eq!(after_rerate.len(), before_rerate.len());
    let mut cheaper = 0;
    for r in &before_rerate {
        let want = if r["billing_period"] == "2024-03" && r["rate_id"] == "sms-national" {
            cheaper += 1;
            200_000
        } else {
            micros(&r["cost"])
        };
        assert_eq!(new_cost[&key(r)], want, "{r:?}");
    }
    assert!(cheaper > 100, "{cheaper} national SMS in March");
    assert!(
        first_report.contains(&format!("{cheaper} were re-priced")),
        "{first_report}"
    );
    assert_eq!(
        documents("2024-03"),
        issued_before,
        "a re-rating edited an issued invoice"
    );

    let notes = || csv_rows(&stdout(cli().args(["export", "notes"])));
    let all_notes = notes();
    assert!(!all_notes.is_empty(), "{first_report}");
    let note_numbers: BTreeSet<String> =
        all_notes.iter().map(|n| n["note_number"].clone()).collect();
    let gapless: BTreeSet<String> = (1..=all_notes.len())
        .map(|n| format!("CN-{n:08}"))
        .collect();
    assert_eq!(
        note_numbers, gapless,
        "cheaper SMS: credit notes only, numbered without gaps"
    );
    let figures = ["voice", "sms", "data", "other", "recurring", "tax", "total"];
    let noted = |number: &str| {
        let mut sum = [0i128; 7];
        for n in all_notes.iter().filter(|n| n["invoice_number"] == number) {
            for (s, f) in sum.iter_mut().zip(figures) {
                *s += micros(&n[f]);
            }
        }
        sum
    };
    // Each finalised March invoice, with its notes, is what this test
    // computes from its records at their new prices.
    let repriced: Vec<BTreeMap<String, String>> = first_rated
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.insert("cost".into(), micros_text(new_cost[&key(&r)]));
            r
        })
        .collect();
    let usage_now = by_customer(&repriced, "2024-03");
    let mut corrected_invoices = 0;
    for row in csv_rows(&invoices("2024-03"))
        .iter()
        .filter(|r| r["status"] == "finalised")
    {
        let (cycle, numbers) = &network.postpaid[&row["customer_id"]];
        let records = usage_now
            .get(&row["customer_id"])
            .map_or(&[][..], Vec::as_slice);
        let want = expected(*cycle, numbers.len(), records);
        let notes = noted(&row["invoice_number"]);
        let stands = figures.map(|f| micros(&row[f]));
        let stands: Vec<i128> = stands.iter().zip(notes).map(|(a, b)| a + b).collect();
        assert_eq!(stands, want, "{row:?}");
        corrected_invoices += usize::from(notes != [0; 7]);
    }
    assert!(corrected_invoices > 0);
    assert!(
        all_notes
            .iter()
            .all(|n| n["invoice_number"] != voided["invoice_number"]),
        "a note against a void invoice"
    );
    // Every postpaid record billed once, at its new price: issued invoices
    // with their notes, and the voided customer's draft recomputed.
    bill(&["--period", "2024-03"]);
    let billed: i128 = ["2024-03", "2024-04"]
        .iter()
        .flat_map(|p| csv_rows(&invoices(p)))
        .filter(|r| r["status"] != "void")
        .chain(all_notes.iter().cloned())
        .map(|r| micros(&r["voice"]) + micros(&r["sms"]) + micros(&r["data"]) + micros(&r["other"]))
        .sum();
    let postpaid_cost: i128 = by_customer(&after_rerate, "2024-04")
        .values()
        .flatten()
        .map(|(cost, ..)| cost)
        .sum();
    assert_eq!(
        billed, postpaid_cost,
        "every postpaid record billed once at its new price"
    );

    // Again: nothing more.
    let second_report = rerate(&[]);
    assert!(
        second_report.contains(" 0 were re-priced"),
        "{second_report}"
    );
    assert!(
        second_report.contains("0 credit notes and 0 debit notes"),
        "{second_report}"
    );
    assert_eq!(notes(), all_notes);
    assert_eq!(rated(), after_rerate);

    reports_reconcile(
        &cli,
        &lake,
        &network,
        &voided["customer_id"],
        &first_rated,
        &after_rerate,
    );
    lake
}

/// `cdrflow report` over March's issued invoices (the voided one's
/// customer is on a draft) after the re-rating: each report's rows equal
/// sums made here from the exported rated records, and its
/// reconciliation rows add up to the exported invoices and notes.
fn reports_reconcile(
    cli: &dyn Fn() -> std::process::Command,
    lake: &Path,
    network: &Network,
    voided_customer: &str,
    first_rated: &[BTreeMap<String, String>],
    rated_now: &[BTreeMap<String, String>],
) {
    let stdout = |cmd: &mut std::process::Command| String::from_utf8(run_ok(cmd).stdout).unwrap();
    let report = |name: &str, extra: &[&str]| {
        let mut cmd = cli();
        cmd.arg("--lake")
            .arg(lake)
            .args(["report", name, "--period", "2024-03"])
            .args(extra);
        stdout(&mut cmd)
    };
    // The records March's issued invoices hold, at their current prices.
    let first: BTreeSet<(String, String)> = first_rated
        .iter()
        .map(|r| (r["record_id"].clone(), r["kind"].clone()))
        .collect();
    let held: Vec<&BTreeMap<String, String>> = rated_now
        .iter()
        .filter(|r| first.contains(&(r["record_id"].clone(), r["kind"].clone())))
        .filter(|r| r["billing_period"].as_str() <= "2024-03")
        .filter(|r| !network.prepaid_numbers.contains(&r["msisdn"]))
        .filter(|r| network.postpaid.contains_key(&r["customer_id"]))
        .filter(|r| r["customer_id"] != voided_customer)
        .collect();
    let invoices: Vec<BTreeMap<String, String>> = csv_rows(&stdout(
        cli().args(["export", "invoices", "--period", "2024-03"]),
    ))
    .into_iter()
    .filter(|r| r["status"] == "finalised")
    .collect();
    let notes = csv_rows(&stdout(
        cli().args(["export", "notes", "--period", "2024-03"]),
    ));
    let sum = |figure: &str| -> i128 {
        invoices
            .iter()
            .chain(&notes)
            .map(|r| micros(&r[figure]))
            .sum()
    };
    let reconciled = |rows: &[BTreeMap<String, String>], key: &str, value: &str| {
        let at = |label: &str| micros(&rows.iter().find(|r| r[key] == label).unwrap()[value]);
        let attributed: i128 = rows
            .iter()
            .filter(|r| !r[key].starts_with('('))
            .map(|r| micros(&r[value]))
            .sum();
        assert_eq!(
            attributed + at("(unattributed)") + at("(discounts)"),
            at("(subtotal)")
        );
        assert_eq!(at("(subtotal)"), sum("subtotal"));
        assert_eq!(at("(tax)"), sum("tax"));
        assert_eq!(at("(total)"), sum("total"));
        assert_eq!(at("(total)"), at("(subtotal)") + at("(tax)"));
    };

    for (name, column) in [("revenue-by-plan", "plan_id"), ("regions", "region")] {
        let rows = csv_rows(&report(name, &[]));
        let key = if name == "regions" { "region" } else { "plan" };
        let mut want: BTreeMap<String, i128> = BTreeMap::new();
        for r in &held {
            let k = match r[column].as_str() {
                "" => "unknown".to_string(),
                k => k.to_string(),
            };
            *want.entry(k).or_default() += micros(&r["cost"]);
        }
        let got: BTreeMap<String, i128> = rows
            .iter()
            .filter(|r| !r[key].starts_with('(') && micros(&r["usage"]) != 0)
            .map(|r| (r[key].clone(), micros(&r["usage"])))
            .collect();
        want.retain(|_, v| *v != 0);
        assert_eq!(got, want, "{name}");
        let recurring: i128 = rows
            .iter()
            .filter(|r| !r[key].starts_with('('))
            .map(|r| micros(&r["recurring"]))
            .sum();
        assert_eq!(recurring, sum("recurring"), "{name}");
        reconciled(&rows, key, "revenue");
    }

    // Top customers: by what they stand at (invoice + notes), here.
    let mut spent: BTreeMap<String, i128> = BTreeMap::new();
    for r in invoices.iter().chain(&notes) {
        *spent.entry(r["customer_id"].clone()).or_default() += micros(&r["total"]);
    }
    let mut ranking: Vec<(String, i128)> = spent.into_iter().collect();
    ranking.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let text = report("top-customers", &["--top", "5", "--mask-msisdn"]);
    let rows = csv_rows(&text);
    let top: Vec<(String, i128)> = rows
        .iter()
        .take(5)
        .map(|r| (r["customer_id"].clone(), micros(&r["total"])))
        .collect();
    assert_eq!(top, ranking[..5].to_vec());
    let others = rows.iter().find(|r| r["rank"] == "(others)").unwrap();
    assert_eq!(
        micros(&others["total"]),
        ranking[5..].iter().map(|r| r.1).sum::<i128>()
    );
    let customers = |figure: &str| -> i128 {
        rows.iter()
            .filter(|r| !r["rank"].starts_with('(') || r["rank"] == "(others)")
            .map(|r| micros(&r[figure]))
            .sum()
    };
    let at = |label: &str| micros(&rows.iter().find(|r| r["rank"] == label).unwrap()["total"]);
    assert_eq!(customers("total"), sum("total"));
    assert_eq!(customers("subtotal"), sum("subtotal"));
    assert_eq!(customers("tax"), sum("tax"));
    assert_eq!(
        (at("(subtotal)"), at("(tax)"), at("(total)")),
        (sum("subtotal"), sum("tax"), sum("total"))
    );
    for r in rows.iter().take(5) {
        let (_, numbers) = &network.postpaid[&r["customer_id"]];
        for n in numbers {
            assert!(!text.contains(n.as_str()), "{n} unmasked");
        }
        assert!(
            r["msisdns"].split(' ').all(|m| m.ends_with("****")),
            "{r:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(lake.join("reports/period=2024-03/top-customers.csv")).unwrap(),
        text,
        "the lake's copy"
    );

    // Product costs: revenue per kind and destination, and the
    // catalogue's wholesale (config/catalogue.toml: per minute and per
    // message, by version), Σ units × price rounded half up once per row.
    let per_minute = |version: &str, destination: &str| match (version, destination) {
        ("2024-03", "ma-mobile") => Some(120_000i128),
        ("2024-03", "ma-fixed") => Some(80_000),
        ("2024-03", "france") => Some(1_100_000),
        ("2024-03", "rest-of-world") => Some(2_400_000),
        ("2024-04", "ma-mobile") => Some(100_000),
        _ => None,
    };
    let per_message = |version: &str, destination: &str| match (version, destination) {
        ("2024-03", "ma-mobile") => Some(50_000i128),
        ("2024-03", "france") => Some(400_000),
        ("2024-03", "rest-of-world") => Some(600_000),
        _ => None,
    };
    // (kind, destination) → (revenue, wholesale in micro-units × 60 or None)
    let mut want: BTreeMap<(String, String), (i128, Option<i128>)> = BTreeMap::new();
    for r in &held {
        let (kind, destination) = (r["kind"].clone(), r["destination_id"].clone());
        let units: i128 = r["usage_units"].parse().unwrap();
        let cost = match kind.as_str() {
            _ if destination.is_empty() => None,
            "voice" => per_minute(&r["catalogue_version"], &destination).map(|p| p * units),
            "sms" => per_message(&r["catalogue_version"], &destination).map(|p| p * units * 60),
            _ => None,
        };
        let entry = want.entry((kind, destination)).or_insert((0, Some(0)));
        entry.0 += micros(&r["cost"]);
        entry.1 = entry.1.zip(cost).map(|(a, b)| a + b);
    }
    let rows = csv_rows(&report("product-costs", &[]));
    let got: BTreeMap<(String, String), (i128, Option<i128>)> = rows
        .iter()
        .filter(|r| !r["kind"].starts_with('(') && r["kind"] != "recurring")
        .map(|r| {
            let wholesale = (!r["wholesale"].is_empty()).then(|| micros(&r["wholesale"]));
            (
                (r["kind"].clone(), r["destination"].clone()),
                (micros(&r["revenue"]), wholesale),
            )
        })
        .collect();
    let want: BTreeMap<_, _> = want
        .into_iter()
        .map(|(k, (revenue, exact))| (k, (revenue, exact.map(|e| (e + 30) / 60))))
        .collect();
    assert_eq!(got, want);
    assert!(
        got.values().any(|(_, w)| w.is_some_and(|w| w > 0)),
        "some wholesale"
    );
    for r in rows.iter().filter(|r| !r["margin"].is_empty()) {
        assert_eq!(
            micros(&r["margin"]),
            micros(&r["revenue"]) - micros(&r["wholesale"])
        );
    }
    let recurring = rows.iter().find(|r| r["kind"] == "recurring").unwrap();
    assert_eq!(micros(&recurring["revenue"]), sum("recurring"));
    reconciled(&rows, "kind", "revenue");
}

/// GET with an `Accept` header; (status, content type, body).
fn get(port: u16, path: &str, credentials: &str, accept: &str) -> (u16, String, String) {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(String::from)
        })
        .unwrap_or_default();
    (
        response[9..12].parse().unwrap(),
        content_type,
        body.to_string(),
    )
}

/// The API over the billed store: operators see every invoice, a customer
/// only theirs; a document as JSON and as HTML; a line's records add up
/// to the line.
fn invoices_over_http(dir: &Path) {
    let store = ["--data-dir", dir.to_str().unwrap()];
    let csv = String::from_utf8(
        run_ok(
            cdrflow()
                .args(store)
                .args(["export", "invoices", "--period", "2024-03"]),
        )
        .stdout,
    )
    .unwrap();
    let rows = csv_rows(&csv);
    let issued: Vec<&BTreeMap<String, String>> =
        rows.iter().filter(|r| r["status"] == "finalised").collect();
    let mine = issued[0];
    let theirs = issued[1];
    let documents = String::from_utf8(
        run_ok(cdrflow().args(store).args([
            "export",
            "invoices",
            "--format",
            "jsonl",
            "--customer",
            &mine["customer_id"],
        ]))
        .stdout,
    )
    .unwrap();
    let document: serde_json::Value = serde_json::from_str(
        documents
            .lines()
            .find(|l| l.contains(&format!("\"number\":\"{}\"", mine["invoice_number"])))
            .unwrap(),
    )
    .unwrap();
    let subscribers =
        std::fs::read_to_string(dir.join("billing-reference/subscribers.csv")).unwrap();
    let number = csv_rows(&subscribers)
        .into_iter()
        .find(|r| r["customer_id"] == mine["customer_id"])
        .unwrap()["msisdn"]
        .clone();
    add_user(dir, "alice", "correct horse");
    add_user_with(
        dir,
        "bob",
        "battery staple",
        &["--role", "customer", "--msisdn", &number],
    );
    let (_server, port) =
        serve_on_free_port(
            cdrflow()
                .args(store)
                .args(["serve", "--listen", "127.0.0.1:0"]),
        );
    let (alice, bob) = ("alice:correct horse", "bob:battery staple");
    let json = |path: &str, who: &str| {
        let (status, _, body) = get(port, path, who, "application/json");
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        )
    };
    let (status, all) = json("/invoices?period=2024-03", alice);
    assert_eq!(status, 200);
    assert_eq!(all["invoices"].as_array().unwrap().len(), rows.len());
    let (_, own) = json("/invoices", bob);
    let own = own["invoices"].as_array().unwrap();
    assert!(!own.is_empty());
    assert!(
        own.iter()
            .all(|i| i["customer_id"] == mine["customer_id"].as_str()),
        "{own:?}"
    );
    assert_eq!(
        json(&format!("/invoices/{}", theirs["invoice_number"]), bob).0,
        404
    );
    let (status, served) = json(&format!("/invoices/{}", mine["invoice_number"]), bob);
    assert_eq!(status, 200);
    assert_eq!(served, document);
    let (status, content_type, page) = get(
        port,
        &format!("/invoices/{}", mine["invoice_number"]),
        bob,
        "text/html",
    );
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains(&format!("Invoice {}", mine["invoice_number"])));
    assert!(page.contains(&format!("{} MAD", mine["total"])));
    // Each usage line's records, summed here, are the line's amount.
    let mut usage_lines = 0;
    for line in document["lines"].as_array().unwrap() {
        let path = format!(
            "/invoices/{}/lines/{}/records?limit=10000",
            mine["invoice_number"], line["line"]
        );
        let (status, answer) = json(&path, bob);
        if line["category"] == "recurring" {
            assert_eq!(status, 404);
            continue;
        }
        usage_lines += 1;
        assert_eq!(status, 200, "{answer}");
        let sum: i128 = answer["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| micros(r["cost"].as_str().unwrap()))
            .sum();
        assert_eq!(sum, micros(line["amount"].as_str().unwrap()), "{path}");
        assert_eq!(
            answer["records"].as_array().unwrap().len() as u64,
            line["quantity"].as_u64().unwrap()
        );
    }
    assert!(usage_lines > 0, "{document}");

    // A draft holds no records; its lines list the ones it stands for.
    let draft = rows.iter().find(|r| r["status"] == "draft").unwrap();
    let id = &draft["invoice_id"];
    let (status, document) = json(&format!("/invoices/{id}"), alice);
    assert_eq!(status, 200);
    let mut draft_lines = 0;
    for line in document["lines"].as_array().unwrap() {
        let (status, answer) = json(
            &format!("/invoices/{id}/lines/{}/records?limit=10000", line["line"]),
            alice,
        );
        if line["category"] == "recurring" {
            assert_eq!(status, 404);
            continue;
        }
        draft_lines += 1;
        assert_eq!(status, 200, "{answer}");
        let records = answer["records"].as_array().unwrap();
        let sum: i128 = records
            .iter()
            .map(|r| micros(r["cost"].as_str().unwrap()))
            .sum();
        assert_eq!(sum, micros(line["amount"].as_str().unwrap()), "{line}");
        assert_eq!(records.len() as u64, line["quantity"].as_u64().unwrap());
        assert!(records.iter().all(|r| r["kind"] == line["kind"]), "{line}");
    }
    assert!(draft_lines > 0, "{document}");
    billing_panel(port, store, (alice, bob));
}

/// `/billing/summary` and the dashboard's billing panel in Chromium: the
/// period's totals and top customers as the exported invoices and notes
/// add up here, revenue by plan as `cdrflow report` has it.
fn billing_panel(port: u16, store: [&str; 2], (operator, customer): (&str, &str)) {
    let export = |args: &[&str]| {
        csv_rows(&String::from_utf8(run_ok(cdrflow().args(store).args(args)).stdout).unwrap())
    };
    assert_eq!(
        get(port, "/billing/summary", customer, "application/json").0,
        403
    );
    let latest = export(&["export", "invoices"])
        .into_iter()
        .filter(|r| r["status"] == "finalised")
        .map(|r| r["period"].clone())
        .max()
        .unwrap();
    let (status, _, body) = get(port, "/billing/summary", operator, "application/json");
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        summary["period"],
        latest.as_str(),
        "the latest issued period"
    );
    let period = latest.as_str();

    let invoices: Vec<_> = export(&["export", "invoices", "--period", period])
        .into_iter()
        .filter(|r| r["status"] == "finalised")
        .collect();
    let notes = export(&["export", "notes", "--period", period]);
    let mut spent: BTreeMap<String, i128> = BTreeMap::new();
    for r in invoices.iter().chain(&notes) {
        *spent.entry(r["customer_id"].clone()).or_default() += micros(&r["total"]);
    }
    let mut ranking: Vec<(String, i128)> = spent.into_iter().collect();
    ranking.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: i128 = ranking.iter().map(|r| r.1).sum();
    assert_eq!(summary["invoices"], invoices.len());
    assert_eq!(micros(summary["totals"]["total"].as_str().unwrap()), total);
    let top: Vec<(String, i128)> = summary["top_customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["customer_id"].as_str().unwrap().to_string(),
                micros(c["total"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(top, ranking[..5.min(ranking.len())].to_vec());
    assert_eq!(
        micros(summary["others"]["total"].as_str().unwrap()),
        ranking[top.len()..].iter().map(|r| r.1).sum::<i128>()
    );
    let plans: Vec<Vec<String>> = csv_rows(
        &String::from_utf8(
            run_ok(
                cdrflow()
                    .args(store)
                    .args(["report", "revenue-by-plan", "--period", period]),
            )
            .stdout,
        )
        .unwrap(),
    )
    .into_iter()
    .filter(|r| !r["plan"].starts_with('('))
    .map(|r| {
        ["plan", "records", "usage", "recurring", "revenue"]
            .map(|c| r[c].clone())
            .to_vec()
    })
    .collect();
    let served: Vec<Vec<String>> = summary["revenue_by_plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            ["plan", "records", "usage", "recurring", "revenue"]
                .map(|c| match &p[c] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .to_vec()
        })
        .collect();
    assert!(!plans.is_empty());
    assert_eq!(served, plans, "revenue by plan as the report has it");

    // The panel shows what the API answers.
    let dom = rendered_dom(&format!("http://{operator}@127.0.0.1:{port}/"), 3000);
    assert_eq!(element_text(&dom, "billing_period"), period);
    assert_eq!(table_rows(&dom, "plan_revenue"), plans);
    assert_eq!(data_attribute(&dom, "data-bars"), plans.len() as u64);
    let shown: Vec<Vec<String>> = summary["top_customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut row = vec![
                c["rank"].to_string(),
                match c["name"].as_str().unwrap() {
                    "" => c["customer_id"].as_str().unwrap().to_string(),
                    name => name.to_string(),
                },
                c["msisdns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(" "),
                c["invoices"].to_string(),
                c["total"].as_str().unwrap().to_string(),
            ];
            row.retain(|cell| !cell.is_empty());
            row
        })
        .collect();
    assert_eq!(table_rows(&dom, "top_customers"), shown);
    assert!(
        shown.iter().all(|row| row[2].ends_with("****")),
        "{shown:?}"
    );
}

/// `cdrflow retention` with an injected clock (`--now`) over the billed
/// store and its lake (all of it from March and April 2024): each layer
/// goes when its time is up and not before, a dry run removes nothing,
/// a second run finds nothing, reports stay.
fn retention_keeps_each_layer_its_time(store_args: &[&str], lake: &Path) {
    let cli = || {
        let mut cmd = cdrflow();
        cmd.args(store_args)
            .args(["--default-country-code", "212"])
            .arg("--lake")
            .arg(lake);
        cmd
    };
    let stdout = |cmd: &mut std::process::Command| String::from_utf8(run_ok(cmd).stdout).unwrap();
    let retention = |now: &str, dry: bool| {
        let mut cmd = cli();
        cmd.args(["retention", "--now", now]);
        if dry {
            cmd.arg("--dry-run");
        }
        stdout(&mut cmd)
    };
    let count = |what: &str| csv_rows(&stdout(cli().args(["export", what]))).len();
    let partitions = |dataset: &str| -> usize {
        let root = lake.join(dataset);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return 0;
        };
        entries
            .map(|e| e.unwrap().path())
            .map(|p| match dataset {
                "mediated" => std::fs::read_dir(p).unwrap().count(),
                _ => 1,
            })
            .sum()
    };
    let (rated, invoices, notes) = (count("rated"), count("invoices"), count("notes"));
    let (mediated_parts, rated_parts) = (partitions("mediated"), partitions("rated"));
    assert!(rated > 0 && invoices > 0 && notes > 0 && mediated_parts > 0 && rated_parts == 2);
    let report = lake.join("reports/period=2024-03/top-customers.csv");
    assert!(report.is_file());

    // A year and a bit later: raw events, mediated and rated go; invoices stay.
    let later = "2025-06-15T00:00:00Z";
    let dry = retention(later, true);
    assert!(dry.contains(&format!(": {rated} rated records")), "{dry}");
    assert!(
        dry.contains(&format!("{mediated_parts} lake partitions")),
        "{dry}"
    );
    assert!(
        dry.contains(": 0 invoices, 0 credit and debit notes"),
        "{dry}"
    );
    assert_eq!(
        (count("rated"), partitions("mediated")),
        (rated, mediated_parts),
        "a dry run removed"
    );
    let applied = retention(later, false);
    assert_eq!(
        applied.replace(" (dry run: nothing removed)", ""),
        dry.replace(" (dry run: nothing removed)", "")
    );
    assert!(!applied.contains(": 0 raw events"), "{applied}");
    assert_eq!(
        (count("rated"), partitions("mediated"), partitions("rated")),
        (0, 0, 0)
    );
    assert_eq!((count("invoices"), count("notes")), (invoices, notes));
    let again = retention(later, false);
    assert!(
        again.contains(": 0 raw events") && again.contains(": 0 rated records"),
        "{again}"
    );
    assert!(!again.contains("lake partitions"), "{again}");

    // Seven years after the periods' ends: 2024-03's records may run to
    // 2024-04-28, so on 2031-04-15 its invoices stay; on 2031-06-01
    // March's and April's go; reports never do.
    let early = retention("2031-04-15T00:00:00Z", false);
    assert!(early.contains(": 0 invoices"), "{early}");
    assert_eq!(count("invoices"), invoices);
    let gone = retention("2031-06-01T00:00:00Z", false);
    assert!(
        gone.contains(&format!(
            ": {invoices} invoices, {notes} credit and debit notes"
        )),
        "{gone}"
    );
    assert_eq!(
        (count("invoices"), count("notes"), partitions("invoices")),
        (0, 0, 0)
    );
    assert!(report.is_file(), "a report was removed");
}

#[test]
fn invoices_in_sqlite_match_a_computation_made_outside_the_pipeline() {
    let dir = temp_dir("billing-sqlite-store");
    let store = ["--data-dir", dir.to_str().unwrap()];
    let lake = billing_matches("billing-sqlite", &store);
    invoices_over_http(&dir);
    retention_keeps_each_layer_its_time(&store, &lake);
}

#[test]
fn invoices_in_postgres_match_a_computation_made_outside_the_pipeline() {
    let url = postgres_database("cdrflow_billing");
    let store = ["--store", url.as_str()];
    let lake = billing_matches("billing-postgres", &store);
    retention_keeps_each_layer_its_time(&store, &lake);
}
