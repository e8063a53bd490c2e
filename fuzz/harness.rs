//! The fuzzing harness: one function per fuzz target, each taking arbitrary bytes through
//! Eddy's own code and asserting what must hold for every input. Shared, by `#[path]`, by the
//! `cargo fuzz` targets (fuzz/fuzz_targets/) and by the corpus replay on stable
//! (tests/fuzz_corpus.rs), so both run exactly the same checks.
//!
//! - [`flow_update`]: bytes → `FlowUpdate` → validation, canonical key and interning
//!   (`ingest::prepare`), as every `Connect` call runs it.
//! - [`connect_update`]: bytes as one `Connect` message through the borrowed reader and the
//!   call's remembering preparation (`ingest::wire`, `ingest::connection`), twice: the same
//!   outcome as prost and `ingest::prepare`, whether accepted, skipped or refused as malformed.
//! - [`list_request`], [`filter_hints_request`], [`statistics_request`]: bytes as the one
//!   request message of a call to the real service, in process: decoding, validation, filter
//!   compilation against a catalog holding a small cluster, the engine's query and the answer.
//! - [`connect_framing`]: bytes as the request body of a `FlowCollector.Connect` call
//!   (length-prefixed gRPC frames, delivered in chunks), through tonic's codec and the real
//!   collector service.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use eddy::api::collector::CollectorService;
use eddy::api::flows::FlowsService;
use eddy::api::flows_wire::FlowsWire;
use eddy::api::framing::{WholeFrames, WholeFramesLayer};
use eddy::api::statistics::StatisticsService;
use eddy::api::statistics_wire::StatisticsWire;
use eddy::catalog::{Catalog, CatalogLimits};
use eddy::ingest::connection::{ConnectionIngest, Refused};
use eddy::ingest::dedup::fingerprint;
use eddy::ingest::wire::{read_update, WireError};
use eddy::ingest::{prepare, Bounds, InputLimits, NotPrepared};
use eddy::proto::{
    FilterHintsRequest, FilterHintsResult, Flow, FlowListRequest, FlowListResult, FlowUpdate,
    StatisticsRequest, StatisticsResult,
};
use eddy::retention::Retention;
use eddy::server::{build_state, ServerConfig, MAX_DECODED_MESSAGE};
use eddy::synth::Cluster;
use eddy::worker::clock::ManualClock;
use eddy_dataflows::model::FlowRecord;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use prost::Message;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tonic::codegen::{http, Bytes, Service};
use tonic::Code;
use tower::Layer;

/// The harness clock: every input meets the same "now", so runs repeat.
pub const NOW: i64 = 1_700_000_107;
/// The harness server's window and retention: 15 s buckets, 20 of them closed.
pub const RETENTION: Retention = Retention {
    window: 15,
    closed_buckets: 20,
};

/// The path of `FlowCollector.Connect`.
const CONNECT: &str = "/goldmane.FlowCollector/Connect";

/// The first bytes of every gRPC frame: a compression flag and a big-endian length.
const FRAME_HEADER: usize = 5;

/// How the bytes of a gRPC body divide into frames.
struct Framing<'a> {
    /// The complete, uncompressed frames of at most [`MAX_DECODED_MESSAGE`] bytes, in order,
    /// up to the first that is not.
    messages: Vec<&'a [u8]>,
    /// Whether the body ended exactly after the last of `messages`.
    clean_end: bool,
}

/// Splits `body` into frames as a gRPC peer reads them.
fn frames(mut body: &[u8]) -> Framing<'_> {
    let mut messages = Vec::new();
    loop {
        if body.is_empty() {
            return Framing {
                messages,
                clean_end: true,
            };
        }
        let Some((header, rest)) = body.split_first_chunk::<FRAME_HEADER>() else {
            break;
        };
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if header[0] != 0 || length > MAX_DECODED_MESSAGE || rest.len() < length {
            return Framing {
                messages,
                clean_end: false,
            };
        }
        let (message, after) = rest.split_at(length);
        messages.push(message);
        body = after;
    }
    Framing {
        messages,
        clean_end: false,
    }
}

