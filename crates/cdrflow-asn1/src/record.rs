//! The charging records mediation reads, from TS 32.298's modules
//! (`CSChargingDataTypes`, `GPRSChargingDataTypes`; sigscale/cgf's
//! `asn_src/`): MSC mobile-originated and -terminated calls and SMS, and
//! the PGW's data sessions.
//!
//! Each record type is a table from context tag to the [`Field`] it holds
//! (the modules are IMPLICIT TAGS, so the tag is all there is to go by); one
//! walk fills a [`ChargingRecord`] from any of them. A tag the table does
//! not name is kept, not refused: the PGW record is extensible and
//! switches add private tags. A new record type or vendor variant is a new
//! table.

use crate::digits::{self, Digits, Number};
use crate::time::{self, Timestamp};
use crate::tlv::{self, Class, Tag, Tlv};
use crate::Asn1Error;

/// Which record: the CHOICE alternative's tag, not its `recordType`
/// value (the PGW record is `[79]` with `recordType` 85).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    MoCall,
    MtCall,
    MoSms,
    MtSms,
    Pgw,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::MoCall => "mo_call",
            RecordKind::MtCall => "mt_call",
            RecordKind::MoSms => "mo_sms",
            RecordKind::MtSms => "mt_sms",
            RecordKind::Pgw => "pgw",
        }
    }

    fn of(tag: Tag) -> Option<RecordKind> {
        if tag.class != Class::Context || !tag.constructed {
            return None;
        }
        Some(match tag.number {
            0 => RecordKind::MoCall,
            1 => RecordKind::MtCall,
            6 => RecordKind::MoSms,
            7 => RecordKind::MtSms,
            79 => RecordKind::Pgw,
            _ => return None,
        })
    }

    /// Its context tag as an encoder writes it (CHOICE alternatives are
    /// constructed).
    pub fn tag_number(self) -> u32 {
        match self {
            RecordKind::MoCall => 0,
            RecordKind::MtCall => 1,
            RecordKind::MoSms => 6,
            RecordKind::MtSms => 7,
            RecordKind::Pgw => 79,
        }
    }

    fn fields(self) -> &'static FieldTable {
        match self {
            RecordKind::MoCall => &MO_CALL,
            RecordKind::MtCall => &MT_CALL,
            RecordKind::MoSms => &MO_SMS,
            RecordKind::MtSms => &MT_SMS,
            RecordKind::Pgw => &PGW,
        }
    }
}

/// What a context tag of a record holds, and how it is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Not one mediation reads: kept in [`ChargingRecord::unknown`].
    Other,
    /// Known and not needed (`recordType`, IMEI, diagnostics…): skipped.
    Ignored,
    ServedImsi,
    /// `ISDN-AddressString`.
    ServedMsisdn,
    /// `BCDDirectoryNumber`: the MT call's served number is a CalledNumber.
    ServedMsisdnBcd,
    /// The other end: `BCDDirectoryNumber` (calls).
    OtherParty,
    /// The other end as an SMS address (`SmsTpDestinationNumber`).
    OtherPartySms,
    RecordingEntity,
    /// `IA5String` (the PGW's `nodeID`).
    NodeId,
    /// `LocationAreaAndCell`: area code, cell id, MCC-MNC.
    Location,
    /// 29.274's User Location Info, kept as its octets.
    UserLocation,
    /// When the chargeable part began (answer, delivery, start).
    Start,
    /// A start to use when there is no [`Field::Start`] (seizure, record
    /// opening).
    StartFallback,
    End,
    Duration,
    Cause,
    CallReference,
    ChargingId,
    SequenceNumber,
    PartialRecordType,
    /// `listOfTrafficVolumes`: a SEQUENCE OF ChangeOfCharCondition.
    TrafficVolumes,
}

/// Fields by context tag number; tags past the table are [`Field::Other`].
pub struct FieldTable([Field; 72]);

impl FieldTable {
    const fn new(entries: &[(u32, Field)]) -> FieldTable {
        let mut table = [Field::Other; 72];
        let mut i = 0;
        while i < entries.len() {
            table[entries[i].0 as usize] = entries[i].1;
            i += 1;
        }
        FieldTable(table)
    }

    pub fn get(&self, tag: Tag) -> Field {
        match tag.class {
            Class::Context => self
                .0
                .get(tag.number as usize)
                .copied()
                .unwrap_or(Field::Other),
            _ => Field::Other,
        }
    }
}

use Field::*;

