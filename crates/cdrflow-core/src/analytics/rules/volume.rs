//! `volume_spike`: a region and event type far above its own baseline for
//! that hour of the week — an outage elsewhere pushing traffic over, a
//! flood of fraud, a broken switch replaying records.
//!
//! Each window's events per region and event type are counted; when a
//! window leaves memory its count joins the baseline of its hour of the
//! week. A window is measured against the windows of its hour of the week
//! in earlier weeks only (this week's are kept apart until the week turns),
//! so the threshold stays fixed while the window fills and the rule fires
//! once, on the event that crosses it.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::tally::{read_u64, stable_hash, Buckets, Names, Tally, TallyState};
use super::{Finding, Identity, Placed, StatefulRule, VolumeSpikeConfig};
use crate::analytics::windows::{event_type, kind_of_event_type, UNKNOWN_REGION};
use crate::model::Kind;
use crate::money::format_trimmed;
use crate::normalize::{format_timestamp, EpochMillis};
use crate::operator::{
    decode_millis, encode_millis, ReadError, StateKind, StateReader, StateTable, StateWriter,
};

/// Per-window events per region and event type.
pub const VOLUME_WINDOWS: StateTable = StateTable {
    name: "volume_windows",
    kind: StateKind::Spans,
};
/// The baselines, keyed `HOUR_OF_WEEK\tEVENT_TYPE\tREGION` (hour 0 is
/// Monday 00:00 UTC), as text.
pub const BASELINE: StateTable = StateTable {
    name: "volume_baseline",
    kind: StateKind::Keyed,
};
/// The latest window in the baselines (decimal text), so none joins twice.
pub const FOLDED_UP_TO: StateTable = StateTable {
    name: "volume_folded_up_to",
    kind: StateKind::Keyed,
};

const HOUR_MS: i64 = 3_600_000;
const WEEK_HOURS: i64 = 168;
/// 1970-01-01, where epoch hours start, was a Thursday.
const HOURS_AFTER_MONDAY: i64 = 72;
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
/// Windows a restart reads back to find those not yet in the baselines:
/// memory keeps only the last few before they join.
const RELOAD_WINDOWS: i64 = 8;

/// The week (counted from the epoch's Monday) and hour of the week of `time`.
fn hour_of_week(time: EpochMillis) -> (i64, u16) {
    let hour = time.div_euclid(HOUR_MS) + HOURS_AFTER_MONDAY;
    (
        hour.div_euclid(WEEK_HOURS),
        hour.rem_euclid(WEEK_HOURS) as u16,
    )
}

/// A window's events of one region and event type (named once, for the baseline).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    events: u64,
    label: Option<(Arc<str>, Kind)>,
}

impl Tally for Volume {
    fn merge(&mut self, other: &Self) {
        self.events = self.events.saturating_add(other.events);
        if self.label.is_none() {
            self.label.clone_from(&other.label);
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.events.to_le_bytes());
        let (region, kind) = match &self.label {
            Some((region, kind)) => (&**region, event_type(*kind)),
            None => ("", ""),
        };
        for text in [kind, region] {
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }

    fn decode(bytes: &mut &[u8]) -> Option<Self> {
        let events = read_u64(bytes)?;
        let mut text = || -> Option<&str> {
            let len = usize::try_from(read_u64(bytes)?).ok()?;
            let (head, rest) = (bytes.get(..len)?, bytes.get(len..)?);
            *bytes = rest;
            std::str::from_utf8(head).ok()
        };
        let (kind, region) = (text()?, text()?);
        let label = match kind {
            "" => None,
            kind => Some((Arc::from(region), kind_of_event_type(kind)?)),
        };
        Some(Volume { events, label })
    }
}

/// One region and event type's baseline for one hour of the week: the
/// windows of earlier weeks, and those of the latest week apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    week: i64,
    earlier_events: u64,
    earlier_windows: u64,
    week_events: u64,
    week_windows: u64,
}

impl Slot {
    fn join(&mut self, week: i64, events: u64) {
        if week > self.week {
            self.earlier_events += self.week_events;
            self.earlier_windows += self.week_windows;
            (self.week_events, self.week_windows) = (0, 0);
            self.week = week;
        }
        if week == self.week {
            self.week_events += events;
            self.week_windows += 1;
        } else {
            self.earlier_events += events;
            self.earlier_windows += 1;
        }
    }

