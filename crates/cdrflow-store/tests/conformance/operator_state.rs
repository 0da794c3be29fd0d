//! Operator state: keyed values replaced, spans appended, read by overlap
//! and expired, kept apart per operator, scope and table, committed with
//! the rest of a checkpoint (or not at all).

use super::*;

const KEYED: &str = "keyed";
const SPANS: &str = "spans";

fn write(operator: &'static str, table: &'static str, change: StateChange) -> StateWrite {
    StateWrite {
        operator,
        table,
        change,
    }
}

fn put(operator: &'static str, key: &str, value: &str) -> StateWrite {
    write(
        operator,
        KEYED,
        StateChange::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        },
    )
}

fn append(first_minute: i32, last_minute: i32, value: &str) -> StateWrite {
    write(
        "op",
        SPANS,
        StateChange::Append {
            first_minute,
            last_minute,
            value: value.as_bytes().to_vec(),
        },
    )
}

fn commit_state(store: &mut dyn Store, scope: &str, state: Vec<StateWrite>) {
    let checkpoint = Checkpoint {
        state,
        ..Checkpoint::default()
    };
    store
        .commit(Commit {
            parts: &[CommitPart {
                scope,
                checkpoint: &checkpoint,
            }],
            cursors: &[],
        })
        .unwrap();
}

fn value(store: &mut dyn Store, operator: &str, scope: &str, key: &str) -> Option<String> {
    let at = StateAt {
        operator,
        scope,
        table: KEYED,
    };
    store
        .state_value(at, key)
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

fn spans(store: &mut dyn Store, scope: &str, first: i32, last: i32) -> Vec<String> {
    let at = StateAt {
        operator: "op",
        scope,
        table: SPANS,
    };
    let mut out = Vec::new();
    store
        .state_spans(at, first, last, &mut |v| {
            out.push(String::from_utf8(v.to_vec()).unwrap())
        })
        .unwrap();
    out
}

fn operator_state_is_kept_per_operator_scope_and_table(store: &mut dyn Store) {
    commit_state(
        store,
        "a",
        vec![
            put("op", "k", "1"),
            put("other", "k", "other's"),
            append(0, 9, "0-9"),
            append(10, 19, "10-19"),
            append(20, 29, "20-29"),
        ],
    );
    commit_state(store, "b", vec![put("op", "k", "b's"), append(0, 100, "b")]);
    commit_state(store, "a", vec![put("op", "k", "2"), put("op", "j", "")]);
    assert_eq!(
        value(store, "op", "a", "k").as_deref(),
        Some("2"),
        "replaced"
    );
    assert_eq!(value(store, "op", "a", "j").as_deref(), Some(""));
    assert_eq!(value(store, "other", "a", "k").as_deref(), Some("other's"));
    assert_eq!(value(store, "op", "b", "k").as_deref(), Some("b's"));
    assert_eq!(value(store, "op", "c", "k"), None);
    // Many keys in one question: in the order asked, missing ones as None,
    // a repeated key answered each time.
    let asked: Vec<String> = ["j", "missing", "k", "k"].map(String::from).to_vec();
    let at = StateAt {
        operator: "op",
        scope: "a",
        table: KEYED,
    };
    let answers: Vec<Option<String>> = store
        .state_values_of(at, &asked)
        .unwrap()
        .into_iter()
        .map(|v| v.map(|v| String::from_utf8(v).unwrap()))
        .collect();
    let one_by_one: Vec<Option<String>> =
        asked.iter().map(|k| value(store, "op", "a", k)).collect();
    assert_eq!(answers, one_by_one);
    assert_eq!(
        answers,
        [Some(""), None, Some("2"), Some("2")].map(|v| v.map(String::from))
    );
    assert_eq!(
        spans(store, "a", 9, 10),
        ["0-9", "10-19"],
        "overlapping, in order"
    );
    assert_eq!(spans(store, "a", 30, 40), Vec::<String>::new());
    assert_eq!(spans(store, "b", 50, 50), ["b"]);

    // Expiry drops the spans that end before the minute, in this scope only,
    // and applies after the same checkpoint's appends.
    commit_state(
        store,
        "a",
        vec![
            append(5, 15, "5-15"),
            write("op", SPANS, StateChange::ExpireBefore { minute: 19 }),
        ],
    );
    assert_eq!(spans(store, "a", i32::MIN, i32::MAX), ["10-19", "20-29"]);
    assert_eq!(spans(store, "b", i32::MIN, i32::MAX), ["b"]);

    // A refused commit writes no state.
    let checkpoint = Checkpoint {
        state: vec![put("op", "k", "refused")],
        ..Checkpoint::default()
    };
    let stale = Cursor::Kafka(KafkaCursor {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        next_offset: 1,
        from_offset: None,
        epoch: 99,
    });
    assert!(store
        .commit(Commit {
            parts: &[CommitPart {
                scope: "a",
                checkpoint: &checkpoint,
            }],
            cursors: &[stale],
        })
        .is_err());
    assert_eq!(value(store, "op", "a", "k").as_deref(), Some("2"));

    store.clear_results().unwrap();
    assert_eq!(value(store, "op", "a", "k"), None);
    assert!(spans(store, "a", i32::MIN, i32::MAX).is_empty());
}
for_every_store!(
    operator_state_is_kept_per_operator_scope_and_table,
    sqlite_operator_state,
    postgres_operator_state,
    "operator_state"
);
