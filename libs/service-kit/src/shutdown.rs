//! Shutdown: one token per process that SIGTERM/SIGINT (or a test) cancels, and the
//! drain that gives in-flight work a grace period after it fires.

use std::future::Future;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
pub fn cancel_on_signals(shutdown: Shutdown) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => tracing::info!("SIGINT received, draining"),
                        _ = term.recv() => tracing::info!("SIGTERM received, draining"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the process");
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        shutdown.cancel();
    });
}

/// Outcome of [`drain`].
#[derive(Debug, PartialEq, Eq)]
pub enum Drained<T> {
    /// The work finished by itself (before or after shutdown).
    Finished(T),
    /// Shutdown fired and the work did not finish within the grace period.
    GraceExpired,
}

/// Runs `work` (which should itself stop accepting new work when `shutdown` fires)
/// and, once `shutdown` fires, waits at most `grace` for it to finish.
pub async fn drain<F: Future>(work: F, shutdown: &Shutdown, grace: Duration) -> Drained<F::Output> {
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return Drained::Finished(out),
        _ = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, work).await {
        Ok(out) => Drained::Finished(out),
        Err(_) => Drained::GraceExpired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_work_within_grace() {
        let s = Shutdown::new();
        let s2 = s.clone();
        let work = async move {
            s2.cancelled().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            7
        };
        s.cancel();
        assert_eq!(
            drain(work, &s, Duration::from_secs(5)).await,
            Drained::Finished(7)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_grace() {
        let s = Shutdown::new();
        let work = std::future::pending::<()>();
        s.cancel();
        assert_eq!(
            drain(work, &s, Duration::from_secs(1)).await,
            Drained::GraceExpired
        );
    }
}
