//! Recovery from the bucket files (SPEC §13.2, §13.4), against the real binary with a
//! one-second window: once closed buckets are in their files, the log segments they cover are
//! not needed (totals stay exact with every segment deleted, and late updates to those
//! buckets after the restart are counted once); the files are read by their catalog ids, and
//! by their values when the catalog file is damaged or missing; a bucket file failing its
//! checksum is set aside and its bucket recovered from the log.

mod common;
mod durability_support;
mod operations;

use std::path::{Path, PathBuf};

use common::{connect_channel, send_on_new_connection};
use durability_support::numbered::{
    files_in, numbered_flow, rows_and_packets, totals_of, unix_now,
};
use durability_support::{list_totals, statistics_totals, Eddy};
use eddy::proto::Flow;
use operations::{eventually, http_get, sample};

const FLAGS: [&str; 4] = ["--aggregation-window", "1s", "--retention", "300s"];

/// `count` numbered updates over five closed one-second buckets starting at
/// `first_bucket`, every third with source labels.
fn updates(first_bucket: i64, first: i64, count: i64) -> Vec<Flow> {
    (0..count)
        .map(|n| {
            let mut update = numbered_flow(n, first, first_bucket + n % 5);
            if n % 3 == 0 {
                update.source_labels = vec![format!("run={}", n % 2), "app=frontend".into()];
            }
            update
        })
        .collect()
}

fn bucket_files(data: &Path) -> Vec<PathBuf> {
    files_in(&data.join("buckets"), "parquet")
}

/// The sum of `packets_in` over every bucket file, if they all read whole.
fn packets_in_files(data: &Path) -> Option<i64> {
    bucket_files(data)
        .iter()
        .map(|path| rows_and_packets(path).map(|(_, packets)| packets))
        .sum()
}

/// Starts a server on `data`, sends `updates` in batches, waits until the bucket files hold
/// `total_packets` and kills the server.
async fn ingest_until_filed(data: &Path, updates: Vec<Flow>, total_packets: i64) {
    let eddy = Eddy::start(data, &FLAGS);
    let channel = connect_channel(eddy.address).await;
    for chunk in updates.chunks(40) {
        assert_eq!(
            send_on_new_connection(&channel, chunk.to_vec()).await,
            chunk.len()
        );
    }
    eventually("bucket files holding every update", || async {
        (packets_in_files(data) == Some(total_packets)).then_some(())
    })
    .await;
    eddy.kill();
}

fn segments(data: &Path) -> Vec<PathBuf> {
    files_in(&data.join("wal"), "seg")
}

#[tokio::test]
async fn the_bucket_files_recover_their_buckets_without_the_log_and_late_updates_count_once() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let first_bucket = unix_now() - 8;
    ingest_until_filed(data.path(), updates(first_bucket, 1_000, 200), 200).await;
    let deleted = segments(data.path());
    assert!(!deleted.is_empty(), "the run wrote the log");
    for path in &deleted {
        std::fs::remove_file(path).expect("the segment is deleted");
    }

    let eddy = Eddy::start(data.path(), &FLAGS);
    let channel = connect_channel(eddy.address).await;
    assert_eq!(list_totals(&channel).await, totals_of(1_000, 200));
    assert_eq!(statistics_totals(&channel).await, totals_of(1_000, 200));
    // Late updates to the same closed buckets, logged after the files' covered positions.
    for chunk in updates(first_bucket, 50_000, 60).chunks(20) {
        assert_eq!(send_on_new_connection(&channel, chunk.to_vec()).await, 20);
    }
    eddy.kill();

    let eddy = Eddy::start(data.path(), &FLAGS);
    let channel = connect_channel(eddy.address).await;
    let mut want = totals_of(1_000, 200);
    want.packets += 60;
    want.bytes += (50_000..50_060).sum::<i64>();
    assert_eq!(
        list_totals(&channel).await,
        want,
        "files and log, each once"
    );
    assert_eq!(statistics_totals(&channel).await, want);
}

