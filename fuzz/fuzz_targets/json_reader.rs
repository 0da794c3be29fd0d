//! `json::for_each_field` on any bytes; see `cdrflow_fuzz::check_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_json(data));
