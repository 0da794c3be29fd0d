//! Synthetic, realistic CDRs for demos, tests and benchmarks.
//!
//! Deterministic: the same [`SynthConfig`] always yields the same lines.
//! Event time advances through the configured days as a live feed's does
//! (busier at peak hours), each record up to [`JITTER_MS`] early — within
//! the windows' allowed lateness — and late arrivals well behind it.
//! Seed 003's traffic mix (50% data, 25% calls, 15% SMS, 7% recharges, 3%
//! activations), peak hours, regions with their cell towers, subscriber
//! numbers in the spellings operators really send — and on request, faults:
//! broken records, duplicates and late arrivals.

use std::fmt::Write as _;

use crate::normalize::{format_timestamp, EpochMillis};

/// Which of the source formats to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthFormat {
    /// All three formats interleaved: half telecom_events, a quarter each cdr_data and cdr_voice.
    Mixed,
    TelecomEvents,
    CdrData,
    CdrVoice,
}

impl SynthFormat {
    pub fn parse(text: &str) -> Result<SynthFormat, String> {
        match text {
            "mixed" => Ok(SynthFormat::Mixed),
            "telecom-events" => Ok(SynthFormat::TelecomEvents),
            "cdr-data" => Ok(SynthFormat::CdrData),
            "cdr-voice" => Ok(SynthFormat::CdrVoice),
            _ => Err(format!(
                "unknown format `{text}`; expected mixed, telecom-events, cdr-data or cdr-voice"
            )),
        }
    }
}

/// Whose network the traffic looks like: seed 000's South African operator
/// (+27 numbers, provinces, ZAR recharges), seed 003's Kazakh one (+7
/// numbers, its regions, KZT recharges) or seed 001's Moroccan one (+212
/// numbers, its regions, MAD recharges, called numbers national and
/// international, raw radio technology codes, and fields left out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    #[default]
    Za,
    Kz,
    Ma,
}

impl Profile {
    pub fn parse(text: &str) -> Result<Profile, String> {
        match text {
            "za" => Ok(Profile::Za),
            "kz" => Ok(Profile::Kz),
            "ma" => Ok(Profile::Ma),
            _ => Err(format!("unknown profile `{text}`; expected za, kz or ma")),
        }
    }

    pub fn regions(self) -> &'static [&'static str] {
        match self {
            Profile::Za => &ZA_REGIONS,
            Profile::Kz => &KZ_REGIONS,
            Profile::Ma => &MA_REGIONS,
        }
    }

    /// The first of the numbers subscribers are drawn from (10^7 of them).
    fn first_number(self) -> u64 {
        match self {
            Profile::Za => 27_820_000_000,
            Profile::Kz => 77_010_000_000,
            Profile::Ma => 212_600_000_000,
        }
    }

    /// Voucher values, in the currency's units.
    fn recharges(self) -> &'static [u32] {
        match self {
            Profile::Za => &[10, 20, 29, 50, 100, 200, 500],
            Profile::Kz => &[500, 1000, 2000, 3000, 5000, 10_000, 20_000],
            Profile::Ma => &[10, 20, 30, 50, 100, 200],
        }
    }

    /// `number` (with its country code) as a person might type it.
    fn spelled(self, number: u64) -> String {
        match self {
            Profile::Za => {
                let national = number % 1_000_000_000;
                format!(
                    "+27 {} {:03} {:04}",
                    national / 10_000_000,
                    national / 10_000 % 1000,
                    national % 10_000
                )
            }
            Profile::Kz => {
                let national = number % 10_000_000_000;
                format!(
                    "+7 {:03} {:03} {:02} {:02}",
                    national / 10_000_000,
                    national / 10_000 % 1000,
                    national / 100 % 100,
                    national % 100
                )
            }
            Profile::Ma => {
                let national = number % 1_000_000_000;
                format!(
                    "+212 {:03}-{:06}",
                    national / 1_000_000,
                    national % 1_000_000
                )
            }
        }
    }
}

/// Fault rates, each a fraction of emitted records in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    pub bad: f64,
    pub duplicate: f64,
    pub late: f64,
    /// Records past one of seed 003's anomaly thresholds, or (four in
    /// seven) the start of a fraud pattern: a burst of [`BURST_EVENTS`] SMS
    /// from one subscriber, a SIM box's [`SIM_BOX_CALLS`], a wangiri
    /// caller's [`WANGIRI_CALLS`], a subscriber in two regions at once.
    pub anomaly: f64,
}

