use std::collections::BTreeSet;
use std::fs::File;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Decimal128Type;
use cdrflow_core::charging::RatedRecord;
use cdrflow_core::mediated::MediatedRecord;
use cdrflow_core::model::{Direction, Kind};
use cdrflow_core::normalize::{Day, Msisdn};
use cdrflow_core::rating::Name;
use cdrflow_core::reference::BillingPeriod;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

fn mediated(id: u32, kind: Kind, day: &str, cost_micros: i64) -> MediatedRecord {
    MediatedRecord {
        record_id: format!("r{id}").into(),
        msisdn: Msisdn::from_digits(212_612_345_000 + u64::from(id)),
        kind,
        direction: Direction::Outgoing,
        service_type: "voice".into(),
        event_time: 1_709_251_200_000 + i64::from(id),
        day: Day::parse(day).unwrap(),
        duration_sec: u64::from(id),
        up_bytes: 0,
        down_bytes: 0,
        amount_micros: 0,
        cost_micros,
        other_party: None,
        region: Some("Casablanca-Settat".into()),
        cell_id: None,
        technology: Some("4G"),
    }
}

fn rated(id: u32, period: &str, cost_micros: i64) -> RatedRecord {
    RatedRecord {
        record_id: format!("r{id}").into(),
        msisdn: Msisdn::from_digits(212_612_345_000 + u64::from(id)),
        event_time: 1_709_251_200_000,
        kind: Kind::Voice,
        service_type: "voice".into(),
        other_party: Some(Msisdn::from_digits(33_612_345_678)),
        customer_id: Some(Arc::from("C1")),
        plan: Name::Static("basic"),
        version: Name::Static("2024-01"),
        destination: Some((Name::Static("FR"), "international")),
        band: Some(Name::Static("peak")),
        rate: Name::Static("intl-peak"),
        region: None,
        cell_id: Some("CASA-0042".into()),
        technology: Some("3G"),
        usage_units: 61,
        billed_units: 66,
        allowance: None,
        cost_micros,
        currency: Arc::from("MAD"),
        billing_period: BillingPeriod::parse(period).unwrap(),
    }
}

fn read(path: &std::path::Path) -> Vec<arrow_array::RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn money(batches: &[arrow_array::RecordBatch], column: &str) -> i128 {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .unwrap()
                .as_primitive::<Decimal128Type>()
                .values()
                .to_vec()
        })
        .sum()
}

#[test]
fn a_checkpoint_is_staged_per_partition_and_published_where_readers_look() {
    let dir = tempfile_dir("publish");
    let lake = Lake::open(&dir, "t1").unwrap();
    let rows = [
        mediated(1, Kind::Voice, "2024-03-01", 1_016_667),
        mediated(2, Kind::Voice, "2024-03-02", 5),
        mediated(3, Kind::Sms, "2024-03-01", 500_000),
        mediated(4, Kind::Voice, "2024-03-01", 3),
    ];
    let rated = [rated(1, "2024-02", 7), rated(2, "2024-03", 11)];
    let staged = lake.stage(&rows, &rated).unwrap();
    let partitions: Vec<&str> = staged.iter().map(|f| f.partition.as_str()).collect();
    assert_eq!(
        partitions,
        [
            "kind=sms/date=2024-03-01",
            "kind=voice/date=2024-03-01",
            "kind=voice/date=2024-03-02",
            "period=2024-02",
            "period=2024-03"
        ]
    );
    assert_eq!(staged.iter().map(|f| f.rows).sum::<u64>(), 6);
    // Nothing is where readers look until it is published.
    assert!(!dir.join("mediated").exists());
    lake.publish(&staged).unwrap();
    assert!(lake.staged().unwrap().is_empty());
    let voice_day_1 = dir.join(&staged[1].path);
    assert!(staged[1]
        .path
        .starts_with("mediated/kind=voice/date=2024-03-01/part-t1-"));
    let batches = read(&voice_day_1);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert_eq!(money(&batches, "cost"), 1_016_667 + 3);
    let technology = batches[0]
        .column_by_name("technology")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(technology.value(0), "4G");
    let rated_march = read(&dir.join(&staged[4].path));
    assert_eq!(money(&rated_march, "cost"), 11);
    let class = rated_march[0]
        .column_by_name("destination_class")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(class.value(0), "international");
}

#[test]
fn after_a_crash_committed_files_are_published_and_the_rest_deleted() {
    let dir = tempfile_dir("recover");
    let lake = Lake::open(&dir, "t2").unwrap();
    let committed = lake
        .stage(&[mediated(1, Kind::Voice, "2024-03-01", 1)], &[])
        .unwrap();
    let not_committed = lake
        .stage(
            &[mediated(2, Kind::Data, "2024-03-01", 2)],
            &[rated(2, "2024-03", 2)],
        )
        .unwrap();
    // A second process running beside it leaves its work alone.
    let beside = Lake::open(&dir, "t3").unwrap();
    assert!(beside.orphans().unwrap().paths().is_empty());
    drop(beside);
    // The process dies here; the next one asks the manifest.
    drop(lake);
    let lake = Lake::open(&dir, "t4").unwrap();
    let orphans = lake.orphans().unwrap();
    assert_eq!(orphans.paths().len(), 3);
    let manifest: BTreeSet<String> = committed.iter().map(|f| f.path.clone()).collect();
    let recovery = lake.recover(orphans, &manifest).unwrap();
    assert_eq!(
        recovery,
        Recovery {
            published: 1,
            discarded: 2
        }
    );
    assert!(dir.join(&committed[0].path).exists());
    for file in &not_committed {
        assert!(!dir.join(&file.path).exists(), "{}", file.path);
    }
    assert!(lake.orphans().unwrap().paths().is_empty());
    assert!(
        !dir.join("_staging/t2").exists(),
        "the dead process's folder goes"
    );
}

#[test]
fn an_export_holds_every_record_with_its_billing_period() {
    let dir = tempfile_dir("export");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rated.parquet");
    let mut export = RatedParquet::new(File::create(&path).unwrap()).unwrap();
    let records: Vec<RatedRecord> = (0..70_000)
        .map(|i| rated(i, "2024-03", i64::from(i)))
        .collect();
    for r in records.iter().cloned() {
        export.push(r).unwrap();
    }
    export.finish().unwrap();
    let batches = read(&path);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 70_000);
    // 0 + 1 + … + 69,999.
    assert_eq!(money(&batches, "cost"), 69_999 * 70_000 / 2);
    let period = batches[0]
        .column_by_name("billing_period")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(period.value(0), "2024-03");
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cdrflow-lake-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
