//! cdrflow-core: the pure heart of the pipeline.
//!
//! Data flows through these modules in this order, with no I/O anywhere:
//!
//! ```text
//! raw bytes ─ json ─ formats (one per module) ─ normalize ─ mediation ─┬─ dedup
//!                                                                 ├─ rating
//!                                                                 └─ aggregate ─▶ Checkpoint
//! ```
//!
//! A [`mediation::Checkpoint`] is what a store commits atomically with the
//! source positions it came from; that is the whole exactly-once contract.
//!
//! After the pipeline, over what the store kept: [`billing`] turns a
//! customer's rated records and postpaid subscriptions into an invoice.

pub mod aggregate;
pub mod analytics;
pub mod billing;
pub mod cdc;
pub mod charging;
pub mod country;
pub mod dedup;
pub mod formats;
pub mod framing;
pub mod json;
pub mod mediated;
pub mod mediation;
pub mod model;
pub mod money;
pub mod normalize;
pub mod operator;
pub mod rating;
pub mod reference;
pub mod reject;
pub mod retention;
pub mod search;
pub mod stitching;
pub mod synth;
