//! The unified CDR model: one shape for every source format and country.

use std::borrow::Cow;
use std::fmt;

use crate::normalize::{EpochMillis, Msisdn};

/// The five kinds of usage cdrflow understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Data,
    Voice,
    Sms,
    Recharge,
    Activation,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Data,
        Kind::Voice,
        Kind::Sms,
        Kind::Recharge,
        Kind::Activation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Voice => "voice",
            Kind::Sms => "sms",
            Kind::Recharge => "recharge",
            Kind::Activation => "activation",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a call or message went, seen from the served subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Outgoing,
    Incoming,
    Unknown,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
            Direction::Unknown => "unknown",
        }
    }
}

/// Where a record came from, precise enough to find it again and to derive
/// a stable identity for records that carry no id of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourcePosition {
    /// A line of a file (or stdin): 1-based line number and the byte offset where it starts.
    Line { line: u64, byte_offset: u64 },
    /// A Kafka message.
    Kafka { partition: i32, offset: i64 },
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourcePosition::Line { line, byte_offset } => {
                write!(f, "line {line} (byte {byte_offset})")
            }
            SourcePosition::Kafka { partition, offset } => {
                write!(f, "partition {partition} offset {offset}")
            }
        }
    }
}

/// Money in micro-units of a currency.
/// Which numbering a record id belongs to. Seed 000's data and voice feeds
/// and seed 003's event feed each number their records independently, so
/// `cdr_voice` 1001 and `telecom_events` 1001 are two different records —
/// whether they arrive from files or from Kafka topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdSpace {
    CdrData,
    CdrVoice,
    TelecomEvents,
    /// 3GPP charging records: ids are the switch's (entity, reference, part).
    ChargingRecords,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount {
    pub micros: i64,
}

/// One normalised, validated call detail record. Strings borrow from the
/// raw payload where they can, so decoding a batch allocates almost nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cdr<'a> {
    /// The id the source gave (`cdr_id`, `event_id`), if any.
    pub record_id: Option<Cow<'a, str>>,
    /// The feed that numbered `record_id`: ids are unique within one feed only.
    pub id_space: IdSpace,
    pub kind: Kind,
    pub served_msisdn: Msisdn,
    pub other_party: Option<Cow<'a, str>>,
    pub direction: Direction,
    /// `data_type`, `call_type` or `event_subtype`: trimmed and lower-cased.
    pub service_type: Cow<'a, str>,
    pub start_time: EpochMillis,
    pub duration_sec: u64,
    pub uplink_bytes: u64,
    pub downlink_bytes: u64,
    /// Recharge amount in the tariff's recharge currency.
    pub amount: Option<Amount>,
    pub region: Option<Cow<'a, str>>,
    pub cell_id: Option<Cow<'a, str>>,
    pub radio_technology: Option<Cow<'a, str>>,
    pub position: SourcePosition,
}
