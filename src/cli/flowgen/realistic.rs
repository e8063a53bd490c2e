//! `eddy flowgen --profile realistic`: the benchmark workload, flow updates shaped as Felix
//! sends them ([`crate::synth::realistic`], about 510 bytes each), `--keys` keys sent in a
//! cycle on `--nodes` Connect streams over one HTTP/2 connection, back to back, each stream at
//! most `--window` updates ahead of its receipts (one with `--stop-and-wait`). Every send of a
//! key is a distinct update: its `bytes_out` grows by one per cycle.
//!
//! Each key's update is encoded once, without `bytes_out`; a send appends that field to the
//! encoded flow, so the generator spends almost nothing per update and leaves the cores to
//! the server. The bytes decode to exactly the generator's update. A broken stream ends (no
//! reconnect or replay, unlike the cluster profile).

use std::sync::Arc;
use std::time::Instant;

use prost::bytes::BufMut;
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;
use tonic_prost::ProstDecoder;

use crate::cli::flowgen::pace::Pacer;
use crate::cli::flowgen::report::{bump, Counters, Histogram};
use crate::proto::{FlowReceipt, FlowUpdate};
use crate::synth::realistic::{update, BucketChoice};

/// The gRPC path of `FlowCollector.Connect`.
const CONNECT: &str = "/goldmane.FlowCollector/Connect";
/// `Flow.bytes_out`: field 9, varint.
const BYTES_OUT_TAG: u8 = 9 << 3;
/// `FlowUpdate.flow`: field 1, length-delimited.
const FLOW_TAG: u8 = (1 << 3) | 2;
/// The aggregation window the updates' start and end times assume (Goldmane's default).
pub const WINDOW: i64 = 15;
/// Sends between two updates of the shared counters by one stream.
const COUNTER_BATCH: u64 = 1024;

/// One key's update, encoded once: the `Flow` message without `bytes_out`, the
/// generator's `bytes_out` for the first send, and the counters every send repeats.
pub struct KeyUpdate {
    flow_without_bytes_out: Vec<u8>,
    bytes_out: i64,
    packets_in: i64,
    packets_out: i64,
    bytes_in: i64,
}

impl KeyUpdate {
    /// Encodes `update` for sending again and again; `None` without a flow.
    pub fn new(mut update: FlowUpdate) -> Option<KeyUpdate> {
        let flow = update.flow.as_mut()?;
        let bytes_out = std::mem::take(&mut flow.bytes_out);
        Some(KeyUpdate {
            flow_without_bytes_out: flow.encode_to_vec(),
            bytes_out,
            packets_in: flow.packets_in,
            packets_out: flow.packets_out,
            bytes_in: flow.bytes_in,
        })
    }

    /// `bytes_out` of the `send`-th send.
    fn bytes_out_of(&self, send: u64) -> i64 {
        self.bytes_out.saturating_add(send as i64)
    }
}

/// The realistic updates of keys `0..keys` (pods never replaced), each in the bucket
/// `bucket` chooses for it, encoded once.
pub fn key_updates(keys: u64, bucket: impl Fn(u64) -> BucketChoice) -> Arc<Vec<KeyUpdate>> {
    Arc::new(
        (0..keys)
            .filter_map(|key| KeyUpdate::new(update(key, 0, 0, WINDOW, bucket(key))))
            .collect(),
    )
}

/// The bucket the cycled workload sends a key in: a closed bucket among the four before
/// the current one at `now_unix`, drawn from the key.
pub fn last_four_buckets(now_unix: i64) -> impl Fn(u64) -> BucketChoice {
    let now = now_unix - now_unix.rem_euclid(WINDOW);
    move |_| BucketChoice::OneOfLastFour { now }
}

/// The `send`-th update of key `key`: a [`KeyUpdate`] with its `bytes_out`.
pub struct KeySend {
    keys: Arc<Vec<KeyUpdate>>,
    key: usize,
    send: u64,
}

impl KeySend {
    /// The `send`-th update of key `key % keys.len()`.
    pub fn new(keys: Arc<Vec<KeyUpdate>>, key: usize, send: u64) -> KeySend {
        let key = key % keys.len().max(1);
        KeySend { keys, key, send }
    }

