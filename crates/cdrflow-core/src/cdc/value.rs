//! Column values of a change event, as Kafka Connect's JsonConverter writes
//! them.
//!
//! With schemas (`{"schema":…,"payload":…}`) each column names its Connect
//! type and logical type, and the value is read by it: a `Decimal` is the
//! base64 of its unscaled big-endian two's-complement integer with the scale
//! in the schema's parameters, a `MicroTimestamp` microseconds since the
//! epoch, a `Date` days since it. Without schemas the JSON alone says little
//! (a base64 decimal is just a string, a timestamp just a number), so values
//! stay as written and the mapping, which knows what each column is, reads
//! them ([`Value::decimal`], [`Value::instant_micros`], [`Value::date`]).
//!
//! Numbers are kept as their text, never as a float: a NUMERIC column in
//! Debezium's `double` mode arrives as a JSON number and is read digit by
//! digit, as written.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::money::Decimal;
use crate::normalize::{parse_timestamp, Day};

/// One column's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// A number as written: a float column, Debezium's `double` decimal
    /// mode, or any number without a schema that is not a whole `i64`.
    Number(String),
    /// Exact: Connect `Decimal`, Debezium `VariableScaleDecimal`.
    Decimal(Decimal),
    Text(String),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Instant(i64),
    Date(Day),
    Bytes(Vec<u8>),
    /// A structure or array cdrflow does not read further, as JSON text.
    Json(String),
}

/// A row's columns, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row(pub Vec<(String, Value)>);

impl Row {
    /// The column's value; `None` when the row has no such column.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, v)| v)
    }
}

/// A Connect schema, as JsonConverter writes it beside the payload.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConnectSchema {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The field's name inside its struct.
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub fields: Vec<ConnectSchema>,
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
}

impl ConnectSchema {
    /// The schema of the struct field `name`.
    pub fn field(&self, name: &str) -> Option<&ConnectSchema> {
        self.fields
            .iter()
            .find(|f| f.field.as_deref() == Some(name))
    }

    fn scale(&self) -> Result<u32, String> {
        let scale = self
            .parameters
            .get("scale")
            .ok_or("a Decimal schema without a `scale` parameter")?;
        match scale {
            serde_json::Value::String(s) => s.parse().ok(),
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        }
        .filter(|s| *s <= MAX_DECIMAL_SCALE)
        .ok_or_else(|| {
            format!("the Decimal scale {scale} is not a whole number from 0 to {MAX_DECIMAL_SCALE}")
        })
    }
}

/// The largest decimal scale cdrflow reads: a mantissa is an `i128`
/// (38 digits), so 30 leaves eight whole digits. The capture holds to the
/// same bound, so it never sends a decimal its consumer would refuse.
pub const MAX_DECIMAL_SCALE: u32 = 30;

/// Logical type names (Kafka Connect's and Debezium's).
const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";
const ZONED_TIMESTAMP: &str = "io.debezium.time.ZonedTimestamp";
const MICRO_TIMESTAMP: &str = "io.debezium.time.MicroTimestamp";
const NANO_TIMESTAMP: &str = "io.debezium.time.NanoTimestamp";
const MILLI_TIMESTAMPS: [&str; 2] = [
    "io.debezium.time.Timestamp",
    "org.apache.kafka.connect.data.Timestamp",
];
const DATES: [&str; 2] = [
    "io.debezium.time.Date",
    "org.apache.kafka.connect.data.Date",
];

