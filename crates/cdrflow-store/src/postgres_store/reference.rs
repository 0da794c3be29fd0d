//! PostgreSQL: reference data (subscribers, customers, cells, plans, removals).

use cdrflow_core::reference::{
    ReferenceChange, ReferenceData, ReferenceKind, ReferenceRow, ReferenceRows,
};
use postgres::types::ToSql;

use super::*;
use crate::codecs::reference_rows::{
    self, change_sql, params, puts, select_sql, upsert_from, Param,
};
use crate::LateReferenceChange;
use cdrflow_core::search::{SearchHit, SearchQuery};

impl Reference for PgStore {
    fn put_reference(&mut self, rows: &ReferenceRows) -> Result<()> {
        let client = self.live_client()?;
        let mut tx = client.transaction()?;
        write_changes(&mut tx, &puts(rows))?;
        tx.commit()?;
        // A file is a bulk load: the planner's statistics are brought up to
        // date now, not when autovacuum gets round to it. Searched before
        // that, a table just loaded with a million subscribers was planned
        // as if it held a thousand: a number prefix took 3 s instead of
        // 0.4 ms (bench/search_latency.sh).
        client.batch_execute(&format!("ANALYZE {}, search_documents", rows.kind()))?;
        Ok(())
    }

    fn reference(&mut self) -> Result<ReferenceData> {
        let client = self.live_client()?;
        let mut data = ReferenceData::default();
        for r in client.query(&select_sql(ReferenceKind::Subscribers), &[])? {
            data.put_subscriber(reference_rows::subscriber(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )?);
        }
        for r in client.query(&select_sql(ReferenceKind::Customers), &[])? {
            data.put_customer(reference_rows::customer(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                i64::from(r.get::<_, i32>(4)),
            )?);
        }
        for r in client.query(&select_sql(ReferenceKind::Cells), &[])? {
            data.put_cell(reference_rows::cell(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
            )?);
        }
        for r in client.query(&select_sql(ReferenceKind::Plans), &[])? {
            data.put_plan(reference_rows::plan(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
            ));
        }
        for r in client.query(&select_sql(ReferenceKind::Bundles), &[])? {
            data.put_bundle(reference_rows::bundle(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
            )?);
        }
        for r in client.query(reference_rows::SELECT_REMOVALS, &[])? {
            let kind = reference_rows::removal_kind(r.get(0))?;
            data.remove(kind, r.get(1), r.get(2));
        }
        Ok(data)
    }

    fn search(&mut self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        super::search::query(self.live_client()?, query)
    }

    fn late_changes(&mut self) -> Result<Vec<LateReferenceChange>> {
        let rows = self
            .live_client()?
            .query(reference_rows::SELECT_LATE, &[])?;
        Ok(rows
            .iter()
            .map(|r| LateReferenceChange {
                kind: r.get(0),
                id: r.get(1),
                effective_from: r.get(2),
                records: r.get(3),
                first_event_time: r.get(4),
                first_period: r.get(5),
                last_period: r.get(6),
            })
            .collect())
    }
}

/// Applies reference changes in `tx`, in order. Consecutive puts of one
/// kind go as one statement pair over arrays (`unnest`): a snapshot or a
/// bulk load upstream brings thousands at once, and two statements per row
/// held the change-event consumer to ~1,000 changes/s (bench/cdc_throughput.sh).
pub(super) fn write_changes(tx: &mut Transaction<'_>, changes: &[ReferenceChange]) -> Result<()> {
    let mut rest = changes;
    while let Some(change) = rest.first() {
        let run = put_run(rest);
        if run.len() > 1 {
            write_puts(tx, &run)?;
            rest = &rest[run.len()..];
        } else {
            write_one(tx, change)?;
            rest = &rest[1..];
        }
    }
    list_late(tx, changes)?;
    super::search::write_index(tx, changes)
}

