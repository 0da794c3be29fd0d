//! Formats: how one framed record's bytes become a [`Cdr`], or a rejection
//! that says why not.
//!
//! Framing (where a record ends: a newline today) is the sources' business;
//! a format sees one record at a time. Each format is a module implementing
//! [`Decoder`], registered by one line in [`registry`]; its fixtures live in
//! `crates/cdrflow-core/fixtures/formats/<name>/`. The JSON formats share
//! their field readers and take part in detection (`auto`, see
//! [`json::Auto`]); sources name their format, `auto` by default.

mod ber;
mod cdr_data;
mod cdr_voice;
pub mod json;
mod telecom_events;

use std::fmt;

use crate::country::Country;
use crate::framing::{Framing, Newline};
use crate::model::{Cdr, SourcePosition};
use crate::normalize::CountryCode;
use crate::reject::Rejection;

pub use json::{MAX_TEXT_BYTES, MAX_TYPE_BYTES};

/// Decodes and validates one record of a format.
pub trait Decoder: Sync {
    /// The name flags and config use (`--format cdr-data`).
    fn name(&self) -> &'static str;

    /// Other spellings accepted for the name (the seeds' topic names).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    fn decode<'a>(
        &self,
        payload: &'a [u8],
        position: SourcePosition,
        options: &DecodeOptions,
    ) -> Result<Cdr<'a>, Rejection>;

    /// Where its records end in a file: lines, unless the format says.
    fn framing(&self) -> &'static dyn Framing {
        &Newline
    }

    /// A JSON format takes part in detection.
    fn as_json(&self) -> Option<&dyn JsonFormat> {
        None
    }
}

/// A format of the JSON family.
pub trait JsonFormat: Sync {
    /// The fields it reads beyond the common ones ([`json::CommonFields`]).
    fn fields(&self) -> &'static [&'static str];

    /// Fields whose presence says a record is of this format.
    fn markers(&self) -> &'static [&'static str];

    fn from_record<'a>(
        &self,
        record: &json::JsonRecord<'a>,
        position: SourcePosition,
        options: &DecodeOptions,
    ) -> Result<Cdr<'a>, Rejection>;
}

/// Every format. Detection tries the JSON ones in this order.
pub fn registry() -> &'static [&'static dyn Decoder] {
    &[
        &json::Auto,
        &telecom_events::TelecomEvents,
        &cdr_data::CdrData,
        &cdr_voice::CdrVoice,
        &ber::BER,
        &ber::BER_FILE,
    ]
}

/// A source format, by name; `auto` detects it from each record's fields.
#[derive(Clone, Copy)]
pub struct Format(&'static dyn Decoder);

impl Format {
    pub fn parse(text: &str) -> Result<Format, String> {
        registry()
            .iter()
            .find(|d| d.name() == text || d.aliases().contains(&text))
            .map(|d| Format(*d))
            .ok_or_else(|| {
                let names: Vec<&str> = registry().iter().map(|d| d.name()).collect();
                format!(
                    "unknown format `{text}`; expected one of {}",
                    names.join(", ")
                )
            })
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    pub fn framing(&self) -> &'static dyn Framing {
        self.0.framing()
    }

    pub fn is_auto(&self) -> bool {
        self.name() == json::Auto.name()
    }
}

impl Default for Format {
    fn default() -> Format {
        Format(&json::Auto)
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Format) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Format {}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Format({})", self.name())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings that shape decoding.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeOptions {
    pub format: Format,
    pub default_country_code: CountryCode,
    /// The country the records come from (`--country-file`): its numbering
    /// plan reads national numbers (the BER format's, for now).
    pub country: Option<&'static Country>,
}

/// Decodes and validates one record in the configured format.
pub fn decode<'a>(
    payload: &'a [u8],
    position: SourcePosition,
    options: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    options.format.0.decode(payload, position, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Amount, Direction, Kind};
    use crate::normalize::parse_timestamp;
    use crate::reject::RejectReason;

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
            format: Format::parse("cdr-voice").unwrap(),
            ..Default::default()
        };
        let line = br#"{"msisdn":"27821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"v","up_bytes":1,"down_bytes":1}"#;
        assert_eq!(
            decode(line, AT, &options).unwrap_err().reason,
            RejectReason::MissingField
        );
    }

    /// Each format's fixtures (`fixtures/formats/<name>/`): accepted records
    /// with their expected meaning written out by hand, rejected ones with
    /// their reasons; forced and detected decoding must agree. A registered
    /// format without fixtures fails here.
    #[test]
    fn every_format_meets_its_fixtures() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/formats");
        let lines = |name: &str, file: &str| -> Vec<String> {
            let path = root.join(name).join(file);
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .lines()
                .map(str::to_string)
                .collect()
        };
        let mut checked = 0;
        for decoder in registry().iter().filter(|d| d.as_json().is_some()) {
            let name = decoder.name();
            let forced = DecodeOptions {
                format: Format::parse(name).unwrap(),
                ..Default::default()
            };
            let (records, expected) = (
                lines(name, "accepted.jsonl"),
                lines(name, "accepted.expected"),
            );
            assert_eq!(records.len(), expected.len(), "{name}");
            for (record, expected) in records.iter().zip(&expected) {
                let cdr = decode(record.as_bytes(), AT, &forced)
                    .unwrap_or_else(|e| panic!("{name}: {record}: {e}"));
                let meaning = format!(
                    "{} {} {} {} up={} down={} seconds={} amount={}",
                    cdr.kind,
                    cdr.served_msisdn,
                    cdr.service_type,
                    crate::normalize::format_timestamp(cdr.start_time),
                    cdr.uplink_bytes,
                    cdr.downlink_bytes,
                    cdr.duration_sec,
                    cdr.amount.map_or("-".to_string(), |a| a.micros.to_string()),
                );
                assert_eq!(&meaning, expected, "{name}: {record}");
                assert_eq!(
                    decode(record.as_bytes(), AT, &DecodeOptions::default()),
                    Ok(cdr),
                    "{name}: detected as another format: {record}"
                );
                checked += 1;
            }
            let (records, reasons) = (
                lines(name, "rejected.jsonl"),
                lines(name, "rejected.expected"),
            );
            assert_eq!(records.len(), reasons.len(), "{name}");
            for (record, reason) in records.iter().zip(&reasons) {
                let rejection = decode(record.as_bytes(), AT, &forced).expect_err(record);
                assert_eq!(
                    rejection.reason.as_str(),
                    reason,
                    "{name}: {record}: {rejection}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 15, "{checked} fixtures");
        let unknown =
            decode(br#"{"msisdn":"0821234567"}"#, AT, &DecodeOptions::default()).unwrap_err();
        assert_eq!(
            unknown.detail,
            "no `event_type` (telecom_events), `event_datetime`/`data_type` (cdr_data) or `start_time`/`call_type` (cdr_voice) field"
        );
    }
}
