//! One uwsgi connection: read the packet header, the vars block and
//! CONTENT_LENGTH bytes of body (all without the GIL, each step bounded in
//! time), call the app inline, write the response as HTTP/1.x and close.
//! Malformed packets are logged and the connection closed; they never reach
//! the app and never panic.

use std::future::Future;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{CodecError, PacketHeader, Vars, HEADER_LEN};
use crate::discard::DiscardBudget;
use crate::http::response::{push_length, status_allows_body};
use crate::log;
use crate::request::{Head, Peer, Request};
use crate::server::{stopped, Shared};
use crate::wsgi::app_response::AppResponse;
use crate::wsgi::output::ResponseBody;
use crate::wsgi::plain_response;

/// Why a uwsgi request was dropped before reaching the app.
#[derive(Debug)]
enum PacketError {
    /// The peer closed before sending anything: not worth a log line.
    Empty,
    Io(std::io::Error),
    Timeout(&'static str),
    Truncated(&'static str),
    Unsupported(PacketHeader),
    Vars(CodecError),
    /// The body is longer than allowed (answered with 413).
    TooLarge(u64),
    /// CONTENT_LENGTH is not a number (answered with 400).
    BadLength(String),
    ShuttingDown,
}

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("closed before sending a request"),
            Self::Io(error) => write!(f, "read failed: {error}"),
            Self::Timeout(what) => write!(f, "timed out waiting for the {what}"),
            Self::Truncated(what) => write!(f, "the connection closed in the middle of the {what}"),
            Self::Unsupported(header) => write!(
                f,
                "unsupported modifier1 {} (modifier2 {}): only 0 (WSGI) and 30 are served",
                header.modifier1, header.modifier2
            ),
            Self::Vars(error) => write!(f, "malformed vars block: {error}"),
            Self::TooLarge(length) => write!(f, "CONTENT_LENGTH {length} exceeds --max-body-size"),
            Self::BadLength(text) => write!(f, "CONTENT_LENGTH {text:?} is not a number"),
            Self::ShuttingDown => f.write_str("the worker is shutting down"),
        }
    }
}

async fn within<T>(
    limit: Duration,
    what: &'static str,
    step: impl Future<Output = std::io::Result<T>>,
) -> Result<T, PacketError> {
    let result = if limit.is_zero() {
        step.await
    } else {
        tokio::time::timeout(limit, step)
            .await
            .map_err(|_| PacketError::Timeout(what))?
    };
    result.map_err(|error| {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            PacketError::Truncated(what)
        } else {
            PacketError::Io(error)
        }
    })
}

/// Read the body in pieces, each bounded by the idle timeout, so a slow sender is cut off.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    prefix: BytesMut,
    length: usize,
    idle: Duration,
) -> Result<Bytes, PacketError> {
    let mut body = prefix;
    body.reserve(length.min(1024 * 1024).saturating_sub(body.len()));
    while body.len() < length {
        let want = (length - body.len()).min(256 * 1024);
        body.reserve(want);
        let read = within(
            idle,
            "request body",
            stream.read_buf(&mut (&mut body).limit(want)),
        )
        .await?;
        if read == 0 {
            return Err(PacketError::Truncated("request body"));
        }
    }
    Ok(body.freeze())
}

/// What the first read asks for: nginx's vars block (about 1 KiB) and a small
/// body arrive in one read instead of one read per part.
const FIRST_READ: usize = 16 * 1024;
/// What the unregistered first read of a unix connection asks for.
const FAST_READ: usize = 8 * 1024;

/// Read into `buffer` until it holds `wanted` bytes, all within `deadline`.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    wanted: usize,
    deadline: Option<tokio::time::Instant>,
    what: &'static str,
) -> Result<(), PacketError> {
    while buffer.len() < wanted {
        buffer.reserve(wanted - buffer.len());
        let read = stream.read_buf(buffer);
        let read = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| PacketError::Timeout(what))?,
            None => read.await,
        }
        .map_err(PacketError::Io)?;
        if read == 0 {
            return Err(PacketError::Truncated(what));
        }
    }
    Ok(())
}

