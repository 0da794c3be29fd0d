//! Issue 12's rater micro-benchmark: 1,000,000 calls priced one after
//! another on one core, against a catalogue of 50,000 destination prefixes
//! (4 to 9 digits, overlapping), four bands in Africa/Casablanca with a
//! holiday, and a rate per class and band with 30/6 increments.
//!
//!     cargo bench -p cdrflow-catalogue

use std::fmt::Write;
use std::time::Instant;

use cdrflow_catalogue::{Catalogue, Usage};
use cdrflow_core::normalize::Msisdn;
use cdrflow_core::synth::SplitMix64;

const PREFIXES: usize = 50_000;
const CALLS: usize = 1_000_000;
const CLASSES: [&str; 5] = ["national", "international", "mobile", "fixed", "premium"];

fn catalogue(rng: &mut SplitMix64) -> (String, Vec<u64>) {
    let mut toml = String::from(
        r#"[[version]]
id = "bench"
effective_from = "2024-01-01T00:00:00Z"
currency = "MAD"
zone = "Africa/Casablanca"
holidays = ["2024-03-06"]
"#,
    );
    let mut seen = std::collections::HashSet::new();
    let mut prefixes = Vec::new();
    while prefixes.len() < PREFIXES {
        let digits = 4 + rng.below(6) as u32;
        let prefix = 10u64.pow(digits - 1) + rng.below(9 * 10u64.pow(digits - 1));
        if seen.insert(prefix) {
            prefixes.push(prefix);
        }
    }
    for (i, chunk) in prefixes.chunks(10).enumerate() {
        let list: Vec<String> = chunk.iter().map(|p| format!("\"{p}\"")).collect();
        let _ = write!(
            toml,
            "[[version.destination]]\nid = \"d{i}\"\nclass = \"{}\"\nprefixes = [{}]\n",
            CLASSES[i % CLASSES.len()],
            list.join(", ")
        );
    }
    toml.push_str(
        r#"[[version.band]]
id = "holiday"
holidays = true
[[version.band]]
id = "peak"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "08:00"
to = "20:00"
[[version.band]]
id = "weekend"
days = ["sat", "sun"]
[[version.band]]
id = "off_peak"
[[version.plan]]
id = "p"
"#,
    );
    for class in CLASSES {
        for band in ["peak", "off_peak", "weekend", "holiday"] {
            let _ = write!(
                toml,
                "[[version.plan.voice]]\nid = \"{class}-{band}\"\nclass = \"{class}\"\nband = \"{band}\"\nconnect_fee = \"0.10\"\nprice = \"0.0{}\"\nincrements = \"30/6\"\nrounding = \"half_up\"\ndecimals = 4\n",
                1 + band.len()
            );
        }
    }
    (toml, prefixes)
}

fn main() {
    let mut rng = SplitMix64(12);
    let (toml, prefixes) = catalogue(&mut rng);
    let catalogue = Catalogue::from_toml(&toml).expect("the generated catalogue is valid");
    // Numbers extending random prefixes to 12 digits; starts over March 2024.
    let march = 1_709_251_200_000i64;
    let calls: Vec<Usage> = (0..CALLS)
        .map(|_| {
            let prefix = prefixes[rng.below(prefixes.len() as u64) as usize];
            let width = 12 - prefixes_digits(prefix);
            let number = prefix * 10u64.pow(width) + rng.below(10u64.pow(width));
            Usage::Voice {
                to: Msisdn::from_digits(number),
                start: march + rng.below(31 * 86_400_000) as i64,
                seconds: rng.below(600),
            }
        })
        .collect();
    for round in 1..=3 {
        let started = Instant::now();
        let mut total: i128 = 0;
        let mut no_rate = 0u64;
        for call in &calls {
            match catalogue.price("p", call) {
                Ok(priced) => total += i128::from(priced.cost_micros),
                Err(_) => no_rate += 1,
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {CALLS} calls in {seconds:.3} s: {:.0} records/s on one core ({PREFIXES} prefixes; total {} micro-units, {no_rate} unpriced)",
            CALLS as f64 / seconds,
            total
        );
    }
}

fn prefixes_digits(mut n: u64) -> u32 {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}
