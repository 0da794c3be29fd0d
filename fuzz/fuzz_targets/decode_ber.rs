//! `cdrflow_asn1`: 3GPP BER records and 32.297 files; see
//! `cdrflow_fuzz::check_ber`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_ber(data));