    /// Events and windows of the weeks before `week`.
    fn before(&self, week: i64) -> (u64, u64) {
        if self.week < week {
            (
                self.earlier_events + self.week_events,
                self.earlier_windows + self.week_windows,
            )
        } else {
            (self.earlier_events, self.earlier_windows)
        }
    }

    fn encode(&self) -> Vec<u8> {
        format!(
            "{} {} {} {} {}",
            self.week,
            self.earlier_events,
            self.earlier_windows,
            self.week_events,
            self.week_windows
        )
        .into_bytes()
    }

    fn decode(value: &[u8]) -> Option<Slot> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.split(' ');
        let mut next = || parts.next()?.parse::<i64>().ok();
        let week = next()?;
        let mut count = || u64::try_from(next()?).ok();
        Some(Slot {
            week,
            earlier_events: count()?,
            earlier_windows: count()?,
            week_events: count()?,
            week_windows: count()?,
        })
    }
}

struct Baseline {
    slot: Slot,
    region: Arc<str>,
    kind: Kind,
}

impl Baseline {
    fn key(&self, hour: u16) -> String {
        format!("{hour}\t{}\t{}", event_type(self.kind), self.region)
    }
}

pub struct VolumeSpike {
    config: VolumeSpikeConfig,
    window_ms: i64,
    windows: Buckets<Volume>,
    /// By hour of the week and region-and-type key.
    baselines: FxHashMap<(u16, u64), Baseline>,
    changed: FxHashSet<(u16, u64)>,
    folded_up_to: Option<EpochMillis>,
    folded_changed: bool,
    regions: Names,
}

fn label_key(region: &str, kind: Kind) -> u64 {
    stable_hash(&[region.as_bytes(), event_type(kind).as_bytes()])
}

impl VolumeSpike {
    pub fn new(config: VolumeSpikeConfig, window_ms: i64) -> VolumeSpike {
        VolumeSpike {
            config,
            window_ms,
            windows: Buckets::new(VOLUME_WINDOWS, window_ms, 3),
            baselines: FxHashMap::default(),
            changed: FxHashSet::default(),
            folded_up_to: None,
            folded_changed: false,
            regions: Names::default(),
        }
    }

    /// Whether `events` in a window are a spike against `(events, windows)` before it.
    fn exceeds(&self, events: u64, (sum, windows): (u64, u64)) -> bool {
        events > self.config.min_events
            && u128::from(events) * u128::from(windows) * 1000
                > u128::from(self.config.factor_milli) * u128::from(sum)
    }
}

