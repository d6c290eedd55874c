//! One connection's life, whatever its protocol: wait for a request head,
//! read its body, route it (the readiness path, or the app), encode and send
//! the answer, and go on or close. A protocol (`http/`, `uwsgi/`) only
//! frames bytes: it parses a head into the neutral request and says how the
//! body is framed and how to answer. Body reading, refusals, the response
//! encoder, deadlines and the stop signal are each written once, below.
//!
//! The wait for a head: a fresh connection gets `--header-timeout` for its
//! first head; a kept-alive one waits idle for `--keepalive-timeout`, and
//! once the first byte of its next request arrives, `--header-timeout` for
//! the rest of that head. An idle wait also ends when the worker stops; when
//! it retires instead, the wait goes on and the next request is served and
//! answered with `Connection: close` (see `shutdown::Stopping`).
//!
//! An idle connection holds no read buffer: it waits for readability first
//! and allocates only when bytes are there (10,000 idle keep-alive
//! connections would otherwise hold 80 MiB of empty buffers).

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::futures::OwnedNotified;

use crate::body::RequestBody;
use crate::body_reader::{self, BodyDecoder, BodyLimits, Framing};
use crate::deadline::{self, LazyDeadline};
use crate::finished::Finished;
use crate::harakiri::Client;
use crate::health;
use crate::log;
use crate::refusal;
use crate::request::{Peer, Request, RequestHead};
use crate::response::encode::{encode, Encoded, Exchange};
use crate::response::write::{self, Sent};
use crate::response::Response;
use crate::shared::Shared;
use crate::shutdown::{ConnectionGuard, Stopping};
use crate::wsgi::environ::ConnectionCache;

/// Bytes asked of the socket per read while waiting for a head.
const READ_SIZE: usize = 8 * 1024;
/// How long a connection that has sent nothing yet may still send its
/// first request once the worker stops.
const FIRST_REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// A connection keeps a read buffer with pipelined bytes up to this size.
const KEPT_READ_BUFFER: usize = 64 * 1024;

/// A connected stream whose readiness can be awaited without reading (and
/// whose descriptor the `--harakiri` watchdog can answer on).
pub(crate) trait Transport:
    AsyncRead + AsyncWrite + write::FileSink + Unpin + Send + Sync + AsRawFd
{
    /// Ready once the stream has bytes (or an end) to read.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
}

impl Transport for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl Transport for tokio::net::UnixStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::net::UnixStream::poll_read_ready(self, cx)
    }
}

/// A request a protocol parsed, and how to serve it.
pub(crate) struct Incoming<D> {
    pub head: RequestHead,
    pub framing: Framing<D>,
    pub exchange: Exchange,
    /// Written before the body is waited for (`Expect: 100-continue`).
    pub continue_line: Option<&'static [u8]>,
    /// The body's length comes from counting it (chunked).
    pub counted_length: bool,
}

/// What a protocol made of the front of the read buffer.
pub(crate) enum Parse<D> {
    /// Not a whole head yet.
    Partial,
    Request(Incoming<D>),
    /// Answer `status` and close; `log` says why, when worth a line; with
    /// `drain`, the client's body is read and dropped first.
    Refuse {
        status: StatusCode,
        drain: bool,
        log: Option<String>,
    },
    /// Close without an answer, logging why.
    Drop {
        log: String,
    },
}

/// How a connection ended waiting for a head that never completed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cut {
    Closed,
    TimedOut,
}

/// One wire protocol: how heads are framed and answered.
pub(crate) trait Protocol: Send {
    /// Its body decoder, for framings other than a length.
    type Decoder: BodyDecoder + Send;
    /// Its name in log lines.
    const NAME: &'static str;
    /// Parse a head at the front of `buffer`, taking the head's bytes.
    fn parse(&mut self, buffer: &mut BytesMut) -> Parse<Self::Decoder>;
    /// How to answer before a head is understood (refusals).
    fn refusal_exchange(&self) -> Exchange;
    /// What to log when the wait for a head ended with `buffered` bytes of
    /// it; `None` when that is routine.
    fn incomplete(&self, cut: Cut, buffered: &[u8]) -> Option<String>;
    /// Take back a served request's head, whose storage can be reused.
    fn recycle(&mut self, head: RequestHead);
}

/// The deadline of the wait for a head, armed at its first wait: the
/// coarse-clock millisecond it is due (`None`: no limit).
#[derive(Clone, Copy)]
enum HeadDeadline {
    Unarmed,
    /// A kept-alive connection waits for the first byte of its next request.
    KeptIdle(Option<u64>),
    /// A fresh connection's first head, or the rest of a head once it began.
    Head(Option<u64>),
}

