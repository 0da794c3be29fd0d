//! Records written octet by octet from 32.298's tag tables (the test's own
//! writer below frames them; nothing here comes from the decoder), read back.

use cdrflow_core::normalize::parse_timestamp;

use crate::digits::NatureOfAddress;
use crate::file::{CdrFile, HeaderTime};
use crate::record::{decode_message, decode_record, Location, RecordKind};
use crate::tlv::{Class, Tag};
use crate::Asn1Error;

/// One definite-length value: identifier octets as given, then the length.
fn t(identifier: &[u8], contents: &[u8]) -> Vec<u8> {
    let mut out = identifier.to_vec();
    match contents.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(contents);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn utc(text: &str) -> Option<i64> {
    Some(parse_timestamp(text).unwrap())
}

/// 2024-03-05 hh:mm:ss at +01:00.
fn at(hh: u8, mm: u8, ss: u8) -> Vec<u8> {
    let bcd = |v: u8| (v / 10) << 4 | (v % 10);
    vec![
        0x24,
        0x03,
        0x05,
        bcd(hh),
        bcd(mm),
        bcd(ss),
        b'+',
        0x01,
        0x00,
    ]
}

fn mo_call_fields() -> Vec<u8> {
    cat(&[
        t(&[0x80], &[0x00]),
        t(&[0x81], &[0x02, 0x08, 0x11, 0x32, 0x54, 0x76, 0x98, 0xF0]),
        t(&[0x83], &[0x91, 0x33, 0x16, 0x32, 0x54, 0x76, 0xF8]),
        t(&[0x85], &[0xA1, 0x60, 0x21, 0x43, 0x65, 0x87]),
        t(&[0x89], &[0x91, 0x33, 0x06, 0xF0]),
        t(
            &[0xAC],
            &cat(&[t(&[0x80], &[0x00, 0x2A]), t(&[0x81], &[0x01, 0xF4])]),
        ),
        t(&[0x96], &at(14, 29, 50)),
        t(&[0x97], &at(14, 30, 0)),
        t(&[0x98], &at(14, 31, 1)),
        t(&[0x99], &[0x3D]),
        t(&[0x9E], &[0x01]),
        // diagnostics, a CHOICE: constructed even in an IMPLICIT module.
        t(&[0xBF, 0x1F], &t(&[0x80], &[0x10])),
        t(&[0x9F, 0x20], &[0x00, 0x00, 0x12, 0x34]),
        t(&[0x9F, 0x21], &[0x02]),
        t(&[0x9F, 0x45], &[0x00]),
        // A vendor's tag [258] the table does not name.
        t(&[0x9F, 0x82, 0x02], &[0xAB, 0xCD]),
    ])
}

#[test]
fn an_mo_call_record_reads_as_written() {
    let bytes = t(&[0xA0], &mo_call_fields());
    let record = decode_message(&bytes).unwrap();
    assert_eq!(record.kind, RecordKind::MoCall);
    assert_eq!(record.served_imsi.unwrap().as_str(), "208011234567890");
    let msisdn = record.served_msisdn.unwrap();
    assert_eq!(
        (msisdn.nature, msisdn.digits.as_str()),
        (NatureOfAddress::International, "33612345678")
    );
    let called = record.other_party.unwrap();
    assert_eq!(
        (called.nature, called.digits.as_str()),
        (NatureOfAddress::National, "0612345678")
    );
    assert_eq!(record.recording_entity.unwrap().digits.as_str(), "33600");
    assert_eq!(
        record.location,
        Some(Location {
            area_code: 42,
            cell_id: 500,
            mcc_mnc: None
        })
    );
    // The answer time, not the seizure, starts the chargeable part.
    assert_eq!(
        record.start.unwrap().utc_millis(),
        utc("2024-03-05T13:30:00Z")
    );
    assert_eq!(
        record.end.unwrap().utc_millis(),
        utc("2024-03-05T13:31:01Z")
    );
    assert_eq!(record.duration_sec, Some(61));
    assert_eq!(record.cause, Some(1));
    assert_eq!(record.call_reference, Some(&[0x00, 0x00, 0x12, 0x34][..]));
    assert_eq!(record.sequence_number, Some(2));
    assert_eq!(record.partial_record_type, Some(0));
    assert_eq!(
        record.unknown,
        [(
            Tag {
                class: Class::Context,
                constructed: false,
                number: 258
            },
            &[0xAB, 0xCD][..]
        )]
    );
}

#[test]
fn an_indefinite_length_record_reads_the_same() {
    let definite = t(&[0xA0], &mo_call_fields());
    let mut indefinite = vec![0xA0, 0x80];
    indefinite.extend(mo_call_fields());
    indefinite.extend([0, 0]);
    assert_eq!(decode_message(&indefinite), decode_message(&definite));
    let (_, used) = decode_record(&[indefinite.as_slice(), &[0xA0, 0x00]].concat()).unwrap();
    assert_eq!(
        used,
        indefinite.len(),
        "a record ends at its own end-of-contents"
    );
}

#[test]
fn an_mt_call_serves_a_bcd_number_and_the_caller_is_the_other_end() {
    let bytes = t(
        &[0xA1],
        &cat(&[
            t(&[0x80], &[0x01]),
            t(&[0x83], &[0x91, 0x12, 0x62, 0x21, 0x43, 0x65, 0x87]),
            t(&[0x84], &[0x21, 0x83, 0x60, 0x21, 0x43, 0x65, 0x87]),
            t(&[0x93], &at(9, 0, 0)),
            t(&[0x96], &[0x00, 0xB4]),
            t(&[0x9B], &[0x00]),
        ]),
    );
    let record = decode_message(&bytes).unwrap();
    assert_eq!(record.kind, RecordKind::MtCall);
    assert_eq!(
        record.served_msisdn.unwrap().digits.as_str(),
        "212612345678"
    );
    assert_eq!(record.other_party.unwrap().digits.as_str(), "0612345678");
    // No answer time: the seizure starts it.
    assert_eq!(
        record.start.unwrap().utc_millis(),
        utc("2024-03-05T08:00:00Z")
    );
    assert_eq!((record.duration_sec, record.cause), (Some(180), Some(0)));
}

#[test]
fn sms_records_of_both_directions() {
    let mo = t(
        &[0xA6],
        &cat(&[
            t(&[0x80], &[0x06]),
            t(&[0x83], &[0x91, 0x33, 0x16, 0x32, 0x54, 0x76, 0xF8]),
            t(&[0x89], &at(12, 0, 5)),
            t(&[0x8C], &[11, 0x91, 0x12, 0x62, 0x21, 0x43, 0x65, 0xF7]),
        ]),
    );
    let record = decode_message(&mo).unwrap();
    assert_eq!(record.kind, RecordKind::MoSms);
    assert_eq!(record.other_party.unwrap().digits.as_str(), "21261234567");
    assert_eq!(
        record.start.unwrap().utc_millis(),
        utc("2024-03-05T11:00:05Z")
    );
    let mt = t(
        &[0xA7],
        &cat(&[
            t(&[0x80], &[0x07]),
            t(&[0x81], &[0x91, 0x33, 0x06, 0xF0]),
            t(&[0x84], &[0x91, 0x33, 0x16, 0x32, 0x54, 0x76, 0xF8]),
            t(&[0x88], &at(12, 0, 6)),
        ]),
    );
    let record = decode_message(&mt).unwrap();
    assert_eq!(record.kind, RecordKind::MtSms);
    assert_eq!(record.served_msisdn.unwrap().digits.as_str(), "33612345678");
    assert_eq!(record.other_party, None);
}

#[test]
fn a_pgw_record_sums_its_traffic_volumes() {
    let container = |up: &[u8], down: &[u8]| {
        t(
            &[0x30],
            &cat(&[t(&[0x83], up), t(&[0x84], down), t(&[0x85], &[0x02])]),
        )
    };
    let bytes = t(
        &[0xBF, 0x4F],
        &cat(&[
            t(&[0x80], &[0x55]),
            t(&[0x83], &[0x02, 0x08, 0x11, 0x32, 0x54, 0x76, 0x98, 0xF0]),
            t(&[0xA4], &t(&[0x80], &[10, 0, 0, 1])),
            t(&[0x85], &[0x00, 0xFF, 0xFF, 0xFF, 0xFF]),
            t(
                &[0xAC],
                &cat(&[
                    container(&[0x03, 0xE8], &[0x27, 0x10]),
                    container(&[0x01], &[0x00, 0x80, 0x00, 0x00]),
                ]),
            ),
            t(&[0x8D], &at(10, 0, 0)),
            t(&[0x8E], &[0x0E, 0x10]),
            t(&[0x8F], &[0x10]),
            t(&[0x91], &[0x03]),
            t(&[0x92], b"PGW01"),
            t(&[0x96], &[0x91, 0x33, 0x16, 0x32, 0x54, 0x76, 0xF8]),
            t(&[0x9F, 0x20], &[0x18, 0x02, 0xF8, 0x10]),
            t(&[0x9F, 0x27], &at(11, 0, 0)),
            // A later release's field.
            t(&[0x9F, 0x50], &[0x01]),
        ]),
    );
    let record = decode_message(&bytes).unwrap();
    assert_eq!(record.kind, RecordKind::Pgw);
    assert_eq!(record.charging_id, Some(4_294_967_295));
    assert_eq!(
        (record.uplink_bytes, record.downlink_bytes),
        (1000 + 1, 10_000 + 8_388_608)
    );
    assert_eq!(record.volume_containers, 2);
    assert_eq!(record.node_id, Some("PGW01"));
    assert_eq!(
        (record.duration_sec, record.cause, record.sequence_number),
        (Some(3600), Some(16), Some(3))
    );
    // No startTime: the record's opening starts it.
    assert_eq!(
        record.start.unwrap().utc_millis(),
        utc("2024-03-05T09:00:00Z")
    );
    assert_eq!(
        record.end.unwrap().utc_millis(),
        utc("2024-03-05T10:00:00Z")
    );
    assert_eq!(record.user_location, Some(&[0x18, 0x02, 0xF8, 0x10][..]));
    assert_eq!(record.unknown.len(), 1);
    assert_eq!(record.unknown[0].0.number, 80);
}

#[test]
fn a_broken_record_says_which_field_and_why() {
    let unknown = t(&[0xA2], &t(&[0x80], &[0x02]));
    assert_eq!(
        decode_message(&unknown).unwrap_err().reason(),
        "ber_unknown_record"
    );
    let bad_time = t(
        &[0xA0],
        &t(&[0x97], &[0x24, 0x02, 0x30, 0, 0, 0, b'+', 0, 0]),
    );
    let error = decode_message(&bad_time).unwrap_err();
    assert_eq!(error.reason(), "ber_bad_timestamp");
    assert_eq!(
        error.to_string(),
        "field [23]: a timestamp with no such date"
    );
    let mut trailing = t(&[0xA0], &mo_call_fields());
    trailing.push(0);
    assert_eq!(decode_message(&trailing), Err(Asn1Error::TrailingBytes(1)));
    let cut = t(&[0xA0], &mo_call_fields());
    assert_eq!(
        decode_message(&cut[..cut.len() - 1]).unwrap_err().reason(),
        "ber_truncated"
    );
}

/// A 32.297 file: the fixed header (48 octets), an empty routeing filter
/// and private extension, then CDRs behind their 4-octet headers.
fn cdr_file(header_length: u32, cdrs: &[Vec<u8>], lost: u8) -> Vec<u8> {
    let mut body = Vec::new();
    for cdr in cdrs {
        body.extend((cdr.len() as u16).to_be_bytes());
        body.push(6 << 5 | 3); // Rel-9, version 3
        body.push(1 << 5 | 6); // BER, TS 32.250
        body.extend(cdr);
    }
    let mut file = Vec::new();
    file.extend(((52 + body.len()) as u32).to_be_bytes());
    file.extend(header_length.to_be_bytes());
    file.extend([6 << 5 | 3, 6 << 5 | 3]);
    // 5 March 14:30 +01:00, then 5 March 14:59 +01:00, bit by bit.
    file.extend([0x32, 0xB9, 0xE8, 0x40, 0x32, 0xBB, 0xB8, 0x40]);
    file.extend((cdrs.len() as u32).to_be_bytes());
    file.extend(7u32.to_be_bytes());
    file.push(2);
    file.extend([0xFF; 4]);
    file.extend([0x20, 0x01, 0x0D, 0xB8]);
    file.extend([0; 12]);
    file.push(lost);
    file.extend([0, 0, 0, 0]);
    file.extend(body);
    file
}

#[test]
fn a_cdr_file_gives_its_header_and_each_cdr() {
    let cdrs = [
        t(&[0xA0], &mo_call_fields()),
        t(&[0xA1], &t(&[0x80], &[0x01])),
    ];
    // The header length counted from the file's start, and after the two
    // length fields: both writers' readings.
    for header_length in [52, 44] {
        let bytes = cdr_file(header_length, &cdrs, 0x83);
        let mut file = CdrFile::parse(&bytes).unwrap();
        assert_eq!(file.header.cdr_count, 2);
        assert_eq!(file.header.sequence_number, 7);
        assert_eq!(file.header.closure_reason, 2);
        assert_eq!(
            (file.header.lost.count(), file.header.lost.is_exact()),
            (3, true)
        );
        let opened = file.header.opened;
        assert_eq!(
            (
                opened.month,
                opened.day,
                opened.hour,
                opened.minute,
                opened.offset_minutes
            ),
            (3, 5, 14, 30, 60)
        );
        assert_eq!(file.header.last_appended.minute, 59);
        let entries: Vec<_> = file.by_ref().map(Result::unwrap).collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].offset, 52);
        assert_eq!(
            (
                entries[0].release,
                entries[0].version,
                entries[0].encoding,
                entries[0].ts_number
            ),
            (6, 3, 1, 6)
        );
        assert_eq!(entries[0].bytes, cdrs[0].as_slice());
        assert_eq!(entries[1].bytes, cdrs[1].as_slice());
        assert_eq!(
            decode_message(entries[1].bytes).unwrap().kind,
            RecordKind::MtCall
        );
    }
}

