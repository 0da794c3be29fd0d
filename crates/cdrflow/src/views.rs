//! How stored results are shown: one place for JSON and CSV shapes, shared
//! by the CLI (and later the API) so every surface says the same thing.

use cdrflow_core::analytics::daily::{format_centis, format_data_mb, GroupTotals, Stat, StatKey};
use cdrflow_core::analytics::windows::event_type;
use cdrflow_core::charging::RatedRecord;
use cdrflow_core::model::Kind;
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::{format_timestamp, format_timestamp_ms};
use cdrflow_store::schema::{table_for, Measure};
use cdrflow_store::{
    StatGrain, StoredAnomaly, StoredInvoice, StoredLateEvent, StoredNote, StoredReject,
    SummaryRecord, WindowRecord,
};
use serde_json::{json, Map, Value};

/// The CSV export header; the first columns are a compatibility contract.
pub const CSV_HEADER: &str =
    "kind,msisdn,date,type,up_bytes,down_bytes,duration_sec,cost,records,amount";

/// The rated records export's header: issue 12's columns first.
pub const RATED_CSV_HEADER: &str = "record_id,msisdn,customer_id,plan_id,destination_id,rate_id,billed_units,cost,currency,\
event_time,kind,service_type,other_party,catalogue_version,destination_class,band,region,technology,usage_units,billing_period,allowance_id,allowance_units,cell_id";

/// The invoices export's header: issue 13's columns first.
pub const INVOICE_CSV_HEADER: &str = "invoice_number,customer_id,period,voice,sms,data,recurring,discounts,subtotal,tax,total,currency,\
other,status,invoice_id,entity";

/// Micro-units for people: no trailing zeros past the cents, never a digit lost.
pub fn money_text(micros: i64) -> String {
    let text = format_micros(i128::from(micros));
    let cut = text.trim_end_matches('0');
    let decimals = cut.len() - cut.find('.').expect("six decimals") - 1;
    text[..text.len() - 4 + decimals.saturating_sub(2).min(4)].to_string()
}

/// An invoice as one CSV line matching [`INVOICE_CSV_HEADER`].
pub fn invoice_csv(i: &StoredInvoice) -> String {
    let t = &i.totals;
    [
        i.number.clone().unwrap_or_default(),
        csv_field(&i.customer_id),
        i.period.to_string(),
        money_text(t.voice),
        money_text(t.sms),
        money_text(t.data),
        money_text(t.recurring),
        money_text(t.discounts),
        money_text(t.subtotal),
        money_text(t.tax),
        money_text(t.total),
        i.currency.clone(),
        money_text(t.other),
        i.status.as_str().to_string(),
        csv_field(&i.invoice_id),
        csv_field(&i.entity),
    ]
    .join(",")
}

pub const NOTE_CSV_HEADER: &str =
    "note_number,kind,invoice_number,customer_id,period,rerated_period,\
voice,sms,data,other,recurring,discounts,subtotal,tax,total,currency,note_id,entity";

/// A credit or debit note as one CSV line matching [`NOTE_CSV_HEADER`]
/// (figures are differences: negative when credited).
pub fn note_csv(n: &StoredNote) -> String {
    let mut fields = vec![
        csv_field(&n.number),
        n.kind.as_str().to_string(),
        csv_field(&n.invoice_number),
        csv_field(&n.customer_id),
        n.period.to_string(),
        n.rerated_period.to_string(),
    ];
    fields.extend(n.totals.in_order().map(money_text));
    fields.extend([
        n.currency.clone(),
        csv_field(&n.note_id),
        csv_field(&n.entity),
    ]);
    fields.join(",")
}

/// A rated record as one CSV line matching [`RATED_CSV_HEADER`].
pub fn rated_csv(r: &RatedRecord) -> String {
    let text = |v: Option<&str>| v.map_or(String::new(), csv_field);
    [
        csv_field(&r.record_id),
        r.msisdn.to_string(),
        text(r.customer_id.as_deref()),
        csv_field(&r.plan),
        text(r.destination.as_ref().map(|d| &*d.0)),
        csv_field(&r.rate),
        r.billed_units.to_string(),
        format_micros(i128::from(r.cost_micros)),
        csv_field(&r.currency),
        format_timestamp_ms(r.event_time),
        r.kind.as_str().to_string(),
        csv_field(&r.service_type),
        r.other_party.map_or(String::new(), |m| m.to_string()),
        csv_field(&r.version),
        text(r.destination.as_ref().map(|d| d.1)),
        text(r.band.as_deref()),
        text(r.region.as_deref()),
        text(r.technology.as_deref()),
        r.usage_units.to_string(),
        r.billing_period.to_string(),
        text(r.allowance.as_ref().map(|a| &*a.0)),
        r.allowance.as_ref().map_or(0, |a| a.1).to_string(),
        text(r.cell_id.as_deref()),
    ]
    .join(",")
}

