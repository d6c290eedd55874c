//! Building the WSGI environ. The keys that never change are set once in a
//! template dict that each request copies (measured: about 10% of hello-world
//! throughput over inserting every key each time); the per-request keys follow.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, Method, Version};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{ffi, intern};

use crate::body::RequestBody;
use crate::config::Config;
use crate::http::head::RawHead;
use crate::request::{percent_decode, Head, Peer, Request};
use crate::uwsgi::codec::{Vars, MODIFIER_STRIP_SCRIPT_NAME};
use crate::wsgi::file_wrapper::FileWrapper;
use crate::wsgi::input::Input;

/// The server's name in `SERVER_SOFTWARE`.
const SOFTWARE: &str = concat!("rwsgi/", env!("CARGO_PKG_VERSION"));
/// How many distinct header names get a cached `HTTP_*` key per thread.
const HEADER_KEY_CACHE: usize = 256;

/// The Fx hash (as in rustc): a few instructions per word. The cache keys are
/// header names, so SipHash's flood resistance buys nothing here (the cache is
/// bounded) and cost a visible share of environ building.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A Host header's text with the SERVER_NAME and SERVER_PORT strings made from it.
type HostStrings = (String, Py<PyString>, Py<PyString>);

thread_local! {
    static HEADER_KEYS: RefCell<FxMap<HeaderName, Py<PyString>>> = RefCell::new(FxMap::default());
    /// The last Host header seen on this thread and the strings made from it:
    /// nearly every request repeats its connection's (or its site's) Host.
    static LAST_HOST: RefCell<Option<HostStrings>> = const { RefCell::new(None) };
    static VAR_KEYS: RefCell<FxMap<Vec<u8>, Py<PyString>>> = RefCell::new(FxMap::default());
    /// `HTTP_*` keys by header name as clients spell it (directly served requests).
    static RAW_HEADER_KEYS: RefCell<FxMap<Box<[u8]>, Py<PyString>>> = RefCell::new(FxMap::default());
}

/// The part of every environ that is the same for all requests of a worker.
pub(crate) struct EnvironTemplate {
    /// For HTTP: also holds (with placeholder values) every key each request
    /// sets, and room for a dozen headers, so filling a copy never grows it.
    http: Py<PyDict>,
    /// For uwsgi, whose keys come from the proxy.
    uwsgi: Py<PyDict>,
}

/// Keys every HTTP request sets.
const HTTP_REQUEST_KEYS: [&str; 11] = [
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "REQUEST_URI",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.input",
];
/// Keys added then removed so a copy of the template has free slots for headers.
const SPARE_SLOTS: usize = 10;

fn constant_keys<'py>(py: Python<'py>, config: &Config) -> PyResult<Bound<'py, PyDict>> {
    let base = PyDict::new(py);
    base.set_item("SCRIPT_NAME", "")?;
    base.set_item("SERVER_SOFTWARE", SOFTWARE)?;
    base.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
    base.set_item("wsgi.url_scheme", "http")?;
    base.set_item("wsgi.errors", py.import("sys")?.getattr("stderr")?)?;
    base.set_item("wsgi.multithread", config.threads > 1)?;
    base.set_item("wsgi.multiprocess", config.workers > 1)?;
    base.set_item("wsgi.run_once", false)?;
    base.set_item("wsgi.input_terminated", true)?;
    base.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
    // Requests without a body share one empty input: it has nothing to read,
    // so it has no state to share, and most requests skip making one.
    base.set_item(
        "wsgi.input",
        Bound::new(py, Input::new(RequestBody::Empty))?,
    )?;
    Ok(base)
}

/// Make a `str` from bytes the way PEP 3333 asks: each byte one latin-1 character.
/// (CPython's latin-1 decoder is a scan and a copy: cheaper than checking for
/// UTF-8 or ASCII first.)
pub(crate) fn latin1_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let length = isize::try_from(bytes.len()).map_err(|_| PyErr::fetch(py))?;
    // SAFETY: the pointer and length describe `bytes`, alive for the call; the
    // result is a new reference or NULL with an exception set.
    unsafe {
        let raw = ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), length, std::ptr::null());
        Bound::from_owned_ptr_or_err(py, raw).map(|any| any.cast_into_unchecked())
    }
}

