//! Ways a record could count twice or not at all, each tried as an operator
//! would and compared with totals computed here, outside the pipeline's code
//! (`common::seed_000_truth`). SQLite is the embedded default; the tests that
//! depend on the store run against PostgreSQL (127.0.0.1:5432) too.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{
    assert_matches_truth, cdrflow, export, export_store, generate_seed_000, postgres_database,
    run_ok, seed_000_truth, temp_dir,
};

/// Generated seed-000 records (data and voice, no faults) as lines.
fn generate(dir: &Path, name: &str, args: &[&str]) -> Vec<String> {
    generate_seed_000(dir, name, &[&["--faults", ""], args].concat())
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn process(store: &[&str], files: &[&Path]) -> Command {
    let mut cmd = cdrflow();
    cmd.args(store).arg("process").args(files);
    cmd
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The run's one-line summary ("N records in ...").
fn summary_of(output: &std::process::Output) -> String {
    let text = stderr_of(output);
    text.lines()
        .find(|l| l.contains(" records in "))
        .unwrap_or_else(|| panic!("no summary line in: {text}"))
        .to_string()
}

fn data_dir_args(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.display().to_string()]
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Item 1: records older than the in-memory window are checked against the
/// store by day, not thrown away; input order does not change the totals.
#[test]
fn old_records_count_whatever_the_input_order() {
    let dir = temp_dir("eo-old");
    let lines = generate(
        &dir,
        "ten-days",
        &[
            "--count",
            "20000",
            "--days",
            "10",
            "--start",
            "2024-11-01",
            "--seed",
            "7",
        ],
    );
    let truth = seed_000_truth(&lines);
    let date = |l: &String| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v.get("event_datetime")
            .or(v.get("start_time"))
            .unwrap()
            .as_str()
            .unwrap()[..10]
            .to_string()
    };
    let (early, late): (Vec<String>, Vec<String>) = lines
        .iter()
        .cloned()
        .partition(|l| date(l).as_str() < "2024-11-06");
    assert!(!early.is_empty() && !late.is_empty());
    let (early_file, late_file) = (dir.join("nov01-05.jsonl"), dir.join("nov06-10.jsonl"));
    write_lines(&early_file, &early);
    write_lines(&late_file, &late);

    // A 2-day window in memory: everything older is looked up in the store.
    let window = ["--dedup-window-days", "2"];
    for (name, order) in [
        ("newest-first", [&late_file, &early_file]),
        ("oldest-first", [&early_file, &late_file]),
    ] {
        let data = dir.join(name);
        let store = data_dir_args(&data);
        let mut args = as_strs(&store);
        args.extend(window);
        let out = run_ok(&mut process(&args, &[order[0], order[1]]));
        assert!(
            stderr_of(&out).contains("rejected 0"),
            "{name}: {}",
            stderr_of(&out)
        );
        assert_matches_truth(&export(&data), &truth);
        // Every record again, from one file in an order the window has never
        // seen: all recognised as duplicates, in memory or from the store.
        let all = dir.join(format!("{name}-again.jsonl"));
        let mut shuffled = lines.clone();
        shuffled.reverse();
        write_lines(&all, &shuffled);
        let again = run_ok(&mut process(&args, &[&all]));
        assert!(
            stderr_of(&again).contains(&format!("duplicates {}", lines.len())),
            "{name}: {}",
            stderr_of(&again)
        );
        assert_matches_truth(&export(&data), &truth);
    }

    // Beyond the horizon, refused with a reason that names the setting.
    let data = dir.join("horizon");
    let store = data_dir_args(&data);
    let mut args = as_strs(&store);
    args.extend(["--dedup-window-days", "1", "--dedup-horizon-days", "3"]);
    run_ok(&mut process(&args, &[&late_file]));
    run_ok(&mut process(&args, &[&early_file]));
    let rejected = run_ok(
        cdrflow()
            .args(&args)
            .args(["rejected", "--format", "jsonl"]),
    );
    let text = String::from_utf8(rejected.stdout).unwrap();
    let first = text.lines().next().expect("old records refused");
    assert!(first.contains("late_beyond_dedup_window"), "{first}");
    assert!(first.contains("--dedup-horizon-days"), "{first}");
}

/// Item 2: two overlapping runs of one file never count it twice.
fn overlapping_runs(store: &[&str], dir: &Path) {
    let lines = generate(
        dir,
        "overlap",
        &[
            "--count",
            "100000",
            "--days",
            "2",
            "--start",
            "2024-06-01",
            "--seed",
            "3",
        ],
    );
    let file = dir.join("overlap.jsonl");
    write_lines(&file, &lines);
    let spawn = || {
        process(store, &[&file])
            .args(["--batch-size", "5000"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let refused: Vec<String> = outputs
        .iter()
        .filter(|o| !o.status.success())
        .map(stderr_of)
        .collect();
    for message in &refused {
        assert!(message.contains("another cdrflow process"), "{message}");
    }
    // Whatever ran, running once more completes the file, and it counts once.
    run_ok(&mut process(store, &[&file]));
    let exported = export_with_store(store);
    assert_matches_truth(&exported, &seed_000_truth(&lines));
}

fn export_with_store(
    store: &[&str],
) -> std::collections::BTreeMap<
    (String, String, String, String),
    std::collections::BTreeMap<String, String>,
> {
    match store {
        ["--data-dir", dir] => export(Path::new(dir)),
        ["--store", url] => export_store(url),
        other => panic!("unknown store arguments {other:?}"),
    }
}

#[test]
fn overlapping_runs_of_one_file_count_it_once_sqlite() {
    let dir = temp_dir("eo-overlap");
    let store = data_dir_args(&dir.join("data"));
    overlapping_runs(&as_strs(&store), &dir);
}

#[test]
fn overlapping_runs_of_one_file_count_it_once_postgres() {
    let dir = temp_dir("eo-overlap-pg");
    let url = postgres_database("overlap");
    overlapping_runs(&["--store", &url], &dir);
}

/// Item 4 (and 9): a total that would overflow across runs refuses the
/// record responsible, stores the good records beside it, and leaves no
/// empty row; the store keeps answering.
fn overflow_across_runs(store: &[&str], dir: &Path) {
    let data = |id: &str, up: u64| {
        format!(
            r#"{{"cdr_id":"{id}","msisdn":"+27821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"video","up_bytes":{up},"down_bytes":0}}"#
        )
    };
    let recharge = |id: &str, amount: &str| {
        format!(
            r#"{{"event_id":"{id}","msisdn":"+27821234567","event_type":"balance_recharge","amount":{amount},"timestamp":"2024-03-01T10:00:00Z"}}"#
        )
    };
    let good = data("good", 1000);
    let first = dir.join("first.jsonl");
    write_lines(
        &first,
        &[
            data("big-1", 5_000_000_000_000_000_000),
            recharge("r-1", "9000000000000"),
        ],
    );
    let second = dir.join("second.jsonl");
    let other_day = good.replace("2024-03-01", "2024-03-02");
    write_lines(
        &second,
        &[
            data("big-2", 5_000_000_000_000_000_000),
            recharge("r-2", "9000000000000"),
            other_day.clone(),
        ],
    );
    run_ok(&mut process(store, &[&first]));
    let out = run_ok(&mut process(store, &[&second]));
    assert!(
        stderr_of(&out).contains("rejected 2 (value_too_large 2)"),
        "{}",
        stderr_of(&out)
    );
    let rows = export_with_store(store);
    let key = |date: &str| {
        (
            "data".to_string(),
            "+27821234567".to_string(),
            date.to_string(),
            "video".to_string(),
        )
    };
    assert_eq!(rows[&key("2024-03-01")]["up_bytes"], "5000000000000000000");
    assert_eq!(rows[&key("2024-03-02")]["up_bytes"], "1000");
    assert_eq!(rows.len(), 3, "no empty rows: {rows:#?}");
    let usage = run_ok(
        cdrflow()
            .args(store)
            .args(["usage", "+27821234567", "--json"]),
    );
    let text = String::from_utf8(usage.stdout).unwrap();
    assert!(
        text.contains("9000000.000000") || text.contains("9000000000000"),
        "{text}"
    );
}

#[test]
fn totals_never_overflow_across_runs_sqlite() {
    let dir = temp_dir("eo-overflow");
    let store = data_dir_args(&dir.join("data"));
    overflow_across_runs(&as_strs(&store), &dir);
}

#[test]
fn totals_never_overflow_across_runs_postgres() {
    let dir = temp_dir("eo-overflow-pg");
    let url = postgres_database("overflow");
    overflow_across_runs(&["--store", &url], &dir);
}

/// Item 5: a half-written last line waits for its end instead of being
/// committed as a broken record.
#[test]
fn a_half_written_last_line_is_completed_by_the_append() {
    let dir = temp_dir("eo-tail");
    let store = data_dir_args(&dir.join("data"));
    let store = as_strs(&store);
    let file = dir.join("growing.jsonl");
    let whole = r#"{"cdr_id":"v1","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":60}"#;
    let (head, tail) = whole.split_at(40);
    std::fs::write(&file, format!("{whole}\n{}", head.replace("v1", "v2"))).unwrap();
    let out = run_ok(&mut process(&store, &[&file]));
    assert!(
        stderr_of(&out).contains("left for the next run"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        stderr_of(&out).contains("rejected 0"),
        "{}",
        stderr_of(&out)
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(format!("{tail}\n").as_bytes())
        .unwrap();
    let out = run_ok(&mut process(&store, &[&file]));
    assert!(stderr_of(&out).contains("1 records"), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("accepted 1, rejected 0"),
        "{}",
        stderr_of(&out)
    );
    let rows = export(&dir.join("data"));
    let voice = rows.values().next().unwrap();
    assert_eq!(voice["records"], "2");

    // Declared complete, an unterminated last line is processed as it is.
    let finished = dir.join("finished.jsonl");
    std::fs::write(&finished, whole.replace("v1", "v3")).unwrap();
    let out = run_ok(process(&store, &[&finished]).arg("--complete"));
    assert!(
        stderr_of(&out).contains("accepted 1"),
        "{}",
        stderr_of(&out)
    );
}

/// Item 6: records without an id are known by the content they come from,
/// not by its file name: moved, copied or piped, they count once.
#[test]
fn the_same_bytes_count_once_under_any_name() {
    let dir = temp_dir("eo-content");
    let store = data_dir_args(&dir.join("data"));
    let store = as_strs(&store);
    // No cdr_id: identity from source and position.
    let lines: Vec<String> = generate(&dir, "noid", &["--count", "3000", "--start", "2024-06-01"])
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("cdr_id");
            v.to_string()
        })
        .collect();
    let original = dir.join("drop.jsonl");
    write_lines(&original, &lines);
    run_ok(&mut process(&store, &[&original]));
    let once = export(&dir.join("data"));
    let records: u64 = once
        .values()
        .map(|r| r["records"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(records, lines.len() as u64);

    let moved = dir.join("renamed.jsonl");
    std::fs::rename(&original, &moved).unwrap();
    let out = run_ok(&mut process(&store, &[&moved]));
    assert!(
        summary_of(&out).starts_with("0 records"),
        "{}",
        stderr_of(&out)
    );
    let copy = dir.join("elsewhere").join("copy.jsonl");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(&moved, &copy).unwrap();
    run_ok(&mut process(&store, &[&copy]));
    let piped = process(&store, &[Path::new("-")])
        .stdin(std::fs::File::open(&moved).unwrap())
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", stderr_of(&piped));
    assert_eq!(export(&dir.join("data")), once);

    // A small file that grows between runs keeps its identity.
    let small = dir.join("small.jsonl");
    write_lines(&small, &lines[..3]);
    run_ok(&mut process(&store, &[&small]));
    write_lines(&small, &lines[..20]);
    let out = run_ok(&mut process(&store, &[&small]));
    assert!(
        summary_of(&out).starts_with("17 records"),
        "{}",
        stderr_of(&out)
    );
}

/// Item 10: ids are unique within one feed; the same id in two feeds is two
/// records, from files as from Kafka.
#[test]
fn ids_are_scoped_per_feed() {
    let dir = temp_dir("eo-scope");
    let file = dir.join("both.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"cdr_id":"1001","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":60}"#,
            "\n",
            r#"{"event_id":"1001","msisdn":"0821234567","event_type":"call","event_subtype":"outgoing","duration_seconds":30,"timestamp":"2024-03-01T11:00:00Z"}"#,
            "\n",
            r#"{"cdr_id":"1001","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":60}"#,
            "\n",
        ),
    )
    .unwrap();
    let store = data_dir_args(&dir.join("data"));
    let out = run_ok(&mut process(&as_strs(&store), &[&file]));
    assert!(
        stderr_of(&out).contains("accepted 2, rejected 0, duplicates 1"),
        "{}",
        stderr_of(&out)
    );
}

/// Item 11: the smaller ones.
#[test]
fn inputs_as_operators_hand_them_over() {
    let dir = temp_dir("eo-inputs");
    let store = data_dir_args(&dir.join("data"));
    let store = as_strs(&store);
    let lines = generate(
        &dir,
        "in",
        &["--count", "2000", "--start", "2024-06-01", "--seed", "9"],
    );
    let truth = seed_000_truth(&lines);
    let drop = dir.join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let (a, b) = lines.split_at(1000);
    // gzip, with a byte-order mark and CRLF line ends inside.
    let gz = drop.join("b-part.jsonl.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(b"\xEF\xBB\xBF").unwrap();
    encoder.write_all(b.join("\r\n").as_bytes()).unwrap();
    encoder.finish().unwrap();
    write_lines(&drop.join("a-part.jsonl"), &a.to_vec());
    std::fs::write(drop.join(".hidden"), "not a CDR\n").unwrap();

    // A directory, and a file named twice.
    let out = run_ok(&mut process(&store, &[&drop, &drop.join("a-part.jsonl")]));
    assert!(
        stderr_of(&out).contains(&format!("{} records", lines.len())),
        "{}",
        stderr_of(&out)
    );
    assert!(
        stderr_of(&out).contains("rejected 0"),
        "{}",
        stderr_of(&out)
    );
    assert_matches_truth(&export(&dir.join("data")), &truth);

    // Leap seconds and long decimals.
    let odd = dir.join("odd.jsonl");
    std::fs::write(
        &odd,
        concat!(
            r#"{"cdr_id":"leap","msisdn":"0821234567","start_time":"2024-05-31T23:59:60Z","call_type":"voice","call_duration_sec":1}"#,
            "\n",
            r#"{"cdr_id":"sixty","msisdn":"0821234567","start_time":"2024-06-01T10:00:60Z","call_type":"voice","call_duration_sec":1}"#,
            "\n",
            r#"{"event_id":"precise","msisdn":"0821234567","event_type":"balance_recharge","amount":10.50000000000000000000000000000000,"timestamp":"2024-06-01T10:00:00Z"}"#,
            "\n",
            r#"{"event_id":"too-precise","msisdn":"0821234567","event_type":"balance_recharge","amount":10.12345678901234567890123456789012,"timestamp":"2024-06-01T10:00:00Z"}"#,
            "\n",
        ),
    )
    .unwrap();
    run_ok(&mut process(&store, &[&odd]));
    let rows = export(&dir.join("data"));
    let leap = rows
        .keys()
        .find(|k| k.0 == "voice" && k.2.starts_with("2024-05"))
        .expect("the leap second's record");
    assert_eq!(leap.2, "2024-05-31", "a leap second keeps its day");
    let rejected = run_ok(
        cdrflow()
            .args(&store)
            .args(["rejected", "--format", "jsonl"]),
    );
    let rejected = String::from_utf8(rejected.stdout).unwrap();
    let reasons: Vec<(String, String)> = rejected
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["reason"].as_str().unwrap().into(),
                v["detail"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, "impossible_time");
    assert_eq!(reasons[1].0, "invalid_amount");
    assert!(
        reasons[1].1.contains("more than 6 decimal places"),
        "{reasons:?}"
    );
}

/// Item 7: open date ranges (no date, only --from, only --to) on PostgreSQL.
#[test]
fn open_date_ranges_work_on_postgres() {
    let dir = temp_dir("eo-ranges-pg");
    let url = postgres_database("ranges");
    let file = dir.join("one.jsonl");
    std::fs::write(
        &file,
        r#"{"cdr_id":"v1","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":60}
"#,
    )
    .unwrap();
    let store = ["--store", url.as_str()];
    run_ok(&mut process(&store, &[&file]));
    for range in [
        &[][..],
        &["--to", "2024-03-05"][..],
        &["--from", "2024-02-01"][..],
    ] {
        let out = run_ok(
            cdrflow()
                .args(store)
                .args(["usage", "+27821234567", "--json"])
                .args(range),
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["summaries"].as_array().unwrap().len(),
            1,
            "{range:?}: {v}"
        );
    }
}
