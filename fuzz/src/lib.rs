//! The properties the fuzz targets check, one `check_*` function per target
//! (the targets in `fuzz_targets/` only hand their input over). Kept in a
//! library so that a failing input can also be replayed from a plain test.
//!
//! Every check is written against an oracle that does not share code with
//! the function under test: `serde_json` for the JSON reader, a string-based
//! exact decimal ([`Exact`]) for numbers, a re-statement of the documented
//! rules for subscriber numbers, and the core's own building blocks (decode,
//! rate) for the classification path, which composes them.

use std::collections::HashMap;
use std::sync::OnceLock;

use cdrflow_core::aggregate::{RowKey, Totals};
use cdrflow_core::formats::{decode, DecodeOptions, Format, MAX_TEXT_BYTES, MAX_TYPE_BYTES};
use cdrflow_core::dedup::{DedupEntry, RecordKey};
use cdrflow_core::json::{for_each_field, JsonError, JsonValue, MAX_NESTING};
use cdrflow_core::mediation::{DuplicateReason, MediationConfig, Mediator, RawRecord};
use cdrflow_core::model::{Cdr, Direction, IdSpace, Kind, SourcePosition};
use cdrflow_core::money::{div_round_half_away, format_micros, Decimal, DecimalError};
use cdrflow_core::normalize::{
    format_timestamp, normalize_msisdn, parse_timestamp, CountryCode, SummaryZone,
};
use cdrflow_core::operator::{
    BatchContext, Checkpoint, Operator, ReadError, StateChange, StateReader, StateTable,
};
use cdrflow_core::rating::{Rater, Tariff, TariffOverrides};
use cdrflow_core::reject::{RejectReason, Rejection};

// ---------------------------------------------------------------------------
// Exact decimals, as strings: the oracle for every number.

/// An exact decimal in canonical form: `±digits × 10^exponent`, `digits`
/// without leading or trailing zeros (empty for zero, which is never negative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exact {
    pub negative: bool,
    pub digits: String,
    pub exponent: i128,
}

impl Exact {
    pub fn new(negative: bool, digits: &str, exponent: i128) -> Exact {
        let significant = digits.trim_start_matches('0');
        let trimmed = significant.trim_end_matches('0');
        if trimmed.is_empty() {
            return Exact {
                negative: false,
                digits: String::new(),
                exponent: 0,
            };
        }
        Exact {
            negative,
            digits: trimmed.to_string(),
            exponent: exponent + (significant.len() - trimmed.len()) as i128,
        }
    }

    /// `value × 10^exponent`.
    pub fn of_int(value: i128, exponent: i128) -> Exact {
        Exact::new(value < 0, &value.unsigned_abs().to_string(), exponent)
    }

    pub fn of_decimal(d: Decimal) -> Exact {
        Exact::of_int(d.mantissa, -i128::from(d.scale))
    }

    pub fn is_integer(&self) -> bool {
        self.exponent >= 0
    }

    /// The grammar `Decimal::parse` documents (a JSON-style number, also
    /// `+`, `1.` and `.5`): an optional sign, digits with at most one point
    /// (at least one digit), then optionally `e`/`E` and a 64-bit exponent.
    /// `None` for anything else.
    pub fn parse_decimal_text(text: &str) -> Option<Exact> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (body, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int, frac) = match body.split_once('.') {
            Some((int, frac)) => (int, frac),
            None => (body, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || !all_digits(frac) || int.len() + frac.len() == 0 {
            return None;
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => e.parse().ok()?,
        };
        Some(Exact::new(
            negative,
            &format!("{int}{frac}"),
            i128::from(exponent) - frac.len() as i128,
        ))
    }
}

// ---------------------------------------------------------------------------
// The JSON reader.

fn first_non_ws(input: &[u8]) -> Option<u8> {
    input
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The number of containers open after each byte of `input` (the top level
/// counted), skipping strings: an independent count of how deep the reader
/// has gone.
fn depths(input: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    input.iter().map(move |&b| {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        depth
    })
}

/// Containers open just before byte `end`.
fn open_containers(input: &[u8], end: usize) -> usize {
    depths(&input[..end]).last().unwrap_or(0)
}

/// The deepest nesting anywhere in `input`.
fn deepest_nesting(input: &[u8]) -> usize {
    depths(input).max().unwrap_or(0)
}

fn value_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn serde_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// RFC 8259's number grammar, written out again.
fn is_json_number(t: &[u8]) -> bool {
    let digits = |i: &mut usize| {
        let start = *i;
        while matches!(t.get(*i), Some(b'0'..=b'9')) {
            *i += 1;
        }
        *i > start
    };
    let mut i = usize::from(t.first() == Some(&b'-'));
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == t.len()
}

/// Whether `a` lies inside `outer` (the reader hands out borrowed slices only).
fn within(outer: &[u8], a: &[u8]) -> bool {
    let (o, p) = (outer.as_ptr() as usize, a.as_ptr() as usize);
    a.is_empty() || (p >= o && p + a.len() <= o + outer.len())
}

/// A `\uD800`-`\uDFFF` escape somewhere in the text: the one thing the
/// reader's grammar accepts that `serde_json` may refuse (unpaired halves).
fn has_surrogate_escape(input: &[u8]) -> bool {
    input.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && matches!(w[2], b'd' | b'D')
            && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    })
}

/// `arbitrary_precision` makes `serde_json` read an object whose key is
/// `$serde_json::private::Number` (however escaped) as its private number
/// wrapper, so it refuses records any other JSON reader accepts; where the
/// text names that key anywhere, the oracle cannot judge a refusal.
fn names_number_marker(input: &[u8]) -> bool {
    const MARKER: &str = "$serde_json::private::Number";
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'"' {
            let start = i;
            i += 1;
            while i < input.len() && input[i] != b'"' {
                i += if input[i] == b'\\' { 2 } else { 1 };
            }
            let token = &input[start..(i + 1).min(input.len())];
            if serde_json::from_slice::<String>(token).is_ok_and(|s| s == MARKER) {
                return true;
            }
        }
        i += 1;
    }
    false
}

