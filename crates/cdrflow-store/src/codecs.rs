//! What both stores do the same way: counters as named rows, days within
//! the range SQL dates hold, and the migrations written once for both
//! dialects.
//! Shared here so that the two backends cannot drift apart.

use cdrflow_core::mediation::{Counts, DuplicateReason};
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::Day;
use cdrflow_core::reject::RejectReason;

/// What differs between the stores' SQL in the migrations written once here.
pub(crate) struct Dialect {
    /// An auto-numbered primary key column's type.
    pub serial_key: &'static str,
    pub bytes: &'static str,
    /// An integer expression `{}` as the bytes of its decimal text.
    pub integer_as_text_bytes: &'static str,
}

/// Migration v3: every operator's state in one table, `operator_state`,
/// keyed by operator, scope and table name: keyed values (a unique key) or
/// values covering a span of event minutes (no key). The mediator's
/// watermark (as decimal text) and dedup identities move there from
/// `pipeline_state` and `dedup_state`.
pub(crate) fn operator_state_v3(dialect: &Dialect) -> String {
    let watermark = dialect.integer_as_text_bytes.replace("{}", "watermark_ms");
    format!(
        "CREATE TABLE operator_state (
            id {serial_key},
            operator TEXT NOT NULL,
            scope TEXT NOT NULL,
            state_table TEXT NOT NULL,
            state_key TEXT,
            first_minute INTEGER,
            last_minute INTEGER,
            value {bytes} NOT NULL
        );
        CREATE UNIQUE INDEX operator_state_by_key ON operator_state (operator, scope, state_table, state_key)
            WHERE state_key IS NOT NULL;
        CREATE INDEX operator_state_by_span ON operator_state (operator, scope, state_table, last_minute)
            WHERE state_key IS NULL;
        INSERT INTO operator_state (operator, scope, state_table, first_minute, last_minute, value)
            SELECT 'mediation', scope, 'dedup_identities', min_minute, max_minute, entries FROM dedup_state ORDER BY id;
        INSERT INTO operator_state (operator, scope, state_table, state_key, value)
            SELECT 'mediation', scope, 'watermark', '', {watermark} FROM pipeline_state;
        DROP TABLE dedup_state;
        DROP TABLE pipeline_state;",
        serial_key = dialect.serial_key,
        bytes = dialect.bytes,
    )
}

/// Migration v6, the same in both stores: reference data (subscribers,
/// customers, cells, each row keyed by its id and the instant it took
/// effect), rated records (the catalogue's answer for each accepted
/// record) and prepaid balances (micro-units, changed only by commits).
/// Instants are milliseconds since the epoch, money micro-units.
pub(crate) const RATING_V6: &str = "
    CREATE TABLE subscribers (
        msisdn TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        customer_id TEXT NOT NULL,
        plan_id TEXT NOT NULL,
        region TEXT,
        status TEXT NOT NULL,
        payment TEXT NOT NULL,
        activation_date TEXT,
        PRIMARY KEY (msisdn, effective_from)
    );
    CREATE TABLE customers (
        customer_id TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        name TEXT NOT NULL,
        billing_country TEXT NOT NULL,
        bill_cycle_day INTEGER NOT NULL,
        PRIMARY KEY (customer_id, effective_from)
    );
    CREATE TABLE cells (
        cell_id TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        region TEXT NOT NULL,
        technology TEXT NOT NULL,
        PRIMARY KEY (cell_id, effective_from)
    );
    CREATE TABLE rated_records (
        record_id TEXT NOT NULL,
        msisdn TEXT NOT NULL,
        event_time BIGINT NOT NULL,
        kind TEXT NOT NULL,
        service_type TEXT NOT NULL,
        other_party TEXT,
        customer_id TEXT,
        plan_id TEXT NOT NULL,
        catalogue_version TEXT NOT NULL,
        destination_id TEXT,
        destination_class TEXT,
        band TEXT,
        rate_id TEXT NOT NULL,
        region TEXT,
        technology TEXT,
        usage_units BIGINT NOT NULL,
        billed_units BIGINT NOT NULL,
        allowance_id TEXT,
        allowance_units BIGINT NOT NULL DEFAULT 0,
        cost_micros BIGINT NOT NULL,
        currency TEXT NOT NULL,
        billing_period TEXT NOT NULL
    );
    CREATE INDEX rated_records_by_msisdn ON rated_records (msisdn, event_time);
    CREATE INDEX rated_records_by_period ON rated_records (billing_period);
    CREATE TABLE balances (
        msisdn TEXT PRIMARY KEY,
        balance_micros BIGINT NOT NULL,
        currency TEXT NOT NULL,
        last_event_time BIGINT NOT NULL
    );";

/// Migration v7, the same in both stores: the lake's manifest, every
/// Parquet file a commit named (`cdrflow-lake` stages a checkpoint's files,
/// the commit inserts their rows with the positions, then they are moved
/// into place; after a crash, staged files not named here are deleted).
pub(crate) const LAKE_V7: &str = "
    CREATE TABLE lake_files (
        path TEXT PRIMARY KEY,
        dataset TEXT NOT NULL,
        partition_path TEXT NOT NULL,
        row_count BIGINT NOT NULL,
        byte_count BIGINT NOT NULL
    );";

/// Migration v8, the same in both stores: invoices (issue 13), each with
/// its figures in micro-units and its document as issued; which rated
/// record (by id and kind) is on which line of an issued invoice — at most
/// one row per record, so a record is on one live invoice; and each
/// billing entity's last invoice number.
///
/// `invoice_items` is keyed by the record (`table_options`: SQLite's
/// `WITHOUT ROWID`, so the key is the table and an insert touches two
/// B-trees, not three).
pub(crate) fn billing_v8(table_options: &str) -> String {
    format!(
        "
    CREATE TABLE invoices (
        invoice_id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        revision INTEGER NOT NULL,
        entity TEXT NOT NULL,
        number TEXT UNIQUE,
        status TEXT NOT NULL,
        currency TEXT NOT NULL,
        voice_micros BIGINT NOT NULL,
        sms_micros BIGINT NOT NULL,
        data_micros BIGINT NOT NULL,
        other_micros BIGINT NOT NULL,
        recurring_micros BIGINT NOT NULL,
        discounts_micros BIGINT NOT NULL,
        subtotal_micros BIGINT NOT NULL,
        tax_micros BIGINT NOT NULL,
        total_micros BIGINT NOT NULL,
        document TEXT NOT NULL,
        document_hash TEXT NOT NULL
    );
    CREATE INDEX invoices_by_period ON invoices (period, customer_id);
    CREATE TABLE invoice_items (
        record_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        msisdn TEXT NOT NULL,
        event_time BIGINT NOT NULL,
        invoice_id TEXT NOT NULL,
        line_no INTEGER NOT NULL,
        PRIMARY KEY (record_id, kind)
    ){table_options};
    CREATE INDEX invoice_items_by_line ON invoice_items (invoice_id, line_no);
    CREATE TABLE invoice_numbers (
        entity TEXT PRIMARY KEY,
        last_number BIGINT NOT NULL
    );"
    )
}

/// A `WHERE` clause asking each column given a value to equal it (`$1`,
/// `$2`, … in order), and the values; empty when none is given.
fn where_equal<const N: usize>(columns: [(&str, Option<String>); N]) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    for (column, value) in columns {
        if let Some(value) = value {
            values.push(value);
            clauses.push(format!("{column} = ${}", values.len()));
        }
    }
    let filter = match clauses.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", clauses.join(" AND ")),
    };
    (filter, values)
}

/// Invoices as both stores write and read them. The SQL is written once
/// with PostgreSQL's `$n` placeholders; SQLite reads them as `?n`.
pub(crate) mod invoice_rows {
    use cdrflow_core::billing::invoice::Totals;
    use cdrflow_core::billing::InvoiceStatus;
    use cdrflow_core::model::Kind;
    use cdrflow_core::reference::BillingPeriod;

    use crate::{InvoiceQuery, StoreError, StoredInvoice};

    pub(crate) const COLUMNS: &str = "invoice_id, customer_id, period, revision, entity, number,
        status, currency, voice_micros, sms_micros, data_micros, other_micros, recurring_micros,
        discounts_micros, subtotal_micros, tax_micros, total_micros, document, document_hash";

    /// Inserts a row with [`COLUMNS`]' values as `$1..$19`, replacing a draft of the same id.
    pub(crate) const UPSERT: &str = "INSERT INTO invoices (invoice_id, customer_id, period,
        revision, entity, number, status, currency, voice_micros, sms_micros, data_micros,
        other_micros, recurring_micros, discounts_micros, subtotal_micros, tax_micros,
        total_micros, document, document_hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
        ON CONFLICT (invoice_id) DO UPDATE SET entity = excluded.entity, number = excluded.number,
            status = excluded.status, currency = excluded.currency,
            voice_micros = excluded.voice_micros, sms_micros = excluded.sms_micros,
            data_micros = excluded.data_micros, other_micros = excluded.other_micros,
            recurring_micros = excluded.recurring_micros,
            discounts_micros = excluded.discounts_micros,
            subtotal_micros = excluded.subtotal_micros, tax_micros = excluded.tax_micros,
            total_micros = excluded.total_micros, document = excluded.document,
            document_hash = excluded.document_hash";

