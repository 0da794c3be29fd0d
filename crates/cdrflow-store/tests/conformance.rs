//! The same expectations for every store: SQLite (a temp file) and
//! PostgreSQL (a fresh database on 127.0.0.1:5432 — the test fails, never
//! skips, when the server is unreachable).

use cdrflow_core::mediation::{
    Checkpoint, MediationConfig, Mediator, MediatorState, RawRecord, RowKey, StoreLookup,
};
use cdrflow_core::model::{Kind, SourcePosition};
use cdrflow_core::normalize::{normalize_msisdn, parse_timestamp, CountryCode, Day};
use cdrflow_core::rating::{Tariff, TariffOverrides};
use cdrflow_store::postgres_store::PgStore;
use cdrflow_store::sqlite::SqliteStore;
use cdrflow_store::{
    kafka_scope, Commit, CommitPart, Cursor, KafkaCursor, RejectQuery, ReplayTarget, SourceCursor,
    Store, StoreError, FILES_SCOPE,
};

const LINES: [&str; 4] = [
    r#"{"cdr_id":"1","msisdn":"0821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"video","up_bytes":1000000000000000,"down_bytes":20408}"#,
    r#"{"cdr_id":"2","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
    r#"{"cdr_id":"3","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":-1}"#,
    r#"{"event_id":"4","msisdn":"0821234567","event_type":"balance_recharge","amount":12.5,"timestamp":"2024-03-01T10:00:00Z"}"#,
];

fn checkpoint(lines: &[&str]) -> Checkpoint {
    let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
    let mut mediator = Mediator::new(
        MediationConfig::default(),
        &tariff,
        MediatorState::default(),
    );
    let records = lines.iter().enumerate().map(|(i, l)| RawRecord {
        origin: "t",
        source_id: "t",
        position: SourcePosition::Line {
            line: i as u64 + 1,
            byte_offset: 0,
        },
        payload: l.as_bytes(),
    });
    mediator.process_batch(
        records,
        parse_timestamp("2024-03-02T00:00:00Z").unwrap(),
        |_| cdrflow_core::mediation::LookupAnswer::default(),
    );
    mediator.checkpoint()
}

/// Commits `lines` as one checkpoint of the files scope, with no cursors.
fn commit_lines(store: &mut dyn Store, lines: &[&str]) {
    let cp = checkpoint(lines);
    store
        .commit(Commit {
            parts: &[CommitPart {
                scope: FILES_SCOPE,
                checkpoint: &cp,
                dedup_horizon_minute: None,
            }],
            cursors: &[],
        })
        .unwrap();
}

fn postgres_store(name: &str) -> PgStore {
    let admin_url = std::env::var("CDRFLOW_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap_or_else(|e| {
        panic!("PostgreSQL must be reachable at {admin_url} for this test: {e}")
    });
    let db = format!("cdrflow_test_{name}_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let url = match admin_url.rfind('/') {
        Some(i) => format!("{}/{db}", &admin_url[..i]),
        None => unreachable!("a URL with a database"),
    };
    PgStore::connect(&url).unwrap()
}

fn sqlite_store(name: &str) -> SqliteStore {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    SqliteStore::open(&dir.join("s.db")).unwrap()
}

