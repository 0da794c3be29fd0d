//! The Parquet lake read back by DuckDB (another program, none of our
//! code): every accepted record once under `mediated/`, every rated record
//! once under `rated/`, with the store's own totals — in SQLite and in
//! PostgreSQL, over runs that add to the lake and a run that reads nothing
//! new. `export rated --format parquet` gives the same rows.

mod common;

use std::collections::BTreeMap;

use common::{cdrflow, duckdb, export_with, micros, postgres_database, run_ok, temp_dir};

fn lake_matches_the_store(name: &str, store_args: &[&str]) {
    let dir = temp_dir(name);
    let reference = dir.join("reference");
    let (first, second) = (dir.join("first.jsonl"), dir.join("second.jsonl"));
    for (file, seed, start) in [(&first, "3", "2024-03-04"), (&second, "4", "2024-03-06")] {
        let mut generate = cdrflow();
        generate
            .args(["generate", "--profile", "ma", "--format", "telecom-events"])
            .args(["--count", "30000", "--seed", seed, "--subscribers", "800"])
            .args(["--days", "2", "--start", start])
            .args(["--faults", "bad=0.01,dup=0.02,late=0.01"])
            .arg("--output")
            .arg(file);
        if seed == "3" {
            generate.arg("--reference-dir").arg(&reference);
        }
        run_ok(&mut generate);
    }
    let lake = dir.join("lake");
    let catalogue = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalogue.toml");
    let cdrflow_on_store = || {
        let mut cmd = cdrflow();
        cmd.args(store_args)
            .args(["--default-country-code", "212", "--catalogue", catalogue])
            .args(["--default-plan", "prepaid-basic", "--lake"])
            .arg(&lake);
        cmd
    };
    for kind in ["subscribers", "customers", "cells"] {
        run_ok(
            cdrflow_on_store()
                .args(["reference", "load", kind])
                .arg(reference.join(format!("{kind}.csv"))),
        );
    }
    for input in [&first, &second, &first] {
        run_ok(
            cdrflow_on_store()
                .args(["process", "--batch-size", "4000"])
                .arg(input),
        );
    }

    // The store's totals, through its own SQL.
    let summaries = export_with(store_args);
    let mut by_day: BTreeMap<(String, String), [i128; 4]> = BTreeMap::new();
    let mut cost_by_kind: BTreeMap<String, i128> = BTreeMap::new();
    let number = |v: &str| {
        if v.is_empty() {
            0
        } else {
            v.parse::<i128>().unwrap()
        }
    };
    for ((kind, _, date, _), row) in &summaries {
        let totals = by_day.entry((kind.clone(), date.clone())).or_default();
        totals[0] += number(&row["records"]);
        totals[1] += number(&row["duration_sec"]);
        totals[2] += number(&row["up_bytes"]);
        totals[3] += number(&row["down_bytes"]);
        if !row["cost"].is_empty() {
            *cost_by_kind.entry(kind.clone()).or_default() += micros(&row["cost"]);
        }
    }
    let rated_csv =
        String::from_utf8(run_ok(cdrflow_on_store().args(["export", "rated"])).stdout).unwrap();
    let header: Vec<&str> = rated_csv.lines().next().unwrap().split(',').collect();
    let (id, cost) = (
        header.iter().position(|h| *h == "record_id").unwrap(),
        header.iter().position(|h| *h == "cost").unwrap(),
    );
    let mut stored_rated: Vec<(String, i128)> = rated_csv
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (cells[id].to_string(), micros(cells[cost]))
        })
        .collect();
    stored_rated.sort();
    assert!(stored_rated.len() > 50_000, "{} rated", stored_rated.len());

    // The lake, through DuckDB.
    let glob = |dataset: &str| {
        format!(
            "read_parquet('{}/{dataset}/**/*.parquet', hive_partitioning = true)",
            lake.display()
        )
    };
    let mut lake_by_day: BTreeMap<(String, String), [i128; 4]> = BTreeMap::new();
    for line in duckdb(&format!(
        "SELECT kind, date, count(*), sum(duration_sec), sum(up_bytes), sum(down_bytes) FROM {} GROUP BY ALL",
        glob("mediated")
    )) {
        let cells: Vec<&str> = line.split(',').collect();
        let totals = [2, 3, 4, 5].map(|i| cells[i].parse::<i128>().unwrap());
        lake_by_day.insert((cells[0].to_string(), cells[1].to_string()), totals);
    }
    assert_eq!(
        lake_by_day, by_day,
        "mediated records per kind and date: lake vs store"
    );
    let lake_cost_by_kind: BTreeMap<String, i128> = duckdb(&format!(
        "SELECT kind, sum(cost) FROM {} GROUP BY ALL",
        glob("rated")
    ))
    .iter()
    .map(|line| {
        let (kind, cost) = line.split_once(',').unwrap();
        (kind.to_string(), micros(cost))
    })
    .collect();
    let charged: BTreeMap<String, i128> =
        cost_by_kind.into_iter().filter(|(_, c)| *c != 0).collect();
    let lake_charged: BTreeMap<String, i128> = lake_cost_by_kind
        .into_iter()
        .filter(|(_, c)| *c != 0)
        .collect();
    assert_eq!(
        lake_charged, charged,
        "cost per kind: rated lake vs summaries"
    );
    let rows_of = |source: &str| -> Vec<(String, i128)> {
        let mut rows: Vec<(String, i128)> =
            duckdb(&format!("SELECT record_id, cost FROM {source}"))
                .iter()
                .map(|line| {
                    let (id, cost) = line.rsplit_once(',').unwrap();
                    (id.trim_matches('"').to_string(), micros(cost))
                })
                .collect();
        rows.sort();
        rows
    };
    assert!(
        rows_of(&glob("rated")) == stored_rated,
        "rated records: lake vs store"
    );
    let periods = duckdb(&format!(
        "SELECT DISTINCT period FROM {} ORDER BY 1",
        glob("rated")
    ));
    assert_eq!(
        periods,
        ["2024-02", "2024-03"],
        "bill-cycle days spread over two periods"
    );
    let generations = duckdb(&format!(
        "SELECT DISTINCT technology FROM {} WHERE technology IS NOT NULL ORDER BY 1",
        glob("mediated")
    ));
    assert_eq!(
        generations,
        ["2G", "3G", "4G", "5G"],
        "raw codes normalised"
    );
    assert_eq!(
        std::fs::read_dir(lake.join("_staging")).unwrap().count(),
        0,
        "a run that ended leaves nothing staged"
    );

    let exported = dir.join("rated.parquet");
    run_ok(
        cdrflow_on_store()
            .args(["export", "rated", "--format", "parquet", "--output"])
            .arg(&exported),
    );
    let export = format!("read_parquet('{}')", exported.display());
    assert!(
        rows_of(&export) == stored_rated,
        "export --format parquet vs the store"
    );
}

#[test]
fn the_lake_read_by_duckdb_holds_the_sqlite_stores_records_once() {
    let dir = temp_dir("lake-sqlite-store");
    lake_matches_the_store("lake-sqlite", &["--data-dir", dir.to_str().unwrap()]);
}

#[test]
fn the_lake_read_by_duckdb_holds_the_postgres_stores_records_once() {
    let url = postgres_database("cdrflow_lake");
    let dir = temp_dir("lake-postgres-store");
    lake_matches_the_store(
        "lake-postgres",
        &["--data-dir", dir.to_str().unwrap(), "--store", &url],
    );
}