    /// The rated records a run of period `$1` may bill: those no issued
    /// invoice holds (drafts hold none: they are recomputed from these by
    /// every run), one probe of the items' key each.
    pub(crate) const BILLABLE: &str = "SELECT r.record_id, r.msisdn, r.event_time, r.kind,
            r.destination_class, r.customer_id, r.cost_micros, r.currency, r.billing_period
        FROM rated_records r
        WHERE r.billing_period <= $1 AND r.customer_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM invoice_items i WHERE i.record_id = r.record_id AND i.kind = r.kind)";

    /// The customers and periods before `$1` with a draft.
    pub(crate) const DRAFTS_BEFORE: &str = "SELECT customer_id, period FROM invoices
        WHERE status = 'draft' AND period < $1";

    pub(crate) const STATUS_OF: &str = "SELECT status FROM invoices WHERE invoice_id = $1";
    /// A scan (no index by invoice, v10): voiding is rare.
    pub(crate) const DELETE_ITEMS: &str = "DELETE FROM invoice_items WHERE invoice_id = $1";
    pub(crate) const DELETE_DRAFT: &str =
        "DELETE FROM invoices WHERE invoice_id = $1 AND status = 'draft'";
    pub(crate) const CLAIM_FIRST_NUMBER: &str =
        "INSERT INTO invoice_numbers (entity, last_number) VALUES ($1, $2) ON CONFLICT (entity) DO NOTHING";
    pub(crate) const CLAIM_NEXT_NUMBER: &str =
        "UPDATE invoice_numbers SET last_number = $3 WHERE entity = $1 AND last_number = $2";
    pub(crate) const NUMBERS: &str = "SELECT entity, last_number FROM invoice_numbers";
    pub(crate) const VOID: &str = "UPDATE invoices SET status = 'void'
        WHERE number = $1 AND status = 'finalised' RETURNING invoice_id";
    /// The rated records of invoice `$1`'s line `$2`, the first `$3`:
    /// the records of the numbers its customer has held (their rated
    /// rows by `rated_records_by_msisdn`), each probed in the items by its
    /// key — the items have no index by invoice (see v10).
    pub(crate) fn line_records() -> String {
        let columns = super::rated_rows::columns_of("r");
        format!(
            "SELECT {} FROM rated_records r JOIN invoice_items i
                ON i.record_id = r.record_id AND i.kind = r.kind
            WHERE r.msisdn IN (SELECT s.msisdn FROM subscribers s JOIN invoices v
                    ON v.customer_id = s.customer_id WHERE v.invoice_id = $1)
                AND i.invoice_id = $1 AND i.line_no = $2
            ORDER BY r.event_time, r.record_id LIMIT $3",
            columns
        )
    }

    /// The records a draft's usage line stands for (`$1` customer, `$2`
    /// billing period, `$3` kind, `$4` class or '' for none), the first
    /// `$5`: [`BILLABLE`]'s rows of the customer's numbers, postpaid at
    /// their event time (no subscription row counts as postpaid, as in
    /// `cdrflow bill`).
    pub(crate) fn draft_line_records() -> String {
        let columns = super::rated_rows::columns_of("r");
        format!(
            "SELECT {} FROM rated_records r
            WHERE r.msisdn IN (SELECT msisdn FROM subscribers WHERE customer_id = $1)
                AND r.customer_id = $1 AND r.billing_period = $2 AND r.kind = $3
                AND COALESCE(r.destination_class, '') = $4
                AND NOT EXISTS (SELECT 1 FROM invoice_items i
                    WHERE i.record_id = r.record_id AND i.kind = r.kind)
                AND COALESCE((SELECT s.payment FROM subscribers s
                    WHERE s.msisdn = r.msisdn AND s.effective_from <= r.event_time
                    ORDER BY s.effective_from DESC LIMIT 1), 'postpaid') = 'postpaid'
            ORDER BY r.event_time, r.record_id LIMIT $5",
            columns
        )
    }

    pub(crate) const INSERT_ITEM: &str = "INSERT INTO invoice_items
        (record_id, kind, msisdn, event_time, invoice_id, line_no) VALUES ($1, $2, $3, $4, $5, $6)";

    /// The distinct customers of the numbers `$1..$n`.
    pub(crate) fn customers_of(count: usize) -> String {
        let list: Vec<String> = (1..=count).map(|i| format!("${i}")).collect();
        format!(
            "SELECT DISTINCT customer_id FROM subscribers WHERE msisdn IN ({}) ORDER BY customer_id",
            list.join(", ")
        )
    }

    /// The `SELECT` of `query`, with its values in order.
    pub(crate) fn select(query: &InvoiceQuery) -> (String, Vec<String>) {
        let (filter, values) = super::where_equal([
            ("customer_id", query.customer.clone()),
            ("period", query.period.map(|p| p.to_string())),
            ("number", query.number.clone()),
            ("invoice_id", query.invoice_id.clone()),
        ]);
        let columns = match query.without_documents {
            true => COLUMNS.replace(" document,", " '' AS document,"),
            false => COLUMNS.to_string(),
        };
        (
            format!(
                "SELECT {columns} FROM invoices {filter} ORDER BY period, customer_id, revision"
            ),
            values,
        )
    }

    /// A stored kind text as a kind.
    pub(crate) fn stored_kind(text: &str) -> Result<Kind, StoreError> {
        Kind::parse(text)
            .ok_or_else(|| StoreError::Corrupt(format!("invoice_items holds the kind `{text}`")))
    }

    /// A stored period text as a period.
    pub(crate) fn stored_period(text: &str) -> Result<BillingPeriod, StoreError> {
        BillingPeriod::parse(text).ok_or_else(|| corrupt("the period", text))
    }

    /// What a conflicting run is told.
    pub(crate) fn conflict(what: &str) -> StoreError {
        StoreError::Conflict(format!(
            "{what}: another `cdrflow bill` changed these invoices while this one ran; nothing of this run was written. Run it again"
        ))
    }

    fn corrupt(what: &str, value: &str) -> StoreError {
        StoreError::Corrupt(format!("invoices holds {what} `{value}`"))
    }

    /// A row read back, in [`COLUMNS`] order.
    pub(crate) struct StoredRow {
        pub invoice_id: String,
        pub customer_id: String,
        pub period: String,
        pub revision: i64,
        pub entity: String,
        pub number: Option<String>,
        pub status: String,
        pub currency: String,
        pub figures: [i64; 9],
        pub document: String,
        pub document_hash: String,
    }

    impl StoredRow {
        pub(crate) fn into_invoice(self) -> Result<StoredInvoice, StoreError> {
            let f = self.figures;
            Ok(StoredInvoice {
                period: stored_period(&self.period)?,
                revision: u32::try_from(self.revision)
                    .map_err(|_| corrupt("the revision", &self.revision.to_string()))?,
                status: InvoiceStatus::parse(&self.status)
                    .ok_or_else(|| corrupt("the status", &self.status))?,
                invoice_id: self.invoice_id,
                customer_id: self.customer_id,
                entity: self.entity,
                number: self.number,
                currency: self.currency,
                totals: Totals::from_order(f),
                document: self.document,
                document_hash: self.document_hash,
            })
        }
    }
}

/// Migration v17, the same in both stores (issue 14): a rated record
/// keeps the cell it names, and each cell's rated records are summed by
/// hour, so a cell change that arrives after records of that cell finds
/// them. (An index on `rated_records (cell_id, event_time)` did the same
/// exactly and made the catalogue file job 34% slower: 22.7 s against
/// 16.8 s for 2,000,000 records; the summary is a row per cell and hour.)
pub(crate) const RATED_CELLS_V17: &str = "
    ALTER TABLE rated_records ADD COLUMN cell_id TEXT;
    CREATE TABLE cell_usage (
        cell_id TEXT NOT NULL,
        hour BIGINT NOT NULL,
        records BIGINT NOT NULL,
        first_event_time BIGINT NOT NULL,
        last_event_time BIGINT NOT NULL,
        first_period TEXT NOT NULL,
        last_period TEXT NOT NULL,
        PRIMARY KEY (cell_id, hour)
    );";

/// A commit's rated records of one cell in one hour, as `cell_usage` sums them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CellHour<'a> {
    pub cell_id: &'a str,
    pub hour: i64,
    pub records: i64,
    pub first_event_time: i64,
    pub last_event_time: i64,
    pub first_period: cdrflow_core::reference::BillingPeriod,
    pub last_period: cdrflow_core::reference::BillingPeriod,
}

/// The `cell_usage` rows a commit adds to, each (cell, hour) once.
pub(crate) fn cell_hours<'a>(commit: &crate::Commit<'a>) -> Vec<CellHour<'a>> {
    let mut hours: std::collections::BTreeMap<(&str, i64), CellHour<'_>> = Default::default();
    for r in commit
        .parts
        .iter()
        .flat_map(|p| &p.checkpoint.rated_records)
    {
        let Some(cell_id) = r.cell_id.as_deref() else {
            continue;
        };
        let hour = r.event_time.div_euclid(3_600_000);
        let period = r.billing_period;
        let entry = hours.entry((cell_id, hour)).or_insert_with(|| CellHour {
            cell_id,
            hour,
            records: 0,
            first_event_time: r.event_time,
            last_event_time: r.event_time,
            first_period: period,
            last_period: period,
        });
        entry.records += 1;
        entry.first_event_time = entry.first_event_time.min(r.event_time);
        entry.last_event_time = entry.last_event_time.max(r.event_time);
        // Periods order as their stored text does (`2024-03`, zero-padded).
        entry.first_period = entry.first_period.min(period);
        entry.last_period = entry.last_period.max(period);
    }
    hours.into_values().collect()
}

