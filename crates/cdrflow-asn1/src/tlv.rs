//! BER's tag-length-value framing (X.690 §8.1), read without copying.
//!
//! Hand-written rather than taken from rasn: rasn's BER decoder stops at
//! the first tag a SET does not declare and fails the whole value, and
//! 32.298's PGW and SGW records end with an extension marker that newer
//! releases and every vendor fill (Huawei's private tags, ZTE's fillers).
//! Mediation needs the opposite: read the fields it knows, keep the rest.
//! A generic TLV walk is all the structure BER has; the records' meaning
//! lives in [`crate::record`]'s tag tables.
//!
//! Everything is bounded: a tag number fits 28 bits, a length 4 octets and
//! the input, indefinite lengths nest at most [`MAX_DEPTH`] deep.

use crate::Asn1Error;

/// How deep indefinite-length values may nest before the input is refused
/// (32.298's deepest record nests about five levels).
pub const MAX_DEPTH: usize = 16;

/// The class bits of an identifier octet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Universal,
    Application,
    Context,
    Private,
}

/// A decoded identifier: class, primitive or constructed, number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub class: Class,
    pub constructed: bool,
    pub number: u32,
}

impl Tag {
    /// `[n]` in an IMPLICIT module: context-specific, of either form.
    pub fn context(number: u32) -> Tag {
        Tag {
            class: Class::Context,
            constructed: false,
            number,
        }
    }

    /// A SEQUENCE or SEQUENCE OF (`0x30`).
    pub const SEQUENCE: Tag = Tag {
        class: Class::Universal,
        constructed: true,
        number: 16,
    };

    /// The same class and number, whatever the form: a CHOICE-typed field
    /// is constructed even where the module says IMPLICIT.
    pub fn is(self, other: Tag) -> bool {
        self.class == other.class && self.number == other.number
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let class = match self.class {
            Class::Universal => "UNIVERSAL ",
            Class::Application => "APPLICATION ",
            Class::Context => "",
            Class::Private => "PRIVATE ",
        };
        write!(f, "[{class}{}]", self.number)
    }
}

/// One value: its tag, its contents (without an indefinite form's
/// end-of-contents octets) and how many input octets it took in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: Tag,
    pub value: &'a [u8],
    pub encoded_len: usize,
}

impl<'a> Tlv<'a> {
    /// The values inside a constructed one.
    pub fn children(&self) -> Children<'a> {
        Children { rest: self.value }
    }

    /// An unsigned INTEGER (or ENUMERATED) that fits 64 bits.
    pub fn unsigned(&self) -> Result<u64, Asn1Error> {
        unsigned(self.tag, self.value)
    }
}

/// Reads the value at the start of `input`.
pub fn read(input: &[u8]) -> Result<Tlv<'_>, Asn1Error> {
    read_at_depth(input, 0)
}

fn read_at_depth(input: &[u8], depth: usize) -> Result<Tlv<'_>, Asn1Error> {
    let (tag, tag_len) = read_tag(input)?;
    let rest = &input[tag_len..];
    let &first = rest.first().ok_or(Asn1Error::Truncated("a length"))?;
    if first == 0x80 {
        if !tag.constructed {
            return Err(Asn1Error::IndefinitePrimitive(tag));
        }
        if depth >= MAX_DEPTH {
            return Err(Asn1Error::TooDeep);
        }
        let contents = &rest[1..];
        let mut at = 0;
        loop {
            match contents.get(at..at + 2) {
                None => return Err(Asn1Error::Truncated("end-of-contents octets")),
                Some([0, 0]) => break,
                Some(_) => at += read_at_depth(&contents[at..], depth + 1)?.encoded_len,
            }
        }
        return Ok(Tlv {
            tag,
            value: &contents[..at],
            encoded_len: tag_len + 1 + at + 2,
        });
    }
    let (len, len_len) = match first {
        n if n < 0x80 => (usize::from(n), 1),
        0xFF => return Err(Asn1Error::BadLength),
        n => {
            let count = usize::from(n & 0x7F);
            if count > 4 {
                return Err(Asn1Error::BadLength);
            }
            let octets = rest
                .get(1..1 + count)
                .ok_or(Asn1Error::Truncated("a length"))?;
            let len = octets.iter().fold(0usize, |n, &o| n << 8 | usize::from(o));
            (len, 1 + count)
        }
    };
    let value = rest
        .get(len_len..len_len + len)
        .ok_or(Asn1Error::Truncated("a value"))?;
    Ok(Tlv {
        tag,
        value,
        encoded_len: tag_len + len_len + len,
    })
}

