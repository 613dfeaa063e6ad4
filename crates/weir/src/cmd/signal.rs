//! Waiting for the signal that asks a long-running command (`serve`, `agent`) to stop.
//!
//! The handlers are installed by [`listen`], before the command says it started: a
//! SIGTERM sent right after "agent started" is a request to stop cleanly, not the
//! default action (death without a clean stop).

/// SIGTERM and SIGINT, listened for since [`listen`].
pub struct ShutdownSignal {
    #[cfg(unix)]
    watched: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

/// Installs the SIGTERM and SIGINT handlers now.
pub fn listen() -> ShutdownSignal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let watched = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(
                    "cannot listen for SIGTERM and SIGINT ({e}); only Ctrl-C stops weir"
                );
                None
            }
        };
        ShutdownSignal { watched }
    }
    #[cfg(not(unix))]
    {
        ShutdownSignal {}
    }
}

impl ShutdownSignal {
    /// Resolves on SIGTERM or SIGINT.
    pub async fn requested(self) {
        #[cfg(unix)]
        match self.watched {
            Some((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}
