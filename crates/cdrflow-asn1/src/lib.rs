//! 3GPP charging records for mediation: TS 32.298 records in ASN.1 BER,
//! alone (a Kafka message) or in TS 32.297 CDR files.
//!
//! - [`tlv`]: BER framing, tolerant of tags nobody declared;
//! - [`digits`] and [`time`]: the encodings inside the fields (TBCD and BCD
//!   numbers with their type of number, timestamps with their UTC offset);
//! - [`record`]: which tag of which record holds what, as tables;
//! - [`file`]: the 32.297 file and CDR headers.
//!
//! What a field means for a country (its numbering plan, its zone when a
//! timestamp has no offset) is mediation's business, not this crate's.

pub mod digits;
pub mod file;
pub mod record;
pub mod time;
pub mod tlv;

#[cfg(test)]
mod tests;

pub use record::{decode_message, decode_record, ChargingRecord, RecordKind};

/// Why bytes are not a record; [`Asn1Error::reason`] names it for rejects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Asn1Error {
    #[error("the input ends inside {0}")]
    Truncated(&'static str),
    #[error("a length in a form BER does not allow or past 4 octets")]
    BadLength,
    #[error("a tag number past 28 bits")]
    BadTag,
    #[error("{0} is primitive but has an indefinite length")]
    IndefinitePrimitive(tlv::Tag),
    #[error("indefinite lengths nested deeper than {}", tlv::MAX_DEPTH)]
    TooDeep,
    #[error("{0} is not an unsigned integer of at most 64 bits")]
    BadInteger(tlv::Tag),
    #[error("a number with {0}")]
    BadDigits(&'static str),
    #[error("a timestamp with {0}")]
    BadTimestamp(&'static str),
    #[error("text that is not ASCII")]
    BadText,
    #[error("{0} where the record has a fixed structure")]
    UnexpectedTag(tlv::Tag),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error(
        "{0} is not a record type cdrflow reads (MO/MT call [0]/[1], MO/MT SMS [6]/[7], PGW [79])"
    )]
    UnknownRecord(tlv::Tag),
    #[error("{0} octets after the record")]
    TrailingBytes(usize),
    #[error("field {tag}: {error}")]
    InField {
        tag: tlv::Tag,
        error: Box<Asn1Error>,
    },
    #[error("a 32.297 file header {0}")]
    BadFileHeader(&'static str),
    #[error("a 32.297 file of {read} octets whose header says {said}")]
    FileLength { said: usize, read: usize },
    #[error("the CDR header at octet {offset} is {reason}")]
    CdrHeader { offset: usize, reason: &'static str },
}

impl Asn1Error {
    /// What went wrong, inside the fields it happened in.
    pub fn cause(&self) -> &Asn1Error {
        match self {
            Asn1Error::InField { error, .. } => error.cause(),
            other => other,
        }
    }

    /// A short name for the rejects table and metrics.
    pub fn reason(&self) -> &'static str {
        match self.cause() {
            Asn1Error::InField { .. } => unreachable!("cause() looks inside fields"),
            Asn1Error::Truncated(_) => "ber_truncated",
            Asn1Error::BadLength | Asn1Error::BadTag | Asn1Error::IndefinitePrimitive(_) => {
                "ber_malformed"
            }
            Asn1Error::TooDeep => "ber_too_deep",
            Asn1Error::BadInteger(_) => "ber_bad_integer",
            Asn1Error::BadDigits(_) => "ber_bad_number",
            Asn1Error::BadTimestamp(_) => "ber_bad_timestamp",
            Asn1Error::BadText => "ber_bad_text",
            Asn1Error::UnexpectedTag(_) | Asn1Error::Missing(_) => "ber_bad_structure",
            Asn1Error::UnknownRecord(_) => "ber_unknown_record",
            Asn1Error::TrailingBytes(_) => "ber_trailing_bytes",
            Asn1Error::BadFileHeader(_) | Asn1Error::FileLength { .. } => "cdr_file_bad_header",
            Asn1Error::CdrHeader { .. } => "cdr_file_bad_cdr_header",
        }
    }
}