/// The upsert of one [`CellHour`] (`source`: its values in field order),
/// `least`/`greatest` being the dialect's two-argument minimum and maximum.
pub(crate) fn upsert_cell_hours_sql(source: &str, least: &str, greatest: &str) -> String {
    format!(
        "INSERT INTO cell_usage (cell_id, hour, records, first_event_time, last_event_time,
             first_period, last_period) {source}
         ON CONFLICT (cell_id, hour) DO UPDATE SET
             records = cell_usage.records + excluded.records,
             first_event_time = {least}(cell_usage.first_event_time, excluded.first_event_time),
             last_event_time = {greatest}(cell_usage.last_event_time, excluded.last_event_time),
             first_period = {least}(cell_usage.first_period, excluded.first_period),
             last_period = {greatest}(cell_usage.last_period, excluded.last_period)"
    )
}

/// Migration v16, the same in both stores: subscribers leave the search
/// documents (they are found in their own table, `search_rows::select`).
pub(crate) const SUBSCRIBERS_UNINDEXED_V16: &str =
    "DELETE FROM search_documents WHERE kind = 'subscribers';";

/// Migration v15, the same in both stores (issue 14): the latest spend
/// report (seed 004's analytics flush), its rows and when it was taken.
pub(crate) const SPEND_REPORTS_V15: &str = "
    CREATE TABLE spend_reports (
        ranking TEXT NOT NULL,
        rank INTEGER NOT NULL,
        id TEXT NOT NULL,
        spend_micros BIGINT NOT NULL,
        records BIGINT NOT NULL,
        subscribers BIGINT NOT NULL,
        PRIMARY KEY (ranking, rank)
    );
    CREATE TABLE spend_report_state (
        only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
        flushed_at BIGINT NOT NULL,
        period TEXT
    );";

/// Spend reports as both stores take, keep and read them: the same SQL
/// with each store's placeholders.
pub(crate) mod spend_reports {
    use cdrflow_core::analytics::rankings::{Ranked, Ranking, SpendReport};
    use cdrflow_core::reference::{BillingPeriod, Status};

    use crate::StoreError;

    /// The latest billing period any rated record is in (by its index).
    pub(crate) const LATEST_PERIOD: &str = "SELECT max(billing_period) FROM rated_records";

    /// Subscribers or plans by what their records were charged in one
    /// period (`p(1)`), the top `p(2)`: id, spend, records, subscribers.
    pub(crate) fn top_sql(ranking: Ranking, p: fn(usize) -> String) -> String {
        let (id, subscribers) = match ranking {
            Ranking::Subscribers => ("msisdn", "CAST(1 AS BIGINT)"),
            _ => ("plan_id", "count(DISTINCT msisdn)"),
        };
        format!(
            "SELECT {id}, CAST(sum(cost_micros) AS BIGINT) AS spend, count(*), {subscribers}
             FROM rated_records WHERE billing_period = {} GROUP BY {id}
             ORDER BY spend DESC, {id} LIMIT {}",
            p(1),
            p(2)
        )
    }

    /// Subscribers in force now — each number's latest row, unless a
    /// removal came after it — by status.
    pub(crate) fn statuses_sql() -> String {
        format!(
            "SELECT s.status, count(*) FROM subscribers s WHERE {} GROUP BY s.status",
            super::reference_rows::CURRENT_SUBSCRIBER
        )
    }

    /// A ranking's row as read: (id, spend, records, subscribers).
    pub(crate) fn ranked(rows: Vec<(String, i64, i64, i64)>) -> Vec<Ranked> {
        rows.into_iter()
            .enumerate()
            .map(|(i, (id, spend_micros, records, subscribers))| Ranked {
                rank: i as u32 + 1,
                id,
                spend_micros,
                records: records as u64,
                subscribers: subscribers as u64,
            })
            .collect()
    }

    /// Every status, in [`Status`]'s order, with how many are in it.
    pub(crate) fn statuses(counts: Vec<(String, i64)>) -> Result<Vec<Ranked>, StoreError> {
        if let Some((unknown, _)) = counts.iter().find(|(s, _)| Status::parse(s).is_none()) {
            return Err(StoreError::Corrupt(format!(
                "subscribers holds the status `{unknown}`"
            )));
        }
        Ok(Status::ALL
            .iter()
            .enumerate()
            .map(|(i, status)| Ranked {
                rank: i as u32 + 1,
                id: status.as_str().to_string(),
                spend_micros: 0,
                records: 0,
                subscribers: counts
                    .iter()
                    .find(|(s, _)| s == status.as_str())
                    .map_or(0, |(_, n)| *n as u64),
            })
            .collect())
    }

    pub(crate) fn period(text: Option<String>) -> Result<Option<BillingPeriod>, StoreError> {
        text.map(|t| {
            BillingPeriod::parse(&t)
                .ok_or_else(|| StoreError::Corrupt(format!("a billing period `{t}`")))
        })
        .transpose()
    }

    pub(crate) const CLEAR: &str = "DELETE FROM spend_reports";

    pub(crate) fn insert_row_sql(p: fn(usize) -> String) -> String {
        format!(
            "INSERT INTO spend_reports (ranking, rank, id, spend_micros, records, subscribers)
             VALUES ({}, {}, {}, {}, {}, {})",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6)
        )
    }

    pub(crate) fn put_state_sql(p: fn(usize) -> String) -> String {
        format!(
            "INSERT INTO spend_report_state (only_row, flushed_at, period) VALUES (1, {}, {})
             ON CONFLICT (only_row) DO UPDATE SET flushed_at = excluded.flushed_at, period = excluded.period",
            p(1),
            p(2)
        )
    }

    pub(crate) const SELECT_STATE: &str = "SELECT flushed_at, period FROM spend_report_state";

    pub(crate) const SELECT_ROWS: &str =
        "SELECT ranking, rank, id, spend_micros, records, subscribers
        FROM spend_reports ORDER BY ranking, rank";

    /// The stored rows, into the report they came from.
    pub(crate) fn report(
        flushed_at: i64,
        period: Option<String>,
        rows: Vec<(String, i64, String, i64, i64, i64)>,
    ) -> Result<SpendReport, StoreError> {
        let mut report = SpendReport {
            flushed_at,
            period: self::period(period)?,
            subscribers: Vec::new(),
            plans: Vec::new(),
            statuses: Vec::new(),
        };
        for (ranking, rank, id, spend_micros, records, subscribers) in rows {
            let row = Ranked {
                rank: rank as u32,
                id,
                spend_micros,
                records: records as u64,
                subscribers: subscribers as u64,
            };
            match Ranking::parse(&ranking) {
                Some(Ranking::Subscribers) => report.subscribers.push(row),
                Some(Ranking::Plans) => report.plans.push(row),
                Some(Ranking::Statuses) => report.statuses.push(row),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "spend_reports holds the ranking `{ranking}`"
                    )))
                }
            }
        }
        Ok(report)
    }
}

/// Migration v14, the same in both stores (issue 14): bundle purchases as
/// reference data — a number's purchase of a catalogue bundle, from the
/// purchase until its expiry — found by number for every record rated.
pub(crate) const BUNDLES_V14: &str = "
    CREATE TABLE bundles (
        purchase_id TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        msisdn TEXT NOT NULL,
        bundle_id TEXT NOT NULL,
        expires_at BIGINT,
        PRIMARY KEY (purchase_id, effective_from)
    );";

/// Migration v12, the same in both stores (issue 14): reference changes
/// that came after records they should have affected — a subscriber's row
/// put or removed from an instant some of its rated records are at or
/// after — with what a re-rating needs to know (how many records, from
/// when, which billing periods).
pub(crate) const LATE_CHANGES_V12: &str = "
    CREATE TABLE late_reference_changes (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        records BIGINT NOT NULL,
        first_event_time BIGINT NOT NULL,
        first_period TEXT NOT NULL,
        last_period TEXT NOT NULL,
        PRIMARY KEY (kind, id, effective_from)
    );";

/// Migration v11, the same in both stores (issue 14): plans as reference
/// data (what search and rankings show of them; their rates stay the
/// catalogue's), and removals — an id deleted at the source is unknown
/// from that instant until a later row.
pub(crate) const CDC_V11: &str = "
    CREATE TABLE plans (
        plan_id TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        monthly_fee_micros BIGINT,
        currency TEXT,
        PRIMARY KEY (plan_id, effective_from)
    );
    CREATE TABLE reference_removals (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        effective_from BIGINT NOT NULL,
        PRIMARY KEY (kind, id, effective_from)
    );";

/// Migration v10, the same in both stores: the items lose their index by
/// invoice line. Issuing a million records kept it in step with the key
/// in random order, over half of `--finalise`'s commit (13 s for 100,000
/// invoices, BENCHMARKS.md); the few readers by invoice find a line's
/// records through its customer's numbers (hence subscribers by
/// customer), or scan (void, re-rating).
pub(crate) const ITEMS_BY_KEY_ONLY_V10: &str = "
    DROP INDEX IF EXISTS invoice_items_by_line;
    CREATE INDEX subscribers_by_customer ON subscribers (customer_id);";

/// Migration v9, the same in both stores: credit and debit notes (issue
/// 13's re-rating), each against one issued invoice, with its figures
/// (differences, in micro-units) and its document. Their sequences live
/// in `invoice_numbers` under `entity/credit` and `entity/debit`.
pub(crate) const NOTES_V9: &str = "
    CREATE TABLE invoice_notes (
        note_id TEXT PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        invoice_id TEXT NOT NULL,
        invoice_number TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        rerated_period TEXT NOT NULL,
        entity TEXT NOT NULL,
        currency TEXT NOT NULL,
        voice_micros BIGINT NOT NULL,
        sms_micros BIGINT NOT NULL,
        data_micros BIGINT NOT NULL,
        other_micros BIGINT NOT NULL,
        recurring_micros BIGINT NOT NULL,
        discounts_micros BIGINT NOT NULL,
        subtotal_micros BIGINT NOT NULL,
        tax_micros BIGINT NOT NULL,
        total_micros BIGINT NOT NULL,
        document TEXT NOT NULL
    );
    CREATE INDEX invoice_notes_by_invoice ON invoice_notes (invoice_id);";

