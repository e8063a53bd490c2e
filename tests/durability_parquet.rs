//! Closed buckets as Parquet files (SPEC §13.3), against the real binary with a one-second
//! window: a closed bucket's file holds its flows, is rewritten when late updates change the
//! bucket, reads in pyarrow as `docs/durability.md` shows, and is deleted once the bucket
//! leaves retention.

mod common;
mod durability_support;
mod operations;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{connect_channel, flow, key, send_on_new_connection};
use durability_support::numbered::{rows_and_packets, unix_now};
use durability_support::Eddy;
use operations::eventually;

/// The file of the bucket starting at `bucket`.
fn file_of(data: &Path, bucket: i64) -> PathBuf {
    data.join("buckets")
        .join(format!("bucket-{bucket}.parquet"))
}

/// The sum of `packets_in` in `path` as pyarrow reads it, or `None` without Python.
fn pyarrow_packets(path: &Path) -> Option<i64> {
    let script = "import sys, pyarrow.parquet as pq\n\
                  table = pq.read_table(sys.argv[1])\n\
                  print(sum(table.column('packets_in').to_pylist()))";
    let output = match Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => panic!("python3 cannot run: {error}"),
    };
    assert!(
        output.status.success(),
        "pyarrow reads the file (install it with `python3 -m pip install pyarrow`): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    Some(printed.trim().parse().expect("a number"))
}

#[tokio::test]
async fn closed_buckets_are_written_rewritten_after_late_updates_and_deleted_past_retention() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let eddy = Eddy::start(
        data.path(),
        &["--aggregation-window", "1s", "--retention", "10s"],
    );
    let channel = connect_channel(eddy.address).await;
    let bucket = unix_now();
    let flows: Vec<_> = (0..6)
        .map(|n| {
            flow(
                key(("shop", "web"), ("shop", &format!("db-{}", n % 3))),
                bucket,
                n + 1,
            )
        })
        .collect();
    assert_eq!(send_on_new_connection(&channel, flows).await, 6);
    let path = file_of(data.path(), bucket);
    let first = eventually("the closed bucket's file", || async {
        rows_and_packets(&path)
    })
    .await;
    assert_eq!(first, (3, 21), "three flows, 1 + 2 + ... + 6 packets");

    let late = flow(key(("shop", "web"), ("shop", "db-0")), bucket, 10);
    assert_eq!(send_on_new_connection(&channel, vec![late]).await, 1);
    let rewritten = eventually("the rewritten file", || async {
        rows_and_packets(&path).filter(|(_, packets)| *packets == 31)
    })
    .await;
    assert_eq!(rewritten, (3, 31), "the late update is in the same row");
    if let Some(packets) = pyarrow_packets(&path) {
        assert_eq!(packets, 31, "pyarrow reads what Eddy wrote");
    }

    eventually("the file's deletion past retention", || async {
        (!path.exists()).then_some(())
    })
    .await;
    drop(eddy);
}