fn method_str<'py>(py: Python<'py>, method: &Method) -> Bound<'py, PyString> {
    let interned = match *method {
        Method::GET => intern!(py, "GET"),
        Method::POST => intern!(py, "POST"),
        Method::HEAD => intern!(py, "HEAD"),
        Method::PUT => intern!(py, "PUT"),
        Method::DELETE => intern!(py, "DELETE"),
        Method::PATCH => intern!(py, "PATCH"),
        Method::OPTIONS => intern!(py, "OPTIONS"),
        _ => return PyString::new(py, method.as_str()),
    };
    interned.clone()
}

fn header_key<'py>(py: Python<'py>, name: &HeaderName) -> Bound<'py, PyString> {
    HEADER_KEYS.with(|cache| {
        if let Some(key) = cache.borrow().get(name) {
            return key.bind(py).clone();
        }
        let mut text = String::with_capacity(5 + name.as_str().len());
        text.push_str("HTTP_");
        text.extend(name.as_str().chars().map(|ch| {
            if ch == '-' {
                '_'
            } else {
                ch.to_ascii_uppercase()
            }
        }));
        let key = PyString::intern(py, &text);
        let mut cache = cache.borrow_mut();
        if cache.len() < HEADER_KEY_CACHE {
            cache.insert(name.clone(), key.clone().unbind());
        }
        key
    })
}

fn set_headers(py: Python<'_>, environ: &Bound<'_, PyDict>, headers: &HeaderMap) -> PyResult<()> {
    // `iter` yields every value of a name one after another: one pass, no lookups.
    let mut fields = headers.iter().peekable();
    while let Some((name, first)) = fields.next() {
        let repeated = fields.peek().is_some_and(|(next, _)| *next == name);
        let mut joined = Vec::new();
        if repeated {
            joined.extend_from_slice(first.as_bytes());
            while let Some((_, more)) = fields.next_if(|(next, _)| *next == name) {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(more.as_bytes());
            }
        }
        // A header spelled with "_" would collide with its "-" twin in HTTP_*;
        // dropping it keeps a client from spoofing a header a proxy set.
        if name.as_str().contains('_') {
            continue;
        }
        let value = latin1_str(py, if repeated { &joined } else { first.as_bytes() })?;
        if name == CONTENT_TYPE {
            environ.set_item(intern!(py, "CONTENT_TYPE"), value)?;
        } else if name == CONTENT_LENGTH {
            environ.set_item(intern!(py, "CONTENT_LENGTH"), value)?;
        } else {
            environ.set_item(header_key(py, name), value)?;
        }
    }
    Ok(())
}

fn server_name_and_port<'py>(
    py: Python<'py>,
    host: &str,
) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
    LAST_HOST.with(|last| {
        if let Some((text, name, port)) = last.borrow().as_ref() {
            if text == host {
                return (name.bind(py).clone(), port.bind(py).clone());
            }
        }
        let (name, port) = split_host(host);
        let name = PyString::new(py, name);
        let port = port.map_or_else(|| intern!(py, "80").clone(), |port| PyString::new(py, port));
        *last.borrow_mut() = Some((
            host.to_owned(),
            name.clone().unbind(),
            port.clone().unbind(),
        ));
        (name, port)
    })
}

/// Split a Host header into name and port; the port defaults to the scheme's.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..].strip_prefix(':');
            return (&host[..end + 2], port.filter(|port| !port.is_empty()));
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() => (name, Some(port)),
        Some((name, _)) => (name, None),
        None => (host, None),
    }
}

