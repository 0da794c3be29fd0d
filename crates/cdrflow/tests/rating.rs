//! Catalogue rating end to end: reference data loaded from CSV, records
//! priced on each subscriber's plan in force at their event time, rated
//! records and prepaid balances exported — against costs, periods and
//! balances computed here from the test's own tariff arithmetic, in SQLite
//! and in PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use std::time::Duration;

use common::{
    add_user, add_user_with, cdrflow, http_get, http_get_json, micros_text, port_in,
    postgres_database, run_ok, spawn_until, temp_dir,
};

/// Two plans, priced so that the test can compute every cost by hand:
/// `basic` bills whole minutes at 1.20, `gold` every second at 0.01;
/// messages 0.50 on both; international calls 6.00 a minute on both.
/// Allowances: `basic` has 1.00 of money a day, for anything; `gold` 300
/// seconds of national mobile calls a billing period.
const CATALOGUE: &str = r#"
[[version]]
id = "v1"
effective_from = "2024-01-01T00:00:00Z"
currency = "MAD"
zone = "UTC"
[[version.destination]]
id = "ma-mobile"
class = "mobile"
prefixes = ["2126", "2127"]
[[version.destination]]
id = "world"
class = "international"
prefixes = ["1", "2", "3", "4", "5", "6", "7", "8", "9"]
[[version.band]]
id = "any"
[[version.plan]]
id = "basic"
[[version.plan.voice]]
id = "basic-mobile"
class = "mobile"
price = "1.20"
increments = "60/60"
rounding = "half_up"
decimals = 2
[[version.plan.voice]]
id = "basic-world"
class = "international"
price = "6.00"
increments = "60/60"
rounding = "half_up"
decimals = 2
[[version.plan.sms]]
id = "basic-sms"
class = "mobile"
price = "0.50"
rounding = "half_up"
decimals = 2
[[version.plan.allowance]]
id = "daily-credit"
kind = "money"
amount = "1.00"
validity = "day"
[[version.plan]]
id = "gold"
[[version.plan.voice]]
id = "gold-mobile"
class = "mobile"
price = "0.60"
increments = "1/1"
rounding = "half_up"
decimals = 2
[[version.plan.voice]]
id = "gold-world"
class = "international"
price = "6.00"
increments = "60/60"
rounding = "half_up"
decimals = 2
[[version.plan.sms]]
id = "gold-sms"
class = "mobile"
price = "0.50"
rounding = "half_up"
decimals = 2
[[version.plan.allowance]]
id = "gold-minutes"
kind = "voice"
units = 300
classes = ["mobile"]
priority = 1
[[version.plan]]
id = "flat"
[[version.plan.voice]]
id = "flat-mobile"
class = "mobile"
price = "0.60"
increments = "1/1"
rounding = "half_up"
decimals = 2
[[version.plan.voice]]
id = "flat-world"
class = "international"
price = "6.00"
increments = "60/60"
rounding = "half_up"
decimals = 2
[[version.bundle]]
id = "minutes-100"
kind = "voice"
units = 100
classes = ["mobile"]
days = 7
"#;

const PREPAID: &str = "+212600000001";
const POSTPAID: &str = "+212600000002";
const UNKNOWN: &str = "+212600000003";
/// When the prepaid subscriber moves from `basic` to `gold`.
const PLAN_CHANGE: &str = "2024-03-10T00:00:00Z";

/// A record of the test, with what it is for the test's arithmetic.
struct Record {
    id: &'static str,
    msisdn: &'static str,
    to: &'static str,
    kind: &'static str,
    seconds: u64,
    recharge_micros: i64,
    /// `YYYY-MM-DDTHH:MM:SSZ`
    time: &'static str,
}