fn key_text(raw: &[u8]) -> Option<String> {
    JsonValue::String {
        raw,
        escaped: raw.contains(&b'\\'),
    }
    .as_str()
    .map(|s| s.into_owned())
}

/// The text that writes `value` back (containers as empty ones).
fn write_value(value: &JsonValue<'_>, out: &mut Vec<u8>) {
    match *value {
        JsonValue::String { raw, .. } => {
            out.push(b'"');
            out.extend_from_slice(raw);
            out.push(b'"');
        }
        JsonValue::Number(text) => out.extend_from_slice(text.as_bytes()),
        JsonValue::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        JsonValue::Null => out.extend_from_slice(b"null"),
        JsonValue::Object => out.extend_from_slice(b"{}"),
        JsonValue::Array => out.extend_from_slice(b"[]"),
    }
}

/// `json::for_each_field`: never panics; every error is where it says, and
/// agrees with `serde_json`; nesting is refused exactly past
/// [`MAX_NESTING`]; every value is a slice of the input that `serde_json`
/// reads the same; the fields written back read back the same.
pub fn check_json(input: &[u8]) {
    let mut fields: Vec<(&[u8], JsonValue<'_>)> = Vec::new();
    let result = for_each_field(input, |k, v| fields.push((k, v)));
    let utf8 = std::str::from_utf8(input).is_ok();
    let top_object = first_non_ws(input) == Some(b'{');

    for (key, value) in &fields {
        assert!(within(input, key), "key outside the input");
        match *value {
            JsonValue::String { raw, escaped } => {
                assert!(within(input, raw), "string outside the input");
                assert_eq!(escaped, raw.contains(&b'\\'), "escaped flag of {raw:?}");
                if !escaped {
                    assert!(value.as_str().is_some(), "unescaped string not text");
                }
            }
            JsonValue::Number(text) => {
                assert!(within(input, text.as_bytes()), "number outside the input");
                assert!(
                    is_json_number(text.as_bytes()),
                    "{text:?} is not a JSON number"
                );
            }
            _ => {}
        }
    }

    match &result {
        Ok(()) => {
            assert!(utf8 && top_object, "accepted a non-object or non-UTF-8");
            assert!(
                deepest_nesting(input) <= MAX_NESTING as usize + 1,
                "accepted nesting deeper than {MAX_NESTING}"
            );
        }
        Err(JsonError::InvalidUtf8) => assert!(!utf8, "valid UTF-8 refused as invalid"),
        Err(JsonError::NotAnObject(kind)) => {
            assert!(utf8 && !top_object && *kind != "object", "{kind}");
        }
        Err(JsonError::Malformed { at, .. }) => {
            assert!(
                utf8 && *at <= input.len(),
                "error at {at} of {}",
                input.len()
            );
        }
        Err(JsonError::TooDeep { at }) => {
            assert!(utf8);
            assert!(
                matches!(input.get(*at), Some(b'{' | b'[')),
                "TooDeep at {at} is not a container"
            );
            // The record's own object is not counted; a top-level array is.
            let allowed = MAX_NESTING as usize + usize::from(top_object);
            assert_eq!(
                open_containers(input, *at),
                allowed,
                "refused at the wrong depth"
            );
        }
    }

    let oracle = serde_json::from_slice::<serde_json::Value>(input);
    match (&result, &oracle) {
        // The oracle's own blind spot, not the reader's: see below.
        _ if names_number_marker(input) => {}
        (Ok(()), Ok(serde_json::Value::Object(map))) => {
            // Last occurrence wins, as in serde_json's map.
            let mut last: HashMap<String, JsonValue<'_>> = HashMap::new();
            for (key, value) in &fields {
                let key = key_text(key).expect("serde_json decoded this key");
                last.insert(key, *value);
            }
            assert_eq!(last.len(), map.len(), "different keys than serde_json");
            for (key, value) in &last {
                let theirs = map.get(key).expect("a key serde_json does not see");
                match (value, theirs) {
                    (JsonValue::String { .. }, serde_json::Value::String(s)) => {
                        assert_eq!(
                            value.as_str().as_deref(),
                            Some(s.as_str()),
                            "string `{key}` decodes differently"
                        );
                    }
                    (JsonValue::Number(text), serde_json::Value::Number(n)) => {
                        // serde_json respells exponents (`e2` as `e+2`): compare
                        // values, or the spelling when an exponent passes 64 bits.
                        let theirs = n.to_string();
                        match (
                            Exact::parse_decimal_text(text),
                            Exact::parse_decimal_text(&theirs),
                        ) {
                            (Some(a), Some(b)) => {
                                assert_eq!(a, b, "number `{key}` = {text} vs {n}")
                            }
                            _ => {
                                let plain = |t: &str| t.to_ascii_lowercase().replace("e+", "e");
                                assert_eq!(plain(text), plain(&theirs), "number `{key}`");
                            }
                        }
                    }
                    (JsonValue::Bool(b), serde_json::Value::Bool(c)) => assert_eq!(b, c),
                    (JsonValue::Null, serde_json::Value::Null)
                    | (JsonValue::Object, serde_json::Value::Object(_))
                    | (JsonValue::Array, serde_json::Value::Array(_)) => {}
                    (ours, theirs) => panic!("`{key}`: {ours:?} vs {theirs:?}"),
                }
            }
        }
        (Ok(()), Ok(other)) => panic!("accepted, serde_json reads a {}", serde_type(other)),
        (Ok(()) | Err(JsonError::NotAnObject(_)), Err(e)) => assert!(
            has_surrogate_escape(input),
            "accepted what serde_json refuses: {e}"
        ),
        (Err(JsonError::NotAnObject(kind)), Ok(v)) => assert_eq!(*kind, serde_type(v)),
        (Err(JsonError::TooDeep { .. }), Ok(v)) => {
            let allowed = MAX_NESTING as usize + usize::from(top_object);
            assert!(
                value_depth(v) > allowed,
                "refused at depth {}",
                value_depth(v)
            )
        }
        (Err(e), Ok(_)) => panic!("refused what serde_json accepts: {e:?}"),
        (Err(_), Err(_)) => {}
    }

    // Round trip: the fields written back as an object read back the same.
    if result.is_ok() {
        let mut text = b"{".to_vec();
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            text.push(b'"');
            text.extend_from_slice(key);
            text.extend_from_slice(b"\":");
            write_value(value, &mut text);
        }
        text.push(b'}');
        let mut again = Vec::new();
        for_each_field(&text, |k, v| again.push((k.to_vec(), format!("{v:?}"))))
            .expect("written-back fields read back");
        let before: Vec<_> = fields
            .iter()
            .map(|(k, v)| (k.to_vec(), format!("{v:?}")))
            .collect();
        assert_eq!(before, again, "fields differ after a round trip");
    }
}

