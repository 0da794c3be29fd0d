//! Numbers as 3GPP writes them: TBCD strings (IMSI), AddressString (TS
//! 29.002: a type-of-number/numbering-plan octet, then TBCD), the 24.008
//! BCD party numbers (an optional presentation octet after it) and the
//! 23.040 SMS addresses (a digit count first).
//!
//! Digits are kept inline (no allocation): AddressString is at most 20
//! octets, so 38 digits.

use crate::Asn1Error;

/// Most digits any of these encodings can carry.
pub const MAX_DIGITS: usize = 40;

/// A number's digits as text: `0`–`9`, `*`, `#`, `a`, `b`, `c`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digits {
    len: u8,
    text: [u8; MAX_DIGITS],
}

impl Digits {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..usize::from(self.len)]).expect("digits are ASCII")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, digit: u8) -> Result<(), Asn1Error> {
        let slot = self
            .text
            .get_mut(usize::from(self.len))
            .ok_or(Asn1Error::BadDigits("more digits than any number has"))?;
        *slot = digit;
        self.len += 1;
        Ok(())
    }

    /// Semi-octets low nibble first; `F` is the filler of an odd count and
    /// ends the number (some switches pad with several).
    fn from_semi_octets(octets: &[u8]) -> Result<Digits, Asn1Error> {
        let mut digits = Digits {
            len: 0,
            text: [0; MAX_DIGITS],
        };
        let mut ended = false;
        for &octet in octets {
            for nibble in [octet & 0x0F, octet >> 4] {
                if nibble == 0x0F {
                    ended = true;
                } else if ended {
                    return Err(Asn1Error::BadDigits("a digit after the filler"));
                } else {
                    digits.push(b"0123456789*#abc"[usize::from(nibble)])?;
                }
            }
        }
        Ok(digits)
    }
}

impl std::fmt::Debug for Digits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Bits 7–5 of the type-of-number octet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatureOfAddress {
    Unknown,
    International,
    National,
    NetworkSpecific,
    Subscriber,
    /// 23.040's alphanumeric sender (GSM 7-bit text, not digits).
    Alphanumeric,
    Abbreviated,
    Reserved,
}

/// A party or address with how it is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Number {
    pub nature: NatureOfAddress,
    /// Bits 4–1: 1 is E.164, 6 E.212, 8 national, 9 private.
    pub numbering_plan: u8,
    pub digits: Digits,
}

impl Number {
    fn new(type_octet: u8, digits: &[u8]) -> Result<Number, Asn1Error> {
        let nature = match (type_octet >> 4) & 0x07 {
            0 => NatureOfAddress::Unknown,
            1 => NatureOfAddress::International,
            2 => NatureOfAddress::National,
            3 => NatureOfAddress::NetworkSpecific,
            4 => NatureOfAddress::Subscriber,
            6 => NatureOfAddress::Abbreviated,
            _ => NatureOfAddress::Reserved,
        };
        Ok(Number {
            nature,
            numbering_plan: type_octet & 0x0F,
            digits: Digits::from_semi_octets(digits)?,
        })
    }
}

/// `TBCD-STRING` (IMSI, IMEI): digits only.
pub fn tbcd(value: &[u8]) -> Result<Digits, Asn1Error> {
    Digits::from_semi_octets(value)
}

/// `AddressString` and `ISDN-AddressString` (MSISDN, recording entity,
/// MSC and service-centre addresses).
pub fn address_string(value: &[u8]) -> Result<Number, Asn1Error> {
    match value {
        [] => Err(Asn1Error::BadDigits("an address without its type octet")),
        [kind, digits @ ..] => Number::new(*kind, digits),
    }
}

/// `BCDDirectoryNumber` (calling, called, connected numbers): 24.008's
/// party BCD number without its IEI and length. An extension bit of 0
/// says octet 3a (presentation and screening) follows the type octet.
pub fn bcd_directory_number(value: &[u8]) -> Result<Number, Asn1Error> {
    match value {
        [] => Err(Asn1Error::BadDigits(
            "a party number without its type octet",
        )),
        [kind, _presentation, digits @ ..] if kind & 0x80 == 0 => Number::new(*kind, digits),
        [kind] if kind & 0x80 == 0 => Err(Asn1Error::BadDigits(
            "a party number whose octet 3a is missing",
        )),
        [kind, digits @ ..] => Number::new(*kind, digits),
    }
}