const RECORDS: [Record; 8] = [
    Record {
        id: "r1",
        msisdn: PREPAID,
        to: "",
        kind: "balance_recharge",
        seconds: 0,
        recharge_micros: 20_000_000,
        time: "2024-03-05T08:00:00Z",
    },
    // 10 minutes on basic: 12.00 → 8.00 left, under 10: low_balance.
    Record {
        id: "c1",
        msisdn: PREPAID,
        to: "0612345678",
        kind: "call",
        seconds: 600,
        recharge_micros: 0,
        time: "2024-03-05T09:00:00Z",
    },
    // 61 s on basic: 2 minutes, 2.40.
    Record {
        id: "c2",
        msisdn: PREPAID,
        to: "0612345678",
        kind: "call",
        seconds: 61,
        recharge_micros: 0,
        time: "2024-03-09T23:59:59Z",
    },
    // A second after the plan change: gold, 0.01 a second.
    Record {
        id: "c3",
        msisdn: PREPAID,
        to: "0612345678",
        kind: "call",
        seconds: 30,
        recharge_micros: 0,
        time: "2024-03-10T00:00:00Z",
    },
    Record {
        id: "s1",
        msisdn: PREPAID,
        to: "0712345678",
        kind: "sms",
        seconds: 0,
        recharge_micros: 0,
        time: "2024-03-12T10:00:00Z",
    },
    // 1,500 s on gold: a new period's 300 free seconds, 1,200 charged:
    // 12.00, below zero: negative_balance.
    Record {
        id: "c4",
        msisdn: PREPAID,
        to: "0612345678",
        kind: "call",
        seconds: 1500,
        recharge_micros: 0,
        time: "2024-03-20T10:00:00Z",
    },
    // Postpaid: priced, no balance.
    Record {
        id: "c5",
        msisdn: POSTPAID,
        to: "+14155550100",
        kind: "call",
        seconds: 90,
        recharge_micros: 0,
        time: "2024-03-20T11:00:00Z",
    },
    // Not in the subscribers file: the default plan, basic.
    Record {
        id: "c6",
        msisdn: UNKNOWN,
        to: "0612345678",
        kind: "call",
        seconds: 59,
        recharge_micros: 0,
        time: "2024-03-20T12:00:00Z",
    },
];