// ---------------------------------------------------------------------------
// The decoders.

const AT: SourcePosition = SourcePosition::Line {
    line: 7,
    byte_offset: 4096,
};

/// The fields the decoder reads; each appears at most once in a record.
const KNOWN_FIELDS: [&str; 20] = [
    "cdr_id",
    "event_id",
    "msisdn",
    "event_datetime",
    "data_type",
    "up_bytes",
    "down_bytes",
    "start_time",
    "call_type",
    "call_duration_sec",
    "event_type",
    "event_subtype",
    "duration_seconds",
    "data_mb",
    "amount",
    "region",
    "cell_tower_id",
    "timestamp",
    "other_party",
    "radio_technology",
];

/// Reasons only later stages give (the source, the clock, dedup, rating).
const NOT_FROM_DECODE: [RejectReason; 4] = [
    RejectReason::RecordTooLarge,
    RejectReason::TimeInFuture,
    RejectReason::LateBeyondDedupWindow,
    RejectReason::RatingFailed,
];

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: what RFC 3339 can
/// write in UTC, so what `format_timestamp` and the summaries' dates can.
const EARLIEST: i64 = -62_167_219_200_000;
const LATEST: i64 = 253_402_300_799_999;

fn check_rejection(rejection: &Rejection) {
    assert!(
        !NOT_FROM_DECODE.contains(&rejection.reason),
        "decode gave {}",
        rejection.reason
    );
    assert!(
        !rejection.detail.is_empty(),
        "{} without detail",
        rejection.reason
    );
    assert_eq!(
        RejectReason::parse(rejection.reason.as_str()),
        Some(rejection.reason)
    );
    assert!(RejectReason::ALL.contains(&rejection.reason));
}

fn text_of(value: Option<&JsonValue<'_>>) -> Option<String> {
    value.and_then(|v| v.as_str()).map(|s| s.into_owned())
}

fn number_of<'a>(value: Option<&JsonValue<'a>>, name: &str) -> &'a str {
    match value {
        Some(JsonValue::Number(text)) => text,
        other => panic!("accepted `{name}` = {other:?}"),
    }
}

/// An accepted record's measure is exactly the number in the record
/// (`shift` 6 for megabytes into bytes and amounts into micros).
fn assert_exact(value: i128, shift: i128, text: &str, name: &str) {
    let written = Exact::parse_decimal_text(text).expect("a JSON number");
    assert_eq!(
        Exact::of_int(value, -shift),
        written,
        "`{name}` = {text} decoded as {value}e-{shift}"
    );
}

fn check_text_field(
    value: &Option<std::borrow::Cow<'_, str>>,
    raw: Option<&JsonValue<'_>>,
    name: &str,
) {
    if let Some(text) = value {
        assert!(
            text.len() <= MAX_TEXT_BYTES,
            "`{name}` is {} bytes",
            text.len()
        );
    }
    match raw {
        None | Some(JsonValue::Null) => assert!(value.is_none(), "`{name}` out of nothing"),
        Some(JsonValue::Number(n)) if name == "cell_tower_id" => {
            assert_eq!(value.as_deref(), Some(*n))
        }
        Some(v) => assert_eq!(value.as_deref(), v.as_str().as_deref(), "`{name}`"),
    }
}