/// A rated record as JSON: the CSV's columns by name; money as a decimal string.
pub fn rated_json(r: &RatedRecord) -> Value {
    json!({
        "record_id": &*r.record_id,
        "msisdn": r.msisdn.to_string(),
        "customer_id": r.customer_id.as_deref(),
        "plan_id": &*r.plan,
        "destination_id": r.destination.as_ref().map(|d| &*d.0),
        "rate_id": &*r.rate,
        "billed_units": r.billed_units,
        "cost": format_micros(i128::from(r.cost_micros)),
        "currency": &*r.currency,
        "event_time": format_timestamp_ms(r.event_time),
        "kind": r.kind.as_str(),
        "service_type": &*r.service_type,
        "other_party": r.other_party.map(|m| m.to_string()),
        "catalogue_version": &*r.version,
        "destination_class": r.destination.as_ref().map(|d| d.1),
        "band": r.band.as_deref(),
        "region": r.region.as_deref(),
        "cell_id": r.cell_id.as_deref(),
        "technology": r.technology.as_deref(),
        "usage_units": r.usage_units,
        "billing_period": r.billing_period.to_string(),
        "allowance_id": r.allowance.as_ref().map(|a| &*a.0),
        "allowance_units": r.allowance.as_ref().map_or(0, |a| a.1),
    })
}

/// A summary as JSON: only the measures its kind has; money as decimal strings.
pub fn summary_json(record: &SummaryRecord) -> Value {
    let mut object = Map::new();
    object.insert("kind".into(), json!(record.kind.as_str()));
    object.insert("msisdn".into(), json!(record.msisdn));
    object.insert("date".into(), json!(record.date.to_string()));
    object.insert("type".into(), json!(record.service_type));
    for &measure in table_for(record.kind).measures {
        let value = measure.value(&record.totals);
        let shown = if measure.is_money() {
            json!(format_micros(value))
        } else {
            json!(value as u128 as u64)
        };
        let name = match measure {
            Measure::Records => "records",
            Measure::UpBytes => "up_bytes",
            Measure::DownBytes => "down_bytes",
            Measure::DurationSec => "duration_sec",
            Measure::Cost => "cost_wak",
            Measure::Amount => "amount",
        };
        object.insert(name.into(), shown);
    }
    Value::Object(object)
}

/// A summary as one CSV line matching [`CSV_HEADER`]; empty where a column does not apply.
pub fn summary_csv(record: &SummaryRecord) -> String {
    let measures = table_for(record.kind).measures;
    let cell = |m: Measure| -> String {
        if !measures.contains(&m) {
            return String::new();
        }
        let value = m.value(&record.totals);
        if m.is_money() {
            format_micros(value)
        } else {
            value.to_string()
        }
    };
    [
        record.kind.as_str().to_string(),
        csv_field(&record.msisdn),
        record.date.to_string(),
        csv_field(&record.service_type),
        cell(Measure::UpBytes),
        cell(Measure::DownBytes),
        cell(Measure::DurationSec),
        cell(Measure::Cost),
        cell(Measure::Records),
        cell(Measure::Amount),
    ]
    .join(",")
}

/// The windows export header: seed 003's `real_time_metrics` columns, then
/// whether the window is final.
pub const WINDOW_CSV_HEADER: &str = "window_start,window_end,region,event_type,total_events,incoming_calls,outgoing_calls,sms_count,total_data_mb,total_recharge_amount,is_final";

/// A window as one CSV line matching [`WINDOW_CSV_HEADER`]: times in RFC
/// 3339 UTC, megabytes and money as exact decimals.
pub fn window_csv(window: &WindowRecord) -> String {
    let m = &window.measures;
    [
        format_timestamp(window.start),
        format_timestamp(window.end),
        csv_field(&window.region),
        event_type(window.kind).to_string(),
        m.total_events.to_string(),
        m.incoming_calls.to_string(),
        m.outgoing_calls.to_string(),
        m.sms_count.to_string(),
        // A megabyte is 10^6 bytes: bytes are micro-megabytes.
        format_micros(i128::from(m.data_bytes)),
        format_micros(i128::from(m.recharge_micros)),
        window.is_final.to_string(),
    ]
    .join(",")
}

/// A window as JSON, in the same terms as [`window_csv`].
pub fn window_json(window: &WindowRecord) -> Value {
    let m = &window.measures;
    json!({
        "window_start": format_timestamp(window.start),
        "window_end": format_timestamp(window.end),
        "region": window.region,
        "event_type": event_type(window.kind),
        "total_events": m.total_events,
        "incoming_calls": m.incoming_calls,
        "outgoing_calls": m.outgoing_calls,
        "sms_count": m.sms_count,
        "total_data_mb": format_micros(i128::from(m.data_bytes)),
        "total_recharge_amount": format_micros(i128::from(m.recharge_micros)),
        "is_final": window.is_final,
    })
}

