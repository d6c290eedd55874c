//! Recognising the plain HTTP/1.1 requests that make up nearly all traffic
//! (an origin-form target, no body or a Content-Length one, no upgrade, no
//! `Expect`) so they can be served without hyper's per-request machinery.
//! Everything else — chunked bodies, HTTP/1.0, `100-continue`, absolute
//! targets, oversized or malformed heads — is left to hyper, which answers
//! errors and edge cases exactly as it always has.
//!
//! Parsing is httparse (what hyper itself uses) with its default, strict
//! settings; this module only adds the checks that decide the route.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;

use crate::config::{MAX_HEADERS, MAX_HEAD_BYTES};

/// One header field, as byte ranges into its head.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    pub name: Range<u32>,
    pub value: Range<u32>,
}

/// A request head served directly: the bytes it was parsed from and where
/// each part lies in them, so nothing is copied until the environ is built.
#[derive(Debug)]
pub(crate) struct RawHead {
    bytes: Bytes,
    method: Range<u32>,
    target: Range<u32>,
    fields: Vec<Field>,
}

impl RawHead {
    fn slice(&self, range: &Range<u32>) -> &[u8] {
        &self.bytes[range.start as usize..range.end as usize]
    }

    pub(crate) fn method(&self) -> &[u8] {
        self.slice(&self.method)
    }

    /// The request target as sent (origin form: path and query).
    pub(crate) fn target(&self) -> &[u8] {
        self.slice(&self.target)
    }

    /// Header fields in the order they were sent.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|field| (self.slice(&field.name), self.slice(&field.value)))
    }

    /// How many header fields there are.
    pub(crate) fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// The `index`th header field (name, value).
    pub(crate) fn field(&self, index: usize) -> (&[u8], &[u8]) {
        let field = &self.fields[index];
        (self.slice(&field.name), self.slice(&field.value))
    }

    /// Give back the field list's storage for the next parse.
    pub(crate) fn into_fields(self) -> Vec<Field> {
        self.fields
    }

    /// The first value of a header, by case-insensitive name.
    pub(crate) fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// What the buffer's first bytes are.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A plain request: `length` bytes of head, then `content_length` of body.
    Simple(Simple),
    /// Not complete yet; read more.
    Partial,
    /// For hyper: unusual, too large or malformed.
    Defer,
}

/// A plain HTTP/1.1 request head and how its connection continues.
#[derive(Debug)]
pub(crate) struct Simple {
    /// Bytes of the buffer the head takes.
    pub length: usize,
    pub content_length: u64,
    /// The client sent `Connection: close`.
    pub close: bool,
    pub is_head: bool,
    fields: Vec<Field>,
    method: Range<u32>,
    target: Range<u32>,
}

impl Simple {
    /// Attach the head's bytes (the first `length` bytes of the buffer parsed).
    pub(crate) fn into_head(self, bytes: Bytes) -> RawHead {
        debug_assert_eq!(bytes.len(), self.length);
        RawHead {
            bytes,
            method: self.method,
            target: self.target,
            fields: self.fields,
        }
    }
}

/// Bytes a target may hold to be served directly. Others (controls, space,
/// non-ASCII, quotes, `#`, braces...) go to hyper, whose URI rules then apply.
fn plain_target_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'/' | b'?'
                | b'='
                | b'&'
                | b'%'
                | b'-'
                | b'_'
                | b'.'
                | b'~'
                | b'+'
                | b','
                | b';'
                | b':'
                | b'@'
                | b'!'
                | b'$'
                | b'\''
                | b'('
                | b')'
                | b'*'
        )
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

fn offset(base: &[u8], part: &[u8]) -> Range<u32> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start as u32..(start + part.len()) as u32
}

