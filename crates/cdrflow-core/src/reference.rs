//! Reference data: who a number belongs to and what it is on, where a cell
//! is, each with the instant it took effect.
//!
//! Rating joins every record with the subscriber in force at its event
//! time (plan, customer, prepaid or postpaid), the customer (billing
//! country, bill-cycle day) and the cell (region, radio technology). A
//! change is a new row with a later `effective_from`, never an edit of an
//! old one, so a record replayed next year is rated against the plan its
//! subscriber had when it happened. The rows come from CSV files
//! (`cdrflow reference load`) or, later, from Debezium change events; both
//! end in the same [`ReferenceData`].
//!
//! Pure: the CSV text is handed in; the store keeps the rows.

use std::fmt;
use std::sync::Arc;

mod live;
pub use live::{LiveReference, ReferenceView};

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use crate::normalize::{
    format_timestamp_ms, normalize_msisdn, parse_timestamp, CountryCode, Day, EpochMillis, Msisdn,
};

/// `effective_from` of a row that was always in force.
pub const ALWAYS: EpochMillis = EpochMillis::MIN;

/// How a subscriber pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Payment {
    /// Usage is taken from a balance as it happens.
    Prepaid,
    /// Usage is invoiced per billing period.
    Postpaid,
}

impl Payment {
    pub fn as_str(self) -> &'static str {
        match self {
            Payment::Prepaid => "prepaid",
            Payment::Postpaid => "postpaid",
        }
    }

    pub fn parse(text: &str) -> Option<Payment> {
        match text {
            "prepaid" => Some(Payment::Prepaid),
            "postpaid" => Some(Payment::Postpaid),
            _ => None,
        }
    }
}

/// Where a subscription stands. Rating prices every record whatever the
/// status (a suspended line's emergency call is still a record); the
/// status is carried for billing and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Active,
    Suspended,
    Terminated,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Active, Status::Suspended, Status::Terminated];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Terminated => "terminated",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A subscription from `effective_from` until the number's next row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscriber {
    pub msisdn: Msisdn,
    pub effective_from: EpochMillis,
    pub customer_id: Arc<str>,
    pub plan_id: Arc<str>,
    pub region: Option<Arc<str>>,
    pub status: Status,
    pub payment: Payment,
    pub activation_date: Option<Day>,
}

/// Who pays, from `effective_from` until the customer's next row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub customer_id: Arc<str>,
    pub effective_from: EpochMillis,
    pub name: String,
    /// ISO 3166-1 alpha-2.
    pub billing_country: String,
    /// The day of the month a billing period starts (1–28, so every month has it).
    pub bill_cycle_day: u8,
}

/// A radio cell, from `effective_from` until the cell's next row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub cell_id: Arc<str>,
    pub effective_from: EpochMillis,
    pub region: Arc<str>,
    /// Normalised: `2G`, `3G`, `4G`, `5G` (see [`normalize_technology`]).
    pub technology: &'static str,
}

/// A price plan as the operational database describes it (its rates are
/// the catalogue's): what search, rankings and reports show of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub plan_id: Arc<str>,
    pub effective_from: EpochMillis,
    pub name: String,
    pub description: String,
    /// The recurring fee, in micro-units of `currency`.
    pub monthly_fee_micros: Option<i64>,
    pub currency: Option<String>,
}

/// A bundle a subscriber bought: the catalogue's bundle `bundle_id`
/// (what it grants), from `effective_from` — the purchase — until
/// `expires_at`, or the bundle's validity in days when the row gives no
/// expiry. A purchase's use is its own: two purchases of one bundle grant
/// twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundlePurchase {
    pub purchase_id: Arc<str>,
    pub effective_from: EpochMillis,
    pub msisdn: Msisdn,
    pub bundle_id: Arc<str>,
    pub expires_at: Option<EpochMillis>,
}

/// The kinds of reference rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferenceKind {
    Subscribers,
    Customers,
    Cells,
    Plans,
    Bundles,
}

impl ReferenceKind {
    pub const ALL: [ReferenceKind; 5] = [
        ReferenceKind::Subscribers,
        ReferenceKind::Customers,
        ReferenceKind::Cells,
        ReferenceKind::Plans,
        ReferenceKind::Bundles,
    ];

    pub fn parse(text: &str) -> Option<ReferenceKind> {
        ReferenceKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReferenceKind::Subscribers => "subscribers",
            ReferenceKind::Customers => "customers",
            ReferenceKind::Cells => "cells",
            ReferenceKind::Plans => "plans",
            ReferenceKind::Bundles => "bundles",
        }
    }

    /// The CSV columns, required ones first; the rest may be absent.
    pub fn columns(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            ReferenceKind::Subscribers => (
                &["msisdn", "customer_id", "plan_id"],
                &[
                    "region",
                    "status",
                    "payment",
                    "activation_date",
                    "effective_from",
                ],
            ),
            ReferenceKind::Customers => (
                &["customer_id", "name"],
                &["billing_country", "bill_cycle_day", "effective_from"],
            ),
            ReferenceKind::Cells => (&["cell_id", "region", "technology"], &["effective_from"]),
            ReferenceKind::Plans => (
                &["plan_id", "name"],
                &["description", "monthly_fee", "currency", "effective_from"],
            ),
            ReferenceKind::Bundles => (
                &["purchase_id", "msisdn", "bundle_id"],
                &["expires_at", "effective_from"],
            ),
        }
    }
}

impl fmt::Display for ReferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Radio technology codes as the network writes them (seed 001: `LTE`),
/// as generations. `None`: not a code cdrflow knows.
pub fn normalize_technology(raw: &str) -> Option<&'static str> {
    const CODES: [(&str, &[&str]); 4] = [
        ("2G", &["GSM", "GPRS", "EDGE", "2G"]),
        ("3G", &["UMTS", "WCDMA", "HSPA", "HSPA+", "HSDPA", "3G"]),
        ("4G", &["LTE", "LTE-A", "E-UTRAN", "EUTRAN", "4G"]),
        ("5G", &["NR", "5G", "5G NR", "5G-NR"]),
    ];
    let code = raw.trim();
    CODES
        .iter()
        .find(|(_, spellings)| spellings.iter().any(|s| s.eq_ignore_ascii_case(code)))
        .map(|(generation, _)| *generation)
}