/// Events in a burst: past the default `high_frequency` threshold of 100.
pub const BURST_EVENTS: u32 = 120;

impl Faults {
    /// Parses `bad=0.01,dup=0.02,late=0.005`.
    pub fn parse(text: &str) -> Result<Faults, String> {
        let mut faults = Faults::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                format!("fault `{part}` should look like name=rate, e.g. bad=0.01")
            })?;
            let rate: f64 = value
                .parse()
                .map_err(|_| format!("fault rate `{value}` is not a number"))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("fault rate `{value}` must be between 0 and 1"));
            }
            match name {
                "bad" => faults.bad = rate,
                "dup" | "duplicate" => faults.duplicate = rate,
                "late" => faults.late = rate,
                "anomaly" => faults.anomaly = rate,
                _ => {
                    return Err(format!(
                        "unknown fault `{name}`; expected bad, dup, late or anomaly"
                    ))
                }
            }
        }
        Ok(faults)
    }
}

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub seed: u64,
    pub format: SynthFormat,
    pub subscribers: u32,
    /// First day of traffic (UTC midnight).
    pub start: EpochMillis,
    pub days: u32,
    /// Lines to be generated: event time reaches the last day's end with the last.
    pub count: u64,
    /// A live feed at this many lines a second: event time starts at
    /// `start` (an instant, not a midnight) and advances 1/rate s a line,
    /// ignoring `days` — the generator paces its output to match.
    pub live_rate: Option<u64>,
    pub faults: Faults,
    pub profile: Profile,
}

/// How far a record's event time may be behind the feed's: less than the
/// windows' default allowed lateness, so only late faults are late.
pub const JITTER_MS: i64 = 30_000;
/// Late arrivals are this far behind the feed, or more (up to an hour): past
/// their window's close.
pub const LATE_MS: i64 = 7 * 60_000;

/// What the generator decided for a line, so tests can build ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Clean,
    Bad,
    Duplicate,
    Late,
    Anomaly,
}

/// Calls from a SIM box: past the default `sim_box` threshold of 50 in an hour.
pub const SIM_BOX_CALLS: u32 = 60;
/// One-ring calls from one international number: past `wangiri`'s 20.
pub const WANGIRI_CALLS: u32 = 25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatternKind {
    /// SMS from one subscriber: `high_frequency`.
    Burst,
    /// Outgoing calls from one SIM in one cell and nothing else: `sim_box`.
    SimBox,
    /// Very short incoming calls from one international number to many subscribers.
    Wangiri,
    /// A subscriber in two regions half a minute apart: `impossible_travel`.
    Travel,
}

impl PatternKind {
    fn name(self) -> &'static str {
        match self {
            PatternKind::Burst => "burst",
            PatternKind::SimBox => "simbox",
            PatternKind::Wangiri => "wangiri",
            PatternKind::Travel => "travel",
        }
    }
}

/// A fraud pattern under way: several lines about one subject.
struct Pattern {
    kind: PatternKind,
    /// The subscriber, SIM or calling number the pattern is about.
    subject: String,
    region: &'static str,
    time: EpochMillis,
    left: u32,
}

const ZA_REGIONS: [&str; 9] = [
    "Gauteng",
    "Western Cape",
    "KwaZulu-Natal",
    "Eastern Cape",
    "Free State",
    "Limpopo",
    "Mpumalanga",
    "North West",
    "Northern Cape",
];
/// Seed 001's network: Morocco's regions.
const MA_REGIONS: [&str; 8] = [
    "Casablanca-Settat",
    "Rabat-Sale-Kenitra",
    "Marrakech-Safi",
    "Fes-Meknes",
    "Tanger-Tetouan-Al Hoceima",
    "Souss-Massa",
    "Oriental",
    "Beni Mellal-Khenifra",
];
/// Radio technology codes as seed 001's network writes them.
const MA_TECHNOLOGIES: [&str; 4] = ["LTE", "UMTS", "GSM", "NR"];
/// Seed 003's regions.
const KZ_REGIONS: [&str; 8] = [
    "Almaty",
    "Astana",
    "Shymkent",
    "Aktobe",
    "Karaganda",
    "Atyrau",
    "Pavlodar",
    "Kostanay",
];
const DATA_TYPES: [&str; 6] = [
    "video",
    "social",
    "browsing",
    "streaming",
    "gaming",
    "email",
];
const CALL_TYPES: [&str; 3] = ["voice", "international", "roaming"];
const ACTIVATIONS: [&str; 4] = ["data_bundle", "roaming", "caller_tune", "voicemail"];
/// Relative traffic per hour of day: quiet nights, peaks 9-12 and 18-22.
const HOUR_WEIGHTS: [u32; 24] = [
    1, 1, 1, 1, 1, 2, 3, 4, 5, 8, 8, 8, 6, 5, 5, 5, 5, 6, 8, 8, 8, 8, 4, 2,
];
const RECENT_LINES: usize = 256;

