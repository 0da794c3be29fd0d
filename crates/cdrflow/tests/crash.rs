//! SIGKILL `cdrflow process` at arbitrary moments, restart it, and demand
//! exactly the results of an uninterrupted run: summaries, rejects,
//! windows and late events alike.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{cdrflow, export, run_ok, temp_dir};

/// `export windows` and `export late-events` (without the store's row ids).
fn analytics(dir: &Path) -> (String, Vec<serde_json::Value>) {
    let windows = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(dir)
            .args(["export", "windows"]),
    );
    let late = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(dir)
            .args(["export", "late-events"]),
    );
    let late = String::from_utf8(late.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("id");
            v
        })
        .collect();
    (String::from_utf8(windows.stdout).unwrap(), late)
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
                "bad=0.01,dup=0.02,late=0.01",
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
    let mut killed_mid_run = 0;
    for delay_ms in [40, 90, 150, 220, 300, 120, 60] {
        let mut child = process(&crashed)
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
    let (windows, late) = analytics(&reference);
    assert!(windows.lines().count() > 1000 && late.len() > 1000);
    let (crashed_windows, crashed_late) = analytics(&crashed);
    assert!(crashed_windows == windows, "windows differ after crashes");
    assert_eq!(crashed_late, late, "late events differ after crashes");
}
