//! Writing an app's response on a directly served HTTP/1.1 connection:
//! the head as hyper would write it (lower-case names, a `date`, framing
//! chosen from what the body is), small complete bodies in the same write,
//! streamed bodies chunk by chunk as the app yields them.

use std::cell::RefCell;
use std::io::IoSlice;
use std::time::SystemTime;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::StatusCode;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::clock;
use crate::wsgi::app_response::AppResponse;
use crate::wsgi::output::ResponseBody;

/// Complete bodies up to this size go out in the head's write.
const INLINE_BODY: usize = 64 * 1024;
/// A connection keeps its head buffer for the next response up to this size.
const KEPT_BUFFER: usize = 4 * 1024;

/// How the body follows the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body at all (HEAD, 204, 304, 1xx).
    Bodiless,
    Length(u64),
    Chunked,
}

/// A response ready to write.
pub(crate) struct Encoded {
    head: BytesMut,
    body: Option<ResponseBody>,
    framing: Framing,
    /// The connection may serve another request after this one.
    pub keep_alive: bool,
}

thread_local! {
    /// The `date` header line, remade once a second.
    static DATE_LINE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

fn push_date(head: &mut BytesMut) {
    let second = clock::unix_seconds();
    DATE_LINE.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            cached.1.clear();
            cached.1.extend_from_slice(b"date: ");
            cached
                .1
                .extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
            cached.1.extend_from_slice(b"\r\n");
            cached.0 = second;
        }
        head.extend_from_slice(&cached.1);
    });
}

/// Whether a response with this status may carry a body (not 1xx, 204, 304).
pub(crate) fn status_allows_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// Append a `content-length` header line (without a heap-allocated number).
pub(crate) fn push_length(head: &mut BytesMut, length: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = length;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    head.extend_from_slice(b"content-length: ");
    head.extend_from_slice(&digits[at..]);
    head.extend_from_slice(b"\r\n");
}

