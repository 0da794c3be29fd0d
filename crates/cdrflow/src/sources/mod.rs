//! Where records come from. Each source hands the pipeline batches of raw
//! records with their positions, and knows how to resume from a cursor.

pub mod file;
pub mod kafka;
