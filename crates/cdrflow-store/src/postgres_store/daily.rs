//! PostgreSQL: seed 003's `raw_events`, `daily_stats` and `hourly_stats`,
//! with its column names and exact decimals (and, in the same migration,
//! the alert relay's `alert_cursors`).

use cdrflow_core::analytics::daily::{DayCounts, GroupTotals, Stat, StatKey, DAY_MS, HOUR_MS};
use cdrflow_core::analytics::windows::event_type;

use super::analytics::{at, millis, stored_kind, YEAR_1, YEAR_10000};
use super::*;
use crate::{DailyBatch, StatGrain, StoredRawEvent};

/// Migration v5.
pub(super) fn v5() -> String {
    let stats = |name: &str, hour: &str, key: &str| {
        format!(
            "CREATE TABLE {name} (
                date DATE NOT NULL,
                {hour}
                region TEXT NOT NULL,
                event_type TEXT NOT NULL,
                total_events BIGINT NOT NULL,
                total_calls BIGINT NOT NULL,
                total_sms BIGINT NOT NULL,
                total_data_sessions BIGINT NOT NULL,
                total_call_duration BIGINT NOT NULL,
                avg_call_duration NUMERIC(22,2),
                max_call_duration BIGINT,
                total_data_mb NUMERIC(26,6) NOT NULL,
                total_revenue NUMERIC(26,6) NOT NULL,
                PRIMARY KEY (date, {key}region, event_type)
            );"
        )
    };
    format!(
        "CREATE TABLE raw_events (
            id BIGSERIAL PRIMARY KEY,
            event_id TEXT,
            msisdn TEXT NOT NULL,
            event_type TEXT NOT NULL,
            event_subtype TEXT NOT NULL,
            duration_seconds BIGINT NOT NULL,
            data_mb NUMERIC(26,6) NOT NULL,
            amount NUMERIC(26,6) NOT NULL,
            region TEXT NOT NULL,
            cell_tower_id TEXT,
            timestamp TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX idx_raw_events_timestamp ON raw_events (timestamp);
        {daily}
        {hourly}
        CREATE INDEX idx_daily_stats_date ON daily_stats (date);
        CREATE TABLE alert_cursors (
            sink TEXT PRIMARY KEY,
            after_id BIGINT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );",
        daily = stats("daily_stats", "", ""),
        hourly = stats("hourly_stats", "hour SMALLINT NOT NULL,", "hour, "),
    )
}

/// Keeps a commit's raw events (one statement).
pub(super) fn write_raw_events(tx: &mut Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let events: Vec<_> = commit
        .parts
        .iter()
        .flat_map(|p| &p.checkpoint.raw_events)
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Option<&str>> = events.iter().map(|e| e.event_id.as_deref()).collect();
    let msisdns: Vec<String> = events.iter().map(|e| e.msisdn.to_string()).collect();
    let types: Vec<&str> = events.iter().map(|e| event_type(e.kind)).collect();
    let subtypes: Vec<&str> = events.iter().map(|e| &*e.subtype).collect();
    let durations: Vec<i64> = events.iter().map(|e| e.duration_sec as i64).collect();
    let bytes: Vec<i64> = events.iter().map(|e| e.data_bytes as i64).collect();
    let amounts: Vec<i64> = events.iter().map(|e| e.amount_micros).collect();
    let regions: Vec<&str> = events.iter().map(|e| &*e.region).collect();
    let cells: Vec<Option<&str>> = events.iter().map(|e| e.cell_id.as_deref()).collect();
    let times: Vec<i64> = events.iter().map(|e| e.event_time).collect();
    tx.execute(
        &format!(
            "INSERT INTO raw_events (event_id, msisdn, event_type, event_subtype, duration_seconds,
                 data_mb, amount, region, cell_tower_id, timestamp)
             SELECT i, m, t, s, d, b::numeric * 0.000001, a::numeric * 0.000001, r, c, {time}
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                         $7::bigint[], $8::text[], $9::text[], $10::bigint[])
                  WITH ORDINALITY AS u(i, m, t, s, d, b, a, r, c, w, n)
             ORDER BY n",
            time = at("w"),
        ),
        &[
            &ids, &msisdns, &types, &subtypes, &durations, &bytes, &amounts, &regions, &cells,
            &times,
        ],
    )?;
    Ok(())
}

