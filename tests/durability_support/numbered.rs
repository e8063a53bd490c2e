//! Numbered updates for the durability tests (update `n` of a run carries one packet and
//! `first + n` bytes, so totals tell exactly which updates were counted), the clock, and
//! what the data directory's files hold.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use eddy::proto::{Action, Flow, PolicyKind, PolicyTrace};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

use super::Totals;
use crate::common::{flow, hit, key};

/// The current Unix second.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Update `n` of a run starting at `first`: from `shop/frontend` to `shop/svc-<n mod 7>`,
/// allowed by one policy, starting at `start`, one packet and `first + n` bytes.
pub fn numbered_flow(n: i64, first: i64, start: i64) -> Flow {
    let mut flow_key = key(("shop", "frontend"), ("shop", &format!("svc-{}", n % 7)));
    flow_key.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(
            PolicyKind::CalicoNetworkPolicy,
            "default",
            "shop",
            "allow-frontend",
            Action::Allow,
        )],
        pending_policies: vec![],
    });
    let mut update = flow(flow_key, start, 1);
    update.packets_in = 1;
    update.bytes_in = first + n;
    update
}

/// The totals of `count` numbered updates starting at `first`.
pub fn totals_of(first: i64, count: i64) -> Totals {
    Totals {
        packets: count,
        bytes: (first..first + count).sum(),
    }
}

/// The files in `folder` named `*.<extension>`, in name order.
pub fn files_in(folder: &Path, extension: &str) -> Vec<PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(folder)
        .expect("the folder exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    paths.sort();
    paths
}

/// Rows and the sum of `packets_in` in a bucket file, if it exists and reads whole.
pub fn rows_and_packets(path: &Path) -> Option<(usize, i64)> {
    let reader = SerializedFileReader::new(File::open(path).ok()?).ok()?;
    let mut rows = 0;
    let mut packets = 0;
    for row in reader.get_row_iter(None).ok()? {
        let row = row.ok()?;
        rows += 1;
        for (name, value) in row.get_column_iter() {
            if let ("packets_in", Field::Long(value)) = (name.as_str(), value) {
                packets += value;
            }
        }
    }
    Some((rows, packets))
}
