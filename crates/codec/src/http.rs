//! The HTTP/1.1 request head, parsed strictly (RFC 9110/9112) into the spans
//! of the neutral [`RequestHead`](crate::head::RequestHead), with what the
//! connection needs to know:
//! how the body is framed, whether the connection goes on, `100-continue`.
//!
//! Parsing is httparse (hyper's parser) with its strict defaults; this module
//! adds the rules httparse leaves to its user: one Host, request-target
//! forms matched to their methods, Content-Length and Transfer-Encoding
//! agreement, HTTP/1.0 keep-alive. Every error is a status and never reaches
//! the app. The head's size limits are this codec's own ([`MAX_HEAD_BYTES`],
//! [`MAX_HEADERS`]): no option changes them. Pure: no I/O, no interpreter;
//! reading the socket, the body and the answer are the server's job.

use std::mem::MaybeUninit;

use http::StatusCode;

use crate::head::{path_info, span_of, split_target, Field, PathInfo, Protocol, Span};

/// Largest request head (request line plus header fields) accepted; more is
/// [`HeadError::TooLarge`] (431). It bounds what a connection buffers before
/// it knows what the request is.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted in one request; more is
/// [`HeadError::TooLarge`] (431). httparse's field slots live on the stack.
pub const MAX_HEADERS: usize = 100;

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither Content-Length nor Transfer-Encoding, or a length of 0.
    None,
    /// Content-Length bytes follow the head.
    Length(u64),
    /// The chunked coding, for [`crate::chunked::ChunkedDecoder`].
    Chunked,
}

/// A complete, valid head, as spans into the bytes it was parsed from.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedHead {
    /// Bytes of the buffer the head takes.
    pub length: usize,
    /// The method, as sent.
    pub method: Span,
    /// The request target without a fragment (REQUEST_URI).
    pub uri: Span,
    /// PATH_INFO: the target's path, decoded; `/` for an absolute-form
    /// target without one.
    pub path: PathInfo,
    /// The target's query, without the `?`.
    pub query: Span,
    /// HTTP/1.0 or HTTP/1.1.
    pub protocol: Protocol,
    /// Every header field, in order, as the client named it.
    pub fields: Vec<Field>,
    /// How the body is framed.
    pub body: BodyKind,
    /// The connection may serve another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` from an HTTP/1.1 client.
    pub expects_continue: bool,
    /// A HEAD request: the answer carries no body.
    pub is_head: bool,
}

/// Why a head is refused; each is one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed or ambiguous (400); says what.
    Invalid(&'static str),
    /// Over 64 KiB or 100 fields (431).
    TooLarge,
    /// Not HTTP/1.0 or 1.1 (505).
    Version,
    /// A transfer coding other than chunked (501).
    Coding,
    /// An expectation other than 100-continue (417).
    Expectation,
    /// CONNECT: nothing here tunnels (405).
    Connect,
}

impl HeadError {
    /// The answer the client gets.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::Coding => StatusCode::NOT_IMPLEMENTED,
            Self::Expectation => StatusCode::EXPECTATION_FAILED,
            Self::Connect => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(what) => write!(f, "malformed request: {what}"),
            Self::TooLarge => write!(
                f,
                "request head over {} KiB or {MAX_HEADERS} fields",
                MAX_HEAD_BYTES / 1024
            ),
            Self::Version => f.write_str("HTTP version not supported"),
            Self::Coding => f.write_str("a transfer coding other than chunked"),
            Self::Expectation => f.write_str("an expectation other than 100-continue"),
            Self::Connect => f.write_str("CONNECT is not supported"),
        }
    }
}

/// What the front of the buffer is.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head; the body or the next request starts at its `length`.
    Complete(ParsedHead),
    /// Not complete yet; read more.
    Partial,
    /// Never a request: answer the status and close.
    Error(HeadError),
}

fn digits(value: &[u8]) -> Option<u64> {
    // At most 18 digits: no overflow, and far beyond any body limit.
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |total, digit| total * 10 + u64::from(digit - b'0')),
    )
}

