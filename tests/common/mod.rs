//! Test support: a real Eddy server on `127.0.0.1:0` with real gRPC clients, and builders for
//! flow updates. Each test binary includes this module; not every binary uses every helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use eddy::proto::flow_collector_client::FlowCollectorClient;
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::{
    Action, EndpointType, Flow, FlowKey, FlowListRequest, FlowResult, FlowUpdate, PolicyHit,
    PolicyKind, PolicyTrace, Reporter,
};
use eddy::retention::Retention;
use eddy::server::{build_state, serve, ServerConfig};
use eddy::state::ServerState;
use eddy::worker::clock::ManualClock;
use tokio::sync::oneshot;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A fixed "now" for tests with a manual clock: a multiple of 15 plus 7 seconds.
pub const NOW: i64 = 1_700_000_107;
/// The default window in tests.
pub const WINDOW: i64 = 15;

/// A running server and its clients.
pub struct TestServer {
    pub address: SocketAddr,
    pub state: ServerState,
    pub clock: Arc<ManualClock>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// A server with `workers` workers, window 15 s, 240 retained buckets, clock at [`NOW`].
    pub async fn start(workers: usize) -> TestServer {
        Self::start_with(
            workers,
            Retention {
                window: WINDOW,
                closed_buckets: 240,
            },
            NOW,
        )
        .await
    }

    /// A server with the given retention and a manual clock showing `now`.
    pub async fn start_with(workers: usize, retention: Retention, now: i64) -> TestServer {
        let clock = Arc::new(ManualClock::new(now));
        let state = build_state(ServerConfig::new(workers, retention), clock.clone())
            .expect("the engine starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on loopback");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            let _ = serve(served, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("a valid URI")
            .connect()
            .await
            .expect("the server accepts connections");
        TestServer {
            address,
            state,
            clock,
            channel,
            stop: Some(stop),
        }
    }

    pub fn flows(&self) -> FlowsClient<Channel> {
        FlowsClient::new(self.channel.clone())
    }

    pub fn collector(&self) -> FlowCollectorClient<Channel> {
        FlowCollectorClient::new(self.channel.clone())
    }

    pub fn statistics(&self) -> StatisticsClient<Channel> {
        StatisticsClient::new(self.channel.clone())
    }

    /// Sends `flows` on one new `Connect` stream and waits for every receipt.
    pub async fn ingest(&self, flows: Vec<Flow>) {
        send_on_new_connection(&self.channel, flows).await;
    }

    /// Moves the clock and waits until the engine has applied any retention change.
    pub async fn advance_clock(&self, seconds: i64) {
        self.clock.advance(seconds);
        self.state
            .engine
            .sync()
            .await
            .expect("the engine is running");
    }

    /// Lists everything with the default time range, sorted by id for easy comparison.
    pub async fn list_all(&self) -> Vec<FlowResult> {
        let mut flows = self
            .flows()
            .list(FlowListRequest::default())
            .await
            .expect("List succeeds")
            .into_inner()
            .flows;
        flows.sort_by_key(|f| f.id);
        flows
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sends `flows` on a new `Connect` stream over `channel`, returning the number of receipts.
pub async fn send_on_new_connection(channel: &Channel, flows: Vec<Flow>) -> usize {
    let count = flows.len();
    let (updates, outbound) = tokio::sync::mpsc::channel(count.max(1));
    let mut client = FlowCollectorClient::new(channel.clone());
    let mut receipts = client
        .connect(ReceiverStream::new(outbound))
        .await
        .expect("Connect is accepted")
        .into_inner();
    for flow in flows {
        updates
            .send(FlowUpdate { flow: Some(flow) })
            .await
            .expect("the request stream is open");
    }
    let mut received = 0;
    while received < count {
        receipts
            .message()
            .await
            .expect("receipts arrive")
            .expect("one receipt per update");
        received += 1;
    }
    received
}

/// A flow key with the given names and namespaces and sensible defaults elsewhere.
pub fn key(source: (&str, &str), dest: (&str, &str)) -> FlowKey {
    FlowKey {
        source_name: source.1.into(),
        source_namespace: source.0.into(),
        source_type: EndpointType::WorkloadEndpoint as i32,
        dest_name: dest.1.into(),
        dest_namespace: dest.0.into(),
        dest_type: EndpointType::WorkloadEndpoint as i32,
        dest_port: 443,
        dest_service_name: String::new(),
        dest_service_namespace: String::new(),
        dest_service_port_name: String::new(),
        dest_service_port: 0,
        proto: "TCP".into(),
        reporter: Reporter::Dst as i32,
        action: Action::Allow as i32,
        policies: Some(PolicyTrace::default()),
    }
}

/// A flow for `key` starting (and ending) at `start` with `packets` packets in each direction.
pub fn flow(key: FlowKey, start: i64, packets: i64) -> Flow {
    Flow {
        key: Some(key),
        start_time: start,
        end_time: start + 1,
        source_labels: vec![],
        dest_labels: vec![],
        packets_in: packets,
        packets_out: packets,
        bytes_in: packets * 100,
        bytes_out: packets * 100,
        num_connections_started: 1,
        num_connections_completed: 1,
        num_connections_live: 0,
    }
}

/// A policy hit.
pub fn hit(kind: PolicyKind, tier: &str, namespace: &str, name: &str, action: Action) -> PolicyHit {
    PolicyHit {
        kind: kind as i32,
        namespace: namespace.into(),
        name: name.into(),
        tier: tier.into(),
        action: action as i32,
        policy_index: 0,
        rule_index: 0,
        trigger: None,
    }
}

/// The start of the bucket holding `t` with the test window.
pub fn bucket(t: i64) -> i64 {
    t - t.rem_euclid(WINDOW)
}
