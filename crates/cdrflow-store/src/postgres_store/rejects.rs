//! PostgreSQL: Rejected records and their reasons.

use super::*;

impl Rejects for PgStore {
    fn rejects(&mut self, query: &RejectQuery, visit: &mut dyn FnMut(StoredReject)) -> Result<()> {
        let limit = query.limit.map(i64::from);
        for r in self.live_client()?.query(
            "SELECT id, reason, detail, origin, position, payload,
                    to_char(rejected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
             FROM rejected_records WHERE id > $1 AND ($2::text IS NULL OR reason = $2) ORDER BY id LIMIT $3",
            &[&query.after_id, &query.reason, &limit],
        )? {
            visit(StoredReject {
                id: r.get(0),
                reason: r.get(1),
                detail: r.get(2),
                origin: r.get(3),
                position: r.get(4),
                payload: r.get(5),
                rejected_at: r.get(6),
            });
        }
        Ok(())
    }
}
