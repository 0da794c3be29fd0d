//! Windows and late events: deltas added to the stored rows across commits
//! and parts, exact decimals, finality from every partition's mark, late
//! events kept in order, all cleared by a rebuild.

use cdrflow_core::analytics::windows::{
    LateEvent, PartitionMark, WindowDelta, WindowMeasures, PARTITIONS, WINDOWS,
};
use cdrflow_store::{WindowQuery, WindowRecord};

use super::*;

const MINUTE: i64 = 60_000;
/// 2025-11-09T10:00:00Z
const TEN: i64 = 1_762_682_400_000;

fn measures(events: u64, data_bytes: u64, recharge_micros: i64) -> WindowMeasures {
    WindowMeasures {
        total_events: events,
        incoming_calls: events / 2,
        outgoing_calls: events - events / 2,
        sms_count: 1,
        data_bytes,
        recharge_micros,
    }
}

/// A checkpoint of one scope: window rows, late events and the partition's mark.
fn checkpoint(
    rows: &[(i64, &str, Kind, WindowMeasures)],
    late: &[&str],
    partition: &str,
    mark: PartitionMark,
) -> Checkpoint {
    let mut windows = WindowDelta::default();
    for (start, region, kind, m) in rows {
        windows.add(5 * MINUTE, *start, region, *kind, m);
    }
    let mut cp = Checkpoint {
        windows,
        late_events: late
            .iter()
            .map(|id| LateEvent {
                event_id: Some(id.to_string()),
                origin: "a.jsonl".into(),
                position: SourcePosition::Line {
                    line: 7,
                    byte_offset: 70,
                },
                event_time: TEN + 1_500,
                window_start: TEN,
                window_end: TEN + 5 * MINUTE,
                region: "Almaty".into(),
                kind: Kind::Sms,
                lateness_ms: 61_500,
            })
            .collect(),
        ..Checkpoint::default()
    };
    cp.state_of(WINDOWS)
        .put(&PARTITIONS, partition, mark.encode());
    cp
}

fn open(watermark: i64) -> PartitionMark {
    PartitionMark {
        watermark,
        seen_at: 1_000,
        finished: false,
    }
}

fn windows(store: &mut dyn Store) -> Vec<WindowRecord> {
    let mut out = Vec::new();
    let query = WindowQuery {
        from: i64::MIN,
        to: i64::MAX,
        region: None,
        idle_after_ms: 60_000,
    };
    store.windows(&query, &mut |w| out.push(w)).unwrap();
    out
}

fn windows_are_added_up_and_final_behind_every_partition(store: &mut dyn Store) {
    let big = i64::MAX / 4;
    let a1 = checkpoint(
        &[
            (TEN, "Almaty", Kind::Voice, measures(3, 1_500_001, big)),
            (TEN + 5 * MINUTE, "Almaty", Kind::Voice, measures(1, 0, 1)),
        ],
        &["late-1"],
        "a",
        open(TEN + 5 * MINUTE),
    );
    let b1 = checkpoint(
        &[(TEN, "Almaty", Kind::Voice, measures(2, 2, big))],
        &[],
        "b",
        open(TEN + 2 * MINUTE),
    );
    let parts = [
        CommitPart {
            scope: "kafka:t:0",
            checkpoint: &a1,
        },
        CommitPart {
            scope: "kafka:t:1",
            checkpoint: &b1,
        },
    ];
    store
        .commit(Commit {
            parts: &parts,
            cursors: &[],
        })
        .unwrap();
    let stored = windows(store);
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (
            stored[0].start,
            stored[0].end,
            stored[0].region.as_str(),
            stored[0].kind
        ),
        (TEN, TEN + 5 * MINUTE, "Almaty", Kind::Voice)
    );
    let mut sum = measures(3, 1_500_001, big);
    sum.incoming_calls += 1;
    sum.outgoing_calls += 1;
    sum.total_events += 2;
    sum.sms_count += 1;
    sum.data_bytes += 2;
    sum.recharge_micros += big;
    assert_eq!(stored[0].measures, sum, "both partitions' shares, exactly");
    assert!(!stored[0].is_final, "partition 1 is still at 10:02");

    // Partition 1 moves past 10:05; partition 0's next window is still open.
    let b2 = checkpoint(&[], &["late-2"], "b", open(TEN + 6 * MINUTE));
    store
        .commit(Commit {
            parts: &[CommitPart {
                scope: "kafka:t:1",
                checkpoint: &b2,
            }],
            cursors: &[],
        })
        .unwrap();
    let stored = windows(store);
    assert!(stored[0].is_final);
    assert!(!stored[1].is_final, "10:05–10:10 is open in both");

    let mut late = Vec::new();
    store.late_events(0, None, &mut |e| late.push(e)).unwrap();
    let ids: Vec<_> = late.iter().map(|e| e.event_id.clone().unwrap()).collect();
    assert_eq!(ids, ["late-1", "late-2"]);
    assert_eq!(
        (
            late[0].event_time,
            late[0].window_start,
            late[0].window_end,
            late[0].lateness_ms
        ),
        (TEN + 1_500, TEN, TEN + 5 * MINUTE, 61_500)
    );
    assert_eq!(
        (late[0].kind, late[0].position.as_str()),
        (Kind::Sms, "line 7 (byte 70)")
    );
    let mut after_first = Vec::new();
    store
        .late_events(late[0].id, Some(5), &mut |e| after_first.push(e))
        .unwrap();
    assert_eq!(after_first, late[1..]);

    store.clear_results().unwrap();
    assert!(windows(store).is_empty());
    let mut left = 0;
    store.late_events(0, None, &mut |_| left += 1).unwrap();
    assert_eq!(left, 0);
}

