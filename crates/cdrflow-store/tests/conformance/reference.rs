//! Reference data: rows put by a file load and by commits, removals (a
//! delete at the source), truncates, read back as the core applies them.

use cdrflow_core::reference::{
    parse_csv, ReferenceChange, ReferenceData, ReferenceKind, ReferenceRow, ReferenceRows,
};

use super::*;

const PLANS: &str = "plan_id,name,description,monthly_fee,currency,effective_from\n\
    gold,Gold,\"Calls, SMS\",149.99,MAD,\n\
    free,Free,,,,2024-03-01T00:00:00.250Z\n";

/// The CSV's `free` row starts at T0; the changes after it, in order.
const T0: i64 = 1_709_251_200_250;
const T1: i64 = 1_709_300_000_000;
const T2: i64 = 1_709_400_000_000;
const T3: i64 = 1_709_500_000_000;
const T4: i64 = 1_709_600_000_000;

fn commit_changes(store: &mut dyn Store, changes: Vec<ReferenceChange>) {
    let checkpoint = Checkpoint {
        reference: changes,
        ..Checkpoint::default()
    };
    store
        .commit(Commit {
            parts: &[CommitPart {
                scope: "kafka:dbserver1.public.plans:0",
                checkpoint: &checkpoint,
            }],
            cursors: &[],
        })
        .unwrap();
}

fn plans_in_force(data: &ReferenceData) -> Vec<String> {
    let ReferenceRows::Plans(rows) = data.current(ReferenceKind::Plans) else {
        panic!("plans")
    };
    rows.iter().map(|p| p.plan_id.to_string()).collect()
}

fn changes_commit_with_a_checkpoint_and_read_back_as_applied(store: &mut dyn Store) {
    let home = CountryCode::parse("212").unwrap();
    let rows = parse_csv(ReferenceKind::Plans, PLANS, home).unwrap();
    store.put_reference(&rows).unwrap();
    let ReferenceRows::Plans(loaded) = rows.clone() else {
        panic!("plans")
    };
    let mut changed_gold = loaded[0].clone();
    changed_gold.effective_from = T1;
    changed_gold.monthly_fee_micros = Some(99_000_000);
    // The changes a change-event topic brings, and the core's own reading of them.
    let changes = vec![
        ReferenceChange::Put(ReferenceRow::Plan(changed_gold)),
        ReferenceChange::Remove {
            kind: ReferenceKind::Plans,
            id: "free".into(),
            at: T2,
        },
    ];
    commit_changes(store, changes.clone());
    let mut expected = ReferenceData::default();
    expected.put(rows);
    changes.into_iter().for_each(|c| expected.apply(c));
    let stored = store.reference().unwrap();
    for at in [0, T0, T0 + 1, T1 - 1, T1, T2 - 1, T2, i64::MAX] {
        assert_eq!(
            stored.plan_at("gold", at),
            expected.plan_at("gold", at),
            "gold at {at}"
        );
        assert_eq!(
            stored.plan_at("free", at),
            expected.plan_at("free", at),
            "free at {at}"
        );
    }
    assert_eq!(
        stored.plan_at("gold", T1).unwrap().monthly_fee_micros,
        Some(99_000_000)
    );
    assert_eq!(plans_in_force(&stored), plans_in_force(&expected));
    assert_eq!(plans_in_force(&stored), ["gold"]);
    // A row again after its removal, then the table truncated.
    let mut back = loaded[1].clone();
    back.effective_from = T3;
    commit_changes(store, vec![ReferenceChange::Put(ReferenceRow::Plan(back))]);
    assert_eq!(
        plans_in_force(&store.reference().unwrap()),
        ["free", "gold"]
    );
    commit_changes(
        store,
        vec![ReferenceChange::RemoveAll {
            kind: ReferenceKind::Plans,
            at: T4,
        }],
    );
    let stored = store.reference().unwrap();
    assert!(plans_in_force(&stored).is_empty());
    assert!(stored.plan_at("free", T4 - 1).is_some());
    assert!(stored.plan_at("gold", T4).is_none());
}

for_every_store!(
    changes_commit_with_a_checkpoint_and_read_back_as_applied,
    sqlite_reference_changes_commit_and_read_back,
    postgres_reference_changes_commit_and_read_back,
    "reference_changes"
);
