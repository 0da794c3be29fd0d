//! Normalisation: one spelling for subscriber numbers, one clock for times.

use std::fmt;

/// A subscriber number in E.164, held as its digits (at most 15, so a `u64`).
///
/// Or a **pseudonymous** one: a number whose last digits the source masked
/// with `*` (seed 003's `7701234****`), known only by its visible digits
/// and how many are masked. It is one subscriber for analytics, never a
/// real number: it is not rated and has no usage summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(u64);

/// Set on pseudonymous numbers; the masked digits' count sits below it.
const MASKED: u64 = 1 << 63;
const MASKED_SHIFT: u32 = 56;
const DIGITS: u64 = (1 << MASKED_SHIFT) - 1;

impl Msisdn {
    /// The E.164 digits (masked ones as zeros).
    pub fn digits(self) -> u64 {
        self.0 & DIGITS
    }

    pub fn from_digits(digits: u64) -> Msisdn {
        Msisdn(digits & DIGITS)
    }

    /// How many trailing digits the source masked (0: a real number).
    pub fn masked_digits(self) -> u32 {
        match self.0 & MASKED {
            0 => 0,
            _ => ((self.0 & !MASKED) >> MASKED_SHIFT) as u32,
        }
    }

    pub fn is_pseudonymous(self) -> bool {
        self.0 & MASKED != 0
    }

    /// Everything it is, masking included, for lossless encodings.
    pub fn to_bits(self) -> u64 {
        self.0
    }

    pub fn from_bits(bits: u64) -> Msisdn {
        Msisdn(bits)
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.digits().to_string();
        let masked = (self.masked_digits() as usize).min(digits.len());
        let shown = &digits[..digits.len() - masked];
        write!(f, "+{shown}{}", "*".repeat(masked))
    }
}

/// A number whose last digits are masked with `*` (seed 003's
/// `7701234****`), as a pseudonymous [`Msisdn`]: the masked digits count
/// towards the length rules of [`normalize_msisdn`] as zeros do. Masks
/// anywhere but at the end are refused.
pub fn normalize_masked(raw: &str, default_cc: CountryCode) -> Result<Msisdn, &'static str> {
    let trimmed = raw.trim_end();
    let visible = trimmed.trim_end_matches('*');
    let masked = trimmed.len() - visible.len();
    if masked == 0 {
        return normalize_msisdn(raw, default_cc);
    }
    if visible.contains('*') {
        return Err("has `*` between digits; only the last digits may be masked");
    }
    let number = normalize_msisdn(&format!("{visible}{}", "0".repeat(masked)), default_cc)?;
    if masked >= number.digits().to_string().len() {
        return Err("is masked entirely");
    }
    Ok(Msisdn(
        number.0 | MASKED | ((masked as u64) << MASKED_SHIFT),
    ))
}

/// A country calling code such as 27 (South Africa) or 7 (Kazakhstan).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountryCode(u16);

impl CountryCode {
    pub const SOUTH_AFRICA: CountryCode = CountryCode(27);

    /// Accepts `27`, `+27`: one to three digits, not starting with 0.
    pub fn parse(text: &str) -> Result<CountryCode, String> {
        let digits = text.trim().trim_start_matches('+');
        if (1..=3).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(CountryCode(digits.parse().expect("checked digits")))
        } else {
            Err(format!(
                "`{text}` is not a country calling code (1-3 digits, e.g. 27 or +27)"
            ))
        }
    }

    /// Whether `number` is one of this country's (its E.164 digits start
    /// with the code).
    pub fn holds(self, number: Msisdn) -> bool {
        let code = u64::from(self.0);
        let mut digits = number.digits();
        let width = if code >= 100 {
            100
        } else if code >= 10 {
            10
        } else {
            1
        };
        if digits < width {
            return false;
        }
        while digits >= width * 10 {
            digits /= 10;
        }
        digits == code
    }
}

impl Default for CountryCode {
    fn default() -> Self {
        CountryCode::SOUTH_AFRICA
    }
}