/// A CSV file that could not be read, with where and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("the {kind} file has no `{column}` column (it needs {needs}; it may also have {may})")]
    MissingColumn {
        kind: ReferenceKind,
        column: &'static str,
        needs: String,
        may: String,
    },
    #[error("the {kind} file's column `{column}` is not one cdrflow reads (it needs {needs}; it may also have {may})")]
    UnknownColumn {
        kind: ReferenceKind,
        column: String,
        needs: String,
        may: String,
    },
    #[error("line {line}, `{column}`: {why}")]
    Field {
        line: u64,
        column: &'static str,
        why: String,
    },
    #[error("line {line}: {why}")]
    Csv { line: u64, why: String },
}

/// One file's rows, ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceRows {
    Subscribers(Vec<Subscriber>),
    Customers(Vec<Customer>),
    Cells(Vec<Cell>),
    Plans(Vec<Plan>),
    Bundles(Vec<BundlePurchase>),
}

impl ReferenceRows {
    pub fn empty(kind: ReferenceKind) -> ReferenceRows {
        match kind {
            ReferenceKind::Subscribers => ReferenceRows::Subscribers(Vec::new()),
            ReferenceKind::Customers => ReferenceRows::Customers(Vec::new()),
            ReferenceKind::Cells => ReferenceRows::Cells(Vec::new()),
            ReferenceKind::Plans => ReferenceRows::Plans(Vec::new()),
            ReferenceKind::Bundles => ReferenceRows::Bundles(Vec::new()),
        }
    }

    pub fn kind(&self) -> ReferenceKind {
        match self {
            ReferenceRows::Subscribers(_) => ReferenceKind::Subscribers,
            ReferenceRows::Customers(_) => ReferenceKind::Customers,
            ReferenceRows::Cells(_) => ReferenceKind::Cells,
            ReferenceRows::Plans(_) => ReferenceKind::Plans,
            ReferenceRows::Bundles(_) => ReferenceKind::Bundles,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ReferenceRows::Subscribers(rows) => rows.len(),
            ReferenceRows::Customers(rows) => rows.len(),
            ReferenceRows::Cells(rows) => rows.len(),
            ReferenceRows::Plans(rows) => rows.len(),
            ReferenceRows::Bundles(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a reference CSV file (a header line naming the columns, in any
/// order). Numbers are normalised to E.164 with `home` for national ones.
pub fn parse_csv(
    kind: ReferenceKind,
    text: &str,
    home: CountryCode,
) -> Result<ReferenceRows, ReferenceError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| csv_error(&e))?.clone();
    let columns = Columns::new(kind, &header)?;
    let mut rows = ReferenceRows::empty(kind);
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&e))?;
        let line = record.position().map_or(0, |p| p.line());
        let row = Row {
            line,
            record: &record,
            columns: &columns,
        };
        match &mut rows {
            ReferenceRows::Subscribers(out) => out.push(row.subscriber(home)?),
            ReferenceRows::Customers(out) => out.push(row.customer()?),
            ReferenceRows::Cells(out) => out.push(row.cell()?),
            ReferenceRows::Plans(out) => out.push(row.plan()?),
            ReferenceRows::Bundles(out) => out.push(row.bundle(home)?),
        }
    }
    Ok(rows)
}

/// Rows as a CSV file [`parse_csv`] reads back: a header of every column
/// of the kind, then the rows in the order given.
pub fn write_csv(rows: &ReferenceRows) -> String {
    let kind = rows.kind();
    let (required, optional) = kind.columns();
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, record: &[String]| {
        out.write_record(record).expect("writing CSV to memory");
    };
    let header: Vec<String> = required
        .iter()
        .chain(optional)
        .map(|c| c.to_string())
        .collect();
    write(&mut out, &header);
    let from = format_effective_from;
    let or_empty = |s: Option<&str>| s.unwrap_or("").to_string();
    match rows {
        ReferenceRows::Subscribers(rows) => rows.iter().for_each(|r| {
            write(
                &mut out,
                &[
                    r.msisdn.to_string(),
                    r.customer_id.to_string(),
                    r.plan_id.to_string(),
                    or_empty(r.region.as_deref()),
                    r.status.as_str().into(),
                    r.payment.as_str().into(),
                    r.activation_date.map_or(String::new(), |d| d.to_string()),
                    from(r.effective_from),
                ],
            )
        }),
        ReferenceRows::Customers(rows) => rows.iter().for_each(|r| {
            write(
                &mut out,
                &[
                    r.customer_id.to_string(),
                    r.name.clone(),
                    r.billing_country.clone(),
                    r.bill_cycle_day.to_string(),
                    from(r.effective_from),
                ],
            )
        }),
        ReferenceRows::Cells(rows) => rows.iter().for_each(|r| {
            write(
                &mut out,
                &[
                    r.cell_id.to_string(),
                    r.region.to_string(),
                    r.technology.to_string(),
                    from(r.effective_from),
                ],
            )
        }),
        ReferenceRows::Plans(rows) => rows.iter().for_each(|r| {
            write(
                &mut out,
                &[
                    r.plan_id.to_string(),
                    r.name.clone(),
                    r.description.clone(),
                    r.monthly_fee_micros.map_or(String::new(), |m| {
                        crate::money::format_trimmed(i128::from(m), 6)
                    }),
                    or_empty(r.currency.as_deref()),
                    from(r.effective_from),
                ],
            )
        }),
        ReferenceRows::Bundles(rows) => rows.iter().for_each(|r| {
            write(
                &mut out,
                &[
                    r.purchase_id.to_string(),
                    r.msisdn.to_string(),
                    r.bundle_id.to_string(),
                    r.expires_at.map_or(String::new(), format_timestamp_ms),
                    from(r.effective_from),
                ],
            )
        }),
    }
    String::from_utf8(out.into_inner().expect("writing CSV to memory")).expect("CSV of UTF-8 text")
}