async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    shared: &Shared,
    mut buffer: BytesMut,
) -> Result<(PacketHeader, Vars, Bytes), PacketError> {
    let config = &shared.config;
    // One deadline for the whole head (packet header and vars block), so a
    // slow sender cannot stretch it step by step.
    let deadline = (!config.header_timeout.is_zero())
        .then(|| tokio::time::Instant::now() + config.header_timeout);
    if buffer.is_empty() {
        buffer.reserve(FIRST_READ);
        let mut shutdown = shared.shutdown.clone();
        let got = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => return Err(PacketError::ShuttingDown),
            got = within(config.header_timeout, "packet header", stream.read_buf(&mut buffer)) => got?,
        };
        if got == 0 {
            return Err(PacketError::Empty);
        }
    }
    fill(stream, &mut buffer, HEADER_LEN, deadline, "packet header").await?;
    let mut first = [0u8; HEADER_LEN];
    first.copy_from_slice(&buffer[..HEADER_LEN]);
    let header = PacketHeader::parse(first);
    if !header.is_supported() {
        return Err(PacketError::Unsupported(header));
    }
    let head_length = HEADER_LEN + usize::from(header.datasize);
    fill(stream, &mut buffer, head_length, deadline, "vars block").await?;
    let mut head = buffer.split_to(head_length);
    let block = head.split_off(HEADER_LEN).freeze();
    let vars = Vars::parse(block).map_err(PacketError::Vars)?;
    let length = match vars.get(b"CONTENT_LENGTH").map(<[u8]>::trim_ascii) {
        None | Some(b"") => 0,
        Some(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| PacketError::BadLength(String::from_utf8_lossy(text).into_owned()))?,
    };
    if length > config.max_body_size {
        return Err(PacketError::TooLarge(length));
    }
    let length = usize::try_from(length).map_err(|_| PacketError::TooLarge(length))?;
    let body = if length == 0 {
        Bytes::new()
    } else if buffer.len() >= length {
        buffer.split_to(length).freeze()
    } else {
        read_body(stream, buffer, length, config.body_timeout).await?
    };
    Ok((header, vars, body))
}

/// Serve the one request of a uwsgi connection.
pub(crate) async fn serve<S>(stream: S, peer: Peer, shared: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve_with(stream, peer, shared, BytesMut::new()).await;
}

/// Serve a uwsgi connection whose first bytes (`prefix`) were already read.
async fn serve_with<S>(mut stream: S, peer: Peer, shared: Shared, prefix: BytesMut)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (header, vars, body) = match read_request(&mut stream, &shared, prefix).await {
        Ok(parts) => parts,
        Err(PacketError::Empty | PacketError::ShuttingDown) => return,
        Err(error) => {
            log::warning(&format!("uwsgi request from {peer} dropped: {error}"));
            let status = match error {
                PacketError::TooLarge(_) => Some(StatusCode::PAYLOAD_TOO_LARGE),
                PacketError::BadLength(_) => Some(StatusCode::BAD_REQUEST),
                _ => None,
            };
            if let Some(status) = status {
                let (head, rest) =
                    prepare_response(plain_response(status, true), false, b"HTTP/1.1");
                let _ = write_prepared(&mut stream, &head, rest).await;
                // nginx sends the whole body before it reads the answer: closing
                // with unread input resets the connection and turns our 413
                // into its 502. Read the rest (bounded) first.
                discard_input(&mut stream, shared.config.body_timeout).await;
            }
            let _ = stream.shutdown().await;
            return;
        }
    };
    let (head, rest) = respond(header, vars, body, peer, &shared);
    if let Err(error) = write_prepared(&mut stream, &head, rest).await {
        log::warning(&format!("uwsgi response to {peer} cut short: {error}"));
    }
    // Dropping the stream closes it: the whole request was read, so the close
    // is a clean end of stream (no shutdown(2) call needed first).
}

/// Read and drop the rest of a refused request (see `discard.rs`).
async fn discard_input<S: AsyncRead + Unpin>(stream: &mut S, idle: Duration) {
    let mut budget = DiscardBudget::new(idle);
    let mut sink = vec![0u8; 64 * 1024];
    while let Some(wait) = budget.next_wait() {
        match tokio::time::timeout(wait, stream.read(&mut sink)).await {
            Ok(Ok(read)) if read > 0 => budget.spent(read),
            _ => return,
        }
    }
}

/// Call the app and encode its answer: the bytes to send first (head, and
/// the body too when it is small and complete) and the body still to stream.
fn respond(
    header: PacketHeader,
    vars: Vars,
    body: Bytes,
    peer: Peer,
    shared: &Shared,
) -> (BytesMut, Option<ResponseBody>) {
    let is_head = vars.get(b"REQUEST_METHOD") == Some(b"HEAD");
    let protocol: &'static [u8] = match vars.get(b"SERVER_PROTOCOL") {
        Some(b"HTTP/1.0") => b"HTTP/1.0",
        _ => b"HTTP/1.1",
    };
    let request = Request {
        head: Head::Uwsgi {
            vars,
            modifier1: header.modifier1,
        },
        body,
        body_was_chunked: false,
        peer,
        local: None,
    };
    let response = shared.app.call(&request, None);
    drop(request);
    prepare_response(response, is_head, protocol)
}

