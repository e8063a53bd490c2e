//! Live streams that cannot all be served (SPEC §7.5, §12.5), on a manual clock: each epoch
//! happens when the test moves the clock, and the test waits for the hub to have queued the
//! bucket (its `emitted` watch) and for results on the streams, never for time. A client that
//! does not read is one on a connection with 4 KiB HTTP/2 windows that never reads: what the
//! server queues for it stays queued.
//!
//! Shown: a slow reader among fast ones sharing its filter is ended with `RESOURCE_EXHAUSTED`
//! at the next epoch while the fast ones get every bucket; when demand exceeds what the
//! server may hold (streams over their buffer) or what clients take (streams that do not
//! read), those streams are ended and told why, the queues stay within the bounds, and the
//! streams that read get every bucket, each at the epoch right after it closed.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::{Filter, Flow, FlowResult, FlowStreamRequest};
use eddy::retention::Retention;
use eddy::server::{build_state, serve, ServerConfig};
use eddy::state::ServerState;
use eddy::streams::{StreamCounters, StreamLimits};
use eddy::worker::clock::ManualClock;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// Fails a test that hangs; never a timing assertion.
const GUARD: Duration = Duration::from_secs(60);
/// A name of 2 KiB: a few hundred results fill what HTTP/2 holds for a client.
const LONG: usize = 2048;

struct Server {
    state: ServerState,
    clock: Arc<ManualClock>,
    address: std::net::SocketAddr,
    channel: Channel,
}

impl Server {
    async fn start(limits: StreamLimits) -> Server {
        let clock = Arc::new(ManualClock::new(NOW));
        let mut config = ServerConfig::new(
            2,
            Retention {
                window: WINDOW,
                closed_buckets: 240,
            },
        );
        config.streams = limits;
        let state = build_state(config, clock.clone()).expect("the engine starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on loopback");
        let address = listener.local_addr().expect("a bound listener's address");
        tokio::spawn(serve(state.clone(), listener, std::future::pending()));
        let channel = connect(address, None).await;
        Server {
            state,
            clock,
            address,
            channel,
        }
    }

    fn counters(&self) -> &StreamCounters {
        self.state.streams.counters()
    }

    /// The start of the current bucket.
    fn bucket_now(&self) -> i64 {
        self.state.retention.bucket_of(self.state.now())
    }

    /// Moves the clock one window on and waits until the hub has queued the bucket that
    /// closed a window ago; returns that bucket.
    async fn epoch(&self) -> i64 {
        self.clock.advance(WINDOW);
        self.state.engine.sync().await.expect("the engine runs");
        let due = self.bucket_now() - 2 * WINDOW;
        let mut emitted = self.state.streams.emitted();
        tokio::time::timeout(GUARD, emitted.wait_for(|bucket| *bucket >= due))
            .await
            .expect("the hub handles the epoch")
            .expect("the hub runs");
        due
    }

    /// Ingests `count` rows of 2 KiB into the current bucket, destined to `namespace`.
    async fn ingest(&self, namespace: &str, count: usize) {
        let bucket = self.bucket_now();
        let long = "x".repeat(LONG);
        let flows: Vec<Flow> = (0..count)
            .map(|i| {
                flow(
                    key(("client", &long), (namespace, &format!("svc-{i:04}"))),
                    bucket,
                    1,
                )
            })
            .collect();
        send_on_new_connection(&self.channel, flows).await;
    }

