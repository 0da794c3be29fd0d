//! A validating, allocation-free reader for one JSON object per record.
//!
//! CDRs are flat objects, and the hot path needs a dozen fields out of each,
//! so this walks the bytes once and hands out borrowed slices instead of
//! building a tree. It still checks the whole text against the JSON grammar,
//! so a malformed record is rejected with the byte where it went wrong.

use std::borrow::Cow;

/// A value in the object, borrowed from the record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonValue<'a> {
    /// The raw text between the quotes; `escaped` says whether it holds `\` escapes.
    String {
        raw: &'a [u8],
        escaped: bool,
    },
    /// The number exactly as written.
    Number(&'a str),
    Bool(bool),
    Null,
    Object,
    Array,
}

impl<'a> JsonValue<'a> {
    /// A short name of the JSON type, for rejection messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            JsonValue::String { .. } => "string",
            JsonValue::Number(_) => "number",
            JsonValue::Bool(_) => "boolean",
            JsonValue::Null => "null",
            JsonValue::Object => "object",
            JsonValue::Array => "array",
        }
    }

    /// The string's text with escapes decoded; borrows when there are none.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match *self {
            JsonValue::String {
                raw,
                escaped: false,
            } => {
                // Validated as UTF-8 for the whole record before fields are read.
                std::str::from_utf8(raw).ok().map(Cow::Borrowed)
            }
            JsonValue::String { raw, escaped: true } => unescape(raw).map(Cow::Owned),
            _ => None,
        }
    }
}

/// Where and why a record is not valid JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    NotAnObject(&'static str),
    Malformed {
        at: usize,
        expected: &'static str,
    },
    /// Containers nested deeper than [`MAX_NESTING`], at this byte.
    TooDeep {
        at: usize,
    },
    InvalidUtf8,
}

/// Containers nested deeper than this inside a record are refused: no CDR
/// format nests more than a few levels, and validation recurses per level.
pub const MAX_NESTING: u32 = 64;

/// Visits each `key: value` pair of the top-level object in order.
pub fn for_each_field<'a>(
    input: &'a [u8],
    mut visit: impl FnMut(&'a [u8], JsonValue<'a>),
) -> Result<(), JsonError> {
    if std::str::from_utf8(input).is_err() {
        return Err(JsonError::InvalidUtf8);
    }
    let mut p = Parser {
        input,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    match p.peek() {
        Some(b'{') => {}
        None => {
            return Err(JsonError::Malformed {
                at: 0,
                expected: "a JSON object, found an empty line",
            })
        }
        Some(_) => {
            let kind = p.value()?;
            p.skip_ws();
            if p.pos != input.len() {
                return Err(p.error("end of input"));
            }
            return Err(JsonError::NotAnObject(kind.type_name()));
        }
    }
    p.pos += 1;
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            let key = match p.string()? {
                JsonValue::String { raw, .. } => raw,
                _ => unreachable!("string() returns strings"),
            };
            p.skip_ws();
            p.expect(b':', "`:` after an object key")?;
            p.skip_ws();
            let value = p.value()?;
            visit(key, value);
            p.skip_ws();
            match p.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(p.error_at(p.pos.saturating_sub(1), "`,` or `}`")),
            }
        }
    }
    p.skip_ws();
    if p.pos != input.len() {
        return Err(p.error("end of input after the object"));
    }
    Ok(())
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Containers open around the current position (the record's own object not counted).
    depth: u32,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.pos += 1;
        b
    }

    fn error(&self, expected: &'static str) -> JsonError {
        self.error_at(self.pos, expected)
    }

    fn error_at(&self, at: usize, expected: &'static str) -> JsonError {
        JsonError::Malformed { at, expected }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<JsonValue<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", JsonValue::Bool(true)),
            Some(b'f') => self.literal(b"false", JsonValue::Bool(false)),
            Some(b'n') => self.literal(b"null", JsonValue::Null),
            Some(b'{') => self.container(b'{', b'}').map(|_| JsonValue::Object),
            Some(b'[') => self.container(b'[', b']').map(|_| JsonValue::Array),
            _ => Err(self.error("a JSON value")),
        }
    }

    fn literal(
        &mut self,
        word: &'static [u8],
        value: JsonValue<'a>,
    ) -> Result<JsonValue<'a>, JsonError> {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("`true`, `false` or `null`"))
        }
    }

    fn string(&mut self) -> Result<JsonValue<'a>, JsonError> {
        self.expect(b'"', "a string in double quotes")?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Fast scan to the next quote, backslash or control byte.
            let rest = &self.input[self.pos..];
            let skip = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            match skip {
                None => return Err(self.error_at(self.input.len(), "a closing `\"`")),
                Some(n) => self.pos += n,
            }
            match self.next() {
                Some(b'"') => {
                    return Ok(JsonValue::String {
                        raw: &self.input[start..self.pos - 1],
                        escaped,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    match self.next() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            let hex = self.input.get(self.pos..self.pos + 4);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.error("four hex digits after `\\u`"));
                            }
                            self.pos += 4;
                        }
                        _ => return Err(self.error_at(self.pos - 1, "a valid escape after `\\`")),
                    }
                }
                _ => {
                    return Err(self.error_at(self.pos - 1, "no raw control characters in a string"))
                }
            }
        }
    }

    fn number(&mut self) -> Result<JsonValue<'a>, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit after the decimal point"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit in the exponent"));
            }
            self.digits();
        }
        // Only ASCII digits and signs were consumed.
        let text = std::str::from_utf8(&self.input[start..self.pos]).expect("ASCII number");
        Ok(JsonValue::Number(text))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// Validates a nested object or array without keeping it.
    fn container(&mut self, open: u8, close: u8) -> Result<(), JsonError> {
        if self.depth >= MAX_NESTING {
            return Err(JsonError::TooDeep { at: self.pos });
        }
        self.depth += 1;
        let result = self.container_body(open, close);
        self.depth -= 1;
        result
    }

    fn container_body(&mut self, open: u8, close: u8) -> Result<(), JsonError> {
        self.expect(open, "a container")?;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if open == b'{' {
                self.string()?;
                self.skip_ws();
                self.expect(b':', "`:` after an object key")?;
                self.skip_ws();
            }
            self.value()?;
            self.skip_ws();
            match self.next() {
                Some(b',') => continue,
                Some(b) if b == close => return Ok(()),
                _ => return Err(self.error_at(self.pos - 1, "`,` or the end of the container")),
            }
        }
    }
}