/// Whether the comma-separated list `value` holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// A version error on a well-formed request line naming another version
/// (505), or a malformed request line (400).
fn version_error(buffer: &[u8]) -> HeadError {
    let line = buffer
        .split(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default()
        .strip_suffix(b"\r")
        .unwrap_or_default();
    let mut parts = line.split(|&byte| byte == b' ');
    let (Some(_method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return HeadError::Invalid("bad request line");
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HeadError::Version
        }
        _ => HeadError::Invalid("bad request line"),
    }
}

/// The path, query and PATH_INFO of a request target, by its form.
fn target_parts(
    buffer: &[u8],
    method: &[u8],
    target: Span,
) -> Result<(Span, PathInfo, Span), HeadError> {
    if method == b"CONNECT" {
        // Whatever its target: nothing here tunnels.
        return Err(HeadError::Connect);
    }
    let text = &buffer[target.start as usize..target.end as usize];
    // A fragment is not part of a request target: drop it.
    let target = match text.iter().position(|&byte| byte == b'#') {
        Some(at) => target.start..target.start + at as u32,
        None => target,
    };
    let text = &buffer[target.start as usize..target.end as usize];
    if text.first() == Some(&b'/') {
        let (path, query) = split_target(buffer, &target);
        return Ok((target, path_info(buffer, path), query));
    }
    if text == b"*" {
        if method != b"OPTIONS" {
            return Err(HeadError::Invalid(
                "asterisk-form target on a method other than OPTIONS",
            ));
        }
        return Ok((
            target.clone(),
            PathInfo::Span(target.clone()),
            target.end..target.end,
        ));
    }
    let scheme_end = text
        .windows(3)
        .position(|window| window == b"://")
        .filter(|&at| {
            let scheme = &text[..at];
            scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")
        });
    if let Some(at) = scheme_end {
        // absolute-form: the path starts after the authority.
        let authority = target.start + at as u32 + 3;
        let rest = &buffer[authority as usize..target.end as usize];
        if rest.is_empty() || rest[0] == b'/' || rest[0] == b'?' {
            return Err(HeadError::Invalid("absolute-form target without a host"));
        }
        let path_start = rest
            .iter()
            .position(|&byte| byte == b'/' || byte == b'?')
            .map_or(target.end, |at| authority + at as u32);
        let (path, query) = split_target(buffer, &(path_start..target.end));
        let path = if path.is_empty() {
            PathInfo::Decoded(bytes::Bytes::from_static(b"/"))
        } else {
            path_info(buffer, path)
        };
        return Ok((target, path, query));
    }
    if method == b"CONNECT" {
        return Err(HeadError::Connect);
    }
    Err(HeadError::Invalid(
        "authority-form or unknown target form on a method other than CONNECT",
    ))
}

/// What the header fields say about framing and the connection.
struct Semantics {
    length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    expects_continue: bool,
}

fn read_semantics(headers: &[httparse::Header<'_>], http10: bool) -> Result<Semantics, HeadError> {
    let mut semantics = Semantics {
        length: None,
        chunked: false,
        close: false,
        keep_alive: false,
        expects_continue: false,
    };
    let mut hosts = 0;
    let mut codings = 0;
    for header in headers {
        let name = header.name.as_bytes();
        let value = header.value.trim_ascii();
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    semantics.expects_continue = !http10;
                } else {
                    return Err(HeadError::Expectation);
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                semantics.close |= has_token(value, b"close");
                semantics.keep_alive |= has_token(value, b"keep-alive");
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let length = digits(value).ok_or(HeadError::Invalid("bad Content-Length"))?;
                if semantics.length.is_some_and(|known| known != length) {
                    return Err(HeadError::Invalid("conflicting Content-Length fields"));
                }
                semantics.length = Some(length);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                for coding in value.split(|&byte| byte == b',') {
                    let coding = coding.trim_ascii();
                    if coding.is_empty() {
                        continue;
                    }
                    codings += 1;
                    if !coding.eq_ignore_ascii_case(b"chunked") {
                        return Err(HeadError::Coding);
                    }
                }
                if codings != 1 {
                    return Err(HeadError::Invalid(
                        "Transfer-Encoding must be chunked, once",
                    ));
                }
                semantics.chunked = true;
            }
            _ => {}
        }
    }
    if hosts > 1 {
        return Err(HeadError::Invalid("more than one Host field"));
    }
    if semantics.chunked && http10 {
        return Err(HeadError::Invalid(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if semantics.chunked && semantics.length.is_some() {
        // Both framings: the classic request-smuggling setup. Refused.
        return Err(HeadError::Invalid(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(semantics)
}

/// Parse the start of `buffer`. `fields` is storage for the field list (a
/// connection reuses it from request to request).
#[must_use]
pub fn parse(buffer: &[u8], mut fields: Vec<Field>) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let length = match request.parse_with_uninit_headers(buffer, &mut slots) {
        Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
        Ok(httparse::Status::Complete(_)) => return Parsed::Error(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buffer.len() <= MAX_HEAD_BYTES => {
            return Parsed::Partial;
        }
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Error(HeadError::TooLarge);
        }
        Err(httparse::Error::Version) => return Parsed::Error(version_error(buffer)),
        Err(error) => {
            return Parsed::Error(HeadError::Invalid(match error {
                httparse::Error::HeaderName => "bad header name",
                httparse::Error::HeaderValue => "bad header value",
                httparse::Error::NewLine => "bad line ending",
                httparse::Error::Token => "bad method or target",
                _ => "bad request line",
            }));
        }
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Error(HeadError::Invalid("incomplete request line"));
    };
    let http10 = version == 0;
    let semantics = match read_semantics(request.headers, http10) {
        Ok(semantics) => semantics,
        Err(error) => return Parsed::Error(error),
    };
    let method_span = span_of(buffer, method.as_bytes());
    let target_span = span_of(buffer, target.as_bytes());
    let (uri, path, query) = match target_parts(buffer, method.as_bytes(), target_span) {
        Ok(parts) => parts,
        Err(error) => return Parsed::Error(error),
    };
    fields.clear();
    fields.extend(request.headers.iter().map(|header| Field {
        name: span_of(buffer, header.name.as_bytes()),
        value: span_of(buffer, header.value),
    }));
    let body = if semantics.chunked {
        BodyKind::Chunked
    } else {
        match semantics.length {
            None | Some(0) => BodyKind::None,
            Some(length) => BodyKind::Length(length),
        }
    };
    Parsed::Complete(ParsedHead {
        length,
        method: method_span,
        uri,
        path,
        query,
        protocol: if http10 {
            Protocol::Http10
        } else {
            Protocol::Http11
        },
        fields,
        body,
        keep_alive: !semantics.close && (!http10 || semantics.keep_alive),
        expects_continue: semantics.expects_continue && body != BodyKind::None,
        is_head: method == "HEAD",
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, BodyKind, HeadError, Parsed, ParsedHead};

    fn complete(text: &[u8]) -> ParsedHead {
        match parse(text, Vec::new()) {
            Parsed::Complete(head) => head,
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    fn error(text: &[u8]) -> HeadError {
        match parse(text, Vec::new()) {
            Parsed::Error(error) => error,
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(text)
            ),
        }
    }

    fn slice<'a>(text: &'a [u8], span: &crate::head::Span) -> &'a [u8] {
        &text[span.start as usize..span.end as usize]
    }

    #[test]
    fn parses_a_plain_get_and_keeps_what_follows() {
        let text = b"GET /a/b?x=1 HTTP/1.1\r\nHost: h:80\r\nX-A: 1\r\n\r\nGET /next";
        let head = complete(text);
        assert_eq!(head.length, text.len() - b"GET /next".len());
        assert_eq!(head.body, BodyKind::None);
        assert!(head.keep_alive && !head.is_head);
        assert_eq!(slice(text, &head.method), b"GET");
        assert_eq!(slice(text, &head.uri), b"/a/b?x=1");
        assert_eq!(slice(text, &head.query), b"x=1");
        assert_eq!(head.fields.len(), 2);
    }

    #[test]
    fn frames_bodies_and_connections() {
        let head = complete(b"POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: Close\r\n\r\n");
        assert_eq!(head.body, BodyKind::Length(12));
        assert!(!head.keep_alive);
        let head = complete(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(head.body, BodyKind::Chunked);
        assert!(head.expects_continue);
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        let same = complete(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(same.body, BodyKind::Length(3));
    }

    #[test]
    fn takes_the_path_of_absolute_and_asterisk_targets() {
        let text = b"GET http://example.com:8080/p%20q?a=b#frag HTTP/1.1\r\n\r\n";
        let head = complete(text);
        assert_eq!(slice(text, &head.query), b"a=b");
        assert!(
            matches!(head.path, crate::head::PathInfo::Decoded(ref path) if &path[..] == b"/p q")
        );
        let text = b"OPTIONS * HTTP/1.1\r\n\r\n";
        assert_eq!(slice(text, &complete(text).uri), b"*");
    }

    #[test]
    fn waits_for_the_rest_of_a_head() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x", Vec::new()),
            Parsed::Partial
        ));
        assert!(matches!(parse(b"GE", Vec::new()), Parsed::Partial));
    }

    #[test]
    fn refuses_ambiguous_framing_and_targets() {
        for text in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..],
            b"GET * HTTP/1.1\r\n\r\n",
            b"GET example.com:80 HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / FOO\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(error(text), HeadError::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(error(b"GET / HTTP/2.0\r\n\r\n"), HeadError::Version);
        assert_eq!(
            error(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            HeadError::Coding
        );
        assert_eq!(
            error(b"PUT / HTTP/1.1\r\nExpect: magic\r\n\r\n"),
            HeadError::Expectation
        );
        assert_eq!(
            error(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
            HeadError::Connect
        );
        assert_eq!(error(b"CONNECT /a/b HTTP/1.1\r\n\r\n"), HeadError::Connect);
    }

    #[test]
    fn refuses_oversized_heads() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for index in 0..101 {
            many.extend_from_slice(format!("X-{index}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(error(&many), HeadError::TooLarge);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(70 * 1024, b'a');
        assert_eq!(error(&huge), HeadError::TooLarge);
    }
}