/// `SmsTpDestinationNumber`: 23.040's address (a count of useful digits,
/// the type octet, the digits) — or, as some switches write it, a
/// `BCDDirectoryNumber`. 23.040's count is at most 20, so a first octet
/// with its high bit set can only be a type octet: that tells them apart.
pub fn sms_address(value: &[u8]) -> Result<Number, Asn1Error> {
    match value {
        [first, ..] if first & 0x80 != 0 => bcd_directory_number(value),
        [count, kind, digits @ ..] => {
            if (kind >> 4) & 0x07 == 5 {
                return Ok(Number {
                    nature: NatureOfAddress::Alphanumeric,
                    numbering_plan: kind & 0x0F,
                    digits: Digits::from_semi_octets(&[])?,
                });
            }
            let mut number = Number::new(*kind, digits)?;
            if usize::from(*count) > usize::from(number.digits.len) {
                return Err(Asn1Error::BadDigits(
                    "an SMS address shorter than its count",
                ));
            }
            number.digits.len = *count;
            Ok(number)
        }
        _ => Err(Asn1Error::BadDigits(
            "an SMS address without its type octet",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tbcd_is_low_nibble_first_with_a_filler_for_an_odd_count() {
        // IMSI 208 01 1234567890 (15 digits), the last octet's high nibble F.
        let imsi = tbcd(&[0x02, 0x08, 0x11, 0x32, 0x54, 0x76, 0x98, 0xF0]).unwrap();
        assert_eq!(imsi.as_str(), "208011234567890");
        assert_eq!(tbcd(&[0x21, 0xF3]).unwrap().as_str(), "123");
        assert!(tbcd(&[0x1F]).is_err(), "a digit after the filler");
    }

    #[test]
    fn an_address_string_says_international_e164() {
        // 0x91: extension, international, E.164; +33 6 12 34 56 78.
        let n = address_string(&[0x91, 0x33, 0x16, 0x32, 0x54, 0x76, 0xF8]).unwrap();
        assert_eq!(n.nature, NatureOfAddress::International);
        assert_eq!(n.numbering_plan, 1);
        assert_eq!(n.digits.as_str(), "33612345678");
    }

    #[test]
    fn a_party_number_may_carry_octet_3a() {
        // 0x21: no extension (3a follows), national, E.164; 3a = 0x80;
        // then 0612345678.
        let n = bcd_directory_number(&[0x21, 0x80, 0x60, 0x21, 0x43, 0x65, 0x87]).unwrap();
        assert_eq!(n.nature, NatureOfAddress::National);
        assert_eq!(n.digits.as_str(), "0612345678");
        // Without 3a (extension bit set).
        let n = bcd_directory_number(&[0xA1, 0x60, 0x21, 0x43, 0x65, 0x87]).unwrap();
        assert_eq!(n.digits.as_str(), "0612345678");
    }

    #[test]
    fn sms_addresses_in_either_spelling() {
        // 23.040: 11 digits, international E.164, then the same number
        // as a party BCD number.
        let n = sms_address(&[11, 0x91, 0x33, 0x16, 0x32, 0x54, 0x76, 0xF8]).unwrap();
        assert_eq!(n.digits.as_str(), "33612345678");
        let n = sms_address(&[0x91, 0x33, 0x16, 0x32, 0x54, 0x76, 0xF8]).unwrap();
        assert_eq!(n.digits.as_str(), "33612345678");
        let sender = sms_address(&[7, 0xD0, 0x41, 0x61]).unwrap();
        assert_eq!(sender.nature, NatureOfAddress::Alphanumeric);
        assert!(sms_address(&[12, 0x91, 0x21, 0x43]).is_err());
    }
}
