//! Damage to the data directory (SPEC §13.4), against the real binary: a torn tail is cut off
//! and everything before it recovered; a segment failing its checksum is moved to `damaged/`
//! with an error log and a metric, and the server starts with the rest. A full directory ends
//! `Connect` with `RESOURCE_EXHAUSTED` and receipts nothing it did not write.

mod common;
mod durability_support;
mod operations;

use std::path::{Path, PathBuf};

use common::{connect_channel, send_on_new_connection};
use durability_support::numbered::{files_in, numbered_flow, totals_of, unix_now};
use durability_support::{list_totals, statistics_totals, Eddy};
use eddy::proto::Flow;
use operations::{http_get, sample};

/// `count` numbered updates starting at `first`, in the bucket of the second before now.
fn updates(first: i64, count: i64) -> Vec<Flow> {
    // A second back: List's default range ends at `now`, so a flow starting in the current
    // second at a bucket's start would not be in it yet.
    let now = unix_now() - 1;
    (0..count).map(|n| numbered_flow(n, first, now)).collect()
}

/// An hour's buckets: the updates' bucket stays open for the whole test (unless it starts in
/// an hour's last seconds), so no epoch writes it to a bucket file and the log alone holds it.
const HOUR_BUCKETS: [&str; 2] = ["--aggregation-window", "1h"];

/// Starts a server on `data` with `flags`, sends `updates(first, count)` in batches and
/// kills it.
async fn ingest_and_kill(data: &Path, flags: &[&str], first: i64, count: i64) {
    let eddy = Eddy::start(data, flags);
    let channel = connect_channel(eddy.address).await;
    for chunk in updates(first, count).chunks(50) {
        assert_eq!(
            send_on_new_connection(&channel, chunk.to_vec()).await,
            chunk.len()
        );
    }
    eddy.kill();
}

/// The log's segments, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    files_in(&data.join("wal"), "seg")
}

/// A free port on loopback for the shared health and metrics listener.
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("a bound address").port();
    port.to_string()
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_everything_before_it_recovered() {
    let data = tempfile::tempdir().expect("a temporary directory");
    ingest_and_kill(data.path(), &[], 1_000, 120).await;
    let last = segments(data.path()).pop().expect("a segment was written");
    let length = std::fs::metadata(&last).expect("the segment exists").len();
    // A crash in the middle of a write: a record header promising 500 bytes, and 20 of them.
    let mut torn = std::fs::read(&last).expect("the segment reads");
    torn.extend_from_slice(&500u32.to_le_bytes());
    torn.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    torn.extend_from_slice(&[7u8; 20]);
    std::fs::write(&last, torn).expect("the segment is writable");

    let eddy = Eddy::start(data.path(), &[]);
    let channel = connect_channel(eddy.address).await;
    assert_eq!(list_totals(&channel).await, totals_of(1_000, 120));
    assert_eq!(statistics_totals(&channel).await, totals_of(1_000, 120));
    assert_eq!(
        std::fs::metadata(&last).expect("the segment is kept").len(),
        length,
        "the torn bytes are cut off, the whole records kept"
    );
    for chunk in updates(5_000, 30).chunks(10) {
        send_on_new_connection(&channel, chunk.to_vec()).await;
    }
    eddy.kill();

    let eddy = Eddy::start(data.path(), &[]);
    let channel = connect_channel(eddy.address).await;
    let mut want = totals_of(1_000, 120);
    want.packets += 30;
    want.bytes += (5_000..5_030).sum::<i64>();
    assert_eq!(
        list_totals(&channel).await,
        want,
        "writing goes on after the cut"
    );
}

#[tokio::test]
async fn a_segment_failing_its_checksum_is_set_aside_and_start_up_goes_on() {
    let data = tempfile::tempdir().expect("a temporary directory");
    // A bucket file would hold the damaged segment's updates too: the log must be all there is.
    ingest_and_kill(data.path(), &HOUR_BUCKETS, 1_000, 100).await;
    ingest_and_kill(data.path(), &HOUR_BUCKETS, 9_000, 40).await;
    let paths = segments(data.path());
    assert_eq!(paths.len(), 2, "one segment per run: {paths:?}");
    assert_eq!(
        files_in(&data.path().join("buckets"), "parquet"),
        Vec::<PathBuf>::new(),
        "no bucket closed while the two runs ingested"
    );
    let damaged = paths[0].clone();
    let mut bytes = std::fs::read(&damaged).expect("the segment reads");
    // One flipped bit inside the first record's payload; whole records follow it.
    bytes[40] ^= 0x10;
    std::fs::write(&damaged, bytes).expect("the segment is writable");

    let port = free_port();
    let eddy = Eddy::start(
        data.path(),
        &[
            HOUR_BUCKETS[0],
            HOUR_BUCKETS[1],
            "--health-port",
            &port,
            "--prometheus-port",
            &port,
        ],
    );
    let channel = connect_channel(eddy.address).await;
    assert_eq!(
        list_totals(&channel).await,
        totals_of(9_000, 40),
        "the damaged segment's updates are left out, the rest recovered"
    );
    assert_eq!(statistics_totals(&channel).await, totals_of(9_000, 40));
    let name = damaged.file_name().expect("a file name");
    assert!(
        data.path().join("damaged").join(name).exists(),
        "the damaged segment is in damaged/"
    );
    assert!(!damaged.exists(), "and no longer in the log");
    let (status, metrics) = http_get(eddy.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "eddy_data_dir_damaged_files_total"),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "eddy_recovered_updates_total"), Some(40.0));
}

#[tokio::test]
async fn a_full_data_directory_ends_connect_with_resource_exhausted_and_receipts_only_what_it_wrote(
) {
    let data = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let eddy = Eddy::start(
        data.path(),
        &[
            "--max-disk-bytes",
            "4000",
            "--health-port",
            &port,
            "--prometheus-port",
            &port,
        ],
    );
    let channel = connect_channel(eddy.address).await;
    let mut call = common::CollectorConn::open(&channel).await;
    let mut receipted = 0;
    let status = loop {
        let update = updates(100 + receipted, 1).remove(0);
        call.send_flow(update).await;
        match call.next().await {
            Ok(Some(_)) => receipted += 1,
            Ok(None) => panic!("the call ends with a status"),
            Err(status) => break status,
        }
        assert!(receipted < 1_000, "4000 bytes hold far fewer updates");
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(receipted > 0, "the first updates fit");
    assert_eq!(
        list_totals(&channel).await,
        totals_of(100, receipted),
        "the refused update is not stored"
    );
    let (code, metrics) = http_get(eddy.admin, "/metrics").await;
    assert_eq!(code, 200);
    assert!(sample(&metrics, "eddy_data_dir_bytes").is_some_and(|bytes| bytes <= 4000.0));
    assert_eq!(
        sample(&metrics, "eddy_data_dir_refused_updates_total"),
        Some(1.0)
    );
    eddy.kill();

    let eddy = Eddy::start(data.path(), &[]);
    let channel = connect_channel(eddy.address).await;
    assert_eq!(
        list_totals(&channel).await,
        totals_of(100, receipted),
        "every receipted update is recovered"
    );
}
