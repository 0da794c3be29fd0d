//! The capture's records read back by cdrflow's own Debezium consumer
//! ([`crate::cdc::decode`], itself checked against hand-written Debezium
//! fixtures): what goes in as pgoutput must come out as the same changes.

use super::pgoutput::build::Bytes;
use super::pgoutput::{Column, Relation};
use super::*;
use crate::cdc::{decode, ChangePosition, Decoded, Value};
use crate::money::Decimal;
use crate::normalize::Day;

const PLANS: u32 = 16_390;
/// 2026-01-15T10:00:00Z in microseconds since 2000-01-01 (PostgreSQL's epoch).
const COMMITTED_PG_MICROS: u64 = (1_768_471_200 - 946_684_800) * 1_000_000;
const COMMITTED_MS: i64 = 1_768_471_200_000;

fn begin(xid: u32, final_lsn: u64) -> Vec<u8> {
    Bytes::default()
        .u8(b'B')
        .u64(final_lsn)
        .u64(COMMITTED_PG_MICROS)
        .u32(xid)
        .0
}

fn commit(commit_lsn: u64, end_lsn: u64) -> Vec<u8> {
    Bytes::default()
        .u8(b'C')
        .u8(0)
        .u64(commit_lsn)
        .u64(end_lsn)
        .u64(COMMITTED_PG_MICROS)
        .0
}

/// plans(plan_id text primary key, name text, monthly_fee numeric(12,2),
/// updated_at timestamptz, starts date)
fn plans_relation() -> Vec<u8> {
    let mut b = Bytes::default()
        .u8(b'R')
        .u32(PLANS)
        .string("public")
        .string("plans")
        .u8(b'd')
        .u16(5);
    for (key, name, oid, modifier) in [
        (1, "plan_id", 25, -1),
        (0, "name", 25, -1),
        (0, "monthly_fee", 1700, (12 << 16 | 2) + 4),
        (0, "updated_at", 1184, -1),
        (0, "starts", 1082, -1),
    ] {
        b = b.u8(key).string(name).u32(oid).u32(modifier as u32);
    }
    b.0
}

fn origin(transaction_topic: bool) -> Origin {
    Origin {
        prefix: "dbserver1".into(),
        database: "operator".into(),
        transaction_topic,
    }
}

fn feed_all(capture: &mut Capture, messages: &[(u64, Vec<u8>)]) -> (Vec<Record>, Vec<Fed>) {
    let mut out = Vec::new();
    let fed = messages
        .iter()
        .map(|(lsn, bytes)| capture.feed(*lsn, bytes, 1, &mut out).unwrap())
        .collect();
    (out, fed)
}

fn change(record: &Record) -> crate::cdc::ChangeEvent {
    match decode(
        &record.topic,
        record.key.as_deref().map(str::as_bytes),
        record.value.as_deref().unwrap().as_bytes(),
    ) {
        Ok(Decoded::Change(event)) => event,
        other => panic!(
            "not a change: {other:?}\n{}",
            record.value.as_deref().unwrap()
        ),
    }
}

#[test]
fn a_transaction_comes_out_as_the_changes_debezium_sends() {
    let insert = Bytes::default()
        .u8(b'I')
        .u32(PLANS)
        .u8(b'N')
        .tuple(&[
            Some("GOLD"),
            Some("Gold 10 GB"),
            Some("49.00"),
            Some("2026-01-15 10:00:00.25+00"),
            Some("2026-02-01"),
        ])
        .0;
    let rename_key = Bytes::default()
        .u8(b'U')
        .u32(PLANS)
        .u8(b'K')
        .tuple(&[Some("GOLD"), None, None, None, None])
        .u8(b'N')
        .tuple(&[Some("GOLD2"), Some("Gold"), Some("-0.50"), None, None])
        .0;
    let delete = Bytes::default()
        .u8(b'D')
        .u32(PLANS)
        .u8(b'K')
        .tuple(&[Some("GOLD2"), None, None, None, None])
        .0;
    let mut capture = Capture::new(origin(false), None);
    let (records, fed) = feed_all(
        &mut capture,
        &[
            (0x100, begin(731, 0x500)),
            (0x100, plans_relation()),
            (0x200, insert),
            (0x300, rename_key),
            (0x400, delete),
            (0x500, commit(0x500, 0x530)),
        ],
    );
    assert_eq!(
        fed.last(),
        Some(&Fed::Committed {
            end_lsn: 0x530,
            skipped: false
        })
    );
    assert!(capture.problems.is_empty(), "{:?}", capture.problems);
    // create, delete + tombstone + create (the key change), delete + tombstone
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| match &r.value {
            None => "tombstone",
            Some(_) => change(r).op.code(),
        })
        .collect();
    assert_eq!(kinds, ["c", "d", "tombstone", "c", "d", "tombstone"]);
    assert!(records
        .iter()
        .all(|r| &*r.topic == "dbserver1.public.plans"));

    let created = change(&records[0]);
    assert_eq!(
        (
            created.schema.as_deref(),
            created.table.as_str(),
            created.db.as_deref()
        ),
        (Some("public"), "plans", Some("operator"))
    );
    assert_eq!(
        created.position,
        ChangePosition {
            lsn: 0x200,
            order: 1
        }
    );
    assert_eq!(created.tx_id, Some(731));
    assert_eq!(created.committed_at, Some(COMMITTED_MS));
    let after = created.after.unwrap();
    assert_eq!(after.get("plan_id"), Some(&Value::Text("GOLD".into())));
    assert_eq!(
        after.get("monthly_fee"),
        Some(&Value::Decimal(Decimal {
            mantissa: 4900,
            scale: 2
        }))
    );
    assert_eq!(
        after.get("updated_at"),
        Some(&Value::Instant(COMMITTED_MS * 1000 + 250_000))
    );
    assert_eq!(
        after.get("starts"),
        Some(&Value::Date(Day::from_ymd(2026, 2, 1).unwrap()))
    );
    assert_eq!(
        created.key.unwrap().get("plan_id"),
        Some(&Value::Text("GOLD".into()))
    );

    let old_key_gone = change(&records[1]);
    assert_eq!(
        old_key_gone.position,
        ChangePosition {
            lsn: 0x300,
            order: 2
        }
    );
    assert_eq!(
        old_key_gone.key.unwrap().get("plan_id"),
        Some(&Value::Text("GOLD".into()))
    );
    let new_key = change(&records[3]);
    assert_eq!(
        new_key.position,
        ChangePosition {
            lsn: 0x300,
            order: 3
        }
    );
    assert_eq!(
        new_key.after.unwrap().get("monthly_fee"),
        Some(&Value::Decimal(Decimal {
            mantissa: -50,
            scale: 2
        }))
    );
    assert_eq!(
        records[2].key, records[1].key,
        "the tombstone carries the old key"
    );
    let deleted = change(&records[4]);
    assert_eq!(
        deleted.position,
        ChangePosition {
            lsn: 0x400,
            order: 4
        }
    );
    assert_eq!(
        deleted.row().unwrap().get("plan_id"),
        Some(&Value::Text("GOLD2".into()))
    );
}

