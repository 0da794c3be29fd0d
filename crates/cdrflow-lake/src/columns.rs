//! The lake's columns: one Arrow schema per dataset and the batches built
//! from the core's rows.
//!
//! Money is `DECIMAL(38, 6)`: exactly the stores' micro-units, and wide
//! enough for any of them (18 digits would not hold every 64-bit total, and
//! a value that does not fit must never stop a commit). Times are UTC timestamps in
//! milliseconds, numbers E.164 with their `+`. The partition columns
//! (`kind`, `date`, `period`) are in the path only, as Hive and Spark lay
//! them out: DuckDB's `read_parquet(…, hive_partitioning = true)` gives them
//! back as columns.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Decimal128Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cdrflow_core::charging::RatedRecord;
use cdrflow_core::mediated::MediatedRecord;
use cdrflow_core::normalize::Msisdn;

/// The mediated records' columns, in file order.
pub const MEDIATED_COLUMNS: [&str; 14] = [
    "record_id",
    "msisdn",
    "direction",
    "service_type",
    "event_time",
    "duration_sec",
    "up_bytes",
    "down_bytes",
    "amount",
    "cost",
    "other_party",
    "region",
    "cell_id",
    "technology",
];

/// The rated records' columns, in file order: the store's `rated_records`
/// but its `billing_period`, which is the partition.
pub const RATED_COLUMNS: [&str; 22] = [
    "record_id",
    "msisdn",
    "event_time",
    "kind",
    "service_type",
    "other_party",
    "customer_id",
    "plan_id",
    "catalogue_version",
    "destination_id",
    "destination_class",
    "band",
    "rate_id",
    "region",
    "cell_id",
    "technology",
    "usage_units",
    "billed_units",
    "allowance_id",
    "allowance_units",
    "cost",
    "currency",
];

fn schema(columns: &[&str], type_of: impl Fn(&str) -> (DataType, bool)) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|name| {
                let (data_type, nullable) = type_of(name);
                Field::new(*name, data_type, nullable)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Micro-units as a decimal with 6 places.
fn money() -> DataType {
    DataType::Decimal128(38, 6)
}

fn money_column(rows: usize) -> Decimal128Builder {
    Decimal128Builder::with_capacity(rows).with_data_type(money())
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

pub(crate) fn mediated_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            schema(&MEDIATED_COLUMNS, |name| match name {
                "event_time" => (timestamp(), false),
                "duration_sec" | "up_bytes" | "down_bytes" => (DataType::Int64, false),
                "amount" | "cost" => (money(), false),
                "other_party" | "region" | "cell_id" | "technology" => (DataType::Utf8, true),
                _ => (DataType::Utf8, false),
            })
        })
        .clone()
}

pub(crate) fn rated_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            schema(&RATED_COLUMNS, |name| match name {
                "event_time" => (timestamp(), false),
                "usage_units" | "billed_units" | "allowance_units" => (DataType::Int64, false),
                "cost" => (money(), false),
                "other_party" | "customer_id" | "destination_id" | "destination_class" | "band"
                | "region" | "cell_id" | "technology" | "allowance_id" => (DataType::Utf8, true),
                _ => (DataType::Utf8, false),
            })
        })
        .clone()
}

// Counts are signed 64-bit, as every engine reads them (Spark has no
// unsigned 64-bit type): the mediator refuses a record whose measures would
// not fit a store's signed total, so `as i64` never wraps.

/// Writes numbers into one reused buffer: a `String` per row would be most
/// of a batch's allocations.
struct Numbers {
    text: String,
}

impl Numbers {
    fn put(&mut self, column: &mut StringBuilder, number: Option<Msisdn>) {
        match number {
            Some(number) => {
                self.text.clear();
                write!(self.text, "{number}").expect("writing to a String");
                column.append_value(&self.text);
            }
            None => column.append_null(),
        }
    }
}

fn strings(rows: usize) -> StringBuilder {
    StringBuilder::with_capacity(rows, rows * 12)
}

pub(crate) fn mediated_batch(rows: &[&MediatedRecord]) -> RecordBatch {
    let n = rows.len();
    let mut numbers = Numbers {
        text: String::new(),
    };
    let (mut record_id, mut msisdn, mut direction, mut service_type) =
        (strings(n), strings(n), strings(n), strings(n));
    let mut event_time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut duration, mut up, mut down) = (
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
    );
    let (mut amount, mut cost) = (money_column(n), money_column(n));
    let (mut other_party, mut region, mut cell_id, mut technology) =
        (strings(n), strings(n), strings(n), strings(n));
    for r in rows {
        record_id.append_value(&r.record_id);
        numbers.put(&mut msisdn, Some(r.msisdn));
        direction.append_value(r.direction.as_str());
        service_type.append_value(&r.service_type);
        event_time.append_value(r.event_time);
        duration.append_value(r.duration_sec as i64);
        up.append_value(r.up_bytes as i64);
        down.append_value(r.down_bytes as i64);
        amount.append_value(i128::from(r.amount_micros));
        cost.append_value(i128::from(r.cost_micros));
        numbers.put(&mut other_party, r.other_party);
        region.append_option(r.region.as_deref());
        cell_id.append_option(r.cell_id.as_deref());
        technology.append_option(r.technology);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(record_id.finish()),
        Arc::new(msisdn.finish()),
        Arc::new(direction.finish()),
        Arc::new(service_type.finish()),
        Arc::new(event_time.finish()),
        Arc::new(duration.finish()),
        Arc::new(up.finish()),
        Arc::new(down.finish()),
        Arc::new(amount.finish()),
        Arc::new(cost.finish()),
        Arc::new(other_party.finish()),
        Arc::new(region.finish()),
        Arc::new(cell_id.finish()),
        Arc::new(technology.finish()),
    ];
    RecordBatch::try_new(mediated_schema(), columns).expect("the columns follow the schema")
}

