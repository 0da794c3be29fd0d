//! The shipped Airflow DAG (`deploy/airflow/dags/cdrflow_daily_batch.py`)
//! run by real Airflow (`airflow dags test`, PyPI's apache-airflow in a venv
//! that scripts/test makes; `CDRFLOW_AIRFLOW` names its `airflow`) over a
//! small store: seed 003's five tasks in order, its schedule and retries,
//! and the statistics they leave behind.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cdrflow, run_ok, temp_dir};

const DAG_ID: &str = "cdrflow_daily_batch";
const TASKS: [&str; 5] = [
    "check_data_quality",
    "run_batch_processing",
    "verify_results",
    "send_summary",
    "cleanup_old_data",
];

fn airflow_bin() -> PathBuf {
    PathBuf::from(std::env::var("CDRFLOW_AIRFLOW").unwrap_or_else(|_| "airflow".into()))
}

fn dags_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/airflow/dags")
}

/// An Airflow command with its own home (metadata database, logs) in `home`.
fn airflow(program: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("AIRFLOW_HOME", home)
        .env("AIRFLOW__CORE__DAGS_FOLDER", dags_folder())
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__CORE__UNIT_TEST_MODE", "False");
    cmd
}

fn run(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (scripts/test installs Airflow and sets CDRFLOW_AIRFLOW)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn the_dag_runs_seed_003s_five_steps_in_real_airflow() {
    let dir = temp_dir("airflow");
    let data = dir.join("data");
    let events = dir.join("events.jsonl");
    run_ok(
        cdrflow()
            .args(["generate", "--format", "telecom-events", "--count", "20000"])
            .args(["--start", "2025-11-09", "--faults", "late=0.01,dup=0.01"])
            .arg("--output")
            .arg(&events),
    );
    run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&data)
            .arg("process")
            .arg(&events),
    );

    // The day's accepted events, counted here from the file: the first
    // line of each event id, by its timestamp's date.
    let mut seen = HashSet::new();
    let mut on_the_day = 0u64;
    for line in std::fs::read_to_string(&events).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if seen.insert(v["event_id"].as_str().unwrap().to_string())
            && v["timestamp"].as_str().unwrap().starts_with("2025-11-09")
        {
            on_the_day += 1;
        }
    }
    assert!(on_the_day > 1000, "{on_the_day}");

    let program = airflow_bin();
    let home = dir.join("airflow-home");
    run(airflow(&program, &home).args(["db", "migrate"]));
    // The DAG as declared: seed 003's schedule, retries and task order.
    let python = program.with_file_name("python");
    let python = if python.exists() {
        python
    } else {
        PathBuf::from("python3")
    };
    let shape = run(airflow(&python, &home).args([
        "-c",
        &format!(
            r#"
import json
from airflow.models import DagBag
bag = DagBag(include_examples=False)
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag("{DAG_ID}")
order = [t.task_id for t in dag.topological_sort()]
print(json.dumps({{
    "schedule": dag.schedule_interval, "catchup": dag.catchup, "order": order,
    "chain": [sorted(dag.get_task(t).upstream_task_ids) for t in order],
    "retries": [dag.get_task(t).retries for t in order],
    "retry_delay": [dag.get_task(t).retry_delay.total_seconds() for t in order],
}}))
"#
        ),
    ]));
    let shape: serde_json::Value = serde_json::from_str(shape.lines().last().unwrap()).unwrap();
    assert_eq!(shape["schedule"], "0 1 * * *");
    assert_eq!(shape["catchup"], false);
    assert_eq!(shape["order"], serde_json::json!(TASKS));
    let mut upstream = vec![serde_json::json!([])];
    upstream.extend(TASKS[..4].iter().map(|t| serde_json::json!([t])));
    assert_eq!(shape["chain"], serde_json::Value::Array(upstream));
    assert_eq!(shape["retries"], serde_json::json!([3, 3, 3, 3, 3]));
    assert_eq!(
        shape["retry_delay"],
        serde_json::json!([300.0, 300.0, 300.0, 300.0, 300.0])
    );

    let log = run(airflow(&program, &home)
        .args(["dags", "test", DAG_ID, "2025-11-09"])
        .env("CDRFLOW_BIN", env!("CARGO_BIN_EXE_cdrflow"))
        .env("CDRFLOW_DATA_DIR", &data)
        .env("CDRFLOW_LOG", "info"));
    for task in TASKS {
        assert!(
            log.contains(&format!(
                "Marking task as SUCCESS. dag_id={DAG_ID}, task_id={task},"
            )),
            "{task} did not succeed:\n{log}"
        );
    }
    assert!(log.contains("state=success"), "{log}");
    assert!(
        log.contains("--date 2025-11-09"),
        "the tasks process the run's day: {log}"
    );

    // What the tasks left: the day's statistics over exactly its events.
    let out = run_ok(cdrflow().arg("--data-dir").arg(&data).args([
        "export",
        "daily-stats",
        "--date",
        "2025-11-09",
        "--format",
        "jsonl",
    ]));
    let total: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["total_events"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(total, on_the_day);
}
