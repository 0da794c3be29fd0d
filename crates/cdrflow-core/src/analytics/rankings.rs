//! Seed 004's analytics service, for an operator: every few minutes (and
//! once more when the consumer stops) the top subscribers and plans by
//! spend in the latest billing period, and how many subscribers stand in
//! each status.
//!
//! A report is a snapshot of committed state — the rated records and the
//! reference data as the store holds them — not a buffer of its own: a
//! flush lost to a crash is simply taken again, and two flushes of the
//! same committed state say the same thing. Nothing is counted twice
//! because nothing is counted outside the store.

use crate::reference::BillingPeriod;

/// How many of each ranking a report keeps (seed 004: top 100).
pub const DEFAULT_TOP: u32 = 100;

/// One flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendReport {
    /// When it was taken (milliseconds since the epoch).
    pub flushed_at: i64,
    /// The billing period ranked: the latest any rated record is in
    /// (`None`: no rated records yet).
    pub period: Option<BillingPeriod>,
    /// By spend, highest first; ties by id.
    pub subscribers: Vec<Ranked>,
    pub plans: Vec<Ranked>,
    /// Subscribers in force now, by status: `id` the status, `subscribers`
    /// how many (ranked by that count; spend and records 0).
    pub statuses: Vec<Ranked>,
}

/// A subscriber or plan in a ranking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranked {
    /// From 1.
    pub rank: u32,
    /// The number in E.164, or the plan.
    pub id: String,
    /// What its records were charged in the period, in micro-units.
    pub spend_micros: i64,
    pub records: u64,
    /// How many subscribers' records (1 for a subscriber).
    pub subscribers: u64,
}

/// Which list of a report a stored row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ranking {
    Subscribers,
    Plans,
    Statuses,
}

impl Ranking {
    pub const ALL: [Ranking; 3] = [Ranking::Subscribers, Ranking::Plans, Ranking::Statuses];

    pub fn as_str(self) -> &'static str {
        match self {
            Ranking::Subscribers => "subscribers",
            Ranking::Plans => "plans",
            Ranking::Statuses => "statuses",
        }
    }

    pub fn parse(text: &str) -> Option<Ranking> {
        Ranking::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl SpendReport {
    /// Every row of the report, as the store's table and the lake's file
    /// hold them.
    pub fn rows(&self) -> impl Iterator<Item = (Ranking, &Ranked)> {
        fn list(ranking: Ranking, rows: &[Ranked]) -> impl Iterator<Item = (Ranking, &Ranked)> {
            rows.iter().map(move |r| (ranking, r))
        }
        list(Ranking::Subscribers, &self.subscribers)
            .chain(list(Ranking::Plans, &self.plans))
            .chain(list(Ranking::Statuses, &self.statuses))
    }
}
