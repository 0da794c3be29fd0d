//! `formats::decode` forced to seed 000's `cdr_data`; see `cdrflow_fuzz::check_decode`.
#![no_main]

use cdrflow_core::formats::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_decode(data, Format::parse("cdr-data").unwrap()));
