//! A worker's accept loops and connection tasks, and the graceful drain on
//! shutdown: stop accepting, let in-flight requests finish, close idle
//! keep-alive connections.
//!
//! Backpressure needs no counter: the accept loops are ordinary tasks of the
//! worker's runtime, whose threads are the Python threads. When every thread is
//! inside the app, nothing accepts, and new connections wait in the kernel
//! backlog (where another worker's socket may take them instead).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::http::{self, Connection};
use crate::log;
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

/// Everything an accept loop needs.
#[derive(Clone)]
pub(crate) struct Shared {
    pub app: Arc<WsgiApp>,
    pub config: Arc<Config>,
    pub builder: Arc<hyper::server::conn::http1::Builder>,
    pub open: Arc<OpenConnections>,
    pub shutdown: watch::Receiver<bool>,
}

/// Accept connections on `listener` until shutdown is signalled.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Shared) {
    let local = listener.local_addr().ok();
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok().or(local).unwrap_or(peer);
                shared.open.opened();
                tokio::spawn(serve_connection(stream, peer, local, shared.clone()));
            }
            Err(error) => {
                // EMFILE and friends: wait a little instead of spinning.
                log::warning(&format!("accept failed: {error}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: Shared,
) {
    let connection = Arc::new(Connection::new(
        Arc::clone(&shared.app),
        Arc::clone(&shared.config),
        peer,
        local,
    ));
    let service = service_fn(move |request| http::handle(request, Arc::clone(&connection)));
    let conn = shared
        .builder
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        result = conn.as_mut() => report(result),
        () = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            report(conn.await);
        }
    }
    shared.open.closed();
}

/// Resolve once shutdown has been signalled (or the signalling side is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn report(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        // Clients that vanish or time out are routine; only protocol-level
        // surprises are worth a line.
        let routine = error.is_incomplete_message()
            || error.is_canceled()
            || error.is_closed()
            || error.is_timeout()
            || error.is_user()
            || is_io_reset(&error);
        if !routine {
            log::warning(&format!("connection error: {error}"));
        }
    }
}

fn is_io_reset(error: &hyper::Error) -> bool {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}