/// Cell towers per region, numbered `1000 × (region + 1) + 0..`.
const TOWERS_PER_REGION: u64 = 400;

/// [`Synth::reference_files`]: CSV text for `cdrflow reference load`.
pub struct ReferenceFiles {
    pub subscribers: String,
    pub customers: String,
    pub cells: String,
}

pub struct Synth {
    config: SynthConfig,
    rng: SplitMix64,
    subscribers: Vec<u64>,
    emitted: u64,
    recent: Vec<String>,
    /// A pattern under way: the rest of its lines come before anything else.
    pattern: Option<Pattern>,
}

impl Synth {
    pub fn new(config: SynthConfig) -> Synth {
        let mut rng = SplitMix64(config.seed);
        let subscribers = (0..config.subscribers.max(1))
            .map(|_| config.profile.first_number() + rng.below(10_000_000))
            .collect();
        Synth {
            config,
            rng,
            subscribers,
            emitted: 0,
            recent: Vec::with_capacity(RECENT_LINES),
            pattern: None,
        }
    }

    /// The reference data of the generated network, as the CSV files
    /// `cdrflow reference load` reads: each subscriber with a customer of
    /// its own (three in ten postpaid, bill-cycle days spread over the
    /// month) on `plan`, and every cell tower with its region and
    /// technology.
    pub fn reference_files(&self, plan: &str) -> ReferenceFiles {
        let mut files = ReferenceFiles {
            subscribers: "msisdn,customer_id,plan_id,region,status,payment,activation_date\n"
                .into(),
            customers: "customer_id,name,billing_country,bill_cycle_day\n".into(),
            cells: "cell_id,region,technology\n".into(),
        };
        let country = match self.config.profile {
            Profile::Za => "ZA",
            Profile::Kz => "KZ",
            Profile::Ma => "MA",
        };
        let regions = self.config.profile.regions();
        for (i, &n) in self.subscribers.iter().enumerate() {
            let region = regions[(n % regions.len() as u64) as usize];
            let payment = if n % 10 < 3 { "postpaid" } else { "prepaid" };
            let activated = crate::normalize::Day(19_358 + (n % 365) as i32);
            let _ = writeln!(
                files.subscribers,
                "+{n},C{i:06},{plan},{region},active,{payment},{activated}"
            );
            let _ = writeln!(
                files.customers,
                "C{i:06},Customer {i},{country},{}",
                1 + n % 28
            );
        }
        for (index, region) in regions.iter().enumerate() {
            for tower in 0..TOWERS_PER_REGION {
                let id = 1000 + index as u64 * 1000 + tower;
                let code = MA_TECHNOLOGIES[(id % MA_TECHNOLOGIES.len() as u64) as usize];
                let _ = writeln!(files.cells, "{id},{region},{code}");
            }
        }
        files
    }

    /// Writes the next line (without newline) into `out` and says what it is.
    pub fn next_line(&mut self, out: &mut String) -> LineKind {
        out.clear();
        self.emitted += 1;
        if let Some(mut pattern) = self.pattern.take() {
            self.pattern_line(&mut pattern, out);
            if pattern.left > 1 {
                pattern.left -= 1;
                self.pattern = Some(pattern);
            }
            return LineKind::Anomaly;
        }
        let faults = self.config.faults;
        let roll = self.rng.unit();
        let kind = if roll < faults.bad {
            LineKind::Bad
        } else if roll < faults.bad + faults.duplicate && !self.recent.is_empty() {
            LineKind::Duplicate
        } else if roll < faults.bad + faults.duplicate + faults.late {
            LineKind::Late
        } else if roll < faults.bad + faults.duplicate + faults.late + faults.anomaly {
            LineKind::Anomaly
        } else {
            LineKind::Clean
        };
        match kind {
            LineKind::Bad => self.bad_line(out),
            LineKind::Anomaly => self.anomalous_line(out),
            LineKind::Duplicate => {
                let i = self.rng.below(self.recent.len() as u64) as usize;
                out.push_str(&self.recent[i]);
            }
            LineKind::Late | LineKind::Clean => {
                let behind = match kind {
                    LineKind::Late => LATE_MS + self.rng.below(3_600_000 - LATE_MS as u64) as i64,
                    _ => self.rng.below(JITTER_MS as u64) as i64,
                };
                let time = self.feed_time() - behind;
                self.clean_line(time, out);
                if self.recent.len() < RECENT_LINES {
                    self.recent.push(out.clone());
                } else {
                    let i = self.rng.below(RECENT_LINES as u64) as usize;
                    self.recent[i].clone_from(out);
                }
            }
        }
        kind
    }

