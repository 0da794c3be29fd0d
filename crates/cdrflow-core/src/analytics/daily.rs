//! Seed 003's daily batch arithmetic: `daily_stats` and `hourly_stats` from
//! `raw_events`, and the checks of its verify step.
//!
//! The store groups the day's raw events by hour, region and event type
//! ([`GroupTotals`]); hourly statistics are those groups, daily ones their
//! sums ([`Stat::daily_of`]). Verify recomputes the same statistics another
//! way — folding the raw rows one by one ([`StatsFold`]) — and compares
//! ([`differences`]); it also reconciles the day's raw events with its
//! windows and late events ([`reconcile`]). Days and hours are UTC, like
//! the windows, so a day's windows hold exactly its events when the window
//! size divides a day.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::Kind;
use crate::money::{div_round_half_away, format_micros};
use crate::normalize::EpochMillis;

use super::windows::event_type;

pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;
/// Seed 003's data-quality threshold: fewer events on a day fail the check.
pub const DEFAULT_MIN_EVENTS: u64 = 100;

/// The sums of one group of raw events (an hour or a day, a region, an event type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupTotals {
    pub events: u64,
    /// Over calls only.
    pub call_duration_sec: u64,
    /// Over calls only; `None` when the group holds no call.
    pub max_call_duration_sec: Option<u64>,
    pub data_bytes: u64,
    /// Seed 003's `amount` (recharges): its `total_revenue`.
    pub amount_micros: i64,
}

impl GroupTotals {
    pub fn add(&mut self, other: &GroupTotals) {
        self.events += other.events;
        self.call_duration_sec += other.call_duration_sec;
        self.max_call_duration_sec = match (self.max_call_duration_sec, other.max_call_duration_sec)
        {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.data_bytes += other.data_bytes;
        self.amount_micros += other.amount_micros;
    }

    /// One raw event's share.
    pub fn of_event(kind: Kind, duration_sec: u64, data_bytes: u64, amount_micros: i64) -> Self {
        let call = kind == Kind::Voice;
        GroupTotals {
            events: 1,
            call_duration_sec: if call { duration_sec } else { 0 },
            max_call_duration_sec: call.then_some(duration_sec),
            data_bytes,
            amount_micros,
        }
    }
}

/// One row of `hourly_stats` (`hour` set) or `daily_stats`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatKey {
    /// The UTC day's start.
    pub day: EpochMillis,
    /// 0–23 for an hourly row.
    pub hour: Option<u8>,
    pub region: String,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub key: StatKey,
    pub totals: GroupTotals,
}

impl Stat {
    /// Seed 003 counts calls, SMS and data sessions in every row; with rows
    /// per event type each is the row's events or zero.
    fn of_kind(&self, kind: Kind) -> u64 {
        if self.key.kind == kind {
            self.totals.events
        } else {
            0
        }
    }

    pub fn total_calls(&self) -> u64 {
        self.of_kind(Kind::Voice)
    }

    pub fn total_sms(&self) -> u64 {
        self.of_kind(Kind::Sms)
    }

    pub fn total_data_sessions(&self) -> u64 {
        self.of_kind(Kind::Data)
    }

    /// The mean call in hundredths of a second, rounded half up (durations are never negative) — this
    /// figure's one rounding point. `None` without calls.
    pub fn avg_call_duration_centis(&self) -> Option<u64> {
        let calls = self.total_calls();
        (calls > 0).then(|| {
            div_round_half_away(
                i128::from(self.totals.call_duration_sec) * 100,
                calls.into(),
            ) as u64
        })
    }

    /// The daily rows: the hourly rows summed over the day's hours.
    pub fn daily_of(hourly: &[Stat]) -> Vec<Stat> {
        let mut days: BTreeMap<StatKey, GroupTotals> = BTreeMap::new();
        for row in hourly {
            let key = StatKey {
                hour: None,
                ..row.key.clone()
            };
            days.entry(key).or_default().add(&row.totals);
        }
        days.into_iter()
            .map(|(key, totals)| Stat { key, totals })
            .collect()
    }
}

/// Hundredths as a decimal with two places.
pub fn format_centis(centis: u64) -> String {
    format!("{}.{:02}", centis / 100, centis % 100)
}

