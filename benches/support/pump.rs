//! The realistic ingest client of the benches: Connect streams on one HTTP/2 connection
//! sending the realistic workload's keys in a cycle (the updates `eddy flowgen --profile
//! realistic` sends, each key encoded once), at most a given number without a receipt per
//! stream, with a switch that turns latency recording on for the measured interval.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use eddy::cli::flowgen::realistic::{open_connect, KeySend, KeyUpdate};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::support::latency::Latencies;

/// What the streams of a [`Pump`] share.
#[derive(Default)]
struct Shared {
    receipts: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
}

/// Connect streams sending the keys in a cycle until stopped.
pub struct Pump {
    shared: Arc<Shared>,
    streams: Vec<JoinHandle<Latencies>>,
}

impl Pump {
    /// Opens `streams` Connect streams on `channel` (one HTTP/2 connection) and starts
    /// sending: stream `s` sends keys `s, s + streams, …` in a cycle, at most `outstanding`
    /// without a receipt.
    pub fn start(
        channel: &Channel,
        streams: usize,
        outstanding: usize,
        keys: &Arc<Vec<KeyUpdate>>,
    ) -> Pump {
        let shared = Arc::new(Shared::default());
        let streams = (0..streams)
            .map(|first| {
                tokio::spawn(stream(
                    channel.clone(),
                    (first, streams),
                    outstanding,
                    keys.clone(),
                    shared.clone(),
                ))
            })
            .collect();
        Pump { shared, streams }
    }

    /// Receipts so far, over every stream.
    pub fn receipts(&self) -> u64 {
        self.shared.receipts.load(Ordering::Relaxed)
    }

    /// Starts or stops recording receipt latencies.
    pub fn measure(&self, on: bool) {
        self.shared.measuring.store(on, Ordering::Relaxed);
    }

    /// Stops sending, waits for the receipts of the updates in flight, and returns the
    /// latencies recorded while measuring.
    pub async fn stop(self) -> Latencies {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut all = Latencies::default();
        for stream in self.streams {
            all.merge(&stream.await.expect("a Connect stream ends cleanly"));
        }
        all
    }
}

/// One Connect stream sending keys `first, first + stride, …`: a task sends while this one
/// reads receipts; returns the receipt latencies (send to receipt) recorded while measuring.
async fn stream(
    channel: Channel,
    (first, stride): (usize, usize),
    outstanding: usize,
    keys: Arc<Vec<KeyUpdate>>,
    shared: Arc<Shared>,
) -> Latencies {
    let window = Arc::new(Semaphore::new(outstanding));
    let (updates, queued) = mpsc::channel::<KeySend>(outstanding);
    let (sent_at, mut sent_times) = mpsc::unbounded_channel::<Instant>();
    let mut receipts = open_connect(channel, queued)
        .await
        .expect("Connect is accepted");
    let sender = {
        let (window, shared) = (window.clone(), shared.clone());
        tokio::spawn(async move {
            let mut index = first;
            while !shared.stop.load(Ordering::Relaxed) {
                window
                    .acquire()
                    .await
                    .expect("the window is never closed")
                    .forget();
                let send = KeySend::new(keys.clone(), index, (index / keys.len()) as u64);
                let _ = sent_at.send(Instant::now());
                if updates.send(send).await.is_err() {
                    return;
                }
                index += stride;
            }
        })
    };
    let mut latencies = Latencies::default();
    while let Some(_receipt) = receipts
        .message()
        .await
        .expect("the Connect call stays healthy")
    {
        window.add_permits(1);
        let sent = sent_times
            .recv()
            .await
            .expect("every receipt follows a send");
        shared.receipts.fetch_add(1, Ordering::Relaxed);
        if shared.measuring.load(Ordering::Relaxed) {
            latencies.record(sent.elapsed());
        }
    }
    sender.await.expect("the sender ends cleanly");
    latencies
}
