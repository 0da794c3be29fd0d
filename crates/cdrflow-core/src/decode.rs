//! Decoders for the source formats, detected per record.
//!
//! - seed 000 `cdr_data`: `msisdn, event_datetime, data_type, up_bytes, down_bytes`
//! - seed 000 `cdr_voice`: `msisdn, start_time, call_type, call_duration_sec`
//! - seed 003 `telecom_events`: `event_id, msisdn, event_type, event_subtype,
//!   duration_seconds, data_mb, amount, region, cell_tower_id, timestamp`
//!
//! Unknown fields are ignored; every known field is checked for type and range.

use std::borrow::Cow;
use std::fmt;

use crate::json::{for_each_field, JsonError, JsonValue};
use crate::model::{Amount, Cdr, Direction, IdSpace, Kind, SourcePosition};
use crate::money::{Decimal, DecimalError};
use crate::normalize::{normalize_msisdn, parse_timestamp, CountryCode, TimeError};
use crate::reject::{RejectReason, Rejection};

/// A source format, or `Auto` to detect it from each record's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Auto,
    CdrData,
    CdrVoice,
    TelecomEvents,
}

impl Format {
    pub const NAMES: [&'static str; 4] = ["auto", "cdr-data", "cdr-voice", "telecom-events"];

    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "auto" => Ok(Format::Auto),
            "cdr-data" | "cdr_data" => Ok(Format::CdrData),
            "cdr-voice" | "cdr_voice" => Ok(Format::CdrVoice),
            "telecom-events" | "telecom_events" => Ok(Format::TelecomEvents),
            _ => Err(format!(
                "unknown format `{text}`; expected one of {}",
                Format::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = [
            Format::Auto,
            Format::CdrData,
            Format::CdrVoice,
            Format::TelecomEvents,
        ]
        .iter()
        .position(|x| x == self)
        .expect("listed");
        f.write_str(Format::NAMES[i])
    }
}

macro_rules! known_fields {
    ($($name:ident),* $(,)?) => {
        /// The fields cdrflow reads, each at most once per record.
        #[derive(Default)]
        struct Fields<'a> {
            $($name: Option<JsonValue<'a>>,)*
        }

        impl<'a> Fields<'a> {
            /// Files `value` under `key`; `Err(name)` when the field was already set.
            fn set(&mut self, key: &[u8], value: JsonValue<'a>) -> Result<(), &'static str> {
                $(
                    if key == stringify!($name).as_bytes() {
                        if self.$name.is_some() {
                            return Err(stringify!($name));
                        }
                        self.$name = Some(value);
                        return Ok(());
                    }
                )*
                Ok(())
            }
        }
    };
}

known_fields!(
    cdr_id,
    event_id,
    msisdn,
    event_datetime,
    data_type,
    up_bytes,
    down_bytes,
    start_time,
    call_type,
    call_duration_sec,
    event_type,
    event_subtype,
    duration_seconds,
    data_mb,
    amount,
    region,
    cell_tower_id,
    timestamp,
    other_party,
    radio_technology,
);

/// Settings that shape decoding.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeOptions {
    pub format: Format,
    pub default_country_code: CountryCode,
}

/// Decodes and validates one record.
pub fn decode<'a>(
    payload: &'a [u8],
    position: SourcePosition,
    options: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    let mut fields = Fields::default();
    let mut duplicate = None;
    for_each_field(payload, |key, value| {
        if let Err(name) = fields.set(key, value) {
            duplicate.get_or_insert(name);
        }
    })
    .map_err(json_rejection)?;
    if let Some(name) = duplicate {
        return Err(Rejection::new(
            RejectReason::DuplicateField,
            format!("field `{name}` appears more than once"),
        ));
    }
    let format = match options.format {
        Format::Auto => detect(&fields)?,
        forced => forced,
    };
    match format {
        Format::CdrData => decode_cdr_data(&fields, position, options),
        Format::CdrVoice => decode_cdr_voice(&fields, position, options),
        Format::TelecomEvents => decode_telecom_event(&fields, position, options),
        Format::Auto => unreachable!("detect() picks a concrete format"),
    }
}

fn json_rejection(error: JsonError) -> Rejection {
    match error {
        JsonError::InvalidUtf8 => {
            Rejection::new(RejectReason::InvalidUtf8, "the record is not valid UTF-8")
        }
        JsonError::NotAnObject(kind) => Rejection::new(
            RejectReason::NotAnObject,
            format!("the record is a JSON {kind}, not an object"),
        ),
        JsonError::Malformed { at, expected } => Rejection::new(
            RejectReason::MalformedJson,
            format!("invalid JSON at byte {at}: expected {expected}"),
        ),
        JsonError::TooDeep { at } => Rejection::new(
            RejectReason::TooDeeplyNested,
            format!(
                "containers are nested more than {} deep at byte {at}; no CDR format nests like that",
                crate::json::MAX_NESTING
            ),
        ),
    }
}

fn detect(fields: &Fields<'_>) -> Result<Format, Rejection> {
    if fields.event_type.is_some() {
        Ok(Format::TelecomEvents)
    } else if fields.event_datetime.is_some()
        || fields.data_type.is_some()
        || fields.up_bytes.is_some()
    {
        Ok(Format::CdrData)
    } else if fields.start_time.is_some()
        || fields.call_type.is_some()
        || fields.call_duration_sec.is_some()
    {
        Ok(Format::CdrVoice)
    } else {
        Err(Rejection::new(
            RejectReason::UnknownFormat,
            "no `event_type` (telecom_events), `event_datetime`/`data_type` (cdr_data) or `start_time`/`call_type` (cdr_voice) field",
        ))
    }
}

fn decode_cdr_data<'a>(
    f: &Fields<'a>,
    position: SourcePosition,
    o: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    Ok(Cdr {
        record_id: optional_string(f.cdr_id, "cdr_id")?,
        id_space: IdSpace::CdrData,
        kind: Kind::Data,
        service_type: service_type(required(f.data_type, "data_type")?, "data_type")?,
        start_time: timestamp(
            required(f.event_datetime, "event_datetime")?,
            "event_datetime",
        )?,
        uplink_bytes: counter(required(f.up_bytes, "up_bytes")?, "up_bytes")?,
        downlink_bytes: counter(required(f.down_bytes, "down_bytes")?, "down_bytes")?,
        duration_sec: 0,
        ..common(f, position, o)?
    })
}

