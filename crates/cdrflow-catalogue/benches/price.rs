//! Issue 12's rater micro-benchmark, on one core, against a catalogue of
//! 50,000 destination prefixes (4 to 9 digits, overlapping), four bands in
//! Africa/Casablanca with a holiday, and a rate per class and band with
//! 30/6 increments:
//!
//! 1. **pricing**: 1,000,000 calls priced one after another
//!    (`Catalogue::price`: version, prefix, band, increments, rounding);
//! 2. **rating and allowances**: the same calls made by 20,000 subscribers
//!    (half prepaid) through the pipeline's rater (`CatalogueRater`: the
//!    subscriber and customer in force at the call's start, the plan, the
//!    allowances that may pay) and then the charging operator (`Charging`:
//!    a daily 300-second national allowance and a 5.00 money allowance per
//!    billing period used call by call, calls split where one runs out,
//!    prepaid balances moved, a rated row per call), in batches of 10,000
//!    as the pipeline hands them over. The rater, the charging operator
//!    and building the records between them (the mediator's share) are
//!    timed apart.
//!
//!     cargo bench -p cdrflow-catalogue

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdrflow_catalogue::{Catalogue, CatalogueRater, Usage};
use cdrflow_core::aggregate::Totals;
use cdrflow_core::charging::{Charging, ChargingConfig};
use cdrflow_core::dedup::RecordKey;
use cdrflow_core::mediation::{DuplicateReason, Rated};
use cdrflow_core::model::{Cdr, Direction, IdSpace, Kind, SourcePosition};
use cdrflow_core::normalize::{normalize_msisdn, CountryCode, Msisdn, SummaryZone};
use cdrflow_core::operator::{BatchContext, Checkpoint, MemoryState, Operator};
use cdrflow_core::rating::{Rater, Rating};
use cdrflow_core::reference::{Customer, Payment, ReferenceData, Status, Subscriber};
use cdrflow_core::synth::SplitMix64;

const PREFIXES: usize = 50_000;
const CALLS: usize = 1_000_000;
const CLASSES: [&str; 5] = ["national", "international", "mobile", "fixed", "premium"];
const SUBSCRIBERS: u64 = 20_000;
const BATCH: usize = 10_000;
const MARCH_2024: i64 = 1_709_251_200_000;

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
[[version.plan.allowance]]
id = "daily-national-seconds"
kind = "voice"
units = 300
classes = ["national", "mobile"]
validity = "day"
priority = 1
[[version.plan.allowance]]
id = "monthly-money"
kind = "money"
amount = "5.00"
validity = "period"
priority = 2
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
    let calls: Vec<Usage> = (0..CALLS)
        .map(|_| {
            let prefix = prefixes[rng.below(prefixes.len() as u64) as usize];
            let width = 12 - prefixes_digits(prefix);
            let number = prefix * 10u64.pow(width) + rng.below(10u64.pow(width));
            Usage::Voice {
                to: Msisdn::from_digits(number),
                start: MARCH_2024 + rng.below(31 * 86_400_000) as i64,
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
        report("pricing", round, started, total, no_rate);
    }
    rate_and_charge(catalogue, &calls, &mut rng);
}

/// Part 2: the calls as records of 20,000 subscribers, through the rater
/// and the charging operator.
fn rate_and_charge(catalogue: Catalogue, calls: &[Usage], rng: &mut SplitMix64) {
    let home = CountryCode::parse("212").expect("a country code");
    let mut reference = ReferenceData::default();
    let subscriber = |n: u64| Msisdn::from_digits(212_600_000_000 + n);
    for n in 0..SUBSCRIBERS {
        let customer_id: Arc<str> = format!("c{n}").into();
        reference.put_customer(Customer {
            customer_id: customer_id.clone(),
            effective_from: 0,
            name: format!("Customer {n}"),
            billing_country: "MA".into(),
            bill_cycle_day: 1 + (n % 28) as u8,
        });
        reference.put_subscriber(Subscriber {
            msisdn: subscriber(n),
            effective_from: 0,
            customer_id,
            plan_id: "p".into(),
            region: Some("Casablanca-Settat".into()),
            status: Status::Active,
            payment: if n % 2 == 0 {
                Payment::Prepaid
            } else {
                Payment::Postpaid
            },
            activation_date: None,
        });
    }
    let currency: Arc<str> = catalogue.versions()[0].currency.as_str().into();
    let rater = CatalogueRater::new(catalogue, "p", home, reference).expect("plan `p` exists");
    let records: Vec<(String, String, Msisdn)> = calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let Usage::Voice { to, .. } = call else {
                unreachable!("the calls are voice calls")
            };
            (
                format!("call-{i}"),
                to.to_string(),
                subscriber(rng.below(SUBSCRIBERS)),
            )
        })
        .collect();
    for round in 1..=3 {
        let mut charging = Charging::new(ChargingConfig {
            currency: currency.clone(),
            ..ChargingConfig::default()
        });
        // An empty store: no balance and no allowance used yet.
        let mut nothing_stored = MemoryState::new("charging");
        let mut checkpoint = Checkpoint::default();
        let started = Instant::now();
        let mut no_rate = 0u64;
        let (mut rating_time, mut charging_time) = (Duration::ZERO, Duration::ZERO);
        let mut ratings = Vec::with_capacity(BATCH);
        let mut batch = Vec::with_capacity(BATCH);
        // Batch by batch as the pipeline goes: the mediator's classifier
        // rates a batch's records, then the charging operator charges them.
        for (calls, records) in calls.chunks(BATCH).zip(records.chunks(BATCH)) {
            let cdrs: Vec<Cdr<'_>> = calls
                .iter()
                .zip(records)
                .map(|(call, (id, other_party, msisdn))| {
                    let &Usage::Voice { start, seconds, .. } = call else {
                        unreachable!("the calls are voice calls")
                    };
                    voice_call(id, other_party, *msisdn, start, seconds)
                })
                .collect();
            let rating_started = Instant::now();
            ratings.extend(cdrs.iter().map(|cdr| rater.rate(cdr)));
            rating_time += rating_started.elapsed();
            for (cdr, rating) in cdrs.into_iter().zip(ratings.drain(..)) {
                let rating = match rating {
                    Ok(rating) => rating,
                    Err(e) => {
                        if no_rate == 0 {
                            eprintln!("first unpriced call: {e}");
                        }
                        no_rate += 1;
                        continue;
                    }
                };
                batch.push(accepted(cdr, rating, home));
            }
            charging_time += charge(&mut charging, &mut batch, &mut nothing_stored);
        }
        let checkpoint_started = Instant::now();
        charging.checkpoint(&mut checkpoint);
        charging_time += checkpoint_started.elapsed();
        let charged: i128 = checkpoint
            .rated_records
            .iter()
            .map(|r| i128::from(r.cost_micros))
            .sum();
        report("rating and allowances", round, started, charged, no_rate);
        let split = checkpoint
            .rated_records
            .iter()
            .filter(|r| r.allowance.is_some() && r.cost_micros > 0)
            .count();
        let records_time = started.elapsed() - rating_time - charging_time;
        println!(
            "  of which the rater {:.3} s ({:.0} records/s), charging {:.3} s ({:.0} records/s), building the records as the mediator would {:.3} s; {} rated rows, {split} split between an allowance and a charge, {} balances moved, {} balance alerts",
            rating_time.as_secs_f64(),
            CALLS as f64 / rating_time.as_secs_f64(),
            charging_time.as_secs_f64(),
            CALLS as f64 / charging_time.as_secs_f64(),
            records_time.as_secs_f64(),
            checkpoint.rated_records.len(),
            checkpoint.balances.len(),
            checkpoint.anomalies.len()
        );
    }
}

