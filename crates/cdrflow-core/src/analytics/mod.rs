//! Seed 003's real-time analytics, as operators after mediation: windows
//! per region and event type with late events kept (`windows`), then the
//! anomaly and fraud rules (`rules`).

pub mod rules;
pub mod windows;