impl EnvironTemplate {
    /// Build the constant keys once per worker.
    pub(crate) fn new(py: Python<'_>, config: &Config) -> PyResult<Self> {
        let http = constant_keys(py, config)?;
        for key in HTTP_REQUEST_KEYS {
            if http.get_item(key)?.is_none() {
                http.set_item(key, "")?;
            }
        }
        // The usual values: requests served directly set these only when they differ.
        http.set_item("REQUEST_METHOD", "GET")?;
        http.set_item("SERVER_PROTOCOL", "HTTP/1.1")?;
        // A dict copy keeps its source's table size when few of its entries
        // are deleted ones (CPython's PyDict_Copy fast path): growing the
        // template and deleting the extra keys leaves spare room in every copy.
        for spare in 0..SPARE_SLOTS {
            http.set_item(format!("rwsgi.spare{spare}"), "")?;
        }
        for spare in 0..SPARE_SLOTS {
            http.del_item(format!("rwsgi.spare{spare}"))?;
        }
        Ok(Self {
            http: http.unbind(),
            uwsgi: constant_keys(py, config)?.unbind(),
        })
    }

    /// A connection's cached strings, made on its first request; for a
    /// directly served one also its own environ template.
    pub(crate) fn peer_strings(&self, py: Python<'_>, request: &Request) -> PyResult<PeerStrings> {
        let mut strings = PeerStrings::new(py, request);
        if let Head::Raw(head) = &request.head {
            let environ = self.http.bind(py).copy()?;
            environ.set_item(intern!(py, "REMOTE_ADDR"), strings.remote_addr.bind(py))?;
            environ.set_item(intern!(py, "REMOTE_PORT"), strings.remote_port.bind(py))?;
            let host = set_server_keys(py, &environ, head, &strings)?;
            strings.connection = Some(ConnectionTemplate {
                environ: environ.unbind(),
                host: host.map(Into::into),
                recent: Mutex::default(),
            });
        }
        Ok(strings)
    }

    /// The environ for one request; `peer` is the connection's cached strings (HTTP only).
    pub(crate) fn build<'py>(
        &self,
        py: Python<'py>,
        request: &Request,
        peer: Option<&PeerStrings>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let base = match (
            &request.head,
            peer.and_then(|peer| peer.connection.as_ref()),
        ) {
            (Head::Raw(_), Some(connection)) => &connection.environ,
            (Head::Http(_) | Head::Raw(_), _) => &self.http,
            (Head::Uwsgi { .. }, _) => &self.uwsgi,
        };
        let environ = base.bind(py).copy()?;
        match (&request.head, peer) {
            (Head::Http(head), Some(peer)) => fill_http(py, &environ, head, request, peer)?,
            (Head::Http(head), None) => {
                fill_http(py, &environ, head, request, &PeerStrings::new(py, request))?;
            }
            (Head::Raw(head), Some(peer)) => fill_raw(py, &environ, head, peer)?,
            (Head::Raw(head), None) => {
                fill_raw(py, &environ, head, &PeerStrings::new(py, request))?;
            }
            (Head::Uwsgi { vars, modifier1 }, _) => fill_uwsgi(py, &environ, vars, *modifier1)?,
        }
        if !request.body.is_empty() {
            let input = Bound::new(py, Input::new(RequestBody::Memory(request.body.clone())))?;
            environ.set_item(intern!(py, "wsgi.input"), input)?;
        }
        Ok(environ)
    }
}

fn var_key<'py>(py: Python<'py>, key: &[u8]) -> PyResult<Bound<'py, PyString>> {
    VAR_KEYS.with(|cache| {
        if let Some(found) = cache.borrow().get(key) {
            return Ok(found.bind(py).clone());
        }
        let text = latin1_str(py, key)?;
        let mut cache = cache.borrow_mut();
        if cache.len() < HEADER_KEY_CACHE {
            cache.insert(key.to_vec(), text.clone().unbind());
        }
        Ok(text)
    })
}

/// Whether a uwsgi `HTTPS` var means the client connection was encrypted.
fn https_on(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"on") || value == b"1" || value.eq_ignore_ascii_case(b"true")
}