/// Everything an accepted record promises, checked against its own fields.
fn check_cdr(cdr: &Cdr<'_>, fields: &HashMap<&[u8], JsonValue<'_>>, options: &DecodeOptions) {
    let get = |name: &str| fields.get(name.as_bytes());
    assert_eq!(cdr.position, AT);

    // The subscriber: E.164, 8 to 15 digits, as normalize_msisdn spells the
    // raw one — or, when its last digits are masked with `*`, a pseudonymous
    // one with those digits as zeros and the count of masks.
    let raw_msisdn = text_of(get("msisdn")).expect("accepted without an msisdn");
    let trimmed = raw_msisdn.trim_end();
    let masks = trimmed.len() - trimmed.trim_end_matches('*').len();
    if masks == 0 {
        assert_eq!(
            normalize_msisdn(&raw_msisdn, options.default_country_code),
            Ok(cdr.served_msisdn)
        );
    } else {
        let zeros = format!("{}{}", trimmed.trim_end_matches('*'), "0".repeat(masks));
        let number = normalize_msisdn(&zeros, options.default_country_code)
            .expect("a masked number accepted whose digits are not a number");
        assert!(cdr.served_msisdn.is_pseudonymous());
        assert_eq!(cdr.served_msisdn.digits(), number.digits());
        assert_eq!(cdr.served_msisdn.masked_digits() as usize, masks);
    }
    assert!((10_000_000..1_000_000_000_000_000).contains(&cdr.served_msisdn.digits()));

    // The type label: trimmed, lower-case, 1 to MAX_TYPE_BYTES bytes.
    let ty = cdr.service_type.as_ref();
    assert!(
        !ty.is_empty() && ty.len() <= MAX_TYPE_BYTES,
        "type label of {} bytes: {ty:?}",
        ty.len()
    );
    assert_eq!(ty, ty.trim(), "type label not trimmed");
    assert_eq!(ty, ty.to_lowercase(), "type label not lower-case");
    let label_field = match cdr.id_space {
        IdSpace::CdrData => "data_type",
        IdSpace::CdrVoice => "call_type",
        IdSpace::TelecomEvents => "event_subtype",
        IdSpace::ChargingRecords => unreachable!("a JSON record is no 3GPP charging record"),
    };
    let label = text_of(get(label_field)).unwrap_or_else(|| "default".into());
    assert_eq!(ty, label.trim().to_lowercase(), "type label of {label:?}");

    check_text_field(&cdr.other_party, get("other_party"), "other_party");
    check_text_field(&cdr.region, get("region"), "region");
    check_text_field(&cdr.cell_id, get("cell_tower_id"), "cell_tower_id");
    check_text_field(
        &cdr.radio_technology,
        get("radio_technology"),
        "radio_technology",
    );
    let id_field = match cdr.id_space {
        IdSpace::TelecomEvents => "event_id",
        IdSpace::CdrData | IdSpace::CdrVoice => "cdr_id",
        IdSpace::ChargingRecords => unreachable!("a JSON record is no 3GPP charging record"),
    };
    check_text_field(&cdr.record_id, get(id_field), id_field);

    // The time: what parse_timestamp makes of the raw text, within four-digit years.
    let time_field = match cdr.id_space {
        IdSpace::CdrData => "event_datetime",
        IdSpace::CdrVoice => "start_time",
        IdSpace::TelecomEvents => "timestamp",
        IdSpace::ChargingRecords => unreachable!("a JSON record is no 3GPP charging record"),
    };
    let raw_time = text_of(get(time_field)).expect("accepted without a time");
    assert_eq!(parse_timestamp(&raw_time), Ok(cdr.start_time));
    assert!(
        (EARLIEST..=LATEST).contains(&cdr.start_time),
        "{}",
        cdr.start_time
    );
    let again = parse_timestamp(&format_timestamp(cdr.start_time)).expect("formatted time parses");
    assert_eq!(again, cdr.start_time - cdr.start_time.rem_euclid(1000));

    // The measures: exactly what the record says, and nothing the kind has not.
    let measure = |name: &str| number_of(get(name), name);
    match (cdr.id_space, cdr.kind) {
        (IdSpace::CdrData, Kind::Data) => {
            assert_exact(cdr.uplink_bytes.into(), 0, measure("up_bytes"), "up_bytes");
            assert_exact(
                cdr.downlink_bytes.into(),
                0,
                measure("down_bytes"),
                "down_bytes",
            );
            assert_eq!((cdr.duration_sec, cdr.amount), (0, None));
            assert_eq!(cdr.direction, Direction::Unknown);
        }
        (IdSpace::CdrVoice, Kind::Voice) => {
            let seconds = measure("call_duration_sec");
            assert_exact(cdr.duration_sec.into(), 0, seconds, "call_duration_sec");
            assert_eq!(
                (cdr.uplink_bytes, cdr.downlink_bytes, cdr.amount),
                (0, 0, None)
            );
            assert_eq!(cdr.direction, Direction::Outgoing);
        }
        (IdSpace::TelecomEvents, kind) => {
            let event_type = text_of(get("event_type")).expect("accepted without event_type");
            let expected = match event_type.trim() {
                "call" => Kind::Voice,
                "sms" => Kind::Sms,
                "data_session" => Kind::Data,
                "balance_recharge" => Kind::Recharge,
                "service_activation" => Kind::Activation,
                other => panic!("accepted event_type {other:?}"),
            };
            assert_eq!(kind, expected);
            let direction = match ty {
                "incoming" => Direction::Incoming,
                "outgoing" => Direction::Outgoing,
                _ => Direction::Unknown,
            };
            assert_eq!(cdr.direction, direction);
            assert_eq!(cdr.uplink_bytes, 0);
            match kind {
                Kind::Voice => {
                    let seconds = measure("duration_seconds");
                    assert_exact(cdr.duration_sec.into(), 0, seconds, "duration_seconds");
                }
                _ => assert_eq!(cdr.duration_sec, 0),
            }
            match kind {
                Kind::Data => {
                    assert_exact(cdr.downlink_bytes.into(), 6, measure("data_mb"), "data_mb")
                }
                _ => assert_eq!(cdr.downlink_bytes, 0),
            }
            match (kind, cdr.amount) {
                (Kind::Recharge, Some(amount)) => {
                    assert!(amount.micros >= 0, "negative amount");
                    assert_exact(amount.micros.into(), 6, measure("amount"), "amount");
                }
                (Kind::Recharge, None) => panic!("a recharge without an amount"),
                (_, amount) => assert_eq!(amount, None),
            }
        }
        (space, kind) => panic!("{kind:?} record in {space:?}"),
    }
}

