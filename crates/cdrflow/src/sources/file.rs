//! The file source: records from files, directories or stdin, framed by a
//! [`Framing`] (newline, the seeds' JSON Lines, by default).
//!
//! Files are read in large chunks cut at frame boundaries, so a whole chunk
//! goes to the mediator as one batch without copying lines. gzip and zstd
//! files (recognised by their magic bytes, whatever their name) are
//! decompressed on the fly; a UTF-8 byte-order mark is skipped.
//!
//! **A source is its content, not its name.** Its identity is a hash of its
//! first 4 KiB (of a smaller file: its whole lines when first committed), so
//! the same bytes under another name, copied elsewhere or piped through
//! stdin are one source: positions resume and records without an id keep
//! their identity. Genuinely separate files with equal lines count separately
//! unless their first 4 KiB are equal too. The position committed with each
//! checkpoint is a compare-and-set on the position the run started from, so
//! two runs over one file cannot both commit it.
//!
//! **A last line without a line end is left for the next run** while the
//! file may still grow (a writer mid-append), so that appending completes it
//! instead of splitting it in two. Stdin, compressed files and files given
//! with `--complete` are finished: their last line is processed as it is
//! (the position committed still stops before it, see [`Chunk::resume_point`]).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use cdrflow_core::framing::{Framing, Newline};
use cdrflow_core::mediation::RawRecord;
use cdrflow_core::model::SourcePosition;
use cdrflow_store::SourceCursor;

use crate::events::{InternalEvent, ReadFailed};

/// Bytes hashed to recognise a source again.
pub const IDENTITY_BYTES: usize = 4096;
const CHUNK_BYTES: usize = 4 << 20;
/// Where records come from: a path, `-` for stdin, or a stream another
/// thread of this process writes (the live demo's generator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
    Stream(StreamInput),
}

/// A reader handed to the file source once, labelled for people.
#[derive(Clone)]
pub struct StreamInput {
    pub label: String,
    reader: Arc<Mutex<Option<Box<dyn Read + Send>>>>,
}

impl StreamInput {
    pub fn new(label: impl Into<String>, reader: impl Read + Send + 'static) -> StreamInput {
        StreamInput {
            label: label.into(),
            reader: Arc::new(Mutex::new(Some(Box::new(reader)))),
        }
    }

    fn take(&self) -> Result<Box<dyn Read + Send>> {
        self.reader
            .lock()
            .map_err(|_| anyhow::anyhow!("the stream {} was poisoned", self.label))?
            .take()
            .with_context(|| format!("the stream {} was read already", self.label))
    }
}

impl std::fmt::Debug for StreamInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamInput({})", self.label)
    }
}

/// The same stream, not one with the same label.
impl PartialEq for StreamInput {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.reader, &other.reader)
    }
}

impl Eq for StreamInput {}

impl Input {
    /// The inputs named on a command line: a directory stands for the files
    /// in it (in name order, hidden files skipped, not recursive), and a file
    /// named twice is read once.
    pub fn expand(args: &[String]) -> Result<Vec<Input>> {
        let mut inputs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for arg in args {
            if arg == "-" {
                if !inputs.contains(&Input::Stdin) {
                    inputs.push(Input::Stdin);
                }
                continue;
            }
            let path = Path::new(arg);
            let canonical = path
                .canonicalize()
                .with_context(|| format!("cannot open {}", path.display()))?;
            let files = if canonical.is_dir() {
                files_in(&canonical)?
            } else {
                vec![canonical]
            };
            for file in files {
                if seen.insert(file.clone()) {
                    inputs.push(Input::Path(file));
                }
            }
        }
        Ok(inputs)
    }

    pub fn size(&self) -> Option<u64> {
        match self {
            Input::Path(p) => p.metadata().ok().map(|m| m.len()),
            Input::Stdin | Input::Stream(_) => None,
        }
    }
}

fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        bail!(
            "{} holds no files to process (hidden files and subdirectories are skipped)",
            dir.display()
        );
    }
    files.sort();
    Ok(files)
}

/// How inputs are read.
#[derive(Clone, Copy, Debug)]
pub struct InputOptions {
    /// The inputs are finished: a last line without a line end is processed.
    pub complete: bool,
    /// Longer lines are refused as `record_too_large` without being read
    /// into memory whole; their first [`KEPT_BYTES`] are kept as the payload.
    pub max_record_bytes: usize,
    /// Where one record ends and the next begins.
    pub framing: &'static dyn Framing,
}

