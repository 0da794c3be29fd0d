//! TS 32.297 CDR files: a file header (lengths, release, two timestamps
//! without a year, the CDR count, the sequence number, why the file was
//! closed, the node's address, the lost-CDR indicator), then each CDR
//! behind a 4- or 5-octet header of its own (its length, release, encoding
//! and the TS it follows). Layout after sigscale/cgf's `cgf_3gpp_file.erl`.
//!
//! The header length is read both ways writers have been seen to write
//! it: from the start of the file, or after the two length fields.

use crate::time::{civil_millis, year_of, EpochMillis};
use crate::Asn1Error;

/// The fixed part of a file header, up to the routeing filter.
const FIXED_HEADER: usize = 48;

/// A header timestamp: month, day, hour, minute and the offset from UTC
/// of the local clock they read. No year: see [`HeaderTime::nearest_to`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderTime {
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub offset_minutes: i32,
}

impl HeaderTime {
    /// `month:4 day:5 hour:5 minute:6 sign:1 offset-hours:5 offset-minutes:6`,
    /// sign 1 east of UTC.
    fn parse(octets: [u8; 4]) -> Result<HeaderTime, Asn1Error> {
        let bits = u32::from_be_bytes(octets);
        let field = |shift: u32, width: u32| (bits >> shift) & ((1 << width) - 1);
        let offset = (field(6, 5) * 60 + field(0, 6)) as i32;
        let time = HeaderTime {
            month: field(28, 4),
            day: field(23, 5),
            hour: field(18, 5),
            minute: field(12, 6),
            offset_minutes: if field(11, 1) == 1 { offset } else { -offset },
        };
        let valid = (1..=12).contains(&time.month)
            && (1..=31).contains(&time.day)
            && time.hour < 24
            && time.minute < 60
            && time.offset_minutes.abs() <= 14 * 60;
        match valid {
            true => Ok(time),
            false => Err(Asn1Error::BadFileHeader("a timestamp out of range")),
        }
    }

    /// The instant this reading names in the year that puts it nearest
    /// `reference` (the file's first CDR's time, which carries a year, or
    /// the time the file arrived): a file opened on 31 December and read
    /// on 1 January is last year's. `None` for 29 February in a year
    /// without one.
    pub fn nearest_to(&self, reference: EpochMillis) -> Option<EpochMillis> {
        let year = year_of(reference)?;
        (year - 1..=year + 1)
            .filter_map(|y| self.in_year(y))
            .min_by_key(|at| (at - reference).abs())
    }

    fn in_year(&self, year: i32) -> Option<EpochMillis> {
        let local = civil_millis(year, self.month, self.day, self.hour, self.minute, 0)?;
        Some(local - i64::from(self.offset_minutes) * 60_000)
    }
}

/// How many CDRs the node says it lost: bit 8 set says exactly the
/// low seven bits' count, clear says at least it (0: none lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LostCdrs {
    pub raw: u8,
}

impl LostCdrs {
    pub fn count(self) -> u8 {
        self.raw & 0x7F
    }

    pub fn is_exact(self) -> bool {
        self.raw & 0x80 != 0
    }

    pub fn any(self) -> bool {
        self.count() > 0
    }
}

/// A file header as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader<'a> {
    pub file_length: u32,
    pub header_length: u32,
    pub high_release: u8,
    pub low_release: u8,
    pub opened: HeaderTime,
    pub last_appended: HeaderTime,
    pub cdr_count: u32,
    pub sequence_number: u32,
    /// 0 normal, 1 size, 2 time, 3 count, 4 manual, 5 change; 128 and up abnormal.
    pub closure_reason: u8,
    pub node_address: [u8; 20],
    pub lost: LostCdrs,
    pub routeing_filter: &'a [u8],
    pub private_extension: &'a [u8],
}

/// A CDR's own header and its encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdrEntry<'a> {
    /// Where its header starts in the file.
    pub offset: usize,
    pub release: u8,
    pub version: u8,
    /// 1 BER, 2 unaligned PER, 3 aligned PER, 4 XER.
    pub encoding: u8,
    /// The 32.2xx it follows: 6 is 32.250 (circuit switched), 7 is 32.251
    /// (packet switched).
    pub ts_number: u8,
    pub bytes: &'a [u8],
}