#[test]
fn transactions_the_snapshot_saw_are_not_sent_again() {
    let insert = |id: &str| {
        Bytes::default()
            .u8(b'I')
            .u32(PLANS)
            .u8(b'N')
            .tuple(&[Some(id), Some("x"), None, None, None])
            .0
    };
    // xid 101 committed before the snapshot (visible), 103 was in progress.
    let visibility = SnapshotVisibility::parse("100:105:100,103", 0x900).unwrap();
    let mut capture = Capture::new(origin(true), Some(visibility));
    let (records, fed) = feed_all(
        &mut capture,
        &[
            (0x100, begin(101, 0x300)),
            (0x100, plans_relation()),
            (0x200, insert("SEEN")),
            (0x300, commit(0x300, 0x330)),
            (0x400, begin(103, 0x600)),
            (0x500, insert("NEW")),
            (0x600, commit(0x600, 0x630)),
        ],
    );
    assert_eq!(
        fed[3],
        Fed::Committed {
            end_lsn: 0x330,
            skipped: true
        }
    );
    let topics: Vec<&str> = records.iter().map(|r| &*r.topic).collect();
    assert_eq!(
        topics,
        [
            "dbserver1.transaction",
            "dbserver1.public.plans",
            "dbserver1.transaction"
        ]
    );
    let sent = change(&records[1]);
    assert_eq!(
        sent.after.unwrap().get("plan_id"),
        Some(&Value::Text("NEW".into()))
    );
    let end: serde_json::Value =
        serde_json::from_str(records[2].value.as_deref().unwrap()).unwrap();
    assert_eq!(end["status"], "END");
    assert_eq!(end["id"], format!("103:{}", 0x600));
    assert_eq!(end["event_count"], 1);
    assert_eq!(
        end["data_collections"][0]["data_collection"],
        "public.plans"
    );
}

#[test]
fn snapshot_rows_and_unwritable_values() {
    let relation = Relation {
        id: 1,
        schema: "public".into(),
        table: "plans".into(),
        replica_identity: b'd',
        columns: vec![
            Column {
                name: "plan_id".into(),
                key: true,
                type_oid: 25,
                type_modifier: -1,
            },
            Column {
                name: "monthly_fee".into(),
                key: false,
                type_oid: 1700,
                type_modifier: -1,
            },
        ],
    };
    let table = TableEvents::new(&origin(false), relation);
    let row = vec![Cell::Text("P1".into()), Cell::Text("NaN".into())];
    let mut problems = Vec::new();
    let place = Place {
        lsn: 0x42,
        committed_at_ms: 7,
        snapshot: "last",
        transaction: None,
    };
    let record = Record {
        topic: table.topic().clone(),
        key: table.key(&row, &mut problems),
        value: Some(table.change(Op::Read, None, Some(&row), &place, 9, &mut problems)),
    };
    let read = change(&record);
    assert_eq!(read.op, Op::Read);
    assert_eq!(read.snapshot, crate::cdc::Snapshot::Last);
    assert_eq!(
        read.position,
        ChangePosition {
            lsn: 0x42,
            order: 0
        }
    );
    assert_eq!(read.after.unwrap().get("monthly_fee"), Some(&Value::Null));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("public.plans.monthly_fee"),
        "{problems:?}"
    );
}

#[test]
fn messages_out_of_place_stop_the_capture() {
    let mut capture = Capture::new(origin(false), None);
    let mut out = Vec::new();
    let orphan = Bytes::default().u8(b'I').u32(PLANS).u8(b'N').tuple(&[]).0;
    assert!(matches!(
        capture.feed(1, &orphan, 0, &mut out),
        Err(CaptureError::OutsideTransaction { .. })
    ));
    capture.feed(1, &begin(1, 9), 0, &mut out).unwrap();
    assert!(matches!(
        capture.feed(2, &orphan, 0, &mut out),
        Err(CaptureError::UnknownRelation {
            relation: PLANS,
            ..
        })
    ));
    assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
    assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
}
