//! Issue 14: Debezium change events through a real Kafka-protocol broker
//! (Tansu, started here) into the store, with `process --from kafka --cdc`.
//! The events are hand-written in Debezium's documented shapes; what the
//! reference data and the balances must be afterwards is worked out by
//! hand beside them. Nothing is mocked; without Tansu the test fails.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{cdrflow, dlq_messages, postgres_database, run_ok, temp_dir, Broker};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn source(table: &str, lsn: i64, ts_ms: i64, snapshot: &str) -> String {
    format!(
        r#"{{"version":"2.7.3.Final","connector":"postgresql","name":"dbserver1","ts_ms":{ts_ms},"snapshot":"{snapshot}","db":"cdr","schema":"public","table":"{table}","txId":9,"lsn":{lsn}}}"#
    )
}

fn envelope(table: &str, op: &str, lsn: i64, ts_ms: i64, before: &str, after: &str) -> String {
    let snapshot = if op == "r" { "true" } else { "false" };
    format!(
        r#"{{"before":{before},"after":{after},"source":{},"op":"{op}","ts_ms":{ts_ms}}}"#,
        source(table, lsn, ts_ms, snapshot)
    )
}

fn subscriber(msisdn: &str, plan: &str, payment: &str) -> String {
    format!(
        r#"{{"msisdn":"{msisdn}","customer_id":"C-{msisdn}","plan_id":"{plan}","region":"Casablanca","status":"active","payment":"{payment}","activation_date":19783}}"#
    )
}

/// The same change with schemas (`schemas.enable=true`): the plan's fee a
/// Connect Decimal (base64 of the unscaled integer, scale 2).
fn plan_with_schema(lsn: i64, ts_ms: i64, id: &str, fee_base64: &str) -> String {
    let row_schema = |field: &str| {
        format!(
            r#"{{"type":"struct","optional":true,"field":"{field}","fields":[{{"type":"string","field":"plan_id"}},{{"type":"string","field":"name"}},{{"type":"string","optional":true,"field":"description"}},{{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{{"scale":"2","connect.decimal.precision":"10"}},"field":"monthly_fee"}},{{"type":"string","optional":true,"field":"currency"}}]}}"#
        )
    };
    format!(
        r#"{{"schema":{{"type":"struct","name":"dbserver1.public.plans.Envelope","fields":[{},{},{{"type":"struct","field":"source","fields":[]}},{{"type":"string","field":"op"}}]}},"payload":{{"before":null,"after":{{"plan_id":"{id}","name":"Plan {id}","description":"Appels illimités","monthly_fee":"{fee_base64}","currency":"MAD"}},"source":{},"op":"c","ts_ms":{ts_ms}}}}}"#,
        row_schema("before"),
        row_schema("after"),
        source("plans", lsn, ts_ms, "false")
    )
}

/// Tansu does not create topics on first use: each one made here, with one partition.
fn produce(broker: &Broker, messages: &[(&str, Option<&str>, Option<String>)]) {
    let mut topics: Vec<&str> = messages.iter().map(|(t, _, _)| *t).collect();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        let status = std::process::Command::new(common::tansu())
            .args(["topic", "create", topic, "--partitions", "1", "--broker"])
            .arg(format!("tcp://{}", broker.bootstrap))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "cannot create {topic}");
    }
    send(&broker.bootstrap, messages);
}