/// `MOCallRecord`.
static MO_CALL: FieldTable = FieldTable::new(&[
    (0, Ignored),
    (1, ServedImsi),
    (2, Ignored),
    (3, ServedMsisdn),
    (4, Ignored),
    (5, OtherParty),
    (9, RecordingEntity),
    (12, Location),
    (14, Ignored),
    (22, StartFallback),
    (23, Start),
    (24, End),
    (25, Duration),
    (30, Cause),
    (31, Ignored),
    (32, CallReference),
    (33, SequenceNumber),
    (39, Ignored),
    (69, PartialRecordType),
]);

/// `MTCallRecord`: the calling number is the other end.
static MT_CALL: FieldTable = FieldTable::new(&[
    (0, Ignored),
    (1, ServedImsi),
    (2, Ignored),
    (3, ServedMsisdnBcd),
    (4, OtherParty),
    (6, RecordingEntity),
    (9, Location),
    (11, Ignored),
    (19, StartFallback),
    (20, Start),
    (21, End),
    (22, Duration),
    (27, Cause),
    (28, Ignored),
    (29, CallReference),
    (30, SequenceNumber),
    (34, Ignored),
    (54, PartialRecordType),
]);

/// `MOSMSRecord`.
static MO_SMS: FieldTable = FieldTable::new(&[
    (0, Ignored),
    (1, ServedImsi),
    (2, Ignored),
    (3, ServedMsisdn),
    (5, Ignored),
    (6, RecordingEntity),
    (7, Location),
    (9, Start),
    (10, Ignored),
    (12, OtherPartySms),
]);

/// `MTSMSRecord`: its tags are one further than the MO record's.
static MT_SMS: FieldTable = FieldTable::new(&[
    (0, Ignored),
    (1, Ignored),
    (2, ServedImsi),
    (3, Ignored),
    (4, ServedMsisdn),
    (6, RecordingEntity),
    (7, Location),
    (8, Start),
    (9, Ignored),
]);

/// `PGWRecord`.
static PGW: FieldTable = FieldTable::new(&[
    (0, Ignored),
    (3, ServedImsi),
    (4, Ignored),
    (5, ChargingId),
    (6, Ignored),
    (7, Ignored),
    (12, TrafficVolumes),
    (13, StartFallback),
    (14, Duration),
    (15, Cause),
    (16, Ignored),
    (17, SequenceNumber),
    (18, NodeId),
    (20, Ignored),
    (22, ServedMsisdn),
    (29, Ignored),
    (30, Ignored),
    (31, Ignored),
    (32, UserLocation),
    (38, Start),
    (39, End),
]);

/// `LocationAreaAndCell`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub area_code: u16,
    pub cell_id: u16,
    /// MCC and MNC as 24.008 packs them (three octets), when present.
    pub mcc_mnc: Option<[u8; 3]>,
}

/// The fields of one record mediation needs, borrowed from its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargingRecord<'a> {
    pub kind: RecordKind,
    pub served_imsi: Option<Digits>,
    pub served_msisdn: Option<Number>,
    pub other_party: Option<Number>,
    pub recording_entity: Option<Number>,
    pub node_id: Option<&'a str>,
    pub location: Option<Location>,
    pub user_location: Option<&'a [u8]>,
    /// Answer (calls), origination or delivery (SMS), start of usage (PGW);
    /// else seizure or the record's opening.
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub duration_sec: Option<u64>,
    /// `causeForTerm` (calls: 0 normal, 1 and 2 partial…) or
    /// `causeForRecClosing` (PGW: 0 normal, 16 volume limit, 17 time limit…).
    pub cause: Option<u64>,
    pub call_reference: Option<&'a [u8]>,
    pub charging_id: Option<u64>,
    pub sequence_number: Option<u64>,
    pub partial_record_type: Option<u64>,
    /// Sums over `listOfTrafficVolumes`, in octets.
    pub uplink_bytes: u64,
    pub downlink_bytes: u64,
    pub volume_containers: u32,
    /// Tags the record type's table does not name, with their contents.
    pub unknown: Vec<(Tag, &'a [u8])>,
}

impl<'a> ChargingRecord<'a> {
    fn empty(kind: RecordKind) -> ChargingRecord<'a> {
        ChargingRecord {
            kind,
            served_imsi: None,
            served_msisdn: None,
            other_party: None,
            recording_entity: None,
            node_id: None,
            location: None,
            user_location: None,
            start: None,
            end: None,
            duration_sec: None,
            cause: None,
            call_reference: None,
            charging_id: None,
            sequence_number: None,
            partial_record_type: None,
            uplink_bytes: 0,
            downlink_bytes: 0,
            volume_containers: 0,
            unknown: Vec::new(),
        }
    }
}