fn commits_and_reads_back(store: &mut dyn Store) {
    let cp = checkpoint(&LINES);
    let cursor = SourceCursor {
        source: "file:t".into(),
        next_offset: 99,
        lines: 4,
        fingerprint: "f".into(),
        prefix_len: 4096,
        from_offset: None,
    };
    let parts = [CommitPart {
        scope: FILES_SCOPE,
        checkpoint: &cp,
        dedup_horizon_minute: None,
    }];
    store
        .commit(Commit {
            parts: &parts,
            cursors: &[Cursor::File(cursor.clone())],
        })
        .unwrap();
    let cursor = SourceCursor {
        from_offset: None,
        ..cursor
    };
    // A second commit adds to the same rows.
    store
        .commit(Commit {
            parts: &parts,
            cursors: &[],
        })
        .unwrap();

    let msisdn = normalize_msisdn("+27821234567", CountryCode::default()).unwrap();
    let day = Day::parse("2024-03-01").unwrap();
    let usage = store.usage(msisdn, day, day).unwrap();
    assert_eq!(usage.len(), 3, "{usage:#?}");
    let data = usage.iter().find(|r| r.kind.as_str() == "data").unwrap();
    assert_eq!(data.msisdn, "+27821234567");
    assert_eq!(data.totals.up_bytes, 2_000_000_000_000_000);
    assert_eq!(data.totals.cost_micros, 2 * (49_000_000_000_000 + 1_000));
    let voice = usage.iter().find(|r| r.kind.as_str() == "voice").unwrap();
    assert_eq!(
        (voice.totals.duration_sec, voice.totals.cost_micros),
        (2, 2 * 16_667)
    );
    let recharge = usage
        .iter()
        .find(|r| r.kind.as_str() == "recharge")
        .unwrap();
    assert_eq!(recharge.totals.amount_micros, 25_000_000);
    assert!(store
        .usage(msisdn, Day(day.0 + 1), Day(day.0 + 5))
        .unwrap()
        .is_empty());

    assert_eq!(store.cursor("file:t").unwrap(), Some(cursor));
    let counts = store.counts().unwrap();
    assert_eq!(
        (
            counts.records_in,
            counts.accepted_total(),
            counts.rejected_total()
        ),
        (8, 6, 2)
    );
    let mut rejects = Vec::new();
    store
        .rejects(&RejectQuery::default(), &mut |r| rejects.push(r))
        .unwrap();
    assert_eq!(rejects.len(), 2);
    assert_eq!(rejects[0].reason, "negative_value");
    assert_eq!(rejects[0].payload, LINES[2].as_bytes());
    let mut filtered = Vec::new();
    let query = RejectQuery {
        reason: Some("malformed_json".into()),
        ..Default::default()
    };
    store.rejects(&query, &mut |r| filtered.push(r)).unwrap();
    assert!(filtered.is_empty());

    let resumed = store.resume_state(FILES_SCOPE, 7 * 86_400_000).unwrap();
    assert_eq!(resumed.dedup_entries.len(), 6);
    assert_eq!(
        resumed.watermark,
        Some(parse_timestamp("2024-03-01T10:00:00Z").unwrap())
    );
    assert!(store
        .resume_state("kafka:other:0", 7 * 86_400_000)
        .unwrap()
        .dedup_entries
        .is_empty());
    let top = store.top_subscribers(5).unwrap();
    assert_eq!(
        (top[0].msisdn.as_str(), top[0].cost_micros),
        ("+27821234567", 2 * (49_000_000_000_000 + 1_000 + 16_667))
    );
    let mut all = 0;
    store.for_each_summary(&mut |_| all += 1).unwrap();
    assert_eq!(all, 3);
    let overview = store.overview(day).unwrap();
    assert_eq!(overview.len(), 3, "{overview:#?}");
    let voice = overview
        .iter()
        .find(|r| r.kind.as_str() == "voice")
        .unwrap();
    assert_eq!(
        (
            voice.service_type.as_str(),
            voice.subscribers,
            voice.totals.records,
            voice.totals.cost_micros
        ),
        ("voice", 1, 2, 2 * 16_667)
    );
    assert!(store.overview(Day(day.0 + 1)).unwrap().is_empty());

    store.clear_results().unwrap();
    assert!(store.usage(msisdn, day, day).unwrap().is_empty());
    assert_eq!(store.counts().unwrap().records_in, 0);
}

