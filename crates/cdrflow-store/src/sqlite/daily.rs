//! SQLite: seed 003's `raw_events`, `daily_stats` and `hourly_stats` (and,
//! in the same migration, the alert relay's `alert_cursors`).
//!
//! As for the windows, the tables keep integers (bytes, micro-units,
//! hundredths) and views show seed 003's names with exact decimals.

use cdrflow_core::analytics::daily::{DayCounts, GroupTotals, Stat, StatKey, DAY_MS};
use cdrflow_core::analytics::windows::event_type;
use cdrflow_core::normalize::format_timestamp;

use super::analytics::stored_kind;
use std::fmt::Write;

use super::*;
use crate::{DailyBatch, StatGrain, StoredRawEvent};

/// The decimal text of an integer column of micro-units.
const MICROS: &str = "printf('%s%d.%06d', CASE WHEN {c} < 0 THEN '-' ELSE '' END, abs({c}) / 1000000, abs({c}) % 1000000)";

fn micros(column: &str) -> String {
    MICROS.replace("{c}", column)
}

/// Migration v5.
pub(super) fn v5() -> String {
    let stats = |name: &str, hour: &str, key: &str| {
        format!(
            "CREATE TABLE {name}_totals (
                day_ms INTEGER NOT NULL,
                {hour}
                region TEXT NOT NULL,
                event_type TEXT NOT NULL,
                total_events INTEGER NOT NULL,
                total_calls INTEGER NOT NULL,
                total_sms INTEGER NOT NULL,
                total_data_sessions INTEGER NOT NULL,
                total_call_duration INTEGER NOT NULL,
                avg_call_duration_centis INTEGER,
                max_call_duration INTEGER,
                data_bytes INTEGER NOT NULL,
                revenue_micros INTEGER NOT NULL,
                PRIMARY KEY (day_ms, {key}region, event_type)
            ) WITHOUT ROWID;
            CREATE VIEW {name} AS SELECT
                strftime('%Y-%m-%d', day_ms / 1000, 'unixepoch') AS date, {hour_column}
                region, event_type, total_events, total_calls, total_sms, total_data_sessions,
                total_call_duration,
                CASE WHEN avg_call_duration_centis IS NOT NULL THEN
                    printf('%d.%02d', avg_call_duration_centis / 100, avg_call_duration_centis % 100) END
                    AS avg_call_duration,
                max_call_duration,
                {data} AS total_data_mb,
                {revenue} AS total_revenue
                FROM {name}_totals;",
            hour_column = if hour.is_empty() { "" } else { "hour," },
            data = micros("data_bytes"),
            revenue = micros("revenue_micros"),
        )
    };
    format!(
        "CREATE TABLE raw_event_rows (
            id INTEGER PRIMARY KEY,
            event_time_ms INTEGER NOT NULL,
            event_id TEXT,
            msisdn TEXT NOT NULL,
            event_type TEXT NOT NULL,
            event_subtype TEXT NOT NULL,
            duration_seconds INTEGER NOT NULL,
            data_bytes INTEGER NOT NULL,
            amount_micros INTEGER NOT NULL,
            region TEXT NOT NULL,
            cell_tower_id TEXT
        );
        -- Not a primary key: dedup is per scope (a file run, a Kafka
        -- partition), so one record id can be accepted in two scopes.
        CREATE INDEX raw_event_rows_by_time ON raw_event_rows (event_time_ms);
        CREATE VIEW raw_events AS SELECT
            event_id, msisdn, event_type, event_subtype, duration_seconds,
            {data} AS data_mb, {amount} AS amount, region, cell_tower_id,
            strftime('%Y-%m-%dT%H:%M:%fZ', event_time_ms / 1000.0, 'unixepoch') AS timestamp
            FROM raw_event_rows;
        {daily}
        {hourly}
        CREATE TABLE alert_cursors (
            sink TEXT PRIMARY KEY,
            after_id INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        );",
        data = micros("data_bytes"),
        amount = micros("amount_micros"),
        daily = stats("daily_stats", "", ""),
        hourly = stats("hourly_stats", "hour INTEGER NOT NULL,", "hour, "),
    )
}