fn read_tag(input: &[u8]) -> Result<(Tag, usize), Asn1Error> {
    let &first = input.first().ok_or(Asn1Error::Truncated("a tag"))?;
    let class = match first >> 6 {
        0 => Class::Universal,
        1 => Class::Application,
        2 => Class::Context,
        _ => Class::Private,
    };
    let constructed = first & 0x20 != 0;
    if first & 0x1F != 0x1F {
        let number = u32::from(first & 0x1F);
        return Ok((
            Tag {
                class,
                constructed,
                number,
            },
            1,
        ));
    }
    let mut number = 0u32;
    for (i, &octet) in input[1..].iter().enumerate() {
        // 4 octets of 7 bits: tag numbers up to 2^28, far past any CDR's.
        if i == 4 {
            return Err(Asn1Error::BadTag);
        }
        number = number << 7 | u32::from(octet & 0x7F);
        if octet & 0x80 == 0 {
            return Ok((
                Tag {
                    class,
                    constructed,
                    number,
                },
                i + 2,
            ));
        }
    }
    Err(Asn1Error::Truncated("a tag"))
}

/// The values one after another in a constructed value's contents.
#[derive(Clone)]
pub struct Children<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Tlv<'a>, Asn1Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match read(self.rest) {
            Ok(tlv) => {
                self.rest = &self.rest[tlv.encoded_len..];
                Some(Ok(tlv))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// An unsigned INTEGER's contents (two's complement, so a leading zero
/// octet may precede a high bit): at most 8 significant octets.
pub fn unsigned(tag: Tag, value: &[u8]) -> Result<u64, Asn1Error> {
    let significant = match value {
        [] => return Err(Asn1Error::BadInteger(tag)),
        [high, ..] if high & 0x80 != 0 => return Err(Asn1Error::BadInteger(tag)),
        [0, rest @ ..] => rest,
        all => all,
    };
    if significant.len() > 8 {
        return Err(Asn1Error::BadInteger(tag));
    }
    Ok(significant.iter().fold(0u64, |n, &o| n << 8 | u64::from(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_and_multi_octet_forms_read_as_x690_writes_them() {
        // [3] IMPLICIT OCTET STRING of 2 octets.
        let tlv = read(&[0x83, 0x02, 0xAA, 0xBB, 0xFF]).unwrap();
        assert_eq!(tlv.tag, Tag::context(3));
        assert_eq!((tlv.value, tlv.encoded_len), (&[0xAA, 0xBB][..], 4));
        // [69] in two identifier octets, a long-form length of 130.
        let mut long = vec![0x9F, 0x45, 0x81, 130];
        long.extend(std::iter::repeat_n(7, 130));
        let tlv = read(&long).unwrap();
        assert_eq!(tlv.tag.number, 69);
        assert_eq!(tlv.value.len(), 130);
        // Huawei's private [258]: BF 82 02.
        let tlv = read(&[0xBF, 0x82, 0x02, 0x00]).unwrap();
        assert_eq!(
            tlv.tag,
            Tag {
                class: Class::Context,
                constructed: true,
                number: 258
            }
        );
    }

    #[test]
    fn an_indefinite_length_ends_at_its_own_end_of_contents() {
        // [12] constructed, indefinite, holding a SEQUENCE that is itself
        // indefinite with one [3] inside; then a sibling [5].
        let bytes = [
            0xAC, 0x80, 0x30, 0x80, 0x83, 0x01, 0x09, 0x00, 0x00, 0x00, 0x00, 0x85, 0x01, 0x01,
        ];
        let tlv = read(&bytes).unwrap();
        assert_eq!(tlv.encoded_len, 11);
        let inner: Vec<_> = tlv.children().map(Result::unwrap).collect();
        assert_eq!(inner.len(), 1);
        let leaf: Vec<_> = inner[0].children().map(Result::unwrap).collect();
        assert_eq!((leaf[0].tag.number, leaf[0].value), (3, &[9][..]));
        assert_eq!(read(&bytes[11..]).unwrap().tag.number, 5);
    }

    #[test]
    fn malformed_input_is_refused_with_what_is_wrong() {
        assert_eq!(
            read(&[0x83, 0x05, 1, 2]),
            Err(Asn1Error::Truncated("a value"))
        );
        assert_eq!(
            read(&[0x83, 0x80, 0, 0]),
            Err(Asn1Error::IndefinitePrimitive(Tag::context(3)))
        );
        assert_eq!(
            read(&[0x83, 0x85, 1, 1, 1, 1, 1]),
            Err(Asn1Error::BadLength)
        );
        assert_eq!(
            read(&[0x9F, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(Asn1Error::BadTag)
        );
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH {
            deep.extend([0xA0, 0x80]);
        }
        assert_eq!(read(&deep), Err(Asn1Error::TooDeep));
    }

    #[test]
    fn integers_are_unsigned_big_endian_with_an_optional_sign_octet() {
        let tag = Tag::context(5);
        assert_eq!(
            unsigned(tag, &[0x00, 0xFF, 0xFF, 0xFF, 0xFF]),
            Ok(4_294_967_295)
        );
        assert_eq!(unsigned(tag, &[0x01, 0x00]), Ok(256));
        assert_eq!(unsigned(tag, &[0x80]), Err(Asn1Error::BadInteger(tag)));
        assert_eq!(unsigned(tag, &[]), Err(Asn1Error::BadInteger(tag)));
    }
}
