//! PostgreSQL: seed 003's windows (`real_time_metrics`), late events and anomalies.

use cdrflow_core::analytics::rules::Severity;
use cdrflow_core::analytics::windows::{event_type, kind_of_event_type, PARTITIONS, WINDOWS};

use super::*;
use crate::{AnomalyQuery, StoredAnomaly, StoredLateEvent, WindowQuery, WindowRecord};

/// Migration v4: seed 003's `real_time_metrics` with exact decimals, late
/// events, and anomalies (unique by their idempotency key).
pub(super) const V4: &str = "
    CREATE TABLE real_time_metrics (
        window_start TIMESTAMPTZ NOT NULL,
        window_end TIMESTAMPTZ NOT NULL,
        region TEXT NOT NULL,
        event_type TEXT NOT NULL,
        total_events BIGINT NOT NULL,
        incoming_calls BIGINT NOT NULL,
        outgoing_calls BIGINT NOT NULL,
        sms_count BIGINT NOT NULL,
        total_data_mb NUMERIC(26,6) NOT NULL,
        total_recharge_amount NUMERIC(26,6) NOT NULL,
        PRIMARY KEY (window_start, window_end, region, event_type)
    );
    CREATE TABLE late_events (
        id BIGSERIAL PRIMARY KEY,
        event_id TEXT,
        origin TEXT NOT NULL,
        position TEXT NOT NULL,
        event_time TIMESTAMPTZ NOT NULL,
        window_start TIMESTAMPTZ NOT NULL,
        window_end TIMESTAMPTZ NOT NULL,
        region TEXT NOT NULL,
        event_type TEXT NOT NULL,
        lateness_ms BIGINT NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE anomalies (
        id BIGSERIAL PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL,
        msisdn TEXT NOT NULL,
        event_id TEXT,
        event_time TIMESTAMPTZ NOT NULL,
        window_start TIMESTAMPTZ,
        evidence TEXT NOT NULL,
        detected_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX anomalies_by_severity ON anomalies (severity, id);";

/// Serialises the transactions that insert anomalies.
const ANOMALY_IDS_LOCK: i64 = 0x6364_7266_616e_6f6d; // "cdrfanom"

/// Anomaly ids must be given in commit order: the alert relay moves its
/// cursor past the highest id it has read, so an id taken by a transaction
/// that commits later would be skipped. A commit that carries anomalies
/// takes this lock first (before any row lock, so no deadlock) and holds it
/// to its end; commits without anomalies do not wait.
pub(super) fn lock_anomaly_ids(tx: &mut Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    if commit
        .parts
        .iter()
        .any(|p| !p.checkpoint.anomalies.is_empty())
    {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ANOMALY_IDS_LOCK])?;
    }
    Ok(())
}

/// 0001-01-01 and 10000-01-01 in milliseconds since the epoch.
pub(super) const YEAR_1: EpochMillis = -62_135_596_800_000;
pub(super) const YEAR_10000: EpochMillis = 253_402_300_800_000;

/// Milliseconds since the epoch as a timestamp, exactly.
const AT: &str = "TIMESTAMPTZ 'epoch' + {} * INTERVAL '1 millisecond'";

pub(super) fn at(column: &str) -> String {
    AT.replace("{}", column)
}

pub(super) fn millis(column: &str) -> String {
    format!("(extract(epoch FROM {column}) * 1000)::bigint")
}

