//! The access log's line layouts: the named ones (`common`, `combined`,
//! `runserver`, `json`) and templates in uWSGI's `logformat` syntax
//! (`%(addr) %(method) %(uri) %(status)`), parsed once at start-up into a
//! list of parts so that a request only fills them in. Client text is
//! escaped in every layout, so no request can forge a line.

use std::io::Write;

use bytes::BufMut;

use crate::finished::Finished as Entry;
use crate::log::json_string;
use crate::request::{Peer, RequestHead};
use crate::response::encode::push_decimal;

/// An access log line layout (`--access-log-format`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Common,
    Combined,
    /// Django's development server's lines.
    Runserver,
    /// One JSON object per line with every field.
    Json,
    /// A `%(name)` template.
    Template(Vec<Part>),
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(Vec<u8>),
    Field(Field),
}

/// What a `%(name)` placeholder stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Addr,
    User,
    /// Apache-style local time.
    Ltime,
    /// Unix seconds.
    Time,
    /// ISO 8601 local time with its offset.
    Iso,
    /// ctime-style local time (uWSGI's default line).
    Ctime,
    Method,
    Uri,
    Path,
    Query,
    Proto,
    Status,
    Size,
    Msecs,
    Micros,
    Referer,
    Uagent,
    Host,
    Wid,
    Pid,
    /// The listener's protocol: http or uwsgi.
    Protocol,
    /// A CGI variable by name (`var.HTTP_X_REQUEST_ID`).
    Var(Vec<u8>),
    /// A request header by name (`header.X-Request-Id`).
    Header(Vec<u8>),
    /// A response header by name (`response.Content-Type`).
    Response(Vec<u8>),
}

/// The fields of a JSON line, by key.
const JSON_FIELDS: [(&str, Field); 19] = [
    ("time", Field::Iso),
    ("addr", Field::Addr),
    ("user", Field::User),
    ("method", Field::Method),
    ("uri", Field::Uri),
    ("path", Field::Path),
    ("query", Field::Query),
    ("proto", Field::Proto),
    ("status", Field::Status),
    ("size", Field::Size),
    ("msecs", Field::Msecs),
    ("micros", Field::Micros),
    ("referer", Field::Referer),
    ("uagent", Field::Uagent),
    ("host", Field::Host),
    ("wid", Field::Wid),
    ("pid", Field::Pid),
    ("protocol", Field::Protocol),
    ("unix", Field::Time),
];

impl Field {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "addr" => Self::Addr,
            "user" => Self::User,
            "ltime" => Self::Ltime,
            "time" => Self::Time,
            "iso" => Self::Iso,
            "ctime" => Self::Ctime,
            "method" => Self::Method,
            "uri" => Self::Uri,
            "path" => Self::Path,
            "query" => Self::Query,
            "proto" => Self::Proto,
            "status" => Self::Status,
            "size" | "rsize" => Self::Size,
            "msecs" => Self::Msecs,
            "micros" => Self::Micros,
            "referer" => Self::Referer,
            "uagent" => Self::Uagent,
            "host" => Self::Host,
            "wid" => Self::Wid,
            "pid" => Self::Pid,
            "protocol" => Self::Protocol,
            _ => {
                let (kind, what) = name.split_once('.')?;
                if what.is_empty() {
                    return None;
                }
                let what = what.as_bytes().to_vec();
                match kind {
                    "var" => Self::Var(what),
                    "header" => Self::Header(what),
                    "response" => Self::Response(what),
                    _ => return None,
                }
            }
        })
    }
}