/// Serve a uwsgi connection accepted from a unix socket, without registering
/// it with the event loop when it can be helped: nginx writes the request as
/// soon as it connects, so it is usually readable at once and a small answer
/// fits in the socket buffer. That saves the two `epoll_ctl` calls per
/// request which, behind nginx (a new connection per request), were a
/// quarter of the worker's system calls. Anything slower falls back to the
/// asynchronous path with what was read so far.
pub(crate) async fn serve_unix(stream: std::os::unix::net::UnixStream, shared: Shared) {
    let mut buffer = BytesMut::zeroed(FAST_READ);
    let read = std::io::Read::read(&mut &stream, &mut buffer);
    match read {
        Ok(0) => return,
        Ok(read) => buffer.truncate(read),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => buffer.clear(),
        Err(_) => return,
    }
    let mut unsent = Bytes::new();
    let mut rest = None;
    if !buffer.is_empty() {
        // Complete already? (An incomplete packet reads end-of-file here.)
        if let Ok((header, vars, body)) =
            read_request(&mut tokio::io::empty(), &shared, buffer.clone()).await
        {
            let (head, body_rest) = respond(header, vars, body, Peer::Unix, &shared);
            let written = if body_rest.is_none() {
                match std::io::Write::write(&mut &stream, &head) {
                    Ok(written) => written,
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => 0,
                    Err(_) => return,
                }
            } else {
                0
            };
            if written == head.len() && body_rest.is_none() {
                return;
            }
            unsent = head.freeze().slice(written..);
            rest = body_rest;
            buffer.clear();
            if unsent.is_empty() && rest.is_none() {
                return;
            }
        }
    }
    let mut stream = match tokio::net::UnixStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            log::warning(&format!("cannot register a uwsgi connection: {error}"));
            return;
        }
    };
    if unsent.is_empty() && rest.is_none() {
        serve_with(stream, Peer::Unix, shared, buffer).await;
        return;
    }
    if let Err(error) = write_prepared(&mut stream, &unsent, rest).await {
        log::warning(&format!("uwsgi response cut short: {error}"));
    }
}

/// The status line and headers, as nginx's uwsgi module expects them.
fn encode_head(response: &AppResponse, protocol: &[u8], content_length: Option<u64>) -> BytesMut {
    let status = response.status;
    let reason = response.reason_phrase();
    let mut head = BytesMut::with_capacity(256);
    head.extend_from_slice(protocol);
    head.extend_from_slice(b" ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(reason);
    head.extend_from_slice(b"\r\n");
    for (name, value) in &response.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(length) = content_length {
        push_length(&mut head, length);
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Encode the status line and headers, with the body too when it is small
/// and complete; the body still to stream is returned beside.
fn prepare_response(
    response: AppResponse,
    is_head: bool,
    protocol: &[u8],
) -> (BytesMut, Option<ResponseBody>) {
    let send_body = !is_head && status_allows_body(response.status);
    let has_length = response.has_header(&http::header::CONTENT_LENGTH);
    let exact = response.body.size_hint().exact();
    let content_length = if has_length || !status_allows_body(response.status) {
        None
    } else {
        exact
    };
    let mut head = encode_head(&response, protocol, content_length);
    let body = response.body;
    if !send_body {
        return (head, None);
    }
    match body {
        ResponseBody::Empty | ResponseBody::Full(None) => (head, None),
        ResponseBody::Full(Some(bytes)) if bytes.len() <= 64 * 1024 => {
            head.extend_from_slice(&bytes);
            (head, None)
        }
        body => (head, Some(body)),
    }
}

/// Write what `prepare_response` made: the first bytes, then the body's frames.
async fn write_prepared<S: AsyncWrite + Unpin>(
    stream: &mut S,
    first: &[u8],
    rest: Option<ResponseBody>,
) -> std::io::Result<()> {
    stream.write_all(first).await?;
    if let Some(mut body) = rest {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            if let Ok(data) = frame.into_data() {
                stream.write_all(&data).await?;
            }
        }
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_status_headers_and_length() {
        let mut response = AppResponse {
            status: StatusCode::OK,
            reason: None,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            )],
            body: ResponseBody::full(Bytes::from_static(b"hi")),
        };
        let head = encode_head(&response, b"HTTP/1.1", Some(2));
        assert_eq!(
            &head[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n"
        );
        response.status = StatusCode::from_u16(299).unwrap();
        let head = encode_head(&response, b"HTTP/1.0", None);
        assert!(head.starts_with(b"HTTP/1.0 299 Unknown\r\n"));
    }

    #[test]
    fn no_body_for_204_304_and_1xx() {
        assert!(!status_allows_body(StatusCode::NO_CONTENT));
        assert!(!status_allows_body(StatusCode::NOT_MODIFIED));
        assert!(!status_allows_body(StatusCode::CONTINUE));
        assert!(status_allows_body(StatusCode::OK));
    }
}
