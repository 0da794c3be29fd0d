//! Seed 003's windows, late events, anomalies and daily batch, end to end through `cdrflow process`
//! and `cdrflow export`, against a computation written here from the
//! generated events themselves (not from the pipeline's code): in SQLite
//! and in PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use common::{cdrflow, micros_text, postgres_database, run_ok, temp_dir};

const WINDOW_MS: i64 = 300_000;
const LATENESS_MS: i64 = 60_000;

/// One generated record, with its measures kept as integers.
struct Event {
    id: String,
    msisdn: String,
    duration_sec: u64,
    time_ms: i64,
    region: Option<&'static str>,
    event_type: &'static str,
    /// `incoming`, `outgoing` or none.
    subtype: Option<&'static str>,
    data_bytes: u64,
    recharge_micros: i64,
    /// The calling number of an incoming call (`other_party`).
    other_party: Option<String>,
    cell: Option<u64>,
    line: String,
}

fn rfc3339(ms: i64) -> String {
    let seconds = ms / 1000;
    let (days, s) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// A small deterministic generator (an LCG), so the test needs no crate.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) % n
    }
}

const REGIONS: [&str; 3] = ["Almaty", "Astana", "Shymkent"];
const BURST: &str = "+77019999999";
const MASKED: &str = "+7701234****";
/// 2025-11-09T10:00:00Z
const T0: i64 = 1_762_682_400_000;

