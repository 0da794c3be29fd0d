//! The product catalogue (issue 12's first step): what a call, a message
//! or a data session costs under a plan, exactly.
//!
//! A catalogue is a TOML file (`config/catalogue.toml` documents the
//! format) of **versions**, each in force from an instant: destinations by
//! E.164 prefix (longest match) with a class, time bands by weekday and
//! time of day in the version's IANA zone with holidays, and plans whose
//! rates say, per destination (or class) and band, the connect fee, the
//! price per unit, the billing increments (60/60, 30/6, 1/1), a minimum
//! charge, and how the record's cost is rounded — once, at one declared
//! point. A destination no rate covers is `no_rate`, never free.
//!
//! Pure: the zone database is compiled in (`jiff`'s bundled tzdb), so a
//! replay prices as the first run did on any machine.

mod bands;
pub mod cgrates;
mod file;
mod model;
mod prefixes;
mod price;
mod rater;
mod reprice;

pub use file::CatalogueError;
pub use model::{Catalogue, DestinationClass, Rounding, Version, Wholesale};
pub use price::{Priced, PricingError, Usage, ZERO_RATED};
pub use rater::CatalogueRater;
pub use reprice::{reprice, Repriced, Repricing};

/// The example catalogue `config/catalogue.toml`, which documents the format.
pub const EXAMPLE_CATALOGUE_TOML: &str = include_str!("../../../config/catalogue.toml");

#[cfg(test)]
mod tests;
