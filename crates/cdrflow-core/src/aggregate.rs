//! Daily per-subscriber summaries, accumulated as deltas between checkpoints.
//!
//! A delta is keyed like seed 000's tables — (kind, msisdn, date, type) — and
//! is added to the stored totals in the same transaction as the source
//! positions, so each record counts exactly once.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::model::{Cdr, Kind};
use crate::normalize::{Day, Msisdn};

/// The measures of one summary row. 64-bit like the stores' columns: a sum
/// that would not fit is refused at admission (see [`SummaryDelta::add`])
/// rather than failing a whole commit later.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub records: u64,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub duration_sec: u64,
    pub cost_micros: i64,
    pub amount_micros: i64,
}

/// A sum exceeded 2^63-1 (the stores' integer range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotalOverflow;

impl Totals {
    /// The measures of a single record.
    pub fn of(cdr: &Cdr<'_>, cost_micros: i64) -> Totals {
        Totals {
            records: 1,
            up_bytes: cdr.uplink_bytes,
            down_bytes: cdr.downlink_bytes,
            duration_sec: cdr.duration_sec,
            cost_micros,
            amount_micros: cdr.amount.map_or(0, |a| a.micros),
        }
    }

    /// The largest measure, as a magnitude: how close one record can bring a total to the limit.
    pub fn largest_measure(&self) -> u64 {
        [
            self.up_bytes,
            self.down_bytes,
            self.duration_sec,
            self.cost_micros.unsigned_abs(),
            self.amount_micros.unsigned_abs(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// `self + other`, or `TotalOverflow` when any measure leaves the signed 64-bit range.
    pub fn checked_add(&self, other: &Totals) -> Result<Totals, TotalOverflow> {
        let unsigned = |a: u64, b: u64| {
            a.checked_add(b)
                .filter(|v| *v <= i64::MAX as u64)
                .ok_or(TotalOverflow)
        };
        let signed = |a: i64, b: i64| a.checked_add(b).ok_or(TotalOverflow);
        Ok(Totals {
            records: unsigned(self.records, other.records)?,
            up_bytes: unsigned(self.up_bytes, other.up_bytes)?,
            down_bytes: unsigned(self.down_bytes, other.down_bytes)?,
            duration_sec: unsigned(self.duration_sec, other.duration_sec)?,
            cost_micros: signed(self.cost_micros, other.cost_micros)?,
            amount_micros: signed(self.amount_micros, other.amount_micros)?,
        })
    }
}

/// A summary row, named in full (the delta interns its type labels).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub kind: Kind,
    pub msisdn: Msisdn,
    pub day: Day,
    pub service_type: String,
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
#[derive(Debug, Default, Clone)]
pub struct SummaryDelta {
    rows: FxHashMap<DeltaKey, Totals>,
    type_ids: HashMap<Box<str>, u32, rustc_hash::FxBuildHasher>,
    type_names: Vec<Box<str>>,
}

impl SummaryDelta {
    pub fn with_capacity(rows: usize) -> SummaryDelta {
        SummaryDelta {
            rows: FxHashMap::with_capacity_and_hasher(rows, Default::default()),
            ..SummaryDelta::default()
        }
    }

    /// Adds one record's measures to its row; refuses sums that would overflow.
    pub fn add(
        &mut self,
        kind: Kind,
        msisdn: Msisdn,
        day: Day,
        service_type: &str,
        usage: &Totals,
    ) -> Result<(), TotalOverflow> {
        let type_id = self.intern(service_type);
        let key = DeltaKey {
            kind,
            msisdn,
            day,
            type_id,
        };
        // Checked before a row is created: a refused record must leave no empty row behind.
        match self.rows.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut row) => {
                *row.get_mut() = row.get().checked_add(usage)?;
            }
            std::collections::hash_map::Entry::Vacant(row) => {
                row.insert(Totals::default().checked_add(usage)?);
            }
        }
        Ok(())
    }

    /// The delta's row for a key, if this delta touched it.
    pub fn row(&self, kind: Kind, msisdn: Msisdn, day: Day, service_type: &str) -> Option<&Totals> {
        let type_id = *self.type_ids.get(service_type)?;
        self.rows.get(&DeltaKey {
            kind,
            msisdn,
            day,
            type_id,
        })
    }

    fn intern(&mut self, name: &str) -> u32 {
        // Most feeds have a handful of types: a scan beats hashing the string.
        if self.type_names.len() <= 16 {
            if let Some(id) = self.type_names.iter().position(|t| **t == *name) {
                return id as u32;
            }
        } else if let Some(&id) = self.type_ids.get(name) {
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
            let key = DeltaKey {
                kind: row.kind,
                msisdn: row.msisdn,
                day: row.day,
                type_id,
            };
            let totals = self.rows.entry(key).or_default();
            *totals = totals
                .checked_add(row.totals)
                .expect("merged deltas stay within 64 bits");
        }
    }
}
