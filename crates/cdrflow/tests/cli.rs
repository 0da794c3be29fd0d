//! End-to-end tests of the `cdrflow` binary. Expected totals are written out
//! by hand or computed here with serde_json and integer arithmetic, never
//! with the pipeline's own code.

mod common;

use std::collections::BTreeMap;

use common::{assert_matches_truth, cdrflow, export, run_ok, seed_000_truth, temp_dir};

const HAND_MADE: &str = r#"{"cdr_id":"d1","msisdn":"+27 82 123 4567","event_datetime":"2024-03-01T23:30:00-02:00","data_type":"Video","up_bytes":1000,"down_bytes":19408}
{"cdr_id":"d2","msisdn":"0821234567","event_datetime":"2024-03-02T10:00:00Z","data_type":"video","up_bytes":0,"down_bytes":1000000000}
{"cdr_id":"d1","msisdn":"27821234567","event_datetime":"2024-03-01T23:30:00-02:00","data_type":"Video","up_bytes":1000,"down_bytes":19408}
{"cdr_id":"v1","msisdn":"0027821234567","start_time":"2024-03-02T10:00:00.5Z","call_type":"voice","call_duration_sec":1}
{"cdr_id":"v2","msisdn":"27821234567","start_time":"2024-03-02T12:00:00Z","call_type":" VOICE","call_duration_sec":61}
{"event_id":"e1","msisdn":"+27821234567","event_type":"sms","event_subtype":"outgoing","timestamp":"2024-03-02T11:00:00Z","region":"Gauteng","cell_tower_id":1001}
{"event_id":"e2","msisdn":"+27821234567","event_type":"balance_recharge","event_subtype":"voucher","amount":50.25,"timestamp":"2024-03-02T11:00:00Z"}
{"event_id":"e3","msisdn":"+27821234567","event_type":"service_activation","event_subtype":"roaming","timestamp":"2024-03-02T11:00:00Z"}
{"event_id":"e4","msisdn":"+27821234567","event_type":"data_session","data_mb":1.5,"timestamp":"2024-03-02T11:00:00Z"}
{"msisdn": "0821234567"
{"cdr_id":"v3","msisdn":"0821234567","start_time":"2024-03-02T10:00:00Z","call_type":"voice","call_duration_sec":-4}

{"cdr_id":"v4","msisdn":"12ab","start_time":"2024-03-02T10:00:00Z","call_type":"voice","call_duration_sec":4}
{"cdr_id":"d3","msisdn":"+27831112222","event_datetime":"2024-03-02T00:00:00Z","data_type":"video","up_bytes":1000000000000000,"down_bytes":0}
"#;

fn row<'a>(
    rows: &'a BTreeMap<(String, String, String, String), BTreeMap<String, String>>,
    key: [&str; 4],
) -> &'a BTreeMap<String, String> {
    let key = (
        key[0].to_string(),
        key[1].to_string(),
        key[2].to_string(),
        key[3].to_string(),
    );
    rows.get(&key)
        .unwrap_or_else(|| panic!("no summary row {key:?} in {:#?}", rows.keys()))
}