pub use cdrflow_core::mediation::{DEFAULT_MAX_RECORD_BYTES, KEPT_BYTES};

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            complete: false,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            framing: &Newline,
        }
    }
}

/// What the store remembers of sources, as the file source needs it.
pub trait CursorLookup {
    /// Identity prefix lengths shorter than 4 KiB in use (files first committed small).
    fn short_prefix_lens(&mut self) -> Result<Vec<i64>>;
    fn cursor(&mut self, key: &str) -> Result<Option<SourceCursor>>;
}

/// An opened input, positioned where processing should continue.
pub struct OpenedInput {
    /// How records from it are labelled for people: the canonical path, or `stdin`.
    pub origin: String,
    /// Its identity for deduplication and positions (see the module docs);
    /// empty for an input with no complete line yet.
    pub source_id: String,
    reader: Box<dyn Read + Send>,
    pub start_offset: u64,
    pub start_line: u64,
    /// Whether the input is finished, so that a last line without a line end is processed.
    complete: bool,
    /// A live stream: hand over what each read brings instead of filling a
    /// whole chunk first, so records are processed (and committed) as they come.
    eager: bool,
    max_record_bytes: usize,
    framing: &'static dyn Framing,
    pub cursors: CursorTemplate,
    /// Bytes of an unterminated last line left for the next run.
    pub held_back: u64,
}

/// Builds the cursors to commit for one input.
pub struct CursorTemplate {
    /// The cursor key in the store; `None` for an input with no identity yet.
    key: Option<String>,
    prefix_len: i64,
    /// The position last handed over for commit: the next commit moves from it.
    committed: Option<i64>,
}

impl OpenedInput {
    /// Opens `input` and positions it after what the store has committed of
    /// the same content.
    pub fn open(
        input: &Input,
        options: InputOptions,
        store: &mut dyn CursorLookup,
    ) -> Result<OpenedInput> {
        let (origin, raw, seekable): (String, Box<dyn Read + Send>, Option<File>) = match input {
            Input::Stdin => ("stdin".into(), Box::new(std::io::stdin()), None),
            Input::Stream(stream) => (stream.label.clone(), stream.take()?, None),
            Input::Path(path) => {
                let file =
                    File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let reopened = file.try_clone()?;
                (path.display().to_string(), Box::new(file), Some(reopened))
            }
        };
        let (reader, compressed) = decompressing(raw, &origin)?;
        let complete = options.complete || compressed || seekable.is_none();
        let mut reader: Box<dyn Read + Send> = reader;
        let mut head = Vec::with_capacity(IDENTITY_BYTES);
        (&mut reader)
            .take(IDENTITY_BYTES as u64)
            .read_to_end(&mut head)
            .with_context(|| format!("reading {origin}"))?;
        let identity = identity_prefix(&head, complete, options.framing);

        // The longest identity prefix with a stored cursor wins: a file
        // committed when small and grown since is still the same source.
        let mut candidates = store.short_prefix_lens()?;
        candidates.push(IDENTITY_BYTES as i64);
        candidates.retain(|&len| len > 0 && len as usize <= head.len());
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let mut resume = None;
        for len in candidates {
            let key = identity_key(&head[..len as usize]);
            if let Some(cursor) = store.cursor(&key)? {
                resume = Some((key, cursor));
                break;
            }
        }
        let legacy_path_cursor = match (&resume, input) {
            (None, Input::Path(path)) => legacy_cursor(store, path, &head)?,
            _ => None,
        };
        let (key, prefix_len, committed, start) = match (resume, identity) {
            (Some((key, cursor)), _) => {
                let prefix_len = cursor.prefix_len;
                let start = (cursor.next_offset as u64, cursor.lines as u64);
                (Some(key), prefix_len, Some(cursor.next_offset), start)
            }
            (None, Some(len)) => {
                let start = legacy_path_cursor.unwrap_or((0, 0));
                (Some(identity_key(&head[..len])), len as i64, None, start)
            }
            (None, None) => (None, 0, None, (0, 0)),
        };

        let (mut start_offset, mut start_line) = start;
        let reader = match seekable.filter(|_| !compressed) {
            Some(mut file) => {
                let size = file.metadata()?.len();
                if start_offset > size {
                    tracing::warn!(file = %origin, committed = start_offset, size, "the file is shorter than when it was processed; reading it from the start (records already counted are recognised as duplicates)");
                    (start_offset, start_line) = (0, 0);
                }
                file.seek(SeekFrom::Start(start_offset))?;
                Box::new(file) as Box<dyn Read + Send>
            }
            None => {
                // A stream: replay the head, then skip what is already committed.
                let mut stream: Box<dyn Read + Send> =
                    Box::new(std::io::Cursor::new(head).chain(reader));
                let skipped =
                    std::io::copy(&mut (&mut stream).take(start_offset), &mut std::io::sink())?;
                if skipped < start_offset {
                    bail!("{origin} is shorter ({skipped} bytes) than when it was processed ({start_offset} bytes); it is not the same data");
                }
                stream
            }
        };
        Ok(OpenedInput {
            source_id: key.clone().unwrap_or_default(),
            origin,
            reader,
            start_offset,
            start_line,
            complete,
            eager: matches!(input, Input::Stream(_)),
            max_record_bytes: options.max_record_bytes,
            framing: options.framing,
            cursors: CursorTemplate {
                key,
                prefix_len,
                committed,
            },
            held_back: 0,
        })
    }