fn fences_a_consumer_that_lost_its_partition(store: &mut dyn Store) {
    let partitions = [("cdr_data".to_string(), 0)];
    let first = store.claim_partitions("g", &partitions).unwrap();
    assert_eq!(first[0].next_offset, None);
    let cp = checkpoint(&LINES[..2]);
    let scope = kafka_scope("cdr_data", 0);
    let parts = [CommitPart {
        scope: &scope,
        checkpoint: &cp,
        dedup_horizon_minute: None,
    }];
    let cursor = |from_offset, next_offset, epoch| {
        Cursor::Kafka(KafkaCursor {
            group: "g".into(),
            topic: "cdr_data".into(),
            partition: 0,
            next_offset,
            from_offset,
            epoch,
        })
    };
    let cursors_0_to_2 = [cursor(None, 2, first[0].epoch)];
    let commit_0_to_2 = || Commit {
        parts: &parts,
        cursors: &cursors_0_to_2,
    };
    store.commit(commit_0_to_2()).unwrap();
    // The same commit again, as a consumer re-sends it when the connection
    // died during COMMIT and it cannot know whether it was applied: accepted,
    // and nothing counts twice.
    store.commit(commit_0_to_2()).unwrap();
    assert_eq!(
        store.counts().unwrap().records_in,
        2,
        "a re-sent commit writes nothing"
    );

    // Another member takes the partition over: the old owner's commit is refused whole.
    let second = store.claim_partitions("g", &partitions).unwrap();
    assert_eq!(
        (second[0].next_offset, second[0].epoch),
        (Some(2), first[0].epoch + 1)
    );
    let refused = store.commit(Commit {
        parts: &parts,
        cursors: &[cursor(Some(2), 4, first[0].epoch)],
    });
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.counts().unwrap().records_in,
        2,
        "a fenced commit writes nothing"
    );
    store
        .commit(Commit {
            parts: &parts,
            cursors: &[cursor(Some(2), 4, second[0].epoch)],
        })
        .unwrap();
    assert_eq!(
        store
            .resume_state(&scope, 7 * 86_400_000)
            .unwrap()
            .dedup_entries
            .len(),
        4
    );

    // Replay moves positions back and fences the current owner.
    assert_eq!(
        store
            .reset_kafka_offsets("g", &[], &ReplayTarget::Beginning)
            .unwrap(),
        1
    );
    let third = store.claim_partitions("g", &partitions).unwrap();
    assert_eq!(third[0].next_offset, None);
    assert!(store
        .commit(Commit {
            parts: &parts,
            cursors: &[cursor(Some(4), 6, second[0].epoch)]
        })
        .is_err());
}

#[test]
fn sqlite_commits_and_reads_back() {
    commits_and_reads_back(&mut sqlite_store("rw"));
}

#[test]
fn postgres_commits_and_reads_back() {
    commits_and_reads_back(&mut postgres_store("rw"));
}

#[test]
fn sqlite_fences_stale_owners() {
    fences_a_consumer_that_lost_its_partition(&mut sqlite_store("fence"));
}

#[test]
fn postgres_fences_stale_owners() {
    fences_a_consumer_that_lost_its_partition(&mut postgres_store("fence"));
}

fn file_positions_are_compare_and_set(store: &mut dyn Store) {
    let cp = checkpoint(&LINES[..2]);
    let parts = [CommitPart {
        scope: FILES_SCOPE,
        checkpoint: &cp,
        dedup_horizon_minute: None,
    }];
    let cursor = |from_offset, next_offset| {
        Cursor::File(SourceCursor {
            source: "content:5:abc".into(),
            next_offset,
            lines: 0,
            fingerprint: "f".into(),
            prefix_len: 5,
            from_offset,
        })
    };
    let commit = |store: &mut dyn Store, from, next| {
        store.commit(Commit {
            parts: &parts,
            cursors: &[cursor(from, next)],
        })
    };
    commit(store, None, 100).unwrap();
    // A second run that opened the source before the first committed.
    let second = commit(store, None, 120);
    assert!(
        matches!(second, Err(StoreError::SourceMoved { .. })),
        "{second:?}"
    );
    let stale = commit(store, Some(50), 150);
    assert!(
        matches!(stale, Err(StoreError::SourceMoved { .. })),
        "{stale:?}"
    );
    commit(store, Some(100), 150).unwrap();
    // Re-sent after a lost COMMIT response: recognised, nothing counts twice.
    commit(store, Some(100), 150).unwrap();
    assert_eq!(store.counts().unwrap().records_in, 4);
    assert_eq!(
        store.cursor("content:5:abc").unwrap().unwrap().next_offset,
        150
    );
    assert_eq!(store.short_prefix_lens(4096).unwrap(), [5]);
}

