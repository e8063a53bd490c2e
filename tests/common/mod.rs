//! Test support: a real Eddy server on `127.0.0.1:0` with real gRPC clients, and builders for
//! flow updates. Each test binary includes this module; not every binary uses every helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use eddy::ingest::SkipReason;
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

/// A `Flows.List` call that must succeed.
pub async fn list_ok(server: &TestServer, request: FlowListRequest) -> eddy::proto::FlowListResult {
    server
        .flows()
        .list(request)
        .await
        .expect("List succeeds")
        .into_inner()
}

/// A `Flows.List` call that must fail; returns its status.
pub async fn list_status(server: &TestServer, request: FlowListRequest) -> tonic::Status {
    match server.flows().list(request).await {
        Ok(response) => panic!("List should fail but returned {:?}", response.into_inner()),
        Err(status) => status,
    }
}

/// An exact string match.
pub fn exact(value: &str) -> eddy::proto::StringMatch {
    eddy::proto::StringMatch {
        value: value.into(),
        r#type: eddy::proto::MatchType::Exact as i32,
    }
}

/// A fuzzy (case-insensitive substring) string match.
pub fn fuzzy(value: &str) -> eddy::proto::StringMatch {
    eddy::proto::StringMatch {
        value: value.into(),
        r#type: eddy::proto::MatchType::Fuzzy as i32,
    }
}

/// A sort option.
pub fn sort_by(by: eddy::proto::SortBy) -> eddy::proto::SortOption {
    eddy::proto::SortOption { sort_by: by as i32 }
}

/// The flow of a result (always set, SPEC §1.3).
pub fn flow_of(result: &FlowResult) -> &Flow {
    result.flow.as_ref().expect("FlowResult.flow is set")
}

/// The key of a result's flow (always set, SPEC §1.3).
pub fn key_of(result: &FlowResult) -> &FlowKey {
    flow_of(result).key.as_ref().expect("Flow.Key is set")
}

/// Owned strings from string slices.
pub fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl TestServer {
    /// A server built from `config` (any de-duplication scope, retention, workers) with a
    /// manual clock showing `now`.
    pub async fn start_config(config: ServerConfig, now: i64) -> TestServer {
        let clock = Arc::new(ManualClock::new(now));
        let state = build_state(config, clock.clone()).expect("the engine starts");
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
        let channel = connect_channel(address).await;
        TestServer {
            address,
            state,
            clock,
            channel,
            stop: Some(stop),
        }
    }

    /// A new HTTP/2 connection (its own TCP connection) to this server.
    pub async fn new_channel(&self) -> Channel {
        connect_channel(self.address).await
    }
}

/// Opens a channel to `address` and waits until it is connected.
pub async fn connect_channel(address: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("the server accepts connections")
}

/// One open `FlowCollector.Connect` call: send updates and read receipts one at a time.
pub struct CollectorConn {
    updates: Option<tokio::sync::mpsc::Sender<FlowUpdate>>,
    receipts: tonic::Streaming<eddy::proto::FlowReceipt>,
}

impl CollectorConn {
    /// Opens a `Connect` call on `channel`.
    pub async fn open(channel: &Channel) -> CollectorConn {
        let (updates, outbound) = tokio::sync::mpsc::channel(1024);
        let receipts = FlowCollectorClient::new(channel.clone())
            .connect(ReceiverStream::new(outbound))
            .await
            .expect("Connect is accepted")
            .into_inner();
        CollectorConn {
            updates: Some(updates),
            receipts,
        }
    }

    /// Sends one update without waiting for its receipt.
    pub async fn send(&self, update: FlowUpdate) {
        self.updates
            .as_ref()
            .expect("the request stream is open")
            .send(update)
            .await
            .expect("the request stream is open");
    }

    /// Sends a flow without waiting for its receipt.
    pub async fn send_flow(&self, flow: Flow) {
        self.send(FlowUpdate { flow: Some(flow) }).await;
    }

    /// Waits for exactly one receipt.
    pub async fn receipt(&mut self) {
        self.receipts
            .message()
            .await
            .expect("the receipt stream has no error")
            .expect("a receipt arrives before the stream ends");
    }

    /// Waits for `count` receipts.
    pub async fn receipts(&mut self, count: usize) {
        for _ in 0..count {
            self.receipt().await;
        }
    }

    /// Sends `flow` and waits for its receipt.
    pub async fn send_and_wait(&mut self, flow: Flow) {
        self.send_flow(flow).await;
        self.receipt().await;
    }

    /// Ends the request stream and checks that the server then ends the call cleanly,
    /// without any receipt beyond those already read.
    pub async fn close(mut self) {
        self.updates = None;
        let next = self
            .receipts
            .message()
            .await
            .expect("the call ends with OK");
        assert!(next.is_none(), "no receipt beyond one per update");
    }

