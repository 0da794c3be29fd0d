//! Anomaly and fraud rules, as an operator after the windows.
//!
//! Seed 003's four, with thresholds and severities from a rules file
//! ([`DEFAULT_RULES_TOML`], `config/rules.toml`): `long_call`,
//! `large_data_session` and `large_recharge` look at one record (late ones
//! too: they are not windowed); `high_frequency` counts one MSISDN's
//! on-time records per window and fires once, on the first record past the
//! threshold — not at window close, so an alert leaves within a batch.
//!
//! Its counts are state: each checkpoint appends the changes of the windows
//! it touched (one value per window, a span of that window's first minute),
//! memory keeps the windows near the newest event (older ones leave at a
//! checkpoint, once their changes are handed over), and a record for an
//! older window (a partition far behind the others) reads that window back
//! first — so a restart or a lagging partition never counts a window from
//! zero, and an alert never fires twice.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::analytics::windows::Placement;
use crate::dedup::minute_of;
use crate::mediation::Rated;
use crate::model::Kind;
use crate::normalize::{EpochMillis, Msisdn};
use crate::operator::{
    decode_millis, encode_millis, BatchContext, Checkpoint, Operator, ReadError, StateKind,
    StateReader, StateTable,
};

pub const DEFAULT_RULES_TOML: &str = include_str!("../../../../config/rules.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A rule's threshold and severity, as the rules file gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold<T> {
    pub above: T,
    pub severity: Severity,
}

/// The rules in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// `long_call`: a call longer than this many seconds.
    pub long_call: Threshold<u64>,
    /// `large_data_session`: more bytes than this in one data record.
    pub large_data_session: Threshold<u64>,
    /// `large_recharge`: a recharge above this, in micro-units.
    pub large_recharge: Threshold<i64>,
    /// `high_frequency`: more on-time records than this from one MSISDN in one window.
    pub high_frequency: Threshold<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("`{field}` = {value:?}: {why}")]
    Value {
        field: &'static str,
        value: String,
        why: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    long_call: RuleFile<u64>,
    large_data_session: RuleFile<String>,
    large_recharge: RuleFile<String>,
    high_frequency: RuleFile<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile<T> {
    above: T,
    severity: String,
}

impl RulesConfig {
    pub fn from_toml(text: &str) -> Result<RulesConfig, RulesError> {
        let file: RulesFile = toml::from_str(text)?;
        fn severity(field: &'static str, text: &str) -> Result<Severity, RulesError> {
            Severity::parse(text).ok_or_else(|| RulesError::Value {
                field,
                value: text.into(),
                why: "expected low, medium, high or critical".into(),
            })
        }
        fn micros(field: &'static str, text: &str) -> Result<i128, RulesError> {
            let value = |why: &str| RulesError::Value {
                field,
                value: text.into(),
                why: why.into(),
            };
            let decimal = crate::money::Decimal::parse(text).map_err(|_| {
                value("not a decimal number (write it as a string, e.g. \"50000\")")
            })?;
            let micros = decimal
                .scaled_to_integer(6)
                .ok_or_else(|| value("more than 6 decimal places"))?;
            if micros < 0 {
                return Err(value("must not be negative"));
            }
            Ok(micros)
        }
        let too_large = |field: &'static str, text: &str| RulesError::Value {
            field,
            value: text.into(),
            why: "too large".into(),
        };
        let data = &file.large_data_session;
        let recharge = &file.large_recharge;
        Ok(RulesConfig {
            long_call: Threshold {
                above: file.long_call.above,
                severity: severity("long_call.severity", &file.long_call.severity)?,
            },
            // A megabyte is 10^6 bytes: the micro-megabytes are bytes.
            large_data_session: Threshold {
                above: u64::try_from(micros("large_data_session.above", &data.above)?)
                    .map_err(|_| too_large("large_data_session.above", &data.above))?,
                severity: severity("large_data_session.severity", &data.severity)?,
            },
            large_recharge: Threshold {
                above: i64::try_from(micros("large_recharge.above", &recharge.above)?)
                    .map_err(|_| too_large("large_recharge.above", &recharge.above))?,
                severity: severity("large_recharge.severity", &recharge.severity)?,
            },
            high_frequency: Threshold {
                above: file.high_frequency.above,
                severity: severity("high_frequency.severity", &file.high_frequency.severity)?,
            },
        })
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig::from_toml(DEFAULT_RULES_TOML).expect("the shipped rules file is valid")
    }
}