/// Megabytes (10^6 bytes) as an exact decimal.
pub fn format_data_mb(bytes: u64) -> String {
    format_micros(bytes.into())
}

/// Folds raw events, one at a time, into hourly statistics: verify's
/// recomputation, independent of the store's grouping.
#[derive(Debug, Default)]
pub struct StatsFold {
    hours: BTreeMap<StatKey, GroupTotals>,
}

impl StatsFold {
    pub fn add(
        &mut self,
        time: EpochMillis,
        region: &str,
        kind: Kind,
        duration_sec: u64,
        data_bytes: u64,
        amount_micros: i64,
    ) {
        let day = time.div_euclid(DAY_MS) * DAY_MS;
        let key = StatKey {
            day,
            hour: Some(((time - day) / HOUR_MS) as u8),
            region: region.to_string(),
            kind,
        };
        self.hours
            .entry(key)
            .or_default()
            .add(&GroupTotals::of_event(
                kind,
                duration_sec,
                data_bytes,
                amount_micros,
            ));
    }

    pub fn hourly(self) -> Vec<Stat> {
        self.hours
            .into_iter()
            .map(|(key, totals)| Stat { key, totals })
            .collect()
    }
}

/// A row where stored statistics and a recomputation disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatDifference {
    pub key: StatKey,
    pub stored: Option<GroupTotals>,
    pub recomputed: Option<GroupTotals>,
}

impl fmt::Display for StatDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hour = self
            .key
            .hour
            .map(|h| format!(" hour {h:02}"))
            .unwrap_or_default();
        write!(
            f,
            "{}{hour} {}: stored {:?}, recomputed {:?}",
            self.key.region,
            event_type(self.key.kind),
            self.stored,
            self.recomputed
        )
    }
}

/// Every row in which `stored` and `recomputed` differ, in key order.
pub fn differences(stored: &[Stat], recomputed: &[Stat]) -> Vec<StatDifference> {
    let index = |rows: &[Stat]| -> BTreeMap<StatKey, GroupTotals> {
        rows.iter().map(|r| (r.key.clone(), r.totals)).collect()
    };
    let (stored, recomputed) = (index(stored), index(recomputed));
    let mut keys: Vec<&StatKey> = stored.keys().chain(recomputed.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| stored.get(k) != recomputed.get(k))
        .map(|k| StatDifference {
            key: k.clone(),
            stored: stored.get(k).copied(),
            recomputed: recomputed.get(k).copied(),
        })
        .collect()
}

/// Event counts of one day per region and event type, from one source.
pub type DayCounts = BTreeMap<(String, Kind), u64>;

/// Where a day's raw events are not its window totals plus its late events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreconciled {
    pub region: String,
    pub kind: Kind,
    pub raw_events: u64,
    pub window_events: u64,
    pub late_events: u64,
}

impl fmt::Display for Unreconciled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} raw events, but {} in windows + {} late",
            self.region,
            event_type(self.kind),
            self.raw_events,
            self.window_events,
            self.late_events
        )
    }
}