/// Lists the changes that came after rated records they should have
/// affected (the records of this transaction included: they are written
/// first), in one statement per kind of join, and counts them as `changes.late`.
fn list_late(tx: &mut Transaction<'_>, changes: &[ReferenceChange]) -> Result<()> {
    let moves = reference_rows::late_candidates(changes);
    if moves.is_empty() {
        return Ok(());
    }
    let mut late = 0;
    for by in reference_rows::LateBy::ALL {
        let moves: Vec<_> = moves.iter().filter(|m| m.by == by).collect();
        if moves.is_empty() {
            continue;
        }
        let kinds: Vec<&str> = moves.iter().map(|m| m.kind).collect();
        let ids: Vec<&str> = moves.iter().map(|m| &*m.id).collect();
        let keys: Vec<&str> = moves.iter().map(|m| &*m.key).collect();
        let ats: Vec<i64> = moves.iter().map(|m| m.at).collect();
        late += tx.execute(
            &reference_rows::insert_late_sql(
                by,
                "unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS m(kind, id, key, at)",
            ),
            &[&kinds, &ids, &keys, &ats],
        )?;
    }
    if late > 0 {
        tx.execute(
            "INSERT INTO pipeline_counters (name, value) VALUES ('changes.late', $1)
             ON CONFLICT (name) DO UPDATE SET value = pipeline_counters.value + excluded.value",
            &[&(late as i64)],
        )?;
    }
    Ok(())
}

/// The puts that lead `changes`, of one kind and each (id, instant) once:
/// one upsert may not touch a row twice.
fn put_run(changes: &[ReferenceChange]) -> Vec<&ReferenceRow> {
    let Some(ReferenceChange::Put(first)) = changes.first() else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    changes
        .iter()
        .map_while(|change| match change {
            ReferenceChange::Put(row)
                if row.kind() == first.kind() && seen.insert((row.id(), row.effective_from())) =>
            {
                Some(row)
            }
            _ => None,
        })
        .collect()
}

fn write_puts(tx: &mut Transaction<'_>, rows: &[&ReferenceRow]) -> Result<()> {
    let kind = rows[0].kind();
    let values: Vec<Vec<Param>> = rows.iter().map(|row| params(row)).collect();
    let mut arrays: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut inputs = Vec::new();
    for (column, first) in values[0].iter().enumerate() {
        let cast = match first {
            Param::Text(_) => {
                arrays.push(Box::new(
                    values.iter().map(|v| v[column].text()).collect::<Vec<_>>(),
                ));
                "text[]"
            }
            Param::Int(_) => {
                arrays.push(Box::new(
                    values.iter().map(|v| v[column].int()).collect::<Vec<_>>(),
                ));
                "bigint[]"
            }
            Param::Int32(_) => {
                arrays.push(Box::new(
                    values.iter().map(|v| v[column].int32()).collect::<Vec<_>>(),
                ));
                "int[]"
            }
        };
        inputs.push(format!("${}::{cast}", column + 1));
    }
    let refs: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|v| &**v).collect();
    // Columns 0 and 1 are the id and the instant, for every kind.
    tx.execute(
        "DELETE FROM reference_removals r USING unnest($2::text[], $3::bigint[]) AS u(id, at)
         WHERE r.kind = $1 AND r.id = u.id AND r.effective_from = u.at",
        &[&kind.as_str(), refs[0], refs[1]],
    )?;
    tx.execute(
        upsert_from(
            kind,
            &format!("SELECT * FROM unnest({})", inputs.join(", ")),
        )
        .as_str(),
        &refs,
    )?;
    Ok(())
}

fn write_one(tx: &mut Transaction<'_>, change: &ReferenceChange) -> Result<()> {
    for (sql, params) in change_sql(change, |i| format!("${i}")) {
        let values: Vec<Box<dyn ToSql + Sync>> = params.into_iter().map(boxed).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v).collect();
        tx.execute(sql.as_str(), &refs)?;
    }
    Ok(())
}

/// A value to bind, as the driver takes it.
pub(super) fn boxed(param: Param) -> Box<dyn ToSql + Sync> {
    match param {
        Param::Text(t) => Box::new(t),
        Param::Int(i) => Box::new(i),
        Param::Int32(i) => Box::new(i),
    }
}