/// Reads one value by its schema (when the event has schemas).
pub fn decode_value(raw: &RawValue, schema: Option<&ConnectSchema>) -> Result<Value, String> {
    let text = raw.get().trim();
    if text == "null" {
        return Ok(Value::Null);
    }
    let Some(schema) = schema else {
        return bare(raw);
    };
    let int = || -> Result<i64, String> {
        text.parse::<i64>()
            .map_err(|_| format!("`{text}` is not a whole number"))
    };
    let string = || -> Result<String, String> {
        serde_json::from_str::<String>(text).map_err(|_| format!("`{text}` is not a string"))
    };
    match schema.name.as_deref() {
        Some(DECIMAL) => {
            let mantissa = unscaled(&string()?)?;
            Ok(Value::Decimal(Decimal {
                mantissa,
                scale: schema.scale()?,
            }))
        }
        Some(VARIABLE_SCALE_DECIMAL) => variable_scale_decimal(raw).ok_or_else(|| {
            format!(
                "`{text}` is not a VariableScaleDecimal (`{{\"scale\":…,\"value\":\"base64\"}}`)"
            )
        })?,
        Some(ZONED_TIMESTAMP) => Ok(Value::Instant(parse_instant_micros(&string()?)?)),
        Some(MICRO_TIMESTAMP) => Ok(Value::Instant(int()?)),
        Some(NANO_TIMESTAMP) => Ok(Value::Instant(int()?.div_euclid(1000))),
        Some(name) if MILLI_TIMESTAMPS.contains(&name) => int()?
            .checked_mul(1000)
            .map(Value::Instant)
            .ok_or_else(|| format!("`{text}` milliseconds is out of range")),
        Some(name) if DATES.contains(&name) => i32::try_from(int()?)
            .map(|d| Value::Date(Day(d)))
            .map_err(|_| format!("`{text}` days is out of range")),
        _ => match schema.kind.as_str() {
            "boolean" => serde_json::from_str(text)
                .map(Value::Bool)
                .map_err(|_| format!("`{text}` is not true or false")),
            "int8" | "int16" | "int32" | "int64" => int().map(Value::Int),
            "float" | "float32" | "float64" | "double" => number_text(text).map(Value::Number),
            "string" => string().map(Value::Text),
            "bytes" => base64_bytes(&string()?).map(Value::Bytes),
            _ => Ok(Value::Json(text.to_string())),
        },
    }
}

/// A value without a schema: what its JSON type says.
fn bare(raw: &RawValue) -> Result<Value, String> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text)
            .map(Value::Text)
            .map_err(|e| format!("`{text}`: {e}")),
        Some(b't') => Ok(Value::Bool(true)),
        Some(b'f') => Ok(Value::Bool(false)),
        Some(b'{') => Ok(variable_scale_decimal(raw)
            .transpose()?
            .unwrap_or_else(|| Value::Json(text.to_string()))),
        Some(b'[') => Ok(Value::Json(text.to_string())),
        _ => {
            let text = number_text(text)?;
            Ok(text
                .parse::<i64>()
                .map(Value::Int)
                .unwrap_or(Value::Number(text)))
        }
    }
}

fn number_text(text: &str) -> Result<String, String> {
    // Checked as JSON, kept as written.
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .ok()
        .filter(|_| text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']))
        .map(|_| text.to_string())
        .ok_or_else(|| format!("`{text}` is not a number"))
}

/// `{"scale":2,"value":"BOI="}`; `None` when the object is not one.
fn variable_scale_decimal(raw: &RawValue) -> Option<Result<Value, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct VariableScale {
        scale: u32,
        value: String,
    }
    let decimal: VariableScale = serde_json::from_str(raw.get()).ok()?;
    if decimal.scale > MAX_DECIMAL_SCALE {
        return Some(Err(format!(
            "the VariableScaleDecimal scale {} is over {MAX_DECIMAL_SCALE}",
            decimal.scale
        )));
    }
    Some(unscaled(&decimal.value).map(|mantissa| {
        Value::Decimal(Decimal {
            mantissa,
            scale: decimal.scale,
        })
    }))
}

fn base64_bytes(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| format!("`{text}` is not base64"))
}

