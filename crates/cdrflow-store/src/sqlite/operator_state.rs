//! SQLite: operators' state tables, all in `operator_state`.

use super::*;

impl OperatorState for SqliteStore {
    fn state_value(&mut self, at: StateAt<'_>, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT value FROM operator_state
                 WHERE operator = ? AND scope = ? AND state_table = ? AND state_key = ?",
            )?
            .query_row(params![at.operator, at.scope, at.table, key], |r| r.get(0))
            .optional()?)
    }

    fn state_spans(
        &mut self,
        at: StateAt<'_>,
        first_minute: i32,
        last_minute: i32,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        // first_minute is NULL for dedup blobs written before v2, which may span days.
        let mut stmt = self.conn.prepare_cached(
            "SELECT value FROM operator_state
             WHERE operator = ? AND scope = ? AND state_table = ? AND state_key IS NULL
               AND last_minute >= ? AND (first_minute IS NULL OR first_minute <= ?)
             ORDER BY id",
        )?;
        let mut rows = stmt.query(params![
            at.operator,
            at.scope,
            at.table,
            first_minute,
            last_minute
        ])?;
        while let Some(row) = rows.next()? {
            let value = row
                .get_ref(0)?
                .as_blob()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            visit(value);
        }
        Ok(())
    }

    fn state_values(&mut self, at: StateAt<'_>, visit: &mut dyn FnMut(&str, &[u8])) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state_key, value FROM operator_state
             WHERE operator = ? AND scope = ? AND state_table = ? AND state_key IS NOT NULL
             ORDER BY state_key",
        )?;
        let mut rows = stmt.query(params![at.operator, at.scope, at.table])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let value = row
                .get_ref(1)?
                .as_blob()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            visit(&key, value);
        }
        Ok(())
    }
}

/// Writes the state changes of a commit's parts, in order.
pub(super) fn write_state(tx: &Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let mut put = tx.prepare_cached(
        "INSERT INTO operator_state (operator, scope, state_table, state_key, value) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (operator, scope, state_table, state_key) WHERE state_key IS NOT NULL
         DO UPDATE SET value = excluded.value",
    )?;
    let mut append = tx.prepare_cached(
        "INSERT INTO operator_state (operator, scope, state_table, first_minute, last_minute, value)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?;
    let mut expire = tx.prepare_cached(
        "DELETE FROM operator_state
         WHERE operator = ? AND scope = ? AND state_table = ? AND state_key IS NULL AND last_minute < ?",
    )?;
    for part in commit.parts {
        for write in &part.checkpoint.state {
            let (operator, scope, table) = (write.operator, part.scope, write.table);
            match &write.change {
                StateChange::Put { key, value } => {
                    put.execute(params![operator, scope, table, key, value])?
                }
                StateChange::Append {
                    first_minute,
                    last_minute,
                    value,
                } => append.execute(params![
                    operator,
                    scope,
                    table,
                    first_minute,
                    last_minute,
                    value
                ])?,
                StateChange::ExpireBefore { minute } => {
                    expire.execute(params![operator, scope, table, minute])?
                }
            };
        }
    }
    Ok(())
}