    /// An input read from a byte stream that has no cursor (tests).
    #[cfg(test)]
    fn unpositioned(origin: &str, reader: Box<dyn Read + Send>, complete: bool) -> OpenedInput {
        OpenedInput {
            origin: origin.into(),
            source_id: origin.into(),
            reader,
            start_offset: 0,
            start_line: 0,
            complete,
            eager: false,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            framing: &Newline,
            cursors: CursorTemplate {
                key: None,
                prefix_len: 0,
                committed: None,
            },
            held_back: 0,
        }
    }

    /// Calls `visit` with each chunk of whole lines, in order.
    pub fn for_each_chunk(
        &mut self,
        mut visit: impl FnMut(&Chunk<'_>, &mut CursorTemplate) -> Result<()>,
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
                    Ok(n) => {
                        filled += n;
                        if self.eager {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.read_failed(e)),
                }
            }
            if filled == 0 {
                break;
            }
            if offset == 0 {
                // A file header (32.297's) is no record: frames start after it.
                let header = self.framing.header_len(&buf[..filled]);
                if header > 0 {
                    buf.copy_within(header..filled, 0);
                    filled -= header;
                    offset = header as u64;
                    continue;
                }
            }
            let end = match self.framing.last_boundary(&buf[..filled]) {
                Some(end) => end,
                None if eof && self.complete => filled,
                None if eof => {
                    // An unterminated last line of a file that may still grow
                    // (the run's report says so).
                    self.held_back = filled as u64;
                    break;
                }
                None if filled > self.max_record_bytes => {
                    // A line longer than any record may be: keep its start,
                    // skip the rest without holding it in memory.
                    let kept = buf[..KEPT_BYTES.min(filled)].to_vec();
                    let (length, ended) = self.skip_line(&mut buf, &mut filled, &mut eof)?;
                    if !ended && !self.complete {
                        self.held_back = length;
                        break;
                    }
                    let chunk = Chunk {
                        origin: &self.origin,
                        source_id: &self.source_id,
                        data: &kept,
                        framing: self.framing,
                        first_offset: offset,
                        first_line: line,
                        oversized: Some(Oversized { length, ended }),
                    };
                    visit(&chunk, &mut self.cursors)?;
                    let (next_offset, next_line) = chunk.resume_point();
                    (offset, line) = (next_offset, next_line);
                    continue;
                }
                // A live stream handed over part of a line: read on.
                None if self.eager && filled < buf.len() => continue,
                None => {
                    // One line longer than the buffer: grow (up to the record limit) and keep reading.
                    let grown = (buf.len() * 2)
                        .min(self.max_record_bytes + 1)
                        .max(buf.len() + 1);
                    buf.resize(grown, 0);
                    continue;
                }
            };
            let chunk = Chunk {
                origin: &self.origin,
                source_id: &self.source_id,
                data: &buf[..end],
                framing: self.framing,
                first_offset: offset,
                first_line: line,
                oversized: None,
            };
            visit(&chunk, &mut self.cursors)?;
            line += chunk.line_count();
            offset += end as u64;
            buf.copy_within(end..filled, 0);
            filled -= end;
        }
        Ok(())
    }
}