/// Answer `request`: the server's own routes first, then the app. Every
/// protocol's requests go through here (also uwsgi's unix fast path).
/// `None` when `--harakiri`'s watchdog answered on `client` instead: the
/// caller then sends nothing and closes.
pub(crate) fn route(
    shared: &Shared,
    request: &mut Request,
    cache: &mut ConnectionCache,
    client: Client,
) -> Option<Response> {
    if let Some(response) = health::answer(&request.head, shared) {
        return Some(response);
    }
    if let Some(response) = shared.static_files.answer(&request.head) {
        return Some(response);
    }
    let response = shared.app.call(request, cache, client)?;
    Some(shared.static_files.hand_over(&request.head, response))
}

/// Account for one answered request: its access log line, its count.
pub(crate) fn account(shared: &Shared, finished: &Finished<'_>) {
    let took = finished.started.elapsed();
    if let Some(access_log) = &shared.access_log {
        access_log.record(finished, took);
    }
    crate::counters::count(&finished.counted(took));
    shared.recycler.request_done();
}

/// How waiting for more request bytes ended.
enum Wait {
    Read(std::io::Result<usize>),
    TimedOut,
    Stopping,
}

/// A connection being served.
struct Connection<S, P> {
    /// Counts this connection open until it is dropped, even by a panic.
    _open: ConnectionGuard,
    stream: S,
    buffer: BytesMut,
    protocol: P,
    shared: Arc<Shared>,
    peer: Peer,
    local: Option<SocketAddr>,
    cache: ConnectionCache,
    deadline: LazyDeadline,
    /// Registered for the shutdown wake-up (after the first idle wait).
    stop_wake: Option<Pin<Box<OwnedNotified>>>,
    /// The last response head's buffer, reused by the next one.
    out: BytesMut,
    /// Requests served so far.
    served: u32,
}

/// Serve `stream` on its own task until it closes, counted open meanwhile.
/// `buffer` holds bytes already read from it.
pub(crate) fn spawn<S: Transport + 'static, P: Protocol + 'static>(
    stream: S,
    protocol: P,
    peer: Peer,
    local: Option<SocketAddr>,
    shared: Arc<Shared>,
    buffer: BytesMut,
) {
    let open = shared.open.open();
    tokio::spawn(Connection::new(stream, protocol, peer, local, shared, buffer, open).run());
}

/// Serve `stream` on the calling task until it closes; `open` counts it.
pub(crate) async fn serve<S: Transport, P: Protocol>(
    stream: S,
    protocol: P,
    peer: Peer,
    local: Option<SocketAddr>,
    shared: Arc<Shared>,
    buffer: BytesMut,
    open: ConnectionGuard,
) {
    Connection::new(stream, protocol, peer, local, shared, buffer, open)
        .run()
        .await;
}

impl<S: Transport, P: Protocol> Connection<S, P> {
    /// A connection ready to serve, in a box (see `run`), counted open by
    /// `open` until it is dropped; `buffer` holds bytes already read from it.
    fn new(
        stream: S,
        protocol: P,
        peer: Peer,
        local: Option<SocketAddr>,
        shared: Arc<Shared>,
        buffer: BytesMut,
        open: ConnectionGuard,
    ) -> Box<Self> {
        Box::new(Self {
            _open: open,
            stream,
            buffer,
            protocol,
            shared,
            peer,
            local,
            cache: ConnectionCache::default(),
            deadline: LazyDeadline::default(),
            stop_wake: None,
            out: BytesMut::new(),
            served: 0,
        })
    }

    /// Serve requests until the connection ends. The connection lives in a
    /// box and the state of serving a request in another, made per request:
    /// an idle connection's task then holds only what waiting needs (its
    /// task and connection together take about a kilobyte).
    pub(crate) async fn run(mut self: Box<Self>) {
        while let Some(incoming) = self.next_request().await {
            if Box::pin(self.serve_one(incoming)).await == Sent::Close {
                return;
            }
        }
    }
}

