//! The one HTTP/1.x response encoder, for every protocol (the uwsgi protocol
//! answers in HTTP/1.x too). It owns the framing: hop-by-hop headers from
//! the app (`Connection`, `Transfer-Encoding`, `Keep-Alive`, ...) are never
//! sent as they are; Content-Length is the app's when valid, else counted
//! when the body's size is known; otherwise the body is chunked or, for a
//! peer that cannot take chunks, delimited by closing the connection. HEAD,
//! 1xx, 204 and 304 answers carry no body.

use std::cell::RefCell;
use std::time::SystemTime;

use bytes::BytesMut;
use http::{HeaderName, StatusCode};

use super::{Response, ResponseBody};
use crate::clock;

/// Complete bodies up to this size go out in the head's write.
const INLINE_BODY: usize = 64 * 1024;

/// What the encoder must know of the request and the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exchange {
    /// The status line's version.
    pub version: &'static [u8],
    pub is_head: bool,
    /// The connection may serve another request after this one.
    pub keep_alive: bool,
    /// The peer understands chunked framing (an HTTP/1.1 client).
    pub chunked: bool,
    /// Add a `date` header (a client, not a proxy that adds its own).
    pub date: bool,
    /// Say `connection: close` when closing (an HTTP client).
    pub announce_close: bool,
    /// Say `connection: keep-alive` when keeping it (an HTTP/1.0 client that asked).
    pub announce_keep_alive: bool,
}

impl Exchange {
    /// How the server answers before a request is understood (a refusal):
    /// HTTP/1.1, no body framing to keep, the connection closing. `client`
    /// is true for an HTTP client (a `date`, `connection: close`), false
    /// for a proxy that adds its own.
    pub(crate) const fn refusal(client: bool) -> Self {
        Self {
            version: b"HTTP/1.1",
            is_head: false,
            keep_alive: false,
            chunked: false,
            date: client,
            announce_close: client,
            announce_keep_alive: false,
        }
    }
}

/// How the body follows the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body on the wire.
    Bodiless,
    Length(u64),
    Chunked,
    /// Until the connection closes (no length known, no chunks possible).
    Close,
}

/// A response ready to write.
pub(crate) struct Encoded {
    /// The head, and a small complete body after it.
    pub head: BytesMut,
    /// The body still to send, if any.
    pub body: Option<ResponseBody>,
    pub framing: Framing,
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
    head.extend_from_slice(b"content-length: ");
    push_decimal(head, length);
    head.extend_from_slice(b"\r\n");
}

