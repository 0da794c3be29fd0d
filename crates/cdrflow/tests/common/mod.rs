//! Helpers shared by the integration tests: run the real binary, in a fresh data dir.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn cdrflow() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdrflow"));
    // Isolate from the developer's environment and config file.
    for var in ["CDRFLOW_DATA_DIR", "CDRFLOW_CONFIG", "CDRFLOW_TARIFF", "DEFAULT_COUNTRY_CODE", "WAK_PER_ZAR", "BYTES_PER_GB", "CDRFLOW_BATCH_SIZE", "DATABASE_URL"] {
        cmd.env_remove(var);
    }
    cmd.env("CDRFLOW_LOG", "warn");
    cmd
}

/// A fresh, empty directory under the target dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("cdrflow runs");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `export summaries` as rows keyed by (kind, msisdn, date, type) → the other columns by name.
pub fn export(data_dir: &Path) -> BTreeMap<(String, String, String, String), BTreeMap<String, String>> {
    let output = run_ok(cdrflow().arg("--data-dir").arg(data_dir).args(["export", "summaries", "--format", "csv"]));
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let mut rows = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        let row: BTreeMap<String, String> = header.iter().zip(&cells).map(|(h, c)| (h.to_string(), c.to_string())).collect();
        let key = (row["kind"].clone(), row["msisdn"].clone(), row["date"].clone(), row["type"].clone());
        assert!(rows.insert(key, row).is_none(), "duplicate summary row: {line}");
    }
    rows
}

/// Formats micro-units the way the CSV does, computed here without the pipeline's code.
pub fn micros_text(micros: i128) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}
