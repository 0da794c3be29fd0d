//! Framing: where one record ends and the next begins in a byte stream.
//!
//! Apart from formats, as in Vector's `lib/codecs` (`decoding/framing` vs
//! `decoding/format`): a source cuts its bytes into frames with a
//! [`Framing`], and each frame goes to the format's decoder. Newline
//! framing is the one the seeds use (JSON Lines, CSV); length-prefixed and
//! BER TLV framings for binary CDR files plug in here.

/// One frame of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its number in the chunk, from 0, counting frames that carry nothing
    /// (blank lines), which are not handed out.
    pub number: u64,
    /// Where it starts in the chunk.
    pub offset: usize,
    pub payload: &'a [u8],
}

pub trait Framing: Sync {
    fn name(&self) -> &'static str;

    /// The end of the last complete frame in `data`, `None` when no frame
    /// in it is complete yet.
    fn last_boundary(&self, data: &[u8]) -> Option<usize>;

    /// Where the first frame of `data` ends: the end of its payload and the
    /// start of the next frame (after its terminator). A source skipping a
    /// frame too long to hold calls it on the bytes that follow the start.
    fn first_end(&self, data: &[u8]) -> Option<(usize, usize)>;

    /// The frames of `data`, which holds whole frames only (at the end of a
    /// finished input the last may lack its terminator); `at_start` says
    /// `data` begins the input.
    fn frames<'a>(
        &self,
        data: &'a [u8],
        at_start: bool,
    ) -> Box<dyn Iterator<Item = Frame<'a>> + 'a>;

    /// How many frames `data` holds, the empty ones included.
    fn count(&self, data: &[u8]) -> u64;

    /// How many octets at the start of an input are its header, not
    /// frames (a 32.297 file's); asked once, with the input's first read.
    fn header_len(&self, _start: &[u8]) -> usize {
        0
    }
}

impl std::fmt::Debug for dyn Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Lines ending in `\n`. A `\r` before it (CRLF) and a UTF-8 byte-order
/// mark at the start of the input are dropped; blank lines carry nothing.
pub struct Newline;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl Framing for Newline {
    fn name(&self) -> &'static str {
        "newline"
    }

    fn last_boundary(&self, data: &[u8]) -> Option<usize> {
        memchr::memrchr(b'\n', data).map(|i| i + 1)
    }

    fn first_end(&self, data: &[u8]) -> Option<(usize, usize)> {
        memchr::memchr(b'\n', data).map(|i| (i, i + 1))
    }

    fn frames<'a>(
        &self,
        data: &'a [u8],
        at_start: bool,
    ) -> Box<dyn Iterator<Item = Frame<'a>> + 'a> {
        let mut start = 0usize;
        let mut number = 0u64;
        Box::new(std::iter::from_fn(move || loop {
            if start >= data.len() {
                return None;
            }
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            let (offset, mut payload) = (start, &data[start..end]);
            start = end + 1;
            number += 1;
            if at_start && offset == 0 {
                payload = payload.strip_prefix(UTF8_BOM).unwrap_or(payload);
            }
            if let [rest @ .., b'\r'] = payload {
                payload = rest;
            }
            if payload.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Frame {
                number: number - 1,
                offset,
                payload,
            });
        }))
    }

    fn count(&self, data: &[u8]) -> u64 {
        let newlines = memchr::memchr_iter(b'\n', data).count() as u64;
        // A last line without its line end (a finished input) counts too.
        newlines + u64::from(data.last().is_some_and(|&b| b != b'\n'))
    }
}

/// BER records one after another, as switches write raw CDR streams (and
/// 32.298 records outside a 32.297 file): a frame is one outer
/// tag-length-value. `0x00` and `0xFF` between records are fill (ZTE pads
/// records with `0xFF`). A value whose tag or length cannot be read makes
/// the rest of the data one frame, which the decoder rejects with the
/// reason: nothing after it can be found.
pub struct BerRecords;

enum Scan {
    End,
    Record {
        start: usize,
        end: usize,
    },
    /// The data ends inside a record.
    Truncated {
        start: usize,
    },
    Broken {
        start: usize,
    },
}

fn scan(data: &[u8], from: usize) -> Scan {
    let start = data[from..]
        .iter()
        .position(|&b| b != 0x00 && b != 0xFF)
        .map_or(data.len(), |i| from + i);
    if start == data.len() {
        return Scan::End;
    }
    match cdrflow_asn1::tlv::read(&data[start..]) {
        Ok(tlv) => Scan::Record {
            start,
            end: start + tlv.encoded_len,
        },
        Err(cdrflow_asn1::Asn1Error::Truncated(_)) => Scan::Truncated { start },
        Err(_) => Scan::Broken { start },
    }
}

impl Framing for BerRecords {
    fn name(&self) -> &'static str {
        "ber"
    }

    fn last_boundary(&self, data: &[u8]) -> Option<usize> {
        let mut at = 0;
        loop {
            match scan(data, at) {
                Scan::Record { end, .. } => at = end,
                Scan::End | Scan::Broken { .. } => return (!data.is_empty()).then_some(data.len()),
                Scan::Truncated { start } => return (start > 0).then_some(start),
            }
        }
    }

    fn first_end(&self, data: &[u8]) -> Option<(usize, usize)> {
        match scan(data, 0) {
            Scan::Record { end, .. } => Some((end, end)),
            Scan::Broken { .. } => Some((data.len(), data.len())),
            Scan::End | Scan::Truncated { .. } => None,
        }
    }

    fn frames<'a>(
        &self,
        data: &'a [u8],
        _at_start: bool,
    ) -> Box<dyn Iterator<Item = Frame<'a>> + 'a> {
        let (mut at, mut number) = (0usize, 0u64);
        Box::new(std::iter::from_fn(move || {
            let (start, end) = match scan(data, at) {
                Scan::End => return None,
                Scan::Record { start, end } => (start, end),
                Scan::Truncated { start } | Scan::Broken { start } => (start, data.len()),
            };
            at = end;
            number += 1;
            Some(Frame {
                number: number - 1,
                offset: start,
                payload: &data[start..end],
            })
        }))
    }

    fn count(&self, data: &[u8]) -> u64 {
        self.frames(data, true).count() as u64
    }
}

