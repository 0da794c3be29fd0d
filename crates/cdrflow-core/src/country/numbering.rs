//! A country's numbering plan: how the numbers its switches write — in
//! national form with or without a trunk prefix, with `+` or `00`, with the
//! country code but no `+`, with a spurious 0 after the country code —
//! become E.164, including numbers written before the plan changed (Côte
//! d'Ivoire's 8 → 10 digits on 2021-01-31, Cameroon's 8 → 9 in 2014,
//! Egypt's mobile 10 → 11 in 2011, Morocco's 8 → 9 in 2009).
//!
//! libphonenumber knows only today's plan, and parses a number in about
//! 10 µs; mediation normalises two numbers per record at hundreds of
//! thousands of records a second. So the plan here is a small table — the
//! country code, the trunk prefix, the national lengths in force, and the
//! dated rewrites of older numbers — read from the country's file, and the
//! number is one scan into a `u64`. The tables are checked against
//! libphonenumber's metadata (`crates/cdrflow/tests/numbering.rs`, with
//! the `phonenumber` crate as the oracle).

use serde::Deserialize;

use crate::normalize::{parse_timestamp, EpochMillis, Msisdn};

/// The `[numbering]` section of a country file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberingFile {
    pub country_code: u16,
    /// The digits a national number starts with (`0` in France); none
    /// where the leading digit belongs to the number (Côte d'Ivoire).
    #[serde(default)]
    pub trunk_prefix: Option<String>,
    /// The national significant number's lengths in force today.
    pub national_lengths: Vec<u8>,
    /// Older numbers rewritten into today's plan, in order.
    #[serde(default, rename = "rewrite")]
    pub rewrites: Vec<RewriteFile>,
}

/// Numbers of `length` digits (national significant) written before
/// `before` (always, when it is absent) are rewritten by the first rule,
/// longest match first, that matches their start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteFile {
    #[serde(default)]
    pub before: Option<String>,
    pub length: u8,
    pub rules: Vec<RuleFile>,
    /// What the change was and where it is documented.
    #[serde(default)]
    pub note: Option<String>,
}

/// `match` is digits and classes (`[0-3]`, `[0456789]`); `prepend` puts
/// digits before the number, `replace` puts them in place of the match.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default)]
    pub prepend: Option<String>,
    #[serde(default)]
    pub replace: Option<String>,
}

/// Why a number is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("no digits")]
    Empty,
    #[error("characters other than digits, a leading `+`, spaces, dashes, dots and parentheses")]
    InvalidCharacters,
    #[error("more than 15 digits (E.164 allows at most 15)")]
    TooLong,
    #[error(
        "a national number of {0} digits, which the numbering plan in force then does not have"
    )]
    InvalidLength(usize),
    #[error("an international number of {0} digits, or with a country code starting with 0 (E.164: 7 to 15 digits, the first not 0)")]
    InvalidInternational(usize),
}

impl NumberError {
    /// A short name for the rejects table.
    pub fn reason(self) -> &'static str {
        match self {
            NumberError::Empty => "missing_number",
            NumberError::InvalidCharacters => "invalid_number_characters",
            NumberError::TooLong => "number_too_long",
            NumberError::InvalidLength(_) => "invalid_national_length",
            NumberError::InvalidInternational(_) => "invalid_international_number",
        }
    }
}

/// What is wrong with a country file's numbering section.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("numbering: {0}")]
pub struct PlanError(String);

/// A number in E.164 and whether it is of another country than the plan's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalized {
    pub msisdn: Msisdn,
    pub international: bool,
}

/// Digits as a number and how many there are (leading zeros count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DigitString {
    value: u64,
    len: u8,
}

impl DigitString {
    fn parse(text: &str) -> Option<DigitString> {
        if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(DigitString {
            value: text.parse().ok()?,
            len: text.len() as u8,
        })
    }

    /// Whether `self` begins with `prefix`.
    fn starts_with(self, prefix: DigitString) -> bool {
        prefix.len <= self.len
            && self.value / POW10[usize::from(self.len - prefix.len)] == prefix.value
    }

    fn drop_front(self, count: u8) -> DigitString {
        DigitString {
            value: self.value % POW10[usize::from(self.len - count)],
            len: self.len - count,
        }
    }

    fn then(self, rest: DigitString) -> DigitString {
        DigitString {
            value: self.value * POW10[usize::from(rest.len)] + rest.value,
            len: self.len + rest.len,
        }
    }
}

const POW10: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

#[derive(Clone, Debug)]
struct Rewrite {
    before: Option<EpochMillis>,
    length: u8,
    /// (prefix, what takes its place), longest prefix first.
    rules: Vec<(DigitString, DigitString)>,
}