impl Format {
    /// The layout named `text`, or the template it is; the error names
    /// the placeholder that is not known.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text {
            "common" => return Ok(Self::Common),
            "combined" => return Ok(Self::Combined),
            "runserver" => return Ok(Self::Runserver),
            "json" => return Ok(Self::Json),
            "" => return Err("is empty: name a format (common, combined, runserver, json) or write a %(name) template".into()),
            _ => {}
        }
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("%(") {
            literal.extend_from_slice(&rest.as_bytes()[..at]);
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else {
                return Err(format!("{:?}: a %( without its )", &rest[at..]));
            };
            let name = &after[..end];
            let field = Field::named(name).ok_or_else(|| {
                format!("unknown placeholder %({name}) (known: addr, user, ltime, time, iso, ctime, method, uri, path, query, proto, status, size, msecs, micros, referer, uagent, host, wid, pid, protocol, var.NAME, header.NAME, response.NAME)")
            })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Field(field));
            rest = &after[end + 1..];
        }
        literal.extend_from_slice(rest.as_bytes());
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self::Template(parts))
    }
}

/// The per-second and per-worker text a line may need.
pub(crate) struct Context<'a> {
    pub apache: &'a str,
    pub runserver: &'a str,
    pub iso: &'a str,
    pub ctime: &'a str,
    pub unix: u64,
    pub wid: usize,
    pub pid: u32,
    /// Microseconds from the request's head to its accounting.
    pub micros: u64,
}

/// Append the line for `entry` in `format` to `out`.
pub(crate) fn format_line(out: &mut Vec<u8>, format: &Format, entry: &Entry<'_>, cx: &Context<'_>) {
    let head = entry.head;
    match format {
        Format::Runserver => {
            out.push(b'[');
            out.extend_from_slice(cx.runserver.as_bytes());
            out.extend_from_slice(b"] ");
            request_line(out, head);
            out.push(b' ');
            field(out, &Field::Status, entry, cx, escaped);
            out.push(b' ');
            field(out, &Field::Size, entry, cx, escaped);
        }
        Format::Common | Format::Combined => {
            field(out, &Field::Addr, entry, cx, escaped);
            out.extend_from_slice(b" - - [");
            out.extend_from_slice(cx.apache.as_bytes());
            out.extend_from_slice(b"] ");
            request_line(out, head);
            out.push(b' ');
            push_decimal(out, u64::from(entry.status));
            out.push(b' ');
            field(out, &Field::Size, entry, cx, escaped);
            if *format == Format::Combined {
                for name in [Field::Referer, Field::Uagent] {
                    out.extend_from_slice(b" \"");
                    field(out, &name, entry, cx, escaped);
                    out.push(b'"');
                }
            }
        }
        Format::Json => {
            out.push(b'{');
            for (index, (key, which)) in JSON_FIELDS.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "\"{key}\":");
                if is_number(which) {
                    let start = out.len();
                    field(out, which, entry, cx, escaped);
                    if out[start..] == *b"-" {
                        out.truncate(start);
                        out.extend_from_slice(b"null");
                    }
                } else {
                    field(out, which, entry, cx, json_string);
                }
            }
            out.push(b'}');
        }
        Format::Template(parts) => {
            for part in parts {
                match part {
                    Part::Literal(bytes) => out.extend_from_slice(bytes),
                    Part::Field(which) => field(out, which, entry, cx, escaped),
                }
            }
        }
    }
    out.push(b'\n');
}

fn is_number(field: &Field) -> bool {
    matches!(
        field,
        Field::Status
            | Field::Size
            | Field::Msecs
            | Field::Micros
            | Field::Wid
            | Field::Pid
            | Field::Time
    )
}

fn request_line(out: &mut Vec<u8>, head: &RequestHead) {
    out.push(b'"');
    escaped(out, head.method());
    out.push(b' ');
    escaped(out, head.uri());
    out.push(b' ');
    out.extend_from_slice(protocol(head).as_bytes());
    out.push(b'"');
}

