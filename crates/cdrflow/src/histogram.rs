//! The one histogram type: durations counted into fixed buckets with
//! relaxed atomics, so the process-wide registry (`telemetry`) and a run's
//! own report share the counting, the quantiles and the exposition.
//!
//! Two bucket layouts: Prometheus-style bounds from 5 ms to a month for
//! `/metrics` (few series, any spread), and log-spaced bounds 5% apart from
//! 1 ms to ~17 min for a run's report, whose percentiles are then within
//! ~5% in constant memory.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::metrics::{Exposition, MetricType};

/// Bucket upper bounds in seconds for `/metrics`: from a few milliseconds
/// (streaming) to a month (files of last month's CDRs are far behind event
/// time by nature); the last is +Inf.
const METRIC_BOUNDS: [f64; METRIC_BUCKETS] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    21600.0,
    86400.0,
    604800.0,
    2592000.0,
    f64::INFINITY,
];
pub const METRIC_BUCKETS: usize = 21;

/// 1 ms × 1.05^i: 1.05^284 ms ≈ 1,000 s; the last is +Inf.
const FINE_BOUNDS: [f64; FINE_BUCKETS] = log_spaced(0.001, 1.05);
pub const FINE_BUCKETS: usize = 286;

const fn log_spaced<const N: usize>(first: f64, growth: f64) -> [f64; N] {
    let mut bounds = [f64::INFINITY; N];
    let (mut i, mut bound) = (0, first);
    while i < N - 1 {
        bounds[i] = bound;
        bound *= growth;
        i += 1;
    }
    bounds
}

/// Durations in buckets of `N` upper bounds; `Histogram` alone is the
/// `/metrics` layout.
pub struct Histogram<const N: usize = METRIC_BUCKETS> {
    /// Upper bounds in seconds, ascending, the last +Inf.
    bounds: &'static [f64; N],
    /// Per bucket (not cumulative).
    counts: [AtomicU64; N],
    sum_micros: AtomicU64,
    max_millis: AtomicI64,
}

/// A run's end-to-end latency: percentiles within ~5%.
pub type LatencyHistogram = Histogram<FINE_BUCKETS>;

impl Histogram<METRIC_BUCKETS> {
    pub const fn for_metrics() -> Histogram {
        Histogram::with_bounds(&METRIC_BOUNDS)
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Histogram::with_bounds(&FINE_BOUNDS)
    }
}

