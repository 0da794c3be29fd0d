//! The JSON family: flat objects, one per record (seed 000's `cdr_data` and
//! `cdr_voice`, seed 003's `telecom_events`).
//!
//! A record is read once into its fields ([`JsonRecord`]); a field that any
//! JSON format knows may appear only once; then the format (forced, or the
//! first in registry order whose marker fields are present) takes the fields
//! it knows. Unknown fields are ignored; every known field is checked for
//! type and range by the readers here, shared by every JSON format.

use std::borrow::Cow;

use super::{registry, DecodeOptions, Decoder, JsonFormat};
use crate::json::{for_each_field, JsonError, JsonValue};
use crate::model::{Amount, Cdr, Direction, IdSpace, Kind, SourcePosition};
use crate::money::{Decimal, DecimalError};
use crate::normalize::{normalize_masked, parse_timestamp, TimeError};
use crate::reject::{RejectReason, Rejection};

/// Every field some JSON format reads, each with a slot in [`JsonRecord`]:
/// gathered once from the registry, bucketed by length so that a key is
/// compared with the one or two names of its length only.
struct KnownFields {
    names: Vec<&'static str>,
    by_len: Vec<Vec<(u8, &'static [u8])>>,
}

/// Slots per record: more than all JSON formats' fields together.
const MAX_KNOWN_FIELDS: usize = 24;

impl KnownFields {
    fn get() -> &'static KnownFields {
        static KNOWN: std::sync::OnceLock<KnownFields> = std::sync::OnceLock::new();
        KNOWN.get_or_init(|| {
            let own = registry()
                .iter()
                .filter_map(|d| d.as_json())
                .flat_map(|f| f.fields().iter().copied());
            let mut names: Vec<&'static str> = Vec::new();
            for name in CommonFields::NAMES.iter().copied().chain(own) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            assert!(names.len() <= MAX_KNOWN_FIELDS, "raise MAX_KNOWN_FIELDS");
            let longest = names.iter().map(|n| n.len()).max().unwrap_or(0);
            let mut by_len = vec![Vec::new(); longest + 1];
            for (slot, name) in names.iter().enumerate() {
                by_len[name.len()].push((slot as u8, name.as_bytes()));
            }
            KnownFields { names, by_len }
        })
    }

    fn slot(&self, key: &[u8]) -> Option<usize> {
        self.by_len
            .get(key.len())?
            .iter()
            .find(|(_, name)| *name == key)
            .map(|&(slot, _)| slot as usize)
    }
}

/// A JSON record's known fields, read in one pass; unknown ones are ignored.
pub struct JsonRecord<'a> {
    slots: [Option<JsonValue<'a>>; MAX_KNOWN_FIELDS],
}

impl<'a> JsonRecord<'a> {
    /// An empty record, to [`JsonRecord::read`] into: in place, as it is
    /// read for every record (a few hundred bytes that moving would copy).
    pub fn new() -> JsonRecord<'a> {
        JsonRecord {
            slots: [None; MAX_KNOWN_FIELDS],
        }
    }

    /// Reads `payload` into this empty record; refuses what is not a JSON
    /// object, and a field known to any JSON format given twice.
    pub fn read(&mut self, payload: &'a [u8]) -> Result<(), Rejection> {
        let known = KnownFields::get();
        let mut repeated = None;
        for_each_field(payload, |key, value| {
            if let Some(slot) = known.slot(key) {
                if self.slots[slot].replace(value).is_some() {
                    repeated.get_or_insert(slot);
                }
            }
        })
        .map_err(json_rejection)?;
        match repeated {
            Some(slot) => Err(Rejection::new(
                RejectReason::DuplicateField,
                format!("field `{}` appears more than once", known.names[slot]),
            )),
            None => Ok(()),
        }
    }

    /// The value in a slot ([`slot_of`]), if the record has it.
    pub fn at(&self, slot: usize) -> Option<JsonValue<'a>> {
        self.slots[slot]
    }
}

/// The slot of a field some JSON format reads.
pub fn slot_of(name: &str) -> usize {
    KnownFields::get()
        .slot(name.as_bytes())
        .unwrap_or_else(|| panic!("`{name}` is not a field of a registered JSON format"))
}

/// Declares a struct with one optional JSON value per named field, filled
/// from a [`JsonRecord`].
macro_rules! json_fields {
    ($(#[$doc:meta])* $vis:vis struct $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        $vis struct $name<'a> {
            $(pub $field: Option<crate::json::JsonValue<'a>>,)*
        }

        impl<'a> $name<'a> {
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            pub fn from_record(record: &$crate::formats::json::JsonRecord<'a>) -> Self {
                // Where each field sits in a record, found once.
                static SLOTS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
                let slots = SLOTS.get_or_init(|| {
                    Self::NAMES.iter().map(|name| $crate::formats::json::slot_of(name)).collect()
                });
                let mut slots = slots.iter();
                Self {
                    $($field: record.at(*slots.next().expect("a slot per field")),)*
                }
            }
        }
    };
}
pub(crate) use json_fields;

/// Makes `$format` a JSON format: its [`Decoder`] and [`JsonFormat`]
/// impls, reading its `$fields` and handing them to the module's
/// `decode_fields`.
macro_rules! json_format {
    ($format:ident, name: $name:literal, alias: $alias:literal, fields: $fields:ident, markers: [$($marker:literal),+ $(,)?] $(,)?) => {
        impl $crate::formats::Decoder for $format {
            fn name(&self) -> &'static str {
                $name
            }

            fn aliases(&self) -> &'static [&'static str] {
                &[$alias]
            }

            fn decode<'a>(
                &self,
                payload: &'a [u8],
                position: $crate::model::SourcePosition,
                options: &$crate::formats::DecodeOptions,
            ) -> Result<$crate::model::Cdr<'a>, $crate::reject::Rejection> {
                $crate::formats::json::decode_as(self, payload, position, options)
            }

            fn as_json(&self) -> Option<&dyn $crate::formats::JsonFormat> {
                Some(self)
            }
        }

        impl $crate::formats::JsonFormat for $format {
            fn fields(&self) -> &'static [&'static str] {
                $fields::NAMES
            }

            fn markers(&self) -> &'static [&'static str] {
                &[$($marker),+]
            }

            fn from_record<'a>(
                &self,
                record: &$crate::formats::json::JsonRecord<'a>,
                position: $crate::model::SourcePosition,
                options: &$crate::formats::DecodeOptions,
            ) -> Result<$crate::model::Cdr<'a>, $crate::reject::Rejection> {
                decode_fields(&$fields::from_record(record), record, position, options)
            }
        }
    };
}
pub(crate) use json_format;