/// Write one field's value, client text through `text`.
fn field(
    out: &mut Vec<u8>,
    which: &Field,
    entry: &Entry<'_>,
    cx: &Context<'_>,
    text: fn(&mut Vec<u8>, &[u8]),
) {
    let head = entry.head;
    match which {
        Field::Addr => {
            // Behind a proxy (uwsgi), the client is the one it names.
            let proxied = head
                .from_proxy
                .then(|| head.cgi().find(|(name, _)| *name == b"REMOTE_ADDR"))
                .flatten();
            match (proxied, entry.peer) {
                (Some((_, address)), _) => text(out, address),
                (None, Peer::Tcp(address)) => text(out, IpText::of(address.ip()).as_bytes()),
                (None, Peer::Unix) => text(out, b"-"),
            }
        }
        Field::User => text(out, b"-"),
        Field::Ltime => text(out, cx.apache.as_bytes()),
        Field::Iso => text(out, cx.iso.as_bytes()),
        Field::Ctime => text(out, cx.ctime.as_bytes()),
        Field::Time => {
            push_decimal(out, cx.unix);
        }
        Field::Method => text(out, head.method()),
        Field::Uri => text(out, head.uri()),
        Field::Path => text(out, head.path()),
        Field::Query => text(out, head.query()),
        Field::Proto => text(out, protocol(head).as_bytes()),
        Field::Status => {
            push_decimal(out, u64::from(entry.status));
        }
        Field::Size => match entry.sent {
            Some(bytes) => {
                push_decimal(out, bytes);
            }
            None => out.push(b'-'),
        },
        Field::Msecs => {
            push_decimal(out, cx.micros / 1000);
        }
        Field::Micros => {
            push_decimal(out, cx.micros);
        }
        Field::Referer => text(out, head.header(b"referer").unwrap_or(b"-")),
        Field::Uagent => text(out, head.header(b"user-agent").unwrap_or(b"-")),
        Field::Host => text(out, head.header(b"host").unwrap_or(b"-")),
        Field::Wid => {
            push_decimal(out, cx.wid as u64);
        }
        Field::Pid => {
            push_decimal(out, u64::from(cx.pid));
        }
        Field::Protocol => text(
            out,
            if entry.protocol.eq_ignore_ascii_case("uwsgi") {
                b"uwsgi"
            } else {
                b"http"
            },
        ),
        Field::Var(name) => text(
            out,
            &cgi_variable(head, name).unwrap_or_else(|| b"-".to_vec()),
        ),
        Field::Header(name) => text(out, head.header(name).unwrap_or(b"-")),
        Field::Response(name) => text(out, response_header(entry.response, name).unwrap_or(b"-")),
    }
}

/// A CGI variable of the request as the environ would have it: the proxy's
/// own (uwsgi), else made from the head.
fn cgi_variable(head: &RequestHead, name: &[u8]) -> Option<Vec<u8>> {
    if let Some((_, value)) = head.cgi().find(|(variable, _)| *variable == name) {
        return Some(value.to_vec());
    }
    let header = |header: &[u8]| head.header(header).map(<[u8]>::to_vec);
    match name {
        b"REQUEST_METHOD" => Some(head.method().to_vec()),
        b"REQUEST_URI" | b"RAW_URI" => Some(head.uri().to_vec()),
        b"PATH_INFO" => Some(head.path().to_vec()),
        b"QUERY_STRING" => Some(head.query().to_vec()),
        b"SERVER_PROTOCOL" => Some(protocol(head).as_bytes().to_vec()),
        b"CONTENT_TYPE" => header(b"content-type"),
        b"CONTENT_LENGTH" => header(b"content-length"),
        _ => {
            let rest = name.strip_prefix(b"HTTP_")?;
            let field: Vec<u8> = rest
                .iter()
                .map(|&byte| if byte == b'_' { b'-' } else { byte })
                .collect();
            header(&field)
        }
    }
}

/// The value of response header `name` (case-insensitive) in the written
/// head `response`: its header lines, up to the blank line.
fn response_header<'a>(response: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head_end = memchr::memmem::find(response, b"\r\n\r\n").unwrap_or(response.len());
    response[..head_end]
        .split(|&byte| byte == b'\n')
        .skip(1)
        .find_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = memchr::memchr(b':', line)?;
            line[..colon]
                .eq_ignore_ascii_case(name)
                .then(|| line[colon + 1..].trim_ascii())
        })
}

