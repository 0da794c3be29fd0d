//! Issue 14 items 4 and 5: a real PostgreSQL changed while `cdrflow cdc
//! capture` and a `cdrflow process --cdc` consumer run, each SIGKILLed once
//! mid-stream; afterwards cdrflow's reference state and balances are what
//! the tables hold, read from the tables themselves with SQL.
//!
//! The broker is librdkafka's mock cluster, not Tansu: the killed consumer
//! resumes from its stored offsets, usually inside a produced batch, and a
//! Tansu 0.6 fetch starting inside a batch skips the batch's rest; and the
//! killed member must be expired from the group for its partitions to
//! move. The capture's own Kafka path runs against Tansu in
//! `capture_sends_through_tansu`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cdrflow, postgres_database, run_ok, temp_dir, Broker};

const TABLES: [&str; 6] = [
    "customers",
    "plans",
    "subscribers",
    "cells",
    "bundle_purchases",
    "balance_adjustments",
];

const SCHEMA: &str = "
    CREATE TABLE customers (customer_id text PRIMARY KEY, name text NOT NULL,
        billing_country text, bill_cycle_day integer);
    CREATE TABLE plans (plan_id text PRIMARY KEY, name text NOT NULL, description text,
        monthly_fee numeric(12,2), currency text);
    CREATE TABLE subscribers (msisdn text PRIMARY KEY, customer_id text NOT NULL,
        plan_id text NOT NULL, region text, status text, payment text, activation_date date);
    CREATE TABLE cells (cell_id text PRIMARY KEY, region text NOT NULL, technology text NOT NULL);
    CREATE TABLE bundle_purchases (purchase_id bigint PRIMARY KEY, msisdn text NOT NULL,
        bundle_id text NOT NULL, purchased_at timestamptz NOT NULL, expires_at timestamptz);
    CREATE TABLE balance_adjustments (adjustment_id bigint PRIMARY KEY, msisdn text NOT NULL,
        amount numeric(14,2) NOT NULL, currency text);
";

fn msisdn(n: u32) -> String {
    format!("+2126{:08}", n)
}

fn subscriber_row(n: u32, plan: u32) -> String {
    format!(
        "('{}', 'C{}', 'P{}', 'Casablanca', 'active', 'prepaid', DATE '2024-01-01' + {})",
        msisdn(n),
        n % 40,
        plan % 5,
        n % 300
    )
}

/// A bundle bought: every third without an expiry of its own.
fn purchase_row(n: u32) -> String {
    let expires = match n % 3 {
        0 => "NULL".to_string(),
        _ => format!(
            "TIMESTAMPTZ '2024-04-01 00:00:00+00' + interval '{} hours'",
            n
        ),
    };
    format!(
        "({n}, '{}', 'bundle-{}', TIMESTAMPTZ '2024-03-01 08:00:00+01' + interval '{n} minutes', {expires})",
        msisdn(n % 60),
        n % 4
    )
}

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("the source database")
}

fn seed(db: &mut postgres::Client) {
    db.batch_execute(SCHEMA).unwrap();
    let customers: Vec<String> = (0..40)
        .map(|i| format!("('C{i}', 'Client {i}', 'MA', {})", 1 + i % 28))
        .collect();
    let plans: Vec<String> = (0..5)
        .map(|i| {
            format!(
                "('P{i}', 'Plan {i}', 'Forfait {i} Go', {}.{:02}, 'MAD')",
                10 * i + 9,
                99 - i
            )
        })
        .collect();
    let subscribers: Vec<String> = (0..300).map(|n| subscriber_row(n, n)).collect();
    let cells: Vec<String> = (0..20)
        .map(|i| {
            format!(
                "('CELL{i}', 'Region {}', '{}')",
                i % 4,
                ["LTE", "NR", "UMTS"][i % 3]
            )
        })
        .collect();
    let adjustments: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "({i}, '{}', {}.{:02}, 'MAD')",
                msisdn(i % 30),
                i % 50,
                i % 100
            )
        })
        .collect();
    let purchases: Vec<String> = (0..50).map(purchase_row).collect();
    db.batch_execute(&format!(
        "INSERT INTO bundle_purchases VALUES {};
         INSERT INTO customers VALUES {};
         INSERT INTO plans VALUES {};
         INSERT INTO subscribers VALUES {};
         INSERT INTO cells VALUES {};
         INSERT INTO balance_adjustments VALUES {};",
        purchases.join(","),
        customers.join(","),
        plans.join(","),
        subscribers.join(","),
        cells.join(","),
        adjustments.join(",")
    ))
    .unwrap();
}