/// What `decode` must say about a record, for `format` (or `Auto`).
pub fn check_decode(payload: &[u8], format: Format) {
    let options = DecodeOptions {
        format,
        ..DecodeOptions::default()
    };
    let result = decode(payload, AT, &options);
    assert_eq!(result, decode(payload, AT, &options), "not deterministic");

    let mut raw: Vec<(&[u8], JsonValue<'_>)> = Vec::new();
    let json = for_each_field(payload, |k, v| raw.push((k, v)));
    if let Err(e) = json {
        let expected = match e {
            JsonError::InvalidUtf8 => RejectReason::InvalidUtf8,
            JsonError::NotAnObject(_) => RejectReason::NotAnObject,
            JsonError::Malformed { .. } => RejectReason::MalformedJson,
            JsonError::TooDeep { .. } => RejectReason::TooDeeplyNested,
        };
        let rejection = result.expect_err("accepted a record that is not a JSON object");
        assert_eq!(rejection.reason, expected, "{rejection}");
        check_rejection(&rejection);
        return;
    }
    let duplicate = KNOWN_FIELDS
        .iter()
        .any(|name| raw.iter().filter(|(k, _)| *k == name.as_bytes()).count() > 1);
    if duplicate {
        let rejection = result.expect_err("accepted a record with a field twice");
        assert_eq!(rejection.reason, RejectReason::DuplicateField);
        check_rejection(&rejection);
        return;
    }
    let has = |name: &str| raw.iter().any(|(k, _)| *k == name.as_bytes());
    let detected = if has("event_type") {
        Some("telecom-events")
    } else if has("event_datetime") || has("data_type") || has("up_bytes") {
        Some("cdr-data")
    } else if has("start_time") || has("call_type") || has("call_duration_sec") {
        Some("cdr-voice")
    } else {
        None
    };
    let detected = detected.map(|name| Format::parse(name).expect("a registered format"));
    let effective = match (format.is_auto(), detected) {
        (true, None) => {
            let rejection = result.expect_err("accepted a record of no known format");
            assert_eq!(rejection.reason, RejectReason::UnknownFormat);
            check_rejection(&rejection);
            return;
        }
        (true, Some(detected)) => {
            // Detection is only a choice: decoding as the detected format says the same.
            let forced = DecodeOptions {
                format: detected,
                ..options
            };
            assert_eq!(result, decode(payload, AT, &forced), "auto vs {detected}");
            detected
        }
        (false, _) => format,
    };
    match &result {
        Err(rejection) => {
            assert_ne!(rejection.reason, RejectReason::UnknownFormat);
            check_rejection(rejection);
        }
        Ok(cdr) => {
            let space = match effective.name() {
                "cdr-data" => IdSpace::CdrData,
                "cdr-voice" => IdSpace::CdrVoice,
                "telecom-events" => IdSpace::TelecomEvents,
                other => unreachable!("{other} is not a JSON format"),
            };
            assert_eq!(cdr.id_space, space);
            let fields: HashMap<&[u8], JsonValue<'_>> = raw.into_iter().collect();
            check_cdr(cdr, &fields, &options);
        }
    }
}

// ---------------------------------------------------------------------------
// Subscriber numbers.

/// The documented rules of `normalize_msisdn`, re-stated: separators
/// (space, dash, dot, parentheses) ignored; a `+` only before any digit with
/// nothing but spaces ahead of it; then `+`: E.164, `00`: international,
/// one `0`: national with the default code, else the digits carry their
/// code. The code never starts with 0; 8 to 15 digits in all.
fn msisdn_reference(raw: &str, cc_digits: &str) -> Option<u64> {
    let mut digits = String::new();
    let mut plus = false;
    for (i, c) in raw.char_indices() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            '+' if !plus && digits.is_empty() && raw[..i].chars().all(|c| c == ' ') => plus = true,
            _ => return None,
        }
    }
    let e164 = if plus {
        digits
    } else if let Some(international) = digits.strip_prefix("00") {
        international.to_string()
    } else if let Some(national) = digits.strip_prefix('0') {
        format!("{cc_digits}{national}")
    } else {
        digits
    };
    if e164.starts_with('0') || !(8..=15).contains(&e164.len()) {
        return None;
    }
    e164.parse().ok()
}

/// `normalize_msisdn`: agrees with the documented rules; an accepted number
/// has 8 to 15 digits and reads back as itself from its E.164 spelling and
/// from its bare digits, under any default code; separators change nothing.
///
/// Input: the number, or a country code, a newline, then the number.
pub fn check_msisdn(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let (cc_text, raw) = text.split_once('\n').unwrap_or(("27", text));
    let Ok(cc) = CountryCode::parse(cc_text) else {
        return;
    };
    let cc_digits = cc_text.trim().trim_start_matches('+');
    assert!((1..=3).contains(&cc_digits.len()) && !cc_digits.starts_with('0'));

    let result = normalize_msisdn(raw, cc);
    let expected = msisdn_reference(raw, cc_digits);
    assert_eq!(
        result.map(|m| m.digits()).ok(),
        expected,
        "{raw:?} with +{cc_digits}: {result:?}"
    );
    match result {
        Ok(m) => {
            assert!((10_000_000..1_000_000_000_000_000).contains(&m.digits()));
            let other = CountryCode::parse("7").expect("a code");
            assert_eq!(
                normalize_msisdn(&m.to_string(), other),
                Ok(m),
                "E.164 spelling"
            );
            assert_eq!(
                normalize_msisdn(&m.digits().to_string(), other),
                Ok(m),
                "bare digits"
            );
            assert_eq!(
                normalize_msisdn(&format!("{raw} -"), cc),
                Ok(m),
                "a trailing separator"
            );
        }
        Err(why) => assert!(!why.is_empty()),
    }
}