/// The environ of a uwsgi request: the proxy's vars as given, then the keys
/// PEP 3333 requires that the proxy may have left out.
fn fill_uwsgi(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    vars: &Vars,
    modifier1: u8,
) -> PyResult<()> {
    for (key, value) in vars.iter() {
        environ.set_item(var_key(py, key)?, latin1_str(py, value)?)?;
    }
    let script_name = vars.get(b"SCRIPT_NAME").unwrap_or(b"");
    let path_info: Vec<u8> = match vars.get(b"PATH_INFO") {
        Some(path) => path.to_vec(),
        None => {
            let uri = vars.get(b"REQUEST_URI").unwrap_or(b"/");
            let path = uri.split(|&byte| byte == b'?').next().unwrap_or(b"/");
            percent_decode(path)
        }
    };
    let script_name = script_name.strip_suffix(b"/").unwrap_or(script_name);
    let path_info = if modifier1 == MODIFIER_STRIP_SCRIPT_NAME && !script_name.is_empty() {
        match path_info.strip_prefix(script_name) {
            Some(rest) if rest.is_empty() || rest.starts_with(b"/") => rest.to_vec(),
            _ => path_info,
        }
    } else {
        path_info
    };
    environ.set_item(intern!(py, "SCRIPT_NAME"), latin1_str(py, script_name)?)?;
    environ.set_item(intern!(py, "PATH_INFO"), latin1_str(py, &path_info)?)?;
    for (key, default) in [
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", ""),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
    ] {
        if !vars.iter().any(|(name, _)| name == key.as_bytes()) {
            environ.set_item(key, default)?;
        }
    }
    let https = vars.get(b"HTTPS").is_some_and(https_on)
        || vars
            .get(b"UWSGI_SCHEME")
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"https"))
        || vars
            .get(b"REQUEST_SCHEME")
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"https"));
    if https {
        environ.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
    }
    Ok(())
}

fn fill_http(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    head: &http::request::Parts,
    request: &Request,
    peer: &PeerStrings,
) -> PyResult<()> {
    environ.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, &head.method))?;
    let path = head.uri.path();
    let path_info = if path.contains('%') {
        latin1_str(py, &percent_decode(path.as_bytes()))?
    } else {
        PyString::new(py, path)
    };
    environ.set_item(intern!(py, "PATH_INFO"), path_info)?;
    let query = head.uri.query().unwrap_or("");
    environ.set_item(intern!(py, "QUERY_STRING"), PyString::new(py, query))?;
    let raw_uri = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let raw_uri = PyString::new(py, raw_uri);
    environ.set_item(intern!(py, "RAW_URI"), &raw_uri)?;
    environ.set_item(intern!(py, "REQUEST_URI"), raw_uri)?;
    let protocol = match head.version {
        Version::HTTP_10 => intern!(py, "HTTP/1.0"),
        Version::HTTP_09 => intern!(py, "HTTP/0.9"),
        _ => intern!(py, "HTTP/1.1"),
    };
    environ.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
    environ.set_item(intern!(py, "REMOTE_ADDR"), peer.remote_addr.bind(py))?;
    environ.set_item(intern!(py, "REMOTE_PORT"), peer.remote_port.bind(py))?;
    let host = head.headers.get(HOST).and_then(|host| host.to_str().ok());
    set_server_name(py, environ, host, peer)?;
    set_headers(py, environ, &head.headers)?;
    if request.body_was_chunked
        || (!request.body.is_empty() && !head.headers.contains_key(CONTENT_LENGTH))
    {
        environ.set_item(
            intern!(py, "CONTENT_LENGTH"),
            request.body.len().to_string(),
        )?;
    }
    Ok(())
}

fn raw_method<'py>(py: Python<'py>, method: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let interned = match method {
        b"GET" => intern!(py, "GET"),
        b"POST" => intern!(py, "POST"),
        b"HEAD" => intern!(py, "HEAD"),
        b"PUT" => intern!(py, "PUT"),
        b"DELETE" => intern!(py, "DELETE"),
        b"PATCH" => intern!(py, "PATCH"),
        b"OPTIONS" => intern!(py, "OPTIONS"),
        _ => return latin1_str(py, method),
    };
    Ok(interned.clone())
}

fn raw_header_key<'py>(py: Python<'py>, name: &[u8]) -> Bound<'py, PyString> {
    RAW_HEADER_KEYS.with(|cache| {
        if let Some(key) = cache.borrow().get(name) {
            return key.bind(py).clone();
        }
        let mut text = String::with_capacity(5 + name.len());
        text.push_str("HTTP_");
        // Header names are tokens (ASCII), checked by the parser.
        text.extend(name.iter().map(|&byte| {
            if byte == b'-' {
                '_'
            } else {
                char::from(byte.to_ascii_uppercase())
            }
        }));
        let key = PyString::intern(py, &text);
        let mut cache = cache.borrow_mut();
        if cache.len() < HEADER_KEY_CACHE {
            cache.insert(name.into(), key.clone().unbind());
        }
        key
    })
}

