//! Reference data that changes while records are rated.
//!
//! The rater looks up every record's subscriber, customer and cell on
//! several threads at once, while change events (`cdc`) bring new rows.
//! Copying a million subscribers for a checkpoint's few changes would cost
//! more than the rating, and a lock taken per lookup would put every
//! classifying thread on one cache line. So the data is two layers behind
//! one atomic pointer (`arc-swap`: a lookup loads it without writing to
//! shared memory): the *base*, shared and never changed, and the *recent*
//! changes since, small, copied whole when a checkpoint adds to it. Once
//! the recent layer outgrows an eighth of the base (or a table is
//! truncated), the two are folded into a new base; so each change is copied
//! a bounded number of times, amortised.
//!
//! A lookup sees either every change of a checkpoint or none of them, and
//! answers as one [`ReferenceData`] holding both layers would: of the two
//! layers' entries in force at the instant, the later one; the recent one
//! when both took effect at the same instant (it replaced the other).

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

use super::{
    bundles_at, BundlePurchase, Cell, Customer, Effective, Entry, History, ReferenceChange,
    ReferenceData, Subscriber,
};
use crate::normalize::{EpochMillis, Msisdn};

/// Below this many ids the recent layer is never folded: copying it is cheap.
const FOLD_AT_LEAST: usize = 4096;

pub struct LiveReference {
    layers: ArcSwap<Layers>,
    /// Held by a writer from reading the layers to replacing them, so two
    /// writers cannot each drop the other's changes. Readers never take it.
    writer: Mutex<()>,
}

struct Layers {
    base: Arc<ReferenceData>,
    recent: ReferenceData,
}

/// The reference data as one moment of [`LiveReference`] saw it.
pub struct ReferenceView {
    layers: Guard<Arc<Layers>>,
}

impl LiveReference {
    pub fn new(data: ReferenceData) -> LiveReference {
        LiveReference {
            layers: ArcSwap::from_pointee(Layers {
                base: Arc::new(data),
                recent: ReferenceData::default(),
            }),
            writer: Mutex::new(()),
        }
    }

    /// The data now; later changes do not show in it.
    pub fn view(&self) -> ReferenceView {
        ReferenceView {
            layers: self.layers.load(),
        }
    }

    /// Applies `changes`, in order, for every view taken after.
    pub fn apply(&self, changes: &[ReferenceChange]) {
        if changes.is_empty() {
            return;
        }
        // A poisoned lock guards nothing half-done: the layers are replaced whole.
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.layers.load_full();
        let truncates = changes
            .iter()
            .any(|c| matches!(c, ReferenceChange::RemoveAll { .. }));
        let fold_at = FOLD_AT_LEAST.max(now.base.ids() / 8);
        let next = if truncates || now.recent.ids() + changes.len() > fold_at {
            let mut base = (*now.base).clone();
            base.absorb(&now.recent);
            changes.iter().for_each(|c| base.apply(c.clone()));
            Layers {
                base: Arc::new(base),
                recent: ReferenceData::default(),
            }
        } else {
            let mut recent = now.recent.clone();
            changes.iter().for_each(|c| recent.apply(c.clone()));
            Layers {
                base: now.base.clone(),
                recent,
            }
        };
        self.layers.store(Arc::new(next));
    }
}

impl ReferenceView {
    pub fn subscriber_at(&self, msisdn: Msisdn, at: EpochMillis) -> Option<&Subscriber> {
        let Layers { base, recent } = &**self.layers;
        layered(
            base.subscribers.get(&msisdn),
            recent.subscribers.get(&msisdn),
            at,
        )
    }

    /// `id` as a subscriber row names it.
    pub fn customer_at(&self, id: &Arc<str>, at: EpochMillis) -> Option<&Customer> {
        let Layers { base, recent } = &**self.layers;
        layered(base.customers.get(id), recent.customers.get(id), at)
    }

    pub fn cell_at(&self, id: &str, at: EpochMillis) -> Option<&Cell> {
        let Layers { base, recent } = &**self.layers;
        layered(base.cells.get(id), recent.cells.get(id), at)
    }

    /// As [`ReferenceData::bundles_at`].
    pub fn bundles_at(&self, msisdn: Msisdn, at: EpochMillis) -> Vec<&BundlePurchase> {
        let Layers { base, recent } = &**self.layers;
        let listed = [&base.bundles_of, &recent.bundles_of]
            .into_iter()
            .filter_map(|index| index.get(&msisdn))
            .flatten();
        bundles_at(
            msisdn,
            |id| layered(base.bundles.get(id), recent.bundles.get(id), at),
            listed,
        )
    }
}

