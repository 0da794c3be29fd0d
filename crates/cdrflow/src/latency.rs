//! A small latency histogram: log-spaced buckets from 1 ms to ~17 min, so
//! percentiles are within ~5% whatever the spread, in constant memory.

/// Bucket upper bounds grow by this factor.
const GROWTH: f64 = 1.05;
const BUCKETS: usize = 285; // 1.05^284 ms ≈ 1,000 s

#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max_ms: i64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max_ms: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, millis: i64) {
        let millis = millis.max(0);
        let bucket = if millis <= 1 {
            0
        } else {
            ((millis as f64).ln() / GROWTH.ln()).ceil() as usize
        };
        self.counts[bucket.min(BUCKETS - 1)] += 1;
        self.total += 1;
        self.max_ms = self.max_ms.max(millis);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency below which `quantile` (0..=1) of the samples fall, in ms (a bucket's upper bound).
    pub fn quantile(&self, quantile: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((quantile * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(GROWTH.powi(bucket as i32).min(self.max_ms as f64).max(1.0));
            }
        }
        Some(self.max_ms as f64)
    }

    /// `p50 12 ms, p90 30 ms, p99 80 ms, max 120 ms`.
    pub fn summary(&self) -> String {
        match (self.quantile(0.5), self.quantile(0.9), self.quantile(0.99)) {
            (Some(p50), Some(p90), Some(p99)) => {
                format!(
                    "p50 {p50:.0} ms, p90 {p90:.0} ms, p99 {p99:.0} ms, max {} ms",
                    self.max_ms
                )
            }
            _ => "no samples".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_close() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=1000 {
            h.record(ms);
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((475.0..=525.0).contains(&p50), "{p50}");
        assert!((940.0..=1000.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 1000);
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }
}
