//! `formats::decode` with the format detected per record; see `cdrflow_fuzz::check_decode`.
#![no_main]

use cdrflow_core::formats::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_decode(data, Format::default()));