impl<const N: usize> Histogram<N> {
    const fn with_bounds(bounds: &'static [f64; N]) -> Histogram<N> {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            sum_micros: AtomicU64::new(0),
            max_millis: AtomicI64::new(0),
        }
    }

    fn bucket_of(&self, millis: i64) -> usize {
        let seconds = millis as f64 / 1000.0;
        self.bounds.partition_point(|&bound| bound < seconds)
    }

    /// Records `times` observations of `millis` (negative clock skew counts as 0).
    pub fn observe_millis(&self, millis: i64, times: u64) {
        if times == 0 {
            return;
        }
        let millis = millis.max(0);
        self.counts[self.bucket_of(millis)].fetch_add(times, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(millis as u64 * 1000 * times, Ordering::Relaxed);
        self.max_millis.fetch_max(millis, Ordering::Relaxed);
    }

    /// Records one observation per item. Counted locally first: a checkpoint
    /// of a million records costs one atomic add per bucket, not two per record.
    pub fn observe_all_millis(&self, all_millis: impl IntoIterator<Item = i64>) {
        let mut counts = [0u64; N];
        let (mut sum_millis, mut max_millis) = (0u64, 0i64);
        for millis in all_millis {
            let millis = millis.max(0);
            counts[self.bucket_of(millis)] += 1;
            sum_millis += millis as u64;
            max_millis = max_millis.max(millis);
        }
        for (bucket, &count) in counts.iter().enumerate().filter(|(_, &c)| c > 0) {
            self.counts[bucket].fetch_add(count, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(sum_millis * 1000, Ordering::Relaxed);
        self.max_millis.fetch_max(max_millis, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; N] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    pub fn count(&self) -> u64 {
        self.snapshot().iter().sum()
    }

    /// The `quantile` (0..=1) in milliseconds, interpolated within its bucket
    /// as Prometheus' `histogram_quantile` does and never above the largest
    /// observation; `None` with no observations.
    pub fn quantile_millis(&self, quantile: f64) -> Option<f64> {
        let counts = self.snapshot();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let max = self.max_millis.load(Ordering::Relaxed) as f64;
        let rank = quantile * total as f64;
        let mut below = 0u64;
        for (bucket, &count) in counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let lower = if bucket == 0 {
                    0.0
                } else {
                    self.bounds[bucket - 1] * 1000.0
                };
                let upper = (self.bounds[bucket] * 1000.0).min(max.max(lower));
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * within);
            }
            below += count;
        }
        Some(max)
    }

    /// `p50 12 ms, p90 30 ms, p99 80 ms, max 120 ms`.
    pub fn summary(&self) -> String {
        match (
            self.quantile_millis(0.5),
            self.quantile_millis(0.9),
            self.quantile_millis(0.99),
        ) {
            (Some(p50), Some(p90), Some(p99)) => format!(
                "p50 {p50:.0} ms, p90 {p90:.0} ms, p99 {p99:.0} ms, max {} ms",
                self.max_millis.load(Ordering::Relaxed)
            ),
            _ => "no samples".to_string(),
        }
    }

    /// Prometheus histogram samples, in seconds.
    pub fn expose(&self, page: &mut Exposition, name: &str, help: &str) {
        let mut family = page.family(name, MetricType::Histogram, help);
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(self.snapshot()) {
            cumulative += count;
            let le = match bound.is_finite() {
                true => bound.to_string(),
                false => "+Inf".to_string(),
            };
            family.sample_of("_bucket", &[("le", &le)], cumulative);
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        family
            .sample_of("_sum", &[], sum)
            .sample_of("_count", &[], cumulative);
    }
}

impl<const N: usize> fmt::Debug for Histogram<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let h = Histogram::for_metrics();
        assert_eq!(h.quantile_millis(0.5), None);
        h.observe_millis(30, 50); // bucket 25..50 ms
        h.observe_millis(200, 50); // bucket 100..250 ms
        let p50 = h.quantile_millis(0.5).unwrap();
        assert!((25.0..=50.0).contains(&p50), "{p50}");
        let p99 = h.quantile_millis(0.99).unwrap();
        assert!((100.0..=200.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn fine_percentiles_are_close() {
        let h = LatencyHistogram::default();
        for ms in 1..=1000 {
            h.observe_millis(ms, 1);
        }
        let p50 = h.quantile_millis(0.5).unwrap();
        let p99 = h.quantile_millis(0.99).unwrap();
        assert!((475.0..=525.0).contains(&p50), "{p50}");
        assert!((940.0..=1000.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 1000);
        assert_eq!(h.summary().rsplit("max ").next(), Some("1000 ms"));
        assert_eq!(LatencyHistogram::default().quantile_millis(0.5), None);
    }

    #[test]
    fn the_fine_layout_is_five_percent_apart_up_to_a_thousand_seconds() {
        assert_eq!(FINE_BOUNDS[0], 0.001);
        for pair in FINE_BOUNDS[..FINE_BUCKETS - 1].windows(2) {
            assert!((pair[1] / pair[0] - 1.05).abs() < 1e-9);
        }
        let last = FINE_BOUNDS[FINE_BUCKETS - 2];
        assert!((900.0..1100.0).contains(&last), "{last}");
        assert!(FINE_BOUNDS[FINE_BUCKETS - 1].is_infinite());
    }

    #[test]
    fn observing_all_at_once_equals_one_by_one() {
        let (one_by_one, at_once) = (Histogram::for_metrics(), Histogram::for_metrics());
        let samples = [-5, 0, 3, 30, 30, 200, 7_000, 90_000_000_000];
        for &ms in &samples {
            one_by_one.observe_millis(ms, 1);
        }
        at_once.observe_all_millis(samples);
        let (mut a, mut b) = (Exposition::default(), Exposition::default());
        one_by_one.expose(&mut a, "h", "help");
        at_once.expose(&mut b, "h", "help");
        assert_eq!(a.into_text(), b.into_text());
        assert_eq!(at_once.count(), samples.len() as u64);
        assert_eq!(one_by_one.summary(), at_once.summary());
    }

    #[test]
    fn exposition_is_cumulative() {
        let h = Histogram::for_metrics();
        h.observe_millis(3, 2);
        h.observe_millis(7_000, 1);
        let mut page = Exposition::default();
        h.expose(&mut page, "x_seconds", "help");
        let out = page.into_text();
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum 7.006\n"), "{out}");
    }
}