    /// Opens a stream of every live bucket filtered to `namespace` on `channel`.
    async fn open(&self, channel: &Channel, namespace: &str) -> Streaming<FlowResult> {
        let request = FlowStreamRequest {
            filter: Some(Filter {
                dest_namespaces: vec![exact(namespace)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let opened = tokio::time::timeout(GUARD, FlowsClient::new(channel.clone()).stream(request))
            .await
            .expect("the stream opens in time")
            .expect("the stream opens")
            .into_inner();
        opened
    }

    /// Waits until the hub holds `count` subscriptions.
    async fn registered(&self, count: usize) {
        // Registration is not observable on the wire: the first epoch after it is. Epochs
        // without data deliver nothing, so moving the clock here changes no result.
        while self.counters().subscriptions.load(Ordering::SeqCst) < count {
            tokio::task::yield_now().await;
        }
    }
}

/// A connection; with `window`, HTTP/2 windows of that many bytes (a client that never reads
/// on it holds back what the server sends it).
async fn connect(address: std::net::SocketAddr, window: Option<u32>) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .connect()
        .await
        .expect("the server accepts connections")
}

/// Reads the next `count` results of `stream`: all of bucket `bucket`, each name once.
async fn read_bucket(stream: &mut Streaming<FlowResult>, bucket: i64, count: usize) {
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..count {
        let result = tokio::time::timeout(GUARD, stream.message())
            .await
            .expect("a result in time")
            .expect("the stream has no error")
            .expect("the stream is open");
        assert_eq!(flow_of(&result).start_time, bucket);
        names.insert(key_of(&result).dest_name.clone());
    }
    assert_eq!(names.len(), count, "each row once");
}

/// Reads what a stream the server ended still delivers, then its status; returns both.
async fn read_to_end(stream: &mut Streaming<FlowResult>) -> (usize, tonic::Status) {
    let mut results = 0;
    loop {
        match tokio::time::timeout(GUARD, stream.message())
            .await
            .expect("the stream ends in time")
        {
            Ok(Some(_)) => results += 1,
            Ok(None) => panic!("a stream the server ends ends with an error"),
            Err(status) => return (results, status),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_ended_at_the_next_epoch_and_fast_readers_of_its_filter_get_every_bucket()
{
    const ROWS: usize = 200;
    let server = Server::start(StreamLimits {
        max_streams: 10,
        buffer: 10_000,
        ..StreamLimits::default()
    })
    .await;
    let mut fast = Vec::new();
    for _ in 0..3 {
        fast.push(server.open(&server.channel, "shop").await);
    }
    let small_windows = connect(server.address, Some(4096)).await;
    let mut slow = server.open(&small_windows, "shop").await;
    server.registered(4).await;
    assert_eq!(server.counters().groups.load(Ordering::SeqCst), 1);

    // Bucket A is emitted at the second epoch: one shared chunk of 200 results (420 KiB)
    // queued to all four; the fast clients read it all, the slow one none.
    server.ingest("shop", ROWS).await;
    server.epoch().await;
    server.ingest("shop", ROWS).await;
    let first = server.epoch().await;
    assert!(server.counters().queued.load(Ordering::SeqCst) <= 4 * ROWS);
    for stream in fast.iter_mut() {
        read_bucket(stream, first, ROWS).await;
    }
    assert_eq!(server.counters().too_slow.load(Ordering::SeqCst), 0);

    // At the next epoch the slow stream still has most of A queued: it is ended, its queue
    // dropped, and bucket B goes to the fast ones only.
    server.ingest("shop", ROWS).await;
    let second = server.epoch().await;
    let counters = server.counters();
    assert_eq!(counters.too_slow.load(Ordering::SeqCst), 1);
    assert_eq!(counters.late.load(Ordering::SeqCst), 1);
    assert_eq!(counters.active.load(Ordering::SeqCst), 3);
    assert_eq!(counters.subscriptions.load(Ordering::SeqCst), 3);
    assert!(counters.queued.load(Ordering::SeqCst) <= 3 * ROWS);
    for stream in fast.iter_mut() {
        read_bucket(stream, second, ROWS).await;
    }
    let third = server.epoch().await;
    for stream in fast.iter_mut() {
        read_bucket(stream, third, ROWS).await;
    }
    assert_eq!(
        counters.delivered.load(Ordering::SeqCst),
        (4 * ROWS + 3 * ROWS + 3 * ROWS) as u64
    );
    assert_eq!(counters.too_slow.load(Ordering::SeqCst), 1);

    // The slow client, reading at last, finds whole results of A (what HTTP/2 had taken)
    // and then why its stream ended.
    let (results, status) = read_to_end(&mut slow).await;
    assert!(
        results < ROWS,
        "{results} results of a bucket it could not take"
    );
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("consumer too slow"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("still unsent"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_demand_exceeds_the_bounds_the_streams_beyond_them_are_ended_and_told_why_and_the_rest_complete(
) {
    const BUFFER: usize = 300;
    const BIG: usize = 400;
    const SMALL: usize = 200;
    let server = Server::start(StreamLimits {
        max_streams: 100,
        buffer: BUFFER,
        ..StreamLimits::default()
    })
    .await;
    // Eight streams whose filter matches more rows per bucket than their buffer holds; eight
    // that read; eight with the same filter that never read.
    let mut over_buffer = Vec::new();
    for _ in 0..8 {
        over_buffer.push(server.open(&server.channel, "big").await);
    }
    let mut readers = Vec::new();
    for _ in 0..8 {
        readers.push(server.open(&server.channel, "small").await);
    }
    let small_windows = connect(server.address, Some(4096)).await;
    let mut never_read = Vec::new();
    for _ in 0..8 {
        never_read.push(server.open(&small_windows, "small").await);
    }
    server.registered(24).await;
    let counters = server.counters();

    let mut emitted = Vec::new();
    for round in 0..5 {
        server.ingest("big", BIG).await;
        server.ingest("small", SMALL).await;
        let bucket = server.epoch().await;
        // Every stream still open holds at most one bucket, within its buffer.
        let open = counters.subscriptions.load(Ordering::SeqCst);
        assert!(counters.queued.load(Ordering::SeqCst) <= open * SMALL.min(BUFFER));
        if round == 0 {
            // Nothing was in the bucket that closed before the first ingest.
            assert_eq!(counters.delivered.load(Ordering::SeqCst), 0);
            continue;
        }
        for stream in readers.iter_mut() {
            read_bucket(stream, bucket, SMALL).await;
        }
        emitted.push(bucket);
        match round {
            // The first bucket with rows: over the buffer for "big".
            1 => assert_eq!(counters.too_slow.load(Ordering::SeqCst), 8),
            // The next epoch: the non-readers still hold the previous bucket.
            _ => assert_eq!(counters.too_slow.load(Ordering::SeqCst), 16),
        }
    }
    assert_eq!(emitted.len(), 4);
    assert_eq!(counters.late.load(Ordering::SeqCst), 8);
    assert_eq!(counters.active.load(Ordering::SeqCst), 8);
    // The readers got every bucket, the non-readers only the first.
    assert_eq!(
        counters.delivered.load(Ordering::SeqCst),
        (8 * SMALL * 4 + 8 * SMALL) as u64
    );

    for stream in over_buffer.iter_mut() {
        let (results, status) = read_to_end(stream).await;
        assert_eq!(results, 0);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status
                .message()
                .contains("more results than the stream's buffer holds"),
            "{}",
            status.message()
        );
    }
    // Read together: on their shared connection, what one leaves unread holds the others'
    // window.
    let ends: Vec<_> = never_read
        .into_iter()
        .map(|mut stream| tokio::spawn(async move { read_to_end(&mut stream).await }))
        .collect();
    for end in ends {
        let (results, status) = end.await.expect("the reader finishes");
        assert!(results < SMALL);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status
                .message()
                .contains("still unsent when the next was due"),
            "{}",
            status.message()
        );
    }
}