/// One round of business: new subscribers, plan and status changes, a
/// number ported to a new MSISDN (a primary-key change), deletions, and
/// top-ups corrected and reversed — each statement its own transaction,
/// some several to a transaction.
fn business(db: &mut postgres::Client, round: u32) {
    let base = 10_000 + round * 100;
    for k in 0..20 {
        db.batch_execute(&format!(
            "INSERT INTO subscribers VALUES {}",
            subscriber_row(base + k, k)
        ))
        .unwrap();
    }
    db.batch_execute(&format!(
        "BEGIN;
         UPDATE subscribers SET plan_id = 'P{p}', status = 'suspended' WHERE msisdn LIKE '+2126000001%';
         UPDATE plans SET monthly_fee = monthly_fee + 1.25, description = 'Révisé {round}' WHERE plan_id = 'P{p}';
         COMMIT;
         UPDATE subscribers SET msisdn = '{new}' WHERE msisdn = '{old}';
         DELETE FROM subscribers WHERE msisdn = '{gone}';
         INSERT INTO balance_adjustments VALUES ({a}, '{new}', 20.00, 'MAD'), ({b}, '{old2}', 5.55, 'MAD');
         UPDATE balance_adjustments SET amount = amount - 0.05 WHERE adjustment_id = {a};
         DELETE FROM balance_adjustments WHERE adjustment_id = {round};
         UPDATE customers SET name = name || ' ✓', bill_cycle_day = {day} WHERE customer_id = 'C{round}';
         DELETE FROM cells WHERE cell_id = 'CELL{round}';
         INSERT INTO bundle_purchases VALUES {bought};
         UPDATE bundle_purchases SET expires_at = coalesce(expires_at, purchased_at) + interval '1 day',
             bundle_id = 'bundle-9' WHERE purchase_id = {round};
         DELETE FROM bundle_purchases WHERE purchase_id = {refunded};
         INSERT INTO cells VALUES ('CELLX{round}', 'Région Nord', 'NR');",
        p = round % 5,
        new = msisdn(50_000 + round),
        old = msisdn(round),
        gone = msisdn(200 + round),
        a = 1_000 + round * 2,
        b = 1_001 + round * 2,
        old2 = msisdn(100 + round),
        day = 1 + round % 28,
        bought = [0, 1, 2].map(|k| purchase_row(1_000 + round * 3 + k)).join(", "),
        refunded = 20 + round,
    ))
    .unwrap();
}

/// A bulk load: many rows of one COPY share WAL positions.
fn copy_subscribers(db: &mut postgres::Client, from: u32, count: u32) {
    use std::io::Write;
    let mut writer = db
        .copy_in("COPY subscribers FROM STDIN (FORMAT csv)")
        .unwrap();
    for n in from..from + count {
        writeln!(
            writer,
            "{},C{},P{},Rabat,active,postpaid,2025-06-0{}",
            msisdn(n),
            n % 40,
            n % 5,
            1 + n % 9
        )
        .unwrap();
    }
    writer.finish().unwrap();
}

/// What the tables hold, in the shape of `cdrflow reference export KIND`
/// without its last column (`effective_from`, when cdrflow saw the change).
fn table_contents(db: &mut postgres::Client, kind: &str) -> String {
    let query = match kind {
        "subscribers" => "SELECT msisdn, customer_id, plan_id, coalesce(region, ''), coalesce(status, ''),
                coalesce(payment, ''), coalesce(activation_date::text, '') FROM subscribers ORDER BY msisdn",
        "customers" => "SELECT customer_id, name, coalesce(billing_country, ''),
                coalesce(bill_cycle_day::text, '') FROM customers ORDER BY customer_id",
        "plans" => "SELECT plan_id, name, coalesce(description, ''),
                coalesce(trim_scale(monthly_fee)::text, ''), coalesce(currency, '') FROM plans ORDER BY plan_id",
        "bundles" => "SELECT purchase_id::text, msisdn, bundle_id,
                coalesce(to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')
                FROM bundle_purchases ORDER BY purchase_id::text COLLATE \"C\"",
        // cdrflow names technologies by generation, as seed 001 does.
        "cells" => "SELECT cell_id, region, CASE technology WHEN 'GSM' THEN '2G' WHEN 'UMTS' THEN '3G'
                WHEN 'LTE' THEN '4G' WHEN 'NR' THEN '5G' ELSE technology END FROM cells ORDER BY cell_id",
        _ => unreachable!(),
    };
    db.query(query, &[])
        .unwrap()
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| csv_field(row.get::<_, String>(i)))
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect()
}