#[test]
fn a_cdr_file_that_lies_about_itself_is_refused() {
    let cdrs = [t(&[0xA0], &mo_call_fields())];
    let mut file = cdr_file(52, &cdrs, 0);
    file.pop();
    assert!(matches!(
        CdrFile::parse(&file),
        Err(Asn1Error::FileLength { .. })
    ));
    // A CDR length past the end: the file ends there, with the reason.
    let mut file = cdr_file(52, &cdrs, 0);
    file[52] = 0xFF;
    let entries: Vec<_> = CdrFile::parse(&file).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].as_ref().unwrap_err().reason(),
        "cdr_file_bad_cdr_header"
    );
    assert_eq!(
        CdrFile::parse(&file[..40]).err().map(|e| e.reason()),
        Some("cdr_file_bad_header")
    );
    // Release code 7 reads the extension octet: 10 + 250 is no release.
    let mut file = cdr_file(52, &cdrs, 0);
    file[54] = 7 << 5;
    file.insert(56, 250);
    let said = (file.len() as u32).to_be_bytes();
    file[..4].copy_from_slice(&said);
    let entries: Vec<_> = CdrFile::parse(&file).unwrap().collect();
    assert_eq!(
        entries[0].as_ref().unwrap_err().to_string(),
        "the CDR header at octet 52 is a release past 255"
    );
}

#[test]
fn a_header_time_takes_the_year_nearest_its_reference() {
    let file = cdr_file(52, &[], 0);
    let opened = CdrFile::parse(&file).unwrap().header.opened;
    assert_eq!(
        opened.nearest_to(utc("2024-03-05T14:00:00Z").unwrap()),
        utc("2024-03-05T13:30:00Z")
    );
    assert_eq!(
        opened.nearest_to(utc("2023-12-20T00:00:00Z").unwrap()),
        utc("2024-03-05T13:30:00Z")
    );
    // A file opened on 31 December and read on 2 January is last year's.
    let new_years_eve = HeaderTime {
        month: 12,
        day: 31,
        hour: 23,
        minute: 50,
        offset_minutes: 0,
    };
    assert_eq!(
        new_years_eve.nearest_to(utc("2025-01-02T00:00:00Z").unwrap()),
        utc("2024-12-31T23:50:00Z")
    );
    // 29 February exists only in a leap year: 2024's, not 2023's or 2025's.
    let leap = HeaderTime {
        month: 2,
        day: 29,
        ..new_years_eve
    };
    assert_eq!(
        leap.nearest_to(utc("2025-02-28T00:00:00Z").unwrap()),
        utc("2024-02-29T23:50:00Z")
    );
}
