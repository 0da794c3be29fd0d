//! How stored results are shown: one place for JSON and CSV shapes, shared
//! by the CLI (and later the API) so every surface says the same thing.

use cdrflow_core::money::format_micros;
use cdrflow_store::schema::{table_for, Measure};
use cdrflow_store::{StoredReject, SummaryRecord};
use serde_json::{json, Map, Value};

/// The CSV export header; the first columns are a compatibility contract.
pub const CSV_HEADER: &str =
    "kind,msisdn,date,type,up_bytes,down_bytes,duration_sec,cost,records,amount";

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

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
