//! The Usage API over a real store, through real HTTP.

mod common;

use std::process::Command;
use std::time::Duration;

use common::tls::certificates;
use common::{
    add_user, add_user_with, cdrflow, http_get, http_get_json, port_in, run_ok, spawn_until,
    temp_dir, KillOnDrop,
};

const CDRS: &str = r#"{"cdr_id":"d1","msisdn":"+27 82 123 4567","event_datetime":"2024-03-02T10:00:00Z","data_type":"video","up_bytes":1000,"down_bytes":19408}
{"cdr_id":"v1","msisdn":"0821234567","start_time":"2024-03-02T10:00:00Z","call_type":"voice","call_duration_sec":1}
{"cdr_id":"v2","msisdn":"0821234567","start_time":"2024-03-03T10:00:00Z","call_type":"voice","call_duration_sec":60}
{broken
"#;

/// A data dir with `CDRS` processed and user alice (password "correct horse").
fn store_with_alice(name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let input = dir.join("cdrs.jsonl");
    std::fs::write(&input, CDRS).unwrap();
    run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .arg("process")
            .arg(&input),
    );
    add_user(&dir, "alice", "correct horse");
    dir
}

/// Writes `text` to `dir/name` and processes it into `dir`'s store.
fn process_into(dir: &std::path::Path, name: &str, text: &str) {
    let input = dir.join(name);
    std::fs::write(&input, text).unwrap();
    run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(dir)
            .arg("process")
            .arg(&input),
    );
}

/// `cdrflow serve` over `dir` on a port of its choosing, with `extra` arguments.
fn serve(dir: &std::path::Path, extra: &[&str]) -> (KillOnDrop, u16) {
    let mut port = None;
    let server = spawn_until(
        cdrflow()
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra),
        Duration::from_secs(20),
        |line| {
            port = line
                .contains("cdrflow serve: dashboard on")
                .then(|| port_in(&line.replace("https://", "http://")))
                .flatten();
            port.is_some()
        },
    );
    (server, port.unwrap())
}

const ALICE: Option<&str> = Some("alice:correct horse");

