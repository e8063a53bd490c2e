//! Crash safety of the data directory (SPEC §13.2): the real binary is killed with SIGKILL at
//! random moments while several Felix-like nodes stream updates, then restarted on the same
//! directory. Every update is distinct (its `bytes_in` is unique), each node resends whatever
//! was not receipted and replays its last receipted updates after reconnecting, as Felix does.
//! Once every node is caught up, everything it sent has been receipted, so List and Statistics
//! must show exactly one update per id: nothing lost, nothing counted twice. Once with the
//! default window (the log alone recovers), once with one-second buckets (bucket files and the
//! catalog file written every second, and read back by catalog ids).

mod common;
mod durability_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{connect_channel, hit, key};
use durability_support::numbered::unix_now;
use durability_support::{list_totals, statistics_totals, Eddy, Totals};
use eddy::proto::flow_collector_client::FlowCollectorClient;
use eddy::proto::{Action, Flow, FlowUpdate, PolicyKind, PolicyTrace};
use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

/// Nodes streaming at once, one `Connect` call each.
const NODES: u64 = 4;
/// SIGKILLs in one run.
const KILLS: usize = 20;
/// Receipted updates a node replays after reconnecting (its "last five minutes").
const REPLAY: usize = 300;
/// Distinct flow keys per node.
const KEYS: u64 = 40;
/// Updates a node may have sent without a receipt, as Felix bounds its queue.
const WINDOW: usize = 256;

/// What one node has sent and what came back receipted.
#[derive(Default)]
struct Node {
    /// Every update the node made, in order; update `i` carries `bytes_in` = its id.
    sent: Vec<Flow>,
    /// Updates `0..receipted` are receipted.
    receipted: usize,
}

/// Update `sequence` of node `node`: one packet, a unique byte count, one allowing policy.
fn update(node: u64, sequence: u64) -> Flow {
    let mut flow_key = key(
        ("nodes", &format!("node-{node}")),
        ("shop", &format!("svc-{}", sequence % KEYS)),
    );
    flow_key.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(
            PolicyKind::CalicoNetworkPolicy,
            "default",
            "shop",
            "allow-nodes",
            Action::Allow,
        )],
        pending_policies: vec![],
    });
    // A second back: List's default range ends at `now`, so a flow starting in the current
    // second at a bucket's start would not be in it yet.
    let start = unix_now() - 1;
    Flow {
        key: Some(flow_key),
        start_time: start,
        end_time: start + 1,
        source_labels: vec![],
        dest_labels: vec![],
        packets_in: 1,
        packets_out: 0,
        bytes_in: (node * 1_000_000_000 + sequence) as i64,
        bytes_out: 0,
        num_connections_started: 0,
        num_connections_completed: 0,
        num_connections_live: 0,
    }
}

/// One `Connect` call of node `index`: replays its last receipted updates, resends the
/// unreceipted ones, then (when `streaming` is set) makes new ones until the call fails,
/// telling `streaming` at its first receipt of a new update. Otherwise it returns once
/// everything sent is receipted. At most [`WINDOW`] updates wait for a receipt.
async fn session(
    address: SocketAddr,
    index: u64,
    node: Arc<Mutex<Node>>,
    streaming: Option<mpsc::Sender<u64>>,
) {
    let stream_new = streaming.is_some();
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .connect()
        .await
    else {
        return;
    };
    let (updates, outbound) = tokio::sync::mpsc::channel::<FlowUpdate>(256);
    let Ok(response) = FlowCollectorClient::new(channel)
        .connect(ReceiverStream::new(outbound))
        .await
    else {
        return;
    };
    let mut receipts = response.into_inner();
    let (replay_from, backlog) = {
        let node = node.lock().expect("no test thread panicked");
        let replay_from = node.receipted.saturating_sub(REPLAY);
        (replay_from, node.sent[replay_from..].to_vec())
    };
    let to_receipt = backlog.len();
    if !stream_new && to_receipt == 0 {
        return;
    }
    let sender_node = node.clone();
    let window = Arc::new(Semaphore::new(WINDOW));
    let sender_window = window.clone();
    let sender = tokio::spawn(async move {
        for flow in backlog {
            let Ok(permit) = sender_window.acquire().await else {
                return;
            };
            permit.forget();
            if updates.send(FlowUpdate { flow: Some(flow) }).await.is_err() {
                return;
            }
        }
        if stream_new {
            loop {
                let Ok(permit) = sender_window.acquire().await else {
                    return;
                };
                permit.forget();
                let flow = {
                    let mut node = sender_node.lock().expect("no test thread panicked");
                    let flow = update(index, node.sent.len() as u64);
                    node.sent.push(flow.clone());
                    flow
                };
                if updates.send(FlowUpdate { flow: Some(flow) }).await.is_err() {
                    return;
                }
            }
        }
        // Keeps the request stream open until the receipts are all read.
        updates.closed().await;
    });
    let mut count = 0;
    while let Ok(Some(_)) = receipts.message().await {
        count += 1;
        window.add_permits(1);
        let mut node = node.lock().expect("no test thread panicked");
        node.receipted = node.receipted.max(replay_from + count);
        if !stream_new && count == to_receipt {
            break;
        }
        if count > to_receipt {
            if let Some(streaming) = &streaming {
                // The test may be gone, or not reading yet: a receipt it does not hear of
                // changes only which later receipt the kill follows.
                let _ = streaming.try_send(index);
            }
        }
    }
    sender.abort();
}