/// `value` in decimal, without the formatting machinery (heads and log
/// lines hold several numbers); into any buffer, a stack slice included.
pub(crate) fn push_decimal(out: &mut impl bytes::BufMut, value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// What the encoder does with one of the app's headers.
enum HeaderRole {
    Pass,
    /// Framing or connection management: ours, never forwarded.
    HopByHop {
        close: bool,
    },
    ContentLength,
    Date,
}

fn role(name: &HeaderName, value: &[u8]) -> HeaderRole {
    let text = name.as_str();
    match text.len() {
        4 if text == "date" => HeaderRole::Date,
        10 if text == "connection" => HeaderRole::HopByHop {
            close: value
                .split(|&byte| byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close")),
        },
        14 if text == "content-length" => HeaderRole::ContentLength,
        2 | 7 | 8 | 10 | 16 | 17
            if matches!(
                text,
                "te" | "upgrade"
                    | "trailer"
                    | "keep-alive"
                    | "proxy-connection"
                    | "transfer-encoding"
            ) =>
        {
            HeaderRole::HopByHop { close: false }
        }
        _ => HeaderRole::Pass,
    }
}

/// Encode `response` into `head` (a buffer the connection reuses).
pub(crate) fn encode(response: Response, exchange: Exchange, mut head: BytesMut) -> Encoded {
    let status = response.status;
    let mut keep_alive = exchange.keep_alive;
    head.clear();
    head.reserve(256);
    head.extend_from_slice(exchange.version);
    head.extend_from_slice(b" ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(response.reason_phrase());
    head.extend_from_slice(b"\r\n");
    let allows_body = status_allows_body(status);
    let mut declared: Option<u64> = None;
    let mut has_date = false;
    for (name, value) in &response.headers {
        match role(name, value.as_bytes()) {
            HeaderRole::Pass => {}
            HeaderRole::HopByHop { close } => {
                keep_alive &= !close;
                continue;
            }
            HeaderRole::ContentLength => {
                let parsed = std::str::from_utf8(value.as_bytes())
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok());
                // 1xx and 204 must not carry one; a second or invalid one is dropped.
                let keep = declared.is_none()
                    && parsed.is_some()
                    && !(status.is_informational() || status == StatusCode::NO_CONTENT);
                if !keep {
                    continue;
                }
                declared = parsed;
            }
            HeaderRole::Date => has_date = true,
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if exchange.date && !has_date {
        push_date(&mut head);
    }
    let body = response.body;
    let framing = if !allows_body {
        Framing::Bodiless
    } else if let Some(length) = declared {
        Framing::Length(length)
    } else if let Some(length) = body.exact_len() {
        push_length(&mut head, length);
        Framing::Length(length)
    } else if exchange.is_head {
        Framing::Bodiless
    } else if exchange.chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };
    if !keep_alive && exchange.announce_close {
        head.extend_from_slice(b"connection: close\r\n");
    } else if keep_alive && exchange.announce_keep_alive {
        head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if exchange.is_head || framing == Framing::Bodiless {
        // Dropping the body closes the app's iterable.
        return Encoded {
            head,
            body: None,
            framing: Framing::Bodiless,
            keep_alive,
        };
    }
    let body = match (body, framing) {
        (ResponseBody::Empty, Framing::Length(0)) => None,
        (ResponseBody::Full(bytes), Framing::Length(length))
            if bytes.len() <= INLINE_BODY && bytes.len() as u64 >= length =>
        {
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            // Longer than declared is cut, and the connection's framing is spent.
            keep_alive &= bytes.len() == length;
            head.extend_from_slice(&bytes[..length]);
            None
        }
        // Shorter than declared goes through the writer, which logs and closes.
        (body, _) => Some(body),
    };
    Encoded {
        head,
        body,
        framing,
        keep_alive,
    }
}

#[cfg(test)]
mod tests {
    use super::{encode, Exchange, Framing};
    use crate::response::{Response, ResponseBody};
    use bytes::{Bytes, BytesMut};
    use http::{HeaderName, HeaderValue, StatusCode};

    const CLIENT: Exchange = Exchange {
        version: b"HTTP/1.1",
        is_head: false,
        keep_alive: true,
        chunked: true,
        date: true,
        announce_close: true,
        announce_keep_alive: false,
    };

    struct Chunks(Vec<&'static [u8]>);

    impl crate::response::BodyStream for Chunks {
        fn next_chunk(&mut self) -> Option<Result<Bytes, crate::response::StreamError>> {
            (!self.0.is_empty()).then(|| Ok(Bytes::from_static(self.0.remove(0))))
        }
    }

    fn response(body: &'static [u8]) -> Response {
        Response {
            status: StatusCode::OK,
            reason: None,
            headers: Vec::new(),
            body: ResponseBody::full(Bytes::from_static(body)),
        }
    }

    fn streamed() -> Response {
        Response {
            body: ResponseBody::Stream(Box::new(Chunks(vec![b"a", b"b"]))),
            ..response(b"")
        }
    }

    fn with(mut response: Response, name: &'static str, value: &'static str) -> Response {
        response.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        response
    }

    fn text(encoded: &super::Encoded) -> String {
        String::from_utf8_lossy(&encoded.head).into_owned()
    }

    #[test]
    fn small_body_goes_with_the_head_and_gets_a_length() {
        let encoded = encode(response(b"hi"), CLIENT, BytesMut::new());
        let head = text(&encoded);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(head.ends_with("content-length: 2\r\n\r\nhi"), "{head}");
        assert!(encoded.keep_alive && encoded.body.is_none());
    }

    #[test]
    fn head_request_gets_the_length_but_no_body() {
        let exchange = Exchange {
            is_head: true,
            ..CLIENT
        };
        let encoded = encode(response(b"hello"), exchange, BytesMut::new());
        assert!(text(&encoded).ends_with("content-length: 5\r\n\r\n"));
        assert_eq!(encoded.framing, Framing::Bodiless);
    }

    #[test]
    fn a_declared_length_cuts_a_longer_body_and_a_short_one_closes() {
        let short = with(response(b"abc"), "content-length", "10");
        let encoded = encode(short, CLIENT, BytesMut::new());
        assert!(encoded.body.is_some() && encoded.framing == Framing::Length(10));
        let long = with(response(b"abcdef"), "content-length", "2");
        let encoded = encode(long, CLIENT, BytesMut::new());
        let head = text(&encoded);
        assert!(head.contains("\r\ncontent-length: 2\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\nab"), "{head}");
        assert!(!encoded.keep_alive);
    }

    #[test]
    fn no_body_and_no_length_for_204_but_304_keeps_its_length() {
        let mut empty = with(response(b"x"), "content-length", "1");
        empty.status = StatusCode::NO_CONTENT;
        let encoded = encode(empty, CLIENT, BytesMut::new());
        assert!(!text(&encoded).contains("content-length"));
        assert!(text(&encoded).ends_with("\r\n\r\n"));
        let mut not_modified = with(response(b""), "content-length", "7");
        not_modified.status = StatusCode::NOT_MODIFIED;
        let encoded = encode(not_modified, CLIENT, BytesMut::new());
        assert!(text(&encoded).contains("content-length: 7\r\n"));
        assert!(encoded.keep_alive && encoded.framing == Framing::Bodiless);
    }

    #[test]
    fn hop_by_hop_headers_from_the_app_are_dropped_and_close_is_honoured() {
        let app = with(
            with(
                with(streamed(), "transfer-encoding", "gzip"),
                "keep-alive",
                "timeout=5",
            ),
            "upgrade",
            "h2c",
        );
        let encoded = encode(app, CLIENT, BytesMut::new());
        let head = text(&encoded);
        assert_eq!(head.matches("transfer-encoding").count(), 1, "{head}");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(
            !head.contains("keep-alive") && !head.contains("upgrade"),
            "{head}"
        );
        let closes = with(response(b"x"), "connection", "Keep-Alive, close");
        let encoded = encode(closes, CLIENT, BytesMut::new());
        assert!(!encoded.keep_alive);
        assert_eq!(text(&encoded).matches("connection").count(), 1);
        assert!(text(&encoded).contains("connection: close\r\n"));
    }

    #[test]
    fn a_stream_to_a_peer_without_chunks_is_close_delimited() {
        let proxy = Exchange {
            version: b"HTTP/1.0",
            keep_alive: false,
            chunked: false,
            date: false,
            announce_close: false,
            ..CLIENT
        };
        let encoded = encode(streamed(), proxy, BytesMut::new());
        assert_eq!(encoded.framing, Framing::Close);
        assert_eq!(&encoded.head[..], b"HTTP/1.0 200 OK\r\n\r\n");
    }
}