/// A row of `kind` from named texts, read and checked as a CSV row is: the
/// change-event mapping hands its columns over this way, so both sources
/// accept and refuse the same values with the same words.
pub fn row_from_texts(
    kind: ReferenceKind,
    texts: &[(&str, String)],
    home: CountryCode,
) -> Result<ReferenceRow, ReferenceError> {
    let header: csv::StringRecord = texts.iter().map(|(name, _)| *name).collect();
    let record: csv::StringRecord = texts.iter().map(|(_, value)| value.as_str()).collect();
    let columns = Columns::new(kind, &header)?;
    let row = Row {
        line: 0,
        record: &record,
        columns: &columns,
    };
    Ok(match kind {
        ReferenceKind::Subscribers => ReferenceRow::Subscriber(row.subscriber(home)?),
        ReferenceKind::Customers => ReferenceRow::Customer(row.customer()?),
        ReferenceKind::Cells => ReferenceRow::Cell(row.cell()?),
        ReferenceKind::Plans => ReferenceRow::Plan(row.plan()?),
        ReferenceKind::Bundles => ReferenceRow::Bundle(row.bundle(home)?),
    })
}

fn csv_error(e: &csv::Error) -> ReferenceError {
    ReferenceError::Csv {
        line: e.position().map_or(0, |p| p.line()),
        why: e.to_string(),
    }
}

/// Where each known column sits in the file.
struct Columns {
    index: Vec<(&'static str, usize)>,
}

impl Columns {
    fn new(kind: ReferenceKind, header: &csv::StringRecord) -> Result<Columns, ReferenceError> {
        let (required, optional) = kind.columns();
        let needs = required.join(", ");
        let may = optional.join(", ");
        let mut index = Vec::new();
        for (i, name) in header.iter().enumerate() {
            let Some(known) = required.iter().chain(optional).find(|c| **c == name) else {
                return Err(ReferenceError::UnknownColumn {
                    kind,
                    column: name.to_string(),
                    needs,
                    may,
                });
            };
            index.push((*known, i));
        }
        if let Some(missing) = required
            .iter()
            .find(|c| !index.iter().any(|(n, _)| n == *c))
        {
            return Err(ReferenceError::MissingColumn {
                kind,
                column: missing,
                needs,
                may,
            });
        }
        Ok(Columns { index })
    }
}

struct Row<'r> {
    line: u64,
    record: &'r csv::StringRecord,
    columns: &'r Columns,
}

impl Row<'_> {
    /// The column's value; `None` when absent or empty.
    fn get(&self, column: &'static str) -> Option<&str> {
        let (_, i) = self.columns.index.iter().find(|(n, _)| *n == column)?;
        self.record.get(*i).filter(|v| !v.is_empty())
    }

    fn error(&self, column: &'static str, why: impl Into<String>) -> ReferenceError {
        ReferenceError::Field {
            line: self.line,
            column,
            why: why.into(),
        }
    }

    fn required(&self, column: &'static str) -> Result<&str, ReferenceError> {
        self.get(column)
            .ok_or_else(|| self.error(column, "is empty"))
    }

    fn effective_from(&self) -> Result<EpochMillis, ReferenceError> {
        self.get("effective_from")
            .map_or(Ok(ALWAYS), parse_effective_from)
            .map_err(|why| self.error("effective_from", why))
    }

    fn subscriber(&self, home: CountryCode) -> Result<Subscriber, ReferenceError> {
        let raw = self.required("msisdn")?;
        let msisdn = normalize_msisdn(raw, home)
            .map_err(|why| self.error("msisdn", format!("`{raw}` {why}")))?;
        let status = match self.get("status") {
            None => Status::Active,
            Some(text) => Status::parse(text).ok_or_else(|| {
                self.error(
                    "status",
                    format!("`{text}` is not active, suspended or terminated"),
                )
            })?,
        };
        let payment = match self.get("payment") {
            None => Payment::Postpaid,
            Some(text) => Payment::parse(text).ok_or_else(|| {
                self.error("payment", format!("`{text}` is not prepaid or postpaid"))
            })?,
        };
        let activation_date = self
            .get("activation_date")
            .map(|text| {
                Day::parse(text).ok_or_else(|| {
                    self.error(
                        "activation_date",
                        format!("`{text}` is not a YYYY-MM-DD date"),
                    )
                })
            })
            .transpose()?;
        Ok(Subscriber {
            msisdn,
            effective_from: self.effective_from()?,
            customer_id: self.required("customer_id")?.into(),
            plan_id: self.required("plan_id")?.into(),
            region: self.get("region").map(Arc::from),
            status,
            payment,
            activation_date,
        })
    }

    fn customer(&self) -> Result<Customer, ReferenceError> {
        let bill_cycle_day = match self.get("bill_cycle_day") {
            None => 1,
            Some(text) => text
                .parse::<u8>()
                .ok()
                .filter(|d| (1..=28).contains(d))
                .ok_or_else(|| {
                    self.error(
                        "bill_cycle_day",
                        format!("`{text}` is not a day from 1 to 28 (every month has it)"),
                    )
                })?,
        };
        let billing_country = self.get("billing_country").unwrap_or("").to_string();
        if !billing_country.is_empty()
            && !(billing_country.len() == 2
                && billing_country.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(self.error(
                "billing_country",
                format!("`{billing_country}` is not an ISO 3166 two-letter code such as MA"),
            ));
        }
        Ok(Customer {
            customer_id: self.required("customer_id")?.into(),
            effective_from: self.effective_from()?,
            name: self.required("name")?.to_string(),
            billing_country,
            bill_cycle_day,
        })
    }

    fn cell(&self) -> Result<Cell, ReferenceError> {
        let raw = self.required("technology")?;
        let technology = normalize_technology(raw).ok_or_else(|| {
            self.error(
                "technology",
                format!("`{raw}` is not a radio technology (GSM, UMTS, LTE, NR or 2G–5G)"),
            )
        })?;
        Ok(Cell {
            cell_id: self.required("cell_id")?.into(),
            effective_from: self.effective_from()?,
            region: self.required("region")?.into(),
            technology,
        })
    }
}