/// `message` as one uncompressed gRPC frame.
fn frame(message: &[u8]) -> Vec<u8> {
    let length = u32::try_from(message.len()).expect("fuzz inputs are far below 4 GiB");
    let mut framed = Vec::with_capacity(FRAME_HEADER + message.len());
    framed.push(0);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// What a call answered: its response messages and the status that ended it.
struct Reply {
    messages: Vec<Vec<u8>>,
    status: tonic::Status,
}

/// A server's state and services, built once per process on a manual clock, its catalog and
/// engine holding a small cluster's flows.
struct Harness {
    runtime: tokio::runtime::Runtime,
    collector: WholeFrames<CollectorService>,
    flows: FlowsWire,
    statistics: StatisticsWire,
}

impl Harness {
    fn get() -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(Harness::start)
    }

    fn start() -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the harness runtime starts");
        let clock = Arc::new(ManualClock::new(NOW));
        let state = runtime
            .block_on(async { build_state(ServerConfig::new(1, RETENTION), clock) })
            .expect("the harness engine starts");
        let harness = Harness {
            runtime,
            collector: WholeFramesLayer.layer(
                CollectorService::new(state.clone()).max_decoding_message_size(MAX_DECODED_MESSAGE),
            ),
            flows: FlowsWire::new(FlowsService::new(state.clone()), MAX_DECODED_MESSAGE),
            statistics: StatisticsWire::new(
                StatisticsService::new(state.clone()),
                MAX_DECODED_MESSAGE,
            ),
        };
        let body: Vec<u8> = seed_flows()
            .into_iter()
            .flat_map(|flow| frame(&FlowUpdate { flow: Some(flow) }.encode_to_vec()))
            .collect();
        let seeded = harness.call(harness.collector.clone(), CONNECT, &body, body.len());
        assert_eq!(
            seeded.status.code(),
            Code::Ok,
            "the seed flows are accepted"
        );
        harness
            .runtime
            .block_on(state.engine.sync())
            .expect("the harness engine runs");
        harness
    }

    /// Calls the method at `path` of `service` with `body` delivered in pieces of `chunk`
    /// bytes, and reads the whole answer.
    fn call<S>(&self, mut service: S, path: &'static str, body: &[u8], chunk: usize) -> Reply
    where
        S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    {
        let chunks: Vec<BodyFrame> = body
            .chunks(chunk.max(1))
            .map(|part| Ok(Frame::data(Bytes::copy_from_slice(part))))
            .collect();
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(tonic::body::Body::new(StreamBody::new(
                futures::stream::iter(chunks),
            )))
            .expect("a request of a valid method, path and headers");
        self.runtime.block_on(async move {
            let response = match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let (parts, body) = response.into_parts();
            assert_eq!(parts.status, http::StatusCode::OK, "gRPC answers HTTP 200");
            let collected = body
                .collect()
                .await
                .expect("the server's response body is readable to its end");
            let trailers = collected.trailers().cloned().unwrap_or_default();
            let data = collected.to_bytes();
            let framing = frames(&data);
            assert!(framing.clean_end, "the server sends whole frames only");
            let status = tonic::Status::from_header_map(&parts.headers)
                .or_else(|| tonic::Status::from_header_map(&trailers))
                .expect("every call ends with a grpc-status");
            Reply {
                messages: framing.messages.iter().map(|m| m.to_vec()).collect(),
                status,
            }
        })
    }

    /// Calls a unary or server-streaming method with `message` as its one request message.
    fn request<S>(&self, service: S, path: &'static str, message: &[u8]) -> Reply
    where
        S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    {
        let body = frame(message);
        self.call(service, path, &body, body.len())
    }
}

/// One piece of a request body.
type BodyFrame = Result<Frame<Bytes>, Infallible>;

/// The flows the harness server holds before any input: a small cluster's report from every
/// node, in the current bucket.
fn seed_flows() -> Vec<Flow> {
    let cluster = Cluster::demo(3);
    let mut rng = SmallRng::seed_from_u64(7);
    (0..cluster.nodes())
        .flat_map(|node| cluster.report(node, NOW - 20, &mut rng))
        .collect()
}

/// A status a request that decoded may end with: answered, or refused as a bad request.
fn assert_answered_or_refused(status: &tonic::Status, request: &dyn std::fmt::Debug) {
    assert!(
        matches!(status.code(), Code::Ok | Code::InvalidArgument),
        "a decodable request is answered or refused as invalid, not {status:?}: {request:?}"
    );
    if status.code() == Code::InvalidArgument {
        assert!(!status.message().is_empty(), "a refusal says why");
    }
}

/// Bytes that are not a message end the call `INTERNAL`, as tonic answers by default.
fn assert_unparseable(status: &tonic::Status) {
    assert_eq!(
        status.code(),
        Code::Internal,
        "undecodable request bytes end INTERNAL: {status:?}"
    );
}

/// `FlowUpdate` bytes → decode → validation, canonical key and interning.
///
/// For an accepted update: every interned value resolves to the update's own, labels are
/// interned as sets, the record sits in the update's bucket inside retention with the
/// update's counters; the update re-encoded, with its labels and hits reversed or with its
/// trace in canonical order, gives the same key, labels and fingerprint. A skipped update is
/// skipped for the same reason however it is spelled.
/// `ingest::prepare` at the fixed clock, with the default size limits.
fn prepare_now(update: &FlowUpdate, catalog: &Catalog) -> Result<FlowRecord, NotPrepared> {
    let limits = InputLimits::default();
    let bounds = Bounds {
        retention: &RETENTION,
        limits: &limits,
        now: NOW,
    };
    prepare(update, catalog, bounds)
}

pub fn connect_update(data: &[u8]) {
    let decoded = FlowUpdate::decode(data);
    if read_update(data) == Err(WireError::Malformed) {
        assert!(decoded.is_err(), "the reader refused what prost accepts");
    }
    let by_prost = Catalog::new(CatalogLimits::default());
    let expected = decoded.map(|update| prepare_now(&update, &by_prost));
    let by_call = Catalog::new(CatalogLimits::default());
    let mut call = ConnectionIngest::new();
    let limits = InputLimits::default();
    let bounds = Bounds {
        retention: &RETENTION,
        limits: &limits,
        now: NOW,
    };
    for _ in 0..2 {
        match (&expected, call.prepare(data, &by_call, bounds)) {
            (Err(error), Err(Refused::Malformed(got))) => assert_eq!(&got, error),
            (Ok(Ok(record)), Ok(prepared)) => assert_eq!(&prepared.record, record),
            (Ok(Err(reason)), Err(Refused::NotPrepared(got))) => assert_eq!(&got, reason),
            (expected, got) => panic!("prost and prepare: {expected:?}; the call: {got:?}"),
        }
    }
}

pub fn flow_update(data: &[u8]) {
    let Ok(update) = FlowUpdate::decode(data) else {
        return;
    };
    let catalog = Catalog::new(CatalogLimits::default());
    let prepared = prepare_now(&update, &catalog);
    let again = FlowUpdate::decode(&update.encode_to_vec()[..])
        .expect("a decoded update re-encodes to decodable bytes");
    let reprepared = prepare_now(&again, &catalog);
    let record = match (prepared, reprepared) {
        (Ok(record), Ok(same)) => {
            assert_eq!(record, same, "one update, one record");
            record
        }
        (Err(reason), Err(same)) => {
            assert_eq!(reason, same, "one update, one reason");
            return;
        }
        (first, second) => panic!("re-encoding changed the outcome: {first:?} then {second:?}"),
    };
    let flow = update.flow.as_ref().expect("an accepted update has a flow");
    let key = flow.key.as_ref().expect("an accepted update has a key");
    let symbols = &catalog.symbols;
    let interned = [
        (record.key.source_name, &key.source_name),
        (record.key.source_namespace, &key.source_namespace),
        (record.key.dest_name, &key.dest_name),
        (record.key.dest_namespace, &key.dest_namespace),
        (record.key.dest_service_name, &key.dest_service_name),
        (
            record.key.dest_service_namespace,
            &key.dest_service_namespace,
        ),
        (
            record.key.dest_service_port_name,
            &key.dest_service_port_name,
        ),
        (record.key.proto, &key.proto),
    ];
    for (id, value) in interned {
        assert_eq!(
            &symbols.resolve(id),
            value,
            "an interned string resolves to itself"
        );
    }
    let as_set = |labels: &[String]| {
        let mut set = labels.to_vec();
        set.sort_unstable();
        set.dedup();
        set
    };
    assert_eq!(
        catalog.label_set(record.labels.0),
        as_set(&flow.source_labels)
    );
    assert_eq!(
        catalog.label_set(record.labels.1),
        as_set(&flow.dest_labels)
    );
    assert_eq!(record.bucket, RETENTION.bucket_of(flow.start_time));
    assert!(
        RETENTION.accepts(flow.start_time, NOW),
        "accepted inside retention"
    );
    let stats = &record.stats;
    assert_eq!(
        [stats.records, stats.packets_in, stats.packets_out],
        [1, flow.packets_in, flow.packets_out]
    );
    assert_eq!(
        [stats.bytes_in, stats.bytes_out],
        [flow.bytes_in, flow.bytes_out]
    );
    assert_eq!(
        [
            stats.connections_started,
            stats.connections_completed,
            stats.connections_live
        ],
        [
            flow.num_connections_started,
            flow.num_connections_completed,
            flow.num_connections_live
        ]
    );
    let print = fingerprint(&record, flow.start_time, flow.end_time);

    let mut reordered = update.clone();
    let reordered_flow = reordered
        .flow
        .as_mut()
        .expect("cloned from an accepted update");
    reordered_flow.source_labels.reverse();
    reordered_flow.dest_labels.reverse();
    if let Some(trace) = reordered_flow
        .key
        .as_mut()
        .and_then(|key| key.policies.as_mut())
    {
        trace.enforced_policies.reverse();
        trace.pending_policies.reverse();
    }
    let reordered = prepare_now(&reordered, &catalog)
        .expect("reordering labels and hits keeps an update valid");
    assert_eq!(
        reordered, record,
        "labels and hits in any order: one record"
    );
    assert_eq!(
        fingerprint(&reordered, flow.start_time, flow.end_time),
        print
    );

    let mut canonical = update.clone();
    let canonical_key = canonical
        .flow
        .as_mut()
        .and_then(|flow| flow.key.as_mut())
        .expect("cloned from an accepted update");
    if canonical_key.policies.is_some() {
        canonical_key.policies = Some(catalog.trace(record.key.trace));
    }
    let canonical =
        prepare_now(&canonical, &catalog).expect("the canonical trace keeps an update valid");
    assert_eq!(
        canonical, record,
        "the canonical trace is its own canonical form"
    );
}

/// `Flows.List` request bytes through the real service.
///
/// Undecodable bytes end `INTERNAL`; a negative page or page size is `INVALID_ARGUMENT`;
/// otherwise the call is answered or refused as invalid, and an answer has at most a page of
/// flows, each with a key, and a total at least as large.
pub fn list_request(data: &[u8]) {
    let harness = Harness::get();
    let reply = harness.request(harness.flows.clone(), "/goldmane.Flows/List", data);
    let Ok(request) = FlowListRequest::decode(data) else {
        return assert_unparseable(&reply.status);
    };
    assert_answered_or_refused(&reply.status, &request);
    if request.page < 0 || request.page_size < 0 {
        assert_eq!(reply.status.code(), Code::InvalidArgument, "{request:?}");
    }
    if reply.status.code() != Code::Ok {
        assert!(reply.messages.is_empty(), "a refused call sends no answer");
        return;
    }
    let [answer] = &reply.messages[..] else {
        panic!(
            "a unary call answers one message, not {}",
            reply.messages.len()
        );
    };
    let result = FlowListResult::decode(&answer[..]).expect("the server sends a valid result");
    if request.page_size > 0 {
        assert!(
            result.flows.len() as i64 <= request.page_size,
            "at most a page"
        );
    }
    let meta = result.meta.expect("a List answer has its metadata");
    assert!(meta.total_results >= result.flows.len() as i64);
    for flow in &result.flows {
        assert!(flow.id > 0, "flow ids are positive");
        let flow = flow.flow.as_ref().expect("a result holds its flow");
        assert!(flow.key.is_some(), "a result's flow has its key");
    }
}

/// `Flows.FilterHints` request bytes through the real service.
///
/// Undecodable bytes end `INTERNAL`; an unspecified type is `INVALID_ARGUMENT`; an answer
/// has at most a page of non-empty hints in strictly ascending order.
pub fn filter_hints_request(data: &[u8]) {
    let harness = Harness::get();
    let reply = harness.request(harness.flows.clone(), "/goldmane.Flows/FilterHints", data);
    let Ok(request) = FilterHintsRequest::decode(data) else {
        return assert_unparseable(&reply.status);
    };
    assert_answered_or_refused(&reply.status, &request);
    if request.r#type == 0 || request.page < 0 || request.page_size < 0 {
        assert_eq!(reply.status.code(), Code::InvalidArgument, "{request:?}");
    }
    if reply.status.code() != Code::Ok {
        assert!(reply.messages.is_empty(), "a refused call sends no answer");
        return;
    }
    let [answer] = &reply.messages[..] else {
        panic!(
            "a unary call answers one message, not {}",
            reply.messages.len()
        );
    };
    let result = FilterHintsResult::decode(&answer[..]).expect("the server sends a valid result");
    if request.page_size > 0 {
        assert!(
            result.hints.len() as i64 <= request.page_size,
            "at most a page"
        );
    }
    let meta = result.meta.expect("a FilterHints answer has its metadata");
    assert!(meta.total_results >= result.hints.len() as i64);
    assert!(result.hints.iter().all(|hint| !hint.value.is_empty()));
    assert!(
        result
            .hints
            .windows(2)
            .all(|pair| pair[0].value < pair[1].value),
        "hints are distinct and sorted"
    );
}

