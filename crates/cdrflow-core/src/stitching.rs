//! Partial records stitched into one (issue 15, seed 002): a long call or
//! data session arrives as several records — 32.298's partial records,
//! keyed by (recording entity, call reference) for calls and (node,
//! charging id) for data, numbered by sequence number from 1, the last
//! closed by a final cause. The stitcher holds the parts of each open
//! session and hands on one record when the final part and every part
//! before it have come: durations and volumes summed, started at the first
//! part's start.
//!
//! Nothing is dropped or merged last-write-wins (as CGRateS' cache does):
//! a session whose parts stop coming for `timeout` of event time is handed
//! on as [`Stitched::Incomplete`] with why (no final part, or which
//! sequence numbers are missing); a part that comes after its session was
//! handed on is a [`Stitched::Correction`] of it; a part seen twice is
//! counted, not added twice. The open sessions, and those recently handed
//! on (for corrections), are the operator's state: one keyed value,
//! committed with the offsets at each checkpoint, so a restart resumes the
//! same sessions.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::normalize::EpochMillis;
use crate::operator::{
    BatchContext, Checkpoint, Operator, ReadError, StateChange, StateKind, StateReader, StateTable,
    StateWrite,
};

/// One partial record, as a decoder reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partial {
    /// `call:<entity>:<reference>` or `data:<node>:<charging id>`: the
    /// decoder's choice, the same for every part of a session.
    pub key: String,
    /// From 1.
    pub sequence: u32,
    /// Closed by a final cause (normal or abnormal release, not a partial
    /// record's time or volume limit).
    pub is_final: bool,
    pub start: EpochMillis,
    pub duration_sec: u64,
    pub uplink_bytes: u64,
    pub downlink_bytes: u64,
}

/// Usage summed over parts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub duration_sec: u64,
    pub uplink_bytes: u64,
    pub downlink_bytes: u64,
}

impl Usage {
    fn of(part: &Partial) -> Usage {
        Usage {
            duration_sec: part.duration_sec,
            uplink_bytes: part.uplink_bytes,
            downlink_bytes: part.downlink_bytes,
        }
    }

    fn add(&mut self, other: Usage) {
        self.duration_sec = self.duration_sec.saturating_add(other.duration_sec);
        self.uplink_bytes = self.uplink_bytes.saturating_add(other.uplink_bytes);
        self.downlink_bytes = self.downlink_bytes.saturating_add(other.downlink_bytes);
    }
}

/// Why a session was handed on without all its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncompleteReason {
    /// Parts up to the last seen came, the final one did not.
    NoFinalPart { last_sequence: u32 },
    /// These sequence numbers did not come (before the final one, or
    /// before the last seen).
    SequenceGap { missing: Vec<u32> },
}

/// What the stitcher hands on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stitched {
    Complete {
        key: String,
        start: EpochMillis,
        usage: Usage,
        parts: u32,
    },
    Incomplete {
        key: String,
        start: EpochMillis,
        usage: Usage,
        parts: u32,
        reason: IncompleteReason,
    },
    /// A part of a session already handed on: its usage is to be added.
    Correction {
        key: String,
        sequence: u32,
        start: EpochMillis,
        usage: Usage,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// Usage and start by sequence number.
    parts: BTreeMap<u32, (EpochMillis, Usage)>,
    final_sequence: Option<u32>,
    /// The latest event time among its parts: what the timeout runs from.
    last_seen: EpochMillis,
}

impl Session {
    fn is_complete(&self) -> bool {
        match self.final_sequence {
            Some(last) => {
                self.parts.len() as u64 == u64::from(last) && self.parts.keys().next() == Some(&1)
            }
            None => false,
        }
    }

    fn start(&self) -> EpochMillis {
        self.parts
            .values()
            .map(|(start, _)| *start)
            .min()
            .unwrap_or(self.last_seen)
    }

    fn usage(&self) -> Usage {
        let mut total = Usage::default();
        for (_, usage) in self.parts.values() {
            total.add(*usage);
        }
        total
    }

    fn missing(&self) -> Vec<u32> {
        let last = self
            .final_sequence
            .or(self.parts.keys().next_back().copied())
            .unwrap_or(0);
        (1..=last).filter(|s| !self.parts.contains_key(s)).collect()
    }
}

/// The stitcher's whole state: sessions open, and those handed on with
/// the sequence numbers they held and when (kept `timeout` more, so a
/// late part is a correction and a repeated one a duplicate).
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    open: BTreeMap<String, Session>,
    closed: BTreeMap<String, (EpochMillis, BTreeSet<u32>)>,
}

/// Counts for `/metrics` and the accounting: every part is one of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StitchCounts {
    pub parts: u64,
    pub duplicates: u64,
    pub complete: u64,
    pub incomplete: u64,
    pub corrections: u64,
}

