//! SQLite: seed 003's windows (`window_totals`, shown as `real_time_metrics`), late events and anomalies.

use cdrflow_core::analytics::rules::Severity;
use cdrflow_core::analytics::windows::{event_type, kind_of_event_type, PARTITIONS, WINDOWS};
use cdrflow_core::normalize::{format_timestamp, format_timestamp_ms, parse_timestamp};

use super::*;
use crate::{AnomalyQuery, StoredAnomaly, StoredLateEvent, WindowQuery, WindowRecord};

/// Migration v4: windows as integers (bytes, micro-units) under a view with
/// seed 003's names and decimals, late events, and anomalies (unique by
/// their idempotency key).
pub(super) const V4: &str = "
    CREATE TABLE window_totals (
        window_start_ms INTEGER NOT NULL,
        window_end_ms INTEGER NOT NULL,
        region TEXT NOT NULL,
        event_type TEXT NOT NULL,
        total_events INTEGER NOT NULL,
        incoming_calls INTEGER NOT NULL,
        outgoing_calls INTEGER NOT NULL,
        sms_count INTEGER NOT NULL,
        data_bytes INTEGER NOT NULL,
        recharge_micros INTEGER NOT NULL,
        PRIMARY KEY (window_start_ms, window_end_ms, region, event_type)
    ) WITHOUT ROWID;
    CREATE VIEW real_time_metrics AS SELECT
        strftime('%Y-%m-%dT%H:%M:%SZ', window_start_ms / 1000, 'unixepoch') AS window_start,
        strftime('%Y-%m-%dT%H:%M:%SZ', window_end_ms / 1000, 'unixepoch') AS window_end,
        region, event_type, total_events, incoming_calls, outgoing_calls, sms_count,
        printf('%d.%06d', data_bytes / 1000000, data_bytes % 1000000) AS total_data_mb,
        printf('%d.%06d', recharge_micros / 1000000, recharge_micros % 1000000) AS total_recharge_amount
        FROM window_totals;
    CREATE TABLE late_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT,
        origin TEXT NOT NULL,
        position TEXT NOT NULL,
        event_time TEXT NOT NULL,
        window_start TEXT NOT NULL,
        window_end TEXT NOT NULL,
        region TEXT NOT NULL,
        event_type TEXT NOT NULL,
        lateness_ms INTEGER NOT NULL,
        recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE anomalies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        idempotency_key TEXT NOT NULL UNIQUE,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL,
        msisdn TEXT NOT NULL,
        event_id TEXT,
        event_time TEXT NOT NULL,
        window_start TEXT,
        evidence TEXT NOT NULL,
        detected_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX anomalies_by_severity ON anomalies (severity, id);";

/// Adds a commit's window deltas to the stored rows and keeps its late events.
pub(super) fn write_windows(tx: &Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let mut add = tx.prepare_cached(
        "INSERT INTO window_totals (window_start_ms, window_end_ms, region, event_type, total_events,
             incoming_calls, outgoing_calls, sms_count, data_bytes, recharge_micros)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (window_start_ms, window_end_ms, region, event_type) DO UPDATE SET
             total_events = total_events + excluded.total_events,
             incoming_calls = incoming_calls + excluded.incoming_calls,
             outgoing_calls = outgoing_calls + excluded.outgoing_calls,
             sms_count = sms_count + excluded.sms_count,
             data_bytes = data_bytes + excluded.data_bytes,
             recharge_micros = recharge_micros + excluded.recharge_micros",
    )?;
    let mut late = tx.prepare_cached(
        "INSERT INTO late_events (event_id, origin, position, event_time, window_start, window_end,
             region, event_type, lateness_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut anomaly = tx.prepare_cached(
        "INSERT INTO anomalies (idempotency_key, rule, severity, msisdn, event_id, event_time, window_start, evidence)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
    )?;
    for part in commit.parts {
        for a in &part.checkpoint.anomalies {
            anomaly.execute(params![
                a.idempotency_key,
                a.rule,
                a.severity.as_str(),
                a.msisdn.to_string(),
                a.event_id,
                format_timestamp_ms(a.event_time),
                a.window_start.map(format_timestamp),
                a.evidence
            ])?;
        }
        for row in part.checkpoint.windows.rows() {
            let m = row.measures;
            add.execute(params![
                row.start,
                row.end,
                row.region,
                event_type(row.kind),
                m.total_events as i64,
                m.incoming_calls as i64,
                m.outgoing_calls as i64,
                m.sms_count as i64,
                m.data_bytes as i64,
                m.recharge_micros
            ])?;
        }
        for e in &part.checkpoint.late_events {
            late.execute(params![
                e.event_id,
                e.origin,
                e.position.to_string(),
                format_timestamp_ms(e.event_time),
                format_timestamp(e.window_start),
                format_timestamp(e.window_end),
                e.region,
                event_type(e.kind),
                e.lateness_ms
            ])?;
        }
    }
    Ok(())
}