json_fields!(
    /// Fields every JSON format shares.
    pub struct CommonFields {
        msisdn,
        other_party,
        region,
        cell_tower_id,
        radio_technology,
    }
);

/// Detects the format of a JSON record from its fields: the first JSON
/// format in registry order whose marker fields are present.
pub struct Auto;

impl Decoder for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn decode<'a>(
        &self,
        payload: &'a [u8],
        position: SourcePosition,
        options: &DecodeOptions,
    ) -> Result<Cdr<'a>, Rejection> {
        let mut record = JsonRecord::new();
        record.read(payload)?;
        let format = detection()
            .iter()
            .find(|(_, markers)| markers.iter().any(|&slot| record.at(slot).is_some()))
            .map(|(format, _)| *format)
            .ok_or_else(|| Rejection::new(RejectReason::UnknownFormat, no_markers()))?;
        format.from_record(&record, position, options)
    }
}

/// The JSON formats in registry order, each with its markers' slots.
fn detection() -> &'static [(&'static dyn JsonFormat, Vec<usize>)] {
    static DETECTION: std::sync::OnceLock<Vec<(&'static dyn JsonFormat, Vec<usize>)>> =
        std::sync::OnceLock::new();
    DETECTION.get_or_init(|| {
        registry()
            .iter()
            .filter_map(|d| d.as_json())
            .map(|f| (f, f.markers().iter().map(|m| slot_of(m)).collect()))
            .collect()
    })
}

/// Names every JSON format's main markers (the seeds' names for the
/// formats), for a record that has none.
fn no_markers() -> String {
    let mut formats: Vec<String> = registry()
        .iter()
        .filter_map(|d| Some((d.name(), d.as_json()?)))
        .map(|(name, f)| {
            let markers: Vec<String> = f
                .markers()
                .iter()
                .take(2)
                .map(|m| format!("`{m}`"))
                .collect();
            format!("{} ({})", markers.join("/"), name.replace('-', "_"))
        })
        .collect();
    let last = formats.pop().unwrap_or_default();
    match formats.is_empty() {
        true => format!("no {last} field"),
        false => format!("no {} or {last} field", formats.join(", ")),
    }
}

/// Decodes a JSON record as `format`: read, then its fields.
pub fn decode_as<'a>(
    format: &dyn JsonFormat,
    payload: &'a [u8],
    position: SourcePosition,
    options: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    let mut record = JsonRecord::new();
    record.read(payload)?;
    format.from_record(&record, position, options)
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

/// The fields shared by every format; the format's decoder sets the rest.
pub fn common<'a>(
    record: &JsonRecord<'a>,
    position: SourcePosition,
    o: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    let f = CommonFields::from_record(record);
    let raw_msisdn = string(required(f.msisdn, "msisdn")?, "msisdn")?;
    // Masked numbers (`7701234****`) are pseudonymous subscribers.
    let served_msisdn = normalize_masked(&raw_msisdn, o.default_country_code).map_err(|why| {
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

pub fn required<'a>(value: Option<JsonValue<'a>>, name: &str) -> Result<JsonValue<'a>, Rejection> {
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

pub fn wrong_type(value: JsonValue<'_>, name: &str, expected: &str) -> Rejection {
    Rejection::new(
        RejectReason::WrongType,
        format!(
            "field `{name}` is a {}, expected {expected}",
            value.type_name()
        ),
    )
}

pub fn string<'a>(value: JsonValue<'a>, name: &str) -> Result<Cow<'a, str>, Rejection> {
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

pub fn optional_string<'a>(
    value: Option<JsonValue<'a>>,
    name: &str,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    match value {
        None | Some(JsonValue::Null) => Ok(None),
        Some(v) => bounded(string(v, name)?, name, MAX_TEXT_BYTES).map(Some),
    }
}

/// A type label, trimmed and lower-cased; borrowed when already normal.
pub fn service_type<'a>(value: JsonValue<'a>, name: &str) -> Result<Cow<'a, str>, Rejection> {
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

pub fn timestamp(value: JsonValue<'_>, name: &str) -> Result<i64, Rejection> {
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
pub fn counter(value: JsonValue<'_>, name: &str) -> Result<u64, Rejection> {
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
pub fn megabytes(value: JsonValue<'_>) -> Result<u64, Rejection> {
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
pub fn amount(value: JsonValue<'_>) -> Result<Amount, Rejection> {
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
