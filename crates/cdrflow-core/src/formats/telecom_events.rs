//! Seed 003's `telecom_events`: `event_id, msisdn, event_type, event_subtype, duration_seconds, data_mb, amount, region, cell_tower_id, timestamp`.

use std::borrow::Cow;

use super::json::{
    amount, common, counter, json_fields, json_format, megabytes, optional_string, required,
    service_type, string, timestamp, JsonRecord,
};
use super::DecodeOptions;
use crate::json::JsonValue;
use crate::model::{Cdr, Direction, IdSpace, Kind, SourcePosition};
use crate::reject::{RejectReason, Rejection};

pub struct TelecomEvents;

json_fields!(
    struct TelecomEventsFields {
        event_id, event_type, event_subtype, duration_seconds, data_mb, amount, timestamp,
    }
);

json_format!(
    TelecomEvents,
    name: "telecom-events",
    alias: "telecom_events",
    fields: TelecomEventsFields,
    markers: ["event_type"],
);

fn decode_fields<'a>(
    f: &TelecomEventsFields<'a>,
    record: &JsonRecord<'a>,
    position: SourcePosition,
    o: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    let event_type = string(required(f.event_type, "event_type")?, "event_type")?;
    let kind = match event_type.trim() {
        "call" => Kind::Voice,
        "sms" => Kind::Sms,
        "data_session" => Kind::Data,
        "balance_recharge" => Kind::Recharge,
        "service_activation" => Kind::Activation,
        other => {
            return Err(Rejection::new(
                RejectReason::UnknownEventType,
                format!("event_type `{other}` is not one of call, sms, data_session, balance_recharge, service_activation"),
            ))
        }
    };
    let subtype = match f.event_subtype {
        None | Some(JsonValue::Null) => Cow::Borrowed("default"),
        Some(value) => service_type(value, "event_subtype")?,
    };
    let direction = match subtype.as_ref() {
        "incoming" => Direction::Incoming,
        "outgoing" => Direction::Outgoing,
        _ => Direction::Unknown,
    };
    let mut cdr = Cdr {
        record_id: optional_string(f.event_id, "event_id")?,
        id_space: IdSpace::TelecomEvents,
        kind,
        service_type: subtype,
        direction,
        start_time: timestamp(required(f.timestamp, "timestamp")?, "timestamp")?,
        ..common(record, position, o)?
    };
    match kind {
        Kind::Voice => {
            cdr.duration_sec = counter(
                required(f.duration_seconds, "duration_seconds")?,
                "duration_seconds",
            )?
        }
        Kind::Data => cdr.downlink_bytes = megabytes(required(f.data_mb, "data_mb")?)?,
        Kind::Recharge => cdr.amount = Some(amount(required(f.amount, "amount")?)?),
        Kind::Sms | Kind::Activation => {}
    }
    Ok(cdr)
}
