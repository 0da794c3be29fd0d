//! Billing (seed 001's billing layer): a customer's invoice for a billing
//! period from its rated records and its postpaid subscriptions.
//!
//! Pure arithmetic and the invoice document. Which records a run may bill
//! (the ones no live invoice holds), draft → finalised → void, and the
//! gapless numbers are the store's (`cdrflow-store`'s `Billing`) and the
//! `bill` command's: a record is held by at most one live invoice, so it
//! is billed once, and one that comes after its period's invoice was
//! finalised lands on the next as prior-period usage. A re-rating corrects
//! an issued invoice with a credit or debit note (`notes.rs`), never by
//! editing it.

pub mod config;
pub mod document;
pub mod invoice;
pub mod notes;
pub mod reports;

pub use config::BillingConfig;
pub use document::{InvoiceDocument, InvoiceStatus};
pub use invoice::{build_invoice, period_days, recurring_days, Invoice, InvoiceInput, Usage};

#[cfg(test)]
mod tests;