fn open_date_ranges_and_lookups(store: &mut dyn Store) {
    commit_lines(store, &LINES);
    let cp = checkpoint(&LINES);
    let msisdn = normalize_msisdn("+27821234567", CountryCode::default()).unwrap();
    let day = Day::parse("2024-03-01").unwrap();
    assert_eq!(
        store
            .usage(msisdn, Day(i32::MIN), Day(i32::MAX))
            .unwrap()
            .len(),
        3
    );
    assert_eq!(store.usage(msisdn, Day(i32::MIN), day).unwrap().len(), 3);
    assert!(store
        .usage(msisdn, Day(day.0 + 1), Day(i32::MAX))
        .unwrap()
        .is_empty());

    let data_row = RowKey {
        kind: Kind::Data,
        msisdn,
        day,
        service_type: "video".into(),
    };
    let absent = RowKey {
        day: Day(day.0 + 1),
        ..data_row.clone()
    };
    let asked = StoreLookup {
        dedup_days: vec![day.0, day.0 + 1],
        totals: vec![data_row, absent],
    };
    let answer = store.lookup(FILES_SCOPE, &asked).unwrap();
    let mut keys: Vec<_> = answer.dedup_entries.iter().map(|e| e.key).collect();
    keys.sort_by_key(|k| k.0);
    let mut expected: Vec<_> = cp.dedup_entries.iter().map(|e| e.key).collect();
    expected.sort_by_key(|k| k.0);
    assert_eq!(
        keys, expected,
        "the day's identities, and none of other days"
    );
    assert_eq!(answer.totals.len(), 2);
    assert_eq!(answer.totals[0].unwrap().up_bytes, 1_000_000_000_000_000);
    assert_eq!(answer.totals[1], None);
}

/// Both stores list summaries in one order: kind, number by value, day, type byte-wise.
fn summaries_come_out_in_one_order(store: &mut dyn Store) {
    let line = |n: &str, t: &str| {
        format!(
            r#"{{"msisdn":"{n}","start_time":"2024-03-01T10:00:00Z","call_type":"{t}","call_duration_sec":1}}"#
        )
    };
    let lines = [
        line("+27821234567", "ab"),
        line("+3312345678", "ab"),
        line("+27821234567", "a_b"),
        line("+447700900123", "ab"),
        line("+27821234567", "b"),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    commit_lines(store, &refs);
    let mut seen = Vec::new();
    store
        .for_each_summary(&mut |r| seen.push((r.msisdn, r.service_type)))
        .unwrap();
    let mut expected: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["msisdn"].as_str().unwrap().to_string(),
                v["call_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    expected.sort_by(|a, b| {
        let digits = |m: &str| m[1..].parse::<u64>().unwrap();
        (digits(&a.0), a.1.as_bytes()).cmp(&(digits(&b.0), b.1.as_bytes()))
    });
    assert_eq!(seen, expected);
}

#[test]
fn sqlite_file_positions_are_compare_and_set() {
    file_positions_are_compare_and_set(&mut sqlite_store("cas"));
}

#[test]
fn postgres_file_positions_are_compare_and_set() {
    file_positions_are_compare_and_set(&mut postgres_store("cas"));
}

#[test]
fn sqlite_open_date_ranges_and_lookups() {
    open_date_ranges_and_lookups(&mut sqlite_store("ranges"));
}

#[test]
fn postgres_open_date_ranges_and_lookups() {
    open_date_ranges_and_lookups(&mut postgres_store("ranges"));
}

#[test]
fn sqlite_summaries_come_out_in_one_order() {
    summaries_come_out_in_one_order(&mut sqlite_store("order"));
}

#[test]
fn postgres_summaries_come_out_in_one_order() {
    summaries_come_out_in_one_order(&mut postgres_store("order"));
}