pub struct Stitcher {
    timeout_ms: i64,
    state: State,
    dirty: bool,
    pending: Vec<Stitched>,
    pub counts: StitchCounts,
}

const SESSIONS: StateTable = StateTable {
    name: "sessions",
    kind: StateKind::Keyed,
};
const SESSIONS_KEY: &str = "all";

impl Stitcher {
    /// `timeout`: how long of event time a session may wait for its next part.
    pub fn new(timeout_ms: i64) -> Stitcher {
        Stitcher {
            timeout_ms,
            state: State::default(),
            dirty: false,
            pending: Vec::new(),
            counts: StitchCounts::default(),
        }
    }

    /// Sessions waiting for parts.
    pub fn open_sessions(&self) -> usize {
        self.state.open.len()
    }

    fn take(&mut self, part: &Partial, out: &mut Vec<Stitched>) {
        self.counts.parts += 1;
        if let Some((_, held)) = self.state.closed.get_mut(&part.key) {
            if !held.insert(part.sequence) {
                self.counts.duplicates += 1;
                return;
            }
            self.dirty = true;
            self.counts.corrections += 1;
            out.push(Stitched::Correction {
                key: part.key.clone(),
                sequence: part.sequence,
                start: part.start,
                usage: Usage::of(part),
            });
            return;
        }
        let session = self.state.open.entry(part.key.clone()).or_default();
        if session.parts.contains_key(&part.sequence) {
            self.counts.duplicates += 1;
            return;
        }
        self.dirty = true;
        session
            .parts
            .insert(part.sequence, (part.start, Usage::of(part)));
        session.last_seen = session.last_seen.max(part.start);
        if part.is_final {
            session.final_sequence = Some(part.sequence);
        }
        if session.is_complete() {
            let session = self.state.open.remove(&part.key).expect("just filled");
            self.counts.complete += 1;
            out.push(Stitched::Complete {
                key: part.key.clone(),
                start: session.start(),
                usage: session.usage(),
                parts: session.parts.len() as u32,
            });
            let at = session.last_seen;
            self.close(&part.key, session, at);
        }
    }

    /// Remembers a session handed on at event time `at`.
    fn close(&mut self, key: &str, session: Session, at: EpochMillis) {
        let held = session.parts.keys().copied().collect();
        self.state.closed.insert(key.to_string(), (at, held));
    }
}

impl Operator for Stitcher {
    type Input<'a> = Partial;
    type Output<'a> = Stitched;