/// A connection's last request's header fields as Python strings: clients
/// repeat most of them on every request of a connection (Host, User-Agent,
/// Accept..., cookies), and reusing the strings skips decoding, allocating
/// and freeing them again (and the key lookup).
#[derive(Default)]
struct RecentFields {
    fields: Vec<Option<RecentField>>,
    bytes: usize,
}

struct RecentField {
    name: Box<[u8]>,
    value: Box<[u8]>,
    key: Py<PyString>,
    text: Py<PyString>,
}

/// Bytes of header text one connection remembers.
const RECENT_FIELD_BYTES: usize = 8 * 1024;

impl RecentFields {
    fn get(&self, index: usize, name: &[u8], value: &[u8]) -> Option<&RecentField> {
        self.fields
            .get(index)?
            .as_ref()
            .filter(|field| *field.name == *name && *field.value == *value)
    }

    fn remember(
        &mut self,
        index: usize,
        field: (&[u8], &[u8]),
        key: &Bound<'_, PyString>,
        text: &Bound<'_, PyString>,
    ) {
        if index >= self.fields.len() {
            self.fields.resize_with(index + 1, || None);
        }
        if let Some(old) = self.fields[index].take() {
            self.bytes -= old.name.len() + old.value.len();
        }
        let (name, value) = field;
        let size = name.len() + value.len();
        if self.bytes + size > RECENT_FIELD_BYTES {
            return;
        }
        self.bytes += size;
        self.fields[index] = Some(RecentField {
            name: name.into(),
            value: value.into(),
            key: key.clone().unbind(),
            text: text.clone().unbind(),
        });
    }
}

/// The headers of a directly served request, as `set_headers` does for
/// hyper's: repeated names joined with ", " (wherever they appear), names
/// with "_" dropped. `recent` is the connection's memory of its last request.
fn set_raw_headers(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    head: &RawHead,
    recent: Option<&Mutex<RecentFields>>,
) -> PyResult<()> {
    let mut recent = recent.map(Mutex::lock);
    let count = head.field_count();
    for index in 0..count {
        let (name, value) = head.field(index);
        if name.contains(&b'_')
            || (0..index).any(|earlier| head.field(earlier).0.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let mut joined: Option<Vec<u8>> = None;
        for later in index + 1..count {
            let (other, more) = head.field(later);
            if other.eq_ignore_ascii_case(name) {
                let buffer = joined.get_or_insert_with(|| value.to_vec());
                buffer.extend_from_slice(b", ");
                buffer.extend_from_slice(more);
            }
        }
        if joined.is_none() {
            if let Some(known) = recent.as_ref().and_then(|r| r.get(index, name, value)) {
                environ.set_item(known.key.bind(py), known.text.bind(py))?;
                continue;
            }
        }
        let text = latin1_str(py, joined.as_deref().unwrap_or(value))?;
        let key = if name.eq_ignore_ascii_case(b"content-type") {
            intern!(py, "CONTENT_TYPE").clone()
        } else if name.eq_ignore_ascii_case(b"content-length") {
            intern!(py, "CONTENT_LENGTH").clone()
        } else {
            raw_header_key(py, name)
        };
        environ.set_item(&key, &text)?;
        if joined.is_none() {
            if let Some(recent) = recent.as_mut() {
                recent.remember(index, (name, value), &key, &text);
            }
        }
    }
    Ok(())
}

/// SERVER_NAME and SERVER_PORT from the Host header (or the listener's
/// address without one); returns the Host header used.
fn set_server_keys<'a>(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    head: &'a RawHead,
    peer: &PeerStrings,
) -> PyResult<Option<&'a [u8]>> {
    let host = head.get(b"host");
    let text = host
        .filter(|host| {
            host.iter()
                .all(|&byte| byte == b'\t' || (b' '..=b'~').contains(&byte))
        })
        .and_then(|host| std::str::from_utf8(host).ok());
    set_server_name(py, environ, text, peer)?;
    Ok(host)
}

