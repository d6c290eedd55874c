//! A uwsgi vars block as the neutral request head. The proxy already made
//! CGI variables: the request line's (REQUEST_METHOD, REQUEST_URI,
//! PATH_INFO, QUERY_STRING, SERVER_PROTOCOL, SCRIPT_NAME) are taken into the
//! head's fields, every other variable is passed to the environ as it is.
//! modifier1 30 removes SCRIPT_NAME from the front of PATH_INFO, as uWSGI
//! documents it.

use std::ops::Range;

use bytes::Bytes;

use super::packet::{Vars, MODIFIER_STRIP_SCRIPT_NAME};
use crate::head::{path_info, split_target, Field, PathInfo, Protocol, RequestHead, Span};

/// Variables the head takes apart; the environ gets them from the head.
const REQUEST_LINE_KEYS: [&[u8]; 6] = [
    b"REQUEST_METHOD",
    b"REQUEST_URI",
    b"PATH_INFO",
    b"QUERY_STRING",
    b"SERVER_PROTOCOL",
    b"SCRIPT_NAME",
];

fn span(range: &Range<usize>) -> Span {
    range.start as u32..range.end as u32
}

/// Whether a uwsgi `HTTPS` var means the client connection was encrypted.
fn https_on(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"on") || value == b"1" || value.eq_ignore_ascii_case(b"true")
}

/// The head of a request whose vars block is `vars`.
pub fn request_head(vars: &Vars, modifier1: u8) -> RequestHead {
    let bytes = vars.block().clone();
    let last = |key: &[u8]| {
        vars.pairs()
            .iter()
            .rev()
            .find(|(name, _)| &bytes[name.clone()] == key)
            .map(|(_, value)| span(value))
    };
    let empty = 0..0;
    let method = last(b"REQUEST_METHOD").unwrap_or(empty.clone());
    let uri = last(b"REQUEST_URI");
    let mut query = last(b"QUERY_STRING").unwrap_or(empty.clone());
    let path = match last(b"PATH_INFO") {
        Some(path) => PathInfo::Span(path),
        None => match &uri {
            Some(uri) => {
                let (path, from_uri) = split_target(&bytes, uri);
                if query.is_empty() {
                    query = from_uri;
                }
                path_info(&bytes, path)
            }
            None => PathInfo::Decoded(Bytes::from_static(b"/")),
        },
    };
    let uri = uri.unwrap_or_else(|| match &path {
        PathInfo::Span(path) => path.clone(),
        PathInfo::Decoded(_) => empty.clone(),
    });
    let mut script_name = last(b"SCRIPT_NAME").unwrap_or(empty.clone());
    if bytes[script_name.start as usize..script_name.end as usize].ends_with(b"/") {
        script_name.end -= 1;
    }
    let script = &bytes[script_name.start as usize..script_name.end as usize];
    let path = if modifier1 == MODIFIER_STRIP_SCRIPT_NAME && !script.is_empty() {
        strip_prefix(&bytes, path, script)
    } else {
        path
    };
    let protocol = match last(b"SERVER_PROTOCOL") {
        None => Protocol::Http11,
        Some(range) => match &bytes[range.start as usize..range.end as usize] {
            b"HTTP/1.1" => Protocol::Http11,
            b"HTTP/1.0" => Protocol::Http10,
            _ => Protocol::Other(range),
        },
    };
    let value =
        |key: &[u8]| last(key).map(|range| &bytes[range.start as usize..range.end as usize]);
    let https = value(b"HTTPS").is_some_and(https_on)
        || value(b"UWSGI_SCHEME").is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"https"))
        || value(b"REQUEST_SCHEME").is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"https"));
    let cgi = vars
        .pairs()
        .iter()
        .filter(|(name, _)| !REQUEST_LINE_KEYS.contains(&&bytes[name.clone()]))
        .map(|(name, value)| Field {
            name: span(name),
            value: span(value),
        })
        .collect();
    RequestHead {
        bytes: bytes.clone(),
        method,
        uri,
        path,
        query,
        protocol,
        script_name,
        fields: Vec::new(),
        cgi,
        https,
        from_proxy: true,
    }
}

/// PATH_INFO without the mount prefix `script`, when it starts with it at a
/// segment boundary.
fn strip_prefix(bytes: &Bytes, path: PathInfo, script: &[u8]) -> PathInfo {
    let full: &[u8] = match &path {
        PathInfo::Span(span) => &bytes[span.start as usize..span.end as usize],
        PathInfo::Decoded(decoded) => decoded,
    };
    match full.strip_prefix(script) {
        Some(rest) if rest.is_empty() || rest.starts_with(b"/") => match path {
            PathInfo::Span(span) => PathInfo::Span(span.start + script.len() as u32..span.end),
            PathInfo::Decoded(decoded) => PathInfo::Decoded(decoded.slice(script.len()..)),
        },
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::request_head;
    use crate::uwsgi::packet::{encode, Vars, HEADER_LEN};
    use bytes::Bytes;

    fn head(modifier1: u8, pairs: &[(&[u8], &[u8])]) -> crate::head::RequestHead {
        let packet = encode(modifier1, pairs);
        let vars = Vars::parse(Bytes::copy_from_slice(&packet[HEADER_LEN..])).expect("vars");
        request_head(&vars, modifier1)
    }

    #[test]
    fn takes_the_request_line_and_passes_the_rest() {
        let head = head(
            0,
            &[
                (b"REQUEST_METHOD", b"POST"),
                (b"REQUEST_URI", b"/a%20b?x=1"),
                (b"PATH_INFO", b"/a b"),
                (b"QUERY_STRING", b"x=1"),
                (b"HTTP_HOST", b"example.com"),
                (b"HTTPS", b"on"),
            ],
        );
        assert_eq!(head.method(), b"POST");
        assert_eq!(head.uri(), b"/a%20b?x=1");
        assert_eq!(head.path(), b"/a b");
        assert_eq!(head.query(), b"x=1");
        assert!(head.https && head.from_proxy);
        // Headers are found among the proxy's HTTP_* variables.
        assert_eq!(head.header(b"Host"), Some(&b"example.com"[..]));
        assert_eq!(head.header(b"if-none-match"), None);
        assert_eq!(
            head.header(b"https"),
            None,
            "only HTTP_* variables are headers"
        );
        let cgi: Vec<_> = head.cgi().collect();
        assert_eq!(
            cgi,
            vec![(&b"HTTP_HOST"[..], &b"example.com"[..]), (b"HTTPS", b"on")]
        );
    }

    #[test]
    fn modifier_30_strips_the_mount_prefix() {
        let pairs: &[(&[u8], &[u8])] = &[(b"SCRIPT_NAME", b"/app/"), (b"PATH_INFO", b"/app/x")];
        let stripped = head(30, pairs);
        assert_eq!(stripped.script_name(), b"/app");
        assert_eq!(stripped.path(), b"/x");
        assert_eq!(head(0, pairs).path(), b"/app/x");
        let other = head(
            30,
            &[(b"SCRIPT_NAME", b"/app"), (b"PATH_INFO", b"/application")],
        );
        assert_eq!(other.path(), b"/application");
    }

    #[test]
    fn without_path_info_the_uri_is_decoded() {
        let head = head(0, &[(b"REQUEST_URI", b"/p%41th?q=1")]);
        assert_eq!(head.path(), b"/pAth");
        assert_eq!(head.query(), b"q=1");
        assert_eq!(head.method(), b"");
    }
}