/// `n` events of one partition: time advancing ~2 s per event with up to 30 s
/// of jitter, every 37th from 2 to 12 minutes late, every 23rd a copy of an
/// earlier one (sometimes of the other partition's), a few seed 000 records
/// (no region), and some invalid lines.
fn partition(seed: u64, n: usize, other: &[Event]) -> (Vec<Event>, Vec<String>) {
    let mut rng = Lcg(seed);
    let mut events: Vec<Event> = Vec::new();
    let mut lines = Vec::new();
    for i in 0..n {
        if i % 23 == 22 {
            let source = if i % 2 == 0 && !other.is_empty() {
                other
            } else {
                &events
            };
            if !source.is_empty() {
                let copy = &source[rng.below(source.len() as u64) as usize];
                lines.push(copy.line.clone());
                continue;
            }
        }
        if i == 1200 {
            for event in patterns(seed, T0 + i as i64 * 2_000) {
                lines.push(event.line.clone());
                events.push(event);
            }
        }
        if i % 53 == 52 {
            lines.push(format!(r#"{{"event_id":"bad-{seed}-{i}","msisdn":"+77011234567","event_type":"teleport","timestamp":"2025-11-09T10:00:00Z"}}"#));
            continue;
        }
        let mut time_ms: i64 = T0 + i as i64 * 2_000 - rng.below(30_000) as i64;
        if i % 37 == 36 {
            time_ms -= 120_000 + rng.below(600_000) as i64;
        }
        // The lines carry whole seconds.
        let time_ms = time_ms.div_euclid(1000) * 1000;
        let time = rfc3339(time_ms);
        let id = format!("p{seed}-{i}");
        // A burst from one subscriber, half in each partition at the same
        // event times: over 100 in a window only together, so the second
        // partition (read after the first has moved far ahead) must count
        // on from the first's stored counts.
        let msisdn = if (1000..1070).contains(&i) {
            BURST.to_string()
        } else if i % 31 == 30 {
            // Masked (seed 003): a pseudonymous subscriber, in analytics only.
            MASKED.to_string()
        } else {
            format!("+770112{:05}", rng.below(500))
        };
        let event = if i % 41 == 40 {
            // Seed 000 records: no region; voice is outgoing.
            if i % 2 == 0 {
                let seconds = rng.below(600);
                Event {
                    other_party: None,
                    cell: None,
                    line: format!(
                        r#"{{"cdr_id":"{id}","msisdn":"{msisdn}","start_time":"{time}","call_type":"voice","call_duration_sec":{seconds}}}"#
                    ),
                    msisdn: msisdn.clone(),
                    duration_sec: seconds,
                    id,
                    time_ms,
                    region: None,
                    event_type: "call",
                    subtype: Some("outgoing"),
                    data_bytes: 0,
                    recharge_micros: 0,
                }
            } else {
                let (up, down) = (rng.below(1 << 30), rng.below(1 << 30));
                Event {
                    other_party: None,
                    cell: None,
                    line: format!(
                        r#"{{"cdr_id":"{id}","msisdn":"{msisdn}","event_datetime":"{time}","data_type":"video","up_bytes":{up},"down_bytes":{down}}}"#
                    ),
                    msisdn: msisdn.clone(),
                    duration_sec: 0,
                    id,
                    time_ms,
                    region: None,
                    event_type: "data_session",
                    subtype: None,
                    data_bytes: up + down,
                    recharge_micros: 0,
                }
            }
        } else {
            let region = REGIONS[rng.below(3) as usize];
            let head = format!(
                r#""event_id":"{id}","msisdn":"{msisdn}","region":"{region}","timestamp":"{time}""#
            );
            match rng.below(5) {
                0 | 1 => {
                    let subtype = ["incoming", "outgoing"][rng.below(2) as usize];
                    // Now and then at, or just past, long_call's 14,400 s.
                    let duration_sec = if i % 7 == 0 {
                        14_399 + rng.below(3)
                    } else {
                        rng.below(3600)
                    };
                    Event {
                        other_party: None,
                        cell: None,
                        line: format!(
                            r#"{{{head},"event_type":"call","event_subtype":"{subtype}","duration_seconds":{duration_sec}}}"#
                        ),
                        msisdn: msisdn.clone(),
                        duration_sec,
                        id,
                        time_ms,
                        region: Some(region),
                        event_type: "call",
                        subtype: Some(subtype),
                        data_bytes: 0,
                        recharge_micros: 0,
                    }
                }
                2 => Event {
                    other_party: None,
                    cell: None,
                    line: format!(r#"{{{head},"event_type":"sms","event_subtype":"outgoing"}}"#),
                    msisdn: msisdn.clone(),
                    duration_sec: 0,
                    id,
                    time_ms,
                    region: Some(region),
                    event_type: "sms",
                    subtype: Some("outgoing"),
                    data_bytes: 0,
                    recharge_micros: 0,
                },
                3 => {
                    // Now and then at, or just past, large_data_session's 10,240 MB.
                    let tenths = if i % 7 == 0 {
                        102_399 + rng.below(3)
                    } else {
                        rng.below(9000)
                    };
                    Event {
                        other_party: None,
                        cell: None,
                        line: format!(
                            r#"{{{head},"event_type":"data_session","data_mb":{}.{}}}"#,
                            tenths / 10,
                            tenths % 10
                        ),
                        msisdn: msisdn.clone(),
                        duration_sec: 0,
                        id,
                        time_ms,
                        region: Some(region),
                        event_type: "data_session",
                        subtype: None,
                        data_bytes: tenths * 100_000,
                        recharge_micros: 0,
                    }
                }
                _ => {
                    // Now and then at, or just past, large_recharge's 50,000.
                    let cents = if i % 7 == 0 {
                        4_999_999 + rng.below(3) as i64
                    } else {
                        50_000 + rng.below(500_000) as i64
                    };
                    Event {
                        other_party: None,
                        cell: None,
                        line: format!(
                            r#"{{{head},"event_type":"balance_recharge","event_subtype":"voucher","amount":{}.{:02}}}"#,
                            cents / 100,
                            cents % 100
                        ),
                        msisdn: msisdn.clone(),
                        duration_sec: 0,
                        id,
                        time_ms,
                        region: Some(region),
                        event_type: "balance_recharge",
                        subtype: Some("voucher"),
                        data_bytes: 0,
                        recharge_micros: cents * 10_000,
                    }
                }
            }
        };
        lines.push(event.line.clone());
        events.push(event);
    }
    (events, lines)
}

/// Each partition's share of the fraud patterns, all at `time`: SIM boxes
/// at (50 calls in both partitions together), past (51) and past but in
/// three cells; wangiri callers ringing 20 and 21 distinct subscribers; 60
/// SMS from Shymkent in each partition (a volume spike against the
/// history's 40 per window, see [`history`]).
fn patterns(seed: u64, time_ms: i64) -> Vec<Event> {
    let time = rfc3339(time_ms);
    let mut events = Vec::new();
    let mut push = |id: String,
                    msisdn: String,
                    body: String,
                    event_type,
                    subtype,
                    other_party: Option<String>,
                    cell: Option<u64>,
                    region: &'static str,
                    duration_sec: u64| {
        let cell_field = cell
            .map(|c| format!(r#","cell_tower_id":{c}"#))
            .unwrap_or_default();
        let other_field = other_party
            .as_ref()
            .map(|o| format!(r#","other_party":"{o}""#))
            .unwrap_or_default();
        events.push(Event {
            line: format!(r#"{{"event_id":"{id}","msisdn":"{msisdn}","region":"{region}","timestamp":"{time}"{cell_field}{other_field},{body}}}"#),
            id,
            msisdn,
            duration_sec,
            time_ms,
            region: Some(region),
            event_type,
            subtype,
            data_bytes: 0,
            recharge_micros: 0,
            other_party,
            cell,
        });
    };
    let share = |total: u64| {
        if seed == 1 {
            total / 2
        } else {
            total - total / 2
        }
    };
    for (sim, calls, cells) in [
        ("+77018888801", 50, 1),
        ("+77018888802", 51, 2),
        ("+77018888803", 52, 3),
    ] {
        for k in 0..share(calls) {
            let body = r#""event_type":"call","event_subtype":"outgoing","duration_seconds":40"#
                .to_string();
            push(
                format!("sim{seed}-{sim}-{k}"),
                sim.to_string(),
                body,
                "call",
                Some("outgoing"),
                None,
                Some(1 + k % cells),
                "Almaty",
                40,
            );
        }
    }
    for (caller, victims) in [("+447911000001", 20), ("+447911000002", 21)] {
        let first = if seed == 1 { 0 } else { victims / 2 };
        for k in first..first + share(victims) {
            let body = r#""event_type":"call","event_subtype":"incoming","duration_seconds":2"#
                .to_string();
            push(
                format!("wan{seed}-{caller}-{k}"),
                format!("+7701300{k:04}"),
                body,
                "call",
                Some("incoming"),
                Some(caller.to_string()),
                None,
                "Astana",
                2,
            );
        }
    }
    for k in 0..60 {
        let body = r#""event_type":"sms","event_subtype":"outgoing""#.to_string();
        push(
            format!("vol{seed}-{k}"),
            format!("+770140{seed}{k:04}"),
            body,
            "sms",
            Some("outgoing"),
            None,
            None,
            "Shymkent",
            0,
        );
    }
    events
}

/// A week before the partitions, Sunday 10:00 to 12:00: in every window 8
/// calls, SMS and data sessions per region, 40 SMS from Shymkent; each from
/// a number of its own. The volume spike's baseline.
fn history() -> (Vec<Event>, Vec<String>) {
    let mut events = Vec::new();
    let mut n = 0;
    for window in 0..24 {
        let start = T0 - 7 * 86_400_000 + window * WINDOW_MS;
        for region in REGIONS {
            for event_type in ["call", "sms", "data_session"] {
                let count = if region == "Shymkent" && event_type == "sms" {
                    40
                } else {
                    8
                };
                for k in 0..count {
                    n += 1;
                    let time_ms = start + k * 1000;
                    let (id, msisdn) = (format!("h-{n}"), format!("+7702{n:07}"));
                    let body = match event_type {
                        "call" => {
                            r#""event_type":"call","event_subtype":"outgoing","duration_seconds":60"#
                        }
                        "sms" => r#""event_type":"sms","event_subtype":"outgoing""#,
                        _ => r#""event_type":"data_session","data_mb":1"#,
                    };
                    events.push(Event {
                        line: format!(r#"{{"event_id":"{id}","msisdn":"{msisdn}","region":"{region}","timestamp":"{}",{body}}}"#, rfc3339(time_ms)),
                        id,
                        msisdn,
                        duration_sec: if event_type == "call" { 60 } else { 0 },
                        time_ms,
                        region: Some(region),
                        event_type,
                        subtype: (event_type != "data_session").then_some("outgoing"),
                        data_bytes: if event_type == "data_session" { 1_000_000 } else { 0 },
                        recharge_micros: 0,
                        other_party: None,
                        cell: None,
                    });
                }
            }
        }
    }
    let lines = events.iter().map(|e| e.line.clone()).collect();
    (events, lines)
}

/// The fraud rules' state, for [`truth`]: written from the rules file's
/// definitions, not from the pipeline's code.
#[derive(Default)]
struct FraudTruth {
    /// (SIM, hour) → outgoing calls, other events, cells.
    sim_box: BTreeMap<(String, i64), (u32, u32, BTreeSet<u64>)>,
    /// (caller, hour) → subscribers called.
    wangiri: BTreeMap<(String, i64), BTreeSet<String>>,
    /// MSISDN → on-time sightings (time, region); and (MSISDN, span) fired.
    sightings: BTreeMap<String, Vec<(i64, &'static str)>>,
    travel_fired: BTreeSet<(String, i64)>,
    /// (window, region, type) → on-time events.
    volume: BTreeMap<(i64, String, &'static str), u64>,
}

const HOUR_MS: i64 = 3_600_000;
/// The longest journey of the shipped table (Almaty to Atyrau).
const TRAVEL_SPAN_MS: i64 = 150 * 60_000;

fn journey_ms(a: &str, b: &str) -> i64 {
    match (a.min(b), a.max(b)) {
        ("Almaty", "Astana") => 90 * 60_000,
        _ => 60 * 60_000,
    }
}

impl FraudTruth {
    /// An on-time record: what it fires.
    fn observe(&mut self, e: &Event, window: i64, anomalies: &mut BTreeSet<Anomaly>) {
        let mut fire = |rule: &'static str, severity: &'static str, msisdn: String, start: i64| {
            anomalies.insert((
                rule,
                severity,
                msisdn,
                Some(e.id.clone()),
                Some(rfc3339(start)),
            ));
        };
        let hour = e.time_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let outgoing_call = e.event_type == "call" && e.subtype == Some("outgoing");
        if outgoing_call || ["call", "sms", "data_session"].contains(&e.event_type) {
            let (calls, others, cells) = self.sim_box.entry((e.msisdn.clone(), hour)).or_default();
            if outgoing_call {
                *calls += 1;
                cells.extend(e.cell);
                if *calls == 51 && *others == 0 && cells.len() <= 2 {
                    fire("sim_box", "high", e.msisdn.clone(), hour);
                }
            } else {
                *others += 1;
            }
        }
        if let Some(caller) = &e.other_party {
            if e.event_type == "call" && e.subtype == Some("incoming") && e.duration_sec <= 5 {
                let called = self.wangiri.entry((caller.clone(), hour)).or_default();
                if called.insert(e.msisdn.clone()) && called.len() == 21 {
                    fire("wangiri", "high", caller.clone(), hour);
                }
            }
        }
        if let Some(region) = e.region {
            let span = e.time_ms.div_euclid(TRAVEL_SPAN_MS) * TRAVEL_SPAN_MS;
            let seen = self.sightings.entry(e.msisdn.clone()).or_default();
            let latest = seen
                .iter()
                .filter(|(t, _)| (span - TRAVEL_SPAN_MS..span + TRAVEL_SPAN_MS).contains(t))
                .max()
                .copied();
            if let Some((then, previous)) = latest {
                if previous != region
                    && (e.time_ms - then).abs() < journey_ms(previous, region)
                    && self.travel_fired.insert((e.msisdn.clone(), span))
                {
                    fire("impossible_travel", "medium", e.msisdn.clone(), span);
                }
            }
            seen.push((e.time_ms, region));
        }
        let region = e.region.unwrap_or("unknown").to_string();
        let count = self
            .volume
            .entry((window, region.clone(), e.event_type))
            .or_default();
        *count += 1;
        let count = *count;
        // The baseline: that hour of the week in earlier weeks (the history).
        let week_ms = 7 * 86_400_000;
        let (mut sum, mut windows) = (0, 0);
        for ((w, r, t), events) in &self.volume {
            if *r == region
                && *t == e.event_type
                && w.rem_euclid(week_ms).div_euclid(HOUR_MS)
                    == window.rem_euclid(week_ms).div_euclid(HOUR_MS)
                && (*w + 3 * 86_400_000).div_euclid(week_ms)
                    < (window + 3 * 86_400_000).div_euclid(week_ms)
            {
                sum += events;
                windows += 1;
            }
        }
        let spike = |c: u64| c > 100 && c * windows * 1000 > 3000 * sum;
        if windows >= 12 && spike(count) && !spike(count - 1) {
            fire("volume_spike", "medium", e.msisdn.clone(), window);
        }
    }
}

type WindowKey = (String, String, String);

/// The expected windows and late events of the partitions read in order:
/// the first copy of an id wins everywhere; each partition's watermark is
/// its newest accepted event minus the lateness; a record is late when its
/// window ends at or before it.
fn truth<'a>(
    partitions: &[&[String]],
    events: &[&'a Event],
) -> (
    BTreeMap<WindowKey, [String; 8]>,
    BTreeMap<String, (String, i64)>,
    BTreeSet<Anomaly>,
    Vec<&'a Event>,
) {
    let by_line: BTreeMap<&str, &Event> = events.iter().map(|e| (e.line.as_str(), *e)).collect();
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let mut sums: BTreeMap<WindowKey, ([i128; 6], i64)> = BTreeMap::new();
    let mut late = BTreeMap::new();
    let mut anomalies = BTreeSet::new();
    let mut per_window: BTreeMap<(String, i64), u32> = BTreeMap::new();
    let mut fraud = FraudTruth::default();
    for lines in partitions {
        let mut watermark = i64::MIN;
        for line in lines.iter() {
            let Some(event) = by_line.get(line.as_str()) else {
                continue; // invalid: rejected
            };
            let space = if event.line.contains("cdr_id") {
                event.event_type
            } else {
                "events"
            };
            if !seen.insert((space, event.id.clone())) {
                continue;
            }
            kept.push(*event);
            // seed 003's record rules, strictly above: late records too.
            let fired = match event.event_type {
                "call" if event.duration_sec > 14_400 => Some(("long_call", "medium")),
                "data_session" if event.data_bytes > 10_240_000_000 => {
                    Some(("large_data_session", "medium"))
                }
                "balance_recharge" if event.recharge_micros > 50_000_000_000 => {
                    Some(("large_recharge", "high"))
                }
                _ => None,
            };
            if let Some((rule, severity)) = fired {
                anomalies.insert((
                    rule,
                    severity,
                    event.msisdn.clone(),
                    Some(event.id.clone()),
                    None,
                ));
            }
            let start = event.time_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
            if start + WINDOW_MS <= watermark {
                late.insert(
                    event.id.clone(),
                    (rfc3339(start), watermark - event.time_ms),
                );
                continue;
            }
            watermark = watermark.max(event.time_ms - LATENESS_MS);
            fraud.observe(event, start, &mut anomalies);
            let count = per_window.entry((event.msisdn.clone(), start)).or_default();
            *count += 1;
            if *count == 101 {
                anomalies.insert((
                    "high_frequency",
                    "high",
                    event.msisdn.clone(),
                    Some(event.id.clone()),
                    Some(rfc3339(start)),
                ));
            }
            let key = (
                rfc3339(start),
                event.region.unwrap_or("unknown").to_string(),
                event.event_type.to_string(),
            );
            let (s, end) = sums.entry(key).or_default();
            *end = start + WINDOW_MS;
            s[0] += 1;
            s[1] += i128::from(event.event_type == "call" && event.subtype == Some("incoming"));
            s[2] += i128::from(event.event_type == "call" && event.subtype == Some("outgoing"));
            s[3] += i128::from(event.event_type == "sms");
            s[4] += i128::from(event.data_bytes);
            s[5] += i128::from(event.recharge_micros);
        }
    }
    let windows = sums
        .into_iter()
        .map(|(k, (s, end))| {
            (
                k,
                [
                    rfc3339(end),
                    s[0].to_string(),
                    s[1].to_string(),
                    s[2].to_string(),
                    s[3].to_string(),
                    micros_text(s[4]),
                    micros_text(s[5]),
                    "true".to_string(),
                ],
            )
        })
        .collect();
    (windows, late, anomalies, kept)
}

/// Seed 003's `daily_stats` (hour `None`) and `hourly_stats` rows of the
/// accepted events, late ones included, as the export's CSV cells after
/// the date: keyed by (hour, region, event type).
fn stats_truth(
    kept: &[&Event],
    hourly: bool,
) -> BTreeMap<(Option<i64>, String, String), Vec<String>> {
    // events, calls, sms, data sessions, call seconds, longest call, bytes, micros
    let mut sums: BTreeMap<(Option<i64>, String, String), ([i128; 7], Option<u64>)> =
        BTreeMap::new();
    for e in kept {
        let hour = hourly.then(|| e.time_ms.rem_euclid(86_400_000) / 3_600_000);
        let key = (
            hour,
            e.region.unwrap_or("unknown").to_string(),
            e.event_type.to_string(),
        );
        let (s, longest) = sums.entry(key).or_default();
        let call = e.event_type == "call";
        s[0] += 1;
        s[1] += i128::from(call);
        s[2] += i128::from(e.event_type == "sms");
        s[3] += i128::from(e.event_type == "data_session");
        if call {
            s[4] += i128::from(e.duration_sec);
            *longest = Some(longest.unwrap_or(0).max(e.duration_sec));
        }
        s[5] += i128::from(e.data_bytes);
        s[6] += i128::from(e.recharge_micros);
    }
    sums.into_iter()
        .map(|(key, (s, longest))| {
            // The mean call to the hundredth, half up: (2·100·total + calls) / (2·calls).
            let average = (s[1] > 0)
                .then(|| {
                    let centis = (200 * s[4] + s[1]) / (2 * s[1]);
                    format!("{}.{:02}", centis / 100, centis % 100)
                })
                .unwrap_or_default();
            let cells = vec![
                s[0].to_string(),
                s[1].to_string(),
                s[2].to_string(),
                s[3].to_string(),
                s[4].to_string(),
                average,
                longest.map(|l| l.to_string()).unwrap_or_default(),
                micros_text(s[5]),
                micros_text(s[6]),
            ];
            (key, cells)
        })
        .collect()
}

fn exported_stats(
    store: &[&str],
    table: &str,
    date: &str,
) -> BTreeMap<(Option<i64>, String, String), Vec<String>> {
    let out = run_ok(
        cdrflow()
            .args(store)
            .args(["export", table, "--date", date]),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let hourly = table == "hourly-stats";
    let header = lines.next().unwrap();
    assert_eq!(
        header,
        if hourly {
            "date,hour,region,event_type,total_events,total_calls,total_sms,total_data_sessions,total_call_duration,avg_call_duration,max_call_duration,total_data_mb,total_revenue"
        } else {
            "date,region,event_type,total_events,total_calls,total_sms,total_data_sessions,total_call_duration,avg_call_duration,max_call_duration,total_data_mb,total_revenue"
        }
    );
    lines
        .map(|line| {
            let mut c: Vec<String> = line.split(',').map(str::to_string).collect();
            assert_eq!(c[0], date, "{line}");
            let hour = hourly.then(|| c.remove(1).parse::<i64>().unwrap());
            let rest = c.split_off(3);
            ((hour, c[1].clone(), c[2].clone()), rest)
        })
        .collect()
}

/// `cdrflow daily` for the day of the events: its statistics match the
/// truth, a second run changes nothing, and once the cleanup removed the
/// raw events, quality check and verify fail and say why.
fn check_daily(store: &[&str], kept: &[&Event], late_events: usize) {
    let date = "2025-11-09";
    let daily = |extra: &[&str]| {
        cdrflow()
            .args(store)
            .args(["daily", "--date", date, "--retries", "0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = daily(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["date"], date);
    assert_eq!(summary["raw_events"], kept.len() as u64);
    assert_eq!(summary["late_events"], late_events as u64);
    let expected_daily = stats_truth(kept, false);
    let expected_hourly = stats_truth(kept, true);
    assert!(
        expected_hourly.keys().any(|k| k.0 == Some(11)),
        "the events span hours"
    );
    assert_eq!(exported_stats(store, "daily-stats", date), expected_daily);
    assert_eq!(exported_stats(store, "hourly-stats", date), expected_hourly);

    let again = daily(&["--step", "run_batch_processing"]);
    assert!(again.status.success());
    assert_eq!(exported_stats(store, "daily-stats", date), expected_daily);
    assert_eq!(exported_stats(store, "hourly-stats", date), expected_hourly);

    // Keeping one day as of the next day removes every raw event of this one.
    let cleanup = cdrflow()
        .args(store)
        .args(["--raw-events-retention-days", "1"])
        .args([
            "daily",
            "--date",
            "2025-11-10",
            "--step",
            "cleanup_old_data",
        ])
        .env("CDRFLOW_LOG", "info")
        .output()
        .unwrap();
    assert!(
        cleanup.status.success(),
        "{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    let stderr = String::from_utf8_lossy(&cleanup.stderr);
    assert!(
        stderr.contains(&format!("removed {} raw events", kept.len())),
        "{stderr}"
    );
    let verify = daily(&["--step", "verify_results"]);
    assert!(!verify.status.success());
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        stderr.contains("daily_stats") && stderr.contains("reconcile"),
        "{stderr}"
    );
    // The statistics outlive the raw events: re-running the batch keeps them.
    let rerun = daily(&["--step", "run_batch_processing"]);
    assert!(!rerun.status.success());
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(stderr.contains("no raw events left"), "{stderr}");
    assert_eq!(exported_stats(store, "daily-stats", date), expected_daily);
    let quality = daily(&["--step", "check_data_quality"]);
    assert!(!quality.status.success());
    let stderr = String::from_utf8_lossy(&quality.stderr);
    assert!(
        stderr.contains("has 0 raw events, fewer than the minimum of 100"),
        "{stderr}"
    );
}

/// (rule, severity, msisdn, event id, window start)
type Anomaly = (
    &'static str,
    &'static str,
    String,
    Option<String>,
    Option<String>,
);

fn exported_anomalies(
    store: &[&str],
) -> BTreeSet<(String, String, String, Option<String>, Option<String>)> {
    let out = run_ok(
        cdrflow()
            .args(store)
            .args(["export", "anomalies", "--format", "jsonl"]),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |k: &str| v[k].as_str().map(str::to_string);
            (
                text("rule").unwrap(),
                text("severity").unwrap(),
                text("msisdn").unwrap(),
                text("event_id"),
                text("window_start"),
            )
        })
        .collect()
}

fn exported_windows(store: &[&str]) -> BTreeMap<WindowKey, [String; 8]> {
    let out = run_ok(
        cdrflow()
            .args(store)
            .args(["export", "windows", "--format", "csv"]),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("window_start,window_end,region,event_type,total_events,incoming_calls,outgoing_calls,sms_count,total_data_mb,total_recharge_amount,is_final")
    );
    lines
        .map(|line| {
            let c: Vec<&str> = line.split(',').collect();
            assert_eq!(c.len(), 11, "{line}");
            (
                (c[0].to_string(), c[2].to_string(), c[3].to_string()),
                [1, 4, 5, 6, 7, 8, 9, 10].map(|i| c[i].to_string()),
            )
        })
        .collect()
}

fn exported_late(store: &[&str]) -> BTreeMap<String, (String, i64)> {
    let out = run_ok(
        cdrflow()
            .args(store)
            .args(["export", "late-events", "--format", "jsonl"]),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let lateness: f64 = v["lateness_sec"].as_str().unwrap().parse().unwrap();
            (
                v["event_id"].as_str().unwrap().to_string(),
                (
                    v["window_start"].as_str().unwrap().to_string(),
                    (lateness * 1000.0).round() as i64,
                ),
            )
        })
        .collect()
}

fn check_store(dir: &Path, store: &[&str]) {
    let (h_events, h_lines) = history();
    let (a_events, a_lines) = partition(1, 3000, &[]);
    let (b_events, b_lines) = partition(2, 2000, &a_events);
    let h = dir.join("history.jsonl");
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");
    std::fs::write(&h, h_lines.join("\n") + "\n").unwrap();
    std::fs::write(&a, a_lines.join("\n") + "\n").unwrap();
    std::fs::write(&b, b_lines.join("\n") + "\n").unwrap();
    run_ok(
        cdrflow()
            .args(store)
            .args(["process", "--batch-size", "97"])
            .args([&h, &a, &b]),
    );
    let all: Vec<&Event> = h_events.iter().chain(&a_events).chain(&b_events).collect();
    let (windows, late, anomalies, kept) = truth(&[&h_lines, &a_lines, &b_lines], &all);
    for rule in [
        "long_call",
        "large_data_session",
        "large_recharge",
        "high_frequency",
        "sim_box",
        "wangiri",
        "impossible_travel",
        "volume_spike",
    ] {
        assert!(
            anomalies.iter().any(|a| a.0 == rule),
            "the data fires {rule}"
        );
    }
    let anomalies: BTreeSet<_> = anomalies
        .into_iter()
        .map(|(r, s, m, e, w)| (r.to_string(), s.to_string(), m, e, w))
        .collect();
    assert!(late.len() > 50, "the data has late events: {}", late.len());
    assert!(
        windows.keys().any(|k| k.1 == "unknown"),
        "seed 000 records have no region"
    );
    assert_eq!(exported_windows(store), windows);
    assert_eq!(exported_late(store), late);
    assert_eq!(exported_anomalies(store), anomalies);
    assert!(
        anomalies.iter().any(|a| a.2 == MASKED),
        "masked numbers fire rules too"
    );
    let summaries = run_ok(cdrflow().args(store).args(["export", "summaries"]));
    let summaries = String::from_utf8(summaries.stdout).unwrap();
    assert!(summaries.contains("+77011200"), "real numbers have usage");
    assert!(
        !summaries.contains('*'),
        "masked numbers are never rated or summarised"
    );

    // Read again: nothing is added twice.
    run_ok(cdrflow().args(store).args(["process"]).args([&h, &a, &b]));
    assert_eq!(exported_windows(store), windows);
    assert_eq!(exported_late(store).len(), late.len());
    assert_eq!(exported_anomalies(store), anomalies);

    let day = |e: &&&Event| e.time_ms >= T0 - 10 * HOUR_MS;
    let kept: Vec<&Event> = kept.iter().filter(day).copied().collect();
    check_daily(store, &kept, late.len());
}

#[test]
fn windows_and_late_events_match_an_independent_computation_sqlite() {
    let dir = temp_dir("analytics-sqlite");
    let data = dir.join("data");
    check_store(&dir, &["--data-dir", data.to_str().unwrap()]);
}

#[test]
fn windows_and_late_events_match_an_independent_computation_postgres() {
    let dir = temp_dir("analytics-postgres");
    let url = postgres_database("analytics");
    check_store(
        &dir,
        &["--store", &url, "--data-dir", dir.to_str().unwrap()],
    );
}