impl<S: Transport, P: Protocol> Connection<S, P> {
    /// Read until the buffer starts with a complete head; `None` when the
    /// connection ends first (closed, timed out, refused, or shutting down).
    async fn next_request(&mut self) -> Option<Incoming<P::Decoder>> {
        let mut head_deadline = HeadDeadline::Unarmed;
        loop {
            if !self.buffer.is_empty() {
                match self.protocol.parse(&mut self.buffer) {
                    Parse::Partial => {}
                    Parse::Request(incoming) => return Some(incoming),
                    Parse::Refuse { status, drain, log } => {
                        if let Some(why) = log {
                            self.log_dropped(&why);
                        }
                        let exchange = self.protocol.refusal_exchange();
                        // Boxed, like every rare path: an idle connection's
                        // task should not reserve room for it.
                        Box::pin(refusal::refuse(
                            &mut self.stream,
                            status,
                            exchange,
                            drain,
                            &self.shared.config,
                        ))
                        .await;
                        return None;
                    }
                    Parse::Drop { log } => {
                        self.log_dropped(&log);
                        return None;
                    }
                }
            }
            let cut = match self.wait_for_bytes(&mut head_deadline).await {
                Wait::Read(Ok(read)) if read > 0 => continue,
                Wait::Read(_) => Cut::Closed,
                Wait::TimedOut => Cut::TimedOut,
                Wait::Stopping => return None,
            };
            if let Some(why) = self.protocol.incomplete(cut, &self.buffer) {
                self.log_dropped(&why);
            }
            return None;
        }
    }

    fn log_dropped(&self, why: &str) {
        log::warning(&format!(
            "{} request from {} dropped: {why}",
            P::NAME,
            self.peer
        ));
    }

