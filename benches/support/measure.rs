//! What the benches read off a run: the resident set, latency percentiles and timed
//! `Statistics.List` calls.

use std::time::{Duration, Instant};

use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::StatisticsRequest;
use tonic::transport::Channel;

/// The process's resident set in bytes (0 where `/proc/self/statm` cannot be read).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The `p` quantile (0 to 1) of sorted, non-empty latencies, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Runs one `Statistics.List` to its end; returns how long it took and how many results it
/// streamed.
pub async fn timed_statistics(
    client: &mut StatisticsClient<Channel>,
    request: StatisticsRequest,
) -> (Duration, usize) {
    let started = Instant::now();
    let mut stream = client
        .list(request)
        .await
        .expect("Statistics succeeds")
        .into_inner();
    let mut results = 0;
    while let Some(_result) = stream.message().await.expect("results arrive") {
        results += 1;
    }
    (started.elapsed(), results)
}
