//! A connection's plain HTTP/1.1 requests served without hyper.
//!
//! Profiles of hello world put a third of the worker's user-space time in
//! hyper's per-request machinery (its header map, dispatcher state, a timer
//! armed and cancelled for every head, the body channel) rather than in the
//! kernel or the app. Plain requests — see `head.rs` for the exact test —
//! are parsed here with httparse into byte ranges that the environ is built
//! from directly, and the answer goes out in one write. The first request
//! that is not plain (chunked, `Expect`, HTTP/1.0, malformed, oversized...)
//! hands the connection, with the bytes already read, to hyper for the rest
//! of its life, so every edge case keeps hyper's handling.
//!
//! Limits kept: the head must arrive within `--header-timeout` (also the idle
//! keep-alive limit, as with hyper), each body read within `--body-timeout`,
//! bodies over `--max-body-size` get 413, and shutdown closes idle
//! connections at once and busy ones after their response.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};

use super::head::{self, Parsed, Simple};
use super::response;
use super::rewind::Rewind;
use crate::clock;
use crate::discard::DiscardBudget;
use crate::request::{Head, Peer, Request};
use crate::server::Shared;
use crate::wsgi::environ::PeerStrings;
use crate::wsgi::plain_response;

/// Bytes asked of the socket per read while waiting for a head.
const READ_SIZE: usize = 8 * 1024;
/// A connection keeps a read buffer up to this size between requests.
const KEPT_READ_BUFFER: usize = 64 * 1024;
/// Growth step while a body is read.
const BODY_STEP: usize = 256 * 1024;

/// How waiting for more request bytes ended.
enum Wait {
    Read(std::io::Result<usize>),
    TimedOut,
    Stopping,
}

/// Why a request body was not read in full.
enum BodyFailure {
    TooLarge,
    TimedOut,
    /// The client closed or the read failed: nobody to answer.
    Gone,
}

/// The head deadline's timer, armed once and moved only when it fires
/// early, instead of a timer per request: the deadline moves forward with
/// every request, and re-arming (or even polling) a timer each time was a
/// visible cost in profiles. Between firings only its state is read.
#[derive(Default)]
struct LazyDeadline {
    timer: Option<Pin<Box<Sleep>>>,
    /// Polled since last armed, so it will wake the task when it fires.
    registered: bool,
}

