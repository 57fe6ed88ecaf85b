//! `/metrics`: the exposition, rendered where it costs the scrape least.
//!
//! A 100k-target scrape (tens of megabytes) is streamed: a blocking thread
//! renders it chunk by chunk (`metrics::exposition`) into a small channel
//! and the response sends each chunk as it comes, so it never exists whole
//! and other requests carry on meanwhile. That costs a hand-off between
//! threads per chunk, and on a busy host every hand-off waits for a core: a
//! compact scrape of 10k targets (about 1 MB, under a millisecond to
//! render) spent more time waiting for wake-ups than rendering, and its p99
//! under polling load was two to three times its idle p99
//! (docs/performance.md).
//!
//! So a small scrape is rendered on the async worker that took the request
//! and handed to the connection whole: one of a table of at most
//! [`INLINE_TARGETS`] targets (the copy of the table and the passes over it
//! are the render's work, whatever the body's size) whose body is no bigger
//! than what a streamed scrape may hold anyway ([`INLINE_BYTES`]). The
//! size is known only after a render, so the previous scrape's size in the
//! same format decides ([`Scrapes`]); a render that outgrows the bound (the
//! table's seats came in, a reload switched profile) is dropped at the
//! bound and the scrape streamed instead, which costs a render up to the
//! bound once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::mpsc;

use super::SharedSite;
use crate::metrics::exposition::CHUNK_BYTES;
use crate::metrics::format::Format;

/// Chunks of a streamed scrape rendered ahead of the client (1 MiB):
/// enough that the render runs on without waiting for each write, few
/// enough to stay small. Every time the channel is full the render thread
/// sleeps and must be woken for the next chunk, and on a busy host each
/// wake-up waits for a core (docs/performance.md: two chunks against more).
const CHUNKS_IN_FLIGHT: usize = 8;

/// The largest body rendered on the async worker and sent whole, about
/// 1.1 MiB. Its buffer has at most one chunk of room to spare, so it holds
/// no more than a streamed scrape may (the chunks in the channel, the one
/// waiting to go in and the one being written): a client that stops
/// reading costs the same either way.
pub const INLINE_BYTES: usize = (CHUNKS_IN_FLIGHT + 1) * CHUNK_BYTES;

/// The largest table rendered on the async worker. At 10k targets the copy
/// of the rows and the passes over them take about 0.7 ms
/// (docs/performance.md), so a scrape holds a worker for a millisecond or
/// two at most.
pub const INLINE_TARGETS: usize = 20_000;

/// What the previous scrape in each format taught about the next: the
/// bytes of its body, or "unknown or too big" before the first and after
/// a render outgrew [`INLINE_BYTES`]. One per router. Per format, because
/// near the bound a text body may fit where an OpenMetrics one does not,
/// and a scraper of each would otherwise undo what the other learnt.
#[derive(Debug)]
pub struct Scrapes {
    text: AtomicUsize,
    openmetrics: AtomicUsize,
    max_targets: usize,
}

impl Default for Scrapes {
    fn default() -> Scrapes {
        Scrapes::up_to(INLINE_TARGETS)
    }
}

impl Scrapes {
    /// Renders whole the small scrapes of tables of at most `max_targets`.
    fn up_to(max_targets: usize) -> Scrapes {
        Scrapes {
            text: AtomicUsize::new(usize::MAX),
            openmetrics: AtomicUsize::new(usize::MAX),
            max_targets,
        }
    }

    fn last_bytes(&self, format: Format) -> &AtomicUsize {
        match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.openmetrics,
        }
    }

    /// The size of the next body in `format` of a table of `targets`, when
    /// it is to be rendered whole.
    fn expect_small(&self, format: Format, targets: usize) -> Option<usize> {
        Some(self.last_bytes(format).load(Ordering::Relaxed))
            .filter(|&bytes| bytes <= INLINE_BYTES && targets <= self.max_targets)
    }

    fn remember(&self, format: Format, bytes: usize) {
        self.last_bytes(format).store(bytes, Ordering::Relaxed);
    }
}