/// The row in force at `at` over both layers' entries for one id.
fn layered<'a, T: Effective>(
    base: Option<&'a History<T>>,
    recent: Option<&'a History<T>>,
    at: EpochMillis,
) -> Option<&'a T> {
    let base = base.and_then(|h| h.entry_at(at));
    let Some(recent) = recent.and_then(|h| h.entry_at(at)) else {
        return base.and_then(Entry::row);
    };
    match base {
        Some(base) if base.from() > recent.from() => base.row(),
        _ => recent.row(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{normalize_msisdn, CountryCode};
    use crate::reference::{Payment, ReferenceKind, ReferenceRow, Status};

    fn number(i: u64) -> Msisdn {
        normalize_msisdn(&format!("+2782{:07}", i), CountryCode::SOUTH_AFRICA).unwrap()
    }

    fn subscriber(i: u64, from: EpochMillis, plan: &str) -> Subscriber {
        Subscriber {
            msisdn: number(i),
            effective_from: from,
            customer_id: format!("C{}", i % 7).into(),
            plan_id: plan.into(),
            region: None,
            status: Status::Active,
            payment: Payment::Prepaid,
            activation_date: None,
        }
    }

    /// A small deterministic generator (xorshift), so the sequence of
    /// changes is the same on every run.
    struct Draws(u64);
    impl Draws {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below
        }
    }

    /// Whatever the sequence of changes and however the layers were cut,
    /// every lookup answers as one `ReferenceData` given the same changes.
    #[test]
    fn answers_as_one_data_set_given_every_change() {
        let mut draws = Draws(0x9e37_79b9_7f4a_7c15);
        let mut start = ReferenceData::default();
        for i in 0..200 {
            start.put_subscriber(subscriber(i, 1_000 * draws.next(5) as i64, "base"));
        }
        let mut oracle = start.clone();
        let live = LiveReference::new(start);
        for round in 0..300u64 {
            let changes: Vec<ReferenceChange> = (0..1 + draws.next(40))
                .map(|_| {
                    let i = draws.next(260);
                    let at = 1_000 * draws.next(12) as i64;
                    match draws.next(24) {
                        0 => ReferenceChange::RemoveAll {
                            kind: ReferenceKind::Subscribers,
                            at,
                        },
                        // Purchases, some moved to another number, some cancelled.
                        20 | 21 => ReferenceChange::Put(ReferenceRow::Bundle(BundlePurchase {
                            purchase_id: format!("P{}", draws.next(60)).into(),
                            effective_from: at,
                            msisdn: number(i % 30),
                            bundle_id: format!("bundle{round}").into(),
                            expires_at: None,
                        })),
                        22 => ReferenceChange::Remove {
                            kind: ReferenceKind::Bundles,
                            id: format!("P{}", draws.next(60)),
                            at,
                        },
                        23 => ReferenceChange::RemoveAll {
                            kind: ReferenceKind::Bundles,
                            at,
                        },
                        1..=4 => ReferenceChange::Remove {
                            kind: ReferenceKind::Subscribers,
                            id: number(i).to_string(),
                            at,
                        },
                        _ => ReferenceChange::Put(ReferenceRow::Subscriber(subscriber(
                            i,
                            at,
                            &format!("plan{round}"),
                        ))),
                    }
                })
                .collect();
            let before = live.view();
            live.apply(&changes);
            let after = live.view();
            let previous = oracle.clone();
            changes.iter().for_each(|c| oracle.apply(c.clone()));
            for i in 0..260 {
                for at in (0..13).map(|s| 1_000 * s - 1) {
                    let plan =
                        |s: Option<&Subscriber>| s.map(|s| (s.effective_from, s.plan_id.clone()));
                    assert_eq!(
                        plan(after.subscriber_at(number(i), at)),
                        plan(oracle.subscriber_at(number(i), at)),
                        "round {round}, subscriber {i} at {at}"
                    );
                    assert_eq!(
                        plan(before.subscriber_at(number(i), at)),
                        plan(previous.subscriber_at(number(i), at)),
                        "a view taken before round {round} saw its changes"
                    );
                    let bought = |rows: Vec<&BundlePurchase>| -> Vec<(Arc<str>, Arc<str>)> {
                        rows.into_iter()
                            .map(|b| (b.purchase_id.clone(), b.bundle_id.clone()))
                            .collect()
                    };
                    assert_eq!(
                        bought(after.bundles_at(number(i), at)),
                        bought(oracle.bundles_at(number(i), at)),
                        "round {round}, purchases of {i} at {at}"
                    );
                }
            }
        }
    }
}