impl OpenedInput {
    fn read_failed(&self, error: std::io::Error) -> anyhow::Error {
        ReadFailed {
            source: "file",
            origin: &self.origin,
            error: &error,
        }
        .emit();
        anyhow::Error::new(error).context(format!("reading {}", self.origin))
    }

    /// Skips the rest of a line whose first `*filled` bytes are in `buf`
    /// (with no line end among them). Returns the line's length (without its
    /// line end) and whether a line end closed it; what follows the line end
    /// is left at the start of `buf`.
    fn skip_line(
        &mut self,
        buf: &mut [u8],
        filled: &mut usize,
        eof: &mut bool,
    ) -> Result<(u64, bool)> {
        let mut length = *filled as u64;
        *filled = 0;
        loop {
            let n = match self.reader.read(buf) {
                Ok(0) => {
                    *eof = true;
                    return Ok((length, false));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_failed(e)),
            };
            if let Some((payload_end, next)) = self.framing.first_end(&buf[..n]) {
                length += payload_end as u64;
                buf.copy_within(next..n, 0);
                *filled = n - next;
                return Ok((length, true));
            }
            length += n as u64;
        }
    }
}

impl CursorTemplate {
    /// The cursor to commit once everything before `next_offset` is
    /// processed; cursors must be committed in the order they are made.
    pub fn cursor(&mut self, next_offset: u64, lines: u64) -> Option<SourceCursor> {
        let key = self.key.as_ref()?;
        let from_offset = self.committed.replace(next_offset as i64);
        Some(SourceCursor {
            source: key.clone(),
            next_offset: next_offset as i64,
            lines: lines as i64,
            fingerprint: key.rsplit(':').next().unwrap_or_default().to_string(),
            prefix_len: self.prefix_len,
            from_offset,
        })
    }
}

/// The bytes of `head` that make up the source's identity: the first 4 KiB,
/// or for a smaller input its whole lines (all of it when it is finished);
/// `None` while it has no complete line (nothing of it is committed then).
fn identity_prefix(head: &[u8], complete: bool, framing: &dyn Framing) -> Option<usize> {
    let len = if head.len() >= IDENTITY_BYTES || complete {
        head.len()
    } else {
        framing.last_boundary(head).unwrap_or(0)
    };
    (len > 0).then_some(len)
}

fn identity_key(prefix: &[u8]) -> String {
    format!(
        "content:{}:{:016x}",
        prefix.len(),
        xxhash_rust::xxh3::xxh3_64(prefix)
    )
}

/// Stores written before sources were identified by content kept one cursor
/// per path, with a fingerprint of the file's first bytes.
fn legacy_cursor(
    store: &mut dyn CursorLookup,
    path: &Path,
    head: &[u8],
) -> Result<Option<(u64, u64)>> {
    let Some(cursor) = store.cursor(&format!("file:{}", path.display()))? else {
        return Ok(None);
    };
    let committed = cursor.next_offset as usize;
    let fingerprint = format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(&head[..head.len().min(committed)])
    );
    Ok(
        (committed <= path.metadata()?.len() as usize && fingerprint == cursor.fingerprint)
            .then_some((cursor.next_offset as u64, cursor.lines as u64)),
    )
}

/// Wraps `reader` in a decompressor when its first bytes say gzip or zstd.
fn decompressing(
    reader: Box<dyn Read + Send>,
    origin: &str,
) -> Result<(Box<dyn Read + Send>, bool)> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let magic =
        std::io::BufRead::fill_buf(&mut reader).with_context(|| format!("reading {origin}"))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        return Ok((Box::new(flate2::read::MultiGzDecoder::new(reader)), true));
    }
    if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = zstd::stream::read::Decoder::with_buffer(reader)
            .with_context(|| format!("{origin} looks like zstd but cannot be read as such"))?;
        return Ok((Box::new(decoder), true));
    }
    Ok((Box::new(reader), false))
}

/// Whole lines read from one input.
pub struct Chunk<'a> {
    pub origin: &'a str,
    pub source_id: &'a str,
    pub data: &'a [u8],
    pub framing: &'a dyn Framing,
    /// Byte offset of `data[0]` in the input.
    pub first_offset: u64,
    /// Lines before this chunk.
    pub first_line: u64,
    /// Set when the chunk is one line longer than a record may be: `data`
    /// holds only its first bytes.
    pub oversized: Option<Oversized>,
}