/// The digits, without `+` (`212`).
impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Turns any accepted spelling into E.164, or says why it cannot.
///
/// Rules: spaces, dashes, dots and parentheses are ignored; `+` followed by
/// 8-15 digits is E.164; `00` starts an international number; a single
/// leading `0` is national and takes `default_cc`; 8-15 bare digits already
/// carry their country code. Everything else is refused.
pub fn normalize_msisdn(raw: &str, default_cc: CountryCode) -> Result<Msisdn, &'static str> {
    let mut digits = [0u8; 32];
    let mut len = 0usize;
    let mut plus = false;
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'0'..=b'9' => {
                if len == digits.len() {
                    return Err("has too many digits");
                }
                digits[len] = b - b'0';
                len += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' => {}
            b'+' if i == 0 || (len == 0 && !plus && raw[..i].bytes().all(|c| c == b' ')) => {
                plus = true
            }
            _ => return Err(
                "contains characters other than digits, `+`, spaces, dashes, dots and parentheses",
            ),
        }
    }
    let digits = &digits[..len];
    let (national_prefix, body): (Option<CountryCode>, &[u8]) = if plus {
        (None, digits)
    } else if digits.starts_with(&[0, 0]) {
        (None, &digits[2..])
    } else if digits.first() == Some(&0) {
        (Some(default_cc), &digits[1..])
    } else {
        (None, digits)
    };
    let mut value: u64 = 0;
    let mut count = 0usize;
    if let Some(cc) = national_prefix {
        for d in cc.0.to_string().bytes() {
            value = value * 10 + u64::from(d - b'0');
            count += 1;
        }
    }
    if body.first() == Some(&0) {
        return Err("has a country code starting with 0");
    }
    for &d in body {
        value = value * 10 + u64::from(d);
        count += 1;
        if count > 15 {
            return Err("has more than 15 digits (E.164 allows at most 15)");
        }
    }
    if count < 8 {
        return Err("has fewer than 8 digits");
    }
    Ok(Msisdn(value))
}

/// A UTC instant in milliseconds since the Unix epoch.
pub type EpochMillis = i64;

/// A calendar day, counted from 1970-01-01 (day 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Day(pub i32);

impl Day {
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Day> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Day(days_from_civil(year, month, day)))
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Day> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        Day::from_ymd(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)
    }

    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// The inclusive range of days a usage query asks for: one `date`, or
/// `from`/`to` with either end open.
pub fn usage_period(
    date: Option<Day>,
    from: Option<Day>,
    to: Option<Day>,
) -> Result<(Day, Day), String> {
    let (from, to) = match (date, from, to) {
        (Some(day), None, None) => (day, day),
        (Some(_), _, _) => return Err("give either a date or from/to, not both".into()),
        (None, from, to) => (
            from.unwrap_or(Day(i32::MIN / 2)),
            to.unwrap_or(Day(i32::MAX / 2)),
        ),
    };
    if from > to {
        return Err(format!("from {from} is after to {to}"));
    }
    Ok((from, to))
}

/// The zone whose calendar decides a summary's date. A fixed UTC offset:
/// CDR dates are business dates, and an offset keeps them stable across DST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SummaryZone {
    offset_seconds: i32,
}

impl SummaryZone {
    pub const UTC: SummaryZone = SummaryZone { offset_seconds: 0 };

    /// Accepts `UTC`, `Z`, `+02:00`, `-0530`.
    pub fn parse(text: &str) -> Result<SummaryZone, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(SummaryZone::UTC);
        }
        parse_offset(t.as_bytes())
            .map(|offset_seconds| SummaryZone { offset_seconds })
            .ok_or_else(|| {
                format!("`{text}` is not a zone: use UTC or a fixed offset such as +02:00")
            })
    }

    pub fn day_of(self, at: EpochMillis) -> Day {
        let local_seconds = at.div_euclid(1000) + i64::from(self.offset_seconds);
        Day(local_seconds.div_euclid(86_400) as i32)
    }
}

/// Why a timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not RFC 3339 / ISO 8601 text.
    Unparsable,
    /// Well-formed but not a real moment (month 13, 30 February, 25:00), or
    /// one that an offset carries out of the years 0000-9999 in UTC.
    Impossible,
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds: the UTC
/// instants that RFC 3339 (and so [`format_timestamp`] and the summaries'
/// dates) can write.
const FIRST_SECOND: i64 = -62_167_219_200;
const LAST_SECOND: i64 = 253_402_300_799;