fn decode_cdr_voice<'a>(
    f: &Fields<'a>,
    position: SourcePosition,
    o: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    Ok(Cdr {
        record_id: optional_string(f.cdr_id, "cdr_id")?,
        id_space: IdSpace::CdrVoice,
        kind: Kind::Voice,
        service_type: service_type(required(f.call_type, "call_type")?, "call_type")?,
        start_time: timestamp(required(f.start_time, "start_time")?, "start_time")?,
        duration_sec: counter(
            required(f.call_duration_sec, "call_duration_sec")?,
            "call_duration_sec",
        )?,
        direction: Direction::Outgoing,
        ..common(f, position, o)?
    })
}

fn decode_telecom_event<'a>(
    f: &Fields<'a>,
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
        ..common(f, position, o)?
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

/// Fields shared by every format; the format-specific decoders override the rest.
fn common<'a>(
    f: &Fields<'a>,
    position: SourcePosition,
    o: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    let raw_msisdn = string(required(f.msisdn, "msisdn")?, "msisdn")?;
    let served_msisdn = normalize_msisdn(&raw_msisdn, o.default_country_code).map_err(|why| {
        Rejection::new(
            RejectReason::InvalidMsisdn,
            format!("msisdn `{raw_msisdn}` {why}"),
        )
    })?;
    Ok(Cdr {
        record_id: None,
        id_space: IdSpace::CdrData,
        kind: Kind::Data,
        served_msisdn,
        other_party: optional_string(f.other_party, "other_party")?,
        direction: Direction::Unknown,
        service_type: Cow::Borrowed(""),
        start_time: 0,
        duration_sec: 0,
        uplink_bytes: 0,
        downlink_bytes: 0,
        amount: None,
        region: optional_string(f.region, "region")?,
        cell_id: match f.cell_tower_id {
            None | Some(JsonValue::Null) => None,
            Some(JsonValue::Number(n)) => {
                Some(bounded(Cow::Borrowed(n), "cell_tower_id", MAX_TEXT_BYTES)?)
            }
            Some(v) => Some(bounded(
                string(v, "cell_tower_id")?,
                "cell_tower_id",
                MAX_TEXT_BYTES,
            )?),
        },
        radio_technology: optional_string(f.radio_technology, "radio_technology")?,
        position,
    })
}