/// Keeps a commit's raw events.
pub(super) fn write_raw_events(tx: &Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO raw_event_rows (event_time_ms, event_id, msisdn, event_type,
             event_subtype, duration_seconds, data_bytes, amount_micros, region, cell_tower_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut msisdn = String::new();
    for part in commit.parts {
        for e in &part.checkpoint.raw_events {
            msisdn.clear();
            write!(msisdn, "{}", e.msisdn).expect("writing to a String");
            insert.raw_bind_parameter(1, e.event_time)?;
            insert.raw_bind_parameter(2, e.event_id.as_deref())?;
            insert.raw_bind_parameter(3, msisdn.as_str())?;
            insert.raw_bind_parameter(4, event_type(e.kind))?;
            insert.raw_bind_parameter(5, &*e.subtype)?;
            insert.raw_bind_parameter(6, e.duration_sec as i64)?;
            insert.raw_bind_parameter(7, e.data_bytes as i64)?;
            insert.raw_bind_parameter(8, e.amount_micros)?;
            insert.raw_bind_parameter(9, &*e.region)?;
            insert.raw_bind_parameter(10, e.cell_id.as_deref())?;
            insert.raw_execute()?;
        }
    }
    Ok(())
}

/// A statistics row whose columns 1–7 are region, event type, events,
/// call seconds, longest call, bytes and micro-units.
fn stat_of(r: &rusqlite::Row<'_>, day: EpochMillis, hour: Option<u8>) -> Result<Stat> {
    let kind: String = r.get(2)?;
    Ok(Stat {
        key: StatKey {
            day,
            hour,
            region: r.get(1)?,
            kind: stored_kind(&kind)?,
        },
        totals: GroupTotals {
            events: r.get::<_, i64>(3)? as u64,
            call_duration_sec: r.get::<_, i64>(4)? as u64,
            max_call_duration_sec: r.get::<_, Option<i64>>(5)?.map(|d| d as u64),
            data_bytes: r.get::<_, i64>(6)? as u64,
            amount_micros: r.get(7)?,
        },
    })
}

fn stats_table(grain: StatGrain) -> &'static str {
    match grain {
        StatGrain::Daily => "daily_stats_totals",
        StatGrain::Hourly => "hourly_stats_totals",
    }
}

