//! The classification path: each line one record through
//! `mediation::Classifier::classify`, then all as one batch through a fresh
//! `Mediator`; see `cdrflow_fuzz::check_classify`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cdrflow_fuzz::check_classify(data));
