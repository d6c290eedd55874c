//! Arbitrary bytes as the start of an HTTP/1.1 connection, for the head codec
//! (`rwsgi_codec::http::parse`). It never panics. A complete head keeps to
//! the codec's limits, its spans lie inside its length, and its framing
//! follows the rules the codec enforces. Arrival does not matter: a complete
//! head parses the same whatever follows it and from its own bytes alone, a
//! head cut short of complete (or a partial one cut shorter) is partial, never
//! refused, and an error stays an error however many bytes follow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsgi_codec::head::{PathInfo, Protocol, Span};
use rwsgi_codec::http::{parse, BodyKind, Parsed, ParsedHead, MAX_HEADERS, MAX_HEAD_BYTES};

/// Bytes appended to test that a result does not depend on what follows:
/// the line-ending bytes, a space, a token byte, a NUL and obs-text.
const NEXT: [u8; 6] = [b'\n', b'\r', b' ', b'G', 0, 0xff];

fn parse_new(data: &[u8]) -> Parsed {
    parse(data, Vec::new())
}

fn inside(span: &Span, outer: &Span, what: &str) {
    assert!(
        span.start <= span.end && outer.start <= span.start && span.end <= outer.end,
        "{what} {span:?} outside {outer:?}"
    );
}

fn slice<'a>(data: &'a [u8], span: &Span) -> &'a [u8] {
    &data[span.start as usize..span.end as usize]
}

fn check_complete(data: &[u8], head: &ParsedHead) {
    let length = head.length;
    assert!(
        length > 0 && length <= data.len(),
        "length {length} of {}",
        data.len()
    );
    assert!(length <= MAX_HEAD_BYTES, "length {length}");
    let method = &data[head.method.start as usize..head.method.end as usize];
    assert_ne!(method, b"CONNECT", "CONNECT is refused whatever its target");
    assert!(
        head.fields.len() <= MAX_HEADERS,
        "{} fields",
        head.fields.len()
    );
    let whole = 0..length as u32;
    inside(&head.method, &whole, "method");
    inside(&head.uri, &whole, "uri");
    // PATH_INFO and the query come from the target.
    inside(&head.query, &head.uri, "query");
    if let PathInfo::Span(path) = &head.path {
        inside(path, &head.uri, "path");
    }
    for field in &head.fields {
        inside(&field.name, &whole, "field name");
        inside(&field.value, &whole, "field value");
        assert!(!field.name.is_empty(), "a field without a name");
    }
    let method = slice(data, &head.method);
    assert!(!method.is_empty());
    assert_eq!(head.is_head, method == b"HEAD");
    assert!(matches!(head.protocol, Protocol::Http10 | Protocol::Http11));
    let http11 = head.protocol == Protocol::Http11;
    if head.body == BodyKind::Chunked {
        assert!(http11, "chunked HTTP/1.0 request accepted");
    }
    if head.expects_continue {
        assert!(http11 && head.body != BodyKind::None);
    }
    let named = |name: &[u8]| {
        head.fields
            .iter()
            .filter(|field| slice(data, &field.name).eq_ignore_ascii_case(name))
            .count()
    };
    assert!(named(b"host") <= 1, "two Host fields accepted");
    let lengths = named(b"content-length");
    let codings = named(b"transfer-encoding");
    assert!(
        lengths == 0 || codings == 0,
        "Content-Length with Transfer-Encoding"
    );
    assert_eq!(codings > 0, head.body == BodyKind::Chunked);
    if lengths == 0 && codings == 0 {
        assert_eq!(head.body, BodyKind::None);
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_new(data);
    let mut longer = Vec::with_capacity(data.len() + 1);
    match &parsed {
        Parsed::Complete(head) => {
            check_complete(data, head);
            let length = head.length;
            assert_eq!(
                parse_new(&data[..length]),
                parsed,
                "the head alone parses otherwise"
            );
            for cut in [length - 1, length / 2] {
                assert_eq!(
                    parse_new(&data[..cut]),
                    Parsed::Partial,
                    "cut at {cut} of {length}"
                );
            }
        }
        Parsed::Partial => {
            assert!(
                data.len() <= MAX_HEAD_BYTES,
                "{} bytes still partial",
                data.len()
            );
            for cut in [data.len().saturating_sub(1), data.len() / 2] {
                assert_eq!(parse_new(&data[..cut]), Parsed::Partial, "cut at {cut}");
            }
        }
        Parsed::Error(error) => {
            assert!(error.status().is_client_error() || error.status().is_server_error());
            assert!(!error.to_string().is_empty());
        }
    }
    for next in NEXT {
        longer.clear();
        longer.extend_from_slice(data);
        longer.push(next);
        let again = parse_new(&longer);
        match &parsed {
            Parsed::Complete(_) => assert_eq!(
                again, parsed,
                "a complete head changed with {next:#x} after it"
            ),
            Parsed::Error(_) => assert!(
                matches!(again, Parsed::Error(_)),
                "an error became {again:?}"
            ),
            Parsed::Partial => {}
        }
    }
});
