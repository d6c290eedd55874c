//! The protocol-neutral request head every protocol's codec produces.
//!
//! Each protocol converts at its edge: the HTTP codec from a request line and
//! header fields, the uwsgi codec from the vars block a proxy sent. What the
//! WSGI environ needs is here in one shape, as byte ranges into the bytes the
//! head arrived in, so nothing is copied until the environ is built. Nothing
//! in this module knows which protocol made a head; the body, the peer and
//! the connection belong to the server.

use std::ops::Range;

use bytes::Bytes;

/// A part of a head: a byte range into its bytes.
pub type Span = Range<u32>;

/// A name and a value, as spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name as sent (HTTP) or the variable's key (uwsgi).
    pub name: Span,
    /// The value, without the whitespace around it.
    pub value: Span,
}

/// The protocol version the client spoke, for SERVER_PROTOCOL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `HTTP/1.0`: no keep-alive unless asked for, no chunked bodies.
    Http10,
    /// `HTTP/1.1`, and what a head that names no version is taken for.
    Http11,
    /// Whatever a proxy reported (uwsgi's SERVER_PROTOCOL, e.g. `HTTP/2.0`).
    Other(Span),
}

/// PATH_INFO: a span of the head when it needed no decoding, else its own bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathInfo {
    /// The raw path had no `%` escape: it is PATH_INFO as it stands.
    Span(Span),
    /// The raw path, percent-decoded (or a path the head did not hold).
    Decoded(Bytes),
}

/// Everything about a request except its body.
#[derive(Debug)]
pub struct RequestHead {
    /// What the spans point into.
    pub bytes: Bytes,
    /// REQUEST_METHOD, as sent (methods are case-sensitive).
    pub method: Span,
    /// The target as sent: REQUEST_URI and RAW_URI.
    pub uri: Span,
    /// PATH_INFO, decoded.
    pub path: PathInfo,
    /// QUERY_STRING, without the `?`.
    pub query: Span,
    /// SERVER_PROTOCOL.
    pub protocol: Protocol,
    /// The mount prefix a proxy reported (uwsgi); empty for HTTP.
    pub script_name: Span,
    /// Header fields as the client named them, in order (HTTP). They become
    /// `HTTP_*` keys, CONTENT_TYPE and CONTENT_LENGTH.
    pub fields: Vec<Field>,
    /// CGI variables a proxy already made (uwsgi), set in the environ as they
    /// are, after everything else.
    pub cgi: Vec<Field>,
    /// The client's connection was encrypted (a proxy said so).
    pub https: bool,
    /// A proxy made the CGI variables (REMOTE_*, SERVER_*...): the
    /// connection's own addresses are not the client's.
    pub from_proxy: bool,
}

impl RequestHead {
    /// The bytes of a span.
    pub fn slice(&self, span: &Span) -> &[u8] {
        self.bytes
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    /// REQUEST_METHOD.
    pub fn method(&self) -> &[u8] {
        self.slice(&self.method)
    }

    /// The request target as sent (REQUEST_URI).
    pub fn uri(&self) -> &[u8] {
        self.slice(&self.uri)
    }

    /// QUERY_STRING.
    pub fn query(&self) -> &[u8] {
        self.slice(&self.query)
    }

    /// SCRIPT_NAME, as a proxy reported it (empty for HTTP).
    pub fn script_name(&self) -> &[u8] {
        self.slice(&self.script_name)
    }

    /// PATH_INFO, percent-decoded.
    pub fn path(&self) -> &[u8] {
        match &self.path {
            PathInfo::Span(span) => self.slice(span),
            PathInfo::Decoded(bytes) => bytes,
        }
    }

    /// How many header fields there are.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// The `index`th header field (name, value); `index` must be below
    /// [`field_count`](Self::field_count).
    pub fn field(&self, index: usize) -> (&[u8], &[u8]) {
        let field = &self.fields[index];
        (self.slice(&field.name), self.slice(&field.value))
    }

    /// The first value of a header, by case-insensitive name: a header
    /// field (HTTP), or the `HTTP_*` variable a proxy made of it (uwsgi).
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .map(|field| (self.slice(&field.name), self.slice(&field.value)))
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .or_else(|| {
                self.cgi()
                    .find(|(variable, _)| is_cgi_name_of(variable, name))
                    .map(|(_, value)| value)
            })
    }

    /// The proxy's CGI variables (name, value), in order.
    pub fn cgi(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.cgi
            .iter()
            .map(|field| (self.slice(&field.name), self.slice(&field.value)))
    }

    /// Give back the field list's storage for the next parse.
    pub fn into_fields(self) -> Vec<Field> {
        self.fields
    }

    /// `METHOD target`, for log lines.
    pub fn describe(&self) -> String {
        format!(
            "{} {}",
            String::from_utf8_lossy(self.method()),
            String::from_utf8_lossy(self.uri())
        )
    }
}

/// Whether `variable` is the CGI name of header `name` (`HTTP_IF_NONE_MATCH`
/// for `if-none-match`).
fn is_cgi_name_of(variable: &[u8], name: &[u8]) -> bool {
    variable.strip_prefix(b"HTTP_").is_some_and(|rest| {
        rest.len() == name.len()
            && rest.iter().zip(name).all(|(&cgi, &header)| {
                let header = if header == b'-' { b'_' } else { header };
                cgi == header.to_ascii_uppercase()
            })
    })
}

/// The span of `part` inside `base` (`part` must be a subslice of `base`).
#[must_use]
pub fn span_of(base: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    debug_assert!(start + part.len() <= base.len());
    start as u32..(start + part.len()) as u32
}

/// Split a target span into its path and query spans (the query without `?`).
#[must_use]
pub fn split_target(bytes: &[u8], target: &Span) -> (Span, Span) {
    let text = bytes
        .get(target.start as usize..target.end as usize)
        .unwrap_or_default();
    match text.iter().position(|&byte| byte == b'?') {
        Some(at) => {
            let at = target.start + at as u32;
            (target.start..at, at + 1..target.end)
        }
        None => (target.clone(), target.end..target.end),
    }
}

/// PATH_INFO for a raw path span: the span itself unless it has escapes.
#[must_use]
pub fn path_info(bytes: &[u8], path: Span) -> PathInfo {
    let raw = bytes
        .get(path.start as usize..path.end as usize)
        .unwrap_or_default();
    if raw.contains(&b'%') {
        PathInfo::Decoded(Bytes::from(percent_decode(raw)))
    } else {
        PathInfo::Span(path)
    }
}

/// Decode `%XX` escapes into raw bytes; a malformed escape is kept as written,
/// as `CPython`'s `urllib.parse.unquote_to_bytes` does.
#[must_use]
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
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
    use super::{percent_decode, split_target};

    #[test]
    fn decodes_escapes_and_keeps_broken_ones() {
        assert_eq!(percent_decode(b"/a%20b"), b"/a b");
        assert_eq!(percent_decode(b"/%e9t%C3%A9"), b"/\xe9t\xc3\xa9");
        assert_eq!(percent_decode(b"/100%"), b"/100%");
        assert_eq!(percent_decode(b"/%4"), b"/%4");
        assert_eq!(percent_decode(b"/%zz%41"), b"/%zzA");
        assert_eq!(percent_decode(b"%2F"), b"/");
    }

    #[test]
    fn splits_path_and_query() {
        let bytes = b"GET /a/b?x=1&y HTTP/1.1";
        assert_eq!(split_target(bytes, &(4..14)), (4..8, 9..14));
        assert_eq!(split_target(bytes, &(4..8)), (4..8, 8..8));
    }
}
