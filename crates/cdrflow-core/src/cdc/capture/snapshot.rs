//! Which streamed transactions the initial snapshot already holds.
//!
//! The capture creates its replication slot first and then reads the
//! tables in one `REPEATABLE READ` transaction. Everything committed after
//! the slot's start is streamed; some of it committed before the snapshot
//! was taken and is in the snapshot too. Sending it again would move a
//! prepaid balance twice (an adjustment row is a delta), so the capture
//! drops every streamed transaction the snapshot could see, by the rule
//! PostgreSQL itself uses: visible when its id is below the snapshot's
//! `xmin`, or below `xmax` and not among the transactions in progress.
//!
//! Only transactions whose commit record lies before `until` — the WAL
//! insert position read just after the snapshot was taken — can be
//! visible; past it the filter answers no at once, so 32-bit transaction
//! ids wrapping years later cannot confuse it.

use super::pgoutput::{Begin, Lsn};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotVisibility {
    xmin: u64,
    xmax: u64,
    /// In progress when the snapshot was taken, sorted.
    in_progress: Vec<u64>,
    until: Lsn,
}

impl SnapshotVisibility {
    /// From `pg_current_snapshot()`'s text (`xmin:xmax:xip,xip,…`) and the
    /// WAL insert position read after it.
    pub fn parse(snapshot: &str, until: Lsn) -> Result<SnapshotVisibility, String> {
        let bad = || format!("`{snapshot}` is not a pg_snapshot (xmin:xmax:xip,…)");
        let mut parts = snapshot.trim().split(':');
        let (Some(xmin), Some(xmax), Some(xip), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let number = |text: &str| text.parse::<u64>().map_err(|_| bad());
        let mut in_progress = xip
            .split(',')
            .filter(|s| !s.is_empty())
            .map(number)
            .collect::<Result<Vec<_>, _>>()?;
        in_progress.sort_unstable();
        Ok(SnapshotVisibility {
            xmin: number(xmin)?,
            xmax: number(xmax)?,
            in_progress,
            until,
        })
    }

    /// The form [`SnapshotVisibility::parse`] reads back.
    pub fn to_text(&self) -> (String, Lsn) {
        let xip: Vec<String> = self.in_progress.iter().map(u64::to_string).collect();
        (
            format!("{}:{}:{}", self.xmin, self.xmax, xip.join(",")),
            self.until,
        )
    }

    /// Whether the snapshot already shows the transaction `begin` opens.
    pub fn holds(&self, begin: &Begin) -> bool {
        if begin.final_lsn >= self.until {
            return false;
        }
        // The full id is the one at or below xmax with these low 32 bits;
        // an id at or past xmax was not committed when the snapshot was taken.
        let behind = (self.xmax as u32).wrapping_sub(begin.xid);
        if behind == 0 || behind > u32::MAX / 2 || u64::from(behind) > self.xmax {
            return false;
        }
        let xid = self.xmax - u64::from(behind);
        xid < self.xmin || self.in_progress.binary_search(&xid).is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(xid: u32, final_lsn: Lsn) -> Begin {
        Begin {
            final_lsn,
            committed_at_micros: 0,
            xid,
        }
    }

    #[test]
    fn postgres_visibility_rule() {
        let snapshot = SnapshotVisibility::parse("100:105:100,103", 1_000).unwrap();
        assert!(
            snapshot.holds(&begin(99, 10)),
            "below xmin: committed before"
        );
        assert!(
            !snapshot.holds(&begin(100, 10)),
            "in progress at the snapshot"
        );
        assert!(snapshot.holds(&begin(101, 10)));
        assert!(!snapshot.holds(&begin(103, 10)));
        assert!(snapshot.holds(&begin(104, 10)));
        assert!(
            !snapshot.holds(&begin(105, 10)),
            "xmax and later: not yet begun"
        );
        assert!(!snapshot.holds(&begin(4_000_000, 10)));
        assert!(
            !snapshot.holds(&begin(101, 1_000)),
            "committed after the snapshot"
        );
    }

    #[test]
    fn ids_across_an_epoch_boundary() {
        // xmax 2^32 + 5 in epoch 1; xid 0xFFFF_FFF0 is epoch 0's, before xmin.
        let xmax = (1u64 << 32) + 5;
        let snapshot = SnapshotVisibility::parse(&format!("{}:{xmax}:", xmax - 3), 1_000).unwrap();
        assert!(snapshot.holds(&begin(0xFFFF_FFF0, 1)));
        assert!(
            snapshot.holds(&begin(3, 1)),
            "2^32 + 3: below xmax, not in progress"
        );
        assert!(!snapshot.holds(&begin(5, 1)));
        assert_eq!(
            SnapshotVisibility::parse(&snapshot.to_text().0, 1_000),
            Ok(snapshot)
        );
    }
}
