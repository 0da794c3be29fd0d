//! 3GPP TS 32.298 charging records in ASN.1 BER (`--format ber`): MSC
//! calls and SMS, PGW data sessions, one record per frame
//! ([`BerRecords`](crate::framing::BerRecords) in files, one per message
//! on Kafka). The fields come from [`cdrflow_asn1`]; what they mean for a
//! country comes from its file (`--country-file`): numbers to E.164 by its
//! numbering plan at the record's time (without one, by the default
//! country code).
//!
//! Each part of a partial call or session is a record of its own here —
//! durations and volumes add up the same in the summaries; joining the
//! parts into one record is [`crate::stitching`]'s (not yet on this path).
//! A timestamp without its UTC offset is read in the country's zone, and
//! refused without a country file.

use std::borrow::Cow;

use cdrflow_asn1::digits::{NatureOfAddress, Number};
use cdrflow_asn1::{decode_message, Asn1Error, ChargingRecord, RecordKind};

use super::{DecodeOptions, Decoder};
use crate::framing::{BerRecords, Framing, Ts32297};
use crate::model::{Cdr, Direction, IdSpace, Kind, SourcePosition};
use crate::normalize::{normalize_msisdn, EpochMillis, Msisdn};
use crate::reject::{RejectReason, Rejection};

/// The BER format in one framing: records one after another (`ber`), or
/// inside TS 32.297 CDR files (`ber-file`). One decoder: the frames differ,
/// not the records.
pub struct Ber {
    name: &'static str,
    aliases: &'static [&'static str],
    framing: &'static dyn Framing,
}

pub const BER: Ber = Ber {
    name: "ber",
    aliases: &["3gpp-ber", "ts32298"],
    framing: &BerRecords,
};

pub const BER_FILE: Ber = Ber {
    name: "ber-file",
    aliases: &["ts32297"],
    framing: &Ts32297,
};

impl Decoder for Ber {
    fn name(&self) -> &'static str {
        self.name
    }

    fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }

    fn framing(&self) -> &'static dyn Framing {
        self.framing
    }

    fn decode<'a>(
        &self,
        payload: &'a [u8],
        position: SourcePosition,
        options: &DecodeOptions,
    ) -> Result<Cdr<'a>, Rejection> {
        let record = decode_message(payload).map_err(|e| {
            let reason = match e.cause() {
                Asn1Error::UnknownRecord(_) => RejectReason::UnknownRecordType,
                Asn1Error::BadTimestamp(_) => RejectReason::ImpossibleTime,
                Asn1Error::BadDigits(_) => RejectReason::InvalidMsisdn,
                _ => RejectReason::MalformedBer,
            };
            Rejection::new(reason, e.to_string())
        })?;
        cdr(&record, position, options)
    }
}

fn cdr<'a>(
    record: &ChargingRecord<'_>,
    position: SourcePosition,
    options: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    let start = record.start.ok_or_else(|| {
        Rejection::new(
            RejectReason::MissingField,
            "the record has no start, answer, seizure or opening time",
        )
    })?;
    // A 6-octet TimeStamp has no offset: the country's zone gives it.
    let start_time = start
        .utc_millis()
        .or_else(|| options.country.and_then(|c| c.instant_of_local(start.local_millis)))
        .ok_or_else(|| {
            Rejection::new(
                RejectReason::TimeWithoutOffset,
                "the record's start time has no UTC offset (6-octet TimeStamp) and no --country-file gives its zone",
            )
        })?;
    let served = record.served_msisdn.ok_or_else(|| {
        Rejection::new(
            RejectReason::MissingField,
            "the record has no served MSISDN",
        )
    })?;
    let served_msisdn = number(&served, start_time, options).map_err(|why| {
        Rejection::new(
            RejectReason::InvalidMsisdn,
            format!("served MSISDN `{}`: {why}", served.digits.as_str()),
        )
    })?;
    // The other end is kept as written when it is no number of a plan
    // (short codes, alphanumeric senders): it is not the subscriber.
    let other_party = record
        .other_party
        .filter(|n| !n.digits.is_empty())
        .map(|n| {
            Cow::Owned(match number(&n, start_time, options) {
                Ok(e164) => e164.to_string(),
                Err(_) => n.digits.as_str().to_string(),
            })
        });
    let (kind, direction) = match record.kind {
        RecordKind::MoCall => (Kind::Voice, Direction::Outgoing),
        RecordKind::MtCall => (Kind::Voice, Direction::Incoming),
        RecordKind::MoSms => (Kind::Sms, Direction::Outgoing),
        RecordKind::MtSms => (Kind::Sms, Direction::Incoming),
        RecordKind::Pgw => (Kind::Data, Direction::Unknown),
    };
    Ok(Cdr {
        record_id: identity(record).map(Cow::Owned),
        id_space: IdSpace::ChargingRecords,
        kind,
        served_msisdn,
        other_party,
        direction,
        service_type: Cow::Borrowed(record.kind.as_str()),
        start_time,
        duration_sec: record.duration_sec.unwrap_or(0),
        uplink_bytes: record.uplink_bytes,
        downlink_bytes: record.downlink_bytes,
        amount: None,
        region: None,
        cell_id: record
            .location
            .map(|l| Cow::Owned(format!("{}-{}", l.area_code, l.cell_id))),
        radio_technology: None,
        position,
    })
}

