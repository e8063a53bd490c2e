//! What `eddy flowgen` measures and prints: shared counters, a latency histogram per node
//! (merged at the end), the progress line on a terminal, and the final summary as text or JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use crate::cli::flowgen::Profile;

/// Counters shared by every node; relaxed atomics, read only for display.
#[derive(Debug, Default)]
pub struct Counters {
    /// Distinct updates generated (replays are not counted again).
    pub generated: AtomicU64,
    /// Updates written to a stream, replays included.
    pub sent: AtomicU64,
    /// Receipts read.
    pub receipted: AtomicU64,
    /// Updates sent again after a reconnect.
    pub replayed: AtomicU64,
    /// Successful reconnects after a broken stream.
    pub reconnects: AtomicU64,
    /// Flushes generated.
    pub flushes: AtomicU64,
    /// Sums over generated updates, to compare with what the server reports.
    pub packets_in: AtomicU64,
    /// See `packets_in`.
    pub packets_out: AtomicU64,
    /// See `packets_in`.
    pub bytes_in: AtomicU64,
    /// See `packets_in`.
    pub bytes_out: AtomicU64,
    /// The last connection or stream error, for the progress line and summary.
    pub last_error: Mutex<Option<String>>,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Receipt latencies in microseconds, log-linear buckets (32 per power of two, error < 3.2%).
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

const LINEAR: u64 = 64;
const SUB_BITS: u32 = 5;

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    let sub = (micros >> (exponent - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (LINEAR + u64::from(exponent - 6) * (1 << SUB_BITS) + sub) as usize
}

fn lower_bound(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR {
        return bucket;
    }
    let exponent = (bucket - LINEAR) / (1 << SUB_BITS) + 6;
    let sub = (bucket - LINEAR) % (1 << SUB_BITS);
    (1 << exponent) + (sub << (exponent - u64::from(SUB_BITS)))
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; bucket_of(u64::MAX) + 1],
            count: 0,
            max: 0,
        }
    }
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)] += 1;
        self.count += 1;
        self.max = self.max.max(micros);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// The number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latency below which a fraction `q` of samples fall (bucket lower bound).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (bucket, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(lower_bound(bucket).min(self.max));
            }
        }
        Duration::from_micros(self.max)
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max)
    }
}

/// The progress line: sent, receipted, rate since the last line, in flight, reconnects.
pub fn progress_line(counters: &Counters, rate: f64) -> String {
    let sent = get(&counters.sent);
    let receipted = get(&counters.receipted);
    let mut line = format!(
        "flowgen: {sent} sent, {receipted} receipted, {rate:.0}/s, {} in flight, {} reconnects",
        sent.saturating_sub(receipted),
        get(&counters.reconnects)
    );
    if let Some(error) = counters.last_error.lock().as_ref() {
        line.push_str(&format!(" (last error: {error})"));
    }
    line
}

/// What a run did, as the summary reports it.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Nodes, flows per node, interval in seconds, seed.
    pub setup: (usize, usize, f64, u64),
    /// Distinct flow keys over all nodes.
    pub keys: usize,
    /// From the first send to the end.
    pub elapsed: Duration,
    /// Whether Ctrl-C ended the run.
    pub interrupted: bool,
    /// How updates were paced, e.g. `every 15s, window 256` or `back to back, stop-and-wait`.
    pub pacing: String,
    /// The traffic sent.
    pub profile: Profile,
}

/// The summary as one JSON document.
pub fn summary_json(
    summary: &Summary,
    counters: &Counters,
    latency: &Histogram,
) -> serde_json::Value {
    let seconds = summary.elapsed.as_secs_f64();
    let receipted = get(&counters.receipted);
    let millis = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    json!({
        "profile": match summary.profile {
            Profile::Cluster => "cluster",
            Profile::Realistic => "realistic",
        },
        "nodes": summary.setup.0,
        "flows_per_node": summary.setup.1,
        "interval_seconds": summary.setup.2,
        "seed": summary.setup.3,
        "pacing": summary.pacing,
        "keys": summary.keys,
        "flushes": get(&counters.flushes),
        "generated": get(&counters.generated),
        "sent": get(&counters.sent),
        "receipted": receipted,
        "replayed": get(&counters.replayed),
        "reconnects": get(&counters.reconnects),
        "packets_in": get(&counters.packets_in),
        "packets_out": get(&counters.packets_out),
        "bytes_in": get(&counters.bytes_in),
        "bytes_out": get(&counters.bytes_out),
        "elapsed_seconds": (seconds * 1000.0).round() / 1000.0,
        "updates_per_second": if seconds > 0.0 { (receipted as f64 / seconds).round() as u64 } else { 0 },
        "latency_ms": {
            "p50": millis(latency.quantile(0.50)),
            "p99": millis(latency.quantile(0.99)),
            "max": millis(latency.max()),
            "samples": latency.count(),
        },
        "interrupted": summary.interrupted,
        "last_error": counters.last_error.lock().clone(),
    })
}

