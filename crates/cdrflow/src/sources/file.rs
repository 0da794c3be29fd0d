//! The file source: newline-delimited records from files or stdin.
//!
//! Files are read in large chunks cut at line boundaries, so a whole chunk
//! goes to the mediator as one batch without copying lines. A file's cursor
//! (byte offset, line count) and a fingerprint of its first bytes are
//! committed with each checkpoint; reopening the same file resumes after the
//! last committed line, and a replaced file is read from the start.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use anyhow::{Context, Result};
use cdrflow_core::mediation::RawRecord;
use cdrflow_core::model::SourcePosition;
use cdrflow_store::SourceCursor;

/// Bytes hashed to recognise a file again.
const FINGERPRINT_BYTES: u64 = 4096;
const CHUNK_BYTES: usize = 4 << 20;

/// Where records come from: a path, or `-` for stdin.
#[derive(Debug, Clone)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Input {
    pub fn parse(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }
}

/// An opened input, positioned where processing should continue.
pub struct OpenedInput {
    /// How records from it are labelled: the canonical path, or `stdin`.
    pub origin: String,
    pub reader: Box<dyn Read + Send>,
    pub start_offset: u64,
    pub start_line: u64,
    /// Total size when known, for progress.
    pub size: Option<u64>,
    pub cursors: CursorTemplate,
}

/// Builds the cursors to commit for one input.
pub struct CursorTemplate {
    /// The cursor key in the store; stdin has none because it cannot be re-read.
    source_key: Option<String>,
    fingerprint_prefix: Vec<u8>,
}

impl OpenedInput {
    /// A stream read from its start that cannot be re-read, so it has no cursor.
    fn unpositioned(origin: &str, reader: Box<dyn Read + Send>) -> OpenedInput {
        OpenedInput {
            origin: origin.into(),
            reader,
            start_offset: 0,
            start_line: 0,
            size: None,
            cursors: CursorTemplate {
                source_key: None,
                fingerprint_prefix: Vec::new(),
            },
        }
    }

    /// Opens `input`, resuming from `cursor` when it still describes this file.
    pub fn open(
        input: &Input,
        lookup: impl FnOnce(&str) -> Result<Option<SourceCursor>>,
    ) -> Result<OpenedInput> {
        let path = match input {
            Input::Stdin => {
                return Ok(OpenedInput::unpositioned(
                    "stdin",
                    Box::new(std::io::stdin()),
                ))
            }
            Input::Path(path) => path,
        };
        let canonical = path
            .canonicalize()
            .with_context(|| format!("cannot open {}", path.display()))?;
        let origin = canonical.display().to_string();
        let source_key = format!("file:{origin}");
        let mut file =
            File::open(&canonical).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata()?.len();
        let mut prefix = Vec::new();
        (&mut file)
            .take(FINGERPRINT_BYTES)
            .read_to_end(&mut prefix)?;
        let (mut start_offset, mut start_line) = (0, 0);
        if let Some(cursor) = lookup(&source_key)? {
            let committed = cursor.next_offset as u64;
            let same_file = committed <= size
                && fingerprint(&prefix[..prefix.len().min(committed as usize)])
                    == cursor.fingerprint;
            if same_file {
                (start_offset, start_line) = (committed, cursor.lines as u64);
            } else {
                tracing::warn!(file = %origin, "file differs from the one processed before; reading it from the start");
            }
        }
        file.seek(SeekFrom::Start(start_offset))?;
        Ok(OpenedInput {
            origin,
            reader: Box::new(file),
            start_offset,
            start_line,
            size: Some(size),
            cursors: CursorTemplate {
                source_key: Some(source_key),
                fingerprint_prefix: prefix,
            },
        })
    }