/// The metrics path is configurable and may change on reload, so it is
/// matched here rather than as a fixed route.
///
/// A scrape in flight holds a snapshot of the table's rows (about 40 bytes
/// a target), shared with the other scrapes in progress within a memory
/// budget (`metrics::snapshot`), and at most [`INLINE_BYTES`] and a chunk
/// of body; `super::MAX_SCRAPES` bounds how many there are. A scraper that
/// stops reading keeps its scrape until its connection is closed (by the
/// write-stall limit of `serve::Limits`, 30 s, or at shutdown), which drops
/// the body and ends the render. Scrapes share no lock while they write,
/// so a slow scraper never delays another.
pub async fn metrics_or_404(site: SharedSite, scrapes: Arc<Scrapes>, req: Request) -> Response {
    let generation = site.generation();
    if req.uri().path() != generation.config.web.telemetry_path {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "use GET\n").into_response();
    }
    let format = Format::negotiate(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let targets = generation.table.len();
    drop(generation);
    if let Some(expected) = scrapes.expect_small(format, targets) {
        match render_whole(&site, format, expected) {
            Whole::Body(body) => {
                scrapes.remember(format, body.len());
                return answer(format, axum::body::Body::from(body));
            }
            Whole::TooBig => scrapes.remember(format, usize::MAX),
            Whole::Failed => return failed(),
        }
    }
    stream(site, scrapes, format).await
}

/// What [`render_whole`] made of a scrape.
enum Whole {
    /// The whole body.
    Body(Bytes),
    /// The body passed [`INLINE_BYTES`]; the render stopped there.
    TooBig,
    /// The render panicked (logged).
    Failed,
}

/// Renders the exposition on the calling thread into one buffer sized for
/// the `expected` bytes, stopping once it passes [`INLINE_BYTES`]. One
/// buffer rather than the chunks as they come: the connection then writes
/// the body in one go instead of once a chunk, each waking the client. The
/// buffer, which the body keeps, grows by what each chunk needs rather
/// than doubling, so it never holds more than [`INLINE_BYTES`] and a chunk.
fn render_whole(site: &SharedSite, format: Format, expected: usize) -> Whole {
    let mut body = Vec::with_capacity(expected + CHUNK_BYTES);
    let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        site.stream_metrics(CHUNK_BYTES, format, &mut |chunk| {
            body.reserve_exact(chunk.len());
            body.extend_from_slice(chunk.as_bytes());
            body.len() <= INLINE_BYTES
        })
    }));
    match rendered {
        Ok(true) => Whole::Body(Bytes::from(body)),
        Ok(false) => Whole::TooBig,
        Err(_) => {
            tracing::error!("rendering metrics failed");
            Whole::Failed
        }
    }
}

/// Streams the exposition from a blocking thread through a channel of
/// [`CHUNKS_IN_FLIGHT`] chunks, gzipped on the way when asked, so a
/// 100k-target scrape neither waits for the whole text nor holds it twice.
async fn stream(site: SharedSite, scrapes: Arc<Scrapes>, format: Format) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    // Rendering 100k targets takes a while; keep it off the async workers
    // so that other requests carry on meanwhile. Returns whether every
    // chunk was handed on (a send fails once the body, and with it the
    // receiver, is dropped).
    let render = tokio::task::spawn_blocking(move || {
        let mut bytes = 0;
        let complete = site.stream_metrics(CHUNK_BYTES, format, &mut |chunk| {
            bytes += chunk.len();
            tx.blocking_send(Bytes::from(chunk)).is_ok()
        });
        if complete {
            scrapes.remember(format, bytes);
        }
        complete
    });
    // The first chunk decides the status: a render that fails before
    // writing anything is a 500.
    let Some(first) = rx.recv().await else {
        if let Err(e) = render.await {
            tracing::error!(error = %e, "rendering metrics failed");
        }
        return failed();
    };
    // After the last chunk, a render that did not finish ends the body with
    // an error, so the scraper sees a failed scrape and not a short one.
    let rest = futures::stream::unfold(Some((rx, render)), |state| async move {
        let (mut rx, render) = state?;
        match rx.recv().await {
            Some(chunk) => Some((Ok(chunk), Some((rx, render)))),
            None => match render.await {
                Ok(true) => None,
                Ok(false) => Some((Err(std::io::Error::other("scrape abandoned")), None)),
                Err(e) => {
                    tracing::error!(error = %e, "rendering metrics failed");
                    Some((Err(std::io::Error::other("rendering metrics failed")), None))
                }
            },
        }
    });
    // Fused: the body may be polled once more after its end.
    let body = futures::stream::once(std::future::ready(Ok(first)))
        .chain(rest)
        .fuse();
    answer(format, axum::body::Body::from_stream(body))
}