/// The rated records as `cdrflow export rated --format parquet` writes
/// them: the lake's columns and the billing period, which a single file
/// cannot leave to its path.
pub(crate) fn export_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields: Vec<Field> = rated_schema()
                .fields()
                .iter()
                .map(|f| (**f).clone())
                .collect();
            fields.push(Field::new("billing_period", DataType::Utf8, false));
            Arc::new(Schema::new(fields))
        })
        .clone()
}

pub(crate) fn export_batch(rows: &[&RatedRecord]) -> RecordBatch {
    let mut period = strings(rows.len());
    let mut text = String::new();
    for r in rows {
        text.clear();
        write!(text, "{}", r.billing_period).expect("writing to a String");
        period.append_value(&text);
    }
    let mut columns = rated_batch(rows).columns().to_vec();
    columns.push(Arc::new(period.finish()));
    RecordBatch::try_new(export_schema(), columns).expect("the columns follow the schema")
}

pub(crate) fn rated_batch(rows: &[&RatedRecord]) -> RecordBatch {
    let n = rows.len();
    let mut numbers = Numbers {
        text: String::new(),
    };
    let (mut record_id, mut msisdn) = (strings(n), strings(n));
    let mut event_time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut kind, mut service_type, mut other_party, mut customer_id) =
        (strings(n), strings(n), strings(n), strings(n));
    let (mut plan, mut version, mut destination, mut class, mut band, mut rate) = (
        strings(n),
        strings(n),
        strings(n),
        strings(n),
        strings(n),
        strings(n),
    );
    let (mut region, mut cell_id, mut technology) = (strings(n), strings(n), strings(n));
    let (mut usage_units, mut billed_units) = (
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
    );
    let (mut allowance_id, mut allowance_units) = (strings(n), Int64Builder::with_capacity(n));
    let (mut cost, mut currency) = (money_column(n), strings(n));
    for r in rows {
        record_id.append_value(&r.record_id);
        numbers.put(&mut msisdn, Some(r.msisdn));
        event_time.append_value(r.event_time);
        kind.append_value(r.kind.as_str());
        service_type.append_value(&r.service_type);
        numbers.put(&mut other_party, r.other_party);
        customer_id.append_option(r.customer_id.as_deref());
        plan.append_value(&*r.plan);
        version.append_value(&*r.version);
        destination.append_option(r.destination.as_ref().map(|d| &*d.0));
        class.append_option(r.destination.as_ref().map(|d| d.1));
        band.append_option(r.band.as_deref());
        rate.append_value(&*r.rate);
        region.append_option(r.region.as_deref());
        cell_id.append_option(r.cell_id.as_deref());
        technology.append_option(r.technology);
        usage_units.append_value(r.usage_units as i64);
        billed_units.append_value(r.billed_units as i64);
        allowance_id.append_option(r.allowance.as_ref().map(|a| &*a.0));
        allowance_units.append_value(r.allowance.as_ref().map_or(0, |a| a.1 as i64));
        cost.append_value(i128::from(r.cost_micros));
        currency.append_value(&*r.currency);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(record_id.finish()),
        Arc::new(msisdn.finish()),
        Arc::new(event_time.finish()),
        Arc::new(kind.finish()),
        Arc::new(service_type.finish()),
        Arc::new(other_party.finish()),
        Arc::new(customer_id.finish()),
        Arc::new(plan.finish()),
        Arc::new(version.finish()),
        Arc::new(destination.finish()),
        Arc::new(class.finish()),
        Arc::new(band.finish()),
        Arc::new(rate.finish()),
        Arc::new(region.finish()),
        Arc::new(cell_id.finish()),
        Arc::new(technology.finish()),
        Arc::new(usage_units.finish()),
        Arc::new(billed_units.finish()),
        Arc::new(allowance_id.finish()),
        Arc::new(allowance_units.finish()),
        Arc::new(cost.finish()),
        Arc::new(currency.finish()),
    ];
    RecordBatch::try_new(rated_schema(), columns).expect("the columns follow the schema")
}
