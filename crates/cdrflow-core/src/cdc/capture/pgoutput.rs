//! PostgreSQL's built-in logical decoding plugin `pgoutput`, protocol
//! version 1: the bytes of one message as a [`Message`].
//!
//! The format is PostgreSQL's "Logical Replication Message Formats"
//! (big-endian integers, NUL-terminated strings, column values in the
//! type's text output). `cdrflow cdc capture` reads these messages through
//! `pg_logical_slot_peek_binary_changes`, one per row. Untrusted bytes in,
//! a value or an error out: never a panic (fuzzed as `decode_pgoutput`).

use thiserror::Error;

/// A WAL position (`pg_lsn`) as a number.
pub type Lsn = u64;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Begin(Begin),
    Commit(Commit),
    /// A table's shape; sent before the first change to it in a session.
    Relation(Relation),
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        /// The old key (`K`, when it changed) or the whole old row (`O`,
        /// under `REPLICA IDENTITY FULL`); absent otherwise.
        old: Option<Tuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        /// The old key, or the whole old row under `REPLICA IDENTITY FULL`.
        old: Tuple,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// `pg_logical_emit_message`, sent only when asked (`messages 'true'`).
    LogicalMessage {
        transactional: bool,
        prefix: String,
    },
    /// A replication origin or a type's name: nothing a change event carries.
    Other(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Begin {
    /// Where the transaction's commit record is.
    pub final_lsn: Lsn,
    /// Microseconds since 1970-01-01T00:00:00Z.
    pub committed_at_micros: i64,
    pub xid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub commit_lsn: Lsn,
    /// Just past the commit record: where a slot advances to once the
    /// transaction is safely elsewhere.
    pub end_lsn: Lsn,
    pub committed_at_micros: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub table: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` an index.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// Part of the replica identity (the primary key, by default).
    pub key: bool,
    pub type_oid: u32,
    /// The type modifier: a NUMERIC's precision and scale, -1 when none.
    pub type_modifier: i32,
}

/// One column's value in a tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Null,
    /// A TOASTed value the change did not touch: not sent.
    Unchanged,
    /// The type's text output.
    Text(String),
}

pub type Tuple = Vec<Cell>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PgoutputError {
    #[error("the pgoutput message ends early, at byte {0}")]
    Truncated(usize),
    #[error("pgoutput message type `{0}` is not one of protocol version 1's")]
    UnknownType(char),
    #[error("the pgoutput relation `{table}` names the column `{column}` twice")]
    DuplicateColumn { table: String, column: String },
    #[error("a pgoutput tuple's column {column} is marked `{kind}`, not n, u, t or b")]
    UnknownCell { column: usize, kind: char },
    #[error("a pgoutput tuple's column {column} is binary: ask for text output (binary 'false')")]
    BinaryCell { column: usize },
    #[error("a pgoutput {what} is not UTF-8: set the database's encoding to UTF8")]
    NotUtf8 { what: &'static str },
    #[error("a pgoutput {message} has `{marker}` where `{expected}` belongs")]
    UnexpectedMarker {
        message: &'static str,
        marker: char,
        expected: &'static str,
    },
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PgoutputError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(PgoutputError::Truncated(self.bytes.len()))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, PgoutputError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PgoutputError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, PgoutputError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, PgoutputError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn timestamp(&mut self) -> Result<i64, PgoutputError> {
        Ok((self.u64()? as i64).saturating_add(POSTGRES_EPOCH_MICROS))
    }

    fn string(&mut self, what: &'static str) -> Result<String, PgoutputError> {
        let rest = &self.bytes[self.at..];
        let end = memchr_zero(rest).ok_or(PgoutputError::Truncated(self.bytes.len()))?;
        let text =
            std::str::from_utf8(&rest[..end]).map_err(|_| PgoutputError::NotUtf8 { what })?;
        self.at += end + 1;
        Ok(text.to_string())
    }

    fn tuple(&mut self) -> Result<Tuple, PgoutputError> {
        let columns = usize::from(self.u16()?);
        let mut tuple = Vec::with_capacity(columns.min(self.bytes.len()));
        for column in 0..columns {
            tuple.push(match self.u8()? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                b't' => {
                    let length = self.u32()? as usize;
                    let text = std::str::from_utf8(self.take(length)?).map_err(|_| {
                        PgoutputError::NotUtf8 {
                            what: "column value",
                        }
                    })?;
                    Cell::Text(text.to_string())
                }
                b'b' => return Err(PgoutputError::BinaryCell { column }),
                other => {
                    return Err(PgoutputError::UnknownCell {
                        column,
                        kind: char::from(other),
                    })
                }
            });
        }
        Ok(tuple)
    }

    /// A tuple announced by `marker`, which must be one of `allowed`.
    fn marked_tuple(
        &mut self,
        message: &'static str,
        allowed: &'static [u8],
        expected: &'static str,
    ) -> Result<(u8, Tuple), PgoutputError> {
        let marker = self.u8()?;
        if !allowed.contains(&marker) {
            return Err(PgoutputError::UnexpectedMarker {
                message,
                marker: char::from(marker),
                expected,
            });
        }
        Ok((marker, self.tuple()?))
    }
}

fn memchr_zero(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == 0)
}

/// Decodes one message.
pub fn decode(bytes: &[u8]) -> Result<Message, PgoutputError> {
    let mut r = Reader { bytes, at: 0 };
    let kind = r.u8()?;
    Ok(match kind {
        b'B' => Message::Begin(Begin {
            final_lsn: r.u64()?,
            committed_at_micros: r.timestamp()?,
            xid: r.u32()?,
        }),
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit(Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                committed_at_micros: r.timestamp()?,
            })
        }
        b'R' => {
            let id = r.u32()?;
            let schema = r.string("schema name")?;
            let table = r.string("table name")?;
            let replica_identity = r.u8()?;
            let count = usize::from(r.u16()?);
            let mut columns = Vec::with_capacity(count.min(bytes.len()));
            for _ in 0..count {
                let flags = r.u8()?;
                let name = r.string("column name")?;
                // A table's columns have distinct names; two fields of one
                // name would give a consumer one value under two schemas.
                if columns.iter().any(|c: &Column| c.name == name) {
                    return Err(PgoutputError::DuplicateColumn {
                        table,
                        column: name,
                    });
                }
                columns.push(Column {
                    name,
                    key: flags & 1 == 1,
                    type_oid: r.u32()?,
                    type_modifier: r.u32()? as i32,
                });
            }
            Message::Relation(Relation {
                id,
                schema,
                table,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            let (_, new) = r.marked_tuple("insert", b"N", "N")?;
            Message::Insert { relation, new }
        }
        b'U' => {
            let relation = r.u32()?;
            let (marker, first) = r.marked_tuple("update", b"KON", "K, O or N")?;
            let (old, new) = if marker == b'N' {
                (None, first)
            } else {
                (Some(first), r.marked_tuple("update", b"N", "N")?.1)
            };
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32()?;
            let (_, old) = r.marked_tuple("delete", b"KO", "K or O")?;
            Message::Delete { relation, old }
        }
        b'T' => {
            let count = r.u32()? as usize;
            let _options = r.u8()?;
            let mut relations = Vec::with_capacity(count.min(bytes.len()));
            for _ in 0..count {
                relations.push(r.u32()?);
            }
            Message::Truncate { relations }
        }
        b'M' => {
            let transactional = r.u8()? & 1 == 1;
            let _lsn = r.u64()?;
            let prefix = r.string("message prefix")?;
            let length = r.u32()? as usize;
            r.take(length)?;
            Message::LogicalMessage {
                transactional,
                prefix,
            }
        }
        b'O' | b'Y' => Message::Other(kind),
        other => return Err(PgoutputError::UnknownType(char::from(other))),
    })
}

/// Messages built the way PostgreSQL's `proto.c` writes them, for tests.
#[cfg(test)]
pub(crate) mod build {
    #[derive(Default)]
    pub(crate) struct Bytes(pub(crate) Vec<u8>);

    impl Bytes {
        pub(crate) fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        pub(crate) fn u16(mut self, v: u16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn string(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        /// One text cell.
        pub(crate) fn text(self, s: &str) -> Self {
            let mut b = self.u8(b't').u32(s.len() as u32);
            b.0.extend_from_slice(s.as_bytes());
            b
        }
        /// A whole tuple: its column count, then each cell (`None`: null).
        pub(crate) fn tuple(self, cells: &[Option<&str>]) -> Self {
            let mut b = self.u16(cells.len() as u16);
            for cell in cells {
                b = match cell {
                    None => b.u8(b'n'),
                    Some(text) => b.text(text),
                };
            }
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::Bytes as Writer;
    use super::*;

    #[test]
    fn begin_and_commit_carry_positions_and_unix_times() {
        // 2000-01-01T00:00:01Z in PostgreSQL's epoch is 1_000_000 µs.
        let begin = Writer::default()
            .u8(b'B')
            .u64(0x16B_3748)
            .u64(1_000_000)
            .u32(731)
            .0;
        assert_eq!(
            decode(&begin),
            Ok(Message::Begin(Begin {
                final_lsn: 0x16B_3748,
                committed_at_micros: 946_684_801_000_000,
                xid: 731
            }))
        );
        let commit = Writer::default().u8(b'C').u8(0).u64(10).u64(20).u64(0).0;
        assert_eq!(
            decode(&commit),
            Ok(Message::Commit(Commit {
                commit_lsn: 10,
                end_lsn: 20,
                committed_at_micros: 946_684_800_000_000
            }))
        );
    }

    #[test]
    fn relation_names_its_key_columns_and_types() {
        let bytes = Writer::default()
            .u8(b'R')
            .u32(16_384)
            .string("public")
            .string("plans")
            .u8(b'd')
            .u16(2)
            .u8(1)
            .string("plan_id")
            .u32(25)
            .u32(u32::MAX)
            .u8(0)
            .string("monthly_fee")
            .u32(1700)
            .u32(((12 << 16) | 2) + 4)
            .0;
        let Ok(Message::Relation(relation)) = decode(&bytes) else {
            panic!("not a relation: {:?}", decode(&bytes));
        };
        assert_eq!(
            (relation.schema.as_str(), relation.table.as_str()),
            ("public", "plans")
        );
        assert!(relation.columns[0].key && !relation.columns[1].key);
        assert_eq!(relation.columns[0].type_modifier, -1);
        assert_eq!(relation.columns[1].type_modifier, (12 << 16 | 2) + 4);
    }

    #[test]
    fn a_relation_naming_a_column_twice_is_refused() {
        let column = |w: Writer| w.u8(0).string("fee").u32(25).u32(u32::MAX);
        let bytes = column(column(
            Writer::default()
                .u8(b'R')
                .u32(1)
                .string("public")
                .string("plans")
                .u8(b'd')
                .u16(2),
        ))
        .0;
        assert!(matches!(
            decode(&bytes),
            Err(PgoutputError::DuplicateColumn { column, .. }) if column == "fee"
        ));
    }

    #[test]
    fn update_with_old_key_and_delete_with_full_row() {
        let update = Writer::default()
            .u8(b'U')
            .u32(7)
            .u8(b'K')
            .u16(1)
            .text("a")
            .u8(b'N')
            .u16(2)
            .text("b")
            .u8(b'u')
            .0;
        assert_eq!(
            decode(&update),
            Ok(Message::Update {
                relation: 7,
                old: Some(vec![Cell::Text("a".into())]),
                new: vec![Cell::Text("b".into()), Cell::Unchanged],
            })
        );
        let delete = Writer::default()
            .u8(b'D')
            .u32(7)
            .u8(b'O')
            .u16(2)
            .u8(b'n')
            .text("x")
            .0;
        assert_eq!(
            decode(&delete),
            Ok(Message::Delete {
                relation: 7,
                old: vec![Cell::Null, Cell::Text("x".into())],
            })
        );
    }

    #[test]
    fn damaged_messages_are_errors_not_panics() {
        let insert = Writer::default()
            .u8(b'I')
            .u32(7)
            .u8(b'N')
            .u16(1)
            .text("abc")
            .0;
        for cut in 0..insert.len() {
            assert!(decode(&insert[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode(b"Z"), Err(PgoutputError::UnknownType('Z')));
        let wrong_marker = Writer::default().u8(b'D').u32(7).u8(b'N').u16(0).0;
        assert!(matches!(
            decode(&wrong_marker),
            Err(PgoutputError::UnexpectedMarker { .. })
        ));
        // A huge declared column count with no bytes behind it must not allocate it.
        let greedy = Writer::default().u8(b'I').u32(7).u8(b'N').u16(u16::MAX).0;
        assert!(decode(&greedy).is_err());
    }
}