fn answer(format: Format, body: axum::body::Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            // Caches must not hand one scraper's format to another.
            (header::VARY, "Accept, Accept-Encoding"),
        ],
        body,
    )
        .into_response()
}

fn failed() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "rendering metrics failed\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    //! The handler against a site whose exposition is a given number of
    //! lines, recording the thread of every render: on a current-thread
    //! runtime the async worker is the test's own thread, and a streamed
    //! render runs on another.

    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    use std::thread::ThreadId;

    use axum::body::Body;
    use futures::future::BoxFuture;
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::exporter::Exporter;
    use crate::poller::Generation;
    use crate::web::Site;
    use crate::web::tests::one_target_exporter;

    /// Lines of this many bytes make up the exposition (a divisor of
    /// [`INLINE_BYTES`], so that the bound itself can be hit).
    const LINE: usize = 64;

    struct Lines {
        exporter: Exporter,
        lines: AtomicUsize,
        panic: AtomicBool,
        renders: Mutex<Vec<ThreadId>>,
    }

    impl Lines {
        fn body(&self) -> String {
            (0..self.lines.load(Ordering::Relaxed))
                .map(|i| format!("{:0>width$}\n", i, width = LINE - 1))
                .collect()
        }

        fn set_bytes(&self, bytes: usize) {
            self.lines.store(bytes / LINE, Ordering::Relaxed);
        }

        /// The threads rendered on since the last call.
        fn renders(&self) -> Vec<ThreadId> {
            std::mem::take(&mut self.renders.lock().expect("renders"))
        }
    }

    impl Site for Lines {
        fn generation(&self) -> Arc<Generation> {
            self.exporter.generation()
        }

        fn is_ready(&self) -> bool {
            true
        }

        fn reload(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }

        fn stream_metrics(
            &self,
            chunk: usize,
            _format: Format,
            emit: &mut dyn FnMut(String) -> bool,
        ) -> bool {
            self.renders
                .lock()
                .expect("renders")
                .push(std::thread::current().id());
            assert!(!self.panic.load(Ordering::Relaxed), "a render failed");
            let body = self.body();
            body.as_bytes()
                .chunks(chunk)
                .all(|c| emit(String::from_utf8(c.to_vec()).expect("ascii")))
        }
    }

    fn site() -> Arc<Lines> {
        Arc::new(Lines {
            exporter: one_target_exporter(),
            lines: AtomicUsize::new(0),
            panic: AtomicBool::new(false),
            renders: Mutex::default(),
        })
    }

    async fn scrape(site: &Arc<Lines>, scrapes: &Arc<Scrapes>) -> (StatusCode, String) {
        scrape_as(site, scrapes, "text/plain").await
    }

    async fn scrape_as(
        site: &Arc<Lines>,
        scrapes: &Arc<Scrapes>,
        accept: &str,
    ) -> (StatusCode, String) {
        let shared: SharedSite = Arc::clone(site) as SharedSite;
        let request = Request::builder()
            .uri("/metrics")
            .header(header::ACCEPT, accept)
            .body(Body::empty())
            .expect("request");
        let response = metrics_or_404(shared, Arc::clone(scrapes), request).await;
        let status = response.status();
        let body = response.into_body().collect().await.expect("body");
        (
            status,
            String::from_utf8(body.to_bytes().to_vec()).expect("utf-8"),
        )
    }

    /// Scrapes once and says where it was rendered: `true` for the
    /// calling thread, once per render.
    async fn scrape_whole(site: &Arc<Lines>, scrapes: &Arc<Scrapes>) -> Vec<bool> {
        scrape_whole_as(site, scrapes, "text/plain").await
    }

    async fn scrape_whole_as(site: &Arc<Lines>, scrapes: &Arc<Scrapes>, accept: &str) -> Vec<bool> {
        let (status, body) = scrape_as(site, scrapes, accept).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == site.body(), "the body arrives whole");
        let here = std::thread::current().id();
        site.renders().into_iter().map(|t| t == here).collect()
    }

    #[tokio::test]
    async fn a_small_body_is_rendered_on_the_worker_and_a_big_one_streamed() {
        const HERE: bool = true;
        const BLOCKING: bool = false;
        let site = site();
        let scrapes = Arc::new(Scrapes::default());
        site.set_bytes(INLINE_BYTES / 2);
        // The first scrape's size is unknown: streamed; then whole.
        assert_eq!(scrape_whole(&site, &scrapes).await, [BLOCKING]);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE]);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE]);
        // Exactly the bound still fits.
        assert_eq!(INLINE_BYTES % LINE, 0);
        site.set_bytes(INLINE_BYTES);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE]);
        // The table grew: the whole render stops at the bound and the
        // scrape is streamed; the next is streamed at once.
        site.set_bytes(INLINE_BYTES + LINE);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE, BLOCKING]);
        assert_eq!(scrape_whole(&site, &scrapes).await, [BLOCKING]);
        site.set_bytes(20 * INLINE_BYTES);
        assert_eq!(scrape_whole(&site, &scrapes).await, [BLOCKING]);
        // It shrank: one streamed scrape learns so.
        site.set_bytes(1000);
        assert_eq!(scrape_whole(&site, &scrapes).await, [BLOCKING]);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE]);
        site.set_bytes(0);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE]);
    }

    #[tokio::test]
    async fn each_format_and_only_a_small_table_is_rendered_whole() {
        const HERE: bool = true;
        const BLOCKING: bool = false;
        const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";
        let site = site();
        site.set_bytes(INLINE_BYTES / 2);
        let scrapes = Arc::new(Scrapes::default());
        assert_eq!(scrape_whole(&site, &scrapes).await, [BLOCKING]);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE]);
        // OpenMetrics learns its own size, and text keeps what it learnt.
        assert_eq!(
            scrape_whole_as(&site, &scrapes, OPENMETRICS).await,
            [BLOCKING]
        );
        assert_eq!(scrape_whole_as(&site, &scrapes, OPENMETRICS).await, [HERE]);
        site.set_bytes(INLINE_BYTES + LINE);
        assert_eq!(
            scrape_whole_as(&site, &scrapes, OPENMETRICS).await,
            [HERE, BLOCKING]
        );
        assert_eq!(
            scrape_whole_as(&site, &scrapes, OPENMETRICS).await,
            [BLOCKING]
        );
        site.set_bytes(INLINE_BYTES / 2);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE]);
        // The site's table has one target: over the bound, a small body is
        // streamed all the same.
        assert_eq!(site.generation().table.len(), 1);
        let scrapes = Arc::new(Scrapes::up_to(0));
        assert_eq!(scrape_whole(&site, &scrapes).await, [BLOCKING]);
        assert_eq!(scrape_whole(&site, &scrapes).await, [BLOCKING]);
        let scrapes = Arc::new(Scrapes::up_to(1));
        assert_eq!(scrape_whole(&site, &scrapes).await, [BLOCKING]);
        assert_eq!(scrape_whole(&site, &scrapes).await, [HERE]);
    }

    async fn assert_fails(site: &Arc<Lines>, scrapes: &Arc<Scrapes>) {
        let (status, body) = scrape(site, scrapes).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "rendering metrics failed\n");
    }

    #[tokio::test]
    async fn a_render_that_fails_is_a_500_rendered_either_way() {
        let site = site();
        let scrapes = Arc::new(Scrapes::default());
        site.set_bytes(1000);
        site.panic.store(true, Ordering::Relaxed);
        assert_fails(&site, &scrapes).await;
        let here = std::thread::current().id();
        let renders = site.renders();
        assert!(renders.len() == 1 && renders[0] != here, "streamed");
        site.panic.store(false, Ordering::Relaxed);
        scrape_whole(&site, &scrapes).await;
        site.panic.store(true, Ordering::Relaxed);
        assert_fails(&site, &scrapes).await;
        assert_eq!(site.renders(), [here], "rendered whole");
    }
}