#[test]
fn processes_every_kind_exactly_and_keeps_rejects() {
    let dir = temp_dir("hand-made");
    let input = dir.join("cdrs.jsonl");
    std::fs::write(&input, HAND_MADE).unwrap();
    let output = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .arg("process")
            .arg(&input),
    );
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(summary.contains("13 records"), "{summary}");
    assert!(summary.contains("accepted 9, rejected 3"), "{summary}");
    assert!(summary.contains("duplicates 1"), "{summary}");

    let rows = export(&dir);
    assert_eq!(rows.len(), 7, "{rows:#?}");
    let video = row(&rows, ["data", "+27821234567", "2024-03-02", "video"]);
    assert_eq!(
        (video["up_bytes"].as_str(), video["down_bytes"].as_str()),
        ("1000", "1000019408")
    );
    // 20408 bytes = 0.001000, 1 GB = 49.000000
    assert_eq!(video["cost"], "49.001000");
    assert_eq!(video["records"], "2");
    assert_eq!(video["duration_sec"], "");
    let session = row(&rows, ["data", "+27821234567", "2024-03-02", "default"]);
    assert_eq!(
        (session["down_bytes"].as_str(), session["cost"].as_str()),
        ("1500000", "0.073500")
    );
    let voice = row(&rows, ["voice", "+27821234567", "2024-03-02", "voice"]);
    // 1 s = 0.016667 and 61 s = 1.016667
    assert_eq!(
        (voice["duration_sec"].as_str(), voice["cost"].as_str()),
        ("62", "1.033334")
    );
    assert_eq!(
        row(&rows, ["sms", "+27821234567", "2024-03-02", "outgoing"])["cost"],
        "0.500000"
    );
    assert_eq!(
        row(&rows, ["recharge", "+27821234567", "2024-03-02", "voucher"])["amount"],
        "50.250000"
    );
    assert_eq!(
        row(
            &rows,
            ["activation", "+27821234567", "2024-03-02", "roaming"]
        )["cost"],
        "5.000000"
    );
    let petabyte = row(&rows, ["data", "+27831112222", "2024-03-02", "video"]);
    assert_eq!(
        (petabyte["up_bytes"].as_str(), petabyte["cost"].as_str()),
        ("1000000000000000", "49000000.000000")
    );

    let rejected = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["rejected", "--format", "jsonl"]),
    );
    let rejects: Vec<serde_json::Value> = String::from_utf8(rejected.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<&str> = rejects
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["malformed_json", "negative_value", "invalid_msisdn"]
    );
    assert_eq!(rejects[0]["payload"], r#"{"msisdn": "0821234567""#);
    assert!(
        rejects[2]["position"]
            .as_str()
            .unwrap()
            .starts_with("line 13"),
        "{}",
        rejects[2]
    );

    let usage = run_ok(cdrflow().arg("--data-dir").arg(&dir).args([
        "usage",
        "082 123 4567",
        "--date",
        "2024-03-02",
        "--json",
    ]));
    let usage: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    assert_eq!(usage["msisdn"], "+27821234567");
    assert_eq!(usage["summaries"].as_array().unwrap().len(), 6);

    // Processing the same file again changes nothing.
    let again = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .arg("process")
            .arg(&input),
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 records"));
    assert_eq!(export(&dir), rows);
}

