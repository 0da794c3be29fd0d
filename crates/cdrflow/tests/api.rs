//! The Usage API over a real store, through real HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{cdrflow, run_ok, temp_dir};

const CDRS: &str = r#"{"cdr_id":"d1","msisdn":"+27 82 123 4567","event_datetime":"2024-03-02T10:00:00Z","data_type":"video","up_bytes":1000,"down_bytes":19408}
{"cdr_id":"v1","msisdn":"0821234567","start_time":"2024-03-02T10:00:00Z","call_type":"voice","call_duration_sec":1}
{"cdr_id":"v2","msisdn":"0821234567","start_time":"2024-03-03T10:00:00Z","call_type":"voice","call_duration_sec":60}
{broken
"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path`, optionally with Basic credentials (`user:password`); returns (status, raw body).
fn get_text(port: u16, path: &str, credentials: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = credentials.map_or(String::new(), |c| {
        use base64::Engine;
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(c)
        )
    });
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status: u16 = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// GET `path` and parse the body as JSON.
fn get(port: u16, path: &str, credentials: Option<&str>) -> (u16, serde_json::Value) {
    let (status, body) = get_text(port, path, credentials);
    (
        status,
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {body}")),
    )
}

#[test]
fn usage_api_answers_with_exact_costs_and_clear_errors() {
    let dir = temp_dir("api");
    let input = dir.join("cdrs.jsonl");
    std::fs::write(&input, CDRS).unwrap();
    run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .arg("process")
            .arg(&input),
    );
    let mut add = cdrflow()
        .arg("--data-dir")
        .arg(&dir)
        .args(["user", "add", "alice"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let listed = run_ok(cdrflow().arg("--data-dir").arg(&dir).args(["user", "list"]));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "alice");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let alice = Some("alice:correct horse");

    assert_eq!(
        get(port, "/health", None),
        (200, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(get(port, "/ready", None).0, 200);
    assert_eq!(get(port, "/usage/0821234567?date=2024-03-02", None).0, 401);
    assert_eq!(
        get(
            port,
            "/usage/0821234567?date=2024-03-02",
            Some("alice:wrong password")
        )
        .0,
        401
    );
    assert_eq!(
        get(
            port,
            "/usage/0821234567?date=2024-03-02",
            Some("mallory:correct horse")
        )
        .0,
        401
    );

    let (status, body) = get(port, "/usage/0027821234567?date=2024-03-02", alice);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["msisdn"], "+27821234567");
    let summaries = body["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2);
    let data = summaries.iter().find(|s| s["kind"] == "data").unwrap();
    assert_eq!(
        (data["cost_wak"].as_str(), data["up_bytes"].as_u64()),
        (Some("0.001000"), Some(1000))
    );
    let voice = summaries.iter().find(|s| s["kind"] == "voice").unwrap();
    assert_eq!(voice["cost_wak"], "0.016667");

    let (status, body) = get(
        port,
        "/usage/+27821234567?from=2024-03-01&to=2024-03-31",
        alice,
    );
    assert_eq!(
        (status, body["summaries"].as_array().unwrap().len()),
        (200, 3)
    );

    let (status, body) = get(port, "/usage/0821234567?date=2024-02-30", alice);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("date"), "{body}");
    assert_eq!(
        get(
            port,
            "/usage/0821234567?from=2024-03-05&to=2024-03-01",
            alice
        )
        .0,
        400
    );
    assert_eq!(get(port, "/usage/12ab?date=2024-03-02", alice).0, 400);
    let (status, body) = get(port, "/usage/0831112222?date=2024-03-02", alice);
    assert_eq!(status, 404, "{body}");

    let (status, overview) = get(port, "/overview?date=2024-03-02", alice);
    assert_eq!(status, 200, "{overview}");
    let rows = overview["rows"].as_array().unwrap();
    let voice = rows.iter().find(|r| r["kind"] == "voice").unwrap();
    assert_eq!(
        (voice["records"].as_u64(), voice["cost_wak"].as_str()),
        (Some(1), Some("0.016667"))
    );
    assert_eq!(overview["counters"]["records_in"], 4);
    assert_eq!(
        overview["counters"]["rejected_by_reason"]["malformed_json"],
        1
    );
    let (status, rejected) = get(port, "/rejected?reason=malformed_json&limit=5", alice);
    assert_eq!(status, 200);
    assert_eq!(rejected["rejects"][0]["payload"], "{broken");
    assert_eq!(get(port, "/rejected?reason=nonsense", alice).0, 400);
    assert_eq!(get(port, "/rejected?limit=0", alice).0, 400);
    let (status, page) = get_text(port, "/", alice);
    assert!(
        status == 200 && page.contains("<canvas id=\"throughput\""),
        "{status}"
    );
    assert_eq!(get_text(port, "/", None).0, 401);

    assert_eq!(get_text(port, "/metrics", None).0, 401);
    let (status, metrics) = get_text(port, "/metrics", alice);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\ncdr_data_updates_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\ncdr_voice_updates_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cdrflow_records_rejected_total{reason=\"malformed_json\"} 1"),
        "{metrics}"
    );
}
