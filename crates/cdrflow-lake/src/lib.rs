//! cdrflow's Parquet lake: the mediated records (`mediated/kind=…/date=…/`),
//! the rated records (`rated/period=YYYY-MM/`), the invoices
//! (`invoices/period=YYYY-MM/`, see `invoices.rs`) and the spend reports
//! (`rankings/flushed_date=…/`, see `rankings.rs`) as zstd-compressed
//! Parquet with statistics, for DuckDB, Spark or pandas to read beside the
//! store.
//!
//! **Exactly once, with the store.** A checkpoint's rows are written to
//! files under `_staging/` first ([`Lake::stage`]); the store's commit names
//! them in its manifest table in the same transaction as the source
//! positions; only then are they moved to their place ([`Lake::publish`]).
//! A process killed at any moment leaves either staged files the manifest
//! does not name (the commit did not happen: the records will be read
//! again, so [`Lake::recover`] deletes them) or staged files it names (the
//! commit happened: `recover` moves them into place). Each process stages
//! in a folder of its own that it holds locked, so recovery never touches
//! the work of a process still running. Published files are
//! never rewritten, so a reader globbing `mediated/**/*.parquet` sees every
//! committed row once.
//!
//! Its own crate because arrow-rs and Parquet are the heaviest build in the
//! workspace; the core and the stores never wait for it.

mod columns;
mod files;
mod invoices;
mod rankings;

pub use columns::{MEDIATED_COLUMNS, RATED_COLUMNS};
pub use files::{remove_published, Lake, Orphans, RatedParquet, Recovery};
pub use invoices::{write_invoices, InvoiceRow};
pub use rankings::write_spend_report;

use std::path::PathBuf;

/// The two datasets of the lake, each a folder under its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataset {
    Mediated,
    Rated,
}

impl Dataset {
    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Mediated => "mediated",
            Dataset::Rated => "rated",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing Parquet to {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
