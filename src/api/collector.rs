//! The `FlowCollector` service: `Connect` (SPEC §9).
//!
//! At most `max_calls` calls are open at once ([`limits`]); beyond that a call ends with
//! `RESOURCE_EXHAUSTED` before any update is read. Each connection runs one task that reads
//! whatever updates are already buffered (up to [`MAX_BATCH`] updates and `max_batch_bytes`
//! encoded bytes), prepares them, hands the batch to the engine, and only then sends one
//! receipt per update, in order. When the engine is behind, `ingest` waits, the task stops
//! reading, and HTTP/2 flow control slows the sender: nothing receipted is ever dropped.
//!
//! When an update needs a new catalog entry and the table is full (SPEC §12.4), the updates
//! before it are handed over and receipted, and the call ends with `RESOURCE_EXHAUSTED`: that
//! update and everything after it are left unreceipted for the client to resend.
//!
//! On shutdown (SPEC §11.6) a connection finishes the batch it holds — handed to the engine
//! and receipted — then stops reading and ends the call with `UNAVAILABLE`; the client resends
//! whatever it sent after that, since none of it was receipted.

//!
//! Each update is read in place from the request buffer and what its key and labels turn into
//! is remembered for the call (`ingest::connection`), so an update like one sent before costs no
//! allocation and takes no catalog lock. Bytes that are not a `FlowUpdate` end the call with
//! `INTERNAL` and prost's error, as tonic's own decoding does, after the updates before them
//! are receipted (SPEC §10.1).

pub mod limits;
pub mod wire;

use std::net::IpAddr;
use std::pin::Pin;

use eddy_dataflows::model::FlowRecord;

use futures::{FutureExt, Stream, StreamExt};
use prost::bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::api::collector::limits::{CallSlot, ConnectCalls};
use crate::api::status::ApiError;
use crate::durability::disk::DiskError;
use crate::durability::EncodedBatch;
use crate::ingest::connection::{ConnectionIngest, Refused};
use crate::ingest::dedup::{fingerprint, ConnectionDedup};
use crate::ingest::{NotPrepared, SkipReason};
use crate::intern::InternerFull;
use crate::proto::FlowReceipt;
use crate::state::ServerState;
use crate::worker::protocol::IngestBatch;

/// The most updates handed to the engine in one batch.
pub const MAX_BATCH: usize = 1024;
/// Receipts that may wait for the client to read them before the connection stops reading
/// (sent a batch at a time: at most this many over [`MAX_BATCH`] batches wait).
pub const RECEIPT_BUFFER: usize = 4096;

/// tonic's default bound on a request message's size.
const DEFAULT_MAX_DECODED_MESSAGE: usize = 4 * 1024 * 1024;

/// Where a connection's task sends what it owes the client: a number of receipts (one
/// message per batch), or the status that ends the call.
type Owed = mpsc::Sender<Result<usize, Status>>;

/// The receipts one message of [`Owed`] stands for, in order.
fn receipts_for(owed: Result<usize, Status>) -> impl Iterator<Item = Result<FlowReceipt, Status>> {
    let (count, status) = match owed {
        Ok(count) => (count, None),
        Err(status) => (0, Some(status)),
    };
    std::iter::repeat_with(|| Ok(FlowReceipt {}))
        .take(count)
        .chain(status.map(Err))
}

/// The receipts of a `Connect` call, ending with its status if it fails.
pub type ConnectStream = Pin<Box<dyn Stream<Item = Result<FlowReceipt, Status>> + Send + 'static>>;

/// The `FlowCollector` service (served as `wire` routes it).
#[derive(Clone)]
pub struct CollectorService {
    state: ServerState,
    max_decoding_message_size: usize,
}

impl CollectorService {
    /// A service over `state`, taking request messages up to tonic's default size.
    pub fn new(state: ServerState) -> Self {
        CollectorService {
            state,
            max_decoding_message_size: DEFAULT_MAX_DECODED_MESSAGE,
        }
    }

    /// The same service, refusing request messages larger than `bytes`.
    pub fn max_decoding_message_size(self, bytes: usize) -> Self {
        CollectorService {
            max_decoding_message_size: bytes,
            ..self
        }
    }