/// Decodes the record at the start of `input`; returns it and the octets
/// it took.
pub fn decode_record(input: &[u8]) -> Result<(ChargingRecord<'_>, usize), Asn1Error> {
    let outer = tlv::read(input)?;
    let kind = RecordKind::of(outer.tag).ok_or(Asn1Error::UnknownRecord(outer.tag))?;
    let table = kind.fields();
    let mut record = ChargingRecord::empty(kind);
    let mut fallback_start = None;
    for child in outer.children() {
        let child = child?;
        let in_field = |e: Asn1Error| Asn1Error::InField {
            tag: child.tag,
            error: Box::new(e),
        };
        read_field(
            &mut record,
            &mut fallback_start,
            table.get(child.tag),
            child,
        )
        .map_err(in_field)?;
    }
    if record.start.is_none() {
        record.start = fallback_start;
    }
    Ok((record, outer.encoded_len))
}

/// Decodes a message holding exactly one record (a Kafka value).
pub fn decode_message(input: &[u8]) -> Result<ChargingRecord<'_>, Asn1Error> {
    let (record, used) = decode_record(input)?;
    match input.len() - used {
        0 => Ok(record),
        extra => Err(Asn1Error::TrailingBytes(extra)),
    }
}

fn read_field<'a>(
    record: &mut ChargingRecord<'a>,
    fallback_start: &mut Option<Timestamp>,
    field: Field,
    child: Tlv<'a>,
) -> Result<(), Asn1Error> {
    let value = child.value;
    match field {
        Other => record.unknown.push((child.tag, value)),
        Ignored => {}
        ServedImsi => record.served_imsi = Some(digits::tbcd(value)?),
        ServedMsisdn => record.served_msisdn = Some(digits::address_string(value)?),
        ServedMsisdnBcd => record.served_msisdn = Some(digits::bcd_directory_number(value)?),
        OtherParty => record.other_party = Some(digits::bcd_directory_number(value)?),
        OtherPartySms => record.other_party = Some(digits::sms_address(value)?),
        RecordingEntity => record.recording_entity = Some(digits::address_string(value)?),
        NodeId => {
            let text = std::str::from_utf8(value)
                .ok()
                .filter(|t| t.is_ascii())
                .ok_or(Asn1Error::BadText)?;
            record.node_id = Some(text);
        }
        Location => record.location = Some(location(&child)?),
        UserLocation => record.user_location = Some(value),
        Start => record.start = Some(time::timestamp(value)?),
        StartFallback => *fallback_start = Some(time::timestamp(value)?),
        End => record.end = Some(time::timestamp(value)?),
        Duration => record.duration_sec = Some(child.unsigned()?),
        Cause => record.cause = Some(child.unsigned()?),
        CallReference => record.call_reference = Some(value),
        ChargingId => record.charging_id = Some(child.unsigned()?),
        SequenceNumber => record.sequence_number = Some(child.unsigned()?),
        PartialRecordType => record.partial_record_type = Some(child.unsigned()?),
        TrafficVolumes => {
            for container in child.children() {
                let container = container?;
                if !container.tag.is(Tag::SEQUENCE) {
                    return Err(Asn1Error::UnexpectedTag(container.tag));
                }
                record.volume_containers += 1;
                for part in container.children() {
                    let part = part?;
                    let octets = match part.tag.number {
                        3 if part.tag.class == Class::Context => &mut record.uplink_bytes,
                        4 if part.tag.class == Class::Context => &mut record.downlink_bytes,
                        _ => continue,
                    };
                    *octets = octets
                        .checked_add(part.unsigned()?)
                        .ok_or(Asn1Error::BadInteger(part.tag))?;
                }
            }
        }
    }
    Ok(())
}

fn location(child: &Tlv<'_>) -> Result<Location, Asn1Error> {
    let (mut area, mut cell, mut mcc_mnc) = (None, None, None);
    for part in child.children() {
        let part = part?;
        let two = |v: &[u8]| match v {
            [a, b] => Ok(u16::from_be_bytes([*a, *b])),
            _ => Err(Asn1Error::UnexpectedTag(part.tag)),
        };
        match part.tag.number {
            0 => area = Some(two(part.value)?),
            1 => cell = Some(two(part.value)?),
            2 => mcc_mnc = part.value.try_into().ok(),
            _ => {}
        }
    }
    match (area, cell) {
        (Some(area_code), Some(cell_id)) => Ok(Location {
            area_code,
            cell_id,
            mcc_mnc,
        }),
        _ => Err(Asn1Error::Missing("a location's area code and cell id")),
    }
}