impl Rewrite {
    /// Whether it rewrites national numbers of `len` digits written at `at`.
    fn applies(&self, len: u8, at: EpochMillis) -> bool {
        self.length == len && self.before.is_none_or(|before| at < before)
    }
}

/// A country's plan, ready to normalise with.
#[derive(Clone, Debug)]
pub struct NumberingPlan {
    country_code: DigitString,
    trunk_prefix: Option<DigitString>,
    /// Bit n: a national significant number of n digits is valid today.
    lengths: u32,
    rewrites: Vec<Rewrite>,
}

impl NumberingPlan {
    pub fn from_file(file: &NumberingFile) -> Result<NumberingPlan, PlanError> {
        let error = |text: String| PlanError(text);
        let country_code = DigitString::parse(&file.country_code.to_string())
            .filter(|cc| cc.len <= 3 && file.country_code > 0)
            .ok_or_else(|| {
                error(format!(
                    "country_code {} is not 1 to 3 digits",
                    file.country_code
                ))
            })?;
        let trunk_prefix = match file.trunk_prefix.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                DigitString::parse(text)
                    .filter(|t| t.len <= 2)
                    .ok_or_else(|| error(format!("trunk_prefix `{text}` is not 1 or 2 digits")))?,
            ),
        };
        let mut lengths = 0u32;
        for &n in &file.national_lengths {
            if !(4..=(15 - country_code.len)).contains(&n) {
                return Err(error(format!(
                    "national length {n} makes an E.164 number of more than 15 or fewer than {} digits",
                    4 + country_code.len
                )));
            }
            lengths |= 1 << n;
        }
        if lengths == 0 {
            return Err(error("national_lengths is empty".into()));
        }
        let mut rewrites = Vec::new();
        for (i, rewrite) in file.rewrites.iter().enumerate() {
            let at = |what: String| error(format!("rewrite {}: {what}", i + 1));
            let before = match &rewrite.before {
                None => None,
                Some(text) => Some(
                    parse_timestamp(text)
                        .map_err(|_| at(format!("before `{text}` is not an RFC 3339 instant")))?,
                ),
            };
            let mut rules = Vec::new();
            for rule in &rewrite.rules {
                let prefixes = expand(&rule.pattern)
                    .map_err(|e| at(format!("match `{}`: {e}", rule.pattern)))?;
                for prefix in prefixes {
                    let replacement = match (&rule.prepend, &rule.replace) {
                        (Some(front), None) => DigitString::parse(front).map(|f| f.then(prefix)),
                        (None, Some(with)) => DigitString::parse(with),
                        _ => {
                            return Err(at(format!(
                                "match `{}` needs one of prepend or replace",
                                rule.pattern
                            )))
                        }
                    }
                    .ok_or_else(|| {
                        at(format!(
                            "match `{}`: the new digits are not digits",
                            rule.pattern
                        ))
                    })?;
                    let new_length = (u16::from(rewrite.length) + u16::from(replacement.len))
                        .saturating_sub(u16::from(prefix.len));
                    if prefix.len > rewrite.length
                        || new_length >= 32
                        || lengths & (1 << new_length) == 0
                    {
                        return Err(at(format!(
                            "match `{}` makes {new_length}-digit numbers, not a national length in force",
                            rule.pattern
                        )));
                    }
                    rules.push((prefix, replacement));
                }
            }
            rules.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len));
            rewrites.push(Rewrite {
                before,
                length: rewrite.length,
                rules,
            });
        }
        Ok(NumberingPlan {
            country_code,
            trunk_prefix,
            lengths,
            rewrites,
        })
    }

    pub fn country_code(&self) -> u16 {
        self.country_code.value as u16
    }

    /// `raw` as E.164, reading national numbers by the plan in force at
    /// `at` (the record's time).
    pub fn normalize(&self, raw: &str, at: EpochMillis) -> Result<Normalized, NumberError> {
        let (digits, plus) = scan(raw)?;
        let cc = self.country_code;
        let international = |d: DigitString| -> Result<Normalized, NumberError> {
            if d.starts_with(cc) {
                let mut national = d.drop_front(cc.len);
                // "+33 (0)6…": the trunk prefix written after the country
                // code (no national significant number starts with it).
                if let Some(trunk) = self.trunk_prefix {
                    if national.starts_with(trunk) {
                        national = national.drop_front(trunk.len);
                    }
                }
                return self.own(national, at);
            }
            if !(7..=15).contains(&d.len) || d.value < POW10[usize::from(d.len - 1)] {
                return Err(NumberError::InvalidInternational(usize::from(d.len)));
            }
            Ok(Normalized {
                msisdn: Msisdn::from_digits(d.value),
                international: true,
            })
        };
        if plus {
            return international(digits);
        }
        const INTERNATIONAL_PREFIX: DigitString = DigitString { value: 0, len: 2 };
        if digits.starts_with(INTERNATIONAL_PREFIX) {
            return international(digits.drop_front(2));
        }
        match self.trunk_prefix {
            Some(trunk) if digits.starts_with(trunk) => self.own(digits.drop_front(trunk.len), at),
            _ if self.is_national(digits, at) => self.own(digits, at),
            _ if digits.starts_with(cc) => international(digits),
            _ => self.own(digits, at),
        }
    }

    /// Whether `nsn` is a national number's length then (today's, or one a
    /// rewrite in force at `at` takes).
    fn is_national(&self, nsn: DigitString, at: EpochMillis) -> bool {
        self.lengths & (1 << nsn.len) != 0 || self.rewrites.iter().any(|r| r.applies(nsn.len, at))
    }

    fn own(&self, mut nsn: DigitString, at: EpochMillis) -> Result<Normalized, NumberError> {
        for rewrite in self.rewrites.iter().filter(|r| r.applies(nsn.len, at)) {
            if let Some((prefix, with)) = rewrite.rules.iter().find(|(p, _)| nsn.starts_with(*p)) {
                nsn = with.then(nsn.drop_front(prefix.len));
                break;
            }
        }
        // At most 15 digits: the scan stops there, and rewrites were
        // checked to land on a national length.
        if self.lengths & (1 << nsn.len) == 0 {
            return Err(NumberError::InvalidLength(usize::from(nsn.len)));
        }
        Ok(Normalized {
            msisdn: Msisdn::from_digits(self.country_code.then(nsn).value),
            international: false,
        })
    }
}