impl Record {
    fn line(&self) -> String {
        let mut fields = vec![
            format!(r#""event_id":"{}""#, self.id),
            format!(r#""msisdn":"{}""#, self.msisdn),
            format!(r#""event_type":"{}""#, self.kind),
            format!(r#""timestamp":"{}""#, self.time),
            r#""cell_tower_id":"CELL-7""#.to_string(),
        ];
        if !self.to.is_empty() {
            fields.push(format!(r#""other_party":"{}""#, self.to));
            fields.push(r#""event_subtype":"outgoing""#.to_string());
        }
        if self.kind == "call" {
            fields.push(format!(r#""duration_seconds":{}"#, self.seconds));
        }
        if self.recharge_micros > 0 {
            fields.push(format!(
                r#""amount":{}"#,
                micros_text(i128::from(self.recharge_micros))
            ));
        }
        format!("{{{}}}", fields.join(","))
    }

    /// The plan the test expects: the subscriber's in force, or the default.
    fn plan(&self) -> &'static str {
        match self.msisdn {
            PREPAID if self.time >= PLAN_CHANGE => "gold",
            POSTPAID => "gold",
            _ => "basic",
        }
    }

    /// The rated cost by the test's own arithmetic, before allowances, in micro-units.
    fn rated_micros(&self) -> i64 {
        let seconds = self.seconds as i64;
        let minutes = (seconds + 59) / 60;
        match (self.kind, self.to.starts_with('+')) {
            ("balance_recharge", _) => 0,
            ("sms", _) => 500_000,
            ("call", true) => minutes * 6_000_000,
            ("call", false) if self.plan() == "basic" => minutes * 1_200_000,
            ("call", false) => seconds * 10_000,
            _ => unreachable!(),
        }
    }

    /// The day, for daily allowances.
    fn day(&self) -> &str {
        &self.time[..10]
    }

    /// The billing period by bill-cycle day: C1's is the 15th, C2's the 1st.
    fn period(&self) -> String {
        let (month, day): (u32, u32) = (
            self.time[5..7].parse().unwrap(),
            self.time[8..10].parse().unwrap(),
        );
        let cycle = if self.msisdn == PREPAID { 15 } else { 1 };
        let month = if day >= cycle { month } else { month - 1 };
        format!("2024-{month:02}")
    }
}

/// What each record is charged once the allowances paid their part, and
/// which allowance paid how much: followed here record by record, in the
/// file's order.
fn charges() -> BTreeMap<&'static str, (i64, Option<(&'static str, i64)>)> {
    let mut used: BTreeMap<(String, &str, String), i64> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for r in &RECORDS {
        let mut cost = r.rated_micros();
        let mut allowance = None;
        if r.kind == "call" && r.plan() == "gold" && !r.to.starts_with('+') {
            let spent = used
                .entry((r.msisdn.into(), "gold-minutes", r.period()))
                .or_default();
            let free = (300 - *spent).min(r.seconds as i64);
            *spent += free;
            cost = (r.seconds as i64 - free) * 10_000;
            if free > 0 {
                allowance = Some(("gold-minutes", free));
            }
        } else if r.plan() == "basic" && cost > 0 {
            let spent = used
                .entry((r.msisdn.into(), "daily-credit", r.day().into()))
                .or_default();
            let free = (1_000_000 - *spent).min(cost);
            *spent += free;
            cost -= free;
            if free > 0 {
                allowance = Some(("daily-credit", free));
            }
        }
        out.insert(r.id, (cost, allowance));
    }
    out
}

fn write_inputs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let catalogue = dir.join("catalogue.toml");
    std::fs::write(&catalogue, CATALOGUE).unwrap();
    std::fs::write(
        dir.join("subscribers.csv"),
        format!(
            "msisdn,customer_id,plan_id,region,payment,status,effective_from\n\
             0600000001,C1,basic,Casablanca,prepaid,active,\n\
             {PREPAID},C1,gold,Casablanca,prepaid,active,{PLAN_CHANGE}\n\
             {POSTPAID},C2,gold,Rabat,postpaid,active,2024-01-01\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("customers.csv"),
        "customer_id,name,billing_country,bill_cycle_day\nC1,\"Benali, Amina\",MA,15\nC2,Atlas Trading,MA,1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cells.csv"),
        "cell_id,region,technology\nCELL-7,Rabat,LTE\n",
    )
    .unwrap();
    let input = dir.join("records.jsonl");
    let lines: Vec<String> = RECORDS.iter().map(Record::line).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    (catalogue, input)
}

/// Loads the reference data, processes the records and checks every rated
/// record, the balances and the balance alerts; returns the rated records
/// as exported, by record id.
fn check_rating(dir: &Path, store: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
    let (catalogue, input) = write_inputs(dir);
    for kind in ["subscribers", "customers", "cells"] {
        let out = run_ok(
            cdrflow()
                .args(store)
                .args(["--default-country-code", "212", "reference", "load", kind])
                .arg(dir.join(format!("{kind}.csv"))),
        );
        assert!(String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("loaded "));
    }
    let rating = [
        "--catalogue",
        catalogue.to_str().unwrap(),
        "--default-plan",
        "basic",
        "--default-country-code",
        "212",
    ];
    let out = run_ok(
        cdrflow()
            .args(store)
            .args(rating)
            .arg("process")
            .arg(&input),
    );
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("accepted 8"), "{report}");
    assert!(report.contains("(1 of unknown subscribers"), "{report}");

    let rated = run_ok(cdrflow().args(store).args(["export", "rated"]));
    let text = String::from_utf8(rated.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[..9],
        [
            "record_id",
            "msisdn",
            "customer_id",
            "plan_id",
            "destination_id",
            "rate_id",
            "billed_units",
            "cost",
            "currency"
        ]
    );
    let rows: BTreeMap<String, BTreeMap<String, String>> = lines
        .map(|line| {
            let cells = split_csv(line);
            assert_eq!(cells.len(), header.len(), "{line}");
            let row: BTreeMap<String, String> =
                header.iter().map(|h| h.to_string()).zip(cells).collect();
            (row["record_id"].clone(), row)
        })
        .collect();
    assert_eq!(rows.len(), RECORDS.len(), "{text}");
    let charges = charges();
    for record in &RECORDS {
        let row = &rows[record.id];
        let what = format!("{}: {row:?}", record.id);
        let (cost, allowance) = charges[record.id];
        assert_eq!(row["cost"], micros_text(i128::from(cost)), "{what}");
        let (allowance_id, paid) = allowance.unwrap_or(("", 0));
        assert_eq!(
            (
                row["allowance_id"].as_str(),
                row["allowance_units"].as_str()
            ),
            (allowance_id, paid.to_string().as_str()),
            "{what}"
        );
        assert_eq!(row["plan_id"], record.plan(), "{what}");
        assert_eq!(row["billing_period"], record.period(), "{what}");
        assert_eq!(row["currency"], "MAD", "{what}");
        // The cell is in Rabat on LTE; a record's own region would come first.
        assert_eq!(row["technology"], "4G", "{what}");
        assert_eq!(row["region"], "Rabat", "{what}");
        assert_eq!(row["cell_id"], "CELL-7", "{what}");
        let customer = match record.msisdn {
            PREPAID => "C1",
            POSTPAID => "C2",
            _ => "",
        };
        assert_eq!(row["customer_id"], customer, "{what}");
        if record.kind == "call" {
            let destination = if record.to.starts_with('+') {
                "world"
            } else {
                "ma-mobile"
            };
            assert_eq!(row["destination_id"], destination, "{what}");
            assert_eq!(row["usage_units"], record.seconds.to_string(), "{what}");
        }
    }

    // The prepaid balance: recharges in, costs out; the others have none.
    let expected: i64 = RECORDS
        .iter()
        .filter(|r| r.msisdn == PREPAID)
        .map(|r| r.recharge_micros - charges[r.id].0)
        .sum();
    let balances =
        String::from_utf8(run_ok(cdrflow().args(store).args(["export", "balances"])).stdout)
            .unwrap();
    let sign = if expected < 0 { "-" } else { "" };
    assert_eq!(
        balances,
        format!(
            "msisdn,balance,currency,last_event_time\n{PREPAID},{sign}{},MAD,2024-03-20T10:00:00Z\n",
            micros_text(i128::from(expected.abs()))
        )
    );

    // One low-balance alert on the record that took it under 10, one
    // negative-balance alert on the one that took it under 0: found here
    // by following the balance record by record.
    let (mut balance, mut low_at, mut negative_at) = (0i64, None, None);
    for r in RECORDS.iter().filter(|r| r.msisdn == PREPAID) {
        let after = balance + r.recharge_micros - charges[r.id].0;
        if balance >= 10_000_000 && after < 10_000_000 {
            low_at.get_or_insert(r.id);
        }
        if balance >= 0 && after < 0 {
            negative_at.get_or_insert(r.id);
        }
        balance = after;
    }
    let anomalies =
        String::from_utf8(run_ok(cdrflow().args(store).args(["export", "anomalies"])).stdout)
            .unwrap();
    let alerts: Vec<(String, String)> = anomalies
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| a["rule"].as_str().unwrap().ends_with("_balance"))
        .map(|a| {
            (
                a["rule"].as_str().unwrap().to_string(),
                a["event_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        alerts,
        [
            ("low_balance".to_string(), low_at.unwrap().to_string()),
            (
                "negative_balance".to_string(),
                negative_at.unwrap().to_string()
            )
        ],
        "{anomalies}"
    );

    // Processing the same file again charges nothing twice.
    run_ok(
        cdrflow()
            .args(store)
            .args(rating)
            .arg("process")
            .arg(&input),
    );
    let again =
        String::from_utf8(run_ok(cdrflow().args(store).args(["export", "balances"])).stdout)
            .unwrap();
    assert_eq!(again, balances);
    rows
}

/// A CSV line's cells, with quoted cells unquoted.
fn split_csv(line: &str) -> Vec<String> {
    let (mut cells, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}

#[test]
fn records_are_rated_on_their_subscribers_plans_and_charge_prepaid_balances_once_in_sqlite() {
    let dir = temp_dir("rating-sqlite");
    let data = dir.join("data");
    let exported = check_rating(&dir, &["--data-dir", data.to_str().unwrap()]);

    // The API says what the export says, and explains a cost.
    add_user_with(&data, "olga", "operator-password", &["--role", "operator"]);
    add_user_with(
        &data,
        "carl",
        "customer-password",
        &["--role", "customer", "--msisdn", POSTPAID],
    );
    add_user(&data, "root", "admin-password");
    let mut port = None;
    let _server = spawn_until(
        cdrflow()
            .arg("--data-dir")
            .arg(&data)
            .arg("--catalogue")
            .arg(dir.join("catalogue.toml"))
            .args(["--default-plan", "basic", "--default-country-code", "212"])
            .args(["serve", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(20),
        |line| {
            port = line
                .contains("cdrflow serve: dashboard on")
                .then(|| port_in(line))
                .flatten();
            port.is_some()
        },
    );
    let port = port.unwrap();
    let operator = Some("olga:operator-password");
    let (status, page) = http_get_json(
        port,
        "/rated/0600000001?from=2024-03-05&to=2024-03-20T10:00:00Z",
        operator,
    );
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["rated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["r1", "c1", "c2", "c3", "s1"],
        "`to` is exclusive: {page}"
    );
    for r in page["rated"].as_array().unwrap() {
        let row = &exported[r["record_id"].as_str().unwrap()];
        for column in [
            "cost",
            "plan_id",
            "rate_id",
            "billing_period",
            "customer_id",
        ] {
            assert_eq!(
                r[column].as_str().unwrap_or(""),
                row[column],
                "{column}: {r}"
            );
        }
    }
    let charges = charges();
    let total: i64 = RECORDS[..5].iter().map(|r| charges[r.id].0).sum();
    assert_eq!(page["total_cost"], micros_text(i128::from(total)));

    let steps_of = |explained: &serde_json::Value| -> Vec<String> {
        explained["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let (status, explained) = http_get_json(port, "/rated/212600000002/c5/explain", operator);
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["matches"], true, "{explained}");
    assert_eq!(explained["recomputed_cost"], micros_text(12_000_000));
    let steps = steps_of(&explained);
    assert!(
        steps.iter().any(|s| s.contains("90 s billed as 120 s")),
        "{steps:?}"
    );
    // Allowances depend on the records before: the stored record says what they paid.
    let (status, explained) = http_get_json(port, "/rated/212600000001/c2/explain", operator);
    assert_eq!(status, 200, "{explained}");
    assert_eq!(
        explained["cost"],
        micros_text(1_400_000),
        "2.40 less the day's 1.00"
    );
    let steps = steps_of(&explained);
    assert!(
        steps.iter().any(|s| s.contains("61 s billed as 120 s")),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.contains("allowance `daily-credit` paid 1000000")),
        "{steps:?}"
    );

    // A customer sees their own number only; another is as a number without records.
    let customer = Some("carl:customer-password");
    let (status, own) = http_get_json(port, &format!("/rated/{}", POSTPAID), customer);
    assert_eq!(
        (status, own["rated"][0]["record_id"].as_str()),
        (200, Some("c5")),
        "{own}"
    );
    let (status, body) = http_get(port, "/rated/212600000001", customer);
    let (unknown_status, unknown_body) = http_get(port, "/rated/212699999999", customer);
    assert_eq!(status, 404, "{body}");
    assert_eq!(unknown_status, 404, "{unknown_body}");
    let (status, _) = http_get(port, "/rated/212600000001/c2/explain", customer);
    assert_eq!(status, 404);
    let (status, body) = http_get(
        port,
        "/rated/212600000001?from=2024-03-21&to=2024-03-20",
        Some("root:admin-password"),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn records_are_rated_on_their_subscribers_plans_and_charge_prepaid_balances_once_in_postgres() {
    let dir = temp_dir("rating-postgres");
    let url = postgres_database("rating");
    let data = dir.join("data");
    check_rating(
        &dir,
        &["--data-dir", data.to_str().unwrap(), "--store", &url],
    );
}

#[test]
fn a_reference_file_with_a_mistake_loads_nothing_and_names_the_line() {
    let dir = temp_dir("reference-mistake");
    let data = dir.join("data");
    let store = ["--data-dir", data.to_str().unwrap()];
    let file = dir.join("cells.csv");
    std::fs::write(
        &file,
        "cell_id,region,technology\nA,north,LTE\nB,south,WiMAX\n",
    )
    .unwrap();
    let out = cdrflow()
        .args(store)
        .args(["reference", "load", "cells"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(error.contains("line 3, `technology`: `WiMAX`"), "{error}");
    assert!(error.contains("nothing was loaded"), "{error}");
    let shown = String::from_utf8(run_ok(cdrflow().args(store).args(["reference", "show"])).stdout)
        .unwrap();
    assert!(shown.contains("cells: 0 rows"), "{shown}");
}

/// Bundles bought: each purchase of `minutes-100` (100 s of national
/// mobile calls, 7 days) grants its own 100 s, from the purchase until
/// its expiry; the `flat` plan charges 0.01 a second without them. The
/// expected charges are worked out by hand in the comments.
#[test]
fn bought_bundles_pay_for_calls_until_used_up_or_expired() {
    let dir = temp_dir("rating-bundles");
    let data = dir.join("data");
    let store = ["--data-dir", data.to_str().unwrap()];
    let (catalogue, _) = write_inputs(&dir);
    let buyer = "+212600000009";
    std::fs::write(
        dir.join("subscribers.csv"),
        format!("msisdn,customer_id,plan_id,payment\n{buyer},C2,flat,postpaid\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("bundles.csv"),
        // P1 lasts the bundle's 7 days; P2 expires on its own date; P3
        // names a bundle the catalogue does not sell.
        "purchase_id,msisdn,bundle_id,expires_at,effective_from\n\
         P1,0600000009,minutes-100,,2024-03-01T00:00:00Z\n\
         P2,0600000009,minutes-100,2024-03-04T00:00:00Z,2024-03-03T00:00:00Z\n\
         P3,0600000009,minutes-mystery,,2024-03-01T00:00:00Z\n",
    )
    .unwrap();
    for kind in ["subscribers", "customers", "bundles"] {
        run_ok(
            cdrflow()
                .args(store)
                .args(["--default-country-code", "212", "reference", "load", kind])
                .arg(dir.join(format!("{kind}.csv"))),
        );
    }
    // (id, time, to, seconds, cost charged, allowance paid)
    let calls = [
        // Before any purchase: 60 × 0.01.
        (
            "b1",
            "2024-02-29T10:00:00Z",
            "0612345678",
            60,
            "0.600000",
            "",
        ),
        // P1 pays all 80 s (20 of its 100 left).
        (
            "b2",
            "2024-03-02T10:00:00Z",
            "0612345678",
            80,
            "0.000000",
            "minutes-100:80",
        ),
        // Abroad: not the bundle's class; a minute at 6.00.
        (
            "b3",
            "2024-03-02T11:00:00Z",
            "+14155550100",
            60,
            "6.000000",
            "",
        ),
        // P1's last 20 s, then 40 of P2's: all 60 free, P1 named.
        (
            "b4",
            "2024-03-03T12:00:00Z",
            "0612345678",
            60,
            "0.000000",
            "minutes-100:60",
        ),
        // P2 expired on the 4th (60 s unused), P1 is used up: 30 × 0.01.
        (
            "b5",
            "2024-03-05T10:00:00Z",
            "0612345678",
            30,
            "0.300000",
            "",
        ),
    ];
    let lines: Vec<String> = calls
        .iter()
        .map(|(id, time, to, seconds, _, _)| {
            format!(
                r#"{{"event_id":"{id}","msisdn":"{buyer}","event_type":"call","event_subtype":"outgoing","timestamp":"{time}","other_party":"{to}","duration_seconds":{seconds}}}"#
            )
        })
        .collect();
    let input = dir.join("calls.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    run_ok(
        cdrflow()
            .args(store)
            .args(["--catalogue", catalogue.to_str().unwrap()])
            .args(["--default-plan", "basic", "--default-country-code", "212"])
            .arg("process")
            .arg(&input),
    );
    let text =
        String::from_utf8(run_ok(cdrflow().args(store).args(["export", "rated"])).stdout).unwrap();
    let mut rows = text.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let rated: BTreeMap<String, BTreeMap<&str, String>> = rows
        .map(|line| {
            let row: BTreeMap<&str, String> = header.iter().copied().zip(split_csv(line)).collect();
            (row["record_id"].clone(), row)
        })
        .collect();
    for (id, _, _, _, cost, allowance) in calls {
        let row = &rated[id];
        let paid = match (
            row["allowance_id"].as_str(),
            row["allowance_units"].as_str(),
        ) {
            ("", "0") => String::new(),
            (bundle, units) => format!("{bundle}:{units}"),
        };
        assert_eq!(
            (row["cost"].as_str(), paid.as_str()),
            (cost, allowance),
            "{id}: {row:?}"
        );
    }
    // The purchases read back as loaded (the number in E.164).
    let exported = String::from_utf8(
        run_ok(
            cdrflow()
                .args(store)
                .args(["reference", "export", "bundles"]),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(
        exported,
        format!(
            "purchase_id,msisdn,bundle_id,expires_at,effective_from\n\
             P1,{buyer},minutes-100,,2024-03-01T00:00:00Z\n\
             P2,{buyer},minutes-100,2024-03-04T00:00:00Z,2024-03-03T00:00:00Z\n\
             P3,{buyer},minutes-mystery,,2024-03-01T00:00:00Z\n"
        )
    );
}
