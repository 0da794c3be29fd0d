//! `cdc::capture`: pgoutput messages to Debezium events, read back by the
//! consumer; see `cdrflow_fuzz::check_pgoutput`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_pgoutput(data));