/// Every accepted record is either in its window or late, and is a raw
/// event: per region and type, raw = windows + late.
pub fn reconcile(raw: &DayCounts, windows: &DayCounts, late: &DayCounts) -> Vec<Unreconciled> {
    let mut keys: Vec<&(String, Kind)> = raw
        .keys()
        .chain(windows.keys())
        .chain(late.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let count = |counts: &DayCounts, key| counts.get(key).copied().unwrap_or(0);
    keys.into_iter()
        .filter_map(|key| {
            let (raw_events, window_events, late_events) =
                (count(raw, key), count(windows, key), count(late, key));
            (raw_events != window_events + late_events).then(|| Unreconciled {
                region: key.0.clone(),
                kind: key.1,
                raw_events,
                window_events,
                late_events,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(h: u8, region: &str, kind: Kind, totals: GroupTotals) -> Stat {
        Stat {
            key: StatKey {
                day: 0,
                hour: Some(h),
                region: region.into(),
                kind,
            },
            totals,
        }
    }

    #[test]
    fn daily_rows_sum_the_hours_and_keep_the_longest_call() {
        let call = |d| GroupTotals::of_event(Kind::Voice, d, 0, 0);
        let mut two = call(100);
        two.add(&call(7));
        let hourly = [
            hour(3, "Almaty", Kind::Voice, two),
            hour(9, "Almaty", Kind::Voice, call(50)),
            hour(
                9,
                "Astana",
                Kind::Sms,
                GroupTotals::of_event(Kind::Sms, 0, 0, 0),
            ),
        ];
        let daily = Stat::daily_of(&hourly);
        assert_eq!(daily.len(), 2);
        let almaty = &daily[0];
        assert_eq!(almaty.key.hour, None);
        assert_eq!(almaty.totals.events, 3);
        assert_eq!(almaty.totals.call_duration_sec, 157);
        assert_eq!(almaty.totals.max_call_duration_sec, Some(100));
        assert_eq!(almaty.total_calls(), 3);
        assert_eq!(almaty.total_sms(), 0);
        // 157 / 3 = 52.333… → 52.33
        assert_eq!(almaty.avg_call_duration_centis(), Some(5233));
        let astana = &daily[1];
        assert_eq!((astana.total_sms(), astana.total_calls()), (1, 0));
        assert_eq!(astana.avg_call_duration_centis(), None);
        assert_eq!(astana.totals.max_call_duration_sec, None);
    }

    #[test]
    fn the_average_rounds_half_up_at_the_hundredth() {
        let mut totals = GroupTotals::of_event(Kind::Voice, 1, 0, 0);
        for d in [0, 0, 0, 0, 0, 0, 0] {
            totals.add(&GroupTotals::of_event(Kind::Voice, d, 0, 0));
        }
        // 1 / 8 = 0.125 → 0.13
        let row = hour(0, "x", Kind::Voice, totals);
        assert_eq!(
            format_centis(row.avg_call_duration_centis().unwrap()),
            "0.13"
        );
    }

    #[test]
    fn the_fold_agrees_with_grouped_rows_and_differences_name_the_row() {
        let mut fold = StatsFold::default();
        // 2025-11-09T10:30:00Z and T10:59:59Z: one hour; T11:00:00Z the next.
        fold.add(1_762_684_200_000, "Almaty", Kind::Data, 0, 1_500_000, 0);
        fold.add(1_762_685_999_000, "Almaty", Kind::Data, 0, 2_000_000, 0);
        fold.add(1_762_686_000_000, "Almaty", Kind::Data, 0, 1, 0);
        let hourly = fold.hourly();
        assert_eq!(hourly.len(), 2);
        assert_eq!(hourly[0].key.hour, Some(10));
        assert_eq!(hourly[0].key.day, 1_762_646_400_000);
        assert_eq!(format_data_mb(hourly[0].totals.data_bytes), "3.500000");
        assert!(differences(&hourly, &hourly).is_empty());
        let mut changed = hourly.clone();
        changed[1].totals.events += 1;
        let found = differences(&hourly, &changed);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key.hour, Some(11));
        assert!(
            differences(&hourly, &hourly[..1]).len() == 1,
            "a missing row is a difference"
        );
    }

    #[test]
    fn reconciling_finds_events_neither_in_a_window_nor_late() {
        let counts = |rows: &[(&str, Kind, u64)]| -> DayCounts {
            rows.iter()
                .map(|&(r, k, n)| ((r.to_string(), k), n))
                .collect()
        };
        let raw = counts(&[("Almaty", Kind::Sms, 10), ("Astana", Kind::Voice, 4)]);
        let windows = counts(&[("Almaty", Kind::Sms, 8), ("Astana", Kind::Voice, 4)]);
        let late = counts(&[("Almaty", Kind::Sms, 2)]);
        assert!(reconcile(&raw, &windows, &late).is_empty());
        let late = counts(&[("Almaty", Kind::Sms, 1), ("Aktobe", Kind::Data, 1)]);
        let found = reconcile(&raw, &windows, &late);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].region, "Aktobe");
        assert_eq!(
            found[1].to_string(),
            "Almaty sms: 10 raw events, but 8 in windows + 1 late"
        );
    }
}