/// An accepted record as the rules see it: where the windows put it.
#[derive(Clone, Copy, Debug)]
pub struct Placed<'a> {
    pub record: &'a Rated<'a>,
    pub window_start: EpochMillis,
    /// Came after its window closed: counts in no windowed rule.
    pub late: bool,
}

impl<'a> Placed<'a> {
    /// The windows' placements beside the records they placed, in order.
    pub fn all(records: &'a [Rated<'a>], placements: &[Placement]) -> Vec<Placed<'a>> {
        debug_assert_eq!(records.len(), placements.len(), "a placement per record");
        records
            .iter()
            .zip(placements)
            .map(|(record, p)| Placed {
                record,
                window_start: p.window_start,
                late: p.late,
            })
            .collect()
    }
}

/// A detected anomaly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub rule: &'static str,
    pub severity: Severity,
    pub msisdn: Msisdn,
    /// The record that fired it, when it has an id.
    pub event_id: Option<String>,
    pub event_time: EpochMillis,
    /// Windowed rules: the window.
    pub window_start: Option<EpochMillis>,
    /// What was seen, against what threshold, for a person.
    pub evidence: String,
    /// The same anomaly always has the same key: alerts are sent at least
    /// once and deduplicated by it downstream.
    pub idempotency_key: String,
}

/// Per-window event counts per MSISDN, one value per window and checkpoint:
/// the window's first minute as its span; values are added up when read.
pub const WINDOW_COUNTS: StateTable = StateTable {
    name: "window_counts",
    kind: StateKind::Spans,
};
/// The latest window whose counts any checkpoint handed over (decimal
/// text): windows after it have nothing stored, so a new window is counted
/// without asking the store — a store read while records flow would hold
/// up the source.
pub const STORED_UP_TO: StateTable = StateTable {
    name: "stored_up_to",
    kind: StateKind::Keyed,
};
const TABLES: [StateTable; 2] = [WINDOW_COUNTS, STORED_UP_TO];

pub const RULES: &str = "rules";

/// Windows further than this behind the newest event leave memory (and are
/// read back from the store if a record for one still comes).
const KEEP_WINDOWS: i64 = 3;

pub struct Rules {
    config: RulesConfig,
    window_ms: i64,
    /// Counts of the windows in memory (complete: stored plus this run's).
    counts: BTreeMap<EpochMillis, FxHashMap<Msisdn, Count>>,
    /// Changes of windows that left memory since the last checkpoint, encoded.
    evicted_changes: Vec<(EpochMillis, Vec<u8>)>,
    /// See [`STORED_UP_TO`].
    stored_up_to: Option<EpochMillis>,
    newest: Option<EpochMillis>,
    pending: Vec<Anomaly>,
}

/// One MSISDN's events in one window: all of them, and those since the last
/// checkpoint (what the next one hands over). One map entry for both keeps
/// the per-record work to one hash lookup.
#[derive(Clone, Copy, Debug, Default)]
struct Count {
    total: u64,
    since_checkpoint: u64,
}

