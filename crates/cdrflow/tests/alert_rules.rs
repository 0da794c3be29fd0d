//! The shipped Prometheus alert rules (`deploy/prometheus/alerts.yml`,
//! seed 002's two alerts) under `promtool test rules`: each fires when its
//! condition has held for its `for`, with the labels and text an on-call
//! engineer reads, and not otherwise (`alerts_test.yml`).

use std::path::Path;
use std::process::Command;

#[test]
fn seed_002s_alerts_fire_as_their_tests_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    let output = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool is installed (.ci/run: apt-get install prometheus)");
    assert!(
        output.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let checked = Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}

/// The rules' metric names are the ones cdrflow exports: a rename on either
/// side would leave an alert that never fires.
#[test]
fn the_rules_name_metrics_cdrflow_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = std::fs::read_to_string(root.join("../../deploy/prometheus/alerts.yml")).unwrap();
    let exporters = ["src/metrics.rs", "src/telemetry.rs"]
        .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
        .concat();
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("cdrflow_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 3, "{names:?}");
    for name in names {
        assert!(
            exporters.contains(&format!("\"{name}\"")),
            "{name} is not exported"
        );
    }
}