/// Re-rating as both stores write and read it: notes, new prices, held
/// records (SQL with `$n` placeholders, as [`invoice_rows`]).
pub(crate) mod note_rows {
    use cdrflow_core::billing::invoice::Totals;
    use cdrflow_core::billing::notes::NoteKind;

    use super::invoice_rows::stored_period;
    use crate::{NoteQuery, StoreError, StoredNote};

    pub(crate) const COLUMNS: &str = "note_id, number, kind, invoice_id, invoice_number,
        customer_id, period, rerated_period, entity, currency, voice_micros, sms_micros,
        data_micros, other_micros, recurring_micros, discounts_micros, subtotal_micros,
        tax_micros, total_micros, document";

    pub(crate) const INSERT: &str = "INSERT INTO invoice_notes (note_id, number, kind,
        invoice_id, invoice_number, customer_id, period, rerated_period, entity, currency,
        voice_micros, sms_micros, data_micros, other_micros, recurring_micros, discounts_micros,
        subtotal_micros, tax_micros, total_micros, document)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)";

    /// A record's new price, if it still costs `$12`.
    pub(crate) const REPRICE: &str = "UPDATE rated_records SET catalogue_version = $5,
            destination_id = $6, destination_class = $7, band = $8, rate_id = $9,
            billed_units = $10, cost_micros = $11
        WHERE msisdn = $1 AND event_time = $2 AND record_id = $3 AND kind = $4
          AND cost_micros = $12";

    /// The issued invoice holding record `$1` of kind `$2`.
    pub(crate) const HOLDER: &str =
        "SELECT invoice_id FROM invoice_items WHERE record_id = $1 AND kind = $2";

    pub(crate) const CORRECT_BALANCE: &str = "INSERT INTO balances (msisdn, balance_micros, currency, last_event_time)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (msisdn) DO UPDATE SET balance_micros = balances.balance_micros + excluded.balance_micros";

    /// The records held by period `$1`'s finalised invoices and by any
    /// invoice holding one of its records, by invoice.
    pub(crate) fn held() -> String {
        let columns = super::rated_rows::columns_of("r");
        format!(
            "SELECT i.invoice_id, {} FROM invoice_items i JOIN rated_records r
                ON r.msisdn = i.msisdn AND r.event_time = i.event_time
                AND r.record_id = i.record_id AND r.kind = i.kind
            WHERE i.invoice_id IN (
                SELECT invoice_id FROM invoices WHERE period = $1 AND status = 'finalised'
                UNION
                SELECT i2.invoice_id FROM rated_records r2 JOIN invoice_items i2
                    ON i2.record_id = r2.record_id AND i2.kind = r2.kind
                WHERE r2.billing_period = $1)
            ORDER BY i.invoice_id",
            columns
        )
    }

    /// The `SELECT` of `query`, with its values in order.
    pub(crate) fn select(query: &NoteQuery) -> (String, Vec<String>) {
        let (filter, values) = super::where_equal([
            ("period", query.period.map(|p| p.to_string())),
            ("customer_id", query.customer.clone()),
            ("invoice_id", query.invoice_id.clone()),
        ]);
        (
            format!("SELECT {COLUMNS} FROM invoice_notes {filter} ORDER BY invoice_id, number"),
            values,
        )
    }

    /// A row read back, in [`COLUMNS`] order.
    pub(crate) struct StoredRow {
        pub text: [String; 10],
        pub figures: [i64; 9],
        pub document: String,
    }

    impl StoredRow {
        pub(crate) fn into_note(self) -> Result<StoredNote, StoreError> {
            let [note_id, number, kind, invoice_id, invoice_number, customer_id, period, rerated, entity, currency] =
                self.text;
            Ok(StoredNote {
                kind: NoteKind::parse(&kind).ok_or_else(|| {
                    StoreError::Corrupt(format!("invoice_notes holds the kind `{kind}`"))
                })?,
                period: stored_period(&period)?,
                rerated_period: stored_period(&rerated)?,
                note_id,
                number,
                invoice_id,
                invoice_number,
                customer_id,
                entity,
                currency,
                totals: Totals::from_order(self.figures),
                document: self.document,
            })
        }
    }

    /// A note's values in [`INSERT`]'s order: ten texts then nine figures then the document.
    pub(crate) fn values(note: &StoredNote) -> ([String; 10], [i64; 9]) {
        (
            [
                note.note_id.clone(),
                note.number.clone(),
                note.kind.as_str().to_string(),
                note.invoice_id.clone(),
                note.invoice_number.clone(),
                note.customer_id.clone(),
                note.period.to_string(),
                note.rerated_period.to_string(),
                note.entity.clone(),
                note.currency.clone(),
            ],
            note.totals.in_order(),
        )
    }

    /// What a conflicting re-rating is told.
    pub(crate) fn conflict(what: &str) -> StoreError {
        StoreError::Conflict(format!(
            "{what}: a bill run, a pipeline or another `cdrflow rerate` changed it while this re-rating ran; nothing of this run was written. Run it again"
        ))
    }
}

/// Retention's statements past the raw layer, the same in both stores,
/// in the order they delete: an invoice line's trace goes with its record
/// or its invoice, then the records, the notes, the invoices.
pub(crate) mod retention_rows {
    /// What a condition's placeholders are bound to.
    #[derive(Clone, Copy)]
    pub(crate) enum By {
        /// `$1`: the rated records' cut (ms).
        EventTime,
        /// `$1`: the invoices' first kept period.
        Period,
        /// `$1` the records' cut, `$2` the invoices' period.
        Both,
    }

    pub(crate) struct Layer {
        pub table: &'static str,
        pub condition: &'static str,
        pub by: By,
    }

    pub(crate) const ITEMS: Layer = Layer {
        table: "invoice_items",
        condition: "invoice_id IN (SELECT invoice_id FROM invoices WHERE period < $2)
            OR EXISTS (SELECT 1 FROM rated_records r WHERE r.record_id = invoice_items.record_id
                AND r.kind = invoice_items.kind AND r.event_time < $1)",
        by: By::Both,
    };
    pub(crate) const RATED: Layer = Layer {
        table: "rated_records",
        condition: "event_time < $1",
        by: By::EventTime,
    };
    /// The rated records' hourly sums by cell go with them.
    pub(crate) const CELL_USAGE: Layer = Layer {
        table: "cell_usage",
        condition: "last_event_time < $1",
        by: By::EventTime,
    };
    pub(crate) const NOTES: Layer = Layer {
        table: "invoice_notes",
        condition: "period < $1",
        by: By::Period,
    };
    pub(crate) const INVOICES: Layer = Layer {
        table: "invoices",
        condition: "period < $1",
        by: By::Period,
    };

    /// Rated records past the cut `$1` with a customer and on no issued invoice.
    pub(crate) const UNBILLED: &str = "SELECT count(*) FROM rated_records r
        WHERE r.event_time < $1 AND r.customer_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM invoice_items i WHERE i.record_id = r.record_id AND i.kind = r.kind)";

    pub(crate) const LAKE_FILES: &str =
        "DELETE FROM lake_files WHERE dataset = $1 AND partition_path = $2";
    pub(crate) const COUNT_LAKE_FILES: &str =
        "SELECT count(*) FROM lake_files WHERE dataset = $1 AND partition_path = $2";

    impl Layer {
        pub(crate) fn count(&self) -> String {
            format!(
                "SELECT count(*) FROM {} WHERE {}",
                self.table, self.condition
            )
        }

        pub(crate) fn delete(&self) -> String {
            format!("DELETE FROM {} WHERE {}", self.table, self.condition)
        }
    }
}

/// A manifest row's dataset, as the lake names it.
pub(crate) fn lake_dataset(text: &str) -> Result<&'static str, crate::StoreError> {
    ["mediated", "rated"]
        .into_iter()
        .find(|d| *d == text)
        .ok_or_else(|| crate::StoreError::Corrupt(format!("lake_files names the dataset `{text}`")))
}

/// A number as the stores keep it: E.164 with its `+` (so no country
/// code is needed to read it); `table` names where a damaged one was.
pub(crate) fn stored_msisdn(
    table: &str,
    text: &str,
) -> Result<cdrflow_core::normalize::Msisdn, crate::StoreError> {
    cdrflow_core::normalize::normalize_msisdn(
        text,
        cdrflow_core::normalize::CountryCode::SOUTH_AFRICA,
    )
    .map_err(|_| crate::StoreError::Corrupt(format!("{table} holds the number `{text}`")))
}

/// Reference rows as both stores read them back: text columns in the
/// order of [`RATING_V6`]'s tables, mistakes named as corruption.
pub(crate) mod reference_rows {
    use cdrflow_core::normalize::Day;
    use cdrflow_core::reference::ReferenceKind;
    use cdrflow_core::reference::{
        normalize_technology, BundlePurchase, Cell, Customer, Payment, Plan, ReferenceChange,
        ReferenceRow, ReferenceRows, Status, Subscriber,
    };

    use crate::StoreError;

