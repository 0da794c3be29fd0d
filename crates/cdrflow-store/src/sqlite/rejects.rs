//! SQLite: Rejected records and their reasons.

use super::*;

impl Rejects for SqliteStore {
    fn rejects(&mut self, query: &RejectQuery, visit: &mut dyn FnMut(StoredReject)) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, reason, detail, origin, position, payload, rejected_at FROM rejected_records
             WHERE id > ?1 AND (?2 IS NULL OR reason = ?2) ORDER BY id LIMIT ?3",
        )?;
        let limit = query.limit.map_or(-1, i64::from);
        let mut rows = stmt.query(params![query.after_id, query.reason, limit])?;
        while let Some(r) = rows.next()? {
            visit(StoredReject {
                id: r.get(0)?,
                reason: r.get(1)?,
                detail: r.get(2)?,
                origin: r.get(3)?,
                position: r.get(4)?,
                payload: r.get(5)?,
                rejected_at: r.get(6)?,
            });
        }
        Ok(())
    }
}
