//! Named reasons for refusing a record. Every rejected record carries one,
//! plus a sentence that says exactly what was wrong with it.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    InvalidUtf8,
    MalformedJson,
    TooDeeplyNested,
    RecordTooLarge,
    NotAnObject,
    UnknownFormat,
    DuplicateField,
    MissingField,
    WrongType,
    NegativeValue,
    NotAnInteger,
    ValueTooLarge,
    InvalidAmount,
    UnparsableTime,
    ImpossibleTime,
    TimeInFuture,
    LateBeyondDedupWindow,
    InvalidMsisdn,
    EmptyType,
    FieldTooLong,
    UnknownEventType,
    RatingFailed,
    /// The catalogue has no rate for the record (its destination, plan, band).
    NoRate,
    /// JSON, but not a Debezium change event (no `op`, no `after` for an insert, …).
    NotAChangeEvent,
    /// A change event without its WAL position (`source.lsn`, `__lsn`): it cannot be ordered.
    ChangeWithoutPosition,
    /// A change event column that is not what the mapping says it is.
    InvalidChangeValue,
    /// Bytes that are not a BER charging record (a length past the data, a
    /// field of the wrong structure).
    MalformedBer,
    /// A BER record of a type cdrflow does not read.
    UnknownRecordType,
    /// A local time without its UTC offset where no zone is configured.
    TimeWithoutOffset,
}

impl RejectReason {
    pub const ALL: [RejectReason; 29] = [
        RejectReason::InvalidUtf8,
        RejectReason::MalformedJson,
        RejectReason::TooDeeplyNested,
        RejectReason::RecordTooLarge,
        RejectReason::NotAnObject,
        RejectReason::UnknownFormat,
        RejectReason::DuplicateField,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::NegativeValue,
        RejectReason::NotAnInteger,
        RejectReason::ValueTooLarge,
        RejectReason::InvalidAmount,
        RejectReason::UnparsableTime,
        RejectReason::ImpossibleTime,
        RejectReason::TimeInFuture,
        RejectReason::LateBeyondDedupWindow,
        RejectReason::InvalidMsisdn,
        RejectReason::EmptyType,
        RejectReason::FieldTooLong,
        RejectReason::UnknownEventType,
        RejectReason::RatingFailed,
        RejectReason::NoRate,
        RejectReason::NotAChangeEvent,
        RejectReason::ChangeWithoutPosition,
        RejectReason::InvalidChangeValue,
        RejectReason::MalformedBer,
        RejectReason::UnknownRecordType,
        RejectReason::TimeWithoutOffset,
    ];

    /// The stable snake_case name stored with the record and used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::TooDeeplyNested => "too_deeply_nested",
            RejectReason::RecordTooLarge => "record_too_large",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::UnknownFormat => "unknown_format",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::NegativeValue => "negative_value",
            RejectReason::NotAnInteger => "not_an_integer",
            RejectReason::ValueTooLarge => "value_too_large",
            RejectReason::InvalidAmount => "invalid_amount",
            RejectReason::UnparsableTime => "unparsable_time",
            RejectReason::ImpossibleTime => "impossible_time",
            RejectReason::TimeInFuture => "time_in_future",
            RejectReason::LateBeyondDedupWindow => "late_beyond_dedup_window",
            RejectReason::InvalidMsisdn => "invalid_msisdn",
            RejectReason::EmptyType => "empty_type",
            RejectReason::FieldTooLong => "field_too_long",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::RatingFailed => "rating_failed",
            RejectReason::NoRate => "no_rate",
            RejectReason::NotAChangeEvent => "not_a_change_event",
            RejectReason::ChangeWithoutPosition => "change_without_position",
            RejectReason::InvalidChangeValue => "invalid_change_value",
            RejectReason::MalformedBer => "malformed_ber",
            RejectReason::UnknownRecordType => "unknown_record_type",
            RejectReason::TimeWithoutOffset => "time_without_offset",
        }
    }

    pub fn parse(text: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason and the human sentence that goes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}