/// The integer a Connect `Decimal` carries: base64 of big-endian two's
/// complement bytes.
pub fn unscaled(text: &str) -> Result<i128, String> {
    let bytes = base64_bytes(text)?;
    if bytes.len() > 16 {
        return Err(format!(
            "`{text}` is a {}-byte integer; cdrflow reads decimals of up to 38 digits",
            bytes.len()
        ));
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut word = [if negative { 0xff } else { 0 }; 16];
    word[16 - bytes.len()..].copy_from_slice(&bytes);
    Ok(i128::from_be_bytes(word))
}

/// RFC 3339 (Debezium's `ZonedTimestamp`: `2024-03-01T10:15:30.123456+01:00`)
/// to microseconds, keeping the fraction's fourth to sixth digits.
pub fn parse_instant_micros(text: &str) -> Result<i64, String> {
    let millis =
        parse_timestamp(text).map_err(|_| format!("`{text}` is not an RFC 3339 instant"))?;
    let fraction = text
        .trim()
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or("");
    let extra = fraction
        .bytes()
        .take_while(u8::is_ascii_digit)
        .skip(3)
        .take(3)
        .enumerate()
        .map(|(i, d)| i64::from(d - b'0') * 10i64.pow(2 - i as u32))
        .sum::<i64>();
    Ok(millis * 1000 + extra)
}

/// Reading a value as what the mapping says the column is.
impl Value {
    /// An exact decimal: a `Decimal`, a number as written, a decimal string
    /// (Debezium's `string` mode) or — without schemas, where only the
    /// mapping knows the scale — the base64 of a `Decimal` at `scale`.
    pub fn decimal(&self, base64_scale: Option<u32>) -> Result<Option<Decimal>, String> {
        match self {
            Value::Null => Ok(None),
            Value::Decimal(d) => Ok(Some(*d)),
            Value::Int(i) => Ok(Some(Decimal {
                mantissa: i128::from(*i),
                scale: 0,
            })),
            Value::Number(text) => Decimal::parse(text).map(Some).map_err(|e| e.to_string()),
            Value::Text(text) => match base64_scale {
                Some(scale) => Ok(Some(Decimal {
                    mantissa: unscaled(text)?,
                    scale,
                })),
                None => Decimal::parse(text).map(Some).map_err(|_| {
                    format!("`{text}` is not a decimal (if it is a base64 Decimal without a schema, give the column's `scale` in the mapping)")
                }),
            },
            other => Err(format!("{} is not a decimal", other.describe())),
        }
    }

    /// An instant in microseconds: a timestamp, an RFC 3339 string, or a
    /// number in `unit` (a schema-less event cannot say which).
    pub fn instant_micros(&self, unit: TimeUnit) -> Result<Option<i64>, String> {
        match self {
            Value::Null => Ok(None),
            Value::Instant(micros) => Ok(Some(*micros)),
            Value::Text(text) => parse_instant_micros(text).map(Some),
            Value::Int(n) => unit
                .micros(*n)
                .map(Some)
                .ok_or_else(|| format!("{n} {} is out of range", unit.as_str())),
            Value::Date(day) => Ok(Some(i64::from(day.0) * 86_400_000_000)),
            other => Err(format!("{} is not an instant", other.describe())),
        }
    }

    /// A calendar day: a `Date`, days since the epoch, or `YYYY-MM-DD`.
    pub fn date(&self) -> Result<Option<Day>, String> {
        match self {
            Value::Null => Ok(None),
            Value::Date(day) => Ok(Some(*day)),
            Value::Int(n) => i32::try_from(*n)
                .map(|d| Some(Day(d)))
                .map_err(|_| format!("{n} days is out of range")),
            Value::Text(text) => Day::parse(text)
                .map(Some)
                .ok_or_else(|| format!("`{text}` is not a YYYY-MM-DD date")),
            other => Err(format!("{} is not a date", other.describe())),
        }
    }

    /// Text: strings as they are, numbers and booleans as written.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Number(text) | Value::Text(text) | Value::Json(text) => Some(text.clone()),
            Value::Decimal(d) => Some(d.to_string()),
            Value::Instant(micros) => Some(crate::normalize::format_timestamp_ms(
                micros.div_euclid(1000),
            )),
            Value::Date(day) => Some(day.to_string()),
            Value::Bytes(bytes) => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// What the value is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Int(i) => format!("the number {i}"),
            Value::Number(n) => format!("the number {n}"),
            Value::Decimal(d) => format!("the decimal {d}"),
            Value::Text(t) => format!("the string `{t}`"),
            Value::Instant(_) => "an instant".into(),
            Value::Date(d) => format!("the date {d}"),
            Value::Bytes(_) => "bytes".into(),
            Value::Json(_) => "a structure".into(),
        }
    }
}

/// What a schema-less number means for a timestamp column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Millis,
    /// Debezium's `MicroTimestamp`, what PostgreSQL's `timestamp` columns become by default.
    #[default]
    Micros,
    Nanos,
}