impl LazyDeadline {
    /// Ready once the coarse monotonic clock reaches `due_ms`.
    fn poll_passed(&mut self, due_ms: u64, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(timer) = &self.timer {
            if self.registered && !timer.is_elapsed() {
                return Poll::Pending;
            }
        }
        // Not armed yet, or it fired: the clock decides.
        let now = clock::monotonic_ms();
        if now >= due_ms {
            return Poll::Ready(());
        }
        let deadline = Instant::now() + Duration::from_millis(due_ms - now);
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.is_elapsed() || timer.deadline() > deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            empty @ None => empty.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.registered = timer.as_mut().poll(cx).is_pending();
        if !self.registered {
            // Due by the runtime's clock a hair before the coarse one: look again.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

struct Direct<S> {
    stream: S,
    buffer: BytesMut,
    shared: Shared,
    peer: Peer,
    local: Option<SocketAddr>,
    strings: Option<PeerStrings>,
    deadline: LazyDeadline,
    /// Registered for the shutdown wake-up (after the first idle wait).
    stop_wake: Option<Pin<Box<OwnedNotified>>>,
    /// The last request's field list, reused by the next parse.
    spare_fields: Vec<head::Field>,
    /// The last response head's buffer, reused by the next one.
    out: BytesMut,
}

/// What the next request on a connection is.
enum Next {
    Simple(Simple),
    /// Not plain: hyper takes over.
    Defer,
    Closed,
}

impl<S> Direct<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Read until the buffer starts with a complete head (or the connection ends).
    async fn next_head(&mut self) -> Next {
        let mut head_deadline: Option<u64> = None;
        loop {
            if !self.buffer.is_empty() {
                match head::parse(&self.buffer, &mut self.spare_fields) {
                    Parsed::Simple(simple) => return Next::Simple(simple),
                    Parsed::Defer => return Next::Defer,
                    Parsed::Partial => {}
                }
            }
            match self.wait_for_bytes(&mut head_deadline).await {
                Wait::Read(Ok(read)) if read > 0 => {}
                // A partial head cut off by close or timeout: hyper would
                // close too (it answers only parse errors).
                _ => return Next::Closed,
            }
        }
    }

    /// Read more of a head, bounded by the head deadline (set at the first
    /// wait) and, while no byte of a request has come, by shutdown.
    async fn wait_for_bytes(&mut self, head_deadline: &mut Option<u64>) -> Wait {
        let idle = self.buffer.is_empty();
        let timeout = self.shared.config.header_timeout;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 2);
        let stop = &self.shared.stop;
        let Self {
            stream,
            buffer,
            deadline,
            stop_wake,
            ..
        } = self;
        buffer.reserve(READ_SIZE);
        let read = stream.read_buf(buffer);
        tokio::pin!(read);
        poll_fn(|cx| {
            if let Poll::Ready(result) = read.as_mut().poll(cx) {
                return Poll::Ready(Wait::Read(result));
            }
            if idle {
                let wake = stop_wake.get_or_insert_with(|| Box::pin(stop.wake_up()));
                if stop.is_set() || wake.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wait::Stopping);
                }
            }
            if !timeout.is_zero() {
                let until =
                    *head_deadline.get_or_insert_with(|| clock::monotonic_ms() + timeout_ms);
                if deadline.poll_passed(until, cx).is_ready() {
                    return Poll::Ready(Wait::TimedOut);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The body of `length` bytes: what is buffered, then reads each bounded
    /// by the body timeout.
    async fn read_body(&mut self, length: u64) -> Result<Bytes, BodyFailure> {
        let config = &self.shared.config;
        if length > config.max_body_size {
            return Err(BodyFailure::TooLarge);
        }
        let length = usize::try_from(length).map_err(|_| BodyFailure::TooLarge)?;
        if self.buffer.len() < length {
            // Sized up front (bounded), so a large body is not copied as it grows.
            self.buffer
                .reserve((length - self.buffer.len()).min(64 * BODY_STEP));
        }
        while self.buffer.len() < length {
            self.buffer
                .reserve(BODY_STEP.min(length - self.buffer.len()));
            let read = self.stream.read_buf(&mut self.buffer);
            let read = if config.body_timeout.is_zero() {
                read.await
            } else {
                tokio::time::timeout(config.body_timeout, read)
                    .await
                    .map_err(|_| BodyFailure::TimedOut)?
            };
            match read {
                Ok(read) if read > 0 => {}
                _ => return Err(BodyFailure::Gone),
            }
        }
        Ok(self.buffer.split_to(length).freeze())
    }

    /// Answer a request we refuse, then close (after reading what the
    /// client is still sending, bounded, so it sees the answer).
    async fn refuse(&mut self, status: StatusCode) {
        let mut encoded =
            response::encode(plain_response(status, true), false, false, BytesMut::new());
        if response::write(&mut self.stream, &mut encoded)
            .await
            .is_err()
        {
            return;
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let mut budget = DiscardBudget::new(self.shared.config.body_timeout);
            let mut sink = vec![0u8; 64 * 1024];
            while let Some(wait) = budget.next_wait() {
                match tokio::time::timeout(wait, self.stream.read(&mut sink)).await {
                    Ok(Ok(read)) if read > 0 => budget.spent(read),
                    _ => break,
                }
            }
        }
        let _ = self.stream.shutdown().await;
    }

    fn call(&mut self, simple: Simple, body: Bytes, head_bytes: Bytes) -> response::Encoded {
        let is_head = simple.is_head;
        let close = simple.close;
        let request = Request {
            head: Head::Raw(simple.into_head(head_bytes)),
            body,
            body_was_chunked: false,
            peer: self.peer,
            local: self.local,
        };
        let app = &self.shared.app;
        let strings = self
            .strings
            .get_or_insert_with(|| app.peer_strings(&request));
        let answer = app.call(&request, Some(strings));
        if let Head::Raw(head) = request.head {
            self.spare_fields = head.into_fields();
        }
        let keep_alive = !close && !self.shared.stop.is_set();
        response::encode(answer, is_head, keep_alive, std::mem::take(&mut self.out))
    }
}

/// Serve `stream` directly while its requests are plain, then through hyper.
pub(crate) async fn serve<S>(stream: S, peer: Peer, local: Option<SocketAddr>, shared: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut connection = Direct {
        stream,
        buffer: BytesMut::with_capacity(READ_SIZE),
        shared,
        peer,
        local,
        strings: None,
        deadline: LazyDeadline::default(),
        stop_wake: None,
        spare_fields: Vec::new(),
        out: BytesMut::new(),
    };
    loop {
        let simple = match connection.next_head().await {
            Next::Simple(simple) => simple,
            Next::Closed => return,
            Next::Defer => {
                let Direct {
                    stream,
                    buffer,
                    shared,
                    ..
                } = connection;
                let io = Rewind::new(buffer.freeze(), stream);
                super::serve_hyper(io, peer, local, &shared).await;
                return;
            }
        };
        let head_bytes = connection.buffer.split_to(simple.length).freeze();
        let body = if simple.content_length == 0 {
            Bytes::new()
        } else {
            match connection.read_body(simple.content_length).await {
                Ok(body) => body,
                Err(BodyFailure::TooLarge) => {
                    connection.refuse(StatusCode::PAYLOAD_TOO_LARGE).await;
                    return;
                }
                Err(BodyFailure::TimedOut) => {
                    connection.refuse(StatusCode::REQUEST_TIMEOUT).await;
                    return;
                }
                Err(BodyFailure::Gone) => return,
            }
        };
        let mut encoded = connection.call(simple, body, head_bytes);
        let written = response::write(&mut connection.stream, &mut encoded).await;
        connection.out = encoded.into_buffer();
        if connection.buffer.is_empty() && connection.buffer.capacity() > KEPT_READ_BUFFER {
            // A large body grew it: an idle keep-alive connection should not keep that.
            connection.buffer = BytesMut::with_capacity(READ_SIZE);
        }
        match written {
            Ok(true) => {}
            Ok(false) => {
                let _ = connection.stream.shutdown().await;
                return;
            }
            Err(_) => return,
        }
    }
}