fn csv_field(text: String) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Each number's balance: the sum of its adjustments, at the export's six decimals.
fn expected_balances(db: &mut postgres::Client) -> Vec<String> {
    db.query(
        "SELECT msisdn, sum(amount)::numeric(20,6)::text FROM balance_adjustments
         GROUP BY msisdn HAVING sum(amount) <> 0 ORDER BY msisdn",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| format!("{},{}", row.get::<_, String>(0), row.get::<_, String>(1)))
    .collect()
}

fn exported(store: &str, kind: &str) -> String {
    let out = run_ok(cdrflow().args(["--store", store, "reference", "export", kind]));
    let text = String::from_utf8(out.stdout).unwrap();
    // Without the header and each row's effective_from.
    text.lines()
        .skip(1)
        .map(|line| format!("{}\n", &line[..line.rfind(',').unwrap()]))
        .collect()
}

fn exported_balances(store: &str) -> Vec<String> {
    let out = run_ok(cdrflow().args(["--store", store, "export", "balances"]));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let (number, balance) = (fields.next()?, fields.next()?);
            (balance != "0.000000").then(|| format!("{number},{balance}"))
        })
        .collect()
}

/// A replication slot of this test's own, dropped when the test ends
/// however it ends: a slot left behind keeps WAL forever and its database
/// cannot be dropped.
struct Slot(String);

impl Slot {
    fn new(name: &str) -> Slot {
        let slot = Slot(format!("cdrflow_test_{name}_{}", std::process::id()));
        slot.drop_it();
        slot
    }

    /// Retried: a capture still running holds the slot during each read.
    fn drop_it(&self) {
        let mut admin = connect("postgres://postgres@127.0.0.1:5432/postgres");
        for _ in 0..50 {
            let dropped = admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.0],
            );
            if dropped.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.drop_it();
    }
}

/// Waits until the log at `path` says `text` (or fails, showing the log).
fn wait_for(path: &std::path::Path, text: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(text) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{} never said {text:?}:\n{log}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sigkill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

struct Pipeline<'a> {
    source: &'a str,
    slot: &'a str,
    bootstrap: &'a str,
    store: &'a str,
    data_dir: &'a std::path::Path,
}