/// `Statistics.List` request bytes through the real service.
///
/// Undecodable bytes end `INTERNAL`; otherwise the call is answered or refused as invalid.
/// Without `time_series` every counter list has one element and `x` is empty; with it, every
/// result shares one strictly ascending axis, one window apart, and every list matches it.
pub fn statistics_request(data: &[u8]) {
    let harness = Harness::get();
    let reply = harness.request(
        harness.statistics.clone(),
        "/goldmane.Statistics/List",
        data,
    );
    let Ok(request) = StatisticsRequest::decode(data) else {
        return assert_unparseable(&reply.status);
    };
    assert_answered_or_refused(&reply.status, &request);
    if reply.status.code() != Code::Ok {
        assert!(reply.messages.is_empty(), "a refused call sends no result");
        return;
    }
    let results: Vec<StatisticsResult> = reply
        .messages
        .iter()
        .map(|message| StatisticsResult::decode(&message[..]).expect("a valid result"))
        .collect();
    let axis = results.first().map(|result| result.x.clone());
    for result in &results {
        assert!(result.policy.is_some(), "a result names its policy");
        let width = if request.time_series {
            assert_eq!(Some(&result.x), axis.as_ref(), "one shared axis");
            assert!(
                result
                    .x
                    .windows(2)
                    .all(|pair| pair[1] - pair[0] == RETENTION.window),
                "the axis has every bucket, one window apart"
            );
            result.x.len()
        } else {
            assert!(result.x.is_empty(), "no axis without time_series");
            1
        };
        for column in [
            &result.allowed_in,
            &result.allowed_out,
            &result.denied_in,
            &result.denied_out,
            &result.passed_in,
            &result.passed_out,
        ] {
            assert_eq!(column.len(), width, "every counter list spans the axis");
        }
    }
}