impl Row<'_> {
    fn plan(&self) -> Result<Plan, ReferenceError> {
        let monthly_fee_micros = self
            .get("monthly_fee")
            .map(|text| money_micros(text).map_err(|why| self.error("monthly_fee", why)))
            .transpose()?;
        Ok(Plan {
            plan_id: self.required("plan_id")?.into(),
            effective_from: self.effective_from()?,
            name: self.required("name")?.to_string(),
            description: self.get("description").unwrap_or("").to_string(),
            monthly_fee_micros,
            currency: self.get("currency").map(str::to_string),
        })
    }

    fn bundle(&self, home: CountryCode) -> Result<BundlePurchase, ReferenceError> {
        let raw = self.required("msisdn")?;
        let msisdn = normalize_msisdn(raw, home)
            .map_err(|why| self.error("msisdn", format!("`{raw}` {why}")))?;
        let effective_from = self.effective_from()?;
        let expires_at = self
            .get("expires_at")
            .map(|text| parse_effective_from(text).map_err(|why| self.error("expires_at", why)))
            .transpose()?;
        if expires_at.is_some_and(|end| end <= effective_from) {
            return Err(self.error(
                "expires_at",
                "is not after the purchase (`effective_from`): the bundle would never be usable",
            ));
        }
        Ok(BundlePurchase {
            purchase_id: self.required("purchase_id")?.into(),
            effective_from,
            msisdn,
            bundle_id: self.required("bundle_id")?.into(),
            expires_at,
        })
    }
}

/// A decimal amount as micro-units, refused past 6 decimals rather than cut.
pub fn money_micros(text: &str) -> Result<i64, String> {
    let decimal = crate::money::Decimal::parse(text).map_err(|e| e.to_string())?;
    decimal
        .scaled_to_integer(6)
        .and_then(|m| i64::try_from(m).ok())
        .ok_or_else(|| format!("`{text}` has more than 6 decimals or is too large for an amount"))
}

/// An instant (RFC 3339) or a date (midnight UTC).
fn parse_effective_from(text: &str) -> Result<EpochMillis, String> {
    if let Some(day) = Day::parse(text) {
        return Ok(i64::from(day.0) * 86_400_000);
    }
    parse_timestamp(text).map_err(|_| {
        format!("`{text}` is neither a date (2024-03-01) nor an instant (2024-03-01T00:00:00Z)")
    })
}

/// `effective_from` as text (milliseconds written when there are any):
/// empty for [`ALWAYS`].
pub fn format_effective_from(at: EpochMillis) -> String {
    match at {
        ALWAYS => String::new(),
        at => format_timestamp_ms(at),
    }
}

/// Rows of one id, oldest first: the one in force at an instant is the
/// latest that started at or before it. Most ids never change, so their
/// one row is kept in the map's own slot: looking a subscriber up is one
/// memory access fewer than with the rows on the heap (the rater does it
/// for every record).
///
/// A removal (the row deleted at the source) is an entry too: from then
/// until a later row, the id is unknown.
#[derive(Clone, Debug)]
struct History<T>(SmallVec<[Entry<T>; 1]>);

#[derive(Clone, Debug)]
enum Entry<T> {
    Row(T),
    Removed(EpochMillis),
}

/// A reference row's id and the instant it took effect.
pub trait Effective {
    fn effective_from(&self) -> EpochMillis;
}

macro_rules! effective {
    ($($row:ty),*) => {$(
        impl Effective for $row {
            fn effective_from(&self) -> EpochMillis {
                self.effective_from
            }
        }
    )*};
}
effective!(Subscriber, Customer, Cell, Plan, BundlePurchase);

impl<T: Effective> Entry<T> {
    fn from(&self) -> EpochMillis {
        match self {
            Entry::Row(row) => row.effective_from(),
            Entry::Removed(at) => *at,
        }
    }

    fn row(&self) -> Option<&T> {
        match self {
            Entry::Row(row) => Some(row),
            Entry::Removed(_) => None,
        }
    }
}

impl<T> Default for History<T> {
    fn default() -> Self {
        History(SmallVec::new())
    }
}

impl<T: Effective> History<T> {
    fn at(&self, time: EpochMillis) -> Option<&T> {
        self.entry_at(time).and_then(Entry::row)
    }

    /// The latest entry, row or removal, that took effect by `time`.
    fn entry_at(&self, time: EpochMillis) -> Option<&Entry<T>> {
        let after = self.0.partition_point(|entry| entry.from() <= time);
        after.checked_sub(1).map(|i| &self.0[i])
    }

    /// Adds `entry`, replacing one that took effect at the same instant.
    fn put(&mut self, entry: Entry<T>) {
        let at = entry.from();
        match self.0.binary_search_by_key(&at, Entry::from) {
            Ok(i) => self.0[i] = entry,
            Err(i) => self.0.insert(i, entry),
        }
    }

    fn rows(&self) -> impl Iterator<Item = &T> {
        self.0.iter().filter_map(Entry::row)
    }

    /// The row in force after every change: `None` once removed.
    fn current(&self) -> Option<&T> {
        self.0.last().and_then(Entry::row)
    }
}

/// A change to the reference data, as a change event brings it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceChange {
    /// A row in force from its `effective_from`.
    Put(ReferenceRow),
    /// The id is unknown from `at` (its row was deleted at the source).
    Remove {
        kind: ReferenceKind,
        id: String,
        at: EpochMillis,
    },
    /// Every id of the kind is unknown from `at` (the table was truncated).
    RemoveAll {
        kind: ReferenceKind,
        at: EpochMillis,
    },
}

/// One reference row of any kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceRow {
    Subscriber(Subscriber),
    Customer(Customer),
    Cell(Cell),
    Plan(Plan),
    Bundle(BundlePurchase),
}