#[test]
fn usage_api_answers_with_exact_costs_and_clear_errors() {
    let dir = store_with_alice("api");
    let listed = run_ok(cdrflow().arg("--data-dir").arg(&dir).args(["user", "list"]));
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "alice\toperator",
        "users without a role are operators"
    );
    let (_server, port) = serve(&dir, &[]);
    let alice = ALICE;

    assert_eq!(
        http_get_json(port, "/health", None),
        (200, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(http_get_json(port, "/ready", None).0, 200);
    assert_eq!(
        http_get_json(port, "/usage/0821234567?date=2024-03-02", None).0,
        401
    );
    assert_eq!(
        http_get_json(
            port,
            "/usage/0821234567?date=2024-03-02",
            Some("alice:wrong password")
        )
        .0,
        401
    );
    assert_eq!(
        http_get_json(
            port,
            "/usage/0821234567?date=2024-03-02",
            Some("mallory:correct horse")
        )
        .0,
        401
    );

    let (status, body) = http_get_json(port, "/usage/0027821234567?date=2024-03-02", alice);
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

    let (status, body) = http_get_json(
        port,
        "/usage/+27821234567?from=2024-03-01&to=2024-03-31",
        alice,
    );
    assert_eq!(
        (status, body["summaries"].as_array().unwrap().len()),
        (200, 3)
    );

    let (status, body) = http_get_json(port, "/usage/0821234567?date=2024-02-30", alice);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("date"), "{body}");
    assert_eq!(
        http_get_json(
            port,
            "/usage/0821234567?from=2024-03-05&to=2024-03-01",
            alice
        )
        .0,
        400
    );
    assert_eq!(
        http_get_json(port, "/usage/12ab?date=2024-03-02", alice).0,
        400
    );
    let (status, body) = http_get_json(port, "/usage/0831112222?date=2024-03-02", alice);
    assert_eq!(status, 404, "{body}");

    // Paged by whole days: 2024-03-02 has two rows (data, voice), 2024-03-03 one.
    let page = |limit: u32| {
        let (status, body) =
            http_get_json(port, &format!("/usage/0821234567?limit={limit}"), alice);
        assert_eq!(status, 200, "{body}");
        let days: Vec<String> = body["summaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["date"].as_str().unwrap().to_string())
            .collect();
        (days, body["next_from"].clone())
    };
    let two_on_the_second = vec!["2024-03-02".to_string(), "2024-03-02".to_string()];
    assert_eq!(
        page(1),
        (two_on_the_second.clone(), serde_json::json!("2024-03-03")),
        "a day is never split"
    );
    assert_eq!(
        page(2),
        (two_on_the_second, serde_json::json!("2024-03-03"))
    );
    assert_eq!(page(3).1, serde_json::Value::Null);
    assert_eq!(page(3).0.len(), 3);
    let (status, body) = http_get_json(port, "/usage/0821234567?from=2024-03-03&limit=1", alice);
    assert_eq!(
        (status, body["summaries"].as_array().unwrap().len()),
        (200, 1)
    );
    assert_eq!(
        http_get_json(port, "/usage/0821234567?limit=0", alice).0,
        400
    );
    assert_eq!(
        http_get_json(port, "/usage/0821234567?limit=10001", alice).0,
        400
    );

    let (status, overview) = http_get_json(port, "/overview?date=2024-03-02", alice);
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
    let (status, rejected) = http_get_json(port, "/rejected?reason=malformed_json&limit=5", alice);
    assert_eq!(status, 200);
    assert_eq!(rejected["rejects"][0]["payload"], "{broken");
    assert_eq!(
        http_get_json(port, "/rejected?reason=nonsense", alice).0,
        400
    );
    assert_eq!(http_get_json(port, "/rejected?limit=0", alice).0, 400);
    let (status, body) = http_get_json(port, "/rejected?limt=5", alice);
    assert_eq!(status, 400, "a misspelt parameter is an error, not ignored");
    assert!(body["error"].as_str().unwrap().contains("limt"), "{body}");
    assert_eq!(http_get_json(port, "/rejected?after=x", alice).0, 400);
    let (status, page) = http_get(port, "/", alice);
    assert!(
        status == 200 && page.contains("<canvas id=\"throughput\""),
        "{status}"
    );
    assert_eq!(http_get(port, "/", None).0, 401);

    assert_eq!(http_get(port, "/metrics", None).0, 401);
    let (status, metrics) = http_get(port, "/metrics", alice);
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

/// The served OpenAPI document must describe what the server does: schemathesis
/// generates requests from it (valid and invalid) and checks every response
/// against it — status codes, content types, bodies, and that auth is enforced.
#[test]
fn openapi_document_matches_the_server() {
    let dir = store_with_alice("openapi");
    let (_server, port) = serve(&dir, &[]);
    let (status, document) = http_get(port, "/openapi.json", ALICE);
    assert_eq!(status, 200);
    let parsed: serde_json::Value = serde_json::from_str(&document).unwrap();
    assert_eq!(parsed["openapi"], "3.0.3");
    assert_eq!(http_get(port, "/openapi.json", None).0, 401);
    let schema = dir.join("openapi.json");
    std::fs::write(&schema, document).unwrap();
    let output = Command::new("schemathesis")
        .current_dir(&dir) // its cache and reports stay out of the source tree
        .arg("run")
        .arg(&schema)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--auth", "alice:correct horse"])
        .args(["--checks", "all"])
        // A period's ends depend on each other (date or from/to; from ≤ to),
        // which OpenAPI 3.0 parameters cannot express: schemathesis would call
        // the 400 for a reversed range a valid request rejected. And its
        // negative cases include extra query parameters whose value is null,
        // which its HTTP client then leaves out of the request it sends, so
        // it reports a valid request accepted. Both directions are covered by
        // `usage_api_answers_with_exact_costs_and_clear_errors` instead.
        .args([
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
        ])
        .args(["--max-examples", "40", "--seed", "1", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis is installed (.ci/run: pip install schemathesis)");
    assert!(
        output.status.success(),
        "schemathesis found differences between /openapi.json and the server:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `--tls-cert/--tls-key`: the API over HTTPS, verified by curl against the certificate's CA.
#[test]
fn serves_https_with_a_given_certificate() {
    let dir = store_with_alice("tls");
    certificates(&dir);
    let (cert, key, ca) = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("ca.pem"),
    );
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let log = dir.join("serve.log");
    let (_server, port) = serve_logging(&dir, &tls, &log);
    let metrics_port = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .find(|l| l.contains("Prometheus metrics on https://"))
        .and_then(|l| port_in(&l.replace("https://", "http://")))
        .expect("the metrics address speaks TLS when the API does");
    let curl_port = |port: u16, path: &str, credentials: Option<&str>| {
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--cacert"])
            .arg(&ca)
            .args(["--write-out", "\n%{http_code}"]);
        if let Some(c) = credentials {
            command.args(["--user", c]);
        }
        let output = command
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_string(), body.to_string())
    };
    let curl = |path: &str, credentials: Option<&str>| curl_port(port, path, credentials);
    let (status, metrics) = curl_port(metrics_port, "/metrics", ALICE);
    assert_eq!(status, "200", "{metrics}");
    assert!(metrics.contains("cdr_voice_updates_total"), "{metrics}");
    let (status, body) = curl("/usage/0821234567?date=2024-03-03", ALICE);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("\"duration_sec\":60"), "{body}");
    assert_eq!(curl("/usage/0821234567", None).0, "401");
    // Plain HTTP on the TLS port gets no API answer.
    let plain = std::panic::catch_unwind(|| http_get(port, "/health", None));
    assert!(plain.map_or(true, |(status, _)| status != 200));
}

/// One raw HTTP/1.1 exchange: (status, head, body).
fn exchange(port: u16, request: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn basic(credentials: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(credentials)
}

/// Issue 9, items 8 and 9: users file changes apply without a restart;
/// cache, content-type, framing and CSP headers; JSON errors everywhere;
/// the Basic scheme in any case, and one Authorization header only.
#[test]
fn users_file_changes_apply_at_once_and_responses_are_hardened() {
    let dir = store_with_alice("api-hardening");
    add_user(&dir, "bob", "bobs password");
    let (server, port) = serve(&dir, &[]);
    let server_pid = server.0.id();
    let get = |path: &str, auth: &str| {
        exchange(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    let alice = format!("Authorization: basic {}\r\n", basic("alice:correct horse"));
    let (status, head, _) = get("/usage/0821234567?date=2024-03-02", &alice);
    assert_eq!(status, 200, "the scheme is case-insensitive");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");

    let (status, head, _) = get("/", &alice);
    assert_eq!(status, 200);
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("script-src 'sha256-"), "{head}");

    let (status, _, body) = get("/no/such/thing", &alice);
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
    let (status, _, body) = exchange(
        port,
        &format!("POST /usage/0821234567 HTTP/1.1\r\nHost: x\r\n{alice}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 405);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
    let twice = format!(
        "{alice}Authorization: Basic {}\r\n",
        basic("bob:bobs password")
    );
    assert_eq!(get("/overview", &twice).0, 400);

    // bob is removed and carol added while the server runs.
    let bob = format!("Authorization: Basic {}\r\n", basic("bob:bobs password"));
    assert_eq!(get("/overview", &bob).0, 200);
    run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["user", "remove", "bob"]),
    );
    add_user(&dir, "carol", "carols password");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get("/overview", &bob).0, 401, "a removed user is refused");
    let carol = format!(
        "Authorization: Basic {}\r\n",
        basic("carol:carols password")
    );
    assert_eq!(
        get("/overview", &carol).0,
        200,
        "a new user works without a restart"
    );
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.join("users.toml"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode & 0o777, 0o600);

    // SIGHUP reloads the users file (and no longer ends the server).
    add_user(&dir, "dave", "daves password");
    let hup = Command::new("kill")
        .args(["-HUP", &server_pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    std::thread::sleep(Duration::from_millis(100));
    let dave = format!("Authorization: Basic {}\r\n", basic("dave:daves password"));
    assert_eq!(
        get("/overview", &dave).0,
        200,
        "the server lives on after SIGHUP"
    );
}

/// `cdrflow serve` with its stderr in `log` (to read what it logged later).
fn serve_logging(
    dir: &std::path::Path,
    extra: &[&str],
    log: &std::path::Path,
) -> (KillOnDrop, u16) {
    let child = cdrflow()
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("CDRFLOW_LOG", "info")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let server = KillOnDrop(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(port) = text
            .lines()
            .find(|l| l.contains("cdrflow serve: dashboard on"))
            .and_then(|l| port_in(&l.replace("https://", "http://")))
        {
            return (server, port);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 9, item 6: roles. A customer reads only their numbers, in any
/// spelling, and another number answers exactly as one without usage; the
/// metrics role reads /metrics and nothing else.
#[test]
fn customers_see_only_their_numbers_and_roles_bound_what_users_read() {
    let dir = store_with_alice("api-roles");
    process_into(
        &dir,
        "other.jsonl",
        r#"{"cdr_id":"o1","msisdn":"0831112222","start_time":"2024-03-02T11:00:00Z","call_type":"voice","call_duration_sec":30}
"#,
    );
    add_user_with(
        &dir,
        "carol",
        "carols password",
        &["--role", "customer", "--msisdn", "082 123 4567"],
    );
    add_user_with(&dir, "prom", "prometheus pw", &["--role", "metrics"]);
    let listed = run_ok(cdrflow().arg("--data-dir").arg(&dir).args(["user", "list"]));
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "alice\toperator\ncarol\tcustomer\t+27821234567\nprom\tmetrics\n"
    );
    let refused = cdrflow()
        .arg("--data-dir")
        .arg(&dir)
        .args(["user", "add", "dan", "--role", "customer"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a customer without numbers is refused"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--msisdn"));

    let (_server, port) = serve(&dir, &[]);
    let carol = Some("carol:carols password");
    let prom = Some("prom:prometheus pw");
    for spelling in ["+27821234567", "0821234567", "0027%2082%20123%204567"] {
        let (status, body) =
            http_get_json(port, &format!("/usage/{spelling}?date=2024-03-02"), carol);
        assert_eq!(
            (status, body["summaries"].as_array().map(Vec::len)),
            (200, Some(2)),
            "{spelling}: {body}"
        );
    }
    assert_eq!(
        http_get_json(port, "/usage/0831112222?date=2024-03-02", ALICE).0,
        200,
        "the other number has usage"
    );
    let (status, theirs) = http_get_json(port, "/usage/0831112222?date=2024-03-02", carol);
    let (unknown_status, unknown) = http_get_json(port, "/usage/0839999999?date=2024-03-02", carol);
    assert_eq!((status, unknown_status), (404, 404));
    assert_eq!(
        theirs["error"]
            .as_str()
            .unwrap()
            .replace("+27831112222", "N"),
        unknown["error"]
            .as_str()
            .unwrap()
            .replace("+27839999999", "N"),
        "someone else's number and an unknown one answer alike"
    );
    for path in ["/overview", "/rejected", "/", "/metrics"] {
        assert_eq!(http_get(port, path, carol).0, 403, "customer on {path}");
    }
    assert_eq!(http_get(port, "/openapi.json", carol).0, 200);
    let (status, metrics) = http_get(port, "/metrics", prom);
    assert!(
        status == 200 && metrics.contains("cdr_voice_updates_total"),
        "{status}"
    );
    for path in [
        "/usage/0821234567",
        "/overview",
        "/rejected",
        "/",
        "/openapi.json",
    ] {
        assert_eq!(http_get(port, path, prom).0, 403, "metrics role on {path}");
    }

    // The all-time top subscribers are a full scan: cached for 30 s, while
    // the counters beside them are live.
    let (status, before) = http_get_json(port, "/overview", ALICE);
    assert_eq!(status, 200);
    process_into(
        &dir,
        "spender.jsonl",
        r#"{"cdr_id":"s1","msisdn":"0840000000","event_datetime":"2024-03-02T12:00:00Z","data_type":"video","up_bytes":1,"down_bytes":90000000000}
"#,
    );
    let (_, after) = http_get_json(port, "/overview", ALICE);
    assert_eq!(
        after["counters"]["records_in"].as_u64(),
        before["counters"]["records_in"].as_u64().map(|n| n + 1)
    );
    assert_eq!(
        after["top_subscribers_all_time"],
        before["top_subscribers_all_time"]
    );
    assert!(!after["top_subscribers_all_time"]
        .to_string()
        .contains("27840000000"));
}

/// GET over a kept-alive connection: (status, head lowercased, body).
struct KeepAlive(std::io::BufReader<std::net::TcpStream>);

impl KeepAlive {
    fn connect(port: u16) -> KeepAlive {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        KeepAlive(std::io::BufReader::new(stream))
    }

    fn get(&mut self, path: &str, credentials: &str) -> std::io::Result<(u16, String, String)> {
        use std::io::{BufRead, Read, Write};
        write!(
            self.0.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\r\n",
            basic(credentials)
        )?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        let mut body = vec![0; length];
        self.0.read_exact(&mut body)?;
        let status = head[9..12].parse().unwrap();
        Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in\n{metrics}"))
}

/// Issue 9, item 5: failed authentications are limited per address and per
/// user (429 with Retry-After), counted, and logged without the password;
/// credentials verified before keep working through it all.
#[test]
fn password_guessing_is_rate_limited_counted_and_logged_without_the_password() {
    let dir = store_with_alice("api-guessing");
    add_user(&dir, "bob", "bobs password");
    let log = dir.join("serve.log");
    let limits = [
        "--auth-limit-per-address",
        "5",
        "--auth-limit-per-user",
        "3",
    ];
    let (_server, port) = serve_logging(&dir, &limits, &log);
    let mut client = KeepAlive::connect(port);
    let usage = "/usage/0821234567?date=2024-03-02";
    assert_eq!(client.get(usage, "alice:correct horse").unwrap().0, 200);

    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    // alice's first login took a token of each budget: each attempt that
    // needs a password check does.
    for (i, credentials) in [
        "alice:wrong guess 1",
        "alice:wrong guess 2",
        "alice:wrong guess 3", // alice's budget (3) is spent: the address's 4th
        "mallory:wrong guess 4", // the address's fifth
        "mallory:wrong guess 5", // the address's budget (5) is spent
        "bob:bobs password",   // right, but never verified before: refused too
    ]
    .iter()
    .enumerate()
    {
        let (status, head, body) = client.get(usage, credentials).unwrap();
        statuses.push(status);
        if status == 429 {
            let seconds: u64 = head
                .lines()
                .find_map(|l| l.strip_prefix("retry-after: "))
                .unwrap_or_else(|| panic!("attempt {i}: 429 without Retry-After: {head}"))
                .trim()
                .parse()
                .unwrap();
            retry_after.push(seconds);
            assert!(body.contains("too many"), "{body}");
        }
    }
    assert_eq!(statuses, [401, 401, 429, 401, 429, 429]);
    // 5 a minute: the next token in at most 12 s; 3 a minute: at most 20 s.
    assert!(
        retry_after.iter().all(|&s| (1..=20).contains(&s)),
        "{retry_after:?}"
    );
    assert_eq!(
        client.get(usage, "alice:correct horse").unwrap().0,
        200,
        "a logged-in user is not locked out by guessing"
    );
    let (status, _, metrics) = client.get("/metrics", "alice:correct horse").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &metrics,
            "cdrflow_auth_failures_total{reason=\"wrong_credentials\"}"
        ),
        3
    );
    assert_eq!(
        metric(
            &metrics,
            "cdrflow_auth_failures_total{reason=\"rate_limited\"}"
        ),
        3
    );
    std::thread::sleep(Duration::from_millis(200));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("authentication failed") && logged.contains("\"mallory\""),
        "{logged}"
    );
    assert!(
        !logged.contains("wrong guess"),
        "a password reached the log:\n{logged}"
    );
    assert!(!logged.contains("bobs password"), "{logged}");
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Issue 9, item 7: 200 clients and an HTTP/2 connection with 150 parallel
/// streams guess passwords for 6 s. The server's memory stays under 150 MiB
/// and a logged-in client's p99 under 250 ms (on this 2-core machine, with
/// the attackers on the same cores).
#[test]
fn a_flood_of_wrong_passwords_keeps_memory_bounded_and_logged_in_requests_fast() {
    let dir = store_with_alice("api-flood");
    let (server, port) = serve(&dir, &["--http2"]);
    let usage = "/usage/0821234567?date=2024-03-02";
    let mut logged_in = KeepAlive::connect(port);
    assert_eq!(logged_in.get(usage, "alice:correct horse").unwrap().0, 200);
    let rss_before = peak_rss_kib(server.0.id());

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let attackers: Vec<_> = (0..200)
        .map(|i| {
            let (stop, refused) = (stop.clone(), refused.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut client = KeepAlive::connect(port);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        match client.get(usage, &format!("guest{i}:guess {n}")) {
                            Ok((status, _, _)) => {
                                assert!(matches!(status, 401 | 429 | 503), "{status}");
                                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(_) => break, // closed by the server: connect again
                        }
                    }
                }
            })
        })
        .collect();
    let streams = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let url = format!("http://127.0.0.1:{port}{usage}");
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let output = Command::new("curl")
                    .args([
                        "--silent",
                        "--http2-prior-knowledge",
                        "--parallel",
                        "--parallel-max",
                        "150",
                    ])
                    .args(["--user", "h2guest:wrong", "--output", "/dev/null"])
                    .args(std::iter::repeat_n(url.as_str(), 300))
                    .output()
                    .expect("curl runs");
                // Streams beyond the server's 32 are refused: curl calls
                // that an HTTP/2 error (16). It must have reached the server.
                assert!(matches!(output.status.code(), Some(0 | 16)), "{output:?}");
                rounds += 1;
            }
            rounds
        })
    };
    let mut latencies = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let asked = std::time::Instant::now();
        let (status, _, _) = logged_in.get(usage, "alice:correct horse").unwrap();
        assert_eq!(status, 200);
        latencies.push(asked.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    let curl_rounds = streams.join().unwrap();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let peak = peak_rss_kib(server.0.id());
    eprintln!(
        "flood: {} refused attempts, {curl_rounds} curl rounds of 300 h2 streams; logged-in p50 {:?} p99 {p99:?} over {} requests; server peak RSS {} MiB (before {} MiB)",
        refused.load(std::sync::atomic::Ordering::Relaxed),
        latencies[latencies.len() / 2],
        latencies.len(),
        peak / 1024,
        rss_before / 1024
    );
    assert!(refused.load(std::sync::atomic::Ordering::Relaxed) > 1000);
    assert!(peak < 150 * 1024, "peak RSS {} MiB", peak / 1024);
    assert!(p99 < Duration::from_millis(250), "logged-in p99 {p99:?}");
}

/// Issue 9, item 7: slow headers, idle sockets and kept-alive connections
/// are closed after the header timeout; beyond the connection limit new
/// connections are closed at once; cleartext HTTP/2 only when asked for.
#[test]
fn idle_and_slow_connections_are_closed_and_their_number_bounded() {
    use std::io::{Read, Write};
    let dir = store_with_alice("api-limits");
    let (_server, port) = serve(&dir, &["--header-timeout", "1", "--max-connections", "20"]);
    let closed_within = |stream: &mut std::net::TcpStream, limit: Duration| {
        stream.set_read_timeout(Some(limit)).unwrap();
        let started = std::time::Instant::now();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return Some(started.elapsed()),
                Ok(_) => continue, // a response (e.g. 408) before the close
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Some(started.elapsed())
                }
                Err(_) => return None,
            }
        }
    };
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    // A kept-alive connection after one request, a slow-header one, 18 idle.
    let mut kept = connect();
    write!(kept, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut slow = connect();
    write!(slow, "GET /health HTTP/1.1\r\n").unwrap();
    let mut idle: Vec<_> = (0..18).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The limit is reached: the next connection is closed at once.
    let mut extra = connect();
    let at_once = closed_within(&mut extra, Duration::from_millis(800));
    assert!(
        at_once.is_some(),
        "a connection beyond --max-connections is closed at once"
    );
    let slow_writer = std::thread::spawn(move || {
        for _ in 0..20 {
            if slow.write_all(b"X-Slow: 1\r\n").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    let mut response = [0u8; 12];
    kept.read_exact(&mut response).unwrap();
    assert_eq!(&response[9..12], b"200");
    let limit = Duration::from_secs(4);
    assert!(
        closed_within(&mut kept, limit).is_some(),
        "an idle kept-alive connection is closed"
    );
    for socket in &mut idle {
        assert!(
            closed_within(socket, limit).is_some(),
            "an idle socket is closed"
        );
    }
    assert!(slow_writer.join().unwrap(), "a slow header is cut off");
    assert_eq!(
        http_get(port, "/health", None).0,
        200,
        "room again after the timeouts"
    );

    let h2 = Command::new("curl")
        .args(["--silent", "--http2-prior-knowledge", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/health"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&h2.stdout).contains("ok"),
        "cleartext HTTP/2 is off unless asked for"
    );
    let dir2 = store_with_alice("api-limits-h2");
    let (_h2_server, h2_port) = serve(&dir2, &["--http2"]);
    let h2 = Command::new("curl")
        .args(["--silent", "--http2-prior-knowledge", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{h2_port}/health"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&h2.stdout).contains("ok"), "{h2:?}");
}

/// `/windows`, `/late-events` and `/anomalies` serve what the store holds —
/// the same rows as `cdrflow export` — page and filter, refuse bad
/// parameters with a reason, and are for staff only.
#[test]
fn analytics_routes_serve_the_stored_windows_late_events_anomalies_and_statistics() {
    let dir = store_with_alice("api-analytics");
    let input = dir.join("events.jsonl");
    run_ok(
        cdrflow()
            .args(["generate", "--format", "telecom-events", "--count", "30000"])
            .args([
                "--start",
                "2025-11-09",
                "--faults",
                "late=0.01,anomaly=0.002",
            ])
            .arg("--output")
            .arg(&input),
    );
    run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .arg("process")
            .arg(&input),
    );
    add_user_with(
        &dir,
        "carol",
        "carols password",
        &["--role", "customer", "--msisdn", "082 123 4567"],
    );
    let export = |what: &[&str]| {
        let out = run_ok(
            cdrflow()
                .arg("--data-dir")
                .arg(&dir)
                .arg("export")
                .args(what),
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run_ok(cdrflow().arg("--data-dir").arg(&dir).args([
        "daily",
        "--date",
        "2025-11-09",
        "--retries",
        "0",
    ]));
    let (_server, port) = serve(&dir, &[]);

    // Daily and hourly statistics: the export's rows as JSON, one region on asking.
    for (table, path) in [
        ("daily-stats", "/daily-stats"),
        ("hourly-stats", "/hourly-stats"),
    ] {
        let csv = export(&[table, "--date", "2025-11-09"]);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert!(rows.len() > 10, "{table}: {}", rows.len());
        let (status, body) = http_get_json(port, &format!("{path}?date=2025-11-09"), ALICE);
        assert_eq!(status, 200, "{body}");
        let served = body["stats"].as_array().unwrap();
        assert_eq!(served.len(), rows.len());
        for (json, cells) in served.iter().zip(&rows) {
            for (name, cell) in header.iter().zip(cells) {
                let shown = match &json[*name] {
                    serde_json::Value::String(text) => text.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                assert_eq!(&shown, cell, "{table} {name}");
            }
        }
        let (_, one) = http_get_json(
            port,
            &format!("{path}?date=2025-11-09&region=Gauteng"),
            ALICE,
        );
        let gauteng = rows
            .iter()
            .filter(|r| r[header.iter().position(|h| *h == "region").unwrap()] == "Gauteng")
            .count();
        assert!(gauteng > 0);
        assert_eq!(one["stats"].as_array().unwrap().len(), gauteng);
    }

    // Windows: the export's rows, in its order; one region and a time range narrow them.
    let (status, body) = http_get_json(port, "/windows", ALICE);
    assert_eq!(status, 200, "{body}");
    let windows = body["windows"].as_array().unwrap();
    let csv = export(&["windows"]);
    assert_eq!(windows.len(), csv.lines().count() - 1);
    for (json, line) in windows.iter().zip(csv.lines().skip(1)) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(json["window_start"], cells[0]);
        assert_eq!(json["region"], cells[2]);
        assert_eq!(json["event_type"], cells[3]);
        assert_eq!(json["total_events"].to_string(), cells[4]);
        assert_eq!(json["total_data_mb"], cells[8]);
        assert_eq!(json["is_final"].to_string(), cells[10]);
    }
    let (status, body) = http_get_json(
        port,
        "/windows?region=Gauteng&from=2025-11-09T10:00:00Z&to=2025-11-09T11:00:00Z",
        ALICE,
    );
    assert_eq!(status, 200);
    let narrowed = body["windows"].as_array().unwrap();
    let expected = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(2) == Some("Gauteng"))
        .filter(|l| {
            ("2025-11-09T10:00:00Z".."2025-11-09T11:00:00Z").contains(&l.split(',').next().unwrap())
        })
        .count();
    assert!(expected > 0);
    assert_eq!(narrowed.len(), expected);

    // Anomalies by severity, paged.
    let all: Vec<serde_json::Value> = export(&["anomalies"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let high: Vec<_> = all.iter().filter(|a| a["severity"] == "high").collect();
    assert!(high.len() > 2, "{}", high.len());
    let (status, first) = http_get_json(port, "/anomalies?severity=high&limit=2", ALICE);
    assert_eq!(status, 200);
    let after = first["next_after"].as_i64().unwrap();
    let (_, rest) = http_get_json(
        port,
        &format!("/anomalies?severity=high&limit=1000&after={after}"),
        ALICE,
    );
    let served: Vec<_> = first["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["anomalies"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(served.iter().collect::<Vec<_>>(), high);

    // Late events.
    let late = export(&["late-events"]).lines().count();
    assert!(late > 100);
    let (status, body) = http_get_json(port, "/late-events?limit=1000", ALICE);
    assert_eq!(status, 200);
    assert_eq!(
        body["late_events"].as_array().unwrap().len(),
        late.min(1000)
    );

    // Mistakes are named; customers are not staff.
    for (path, words) in [
        ("/windows?from=yesterday", "RFC 3339"),
        ("/anomalies?severity=urgent", "low, medium, high, critical"),
        ("/late-events?limit=0", "between 1 and 1000"),
        ("/daily-stats?date=9.11.2025", "YYYY-MM-DD"),
    ] {
        let (status, body) = http_get(port, path, ALICE);
        assert_eq!(status, 400, "{path}");
        assert!(body.contains(words), "{path}: {body}");
    }
    for path in [
        "/windows",
        "/late-events",
        "/anomalies",
        "/daily-stats?date=2025-11-09",
    ] {
        let (status, _) = http_get(port, path, Some("carol:carols password"));
        assert_eq!(status, 403, "{path}");
    }
}
