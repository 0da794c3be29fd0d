//! Results: a commit writes everything with its positions and reads back the same.

use super::*;

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

    assert_eq!(
        stored_identities(store, FILES_SCOPE, i32::MIN, i32::MAX).len(),
        6
    );
    assert_eq!(
        stored_watermark(store, FILES_SCOPE),
        Some(parse_timestamp("2024-03-01T10:00:00Z").unwrap().to_string())
    );
    assert!(stored_identities(store, "kafka:other:0", i32::MIN, i32::MAX).is_empty());
    assert_eq!(stored_watermark(store, "kafka:other:0"), None);
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

for_every_store!(
    commits_and_reads_back,
    sqlite_commits_and_reads_back,
    postgres_commits_and_reads_back,
    "rw"
);

/// Money with every digit of 64-bit micro-units significant comes back
/// exactly (PostgreSQL's numeric division would round it to 16 digits).
fn money_keeps_all_nineteen_digits(store: &mut dyn Store) {
    let line = r#"{"event_id":"r","msisdn":"0821234567","event_type":"balance_recharge","amount":4611686018427.387903,"timestamp":"2024-03-01T10:00:00Z"}"#;
    commit_lines(store, &[line]);
    let msisdn = normalize_msisdn("+27821234567", CountryCode::default()).unwrap();
    let day = Day::parse("2024-03-01").unwrap();
    let usage = store.usage(msisdn, day, day).unwrap();
    assert_eq!(usage[0].totals.amount_micros, 4_611_686_018_427_387_903);
}

for_every_store!(
    money_keeps_all_nineteen_digits,
    sqlite_money_keeps_every_digit,
    postgres_money_keeps_every_digit,
    "money_digits"
);