/// A statistics row whose columns 1–7 are region, event type, events,
/// call seconds, longest call, bytes and micro-units.
fn stat_of(r: &postgres::Row, day: EpochMillis, hour: Option<u8>) -> Result<Stat> {
    let kind: String = r.get(2);
    Ok(Stat {
        key: StatKey {
            day,
            hour,
            region: r.get(1),
            kind: stored_kind(&kind)?,
        },
        totals: GroupTotals {
            events: r.get::<_, i64>(3) as u64,
            call_duration_sec: r.get::<_, i64>(4) as u64,
            max_call_duration_sec: r.get::<_, Option<i64>>(5).map(|d| d as u64),
            data_bytes: r.get::<_, i64>(6) as u64,
            amount_micros: r.get(7),
        },
    })
}

fn table(grain: StatGrain) -> &'static str {
    match grain {
        StatGrain::Daily => "daily_stats",
        StatGrain::Hourly => "hourly_stats",
    }
}

/// The day's start in milliseconds as a `DATE` (days since the epoch).
fn date(column: &str) -> String {
    format!("(DATE '1970-01-01' + ({column} / {DAY_MS})::int)")
}

fn range(from: EpochMillis, to: EpochMillis) -> (EpochMillis, EpochMillis) {
    (from.max(YEAR_1), to.min(YEAR_10000))
}

impl DailyBatch for PgStore {
    fn raw_event_hours(&mut self, from: EpochMillis, to: EpochMillis) -> Result<Vec<Stat>> {
        let sql = format!(
            "SELECT floor(extract(epoch FROM timestamp) / 3600)::bigint AS hour_number, region, event_type,
                 count(*), coalesce(sum(duration_seconds) FILTER (WHERE event_type = 'call'), 0)::bigint,
                 max(duration_seconds) FILTER (WHERE event_type = 'call'),
                 (sum(data_mb) * 1000000)::bigint, (sum(amount) * 1000000)::bigint
             FROM raw_events WHERE timestamp >= {from} AND timestamp < {to}
             GROUP BY hour_number, region, event_type",
            from = at("$1::bigint"),
            to = at("$2::bigint"),
        );
        let (from, to) = range(from, to);
        let mut hours = Vec::new();
        for r in self.live_client()?.query(&sql, &[&from, &to])? {
            let hour_start = r.get::<_, i64>(0) * HOUR_MS;
            let day = hour_start.div_euclid(DAY_MS) * DAY_MS;
            hours.push(stat_of(
                &r,
                day,
                Some(((hour_start - day) / HOUR_MS) as u8),
            )?);
        }
        hours.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(hours)
    }

    fn raw_events(
        &mut self,
        from: EpochMillis,
        to: EpochMillis,
        visit: &mut dyn FnMut(StoredRawEvent),
    ) -> Result<()> {
        let sql = format!(
            "SELECT event_id, msisdn, event_type, event_subtype, duration_seconds,
                 (data_mb * 1000000)::bigint, (amount * 1000000)::bigint, region, cell_tower_id, {time}
             FROM raw_events WHERE timestamp >= {from} AND timestamp < {to} ORDER BY id",
            time = millis("timestamp"),
            from = at("$1::bigint"),
            to = at("$2::bigint"),
        );
        let (from, to) = range(from, to);
        for r in self.live_client()?.query(&sql, &[&from, &to])? {
            let kind: String = r.get(2);
            visit(StoredRawEvent {
                event_id: r.get(0),
                msisdn: r.get(1),
                kind: stored_kind(&kind)?,
                subtype: r.get(3),
                duration_sec: r.get::<_, i64>(4) as u64,
                data_bytes: r.get::<_, i64>(5) as u64,
                amount_micros: r.get(6),
                region: r.get(7),
                cell_id: r.get(8),
                event_time: r.get(9),
            });
        }
        Ok(())
    }