/// What List and Statistics must show once every node is caught up: one packet per update
/// and the sum of the unique byte counts.
fn expected(nodes: &[Arc<Mutex<Node>>]) -> Totals {
    let mut totals = Totals::default();
    for node in nodes {
        let node = node.lock().expect("no test thread panicked");
        assert_eq!(
            node.receipted,
            node.sent.len(),
            "a caught-up node has all receipted"
        );
        totals.packets += node.sent.len() as i64;
        totals.bytes += node.sent.iter().map(|flow| flow.bytes_in).sum::<i64>();
    }
    totals
}

/// Every node resends and replays on a fresh call until all it sent is receipted.
async fn catch_up(address: SocketAddr, nodes: &[Arc<Mutex<Node>>]) {
    let sessions: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| tokio::spawn(session(address, index as u64, node.clone(), None)))
        .collect();
    for session in sessions {
        session.await.expect("a session task ends");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_ingest_loses_no_receipted_update_and_counts_none_twice() {
    let restarts = kill_and_restart(&[]).await;
    assert_eq!(restarts.len(), KILLS);
}

/// SPEC §13.2. With one-second buckets, bucket files and the catalog file are written every second, so
/// the kills also land while they are being written, and restarts read the files by their
/// catalog ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_while_bucket_and_catalog_files_are_written_loses_and_doubles_nothing() {
    let restarts = kill_and_restart(&["--aggregation-window", "1s", "--retention", "300s"]).await;
    let by_ids: Vec<_> = restarts
        .iter()
        .map(|recovered| recovered["rows_by_catalog_ids"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        by_ids.iter().any(|rows| *rows > 0),
        "restarts read bucket files by their catalog ids: {by_ids:?}"
    );
}

/// Runs [`KILLS`] rounds of ingest from [`NODES`] nodes, each ended by a SIGKILL at a random
/// moment, on a server started with `flags`; after every restart List and Statistics show
/// each update sent exactly once. Returns each restart's `recovered the data directory` line.
async fn kill_and_restart(flags: &[&str]) -> Vec<serde_json::Value> {
    let data = tempfile::tempdir().expect("a temporary directory");
    let nodes: Vec<_> = (0..NODES)
        .map(|_| Arc::new(Mutex::new(Node::default())))
        .collect();
    let mut rng = rand::rng();
    let mut kills = Vec::new();
    let mut restarts = Vec::new();
    for round in 0..=KILLS {
        let eddy = Eddy::start(data.path(), flags);
        if round > 0 {
            restarts.push(eddy.recovered.clone());
        }
        catch_up(eddy.address, &nodes).await;
        let want = expected(&nodes);
        let caught_up = want.packets as usize;
        let channel = connect_channel(eddy.address).await;
        assert_eq!(
            list_totals(&channel).await,
            want,
            "List after restart {round}"
        );
        assert_eq!(
            statistics_totals(&channel).await,
            want,
            "Statistics after restart {round}"
        );
        if round == KILLS {
            break;
        }
        let (started, mut receipts_of_new) = mpsc::channel(4096);
        let streaming: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let started = Some(started.clone());
                tokio::spawn(session(eddy.address, index as u64, node.clone(), started))
            })
            .collect();
        // The kill lands at a random moment of the ingest: after every node has had a receipt
        // for new data, and then a random number of further receipts.
        let mut heard = vec![false; NODES as usize];
        while heard.contains(&false) {
            let node = receipts_of_new
                .recv()
                .await
                .expect("every node gets a receipt for a new update");
            heard[node as usize] = true;
        }
        for _ in 0..rng.random_range(0..1500) {
            receipts_of_new
                .recv()
                .await
                .expect("the nodes go on receiving receipts until the kill");
        }
        eddy.kill();
        for session in streaming {
            session.await.expect("a session task ends");
        }
        kills.push((caught_up, receipted_and_sent(&nodes)));
    }
    assert_eq!(kills.len(), KILLS);
    for (caught_up, (receipted, _)) in &kills {
        assert!(
            receipted > caught_up,
            "every kill landed while updates were being receipted: {kills:?}"
        );
    }
    assert!(
        kills.iter().any(|(_, (receipted, sent))| sent > receipted),
        "some kills left updates sent but not receipted: {kills:?}"
    );
    restarts
}

/// Updates receipted and updates sent so far, over every node.
fn receipted_and_sent(nodes: &[Arc<Mutex<Node>>]) -> (usize, usize) {
    nodes.iter().fold((0, 0), |(receipted, sent), node| {
        let node = node.lock().expect("no test thread panicked");
        (receipted + node.receipted, sent + node.sent.len())
    })
}