fn protocol(head: &RequestHead) -> &str {
    match &head.protocol {
        crate::request::Protocol::Http10 => "HTTP/1.0",
        crate::request::Protocol::Http11 => "HTTP/1.1",
        crate::request::Protocol::Other(span) => {
            std::str::from_utf8(head.slice(span)).unwrap_or("HTTP/?")
        }
    }
}

/// Client text as it was, but quotes, backslashes and control or non-ASCII
/// bytes escaped (`\xNN`), so no request can forge a line.
pub(crate) fn escaped(out: &mut Vec<u8>, text: &[u8]) {
    for &byte in text {
        match byte {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(byte);
            }
            0x20..=0x7e => out.push(byte),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
}

/// A client address as text, on the stack: IPv4 digit by digit (nearly
/// every line), IPv6 as Rust writes it; no allocation either way.
struct IpText {
    bytes: [u8; 48],
    len: usize,
}

impl IpText {
    fn of(address: std::net::IpAddr) -> Self {
        let mut text = Self {
            bytes: [0; 48],
            len: 0,
        };
        match address {
            std::net::IpAddr::V4(v4) => {
                let mut rest = &mut text.bytes[..];
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        rest.put_u8(b'.');
                    }
                    push_decimal(&mut rest, u64::from(octet));
                }
                let left = rest.len();
                text.len = text.bytes.len() - left;
            }
            std::net::IpAddr::V6(v6) => {
                let mut rest = &mut text.bytes[..];
                let before = rest.len();
                let _ = std::io::Write::write_fmt(&mut rest, format_args!("{v6}"));
                text.len = before - rest.len();
            }
        }
        text
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::{escaped, push_decimal, response_header, Field, Format, IpText, Part};

    #[test]
    fn numbers_and_addresses_are_written_as_fmt_would() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 200, 65_535, u64::MAX] {
            out.clear();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for address in [
            "127.0.0.1",
            "10.200.0.255",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            out.clear();
            let parsed = address.parse().expect("an address");
            assert_eq!(IpText::of(parsed).as_bytes(), address.as_bytes());
        }
    }

    #[test]
    fn client_text_cannot_forge_a_line() {
        let mut out = Vec::new();
        escaped(&mut out, b"/a\"b\\c\r\n\x7f\xff");
        assert_eq!(out, b"/a\\\"b\\\\c\\x0d\\x0a\\x7f\\xff");
    }

    #[test]
    fn templates_parse_once_into_parts() {
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        let Ok(Format::Template(parts)) =
            Format::parse("%(addr) [%(var.HTTP_X_ID)] %(response.Content-Type)%(status)!")
        else {
            panic!("not a template");
        };
        assert_eq!(
            parts,
            vec![
                Part::Field(Field::Addr),
                Part::Literal(b" [".to_vec()),
                Part::Field(Field::Var(b"HTTP_X_ID".to_vec())),
                Part::Literal(b"] ".to_vec()),
                Part::Field(Field::Response(b"Content-Type".to_vec())),
                Part::Field(Field::Status),
                Part::Literal(b"!".to_vec()),
            ]
        );
        let error = Format::parse("%(method) %(nonsense)").unwrap_err();
        assert!(error.contains("%(nonsense)"), "{error}");
        assert!(Format::parse("%(status").is_err());
        assert!(Format::parse("%(header.)").is_err());
        // rwsgi.ini's stand-in for uWSGI's default line.
        assert!(Format::parse(
            "[pid: %(pid)|app: 0|req: -/-] %(addr) (%(user)) [%(ctime)] %(method) %(uri) \
             => generated %(size) bytes in %(msecs) msecs (%(proto) %(status))"
        )
        .is_ok());
    }

    #[test]
    fn response_headers_are_found_in_the_head_only() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Id:  7 \r\n\r\nX-Body: no";
        assert_eq!(response_header(head, b"x-id"), Some(&b"7"[..]));
        assert_eq!(
            response_header(head, b"CONTENT-TYPE"),
            Some(&b"text/plain"[..])
        );
        assert_eq!(response_header(head, b"x-body"), None);
    }
}