    /// Each table's columns, its key first (the id and `effective_from`).
    pub(crate) fn columns(kind: ReferenceKind) -> &'static [&'static str] {
        match kind {
            ReferenceKind::Subscribers => &[
                "msisdn",
                "effective_from",
                "customer_id",
                "plan_id",
                "region",
                "status",
                "payment",
                "activation_date",
            ],
            ReferenceKind::Customers => &[
                "customer_id",
                "effective_from",
                "name",
                "billing_country",
                "bill_cycle_day",
            ],
            ReferenceKind::Cells => &["cell_id", "effective_from", "region", "technology"],
            ReferenceKind::Plans => &[
                "plan_id",
                "effective_from",
                "name",
                "description",
                "monthly_fee_micros",
                "currency",
            ],
            ReferenceKind::Bundles => &[
                "purchase_id",
                "effective_from",
                "msisdn",
                "bundle_id",
                "expires_at",
            ],
        }
    }

    /// A value to bind, typed as its column is (a NULL too: PostgreSQL
    /// checks a parameter's type against the column's).
    pub(crate) enum Param {
        Text(Option<String>),
        Int(Option<i64>),
        Int32(i32),
    }

    /// A column's values as one array: every row's value in a column has
    /// the same variant.
    impl Param {
        pub(crate) fn text(&self) -> Option<&str> {
            match self {
                Param::Text(t) => t.as_deref(),
                _ => unreachable!("a text column's value"),
            }
        }

        pub(crate) fn int(&self) -> Option<i64> {
            match self {
                Param::Int(i) => *i,
                _ => unreachable!("a bigint column's value"),
            }
        }

        pub(crate) fn int32(&self) -> i32 {
            match self {
                Param::Int32(i) => *i,
                _ => unreachable!("an int column's value"),
            }
        }
    }

    /// A row's values, in [`columns`] order.
    pub(crate) fn params(row: &ReferenceRow) -> Vec<Param> {
        use Param::*;
        let text = |s: &str| Text(Some(s.to_string()));
        match row {
            ReferenceRow::Subscriber(r) => vec![
                text(&r.msisdn.to_string()),
                Int(Some(r.effective_from)),
                text(&r.customer_id),
                text(&r.plan_id),
                Text(r.region.as_deref().map(str::to_string)),
                text(r.status.as_str()),
                text(r.payment.as_str()),
                Text(r.activation_date.map(|d| d.to_string())),
            ],
            ReferenceRow::Customer(r) => vec![
                text(&r.customer_id),
                Int(Some(r.effective_from)),
                text(&r.name),
                text(&r.billing_country),
                Int32(i32::from(r.bill_cycle_day)),
            ],
            ReferenceRow::Cell(r) => vec![
                text(&r.cell_id),
                Int(Some(r.effective_from)),
                text(&r.region),
                text(r.technology),
            ],
            ReferenceRow::Plan(r) => vec![
                text(&r.plan_id),
                Int(Some(r.effective_from)),
                text(&r.name),
                text(&r.description),
                Int(r.monthly_fee_micros),
                Text(r.currency.clone()),
            ],
            ReferenceRow::Bundle(r) => vec![
                text(&r.purchase_id),
                Int(Some(r.effective_from)),
                text(&r.msisdn.to_string()),
                text(&r.bundle_id),
                Int(r.expires_at),
            ],
        }
    }

    /// A file's rows as changes: each a row put.
    pub(crate) fn puts(rows: &ReferenceRows) -> Vec<ReferenceChange> {
        let put = |row| ReferenceChange::Put(row);
        match rows {
            ReferenceRows::Subscribers(r) => r
                .iter()
                .cloned()
                .map(ReferenceRow::Subscriber)
                .map(put)
                .collect(),
            ReferenceRows::Customers(r) => r
                .iter()
                .cloned()
                .map(ReferenceRow::Customer)
                .map(put)
                .collect(),
            ReferenceRows::Cells(r) => r.iter().cloned().map(ReferenceRow::Cell).map(put).collect(),
            ReferenceRows::Plans(r) => r.iter().cloned().map(ReferenceRow::Plan).map(put).collect(),
            ReferenceRows::Bundles(r) => r
                .iter()
                .cloned()
                .map(ReferenceRow::Bundle)
                .map(put)
                .collect(),
        }
    }

    /// The statements that apply `change`, with `placeholder(i)` for the
    /// i-th value (from 1). A row put replaces a removal at the same
    /// instant and a removal a row (one entry per id and instant).
    pub(crate) fn change_sql(
        change: &ReferenceChange,
        placeholder: fn(usize) -> String,
    ) -> Vec<(String, Vec<Param>)> {
        let p = placeholder;
        let text = |s: &str| Param::Text(Some(s.to_string()));
        match change {
            ReferenceChange::Put(row) => {
                let kind = row.kind();
                vec![
                    (
                        format!(
                            "DELETE FROM reference_removals WHERE kind = {} AND id = {} AND effective_from = {}",
                            p(1), p(2), p(3)
                        ),
                        vec![text(kind.as_str()), text(&row.id()), Param::Int(Some(row.effective_from()))],
                    ),
                    (upsert_sql(kind, placeholder), params(row)),
                ]
            }
            ReferenceChange::Remove { kind, id, at } => vec![
                (
                    format!(
                        "DELETE FROM {} WHERE {} = {} AND effective_from = {}",
                        kind.as_str(),
                        columns(*kind)[0],
                        p(1),
                        p(2)
                    ),
                    vec![text(id), Param::Int(Some(*at))],
                ),
                (
                    format!(
                        "INSERT INTO reference_removals (kind, id, effective_from) VALUES ({}, {}, {}) ON CONFLICT DO NOTHING",
                        p(1), p(2), p(3)
                    ),
                    vec![text(kind.as_str()), text(id), Param::Int(Some(*at))],
                ),
            ],
            ReferenceChange::RemoveAll { kind, at } => vec![
                (
                    format!(
                        // The casts type the parameters for PostgreSQL; `WHERE true`
                        // tells SQLite the ON CONFLICT is the INSERT's, not a join's.
                        "INSERT INTO reference_removals (kind, id, effective_from)
                         SELECT DISTINCT CAST({} AS TEXT), {id}, CAST({} AS BIGINT) FROM {table} WHERE true
                         ON CONFLICT DO NOTHING",
                        p(1),
                        p(2),
                        id = columns(*kind)[0],
                        table = kind.as_str(),
                    ),
                    vec![text(kind.as_str()), Param::Int(Some(*at))],
                ),
                (
                    format!("DELETE FROM {} WHERE effective_from = {}", kind.as_str(), p(1)),
                    vec![Param::Int(Some(*at))],
                ),
            ],
        }
    }

    /// The changes among `changes` that records rated before them may
    /// have missed, each once: a subscriber's, a customer's or a cell's row
    /// put or removed, a bundle bought. Rating joins subscribers, their
    /// customers (account, bill-cycle day), a number's purchases and the
    /// record's cell (region, technology); plans and catalogue entries
    /// (the catalogue is versioned by its own dates), truncates and a
    /// purchase cancelled (its removal names no number) are left out.
    pub(crate) fn late_candidates(changes: &[ReferenceChange]) -> Vec<LateCandidate> {
        let candidate = |kind: ReferenceKind, id: &str, by, key: &str, at| LateCandidate {
            kind: kind.as_str(),
            id: id.to_string(),
            by,
            key: key.to_string(),
            at,
        };
        let mut moves: Vec<LateCandidate> = changes
            .iter()
            .filter_map(|change| match change {
                ReferenceChange::Put(row @ ReferenceRow::Subscriber(_)) => Some(candidate(
                    ReferenceKind::Subscribers,
                    &row.id(),
                    LateBy::Number,
                    &row.id(),
                    row.effective_from(),
                )),
                ReferenceChange::Put(row @ ReferenceRow::Customer(_)) => Some(candidate(
                    ReferenceKind::Customers,
                    &row.id(),
                    LateBy::Customer,
                    &row.id(),
                    row.effective_from(),
                )),
                ReferenceChange::Put(row @ ReferenceRow::Cell(_)) => Some(candidate(
                    ReferenceKind::Cells,
                    &row.id(),
                    LateBy::Cell,
                    &row.id(),
                    row.effective_from(),
                )),
                ReferenceChange::Put(ReferenceRow::Bundle(b)) => Some(candidate(
                    ReferenceKind::Bundles,
                    &b.purchase_id,
                    LateBy::Number,
                    &b.msisdn.to_string(),
                    b.effective_from,
                )),
                ReferenceChange::Remove { kind, id, at } => match kind {
                    ReferenceKind::Subscribers => {
                        Some(candidate(*kind, id, LateBy::Number, id, *at))
                    }
                    ReferenceKind::Customers => {
                        Some(candidate(*kind, id, LateBy::Customer, id, *at))
                    }
                    ReferenceKind::Cells => Some(candidate(*kind, id, LateBy::Cell, id, *at)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        moves.sort_unstable();
        moves.dedup();
        moves
    }

    /// Whose rated records a late change touches.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub(crate) enum LateBy {
        /// The records of the number `key`.
        Number,
        /// The records rated for customer `key`, found through its
        /// subscribers' numbers (rated records are indexed by number).
        Customer,
        /// The records that name cell `key`, by the hour (`cell_usage`).
        Cell,
    }

    impl LateBy {
        pub(crate) const ALL: [LateBy; 3] = [LateBy::Number, LateBy::Customer, LateBy::Cell];

        /// The join of `m` (a candidate) to `rated_records r`.
        pub(crate) fn records(self) -> &'static str {
            match self {
                LateBy::Number => {
                    "JOIN rated_records r ON r.msisdn = m.key AND r.event_time >= m.at"
                }
                LateBy::Customer => {
                    "JOIN rated_records r ON r.msisdn IN (SELECT s.msisdn FROM subscribers s WHERE s.customer_id = m.key)
                        AND r.customer_id = m.key AND r.event_time >= m.at"
                }
                LateBy::Cell => {
                    "JOIN cell_usage r ON r.cell_id = m.key AND r.last_event_time >= m.at"
                }
            }
        }

        /// What a late change's row sums over [`records`](Self::records)'
        /// rows: the records, the first one's time, the billing periods.
        /// For cells, by the hour: the hour the change falls in counts
        /// whole, so `records` may include some of that hour before it.
        fn aggregates(self) -> &'static str {
            match self {
                LateBy::Number | LateBy::Customer => {
                    "count(*), min(r.event_time), min(r.billing_period), max(r.billing_period)"
                }
                LateBy::Cell => {
                    "sum(r.records), min(r.first_event_time), min(r.first_period), max(r.last_period)"
                }
            }
        }
    }

    /// A change that is late if the records `by` and `key` name include
    /// some at or after `at`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub(crate) struct LateCandidate {
        pub kind: &'static str,
        pub id: String,
        pub by: LateBy,
        pub key: String,
        pub at: i64,
    }

    /// What [`late_changes`](crate::Reference::late_changes) reads back,
    /// the columns in `LateReferenceChange`'s order.
    pub(crate) const SELECT_LATE: &str = "SELECT kind, id, effective_from, records,
        first_event_time, first_period, last_period
        FROM late_reference_changes ORDER BY kind, id, effective_from";

    /// The aggregate over the records a change touches from its instant
    /// on: `moves` is the caller's (one [`LateCandidate`] or an array of
    /// them, `m(kind, id, key, at)`), joined by [`LateBy::records`].
    pub(crate) fn insert_late_sql(by: LateBy, moves: &str) -> String {
        format!(
            "INSERT INTO late_reference_changes (kind, id, effective_from, records,
                 first_event_time, first_period, last_period)
             SELECT m.kind, m.id, m.at, {aggregates}
             FROM {moves} {records}
             GROUP BY m.kind, m.id, m.at
             ON CONFLICT DO NOTHING",
            aggregates = by.aggregates(),
            records = by.records(),
        )
    }

    /// A subscribers row `s` that is its number's row now: no later row,
    /// and no removal after it. (Written as `effective_from = (SELECT
    /// max…)`, PostgreSQL took the condition to keep one row in 200,
    /// sorted every match of a number prefix and searched in 15–25 ms what
    /// the anti-join answers in 0.3.)
    pub(crate) const CURRENT_SUBSCRIBER: &str = "NOT EXISTS (SELECT 1 FROM subscribers t
                        WHERE t.msisdn = s.msisdn AND t.effective_from > s.effective_from)
        AND NOT EXISTS (SELECT 1 FROM reference_removals r
                        WHERE r.kind = 'subscribers' AND r.id = s.msisdn AND r.effective_from > s.effective_from)";

    pub(crate) const SELECT_REMOVALS: &str =
        "SELECT kind, id, effective_from FROM reference_removals ORDER BY kind, id, effective_from";

    /// A stored removal's kind.
    pub(crate) fn removal_kind(kind: &str) -> Result<ReferenceKind, StoreError> {
        ReferenceKind::parse(kind).ok_or_else(|| corrupt("reference_removals", "the kind", kind))
    }

    /// The upsert of one row, with `placeholder(i)` for the i-th value (from 1).
    pub(crate) fn upsert_sql(kind: ReferenceKind, placeholder: fn(usize) -> String) -> String {
        let values: Vec<String> = (1..=columns(kind).len()).map(placeholder).collect();
        upsert_from(kind, &format!("VALUES ({})", values.join(", ")))
    }

    /// The upsert of the rows `source` yields (`VALUES (…)`, `SELECT …`),
    /// in [`columns`] order.
    pub(crate) fn upsert_from(kind: ReferenceKind, source: &str) -> String {
        let columns = columns(kind);
        let updates: Vec<String> = columns[2..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        format!(
            "INSERT INTO {table} ({columns}) {source} ON CONFLICT ({id}, effective_from) DO UPDATE SET {updates}",
            table = kind.as_str(),
            columns = columns.join(", "),
            id = columns[0],
            updates = updates.join(", "),
        )
    }

    pub(crate) fn select_sql(kind: ReferenceKind) -> String {
        let columns = columns(kind);
        format!(
            "SELECT {} FROM {} ORDER BY {}, effective_from",
            columns.join(", "),
            kind.as_str(),
            columns[0]
        )
    }

    fn corrupt(table: &str, what: &str, value: &str) -> StoreError {
        StoreError::Corrupt(format!("{table} holds {what} `{value}`"))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn subscriber(
        msisdn: &str,
        effective_from: i64,
        customer_id: &str,
        plan_id: &str,
        region: Option<&str>,
        status: &str,
        payment: &str,
        activation_date: Option<&str>,
    ) -> Result<Subscriber, StoreError> {
        let table = "subscribers";
        Ok(Subscriber {
            msisdn: super::stored_msisdn(table, msisdn)?,
            effective_from,
            customer_id: customer_id.into(),
            plan_id: plan_id.into(),
            region: region.map(Into::into),
            status: Status::parse(status).ok_or_else(|| corrupt(table, "the status", status))?,
            payment: Payment::parse(payment)
                .ok_or_else(|| corrupt(table, "the payment", payment))?,
            activation_date: activation_date
                .map(|d| Day::parse(d).ok_or_else(|| corrupt(table, "the date", d)))
                .transpose()?,
        })
    }

    pub(crate) fn customer(
        customer_id: &str,
        effective_from: i64,
        name: String,
        billing_country: String,
        bill_cycle_day: i64,
    ) -> Result<Customer, StoreError> {
        Ok(Customer {
            customer_id: customer_id.into(),
            effective_from,
            name,
            billing_country,
            bill_cycle_day: u8::try_from(bill_cycle_day)
                .ok()
                .filter(|d| (1..=28).contains(d))
                .ok_or_else(|| {
                    corrupt(
                        "customers",
                        "the bill-cycle day",
                        &bill_cycle_day.to_string(),
                    )
                })?,
        })
    }

    pub(crate) fn plan(
        plan_id: &str,
        effective_from: i64,
        name: String,
        description: String,
        monthly_fee_micros: Option<i64>,
        currency: Option<String>,
    ) -> Plan {
        Plan {
            plan_id: plan_id.into(),
            effective_from,
            name,
            description,
            monthly_fee_micros,
            currency,
        }
    }

    pub(crate) fn bundle(
        purchase_id: &str,
        effective_from: i64,
        msisdn: &str,
        bundle_id: &str,
        expires_at: Option<i64>,
    ) -> Result<BundlePurchase, StoreError> {
        Ok(BundlePurchase {
            purchase_id: purchase_id.into(),
            effective_from,
            msisdn: super::stored_msisdn("bundles", msisdn)?,
            bundle_id: bundle_id.into(),
            expires_at,
        })
    }

    pub(crate) fn cell(
        cell_id: &str,
        effective_from: i64,
        region: &str,
        technology: &str,
    ) -> Result<Cell, StoreError> {
        Ok(Cell {
            cell_id: cell_id.into(),
            effective_from,
            region: region.into(),
            technology: normalize_technology(technology)
                .ok_or_else(|| corrupt("cells", "the technology", technology))?,
        })
    }
}

/// Rated records as both stores write and read them.
pub(crate) mod rated_rows {
    use cdrflow_core::charging::RatedRecord;
    use cdrflow_core::model::Kind;
    use cdrflow_core::reference::{normalize_technology, BillingPeriod};

    use crate::{RatedQuery, StoreError};

    /// [`COLUMNS`] of the table under the alias `alias`, for a join.
    pub(crate) fn columns_of(alias: &str) -> String {
        let columns: Vec<String> = COLUMNS
            .split(',')
            .map(|c| format!("{alias}.{}", c.trim()))
            .collect();
        columns.join(", ")
    }

    /// `rated_records`' columns, in the order rows are written and read.
    pub(crate) const COLUMNS: &str =
        "record_id, msisdn, event_time, kind, service_type, other_party,
        customer_id, plan_id, catalogue_version, destination_id, destination_class, band, rate_id,
        region, cell_id, technology, usage_units, billed_units, allowance_id, allowance_units, cost_micros,
        currency, billing_period";

    /// The `WHERE` of `query`, with `placeholder(i)` for its i-th value
    /// (from 1): the values are [`filter_values`]'s, in order.
    pub(crate) fn filter(query: &RatedQuery, placeholder: fn(usize) -> String) -> String {
        let mut clauses = Vec::new();
        let mut next = 0;
        let mut clause = |sql: &str| {
            next += 1;
            clauses.push(sql.replace('?', &placeholder(next)));
        };
        if query.msisdn.is_some() {
            clause("msisdn = ?");
        }
        if query.record_id.is_some() {
            clause("record_id = ?");
        }
        if query.from.is_some() {
            clause("event_time >= ?");
        }
        if query.to.is_some() {
            clause("event_time < ?");
        }
        if query.period.is_some() {
            clause("billing_period = ?");
        }
        let limit = query.limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
        let filter = match clauses.is_empty() {
            true => String::new(),
            false => format!("WHERE {}", clauses.join(" AND ")),
        };
        format!("{filter} ORDER BY event_time, record_id{limit}")
    }

    /// A filter's values: text for numbers and periods, integers for times.
    pub(crate) enum FilterValue {
        Text(String),
        Millis(i64),
    }

    pub(crate) fn filter_values(query: &RatedQuery) -> Vec<FilterValue> {
        let mut values = Vec::new();
        if let Some(m) = query.msisdn {
            values.push(FilterValue::Text(m.to_string()));
        }
        values.extend(query.record_id.clone().map(FilterValue::Text));
        values.extend(query.from.map(FilterValue::Millis));
        values.extend(query.to.map(FilterValue::Millis));
        if let Some(p) = query.period {
            values.push(FilterValue::Text(p.to_string()));
        }
        values
    }

    fn corrupt(what: &str, value: &str) -> StoreError {
        StoreError::Corrupt(format!("rated_records holds {what} `{value}`"))
    }

    /// A row's columns in [`COLUMNS`] order, as read back.
    pub(crate) struct StoredRow {
        pub record_id: String,
        pub msisdn: String,
        pub event_time: i64,
        pub kind: String,
        pub service_type: String,
        pub other_party: Option<String>,
        pub customer_id: Option<String>,
        pub plan_id: String,
        pub version: String,
        pub destination_id: Option<String>,
        pub destination_class: Option<String>,
        pub band: Option<String>,
        pub rate_id: String,
        pub region: Option<String>,
        pub cell_id: Option<String>,
        pub technology: Option<String>,
        pub usage_units: i64,
        pub billed_units: i64,
        pub allowance_id: Option<String>,
        pub allowance_units: i64,
        pub cost_micros: i64,
        pub currency: String,
        pub billing_period: String,
    }

    impl StoredRow {
        pub(crate) fn into_record(self) -> Result<RatedRecord, StoreError> {
            let class = stored_class(self.destination_class.as_deref())?;
            Ok(RatedRecord {
                record_id: self.record_id.into(),
                msisdn: super::stored_msisdn("rated_records", &self.msisdn)?,
                event_time: self.event_time,
                kind: Kind::parse(&self.kind).ok_or_else(|| corrupt("the kind", &self.kind))?,
                service_type: self.service_type.into(),
                other_party: self
                    .other_party
                    .as_deref()
                    .map(|m| super::stored_msisdn("rated_records", m))
                    .transpose()?,
                customer_id: self.customer_id.map(Into::into),
                plan: self.plan_id.into(),
                version: self.version.into(),
                destination: self.destination_id.map(Into::into).zip(class),
                band: self.band.map(Into::into),
                rate: self.rate_id.into(),
                region: self.region.map(Into::into),
                cell_id: self.cell_id.map(Into::into),
                technology: match self.technology.as_deref() {
                    None => None,
                    Some(text) => Some(
                        normalize_technology(text)
                            .ok_or_else(|| corrupt("the technology", text))?,
                    ),
                },
                usage_units: self.usage_units as u64,
                billed_units: self.billed_units as u64,
                allowance: self
                    .allowance_id
                    .map(|id| (id.into(), self.allowance_units as u64)),
                cost_micros: self.cost_micros,
                currency: self.currency.into(),
                billing_period: stored_billing_period(&self.billing_period)?,
            })
        }
    }

    /// A stored destination class as the static name rated records carry.
    pub(crate) fn stored_class(text: Option<&str>) -> Result<Option<&'static str>, StoreError> {
        text.map(|text| {
            DESTINATION_CLASSES
                .iter()
                .find(|c| **c == text)
                .copied()
                .ok_or_else(|| corrupt("the destination class", text))
        })
        .transpose()
    }

    pub(crate) fn stored_billing_period(text: &str) -> Result<BillingPeriod, StoreError> {
        BillingPeriod::parse(text).ok_or_else(|| corrupt("the billing period", text))
    }

    /// The classes a catalogue names (`cdrflow_catalogue::DestinationClass`),
    /// as the static names rated records carry.
    const DESTINATION_CLASSES: [&str; 7] = [
        "national",
        "international",
        "mobile",
        "fixed",
        "on_net",
        "premium",
        "zero_rated",
    ];
}