impl ReferenceRow {
    pub fn kind(&self) -> ReferenceKind {
        match self {
            ReferenceRow::Subscriber(_) => ReferenceKind::Subscribers,
            ReferenceRow::Customer(_) => ReferenceKind::Customers,
            ReferenceRow::Cell(_) => ReferenceKind::Cells,
            ReferenceRow::Plan(_) => ReferenceKind::Plans,
            ReferenceRow::Bundle(_) => ReferenceKind::Bundles,
        }
    }

    /// The id, as the store keys it (a number in E.164).
    pub fn id(&self) -> String {
        match self {
            ReferenceRow::Subscriber(r) => r.msisdn.to_string(),
            ReferenceRow::Customer(r) => r.customer_id.to_string(),
            ReferenceRow::Cell(r) => r.cell_id.to_string(),
            ReferenceRow::Plan(r) => r.plan_id.to_string(),
            ReferenceRow::Bundle(r) => r.purchase_id.to_string(),
        }
    }

    pub fn effective_from(&self) -> EpochMillis {
        match self {
            ReferenceRow::Subscriber(r) => r.effective_from,
            ReferenceRow::Customer(r) => r.effective_from,
            ReferenceRow::Cell(r) => r.effective_from,
            ReferenceRow::Plan(r) => r.effective_from,
            ReferenceRow::Bundle(r) => r.effective_from,
        }
    }
}

/// Every reference row, indexed for lookups by id and instant.
#[derive(Clone, Debug, Default)]
pub struct ReferenceData {
    subscribers: FxHashMap<Msisdn, History<Subscriber>>,
    customers: FxHashMap<Arc<str>, History<Customer>>,
    cells: FxHashMap<Arc<str>, History<Cell>>,
    plans: FxHashMap<Arc<str>, History<Plan>>,
    bundles: FxHashMap<Arc<str>, History<BundlePurchase>>,
    /// The purchases that ever named each number (a row moved to another
    /// number stays listed under the first: a lookup checks the row).
    bundles_of: FxHashMap<Msisdn, SmallVec<[Arc<str>; 2]>>,
    /// One `Arc` per distinct customer id, plan and region name, shared by
    /// every row naming it: a rated record clones its plan and region, and
    /// a shared count stays in cache where one per subscriber would miss;
    /// a subscriber's customer is found by the very `Arc` that keys it
    /// (equal pointers compare without reading the text again).
    names: FxHashSet<Arc<str>>,
}

impl ReferenceData {
    pub fn is_empty(&self) -> bool {
        ReferenceKind::ALL.into_iter().all(|k| self.len(k) == 0)
    }

    /// How many entries of each kind (every effective time counted, removals too).
    pub fn len(&self, kind: ReferenceKind) -> usize {
        self.effective_times(kind).count()
    }