/// TS 32.297 CDR files: a file header, then each CDR behind its own
/// length and release header; a frame is one CDR's BER octets. A file
/// whose header cannot be read is framed from its start, so its octets
/// come out as records the decoder refuses, with their reasons.
pub struct Ts32297;

impl Ts32297 {
    fn entries(data: &[u8]) -> impl Iterator<Item = Result<(usize, usize, usize), usize>> + '_ {
        // (frame start, payload start, frame end), or Err(start) for an
        // entry that is cut short or broken.
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= data.len() {
                return None;
            }
            let start = at;
            match cdrflow_asn1::file::read_entry(&data[start..], start) {
                Ok(Some((entry, used))) => {
                    at = start + used;
                    Some(Ok((start, start + used - entry.bytes.len(), at)))
                }
                Ok(None) | Err(_) => {
                    at = data.len();
                    Some(Err(start))
                }
            }
        })
    }
}

impl Framing for Ts32297 {
    fn name(&self) -> &'static str {
        "ts32297"
    }

    fn header_len(&self, start: &[u8]) -> usize {
        cdrflow_asn1::file::parse_header(start)
            .map_or(0, |(_, first_cdr)| first_cdr.min(start.len()))
    }

    fn last_boundary(&self, data: &[u8]) -> Option<usize> {
        let mut last = 0;
        for entry in Ts32297::entries(data) {
            match entry {
                Ok((_, _, end)) => last = end,
                Err(_) => break,
            }
        }
        (last > 0).then_some(last)
    }

    fn first_end(&self, data: &[u8]) -> Option<(usize, usize)> {
        match Ts32297::entries(data).next()? {
            Ok((_, _, end)) => Some((end, end)),
            Err(_) => None,
        }
    }

    fn frames<'a>(
        &self,
        data: &'a [u8],
        _at_start: bool,
    ) -> Box<dyn Iterator<Item = Frame<'a>> + 'a> {
        Box::new(
            Ts32297::entries(data)
                .enumerate()
                .map(move |(number, entry)| {
                    let (offset, payload) = match entry {
                        Ok((start, payload, end)) => (start, &data[payload..end]),
                        Err(start) => (start, &data[start..]),
                    };
                    Frame {
                        number: number as u64,
                        offset,
                        payload,
                    }
                }),
        )
    }

    fn count(&self, data: &[u8]) -> u64 {
        Ts32297::entries(data).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ber_frames_are_whole_records_with_fill_between() {
        // [0] {…3 octets}, fill, [1] {…1}, then a record cut short.
        let data = [
            0xA0, 0x03, 0x80, 0x01, 0x00, 0xFF, 0xFF, 0xA1, 0x01, 0x07, 0xA6, 0x05, 0x80,
        ];
        let frames: Vec<_> = BerRecords
            .frames(&data, true)
            .map(|f| (f.number, f.offset, f.payload))
            .collect();
        assert_eq!(
            frames,
            [
                (0, 0, &data[..5]),
                (1, 7, &data[7..10]),
                (2, 10, &data[10..])
            ]
        );
        assert_eq!(BerRecords.last_boundary(&data), Some(10));
        assert_eq!(BerRecords.last_boundary(&data[..3]), None);
        assert_eq!(BerRecords.first_end(&data[7..]), Some((3, 3)));
        assert_eq!(BerRecords.count(&data[..10]), 2);
        // A length no BER allows: the rest is one frame, for the decoder to refuse.
        let broken = [0xA0, 0x01, 0x05, 0xA1, 0x85, 1, 2, 3, 4, 5, 0xA0, 0x00];
        assert_eq!(BerRecords.count(&broken), 2);
        assert_eq!(BerRecords.last_boundary(&broken), Some(broken.len()));
    }

    fn payloads(data: &[u8], at_start: bool) -> Vec<(u64, usize, &[u8])> {
        Newline
            .frames(data, at_start)
            .map(|f| (f.number, f.offset, f.payload))
            .collect()
    }

    #[test]
    fn newline_frames_drop_crlf_blank_lines_and_a_leading_bom() {
        let data = b"\xEF\xBB\xBF{\"a\":1}\r\n\n  \n{\"b\":2}\nlast";
        assert_eq!(
            payloads(data, true),
            [
                (0, 0, &b"{\"a\":1}"[..]),
                (3, 16, &b"{\"b\":2}"[..]),
                (4, 24, &b"last"[..])
            ]
        );
        assert_eq!(Newline.count(data), 5);
        assert_eq!(Newline.last_boundary(data), Some(24));
        assert_eq!(Newline.last_boundary(b"no end"), None);
        assert_eq!(Newline.first_end(b"ab\ncd\n"), Some((2, 3)));
        // Only the input's first bytes may carry the mark.
        assert_eq!(payloads(b"\xEF\xBB\xBFx\n", false)[0].2, b"\xEF\xBB\xBFx");
    }
}