/// Adds a commit's window deltas to the stored rows (one statement) and
/// keeps its late events (another).
pub(super) fn write_windows(tx: &mut Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let merged = commit.merged_windows();
    if !merged.is_empty() {
        let rows: Vec<_> = merged.rows().collect();
        let starts: Vec<i64> = rows.iter().map(|r| r.start).collect();
        let ends: Vec<i64> = rows.iter().map(|r| r.end).collect();
        let regions: Vec<&str> = rows.iter().map(|r| r.region).collect();
        let types: Vec<&str> = rows.iter().map(|r| event_type(r.kind)).collect();
        let count = |f: fn(&WindowMeasures) -> u64| -> Vec<i64> {
            rows.iter().map(|r| f(r.measures) as i64).collect()
        };
        let events = count(|m| m.total_events);
        let incoming = count(|m| m.incoming_calls);
        let outgoing = count(|m| m.outgoing_calls);
        let sms = count(|m| m.sms_count);
        let bytes = count(|m| m.data_bytes);
        let recharge: Vec<i64> = rows.iter().map(|r| r.measures.recharge_micros).collect();
        let sums = [
            "total_events",
            "incoming_calls",
            "outgoing_calls",
            "sms_count",
            "total_data_mb",
            "total_recharge_amount",
        ]
        .map(|c| format!("{c} = real_time_metrics.{c} + excluded.{c}"))
        .join(", ");
        tx.execute(
            &format!(
                "INSERT INTO real_time_metrics (window_start, window_end, region, event_type, total_events,
                     incoming_calls, outgoing_calls, sms_count, total_data_mb, total_recharge_amount)
                 SELECT {start}, {end}, r, t, n, i, o, m, b::numeric * 0.000001, a::numeric * 0.000001
                 FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                             $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[]) AS u(s, e, r, t, n, i, o, m, b, a)
                 ON CONFLICT (window_start, window_end, region, event_type) DO UPDATE SET {sums}",
                start = at("s"),
                end = at("e"),
            ),
            &[
                &starts, &ends, &regions, &types, &events, &incoming, &outgoing, &sms, &bytes,
                &recharge,
            ],
        )?;
    }
    let late: Vec<_> = commit
        .parts
        .iter()
        .flat_map(|p| &p.checkpoint.late_events)
        .collect();
    if !late.is_empty() {
        let ids: Vec<Option<&str>> = late.iter().map(|e| e.event_id.as_deref()).collect();
        let origins: Vec<&str> = late.iter().map(|e| e.origin.as_str()).collect();
        let positions: Vec<String> = late.iter().map(|e| e.position.to_string()).collect();
        let times: Vec<i64> = late.iter().map(|e| e.event_time).collect();
        let starts: Vec<i64> = late.iter().map(|e| e.window_start).collect();
        let ends: Vec<i64> = late.iter().map(|e| e.window_end).collect();
        let regions: Vec<&str> = late.iter().map(|e| e.region.as_str()).collect();
        let types: Vec<&str> = late.iter().map(|e| event_type(e.kind)).collect();
        let lateness: Vec<i64> = late.iter().map(|e| e.lateness_ms).collect();
        tx.execute(
            &format!(
                "INSERT INTO late_events (event_id, origin, position, event_time, window_start, window_end,
                     region, event_type, lateness_ms)
                 SELECT i, o, p, {time}, {start}, {end}, r, t, l
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                             $7::text[], $8::text[], $9::bigint[]) WITH ORDINALITY AS u(i, o, p, w, s, e, r, t, l, n)
                 ORDER BY n",
                time = at("w"),
                start = at("s"),
                end = at("e"),
            ),
            &[
                &ids, &origins, &positions, &times, &starts, &ends, &regions, &types, &lateness,
            ],
        )?;
    }
    let anomalies: Vec<_> = commit
        .parts
        .iter()
        .flat_map(|p| &p.checkpoint.anomalies)
        .collect();
    if !anomalies.is_empty() {
        let keys: Vec<&str> = anomalies
            .iter()
            .map(|a| a.idempotency_key.as_str())
            .collect();
        let rules: Vec<&str> = anomalies.iter().map(|a| a.rule).collect();
        let severities: Vec<&str> = anomalies.iter().map(|a| a.severity.as_str()).collect();
        let msisdns: Vec<String> = anomalies.iter().map(|a| a.msisdn.to_string()).collect();
        let ids: Vec<Option<&str>> = anomalies.iter().map(|a| a.event_id.as_deref()).collect();
        let times: Vec<i64> = anomalies.iter().map(|a| a.event_time).collect();
        let windows: Vec<Option<i64>> = anomalies.iter().map(|a| a.window_start).collect();
        let evidence: Vec<&str> = anomalies.iter().map(|a| a.evidence.as_str()).collect();
        tx.execute(
            &format!(
                "INSERT INTO anomalies (idempotency_key, rule, severity, msisdn, event_id, event_time, window_start, evidence)
                 SELECT k, r, s, m, i, {time}, {window}, e
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
                             $8::text[]) WITH ORDINALITY AS u(k, r, s, m, i, t, w, e, n)
                 ORDER BY n
                 ON CONFLICT (idempotency_key) DO NOTHING",
                time = at("t"),
                window = at("w"),
            ),
            &[&keys, &rules, &severities, &msisdns, &ids, &times, &windows, &evidence],
        )?;
    }
    Ok(())
}

