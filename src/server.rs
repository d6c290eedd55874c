//! A worker's accept loops: take connections from its listeners and start
//! each on the protocol it speaks, until the stop signal.
//!
//! Backpressure: a worker accepts only while one of its threads is outside
//! the app, and, while a sibling has a free thread (the workers' board says),
//! it takes one connection and lets it reach the app before accepting
//! another, leaving the rest for that sibling. Each TCP worker owns one
//! `SO_REUSEPORT` socket (even spreading of keep-alive connections) and also
//! watches its siblings' sockets: a connection still waiting there after
//! `STEAL_DELAY` — its owner is inside a long request or respawning — is
//! taken by this worker if it has a free thread.
//!
//! When no sibling has a free thread, a worker takes every connection
//! waiting on its own socket at once: nobody else would serve them sooner,
//! and taking one per turn of its run queue left a burst waiting seconds in
//! the backlog while the worker served its ready keep-alive connections
//! (measured: 16-27 connections queued 4-6 s into a 100-connection load of a
//! 4 ms app, fresh connections answered after 2.7 s at the median, wrk
//! counting timeouts).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, UnixListener};

use crate::config::ListenerProtocol;
use crate::connection;
use crate::http::connection::Http1;
use crate::log;
use crate::request::Peer;
use crate::shared::Shared;
use crate::shutdown::Stopping;
use crate::uwsgi::connection::{allowed, serve_unix, Uwsgi};

/// A bound listener of either socket family.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
    /// A unix socket serving uwsgi: its connections are accepted unregistered
    /// (see `uwsgi::connection::serve_unix`).
    UwsgiUnix(AsyncFd<std::os::unix::net::UnixListener>),
}

/// A listening socket registered with the runtime for readiness only: the
/// caller accepts by hand, so accepted connections are not registered.
/// Only socket types that own their descriptor are accepted (the bound),
/// which is what keeps the descriptor valid for the registration's life.
pub(crate) fn watch_readable<T>(listener: T) -> std::io::Result<AsyncFd<T>>
where
    T: AsRawFd + Into<std::os::fd::OwnedFd> + From<std::os::fd::OwnedFd>,
{
    // SAFETY: `T` owns its descriptor (it converts to and from `OwnedFd`) and
    // the AsyncFd takes ownership of it, so the descriptor stays open and
    // unchanged for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
        .map_err(|error| std::io::Error::other(error.to_string()))
}