/// Bytes as the body of a `FlowCollector.Connect` call: the first byte chooses the size of
/// the pieces the body arrives in (1 to 256 bytes), the rest is the body.
///
/// The server sends exactly one receipt per leading frame that holds a `FlowUpdate` (valid
/// for ingest or skipped, it is receipted), then ends the call: `OK` if the body was only such
/// frames, otherwise with the status of the first bad frame (never `OK` nor `UNKNOWN`). A
/// full catalog may end the call early, `RESOURCE_EXHAUSTED`, with fewer receipts.
pub fn connect_framing(data: &[u8]) {
    let Some((&chunk, body)) = data.split_first() else {
        return;
    };
    let harness = Harness::get();
    let reply = harness.call(
        harness.collector.clone(),
        CONNECT,
        body,
        usize::from(chunk) + 1,
    );
    let framing = frames(body);
    let updates = framing
        .messages
        .iter()
        .take_while(|message| FlowUpdate::decode(&message[..]).is_ok())
        .count();
    let well_formed = framing.clean_end && updates == framing.messages.len();
    assert!(
        reply.messages.iter().all(|receipt| receipt.is_empty()),
        "receipts are empty messages"
    );
    let receipts = reply.messages.len();
    match reply.status.code() {
        Code::Ok => {
            // A body cut right after a frame's header once ended OK here (tonic's decoder reads
            // it as a clean end); the server's `WholeFramesLayer` makes it INTERNAL. Reproducer:
            // fuzz/corpus/connect_framing/crash-6b879ffb6bd112ed45c49a502a45286e54acf09f.
            assert!(well_formed, "a malformed body does not end OK");
            assert_eq!(receipts, updates, "one receipt per update");
        }
        Code::ResourceExhausted => assert!(receipts <= updates, "no receipt beyond the updates"),
        Code::Internal | Code::OutOfRange => {
            assert!(
                !well_formed,
                "a well-formed body ends OK: {:?}",
                reply.status
            );
            assert_eq!(
                receipts, updates,
                "every update before the bad frame is receipted"
            );
        }
        other => panic!("Connect ended {other:?}: {:?}", reply.status),
    }
}
