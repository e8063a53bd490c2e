//! The shutdown signal (SPEC §11.6): one flag, set once by SIGTERM/SIGINT (or a test), that
//! every long-lived task watches. Setting it makes `Connect` calls stop reading after the
//! batch in hand, the stream hub end every stream with `UNAVAILABLE`, health report not
//! ready, and the gRPC server stop accepting calls.

use tokio::sync::watch;

/// A cheap-to-clone handle on the process-wide shutdown flag.
#[derive(Clone, Debug)]
pub struct Shutdown {
    flag: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A flag that is not set.
    pub fn new() -> Self {
        Shutdown {
            flag: watch::Sender::new(false),
        }
    }

    /// Sets the flag; every waiter wakes. Setting it twice is harmless.
    pub fn trigger(&self) {
        self.flag.send_replace(true);
    }

    /// Whether the flag is set.
    pub fn is_triggered(&self) -> bool {
        *self.flag.borrow()
    }

    /// Completes once the flag is set (at once if it already is).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut flag = self.flag.subscribe();
        async move {
            // The sender lives in `self`'s clones; if every one is gone nobody can trigger,
            // and waiting forever is the right answer.
            if flag.wait_for(|set| *set).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Registers SIGTERM and SIGINT handlers at once and returns a future that completes on the
/// first of them. Registration happens in this call, not at the future's first poll, so a
/// signal that arrives right after the server announces itself still shuts it down cleanly.
/// Must be called inside a tokio runtime.
pub fn signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Ok(mut only), Err(error)) | (Err(error), Ok(mut only)) => {
                    tracing::warn!(%error, "cannot listen for one of SIGTERM and SIGINT");
                    only.recv().await;
                }
                (Err(error), Err(_)) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM or SIGINT");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_triggered_even_if_they_subscribe_late() {
        let shutdown = Shutdown::new();
        let early = tokio::spawn(shutdown.wait());
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        early.await.expect("the early waiter completes");
        shutdown.wait().await;
        assert!(shutdown.is_triggered());
    }
}
