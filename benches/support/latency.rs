//! Latency histograms (microsecond resolution, up to an hour) and their percentiles.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies recorded in microseconds.
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(
            Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("the bounds are valid for a histogram"),
        )
    }
}

impl Latencies {
    /// Records one latency (clamped to the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        self.0.record(micros).expect("the value is within bounds");
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        self.0
            .add(&other.0)
            .expect("histograms of the same bounds merge");
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `q` quantile (0 to 1) in milliseconds; 0 when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// "p50 / p99 ms", or "—" when nothing was recorded.
    pub fn p50_p99(&self) -> String {
        if self.count() == 0 {
            return "—".into();
        }
        format!(
            "{:.2} / {:.2} ms",
            self.quantile_ms(0.5),
            self.quantile_ms(0.99)
        )
    }
}