pub(super) fn stored_kind(name: &str) -> Result<Kind> {
    kind_of_event_type(name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown event_type `{name}` in a window")))
}

impl Analytics for PgStore {
    fn window_rows(
        &mut self,
        query: &WindowQuery,
        closed_before: EpochMillis,
        visit: &mut dyn FnMut(WindowRecord),
    ) -> Result<()> {
        let sql = format!(
            "SELECT {start}, {end}, region, event_type, total_events, incoming_calls, outgoing_calls,
                 sms_count, (total_data_mb * 1000000)::bigint, (total_recharge_amount * 1000000)::bigint
             FROM real_time_metrics
             WHERE window_start >= {from} AND window_start < {to} AND ($3::text IS NULL OR region = $3)
             ORDER BY window_start, window_end, region COLLATE \"C\", event_type COLLATE \"C\"",
            start = millis("window_start"),
            end = millis("window_end"),
            from = at("$1::bigint"),
            to = at("$2::bigint"),
        );
        // Open ends arrive as the extremes of i64, beyond PostgreSQL's timestamps.
        let (from, to) = (query.from.max(YEAR_1), query.to.min(YEAR_10000));
        for r in self
            .live_client()?
            .query(&sql, &[&from, &to, &query.region])?
        {
            let end: i64 = r.get(1);
            let kind: String = r.get(3);
            visit(WindowRecord {
                start: r.get(0),
                end,
                region: r.get(2),
                kind: stored_kind(&kind)?,
                measures: WindowMeasures {
                    total_events: r.get::<_, i64>(4) as u64,
                    incoming_calls: r.get::<_, i64>(5) as u64,
                    outgoing_calls: r.get::<_, i64>(6) as u64,
                    sms_count: r.get::<_, i64>(7) as u64,
                    data_bytes: r.get::<_, i64>(8) as u64,
                    recharge_micros: r.get(9),
                },
                is_final: end <= closed_before,
            });
        }
        Ok(())
    }

    fn window_marks(&mut self) -> Result<Vec<PartitionMark>> {
        self.live_client()?
            .query(
                "SELECT value FROM operator_state WHERE operator = $1 AND state_table = $2 AND state_key IS NOT NULL",
                &[&WINDOWS, &PARTITIONS.name],
            )?
            .iter()
            .map(|r| {
                PartitionMark::decode(r.get::<_, &[u8]>(0)).map_err(|e| StoreError::Corrupt(e.0))
            })
            .collect()
    }

    fn late_events(
        &mut self,
        after_id: i64,
        limit: Option<u32>,
        visit: &mut dyn FnMut(StoredLateEvent),
    ) -> Result<()> {
        let sql = format!(
            "SELECT id, event_id, origin, position, {time}, {start}, {end}, region, event_type, lateness_ms
             FROM late_events WHERE id > $1 ORDER BY id LIMIT $2",
            time = millis("event_time"),
            start = millis("window_start"),
            end = millis("window_end"),
        );
        let limit = limit.map(i64::from);
        for r in self.live_client()?.query(&sql, &[&after_id, &limit])? {
            let kind: String = r.get(8);
            visit(StoredLateEvent {
                id: r.get(0),
                event_id: r.get(1),
                origin: r.get(2),
                position: r.get(3),
                event_time: r.get(4),
                window_start: r.get(5),
                window_end: r.get(6),
                region: r.get(7),
                kind: stored_kind(&kind)?,
                lateness_ms: r.get(9),
            });
        }
        Ok(())
    }

    fn anomalies(
        &mut self,
        query: &AnomalyQuery,
        visit: &mut dyn FnMut(StoredAnomaly),
    ) -> Result<()> {
        let sql = format!(
            "SELECT id, rule, severity, msisdn, event_id, {time}, {window}, evidence, idempotency_key
             FROM anomalies WHERE id > $1 AND ($2::text IS NULL OR severity = $2) ORDER BY id LIMIT $3",
            time = millis("event_time"),
            window = millis("window_start"),
        );
        let severity = query.severity.map(Severity::as_str);
        let limit = query.limit.map(i64::from);
        for r in self
            .live_client()?
            .query(&sql, &[&query.after_id, &severity, &limit])?
        {
            let text: String = r.get(2);
            visit(StoredAnomaly {
                id: r.get(0),
                rule: r.get(1),
                severity: Severity::parse(&text)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown severity `{text}`")))?,
                msisdn: r.get(3),
                event_id: r.get(4),
                event_time: r.get(5),
                window_start: r.get(6),
                evidence: r.get(7),
                idempotency_key: r.get(8),
            });
        }
        Ok(())
    }

    fn alert_cursor(&mut self, sink: &str) -> Result<i64> {
        Ok(self
            .live_client()?
            .query_opt(
                "SELECT after_id FROM alert_cursors WHERE sink = $1",
                &[&sink],
            )?
            .map_or(0, |r| r.get(0)))
    }

    fn advance_alert_cursor(&mut self, sink: &str, after_id: i64) -> Result<()> {
        self.live_client()?.execute(
            "INSERT INTO alert_cursors (sink, after_id, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (sink) DO UPDATE SET
                 after_id = greatest(alert_cursors.after_id, excluded.after_id),
                 updated_at = excluded.updated_at",
            &[&sink, &after_id],
        )?;
        Ok(())
    }
}
