//! The one Prometheus exposition of the process.
//!
//! Three kinds of figures make up `/metrics`: the store's lifetime counters
//! (cluster-wide, the same from every replica), this process's telemetry
//! (`telemetry.rs`: latency histograms, lag, DLQ writes) and the named
//! events' counters (`events.rs`). Each contributes through [`Exposition`],
//! which alone writes the text format — HELP and TYPE lines, label
//! escaping, sample lines — and [`page`] assembles them in one place.
//! (prometheus-client's encoder writes OpenMetrics, whose counter families
//! drop `_total` from their TYPE line; promtool and seed 000's dashboards
//! expect the Prometheus text format, so the few lines it takes are here.)

use std::fmt::{Display, Write};

use cdrflow_core::mediation::{Counts, DuplicateReason};
use cdrflow_core::model::Kind;
use cdrflow_core::reject::RejectReason;

use crate::telemetry::telemetry;

#[derive(Clone, Copy, Debug)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A `/metrics` page being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family (its HELP and TYPE lines); its samples follow.
    pub fn family<'e>(&'e mut self, name: &'e str, kind: MetricType, help: &str) -> Family<'e> {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
        Family {
            out: &mut self.out,
            name,
        }
    }

    pub fn into_text(self) -> String {
        self.out
    }
}

/// The samples of one family.
pub struct Family<'e> {
    out: &'e mut String,
    name: &'e str,
}

impl Family<'_> {
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.sample_of("", labels, value)
    }

    /// A sample whose name extends the family's (`_bucket`, `_sum`, `_count`).
    pub fn sample_of(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        let _ = write!(self.out, "{}{suffix}", self.name);
        for (i, (label, text)) in labels.iter().enumerate() {
            let open = if i == 0 { "{" } else { "," };
            let _ = write!(self.out, "{open}{label}=\"{}\"", escape_label(text));
        }
        let close = if labels.is_empty() { "" } else { "}" };
        let _ = writeln!(self.out, "{close} {value}");
        self
    }
}

/// Label values escape backslash, quote and newline (Prometheus text format).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole `/metrics` page: the store's counters first (seed 000's names
/// leading), then this process's telemetry and events.
pub fn page(stored: &Counts) -> String {
    let mut page = Exposition::default();
    store_counters(&mut page, stored);
    telemetry().expose(&mut page);
    crate::events::expose(&mut page);
    page.into_text()
}

fn store_counters(page: &mut Exposition, counts: &Counts) {
    let accepted = |kind: Kind| counts.accepted.get(&kind).copied().unwrap_or(0);
    for (name, help, value) in [
        (
            "cdr_data_updates_total",
            "Data CDRs added to the daily summaries.",
            accepted(Kind::Data),
        ),
        (
            "cdr_voice_updates_total",
            "Voice CDRs added to the daily summaries.",
            accepted(Kind::Voice),
        ),
        (
            "cdrflow_records_in_total",
            "Records read from all sources.",
            counts.records_in,
        ),
        (
            "cdrflow_late_events_total",
            "Accepted records that came after their window closed: in usage, in no window (kept in late_events).",
            counts.late_events,
        ),
        (
            "cdrflow_pseudonymous_records_total",
            "Accepted records of masked numbers (7701234****): in analytics, never rated, in no usage summary.",
            counts.pseudonymous,
        ),
        (
            "cdrflow_unknown_subscriber_records_total",
            "Accepted records of numbers in no subscribers row at their event time: rated on the default plan.",
            counts.unknown_subscribers,
        ),
    ] {
        page.family(name, MetricType::Counter, help)
            .sample(&[], value);
    }
    let mut family = page.family(
        "cdrflow_records_accepted_total",
        MetricType::Counter,
        "Records accepted, by kind.",
    );
    for kind in Kind::ALL {
        family.sample(&[("kind", kind.as_str())], accepted(kind));
    }
    let mut family = page.family(
        "cdrflow_records_rejected_total",
        MetricType::Counter,
        "Records rejected, by reason.",
    );
    for reason in RejectReason::ALL {
        let value = counts.rejected.get(&reason).copied().unwrap_or(0);
        family.sample(&[("reason", reason.as_str())], value);
    }
    let mut family = page.family(
        "cdrflow_change_events_total",
        MetricType::Counter,
        "Debezium change events read, by outcome: applied; skipped (at or before the position already applied to their id: a redelivery, an old snapshot row); ignored (unmapped tables, tombstones, messages). Undecodable ones count as rejected records.",
    );
    for (outcome, value) in [
        ("applied", counts.changes.applied),
        ("skipped", counts.changes.skipped),
        ("ignored", counts.changes.ignored),
    ] {
        family.sample(&[("outcome", outcome)], value);
    }
    page.family(
        "cdrflow_reference_changes_late_total",
        MetricType::Counter,
        "Subscriber changes applied after rated records they should have affected (records of the number at or after the change's instant were rated on the row before it); each is listed by `cdrflow reference late` for re-rating.",
    )
    .sample(&[], counts.changes.late);
    let mut family = page.family(
        "cdrflow_duplicates_total",
        MetricType::Counter,
        "Duplicate records dropped, by reason.",
    );
    for reason in [
        DuplicateReason::SameRecordId,
        DuplicateReason::SameSourcePosition,
    ] {
        let value = counts.duplicates.get(&reason).copied().unwrap_or(0);
        family.sample(&[("reason", reason.as_str())], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_in_the_text_format() {
        let mut page = Exposition::default();
        page.family("a_total", MetricType::Counter, "Some help.")
            .sample(&[], 3)
            .sample(&[("topic", "t\"x\\y\nz"), ("partition", "2")], 4);
        page.family("h_seconds", MetricType::Histogram, "H.")
            .sample_of("_bucket", &[("le", "+Inf")], 1)
            .sample_of("_sum", &[], 0.5);
        assert_eq!(
            page.into_text(),
            "# HELP a_total Some help.\n# TYPE a_total counter\na_total 3\n\
             a_total{topic=\"t\\\"x\\\\y\\nz\",partition=\"2\"} 4\n\
             # HELP h_seconds H.\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"+Inf\"} 1\nh_seconds_sum 0.5\n"
        );
    }
}
