//! The open connections of one listener, and what decides which one goes
//! when there are too many (SPEC §17: the HTTP side stays reachable under
//! a flood).
//!
//! A cap on connections alone lets 520 clients that connect and send
//! nothing lock everyone out before any HTTP is spoken: new connections,
//! Prometheus' and the liveness probe's among them, were closed on accept
//! while the idle ones sat out their header timeout. So at the cap the
//! *new* connection is kept and an old one goes instead: the connection
//! that has waited longest without a request in flight. Connections that
//! have never been answered (idle, slowloris) go before keep-alive
//! connections that have: under a flood that reconnects as fast as it is
//! shed, an idle keep-alive connection (Prometheus' between two scrapes)
//! was soon the oldest one and was shed just as the next scrape went out
//! on it, which failed the scrape. A connection serving a request is never
//! shed; when every connection is, the new one is closed.
//!
//! Each connection also watches its writes ([`Watched`]): an answer that
//! makes no write progress for [`super::serve::Limits::write_stall`] is
//! dropped, so that readers that stopped reading give their scrape slot
//! back instead of holding it for the connection's whole lifetime.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `u64::MAX` in the `stalled_since` field: writes are not stalled.
const NOT_STALLED: u64 = u64::MAX;

/// One open connection, shared by its task, its IO and its requests.
#[derive(Debug)]
pub struct Conn {
    /// When the table was created: the time base of the fields below
    /// (tokio's clock, so paused-clock tests drive it).
    epoch: Instant,
    /// Requests on this connection whose answer has not been sent or
    /// dropped yet.
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last became idle
    /// (accepted, or its last answer done): shedding order.
    idle_since: AtomicU64,
    /// Whether an answer has been sent (or abandoned) on it: such
    /// connections are shed after those that never had one.
    answered: AtomicBool,
    /// Milliseconds since `epoch` since when a write has been waiting
    /// without progress, or [`NOT_STALLED`].
    stalled_since: AtomicU64,
    /// Fired to close the connection (shed).
    close: CancellationToken,
}

impl Conn {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Marks a request as in flight until the returned guard is dropped
    /// (with the answer's body, when it has been sent or abandoned).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// Resolves when the table sheds this connection.
    pub async fn closed(&self) {
        self.close.cancelled().await;
    }