/// A line longer than `--max-record-bytes`, skipped while reading.
#[derive(Clone, Copy, Debug)]
pub struct Oversized {
    /// Its length in bytes, without the line end.
    pub length: u64,
    /// Whether a line end closed it (else it ended the input).
    pub ended: bool,
}

impl<'a> Chunk<'a> {
    /// The chunk's records, as its framing cuts them (frames that carry
    /// nothing, blank lines, are skipped but still counted).
    pub fn records(&self) -> impl Iterator<Item = RawRecord<'a>> + '_ {
        let cut_from = self.oversized.map(|o| o.length);
        self.framing
            .frames(self.data, self.first_offset == 0)
            .map(move |frame| RawRecord {
                origin: self.origin,
                source_id: self.source_id,
                position: SourcePosition::Line {
                    line: self.first_line + frame.number + 1,
                    byte_offset: self.first_offset + frame.offset as u64,
                },
                payload: frame.payload,
                cut_from,
            })
    }

    pub fn line_count(&self) -> u64 {
        self.framing.count(self.data)
    }

    /// Where to resume after this chunk: after its last line end, with the
    /// lines before it. A last line without a line end (of an input declared
    /// complete) is processed but not passed: should the same data turn up
    /// again with that line finished, the whole line is read, and a record
    /// already accepted from it is recognised as a duplicate.
    pub fn resume_point(&self) -> (u64, u64) {
        if let Some(oversized) = self.oversized {
            return match oversized.ended {
                true => (
                    self.first_offset + oversized.length + 1,
                    self.first_line + 1,
                ),
                false => (self.first_offset, self.first_line),
            };
        }
        let end = self.framing.last_boundary(self.data).unwrap_or(0);
        let frames = self.framing.count(&self.data[..end]);
        (self.first_offset + end as u64, self.first_line + frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &mut OpenedInput) -> (Vec<(SourcePosition, String)>, u64) {
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
        (seen, lines)
    }

    #[test]
    fn chunks_keep_positions_and_skip_blank_lines() {
        let text = b"\xEF\xBB\xBF{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}";
        let mut input = OpenedInput::unpositioned("mem", Box::new(&text[..]), true);
        let (seen, lines) = read_all(&mut input);
        assert_eq!(lines, 5);
        let at = |line, byte_offset| SourcePosition::Line { line, byte_offset };
        assert_eq!(
            seen,
            [
                (at(1, 0), "{\"a\":1}".to_string()),
                (at(4, 16), "{\"b\":2}".to_string()),
                (at(5, 24), "{\"c\":3}".to_string()),
            ]
        );
    }

    #[test]
    fn an_unterminated_last_line_waits_unless_the_input_is_complete() {
        let text = b"{\"a\":1}\n{\"b\":";
        let mut growing = OpenedInput::unpositioned("mem", Box::new(&text[..]), false);
        let (seen, _) = read_all(&mut growing);
        assert_eq!(seen.len(), 1);
        assert_eq!(growing.held_back, 5);
        let mut finished = OpenedInput::unpositioned("mem", Box::new(&text[..]), true);
        assert_eq!(read_all(&mut finished).0.len(), 2);
    }

    #[test]
    fn a_line_longer_than_a_record_may_be_is_skipped_not_buffered() {
        let long = "x".repeat(9 * DEFAULT_MAX_RECORD_BYTES);
        let text = format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n");
        let mut input =
            OpenedInput::unpositioned("mem", Box::new(std::io::Cursor::new(text)), true);
        let mut seen = Vec::new();
        input
            .for_each_chunk(|chunk, _| {
                for r in chunk.records() {
                    seen.push((r.payload.len(), chunk.oversized.map(|o| o.length)));
                }
                Ok(())
            })
            .unwrap();
        let long_len = long.len() as u64;
        assert_eq!(seen, [(7, None), (KEPT_BYTES, Some(long_len)), (7, None)]);
    }

    #[test]
    fn identity_covers_whole_lines_of_a_small_growing_file() {
        assert_eq!(identity_prefix(b"ab\ncd", false, &Newline), Some(3));
        assert_eq!(identity_prefix(b"ab\ncd", true, &Newline), Some(5));
        assert_eq!(identity_prefix(b"abcd", false, &Newline), None);
        assert_eq!(
            identity_prefix(&[b'x'; 5000][..4096], false, &Newline),
            Some(4096)
        );
    }
}
