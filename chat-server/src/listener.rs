//! The HTTP server: an accept loop serving each connection with hyper's
//! HTTP/1, bounded where `axum::serve` is not.
//!
//! - At most `max_connections` connections at once (WebSockets upgraded
//!   from them included: they keep their connection); past it, new ones
//!   wait in the kernel's backlog.
//! - At most `per_network` of them from one address (an IPv6 address's
//!   /64), so that one client cannot take every slot; the others are told
//!   429 and closed.
//! - A new connection must send its first request head within
//!   `header_timeout`; a kept-alive one its next within `idle_timeout` of
//!   the previous answer; and no connection may keep the server waiting
//!   (a request body that stops, an answer the client does not read) for
//!   more than `idle_timeout` (so a silent new connection goes after the
//!   smaller of the two). None of these apply to a connection once it is
//!   upgraded to a WebSocket: the broker's heart-beats govern it.
//! - On shutdown: stop accepting, let requests in progress finish, close
//!   idle connections (upgraded ones belong to the broker).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// The bounds of the HTTP side (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub(crate) max_connections: usize,
    /// 0: no limit.
    pub(crate) per_network: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// The peer's address, for handlers (`ConnectInfo<Peer>`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// The network an address counts for: an IPv4 address itself, the /64 of
/// an IPv6 one (IPv4-mapped IPv6 addresses are IPv4).
pub(crate) fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Serves `router` on `listener` within `limits` until `stop` fires, then
/// waits for the requests in progress.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let server = Arc::new(Server {
        router,
        limits,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        networks: Arc::default(),
        stop: stop.clone(),
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            (stream, peer, permit) = server.accept(&listener) => {
                // Counted here, in the order of arrival, not by the task.
                let slot = Networks::enter(&server.networks, network(peer.ip()), limits.per_network);
                connections.spawn(Arc::clone(&server).connection(stream, peer, (permit, slot)));
            }
            Some(_) = connections.join_next() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// What every connection task shares.
#[derive(Debug)]
struct Server {
    router: Router,
    limits: HttpLimits,
    permits: Arc<Semaphore>,
    networks: Arc<Networks>,
    stop: CancellationToken,
}

impl Server {
    /// The next connection, once a permit is free.
    async fn accept(
        &self,
        listener: &TcpListener,
    ) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        let permit =
            Arc::clone(&self.permits).acquire_owned().await.expect("the semaphore is never closed");
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (stream, peer, permit);
                }
                // Out of file descriptors and the like: wait rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Serves one connection, or refuses it when its network had no slot.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        (permit, slot): (OwnedSemaphorePermit, Option<Slot>),
    ) {
        let Some(slot) = slot else {
            tracing::debug!(%peer, "too many HTTP connections from this network: refused");
            return self.refuse(stream).await;
        };
        let state = Arc::new(ConnState::default());
        let io = TimedIo::new(stream, self.limits.idle_timeout, Arc::clone(&state), (permit, slot));
        let service = watched(&self.router, peer, &state);
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.idle_timeout)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
            }
            () = first_request(&state, self.limits.header_timeout) => {
                tracing::debug!(%peer, "no request within the header timeout: closed");
            }
            () = self.stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    /// Answers whatever the connection asks with 429 and closes it.
    async fn refuse(&self, stream: TcpStream) {
        let max = self.limits.per_network;
        let answer = hyper::service::service_fn(move |_: Request<Incoming>| async move {
            Ok::<_, Infallible>(too_many_connections(max))
        });
        let conn =
            http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(stream), answer);
        let _ = tokio::time::timeout(self.limits.header_timeout, conn).await;
    }
}

/// The router, told the peer's address (`ConnectInfo<Peer>`), telling
/// `state` of the first request and of an upgrade.
fn watched(
    router: &Router,
    peer: SocketAddr,
    state: &Arc<ConnState>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send + use<>,
> + Send
+ use<> {
    let router = TowerToHyperService::new(router.clone());
    let state = Arc::clone(state);
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        state.requested.store(true, Ordering::Relaxed);
        request.extensions_mut().insert(ConnectInfo(Peer(peer)));
        watch_upgrade(router.call(request), Arc::clone(&state))
    })
}

