//! Positions: fencing of stale Kafka owners, compare-and-set file positions, one files process at a time.

use super::*;

fn fences_a_consumer_that_lost_its_partition(store: &mut dyn Store) {
    let partitions = [("cdr_data".to_string(), 0)];
    let first = store.claim_partitions("g", &partitions).unwrap();
    assert_eq!(first[0].next_offset, None);
    let cp = checkpoint(&LINES[..2]);
    let scope = kafka_scope("cdr_data", 0);
    let parts = [CommitPart {
        scope: &scope,
        checkpoint: &cp,
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
        stored_identities(store, &scope, i32::MIN, i32::MAX).len(),
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

for_every_store!(
    fences_a_consumer_that_lost_its_partition,
    sqlite_fences_stale_owners,
    postgres_fences_stale_owners,
    "fence"
);

fn file_positions_are_compare_and_set(store: &mut dyn Store) {
    let cp = checkpoint(&LINES[..2]);
    let parts = [CommitPart {
        scope: FILES_SCOPE,
        checkpoint: &cp,
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

for_every_store!(
    file_positions_are_compare_and_set,
    sqlite_file_positions_are_compare_and_set,
    postgres_file_positions_are_compare_and_set,
    "cas"
);

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