    /// Where the feed's event time stands at the current line: the days
    /// spread over the planned lines by the weight of each hour.
    fn feed_time(&self) -> EpochMillis {
        if let Some(rate) = self.config.live_rate.filter(|&r| r > 0) {
            let done = self.emitted.saturating_sub(1);
            return self.config.start + (u128::from(done) * 1000 / u128::from(rate)) as i64;
        }
        let total: u64 = HOUR_WEIGHTS.iter().map(|&w| u64::from(w)).sum();
        let days = u64::from(self.config.days.max(1));
        let done = (self.emitted - 1).min(self.config.count.max(1) - 1);
        // Position in weight-milliseconds: each hour is worth its weight.
        let position = u128::from(done) * u128::from(days * total * 3_600_000)
            / u128::from(self.config.count.max(1));
        let position = position as u64;
        let (day, mut within) = (
            position / (total * 3_600_000),
            position % (total * 3_600_000),
        );
        let mut hour = 0;
        for (h, &weight) in HOUR_WEIGHTS.iter().enumerate() {
            let span = u64::from(weight) * 3_600_000;
            if within < span {
                hour = h as u64;
                break;
            }
            within -= span;
        }
        let into_hour = within / u64::from(HOUR_WEIGHTS[hour as usize]);
        self.config.start + ((day * 24 + hour) * 3_600_000 + into_hour) as i64
    }

    /// A subscriber: its number, in one of the spellings operators send,
    /// and its home region (where all its clean records are: a subscriber
    /// who moves between regions is the `impossible_travel` pattern's).
    fn subscriber(&mut self) -> (String, &'static str) {
        let (n, home) = self.pick();
        let profile = self.config.profile;
        let spelled = match self.rng.below(20) {
            // National spelling: only where the default country code (27) applies.
            0 if profile == Profile::Za => format!("0{}", n % 1_000_000_000),
            1 => profile.spelled(n),
            2 => format!("{n}"),
            _ => format!("+{n}"),
        };
        (spelled, home)
    }

    fn clean_line(&mut self, time: EpochMillis, out: &mut String) {
        let format = match self.config.format {
            SynthFormat::Mixed => match self.rng.below(4) {
                0 | 1 => SynthFormat::TelecomEvents,
                2 => SynthFormat::CdrData,
                _ => SynthFormat::CdrVoice,
            },
            other => other,
        };
        let (msisdn, home) = self.subscriber();
        let at = format_timestamp(time);
        let id = self.emitted;
        let seed = self.config.seed;
        match format {
            SynthFormat::CdrData => {
                let data_type = DATA_TYPES[self.rng.below(6) as usize];
                let (up, down) = (self.rng.below(5_000_000), self.rng.below(50_000_000));
                let _ = write!(
                    out,
                    r#"{{"cdr_id":"d{seed}-{id}","msisdn":"{msisdn}","event_datetime":"{at}","data_type":"{data_type}","up_bytes":{up},"down_bytes":{down}}}"#
                );
            }
            SynthFormat::CdrVoice => {
                let call_type = CALL_TYPES[self.rng.below(3) as usize];
                let seconds = 1 + self.rng.below(3600);
                let _ = write!(
                    out,
                    r#"{{"cdr_id":"v{seed}-{id}","msisdn":"{msisdn}","start_time":"{at}","call_type":"{call_type}","call_duration_sec":{seconds}}}"#
                );
            }
            SynthFormat::TelecomEvents | SynthFormat::Mixed => {
                self.telecom_event(&msisdn, home, &at, out)
            }
        }
    }

