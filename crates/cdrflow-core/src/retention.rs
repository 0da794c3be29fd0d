//! Data retention per layer (seed 001's table): how long each layer is
//! kept, and from an instant the caller gives (`now`: no clock here),
//! what is past it.
//!
//! | layer | default | what |
//! |---|---|---|
//! | raw | 7 days | `raw_events` rows by event time |
//! | mediated | 90 days | the lake's `mediated/kind=…/date=D/` partitions |
//! | rated | 1 year | `rated_records` by event time (with their invoice-line traces), the lake's `rated/period=P/` |
//! | invoices | 7 years | invoices, their items and notes, the lake's `invoices/period=P/` |
//! | reports | kept | `reports/` is never touched |
//!
//! A period is past a retention only when every record it can hold is:
//! a period runs to at most the 28th of the next month (bill-cycle days
//! 1–28), so period P counts from the first day of P + 2 months.

use crate::normalize::{Day, EpochMillis};
use crate::reference::BillingPeriod;

const DAY_MS: EpochMillis = 86_400_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub raw_days: u32,
    pub mediated_days: u32,
    pub rated_days: u32,
    pub invoice_years: u32,
}

impl Default for RetentionPolicy {
    /// Seed 001's: raw 7 days, mediated 90 days, rated 1 year, invoices 7 years.
    fn default() -> RetentionPolicy {
        RetentionPolicy {
            raw_days: 7,
            mediated_days: 90,
            rated_days: 365,
            invoice_years: 7,
        }
    }
}

/// What is past the retention at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cuts {
    /// Raw events before this are removed.
    pub raw_before: EpochMillis,
    /// Mediated partitions of days before this are removed.
    pub mediated_before: Day,
    /// Rated records before this are removed.
    pub rated_before: EpochMillis,
    /// Rated partitions of periods before this are removed.
    pub rated_periods_before: BillingPeriod,
    /// Invoices of periods before this are removed.
    pub invoice_periods_before: BillingPeriod,
}

/// The period before the one holding `day` (a period P is wholly before a
/// day once P + 2 months has begun by it).
fn periods_ending_by(day: Day) -> BillingPeriod {
    let (year, month, _) = day.ymd();
    let months = year * 12 + month as i32 - 1 - 1;
    BillingPeriod {
        year: months.div_euclid(12),
        month: months.rem_euclid(12) as u32 + 1,
    }
}

impl RetentionPolicy {
    pub fn cuts(&self, now: EpochMillis) -> Cuts {
        let today = Day(now.div_euclid(DAY_MS) as i32);
        let rated_before = now - i64::from(self.rated_days) * DAY_MS;
        let (year, month, day) = today.ymd();
        let invoice_day = Day::from_ymd(year - self.invoice_years as i32, month, day.min(28))
            .expect("days 1-28 are in every month");
        Cuts {
            raw_before: now - i64::from(self.raw_days) * DAY_MS,
            mediated_before: Day(today.0 - self.mediated_days as i32),
            rated_before,
            rated_periods_before: periods_ending_by(Day(rated_before.div_euclid(DAY_MS) as i32)),
            invoice_periods_before: periods_ending_by(invoice_day),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32) -> EpochMillis {
        i64::from(Day::from_ymd(y, m, d).unwrap().0) * DAY_MS + 12 * 3_600_000
    }

    #[test]
    fn seed_001s_table_from_one_instant() {
        let cuts = RetentionPolicy::default().cuts(at(2031, 5, 15));
        assert_eq!(cuts.raw_before, at(2031, 5, 8));
        assert_eq!(cuts.mediated_before, Day::from_ymd(2031, 2, 14).unwrap());
        assert_eq!(cuts.rated_before, at(2030, 5, 15));
        // A record of 2030-03 may be as late as 2030-04-28: before the cut.
        // 2030-04's may be as late as 2030-05-28: not.
        assert_eq!(
            cuts.rated_periods_before,
            BillingPeriod {
                year: 2030,
                month: 4
            }
        );
        assert_eq!(
            cuts.invoice_periods_before,
            BillingPeriod {
                year: 2024,
                month: 4
            }
        );
    }

    #[test]
    fn january_borrows_from_the_year_before() {
        let cuts = RetentionPolicy::default().cuts(at(2031, 1, 3));
        assert_eq!(
            cuts.invoice_periods_before,
            BillingPeriod {
                year: 2023,
                month: 12
            }
        );
    }
}