// ---------------------------------------------------------------------------
// Money.

/// `Decimal::parse` and friends: a parsed number is exactly the text's value
/// and reads back from its own spelling; refusals are grammar (`Syntax`) or
/// size, never a plain decimal that fits; `scaled_to_integer` is exact and
/// only refuses what is not whole or does not fit; `format_micros` reads
/// back; `div_round_half_away` rounds to nearest, halves away from zero.
pub fn check_money(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let parsed = Decimal::parse(text);
    let exact = Exact::parse_decimal_text(text);
    let d = match (&parsed, &exact) {
        // Not a number: refused (a digit overflow may be noticed before the
        // bad byte, so the error need not be `Syntax`).
        (Err(_), None) => return,
        (Err(DecimalError::Syntax(_)), Some(e)) => panic!("{text:?} = {e:?} refused as syntax"),
        (Ok(d), None) => panic!("{text:?} is not a number but parsed as {d:?}"),
        (Err(e), Some(value)) => {
            // Without an exponent, refusals are only for what does not fit.
            if !text.contains(['e', 'E']) {
                let (int, frac) = text.split_once('.').unwrap_or((text, ""));
                let int = int.trim_start_matches(['-', '+']).trim_start_matches('0');
                let frac = frac.trim_end_matches('0');
                let mantissa = format!("{int}{frac}");
                let mantissa = mantissa.trim_start_matches('0');
                assert!(
                    frac.len() > 30 || mantissa.len() > 38,
                    "{text:?} = {value:?} refused: {e}"
                );
            }
            return;
        }
        (Ok(d), Some(value)) => {
            assert_eq!(&Exact::of_decimal(*d), value, "{text:?} parsed as {d:?}");
            *d
        }
    };
    assert!(d.scale <= 30, "{d:?}");

    // Its own spelling reads back as the same value.
    let spelled = d.to_string();
    let again = Decimal::parse(&spelled).unwrap_or_else(|e| panic!("{spelled:?}: {e}"));
    assert_eq!(
        Exact::of_decimal(again),
        Exact::of_decimal(d),
        "{spelled:?}"
    );

    for shift in [0u32, 3, 6, 9] {
        let scaled = d.scaled_to_integer(shift);
        let value = Exact::of_decimal(d);
        match scaled {
            Some(n) => assert_eq!(
                Exact::of_int(n, -i128::from(shift)),
                value,
                "{d:?} scaled by 10^{shift}"
            ),
            None => {
                let whole = value.exponent + i128::from(shift) >= 0;
                let fits = 10i128
                    .checked_pow(shift)
                    .and_then(|f| d.mantissa.checked_mul(f))
                    .is_some();
                assert!(!whole || !fits, "{d:?} refused scaling by 10^{shift}");
            }
        }
    }

    if let Some(micros) = d.scaled_to_integer(6).and_then(|m| i64::try_from(m).ok()) {
        let formatted = format_micros(micros.into());
        let back = Decimal::parse(&formatted).expect("formatted micros parse");
        assert_eq!(
            back.scaled_to_integer(6),
            Some(micros.into()),
            "{formatted}"
        );
        assert_eq!(formatted.split_once('.').map(|(_, f)| f.len()), Some(6));
    }

    // Rounding the decimal to a whole number.
    let divisor = 10i128.pow(d.scale);
    let rounded = div_round_half_away(d.mantissa, divisor);
    if let Some(back) = rounded.checked_mul(divisor) {
        let off = (d.mantissa - back).unsigned_abs() * 2;
        assert!(off <= divisor.unsigned_abs(), "{d:?} rounded to {rounded}");
        if off == divisor.unsigned_abs() {
            assert!(rounded.unsigned_abs() > d.mantissa.unsigned_abs() / divisor.unsigned_abs());
        }
    }
}

// ---------------------------------------------------------------------------
// The classification path.

/// The wall clock of the classification target: after every corpus record.
pub const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn tariff() -> &'static Tariff {
    static TARIFF: OnceLock<Tariff> = OnceLock::new();
    TARIFF.get_or_init(|| {
        Tariff::default_with(&TariffOverrides::default()).expect("the shipped tariff")
    })
}

/// A store with nothing in it, for a fresh mediator: it covers every
/// minute, so only large records' rows are asked about.
struct EmptyStore;

impl StateReader for EmptyStore {
    fn value(&mut self, _: &StateTable, _: &str) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(None)
    }

    fn spans(
        &mut self,
        table: &StateTable,
        first: i32,
        last: i32,
        _: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ReadError> {
        panic!("a fresh mediator asked for {} {first}..={last}", table.name)
    }

    fn summary_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>, ReadError> {
        Ok(vec![None; rows.len()])
    }
}

