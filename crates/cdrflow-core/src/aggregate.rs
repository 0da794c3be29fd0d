//! Daily per-subscriber summaries, accumulated as deltas between checkpoints.
//!
//! A delta is keyed like seed 000's tables — (kind, msisdn, date, type) — and
//! is added to the stored totals in the same transaction as the source
//! positions, so each record counts exactly once.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::model::{Cdr, Kind};
use crate::normalize::{Day, Msisdn};

/// The measures of one summary row. Wide integers: per-record values are
/// 64-bit, and sums of many of them must not wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub records: u64,
    pub up_bytes: u128,
    pub down_bytes: u128,
    pub duration_sec: u128,
    pub cost_micros: i128,
    pub amount_micros: i128,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.records += other.records;
        self.up_bytes += other.up_bytes;
        self.down_bytes += other.down_bytes;
        self.duration_sec += other.duration_sec;
        self.cost_micros += other.cost_micros;
        self.amount_micros += other.amount_micros;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DeltaKey {
    kind: Kind,
    msisdn: Msisdn,
    day: Day,
    type_id: u32,
}

/// One row of a delta, with the type label resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryRow<'a> {
    pub kind: Kind,
    pub msisdn: Msisdn,
    pub day: Day,
    pub service_type: &'a str,
    pub totals: &'a Totals,
}

/// Summary changes since the last checkpoint. Type labels are interned per
/// delta so the map key is small and fixed-size, and the interner empties
/// with the delta, which keeps memory bounded by the batch.
#[derive(Debug, Default)]
pub struct SummaryDelta {
    rows: FxHashMap<DeltaKey, Totals>,
    type_ids: HashMap<Box<str>, u32, rustc_hash::FxBuildHasher>,
    type_names: Vec<Box<str>>,
}

impl SummaryDelta {
    pub fn with_capacity(rows: usize) -> SummaryDelta {
        SummaryDelta { rows: FxHashMap::with_capacity_and_hasher(rows, Default::default()), ..SummaryDelta::default() }
    }

    pub fn add(&mut self, cdr: &Cdr<'_>, day: Day, cost_micros: i64) {
        let type_id = self.intern(&cdr.service_type);
        let key = DeltaKey { kind: cdr.kind, msisdn: cdr.served_msisdn, day, type_id };
        let totals = self.rows.entry(key).or_default();
        totals.records += 1;
        totals.up_bytes += u128::from(cdr.uplink_bytes);
        totals.down_bytes += u128::from(cdr.downlink_bytes);
        totals.duration_sec += u128::from(cdr.duration_sec);
        totals.cost_micros += i128::from(cost_micros);
        totals.amount_micros += cdr.amount.map_or(0, |a| i128::from(a.micros));
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.type_ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.type_names.len()).expect("fewer than 2^32 types per batch");
        self.type_names.push(name.into());
        self.type_ids.insert(name.into(), id);
        id
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> impl Iterator<Item = SummaryRow<'_>> {
        self.rows.iter().map(|(key, totals)| SummaryRow {
            kind: key.kind,
            msisdn: key.msisdn,
            day: key.day,
            service_type: &self.type_names[key.type_id as usize],
            totals,
        })
    }

    /// Folds `other` into this delta (used to merge deltas of parallel batches).
    pub fn merge(&mut self, other: &SummaryDelta) {
        for row in other.rows() {
            let type_id = self.intern(row.service_type);
            let key = DeltaKey { kind: row.kind, msisdn: row.msisdn, day: row.day, type_id };
            self.rows.entry(key).or_default().add(row.totals);
        }
    }
}