    fn late_event_counts(&mut self, from: EpochMillis, to: EpochMillis) -> Result<DayCounts> {
        let sql = format!(
            "SELECT region, event_type, count(*) FROM late_events
             WHERE window_start >= {from} AND window_start < {to} GROUP BY region, event_type",
            from = at("$1::bigint"),
            to = at("$2::bigint"),
        );
        let (from, to) = range(from, to);
        let mut counts = DayCounts::new();
        for r in self.live_client()?.query(&sql, &[&from, &to])? {
            let kind: String = r.get(1);
            counts.insert((r.get(0), stored_kind(&kind)?), r.get::<_, i64>(2) as u64);
        }
        Ok(counts)
    }

    fn replace_stats(&mut self, day: EpochMillis, hourly: &[Stat], daily: &[Stat]) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
        for (grain, rows) in [(StatGrain::Hourly, hourly), (StatGrain::Daily, daily)] {
            let table = table(grain);
            tx.execute(
                &format!("DELETE FROM {table} WHERE date = {}", date("$1::bigint")),
                &[&day],
            )?;
            let hours: Vec<i16> = rows
                .iter()
                .map(|r| r.key.hour.map_or(0, i16::from))
                .collect();
            let regions: Vec<&str> = rows.iter().map(|r| r.key.region.as_str()).collect();
            let types: Vec<&str> = rows.iter().map(|r| event_type(r.key.kind)).collect();
            let column = |f: &dyn Fn(&Stat) -> i64| -> Vec<i64> { rows.iter().map(f).collect() };
            let optional = |f: &dyn Fn(&Stat) -> Option<i64>| -> Vec<Option<i64>> {
                rows.iter().map(f).collect()
            };
            let events = column(&|r| r.totals.events as i64);
            let calls = column(&|r| r.total_calls() as i64);
            let sms = column(&|r| r.total_sms() as i64);
            let sessions = column(&|r| r.total_data_sessions() as i64);
            let duration = column(&|r| r.totals.call_duration_sec as i64);
            let average = optional(&|r| r.avg_call_duration_centis().map(|c| c as i64));
            let longest = optional(&|r| r.totals.max_call_duration_sec.map(|d| d as i64));
            let bytes = column(&|r| r.totals.data_bytes as i64);
            let revenue = column(&|r| r.totals.amount_micros);
            let (hour_column, hour_value) = match grain {
                StatGrain::Hourly => ("hour, ", "h, "),
                StatGrain::Daily => ("", ""),
            };
            tx.execute(
                &format!(
                    "INSERT INTO {table} (date, {hour_column}region, event_type, total_events, total_calls,
                         total_sms, total_data_sessions, total_call_duration, avg_call_duration,
                         max_call_duration, total_data_mb, total_revenue)
                     SELECT {date}, {hour_value}r, t, e, c, s, d, l, a::numeric * 0.01, m,
                         b::numeric * 0.000001, v::numeric * 0.000001
                     FROM unnest($2::smallint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                                 $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
                                 $12::bigint[], $13::bigint[]) AS u(h, r, t, e, c, s, d, l, a, m, b, v)",
                    date = date("$1::bigint"),
                ),
                &[
                    &day, &hours, &regions, &types, &events, &calls, &sms, &sessions, &duration,
                    &average, &longest, &bytes, &revenue,
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn stats(&mut self, grain: StatGrain, day: EpochMillis) -> Result<Vec<Stat>> {
        let hour = match grain {
            StatGrain::Hourly => "hour",
            StatGrain::Daily => "NULL::smallint",
        };
        let sql = format!(
            "SELECT {hour}, region, event_type, total_events, total_call_duration, max_call_duration,
                 (total_data_mb * 1000000)::bigint, (total_revenue * 1000000)::bigint
             FROM {table} WHERE date = {date}",
            table = table(grain),
            date = date("$1::bigint"),
        );
        let mut stats = Vec::new();
        for r in self.live_client()?.query(&sql, &[&day])? {
            let hour = r.get::<_, Option<i16>>(0).map(|h| h as u8);
            stats.push(stat_of(&r, day, hour)?);
        }
        stats.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(stats)
    }
}