#[test]
fn one_process_at_a_time_reads_files_into_a_store() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut first = SqliteStore::open(&dir.join("s.db")).unwrap();
    let mut second = SqliteStore::open(&dir.join("s.db")).unwrap();
    first.lock_files().unwrap();
    assert!(matches!(second.lock_files(), Err(StoreError::Busy(_))));
    drop(first);
    second.lock_files().unwrap();

    let mut pg_first = postgres_store("lock");
    pg_first.lock_files().unwrap();
    let url = pg_first.url().to_string();
    let mut pg_second = PgStore::connect(&url).unwrap();
    assert!(matches!(pg_second.lock_files(), Err(StoreError::Busy(_))));
    drop(pg_first);
    // The server releases a session lock when its connection closes.
    let mut locked = false;
    for _ in 0..50 {
        if pg_second.lock_files().is_ok() {
            locked = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(locked);
}

/// `usage_page` hands out whole days, at most `limit` rows unless one day
/// alone holds more, and every row exactly once across the pages; checked
/// against a greedy split of the days computed here.
fn usage_pages_split_at_whole_days(store: &mut dyn Store) {
    // Rows per day: 02-01 data + voice, 02-02 voice, 02-04 data + voice +
    // recharge, 02-05 voice (02-03 has none).
    let lines = [
        r#"{"cdr_id":"a","msisdn":"0821234567","event_datetime":"2024-02-01T10:00:00Z","data_type":"video","up_bytes":1,"down_bytes":1}"#,
        r#"{"cdr_id":"b","msisdn":"0821234567","start_time":"2024-02-01T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
        r#"{"cdr_id":"c","msisdn":"0821234567","start_time":"2024-02-02T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
        r#"{"cdr_id":"d","msisdn":"0821234567","event_datetime":"2024-02-04T10:00:00Z","data_type":"web","up_bytes":1,"down_bytes":1}"#,
        r#"{"cdr_id":"e","msisdn":"0821234567","start_time":"2024-02-04T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
        r#"{"event_id":"f","msisdn":"0821234567","event_type":"balance_recharge","amount":5,"timestamp":"2024-02-04T10:00:00Z"}"#,
        r#"{"cdr_id":"g","msisdn":"0821234567","start_time":"2024-02-05T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
        r#"{"cdr_id":"h","msisdn":"0831112222","start_time":"2024-02-01T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
    ];
    commit_lines(store, &lines);
    let msisdn = normalize_msisdn("+27821234567", CountryCode::default()).unwrap();
    let day = |d: &str| Day::parse(d).unwrap();
    let days = [
        (day("2024-02-01"), 2),
        (day("2024-02-02"), 1),
        (day("2024-02-04"), 3),
        (day("2024-02-05"), 1),
    ];
    let all = store.usage(msisdn, Day(i32::MIN), Day(i32::MAX)).unwrap();
    assert_eq!(all.len(), 7);
    for limit in 1..=8u32 {
        // The expected pages: whole days while they fit, a too-big day alone.
        let mut expected: Vec<Vec<Day>> = Vec::new();
        let mut rows_in_page = 0;
        for &(d, n) in &days {
            match expected.last_mut() {
                Some(page) if rows_in_page + n <= limit => {
                    page.push(d);
                    rows_in_page += n;
                }
                _ => {
                    expected.push(vec![d]);
                    rows_in_page = n;
                }
            }
        }
        let mut from = Day(i32::MIN);
        let mut seen = Vec::new();
        for (i, page_days) in expected.iter().enumerate() {
            let page = store
                .usage_page(msisdn, from, Day(i32::MAX), limit)
                .unwrap();
            let mut got: Vec<Day> = page.rows.iter().map(|r| r.date).collect();
            got.dedup();
            got.sort();
            got.dedup();
            assert_eq!(&got, page_days, "limit {limit}, page {i}");
            assert_eq!(
                page.next_from,
                expected.get(i + 1).map(|p| p[0]),
                "limit {limit}, page {i}"
            );
            seen.extend(page.rows);
            if let Some(next) = page.next_from {
                from = next;
            }
        }
        seen.sort_by_key(|r| (r.date, r.kind as u8, r.service_type.clone()));
        let mut everything = all.clone();
        everything.sort_by_key(|r| (r.date, r.kind as u8, r.service_type.clone()));
        assert_eq!(seen, everything, "limit {limit}: every row once");
    }
    // A range that ends inside the data: no page beyond it.
    let page = store
        .usage_page(msisdn, day("2024-02-02"), day("2024-02-04"), 1)
        .unwrap();
    assert_eq!(
        (page.rows.len(), page.next_from),
        (1, Some(day("2024-02-04")))
    );
    let page = store
        .usage_page(msisdn, day("2024-02-04"), day("2024-02-04"), 1)
        .unwrap();
    assert_eq!((page.rows.len(), page.next_from), (3, None));
}

#[test]
fn sqlite_usage_pages_split_at_whole_days() {
    usage_pages_split_at_whole_days(&mut sqlite_store("pages"));
}

#[test]
fn postgres_usage_pages_split_at_whole_days() {
    usage_pages_split_at_whole_days(&mut postgres_store("pages"));
}
