//! `cdrflow run` end to end as an operator sees it: the live dashboard in a
//! real headless Chromium, and the Prometheus metrics checked by promtool.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::browser::{data_attribute, element_text, rendered_dom, table_rows};
use common::{cdrflow, http_get, http_get_json, port_in, spawn_until, temp_dir, KillOnDrop};

/// Starts `cdrflow run --keep-serving` and waits until the job is done;
/// returns the process, the dashboard and metrics ports and the demo credentials.
fn run_and_keep_serving(name: &str) -> (KillOnDrop, u16, u16, String) {
    let dir = temp_dir(name);
    let (mut port, mut metrics_port, mut password) = (None, None, None);
    let run = spawn_until(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["run", "--count", "20000", "--seed", "7", "--keep-serving"])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .stdout(Stdio::null()),
        Duration::from_secs(120),
        |line| {
            if let Some(rest) = line.split("password `").nth(1) {
                password = rest.split('`').next().map(str::to_string);
            }
            if line.contains("live dashboard on") {
                port = port_in(line);
            }
            if line.contains("Prometheus metrics on") {
                metrics_port = port_in(line);
            }
            line.contains("still serving")
        },
    );
    let credentials = format!("demo:{}", password.expect("a demo password is printed"));
    (
        run,
        port.expect("the dashboard address is printed"),
        metrics_port.expect("the metrics address is printed"),
        credentials,
    )
}

#[test]
fn run_serves_a_live_dashboard_and_valid_metrics() {
    let (_run, port, metrics_port, credentials) = run_and_keep_serving("dashboard");
    let demo = Some(credentials.as_str());

    // Metrics on their own port: valid exposition with this process's measurements.
    assert_eq!(http_get(metrics_port, "/ready", None).0, 200);
    assert_eq!(http_get(metrics_port, "/metrics", None).0, 401);
    let (status, metrics) = http_get(metrics_port, "/metrics", demo);
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (.ci/run: apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        metrics.contains("\ncdrflow_records_in_total 20000\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\ncdrflow_ingest_to_commit_seconds_count 20000\n"),
        "{metrics}"
    );
    // Named events count beside their log lines: this run's commits.
    let committed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cdrflow_checkpoints_committed_total{source=\"files\"} "))
        .expect("the run's commits are counted")
        .parse()
        .unwrap();
    assert!(committed >= 1, "{metrics}");
    let last_update: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cdr_last_update_timestamp "))
        .expect("cdr_last_update_timestamp is exposed")
        .parse()
        .unwrap();
    assert!(last_update > 1.7e9, "{last_update}");

    // The dashboard in a real browser: let it poll a few times, then read the page.
    let dom = rendered_dom(&format!("http://{credentials}@127.0.0.1:{port}/"), 7000);
    let shown = |id: &str| element_text(&dom, id);
    let attribute = |name: &str| data_attribute(&dom, name);
    let (status, overview) = http_get_json(port, "/overview", demo);
    assert_eq!(status, 200);
    for counter in ["records_in", "accepted", "rejected", "duplicates"] {
        assert_eq!(
            shown(counter),
            overview["counters"][counter].to_string(),
            "{counter}: the page shows what the API says"
        );
    }
    assert_eq!(shown("records_in"), "20000");
    assert!(attribute("data-refreshes") >= 2, "the page updates itself");
    assert!(
        attribute("data-points") >= 1,
        "the throughput chart is drawn"
    );
    assert!(dom.contains("<td>read → committed</td>"), "{dom}");
    // The billing panel asks too: the demo issues no invoice.
    let (status, billing) = http_get_json(port, "/billing/summary", demo);
    assert_eq!(
        (status, &billing["period"]),
        (200, &serde_json::Value::Null)
    );
    assert_eq!(shown("billing_period"), "(no invoice finalised yet)");
    // The spend panel: the report the run flushed when it ended. The demo
    // rates on the flat tariff, which keeps no rated records (the
    // rankings' source: `tests/cdc.rs` checks their figures), so the panel
    // says so, and shows the subscribers by status.
    let (status, report) = http_get_json(port, "/rankings", demo);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["period"], serde_json::Value::Null, "{report}");
    assert!(
        shown("rankings_period").starts_with("(no rated records kept: rate with --catalogue"),
        "{}",
        shown("rankings_period")
    );
    assert_eq!(attribute("data-bars"), 0, "no spender to draw");
    let statuses: Vec<Vec<String>> = report["statuses"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(status, n)| vec![status.clone(), n.to_string()])
        .collect();
    assert_eq!(statuses.len(), 3, "{report}");
    assert_eq!(table_rows(&dom, "statuses"), statuses);
    assert!(
        dom.contains("<td>invalid_msisdn</td>"),
        "rejects by reason are listed"
    );

    // Seed 003's panels: late events, windows per region, anomalies by severity.
    assert_eq!(
        shown("late_events"),
        overview["counters"]["late_events"].to_string()
    );
    assert!(overview["counters"]["late_events"].as_u64().unwrap() > 0);
    let date = overview["date"].as_str().unwrap();
    let (_, windows) = http_get_json(port, &format!("/windows?from={date}T00:00:00Z"), demo);
    let mut by_region: std::collections::BTreeMap<
        String,
        (u64, std::collections::BTreeSet<String>),
    > = Default::default();
    for w in windows["windows"].as_array().unwrap() {
        let entry = by_region
            .entry(w["region"].as_str().unwrap().into())
            .or_default();
        entry.0 += w["total_events"].as_u64().unwrap();
        entry.1.insert(w["window_start"].as_str().unwrap().into());
    }
    assert!(by_region.len() > 1, "{windows}");
    let expected: Vec<Vec<String>> = by_region
        .iter()
        .map(|(region, (events, starts))| {
            vec![region.clone(), events.to_string(), starts.len().to_string()]
        })
        .collect();
    assert_eq!(table_rows(&dom, "regions"), expected, "windows per region");
    assert_eq!(
        attribute("data-series"),
        by_region.len() as u64,
        "a line per region"
    );
    let mut severities = Vec::new();
    for severity in ["critical", "high", "medium", "low"] {
        let (_, page) = http_get_json(
            port,
            &format!("/anomalies?limit=1000&severity={severity}"),
            demo,
        );
        let count = page["anomalies"].as_array().unwrap().len();
        severities.push(vec![severity.to_string(), count.to_string()]);
    }
    assert!(severities.iter().any(|row| row[1] != "0"), "{severities:?}");
    assert_eq!(
        table_rows(&dom, "severities"),
        severities,
        "anomalies by severity"
    );
}