/// `Classifier::classify`, then `Mediator::process_batch`, on the input's
/// lines as one batch: classification is decode, the clock check and rating
/// and nothing else; a batch accounts for every record exactly once, and the
/// summaries hold exactly the accepted ones (but masked numbers').
pub fn check_classify(input: &[u8]) {
    let tariff = tariff();
    let config = MediationConfig::default();
    let mut mediator = Mediator::new(config, tariff);
    let classifier = mediator.classifier();

    let mut records = Vec::new();
    let mut offset = 0u64;
    for (i, line) in input.split(|&b| b == b'\n').take(64).enumerate() {
        records.push(RawRecord {
            origin: "fuzz",
            source_id: "fuzz-source",
            position: SourcePosition::Line {
                line: i as u64 + 1,
                byte_offset: offset,
            },
            payload: line,
            cut_from: None,
        });
        offset += line.len() as u64 + 1;
    }

    // Per record: `None` when it classified, else its rejection.
    let mut refused: Vec<Option<Rejection>> = Vec::new();
    for record in &records {
        let classified = classifier.classify(*record, NOW);
        match decode(record.payload, record.position, &config.decode) {
            Err(rejection) => {
                assert_eq!(classified.as_ref().err(), Some(&rejection));
            }
            Ok(cdr) if cdr.start_time > NOW + config.max_future_skew_ms => {
                let rejection = classified.as_ref().expect_err("accepted a future record");
                assert_eq!(rejection.reason, RejectReason::TimeInFuture);
            }
            Ok(cdr) if cdr.served_msisdn.is_pseudonymous() => {
                // A masked number is counted in analytics only: never rated.
                let rated = classified
                    .as_ref()
                    .expect("a valid record of a masked number was refused");
                assert_eq!(rated.msisdn, cdr.served_msisdn);
                assert_eq!(rated.usage, Totals::of(&cdr, 0));
            }
            Ok(cdr) => match tariff.rate(&cdr) {
                Err(_) => {
                    let rejection = classified
                        .as_ref()
                        .expect_err("accepted an unrateable record");
                    assert_eq!(rejection.reason, RejectReason::RatingFailed);
                }
                Ok(rating) => {
                    let cost = rating.cost_micros;
                    assert!(cost >= 0, "a negative price: {cost}");
                    let rated = classified
                        .as_ref()
                        .expect("a valid, rateable record was refused");
                    assert_eq!(rated.kind, cdr.kind);
                    assert_eq!(rated.msisdn, cdr.served_msisdn);
                    assert_eq!(rated.service_type, cdr.service_type);
                    assert_eq!(rated.start_time, cdr.start_time);
                    assert_eq!(rated.day, SummaryZone::UTC.day_of(cdr.start_time));
                    assert_eq!(rated.usage, Totals::of(&cdr, cost));
                    assert_eq!(rated.rating.as_deref(), Some(&rating));
                    let (key, reason) = match &cdr.record_id {
                        Some(id) => (
                            RecordKey::from_id(cdr.id_space, id),
                            DuplicateReason::SameRecordId,
                        ),
                        None => (
                            RecordKey::from_position(
                                record.source_id,
                                record.position,
                                record.payload,
                            ),
                            DuplicateReason::SameSourcePosition,
                        ),
                    };
                    assert_eq!((rated.key, rated.duplicate_reason), (key, reason));
                }
            },
        }
        refused.push(classified.err());
    }

    let mut context = BatchContext {
        now: NOW,
        state: &mut EmptyStore,
    };
    mediator
        .process_batch(&records, &mut context, &mut Vec::new())
        .expect("the empty store answers");
    let mut cp = Checkpoint::default();
    mediator.checkpoint(&mut cp);
    let n = records.len() as u64;
    let counts = &cp.counts;
    assert_eq!(counts.records_in, n);
    assert_eq!(
        counts.accepted_total() + counts.rejected_total() + counts.duplicates_total(),
        n,
        "{counts:?}"
    );
    assert_eq!(cp.rejects.len() as u64, counts.rejected_total());
    // Every refused record is kept once, with its rejection; admission
    // refuses only records that classified, as too late or too large.
    let mut kept = vec![false; records.len()];
    for reject in &cp.rejects {
        let SourcePosition::Line { line, .. } = reject.position else {
            panic!("a reject from nowhere: {:?}", reject.position);
        };
        let i = line as usize - 1;
        assert!(!kept[i], "line {line} rejected twice");
        kept[i] = true;
        assert_eq!(reject.payload, records[i].payload);
        assert_eq!(reject.origin, "fuzz");
        match &refused[i] {
            Some(rejection) => assert_eq!(&reject.rejection, rejection),
            None => assert!(
                matches!(
                    reject.rejection.reason,
                    RejectReason::LateBeyondDedupWindow | RejectReason::ValueTooLarge
                ),
                "admission refused line {line}: {}",
                reject.rejection
            ),
        }
    }
    for (i, rejection) in refused.iter().enumerate() {
        assert!(
            rejection.is_none() || kept[i],
            "line {} refused but not kept",
            i + 1
        );
    }
    let classified_ok = refused.iter().filter(|r| r.is_none()).count() as u64;
    let admission_rejects = kept
        .iter()
        .zip(&refused)
        .filter(|(kept, refused)| **kept && refused.is_none())
        .count() as u64;
    assert_eq!(
        counts.accepted_total() + counts.duplicates_total() + admission_rejects,
        classified_ok
    );
    // Masked numbers are accepted but never summarised.
    let summed: u64 = cp.summaries.rows().map(|row| row.totals.records).sum();
    assert_eq!(
        summed + counts.pseudonymous,
        counts.accepted_total(),
        "summaries vs accepted"
    );
    let identities: usize = cp
        .state
        .iter()
        .map(|w| match &w.change {
            StateChange::Append { value, .. } => value.len() / DedupEntry::ENCODED_LEN,
            _ => 0,
        })
        .sum();
    assert_eq!(identities as u64, counts.accepted_total());
    assert_eq!(cp.event_times.len() as u64, counts.accepted_total());
    assert_eq!(mediator.watermark(), cp.event_times.iter().copied().max());
}

// ---------------------------------------------------------------------------
// Change events (Debezium).