/// Parses RFC 3339 / ISO 8601 (`2024-03-01T10:00:00Z`, `...T10:00:00.123+02:00`,
/// a space for `T`, no offset meaning UTC) into UTC milliseconds.
pub fn parse_timestamp(text: &str) -> Result<EpochMillis, TimeError> {
    let b = text.trim().as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(TimeError::Unparsable);
    }
    let field = |range: std::ops::Range<usize>| num(&b[range]).ok_or(TimeError::Unparsable);
    let (year, month, day) = (field(0..4)? as i32, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let mut rest = &b[19..];
    let mut millis = 0u32;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(TimeError::Unparsable);
        }
        for (i, &d) in frac[..n.min(3)].iter().enumerate() {
            millis += u32::from(d - b'0') * 10u32.pow(2 - i as u32);
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        [] => 0,
        [b'Z' | b'z'] => 0,
        _ => parse_offset(rest).ok_or(TimeError::Unparsable)?,
    };
    if hour > 23 || minute > 59 || second > 60 {
        return Err(TimeError::Impossible);
    }
    // A leap second (RFC 3339 allows second 60) is the last second of a UTC
    // day: it is only real at 23:59:60 UTC, and it is counted as 23:59:59 of
    // that day, so its record keeps its date. Any other second 60 is refused.
    let second = if second == 60 {
        let utc_minute = (i64::from(hour * 60 + minute) - i64::from(offset) / 60).rem_euclid(1440);
        if utc_minute != 1439 {
            return Err(TimeError::Impossible);
        }
        59
    } else {
        second
    };
    let day = Day::from_ymd(year, month, day).ok_or(TimeError::Impossible)?;
    let seconds = i64::from(day.0) * 86_400 + i64::from(hour * 3600 + minute * 60 + second)
        - i64::from(offset);
    if !(FIRST_SECOND..=LAST_SECOND).contains(&seconds) {
        return Err(TimeError::Impossible);
    }
    Ok(seconds * 1000 + i64::from(millis))
}