impl DailyBatch for SqliteStore {
    fn raw_event_hours(&mut self, from: EpochMillis, to: EpochMillis) -> Result<Vec<Stat>> {
        let mut stmt = self.conn.prepare_cached(
            // Floor division, as PostgreSQL's: SQLite's `/` rounds towards zero (times before 1970).
            "SELECT (event_time_ms - ((event_time_ms % 3600000) + 3600000) % 3600000) / 3600000 AS hour_number, region, event_type, count(*),
                 coalesce(sum(duration_seconds) FILTER (WHERE event_type = 'call'), 0),
                 max(duration_seconds) FILTER (WHERE event_type = 'call'),
                 sum(data_bytes), sum(amount_micros)
             FROM raw_event_rows WHERE event_time_ms >= ? AND event_time_ms < ?
             GROUP BY hour_number, region, event_type",
        )?;
        let mut rows = stmt.query(params![from, to])?;
        let mut hours = Vec::new();
        while let Some(r) = rows.next()? {
            let hour_start = r.get::<_, i64>(0)? * 3_600_000;
            let day = hour_start.div_euclid(DAY_MS) * DAY_MS;
            hours.push(stat_of(
                r,
                day,
                Some(((hour_start - day) / 3_600_000) as u8),
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
        let mut stmt = self.conn.prepare_cached(
            "SELECT event_id, msisdn, event_type, event_subtype, duration_seconds, data_bytes,
                 amount_micros, region, cell_tower_id, event_time_ms
             FROM raw_event_rows WHERE event_time_ms >= ? AND event_time_ms < ?",
        )?;
        let mut rows = stmt.query(params![from, to])?;
        while let Some(r) = rows.next()? {
            let kind: String = r.get(2)?;
            visit(StoredRawEvent {
                event_id: r.get(0)?,
                msisdn: r.get(1)?,
                kind: stored_kind(&kind)?,
                subtype: r.get(3)?,
                duration_sec: r.get::<_, i64>(4)? as u64,
                data_bytes: r.get::<_, i64>(5)? as u64,
                amount_micros: r.get(6)?,
                region: r.get(7)?,
                cell_id: r.get(8)?,
                event_time: r.get(9)?,
            });
        }
        Ok(())
    }

    fn late_event_counts(&mut self, from: EpochMillis, to: EpochMillis) -> Result<DayCounts> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT region, event_type, count(*) FROM late_events
             WHERE window_start >= ? AND window_start < ? GROUP BY region, event_type",
        )?;
        // Stored as RFC 3339 text with a fixed width, so text order is time order.
        let mut rows = stmt.query(params![format_timestamp(from), format_timestamp(to)])?;
        let mut counts = DayCounts::new();
        while let Some(r) = rows.next()? {
            let kind: String = r.get(1)?;
            counts.insert((r.get(0)?, stored_kind(&kind)?), r.get::<_, i64>(2)? as u64);
        }
        Ok(counts)
    }

    fn replace_stats(&mut self, day: EpochMillis, hourly: &[Stat], daily: &[Stat]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (grain, rows) in [(StatGrain::Hourly, hourly), (StatGrain::Daily, daily)] {
            let table = stats_table(grain);
            tx.execute(&format!("DELETE FROM {table} WHERE day_ms = ?"), [day])?;
            let hour = if grain == StatGrain::Hourly {
                "hour, "
            } else {
                ""
            };
            let hour_value = if grain == StatGrain::Hourly {
                "?, "
            } else {
                ""
            };
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO {table} (day_ms, {hour}region, event_type, total_events, total_calls,
                     total_sms, total_data_sessions, total_call_duration, avg_call_duration_centis,
                     max_call_duration, data_bytes, revenue_micros)
                 VALUES (?, {hour_value}?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))?;
            for row in rows {
                debug_assert_eq!(row.key.day, day);
                let t = &row.totals;
                let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(day)];
                if let Some(h) = row.key.hour {
                    values.push(Box::new(i64::from(h)));
                }
                values.extend::<[Box<dyn rusqlite::ToSql>; 11]>([
                    Box::new(row.key.region.clone()),
                    Box::new(event_type(row.key.kind)),
                    Box::new(t.events as i64),
                    Box::new(row.total_calls() as i64),
                    Box::new(row.total_sms() as i64),
                    Box::new(row.total_data_sessions() as i64),
                    Box::new(t.call_duration_sec as i64),
                    Box::new(row.avg_call_duration_centis().map(|c| c as i64)),
                    Box::new(t.max_call_duration_sec.map(|d| d as i64)),
                    Box::new(t.data_bytes as i64),
                    Box::new(t.amount_micros),
                ]);
                insert.execute(rusqlite::params_from_iter(values))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn stats(&mut self, grain: StatGrain, day: EpochMillis) -> Result<Vec<Stat>> {
        let hour = if grain == StatGrain::Hourly {
            "hour"
        } else {
            "NULL"
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {hour}, region, event_type, total_events, total_call_duration, max_call_duration,
                 data_bytes, revenue_micros
             FROM {table} WHERE day_ms = ?",
            table = stats_table(grain)
        ))?;
        let mut rows = stmt.query([day])?;
        let mut stats = Vec::new();
        while let Some(r) = rows.next()? {
            let hour = r.get::<_, Option<i64>>(0)?.map(|h| h as u8);
            stats.push(stat_of(r, day, hour)?);
        }
        stats.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(stats)
    }
}