for_every_store!(
    windows_are_added_up_and_final_behind_every_partition,
    sqlite_windows_add_up_and_close,
    postgres_windows_add_up_and_close,
    "windows"
);

fn a_finished_or_idle_partition_holds_no_window_open(store: &mut dyn Store) {
    let mark = |watermark, seen_at, finished| PartitionMark {
        watermark,
        seen_at,
        finished,
    };
    let row = [(TEN, "Astana", Kind::Sms, measures(1, 0, 0))];
    let a = checkpoint(&row, &[], "a.jsonl", mark(TEN, 1_000, true));
    let b = checkpoint(&[], &[], "b.jsonl", mark(TEN - 60 * MINUTE, 1_000, false));
    for cp in [&a, &b] {
        store
            .commit(Commit {
                parts: &[CommitPart {
                    scope: FILES_SCOPE,
                    checkpoint: cp,
                }],
                cursors: &[],
            })
            .unwrap();
    }
    assert!(
        !windows(store)[0].is_final,
        "b.jsonl is still reading at 09:00"
    );
    // b.jsonl falls silent for longer than the idle time behind a.jsonl's last read.
    let a_later = checkpoint(&[], &[], "a.jsonl", mark(TEN, 1_000 + 61_000, true));
    store
        .commit(Commit {
            parts: &[CommitPart {
                scope: FILES_SCOPE,
                checkpoint: &a_later,
            }],
            cursors: &[],
        })
        .unwrap();
    assert!(windows(store)[0].is_final);
}

for_every_store!(
    a_finished_or_idle_partition_holds_no_window_open,
    sqlite_idle_partitions_close,
    postgres_idle_partitions_close,
    "idle_windows"
);

fn anomalies_are_stored_once_and_read_by_severity(store: &mut dyn Store) {
    use cdrflow_core::analytics::rules::{Anomaly, Severity};
    use cdrflow_store::AnomalyQuery;
    let msisdn = normalize_msisdn("+77011234567", CountryCode::default()).unwrap();
    let anomaly = |key: &str, rule: &'static str, severity, window| Anomaly {
        rule,
        severity,
        msisdn,
        event_id: Some(format!("e-{key}")),
        event_time: TEN + 1_250,
        window_start: window,
        evidence: format!("evidence of {key}"),
        idempotency_key: key.to_string(),
    };
    let cp = Checkpoint {
        anomalies: vec![
            anomaly("a", "long_call", Severity::Medium, None),
            anomaly("b", "high_frequency", Severity::High, Some(TEN)),
        ],
        ..Checkpoint::default()
    };
    let parts = [CommitPart {
        scope: FILES_SCOPE,
        checkpoint: &cp,
    }];
    for _ in 0..2 {
        // The same anomalies fired again (a replay, a re-read window): stored once.
        store
            .commit(Commit {
                parts: &parts,
                cursors: &[],
            })
            .unwrap();
    }
    let read = |store: &mut dyn Store, severity| {
        let mut out = Vec::new();
        let query = AnomalyQuery {
            severity,
            ..AnomalyQuery::default()
        };
        store.anomalies(&query, &mut |a| out.push(a)).unwrap();
        out
    };
    let all = read(store, None);
    let keys: Vec<_> = all.iter().map(|a| a.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(
        (
            all[0].rule.as_str(),
            all[0].msisdn.as_str(),
            all[0].event_time,
            all[0].window_start
        ),
        ("long_call", "+77011234567", TEN + 1_250, None)
    );
    assert_eq!(
        (all[1].window_start, all[1].evidence.as_str()),
        (Some(TEN), "evidence of b")
    );
    let high = read(store, Some(Severity::High));
    assert_eq!(high.len(), 1);
    assert_eq!(high[0].rule, "high_frequency");
}

for_every_store!(
    anomalies_are_stored_once_and_read_by_severity,
    sqlite_anomalies_once,
    postgres_anomalies_once,
    "anomalies"
);