/// Formats UTC milliseconds as RFC 3339 with a `Z`.
pub fn format_timestamp(at: EpochMillis) -> String {
    let seconds = at.div_euclid(1000);
    let day = Day(seconds.div_euclid(86_400) as i32);
    let s = seconds.rem_euclid(86_400);
    format!("{day}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

/// As [`format_timestamp`], with the milliseconds when there are any.
pub fn format_timestamp_ms(at: EpochMillis) -> String {
    let whole = format_timestamp(at);
    match at.rem_euclid(1000) {
        0 => whole,
        ms => format!("{}.{ms:03}Z", &whole[..whole.len() - 1]),
    }
}

fn parse_offset(b: &[u8]) -> Option<i32> {
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = match b.len() {
        6 if b[3] == b':' => (num(&b[1..3])?, num(&b[4..6])?),
        5 => (num(&b[1..3])?, num(&b[3..5])?),
        3 => (num(&b[1..3])?, 0),
        _ => return None,
    };
    (h <= 23 && m <= 59).then(|| sign * (h * 3600 + m * 60) as i32)
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        b.iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0')),
    )
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-date algorithms: exact for the proleptic Gregorian calendar.
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i32;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_leap_second_keeps_its_day_and_other_second_60s_are_refused() {
        let leap = parse_timestamp("2016-12-31T23:59:60Z").unwrap();
        assert_eq!(leap, parse_timestamp("2016-12-31T23:59:59Z").unwrap());
        assert_eq!(
            parse_timestamp("2017-01-01T01:59:60+02:00").unwrap(),
            leap,
            "23:59:60 UTC written in another offset"
        );
        assert_eq!(
            parse_timestamp("2024-03-01T10:00:60Z"),
            Err(TimeError::Impossible)
        );
    }

    use super::*;

    fn e164(raw: &str) -> Result<String, &'static str> {
        normalize_msisdn(raw, CountryCode::SOUTH_AFRICA).map(|m| m.to_string())
    }

    #[test]
    fn one_subscriber_in_every_spelling() {
        for spelling in [
            "+27 82 123 4567",
            "27821234567",
            "0821234567",
            "0027821234567",
            "+27-82-123-4567",
            "(082) 123.4567",
            " +27821234567",
        ] {
            assert_eq!(e164(spelling).as_deref(), Ok("+27821234567"), "{spelling}");
        }
    }

    #[test]
    fn national_numbers_take_the_configured_country_code() {
        let kz = CountryCode::parse("+7").unwrap();
        assert_eq!(
            normalize_msisdn("07011234567", kz).unwrap().to_string(),
            "+77011234567"
        );
        assert!(CountryCode::parse("0").is_err());
        assert!(CountryCode::parse("1234").is_err());
    }

    #[test]
    fn refuses_what_is_not_a_number() {
        for bad in [
            "",
            "1234567",
            "+1234567890123456",
            "7701234****",
            "abc",
            "+0821234567",
            "27 82 +1234567",
            "0",
            "000027821234567",
        ] {
            assert!(e164(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(e164("+123456789012345").as_deref(), Ok("+123456789012345"));
        assert_eq!(e164("12345678").as_deref(), Ok("+12345678"));
    }

    #[test]
    fn masked_numbers_are_pseudonymous_subscribers() {
        let kz = CountryCode::parse("7").unwrap();
        let masked = normalize_masked("7701234****", kz).unwrap();
        assert_eq!(masked.to_string(), "+7701234****");
        assert!(masked.is_pseudonymous());
        assert_eq!(masked.masked_digits(), 4);
        assert_eq!(masked.digits(), 77_012_340_000);
        let national = normalize_masked("0701234****", kz).unwrap();
        assert_eq!(national.to_string(), "+7701234****", "national spelling");
        assert_eq!(national, masked);
        let real = normalize_msisdn("+77012340000", kz).unwrap();
        assert_ne!(masked, real, "never the real number with zeros");
        assert_ne!(masked, normalize_masked("770123400***", kz).unwrap());
        assert_eq!(Msisdn::from_bits(masked.to_bits()), masked);
        assert!(!real.is_pseudonymous());
        for bad in ["77012*34567", "****", "77****", "7701234****5"] {
            assert!(normalize_masked(bad, kz).is_err(), "{bad}");
        }
        assert!(
            normalize_msisdn("7701234****", kz).is_err(),
            "only where masks are allowed"
        );
    }

    #[test]
    fn parses_times_into_utc() {
        let base = parse_timestamp("2024-03-01T10:00:00Z").unwrap();
        assert_eq!(base, 1_709_287_200_000);
        assert_eq!(parse_timestamp("2024-03-01T10:00:00").unwrap(), base);
        assert_eq!(parse_timestamp("2024-03-01 10:00:00").unwrap(), base);
        assert_eq!(parse_timestamp("2024-03-01T12:00:00+02:00").unwrap(), base);
        assert_eq!(parse_timestamp("2024-03-01T05:30:00-0430").unwrap(), base);
        assert_eq!(
            parse_timestamp("2024-03-01T10:00:00.250Z").unwrap(),
            base + 250
        );
        assert_eq!(
            parse_timestamp("2024-03-01T10:00:00.123456789+00:00").unwrap(),
            base + 123
        );
        assert_eq!(format_timestamp(base), "2024-03-01T10:00:00Z");
    }

    #[test]
    fn times_stay_within_four_digit_years_in_utc() {
        // Found by fuzzing (decode_auto): year 0000 at +23:59 is year -1 in
        // UTC, which format_timestamp wrote as `-001-12-31T00:01:00Z`.
        assert_eq!(
            parse_timestamp("0000-01-01T00:00:00+23:59"),
            Err(TimeError::Impossible)
        );
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59.999-00:01"),
            Err(TimeError::Impossible)
        );
        for edge in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            let at = parse_timestamp(edge).unwrap();
            assert_eq!(format_timestamp(at), edge);
        }
        assert_eq!(
            parse_timestamp("0000-01-01T00:00:00Z").unwrap() / 1000,
            FIRST_SECOND
        );
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59.999Z").unwrap(),
            LAST_SECOND * 1000 + 999
        );
    }

    #[test]
    fn refuses_impossible_and_unparsable_times() {
        assert_eq!(
            parse_timestamp("2023-02-29T00:00:00Z"),
            Err(TimeError::Impossible)
        );
        assert_eq!(
            parse_timestamp("2024-13-01T00:00:00Z"),
            Err(TimeError::Impossible)
        );
        assert_eq!(
            parse_timestamp("2024-01-01T24:00:00Z"),
            Err(TimeError::Impossible)
        );
        assert!(parse_timestamp("2024-02-29T00:00:00Z").is_ok());
        for bad in [
            "yesterday",
            "2024-01-01",
            "2024-01-01T00:00:00+25:00",
            "2024-01-01T00:00:00.Z",
            "1709287200",
        ] {
            assert_eq!(parse_timestamp(bad), Err(TimeError::Unparsable), "{bad}");
        }
    }

    #[test]
    fn usage_periods() {
        let (a, b) = (
            Day::parse("2024-03-01").unwrap(),
            Day::parse("2024-03-07").unwrap(),
        );
        assert_eq!(usage_period(Some(a), None, None), Ok((a, a)));
        assert_eq!(usage_period(None, Some(a), Some(b)), Ok((a, b)));
        assert_eq!(usage_period(None, Some(a), None).unwrap().0, a);
        assert!(usage_period(None, Some(b), Some(a)).is_err());
        assert!(usage_period(Some(a), Some(a), None).is_err());
    }

    #[test]
    fn summary_date_follows_the_configured_zone() {
        let late_evening = parse_timestamp("2024-03-01T23:30:00Z").unwrap();
        assert_eq!(
            SummaryZone::UTC.day_of(late_evening).to_string(),
            "2024-03-01"
        );
        assert_eq!(
            SummaryZone::parse("+02:00")
                .unwrap()
                .day_of(late_evening)
                .to_string(),
            "2024-03-02"
        );
        assert_eq!(Day::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert_eq!(Day::parse("1969-12-31").unwrap().0, -1);
        assert!(Day::parse("2024-02-30").is_none());
    }
}
