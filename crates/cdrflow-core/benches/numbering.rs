//! Issue 15's number-normalisation micro-benchmark (target: 5,000,000
//! numbers/s per core on the fast path): 1,000,000 numbers in the
//! spellings switches write — national with and without spaces, `+` and
//! `00` international, another country's — through Côte d'Ivoire's and
//! France's plans from `config/countries/`, on one core, five rounds. Côte
//! d'Ivoire's half are dated before its 2021 change, so they also take
//! the rewrite.
//!
//!     cargo bench -p cdrflow-core --bench numbering

use std::hint::black_box;
use std::time::Instant;

use cdrflow_core::country::Country;
use cdrflow_core::normalize::parse_timestamp;
use cdrflow_core::synth::SplitMix64;

const NUMBERS: usize = 1_000_000;

fn main() {
    let read = |cc: &str| {
        let path = format!(
            "{}/../../config/countries/{cc}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        Country::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (fr, ci) = (read("fr"), read("ci"));
    let mut random = SplitMix64(15);
    let mut digits = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'0' + random.below(10) as u8))
            .collect()
    };
    let spellings: Vec<(bool, String)> = (0..NUMBERS)
        .map(|i| match i % 6 {
            0 => (true, format!("06{}", digits(8))),
            1 => (true, format!("+33 7 {} {}", digits(4), digits(4))),
            2 => (true, format!("0033{}", 600_000_000 + i)),
            3 => (true, format!("+212 6{}", digits(8))),
            4 => (false, format!("07{}", digits(6))),
            _ => (false, format!("+225 05 {}", digits(8))),
        })
        .collect();
    let (before, after) = (
        parse_timestamp("2020-06-01T00:00:00Z").unwrap(),
        parse_timestamp("2024-06-01T00:00:00Z").unwrap(),
    );
    for round in 1..=5 {
        let started = Instant::now();
        let mut valid = 0usize;
        for (french, raw) in &spellings {
            let result = match french {
                true => fr.numbering.normalize(raw, after),
                false if raw.len() == 8 => ci.numbering.normalize(raw, before),
                false => ci.numbering.normalize(raw, after),
            };
            valid += usize::from(black_box(result).is_ok());
        }
        let elapsed = started.elapsed();
        assert_eq!(valid, NUMBERS, "every spelling is a number");
        println!(
            "round {round}: {NUMBERS} numbers in {:.3} s: {:.2} M numbers/s",
            elapsed.as_secs_f64(),
            NUMBERS as f64 / elapsed.as_secs_f64() / 1e6
        );
    }
}
