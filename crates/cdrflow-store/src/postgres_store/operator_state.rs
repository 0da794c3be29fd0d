//! PostgreSQL: operators' state tables, all in `operator_state`.

use super::*;

impl OperatorState for PgStore {
    fn state_value(&mut self, at: StateAt<'_>, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .live_client()?
            .query_opt(
                "SELECT value FROM operator_state
                 WHERE operator = $1 AND scope = $2 AND state_table = $3 AND state_key = $4",
                &[&at.operator, &at.scope, &at.table, &key],
            )?
            .map(|r| r.get(0)))
    }

    /// One query for all keys: the change-event consumer asks for thousands
    /// of fresh ids per batch, and a query each held it to ~2,500 changes/s.
    fn state_values_of(
        &mut self,
        at: StateAt<'_>,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let rows = self.live_client()?.query(
            // A subquery per key, not a join: joined, the planner scanned the
            // scope's whole table for each key (the index's key column became a filter).
            "SELECT (SELECT s.value FROM operator_state s
                     WHERE s.operator = $1 AND s.scope = $2 AND s.state_table = $3
                       AND s.state_key = k.state_key)
             FROM unnest($4::text[]) WITH ORDINALITY AS k(state_key, n)
             ORDER BY k.n",
            &[&at.operator, &at.scope, &at.table, &keys],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn state_spans(
        &mut self,
        at: StateAt<'_>,
        first_minute: i32,
        last_minute: i32,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        // first_minute is NULL for dedup blobs written before v2, which may span days.
        for row in self.live_client()?.query(
            "SELECT value FROM operator_state
             WHERE operator = $1 AND scope = $2 AND state_table = $3 AND state_key IS NULL
               AND last_minute >= $4 AND (first_minute IS NULL OR first_minute <= $5)
             ORDER BY id",
            &[
                &at.operator,
                &at.scope,
                &at.table,
                &first_minute,
                &last_minute,
            ],
        )? {
            visit(row.get(0));
        }
        Ok(())
    }

    fn state_values(&mut self, at: StateAt<'_>, visit: &mut dyn FnMut(&str, &[u8])) -> Result<()> {
        for row in self.live_client()?.query(
            "SELECT state_key, value FROM operator_state
             WHERE operator = $1 AND scope = $2 AND state_table = $3 AND state_key IS NOT NULL
             ORDER BY state_key COLLATE \"C\"",
            &[&at.operator, &at.scope, &at.table],
        )? {
            visit(row.get(0), row.get(1));
        }
        Ok(())
    }
}

/// Writes the state changes of a commit's parts: one statement per kind of
/// change for all parts (appends before expiries, as each part lists them).
pub(super) fn write_state(tx: &mut Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    #[derive(Default)]
    struct Columns<'a> {
        operators: Vec<&'a str>,
        scopes: Vec<&'a str>,
        tables: Vec<&'a str>,
    }
    impl<'a> Columns<'a> {
        fn push(&mut self, operator: &'a str, scope: &'a str, table: &'a str) {
            self.operators.push(operator);
            self.scopes.push(scope);
            self.tables.push(table);
        }
    }
    let (mut put, mut keys, mut put_values) = (Columns::default(), Vec::new(), Vec::new());
    let (mut append, mut firsts, mut lasts, mut append_values) =
        (Columns::default(), Vec::new(), Vec::new(), Vec::new());
    let (mut expire, mut horizons) = (Columns::default(), Vec::new());
    for part in commit.parts {
        for write in &part.checkpoint.state {
            match &write.change {
                StateChange::Put { key, value } => {
                    put.push(write.operator, part.scope, write.table);
                    keys.push(key.as_str());
                    put_values.push(&value[..]);
                }
                StateChange::Append {
                    first_minute,
                    last_minute,
                    value,
                } => {
                    append.push(write.operator, part.scope, write.table);
                    firsts.push(*first_minute);
                    lasts.push(*last_minute);
                    append_values.push(&value[..]);
                }
                StateChange::ExpireBefore { minute } => {
                    expire.push(write.operator, part.scope, write.table);
                    horizons.push(*minute);
                }
            }
        }
    }
    if !append.scopes.is_empty() {
        tx.execute(
            "INSERT INTO operator_state (operator, scope, state_table, first_minute, last_minute, value)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::bytea[])",
            &[&append.operators, &append.scopes, &append.tables, &firsts, &lasts, &append_values],
        )?;
    }
    if !expire.scopes.is_empty() {
        tx.execute(
            "DELETE FROM operator_state s
             USING unnest($1::text[], $2::text[], $3::text[], $4::int[]) AS h(operator, scope, state_table, horizon)
             WHERE s.operator = h.operator AND s.scope = h.scope AND s.state_table = h.state_table
               AND s.state_key IS NULL AND s.last_minute < h.horizon",
            &[&expire.operators, &expire.scopes, &expire.tables, &horizons],
        )?;
    }
    if !put.scopes.is_empty() {
        tx.execute(
            "INSERT INTO operator_state (operator, scope, state_table, state_key, value)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[])
             ON CONFLICT (operator, scope, state_table, state_key) WHERE state_key IS NOT NULL
             DO UPDATE SET value = excluded.value",
            &[&put.operators, &put.scopes, &put.tables, &keys, &put_values],
        )?;
    }
    Ok(())
}
