//! The HTTP/1.1 accept loop shared by the exporter and the fake Store.
//!
//! Written on hyper directly rather than `axum::serve` because we need what it
//! does not offer: a cap on open connections that sheds idle ones first
//! (`conns`), a header read timeout, a write-progress timeout and a
//! connection age limit (slow or idle clients cannot pin memory or slots),
//! TLS on the same loop, the client's address on each request (for the
//! basic-auth throttle), and a graceful shutdown that gives open requests a
//! bounded time to finish (SPEC §2: exit within 5 s).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::conns::{ConnTable, Watched};

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; at the cap the one idle longest is closed
    /// to admit a new one (see `conns`).
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Longest a connection may live, whatever it does.
    pub max_connection_age: Duration,
    /// Longest an answer may make no write progress (a client that stopped
    /// reading) before its connection is closed.
    pub write_stall: Duration,
    /// How long open requests may take to finish after shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
            write_stall: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(4),
        }
    }
}

/// Turns an accepted TCP stream into the byte stream HTTP runs on (plain, or
/// TLS after a handshake).
pub trait Acceptor: Clone + Send + Sync + 'static {
    /// The stream after the handshake.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Performs the handshake; `None` drops the connection.
    fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> impl Future<Output = Option<Self::Stream>> + Send;
}

/// No TLS.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl Acceptor for Plain {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self, tcp: tokio::net::TcpStream) -> Option<Self::Stream> {
        Some(tcp)
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then lets open
/// requests finish for at most `limits.shutdown_grace`.
pub async fn serve<S, A, F>(
    listener: TcpListener,
    acceptor: A,
    service: S,
    limits: Limits,
    shutdown: F,
) where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<axum::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    A: Acceptor,
    F: Future<Output = ()>,
{
    let graceful = GracefulShutdown::new();
    // Fired when the grace period is over: connections still open are cut.
    let hard_stop = tokio_util::sync::CancellationToken::new();
    let table = ConnTable::new(limits.max_connections);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    while let Some((tcp, peer)) = next_connection(&listener, &mut shutdown).await {
        let Some(entry) = table.admit() else {
            tracing::debug!("connection limit reached, every connection busy; closing a new one");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = with_peer(service.clone(), peer, Arc::clone(&entry.conn));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let hard_stop = hard_stop.clone();
        tokio::spawn(async move {
            let conn = Arc::clone(&entry.conn);
            let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Some(stream)) => stream,
                    _ => return,
                },
                _ = conn.closed() => return,
            };
            let stream = Watched::new(stream, Arc::clone(&conn));
            let http = builder.serve_connection(TokioIo::new(stream), service);
            let http = watcher.watch(http);
            tokio::select! {
                _ = tokio::time::timeout(limits.max_connection_age, http) => {}
                _ = hard_stop.cancelled() => {}
                _ = conn.closed() => {}
                _ = conn.write_stalled(limits.write_stall) => {
                    tracing::debug!(peer = %peer, "an answer made no write progress; closing its connection");
                }
            }
            drop(entry);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::debug!("open connections did not finish in time; closing them");
        }
    }
    hard_stop.cancel();
}

/// The next connection, or `None` once `shutdown` completes. A failed
/// accept (EMFILE and friends) backs off briefly instead of spinning.
async fn next_connection<F: Future<Output = ()>>(
    listener: &TcpListener,
    shutdown: &mut std::pin::Pin<&mut F>,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// The service for one connection: each request carries the client's
/// address (as axum's `ConnectInfo`) and counts as in flight on `conn`
/// until its answer has been sent or dropped.
fn with_peer<S>(
    service: S,
    peer: std::net::SocketAddr,
    conn: Arc<super::conns::Conn>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = http::Response<axum::body::Body>,
    Error = S::Error,
    Future = impl Future<Output = Result<http::Response<axum::body::Body>, S::Error>> + Send,
> + Send
+ 'static
where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<axum::body::Body>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let busy = conn.begin();
        let answer = service.call(req);
        async move {
            let response = answer.await?;
            Ok(response.map(|body| axum::body::Body::new(Tracked { body, _busy: busy })))
        }
    })
}

/// An answer's body that keeps its request counted as in flight until it
/// has been sent (or dropped with the connection).
struct Tracked {
    body: axum::body::Body,
    _busy: super::conns::Busy,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Adapts an axum `Router` to a hyper service.
pub fn hyper_service(
    router: axum::Router,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = http::Response<axum::body::Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<axum::body::Body>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let router = router.clone();
        async move {
            use tower::ServiceExt as _;
            router.oneshot(req.map(axum::body::Body::new)).await
        }
    })
}

/// Binds a listen address: `host:port`, or `:port` for every interface
/// (IPv6 and IPv4 where the host has IPv6, else IPv4 only).
///
/// # Errors
/// When the address cannot be bound (in use, no permission, bad host).
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    if let Some(port) = address.strip_prefix(':') {
        match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => return TcpListener::bind(format!("0.0.0.0:{port}")).await,
        }
    }
    TcpListener::bind(address).await
}