/// The digits of `raw` (separators dropped) and whether it began with `+`.
fn scan(raw: &str) -> Result<(DigitString, bool), NumberError> {
    let bytes = raw.trim_ascii().as_bytes();
    let (plus, body) = match bytes {
        [b'+', rest @ ..] => (true, rest),
        all => (false, all),
    };
    let (mut value, mut len) = (0u64, 0u8);
    for &b in body {
        match b {
            b'0'..=b'9' => {
                if len == 15 {
                    return Err(NumberError::TooLong);
                }
                value = value * 10 + u64::from(b - b'0');
                len += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' => {}
            _ => return Err(NumberError::InvalidCharacters),
        }
    }
    match len {
        0 => Err(NumberError::Empty),
        _ => Ok((DigitString { value, len }, plus)),
    }
}

/// A pattern's prefixes: `[0-3]7` is 07, 17, 27, 37.
fn expand(pattern: &str) -> Result<Vec<DigitString>, String> {
    let mut prefixes = vec![String::new()];
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let choices: Vec<char> = match c {
            '0'..='9' => vec![c],
            '[' => {
                let mut set = Vec::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(d @ '0'..='9') if chars.peek() == Some(&'-') => {
                            chars.next();
                            match chars.next() {
                                Some(e @ '0'..='9') if e >= d => set.extend(d..=e),
                                _ => return Err("a range that is not digit-digit".into()),
                            }
                        }
                        Some(d @ '0'..='9') => set.push(d),
                        _ => return Err("a class that is not digits and ranges in brackets".into()),
                    }
                }
                set
            }
            _ => return Err(format!("`{c}`: only digits and [classes]")),
        };
        prefixes = prefixes
            .iter()
            .flat_map(|p| choices.iter().map(move |d| format!("{p}{d}")))
            .collect();
    }
    prefixes
        .iter()
        .map(|p| DigitString::parse(p).ok_or_else(|| "an empty pattern".to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(toml_text: &str) -> NumberingPlan {
        NumberingPlan::from_file(&toml::from_str(toml_text).unwrap()).unwrap()
    }

    fn e164(plan: &NumberingPlan, raw: &str, at: &str) -> Result<String, NumberError> {
        let at = parse_timestamp(at).unwrap();
        plan.normalize(raw, at).map(|n| n.msisdn.to_string())
    }

    const FRANCE: &str = "country_code = 33\ntrunk_prefix = \"0\"\nnational_lengths = [9]\n";

    #[test]
    fn every_spelling_of_a_french_number_is_one_number() {
        let fr = plan(FRANCE);
        for raw in [
            "06 12 34 56 78",
            "0612345678",
            "+33 6 12 34 56 78",
            "+33 (0)6 12 34 56 78",
            "0033612345678",
            "33612345678",
            "06.12.34.56.78",
        ] {
            assert_eq!(
                e164(&fr, raw, "2024-03-01T00:00:00Z").as_deref(),
                Ok("+33612345678"),
                "{raw}"
            );
        }
        let foreign = fr.normalize("+212 612 345 678", 0).unwrap();
        assert!(foreign.international);
        assert_eq!(foreign.msisdn.to_string(), "+212612345678");
        assert_eq!(
            e164(&fr, "0612 3456", "2024-03-01T00:00:00Z"),
            Err(NumberError::InvalidLength(7))
        );
        assert_eq!(
            fr.normalize("06-12-34-56-7x", 0),
            Err(NumberError::InvalidCharacters)
        );
        assert_eq!(
            fr.normalize("+0612345678", 0),
            Err(NumberError::InvalidInternational(10))
        );
    }

    const IVORY_COAST: &str = r#"
        country_code = 225
        national_lengths = [10]
        [[rewrite]]
        before = "2021-01-31T00:00:00Z"
        length = 8
        rules = [
            { match = "[0456789][0-3]", prepend = "01" },
            { match = "[0456789][4-6]", prepend = "05" },
            { match = "[0456789][7-9]", prepend = "07" },
        ]
    "#;

    #[test]
    fn an_ivorian_number_is_rewritten_only_before_the_change() {
        let ci = plan(IVORY_COAST);
        // Before: eight digits, the operator by the second.
        assert_eq!(
            e164(&ci, "07 12 34 56", "2021-01-30T23:59:59Z").as_deref(),
            Ok("+2250707123456")
        );
        assert_eq!(
            e164(&ci, "+225 05 12 34 56", "2020-06-01T00:00:00Z").as_deref(),
            Ok("+2250505123456")
        );
        assert_eq!(
            e164(&ci, "02 12 34 56", "2020-06-01T00:00:00Z").as_deref(),
            Ok("+2250102123456")
        );
        assert_eq!(
            e164(&ci, "44 12 34 56", "2020-06-01T00:00:00Z").as_deref(),
            Ok("+2250544123456")
        );
        // After: eight digits are no number; ten are, their leading 0 kept.
        assert_eq!(
            e164(&ci, "07 12 34 56", "2021-01-31T00:00:00Z"),
            Err(NumberError::InvalidLength(8))
        );
        assert_eq!(
            e164(&ci, "07 07 12 34 56", "2021-02-01T00:00:00Z").as_deref(),
            Ok("+2250707123456")
        );
        assert_eq!(
            e164(&ci, "+225 0707123456", "2021-02-01T00:00:00Z").as_deref(),
            Ok("+2250707123456")
        );
    }

    #[test]
    fn replace_takes_the_longest_match_and_a_dateless_rewrite_always_applies() {
        let cm = plan(
            r#"
            country_code = 237
            national_lengths = [9]
            [[rewrite]]
            before = "2014-11-21T23:00:00Z"
            length = 8
            rules = [{ match = "[5-9]", prepend = "6" }, { match = "[23]", prepend = "2" }, { match = "33", replace = "243" }]
            "#,
        );
        assert_eq!(
            e164(&cm, "33 12 34 56", "2014-01-01T00:00:00Z").as_deref(),
            Ok("+237243123456")
        );
        assert_eq!(
            e164(&cm, "32 12 34 56", "2014-01-01T00:00:00Z").as_deref(),
            Ok("+237232123456")
        );
        assert_eq!(
            e164(&cm, "77 12 34 56", "2014-01-01T00:00:00Z").as_deref(),
            Ok("+237677123456")
        );
        let mg = plan(
            r#"
            country_code = 261
            trunk_prefix = "0"
            national_lengths = [9]
            [[rewrite]]
            length = 7
            rules = [{ match = "[24-9]", prepend = "20" }]
            "#,
        );
        assert_eq!(
            e164(&mg, "22 123 45", "2024-01-01T00:00:00Z").as_deref(),
            Ok("+261202212345")
        );
        assert_eq!(
            e164(&mg, "034 12 345 67", "2024-01-01T00:00:00Z").as_deref(),
            Ok("+261341234567")
        );
    }

    #[test]
    fn a_plan_that_cannot_work_is_refused_with_what_to_change() {
        let refused = |text: &str| {
            NumberingPlan::from_file(&toml::from_str(text).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(refused("country_code = 33\nnational_lengths = []")
            .contains("national_lengths is empty"));
        assert!(refused("country_code = 33\nnational_lengths = [14]").contains("more than 15"));
        let bad_rule = "country_code = 225\nnational_lengths = [10]\n[[rewrite]]\nlength = 8\nrules = [{ match = \"0[7\", prepend = \"07\" }]";
        assert!(refused(bad_rule).contains("rewrite 1: match `0[7`"));
        let wrong_length = "country_code = 225\nnational_lengths = [10]\n[[rewrite]]\nlength = 8\nrules = [{ match = \"07\", prepend = \"7\" }]";
        assert!(refused(wrong_length).contains("makes 9-digit numbers"));
    }
}
