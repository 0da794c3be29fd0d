//! `cdrflow process --format ber`: 3GPP TS 32.298 records one after another
//! in a file, read by France's country file. The records are the fuzz
//! seeds (`fuzz/corpus/decode_ber/`, written octet by octet from the
//! standard's tag tables); the expected summaries are their fields, read
//! by hand: +33 6 12 34 56 78's 61-second call answered 2024-03-05 14:30
//! +01:00, its PGW session of 1,001 octets up and 8,398,608 down, its SMS.

mod common;

use std::path::Path;

use common::{cdrflow, export, run_ok, temp_dir};

const MO_CALL: &[u8] = include_bytes!("../../../fuzz/corpus/decode_ber/mo_call.ber");
const PGW: &[u8] = include_bytes!("../../../fuzz/corpus/decode_ber/pgw.ber");
const MO_SMS: &[u8] = include_bytes!("../../../fuzz/corpus/decode_ber/mo_sms.ber");

/// `cdrflow process --format FORMAT --complete INPUTS` with France's
/// country file; its report.
fn process_french(dir: &Path, format: &str, inputs: &[&Path]) -> String {
    let country = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/countries/fr.toml"
    );
    let output = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(dir)
            .args(["--country-file", country])
            .args(["process", "--format", format, "--complete"])
            .args(inputs),
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_ber_stream_is_summed_with_duplicates_dropped_and_a_broken_record_kept() {
    let dir = temp_dir("ber-stream");
    let input = dir.join("switch.ber");
    // The call, fill, the session, the call again (the switch sent it
    // twice), the SMS, then a call cut short.
    let stream = [
        MO_CALL,
        &[0xFF, 0xFF, 0x00],
        PGW,
        MO_CALL,
        MO_SMS,
        &MO_CALL[..MO_CALL.len() - 4],
    ]
    .concat();
    std::fs::write(&input, stream).unwrap();
    let report = process_french(&dir, "ber", &[&input]);
    assert!(report.contains("5 records"), "{report}");
    assert!(report.contains("accepted 3, rejected 1"), "{report}");
    assert!(report.contains("duplicates 1"), "{report}");

    let rows = export(&dir);
    let row = |kind: &str, kind_type: &str| {
        rows.get(&(
            kind.into(),
            "+33612345678".into(),
            "2024-03-05".into(),
            kind_type.into(),
        ))
        .unwrap_or_else(|| panic!("no {kind} {kind_type} row in {rows:#?}"))
    };
    let call = row("voice", "mo_call");
    assert_eq!(
        (call["duration_sec"].as_str(), call["records"].as_str()),
        ("61", "1")
    );
    let session = row("data", "pgw");
    assert_eq!(
        (session["up_bytes"].as_str(), session["down_bytes"].as_str()),
        ("1001", "8398608")
    );
    assert_eq!(rows.len(), 3, "{rows:#?}");

    let rejected = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(&dir)
            .args(["rejected", "--format", "jsonl"]),
    );
    let rejected = String::from_utf8(rejected.stdout).unwrap();
    assert_eq!(rejected.lines().count(), 1, "{rejected}");
    assert!(rejected.contains("\"malformed_ber\""), "{rejected}");
}

#[test]
fn a_country_file_that_cannot_be_used_says_where_and_what() {
    let dir = temp_dir("ber-country");
    let bad = dir.join("xx.toml");
    std::fs::write(
        &bad,
        "country = \"xx\"\nzone = \"UTC\"\n[numbering]\ncountry_code = 33\nnational_lengths = []\n",
    )
    .unwrap();
    let output = cdrflow()
        .arg("--data-dir")
        .arg(&dir)
        .arg("--country-file")
        .arg(&bad)
        .args(["process", "--format", "ber", "/dev/null"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("xx.toml") && error.contains("national_lengths is empty"),
        "{error}"
    );
}

/// A TS 32.297 file (the fuzz seed `cdr_file.ber`: a header saying two
/// CDRs, then the same call and session behind their CDR headers), and a
/// copy whose last CDR header says more octets than follow.
#[test]
fn a_32297_file_is_read_past_its_header() {
    let file: &[u8] = include_bytes!("../../../fuzz/corpus/decode_ber/cdr_file.ber");
    let dir = temp_dir("ber-file");
    let (whole, cut) = (dir.join("whole.cdr"), dir.join("cut.cdr"));
    std::fs::write(&whole, file).unwrap();
    std::fs::write(&cut, &file[..file.len() - 3]).unwrap();
    let report = process_french(&dir, "ber-file", &[&whole, &cut]);
    // Two CDRs in each file; the cut file's second is refused, the
    // whole file's two and the cut one's first (the same call again) leave
    // one call and one session.
    assert!(report.contains("4 records"), "{report}");
    assert!(report.contains("accepted 2, rejected 1"), "{report}");
    assert!(report.contains("duplicates 1"), "{report}");
    let rows = export(&dir);
    let key = |kind: &str, ty: &str| {
        (
            kind.to_string(),
            "+33612345678".to_string(),
            "2024-03-05".to_string(),
            ty.to_string(),
        )
    };
    assert_eq!(rows[&key("voice", "mo_call")]["duration_sec"], "61");
    assert_eq!(rows[&key("data", "pgw")]["down_bytes"], "8398608");
    assert_eq!(rows.len(), 2, "{rows:#?}");
}