/// A whole file: its header, then its CDRs one by one.
pub struct CdrFile<'a> {
    pub header: FileHeader<'a>,
    rest: &'a [u8],
    offset: usize,
}

impl<'a> CdrFile<'a> {
    /// A whole file: its length must be the one its header says.
    pub fn parse(file: &'a [u8]) -> Result<CdrFile<'a>, Asn1Error> {
        let (header, first_cdr) = parse_header(file)?;
        if header.file_length as usize != file.len() {
            return Err(Asn1Error::FileLength {
                said: header.file_length as usize,
                read: file.len(),
            });
        }
        let rest = file.get(first_cdr..).ok_or(Asn1Error::BadFileHeader(
            "a header length past the file's end",
        ))?;
        Ok(CdrFile {
            header,
            rest,
            offset: first_cdr,
        })
    }
}

/// The header at the start of `data` (a file, or its first octets) and
/// where its first CDR starts.
pub fn parse_header(data: &[u8]) -> Result<(FileHeader<'_>, usize), Asn1Error> {
    let short = Asn1Error::BadFileHeader("shorter than its fixed part");
    let fixed = data.get(..FIXED_HEADER).ok_or(short)?;
    let u32_at = |i: usize| u32::from_be_bytes(fixed[i..i + 4].try_into().expect("4 octets"));
    let length_field = |at: usize| -> Result<(&[u8], usize), Asn1Error> {
        let len = data
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(Asn1Error::BadFileHeader("cut inside its variable part"))?;
        let bytes = data
            .get(at + 2..at + 2 + len)
            .ok_or(Asn1Error::BadFileHeader("cut inside its variable part"))?;
        Ok((bytes, at + 2 + len))
    };
    let (routeing_filter, next) = length_field(FIXED_HEADER)?;
    let (private_extension, mut parsed) = length_field(next)?;
    // Release code 7 says "see the extension octets".
    if fixed[8] >> 5 == 7 {
        parsed += 2;
    }
    let header = FileHeader {
        file_length: u32_at(0),
        header_length: u32_at(4),
        high_release: fixed[8],
        low_release: fixed[9],
        opened: HeaderTime::parse(fixed[10..14].try_into().expect("4 octets"))?,
        last_appended: HeaderTime::parse(fixed[14..18].try_into().expect("4 octets"))?,
        cdr_count: u32_at(18),
        sequence_number: u32_at(22),
        closure_reason: fixed[26],
        node_address: fixed[27..47].try_into().expect("20 octets"),
        lost: LostCdrs { raw: fixed[47] },
        routeing_filter,
        private_extension,
    };
    let declared = header.header_length as usize;
    let first_cdr = if declared >= parsed {
        declared
    } else if declared + 8 >= parsed {
        declared + 8
    } else {
        return Err(Asn1Error::BadFileHeader(
            "a header length shorter than its own fields",
        ));
    };
    Ok((header, first_cdr))
}

/// The CDR at the start of `data`, `offset` octets into its file, and the
/// octets it takes with its header; `Ok(None)` when `data` ends inside it.
pub fn read_entry(data: &[u8], offset: usize) -> Result<Option<(CdrEntry<'_>, usize)>, Asn1Error> {
    let Some(header) = data.get(..4) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let release = header[2] >> 5;
    let header_len = if release == 7 { 5 } else { 4 };
    let Some(bytes) = data.get(header_len..header_len + len) else {
        return Ok(None);
    };
    let release = match release {
        7 => 10u8.checked_add(data[4]).ok_or(Asn1Error::CdrHeader {
            offset,
            reason: "a release past 255",
        })?,
        r => r,
    };
    let entry = CdrEntry {
        offset,
        release,
        version: header[2] & 0x1F,
        encoding: header[3] >> 5,
        ts_number: header[3] & 0x1F,
        bytes,
    };
    Ok(Some((entry, header_len + len)))
}

impl<'a> Iterator for CdrFile<'a> {
    /// A CDR whose header or length is broken ends the file: nothing after
    /// it can be framed.
    type Item = Result<CdrEntry<'a>, Asn1Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let entry = read_entry(self.rest, self.offset).and_then(|entry| {
            entry.ok_or(Asn1Error::CdrHeader {
                offset: self.offset,
                reason: "cut short",
            })
        });
        match entry {
            Ok((entry, used)) => {
                self.rest = &self.rest[used..];
                self.offset += used;
                Some(Ok(entry))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}