/// Sends each message to partition 0 of its topic, waiting for the acknowledgements.
fn send(bootstrap: &str, messages: &[(&str, Option<&str>, Option<String>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (topic, key, value) in messages {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).partition(0);
        if let Some(key) = key {
            record = record.key(key.as_bytes());
        }
        if let Some(value) = value {
            record = record.payload(value.as_bytes());
        }
        producer.send(record).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Issue 14 items 1, 2 and 5 (envelope variants through Kafka, applied once
/// and in order, undecodable events dead-lettered), on both stores.
#[test]
fn change_events_keep_reference_data_and_balances_exactly_once() {
    let dir = temp_dir("cdc");
    let sqlite = format!("sqlite://{}", dir.join("cdc.db").display());
    for store in [sqlite, postgres_database("cdc")] {
        let broker = Broker::start();
        let subscribers = "dbserver1.public.subscribers";
        let plans = "dbserver1.public.plans";
        let adjustments = "dbserver1.public.balance_adjustments";
        let a = "+212612345678";
        let b = "+212698765432";
        let key = |msisdn: &str| format!(r#"{{"msisdn":"{msisdn}"}}"#);
        let (ka, kb) = (key(a), key(b));
        let adjustment = |id: i64, msisdn: &str, amount: &str| {
            format!(
                r#"{{"adjustment_id":{id},"msisdn":"{msisdn}","amount":"{amount}","currency":"MAD"}}"#
            )
        };
        let null = "null";
        produce(
            &broker,
            &[
                // Snapshot: a on P1 (in force from always), b on P1.
                (
                    subscribers,
                    Some(&ka),
                    Some(envelope(
                        "subscribers",
                        "r",
                        100,
                        1_000,
                        null,
                        &subscriber(a, "P1", "prepaid"),
                    )),
                ),
                (
                    subscribers,
                    Some(&kb),
                    Some(envelope(
                        "subscribers",
                        "r",
                        101,
                        1_000,
                        null,
                        &subscriber(b, "P1", "postpaid"),
                    )),
                ),
                // a moves to P2 at 2024-03-01T10:00:00Z (1709287200000).
                (
                    subscribers,
                    Some(&ka),
                    Some(envelope(
                        "subscribers",
                        "u",
                        200,
                        1_709_287_200_000,
                        &subscriber(a, "P1", "prepaid"),
                        &subscriber(a, "P2", "prepaid"),
                    )),
                ),
                // Redelivered after a connector restart: nothing twice.
                (
                    subscribers,
                    Some(&ka),
                    Some(envelope(
                        "subscribers",
                        "u",
                        200,
                        1_709_287_200_000,
                        &subscriber(a, "P1", "prepaid"),
                        &subscriber(a, "P2", "prepaid"),
                    )),
                ),
                // A snapshot row older than the change above, arriving after it: skipped.
                (
                    subscribers,
                    Some(&ka),
                    Some(envelope(
                        "subscribers",
                        "r",
                        150,
                        1_000,
                        null,
                        &subscriber(a, "P0", "prepaid"),
                    )),
                ),
                // b deleted, then its tombstone.
                (
                    subscribers,
                    Some(&kb),
                    Some(envelope(
                        "subscribers",
                        "d",
                        300,
                        1_709_290_800_000,
                        &subscriber(b, "P1", "postpaid"),
                        null,
                    )),
                ),
                (subscribers, Some(&kb), None),
                // Undecodable: dead-lettered with its reason, the rest goes on.
                (subscribers, Some(&ka), Some("{\"op\":\"u\",".to_string())),
                // Plans with schemas: 49.99 = 4999 = 0x1387 → "E4c="; 0.50 = 50 = 0x32 → "Mg==".
                (
                    plans,
                    Some(r#"{"plan_id":"P1"}"#),
                    Some(plan_with_schema(110, 1_000, "P1", "E4c=")),
                ),
                (
                    plans,
                    Some(r#"{"plan_id":"P2"}"#),
                    Some(plan_with_schema(111, 1_000, "P2", "Mg==")),
                ),
                // ExtractNewRecordState output for the adjustments ledger:
                // +100.00, corrected to +80.00, +25.50, the correction deleted
                // (delete.tombstone.handling.mode=rewrite): a ends at 25.50.
                (
                    adjustments,
                    Some("1"),
                    Some(unwrapped(&adjustment(1, a, "100.00"), "c", 400, "false")),
                ),
                (
                    adjustments,
                    Some("1"),
                    Some(unwrapped(&adjustment(1, a, "80.00"), "u", 410, "false")),
                ),
                (
                    adjustments,
                    Some("2"),
                    Some(unwrapped(&adjustment(2, a, "25.50"), "c", 420, "false")),
                ),
                (
                    adjustments,
                    Some("1"),
                    Some(unwrapped(&adjustment(1, a, "80.00"), "d", 430, "true")),
                ),
                // A logical decoding message: nothing to apply, logged.
                (
                    subscribers,
                    None,
                    Some(format!(
                        r#"{{"op":"m","ts_ms":2000,"source":{},"message":{{"prefix":"audit-7","content":"aGk="}}}}"#,
                        source("", 450, 2_000, "false")
                    )),
                ),
                // A table the mapping does not name: ignored.
                (
                    "dbserver1.public.orders",
                    Some("7"),
                    Some(envelope(
                        "orders",
                        "c",
                        500,
                        2_000,
                        null,
                        r#"{"order_id":7}"#,
                    )),
                ),
            ],
        );
        let consume = || {
            run_ok(
                cdrflow()
                    .args([
                        "--store",
                        &store,
                        "--default-country-code",
                        "212",
                        "process",
                        "--from",
                        "kafka",
                        "--bootstrap",
                        &broker.bootstrap,
                        "--topics",
                        "cdr_voice",
                        "--cdc",
                        "--session-timeout-ms",
                        "6000",
                        "--idle-exit-secs",
                        "4",
                    ])
                    .env("CDRFLOW_LOG", "info"),
            )
        };
        // cdr_voice must exist for the subscription; one CDR in it.
        produce(
            &broker,
            &[(
                "cdr_voice",
                Some(a),
                Some(format!(
                    r#"{{"cdr_id":"v1","msisdn":"{a}","start_time":"2024-03-01T11:00:00Z","call_type":"voice","call_duration_sec":60}}"#
                )),
            )],
        );
        let first = consume();
        let log = String::from_utf8_lossy(&first.stderr);
        assert!(
            log.contains("logical decoding message ignored") && log.contains("audit-7"),
            "{log}"
        );
        // Applied: 2 snapshot rows, an update, a delete, 2 plans, 4 adjustments;
        // skipped: the redelivery and the older snapshot row; ignored: the
        // tombstone, the message, the unmapped table.
        assert!(
            log.contains("change events: applied 10, skipped 2 (already applied), ignored 3"),
            "{log}"
        );
        let export = |kind: &str| {
            let out = run_ok(cdrflow().args(["--store", &store, "reference", "export", kind]));
            String::from_utf8(out.stdout).unwrap()
        };
        let expected_subscribers = format!(
            "msisdn,customer_id,plan_id,region,status,payment,activation_date,effective_from\n\
             {a},C-{a},P2,Casablanca,active,prepaid,2024-03-01,2024-03-01T10:00:00Z\n"
        );
        let expected_plans = "plan_id,name,description,monthly_fee,currency,effective_from\n\
             P1,Plan P1,Appels illimités,49.99,MAD,1970-01-01T00:00:01Z\n\
             P2,Plan P2,Appels illimités,0.5,MAD,1970-01-01T00:00:01Z\n";
        let balances = || {
            let out = run_ok(cdrflow().args(["--store", &store, "export", "balances"]));
            String::from_utf8(out.stdout).unwrap()
        };
        let expected_balance = format!("{a},25.500000,MAD,");
        let check = |when: &str| {
            assert_eq!(
                export("subscribers"),
                expected_subscribers,
                "{when}, {store}"
            );
            assert_eq!(export("plans"), expected_plans, "{when}, {store}");
            let balances = balances();
            assert!(
                balances.lines().any(|l| l.starts_with(&expected_balance)),
                "{when}, {store}: {balances}"
            );
        };
        check("after the first run");
        let dead = dlq_messages(&broker, 1);
        assert_eq!(dead.len(), 1, "{store}");
        assert_eq!(dead[0].0, "malformed_json");
        assert_eq!(dead[0].1, b"{\"op\":\"u\",");
        // Every offset is in the store: a second consumer changes nothing.
        let second = consume();
        let log = String::from_utf8_lossy(&second.stderr);
        assert!(!log.contains("change events:"), "nothing read again: {log}");
        check("after a second run");
        assert_eq!(
            dlq_messages(&broker, 1).len(),
            1,
            "dead-lettered once, {store}"
        );
    }
}

/// `ExtractNewRecordState` output with `add.fields=op,table,lsn,source.ts_ms`.
fn unwrapped(row: &str, op: &str, lsn: i64, deleted: &str) -> String {
    let fields = format!(
        r#""__op":"{op}","__table":"balance_adjustments","__lsn":{lsn},"__source_ts_ms":1709294400000,"__deleted":"{deleted}""#
    );
    format!("{},{fields}}}", row.trim_end_matches('}'))
}

/// Two plans that price a one-minute mobile call differently (1.20 and
/// 0.60), so a rated record's cost says which one rated it.
const TWO_PLANS: &str = r#"
[[version]]
id = "v1"
effective_from = "2024-01-01T00:00:00Z"
currency = "MAD"
zone = "UTC"
[[version.destination]]
id = "ma-mobile"
class = "mobile"
prefixes = ["2126", "2127"]
[[version.band]]
id = "any"
[[version.plan]]
id = "P1"
[[version.plan.voice]]
id = "p1-mobile"
class = "mobile"
price = "1.20"
increments = "60/60"
rounding = "half_up"
decimals = 2
[[version.plan]]
id = "P2"
[[version.plan.voice]]
id = "p2-mobile"
class = "mobile"
price = "0.60"
increments = "60/60"
rounding = "half_up"
decimals = 2
"#;

/// Issue 14 item 2: one consumer, never restarted, rates each call on the
/// plan its subscriber is on at the call's start as change events bring
/// it; a change that arrives after a call it should have priced is listed
/// and counted, the call keeping its price until re-rated; a balance
/// correction that takes the balance under the low line raises one alert;
/// the API's search finds the subscriber. The broker is
/// librdkafka's mock cluster: the test waits on each step, and Tansu's
/// fetches would wait out `fetch.wait.max.ms` at each one.
#[test]
fn a_running_consumer_rates_with_each_change_as_it_arrives() {
    let dir = temp_dir("cdc-live");
    let data_dir = dir.join("data");
    let catalogue = dir.join("catalogue.toml");
    std::fs::write(&catalogue, TWO_PLANS).unwrap();
    let subscribers = "dbserver1.public.subscribers";
    let calls = "telecom_events";
    let adjustments = "dbserver1.public.balance_adjustments";
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    // All made before the consumer subscribes: a topic made later matches
    // its pattern only at the next metadata refresh (every 30 s).
    for topic in [subscribers, calls, adjustments] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let a = "+212612345678";
    let key = format!(r#"{{"msisdn":"{a}"}}"#);
    let call = |id: &str, at: &str| {
        format!(
            r#"{{"event_id":"{id}","msisdn":"{a}","event_type":"call","event_subtype":"outgoing","timestamp":"{at}","other_party":"+212698765432","duration_seconds":60,"cell_tower_id":"CELL-7"}}"#
        )
    };
    // a is on P1 from always (a snapshot row).
    send(
        &bootstrap,
        &[(
            subscribers,
            Some(&key),
            Some(envelope(
                "subscribers",
                "r",
                100,
                1_000,
                "null",
                &subscriber(a, "P1", "prepaid"),
            )),
        )],
    );
    let log = dir.join("consumer.log");
    let consumer = cdrflow()
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--catalogue")
        .arg(&catalogue)
        .args(["--default-plan", "P1", "--default-country-code", "212"])
        .args(["process", "--from", "kafka", "--bootstrap", &bootstrap])
        .args([
            "--topics",
            calls,
            "--cdc",
            "--no-dlq",
            "--session-timeout-ms",
            "6000",
        ])
        .args(["--idle-exit-secs", "20"])
        // Only the final spend report, on SIGTERM: its figures are the run's.
        .args(["--rankings-every", "3600"])
        .arg("--lake")
        .arg(dir.join("lake"))
        .env("CDRFLOW_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut consumer = common::KillOnDrop(consumer);
    let cdrflow_in = |args: &[&str]| {
        let out = run_ok(cdrflow().arg("--data-dir").arg(&data_dir).args(args));
        String::from_utf8(out.stdout).unwrap()
    };
    // (plan, cost) of each rated call, by id.
    let rated = || -> BTreeMap<String, (String, String)> {
        let text = cdrflow_in(&["export", "rated"]);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (id, plan, cost) = (column("record_id"), column("plan_id"), column("cost"));
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .map(|f| {
                (
                    f[id].to_string(),
                    (f[plan].to_string(), f[cost].to_string()),
                )
            })
            .collect()
    };
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never {what}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // A call at 11:00 once the row is in: rated on P1 with a's account (a
    // call read before would have been an unknown subscriber's, and the
    // row a late change).
    wait_until("applied the snapshot row", &|| {
        cdrflow_in(&["reference", "export", "subscribers"]).contains(",P1,")
    });
    send(
        &bootstrap,
        &[(calls, Some(a), Some(call("c1", "2024-03-01T11:00:00Z")))],
    );
    wait_until("rated c1", &|| rated().contains_key("c1"));
    // a moves to P2 from 10:00, before c1: c1 was priced on P1 already.
    send(
        &bootstrap,
        &[(
            subscribers,
            Some(&key),
            Some(envelope(
                "subscribers",
                "u",
                200,
                1_709_287_200_000,
                &subscriber(a, "P1", "prepaid"),
                &subscriber(a, "P2", "prepaid"),
            )),
        )],
    );
    wait_until("applied the move to P2", &|| {
        cdrflow_in(&["reference", "export", "subscribers"]).contains(",P2,")
    });
    // A call at 12:00, after the move: the same consumer rates it on P2.
    send(
        &bootstrap,
        &[(calls, Some(a), Some(call("c2", "2024-03-01T12:00:00Z")))],
    );
    wait_until("rated c2", &|| rated().contains_key("c2"));
    assert!(
        consumer.0.try_wait().unwrap().is_none(),
        "one consumer throughout"
    );
    let expected: BTreeMap<String, (String, String)> =
        [("c1", ("P1", "1.200000")), ("c2", ("P2", "0.600000"))]
            .into_iter()
            .map(|(id, (plan, cost))| (id.to_string(), (plan.to_string(), cost.to_string())))
            .collect();
    assert_eq!(rated(), expected);
    // a's balance: -1.20 and -0.60 for the calls, +15.00 topped up, then
    // -8.00 taken back (a correction): 5.20, under the 10.00 line the
    // correction crossed — an alert on that change.
    let adjustment = |id: i64, amount: &str, lsn: i64| {
        format!(
            r#"{{"adjustment_id":{id},"msisdn":"{a}","amount":"{amount}","currency":"MAD","__op":"c","__table":"balance_adjustments","__lsn":{lsn},"__source_ts_ms":1709298000000,"__deleted":"false"}}"#
        )
    };
    send(
        &bootstrap,
        &[
            (adjustments, Some("1"), Some(adjustment(1, "15.00", 300))),
            (adjustments, Some("2"), Some(adjustment(2, "-8.00", 310))),
        ],
    );
    wait_until("moved the balance", &|| {
        cdrflow_in(&["export", "balances"]).contains(&format!("{a},5.200000,"))
    });
    let anomalies = cdrflow_in(&["export", "anomalies"]);
    let low: Vec<&str> = anomalies
        .lines()
        .filter(|l| l.contains("\"low_balance\""))
        .collect();
    assert_eq!(low.len(), 1, "{anomalies}");
    assert!(low[0].contains("balance_adjustments:2"), "{anomalies}");
    assert_eq!(
        cdrflow_in(&["reference", "late", "--format", "csv"]),
        format!(
            "kind,id,effective_from,records,first_event_time,first_period,last_period\n\
             subscribers,{a},2024-03-01T10:00:00Z,1,2024-03-01T11:00:00Z,2024-03,2024-03\n"
        )
    );
    // SIGTERM: the consumer commits, flushes its last spend report and exits.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &consumer.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = consumer.0.wait().unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    // The report, in the lake: c1 (1.20 on P1) and c2 (0.60 on P2), both a's,
    // in March's period; a the one subscriber, active.
    let lake_rows = common::duckdb(&format!(
        "SELECT ranking, rank, id, spend::VARCHAR, records, subscribers, period
         FROM read_parquet('{}/lake/rankings/*/*.parquet') ORDER BY ranking, rank",
        dir.display()
    ));
    assert_eq!(
        lake_rows,
        [
            "plans,1,P1,1.200000,1,1,2024-03".to_string(),
            "plans,2,P2,0.600000,1,1,2024-03".to_string(),
            "statuses,1,active,0.000000,0,1,2024-03".to_string(),
            "statuses,2,suspended,0.000000,0,0,2024-03".to_string(),
            "statuses,3,terminated,0.000000,0,0,2024-03".to_string(),
            format!("subscribers,1,{a},1.800000,2,1,2024-03"),
        ]
    );
    common::add_user(&data_dir, "alice", "correct horse");
    let (_server, port) =
        common::serve_on_free_port(cdrflow().arg("--data-dir").arg(&data_dir).args([
            "--default-country-code",
            "212",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ]));
    let (status, report) = common::http_get_json(port, "/rankings", Some("alice:correct horse"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["period"], "2024-03");
    assert_eq!(
        report["subscribers"],
        serde_json::json!([{"rank": 1, "msisdn": a, "spend": "1.800000", "records": 2}])
    );
    assert_eq!(
        report["plans"],
        serde_json::json!([
            {"rank": 1, "plan_id": "P1", "spend": "1.200000", "records": 1, "subscribers": 1},
            {"rank": 2, "plan_id": "P2", "spend": "0.600000", "records": 1, "subscribers": 1},
        ])
    );
    assert_eq!(
        report["statuses"],
        serde_json::json!({"active": 1, "suspended": 0, "terminated": 0})
    );
    let (status, metrics) = common::http_get(port, "/metrics", Some("alice:correct horse"));
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l == "cdrflow_reference_changes_late_total 1"),
        "{metrics}"
    );
    // The API finds the subscriber the change events brought, by a number
    // prefix spelt nationally and by its whole number.
    for q in ["0612%2034", "%2B212612345678"] {
        let (status, found) =
            common::http_get_json(port, &format!("/search?q={q}"), Some("alice:correct horse"));
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found["results"],
            serde_json::json!([{"kind": "subscribers", "id": a, "title": a}]),
            "{q}"
        );
    }
}
