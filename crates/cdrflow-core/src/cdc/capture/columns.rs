//! A PostgreSQL column as Debezium's PostgreSQL connector writes it through
//! JsonConverter: its Connect schema, and its text output turned into that
//! schema's JSON.
//!
//! The connector's defaults are followed (`decimal.handling.mode=precise`,
//! `time.precision.mode=adaptive`): a NUMERIC with a declared scale is a
//! Connect `Decimal`, one without a `VariableScaleDecimal`, a `timestamp` a
//! `MicroTimestamp`, a `timestamptz` a `ZonedTimestamp` in UTC, a `date` a
//! `Date`. Text output is what PostgreSQL writes with `DateStyle=ISO` and
//! `TimeZone=UTC`, the capture session's settings.

use base64::Engine as _;
use serde_json::json;

use crate::cdc::value::{parse_instant_micros, MAX_DECIMAL_SCALE};
use crate::normalize::Day;

/// Debezium's stand-in for a TOASTed value an update did not send.
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// How one column's values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Boolean,
    /// `int16`, `int32` or `int64`: the text is the number.
    Integer(&'static str),
    /// `float` or `double`: the text is the number (NaN and infinities are null).
    Float(&'static str),
    Decimal {
        precision: u32,
        scale: u32,
    },
    VariableScaleDecimal,
    Date,
    MicroTimestamp,
    ZonedTimestamp,
    Bytes,
    /// Anything else, as its text (with Debezium's logical name where it has one).
    Text(Option<&'static str>),
}

/// PostgreSQL type OIDs (`pg_type.oid`, fixed for built-in types).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

impl ColumnKind {
    pub fn of(type_oid: u32, type_modifier: i32) -> ColumnKind {
        match type_oid {
            oid::BOOL => ColumnKind::Boolean,
            oid::INT2 => ColumnKind::Integer("int16"),
            oid::INT4 => ColumnKind::Integer("int32"),
            oid::INT8 | oid::OID => ColumnKind::Integer("int64"),
            oid::FLOAT4 => ColumnKind::Float("float"),
            oid::FLOAT8 => ColumnKind::Float("double"),
            // NUMERIC(p, s) stores ((p << 16) | s) + VARHDRSZ as its modifier
            // (s in 11 bits, signed since PostgreSQL 15). A scale the
            // consumer cannot hold (over 30, or negative) is sent with each
            // value's own scale instead.
            oid::NUMERIC if type_modifier >= 4 => {
                let packed = (type_modifier - 4) as u32;
                let scale = packed & 0xffff;
                if scale > MAX_DECIMAL_SCALE {
                    ColumnKind::VariableScaleDecimal
                } else {
                    ColumnKind::Decimal {
                        precision: packed >> 16 & 0xffff,
                        scale,
                    }
                }
            }
            oid::NUMERIC => ColumnKind::VariableScaleDecimal,
            oid::DATE => ColumnKind::Date,
            oid::TIMESTAMP => ColumnKind::MicroTimestamp,
            oid::TIMESTAMPTZ => ColumnKind::ZonedTimestamp,
            oid::BYTEA => ColumnKind::Bytes,
            oid::UUID => ColumnKind::Text(Some("io.debezium.data.Uuid")),
            oid::JSON | oid::JSONB => ColumnKind::Text(Some("io.debezium.data.Json")),
            _ => ColumnKind::Text(None),
        }
    }

    /// The column's field in a Connect struct schema.
    pub fn schema(self, field: &str, optional: bool) -> serde_json::Value {
        let (kind, name) = match self {
            ColumnKind::Boolean => ("boolean", None),
            ColumnKind::Integer(kind) | ColumnKind::Float(kind) => (kind, None),
            ColumnKind::Decimal { precision, scale } => {
                return json!({
                    "type": "bytes", "optional": optional,
                    "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                    "parameters": {"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()},
                    "field": field,
                })
            }
            ColumnKind::VariableScaleDecimal => {
                return json!({
                    "type": "struct", "optional": optional,
                    "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
                    "doc": "Variable scaled decimal",
                    "fields": [
                        {"type": "int32", "optional": false, "field": "scale"},
                        {"type": "bytes", "optional": false, "field": "value"},
                    ],
                    "field": field,
                })
            }
            ColumnKind::Date => ("int32", Some("io.debezium.time.Date")),
            ColumnKind::MicroTimestamp => ("int64", Some("io.debezium.time.MicroTimestamp")),
            ColumnKind::ZonedTimestamp => ("string", Some("io.debezium.time.ZonedTimestamp")),
            ColumnKind::Bytes => ("bytes", None),
            ColumnKind::Text(name) => ("string", name),
        };
        let mut schema = json!({"type": kind, "optional": optional, "field": field});
        if let Some(name) = name {
            schema["name"] = json!(name);
            schema["version"] = json!(1);
        }
        schema
    }

    /// Appends the JSON of `text` (the column's text output) to `out`;
    /// `Err` with why when the value has no form in this column's schema
    /// (NaN, an infinity, a date before year 1): the caller writes null
    /// and says so.
    pub fn write(self, text: &str, out: &mut String) -> Result<(), String> {
        let cannot = |what: &str| Err(format!("`{text}` cannot be written as {what}"));
        match self {
            ColumnKind::Boolean => out.push_str(if text == "t" { "true" } else { "false" }),
            ColumnKind::Integer(kind) => match text.parse::<i64>() {
                Ok(n) => out.push_str(&n.to_string()),
                Err(_) => return cannot(kind),
            },
            // Written as PostgreSQL printed it, never through a float; NaN
            // and the infinities are not JSON numbers.
            ColumnKind::Float(kind) => {
                if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()
                    || !text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
                {
                    return cannot(kind);
                }
                out.push_str(text);
            }
            ColumnKind::Decimal { scale, .. } => {
                let Some((mantissa, written_scale)) = numeric(text) else {
                    return cannot("a Decimal");
                };
                let Some(mantissa) = scale
                    .checked_sub(written_scale)
                    .and_then(|up| mantissa.checked_mul(10i128.checked_pow(up)?))
                else {
                    return cannot(&format!("a Decimal of scale {scale}"));
                };
                push_json_string(out, &twos_complement_base64(mantissa));
            }
            ColumnKind::VariableScaleDecimal => {
                let Some((mantissa, scale)) =
                    numeric(text).filter(|(_, scale)| *scale <= MAX_DECIMAL_SCALE)
                else {
                    return cannot("a VariableScaleDecimal");
                };
                out.push_str("{\"scale\":");
                out.push_str(&scale.to_string());
                out.push_str(",\"value\":");
                push_json_string(out, &twos_complement_base64(mantissa));
                out.push('}');
            }
            ColumnKind::Date => match Day::parse(text) {
                Some(day) => out.push_str(&day.0.to_string()),
                None => return cannot("a Date"),
            },
            ColumnKind::MicroTimestamp => match parse_instant_micros(&format!("{text}Z")) {
                Ok(micros) => out.push_str(&micros.to_string()),
                Err(_) => return cannot("a MicroTimestamp"),
            },
            ColumnKind::ZonedTimestamp => {
                // `2026-01-15 10:00:00.5+00` in the session's UTC.
                let Some(utc) = text.strip_suffix("+00") else {
                    return cannot("a ZonedTimestamp");
                };
                let iso = format!("{}Z", utc.replacen(' ', "T", 1));
                if parse_instant_micros(&iso).is_err() {
                    return cannot("a ZonedTimestamp");
                }
                push_json_string(out, &iso);
            }
            ColumnKind::Bytes => {
                let Some(bytes) = text.strip_prefix("\\x").and_then(hex) else {
                    return cannot("bytes (bytea_output must be hex)");
                };
                push_json_string(
                    out,
                    &base64::engine::general_purpose::STANDARD.encode(bytes),
                );
            }
            ColumnKind::Text(_) => push_json_string(out, text),
        }
        Ok(())
    }

    /// Whether an unchanged TOASTed value is written as Debezium's placeholder
    /// (text columns) rather than null.
    pub fn takes_placeholder(self) -> bool {
        matches!(self, ColumnKind::Text(_))
    }
}

/// PostgreSQL's NUMERIC text output (`-12.50`: no exponent) as the unscaled
/// integer and the digits after the point.
fn numeric(text: &str) -> Option<(i128, u32)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut mantissa: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    Some((
        if negative { -mantissa } else { mantissa },
        u32::try_from(fraction.len()).ok()?,
    ))
}