pub(super) fn stored_kind(name: &str) -> Result<Kind> {
    kind_of_event_type(name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown event_type `{name}` in a window")))
}

fn stored_severity(text: &str) -> Result<Severity> {
    Severity::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown severity `{text}`")))
}

fn stored_time(text: &str) -> Result<EpochMillis> {
    parse_timestamp(text).map_err(|e| StoreError::Corrupt(format!("time `{text}`: {e:?}")))
}

impl Analytics for SqliteStore {
    fn window_rows(
        &mut self,
        query: &WindowQuery,
        closed_before: EpochMillis,
        visit: &mut dyn FnMut(WindowRecord),
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT window_start_ms, window_end_ms, region, event_type, total_events, incoming_calls,
                 outgoing_calls, sms_count, data_bytes, recharge_micros
             FROM window_totals
             WHERE window_start_ms >= ?1 AND window_start_ms < ?2 AND (?3 IS NULL OR region = ?3)
             ORDER BY window_start_ms, window_end_ms, region, event_type",
        )?;
        let mut rows = stmt.query(params![query.from, query.to, query.region])?;
        while let Some(r) = rows.next()? {
            let end: i64 = r.get(1)?;
            let kind: String = r.get(3)?;
            visit(WindowRecord {
                start: r.get(0)?,
                end,
                region: r.get(2)?,
                kind: stored_kind(&kind)?,
                measures: WindowMeasures {
                    total_events: r.get::<_, i64>(4)? as u64,
                    incoming_calls: r.get::<_, i64>(5)? as u64,
                    outgoing_calls: r.get::<_, i64>(6)? as u64,
                    sms_count: r.get::<_, i64>(7)? as u64,
                    data_bytes: r.get::<_, i64>(8)? as u64,
                    recharge_micros: r.get(9)?,
                },
                is_final: end <= closed_before,
            });
        }
        Ok(())
    }

    fn window_marks(&mut self) -> Result<Vec<PartitionMark>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT value FROM operator_state WHERE operator = ? AND state_table = ? AND state_key IS NOT NULL",
        )?;
        let mut rows = stmt.query(params![WINDOWS, PARTITIONS.name])?;
        let mut marks = Vec::new();
        while let Some(r) = rows.next()? {
            let value: Vec<u8> = r.get(0)?;
            marks.push(PartitionMark::decode(&value).map_err(|e| StoreError::Corrupt(e.0))?);
        }
        Ok(marks)
    }

    fn late_events(
        &mut self,
        after_id: i64,
        limit: Option<u32>,
        visit: &mut dyn FnMut(StoredLateEvent),
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, event_id, origin, position, event_time, window_start, window_end, region,
                 event_type, lateness_ms
             FROM late_events WHERE id > ? ORDER BY id LIMIT ?",
        )?;
        let mut rows = stmt.query(params![after_id, limit.map_or(-1, i64::from)])?;
        while let Some(r) = rows.next()? {
            let (time, start, end, kind): (String, String, String, String) =
                (r.get(4)?, r.get(5)?, r.get(6)?, r.get(8)?);
            visit(StoredLateEvent {
                id: r.get(0)?,
                event_id: r.get(1)?,
                origin: r.get(2)?,
                position: r.get(3)?,
                event_time: stored_time(&time)?,
                window_start: stored_time(&start)?,
                window_end: stored_time(&end)?,
                region: r.get(7)?,
                kind: stored_kind(&kind)?,
                lateness_ms: r.get(9)?,
            });
        }
        Ok(())
    }

    fn anomalies(
        &mut self,
        query: &AnomalyQuery,
        visit: &mut dyn FnMut(StoredAnomaly),
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, rule, severity, msisdn, event_id, event_time, window_start, evidence, idempotency_key
             FROM anomalies WHERE id > ?1 AND (?2 IS NULL OR severity = ?2) ORDER BY id LIMIT ?3",
        )?;
        let severity = query.severity.map(Severity::as_str);
        let limit = query.limit.map_or(-1, i64::from);
        let mut rows = stmt.query(params![query.after_id, severity, limit])?;
        while let Some(r) = rows.next()? {
            let (severity, time, window): (String, String, Option<String>) =
                (r.get(2)?, r.get(5)?, r.get(6)?);
            visit(StoredAnomaly {
                id: r.get(0)?,
                rule: r.get(1)?,
                severity: stored_severity(&severity)?,
                msisdn: r.get(3)?,
                event_id: r.get(4)?,
                event_time: stored_time(&time)?,
                window_start: window.as_deref().map(stored_time).transpose()?,
                evidence: r.get(7)?,
                idempotency_key: r.get(8)?,
            });
        }
        Ok(())
    }

    fn alert_cursor(&mut self, sink: &str) -> Result<i64> {
        Ok(self
            .conn
            .query_row(
                "SELECT after_id FROM alert_cursors WHERE sink = ?",
                [sink],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    fn advance_alert_cursor(&mut self, sink: &str, after_id: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO alert_cursors (sink, after_id, updated_at)
             VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT (sink) DO UPDATE SET after_id = max(after_id, excluded.after_id),
                 updated_at = excluded.updated_at",
            params![sink, after_id],
        )?;
        Ok(())
    }
}