fn required<'a>(value: Option<JsonValue<'a>>, name: &str) -> Result<JsonValue<'a>, Rejection> {
    match value {
        None => Err(Rejection::new(
            RejectReason::MissingField,
            format!("required field `{name}` is missing"),
        )),
        Some(JsonValue::Null) => Err(Rejection::new(
            RejectReason::MissingField,
            format!("required field `{name}` is null"),
        )),
        Some(v) => Ok(v),
    }
}

fn wrong_type(value: JsonValue<'_>, name: &str, expected: &str) -> Rejection {
    Rejection::new(
        RejectReason::WrongType,
        format!(
            "field `{name}` is a {}, expected {expected}",
            value.type_name()
        ),
    )
}

fn string<'a>(value: JsonValue<'a>, name: &str) -> Result<Cow<'a, str>, Rejection> {
    match value {
        JsonValue::String { .. } => value.as_str().ok_or_else(|| {
            Rejection::new(
                RejectReason::MalformedJson,
                format!("field `{name}` holds an invalid escape sequence"),
            )
        }),
        other => Err(wrong_type(other, name, "a string")),
    }
}

/// Type labels become part of every summary key and API answer; ids,
/// regions and cell ids are kept with each record. Longer values are refused
/// (`field_too_long`) rather than stored.
pub const MAX_TYPE_BYTES: usize = 64;
pub const MAX_TEXT_BYTES: usize = 256;

fn bounded<'a>(text: Cow<'a, str>, name: &str, max: usize) -> Result<Cow<'a, str>, Rejection> {
    if text.len() > max {
        return Err(Rejection::new(
            RejectReason::FieldTooLong,
            format!(
                "field `{name}` is {} bytes long; at most {max} are accepted",
                text.len()
            ),
        ));
    }
    Ok(text)
}

fn optional_string<'a>(
    value: Option<JsonValue<'a>>,
    name: &str,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    match value {
        None | Some(JsonValue::Null) => Ok(None),
        Some(v) => bounded(string(v, name)?, name, MAX_TEXT_BYTES).map(Some),
    }
}

/// A type label, trimmed and lower-cased; borrowed when already normal.
fn service_type<'a>(value: JsonValue<'a>, name: &str) -> Result<Cow<'a, str>, Rejection> {
    let text = bounded(string(value, name)?, name, MAX_TYPE_BYTES)?;
    let trimmed_len = text.trim().len();
    if trimmed_len == 0 {
        return Err(Rejection::new(
            RejectReason::EmptyType,
            format!("field `{name}` is empty"),
        ));
    }
    let already_normal = trimmed_len == text.len()
        && !text.bytes().any(|b| b.is_ascii_uppercase())
        && text.is_ascii();
    Ok(match text {
        Cow::Borrowed(s) if already_normal => Cow::Borrowed(s),
        other => {
            // Lower-casing can lengthen a label (`İ` is 2 bytes, `i̇` 3).
            let label = other.trim().to_lowercase();
            if label.len() > MAX_TYPE_BYTES {
                return Err(Rejection::new(
                    RejectReason::FieldTooLong,
                    format!(
                        "field `{name}` is {} bytes long once lower-cased; at most {MAX_TYPE_BYTES} are accepted",
                        label.len()
                    ),
                ));
            }
            Cow::Owned(label)
        }
    })
}

fn timestamp(value: JsonValue<'_>, name: &str) -> Result<i64, Rejection> {
    let text = string(value, name)?;
    parse_timestamp(&text).map_err(|e| match e {
        TimeError::Unparsable => Rejection::new(
            RejectReason::UnparsableTime,
            format!("field `{name}` = `{text}` is not an RFC 3339 / ISO 8601 time"),
        ),
        TimeError::Impossible => Rejection::new(
            RejectReason::ImpossibleTime,
            format!("field `{name}` = `{text}` is not a real date and time"),
        ),
    })
}