    /// Writes the `FlowUpdate` this send stands for; false when there are no keys.
    pub fn write(&self, buffer: &mut impl BufMut) -> bool {
        let Some(key) = self.keys.get(self.key) else {
            return false;
        };
        let bytes_out = key.bytes_out_of(self.send) as u64;
        let flow_len = key.flow_without_bytes_out.len() + 1 + encoded_len_varint(bytes_out);
        buffer.put_u8(FLOW_TAG);
        encode_varint(flow_len as u64, buffer);
        buffer.put_slice(&key.flow_without_bytes_out);
        buffer.put_u8(BYTES_OUT_TAG);
        encode_varint(bytes_out, buffer);
        true
    }
}

/// Writes a [`KeySend`] as the `FlowUpdate` it stands for.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeySendEncoder;

impl Encoder for KeySendEncoder {
    type Item = KeySend;
    type Error = Status;

    fn encode(&mut self, item: KeySend, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        if item.write(buffer) {
            Ok(())
        } else {
            Err(Status::internal("no updates to send"))
        }
    }
}

/// Decodes receipts with prost.
pub struct ReceiptDecoder(ProstDecoder<FlowReceipt>);

impl Decoder for ReceiptDecoder {
    type Item = FlowReceipt;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<FlowReceipt>, Status> {
        self.0.decode(buffer)
    }
}

/// The Connect codec of the generator: sends [`KeySend`]s, reads `FlowReceipt`s.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeySendCodec;

impl Codec for KeySendCodec {
    type Encode = KeySend;
    type Decode = FlowReceipt;
    type Encoder = KeySendEncoder;
    type Decoder = ReceiptDecoder;

    fn encoder(&mut self) -> KeySendEncoder {
        KeySendEncoder
    }

    fn decoder(&mut self) -> ReceiptDecoder {
        ReceiptDecoder(ProstDecoder::new(BufferSettings::default()))
    }
}

/// Opens a Connect call on `channel` whose updates come from `queued`.
pub async fn open_connect(
    channel: Channel,
    queued: mpsc::Receiver<KeySend>,
) -> Result<tonic::Streaming<FlowReceipt>, Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let response = client
        .streaming(
            tonic::Request::new(ReceiverStream::new(queued)),
            PathAndQuery::from_static(CONNECT),
            KeySendCodec,
        )
        .await?;
    Ok(response.into_inner())
}

/// How the realistic streams run.
#[derive(Clone, Debug)]
pub struct RealisticPlan {
    /// Connect streams on the one connection.
    pub streams: usize,
    /// Updates a stream may have without a receipt.
    pub window: usize,
    /// Sends of every key before stopping; `None` until the deadline or Ctrl-C.
    pub cycles: Option<u64>,
    /// When to stop sending; `None` until the cycles are sent or Ctrl-C.
    pub deadline: Option<Instant>,
}

/// What each stream needs besides its plan.
#[derive(Clone)]
struct Shared {
    keys: Arc<Vec<KeyUpdate>>,
    pacer: Option<Arc<Pacer>>,
    counters: Arc<Counters>,
    stopped: watch::Receiver<bool>,
}

/// Sends the realistic workload of `keys` as `plan` says over `channel`; returns the
/// send-to-receipt latencies.
pub async fn run(
    channel: Channel,
    keys: Arc<Vec<KeyUpdate>>,
    plan: RealisticPlan,
    (pacer, counters): (Option<Arc<Pacer>>, Arc<Counters>),
    stopped: watch::Receiver<bool>,
) -> Histogram {
    let shared = Shared {
        keys,
        pacer,
        counters,
        stopped,
    };
    let mut streams = tokio::task::JoinSet::new();
    for first in 0..plan.streams {
        streams.spawn(stream(channel.clone(), first, plan.clone(), shared.clone()));
    }
    let mut latency = Histogram::default();
    while let Some(joined) = streams.join_next().await {
        match joined {
            Ok(histogram) => latency.merge(&histogram),
            Err(error) => {
                *shared.counters.last_error.lock() = Some(format!("a stream task failed: {error}"))
            }
        }
    }
    latency
}

