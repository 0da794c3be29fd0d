//! SIGKILL `cdrflow process` at arbitrary moments, restart it, and demand
//! exactly the results of an uninterrupted run: summaries, rejects,
//! windows, late events, anomalies, raw events, rated records, balances and
//! the Parquet lake alike.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{cdrflow, duckdb, export, run_ok, temp_dir};

/// `export windows`, and `export late-events` and `export anomalies`
/// (without the store's row ids).
fn analytics(dir: &Path) -> (String, Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let export = |what: &str| {
        let out = run_ok(cdrflow().arg("--data-dir").arg(dir).args(["export", what]));
        String::from_utf8(out.stdout).unwrap()
    };
    let without_ids = |text: String| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("id");
                v
            })
            .collect()
    };
    (
        export("windows"),
        without_ids(export("late-events")),
        without_ids(export("anomalies")),
    )
}

fn rejects(dir: &Path) -> Vec<(String, String, String)> {
    let out = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(dir)
            .args(["rejected", "--format", "jsonl"]),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["reason"].as_str().unwrap().into(),
                v["position"].as_str().unwrap().into(),
                v["payload"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Starts the command `process` makes, SIGKILLs it after each delay (if
/// it is still running), and demands that most runs died mid-way.
fn crash_repeatedly(process: impl Fn() -> std::process::Command, delays_ms: &[u64]) {
    let mut killed_mid_run = 0;
    for &delay_ms in delays_ms {
        let mut child = process()
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed_mid_run += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        killed_mid_run >= 3,
        "only {killed_mid_run} runs were still going when killed; make the input larger"
    );
}

#[test]
fn sigkill_at_any_moment_then_restart_gives_the_uninterrupted_totals() {
    let dir = temp_dir("crash");
    let input = dir.join("traffic.jsonl");
    run_ok(
        cdrflow()
            .args([
                "generate",
                "--count",
                "600000",
                "--seed",
                "42",
                "--subscribers",
                "2000",
                "--days",
                "3",
            ])
            .args([
                "--start",
                "2024-06-01",
                "--faults",
                "bad=0.01,dup=0.02,late=0.01,anomaly=0.001",
                "--output",
            ])
            .arg(&input),
    );
    let process = |data_dir: &Path| {
        let mut cmd = cdrflow();
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["process", "--batch-size", "20000"])
            .arg(&input);
        cmd
    };

    let reference = dir.join("reference");
    run_ok(&mut process(&reference));

    let crashed = dir.join("crashed");
    crash_repeatedly(|| process(&crashed), &[40, 90, 150, 220, 300, 120, 60]);
    run_ok(&mut process(&crashed));

    let expected = export(&reference);
    assert!(expected.len() > 1000);
    assert_eq!(export(&crashed), expected, "summaries differ after crashes");
    let expected_rejects = rejects(&reference);
    assert!(!expected_rejects.is_empty());
    assert_eq!(
        rejects(&crashed),
        expected_rejects,
        "rejects differ after crashes"
    );
    let (windows, late, anomalies) = analytics(&reference);
    assert!(windows.lines().count() > 1000 && late.len() > 1000);
    let rules: std::collections::BTreeSet<_> = anomalies
        .iter()
        .map(|a| a["rule"].as_str().unwrap().to_string())
        .collect();
    // The generator's patterns fire every rule but volume_spike (its
    // traffic has no earlier weeks to make a baseline of).
    let every_rule: std::collections::BTreeSet<String> = [
        "high_frequency",
        "impossible_travel",
        "large_data_session",
        "large_recharge",
        "long_call",
        "sim_box",
        "wangiri",
    ]
    .map(String::from)
    .into();
    assert_eq!(rules, every_rule, "the generated traffic fires every rule");
    let (crashed_windows, crashed_late, crashed_anomalies) = analytics(&crashed);
    assert!(crashed_windows == windows, "windows differ after crashes");
    assert_eq!(crashed_late, late, "late events differ after crashes");
    assert_eq!(
        crashed_anomalies, anomalies,
        "anomalies differ after crashes"
    );
    // Raw events: each day's hourly statistics over them are the same, and
    // verify finds every raw event in its window or late, none twice.
    for date in ["2024-06-01", "2024-06-02", "2024-06-03"] {
        let stats = |data_dir: &Path| {
            for step in ["run_batch_processing", "verify_results"] {
                run_ok(
                    cdrflow()
                        .arg("--data-dir")
                        .arg(data_dir)
                        .args(["daily", "--date", date, "--step", step]),
                );
            }
            let out = run_ok(cdrflow().arg("--data-dir").arg(data_dir).args([
                "export",
                "hourly-stats",
                "--date",
                date,
            ]));
            String::from_utf8(out.stdout).unwrap()
        };
        let expected = stats(&reference);
        assert!(expected.lines().count() > 100, "{date}: {expected}");
        assert_eq!(
            stats(&crashed),
            expected,
            "raw events of {date} differ after crashes"
        );
    }
}

/// The same with catalogue rating on seed 001's network: rated records,
/// prepaid balances and balance alerts after SIGKILLs and restarts are
/// those of one uninterrupted run.
#[test]
fn sigkill_at_any_moment_leaves_rated_records_and_balances_exactly_once() {
    let dir = temp_dir("crash-rating");
    let input = dir.join("traffic.jsonl");
    let reference_files = dir.join("reference-files");
    run_ok(
        cdrflow()
            .args(["generate", "--profile", "ma", "--format", "telecom-events"])
            .args(["--count", "300000", "--seed", "9", "--subscribers", "3000"])
            .args(["--days", "3", "--start", "2024-03-04"])
            .args(["--faults", "bad=0.01,dup=0.02,late=0.01", "--reference-dir"])
            .arg(&reference_files)
            .arg("--output")
            .arg(&input),
    );
    let catalogue = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalogue.toml");
    let rating = |data_dir: &Path| {
        let mut cmd = cdrflow();
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["--default-country-code", "212", "--catalogue", catalogue])
            .args(["--default-plan", "prepaid-basic", "--lake"])
            .arg(data_dir.join("lake"));
        cmd
    };
    let load = |data_dir: &Path| {
        for kind in ["subscribers", "customers", "cells"] {
            run_ok(
                rating(data_dir)
                    .args(["reference", "load", kind])
                    .arg(reference_files.join(format!("{kind}.csv"))),
            );
        }
    };
    let process = |data_dir: &Path| {
        let mut cmd = rating(data_dir);
        cmd.args(["process", "--batch-size", "10000"]).arg(&input);
        cmd
    };
    let results = |data_dir: &Path| {
        let export = |what: &str| {
            String::from_utf8(run_ok(rating(data_dir).args(["export", what])).stdout).unwrap()
        };
        let (_, _, anomalies) = analytics(data_dir);
        (export("rated"), export("balances"), anomalies)
    };
    // Every row of both datasets, in one order, as DuckDB reads them.
    let lake_rows = |data_dir: &Path| {
        ["mediated", "rated"].map(|dataset| {
            duckdb(&format!(
                "SELECT * FROM read_parquet('{}/lake/{dataset}/**/*.parquet', hive_partitioning = true) ORDER BY ALL",
                data_dir.display()
            ))
        })
    };

    let reference = dir.join("reference");
    load(&reference);
    run_ok(&mut process(&reference));
    let crashed = dir.join("crashed");
    load(&crashed);
    crash_repeatedly(|| process(&crashed), &[60, 130, 200, 90, 260, 40]);
    run_ok(&mut process(&crashed));

    let (rated, balances, anomalies) = results(&reference);
    assert!(
        rated.lines().count() > 250_000,
        "every accepted record is rated"
    );
    assert!(balances.lines().count() > 1000, "{balances}");
    let balance_alerts = anomalies
        .iter()
        .filter(|a| a["rule"].as_str().unwrap().ends_with("_balance"))
        .count();
    assert!(balance_alerts > 100, "{balance_alerts} balance alerts");
    let [mediated, lake_rated] = lake_rows(&reference);
    assert_eq!(
        lake_rated.len(),
        rated.lines().count() - 1,
        "the lake rates what the store does"
    );
    assert!(
        mediated.len() >= lake_rated.len(),
        "every rated record was mediated"
    );
    let [crashed_mediated, crashed_lake_rated] = lake_rows(&crashed);
    let staged = std::fs::read_dir(crashed.join("lake/_staging"))
        .unwrap()
        .count();
    assert_eq!(
        staged, 0,
        "what killed runs left staged was finished by the next"
    );
    assert!(
        crashed_mediated == mediated,
        "the lake's mediated records differ after crashes"
    );
    assert!(
        crashed_lake_rated == lake_rated,
        "the lake's rated records differ after crashes"
    );
    let (crashed_rated, crashed_balances, crashed_anomalies) = results(&crashed);
    assert!(crashed_rated == rated, "rated records differ after crashes");
    assert_eq!(crashed_balances, balances, "balances differ after crashes");
    assert_eq!(
        crashed_anomalies, anomalies,
        "anomalies differ after crashes"
    );
}