/// A number in E.164: by the country's plan when there is one, else by
/// the default country code; `+` for what the record marks international.
fn number(n: &Number, at: EpochMillis, options: &DecodeOptions) -> Result<Msisdn, String> {
    let digits = n.digits.as_str();
    let mut text = String::with_capacity(digits.len() + 1);
    if n.nature == NatureOfAddress::International {
        text.push('+');
    }
    text.push_str(digits);
    match options.country {
        Some(country) => country
            .numbering
            .normalize(&text, at)
            .map(|n| n.msisdn)
            .map_err(|e| e.to_string()),
        None => normalize_msisdn(&text, options.default_country_code).map_err(str::to_string),
    }
}

/// What the switch identifies the record by, so a record sent twice is
/// one: the recording entity or node, the call reference or charging id,
/// the part's sequence number. SMS records carry none (their content is
/// their identity).
fn identity(record: &ChargingRecord<'_>) -> Option<String> {
    use std::fmt::Write;
    let mut id = String::new();
    match (record.kind, record.call_reference, record.charging_id) {
        (RecordKind::MoCall | RecordKind::MtCall, Some(reference), _) => {
            let entity = record.recording_entity.map(|e| e.digits);
            write!(
                id,
                "{}:{}:",
                record.kind.as_str(),
                entity.as_ref().map_or("", |d| d.as_str())
            )
            .ok()?;
            for octet in reference {
                write!(id, "{octet:02x}").ok()?;
            }
        }
        (RecordKind::Pgw, _, Some(charging_id)) => {
            write!(id, "pgw:{}:{charging_id}", record.node_id.unwrap_or("")).ok()?;
        }
        _ => return None,
    }
    if let Some(sequence) = record.sequence_number {
        write!(id, ":{sequence}").ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::country::Country;
    use crate::normalize::{parse_timestamp, CountryCode};

    const MO_CALL: &[u8] = include_bytes!("../../../../fuzz/corpus/decode_ber/mo_call.ber");
    const PGW: &[u8] = include_bytes!("../../../../fuzz/corpus/decode_ber/pgw.ber");

    fn france() -> DecodeOptions {
        let file = include_str!("../../../../config/countries/fr.toml");
        DecodeOptions {
            country: Some(Box::leak(Box::new(Country::parse(file).unwrap()))),
            ..DecodeOptions::default()
        }
    }

    #[test]
    fn an_mo_call_is_a_voice_record_in_e164() {
        let position = SourcePosition::Line {
            line: 1,
            byte_offset: 0,
        };
        let cdr = BER.decode(MO_CALL, position, &france()).unwrap();
        assert_eq!(
            (cdr.kind, cdr.direction),
            (Kind::Voice, Direction::Outgoing)
        );
        assert_eq!(cdr.served_msisdn.to_string(), "+33612345678");
        // Called as a national number (0612345678): France's plan.
        assert_eq!(cdr.other_party.as_deref(), Some("+33612345678"));
        assert_eq!(
            cdr.start_time,
            parse_timestamp("2024-03-05T13:30:00Z").unwrap()
        );
        assert_eq!(cdr.duration_sec, 61);
        assert_eq!(cdr.cell_id.as_deref(), Some("42-500"));
        assert_eq!(cdr.record_id.as_deref(), Some("mo_call::00001234:2"));
        // Without a country file the default country code reads it.
        let morocco = DecodeOptions {
            default_country_code: CountryCode::parse("212").unwrap(),
            ..DecodeOptions::default()
        };
        let cdr = BER.decode(MO_CALL, position, &morocco).unwrap();
        assert_eq!(cdr.other_party.as_deref(), Some("+212612345678"));
    }

    #[test]
    fn a_pgw_record_is_a_data_session_with_its_volumes() {
        let cdr = BER
            .decode(
                PGW,
                SourcePosition::Kafka {
                    partition: 0,
                    offset: 9,
                },
                &france(),
            )
            .unwrap();
        assert_eq!(cdr.kind, Kind::Data);
        assert_eq!(
            (cdr.uplink_bytes, cdr.downlink_bytes),
            (1000 + 1, 10_000 + 8_388_608)
        );
        assert_eq!(cdr.record_id.as_deref(), Some("pgw:PGW01:4294967295"));
        assert_eq!(
            cdr.start_time,
            parse_timestamp("2024-03-05T09:00:00Z").unwrap()
        );
    }

    #[test]
    fn what_is_not_a_record_is_refused_with_a_named_reason() {
        let position = SourcePosition::Line {
            line: 1,
            byte_offset: 0,
        };
        let reason = |bytes: &[u8]| BER.decode(bytes, position, &france()).unwrap_err().reason;
        assert_eq!(
            reason(&MO_CALL[..MO_CALL.len() - 3]),
            RejectReason::MalformedBer
        );
        assert_eq!(
            reason(&[0xA2, 0x03, 0x80, 0x01, 0x02]),
            RejectReason::UnknownRecordType
        );
        // An answer time of six octets, 14:30 on 5 March 2024 with no
        // offset: Paris's (+01:00) with France's file, refused without one.
        let local = [
            0xA0, 0x11, 0x83, 0x07, 0x91, 0x33, 0x16, 0x32, 0x54, 0x76, 0xF8, 0x97, 0x06, 0x24,
            0x03, 0x05, 0x14, 0x30, 0x00,
        ];
        let read = BER.decode(&local, position, &france()).unwrap();
        assert_eq!(
            read.start_time,
            parse_timestamp("2024-03-05T13:30:00Z").unwrap()
        );
        let without = BER
            .decode(&local, position, &DecodeOptions::default())
            .unwrap_err();
        assert_eq!(without.reason, RejectReason::TimeWithoutOffset);
        // No served number.
        let nobody = [
            0xA0, 0x0B, 0x97, 0x09, 0x24, 0x03, 0x05, 0x14, 0x30, 0x00, b'+', 0x01, 0x00,
        ];
        assert_eq!(reason(&nobody), RejectReason::MissingField);
    }
}
