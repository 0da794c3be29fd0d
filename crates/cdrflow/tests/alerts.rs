//! `cdrflow alerts`: anomalies leave through the outbox to a webhook, at
//! least once and in order, each with its idempotency key, retried with
//! backoff — against a local receiver that fails the first attempts — and
//! to a Kafka topic (the Tansu broker).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::{cdrflow, run_ok, temp_dir};

/// One request the receiver saw: its `Idempotency-Key` header, its body,
/// and the status it answered.
#[derive(Clone, Debug)]
struct Seen {
    key: String,
    body: serde_json::Value,
    status: u16,
}

/// A webhook receiver on a free port that answers 500 to the first
/// `failures` requests and 200 after.
fn receiver(failures: usize) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut key) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "idempotency-key" => key = value.trim().to_string(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut log = log.lock().unwrap();
            let status = if log.len() < failures { 500 } else { 200 };
            log.push(Seen {
                key,
                body: serde_json::from_slice(&body).unwrap(),
                status,
            });
            drop(log);
            let reason = if status == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
        }
    });
    (port, seen)
}

/// A data dir with seed 003 traffic processed, anomalies among it.
fn store_with_anomalies(name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let events = dir.join("events.jsonl");
    run_ok(
        cdrflow()
            .args(["generate", "--format", "telecom-events", "--count", "20000"])
            .args(["--start", "2025-11-09", "--faults", "anomaly=0.002"])
            .arg("--output")
            .arg(&events),
    );
    let data = dir.join("data");
    run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&data)
            .arg("process")
            .arg(&events),
    );
    data
}

#[test]
fn anomalies_reach_a_failing_webhook_once_acknowledged_in_order_with_their_keys() {
    let data = store_with_anomalies("alerts");
    let stored = exported_anomalies(&data);
    assert!(stored.len() > 5, "{}", stored.len());

    let (port, seen) = receiver(2);
    let relay = |extra: &[&str]| {
        run_ok(
            cdrflow()
                .arg("--data-dir")
                .arg(&data)
                .args(["alerts", "--once", "--retry-backoff-ms", "20"])
                .args(["--webhook", &format!("http://127.0.0.1:{port}/hook")])
                .args(extra),
        )
    };
    relay(&[]);
    let log = seen.lock().unwrap().clone();
    // The first anomaly failed twice, then went through; the rest once each.
    assert_eq!(log.len(), stored.len() + 2);
    assert!(log[..2].iter().all(|s| s.status == 500));
    assert_eq!(
        log[0].key, log[2].key,
        "a failed alert is retried before the next"
    );
    let acknowledged: Vec<&Seen> = log.iter().filter(|s| s.status == 200).collect();
    assert_eq!(acknowledged.len(), stored.len());
    for (seen, anomaly) in acknowledged.iter().zip(&stored) {
        assert_eq!(&seen.body, anomaly, "the body is the exported anomaly");
        assert_eq!(seen.key, anomaly["idempotency_key"].as_str().unwrap());
    }

    // Delivered is delivered: a second run sends nothing.
    relay(&[]);
    assert_eq!(seen.lock().unwrap().len(), log.len());

    // Another receiver keeps its own position: Slack messages, high and up.
    relay(&[
        "--sink",
        "slack",
        "--format",
        "slack",
        "--min-severity",
        "high",
    ]);
    let slack: Vec<Seen> = seen.lock().unwrap()[log.len()..].to_vec();
    let severe: Vec<&serde_json::Value> = stored
        .iter()
        .filter(|a| a["severity"] == "high" || a["severity"] == "critical")
        .collect();
    assert!(!severe.is_empty() && severe.len() < stored.len());
    assert_eq!(slack.len(), severe.len());
    for (message, anomaly) in slack.iter().zip(severe) {
        let text = message.body["text"].as_str().unwrap();
        let rule = anomaly["rule"].as_str().unwrap();
        let severity = anomaly["severity"].as_str().unwrap();
        assert!(text.contains(&format!("*{severity}* `{rule}`")), "{text}");
        assert!(text.contains(anomaly["msisdn"].as_str().unwrap()), "{text}");
        assert_eq!(message.key, anomaly["idempotency_key"].as_str().unwrap());
    }
}

#[test]
fn a_receiver_that_never_answers_is_named_after_the_attempts_run_out() {
    let data = store_with_anomalies("alerts-down");
    let (port, seen) = receiver(usize::MAX);
    let out = cdrflow()
        .arg("--data-dir")
        .arg(&data)
        .args([
            "alerts",
            "--once",
            "--retry-backoff-ms",
            "10",
            "--max-attempts",
            "3",
        ])
        .args(["--webhook", &format!("http://127.0.0.1:{port}/hook")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was not delivered")
            && stderr.contains("after 3 attempts")
            && stderr.contains("500"),
        "{stderr}"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

/// `--kafka-topic cdr.anomalies` (the Tansu broker): every anomaly once, in
/// order, keyed by its idempotency key; a second run publishes nothing.
#[test]
fn anomalies_reach_a_kafka_topic_keyed_by_their_idempotency_keys() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let data = store_with_anomalies("alerts-kafka");
    let stored = exported_anomalies(&data);
    let broker = common::Broker::start();
    let relay = || {
        run_ok(
            cdrflow()
                .arg("--data-dir")
                .arg(&data)
                .args(["alerts", "--once", "--kafka-topic", "cdr.anomalies"])
                .args(["--bootstrap", &broker.bootstrap]),
        )
    };
    let first = relay();
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(
        said.contains(&format!(
            "delivered {} anomalies to Kafka topic cdr.anomalies",
            stored.len()
        )),
        "{said}"
    );
    let second = relay();
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("delivered 0 anomalies"),
        "delivered is delivered"
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "anomaly-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset("cdr.anomalies", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&partitions).unwrap();
    let mut published: Vec<(String, serde_json::Value)> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while published.len() < stored.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(std::time::Duration::from_millis(200)) {
            published.push((
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                serde_json::from_slice(m.payload().unwrap()).unwrap(),
            ));
        }
    }
    let expected: Vec<(String, serde_json::Value)> = stored
        .iter()
        .map(|a| {
            (
                a["idempotency_key"].as_str().unwrap().to_string(),
                a.clone(),
            )
        })
        .collect();
    assert_eq!(published, expected);
}

fn exported_anomalies(data: &std::path::Path) -> Vec<serde_json::Value> {
    let out = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(data)
            .args(["export", "anomalies"]),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
