//! `rankings/flushed_date=YYYY-MM-DD/<flushed_at>.parquet`: each spend
//! report (seed 004's analytics flush) as a file of its own — a time series
//! of snapshots, one row per ranked subscriber, plan and status. A report
//! is taken from the store's committed state, so it needs no manifest: it
//! is written beside its place and renamed into it, and one lost to a
//! crash is simply the next flush's.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{
    Decimal128Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use cdrflow_core::analytics::rankings::SpendReport;
use cdrflow_core::normalize::Day;

use crate::Result;

/// Writes `report` under `root`; returns the file's path.
pub fn write_spend_report(root: &std::path::Path, report: &SpendReport) -> Result<PathBuf> {
    let day = Day(report.flushed_at.div_euclid(86_400_000) as i32);
    let folder = root.join("rankings").join(format!("flushed_date={day}"));
    std::fs::create_dir_all(&folder).map_err(crate::files::io_at(&folder))?;
    let path = folder.join(format!("{}.parquet", report.flushed_at));
    let utc = Some(Arc::from("UTC"));
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "flushed_at",
            DataType::Timestamp(TimeUnit::Millisecond, utc.clone()),
            false,
        ),
        Field::new("period", DataType::Utf8, true),
        Field::new("ranking", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("spend", DataType::Decimal128(38, 6), false),
        Field::new("records", DataType::Int64, false),
        Field::new("subscribers", DataType::Int64, false),
    ]));
    let (mut flushed_at, mut period, mut ranking, mut rank, mut id) = (
        TimestampMillisecondBuilder::new().with_timezone_opt(utc),
        StringBuilder::new(),
        StringBuilder::new(),
        Int32Builder::new(),
        StringBuilder::new(),
    );
    let mut spend = Decimal128Builder::new().with_data_type(DataType::Decimal128(38, 6));
    let (mut records, mut subscribers) = (Int64Builder::new(), Int64Builder::new());
    let period_text = report.period.map(|p| p.to_string());
    for (list, row) in report.rows() {
        flushed_at.append_value(report.flushed_at);
        period.append_option(period_text.as_deref());
        ranking.append_value(list.as_str());
        rank.append_value(row.rank as i32);
        id.append_value(&row.id);
        spend.append_value(i128::from(row.spend_micros));
        records.append_value(row.records as i64);
        subscribers.append_value(row.subscribers as i64);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(flushed_at.finish()),
        Arc::new(period.finish()),
        Arc::new(ranking.finish()),
        Arc::new(rank.finish()),
        Arc::new(id.finish()),
        Arc::new(spend.finish()),
        Arc::new(records.finish()),
        Arc::new(subscribers.finish()),
    ];
    crate::files::write_in_place(&path, schema, columns)?;
    Ok(path)
}