impl StatefulRule for VolumeSpike {
    fn tallies(&mut self) -> &mut dyn TallyState {
        &mut self.windows
    }

    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        self.windows.on_start(state)?;
        self.folded_up_to = match state.value(&FOLDED_UP_TO, "")? {
            None => None,
            Some(value) => Some(decode_millis(&value, "volume_spike window")?),
        };
        let mut damaged = None;
        let mut restored = Vec::new();
        state.values(&BASELINE, &mut |key, value| {
            let mut parts = key.splitn(3, '\t');
            let parsed = (|| {
                let hour: u16 = parts.next()?.parse().ok()?;
                let kind = kind_of_event_type(parts.next()?)?;
                let region = parts.next()?.to_string();
                Some((hour, kind, region, Slot::decode(value)?))
            })();
            match parsed {
                Some(baseline) => restored.push(baseline),
                None => {
                    damaged = Some(ReadError(format!(
                        "the stored volume_spike baseline {key:?} = {:?} cannot be read; the store is damaged",
                        String::from_utf8_lossy(value)
                    )))
                }
            }
        })?;
        if let Some(e) = damaged {
            return Err(e);
        }
        for (hour, kind, region, slot) in restored {
            let key = label_key(&region, kind);
            let region = self.regions.intern(&region);
            self.baselines
                .insert((hour, key), Baseline { slot, region, kind });
        }
        // The windows memory held when the last run stopped have not joined
        // their baselines yet: read them back, so they join when they leave.
        if let Some(up_to) = self.windows.stored_up_to() {
            let oldest = up_to - RELOAD_WINDOWS * self.window_ms;
            let mut window = self
                .folded_up_to
                .map_or(oldest, |f| f + self.window_ms)
                .max(oldest);
            while window <= up_to {
                self.windows.load(window, state)?;
                window += self.window_ms;
            }
        }
        Ok(())
    }

    fn observe(
        &mut self,
        placed: &Placed<'_>,
        state: &mut dyn StateReader,
        found: &mut Vec<Finding>,
    ) -> Result<(), ReadError> {
        let r = placed.record;
        let region = r.region.as_deref().unwrap_or(UNKNOWN_REGION);
        let key = label_key(region, r.kind);
        let window = placed.window_start;
        self.windows.saw(r.start_time);
        let entry = self.windows.entry(window, key, state)?;
        // Named once: the label is for the baseline, which needs it once.
        let label = entry
            .total()
            .label
            .is_none()
            .then(|| (self.regions.intern(region), r.kind));
        entry.add(&Volume { events: 1, label });
        let events = entry.total().events;
        let (week, hour) = hour_of_week(window);
        let Some(baseline) = self.baselines.get(&(hour, key)) else {
            return Ok(());
        };
        let before = baseline.slot.before(week);
        if before.1 < self.config.min_history
            || !self.exceeds(events, before)
            || self.exceeds(events - 1, before)
        {
            return Ok(());
        }
        let (sum, windows) = before;
        let kind = event_type(r.kind);
        found.push(Finding {
            rule: "volume_spike",
            severity: self.config.severity,
            msisdn: None,
            identity: Identity::Span {
                start: window,
                of: format!("{region}/{kind}"),
            },
            evidence: format!(
                "{events} {kind} events in {region} in the window from {}; more than {}× its baseline of {}.{} ({windows} earlier windows on {} {:02}:00 UTC) and more than {}",
                format_timestamp(window),
                format_trimmed(i128::from(self.config.factor_milli), 3),
                sum / windows,
                sum * 10 / windows % 10,
                DAYS[usize::from(hour / 24)],
                hour % 24,
                self.config.min_events
            ),
        });
        Ok(())
    }

    /// Windows leaving memory join their baselines.
    fn handle_watermark(&mut self) {
        let VolumeSpike {
            windows,
            baselines,
            changed,
            folded_up_to,
            folded_changed,
            ..
        } = self;
        windows.evict(|start, entries| {
            if folded_up_to.is_some_and(|f| start <= f) {
                return;
            }
            let (week, hour) = hour_of_week(start);
            for (key, entry) in entries {
                let volume = entry.total();
                let Some((region, kind)) = &volume.label else {
                    continue;
                };
                baselines
                    .entry((hour, *key))
                    .or_insert_with(|| Baseline {
                        slot: Slot::default(),
                        region: region.clone(),
                        kind: *kind,
                    })
                    .slot
                    .join(week, volume.events);
                changed.insert((hour, *key));
            }
            *folded_up_to = Some(start);
            *folded_changed = true;
        });
    }

    fn checkpoint(&mut self, state: &mut StateWriter<'_>) {
        self.windows.checkpoint(state);
        let mut changed: Vec<(u16, u64)> = self.changed.drain().collect();
        changed.sort_unstable();
        for at in changed {
            let baseline = &self.baselines[&at];
            state.put(&BASELINE, baseline.key(at.0), baseline.slot.encode());
        }
        if std::mem::take(&mut self.folded_changed) {
            if let Some(folded) = self.folded_up_to {
                state.put(&FOLDED_UP_TO, "", encode_millis(folded));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_of_the_week_start_on_monday() {
        // 2025-11-10 was a Monday.
        let monday = crate::normalize::parse_timestamp("2025-11-10T00:00:00Z").unwrap();
        let (week, hour) = hour_of_week(monday);
        assert_eq!(hour, 0);
        assert_eq!(hour_of_week(monday - 1), (week - 1, 167));
        assert_eq!(hour_of_week(monday + 10 * HOUR_MS).1, 10);
    }

    #[test]
    fn a_slot_keeps_the_current_week_apart() {
        let mut slot = Slot::default();
        slot.join(5, 10);
        slot.join(5, 20);
        assert_eq!(
            slot.before(5),
            (0, 0),
            "the same week is not its own baseline"
        );
        assert_eq!(slot.before(6), (30, 2));
        slot.join(6, 100);
        assert_eq!(slot.before(6), (30, 2));
        assert_eq!(slot.before(7), (130, 3));
        assert_eq!(Slot::decode(&slot.encode()), Some(slot));
    }
}