    /// Calls `visit` with each chunk of whole lines, in order.
    pub fn for_each_chunk(
        &mut self,
        mut visit: impl FnMut(&Chunk<'_>, &CursorTemplate) -> Result<()>,
    ) -> Result<()> {
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut filled = 0usize;
        let mut offset = self.start_offset;
        let mut line = self.start_line;
        let mut eof = false;
        while !eof || filled > 0 {
            while !eof && filled < buf.len() {
                match self.reader.read(&mut buf[filled..]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).with_context(|| format!("reading {}", self.origin)),
                }
            }
            let end = match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(i) => i + 1,
                None if eof => filled,
                None => {
                    // One line longer than the buffer: grow and keep reading.
                    buf.resize(buf.len() * 2, 0);
                    continue;
                }
            };
            let chunk = Chunk {
                origin: &self.origin,
                data: &buf[..end],
                first_offset: offset,
                first_line: line,
            };
            visit(&chunk, &self.cursors)?;
            line += chunk.line_count();
            offset += end as u64;
            buf.copy_within(end..filled, 0);
            filled -= end;
        }
        Ok(())
    }
}

impl CursorTemplate {
    /// The cursor to commit once everything before `next_offset` is processed.
    pub fn cursor(&self, next_offset: u64, lines: u64) -> Option<SourceCursor> {
        let key = self.source_key.as_ref()?;
        let covered = self.fingerprint_prefix.len().min(next_offset as usize);
        Some(SourceCursor {
            source: key.clone(),
            next_offset: next_offset as i64,
            lines: lines as i64,
            fingerprint: fingerprint(&self.fingerprint_prefix[..covered]),
        })
    }
}

/// Whole lines read from one input.
pub struct Chunk<'a> {
    pub origin: &'a str,
    pub data: &'a [u8],
    /// Byte offset of `data[0]` in the input.
    pub first_offset: u64,
    /// Lines before this chunk.
    pub first_line: u64,
}

impl<'a> Chunk<'a> {
    /// The chunk's records; blank lines are skipped but still counted.
    pub fn records(&self) -> impl Iterator<Item = RawRecord<'a>> + '_ {
        let data = self.data;
        let mut start = 0usize;
        let mut line = self.first_line;
        std::iter::from_fn(move || loop {
            if start >= data.len() {
                return None;
            }
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            let mut payload = &data[start..end];
            let byte_offset = self.first_offset + start as u64;
            start = end + 1;
            line += 1;
            if let [rest @ .., b'\r'] = payload {
                payload = rest;
            }
            if payload.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(RawRecord {
                origin: self.origin,
                position: SourcePosition::Line { line, byte_offset },
                payload,
            });
        })
    }

    pub fn line_count(&self) -> u64 {
        let newlines = memchr::memchr_iter(b'\n', self.data).count() as u64;
        newlines + u64::from(!self.data.is_empty() && !self.data.ends_with(b"\n"))
    }

    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.data.len() as u64
    }
}

fn fingerprint(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_positions_and_skip_blank_lines() {
        let text = b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}";
        let mut input = OpenedInput::unpositioned("mem", Box::new(&text[..]));
        let mut seen = Vec::new();
        let mut lines = 0;
        input
            .for_each_chunk(|chunk, _| {
                seen.extend(
                    chunk
                        .records()
                        .map(|r| (r.position, String::from_utf8(r.payload.to_vec()).unwrap())),
                );
                lines += chunk.line_count();
                Ok(())
            })
            .unwrap();
        assert_eq!(lines, 5);
        assert_eq!(
            seen,
            [
                (
                    SourcePosition::Line {
                        line: 1,
                        byte_offset: 0
                    },
                    "{\"a\":1}".to_string()
                ),
                (
                    SourcePosition::Line {
                        line: 4,
                        byte_offset: 13
                    },
                    "{\"b\":2}".to_string()
                ),
                (
                    SourcePosition::Line {
                        line: 5,
                        byte_offset: 21
                    },
                    "{\"c\":3}".to_string()
                ),
            ]
        );
    }
}