/// `cdc::decode`: an optional key line, then the value (`KEY\nVALUE`; no
/// newline: a value without key). Never panics, answers the same twice, and
/// for an accepted change agrees with serde_json (the oracle, sharing no
/// code with the decoder) on what the JSON says: the `op` code, the LSN and
/// table of a bare envelope's `source`, the columns of `after`.
pub fn check_change(input: &[u8]) {
    use cdrflow_core::cdc::{decode as decode_change, Decoded, Op};
    let (key, value) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&input[..i]), &input[i + 1..]),
        None => (None, input),
    };
    let first = decode_change("dbserver1.public.t", key, value);
    let second = decode_change("dbserver1.public.t", key, value);
    assert_eq!(first, second, "decoding is not deterministic");
    let Ok(Decoded::Change(change)) = first else {
        return;
    };
    if matches!(change.op, Op::Create | Op::Update | Op::Read) {
        assert!(change.after.is_some(), "a {:?} without `after` accepted", change.op);
    }
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(value)
    else {
        return;
    };
    // A bare envelope (not the schema wrapper, not a new-record state).
    if top.len() == 2 && top.contains_key("schema") && top.contains_key("payload") {
        return;
    }
    if !top.contains_key("op") || top.contains_key("__op") {
        return;
    }
    assert_eq!(top["op"].as_str(), Some(change.op.code()), "op");
    let source = top["source"].as_object().expect("accepted with an object `source`");
    if let Some(lsn) = source.get("lsn").and_then(|l| l.as_i64()) {
        assert_eq!(change.position.lsn, lsn, "lsn");
    }
    if let Some(table) = source.get("table").and_then(|t| t.as_str()) {
        assert_eq!(change.table, table, "table");
    }
    if let (Some(serde_json::Value::Object(after)), Some(row)) = (top.get("after"), &change.after) {
        let mut oracle: Vec<&str> = after.keys().map(String::as_str).collect();
        oracle.sort_unstable();
        oracle.dedup();
        let mut decoded: Vec<&str> = row.0.iter().map(|(n, _)| n.as_str()).collect();
        decoded.sort_unstable();
        assert_eq!(decoded, oracle, "the columns of `after`");
    }
}

/// `cdc::capture`: pgoutput messages, each behind a two-byte big-endian
/// length, fed in order to one [`Capture`]. Whatever the bytes, no panic;
/// and every event it writes is JSON that cdrflow's own consumer reads back
/// as a change of the topic's table — the capture never sends what the
/// consumer would reject.
///
/// [`Capture`]: cdrflow_core::cdc::capture::Capture
pub fn check_pgoutput(input: &[u8]) {
    use cdrflow_core::cdc::capture::{Capture, Origin};
    use cdrflow_core::cdc::{decode as decode_change, Decoded};
    let mut capture = Capture::new(
        Origin {
            prefix: "dbserver1".into(),
            database: "fuzz".into(),
            transaction_topic: true,
        },
        None,
    );
    let mut rest = input;
    let mut records = Vec::new();
    let mut lsn = 0u64;
    while rest.len() >= 2 {
        let length = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (message, after) = rest[2..].split_at(length);
        rest = after;
        lsn += 1;
        if capture.feed(lsn, message, 0, &mut records).is_err() {
            return;
        }
    }
    for record in records {
        let Some(value) = record.value else {
            assert!(record.key.is_some(), "a tombstone without a key");
            continue;
        };
        if record.topic.ends_with(".transaction") {
            serde_json::from_str::<serde_json::Value>(&value).expect("a transaction event is JSON");
            continue;
        }
        match decode_change(&record.topic, record.key.as_deref().map(str::as_bytes), value.as_bytes()) {
            Ok(Decoded::Change(change)) => {
                assert!(
                    record.topic.ends_with(&format!(".{}", change.table)),
                    "the event names another table than its topic"
                );
            }
            other => panic!("the consumer does not read what the capture wrote: {other:?}\n{value}"),
        }
    }
}

/// `cdrflow_asn1` and the core's BER format: a BER record, a stream of
/// them and a 32.297 file from the same bytes. None may panic; a record
/// read is framed within the input and reads the same from exactly its own
/// octets; stream frames tile the input; every CDR of a file lies inside it.
pub fn check_ber(input: &[u8]) {
    use cdrflow_asn1::file::CdrFile;
    use cdrflow_asn1::{decode_message, decode_record};
    if let Ok((record, used)) = decode_record(input) {
        assert!(used <= input.len(), "a record longer than its input");
        assert_eq!(decode_message(&input[..used]).as_ref(), Ok(&record));
        assert!(record.unknown.iter().all(|(_, bytes)| bytes.len() < used));
    }
    // The core's side: framed as a stream and decoded by `--format ber`;
    // frames tile the input in order.
    use cdrflow_core::formats::{decode, DecodeOptions, Format};
    use cdrflow_core::framing::{BerRecords, Framing};
    let options = DecodeOptions {
        format: Format::parse("ber").expect("the ber format is registered"),
        ..DecodeOptions::default()
    };
    let mut covered = 0;
    for frame in BerRecords.frames(input, true) {
        assert!(frame.offset >= covered, "frames overlap");
        covered = frame.offset + frame.payload.len();
        let position = cdrflow_core::model::SourcePosition::Line {
            line: frame.number + 1,
            byte_offset: frame.offset as u64,
        };
        let _ = decode(frame.payload, position, &options);
    }
    assert!(covered <= input.len());
    // And as a 32.297 file: past its header, frames tile the rest.
    use cdrflow_core::framing::Ts32297;
    let header = Ts32297.header_len(input);
    assert!(header <= input.len());
    let mut covered = 0;
    for frame in Ts32297.frames(&input[header..], false) {
        assert!(frame.offset >= covered, "32.297 frames overlap");
        covered = frame.offset + frame.payload.len();
        assert!(covered <= input.len() - header);
    }
    assert_eq!(Ts32297.count(&input[header..]), Ts32297.frames(&input[header..], false).count() as u64);
    if let Ok(file) = CdrFile::parse(input) {
        for entry in file {
            let Ok(entry) = entry else { break };
            assert!(entry.offset + entry.bytes.len() <= input.len());
            let _ = decode_message(entry.bytes);
        }
    }
}