    /// Opens a `Connect` call: admits it (or refuses it with `RESOURCE_EXHAUSTED`) and starts
    /// the task that serves it.
    pub fn connect(
        &self,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<ConnectStream>, Status> {
        let slot = self.state.connect.admit().map_err(Status::from)?;
        let peer = request.remote_addr().map(|addr| addr.ip());
        let dedup = self.state.dedup.for_connection(peer, self.state.now());
        let (receipts, outbound) = mpsc::channel(RECEIPT_BUFFER / MAX_BATCH);
        self.state.ingest_threads.handle().spawn(serve_connection(
            self.state.clone(),
            slot,
            peer,
            dedup,
            request.into_inner(),
            receipts,
        ));
        let receipts = ReceiverStream::new(outbound)
            .flat_map(|owed| futures::stream::iter(receipts_for(owed)));
        Ok(Response::new(Box::pin(receipts)))
    }
}

/// How the request stream stood after reading a batch.
enum Inbound {
    /// More updates may come.
    Open,
    /// The client ended the stream.
    Ended,
    /// Reading failed (e.g. bytes that are not a `FlowUpdate`): the call ends with this status
    /// once the updates read before it are receipted (SPEC §10.1).
    Failed(Status),
}

/// Reads into `batch` (emptied first) `first` and the updates already waiting on `inbound`
/// after it: at most `MAX_BATCH`, and none once the batch holds `max_bytes` encoded bytes
/// (counted in `calls`). Returns whether the stream ended (or failed) while reading.
fn drain_ready(
    first: Bytes,
    inbound: &mut Streaming<Bytes>,
    calls: &ConnectCalls,
    batch: &mut Vec<Bytes>,
) -> Inbound {
    let max_bytes = calls.limits().max_batch_bytes;
    let mut bytes = first.len();
    batch.clear();
    batch.push(first);
    while batch.len() < MAX_BATCH {
        if bytes >= max_bytes {
            calls.batch_at_byte_bound();
            break;
        }
        match inbound.message().now_or_never() {
            Some(Ok(Some(update))) => {
                bytes += update.len();
                batch.push(update);
            }
            Some(Ok(None)) => return Inbound::Ended,
            Some(Err(status)) => return Inbound::Failed(status),
            None => break,
        }
    }
    Inbound::Open
}

/// Why a batch was cut short at one of its updates: that update and those after it are not
/// receipted, and the call ends.
enum CutShort {
    /// A catalog table has no room for a value the update needs (SPEC §12.4).
    Full(InternerFull),
    /// The update's bytes are not a `FlowUpdate` (SPEC §10.1).
    Malformed(Status),
}

/// Ends the call with the status that ended the request stream.
async fn fail(receipts: &Owed, status: Status) {
    tracing::debug!(%status, "flow collector stream ended with an error");
    // A closed receipt channel means the client is gone; nothing is left to tell.
    let _ = receipts.send(Err(status)).await;
}

/// The updates of `batch` that `prepared` stores, as received, for the data directory if one
/// is set, with the buckets they fall in.
fn encode_stored(
    state: &ServerState,
    peer: Option<IpAddr>,
    now: i64,
    batch: &[Bytes],
    prepared: &[((FlowRecord, usize), u64)],
) -> Option<EncodedBatch> {
    if state.durability.is_none() || prepared.is_empty() {
        return None;
    }
    let buckets = prepared.iter().map(|((record, _), _)| record.bucket);
    let updates = prepared.iter().map(|((_, index), _)| &batch[*index][..]);
    Some(EncodedBatch::new(peer, now, updates, buckets))
}

/// Ends the call because the data directory cannot take the batch: nothing of it was
/// receipted, so the client resends it (SPEC §13.1).
async fn refuse(receipts: &Owed, error: DiskError) {
    tracing::error!(%error, "a Connect call ends: its batch cannot be written to the data directory");
    // A closed receipt channel means the client is gone; nothing is left to tell.
    let _ = receipts.send(Err(ApiError::from(error).into())).await;
}

async fn serve_connection(
    state: ServerState,
    slot: CallSlot,
    peer: Option<IpAddr>,
    dedup: ConnectionDedup,
    mut inbound: Streaming<Bytes>,
    receipts: Owed,
) {
    let _slot = slot;
    let mut ingest = ConnectionIngest::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut prepared = Vec::with_capacity(MAX_BATCH);
    let _open = state.metrics.collector_client();
    let stopping = state.shutdown.wait();
    tokio::pin!(stopping);
    loop {
        let message = tokio::select! {
            biased;
            () = &mut stopping => {
                // A closed receipt channel means the client is gone; nothing is left to tell.
                let unavailable = Status::unavailable("the server is shutting down");
                let _ = receipts.send(Err(unavailable)).await;
                return;
            }
            message = inbound.message() => message,
        };
        let first = match message {
            Ok(Some(update)) => update,
            Ok(None) => return,
            Err(status) => return fail(&receipts, status).await,
        };
        let inbound_state = drain_ready(first, &mut inbound, &state.connect, &mut batch);
        if let Some(durability) = &state.durability {
            if let Err(error) = durability.writable() {
                return refuse(&receipts, error).await;
            }
        }
        // Held until the batch is queued in the engine: the catalog collector must not remove
        // an id this batch interned before the batch is ahead of its used-ids read.
        let gate = state.catalog.gate.read().await;
        let now = state.now();
        prepared.clear();
        let mut cut_short = None;
        let mut received = 0;
        for (index, update) in batch.iter().enumerate() {
            match ingest.prepare(update, &state.catalog, state.bounds(now)) {
                Ok(done) => {
                    let fingerprint = fingerprint(&done.record, done.start_time, done.end_time);
                    prepared.push(((done.record, index), fingerprint));
                }
                Err(Refused::NotPrepared(NotPrepared::Skipped(reason))) => {
                    state.ingest.skipped(reason, now)
                }
                Err(Refused::NotPrepared(NotPrepared::Full(full))) => {
                    cut_short = Some(CutShort::Full(full));
                    break;
                }
                Err(Refused::Malformed(error)) => {
                    let status = Status::internal(error.to_string());
                    cut_short = Some(CutShort::Malformed(status));
                    break;
                }
            }
            received += 1;
        }
        state.ingest.received(received as u64);
        for _ in 0..state.dedup.remove_duplicates(&dedup, &mut prepared, now) {
            state.ingest.skipped(SkipReason::Duplicate, now);
        }
        // Another connection may have taken the traces these records use; holding the lock
        // until this batch is queued keeps it behind the batch carrying their rules. The log is
        // written under it too, so it holds batches in the order the engine gets them. Neither
        // lock waits for the workers: batches of many connections queue together.
        let encoded = encode_stored(&state, peer, now, &batch, &prepared);
        let handover = state.catalog.handover.lock().await;
        let written = match (&state.durability, encoded) {
            (Some(durability), Some(encoded)) => durability.append(&encoded).map(Some),
            _ => Ok(None),
        };
        let logged = match written {
            Ok(position) => position,
            Err(error) => {
                let stored = prepared.iter().map(|(_, fingerprint)| *fingerprint);
                state.dedup.forget(&dedup, stored);
                if let Some(durability) = &state.durability {
                    durability.refused(prepared.len());
                }
                return refuse(&receipts, error).await;
            }
        };
        let records: Vec<_> = prepared.drain(..).map(|((record, _), _)| record).collect();
        state.ingest.stored(records.len() as u64);
        let handed = IngestBatch {
            records,
            trace_rules: state.catalog.take_new_rules(),
            retired_rules: Vec::new(),
        };
        // Queued behind every batch before it and ahead of every later batch and ordered read
        // (the collector's used-ids read among them): the locks' order holds from here on.
        let queued = state.engine.enqueue(handed).await;
        drop(handover);
        drop(gate);
        let handed = match queued {
            Ok(queued) => queued.taken().await,
            Err(stopped) => Err(stopped),
        };
        if let Err(stopped) = handed {
            let _ = receipts
                .send(Err(Status::unavailable(stopped.to_string())))
                .await;
            return;
        }
        if let (Some(durability), Some(position)) = (&state.durability, logged) {
            if let Err(error) = durability.flush_through(position).await {
                return refuse(&receipts, error).await;
            }
        }
        if received > 0 && receipts.send(Ok(received)).await.is_err() {
            return;
        }
        match cut_short {
            Some(CutShort::Full(full)) => {
                state.catalog.refused(full);
                tracing::warn!(%full, "ended a Connect call: a catalog table is full");
                return fail(&receipts, ApiError::from(full).into()).await;
            }
            Some(CutShort::Malformed(status)) => return fail(&receipts, status).await,
            None => {}
        }
        match inbound_state {
            Inbound::Open => {}
            Inbound::Ended => return,
            Inbound::Failed(status) => return fail(&receipts, status).await,
        }
    }
}