impl TimeUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Millis => "milliseconds",
            TimeUnit::Micros => "microseconds",
            TimeUnit::Nanos => "nanoseconds",
        }
    }

    fn micros(self, n: i64) -> Option<i64> {
        match self {
            TimeUnit::Millis => n.checked_mul(1000),
            TimeUnit::Micros => Some(n),
            TimeUnit::Nanos => Some(n.div_euclid(1000)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    fn schema(json: &str) -> ConnectSchema {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn connect_decimals_are_two_s_complement_integers_with_the_schema_s_scale() {
        let price = schema(
            r#"{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"price"}"#,
        );
        // 1250 = 0x04E2; -1250 = 0xFB1E; 128 needs a leading zero byte (0x0080).
        for (b64, mantissa) in [
            ("BOI=", 1250),
            ("+x4=", -1250),
            ("AIA=", 128),
            ("gA==", -128),
            ("", 0),
        ] {
            assert_eq!(
                decode_value(&raw(&format!("\"{b64}\"")), Some(&price)).unwrap(),
                Value::Decimal(Decimal { mantissa, scale: 2 }),
                "{b64}"
            );
        }
        let wide = base64::engine::general_purpose::STANDARD.encode([1u8; 17]);
        assert!(unscaled(&wide).unwrap_err().contains("17-byte"));
    }

    #[test]
    fn variable_scale_decimals_carry_their_own_scale() {
        let schema = schema(
            r#"{"type":"struct","name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]}"#,
        );
        let value = raw(r#"{"scale":3,"value":"MDk="}"#); // 0x3039 = 12345
        let expected = Value::Decimal(Decimal {
            mantissa: 12345,
            scale: 3,
        });
        assert_eq!(decode_value(&value, Some(&schema)).unwrap(), expected);
        assert_eq!(decode_value(&value, None).unwrap(), expected);
    }

    #[test]
    fn timestamps_by_their_logical_type() {
        let named =
            |name: &str, kind: &str| schema(&format!(r#"{{"type":"{kind}","name":"{name}"}}"#));
        let at = 1_709_288_130_123_456i64; // 2024-03-01T10:15:30.123456Z
        let cases = [
            (named(MICRO_TIMESTAMP, "int64"), at.to_string(), at),
            (named(NANO_TIMESTAMP, "int64"), format!("{at}789"), at),
            (
                named(MILLI_TIMESTAMPS[0], "int64"),
                (at / 1000).to_string(),
                at / 1000 * 1000,
            ),
            (
                named(MILLI_TIMESTAMPS[1], "int64"),
                (at / 1000).to_string(),
                at / 1000 * 1000,
            ),
            (
                named(ZONED_TIMESTAMP, "string"),
                "\"2024-03-01T11:15:30.123456+01:00\"".into(),
                at,
            ),
        ];
        for (schema, text, micros) in cases {
            assert_eq!(
                decode_value(&raw(&text), Some(&schema)).unwrap(),
                Value::Instant(micros),
                "{schema:?}"
            );
        }
        let date = named(DATES[0], "int32");
        assert_eq!(
            decode_value(&raw("19783"), Some(&date)).unwrap(),
            Value::Date(Day::parse("2024-03-01").unwrap())
        );
    }

    #[test]
    fn numbers_stay_as_written() {
        let double = schema(r#"{"type":"double"}"#);
        assert_eq!(
            decode_value(&raw("0.1"), Some(&double)).unwrap(),
            Value::Number("0.1".into())
        );
        assert_eq!(
            Value::Number("0.1".into()).decimal(None).unwrap(),
            Some(Decimal {
                mantissa: 1,
                scale: 1
            })
        );
        assert_eq!(decode_value(&raw("12"), None).unwrap(), Value::Int(12));
        assert_eq!(
            decode_value(&raw("1e400"), None).unwrap(),
            Value::Number("1e400".into())
        );
        assert!(decode_value(&raw("\"x\""), Some(&schema(r#"{"type":"int64"}"#))).is_err());
    }

    #[test]
    fn schema_less_values_are_read_as_the_mapping_says() {
        // Debezium's `string` mode, and a base64 Decimal whose scale only the mapping knows.
        let text = Value::Text("12.50".into());
        let micros = |d: Option<Decimal>| d.and_then(|d| d.scaled_to_integer(6));
        assert_eq!(micros(text.decimal(None).unwrap()), Some(12_500_000));
        assert_eq!(
            Value::Text("BOI=".into()).decimal(Some(2)).unwrap(),
            Some(Decimal {
                mantissa: 1250,
                scale: 2
            })
        );
        assert!(Value::Text("BOI=".into())
            .decimal(None)
            .unwrap_err()
            .contains("scale"));
        assert_eq!(
            Value::Int(1_709_288_130_123)
                .instant_micros(TimeUnit::Millis)
                .unwrap(),
            Some(1_709_288_130_123_000)
        );
        assert_eq!(
            Value::Text("2024-03-01".into()).date().unwrap(),
            Day::parse("2024-03-01")
        );
    }
}