/// A non-negative whole-number counter (bytes, seconds).
fn counter(value: JsonValue<'_>, name: &str) -> Result<u64, Rejection> {
    let JsonValue::Number(text) = value else {
        return Err(wrong_type(value, name, "a non-negative integer"));
    };
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    let decimal = Decimal::parse(text).map_err(|e| match e {
        DecimalError::TooPrecise(_) => Rejection::new(
            RejectReason::NotAnInteger,
            format!("field `{name}` = {text} is not a whole number"),
        ),
        _ => Rejection::new(
            RejectReason::ValueTooLarge,
            format!("field `{name}` = {text} is too large"),
        ),
    })?;
    if decimal.is_negative() {
        return Err(Rejection::new(
            RejectReason::NegativeValue,
            format!("field `{name}` = {text}; counters must be >= 0"),
        ));
    }
    let whole = decimal.scaled_to_integer(0).ok_or_else(|| {
        Rejection::new(
            RejectReason::NotAnInteger,
            format!("field `{name}` = {text} is not a whole number"),
        )
    })?;
    u64::try_from(whole).map_err(|_| {
        Rejection::new(
            RejectReason::ValueTooLarge,
            format!("field `{name}` = {text} exceeds 2^64-1"),
        )
    })
}

/// Decimal megabytes (10^6 bytes) into whole bytes, exactly.
fn megabytes(value: JsonValue<'_>) -> Result<u64, Rejection> {
    let JsonValue::Number(text) = value else {
        return Err(wrong_type(
            value,
            "data_mb",
            "a non-negative number of megabytes",
        ));
    };
    let decimal = Decimal::parse(text).map_err(|_| {
        Rejection::new(
            RejectReason::ValueTooLarge,
            format!("field `data_mb` = {text} is too large"),
        )
    })?;
    if decimal.is_negative() {
        return Err(Rejection::new(
            RejectReason::NegativeValue,
            format!("field `data_mb` = {text}; volumes must be >= 0"),
        ));
    }
    let bytes = decimal.scaled_to_integer(6).ok_or_else(|| {
        Rejection::new(
            RejectReason::NotAnInteger,
            format!("field `data_mb` = {text} is not a whole number of bytes"),
        )
    })?;
    u64::try_from(bytes).map_err(|_| {
        Rejection::new(
            RejectReason::ValueTooLarge,
            format!("field `data_mb` = {text} exceeds 2^64-1 bytes"),
        )
    })
}

