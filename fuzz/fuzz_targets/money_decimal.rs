//! `money::Decimal::parse`, its spelling and scaling, `format_micros` and
//! `div_round_half_away`; see `cdrflow_fuzz::check_money`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_money(data));
