//! Anomaly and fraud rules, as an operator after the windows.
//!
//! Thresholds and severities come from a rules file ([`DEFAULT_RULES_TOML`],
//! `config/rules.toml`, which documents each rule). Seed 003's four:
//! `long_call`, `large_data_session` and `large_recharge` look at one record
//! (late ones too: they are not windowed); `high_frequency` counts one
//! MSISDN's records per window. Beyond the seed, on the fields a record
//! carries: `sim_box` and `wangiri` per hour, `impossible_travel` against
//! the subscriber's latest region, `volume_spike` per region and event type
//! against its own baseline for the hour of the week.
//!
//! Every stateful rule sees on-time records only (a late record counts in
//! no window, so in no windowed rule) and fires once, on the record that
//! makes its condition true — not when a window or an hour closes, so an
//! alert leaves within a batch. Its state is a [`tally::Buckets`] of small
//! per-key tallies, committed with every checkpoint and read back on
//! restart, so an anomaly never fires twice nor is missed after one.

mod config;
mod high_frequency;
mod sim_box;
pub mod tally;
mod travel;
mod volume;
mod wangiri;

use crate::analytics::windows::Placement;
use crate::mediation::Rated;
use crate::model::Kind;
use crate::normalize::{CountryCode, EpochMillis, Msisdn};
use crate::operator::{
    BatchContext, Checkpoint, Operator, ReadError, StateReader, StateTable, StateWriter,
};

pub use config::{
    RulesConfig, RulesError, SimBoxConfig, Threshold, TravelConfig, VolumeSpikeConfig,
    WangiriConfig, DEFAULT_RULES_TOML,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// An accepted record as the rules see it: where the windows put it.
#[derive(Clone, Copy, Debug)]
pub struct Placed<'a> {
    pub record: &'a Rated<'a>,
    pub window_start: EpochMillis,
    /// Came after its window closed: counts in no windowed rule.
    pub late: bool,
}

impl<'a> Placed<'a> {
    /// The windows' placements beside the records they placed, in order.
    pub fn all(records: &'a [Rated<'a>], placements: &[Placement]) -> Vec<Placed<'a>> {
        debug_assert_eq!(records.len(), placements.len(), "a placement per record");
        records
            .iter()
            .zip(placements)
            .map(|(record, p)| Placed {
                record,
                window_start: p.window_start,
                late: p.late,
            })
            .collect()
    }
}

/// A detected anomaly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub rule: &'static str,
    pub severity: Severity,
    /// Whom it is about: the subscriber, or (`wangiri`) the calling number.
    pub msisdn: Msisdn,
    /// The record that fired it, when it has an id.
    pub event_id: Option<String>,
    pub event_time: EpochMillis,
    /// Rules over a span of time: the start of the window or hour.
    pub window_start: Option<EpochMillis>,
    /// What was seen, against what threshold, for a person.
    pub evidence: String,
    /// The same anomaly always has the same key: alerts are sent at least
    /// once and deduplicated by it downstream.
    pub idempotency_key: String,
}

/// What makes an anomaly the same one again.
enum Identity {
    /// The record that fired it.
    Record,
    /// A span of time (window, hour) and what it counted in it.
    Span { start: EpochMillis, of: String },
}

/// What a rule found, for [`Anomaly`].
struct Finding {
    rule: &'static str,
    severity: Severity,
    /// Whom it is about, if not the record's subscriber.
    msisdn: Option<Msisdn>,
    identity: Identity,
    evidence: String,
}

impl Finding {
    fn anomaly(self, placed: &Placed<'_>) -> Anomaly {
        let r = placed.record;
        let event_id = r.record_id.as_deref().map(str::to_string);
        let (identity, window_start) = match self.identity {
            Identity::Span { start, of } => (format!("{of}:{start}"), Some(start)),
            Identity::Record => (r.source_identity(), None),
        };
        Anomaly {
            rule: self.rule,
            severity: self.severity,
            msisdn: self.msisdn.unwrap_or(r.msisdn),
            event_id,
            event_time: r.start_time,
            window_start,
            evidence: self.evidence,
            idempotency_key: format!("{}:{identity}", self.rule),
        }
    }
}

/// A rule that keeps state: the operator's hooks, per rule. Most rules'
/// state is one [`tally::Buckets`], which the default hooks look after.
trait StatefulRule: Send {
    /// An on-time record; what it makes true goes to `found`.
    fn observe(
        &mut self,
        placed: &Placed<'_>,
        state: &mut dyn StateReader,
        found: &mut Vec<Finding>,
    ) -> Result<(), ReadError>;

