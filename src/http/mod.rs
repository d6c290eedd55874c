//! HTTP/1.1: plain requests served directly (`direct`), everything else
//! through hyper — the connection builder with our limits, reading the
//! request body before the app is called, and turning hyper's types into a
//! `Request` for the WSGI bridge.

// Wired in by the connection rewrite.
#[allow(dead_code)]
pub(crate) mod chunked;
pub(crate) mod direct;
pub(crate) mod head;
pub(crate) mod response;
pub(crate) mod rewind;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{Config, MAX_HEADERS, MAX_HEAD_BYTES};
use crate::discard::DiscardBudget;
use crate::log;
use crate::request::{Head, Peer, Request};
use crate::server::{stopped, Shared};
use crate::wsgi::environ::PeerStrings;
use crate::wsgi::output::ResponseBody;
use crate::wsgi::{plain_response, WsgiApp};

/// hyper's connection settings, made once per worker.
pub(crate) fn builder(config: &Config) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .half_close(false)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        // The buffer limit alone does not bound a head that arrives whole;
        // this checks the parsed head's size and answers 431.
        .max_header_size(MAX_HEAD_BYTES)
        .writev(true);
    // Not `pipeline_flush(true)`: with it hyper drops its own 400/431 answers
    // to malformed requests (measured with hyper 1.12).
    if config.header_timeout.is_zero() {
        builder.header_read_timeout(None);
    } else {
        builder.header_read_timeout(config.header_timeout);
    }
    builder
}

/// What every request of one connection shares.
pub(crate) struct Connection {
    pub app: Arc<WsgiApp>,
    pub config: Arc<Config>,
    pub peer: Peer,
    pub local: Option<SocketAddr>,
    strings: OnceLock<PeerStrings>,
}

impl Connection {
    pub(crate) fn new(
        app: Arc<WsgiApp>,
        config: Arc<Config>,
        peer: Peer,
        local: Option<SocketAddr>,
    ) -> Self {
        Self {
            app,
            config,
            peer,
            local,
            strings: OnceLock::new(),
        }
    }
}

/// Why a request body could not be read; each maps to the status the client gets.
#[derive(Debug)]
enum BodyReadError {
    TooLarge,
    Timeout,
    Malformed(hyper::Error),
}

impl BodyReadError {
    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

async fn read_body(
    body: &mut Incoming,
    limit: u64,
    idle: Duration,
) -> Result<Bytes, BodyReadError> {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    if body.size_hint().lower() > limit {
        return Err(BodyReadError::TooLarge);
    }
    // With a Content-Length the buffer is sized once: growing it frame by
    // frame copied a 1 MiB body several times (perf: a third of a POST
    // worker's time in memmove and page faults).
    let declared = usize::try_from(body.size_hint().exact().unwrap_or(0)).unwrap_or(0);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total: u64 = 0;
    loop {
        let frame = if idle.is_zero() {
            body.frame().await
        } else {
            tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| BodyReadError::Timeout)?
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(BodyReadError::Malformed)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > limit {
            return Err(BodyReadError::TooLarge);
        }
        match (&mut joined, first.take()) {
            (Some(buffer), _) => buffer.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(previous)) => {
                let mut buffer = BytesMut::with_capacity(declared.max(previous.len() + data.len()));
                buffer.extend_from_slice(&previous);
                buffer.extend_from_slice(&data);
                joined = Some(buffer);
            }
        }
    }
    Ok(joined.map_or_else(|| first.unwrap_or_default(), BytesMut::freeze))
}

/// Read and drop the rest of a body we refuse (see `discard.rs`).
async fn discard_body(body: &mut Incoming, idle: Duration) {
    let mut budget = DiscardBudget::new(idle);
    while let Some(wait) = budget.next_wait() {
        match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => budget.spent(frame.data_ref().map_or(0, Bytes::len)),
            _ => return,
        }
    }
}

/// hyper's service: read the body without the GIL, then call the app inline.
pub(crate) async fn handle(
    request: hyper::Request<Incoming>,
    connection: Arc<Connection>,
) -> Result<Response<ResponseBody>, Infallible> {
    let (head, body) = request.into_parts();
    let chunked = head.headers.contains_key(TRANSFER_ENCODING);
    let declared_too_large = head
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > connection.config.max_body_size);
    // With `Expect: 100-continue` the client waits for our word before
    // sending the body, so there is nothing to discard.
    let expects_continue = head.headers.contains_key(http::header::EXPECT);
    let (head, mut body) = (head, body);
    if declared_too_large {
        if !expects_continue {
            discard_body(&mut body, connection.config.body_timeout).await;
        }
        return Ok(plain_response(StatusCode::PAYLOAD_TOO_LARGE, true).into_http());
    }
    let body = match read_body(
        &mut body,
        connection.config.max_body_size,
        connection.config.body_timeout,
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(error) => {
            match &error {
                BodyReadError::Malformed(cause) => log::warning(&format!(
                    "bad request body from {}: {cause}",
                    connection.peer
                )),
                BodyReadError::TooLarge => {
                    discard_body(&mut body, connection.config.body_timeout).await;
                }
                BodyReadError::Timeout => {}
            }
            return Ok(plain_response(error.status(), true).into_http());
        }
    };
    let request = Request {
        head: Head::Http(head),
        body,
        body_was_chunked: chunked,
        peer: connection.peer,
        local: connection.local,
    };
    let strings = connection
        .strings
        .get_or_init(|| connection.app.peer_strings(&request));
    Ok(connection.app.call(&request, Some(strings)).into_http())
}

/// Serve a connection through hyper until it closes, with graceful shutdown.
pub(crate) async fn serve_hyper<S>(
    stream: S,
    peer: Peer,
    local: Option<SocketAddr>,
    shared: &Shared,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = Arc::new(Connection::new(
        Arc::clone(&shared.app),
        Arc::clone(&shared.config),
        peer,
        local,
    ));
    let service = service_fn(move |request| handle(request, Arc::clone(&connection)));
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