/// Accept one connection, non-blocking and close-on-exec, without registering it.
fn accept_raw(
    listener: &std::os::unix::net::UnixListener,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::FromRawFd;
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

/// Accept connections on `listener` until shutdown is signalled.
pub(crate) async fn accept_loop(
    listener: Listener,
    protocol: ListenerProtocol,
    shared: Arc<Shared>,
) {
    let stop = &shared.stop;
    loop {
        tokio::select! {
            biased;
            () = stop.stopped() => break,
            () = shared.app.capacity.idle_thread() => {}
        }
        let accepted = match &listener {
            Listener::Tcp(tcp) => tokio::select! {
                biased;
                () = stop.stopped() => break,
                accepted = tcp.accept() => accepted.map(|(stream, peer)| {
                    spawn_tcp(stream, peer, protocol, &shared);
                }),
            },
            Listener::UwsgiUnix(unix) => tokio::select! {
                biased;
                () = stop.stopped() => break,
                accepted = accept_uwsgi_unix(unix) => accepted.map(|stream| {
                    let guard = shared.open.open();
                    tokio::spawn(serve_unix(stream, Arc::clone(&shared), guard));
                }),
            },
            Listener::Unix(unix) => tokio::select! {
                biased;
                () = stop.stopped() => break,
                accepted = unix.accept() => accepted.map(|(stream, _)| {
                    spawn(stream, Peer::Unix, None, protocol, &shared);
                }),
            },
        };
        match accepted {
            // This worker's own TCP socket, and no sibling could take what
            // waits there: take every waiting connection.
            Ok(())
                if matches!(listener, Listener::Tcp(_))
                    && !shared.board.sibling_has_free_thread(shared.slot) => {}
            Ok(()) => let_connection_start(&shared).await,
            Err(error) => {
                // EMFILE and friends: wait a little instead of spinning.
                log::warning(&format!("accept failed: {error}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if stop.mode() == Some(Stopping::Stop) {
        take_queued(&listener, protocol, &shared);
    }
}

/// After a stop, take every connection already queued on `listener`: the
/// master has stopped new ones from queueing (`net::closing`), and closing
/// the socket would reset these, whose requests may already be sent. A
/// connection that has not made a request yet is still served one.
fn take_queued(listener: &Listener, protocol: ListenerProtocol, shared: &Arc<Shared>) {
    loop {
        let taken = match listener {
            Listener::Tcp(tcp) => accept_now(tcp).and_then(|socket| {
                let stream = std::net::TcpStream::from(socket);
                let peer = stream.peer_addr()?;
                spawn_std_tcp(stream, peer, protocol, shared)
            }),
            Listener::Unix(unix) => accept_now(unix).and_then(|socket| {
                let stream = std::os::unix::net::UnixStream::from(OwnedFd::from(socket));
                stream.set_nonblocking(true)?;
                let stream = tokio::net::UnixStream::from_std(stream)?;
                spawn(stream, Peer::Unix, None, protocol, shared);
                Ok(())
            }),
            Listener::UwsgiUnix(unix) => accept_raw(unix.get_ref()).map(|stream| {
                let guard = shared.open.open();
                tokio::spawn(serve_unix(stream, Arc::clone(shared), guard));
            }),
        };
        // WouldBlock: nothing is left in the queue.
        if taken.is_err() {
            return;
        }
    }
}

/// One `accept` on a non-blocking listening socket, whatever owns it.
fn accept_now(listener: &impl AsFd) -> std::io::Result<socket2::Socket> {
    socket2::SockRef::from(listener)
        .accept()
        .map(|(socket, _)| socket)
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
    shared: Arc<Shared>,
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
    let stop = &shared.stop;
    loop {
        let mut ready = tokio::select! {
            biased;
            () = stop.stopped() => break,
            ready = listener.readable() => match ready {
                Ok(ready) => ready,
                Err(_) => break,
            },
        };
        tokio::select! {
            biased;
            () = stop.stopped() => break,
            () = async {
                tokio::time::sleep(STEAL_DELAY).await;
                shared.app.capacity.idle_thread().await;
            } => {}
        }
        match listener.get_ref().accept() {
            Ok((stream, peer)) => {
                if spawn_std_tcp(stream, peer, protocol, &shared).is_ok() {
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
    // A sibling that died or stopped first leaves its queue to whoever
    // still holds the socket.
    if stop.mode() == Some(Stopping::Stop) {
        while let Ok((stream, peer)) = listener.get_ref().accept() {
            let _ = spawn_std_tcp(stream, peer, protocol, &shared);
        }
    }
}

/// Serve a connection accepted outside the runtime (a sibling's socket, or
/// a stop's sweep of the queue): it is registered with the runtime first.
fn spawn_std_tcp(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    protocol: ListenerProtocol,
    shared: &Arc<Shared>,
) -> std::io::Result<()> {
    stream.set_nonblocking(true)?;
    spawn_tcp(
        tokio::net::TcpStream::from_std(stream)?,
        peer,
        protocol,
        shared,
    );
    Ok(())
}

fn spawn_tcp(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    protocol: ListenerProtocol,
    shared: &Arc<Shared>,
) {
    if protocol == ListenerProtocol::Uwsgi && !allowed(&shared.config.uwsgi_allow_from, peer) {
        log::warning(&format!(
            "uwsgi connection from {peer} refused: not in --uwsgi-allow-from"
        ));
        return;
    }
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    spawn(stream, Peer::Tcp(peer), local, protocol, shared);
}

/// Start serving a connection on its protocol.
fn spawn<S: connection::Transport + 'static>(
    stream: S,
    peer: Peer,
    local: Option<SocketAddr>,
    protocol: ListenerProtocol,
    shared: &Arc<Shared>,
) {
    let shared = Arc::clone(shared);
    let buffer = BytesMut::new();
    match protocol {
        ListenerProtocol::Http => {
            connection::spawn(stream, Http1::default(), peer, local, shared, buffer);
        }
        ListenerProtocol::Uwsgi => connection::spawn(stream, Uwsgi, peer, local, shared, buffer),
    }
}
