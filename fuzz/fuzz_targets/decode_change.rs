//! `cdc::decode`: Debezium change events (`KEY\nVALUE`); see
//! `cdrflow_fuzz::check_change`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_change(data));
