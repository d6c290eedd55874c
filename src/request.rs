//! The protocol-neutral request every listener produces for the WSGI bridge:
//! a parsed head, the whole body (read before Python sees the request) and the
//! two ends of the connection.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::http::head::RawHead;
use crate::uwsgi::codec::Vars;

/// The far end of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Peer {
    Tcp(SocketAddr),
    /// A unix socket client: it has no address worth showing.
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix => f.write_str("a unix socket client"),
        }
    }
}

/// What a request's head was, by protocol.
pub(crate) enum Head {
    /// Parsed by hyper from HTTP/1.x.
    Http(http::request::Parts),
    /// A plain HTTP/1.1 head served without hyper (see `http::head`).
    Raw(RawHead),
    /// The vars block of a uwsgi packet: already CGI variables, set by the proxy.
    Uwsgi { vars: Vars, modifier1: u8 },
}

/// One request, ready for the app.
pub(crate) struct Request {
    pub head: Head,
    /// The complete body; empty when there was none.
    pub body: Bytes,
    /// True when the body arrived chunked, so its length came from counting it.
    pub body_was_chunked: bool,
    pub peer: Peer,
    /// The listener's address (TCP), for SERVER_NAME/SERVER_PORT when no Host is sent.
    pub local: Option<SocketAddr>,
}

impl Request {
    /// `METHOD target`, for log lines.
    pub(crate) fn describe(&self) -> String {
        match &self.head {
            Head::Http(parts) => format!("{} {}", parts.method, parts.uri),
            Head::Raw(head) => format!(
                "{} {}",
                String::from_utf8_lossy(head.method()),
                String::from_utf8_lossy(head.target())
            ),
            Head::Uwsgi { vars, .. } => format!(
                "{} {}",
                String::from_utf8_lossy(vars.get(b"REQUEST_METHOD").unwrap_or(b"?")),
                String::from_utf8_lossy(
                    vars.get(b"REQUEST_URI")
                        .or_else(|| vars.get(b"PATH_INFO"))
                        .unwrap_or(b"?")
                )
            ),
        }
    }
}

/// Decode `%XX` escapes into raw bytes; a malformed escape is kept as written,
/// as `CPython`'s `urllib.parse.unquote_to_bytes` does.
pub(crate) fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut index = 0;
    while index < input.len() {
        let byte = input[index];
        if byte == b'%' && index + 2 < input.len() {
            if let (Some(high), Some(low)) = (hex(input[index + 1]), hex(input[index + 2])) {
                out.push(high << 4 | low);
                index += 3;
                continue;
            }
        }
        out.push(byte);
        index += 1;
    }
    out
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes_and_keeps_broken_ones() {
        assert_eq!(percent_decode(b"/a%20b"), b"/a b");
        assert_eq!(percent_decode(b"/%e9t%C3%A9"), b"/\xe9t\xc3\xa9");
        assert_eq!(percent_decode(b"/100%"), b"/100%");
        assert_eq!(percent_decode(b"/%4"), b"/%4");
        assert_eq!(percent_decode(b"/%zz%41"), b"/%zzA");
        assert_eq!(percent_decode(b"%2F"), b"/");
    }
}