/// A day range the stores' date types can hold: open ranges arrive as the
/// extremes of `i32`, which PostgreSQL's DATE arithmetic refuses.
pub(crate) fn clamp_day(day: Day) -> Day {
    // 0001-01-01 .. 9999-12-31
    Day(day.0.clamp(-719_162, 2_932_896))
}

/// The counters a checkpoint adds, by stored name.
pub(crate) fn counter_entries(counts: &Counts) -> Vec<(String, u64)> {
    let mut out = vec![
        ("records_in".to_string(), counts.records_in),
        ("late_events".to_string(), counts.late_events),
        ("pseudonymous".to_string(), counts.pseudonymous),
        (
            "unknown_subscribers".to_string(),
            counts.unknown_subscribers,
        ),
        ("changes.applied".to_string(), counts.changes.applied),
        ("changes.skipped".to_string(), counts.changes.skipped),
        ("changes.ignored".to_string(), counts.changes.ignored),
        ("changes.late".to_string(), counts.changes.late),
    ];
    out.extend(
        counts
            .accepted
            .iter()
            .map(|(k, v)| (format!("accepted.{k}"), *v)),
    );
    out.extend(
        counts
            .rejected
            .iter()
            .map(|(k, v)| (format!("rejected.{k}"), *v)),
    );
    out.extend(
        counts
            .duplicates
            .iter()
            .map(|(k, v)| (format!("duplicates.{}", k.as_str()), *v)),
    );
    out.retain(|(_, v)| *v > 0);
    out
}