#[test]
fn bad_arguments_say_what_to_do() {
    let dir = temp_dir("bad-args");
    let out = cdrflow()
        .arg("--data-dir")
        .arg(&dir)
        .args(["usage", "not-a-number"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a subscriber number"));
    let out = cdrflow()
        .arg("--data-dir")
        .arg(&dir)
        .args(["process", "/nonexistent/cdrs.jsonl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/cdrs.jsonl"));
    let out = cdrflow()
        .args(["usage", "0821234567", "--date", "2024-02-30"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a date"));
    // Rated records kept in the lake only: nothing in the store to bill.
    let catalogue = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalogue.toml");
    for command in [
        &["bill", "--period", "2024-03"][..],
        &["report", "regions", "--period", "2024-03"],
    ] {
        let out = cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["--catalogue", catalogue, "--default-plan", "prepaid-basic"])
            .args(["--rated-records", "off"])
            .args(command)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("process with rated records on"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn generated_seed_000_traffic_matches_an_independent_computation() {
    let dir = temp_dir("generated");
    let mut inputs = Vec::new();
    for format in ["cdr-data", "cdr-voice"] {
        let path = dir.join(format!("{format}.jsonl"));
        run_ok(
            cdrflow()
                .args([
                    "generate",
                    "--format",
                    format,
                    "--count",
                    "20000",
                    "--subscribers",
                    "300",
                    "--days",
                    "2",
                ])
                .args([
                    "--start",
                    "2024-05-01",
                    "--seed",
                    "9",
                    "--faults",
                    "dup=0.05",
                    "--output",
                ])
                .arg(&path),
        );
        inputs.push(path);
    }
    run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .arg("process")
            .args(&inputs),
    );

    let lines: Vec<String> = inputs
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_matches_truth(&export(&dir), &seed_000_truth(&lines));
}

#[test]
fn run_is_the_whole_job_in_one_command() {
    let dir = temp_dir("run");
    let out = run_ok(cdrflow().arg("--data-dir").arg(&dir).args([
        "run",
        "--count",
        "20000",
        "--seed",
        "4",
        "--listen",
        "127.0.0.1:0",
    ]));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("== cdrflow run report =="), "{report}");
    assert!(report.contains("20000 records"), "{report}");
    assert!(report.contains("top subscribers by cost"), "{report}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("live dashboard on http://127.0.0.1:"), "{log}");
    assert!(log.contains("created API user `demo`"), "{log}");
    assert!(dir.join("users.toml").exists());
    // Faults are injected by default, and each kind of rejection is named.
    assert!(report.contains("malformed_json"), "{report}");
}

/// Issue 11: `cdrflow run` streams by default — for its duration, at its
/// rate, committing as it goes; with `--live`, event times follow the clock.
#[test]
fn run_streams_for_its_duration_and_commits_as_it_goes() {
    let dir = temp_dir("run-stream");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let (before, started) = (now(), std::time::Instant::now());
    let out = run_ok(cdrflow().arg("--data-dir").arg(&dir).args([
        "run",
        "--duration",
        "4",
        "--rate",
        "2000",
        "--live",
        "--seed",
        "5",
        "--no-serve",
    ]));
    let (after, elapsed) = (now(), started.elapsed());
    assert!(elapsed.as_secs_f64() >= 3.9, "{elapsed:?}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("8000 records"), "{report}");
    let checkpoints: u64 = report
        .split(" over ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint count in {report}"));
    assert!(checkpoints >= 3, "one commit about every second: {report}");
    // Event times are now-ish: every window lies within the run (less the
    // generator's jitter and late records, at most an hour).
    let windows = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["export", "windows"]),
    );
    let windows = String::from_utf8(windows.stdout).unwrap();
    assert!(windows.lines().count() > 1, "{windows}");
    for line in windows.lines().skip(1) {
        let start = line.split(',').next().unwrap();
        let ms = parse_rfc3339_utc(start);
        assert!(ms >= before - 3_600_000 - 300_000 && ms <= after, "{line}");
    }
}

/// Ctrl-C ends a streaming run early, with what was read committed and reported.
#[test]
fn ctrl_c_ends_a_streaming_run_with_a_report() {
    let dir = temp_dir("run-ctrl-c");
    let child = cdrflow()
        .arg("--data-dir")
        .arg(&dir)
        .args(["run", "--duration", "60", "--rate", "2000", "--no-serve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let started = std::time::Instant::now();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert!(out.status.success(), "{}", out.status);
    let report = String::from_utf8_lossy(&out.stdout);
    let records: u64 = report
        .split("this run")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {report}"));
    assert!(records > 1000 && records < 30_000, "{report}");
    let exported = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["export", "summaries"]),
    );
    assert!(exported.stdout.len() > 1000, "what was read is committed");
}

/// Milliseconds of `YYYY-MM-DDTHH:MM:SSZ` (days from the civil date, Howard Hinnant's algorithm).
fn parse_rfc3339_utc(text: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000
}

/// Issue 9: a record of 100,000 nested brackets once overflowed the stack
/// and aborted every run that met it. Now it is refused with a reason and the
/// records after it are processed.
#[test]
fn a_deeply_nested_record_is_refused_not_fatal() {
    let dir = temp_dir("cli-nested");
    let input = dir.join("nested.jsonl");
    let good = r#"{"cdr_id":"v1","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":60}"#;
    std::fs::write(
        &input,
        format!("{}{}\n{good}\n", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    let out = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .arg("process")
            .arg(&input),
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("accepted 1, rejected 1 (too_deeply_nested 1)"),
        "{summary}"
    );
}

/// Issue 9: a record longer than `--max-record-bytes` is refused with its
/// first bytes kept, without being read into memory whole; what follows it
/// is processed.
#[test]
fn an_oversized_record_is_refused_with_its_first_bytes() {
    let dir = temp_dir("cli-oversized");
    let input = dir.join("big.jsonl");
    let good = r#"{"cdr_id":"v1","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":60}"#;
    let huge = format!(r#"{{"cdr_id":"x","padding":"{}"}}"#, "y".repeat(5_000_000));
    let medium = format!(r#"{{"cdr_id":"m","padding":"{}"}}"#, "z".repeat(100_000));
    std::fs::write(&input, format!("{huge}\n{good}\n{medium}\n")).unwrap();
    let out = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["process", "--max-record-bytes", "65536"])
            .arg(&input),
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("accepted 1, rejected 2 (record_too_large 2)"),
        "{summary}"
    );
    let rejected = run_ok(cdrflow().arg("--data-dir").arg(&dir).args([
        "rejected",
        "--format",
        "jsonl",
        "--reason",
        "record_too_large",
    ]));
    let text = String::from_utf8(rejected.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("{} bytes", huge.len())));
    let payload = first["payload"].as_str().unwrap();
    assert!(
        payload.len() <= 4096 * 2 && payload.starts_with(r#"{"cdr_id":"x""#),
        "{payload:.100}"
    );
}

#[test]
fn catalogue_check_and_price_explain_a_cost() {
    let catalogue = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalogue.toml");
    let out = run_ok(cdrflow().args(["catalogue", "check", catalogue]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("version 2024-03 from 2024-03-01T00:00:00Z (MAD, Africa/Casablanca)"),
        "{text}"
    );
    // Monday 08:00 in Casablanca (UTC+1), a national mobile number: peak,
    // 75 s at 30/6 → 78 s, 0.15 + 1.20 × 78 / 60 = 1.71.
    let price = |to: &str| {
        cdrflow()
            .args([
                "--default-country-code",
                "212",
                "catalogue",
                "price",
                catalogue,
            ])
            .args([
                "--plan",
                "prepaid-basic",
                "--to",
                to,
                "--at",
                "2024-03-04T07:00:00Z",
                "--seconds",
                "75",
            ])
            .output()
            .unwrap()
    };
    let out = price("0612345678");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("75 s billed as 78 s"), "{text}");
    assert!(
        text.ends_with("cost 1.710000 MAD (version 2024-03, rate mobile-peak, 78 billed)\n"),
        "{text}"
    );
    let out = price("+212891234567");
    assert!(!out.status.success());
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(
        error.contains("no voice rate for destination `ma-premium`"),
        "{error}"
    );
}

#[test]
fn a_catalogue_prices_processed_records_by_destination_and_refuses_what_it_cannot_price() {
    let dir = temp_dir("catalogue-process");
    let input = dir.join("in.jsonl");
    let line = |id: &str, rest: &str, time: &str| {
        format!(
            r#"{{"event_id":"{id}","msisdn":"+212600000001",{rest},"region":"Casablanca","timestamp":"2024-03-04T{time}Z"}}"#
        )
    };
    let lines = [
        // Peak (08:00 in Casablanca), mobile: 75 s → 78 s, 0.15 + 1.20 × 78 / 60 = 1.71
        line(
            "c1",
            r#""other_party":"0612345678","event_type":"call","event_subtype":"outgoing","duration_seconds":75"#,
            "07:00:00",
        ),
        // France, 60/1: 61 s × 3.50 / 60 = 3.5583… up → 3.56
        line(
            "c2",
            r#""other_party":"+33612345678","event_type":"call","event_subtype":"outgoing","duration_seconds":61"#,
            "07:10:00",
        ),
        // Incoming: free.
        line(
            "c3",
            r#""other_party":"+33612345678","event_type":"call","event_subtype":"incoming","duration_seconds":100"#,
            "07:20:00",
        ),
        // 0.35 a national SMS.
        line(
            "s1",
            r#""other_party":"0612345678","event_type":"sms","event_subtype":"outgoing""#,
            "07:30:00",
        ),
        // 1.5 MB → 1,465 KiB = 1,500,160 bytes × 10.00 / 10^9 = 0.015 → 0.02
        line(
            "d1",
            r#""event_type":"data_session","data_mb":1.5"#,
            "07:40:00",
        ),
        line(
            "a1",
            r#""event_type":"service_activation","event_subtype":"roaming""#,
            "07:45:00",
        ),
        // A premium number has no rate; a call without a called number no destination.
        line(
            "p1",
            r#""other_party":"+212891234567","event_type":"call","event_subtype":"outgoing","duration_seconds":60"#,
            "07:50:00",
        ),
        line(
            "n1",
            r#""event_type":"call","event_subtype":"outgoing","duration_seconds":60"#,
            "07:55:00",
        ),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let catalogue = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalogue.toml");
    let data = dir.join("data");
    let store = ["--data-dir", data.to_str().unwrap()];
    let out = run_ok(
        cdrflow()
            .args(store)
            .args(["--catalogue", catalogue, "--default-plan", "prepaid-basic"])
            .args(["--default-country-code", "212", "process"])
            .arg(&input),
    );
    let report = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    assert!(
        report.contains(
            "accepted 6 (6 of unknown subscribers: rated on the default plan), rejected 2 (no_rate 2)"
        ),
        "{report}"
    );
    let summaries =
        String::from_utf8(run_ok(cdrflow().args(store).args(["export", "summaries"])).stdout)
            .unwrap();
    let cost = |kind_and_type: &str| -> String {
        let line = summaries
            .lines()
            .find(|l| {
                l.starts_with(kind_and_type.split(',').next().unwrap())
                    && l.contains(&format!(",{},", kind_and_type.split(',').nth(1).unwrap()))
            })
            .unwrap_or_else(|| panic!("no {kind_and_type} row in\n{summaries}"));
        line.split(',').nth(7).unwrap().to_string()
    };
    assert_eq!(cost("voice,outgoing"), "5.270000", "1.71 + 3.56");
    assert_eq!(cost("voice,incoming"), "0.000000");
    assert_eq!(cost("sms,outgoing"), "0.350000");
    assert_eq!(cost("data,default"), "0.020000");
    assert_eq!(cost("activation,roaming"), "5.000000");
    let rejected =
        String::from_utf8(run_ok(cdrflow().args(store).args(["rejected"])).stdout).unwrap();
    assert!(
        rejected.contains("no voice rate for destination `ma-premium`"),
        "{rejected}"
    );
    assert!(rejected.contains("names no called number"), "{rejected}");

    let without_plan = cdrflow()
        .args(store)
        .args(["--catalogue", catalogue, "process"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!without_plan.status.success());
    assert!(String::from_utf8_lossy(&without_plan.stderr).contains("needs --default-plan PLAN"));
}

#[test]
fn a_cgrates_tariff_plan_imports_into_a_catalogue_that_prices_its_figures() {
    let dir = temp_dir("cgrates-import");
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cdrflow-catalogue/fixtures/cgrates"
    );
    let output = dir.join("imported.toml");
    let out = run_ok(
        cdrflow()
            .args(["catalogue", "import", "--cgrates", plan, "--output"])
            .arg(&output),
    );
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("plans *any"));
    // CGRateS #118: 75 s at 30/6 and 0.006 a minute → 78 s = 0.0078.
    let out = run_ok(cdrflow().args(["catalogue", "price"]).arg(&output).args([
        "--plan",
        "*any",
        "--to",
        "+14155550100",
        "--at",
        "2024-03-09T10:00:00Z",
        "--seconds",
        "75",
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cost 0.007800 USD"), "{text}");
    let missing = cdrflow()
        .args(["catalogue", "import", "--cgrates"])
        .arg(&dir)
        .arg("--output")
        .arg(dir.join("x.toml"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("Destinations.csv line 0, -: missing from the tariff plan"));
}