/// Sums of the counters of the updates sent, added to the shared counters in batches.
#[derive(Default)]
struct Sums {
    sent: u64,
    packets_in: u64,
    packets_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Sums {
    fn add(&mut self, key: &KeyUpdate, send: u64) {
        self.sent += 1;
        self.packets_in += key.packets_in.unsigned_abs();
        self.packets_out += key.packets_out.unsigned_abs();
        self.bytes_in += key.bytes_in.unsigned_abs();
        self.bytes_out += key.bytes_out_of(send).unsigned_abs();
    }

    fn flush(&mut self, counters: &Counters) {
        let sums = std::mem::take(self);
        for (counter, value) in [
            (&counters.generated, sums.sent),
            (&counters.sent, sums.sent),
            (&counters.packets_in, sums.packets_in),
            (&counters.packets_out, sums.packets_out),
            (&counters.bytes_in, sums.bytes_in),
            (&counters.bytes_out, sums.bytes_out),
        ] {
            bump(counter, value);
        }
    }
}

/// Whether a stream should send no more.
fn done(plan: &RealisticPlan, shared: &Shared, index: u64, total: Option<u64>) -> bool {
    total.is_some_and(|total| index >= total)
        || plan
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        || *shared.stopped.borrow()
}

/// Sends keys `first, first + streams, …` in a cycle until done, at most `plan.window`
/// without a receipt.
async fn send(
    first: usize,
    plan: RealisticPlan,
    shared: Shared,
    (window, updates, sent_at): (
        Arc<Semaphore>,
        mpsc::Sender<KeySend>,
        mpsc::UnboundedSender<Instant>,
    ),
) {
    let count = shared.keys.len() as u64;
    let total = plan.cycles.map(|cycles| cycles.saturating_mul(count));
    let mut sums = Sums::default();
    let mut index = first as u64;
    while !done(&plan, &shared, index, total) {
        let Ok(permit) = window.acquire().await else {
            break;
        };
        permit.forget();
        if let Some(pacer) = &shared.pacer {
            tokio::time::sleep_until(pacer.ready_at().into()).await;
            pacer.take(Instant::now());
        }
        let (key, send) = ((index % count) as usize, index / count);
        sums.add(&shared.keys[key], send);
        if sums.sent >= COUNTER_BATCH {
            sums.flush(&shared.counters);
        }
        let _ = sent_at.send(Instant::now());
        if updates
            .send(KeySend::new(shared.keys.clone(), key, send))
            .await
            .is_err()
        {
            break;
        }
        index += plan.streams as u64;
    }
    sums.flush(&shared.counters);
}

/// One Connect stream: a task sends while this one reads the receipts; returns the
/// send-to-receipt latencies.
async fn stream(channel: Channel, first: usize, plan: RealisticPlan, shared: Shared) -> Histogram {
    let mut latency = Histogram::default();
    let window = Arc::new(Semaphore::new(plan.window.max(1)));
    let (updates, queued) = mpsc::channel(plan.window.max(1));
    let (sent_at, mut sent_times) = mpsc::unbounded_channel();
    let counters = shared.counters.clone();
    let mut receipts = match open_connect(channel, queued).await {
        Ok(receipts) => receipts,
        Err(status) => {
            *counters.last_error.lock() = Some(status.message().to_string());
            return latency;
        }
    };
    let sender = tokio::spawn(send(
        first,
        plan,
        shared,
        (window.clone(), updates, sent_at),
    ));
    loop {
        match receipts.message().await {
            Ok(Some(_receipt)) => {
                window.add_permits(1);
                if let Some(sent) = sent_times.recv().await {
                    latency.record(sent.elapsed());
                }
                bump(&counters.receipted, 1);
            }
            Ok(None) => break,
            Err(status) => {
                *counters.last_error.lock() = Some(status.message().to_string());
                break;
            }
        }
    }
    sender.abort();
    let _ = sender.await;
    latency
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_send_encodes_the_generators_update_with_its_bytes_out() {
        let bucket = BucketChoice::Exactly(1_500);
        let keys = key_updates(3, |_| bucket);
        let mut bytes = Vec::new();
        assert!(KeySend::new(keys.clone(), 2, 5).write(&mut bytes));
        let decoded = FlowUpdate::decode(bytes.as_slice()).expect("the bytes decode");
        assert_eq!(decoded, update(2, 0, 5, WINDOW, bucket));
        let mut none = Vec::new();
        assert!(!KeySend::new(Arc::new(Vec::new()), 0, 0).write(&mut none));
        assert!(none.is_empty());
    }
}