    fn telecom_event(&mut self, msisdn: &str, region: &str, at: &str, out: &mut String) {
        let tower = self.tower(region);
        let event_id = format!("{:016x}-{:016x}", self.rng.next(), self.rng.next());
        let direction = if self.rng.below(2) == 0 {
            "outgoing"
        } else {
            "incoming"
        };
        let roll = self.rng.below(100);
        let _ = write!(out, r#"{{"event_id":"{event_id}","msisdn":"{msisdn}","#);
        match roll {
            0..=49 => {
                // Decimal megabytes, as seed 003 sends them: whole kilobytes, never float noise.
                let kb = self.rng.below(500_000);
                let _ = write!(
                    out,
                    r#""event_type":"data_session","data_mb":{}.{:03},"#,
                    kb / 1000,
                    kb % 1000
                );
            }
            50..=74 => {
                let seconds = 1 + self.rng.below(1800);
                let _ = write!(
                    out,
                    r#""event_type":"call","event_subtype":"{direction}","duration_seconds":{seconds},"#
                );
            }
            75..=89 => {
                let _ = write!(out, r#""event_type":"sms","event_subtype":"{direction}","#);
            }
            90..=96 => {
                let vouchers = self.config.profile.recharges();
                let amount = vouchers[self.rng.below(vouchers.len() as u64) as usize];
                let _ = write!(
                    out,
                    r#""event_type":"balance_recharge","event_subtype":"voucher","amount":{amount}.00,"#
                );
            }
            _ => {
                let service = ACTIVATIONS[self.rng.below(4) as usize];
                let _ = write!(
                    out,
                    r#""event_type":"service_activation","event_subtype":"{service}","#
                );
            }
        }
        if self.config.profile == Profile::Ma {
            let called = (50..=89).contains(&roll) && direction == "outgoing";
            if !self.seed_001_fields(called, tower, out) {
                // A record whose region the network left out.
                let _ = write!(out, r#""cell_tower_id":{tower},"timestamp":"{at}"}}"#);
                return;
            }
        }
        let _ = write!(
            out,
            r#""region":"{region}","cell_tower_id":{tower},"timestamp":"{at}"}}"#
        );
    }

    /// Seed 001's fields: the called number of an outgoing call or message
    /// (mostly national mobiles, some on-net, fixed and international
    /// numbers, a few left out) and the cell's radio technology as a raw
    /// code (sometimes left out). False: leave the region out too.
    fn seed_001_fields(&mut self, called: bool, tower: u64, out: &mut String) -> bool {
        if called {
            let digits = self.rng.below(1_000_000);
            let _ = match self.rng.below(100) {
                0..=59 => write!(
                    out,
                    r#""other_party":"06{:02}{digits:06}","#,
                    12 + self.rng.below(80)
                ),
                60..=69 => write!(out, r#""other_party":"+2126610{:05}","#, digits % 100_000),
                70..=79 => write!(
                    out,
                    r#""other_party":"05{:02}{digits:06}","#,
                    22 + self.rng.below(70)
                ),
                80..=89 => write!(
                    out,
                    r#""other_party":"+336{:02}{digits:06}","#,
                    self.rng.below(100)
                ),
                90..=96 => write!(
                    out,
                    r#""other_party":"+1415{digits:06}{}","#,
                    self.rng.below(10)
                ),
                // Left out: a record the catalogue cannot price (no_rate).
                _ => Ok(()),
            };
        }
        if self.rng.below(20) != 0 {
            let code = MA_TECHNOLOGIES[(tower % MA_TECHNOLOGIES.len() as u64) as usize];
            let _ = write!(out, r#""radio_technology":"{code}","#);
        }
        self.rng.below(40) != 0
    }

    /// A subscriber's number and home region.
    fn pick(&mut self) -> (u64, &'static str) {
        let n = self.subscribers[self.rng.below(self.subscribers.len() as u64) as usize];
        let regions = self.config.profile.regions();
        (n, regions[(n % regions.len() as u64) as usize])
    }

    /// A cell tower of `region`: towers are numbered by region.
    fn tower(&mut self, region: &str) -> u64 {
        let regions = self.config.profile.regions();
        let index = regions.iter().position(|r| *r == region).unwrap_or(0) as u64;
        1000 + index * 1000 + self.rng.below(TOWERS_PER_REGION)
    }

    /// A number drawn from the subscribers' range but (almost surely) none
    /// of theirs: a SIM or caller seen doing nothing else.
    fn stranger(&mut self) -> String {
        format!(
            "+{}",
            self.config.profile.first_number() + self.rng.below(10_000_000)
        )
    }

    /// A record past one of seed 003's thresholds, or the first line of a
    /// fraud pattern (the rest follow: [`Pattern`]).
    fn anomalous_line(&mut self, out: &mut String) {
        let time = self.feed_time() - self.rng.below(JITTER_MS as u64) as i64;
        let (subscriber, home) = self.pick();
        let msisdn = format!("+{subscriber}");
        let at = format_timestamp(time);
        let id = format!("anomaly-{}-{}", self.config.seed, self.emitted);
        let head = format!(
            r#"{{"event_id":"{id}","msisdn":"{msisdn}","region":"{home}","cell_tower_id":1001,"timestamp":"{at}","#
        );
        let (kind, lines) = match self.rng.below(7) {
            0 => {
                let _ = write!(
                    out,
                    r#"{head}"event_type":"call","event_subtype":"outgoing","duration_seconds":{}}}"#,
                    14_401 + self.rng.below(14_400)
                );
                return;
            }
            1 => {
                let _ = write!(
                    out,
                    r#"{head}"event_type":"data_session","data_mb":{}.5}}"#,
                    10_240 + self.rng.below(10_000)
                );
                return;
            }
            2 => {
                let _ = write!(
                    out,
                    r#"{head}"event_type":"balance_recharge","event_subtype":"voucher","amount":{}.00}}"#,
                    50_001 + self.rng.below(50_000)
                );
                return;
            }
            3 => (PatternKind::Burst, BURST_EVENTS),
            4 => (PatternKind::SimBox, SIM_BOX_CALLS),
            5 => (PatternKind::Wangiri, WANGIRI_CALLS),
            _ => (PatternKind::Travel, 2),
        };
        let subject = match kind {
            PatternKind::Burst | PatternKind::Travel => msisdn,
            PatternKind::SimBox => self.stranger(),
            PatternKind::Wangiri => format!("+44 7911 {:06}", self.rng.below(1_000_000)),
        };
        let mut pattern = Pattern {
            kind,
            subject,
            region: home,
            time,
            left: lines,
        };
        self.pattern_line(&mut pattern, out);
        pattern.left -= 1;
        self.pattern = Some(pattern);
    }

    /// The next line of a fraud pattern, at the pattern's time (all in one
    /// window and hour).
    fn pattern_line(&mut self, pattern: &mut Pattern, out: &mut String) {
        let at = format_timestamp(pattern.time);
        let id = format!(
            "{}-{}-{}",
            pattern.kind.name(),
            self.config.seed,
            self.emitted
        );
        let subject = &pattern.subject;
        let region = pattern.region;
        let _ = match pattern.kind {
            PatternKind::Burst => write!(
                out,
                r#"{{"event_id":"{id}","msisdn":"{subject}","event_type":"sms","event_subtype":"outgoing","region":"{region}","cell_tower_id":1001,"timestamp":"{at}"}}"#,
            ),
            PatternKind::SimBox => write!(
                out,
                r#"{{"event_id":"{id}","msisdn":"{subject}","event_type":"call","event_subtype":"outgoing","duration_seconds":{},"region":"{region}","cell_tower_id":1001,"timestamp":"{at}"}}"#,
                20 + self.rng.below(160)
            ),
            PatternKind::Wangiri => {
                let (victim, home) = self.subscriber();
                write!(
                    out,
                    r#"{{"event_id":"{id}","msisdn":"{victim}","other_party":"{subject}","event_type":"call","event_subtype":"incoming","duration_seconds":{},"region":"{home}","cell_tower_id":{},"timestamp":"{at}"}}"#,
                    self.rng.below(4),
                    self.tower(home)
                )
            }
            PatternKind::Travel if pattern.left > 1 => write!(
                out,
                r#"{{"event_id":"{id}","msisdn":"{subject}","event_type":"sms","event_subtype":"outgoing","region":"{region}","cell_tower_id":{},"timestamp":"{at}"}}"#,
                self.tower(region)
            ),
            PatternKind::Travel => {
                // The same subscriber half a minute later, in another region.
                let regions = self.config.profile.regions();
                let next = regions.iter().position(|r| *r == region).unwrap_or(0) + 1;
                let away = regions[next % regions.len()];
                let later = format_timestamp(pattern.time + 30_000);
                write!(
                    out,
                    r#"{{"event_id":"{id}","msisdn":"{subject}","event_type":"sms","event_subtype":"outgoing","region":"{away}","cell_tower_id":{},"timestamp":"{later}"}}"#,
                    self.tower(away)
                )
            }
        };
    }

    fn bad_line(&mut self, out: &mut String) {
        let at = format_timestamp(self.feed_time());
        let id = self.emitted;
        let _ = match self.rng.below(7) {
            0 => write!(
                out,
                r#"{{"cdr_id":"bad-{id}","msisdn":"+27821234567","event_datetime":"{at}","data_type":"video","up_bytes":10"#
            ),
            1 => write!(
                out,
                r#"{{"cdr_id":"bad-{id}","msisdn":"+27821234567","event_datetime":"{at}","data_type":"video","up_bytes":-5,"down_bytes":10}}"#
            ),
            2 => write!(
                out,
                r#"{{"cdr_id":"bad-{id}","msisdn":"77012*34567","start_time":"{at}","call_type":"voice","call_duration_sec":30}}"#
            ),
            3 => write!(
                out,
                r#"{{"cdr_id":"bad-{id}","msisdn":"+27821234567","start_time":"{at}","call_type":"voice"}}"#
            ),
            4 => write!(
                out,
                r#"{{"cdr_id":"bad-{id}","msisdn":"+27821234567","start_time":"2024-02-30T10:00:00Z","call_type":"voice","call_duration_sec":30}}"#
            ),
            5 => write!(
                out,
                r#"{{"event_id":"bad-{id}","msisdn":"+27821234567","event_type":"data_session","data_mb":"lots","timestamp":"{at}"}}"#
            ),
            _ => write!(
                out,
                r#"{{"cdr_id":"bad-{id}","msisdn":"+27821234567","event_datetime":"{at}","data_type":"","up_bytes":1,"down_bytes":1}}"#
            ),
        };
    }
}

/// SplitMix64: tiny, fast and good enough for synthetic traffic (and for
/// the tests' random schedules).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{decode, DecodeOptions};
    use crate::model::{Kind, SourcePosition};

    /// A generated line as the pipeline decodes it; it must decode.
    fn decoded(line: &str) -> crate::model::Cdr<'_> {
        let at = SourcePosition::Line {
            line: 1,
            byte_offset: 0,
        };
        decode(line.as_bytes(), at, &DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn config(faults: Faults) -> SynthConfig {
        SynthConfig {
            seed: 7,
            format: SynthFormat::Mixed,
            subscribers: 100,
            start: 1_709_251_200_000,
            days: 2,
            count: 10_000,
            faults,
            live_rate: None,
            profile: Profile::Za,
        }
    }

    #[test]
    fn the_kz_profile_is_seed_003s_network() {
        let mut synth = Synth::new(SynthConfig {
            format: SynthFormat::TelecomEvents,
            profile: Profile::Kz,
            ..config(Faults::default())
        });
        let mut line = String::new();
        let mut regions = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            synth.next_line(&mut line);
            let cdr = decoded(&line);
            assert!(cdr.served_msisdn.to_string().starts_with("+7701"), "{line}");
            regions.insert(cdr.region.unwrap().into_owned());
            if let Some(amount) = cdr.amount {
                assert!(amount.micros >= 500_000_000, "KZT vouchers: {line}");
            }
        }
        let expected: std::collections::BTreeSet<String> =
            KZ_REGIONS.iter().map(|r| r.to_string()).collect();
        assert_eq!(regions, expected);
    }

    #[test]
    fn the_ma_profile_is_seed_001s_network_with_its_reference_data() {
        use crate::reference::{parse_csv, ReferenceData, ReferenceKind, ReferenceRows};
        let mut synth = Synth::new(SynthConfig {
            format: SynthFormat::TelecomEvents,
            profile: Profile::Ma,
            ..config(Faults::default())
        });
        let (mut line, mut called, mut outgoing, mut no_region) = (String::new(), 0, 0, 0);
        let mut codes = std::collections::BTreeSet::new();
        let mut seen = Vec::new();
        for _ in 0..4000 {
            synth.next_line(&mut line);
            let cdr = decoded(&line);
            assert!(cdr.served_msisdn.to_string().starts_with("+2126"), "{line}");
            if let Some(amount) = cdr.amount {
                assert!(amount.micros >= 10_000_000, "MAD vouchers: {line}");
            }
            let is_outgoing = cdr.direction == crate::model::Direction::Outgoing
                && matches!(
                    cdr.kind,
                    crate::model::Kind::Voice | crate::model::Kind::Sms
                );
            outgoing += u64::from(is_outgoing);
            called += u64::from(is_outgoing && cdr.other_party.is_some());
            no_region += u64::from(cdr.region.is_none());
            codes.extend(cdr.radio_technology.map(|c| c.into_owned()));
            seen.push((
                cdr.served_msisdn,
                cdr.start_time,
                cdr.cell_id.map(|c| c.into_owned()),
            ));
        }
        // 97% of outgoing calls and messages name the called number; about
        // one record in 40 has no region.
        assert!(
            called * 100 > outgoing * 93 && called < outgoing,
            "{called} of {outgoing}"
        );
        assert!((40..=200).contains(&no_region), "{no_region}");
        let expected: std::collections::BTreeSet<String> =
            MA_TECHNOLOGIES.iter().map(|c| c.to_string()).collect();
        assert_eq!(codes, expected);

        let files = synth.reference_files("prepaid-basic");
        let home = crate::normalize::CountryCode::parse("212").unwrap();
        let mut data = ReferenceData::default();
        for (kind, text) in [
            (ReferenceKind::Subscribers, &files.subscribers),
            (ReferenceKind::Customers, &files.customers),
            (ReferenceKind::Cells, &files.cells),
        ] {
            let rows = parse_csv(kind, text, home).unwrap();
            if let ReferenceRows::Subscribers(rows) = &rows {
                assert!(rows
                    .iter()
                    .any(|r| r.payment == crate::reference::Payment::Postpaid));
            }
            data.put(rows);
        }
        for (msisdn, at, cell) in seen {
            let subscriber = data
                .subscriber_at(msisdn, at)
                .expect("every subscriber is in the file");
            assert!(data.customer_at(&subscriber.customer_id, at).is_some());
            assert!(
                data.cell_at(&cell.unwrap(), at).is_some(),
                "every cell is in the file"
            );
        }
    }

    #[test]
    fn a_live_feed_follows_its_rate_not_the_days() {
        let start = 1_762_682_415_123; // 2025-11-09T10:00:15.123Z: no midnight
        let mut synth = Synth::new(SynthConfig {
            start,
            live_rate: Some(1000),
            ..config(Faults::default())
        });
        let mut line = String::new();
        let mut newest = i64::MIN;
        for _ in 0..5000 {
            synth.next_line(&mut line);
            let cdr = decoded(&line);
            // Seconds-precision formats may round the start down.
            assert!(cdr.start_time >= start - JITTER_MS - 1000, "{line}");
            assert!(cdr.start_time < start + 5000, "{line}");
            newest = newest.max(cdr.start_time);
        }
        // 5000 lines at 1000/s span 5 s, less rounding to whole seconds.
        assert!(newest >= start + 3000, "{newest}");
    }

    #[test]
    fn deterministic_and_decodable() {
        let (mut a, mut b) = (
            Synth::new(config(Faults::default())),
            Synth::new(config(Faults::default())),
        );
        let (mut la, mut lb) = (String::new(), String::new());
        let mut kinds = std::collections::BTreeMap::new();
        for _ in 0..5000 {
            a.next_line(&mut la);
            b.next_line(&mut lb);
            assert_eq!(la, lb);
            let cdr = decoded(&la);
            *kinds.entry(cdr.kind).or_insert(0) += 1;
        }
        assert_eq!(kinds.len(), 5, "all five kinds appear: {kinds:?}");
        assert!(kinds[&Kind::Data] > kinds[&Kind::Voice], "{kinds:?}");
    }

    #[test]
    fn injects_faults_at_the_requested_rates() {
        let mut synth = Synth::new(config(Faults {
            bad: 0.1,
            duplicate: 0.1,
            late: 0.1,
            anomaly: 0.0,
        }));
        let mut line = String::new();
        let mut bad = 0;
        for _ in 0..10_000 {
            if synth.next_line(&mut line) == LineKind::Bad {
                bad += 1;
                assert!(
                    decode(
                        line.as_bytes(),
                        SourcePosition::Line {
                            line: 1,
                            byte_offset: 0
                        },
                        &DecodeOptions::default()
                    )
                    .is_err(),
                    "{line}"
                );
            }
        }
        assert!((800..1200).contains(&bad), "{bad}");
        assert_eq!(
            Faults::parse("bad=0.01, dup=0.5").unwrap(),
            Faults {
                bad: 0.01,
                duplicate: 0.5,
                late: 0.0,
                anomaly: 0.0,
            }
        );
        assert!(Faults::parse("bad=2").is_err());
    }
}
