//! Seed 003's real-time analytics, as operators after mediation: windows
//! per region and event type with late events kept (`windows`), then the
//! anomaly and fraud rules (`rules`); every accepted record as a row of
//! `raw_events`, from which the daily batch's statistics come (`daily`).

pub mod daily;
pub mod rankings;
pub mod raw_events;
pub mod rules;
pub mod windows;