/// Encode `response` for a request that was `HEAD` or not; `keep_alive`
/// says whether the connection may go on (the app can still close it).
/// `head` is storage for the encoded head (a connection reuses its buffer).
pub(crate) fn encode(
    response: AppResponse,
    is_head: bool,
    mut keep_alive: bool,
    mut head: BytesMut,
) -> Encoded {
    let status = response.status;
    head.clear();
    head.reserve(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(response.reason_phrase());
    head.extend_from_slice(b"\r\n");
    let mut declared: Option<u64> = None;
    let mut has_date = false;
    let mut has_connection = false;
    for (name, value) in &response.headers {
        if name == TRANSFER_ENCODING {
            // Hop-by-hop (PEP 3333 forbids it from apps): the framing is ours.
            continue;
        }
        if name == CONTENT_LENGTH {
            match value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
            {
                Some(length) if declared.is_none() => declared = Some(length),
                _ => continue,
            }
        } else if name == DATE {
            has_date = true;
        } else if name == CONNECTION {
            has_connection = true;
            if value.as_bytes().eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            }
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !has_date {
        push_date(&mut head);
    }
    let body = response.body;
    let framing = if !status_allows_body(status) {
        Framing::Bodiless
    } else if let Some(length) = declared {
        Framing::Length(length)
    } else if let Some(length) = body.size_hint().exact() {
        push_length(&mut head, length);
        Framing::Length(length)
    } else if is_head {
        Framing::Bodiless
    } else {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if !keep_alive && !has_connection {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if is_head || framing == Framing::Bodiless {
        // Dropping the body closes the app's iterable.
        return Encoded {
            head,
            body: None,
            framing: Framing::Bodiless,
            keep_alive,
        };
    }
    let body = match (body, framing) {
        (ResponseBody::Empty | ResponseBody::Full(None), Framing::Length(length)) => {
            keep_alive &= length == 0;
            None
        }
        (ResponseBody::Full(Some(bytes)), Framing::Length(length))
            if bytes.len() <= INLINE_BODY =>
        {
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            // A declared length shorter than the body cuts it; a longer one
            // leaves the client waiting for bytes that never come: close.
            head.extend_from_slice(&bytes[..bytes.len().min(length)]);
            keep_alive &= bytes.len() >= length;
            None
        }
        (body, _) => Some(body),
    };
    Encoded {
        head,
        body,
        framing,
        keep_alive,
    }
}

/// Write every byte of `parts` with as few system calls as the socket allows.
async fn write_all_parts<S: AsyncWrite + Unpin>(
    stream: &mut S,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let parts: Vec<&[u8]> = parts
        .iter()
        .copied()
        .filter(|part| !part.is_empty())
        .collect();
    let mut index = 0;
    let mut offset = 0;
    while index < parts.len() {
        let slices: Vec<IoSlice<'_>> = parts[index..]
            .iter()
            .enumerate()
            .map(|(at, part)| IoSlice::new(if at == 0 { &part[offset..] } else { part }))
            .collect();
        let mut written = stream.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while index < parts.len() && written >= parts[index].len() - offset {
            written -= parts[index].len() - offset;
            index += 1;
            offset = 0;
        }
        offset += written;
    }
    Ok(())
}

impl Encoded {
    /// The head's buffer, for the connection's next response (unless a
    /// large inline body grew it: idle connections should not hold that).
    pub(crate) fn into_buffer(self) -> BytesMut {
        if self.head.capacity() > KEPT_BUFFER {
            BytesMut::new()
        } else {
            self.head
        }
    }
}

/// Send an encoded response. Returns whether the connection can serve
/// another request: false when the body ended early or could not be framed.
pub(crate) async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    encoded: &mut Encoded,
) -> std::io::Result<bool> {
    let framing = encoded.framing;
    let keep_alive = encoded.keep_alive;
    let Some(mut body) = encoded.body.take() else {
        stream.write_all(&encoded.head).await?;
        return Ok(keep_alive);
    };
    let mut head_sent = false;
    let mut remaining = match framing {
        Framing::Length(length) => length,
        _ => u64::MAX,
    };
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            complete = false;
            break;
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let head: &[u8] = if head_sent { &[] } else { &encoded.head };
        head_sent = true;
        if framing == Framing::Chunked {
            let size = format!("{:x}\r\n", data.len());
            write_all_parts(stream, &[head, size.as_bytes(), &data, b"\r\n"]).await?;
        } else {
            if (data.len() as u64) > remaining {
                data = data.slice(..remaining as usize);
            }
            remaining -= data.len() as u64;
            write_all_parts(stream, &[head, &data]).await?;
            if remaining == 0 {
                break;
            }
        }
    }
    drop(body);
    let head: &[u8] = if head_sent { &[] } else { &encoded.head };
    match framing {
        Framing::Chunked if complete => {
            write_all_parts(stream, &[head, b"0\r\n\r\n"]).await?;
            Ok(keep_alive)
        }
        // An unfinished chunked body: no last chunk, so the client sees the break.
        Framing::Chunked => {
            write_all_parts(stream, &[head]).await?;
            Ok(false)
        }
        _ => {
            write_all_parts(stream, &[head]).await?;
            Ok(keep_alive && complete && remaining == 0)
        }
    }
}

/// Bytes of a server-made response (errors), for tests and logs.
#[cfg(test)]
fn head_text(encoded: &Encoded) -> String {
    String::from_utf8_lossy(&encoded.head).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{encode, head_text, Framing};
    use crate::wsgi::app_response::AppResponse;
    use crate::wsgi::output::ResponseBody;
    use bytes::{Bytes, BytesMut};
    use http::{HeaderName, HeaderValue, StatusCode};

    fn response(body: &'static [u8]) -> AppResponse {
        AppResponse {
            status: StatusCode::OK,
            reason: None,
            headers: Vec::new(),
            body: ResponseBody::full(Bytes::from_static(body)),
        }
    }

    fn with(mut response: AppResponse, name: &'static str, value: &'static str) -> AppResponse {
        response.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        response
    }

    #[test]
    fn small_body_goes_with_the_head_and_gets_a_length() {
        let encoded = encode(response(b"hi"), false, true, BytesMut::new());
        let text = head_text(&encoded);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(text.ends_with("content-length: 2\r\n\r\nhi"), "{text}");
        assert!(encoded.keep_alive && encoded.body.is_none());
    }

    #[test]
    fn head_request_gets_the_length_but_no_body() {
        let encoded = encode(response(b"hello"), true, true, BytesMut::new());
        let text = head_text(&encoded);
        assert!(text.ends_with("content-length: 5\r\n\r\n"), "{text}");
        assert_eq!(encoded.framing, Framing::Bodiless);
    }

    #[test]
    fn declared_length_wins_and_a_short_body_closes() {
        let short = with(response(b"abc"), "content-length", "10");
        let encoded = encode(short, false, true, BytesMut::new());
        assert!(!encoded.keep_alive);
        let long = with(response(b"abcdef"), "content-length", "2");
        let encoded = encode(long, false, true, BytesMut::new());
        let text = head_text(&encoded);
        assert!(text.contains("\r\ncontent-length: 2\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nab"), "{text}");
        assert!(encoded.keep_alive);
    }

    #[test]
    fn no_body_and_no_length_for_204() {
        let mut empty = response(b"");
        empty.status = StatusCode::NO_CONTENT;
        let text = head_text(&encode(empty, false, true, BytesMut::new()));
        assert!(!text.contains("content-length"), "{text}");
    }

    #[test]
    fn closing_connections_say_so_once() {
        let text = head_text(&encode(response(b"x"), false, false, BytesMut::new()));
        assert_eq!(text.matches("connection: close").count(), 1, "{text}");
        let app_closes = with(response(b"x"), "connection", "close");
        let encoded = encode(app_closes, false, true, BytesMut::new());
        assert!(!encoded.keep_alive);
        assert_eq!(head_text(&encoded).matches("connection").count(), 1);
    }
}