    /// Its tallies.
    fn tallies(&mut self) -> &mut dyn tally::TallyState;

    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        self.tallies().on_start(state)
    }

    /// Lets old state leave memory.
    fn handle_watermark(&mut self) {
        self.tallies().evict();
    }

    fn checkpoint(&mut self, state: &mut StateWriter<'_>) {
        self.tallies().checkpoint(state);
    }
}

/// Every table of every rule.
const TABLES: [StateTable; 8] = [
    tally::STORED_UP_TO,
    high_frequency::WINDOW_COUNTS,
    sim_box::SIM_BOX_HOURS,
    travel::LAST_SEEN,
    wangiri::WANGIRI_HOURS,
    volume::VOLUME_WINDOWS,
    volume::BASELINE,
    volume::FOLDED_UP_TO,
];

pub const RULES: &str = "rules";

pub struct Rules {
    config: RulesConfig,
    stateful: Vec<Box<dyn StatefulRule>>,
    found: Vec<Finding>,
    pending: Vec<Anomaly>,
}

impl Rules {
    /// `home` is the network's country: calls from other countries' numbers
    /// are international (`wangiri`).
    pub fn new(config: RulesConfig, window_ms: i64, home: CountryCode) -> Rules {
        let mut stateful: Vec<Box<dyn StatefulRule>> = Vec::new();
        if let Some(c) = config.high_frequency {
            stateful.push(Box::new(high_frequency::HighFrequency::new(c, window_ms)));
        }
        if let Some(c) = config.sim_box {
            stateful.push(Box::new(sim_box::SimBox::new(c)));
        }
        if let Some(c) = &config.impossible_travel {
            stateful.push(Box::new(travel::ImpossibleTravel::new(c.clone())));
        }
        if let Some(c) = config.wangiri {
            stateful.push(Box::new(wangiri::Wangiri::new(c, home)));
        }
        if let Some(c) = config.volume_spike {
            stateful.push(Box::new(volume::VolumeSpike::new(c, window_ms)));
        }
        Rules {
            config,
            stateful,
            found: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Seed 003's rules on one record.
    fn record_rules(&self, r: &Rated<'_>) -> Option<Finding> {
        let c = &self.config;
        let data = r.usage.up_bytes + r.usage.down_bytes;
        let megabytes = |bytes: u64| crate::money::format_micros(i128::from(bytes));
        let amount = |micros: i64| crate::money::format_micros(i128::from(micros));
        let (rule, severity, evidence) = match r.kind {
            Kind::Voice => {
                let t = c.long_call.filter(|t| r.usage.duration_sec > t.above)?;
                let seconds = r.usage.duration_sec;
                let evidence = format!("a {seconds} s call; more than {} s", t.above);
                ("long_call", t.severity, evidence)
            }
            Kind::Data => {
                let t = c.large_data_session.filter(|t| data > t.above)?;
                let evidence = format!(
                    "{} MB in one session; more than {} MB",
                    megabytes(data),
                    megabytes(t.above)
                );
                ("large_data_session", t.severity, evidence)
            }
            Kind::Recharge => {
                let t = c
                    .large_recharge
                    .filter(|t| r.usage.amount_micros > t.above)?;
                let evidence = format!(
                    "a recharge of {}; more than {}",
                    amount(r.usage.amount_micros),
                    amount(t.above)
                );
                ("large_recharge", t.severity, evidence)
            }
            Kind::Sms | Kind::Activation => return None,
        };
        Some(Finding {
            rule,
            severity,
            msisdn: None,
            identity: Identity::Record,
            evidence,
        })
    }
}

impl Operator for Rules {
    type Input<'a> = Placed<'a>;
    type Output<'a> = ();

    fn name(&self) -> &'static str {
        RULES
    }

    fn tables(&self) -> &'static [StateTable] {
        &TABLES
    }

    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        for rule in &mut self.stateful {
            rule.on_start(state)?;
        }
        Ok(())
    }

    fn process_batch<'a>(
        &mut self,
        batch: &[Placed<'a>],
        context: &mut BatchContext<'_>,
        _out: &mut Vec<()>,
    ) -> Result<(), ReadError> {
        for placed in batch {
            if let Some(finding) = self.record_rules(placed.record) {
                self.pending.push(finding.anomaly(placed));
            }
            if placed.late {
                continue;
            }
            for rule in &mut self.stateful {
                rule.observe(placed, context.state, &mut self.found)?;
            }
            self.pending
                .extend(self.found.drain(..).map(|f| f.anomaly(placed)));
        }
        Ok(())
    }

    fn handle_watermark(&mut self, _watermark: EpochMillis) {
        for rule in &mut self.stateful {
            rule.handle_watermark();
        }
    }

    /// Hands over the anomalies and every rule's state changes.
    fn checkpoint(&mut self, out: &mut Checkpoint) {
        out.anomalies.append(&mut self.pending);
        let mut state = out.state_of(RULES);
        for rule in &mut self.stateful {
            rule.checkpoint(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::windows::{WindowConfig, Windows};
    use crate::mediation::{MediationConfig, Mediator, RawRecord};
    use crate::model::SourcePosition;
    use crate::normalize::{parse_timestamp, CountryCode};
    use crate::operator::MemoryState;
    use crate::rating::{Tariff, TariffOverrides};
    use std::collections::BTreeSet;

    /// Mediator → windows → rules over `lines` of one partition, as the
    /// runner chains them, in batches of `batch` lines with the watermark
    /// after each, with the rules' state in `state`; returns the anomalies
    /// of the checkpoint taken at the end (applied to `state`).
    fn run_in_batches(lines: &[String], batch: usize, state: &mut MemoryState) -> Vec<Anomaly> {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        let mut windows = Windows::new(WindowConfig::default());
        let home = CountryCode::parse("7").unwrap();
        let mut rules = Rules::new(
            RulesConfig::default(),
            WindowConfig::default().size_ms,
            home,
        );
        rules.on_start(state).unwrap();
        let records: Vec<RawRecord<'_>> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| RawRecord {
                origin: "f",
                source_id: "f",
                position: SourcePosition::Line {
                    line: i as u64 + 1,
                    byte_offset: 0,
                },
                payload: line.as_bytes(),
                cut_from: None,
            })
            .collect();
        let now = parse_timestamp("2026-01-01T00:00:00Z").unwrap();
        let mut other = MemoryState::new("other");
        for chunk in records.chunks(batch.max(1)) {
            let mut accepted = Vec::new();
            let mut context = BatchContext {
                now,
                state: &mut other,
            };
            mediator
                .process_batch(chunk, &mut context, &mut accepted)
                .unwrap();
            let mut placements: Vec<Placement> = Vec::new();
            windows
                .process_batch(&accepted, &mut context, &mut placements)
                .unwrap();
            let placed = Placed::all(&accepted, &placements);
            rules
                .process_batch(&placed, &mut BatchContext { now, state }, &mut Vec::new())
                .unwrap();
            if let Some(watermark) = mediator.watermark() {
                rules.handle_watermark(watermark);
            }
        }
        let mut cp = Checkpoint::default();
        rules.checkpoint(&mut cp);
        state.apply(&cp);
        cp.anomalies
    }

    fn run(lines: &[String], state: &mut MemoryState) -> Vec<Anomaly> {
        run_in_batches(lines, lines.len(), state)
    }

    fn event(id: &str, time: &str, msisdn: &str, body: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","msisdn":"{msisdn}","region":"Almaty","timestamp":"{time}",{body}}}"#
        )
    }

    fn fired(anomalies: &[Anomaly]) -> Vec<(&'static str, Option<&str>, Severity)> {
        anomalies
            .iter()
            .map(|a| (a.rule, a.event_id.as_deref(), a.severity))
            .collect()
    }

    #[test]
    fn record_rules_fire_strictly_above_their_thresholds() {
        let t = "2025-11-09T10:00:00Z";
        let m = "+77011234567";
        let lines = [
            event(
                "c1",
                t,
                m,
                r#""event_type":"call","event_subtype":"outgoing","duration_seconds":14400"#,
            ),
            event(
                "c2",
                t,
                m,
                r#""event_type":"call","event_subtype":"outgoing","duration_seconds":14401"#,
            ),
            event("d1", t, m, r#""event_type":"data_session","data_mb":10240"#),
            event(
                "d2",
                t,
                m,
                r#""event_type":"data_session","data_mb":10240.000001"#,
            ),
            event(
                "r1",
                t,
                m,
                r#""event_type":"balance_recharge","amount":50000"#,
            ),
            event(
                "r2",
                t,
                m,
                r#""event_type":"balance_recharge","amount":50000.01"#,
            ),
        ];
        let anomalies = run(&lines, &mut MemoryState::new(RULES));
        assert_eq!(
            fired(&anomalies),
            vec![
                ("long_call", Some("c2"), Severity::Medium),
                ("large_data_session", Some("d2"), Severity::Medium),
                ("large_recharge", Some("r2"), Severity::High),
            ]
        );
        assert_eq!(anomalies[0].idempotency_key, "long_call:c2");
        assert_eq!(anomalies[0].msisdn.to_string(), m);
        assert!(
            anomalies[2].evidence.contains("50000.010000"),
            "{}",
            anomalies[2].evidence
        );
    }

    #[test]
    fn high_frequency_fires_once_on_the_first_event_past_the_threshold() {
        let m = "+77011234567";
        let sms = |i: usize, time: &str| event(&format!("s{i}"), time, m, r#""event_type":"sms""#);
        // 100 in window 10:00; one late one after the watermark passed it.
        let mut first: Vec<String> = (0..100).map(|i| sms(i, "2025-11-09T10:01:00Z")).collect();
        first.push(sms(500, "2025-11-09T10:07:00Z"));
        first.push(sms(501, "2025-11-09T10:02:00Z"));
        let mut state = MemoryState::new(RULES);
        assert!(
            run(&first, &mut state).is_empty(),
            "100 is not above 100; the late one does not count"
        );

        // After a restart from the committed state: the 101st on time fires, the 102nd does not.
        let second = vec![
            sms(101, "2025-11-09T10:04:00Z"),
            sms(102, "2025-11-09T10:04:30Z"),
        ];
        let anomalies = run(&second, &mut state);
        assert_eq!(
            fired(&anomalies),
            vec![("high_frequency", Some("s101"), Severity::High)]
        );
        let window = parse_timestamp("2025-11-09T10:00:00Z").unwrap();
        assert_eq!(anomalies[0].window_start, Some(window));
        assert_eq!(
            anomalies[0].idempotency_key,
            format!("high_frequency:{m}:{window}")
        );
    }

    #[test]
    fn the_shipped_rules_are_seed_003s_and_mistakes_are_named() {
        let c = RulesConfig::default();
        assert_eq!(c.long_call.unwrap().above, 14_400);
        assert_eq!(c.large_data_session.unwrap().above, 10_240_000_000);
        assert_eq!(c.large_recharge.unwrap().above, 50_000_000_000);
        assert_eq!(c.high_frequency.unwrap().above, 100);
        assert_eq!(c.sim_box.unwrap().above, 50);
        assert_eq!(c.wangiri.unwrap().above, 20);
        let travel = c.impossible_travel.unwrap();
        assert_eq!(travel.least_ms("Astana", "Almaty"), 90 * 60_000);
        assert_eq!(travel.least_ms("Almaty", "Shymkent"), 60 * 60_000);
        assert_eq!(c.volume_spike.unwrap().factor_milli, 3000);
        let off = DEFAULT_RULES_TOML.replacen("[wangiri]\n", "[wangiri]\nenabled = false\n", 1);
        assert_eq!(RulesConfig::from_toml(&off).unwrap().wangiri, None);
        let wrong =
            DEFAULT_RULES_TOML.replacen("severity = \"medium\"", "severity = \"urgent\"", 1);
        let error = RulesConfig::from_toml(&wrong).unwrap_err().to_string();
        assert!(
            error.contains("long_call.severity") && error.contains("urgent"),
            "{error}"
        );
    }

    fn at(base: &str, seconds: i64) -> String {
        crate::normalize::format_timestamp(parse_timestamp(base).unwrap() + seconds * 1000)
    }

    fn call(id: &str, time: &str, msisdn: &str, cell: u32, subtype: &str, seconds: u64) -> String {
        format!(
            r#"{{"event_id":"{id}","msisdn":"{msisdn}","region":"Almaty","cell_tower_id":{cell},"timestamp":"{time}","event_type":"call","event_subtype":"{subtype}","duration_seconds":{seconds}}}"#
        )
    }

    fn rules_fired(anomalies: &[Anomaly], rule: &str) -> Vec<(String, Option<String>)> {
        anomalies
            .iter()
            .filter(|a| a.rule == rule)
            .map(|a| (a.msisdn.to_string(), a.event_id.clone()))
            .collect()
    }

    #[test]
    fn sim_box_fires_on_the_51st_outgoing_call_of_a_quiet_sim_in_at_most_two_cells() {
        let hour = "2025-11-09T10:00:00Z";
        let mut lines = Vec::new();
        for i in 0..51 {
            let time = at(hour, i * 60);
            // The box: two cells. A: the same, but one SMS. B: three cells. C: 50 calls.
            lines.push(call(
                &format!("box{i}"),
                &time,
                "+77010000001",
                1 + (i % 2) as u32,
                "outgoing",
                30,
            ));
            lines.push(call(
                &format!("a{i}"),
                &time,
                "+77010000002",
                1,
                "outgoing",
                30,
            ));
            lines.push(call(
                &format!("b{i}"),
                &time,
                "+77010000003",
                1 + (i % 3) as u32,
                "outgoing",
                30,
            ));
            if i < 50 {
                lines.push(call(
                    &format!("c{i}"),
                    &time,
                    "+77010000004",
                    1,
                    "outgoing",
                    30,
                ));
            }
            if i == 10 {
                lines.push(event(
                    "a-sms",
                    &time,
                    "+77010000002",
                    r#""event_type":"sms","event_subtype":"incoming""#,
                ));
            }
        }
        // The next hour counts afresh.
        lines.push(call(
            "box-next",
            "2025-11-09T11:00:30Z",
            "+77010000001",
            1,
            "outgoing",
            30,
        ));
        let anomalies = run_in_batches(&lines, 17, &mut MemoryState::new(RULES));
        assert_eq!(
            rules_fired(&anomalies, "sim_box"),
            vec![("+77010000001".to_string(), Some("box50".to_string()))]
        );
        let found = anomalies.iter().find(|a| a.rule == "sim_box").unwrap();
        assert_eq!(found.window_start, Some(parse_timestamp(hour).unwrap()));
        assert!(
            found.evidence.contains("51 outgoing calls") && found.evidence.contains("2 cell"),
            "{}",
            found.evidence
        );
    }

    #[test]
    fn wangiri_counts_distinct_subscribers_rung_briefly_by_one_international_number() {
        let hour = "2025-11-09T10:00:00Z";
        let incoming = |id: String, time: &str, to: String, from: &str, seconds: u64| {
            format!(
                r#"{{"event_id":"{id}","msisdn":"{to}","other_party":"{from}","region":"Almaty","timestamp":"{time}","event_type":"call","event_subtype":"incoming","duration_seconds":{seconds}}}"#
            )
        };
        let mut lines = Vec::new();
        for i in 0..21 {
            let time = at(hour, i * 30);
            let to = format!("+770100001{i:02}");
            lines.push(incoming(
                format!("w{i}"),
                &time,
                to.clone(),
                "+44 7911 123456",
                2,
            ));
            // Twice to the same subscriber counts once.
            lines.push(incoming(
                format!("w{i}-again"),
                &time,
                to.clone(),
                "+447911123456",
                1,
            ));
            // A domestic number, and calls that were answered, do not count.
            lines.push(incoming(
                format!("d{i}"),
                &time,
                to.clone(),
                "+77019990000",
                2,
            ));
            lines.push(incoming(format!("long{i}"), &time, to, "+447911000000", 6));
        }
        let anomalies = run_in_batches(&lines, 10, &mut MemoryState::new(RULES));
        assert_eq!(
            rules_fired(&anomalies, "wangiri"),
            vec![("+447911123456".to_string(), Some("w20".to_string()))]
        );
        let found = anomalies.iter().find(|a| a.rule == "wangiri").unwrap();
        assert_eq!(
            found.idempotency_key,
            format!("wangiri:+447911123456:{}", parse_timestamp(hour).unwrap())
        );
    }

    #[test]
    fn impossible_travel_compares_with_the_latest_region_and_the_journey_table() {
        let sms = |id: &str, time: &str, msisdn: &str, region: &str| {
            format!(
                r#"{{"event_id":"{id}","msisdn":"{msisdn}","region":"{region}","timestamp":"{time}","event_type":"sms","event_subtype":"outgoing"}}"#
            )
        };
        let m = "+77010000009";
        let lines = vec![
            sms("t1", "2025-11-09T10:00:00Z", m, "Almaty"),
            // 89 min later in Astana: the journey takes 90.
            sms("t2", "2025-11-09T11:29:00Z", m, "Astana"),
            // Then Shymkent 61 min after Astana: more than the default 60 min.
            sms("t3", "2025-11-09T12:30:00Z", m, "Shymkent"),
            // Another subscriber: 90 min between Almaty and Astana is possible.
            sms("u1", "2025-11-09T10:00:00Z", "+77010000010", "Almaty"),
            sms("u2", "2025-11-09T11:30:00Z", "+77010000010", "Astana"),
        ];
        let anomalies = run(&lines, &mut MemoryState::new(RULES));
        assert_eq!(
            rules_fired(&anomalies, "impossible_travel"),
            vec![(m.to_string(), Some("t2".to_string()))]
        );
        let found = &anomalies[0];
        assert!(
            found.evidence.contains("89m00s from Almaty")
                && found.evidence.contains("at least 90 min"),
            "{}",
            found.evidence
        );
    }

    #[test]
    fn volume_spike_fires_against_the_same_hour_of_earlier_weeks_and_not_twice_across_a_restart() {
        // Monday 10:00-11:00 in week one: 20 SMS in each window from Astana.
        let monday = parse_timestamp("2025-11-10T10:00:00Z").unwrap();
        let week = 7 * 86_400;
        let sms = |id: String, seconds: i64| {
            let time = crate::normalize::format_timestamp(monday + seconds * 1000);
            format!(
                r#"{{"event_id":"{id}","msisdn":"+770100{:05}","region":"Astana","timestamp":"{time}","event_type":"sms","event_subtype":"outgoing"}}"#,
                seconds % 100_000
            )
        };
        let mut first = Vec::new();
        for i in 0..(12 * 20) {
            first.push(sms(format!("base{i}"), i * 15));
        }
        // Week two, same hour: 101 then more in one window (more than 100
        // and more than 3 x 20); the next run brings the rest.
        for i in 0..90 {
            first.push(sms(format!("spike{i}"), week + i));
        }
        let mut state = MemoryState::new(RULES);
        assert!(rules_fired(&run_in_batches(&first, 50, &mut state), "volume_spike").is_empty());
        let second: Vec<String> = (90..200)
            .map(|i| sms(format!("spike{i}"), week + i))
            .collect();
        let anomalies = run_in_batches(&second, 50, &mut state);
        assert_eq!(
            rules_fired(&anomalies, "volume_spike")
                .into_iter()
                .map(|(_, id)| id)
                .collect::<Vec<_>>(),
            vec![Some("spike100".to_string())]
        );
        let found = anomalies.iter().find(|a| a.rule == "volume_spike").unwrap();
        assert!(
            found
                .evidence
                .contains("baseline of 20.0 (12 earlier windows on Monday 10:00 UTC)"),
            "{}",
            found.evidence
        );
        assert!(rules_fired(&run_in_batches(&second, 50, &mut state), "volume_spike").is_empty());
    }

    #[test]
    fn the_generators_fraud_patterns_fire_their_rules_and_its_clean_traffic_none() {
        use crate::synth::{Faults, Profile, Synth, SynthConfig, SynthFormat};
        let lines = |anomaly: f64| -> Vec<String> {
            let mut synth = Synth::new(SynthConfig {
                seed: 11,
                format: SynthFormat::TelecomEvents,
                subscribers: 2000,
                start: parse_timestamp("2025-11-09T00:00:00Z").unwrap(),
                days: 1,
                count: 40_000,
                live_rate: None,
                faults: Faults {
                    anomaly,
                    ..Faults::default()
                },
                profile: Profile::Kz,
            });
            let mut line = String::new();
            (0..40_000)
                .map(|_| {
                    synth.next_line(&mut line);
                    line.clone()
                })
                .collect()
        };
        let rules = |anomalies: &[Anomaly]| -> BTreeSet<&'static str> {
            anomalies.iter().map(|a| a.rule).collect()
        };
        let clean = run_in_batches(&lines(0.0), 1000, &mut MemoryState::new(RULES));
        assert_eq!(rules(&clean), BTreeSet::new(), "{:?}", clean.first());
        let faulty = run_in_batches(&lines(0.003), 1000, &mut MemoryState::new(RULES));
        let expected: BTreeSet<&str> = [
            "long_call",
            "large_data_session",
            "large_recharge",
            "high_frequency",
            "sim_box",
            "wangiri",
            "impossible_travel",
        ]
        .into();
        assert_eq!(rules(&faulty), expected);
    }
}