/// Parse the start of `buffer` and decide how to serve it. `spare` is storage
/// for the field list (a connection reuses it from request to request).
pub(crate) fn parse(buffer: &[u8], spare: &mut Vec<Field>) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let length = match request.parse_with_uninit_headers(buffer, &mut slots) {
        Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
        Ok(httparse::Status::Partial) if buffer.len() <= MAX_HEAD_BYTES => return Parsed::Partial,
        _ => return Parsed::Defer,
    };
    let (Some(method), Some(target), Some(1)) = (request.method, request.path, request.version)
    else {
        return Parsed::Defer;
    };
    if !method.bytes().all(|byte| byte.is_ascii_uppercase())
        || method == "CONNECT"
        || !target.starts_with('/')
        || !target.bytes().all(plain_target_byte)
    {
        return Parsed::Defer;
    }
    let mut content_length = None;
    let mut close = false;
    let mut hosts = 0;
    let mut fields = std::mem::take(spare);
    fields.clear();
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        let value = header.value;
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                if value.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !value.eq_ignore_ascii_case(b"keep-alive") {
                    return Parsed::Defer;
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if content_length.is_some() {
                    return Parsed::Defer;
                }
                let Some(length) = digits(value) else {
                    return Parsed::Defer;
                };
                content_length = Some(length);
            }
            // Framing and protocol changes: hyper's to handle.
            6 if name.eq_ignore_ascii_case(b"expect") => return Parsed::Defer,
            7 if name.eq_ignore_ascii_case(b"upgrade") => return Parsed::Defer,
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => return Parsed::Defer,
            _ => {}
        }
        fields.push(Field {
            name: offset(buffer, name),
            value: offset(buffer, value),
        });
    }
    if hosts > 1 {
        return Parsed::Defer;
    }
    Parsed::Simple(Simple {
        length,
        content_length: content_length.unwrap_or(0),
        close,
        is_head: method == "HEAD",
        method: offset(buffer, method.as_bytes()),
        target: offset(buffer, target.as_bytes()),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, Parsed};
    use bytes::Bytes;

    fn simple(text: &[u8]) -> super::Simple {
        match parse(text, &mut Vec::new()) {
            Parsed::Simple(simple) => simple,
            other => panic!("expected a simple request, got {other:?}"),
        }
    }

    fn defers(text: &[u8]) -> bool {
        matches!(parse(text, &mut Vec::new()), Parsed::Defer)
    }

    #[test]
    fn parses_a_plain_get_and_keeps_what_follows() {
        let text = b"GET /a/b?x=1 HTTP/1.1\r\nHost: h:80\r\nX-A: 1\r\n\r\nGET /next";
        let parsed = simple(text);
        assert_eq!(parsed.length, text.len() - b"GET /next".len());
        assert_eq!(parsed.content_length, 0);
        assert!(!parsed.close && !parsed.is_head);
        let head = parsed.into_head(Bytes::copy_from_slice(&text[..text.len() - 9]));
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.target(), b"/a/b?x=1");
        let fields: Vec<_> = head.fields().collect();
        assert_eq!(
            fields,
            vec![(&b"Host"[..], &b"h:80"[..]), (&b"X-A"[..], &b"1"[..])]
        );
        assert_eq!(head.get(b"host"), Some(&b"h:80"[..]));
    }

    #[test]
    fn reads_content_length_and_connection_close() {
        let parsed = simple(b"POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: Close\r\n\r\n");
        assert_eq!(parsed.content_length, 12);
        assert!(parsed.close);
        assert!(simple(b"HEAD / HTTP/1.1\r\n\r\n").is_head);
    }

    #[test]
    fn waits_for_the_rest_of_a_head() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x", &mut Vec::new()),
            Parsed::Partial
        ));
        assert!(matches!(parse(b"GE", &mut Vec::new()), Parsed::Partial));
    }

    #[test]
    fn leaves_framing_and_protocol_changes_to_hyper() {
        assert!(defers(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(defers(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
        ));
        assert!(defers(b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"));
        assert!(defers(b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"));
        assert!(defers(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"));
        assert!(defers(
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        ));
        assert!(defers(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"));
        assert!(defers(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(defers(b"GET http://x/ HTTP/1.1\r\n\r\n"));
        assert!(defers(b"CONNECT x:443 HTTP/1.1\r\n\r\n"));
        assert!(defers(b"get / HTTP/1.1\r\n\r\n"));
        assert!(defers(b"GET /a\"b HTTP/1.1\r\n\r\n"));
        assert!(defers(b"GET /a#b HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn leaves_malformed_and_oversized_heads_to_hyper() {
        assert!(defers(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"));
        assert!(defers(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"));
        assert!(defers(b"GET  / HTTP/1.1\r\n\r\n"));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for index in 0..101 {
            many.extend_from_slice(format!("X-{index}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(defers(&many));
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(70 * 1024, b'a');
        assert!(defers(&huge));
    }
}