/// A latency with about three significant digits: `0.41 ms`, `32.3 ms`, `114 ms`.
pub fn milliseconds(latency: Duration) -> String {
    let ms = latency.as_secs_f64() * 1000.0;
    match ms {
        m if m < 10.0 => format!("{m:.2} ms"),
        m if m < 100.0 => format!("{m:.1} ms"),
        m => format!("{m:.0} ms"),
    }
}

/// The summary for a person.
pub fn summary_text(summary: &Summary, counters: &Counters, latency: &Histogram) -> String {
    let value = summary_json(summary, counters, latency);
    let (nodes, flows, _, seed) = summary.setup;
    let interrupted = if summary.interrupted {
        ", interrupted"
    } else {
        ""
    };
    let mut text = match summary.profile {
        Profile::Cluster => format!(
            "flowgen: {nodes} nodes x {flows} flows, {} (seed {seed}){interrupted}\n",
            summary.pacing
        ),
        Profile::Realistic => format!(
            "flowgen: realistic workload, {} keys cycled on {nodes} streams, {}{interrupted}\n",
            summary.keys, summary.pacing
        ),
    };
    text.push_str(&match summary.profile {
        Profile::Cluster => format!(
            "  updates   {} generated in {} flushes, {} sent, {} receipted ({} replayed, {} reconnects)\n",
            value["generated"], value["flushes"], value["sent"], value["receipted"], value["replayed"], value["reconnects"]
        ),
        Profile::Realistic => format!(
            "  updates   {} sent, {} receipted\n",
            value["sent"], value["receipted"]
        ),
    });
    text.push_str(&format!(
        "  keys      {} distinct flow keys\n",
        value["keys"]
    ));
    text.push_str(&format!(
        "  rate      {} updates/s over {:.2}s\n",
        value["updates_per_second"],
        summary.elapsed.as_secs_f64()
    ));
    text.push_str(&format!(
        "  latency   p50 {}, p99 {}, max {} (send to receipt)\n",
        milliseconds(latency.quantile(0.50)),
        milliseconds(latency.quantile(0.99)),
        milliseconds(latency.max())
    ));
    if let Some(error) = counters.last_error.lock().as_ref() {
        text.push_str(&format!("  last error {error}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_error() {
        let mut histogram = Histogram::default();
        for micros in 1..=10_000u64 {
            histogram.record(Duration::from_micros(micros));
        }
        let p50 = histogram.quantile(0.5).as_micros() as f64;
        let p99 = histogram.quantile(0.99).as_micros() as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.04, "p50 {p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.04, "p99 {p99}");
        assert_eq!(histogram.max(), Duration::from_micros(10_000));
        let mut merged = Histogram::default();
        merged.merge(&histogram);
        assert_eq!(merged.count(), 10_000);
        assert_eq!(Histogram::default().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn the_text_summary_reads_naturally() {
        let counters = Counters::default();
        bump(&counters.generated, 300);
        bump(&counters.sent, 300);
        bump(&counters.receipted, 300);
        let mut latency = Histogram::default();
        latency.record(Duration::from_micros(410));
        let summary = Summary {
            setup: (3, 100, 15.0, 1),
            keys: 250,
            elapsed: Duration::from_secs(2),
            interrupted: false,
            pacing: "every 15s, window 256".into(),
            profile: Profile::Cluster,
        };
        let text = summary_text(&summary, &counters, &latency);
        assert!(
            text.starts_with("flowgen: 3 nodes x 100 flows, every 15s, window 256 (seed 1)\n"),
            "{text}"
        );
        assert!(
            text.contains("  rate      150 updates/s over 2.00s\n"),
            "{text}"
        );
        assert!(text.contains("p50 0.41 ms, p99 0.41 ms"), "{text}");
        assert_eq!(milliseconds(Duration::from_micros(114_400)), "114 ms");
        let realistic = Summary {
            setup: (8, 100, 15.0, 1),
            keys: 20_000,
            pacing: "back to back, window 1000".into(),
            profile: Profile::Realistic,
            ..summary
        };
        let text = summary_text(&realistic, &counters, &latency);
        assert!(
            text.starts_with(
                "flowgen: realistic workload, 20000 keys cycled on 8 streams, back to back, \
                 window 1000\n  updates   300 sent, 300 receipted\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for micros in [0, 1, 63, 64, 65, 100, 1000, 123_456, u64::MAX / 2, u64::MAX] {
            let bucket = bucket_of(micros);
            assert!(bucket >= last);
            assert!(lower_bound(bucket) <= micros);
            last = bucket;
        }
    }
}