    /// What the receipt stream yields next.
    pub async fn next(&mut self) -> Result<Option<eddy::proto::FlowReceipt>, tonic::Status> {
        self.receipts.message().await
    }
}

/// A codec that sends and receives message bytes as they are, valid protobuf or not.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

/// The encoder and decoder of [`RawCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RawBytes;

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let length = prost::bytes::Buf::remaining(src);
        let mut bytes = vec![0; length];
        prost::bytes::Buf::copy_to_slice(src, &mut bytes);
        Ok(Some(bytes))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

/// A unary call to `path` (e.g. `/goldmane.Flows/List`) whose request body is `bytes` as is.
pub async fn raw_unary(
    channel: &Channel,
    path: &'static str,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(bytes), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// A streaming call to `path` whose request messages are `messages` as they are; returns the
/// response messages received before the call ended, and how it ended.
pub async fn raw_streaming(
    channel: &Channel,
    path: &'static str,
    messages: Vec<Vec<u8>>,
) -> (Vec<Vec<u8>>, Result<(), tonic::Status>) {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let request = tonic::Request::new(tokio_stream::iter(messages));
    let mut responses = match grpc.streaming(request, path, RawCodec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut received = Vec::new();
    loop {
        match responses.message().await {
            Ok(Some(message)) => received.push(message),
            Ok(None) => return (received, Ok(())),
            Err(status) => return (received, Err(status)),
        }
    }
}

impl CollectorConn {
    /// A handle that sends updates on this call from another task; the request stream ends
    /// once every handle and the connection's own sender are dropped.
    pub fn clone_sender(&self) -> tokio::sync::mpsc::Sender<FlowUpdate> {
        self.updates
            .as_ref()
            .expect("the request stream is open")
            .clone()
    }
}

/// A running server on the system clock (no manual clock: epochs end on the wall clock), for
/// live streams with a short window (SPEC §7).
pub struct RealtimeServer {
    pub address: SocketAddr,
    pub state: ServerState,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
}

impl RealtimeServer {
    /// A server with `workers` workers, the given retention and stream limits, on the real clock.
    pub async fn start(
        workers: usize,
        retention: Retention,
        streams: eddy::streams::StreamLimits,
    ) -> RealtimeServer {
        let mut config = ServerConfig::new(workers, retention);
        config.streams = streams;
        let state = build_state(config, Arc::new(eddy::worker::clock::SystemClock))
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
        let channel = connect_channel(address).await;
        RealtimeServer {
            address,
            state,
            channel,
            stop: Some(stop),
        }
    }

    /// The server's clock, in whole Unix seconds.
    pub fn now(&self) -> i64 {
        self.state.now()
    }

    pub fn flows(&self) -> FlowsClient<Channel> {
        FlowsClient::new(self.channel.clone())
    }

    /// Sends `flows` on one new `Connect` stream and waits for every receipt.
    pub async fn ingest(&self, flows: Vec<Flow>) {
        send_on_new_connection(&self.channel, flows).await;
    }

    /// A new HTTP/2 connection (its own TCP connection) to this server.
    pub async fn new_channel(&self) -> Channel {
        connect_channel(self.address).await
    }
}

impl Drop for RealtimeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Checks the accounting identity (SPEC §12.9) on the server's counters, as exported in its
/// metrics: every update received was stored, de-duplicated or skipped for one reason. Call it
/// once every sent update is receipted (the engine is then idle for ingest). Returns how many
/// updates were received.
pub fn assert_accounting(state: &ServerState) -> u64 {
    let ingest = &state.ingest;
    let received = ingest.received_total();
    let skipped: u64 = SkipReason::ALL
        .iter()
        .map(|reason| ingest.skipped_total(*reason))
        .sum();
    assert_eq!(
        received,
        ingest.stored_total() + skipped,
        "received = stored + de-duplicated + skipped by reason: stored {}, skipped {:?}",
        ingest.stored_total(),
        SkipReason::ALL.map(|reason| (reason.label(), ingest.skipped_total(reason)))
    );
    received
}

/// Runs the `eddy` binary with `args`, off the runtime, with a clean environment for its own
/// variables (`EDDY_SERVER`, `NO_COLOR`) and a 60 s limit.
pub async fn run_eddy(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        assert_cmd::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(&args)
            .env_remove("EDDY_SERVER")
            .env_remove("NO_COLOR")
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .expect("eddy runs")
    })
    .await
    .expect("the blocking task finishes")
}

/// The runtime a property-test case runs its server and clients on (two threads).
pub fn case_runtime() -> Result<tokio::runtime::Runtime, proptest::test_runner::TestCaseError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("no tokio runtime: {e}")))
}