/// The changes since the last checkpoint as (MSISDN, increment) pairs, in
/// MSISDN order; resets them.
fn take_changes(counts: &mut FxHashMap<Msisdn, Count>) -> Vec<u8> {
    let mut entries: Vec<(Msisdn, u64)> = counts
        .iter_mut()
        .filter(|(_, c)| c.since_checkpoint > 0)
        .map(|(m, c)| (*m, std::mem::take(&mut c.since_checkpoint)))
        .collect();
    entries.sort_unstable();
    let mut out = Vec::with_capacity(entries.len() * 16);
    for (msisdn, count) in entries {
        out.extend_from_slice(&msisdn.to_bits().to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
    }
    out
}

fn decode_counts(value: &[u8], into: &mut FxHashMap<Msisdn, Count>) -> Result<(), ReadError> {
    if value.len() % 16 != 0 {
        return Err(ReadError(format!(
            "a stored high_frequency count of {} bytes is not whole (MSISDN, count) pairs; the store is damaged",
            value.len()
        )));
    }
    for pair in value.chunks_exact(16) {
        let msisdn = Msisdn::from_bits(u64::from_le_bytes(pair[..8].try_into().expect("8 bytes")));
        let count = u64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
        into.entry(msisdn).or_default().total += count;
    }
    Ok(())
}

impl Rules {
    pub fn new(config: RulesConfig, window_ms: i64) -> Rules {
        Rules {
            config,
            window_ms,
            counts: BTreeMap::new(),
            evicted_changes: Vec::new(),
            stored_up_to: None,
            newest: None,
            pending: Vec::new(),
        }
    }

    fn fire(
        &mut self,
        rule: &'static str,
        severity: Severity,
        placed: &Placed<'_>,
        window: Option<EpochMillis>,
        evidence: String,
    ) {
        let r = placed.record;
        let event_id = r.record_id.as_deref().map(str::to_string);
        let identity = match (&event_id, window) {
            (_, Some(window)) => format!("{}:{window}", r.msisdn),
            (Some(id), None) => id.clone(),
            (None, None) => format!("{}:{}", r.partition, r.position),
        };
        self.pending.push(Anomaly {
            rule,
            severity,
            msisdn: r.msisdn,
            event_id,
            event_time: r.start_time,
            window_start: window,
            evidence,
            idempotency_key: format!("{rule}:{identity}"),
        });
    }

    /// The window's counts, read back from the store if memory let it go
    /// (it did so only after handing over the window's changes).
    fn window(
        &mut self,
        start: EpochMillis,
        state: &mut dyn StateReader,
    ) -> Result<&mut FxHashMap<Msisdn, Count>, ReadError> {
        if !self.counts.contains_key(&start) {
            let mut counts = FxHashMap::default();
            if self.stored_up_to.is_some_and(|up_to| start <= up_to) {
                let minute = minute_of(start);
                let mut damaged = None;
                state.spans(&WINDOW_COUNTS, minute, minute, &mut |value| {
                    if let Err(e) = decode_counts(value, &mut counts) {
                        damaged = Some(e);
                    }
                })?;
                if let Some(e) = damaged {
                    return Err(e);
                }
            }
            // Changes handed over by no checkpoint yet are the window's too.
            for (_, changes) in self.evicted_changes.iter().filter(|(s, _)| *s == start) {
                decode_counts(changes, &mut counts)?;
            }
            self.counts.insert(start, counts);
        }
        Ok(self.counts.get_mut(&start).expect("inserted above"))
    }
}

impl Operator for Rules {
    type Input<'a> = Placed<'a>;
    type Output<'a> = ();

    fn name(&self) -> &'static str {
        RULES
    }

    fn tables(&self) -> &'static [StateTable] {
        &TABLES
    }

    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        self.stored_up_to = match state.value(&STORED_UP_TO, "")? {
            None => None,
            Some(value) => Some(decode_millis(&value, "rules window")?),
        };
        Ok(())
    }

    fn process_batch<'a>(
        &mut self,
        batch: &[Placed<'a>],
        context: &mut BatchContext<'_>,
        _out: &mut Vec<()>,
    ) -> Result<(), ReadError> {
        let c = self.config;
        for placed in batch {
            let r = placed.record;
            let data = r.usage.up_bytes + r.usage.down_bytes;
            match r.kind {
                Kind::Voice if r.usage.duration_sec > c.long_call.above => self.fire(
                    "long_call",
                    c.long_call.severity,
                    placed,
                    None,
                    format!(
                        "a {} s call; more than {} s",
                        r.usage.duration_sec, c.long_call.above
                    ),
                ),
                Kind::Data if data > c.large_data_session.above => self.fire(
                    "large_data_session",
                    c.large_data_session.severity,
                    placed,
                    None,
                    format!(
                        "{} MB in one session; more than {} MB",
                        crate::money::format_micros(i128::from(data)),
                        crate::money::format_micros(i128::from(c.large_data_session.above))
                    ),
                ),
                Kind::Recharge if r.usage.amount_micros > c.large_recharge.above => self.fire(
                    "large_recharge",
                    c.large_recharge.severity,
                    placed,
                    None,
                    format!(
                        "a recharge of {}; more than {}",
                        crate::money::format_micros(i128::from(r.usage.amount_micros)),
                        crate::money::format_micros(i128::from(c.large_recharge.above))
                    ),
                ),
                _ => {}
            }
            if placed.late {
                continue;
            }
            let start = placed.window_start;
            let counts = self.window(start, context.state)?;
            let entry = counts.entry(r.msisdn).or_default();
            entry.total += 1;
            entry.since_checkpoint += 1;
            let count = entry.total;
            if count == c.high_frequency.above + 1 {
                self.fire(
                    "high_frequency",
                    c.high_frequency.severity,
                    placed,
                    Some(start),
                    format!(
                        "{count} events in the window from {}; more than {}",
                        crate::normalize::format_timestamp(start),
                        c.high_frequency.above
                    ),
                );
            }
            self.newest = Some(self.newest.map_or(r.start_time, |n| n.max(r.start_time)));
        }
        Ok(())
    }

    /// Lets windows far behind the newest event leave memory, keeping their
    /// changes for the next checkpoint.
    fn handle_watermark(&mut self, _watermark: EpochMillis) {
        let Some(newest) = self.newest else { return };
        let keep_from = newest - KEEP_WINDOWS * self.window_ms;
        if self
            .counts
            .first_key_value()
            .is_none_or(|(start, _)| *start >= keep_from)
        {
            return;
        }
        let kept = self.counts.split_off(&keep_from);
        for (start, mut counts) in std::mem::replace(&mut self.counts, kept) {
            let changes = take_changes(&mut counts);
            if !changes.is_empty() {
                self.evicted_changes.push((start, changes));
            }
        }
    }

    /// Hands over the anomalies and every window's changes.
    fn checkpoint(&mut self, out: &mut Checkpoint) {
        out.anomalies.append(&mut self.pending);
        let mut state = out.state_of(RULES);
        let in_memory = self
            .counts
            .iter_mut()
            .map(|(start, counts)| (*start, take_changes(counts)));
        let mut up_to = self.stored_up_to;
        for (start, changes) in std::mem::take(&mut self.evicted_changes)
            .into_iter()
            .chain(in_memory)
        {
            if !changes.is_empty() {
                let minute = minute_of(start);
                state.append(&WINDOW_COUNTS, minute, minute, changes);
                up_to = Some(up_to.map_or(start, |u| u.max(start)));
            }
        }
        if up_to != self.stored_up_to {
            self.stored_up_to = up_to;
            if let Some(up_to) = up_to {
                state.put(&STORED_UP_TO, "", encode_millis(up_to));
            }
        }
        if let Some(newest) = self.newest {
            // A day behind the newest event no window is counted any more:
            // its records are late in every partition that is still reading.
            state.expire_before(&WINDOW_COUNTS, minute_of(newest - 86_400_000));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::windows::{WindowConfig, Windows};
    use crate::mediation::{MediationConfig, Mediator, RawRecord};
    use crate::model::SourcePosition;
    use crate::normalize::parse_timestamp;
    use crate::operator::MemoryState;
    use crate::rating::{Tariff, TariffOverrides};

    /// Mediator → windows → rules over `lines` of one partition, as the
    /// runner chains them, with the rules' state in `state`; returns the
    /// anomalies of the checkpoint taken at the end (applied to `state`).
    fn run(lines: &[String], state: &mut MemoryState) -> Vec<Anomaly> {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        let mut windows = Windows::new(WindowConfig::default());
        let mut rules = Rules::new(RulesConfig::default(), WindowConfig::default().size_ms);
        rules.on_start(state).unwrap();
        let records: Vec<RawRecord<'_>> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| RawRecord {
                origin: "f",
                source_id: "f",
                position: SourcePosition::Line {
                    line: i as u64 + 1,
                    byte_offset: 0,
                },
                payload: line.as_bytes(),
                cut_from: None,
            })
            .collect();
        let now = parse_timestamp("2025-11-10T00:00:00Z").unwrap();
        let mut other = MemoryState::new("other");
        let mut accepted = Vec::new();
        let mut context = BatchContext {
            now,
            state: &mut other,
        };
        mediator
            .process_batch(&records, &mut context, &mut accepted)
            .unwrap();
        let mut placements: Vec<Placement> = Vec::new();
        windows
            .process_batch(&accepted, &mut context, &mut placements)
            .unwrap();
        let placed = Placed::all(&accepted, &placements);
        rules
            .process_batch(&placed, &mut BatchContext { now, state }, &mut Vec::new())
            .unwrap();
        let mut cp = Checkpoint::default();
        rules.checkpoint(&mut cp);
        state.apply(&cp);
        cp.anomalies
    }

    fn event(id: &str, time: &str, msisdn: &str, body: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","msisdn":"{msisdn}","region":"Almaty","timestamp":"{time}",{body}}}"#
        )
    }

    fn fired(anomalies: &[Anomaly]) -> Vec<(&'static str, Option<&str>, Severity)> {
        anomalies
            .iter()
            .map(|a| (a.rule, a.event_id.as_deref(), a.severity))
            .collect()
    }

    #[test]
    fn record_rules_fire_strictly_above_their_thresholds() {
        let t = "2025-11-09T10:00:00Z";
        let m = "+77011234567";
        let lines = [
            event(
                "c1",
                t,
                m,
                r#""event_type":"call","event_subtype":"outgoing","duration_seconds":14400"#,
            ),
            event(
                "c2",
                t,
                m,
                r#""event_type":"call","event_subtype":"outgoing","duration_seconds":14401"#,
            ),
            event("d1", t, m, r#""event_type":"data_session","data_mb":10240"#),
            event(
                "d2",
                t,
                m,
                r#""event_type":"data_session","data_mb":10240.000001"#,
            ),
            event(
                "r1",
                t,
                m,
                r#""event_type":"balance_recharge","amount":50000"#,
            ),
            event(
                "r2",
                t,
                m,
                r#""event_type":"balance_recharge","amount":50000.01"#,
            ),
        ];
        let anomalies = run(&lines, &mut MemoryState::new(RULES));
        assert_eq!(
            fired(&anomalies),
            vec![
                ("long_call", Some("c2"), Severity::Medium),
                ("large_data_session", Some("d2"), Severity::Medium),
                ("large_recharge", Some("r2"), Severity::High),
            ]
        );
        assert_eq!(anomalies[0].idempotency_key, "long_call:c2");
        assert_eq!(anomalies[0].msisdn.to_string(), m);
        assert!(
            anomalies[2].evidence.contains("50000.010000"),
            "{}",
            anomalies[2].evidence
        );
    }

    #[test]
    fn high_frequency_fires_once_on_the_first_event_past_the_threshold() {
        let m = "+77011234567";
        let sms = |i: usize, time: &str| event(&format!("s{i}"), time, m, r#""event_type":"sms""#);
        // 100 in window 10:00; one late one after the watermark passed it.
        let mut first: Vec<String> = (0..100).map(|i| sms(i, "2025-11-09T10:01:00Z")).collect();
        first.push(sms(500, "2025-11-09T10:07:00Z"));
        first.push(sms(501, "2025-11-09T10:02:00Z"));
        let mut state = MemoryState::new(RULES);
        assert!(
            run(&first, &mut state).is_empty(),
            "100 is not above 100; the late one does not count"
        );

        // After a restart from the committed state: the 101st on time fires, the 102nd does not.
        let second = vec![
            sms(101, "2025-11-09T10:04:00Z"),
            sms(102, "2025-11-09T10:04:30Z"),
        ];
        let anomalies = run(&second, &mut state);
        assert_eq!(
            fired(&anomalies),
            vec![("high_frequency", Some("s101"), Severity::High)]
        );
        let window = parse_timestamp("2025-11-09T10:00:00Z").unwrap();
        assert_eq!(anomalies[0].window_start, Some(window));
        assert_eq!(
            anomalies[0].idempotency_key,
            format!("high_frequency:{m}:{window}")
        );
    }

    #[test]
    fn the_shipped_rules_are_seed_003s_and_mistakes_are_named() {
        let c = RulesConfig::default();
        assert_eq!(c.long_call.above, 14_400);
        assert_eq!(c.large_data_session.above, 10_240_000_000);
        assert_eq!(c.large_recharge.above, 50_000_000_000);
        assert_eq!(c.high_frequency.above, 100);
        let wrong =
            DEFAULT_RULES_TOML.replacen("severity = \"medium\"", "severity = \"urgent\"", 1);
        let error = RulesConfig::from_toml(&wrong).unwrap_err().to_string();
        assert!(
            error.contains("long_call.severity") && error.contains("urgent"),
            "{error}"
        );
    }
}