/// The inverse of [`counter_entries`]; unknown names are ignored.
pub(crate) fn apply_counter(counts: &mut Counts, name: &str, value: u64) {
    match name.split_once('.') {
        None if name == "records_in" => counts.records_in = value,
        None if name == "late_events" => counts.late_events = value,
        None if name == "pseudonymous" => counts.pseudonymous = value,
        None if name == "unknown_subscribers" => counts.unknown_subscribers = value,
        Some(("changes", "applied")) => counts.changes.applied = value,
        Some(("changes", "skipped")) => counts.changes.skipped = value,
        Some(("changes", "ignored")) => counts.changes.ignored = value,
        Some(("changes", "late")) => counts.changes.late = value,
        Some(("accepted", kind)) => {
            if let Some(kind) = Kind::parse(kind) {
                counts.accepted.insert(kind, value);
            }
        }
        Some(("rejected", reason)) => {
            if let Some(reason) = RejectReason::parse(reason) {
                counts.rejected.insert(reason, value);
            }
        }
        Some(("duplicates", reason)) => {
            let reason = [
                DuplicateReason::SameRecordId,
                DuplicateReason::SameSourcePosition,
            ]
            .into_iter()
            .find(|r| r.as_str() == reason);
            if let Some(reason) = reason {
                counts.duplicates.insert(reason, value);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use cdrflow_core::aggregate::{RowKey, Totals};
    use cdrflow_core::dedup::{DedupEntry, RecordKey};
    use cdrflow_core::mediation::{MediationConfig, Mediator, DEDUP_IDENTITIES, WATERMARK};
    use cdrflow_core::operator::{Operator, ReadError, StateReader, StateTable};
    use cdrflow_core::rating::{Tariff, TariffOverrides};

    use crate::prelude::*;
    use crate::StateAt;

    /// Reference rows written before the search index (schema v12), in SQL
    /// both stores take: two customers, one of them removed since.
    pub(crate) const VERSION_12_CUSTOMERS: &str = "
        INSERT INTO customers (customer_id, effective_from, name, billing_country, bill_cycle_day)
            VALUES ('C1', -9223372036854775808, 'Hôtel Atlas', 'MA', 1),
                   ('C2', -9223372036854775808, 'Banque Zellige', 'MA', 1);
        INSERT INTO reference_removals (kind, id, effective_from) VALUES ('customers', 'C2', 5);";

    /// The ids `q` finds in `store`.
    pub(crate) fn found(store: &mut dyn Store, q: &str) -> Vec<String> {
        use cdrflow_core::normalize::CountryCode;
        use cdrflow_core::search::{Find, SearchQuery};
        let query = SearchQuery {
            find: Find::parse(q, CountryCode::SOUTH_AFRICA),
            kinds: Vec::new(),
            min_fee_micros: None,
            max_fee_micros: None,
            limit: 20,
        };
        store
            .search(&query)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect()
    }

    /// A store opened over [`VERSION_12_CUSTOMERS`] finds them as they are now.
    pub(crate) fn check_version_12_search(store: &mut dyn Store) {
        assert_eq!(found(store, "hotel"), ["C1"]);
        assert!(found(store, "zellige").is_empty(), "C2 was removed");
    }

    /// What schema v2 kept of the mediator: dedup blobs per scope (one from
    /// before v2, without a first minute) and watermarks.
    pub(crate) struct Version2State {
        pub dedup: Vec<(&'static str, Option<i32>, i32, Vec<u8>)>,
        pub watermarks: Vec<(&'static str, i64)>,
    }

    fn blob(minutes: &[i32]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &minute) in minutes.iter().enumerate() {
            DedupEntry {
                key: RecordKey(0xfeed_0000 + i as u128 + minute as u128),
                event_minute: minute,
            }
            .encode_into(&mut out);
        }
        out
    }

    impl Version2State {
        pub fn example() -> Version2State {
            let watermark = 28_500_000 * 60_000_i64;
            Version2State {
                dedup: vec![
                    ("files", None, 28_499_000, blob(&[28_497_000, 28_499_000])),
                    (
                        "files",
                        Some(28_499_990),
                        28_500_000,
                        blob(&[28_499_990, 28_500_000]),
                    ),
                    (
                        "kafka:cdr_data:3",
                        Some(28_400_000),
                        28_400_010,
                        blob(&[28_400_000, 28_400_010]),
                    ),
                ],
                watermarks: vec![("files", watermark), ("kafka:cdr_data:3", watermark - 1)],
            }
        }

        /// The migrated store answers as v2 did, and a mediator resumes from it.
        pub fn check(&self, store: &mut dyn Store) {
            for (scope, watermark) in &self.watermarks {
                let at = StateAt {
                    operator: "mediation",
                    scope,
                    table: WATERMARK.name,
                };
                assert_eq!(
                    store.state_value(at, "").unwrap(),
                    Some(watermark.to_string().into_bytes()),
                    "{scope}"
                );
                let mut spans = Vec::new();
                let at = StateAt {
                    table: DEDUP_IDENTITIES.name,
                    ..at
                };
                store
                    .state_spans(at, i32::MIN, i32::MAX, &mut |v| spans.push(v.to_vec()))
                    .unwrap();
                let expected: Vec<Vec<u8>> = self
                    .dedup
                    .iter()
                    .filter(|d| d.0 == *scope)
                    .map(|d| d.3.clone())
                    .collect();
                assert_eq!(spans, expected, "{scope}");
            }
            let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
            let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
            mediator
                .on_start(&mut Scoped {
                    store,
                    scope: "files",
                })
                .unwrap();
            assert_eq!(mediator.watermark(), Some(self.watermarks[0].1));
        }
    }

    /// A store seen as one scope's mediation state.
    struct Scoped<'s> {
        store: &'s mut dyn Store,
        scope: &'s str,
    }

    impl StateReader for Scoped<'_> {
        fn value(&mut self, table: &StateTable, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
            let at = StateAt {
                operator: "mediation",
                scope: self.scope,
                table: table.name,
            };
            self.store
                .state_value(at, key)
                .map_err(|e| ReadError(e.to_string()))
        }

        fn spans(
            &mut self,
            table: &StateTable,
            first: i32,
            last: i32,
            visit: &mut dyn FnMut(&[u8]),
        ) -> Result<(), ReadError> {
            let at = StateAt {
                operator: "mediation",
                scope: self.scope,
                table: table.name,
            };
            self.store
                .state_spans(at, first, last, visit)
                .map_err(|e| ReadError(e.to_string()))
        }

        fn summary_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>, ReadError> {
            self.store
                .stored_totals(rows)
                .map_err(|e| ReadError(e.to_string()))
        }
    }
}

/// The search index (issue 14's search indexer) as both stores write and
/// query it: one document per reference id (`search_documents`), the
/// words indexed by the store's own full-text engine — FTS5 in SQLite, a
/// `tsvector` with a GIN index in PostgreSQL (each store's migration v13).
pub(crate) mod search_rows {
    use cdrflow_core::reference::ReferenceKind;
    use cdrflow_core::reference::{ReferenceChange, ReferenceData};
    use cdrflow_core::search::{number_range, Find, SearchHit, SearchQuery};

    use super::reference_rows::{puts, Param};
    use crate::StoreError;

    /// Every row in force in `data`, as the puts that index it from nothing
    /// (the rebuild a migration asks for).
    pub(crate) fn current_puts(data: &ReferenceData) -> Vec<ReferenceChange> {
        ReferenceKind::ALL
            .into_iter()
            .flat_map(|kind| puts(&data.current(kind)))
            .collect()
    }

    /// A document written unless the stored one is newer; `values` gives
    /// kind, id, effective_from, removed, title, words, msisdn, fee_micros
    /// in that order.
    pub(crate) fn upsert_sql(values: &str) -> String {
        format!(
            "INSERT INTO search_documents (kind, id, effective_from, removed, title, words, msisdn, fee_micros)
             {values}
             ON CONFLICT (kind, id) DO UPDATE SET effective_from = excluded.effective_from,
                 removed = excluded.removed, title = excluded.title, words = excluded.words,
                 msisdn = excluded.msisdn, fee_micros = excluded.fee_micros
             WHERE excluded.effective_from >= search_documents.effective_from"
        )
    }

    /// A truncate: every document of a kind from `$2` or before removed,
    /// as of `$2` (so no older change brings one back).
    pub(crate) fn remove_all_sql(removed: &str) -> String {
        format!(
            "UPDATE search_documents SET removed = {removed}, effective_from = $2
             WHERE kind = $1 AND effective_from <= $2"
        )
    }

    /// The conditions besides the text: not removed, the kinds asked for,
    /// the fee range. Placeholders from `$first`; returns the SQL (starting
    /// with ` AND`) and its values.
    fn filters(query: &SearchQuery, first: usize, not_removed: &str) -> (String, Vec<Param>) {
        let mut sql = format!(" AND d.removed = {not_removed}");
        let mut values = Vec::new();
        let next = |value: Param, values: &mut Vec<Param>| {
            values.push(value);
            format!("${}", first + values.len() - 1)
        };
        if !query.kinds.is_empty() {
            let kinds: Vec<String> = query
                .kinds
                .iter()
                .map(|k| next(Param::Text(Some(k.as_str().into())), &mut values))
                .collect();
            sql.push_str(&format!(" AND d.kind IN ({})", kinds.join(", ")));
        }
        if let Some(min) = query.min_fee_micros {
            sql.push_str(&format!(
                " AND d.fee_micros >= {}",
                next(Param::Int(Some(min)), &mut values)
            ));
        }
        if let Some(max) = query.max_fee_micros {
            sql.push_str(&format!(
                " AND d.fee_micros <= {}",
                next(Param::Int(Some(max)), &mut values)
            ));
        }
        (sql, values)
    }

    /// What a result row holds: kind, id, title, fee_micros.
    const RESULT_COLUMNS: &str = "d.kind, d.id, d.title, d.fee_micros";

    pub(crate) fn hit(
        kind: &str,
        id: String,
        title: String,
        fee_micros: Option<i64>,
    ) -> Result<SearchHit, StoreError> {
        Ok(SearchHit {
            kind: ReferenceKind::parse(kind).ok_or_else(|| {
                StoreError::Corrupt(format!("search_documents holds the kind `{kind}`"))
            })?,
            id,
            title,
            fee_micros,
        })
    }

    /// How a store's full-text engine is asked for words.
    pub(crate) struct Engine {
        /// The tables of a words search, the documents as `d`.
        pub words_from: &'static str,
        /// The condition on `$1`, the engine's query text.
        pub words_match: &'static str,
        /// The engine's own order, cheap to follow (empty: none).
        pub words_order: &'static str,
        /// The query text for the words.
        pub query_text: fn(&[String]) -> String,
        /// How the store spells "not removed".
        pub not_removed: &'static str,
        /// Makes a number compare byte by byte, as the documents' numbers
        /// do (the subscribers table's may have the database's collation).
        pub bytewise: &'static str,
    }

    /// The search `query` as SQL (`$n` placeholders) and its values, the
    /// limit last: words through `engine`; a number prefix as a range of
    /// the documents' `msisdn` index and of the subscribers table's key;
    /// nothing but filters in (kind, id) order. Subscribers are rows of
    /// their table in force now (they have no document): found by number,
    /// or listed, never by words or fee.
    pub(crate) fn select(query: &SearchQuery, engine: &Engine) -> (String, Vec<Param>) {
        let text = |t: String| Param::Text(Some(t));
        let subscribers_too = (query.kinds.is_empty()
            || query.kinds.contains(&ReferenceKind::Subscribers))
            && query.min_fee_micros.is_none()
            && query.max_fee_micros.is_none();
        // (the documents' tables and condition, the subscribers' condition,
        // the order of the documents, of the subscribers, of the whole)
        let (documents, subscribers, order, mut values) = match &query.find {
            Find::Words(words) => (
                format!("{} WHERE {}", engine.words_from, engine.words_match),
                None,
                [engine.words_order, "", ""],
                vec![text((engine.query_text)(words))],
            ),
            Find::NumberPrefix(prefix) => {
                let (from, before) = number_range(prefix);
                let bounded = before.is_some();
                let range = |column: &str| match bounded {
                    true => format!("{column} >= $1 AND {column} < $2"),
                    false => format!("{column} >= $1"),
                };
                (
                    format!("search_documents d WHERE {}", range("d.msisdn")),
                    Some(range("s.msisdn")),
                    [
                        "ORDER BY d.msisdn",
                        "ORDER BY s.msisdn",
                        "ORDER BY number, kind, id",
                    ],
                    std::iter::once(from).chain(before).map(text).collect(),
                )
            }
            Find::Everything => (
                "search_documents d WHERE true".to_string(),
                Some("true".to_string()),
                [
                    "ORDER BY d.kind, d.id",
                    "ORDER BY s.msisdn",
                    "ORDER BY kind, id",
                ],
                vec![],
            ),
        };
        let (filters, filter_values) = filters(query, values.len() + 1, engine.not_removed);
        values.extend(filter_values);
        values.push(Param::Int(Some(i64::from(query.limit))));
        let limit = values.len();
        let [documents_order, subscribers_order, whole_order] = order;
        let sql = match subscribers.filter(|_| subscribers_too) {
            None => format!(
                "SELECT {RESULT_COLUMNS} FROM {documents}{filters} {documents_order} LIMIT ${limit}"
            ),
            // Each part in the order of its own index and cut at the limit,
            // then the two merged: sorting every subscriber a prefix matches
            // would cost a million rows for `06`.
            Some(condition) => format!(
                "SELECT kind, id, title, fee_micros FROM (
                     SELECT * FROM (SELECT {RESULT_COLUMNS}, d.msisdn AS number FROM {documents}{filters}
                                    {documents_order} LIMIT ${limit}) AS documents
                     UNION ALL
                     SELECT * FROM (SELECT 'subscribers' AS kind, s.msisdn AS id, s.msisdn AS title,
                                           CAST(NULL AS BIGINT) AS fee_micros, s.msisdn{bytewise} AS number
                                    FROM subscribers s WHERE {condition} AND {current}
                                    {subscribers_order} LIMIT ${limit}) AS subscribers
                 ) h {whole_order} LIMIT ${limit}",
                bytewise = engine.bytewise,
                current = super::reference_rows::CURRENT_SUBSCRIBER,
            ),
        };
        (sql, values)
    }
}
