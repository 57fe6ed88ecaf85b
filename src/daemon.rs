//! The running daemon: the exporter's poll and inventory loops and the HTTP
//! endpoints, started together and stopped together. It sits above both
//! halves so that neither knows the other: `exporter` knows nothing of
//! HTTP, and `web` sees the exporter only as a [`web::Site`], which is
//! implemented here.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::exporter::Exporter;
use crate::metrics::format::Format;
use crate::poller::Generation;
use crate::web;

impl web::Site for Exporter {
    fn generation(&self) -> Arc<Generation> {
        Exporter::generation(self)
    }

    fn is_ready(&self) -> bool {
        Exporter::is_ready(self)
    }

    fn reload(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { Exporter::reload(self).await.map_err(|e| e.to_string()) })
    }

    fn stream_metrics(
        &self,
        chunk: usize,
        format: Format,
        emit: &mut dyn FnMut(String) -> bool,
    ) -> bool {
        Exporter::stream_metrics(self, chunk, format, emit)
    }
}

/// Runs the whole exporter until `shutdown` fires: the poll loop, the
/// inventory loop and the HTTP endpoints on `listener`. Returns once the
/// endpoints have closed and the loops have stopped (they abort their
/// in-flight requests at once; they get a second at most) and the state
/// file, if any, has been saved.
pub async fn run(
    exporter: &Exporter,
    listener: tokio::net::TcpListener,
    transport: web::Transport,
    shutdown: CancellationToken,
) {
    let here = tokio::runtime::Handle::current();
    run_on(exporter, &here, listener, transport, shutdown).await;
}

/// [`run`] with the poll and inventory loops on `background`, a runtime
/// apart from the one serving HTTP (the daemon gives them one with
/// lower-priority threads, so that scrapes come first).
pub async fn run_on(
    exporter: &Exporter,
    background: &tokio::runtime::Handle,
    listener: tokio::net::TcpListener,
    transport: web::Transport,
    shutdown: CancellationToken,
) {
    let poller = background.spawn({
        let exporter = exporter.clone();
        let cancel = shutdown.child_token();
        async move { exporter.run_poller(cancel).await }
    });
    let inventory = background.spawn({
        let exporter = exporter.clone();
        let cancel = shutdown.child_token();
        async move { exporter.run_inventory(cancel).await }
    });
    web::run(exporter.clone(), listener, transport, shutdown).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tokio::join!(poller, inventory);
    })
    .await;
    // After the last check: this save is the clean one (SPEC §13).
    exporter.save_state(true).await;
}