    /// Wait for more of a head: bounded by the head deadline (see the
    /// module doc) and, while no byte of a request has come, by a stop.
    /// An idle connection gives up its buffer while it waits.
    async fn wait_for_bytes(&mut self, head_deadline: &mut HeadDeadline) -> Wait {
        let idle = self.buffer.is_empty();
        let kept_idle = idle && self.served > 0;
        let config = &self.shared.config;
        let due = match *head_deadline {
            HeadDeadline::KeptIdle(due) if kept_idle => due,
            HeadDeadline::Head(due) => due,
            _ if kept_idle => {
                let due = deadline::after_ms(config.keepalive_timeout);
                *head_deadline = HeadDeadline::KeptIdle(due);
                due
            }
            // Fresh, or the first byte of the next request has come.
            _ => {
                let due = deadline::after_ms(config.header_timeout);
                *head_deadline = HeadDeadline::Head(due);
                due
            }
        };
        let Self {
            stream,
            buffer,
            deadline,
            stop_wake,
            shared,
            ..
        } = self;
        let stop = &shared.stop;
        // A stop closes a kept connection that waits idle. One that has not
        // sent a byte yet (just accepted, perhaps from the queue a stop
        // sweeps) gets FIRST_REQUEST_GRACE for its first request: nginx
        // sends it with the connect, a browser's preconnect never will.
        let fresh_idle = idle && self.served == 0;
        let mut grace: Option<u64> = None;
        let mut limits = |cx: &mut Context<'_>, kept_idle: bool| -> Option<Wait> {
            if (kept_idle || fresh_idle) && grace.is_none() {
                loop {
                    let wake = stop_wake.get_or_insert_with(|| Box::pin(stop.wake_up()));
                    let woken = wake.as_mut().poll(cx).is_ready();
                    if stop.mode() == Some(Stopping::Stop) {
                        if kept_idle {
                            return Some(Wait::Stopping);
                        }
                        grace = deadline::after_ms(FIRST_REQUEST_GRACE);
                        break;
                    }
                    if !woken {
                        break;
                    }
                    // A retirement: wait on for the next request, and for a
                    // stop that may still follow it.
                    *stop_wake = None;
                }
            }
            if let Some(grace) = grace {
                if deadline.poll_passed(grace, cx).is_ready() {
                    return Some(Wait::Stopping);
                }
            }
            match due {
                Some(due) if deadline.poll_passed(due, cx).is_ready() => Some(Wait::TimedOut),
                _ => None,
            }
        };
        if idle {
            *buffer = BytesMut::new();
            let ended = poll_fn(|cx| match stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(None),
                Poll::Ready(Err(error)) => Poll::Ready(Some(Wait::Read(Err(error)))),
                Poll::Pending => {
                    limits(cx, kept_idle).map_or(Poll::Pending, |wait| Poll::Ready(Some(wait)))
                }
            })
            .await;
            if let Some(wait) = ended {
                return wait;
            }
        }
        buffer.reserve(READ_SIZE);
        let read = stream.read_buf(buffer);
        tokio::pin!(read);
        poll_fn(|cx| {
            if let Poll::Ready(result) = read.as_mut().poll(cx) {
                return Poll::Ready(Wait::Read(result));
            }
            limits(cx, kept_idle).map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }

    /// Read the body, call the app, send the answer.
    async fn serve_one(&mut self, incoming: Incoming<P::Decoder>) -> Sent {
        let started = Instant::now();
        let Incoming {
            head,
            mut framing,
            exchange,
            mut continue_line,
            counted_length,
        } = incoming;
        let config = &self.shared.config;
        let limits = BodyLimits {
            max_size: config.max_body_size,
            idle: config.body_timeout,
            post_buffering: config.post_buffering,
            spool_dir: &config.spool_dir,
        };
        let body = if matches!(framing, Framing::None) {
            Ok(RequestBody::Empty)
        } else {
            // Boxed: only requests with a body pay for its reader's state.
            Box::pin(body_reader::read_body(
                &mut self.stream,
                &mut self.buffer,
                &mut framing,
                &limits,
                &mut continue_line,
            ))
            .await
        };
        let body = match body {
            Ok(body) => body,
            Err(error) => {
                let asked_for_body = continue_line.is_none();
                Box::pin(self.refuse_body(&head, error, exchange, &mut framing, asked_for_body))
                    .await;
                return Sent::Close;
            }
        };
        let mut request = Request {
            head,
            body,
            counted_length,
            peer: self.peer,
            local: self.local,
        };
        let client = Client {
            fd: self.stream.as_raw_fd(),
            exchange,
        };
        let Some(response) = route(&self.shared, &mut request, &mut self.cache, client) else {
            // The watchdog answered (504) and shut the socket down.
            return Sent::Close;
        };
        let answered = Instant::now();
        let exchange = Exchange {
            keep_alive: exchange.keep_alive && !self.shared.stop.is_set(),
            ..exchange
        };
        let status = response.status.as_u16();
        let mut encoded = encode(response, exchange, std::mem::take(&mut self.out));
        let limit = self.shared.config.write_timeout;
        let sent = if encoded.body.is_none() {
            // The whole answer is in the head's buffer: one write.
            write::write_all(&mut self.stream, &encoded.head, limit)
                .await
                .map(|()| {
                    if encoded.keep_alive {
                        Sent::KeepAlive
                    } else {
                        Sent::Close
                    }
                })
        } else {
            // Boxed: an idle connection's task should not reserve room for a stream.
            Box::pin(write::send(&mut self.stream, &mut encoded, limit, || {
                request.head.describe()
            }))
            .await
        };
        if let Err(error) = &sent {
            write::log_stalled(error, limit, || request.head.describe());
        }
        account(
            &self.shared,
            &Finished::new(&request, P::NAME, status, &encoded, (started, answered)),
        );
        self.finish(encoded, request);
        sent.unwrap_or(Sent::Close)
    }

    /// Answer a body that could not be read (413, 408, 503...) and, when
    /// its framing allows, read and drop the rest before the close.
    async fn refuse_body(
        &mut self,
        head: &RequestHead,
        error: body_reader::BodyError,
        exchange: Exchange,
        framing: &mut Framing<P::Decoder>,
        asked_for_body: bool,
    ) {
        let config = &self.shared.config;
        if let body_reader::BodyError::Spool(why) = &error {
            log::error(&format!("{}: {why}; answering 503", head.describe()));
        } else {
            self.log_dropped(&format!("{}: {error}", head.describe()));
        }
        let Some(status) = error.status() else {
            return;
        };
        refusal::refuse(&mut self.stream, status, exchange, false, config).await;
        // A client that was never asked for its body (100-continue) sends none.
        if error.drain() && asked_for_body {
            let until = tokio::time::Instant::now() + refusal::TOTAL_TIME;
            body_reader::discard_body(
                &mut self.stream,
                &mut self.buffer,
                framing,
                refusal::LIMIT,
                until,
                config.body_timeout,
            )
            .await;
        }
    }

    /// Keep what the next request can reuse; let go of what it should not hold.
    fn finish(&mut self, encoded: Encoded, request: Request) {
        self.served = self.served.saturating_add(1);
        // Kept from the second request on: a connection that made one
        // request and waits idle should hold no buffer.
        self.out = if self.served > 1 {
            encoded.into_buffer()
        } else {
            BytesMut::new()
        };
        self.protocol.recycle(request.head);
        if self.buffer.capacity() > KEPT_READ_BUFFER && self.buffer.len() < READ_SIZE {
            // A large body grew it: a kept connection should not hold that.
            self.buffer = BytesMut::from(&self.buffer[..]);
        }
    }
}

impl std::fmt::Debug for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(result) => write!(f, "Read({result:?})"),
            Self::TimedOut => f.write_str("TimedOut"),
            Self::Stopping => f.write_str("Stopping"),
        }
    }
}
