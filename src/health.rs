//! Readiness and liveness (SPEC §11.3), for the HTTP probes and for `grpc.health.v1`.
//!
//! Ready once the engine has processed its first epoch (the first retention roll has been
//! answered by every worker), and until shutdown begins. Live while the engine's announced
//! bucket trails the clock's current bucket by fewer than [`STALL_WINDOWS`] windows: a
//! controller or worker that stops advancing epochs makes the process not live.

use std::sync::Arc;

use eddy_dataflows::model::Bucket;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::retention::Retention;
use crate::shutdown::Shutdown;
use crate::worker::clock::Clock;
use crate::worker::Engine;

/// How many windows without a new epoch make the process not live.
pub const STALL_WINDOWS: i64 = 4;

/// The gRPC services whose health is reported, besides the server as a whole (`""`).
pub const SERVICES: [&str; 4] = [
    "goldmane.FlowCollector",
    "goldmane.Flows",
    "goldmane.Statistics",
    "eddy.views.v1.Views",
];

/// Whether the engine is live: its announced bucket `epoch` trails the current bucket at
/// `now` by fewer than [`STALL_WINDOWS`] windows.
pub fn is_live(epoch: Bucket, now: i64, retention: &Retention) -> bool {
    retention.bucket_of(now) - epoch < STALL_WINDOWS * retention.window
}

/// The health of the process. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    ready: watch::Receiver<bool>,
    epochs: watch::Receiver<Bucket>,
    retention: Retention,
    clock: Arc<dyn Clock>,
}

impl Health {
    /// Starts watching `engine`: ready after its first processed epoch, not ready once
    /// `shutdown` is triggered. Must run inside a tokio runtime.
    pub fn start(
        engine: Engine,
        retention: Retention,
        clock: Arc<dyn Clock>,
        shutdown: Shutdown,
    ) -> Health {
        let (ready_tx, ready) = watch::channel(false);
        let epochs = engine.epochs();
        let mut first_epoch = engine.epochs();
        tokio::spawn(async move {
            let became_ready = async move {
                // The controller announces an epoch at its first roll; `sync` then returns
                // once every worker has applied it.
                first_epoch.changed().await.is_ok() && engine.sync().await.is_ok()
            };
            tokio::select! {
                ready = became_ready => {
                    if ready && !ready_tx.is_closed() {
                        ready_tx.send_replace(true);
                        tracing::info!("ready: the engine processed its first epoch");
                    }
                    shutdown.wait().await;
                }
                _ = shutdown.wait() => {}
            }
            ready_tx.send_replace(false);
        });
        Health {
            ready,
            epochs,
            retention,
            clock,
        }
    }

    /// Whether the server is ready for traffic.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Whether the engine still advances epochs.
    pub fn is_live(&self) -> bool {
        is_live(*self.epochs.borrow(), self.clock.now(), &self.retention)
    }

    /// How far, in seconds, the engine's announced bucket trails the current bucket.
    pub fn epoch_lag(&self) -> i64 {
        (self.retention.bucket_of(self.clock.now()) - *self.epochs.borrow()).max(0)
    }

    /// Keeps `reporter` (the `grpc.health.v1` service) in step with readiness until the
    /// readiness watch ends.
    pub async fn report_to(self, reporter: HealthReporter) {
        let mut ready = self.ready.clone();
        loop {
            let status = if *ready.borrow_and_update() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            for service in SERVICES {
                reporter.set_service_status(service, status).await;
            }
            if ready.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_live_after_four_windows_without_an_epoch() {
        let retention = Retention {
            window: 15,
            closed_buckets: 240,
        };
        let epoch = 1_700_000_100;
        assert!(is_live(epoch, epoch + 7, &retention));
        assert!(is_live(epoch, epoch + 3 * 15 + 14, &retention));
        assert!(!is_live(epoch, epoch + 4 * 15, &retention));
    }
}