/// An outgoing call as a decoder would make it.
fn voice_call<'a>(
    id: &'a str,
    other_party: &'a str,
    msisdn: Msisdn,
    start: i64,
    seconds: u64,
) -> Cdr<'a> {
    Cdr {
        record_id: Some(Cow::Borrowed(id)),
        id_space: IdSpace::TelecomEvents,
        kind: Kind::Voice,
        served_msisdn: msisdn,
        other_party: Some(Cow::Borrowed(other_party)),
        direction: Direction::Outgoing,
        service_type: Cow::Borrowed("voice"),
        start_time: start,
        duration_sec: seconds,
        uplink_bytes: 0,
        downlink_bytes: 0,
        amount: None,
        region: None,
        cell_id: None,
        radio_technology: None,
        position: SourcePosition::Line {
            line: 1,
            byte_offset: 0,
        },
    }
}

/// A rated call as the mediator hands it on: accepted, not a duplicate.
fn accepted<'a>(cdr: Cdr<'a>, rating: Rating, home: CountryCode) -> Rated<'a> {
    let usage = Totals::of(&cdr, rating.cost_micros);
    let id = cdr.record_id.as_deref().expect("every call has an id");
    Rated {
        origin: "bench",
        partition: "bench",
        position: cdr.position,
        key: RecordKey::from_id(IdSpace::TelecomEvents, id),
        record_id: cdr.record_id,
        kind: cdr.kind,
        direction: cdr.direction,
        region: None,
        cell_id: None,
        msisdn: cdr.served_msisdn,
        other_party: cdr
            .other_party
            .as_deref()
            .and_then(|party| normalize_msisdn(party, home).ok()),
        service_type: cdr.service_type,
        technology: None,
        start_time: cdr.start_time,
        day: SummaryZone::UTC.day_of(cdr.start_time),
        usage,
        duplicate_reason: DuplicateReason::SameRecordId,
        rating: Some(Box::new(rating)),
    }
}

/// Charges a batch; returns how long it took.
fn charge(
    charging: &mut Charging,
    batch: &mut Vec<Rated<'_>>,
    state: &mut MemoryState,
) -> Duration {
    let started = Instant::now();
    let mut context = BatchContext {
        now: i64::MAX,
        state,
    };
    charging
        .process_batch(batch, &mut context, &mut Vec::new())
        .expect("nothing to read");
    batch.clear();
    started.elapsed()
}

fn report(part: &str, round: u32, started: Instant, total_micros: i128, no_rate: u64) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{part}, round {round}: {CALLS} calls in {seconds:.3} s: {:.0} records/s on one core ({PREFIXES} prefixes; total {total_micros} micro-units, {no_rate} unpriced)",
        CALLS as f64 / seconds,
    );
}

fn prefixes_digits(mut n: u64) -> u32 {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}