/// A recharge amount: non-negative, at most 6 decimals.
fn amount(value: JsonValue<'_>) -> Result<Amount, Rejection> {
    let JsonValue::Number(text) = value else {
        return Err(wrong_type(value, "amount", "a number"));
    };
    let invalid = |why: &str| {
        Rejection::new(
            RejectReason::InvalidAmount,
            format!("field `amount` = {text} {why}"),
        )
    };
    let decimal = Decimal::parse(text).map_err(|e| match e {
        DecimalError::TooPrecise(_) => invalid("has more than 6 decimal places"),
        _ => invalid("is too large"),
    })?;
    if decimal.is_negative() {
        return Err(Rejection::new(
            RejectReason::NegativeValue,
            format!("field `amount` = {text}; amounts must be >= 0"),
        ));
    }
    let micros = decimal
        .scaled_to_integer(6)
        .ok_or_else(|| invalid("has more than 6 decimal places"))?;
    let micros = i64::try_from(micros).map_err(|_| invalid("is too large"))?;
    Ok(Amount { micros })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::parse_timestamp;

    const AT: SourcePosition = SourcePosition::Line {
        line: 1,
        byte_offset: 0,
    };

    fn ok(line: &str) -> Cdr<'_> {
        decode(line.as_bytes(), AT, &DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn reason(line: &str) -> RejectReason {
        decode(line.as_bytes(), AT, &DecodeOptions::default())
            .expect_err(line)
            .reason
    }

    #[test]
    fn free_text_fields_are_bounded() {
        let data = |ty: &str, cell: &str| {
            format!(
                r#"{{"cdr_id":"d1","msisdn":"0821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"{ty}","up_bytes":1,"down_bytes":1,"cell_tower_id":"{cell}"}}"#
            )
        };
        let (type_at_limit, cell_at_limit) =
            ("t".repeat(MAX_TYPE_BYTES), "c".repeat(MAX_TEXT_BYTES));
        assert_eq!(
            ok(&data(&type_at_limit, &cell_at_limit)).service_type.len(),
            MAX_TYPE_BYTES
        );
        let long_type = "t".repeat(MAX_TYPE_BYTES + 1);
        assert_eq!(reason(&data(&long_type, "c")), RejectReason::FieldTooLong);
        let long_cell = "c".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(
            reason(&data("video", &long_cell)),
            RejectReason::FieldTooLong
        );
    }

    #[test]
    fn decodes_seed_000_data() {
        let cdr = ok(
            r#"{"cdr_id":"d1","msisdn":"0821234567","event_datetime":"2024-03-01T10:00:00+02:00","data_type":" Video ","up_bytes":100,"down_bytes":2000,"extra":[1]}"#,
        );
        assert_eq!(cdr.kind, Kind::Data);
        assert_eq!(cdr.record_id.as_deref(), Some("d1"));
        assert_eq!(cdr.served_msisdn.to_string(), "+27821234567");
        assert_eq!(cdr.service_type, "video");
        assert_eq!(
            cdr.start_time,
            parse_timestamp("2024-03-01T08:00:00Z").unwrap()
        );
        assert_eq!((cdr.uplink_bytes, cdr.downlink_bytes), (100, 2000));
    }

    #[test]
    fn decodes_seed_000_voice() {
        let cdr = ok(
            r#"{"msisdn":"+27 82 123 4567","start_time":"2024-03-01T10:00:00Z","call_type":"VOICE","call_duration_sec":61}"#,
        );
        assert_eq!(cdr.kind, Kind::Voice);
        assert_eq!(cdr.record_id, None);
        assert_eq!(cdr.service_type, "voice");
        assert_eq!(cdr.duration_sec, 61);
    }

    #[test]
    fn decodes_seed_003_events() {
        let base = r#""msisdn":"77011234567","timestamp":"2025-11-09T10:30:15Z","region":"Almaty","cell_tower_id":1523"#;
        let data = format!(
            r#"{{"event_id":"e1","event_type":"data_session","event_subtype":"outgoing","data_mb":150.5,{base}}}"#
        );
        let cdr = ok(&data);
        assert_eq!((cdr.kind, cdr.downlink_bytes), (Kind::Data, 150_500_000));
        assert_eq!(cdr.region.as_deref(), Some("Almaty"));
        assert_eq!(cdr.cell_id.as_deref(), Some("1523"));
        let call = format!(
            r#"{{"event_type":"call","event_subtype":"incoming","duration_seconds":245,{base}}}"#
        );
        let cdr = ok(&call);
        assert_eq!(
            (cdr.kind, cdr.direction, cdr.duration_sec),
            (Kind::Voice, Direction::Incoming, 245)
        );
        let recharge = format!(r#"{{"event_type":"balance_recharge","amount":5000.25,{base}}}"#);
        assert_eq!(
            ok(&recharge).amount,
            Some(Amount {
                micros: 5_000_250_000
            })
        );
        assert_eq!(
            ok(&format!(r#"{{"event_type":"sms",{base}}}"#)).kind,
            Kind::Sms
        );
        let activation =
            format!(r#"{{"event_type":"service_activation","event_subtype":"Roaming",{base}}}"#);
        let activation = ok(&activation);
        assert_eq!(
            (activation.kind, activation.service_type.as_ref()),
            (Kind::Activation, "roaming")
        );
    }

    #[test]
    fn names_every_rejection() {
        let data = |fields: &str| {
            format!(
                r#"{{"msisdn":"27821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"video",{fields}}}"#
            )
        };
        assert_eq!(reason("{not json"), RejectReason::MalformedJson);
        assert_eq!(reason("[1]"), RejectReason::NotAnObject);
        assert_eq!(reason(r#"{"foo":1}"#), RejectReason::UnknownFormat);
        assert_eq!(reason(&data(r#""up_bytes":1"#)), RejectReason::MissingField);
        assert_eq!(
            reason(&data(r#""up_bytes":"1","down_bytes":1"#)),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(&data(r#""up_bytes":-1,"down_bytes":1"#)),
            RejectReason::NegativeValue
        );
        assert_eq!(
            reason(&data(r#""up_bytes":1.5,"down_bytes":1"#)),
            RejectReason::NotAnInteger
        );
        assert_eq!(
            reason(&data(r#""up_bytes":1e30,"down_bytes":1"#)),
            RejectReason::ValueTooLarge
        );
        assert_eq!(
            reason(&data(r#""up_bytes":1,"down_bytes":1,"down_bytes":2"#)),
            RejectReason::DuplicateField
        );
        assert_eq!(
            ok(&data(r#""up_bytes":1.0,"down_bytes":1000000000000000"#)).downlink_bytes,
            1_000_000_000_000_000
        );
        assert_eq!(
            reason(
                r#"{"msisdn":"27821234567","event_datetime":"2024-02-30T10:00:00Z","data_type":"v","up_bytes":1,"down_bytes":1}"#
            ),
            RejectReason::ImpossibleTime
        );
        assert_eq!(
            reason(
                r#"{"msisdn":"27821234567","event_datetime":"today","data_type":"v","up_bytes":1,"down_bytes":1}"#
            ),
            RejectReason::UnparsableTime
        );
        assert_eq!(
            reason(
                r#"{"msisdn":"12","event_datetime":"2024-02-03T10:00:00Z","data_type":"v","up_bytes":1,"down_bytes":1}"#
            ),
            RejectReason::InvalidMsisdn
        );
        assert_eq!(
            reason(
                r#"{"msisdn":"27821234567","event_datetime":"2024-02-03T10:00:00Z","data_type":"  ","up_bytes":1,"down_bytes":1}"#
            ),
            RejectReason::EmptyType
        );
        assert_eq!(
            reason(
                r#"{"event_type":"fax","msisdn":"27821234567","timestamp":"2024-02-03T10:00:00Z"}"#
            ),
            RejectReason::UnknownEventType
        );
        assert_eq!(
            reason(
                r#"{"event_type":"balance_recharge","amount":1.0000001,"msisdn":"27821234567","timestamp":"2024-02-03T10:00:00Z"}"#
            ),
            RejectReason::InvalidAmount
        );
        assert_eq!(
            reason(&data(r#""up_bytes":1,"down_bytes":null"#)),
            RejectReason::MissingField
        );
    }

    #[test]
    fn fuzz_regressions() {
        // decode_auto: an offset carried year 0000 into year -1 in UTC.
        assert_eq!(
            reason(
                r#"{"cdr_id":"y","msisdn":"27821234567","event_datetime":"0000-01-01T00:00:00+23:59","data_type":"v","up_bytes":1,"down_bytes":1,"x":"9999-12-31T23:59:59.999999-23:59"}"#
            ),
            RejectReason::ImpossibleTime
        );
        // json_reader: a character beyond the BMP escaped as a surrogate pair
        // made the record `malformed_json`.
        let cdr = ok(
            r#"{"event_id":"s1","msisdn":"+77011234567","event_type":"sms","event_subtype":"outgoing","region":"\ud83d\ude00 Almaty","timestamp":"2025-11-09T10:30:15Z"}"#,
        );
        assert_eq!(cdr.region.as_deref(), Some("\u{1F600} Almaty"));
        // decode_cdr_data: a 64-byte label that lower-casing made 96 bytes long.
        let label = |ty: &str| {
            format!(
                r#"{{"cdr_id":"t","msisdn":"+27821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"{ty}","up_bytes":1,"down_bytes":1}}"#
            )
        };
        assert_eq!(
            reason(&label(&"\u{130}".repeat(32))),
            RejectReason::FieldTooLong
        );
        let grown = "\u{130}".repeat(21);
        assert_eq!(ok(&label(&grown)).service_type.len(), 63);
        // money_decimal: an exponent of -2^63 overflowed the decimal's scale.
        assert_eq!(
            reason(
                r#"{"cdr_id":"e","msisdn":"+27821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"video","up_bytes":1e-9223372036854775808,"down_bytes":1}"#
            ),
            RejectReason::NotAnInteger
        );
    }

    #[test]
    fn forced_format_overrides_detection() {
        let options = DecodeOptions {
            format: Format::CdrVoice,
            ..Default::default()
        };
        let line = br#"{"msisdn":"27821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"v","up_bytes":1,"down_bytes":1}"#;
        assert_eq!(
            decode(line, AT, &options).unwrap_err().reason,
            RejectReason::MissingField
        );
    }
}