impl Pipeline<'_> {
    fn capture(&self) -> Command {
        let mut cmd = cdrflow();
        cmd.arg("--data-dir")
            .arg(self.data_dir)
            .args([
                "cdc",
                "capture",
                "--source",
                self.source,
                "--slot",
                self.slot,
            ])
            .args(["--bootstrap", self.bootstrap])
            .args(["--tables", &TABLES.map(|t| format!("public.{t}")).join(",")]);
        cmd
    }

    fn consumer(&self, extra: &[&str]) -> Command {
        let mut cmd = cdrflow();
        cmd.args(["--store", self.store, "--default-country-code", "212"])
            .args(["process", "--from", "kafka", "--bootstrap", self.bootstrap])
            .args([
                "--topics",
                "cdr_voice",
                "--cdc",
                "--no-dlq",
                "--session-timeout-ms",
                "6000",
            ])
            .args(extra);
        cmd
    }

    fn spawn(mut cmd: Command, log: &std::path::Path) -> Child {
        cmd.env("CDRFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }
}

/// Waits until cdrflow's reference state and balances equal the tables'.
fn converges(db: &mut postgres::Client, store: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let mut differences = Vec::new();
        for kind in ["subscribers", "customers", "plans", "cells", "bundles"] {
            let (want, got) = (table_contents(db, kind), exported(store, kind));
            if want != got {
                differences.push(format!(
                    "{kind}: {} rows in the table, {} in cdrflow; first difference: {:?}",
                    want.lines().count(),
                    got.lines().count(),
                    want.lines().zip(got.lines()).find(|(a, b)| a != b)
                ));
            }
        }
        let (want, got) = (expected_balances(db), exported_balances(store));
        if want != got {
            differences.push(format!("balances: want {want:?}\ngot {got:?}"));
        }
        if differences.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < within,
            "cdrflow's reference state never matched the tables:\n{}",
            differences.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn capture_and_consumer_killed_mid_stream_leave_the_tables_contents() {
    let dir = temp_dir("cdc-capture");
    let source = postgres_database("cdcsrc");
    let store = format!("sqlite://{}", dir.join("cdrflow.db").display());
    let mut db = connect(&source);
    seed(&mut db);
    let slot = Slot::new("killed");
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    for topic in TABLES.map(|t| format!("dbserver1.public.{t}")) {
        cluster.create_topic(&topic, 1, 1).unwrap();
    }
    cluster.create_topic("cdr_voice", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let pipeline = Pipeline {
        source: &source,
        slot: &slot.0,
        bootstrap: &bootstrap,
        store: &store,
        data_dir: &dir,
    };
    let log = |name: &str| dir.join(format!("{name}.log"));
    let mut capture = Pipeline::spawn(pipeline.capture(), &log("capture-1"));
    wait_for(
        &log("capture-1"),
        "streaming changes",
        Duration::from_secs(30),
    );
    let mut consumer = Pipeline::spawn(pipeline.consumer(&[]), &log("consumer-1"));
    wait_for(
        &log("consumer-1"),
        "partition assigned",
        Duration::from_secs(30),
    );
    business(&mut db, 1);
    copy_subscribers(&mut db, 100_000, 5_000);
    business(&mut db, 2);
    // The capture dies while it has the COPY's rows in hand or in flight.
    std::thread::sleep(Duration::from_millis(100));
    sigkill(capture);
    business(&mut db, 3);
    capture = Pipeline::spawn(pipeline.capture(), &log("capture-2"));
    business(&mut db, 4);
    copy_subscribers(&mut db, 200_000, 3_000);
    wait_for(
        &log("capture-2"),
        "streaming changes",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(200));
    sigkill(consumer);
    business(&mut db, 5);
    consumer = Pipeline::spawn(pipeline.consumer(&[]), &log("consumer-2"));
    business(&mut db, 6);
    converges(&mut db, &store, Duration::from_secs(90));
    let capture_log = std::fs::read_to_string(log("capture-2")).unwrap();
    assert!(
        capture_log.contains("streaming changes") && !capture_log.contains("snapshot sent"),
        "the restarted capture resumes the stream, without a second snapshot:\n{capture_log}"
    );
    sigkill(capture);
    sigkill(consumer);
    // The slot holds nothing unconfirmed that a further run would resend wrongly:
    // a fresh consumer over the same store reads nothing new and changes nothing.
    let last = run_ok(
        pipeline
            .consumer(&["--idle-exit-secs", "8"])
            .env("CDRFLOW_LOG", "info"),
    );
    converges(&mut db, &store, Duration::from_secs(5));
    let log = String::from_utf8_lossy(&last.stderr);
    assert!(!log.contains("change events:"), "nothing read again: {log}");
}

/// Issue 14 item 4 through Tansu: the capture creates its topics and
/// produces the snapshot and the stream; the consumer applies them.
#[test]
fn capture_sends_through_tansu() {
    let dir = temp_dir("cdc-capture-tansu");
    let source = postgres_database("cdctansu");
    let store = format!("sqlite://{}", dir.join("cdrflow.db").display());
    let mut db = connect(&source);
    seed(&mut db);
    let broker = Broker::start();
    let slot = Slot::new("tansu");
    let pipeline = Pipeline {
        source: &source,
        slot: &slot.0,
        bootstrap: &broker.bootstrap,
        store: &store,
        data_dir: &dir,
    };
    let capture = Pipeline::spawn(pipeline.capture(), &dir.join("capture.log"));
    business(&mut db, 1);
    copy_subscribers(&mut db, 100_000, 2_000);
    business(&mut db, 2);
    // The consumer's pattern subscription must find the capture's topics.
    wait_for(
        &dir.join("capture.log"),
        "streaming changes",
        Duration::from_secs(30),
    );
    let status = Command::new(common::tansu())
        .args([
            "topic",
            "create",
            "cdr_voice",
            "--partitions",
            "1",
            "--broker",
        ])
        .arg(format!("tcp://{}", broker.bootstrap))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_secs(2));
    run_ok(&mut pipeline.consumer(&["--idle-exit-secs", "6"]));
    converges(&mut db, &store, Duration::from_secs(1));
    sigkill(capture);
}
