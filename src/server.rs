//! A worker's accept loops and connection tasks, and the graceful drain on
//! shutdown: stop accepting, let in-flight requests finish, close idle
//! keep-alive connections.
//!
//! Backpressure: a worker accepts only while one of its threads is outside the
//! app, and after each accept it lets the new connection reach the app before
//! accepting another, so a burst is not swallowed by one worker. Each TCP
//! worker owns one `SO_REUSEPORT` socket (even spreading of keep-alive
//! connections) and also watches its siblings' sockets: a connection still
//! waiting there after `STEAL_DELAY` — its owner is busy or respawning — is
//! taken by this worker if it has a free thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify};

use crate::config::{Config, ListenerProtocol, Network};
use crate::http;
use crate::log;
use crate::request::Peer;
use crate::uwsgi;
use crate::wsgi::WsgiApp;

/// Connections still open, and a way to wait for none.
#[derive(Default)]
pub(crate) struct OpenConnections {
    count: AtomicUsize,
    idle: Notify,
}

impl OpenConnections {
    fn opened(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn closed(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Wait until every connection has closed.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// Shutdown as a flag plus a wake-up, for connections that check it on every
/// request: reading an atomic is free, while polling a channel's future each
/// time costs a lock. A connection registers for the wake-up once, when it
/// first waits idle, and looks at the flag after that.
#[derive(Default)]
pub(crate) struct StopSignal {
    stopping: AtomicBool,
    notify: Arc<Notify>,
}

impl StopSignal {
    /// Set the flag and wake every registered connection.
    pub(crate) fn trigger(&self) {
        self.stopping.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// A future that completes at `trigger`, once polled (or enabled).
    pub(crate) fn wake_up(&self) -> tokio::sync::futures::OwnedNotified {
        Arc::clone(&self.notify).notified_owned()
    }
}

/// Everything an accept loop needs.
#[derive(Clone)]
pub(crate) struct Shared {
    pub app: Arc<WsgiApp>,
    pub config: Arc<Config>,
    pub builder: Arc<hyper::server::conn::http1::Builder>,
    pub open: Arc<OpenConnections>,
    pub shutdown: watch::Receiver<bool>,
    pub stop: Arc<StopSignal>,
}

/// A bound listener of either socket family.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
    /// A unix socket serving uwsgi: its connections are accepted unregistered
    /// (see `uwsgi::connection::serve_unix`).
    UwsgiUnix(AsyncFd<std::os::unix::net::UnixListener>),
}

/// Register a listener with the runtime for readiness only: the caller
/// accepts by hand, so accepted connections are not registered themselves.
pub(crate) fn watch_readable<T: std::os::fd::AsRawFd>(listener: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: the AsyncFd takes ownership of `listener`, so its descriptor
    // stays open and unchanged for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
        .map_err(|error| std::io::Error::other(error.to_string()))
}

/// Accept one connection, non-blocking and close-on-exec, without registering it.
fn accept_raw(
    listener: &std::os::unix::net::UnixListener,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: accept4 on our listening descriptor with null address pointers;
    // a non-negative result is a new descriptor that we own from here on.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) })
}

/// Wait for and accept one unregistered unix connection.
async fn accept_uwsgi_unix(
    listener: &AsyncFd<std::os::unix::net::UnixListener>,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    loop {
        let mut ready = listener.readable().await?;
        match accept_raw(listener.get_ref()) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => ready.clear_ready(),
            result => return result,
        }
    }
}

/// How long a connection may wait on a sibling's socket before this worker takes it.
const STEAL_DELAY: Duration = Duration::from_millis(3);

/// Resolve once shutdown has been signalled (or the signalling side is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn allowed(allow: &[Network], peer: SocketAddr) -> bool {
    if allow.is_empty() {
        return peer.ip().is_loopback()
            || matches!(peer.ip(), std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
    }
    allow.iter().any(|network| network.contains(peer.ip()))
}

/// Accept connections on `listener` until shutdown is signalled.
pub(crate) async fn accept_loop(listener: Listener, protocol: ListenerProtocol, shared: Shared) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            () = shared.app.capacity.idle_thread() => {}
        }
        let accepted = match &listener {
            Listener::Tcp(tcp) => tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                accepted = tcp.accept() => accepted.map(|(stream, peer)| {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().ok();
                    spawn_tcp(stream, peer, local, protocol, &shared);
                }),
            },
            Listener::UwsgiUnix(unix) => tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                accepted = accept_uwsgi_unix(unix) => accepted.map(|stream| {
                    shared.open.opened();
                    tokio::spawn(serve_uwsgi_unix(stream, shared.clone()));
                }),
            },
            Listener::Unix(unix) => tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                accepted = unix.accept() => accepted.map(|(stream, _)| {
                    shared.open.opened();
                    let shared = shared.clone();
                    match protocol {
                        ListenerProtocol::Http => { tokio::spawn(serve_http(stream, Peer::Unix, None, shared)); }
                        ListenerProtocol::Uwsgi => { tokio::spawn(serve_uwsgi(stream, Peer::Unix, shared)); }
                    }
                }),
            },
        };
        match accepted {
            Ok(()) => let_connection_start(&shared).await,
            Err(error) => {
                // EMFILE and friends: wait a little instead of spinning.
                log::warning(&format!("accept failed: {error}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// With one thread, yield so the new connection's request reaches the app (and
/// counts as busy) before another accept: otherwise a burst of connections is
/// swallowed by whichever worker woke first. With more threads a yielded task
/// would sit on this thread's deferred list while it runs the app, stalling
/// accepts; idle sibling threads pick the new connection up at once instead.
async fn let_connection_start(shared: &Shared) {
    if shared.config.threads == 1 {
        tokio::task::yield_now().await;
    }
}

/// Take connections left waiting on a sibling worker's socket (see the module doc).
pub(crate) async fn steal_loop(
    listener: std::net::TcpListener,
    protocol: ListenerProtocol,
    shared: Shared,
) {
    let watched = listener
        .set_nonblocking(true)
        .and_then(|()| watch_readable(listener));
    let listener = match watched {
        Ok(listener) => listener,
        Err(error) => {
            log::warning(&format!("cannot watch a sibling socket: {error}"));
            return;
        }
    };
    let mut shutdown = shared.shutdown.clone();
    loop {
        let mut ready = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            ready = listener.readable() => match ready {
                Ok(ready) => ready,
                Err(_) => break,
            },
        };
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            () = async {
                tokio::time::sleep(STEAL_DELAY).await;
                shared.app.capacity.idle_thread().await;
            } => {}
        }
        match listener.get_ref().accept() {
            Ok((stream, peer)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(stream));
                if let Ok(stream) = stream {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().ok();
                    spawn_tcp(stream, peer, local, protocol, &shared);
                    let_connection_start(&shared).await;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(_) => {
                ready.clear_ready();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn spawn_tcp(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    protocol: ListenerProtocol,
    shared: &Shared,
) {
    match protocol {
        ListenerProtocol::Http => {
            shared.open.opened();
            tokio::spawn(serve_http(stream, Peer::Tcp(peer), local, shared.clone()));
        }
        ListenerProtocol::Uwsgi => {
            if !allowed(&shared.config.uwsgi_allow_from, peer) {
                log::warning(&format!(
                    "uwsgi connection from {peer} refused: not in --uwsgi-allow-from"
                ));
                return;
            }
            shared.open.opened();
            tokio::spawn(serve_uwsgi(stream, Peer::Tcp(peer), shared.clone()));
        }
    }
}

async fn serve_uwsgi<S>(stream: S, peer: Peer, shared: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let open = Arc::clone(&shared.open);
    uwsgi::connection::serve(stream, peer, shared).await;
    open.closed();
}

async fn serve_uwsgi_unix(stream: std::os::unix::net::UnixStream, shared: Shared) {
    let open = Arc::clone(&shared.open);
    uwsgi::connection::serve_unix(stream, shared).await;
    open.closed();
}

async fn serve_http<S>(stream: S, peer: Peer, local: Option<SocketAddr>, shared: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    http::direct::serve(stream, peer, local, shared.clone()).await;
    shared.open.closed();
}