    fn effective_times(&self, kind: ReferenceKind) -> Box<dyn Iterator<Item = EpochMillis> + '_> {
        fn times<K, T: Effective>(
            map: &FxHashMap<K, History<T>>,
        ) -> Box<dyn Iterator<Item = EpochMillis> + '_> {
            Box::new(map.values().flat_map(|h| h.0.iter().map(Entry::from)))
        }
        match kind {
            ReferenceKind::Subscribers => times(&self.subscribers),
            ReferenceKind::Customers => times(&self.customers),
            ReferenceKind::Cells => times(&self.cells),
            ReferenceKind::Plans => times(&self.plans),
            ReferenceKind::Bundles => times(&self.bundles),
        }
    }

    /// How many ids, of every kind (an id's rows and removals count once).
    fn ids(&self) -> usize {
        self.subscribers.len()
            + self.customers.len()
            + self.cells.len()
            + self.plans.len()
            + self.bundles.len()
    }

    /// Adds every entry of `other`, each replacing one of the same id that
    /// took effect at the same instant.
    fn absorb(&mut self, other: &ReferenceData) {
        fn each<K: Clone + Eq + std::hash::Hash, T: Clone>(
            data: &mut ReferenceData,
            other: &FxHashMap<K, History<T>>,
            map: fn(&mut ReferenceData) -> &mut FxHashMap<K, History<T>>,
            put: fn(&mut ReferenceData, T),
        ) where
            T: Effective,
        {
            for (id, history) in other {
                for entry in &history.0 {
                    match entry {
                        Entry::Row(row) => put(data, row.clone()),
                        Entry::Removed(at) => map(data)
                            .entry(id.clone())
                            .or_default()
                            .put(Entry::Removed(*at)),
                    }
                }
            }
        }
        each(
            self,
            &other.subscribers,
            |d| &mut d.subscribers,
            ReferenceData::put_subscriber,
        );
        each(
            self,
            &other.customers,
            |d| &mut d.customers,
            ReferenceData::put_customer,
        );
        each(
            self,
            &other.cells,
            |d| &mut d.cells,
            ReferenceData::put_cell,
        );
        each(
            self,
            &other.plans,
            |d| &mut d.plans,
            ReferenceData::put_plan,
        );
        each(
            self,
            &other.bundles,
            |d| &mut d.bundles,
            ReferenceData::put_bundle,
        );
    }

    /// The latest `effective_from` of any row, if any is not [`ALWAYS`].
    pub fn latest_change(&self) -> Option<EpochMillis> {
        ReferenceKind::ALL
            .into_iter()
            .flat_map(|k| self.effective_times(k))
            .filter(|t| *t != ALWAYS)
            .max()
    }

    pub fn put(&mut self, rows: ReferenceRows) {
        match rows {
            ReferenceRows::Subscribers(rows) => {
                rows.into_iter().for_each(|r| self.put_subscriber(r))
            }
            ReferenceRows::Customers(rows) => rows.into_iter().for_each(|r| self.put_customer(r)),
            ReferenceRows::Cells(rows) => rows.into_iter().for_each(|r| self.put_cell(r)),
            ReferenceRows::Plans(rows) => rows.into_iter().for_each(|r| self.put_plan(r)),
            ReferenceRows::Bundles(rows) => rows.into_iter().for_each(|r| self.put_bundle(r)),
        }
    }

    pub fn put_row(&mut self, row: ReferenceRow) {
        match row {
            ReferenceRow::Subscriber(r) => self.put_subscriber(r),
            ReferenceRow::Customer(r) => self.put_customer(r),
            ReferenceRow::Cell(r) => self.put_cell(r),
            ReferenceRow::Plan(r) => self.put_plan(r),
            ReferenceRow::Bundle(r) => self.put_bundle(r),
        }
    }

    /// Applies a change as the store does.
    pub fn apply(&mut self, change: ReferenceChange) {
        match change {
            ReferenceChange::Put(row) => self.put_row(row),
            ReferenceChange::Remove { kind, id, at } => self.remove(kind, &id, at),
            ReferenceChange::RemoveAll { kind, at } => {
                fn all<K, T: Effective>(map: &mut FxHashMap<K, History<T>>, at: EpochMillis) {
                    map.values_mut()
                        .filter(|h| h.at(at).is_some())
                        .for_each(|h| h.put(Entry::Removed(at)));
                }
                match kind {
                    ReferenceKind::Subscribers => all(&mut self.subscribers, at),
                    ReferenceKind::Customers => all(&mut self.customers, at),
                    ReferenceKind::Cells => all(&mut self.cells, at),
                    ReferenceKind::Plans => all(&mut self.plans, at),
                    ReferenceKind::Bundles => all(&mut self.bundles, at),
                }
            }
        }
    }

    /// `id` unknown from `at` on (a subscriber's id is its number in E.164;
    /// an id not known as a number is not a subscriber, so nothing changes).
    pub fn remove(&mut self, kind: ReferenceKind, id: &str, at: EpochMillis) {
        match kind {
            ReferenceKind::Subscribers => {
                // E.164 with its `+`: the home country plays no part.
                if let Ok(msisdn) = normalize_msisdn(id, CountryCode::SOUTH_AFRICA) {
                    self.subscribers
                        .entry(msisdn)
                        .or_default()
                        .put(Entry::Removed(at));
                }
            }
            ReferenceKind::Customers => self
                .customers
                .entry(id.into())
                .or_default()
                .put(Entry::Removed(at)),
            ReferenceKind::Cells => self
                .cells
                .entry(id.into())
                .or_default()
                .put(Entry::Removed(at)),
            ReferenceKind::Plans => self
                .plans
                .entry(id.into())
                .or_default()
                .put(Entry::Removed(at)),
            ReferenceKind::Bundles => self
                .bundles
                .entry(id.into())
                .or_default()
                .put(Entry::Removed(at)),
        }
    }

    /// `name`, as the `Arc` every row naming it shares.
    fn shared(&mut self, name: Arc<str>) -> Arc<str> {
        match self.names.get(&name) {
            Some(known) => known.clone(),
            None => {
                self.names.insert(name.clone());
                name
            }
        }
    }

    pub fn put_subscriber(&mut self, mut row: Subscriber) {
        row.customer_id = self.shared(row.customer_id);
        row.plan_id = self.shared(row.plan_id);
        row.region = row.region.map(|region| self.shared(region));
        let history = self.subscribers.entry(row.msisdn).or_default();
        history.put(Entry::Row(row));
    }

    pub fn put_customer(&mut self, mut row: Customer) {
        row.customer_id = self.shared(row.customer_id);
        let history = self.customers.entry(row.customer_id.clone()).or_default();
        history.put(Entry::Row(row));
    }

    pub fn put_cell(&mut self, mut row: Cell) {
        row.region = self.shared(row.region);
        let history = self.cells.entry(row.cell_id.clone()).or_default();
        history.put(Entry::Row(row));
    }

    pub fn put_plan(&mut self, mut row: Plan) {
        row.plan_id = self.shared(row.plan_id);
        let history = self.plans.entry(row.plan_id.clone()).or_default();
        history.put(Entry::Row(row));
    }

    pub fn put_bundle(&mut self, mut row: BundlePurchase) {
        row.bundle_id = self.shared(row.bundle_id);
        let listed = self.bundles_of.entry(row.msisdn).or_default();
        if !listed.contains(&row.purchase_id) {
            listed.push(row.purchase_id.clone());
        }
        let history = self.bundles.entry(row.purchase_id.clone()).or_default();
        history.put(Entry::Row(row));
    }

    pub fn subscriber_at(&self, msisdn: Msisdn, at: EpochMillis) -> Option<&Subscriber> {
        self.subscribers.get(&msisdn)?.at(at)
    }

    /// `id` as a subscriber row names it (the `Arc` the customer is keyed by).
    pub fn customer_at(&self, id: &Arc<str>, at: EpochMillis) -> Option<&Customer> {
        self.customers.get(id)?.at(at)
    }

    /// Every subscription's rows, oldest first, in no particular number order.
    pub fn subscriptions(&self) -> impl Iterator<Item = impl Iterator<Item = &Subscriber>> {
        self.subscribers.values().map(History::rows)
    }

    pub fn cell_at(&self, id: &str, at: EpochMillis) -> Option<&Cell> {
        self.cells.get(id)?.at(at)
    }

    pub fn plan_at(&self, id: &str, at: EpochMillis) -> Option<&Plan> {
        self.plans.get(id)?.at(at)
    }

    /// `msisdn`'s purchases as they stood at `at` (bought by then, not
    /// cancelled), expired ones too: their expiry is the catalogue's to tell.
    pub fn bundles_at(&self, msisdn: Msisdn, at: EpochMillis) -> Vec<&BundlePurchase> {
        bundles_at(
            msisdn,
            |id| self.bundles.get(id).and_then(|h| h.at(at)),
            self.bundles_of.get(&msisdn).into_iter().flatten(),
        )
    }

    /// The rows in force once every change so far has taken effect — what
    /// the source tables hold now — by id.
    pub fn current(&self, kind: ReferenceKind) -> ReferenceRows {
        fn current<K, T: Effective + Clone>(
            map: &FxHashMap<K, History<T>>,
            id: impl Fn(&T) -> String,
        ) -> Vec<T> {
            let mut rows: Vec<T> = map.values().filter_map(History::current).cloned().collect();
            rows.sort_by_cached_key(|r| id(r));
            rows
        }
        match kind {
            ReferenceKind::Subscribers => {
                ReferenceRows::Subscribers(current(&self.subscribers, |r| r.msisdn.to_string()))
            }
            ReferenceKind::Customers => {
                ReferenceRows::Customers(current(&self.customers, |r| r.customer_id.to_string()))
            }
            ReferenceKind::Cells => {
                ReferenceRows::Cells(current(&self.cells, |r| r.cell_id.to_string()))
            }
            ReferenceKind::Plans => {
                ReferenceRows::Plans(current(&self.plans, |r| r.plan_id.to_string()))
            }
            ReferenceKind::Bundles => {
                ReferenceRows::Bundles(current(&self.bundles, |r| r.purchase_id.to_string()))
            }
        }
    }
}

