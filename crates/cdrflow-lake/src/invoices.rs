//! `invoices/period=YYYY-MM/invoices.parquet`: a period's invoices, one row
//! each (figures as `DECIMAL(38,6)`, the document as text), rewritten by
//! every billing run from the store's state. Invoices are not a stream of
//! checkpoints but a small projection of the store, so the file is written
//! beside its place, synced, and renamed over it: a reader sees the old
//! file or the new one, and a run that changes nothing writes the same bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Decimal128Builder, StringBuilder};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field, Schema};
use cdrflow_core::billing::invoice::Totals;
use cdrflow_core::reference::BillingPeriod;

use crate::Result;

/// One invoice as the lake keeps it.
pub struct InvoiceRow<'a> {
    pub invoice_id: &'a str,
    pub number: Option<&'a str>,
    pub customer_id: &'a str,
    pub status: &'a str,
    pub entity: &'a str,
    pub currency: &'a str,
    pub totals: &'a Totals,
    pub document: &'a str,
}

const TEXT: [&str; 6] = [
    "invoice_id",
    "number",
    "customer_id",
    "status",
    "entity",
    "currency",
];

/// Replaces `period`'s invoice file under `root` with `rows`; returns its path.
pub fn write_invoices(
    root: &Path,
    period: BillingPeriod,
    rows: &[InvoiceRow<'_>],
) -> Result<PathBuf> {
    let folder = root.join("invoices").join(format!("period={period}"));
    fs::create_dir_all(&folder).map_err(crate::files::io_at(&folder))?;
    let path = folder.join("invoices.parquet");

    let mut fields: Vec<Field> = TEXT
        .iter()
        .map(|name| Field::new(*name, DataType::Utf8, *name == "number"))
        .collect();
    fields.extend(
        Totals::NAMES
            .iter()
            .map(|name| Field::new(*name, DataType::Decimal128(38, 6), false)),
    );
    fields.push(Field::new("document", DataType::Utf8, false));
    let schema = Arc::new(Schema::new(fields));

    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, _) in TEXT.iter().enumerate() {
        let mut builder = StringBuilder::new();
        for r in rows {
            let value = [
                Some(r.invoice_id),
                r.number,
                Some(r.customer_id),
                Some(r.status),
                Some(r.entity),
                Some(r.currency),
            ][i];
            builder.append_option(value);
        }
        columns.push(Arc::new(builder.finish()));
    }
    for i in 0..Totals::NAMES.len() {
        let mut builder = Decimal128Builder::with_capacity(rows.len())
            .with_data_type(DataType::Decimal128(38, 6));
        for r in rows {
            builder.append_value(i128::from(r.totals.in_order()[i]));
        }
        columns.push(Arc::new(builder.finish()));
    }
    let mut documents = StringBuilder::new();
    for r in rows {
        documents.append_value(r.document);
    }
    columns.push(Arc::new(documents.finish()));
    crate::files::write_in_place(&path, schema, columns)?;
    Ok(path)
}