fn unescape(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let unit = hex_unit(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&unit) {
                    // Beyond the BMP, escaped as a UTF-16 surrogate pair
                    // (`\ud83d\ude00`), as encoders that keep to ASCII write it.
                    let low = match (chars.next(), chars.next()) {
                        (Some('\\'), Some('u')) => hex_unit(&mut chars)?,
                        _ => return None,
                    };
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    unit
                };
                // Unpaired surrogates are refused.
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The four hex digits of a `\u` escape (the parser checked they are there).
fn hex_unit(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let hex: String = chars.by_ref().take(4).collect();
    u32::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(input: &str) -> Result<Vec<(String, JsonValue<'_>)>, JsonError> {
        let mut out = Vec::new();
        for_each_field(input.as_bytes(), |k, v| {
            out.push((String::from_utf8(k.to_vec()).unwrap(), v))
        })?;
        Ok(out)
    }

    #[test]
    fn reads_flat_objects() {
        let f = fields(r#" {"a": "x", "b":-1.5e2,"c":true,"d":null,"e":{"n":[1,2,{}]},"f":[]} "#)
            .unwrap();
        assert_eq!(f.len(), 6);
        assert_eq!(f[0].1.as_str().unwrap(), "x");
        assert_eq!(f[1].1, JsonValue::Number("-1.5e2"));
        assert_eq!(f[4].1, JsonValue::Object);
        assert_eq!(fields("{}").unwrap().len(), 0);
    }

    #[test]
    fn decodes_escapes() {
        let f = fields(r#"{"a":"x\"y\u0041\n"}"#).unwrap();
        assert_eq!(f[0].1.as_str().unwrap(), "x\"yA\n");
    }

    #[test]
    fn decodes_surrogate_pairs_and_refuses_unpaired_halves() {
        // Found by fuzzing (json_reader, against serde_json): a pair was refused.
        let f = fields(r#"{"region":"\ud83d\ude00 Almaty","b":"\uD834\uDD1E"}"#).unwrap();
        assert_eq!(f[0].1.as_str().unwrap(), "\u{1F600} Almaty");
        assert_eq!(f[1].1.as_str().unwrap(), "\u{1D11E}");
        for unpaired in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ude00"}"#,
            r#"{"a":"\ud83d\u0041"}"#,
            r#"{"a":"\ud83d\ud83d"}"#,
            r#"{"a":"\ud83dx"}"#,
            r#"{"a":"\ud83d\n"}"#,
        ] {
            let f = fields(unpaired).unwrap();
            assert_eq!(f[0].1.as_str(), None, "{unpaired}");
        }
    }

    #[test]
    fn refuses_deep_nesting_without_recursing_further() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            for_each_field(deep.as_bytes(), |_, _| {}),
            Err(JsonError::TooDeep { at: 64 })
        );
        let inside = format!(r#"{{"a":{}1{}}}"#, "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            for_each_field(inside.as_bytes(), |_, _| {}),
            Err(JsonError::TooDeep { .. })
        ));
        let fine = format!(r#"{{"a":{}1{}}}"#, "[".repeat(60), "]".repeat(60));
        assert_eq!(for_each_field(fine.as_bytes(), |_, _| {}), Ok(()));
    }

    #[test]
    fn refuses_bad_json() {
        for bad in [
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{"a":tru}"#,
            "{'a':1}",
            r#"{"a":1} x"#,
            "",
        ] {
            assert!(
                matches!(fields(bad), Err(JsonError::Malformed { .. })),
                "{bad}"
            );
        }
        assert_eq!(fields("[1,2]"), Err(JsonError::NotAnObject("array")));
        assert_eq!(fields("\"s\""), Err(JsonError::NotAnObject("string")));
        assert_eq!(
            for_each_field(b"{\"a\":\"\xff\"}", |_, _| {}),
            Err(JsonError::InvalidUtf8)
        );
    }
}
