//! `formats::decode` forced to seed 003's `telecom_events`; see `cdrflow_fuzz::check_decode`.
#![no_main]

use cdrflow_core::formats::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cdrflow_fuzz::check_decode(data, Format::parse("telecom-events").unwrap())
});
