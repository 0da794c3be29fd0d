//! `normalize::normalize_msisdn`: the number, or `<country code>\n<number>`;
//! see `cdrflow_fuzz::check_msisdn`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_msisdn(data));