    /// Resolves once a write has made no progress for `limit`.
    pub async fn write_stalled(&self, limit: Duration) {
        loop {
            let since = self.stalled_since.load(Ordering::SeqCst);
            if since == NOT_STALLED {
                tokio::time::sleep(limit).await;
                continue;
            }
            let due = self.epoch + Duration::from_millis(since) + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }

    fn write_result<T>(&self, poll: &Poll<io::Result<T>>, progress: impl Fn(&T) -> bool) {
        match poll {
            Poll::Pending => {
                let now = self.now();
                let _ = self.stalled_since.compare_exchange(
                    NOT_STALLED,
                    now,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            Poll::Ready(Ok(v)) if progress(v) => {
                self.stalled_since.store(NOT_STALLED, Ordering::SeqCst);
            }
            Poll::Ready(_) => {}
        }
    }
}

/// A request in flight on a connection; see [`Conn::begin`].
#[derive(Debug)]
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since.store(conn.now(), Ordering::SeqCst);
        conn.answered.store(true, Ordering::SeqCst);
        conn.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections of one listener, oldest first.
#[derive(Debug)]
pub struct ConnTable {
    epoch: Instant,
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

/// A connection's place in the table; leaving it (drop) frees the place.
#[derive(Debug)]
pub struct Entry {
    table: Arc<ConnTable>,
    id: u64,
    /// The connection.
    pub conn: Arc<Conn>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

impl ConnTable {
    /// A table of at most `max` connections.
    pub fn new(max: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            epoch: Instant::now(),
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // A map of handles is valid after any partial update.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits a new connection. At the cap, the connection idle the
    /// longest is closed to make room (one never answered before one
    /// that was); `None` when every open connection
    /// is serving a request (the new one is then closed).
    pub fn admit(self: &Arc<Self>) -> Option<Entry> {
        let mut open = self.lock();
        if open.len() >= self.max {
            let victim = open
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::SeqCst) == 0)
                .min_by_key(|(id, c)| {
                    let answered = c.answered.load(Ordering::SeqCst);
                    (answered, c.idle_since.load(Ordering::SeqCst), **id)
                })
                .map(|(id, _)| *id)?;
            if let Some(conn) = open.remove(&victim) {
                conn.close.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            answered: AtomicBool::new(false),
            stalled_since: AtomicU64::new(NOT_STALLED),
            close: CancellationToken::new(),
        });
        conn.idle_since.store(conn.now(), Ordering::SeqCst);
        open.insert(id, Arc::clone(&conn));
        Some(Entry {
            table: Arc::clone(self),
            id,
            conn,
        })
    }
}

/// A connection's byte stream, noting when its writes stop making
/// progress (for [`Conn::write_stalled`]).
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Watched<S> {
    /// Watches `inner`'s writes on behalf of `conn`.
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Watched { inner, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.conn.write_result(&poll, |n| *n > 0);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.conn.write_result(&poll, |n| *n > 0);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.conn.write_result(&poll, |()| true);
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test(start_paused = true)]
    async fn the_longest_idle_connection_goes_first_and_busy_ones_never() {
        let table = ConnTable::new(3);
        let a = table.admit().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = table.admit().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = table.admit().unwrap();
        // a is serving a request; b has been idle longest of the others.
        let busy = a.conn.begin();
        tokio::time::advance(Duration::from_secs(1)).await;
        let d = table.admit().unwrap();
        assert!(b.conn.close.is_cancelled(), "b shed");
        assert!(!a.conn.close.is_cancelled() && !c.conn.close.is_cancelled());
        drop(b);
        assert_eq!(table.len(), 3);
        // a finishes its request: idle since now, so c (idle since its
        // accept, earlier) goes next, then d, then a.
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(busy);
        tokio::time::advance(Duration::from_secs(1)).await;
        let _e = table.admit().unwrap();
        assert!(c.conn.close.is_cancelled());
        drop(c);
        let _f = table.admit().unwrap();
        assert!(d.conn.close.is_cancelled() && !a.conn.close.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn connections_never_answered_go_before_answered_ones() {
        let table = ConnTable::new(3);
        // a has been answered once; b and c came later and never spoke.
        let a = table.admit().unwrap();
        drop(a.conn.begin());
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = table.admit().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = table.admit().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let _d = table.admit().unwrap();
        assert!(
            b.conn.close.is_cancelled(),
            "b shed, though a is idle longer"
        );
        assert!(!a.conn.close.is_cancelled());
        drop(b);
        let _e = table.admit().unwrap();
        assert!(c.conn.close.is_cancelled() && !a.conn.close.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_is_refused_when_every_one_is_busy() {
        let table = ConnTable::new(2);
        let a = table.admit().unwrap();
        let b = table.admit().unwrap();
        let _busy = (a.conn.begin(), b.conn.begin());
        assert!(table.admit().is_none());
        assert_eq!(table.len(), 2);
        drop(a);
        assert!(table.admit().is_some(), "a's place is free");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_without_progress_are_noticed_after_the_limit() {
        let table = ConnTable::new(1);
        let entry = table.admit().unwrap();
        // A peer that never reads: a 64-byte pipe fills up.
        let (near, _far) = tokio::io::duplex(64);
        let mut stream = Watched::new(near, Arc::clone(&entry.conn));
        stream.write_all(&[0; 64]).await.unwrap();
        let limit = Duration::from_secs(30);
        let conn = Arc::clone(&entry.conn);
        let watch = tokio::spawn(async move { conn.write_stalled(limit).await });
        tokio::time::advance(Duration::from_secs(40)).await;
        assert!(!watch.is_finished(), "no write is waiting yet");
        let writer = tokio::spawn(async move { stream.write_all(&[1; 10]).await });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!watch.is_finished());
        tokio::time::advance(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert!(watch.is_finished(), "stalled for 31 s");
        writer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn progress_resets_the_stall() {
        let table = ConnTable::new(1);
        let entry = table.admit().unwrap();
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Watched::new(near, Arc::clone(&entry.conn));
        stream.write_all(&[0; 64]).await.unwrap();
        let conn = Arc::clone(&entry.conn);
        let watch = tokio::spawn(async move { conn.write_stalled(Duration::from_secs(30)).await });
        let writer = tokio::spawn(async move { stream.write_all(&[1; 128]).await });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(20)).await;
        // The peer reads a little: progress.
        let mut buf = [0; 64];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut buf)
            .await
            .unwrap();
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(
            !watch.is_finished(),
            "40 s in, but only 20 s since progress"
        );
        tokio::time::advance(Duration::from_secs(15)).await;
        tokio::task::yield_now().await;
        assert!(watch.is_finished());
        writer.abort();
    }
}