    fn name(&self) -> &'static str {
        "stitching"
    }

    fn tables(&self) -> &'static [StateTable] {
        &[SESSIONS]
    }

    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        if let Some(bytes) = state.value(&SESSIONS, SESSIONS_KEY)? {
            self.state = serde_json::from_slice(&bytes)
                .map_err(|e| ReadError(format!("the stitcher's sessions do not read back: {e}")))?;
        }
        Ok(())
    }

    fn process_batch<'a>(
        &mut self,
        batch: &[Partial],
        _context: &mut BatchContext<'_>,
        out: &mut Vec<Stitched>,
    ) -> Result<(), ReadError> {
        for part in batch {
            self.take(part, out);
        }
        out.append(&mut self.pending);
        Ok(())
    }

    /// Sessions idle for `timeout` are handed on incomplete; sessions
    /// handed on more than `timeout` ago are forgotten.
    fn handle_watermark(&mut self, watermark: EpochMillis) {
        let cut = watermark.saturating_sub(self.timeout_ms);
        let idle: Vec<String> = self
            .state
            .open
            .iter()
            .filter(|(_, s)| s.last_seen < cut)
            .map(|(key, _)| key.clone())
            .collect();
        for key in idle {
            let session = self.state.open.remove(&key).expect("listed");
            let missing = session.missing();
            let reason = match missing.is_empty() {
                true => IncompleteReason::NoFinalPart {
                    last_sequence: session.parts.keys().next_back().copied().unwrap_or(0),
                },
                false => IncompleteReason::SequenceGap { missing },
            };
            self.counts.incomplete += 1;
            self.pending.push(Stitched::Incomplete {
                key: key.clone(),
                start: session.start(),
                usage: session.usage(),
                parts: session.parts.len() as u32,
                reason,
            });
            self.close(&key, session, watermark);
            self.dirty = true;
        }
        let before = self.state.closed.len();
        self.state.closed.retain(|_, (at, _)| *at >= cut);
        self.dirty |= self.state.closed.len() != before;
    }

    fn checkpoint(&mut self, out: &mut Checkpoint) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        out.state.push(StateWrite {
            operator: self.name(),
            table: SESSIONS.name,
            change: StateChange::Put {
                key: SESSIONS_KEY.into(),
                value: serde_json::to_vec(&self.state).expect("the sessions serialise"),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::MemoryState;

    const MINUTE: i64 = 60_000;

    fn part(key: &str, sequence: u32, is_final: bool, minute: i64, seconds: u64) -> Partial {
        Partial {
            key: key.into(),
            sequence,
            is_final,
            start: minute * MINUTE,
            duration_sec: seconds,
            uplink_bytes: u64::from(sequence) * 10,
            downlink_bytes: u64::from(sequence) * 100,
        }
    }

    fn run(stitcher: &mut Stitcher, state: &mut MemoryState, batch: &[Partial]) -> Vec<Stitched> {
        let mut out = Vec::new();
        let mut context = BatchContext { now: 0, state };
        stitcher
            .process_batch(batch, &mut context, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn parts_in_any_order_make_one_record_when_the_last_comes() {
        let (mut stitcher, mut state) = (Stitcher::new(30 * MINUTE), MemoryState::new("stitching"));
        let out = run(
            &mut stitcher,
            &mut state,
            &[
                part("call:a:1", 2, false, 10, 600),
                part("call:a:1", 3, true, 20, 61),
                part("call:b:7", 1, true, 3, 5),
            ],
        );
        // b was one final part; a waits for its first.
        assert_eq!(out.len(), 1);
        let out = run(
            &mut stitcher,
            &mut state,
            &[part("call:a:1", 1, false, 0, 600)],
        );
        assert_eq!(
            out,
            [Stitched::Complete {
                key: "call:a:1".into(),
                start: 0,
                usage: Usage {
                    duration_sec: 1261,
                    uplink_bytes: 60,
                    downlink_bytes: 600
                },
                parts: 3
            }]
        );
        assert_eq!(stitcher.open_sessions(), 0);
    }

    #[test]
    fn idle_sessions_are_handed_on_with_why_and_late_parts_correct_them() {
        let (mut stitcher, mut state) = (Stitcher::new(30 * MINUTE), MemoryState::new("stitching"));
        run(
            &mut stitcher,
            &mut state,
            &[
                part("data:pgw:9", 1, false, 0, 60),
                part("data:pgw:9", 3, true, 2, 60),
                part("call:c:2", 1, false, 0, 600),
            ],
        );
        // 30 minutes after the data session's last part (minute 2).
        stitcher.handle_watermark(33 * MINUTE);
        let out = run(&mut stitcher, &mut state, &[]);
        assert_eq!(out.len(), 2);
        assert!(out.contains(&Stitched::Incomplete {
            key: "data:pgw:9".into(),
            start: 0,
            usage: Usage {
                duration_sec: 120,
                uplink_bytes: 40,
                downlink_bytes: 400
            },
            parts: 2,
            reason: IncompleteReason::SequenceGap { missing: vec![2] },
        }));
        assert!(out.iter().any(|s| matches!(s,
            Stitched::Incomplete { key, reason: IncompleteReason::NoFinalPart { last_sequence: 1 }, .. } if key == "call:c:2")));
        // The missing part, late: a correction; again: a duplicate.
        let late = part("data:pgw:9", 2, false, 1, 60);
        let out = run(&mut stitcher, &mut state, &[late.clone(), late]);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Stitched::Correction { sequence: 2, .. }));
        assert_eq!(stitcher.counts.duplicates, 1);
        assert_eq!(stitcher.counts.parts, 5);
        // Handed on at minute 33 and kept 30 minutes: at 64 it is
        // forgotten, and a part of it opens a session of its own.
        stitcher.handle_watermark(64 * MINUTE);
        let out = run(
            &mut stitcher,
            &mut state,
            &[part("data:pgw:9", 4, false, 60, 1)],
        );
        assert!(out.is_empty());
        assert_eq!(stitcher.open_sessions(), 1);
    }

    #[test]
    fn open_sessions_survive_a_restart_through_the_checkpoint() {
        let mut state = MemoryState::new("stitching");
        let mut first = Stitcher::new(30 * MINUTE);
        first.on_start(&mut state).unwrap();
        run(
            &mut first,
            &mut state,
            &[part("call:a:1", 1, false, 0, 600)],
        );
        let mut checkpoint = Checkpoint::default();
        first.checkpoint(&mut checkpoint);
        state.apply(&checkpoint);
        // A new process: the session's first part is in the state.
        let mut second = Stitcher::new(30 * MINUTE);
        second.on_start(&mut state).unwrap();
        assert_eq!(second.open_sessions(), 1);
        let out = run(
            &mut second,
            &mut state,
            &[part("call:a:1", 2, true, 10, 30)],
        );
        assert!(matches!(
            &out[..],
            [Stitched::Complete {
                parts: 2,
                usage: Usage {
                    duration_sec: 630,
                    ..
                },
                ..
            }]
        ));
        // Nothing changed since: no write.
        let mut again = Checkpoint::default();
        second.checkpoint(&mut again);
        assert_eq!(
            again.state.len(),
            1,
            "the completed session's close is a change"
        );
        let mut idle = Checkpoint::default();
        second.checkpoint(&mut idle);
        assert!(idle.state.is_empty());
    }
}
