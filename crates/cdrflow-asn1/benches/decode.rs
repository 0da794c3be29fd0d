//! Issue 15's BER micro-benchmark (target: 1,000,000 records/s per core):
//! a 32.297 file's worth of records — MO calls, MO SMS and PGW sessions in
//! the mix a switch writes (the fuzz seeds' records, real 32.298 layouts) —
//! decoded one after another on one core, five rounds, each record's
//! fields read as mediation will (served number, other party, start).
//!
//!     cargo bench -p cdrflow-asn1

use std::hint::black_box;
use std::time::Instant;

use cdrflow_asn1::decode_record;

const RECORDS: usize = 1_000_000;

fn main() {
    let seeds: [&[u8]; 3] = [
        include_bytes!("../../../fuzz/corpus/decode_ber/mo_call.ber"),
        include_bytes!("../../../fuzz/corpus/decode_ber/mo_sms.ber"),
        include_bytes!("../../../fuzz/corpus/decode_ber/pgw.ber"),
    ];
    // Calls, then SMS, then data, 6:3:1 — one buffer, as a file is read.
    let mix = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2];
    let mut stream = Vec::new();
    for i in 0..RECORDS {
        stream.extend_from_slice(seeds[mix[i % mix.len()]]);
    }
    println!(
        "{RECORDS} records, {:.1} MB, {:.0} octets a record on average",
        stream.len() as f64 / 1e6,
        stream.len() as f64 / RECORDS as f64
    );
    for round in 1..=5 {
        let started = Instant::now();
        let (mut rest, mut digits) = (stream.as_slice(), 0usize);
        let mut count = 0;
        while !rest.is_empty() {
            let (record, used) = decode_record(rest).expect("the seeds decode");
            digits += record.served_msisdn.map_or(0, |n| n.digits.as_str().len());
            digits += record.other_party.map_or(0, |n| n.digits.as_str().len());
            black_box(record.start);
            rest = &rest[used..];
            count += 1;
        }
        let elapsed = started.elapsed();
        black_box(digits);
        println!(
            "round {round}: {count} records in {:.3} s: {:.2} M records/s",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64() / 1e6
        );
    }
}