/// The rows, by `row_at` (in force at the instant asked for), of the
/// purchases `listed` under `msisdn` that name it still (oldest purchase
/// first, so offers come in a stable order).
fn bundles_at<'a>(
    msisdn: Msisdn,
    row_at: impl Fn(&Arc<str>) -> Option<&'a BundlePurchase>,
    listed: impl Iterator<Item = &'a Arc<str>>,
) -> Vec<&'a BundlePurchase> {
    let mut rows: Vec<&BundlePurchase> = listed
        .filter_map(row_at)
        .filter(|row| row.msisdn == msisdn)
        .collect();
    rows.sort_by(|a, b| {
        (a.effective_from, &a.purchase_id).cmp(&(b.effective_from, &b.purchase_id))
    });
    rows.dedup_by(|a, b| a.purchase_id == b.purchase_id);
    rows
}

/// A billing period: the month it starts in (`2024-03`). With bill-cycle
/// day `c`, the period named `2024-03` runs from 2024-03-`c` to the day
/// before 2024-04-`c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BillingPeriod {
    pub year: i32,
    pub month: u32,
}

impl BillingPeriod {
    /// The period `day` falls in, for bill-cycle day `cycle_day`.
    pub fn containing(day: Day, cycle_day: u8) -> BillingPeriod {
        let (year, month, d) = day.ymd();
        if d >= u32::from(cycle_day) {
            BillingPeriod { year, month }
        } else if month == 1 {
            BillingPeriod {
                year: year - 1,
                month: 12,
            }
        } else {
            BillingPeriod {
                year,
                month: month - 1,
            }
        }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Option<BillingPeriod> {
        let (year, month) = text.split_once('-')?;
        let (year, month) = (year.parse().ok()?, month.parse().ok()?);
        (text.len() == 7 && (1..=12).contains(&month)).then_some(BillingPeriod { year, month })
    }
}

impl fmt::Display for BillingPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZA: CountryCode = CountryCode::SOUTH_AFRICA;

    #[test]
    fn a_subscriber_is_rated_against_the_row_in_force_at_the_event() {
        let text = "msisdn,customer_id,plan_id,payment,effective_from\n\
                    0821234567,C1,basic,prepaid,\n\
                    +27821234567,C1,gold,prepaid,2024-03-01\n\
                    27821234567,C1,silver,postpaid,2024-03-15T12:00:00+02:00\n";
        let ReferenceRows::Subscribers(rows) =
            parse_csv(ReferenceKind::Subscribers, text, ZA).unwrap()
        else {
            panic!("subscribers")
        };
        let mut data = ReferenceData::default();
        data.put(ReferenceRows::Subscribers(rows));
        let number = normalize_msisdn("+27821234567", ZA).unwrap();
        let plan_at = |text: &str| {
            let at = parse_timestamp(text).unwrap();
            data.subscriber_at(number, at)
                .map(|s| s.plan_id.to_string())
        };
        assert_eq!(plan_at("1990-01-01T00:00:00Z").as_deref(), Some("basic"));
        assert_eq!(
            plan_at("2024-02-29T23:59:59.999Z").as_deref(),
            Some("basic")
        );
        assert_eq!(plan_at("2024-03-01T00:00:00Z").as_deref(), Some("gold"));
        // 12:00 at +02:00 is 10:00 UTC.
        assert_eq!(plan_at("2024-03-15T09:59:59Z").as_deref(), Some("gold"));
        assert_eq!(plan_at("2024-03-15T10:00:00Z").as_deref(), Some("silver"));
        assert_eq!(data.len(ReferenceKind::Subscribers), 3);
        let other = normalize_msisdn("+27820000000", ZA).unwrap();
        assert!(data.subscriber_at(other, 0).is_none());
    }