#[tokio::test]
async fn recovery_reads_the_files_and_only_the_logs_later_records() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let first_bucket = unix_now() - 8;
    ingest_until_filed(data.path(), updates(first_bucket, 1_000, 150), 150).await;
    let eddy = Eddy::start(data.path(), &FLAGS);
    let recovered = &eddy.recovered;
    assert_eq!(recovered["bucket_files"], 5, "{recovered}");
    assert_eq!(recovered["updates_from_log"], 0, "{recovered}");
    assert_eq!(recovered["updates"], 150, "{recovered}");
    // 150 updates over 35 flows and buckets.
    assert_eq!(recovered["rows_from_files"], 35, "{recovered}");
    assert_eq!(
        recovered["rows_by_catalog_ids"], 35,
        "the files are read by their catalog ids: {recovered}"
    );
    let channel = connect_channel(eddy.address).await;
    assert_eq!(list_totals(&channel).await, totals_of(1_000, 150));
    assert_eq!(statistics_totals(&channel).await, totals_of(1_000, 150));
}

/// SPEC §13.4 (a damaged catalog file is set aside and start-up goes on) and §13.2 (every
/// receipted update counted once, read by values instead of by catalog ids).
#[tokio::test]
async fn without_a_whole_catalog_file_the_files_load_by_their_values_and_totals_stay_exact() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let first_bucket = unix_now() - 8;
    ingest_until_filed(data.path(), updates(first_bucket, 1_000, 150), 150).await;
    let catalog_file = data.path().join("catalog").join("catalog.log");
    let mut bytes = std::fs::read(&catalog_file).expect("the catalog file");
    // A flipped bit in the header record, which every later record follows.
    bytes[10] ^= 0x01;
    std::fs::write(&catalog_file, bytes).expect("rewritten");

    let eddy = Eddy::start(data.path(), &FLAGS);
    let recovered = &eddy.recovered;
    assert_eq!(recovered["rows_from_files"], 35, "{recovered}");
    assert_eq!(recovered["rows_by_catalog_ids"], 0, "{recovered}");
    assert!(
        data.path().join("damaged").join("catalog.log").exists(),
        "the damaged catalog file is in damaged/"
    );
    let channel = connect_channel(eddy.address).await;
    assert_eq!(list_totals(&channel).await, totals_of(1_000, 150));
    assert_eq!(statistics_totals(&channel).await, totals_of(1_000, 150));
    eddy.kill();

    std::fs::remove_file(&catalog_file).expect("the new catalog file is removed");
    let eddy = Eddy::start(data.path(), &FLAGS);
    let recovered = &eddy.recovered;
    assert_eq!(recovered["rows_by_catalog_ids"], 0, "{recovered}");
    let channel = connect_channel(eddy.address).await;
    assert_eq!(list_totals(&channel).await, totals_of(1_000, 150));
    assert_eq!(statistics_totals(&channel).await, totals_of(1_000, 150));
}

#[tokio::test]
async fn a_bucket_file_failing_its_checksum_is_set_aside_and_its_bucket_recovered_from_the_log() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let first_bucket = unix_now() - 8;
    ingest_until_filed(data.path(), updates(first_bucket, 1_000, 100), 100).await;
    let files = bucket_files(data.path());
    assert_eq!(files.len(), 5, "one file per bucket: {files:?}");
    let damaged = files[2].clone();
    let mut bytes = std::fs::read(&damaged).expect("the file reads");
    // A flipped bit in the first column's data, past the 4-byte magic.
    bytes[30] ^= 0x04;
    std::fs::write(&damaged, bytes).expect("the file is writable");

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener
            .local_addr()
            .expect("an address")
            .port()
            .to_string()
    };
    let mut flags = FLAGS.to_vec();
    flags.extend(["--health-port", &port, "--prometheus-port", &port]);
    let eddy = Eddy::start(data.path(), &flags);
    let channel = connect_channel(eddy.address).await;
    assert_eq!(list_totals(&channel).await, totals_of(1_000, 100));
    assert_eq!(statistics_totals(&channel).await, totals_of(1_000, 100));
    let name = damaged.file_name().expect("a file name");
    assert!(
        data.path().join("damaged").join(name).exists(),
        "the damaged file is in damaged/"
    );
    let (status, metrics) = http_get(eddy.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "eddy_data_dir_damaged_files_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "eddy_recovered_updates_total"),
        Some(100.0)
    );
    eventually("the bucket's file written again", || async {
        (packets_in_files(data.path()) == Some(100)).then_some(())
    })
    .await;
}