/// The router's answer to a request, telling `state` of an upgrade.
async fn watch_upgrade(
    response: impl Future<Output = Result<Response, Infallible>>,
    state: Arc<ConnState>,
) -> Result<Response, Infallible> {
    let response = response.await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        state.upgraded.store(true, Ordering::Relaxed);
    }
    Ok(response)
}

/// The answer to a connection over the per-network cap.
fn too_many_connections(max: usize) -> Response {
    let body = serde_json::json!({
        "error": "too_many_requests",
        "message": format!("too many connections from your address (at most {max} at once)"),
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Ends after `limit` unless the connection sent a request by then.
async fn first_request(state: &ConnState, limit: Duration) {
    tokio::time::sleep(limit).await;
    if state.requested.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

/// What the service tells the connection's I/O.
#[derive(Debug, Default)]
struct ConnState {
    /// A request head arrived.
    requested: AtomicBool,
    /// The connection was upgraded (to a WebSocket): no more timeouts.
    upgraded: AtomicBool,
}

/// How many connections each network has open.
#[derive(Debug, Default)]
struct Networks(Mutex<HashMap<IpAddr, usize>>);

/// One connection of a network, counted until dropped.
#[derive(Debug)]
struct Slot {
    networks: Arc<Networks>,
    network: IpAddr,
}

impl Networks {
    /// A slot for `network`, unless it has `max` already (0: no limit).
    fn enter(networks: &Arc<Self>, network: IpAddr, max: usize) -> Option<Slot> {
        let mut open = networks.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(network).or_insert(0);
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot { networks: Arc::clone(networks), network })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.networks.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.network) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.network);
            }
        }
    }
}

/// A connection that fails with `TimedOut` when the server has waited on
/// it (to read or to write) for `idle` without progress, until it is
/// upgraded. Holds the connection's permit and slot, given back when it
/// is dropped (by hyper, or by the WebSocket it became).
#[derive(Debug)]
struct TimedIo {
    stream: TcpStream,
    state: Arc<ConnState>,
    idle: Duration,
    /// Reused across waits (reset, not reallocated).
    stall: Pin<Box<Sleep>>,
    /// Whether `stall` runs: the server is waiting on the connection.
    waiting: bool,
    _held: (OwnedSemaphorePermit, Slot),
}

impl TimedIo {
    fn new(
        stream: TcpStream,
        idle: Duration,
        state: Arc<ConnState>,
        held: (OwnedSemaphorePermit, Slot),
    ) -> Self {
        let stall = Box::pin(tokio::time::sleep(idle));
        Self { stream, state, idle, stall, waiting: false, _held: held }
    }

    /// `poll` as it came, with the stall timer started on `Pending` and
    /// stopped on progress.
    fn timed<T>(&mut self, poll: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if poll.is_ready() || self.state.upgraded.load(Ordering::Relaxed) {
            self.waiting = false;
            return poll;
        }
        if !self.waiting {
            self.stall.as_mut().reset(Instant::now() + self.idle);
            self.waiting = true;
        }
        match self.stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the HTTP connection was idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.timed(poll, cx)
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.timed(poll, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.timed(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("address");
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("address");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(network(one), network(two));
        assert_ne!(network(one), network(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("address");
        assert_eq!(network(mapped), "192.0.2.7".parse::<IpAddr>().expect("address"));
    }

    #[test]
    fn a_network_has_at_most_its_slots() {
        let networks = Arc::<Networks>::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("address");
        let first = Networks::enter(&networks, ip, 2).expect("one");
        let _second = Networks::enter(&networks, ip, 2).expect("two");
        assert!(Networks::enter(&networks, ip, 2).is_none());
        assert!(Networks::enter(&networks, "192.0.2.2".parse().expect("address"), 2).is_some());
        drop(first);
        assert!(Networks::enter(&networks, ip, 2).is_some(), "a closed connection frees its slot");
        assert!(Networks::enter(&networks, ip, 0).is_some(), "0: no limit");
    }
}