/// SERVER_NAME and SERVER_PORT from a Host header's text, or the listener's
/// address when there is none (both HTTP paths).
fn set_server_name(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    host: Option<&str>,
    peer: &PeerStrings,
) -> PyResult<()> {
    if let Some(host) = host {
        let (name, port) = server_name_and_port(py, host);
        environ.set_item(intern!(py, "SERVER_NAME"), name)?;
        environ.set_item(intern!(py, "SERVER_PORT"), port)
    } else {
        environ.set_item(intern!(py, "SERVER_NAME"), peer.local_addr.bind(py))?;
        environ.set_item(intern!(py, "SERVER_PORT"), peer.local_port.bind(py))
    }
}

/// The environ of a directly served request (see `http::head`): the same
/// keys and values `fill_http` makes from hyper's parse.
fn fill_raw(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    head: &RawHead,
    peer: &PeerStrings,
) -> PyResult<()> {
    let method = head.method();
    if method != b"GET" {
        environ.set_item(intern!(py, "REQUEST_METHOD"), raw_method(py, method)?)?;
    }
    let target = head.target();
    let (path, query) = match target.iter().position(|&byte| byte == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, &b""[..]),
    };
    let path_info = if path.contains(&b'%') {
        latin1_str(py, &percent_decode(path))?
    } else {
        latin1_str(py, path)?
    };
    environ.set_item(intern!(py, "PATH_INFO"), path_info)?;
    if !query.is_empty() {
        environ.set_item(intern!(py, "QUERY_STRING"), latin1_str(py, query)?)?;
    }
    let raw_uri = latin1_str(py, target)?;
    environ.set_item(intern!(py, "RAW_URI"), &raw_uri)?;
    environ.set_item(intern!(py, "REQUEST_URI"), raw_uri)?;
    match &peer.connection {
        Some(connection) => {
            if head.get(b"host") != connection.host.as_deref() {
                set_server_keys(py, environ, head, peer)?;
            }
        }
        None => {
            environ.set_item(intern!(py, "REMOTE_ADDR"), peer.remote_addr.bind(py))?;
            environ.set_item(intern!(py, "REMOTE_PORT"), peer.remote_port.bind(py))?;
            set_server_keys(py, environ, head, peer)?;
        }
    }
    let recent = peer
        .connection
        .as_ref()
        .map(|connection| &connection.recent);
    set_raw_headers(py, environ, head, recent)
}

/// The connection's address strings, made once per connection and reused by its requests.
pub(crate) struct PeerStrings {
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    local_addr: Py<PyString>,
    local_port: Py<PyString>,
    /// For directly served connections: the worker's template with this
    /// connection's REMOTE_* and its first Host's SERVER_* already set, so
    /// each request copies them instead of setting four keys.
    connection: Option<ConnectionTemplate>,
}

/// A per-connection environ template and the Host header it was made for.
struct ConnectionTemplate {
    environ: Py<PyDict>,
    host: Option<Box<[u8]>>,
    recent: Mutex<RecentFields>,
}

impl PeerStrings {
    pub(crate) fn new(py: Python<'_>, request: &Request) -> Self {
        let text = |value: String| PyString::new(py, &value).unbind();
        let (remote_addr, remote_port) = match request.peer {
            Peer::Tcp(address) => (address.ip().to_string(), address.port().to_string()),
            Peer::Unix => (String::new(), String::new()),
        };
        let (local_addr, local_port) = request.local.map_or_else(
            || ("localhost".to_owned(), "80".to_owned()),
            |local| (local.ip().to_string(), local.port().to_string()),
        );
        Self {
            remote_addr: text(remote_addr),
            remote_port: text(remote_port),
            local_addr: text(local_addr),
            local_port: text(local_port),
            connection: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn splits_host_headers() {
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(
            split_host("example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_host("[::1]:8000"), ("[::1]", Some("8000")));
        assert_eq!(split_host("[::1]"), ("[::1]", None));
        assert_eq!(split_host("host:"), ("host", None));
    }
}