    #[test]
    fn a_row_for_the_same_instant_replaces_the_earlier_load() {
        let mut data = ReferenceData::default();
        let cell = |technology: &'static str| Cell {
            cell_id: "C-1".into(),
            effective_from: 1_000,
            region: "north".into(),
            technology,
        };
        data.put_cell(cell("3G"));
        data.put_cell(cell("4G"));
        assert_eq!(data.len(ReferenceKind::Cells), 1);
        assert_eq!(data.cell_at("C-1", 1_000).unwrap().technology, "4G");
        assert!(data.cell_at("C-1", 999).is_none());
    }

    #[test]
    fn every_mistake_names_its_line_and_column() {
        let cases = [
            (
                ReferenceKind::Cells,
                "cell_id,region\n",
                "no `technology` column",
            ),
            (
                ReferenceKind::Cells,
                "cell_id,region,technology,colour\n",
                "column `colour` is not one",
            ),
            (
                ReferenceKind::Cells,
                "cell_id,region,technology\nA,north,LTE\nB,south,WiMAX\n",
                "line 3, `technology`: `WiMAX` is not a radio technology",
            ),
            (
                ReferenceKind::Customers,
                "customer_id,name,bill_cycle_day\nC1,Ada,31\n",
                "line 2, `bill_cycle_day`: `31` is not a day from 1 to 28",
            ),
            (
                ReferenceKind::Subscribers,
                "msisdn,customer_id,plan_id,payment\n+27821234567,C1,p,credit\n",
                "line 2, `payment`: `credit` is not prepaid or postpaid",
            ),
            (
                ReferenceKind::Subscribers,
                "msisdn,customer_id,plan_id\nhello,C1,p\n",
                "line 2, `msisdn`: `hello`",
            ),
            (
                ReferenceKind::Subscribers,
                "msisdn,customer_id,plan_id,effective_from\n+27821234567,C1,p,March\n",
                "line 2, `effective_from`: `March` is neither a date",
            ),
            (
                ReferenceKind::Subscribers,
                "msisdn,customer_id,plan_id\n+27821234567,,p\n",
                "line 2, `customer_id`: is empty",
            ),
        ];
        for (kind, text, expected) in cases {
            let error = parse_csv(kind, text, ZA).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn an_export_reads_back_as_the_rows_it_wrote_and_removals_hide_an_id() {
        let texts = [
            (ReferenceKind::Subscribers, "msisdn,customer_id,plan_id,region,payment,activation_date,effective_from\n+27821234567,\"C, 1\",gold,north,prepaid,2024-03-01,2024-03-01T10:00:00.5Z\n"),
            (ReferenceKind::Plans, "plan_id,name,description,monthly_fee,currency\ngold,Gold,\"All you can eat\",149.99,ZAR\nfree,Free,,,\n"),
        ];
        for (kind, text) in texts {
            let rows = parse_csv(kind, text, ZA).unwrap();
            let again = parse_csv(kind, &write_csv(&rows), ZA).unwrap();
            assert_eq!(again, rows, "{kind}");
        }
        let mut data = ReferenceData::default();
        data.put(parse_csv(ReferenceKind::Plans, texts[1].1, ZA).unwrap());
        data.apply(ReferenceChange::Remove {
            kind: ReferenceKind::Plans,
            id: "free".into(),
            at: 5_000,
        });
        assert!(data.plan_at("free", 4_999).is_some());
        assert!(data.plan_at("free", 5_000).is_none());
        let ReferenceRows::Plans(current) = data.current(ReferenceKind::Plans) else {
            panic!("plans")
        };
        let ids: Vec<&str> = current.iter().map(|p| &*p.plan_id).collect();
        assert_eq!(ids, ["gold"]);
        data.apply(ReferenceChange::RemoveAll {
            kind: ReferenceKind::Plans,
            at: 6_000,
        });
        assert!(data.current(ReferenceKind::Plans).is_empty());
        assert!(data.plan_at("gold", 5_999).is_some());
    }

    #[test]
    fn a_numbers_purchases_are_those_it_holds_at_the_instant() {
        let text = "purchase_id,msisdn,bundle_id,expires_at,effective_from\n\
                    P1,0821234567,data-1gb,,2024-03-01\n\
                    P2,+27821234567,minutes,2024-03-20,2024-03-10\n\
                    P1,+27820000000,data-1gb,,2024-03-15\n";
        let rows = parse_csv(ReferenceKind::Bundles, text, ZA).unwrap();
        assert_eq!(
            parse_csv(ReferenceKind::Bundles, &write_csv(&rows), ZA).unwrap(),
            rows
        );
        let mut data = ReferenceData::default();
        data.put(rows);
        data.apply(ReferenceChange::Remove {
            kind: ReferenceKind::Bundles,
            id: "P2".into(),
            at: parse_timestamp("2024-03-12T00:00:00Z").unwrap(),
        });
        let held = |number: &str, when: &str| -> Vec<String> {
            let msisdn = normalize_msisdn(number, ZA).unwrap();
            let at = parse_timestamp(when).unwrap();
            data.bundles_at(msisdn, at)
                .iter()
                .map(|b| format!("{}:{}", b.purchase_id, b.bundle_id))
                .collect()
        };
        assert!(held("+27821234567", "2024-02-29T23:59:59Z").is_empty());
        assert_eq!(
            held("+27821234567", "2024-03-10T00:00:00Z"),
            ["P1:data-1gb", "P2:minutes"]
        );
        // P2 cancelled on the 12th; P1 moved to another number on the 15th.
        assert_eq!(
            held("+27821234567", "2024-03-12T00:00:00Z"),
            ["P1:data-1gb"]
        );
        assert!(held("+27821234567", "2024-03-15T00:00:00Z").is_empty());
        assert_eq!(
            held("+27820000000", "2024-03-15T00:00:00Z"),
            ["P1:data-1gb"]
        );
        let error = parse_csv(
            ReferenceKind::Bundles,
            "purchase_id,msisdn,bundle_id,expires_at,effective_from\nP9,0821234567,b,2024-03-01,2024-03-02\n",
            ZA,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("line 2, `expires_at`: is not after the purchase"),
            "{error}"
        );
    }

    #[test]
    fn technology_codes_become_generations() {
        for (raw, generation) in [("LTE", "4G"), ("umts", "3G"), (" GSM ", "2G"), ("NR", "5G")] {
            assert_eq!(normalize_technology(raw), Some(generation), "{raw}");
        }
        assert_eq!(normalize_technology("wifi"), None);
    }

    #[test]
    fn a_billing_period_starts_on_the_cycle_day() {
        let day = |text| Day::parse(text).unwrap();
        let period = |text, cycle| BillingPeriod::containing(day(text), cycle).to_string();
        assert_eq!(period("2024-03-01", 1), "2024-03");
        assert_eq!(period("2024-03-31", 1), "2024-03");
        assert_eq!(period("2024-03-14", 15), "2024-02");
        assert_eq!(period("2024-03-15", 15), "2024-03");
        assert_eq!(period("2024-01-10", 15), "2023-12");
        assert_eq!(
            BillingPeriod::parse("2024-03").unwrap().to_string(),
            "2024-03"
        );
        assert!(BillingPeriod::parse("2024-13").is_none());
    }
}