/// The shortest big-endian two's complement of `n`, base64: a Connect
/// `Decimal`'s bytes.
fn twos_complement_base64(n: i128) -> String {
    let bytes = n.to_be_bytes();
    let fill = if n < 0 { 0xff } else { 0x00 };
    // Drop leading fill bytes while the next byte still carries the sign.
    let mut start = 0;
    while start < 15 && bytes[start] == fill && (bytes[start + 1] & 0x80) == (fill & 0x80) {
        start += 1;
    }
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Appends `text` as a JSON string literal.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::Value::from(text).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::value::unscaled;

    fn written(kind: ColumnKind, text: &str) -> Result<String, String> {
        let mut out = String::new();
        kind.write(text, &mut out).map(|()| out)
    }

    #[test]
    fn numeric_modifiers_give_precision_and_scale() {
        // NUMERIC(12,2): ((12 << 16) | 2) + 4, as atttypmod stores it.
        assert_eq!(
            ColumnKind::of(1700, (12 << 16 | 2) + 4),
            ColumnKind::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(ColumnKind::of(1700, -1), ColumnKind::VariableScaleDecimal);
        // NUMERIC(12,32) (PostgreSQL 15 allows a scale over the precision)
        // and NUMERIC(5,-2) (its 11-bit scale is 0x7fe): beyond what the
        // consumer reads as a fixed scale.
        for modifier in [(12 << 16 | 32) + 4, (5 << 16 | 0x7fe) + 4] {
            assert_eq!(
                ColumnKind::of(1700, modifier),
                ColumnKind::VariableScaleDecimal
            );
        }
    }

    #[test]
    fn decimals_round_trip_through_the_consumers_reading() {
        let kind = ColumnKind::Decimal {
            precision: 12,
            scale: 3,
        };
        for (text, mantissa) in [
            ("49.000", 49_000),
            ("-0.001", -1),
            ("0.128", 128),
            ("-128.000", -128_000),
            ("12.5", 12_500),
            ("99999999.999", 99_999_999_999),
        ] {
            let json = written(kind, text).unwrap();
            let base64: String = serde_json::from_str(&json).unwrap();
            assert_eq!(unscaled(&base64), Ok(mantissa), "{text}");
        }
        assert_eq!(
            written(ColumnKind::VariableScaleDecimal, "-7.25").unwrap(),
            format!(
                "{{\"scale\":2,\"value\":\"{}\"}}",
                base64::engine::general_purpose::STANDARD.encode((-725i16).to_be_bytes())
            )
        );
        assert!(written(kind, "NaN").is_err());
        assert!(
            written(
                ColumnKind::VariableScaleDecimal,
                &format!("0.{}1", "0".repeat(30))
            )
            .is_err(),
            "a scale of 31"
        );
        assert!(
            written(kind, "1.2345").is_err(),
            "more digits than the scale"
        );
    }

    #[test]
    fn times_and_dates_in_debeziums_units() {
        // 2026-01-15 is 20_468 days after 1970-01-01 (56 years, 14 leap days, 14 days).
        assert_eq!(written(ColumnKind::Date, "2026-01-15").unwrap(), "20468");
        assert_eq!(
            written(ColumnKind::MicroTimestamp, "2026-01-15 00:00:01.000002").unwrap(),
            (20_468i64 * 86_400_000_000 + 1_000_002).to_string()
        );
        assert_eq!(
            written(ColumnKind::ZonedTimestamp, "2026-01-15 10:00:00.5+00").unwrap(),
            "\"2026-01-15T10:00:00.5Z\""
        );
        assert!(written(ColumnKind::Date, "infinity").is_err());
        assert!(written(ColumnKind::ZonedTimestamp, "2026-01-15 10:00:00+02").is_err());
    }

    #[test]
    fn text_bytes_and_booleans() {
        assert_eq!(
            written(ColumnKind::Text(None), "Zoë \"x\"").unwrap(),
            "\"Zoë \\\"x\\\"\""
        );
        assert_eq!(written(ColumnKind::Bytes, "\\x00ff").unwrap(), "\"AP8=\"");
        assert_eq!(written(ColumnKind::Boolean, "t").unwrap(), "true");
        assert_eq!(
            written(ColumnKind::Float("double"), "1.5e-7").unwrap(),
            "1.5e-7"
        );
        assert!(written(ColumnKind::Float("double"), "NaN").is_err());
    }
}