/// A late event as JSON: lateness in seconds, exact to the millisecond.
pub fn late_event_json(event: &StoredLateEvent) -> Value {
    json!({
        "id": event.id,
        "event_id": event.event_id,
        "origin": event.origin,
        "position": event.position,
        "event_time": format_timestamp_ms(event.event_time),
        "window_start": format_timestamp(event.window_start),
        "window_end": format_timestamp(event.window_end),
        "region": event.region,
        "event_type": event_type(event.kind),
        "lateness_sec": cdrflow_core::money::Decimal { mantissa: i128::from(event.lateness_ms), scale: 3 }.to_string(),
    })
}

/// An anomaly as JSON: the record's id for record rules, the window for
/// windowed ones.
pub fn anomaly_json(anomaly: &StoredAnomaly) -> Value {
    json!({
        "id": anomaly.id,
        "rule": anomaly.rule,
        "severity": anomaly.severity.as_str(),
        "msisdn": anomaly.msisdn,
        "event_id": anomaly.event_id,
        "event_time": format_timestamp_ms(anomaly.event_time),
        "window_start": anomaly.window_start.map(format_timestamp),
        "evidence": anomaly.evidence,
        "idempotency_key": anomaly.idempotency_key,
    })
}

/// A statistics row (seed 003's `daily_stats`, or `hourly_stats` with its
/// `hour`) as named fields in column order: counts as numbers, decimals
/// as exact strings, the average and longest call null without calls.
fn stat_fields(stat: &Stat) -> Vec<(&'static str, Value)> {
    let t = &stat.totals;
    let mut fields = vec![("date", json!(&format_timestamp(stat.key.day)[..10]))];
    if let Some(hour) = stat.key.hour {
        fields.push(("hour", json!(hour)));
    }
    fields.extend([
        ("region", json!(stat.key.region)),
        ("event_type", json!(event_type(stat.key.kind))),
        ("total_events", json!(t.events)),
        ("total_calls", json!(stat.total_calls())),
        ("total_sms", json!(stat.total_sms())),
        ("total_data_sessions", json!(stat.total_data_sessions())),
        ("total_call_duration", json!(t.call_duration_sec)),
        (
            "avg_call_duration",
            json!(stat.avg_call_duration_centis().map(format_centis)),
        ),
        ("max_call_duration", json!(t.max_call_duration_sec)),
        ("total_data_mb", json!(format_data_mb(t.data_bytes))),
        (
            "total_revenue",
            json!(format_micros(i128::from(t.amount_micros))),
        ),
    ]);
    fields
}

/// The statistics export header for one grain.
pub fn stat_csv_header(grain: StatGrain) -> String {
    let mut example = Stat {
        key: StatKey {
            day: 0,
            hour: None,
            region: String::new(),
            kind: Kind::Voice,
        },
        totals: GroupTotals::default(),
    };
    if grain == StatGrain::Hourly {
        example.key.hour = Some(0);
    }
    let names: Vec<&str> = stat_fields(&example).iter().map(|(n, _)| *n).collect();
    names.join(",")
}

/// A statistics row as one CSV line matching [`stat_csv_header`].
pub fn stat_csv(stat: &Stat) -> String {
    let cells: Vec<String> = stat_fields(stat)
        .into_iter()
        .map(|(_, value)| match value {
            Value::Null => String::new(),
            Value::String(text) => csv_field(&text),
            other => other.to_string(),
        })
        .collect();
    cells.join(",")
}

/// A statistics row as JSON, in the same terms as [`stat_csv`].
pub fn stat_json(stat: &Stat) -> Value {
    Value::Object(
        stat_fields(stat)
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
    )
}

/// A rejected record as JSON, with its original payload.
pub fn reject_json(reject: &StoredReject) -> Value {
    let mut value = json!({
        "id": reject.id,
        "reason": reject.reason,
        "detail": reject.detail,
        "origin": reject.origin,
        "position": reject.position,
        "rejected_at": reject.rejected_at,
    });
    match std::str::from_utf8(&reject.payload) {
        Ok(text) => value["payload"] = json!(text),
        Err(_) => {
            // Not text: keep it losslessly as hex, and readable as best we can.
            value["payload"] = json!(String::from_utf8_lossy(&reject.payload));
            value["payload_hex"] = json!(reject
                .payload
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>());
        }
    }
    value
}

/// `text` as one RFC 4180 field: quoted when it holds a comma, a quote or a line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
