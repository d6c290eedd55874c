//! The parts of an environ made ahead of the request: the worker's template
//! dicts of the keys that never change (copied per request: measured about
//! 10% of hello-world throughput over inserting every key each time), and a
//! connection's cache of its address strings and, once it has shown it
//! keeps its connection open, its own template and recent header strings.

use bytes::Bytes;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::recent::RecentFields;
use crate::config::Config;
use crate::request::{Peer, Request};
use crate::wsgi::errors::ErrorStream;
use crate::wsgi::file_wrapper::FileWrapper;
use crate::wsgi::input::Input;

/// The server's name in `SERVER_SOFTWARE`.
const SOFTWARE: &str = concat!("rwsgi/", env!("CARGO_PKG_VERSION"));

/// Keys every directly served request sets, made present (with placeholder
/// values) in the template so filling a copy never grows it.
const REQUEST_KEYS: [&str; 11] = [
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

/// The part of every environ that is the same for all requests of a worker.
pub(crate) struct EnvironTemplate {
    /// For requests whose connection variables are ours.
    pub direct: Py<PyDict>,
    /// For requests whose CGI variables a proxy made (defaults for what it left out).
    pub proxied: Py<PyDict>,
}

fn constant_keys<'py>(py: Python<'py>, config: &Config) -> PyResult<Bound<'py, PyDict>> {
    let base = PyDict::new(py);
    base.set_item("SCRIPT_NAME", "")?;
    base.set_item("SERVER_SOFTWARE", SOFTWARE)?;
    base.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
    base.set_item("wsgi.url_scheme", "http")?;
    // One stream per template: its lines go to the server log at ERROR.
    base.set_item("wsgi.errors", Py::new(py, ErrorStream::default())?)?;
    base.set_item("wsgi.multithread", config.threads > 1)?;
    base.set_item("wsgi.multiprocess", config.workers > 1)?;
    base.set_item("wsgi.run_once", false)?;
    base.set_item("wsgi.input_terminated", true)?;
    base.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
    // Requests without a body share one empty input: it has nothing to read,
    // so it has no state to share, and most requests skip making one.
    base.set_item(
        "wsgi.input",
        Bound::new(py, Input::new(crate::body::RequestBody::Empty))?,
    )?;
    base.set_item("REQUEST_METHOD", "GET")?;
    base.set_item("SERVER_PROTOCOL", "HTTP/1.1")?;
    base.set_item("QUERY_STRING", "")?;
    Ok(base)
}

impl EnvironTemplate {
    /// Build the constant keys once per worker.
    pub(crate) fn new(py: Python<'_>, config: &Config) -> PyResult<Self> {
        let direct = constant_keys(py, config)?;
        for key in REQUEST_KEYS {
            if direct.get_item(key)?.is_none() {
                direct.set_item(key, "")?;
            }
        }
        // A dict copy keeps its source's table size when few of its entries
        // are deleted ones (CPython's PyDict_Copy fast path): growing the
        // template and deleting the extra keys leaves spare room in every copy.
        for spare in 0..SPARE_SLOTS {
            direct.set_item(format!("rwsgi.spare{spare}"), "")?;
        }
        for spare in 0..SPARE_SLOTS {
            direct.del_item(format!("rwsgi.spare{spare}"))?;
        }
        let proxied = constant_keys(py, config)?;
        proxied.set_item("SERVER_NAME", "localhost")?;
        proxied.set_item("SERVER_PORT", "80")?;
        Ok(Self {
            direct: direct.unbind(),
            proxied: proxied.unbind(),
        })
    }
}

/// A connection's address strings, made on its first request.
pub(crate) struct PeerStrings {
    pub remote_addr: Py<PyString>,
    pub remote_port: Py<PyString>,
    pub local_addr: Py<PyString>,
    pub local_port: Py<PyString>,
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
        }
    }
}

/// A connection's own template: the worker's with this connection's
/// REMOTE_* and its Host's SERVER_* already set, so each request copies them
/// instead of setting four keys.
pub(crate) struct ConnectionTemplate {
    pub environ: Py<PyDict>,
    /// The Host header the SERVER_* keys were made from.
    pub host: Option<Bytes>,
    pub recent: RecentFields,
}

/// What one connection keeps between its requests. Made lazily: a
/// connection that made one request keeps nothing (10,000 idle keep-alive
/// connections are a common sight behind a load balancer), and one that
/// makes a second gets its address strings and the template (about 2 KiB)
/// that make its later requests cheaper.
#[derive(Default)]
pub(crate) struct ConnectionCache {
    requests: u32,
    pub(crate) peer: Option<PeerStrings>,
    pub(crate) template: Option<ConnectionTemplate>,
}

impl ConnectionCache {
    /// The address strings, made on first use.
    pub(crate) fn peer(&mut self, py: Python<'_>, request: &Request) -> &PeerStrings {
        self.peer
            .get_or_insert_with(|| PeerStrings::new(py, request))
    }

    /// Count a request; true for the first one, whose strings are not kept.
    pub(crate) fn first_request(&mut self) -> bool {
        self.requests = self.requests.saturating_add(1);
        self.requests == 1
    }
}

/// Set the address keys of a directly served request.
pub(crate) fn set_remote(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    peer: &PeerStrings,
) -> PyResult<()> {
    environ.set_item(intern!(py, "REMOTE_ADDR"), peer.remote_addr.bind(py))?;
    environ.set_item(intern!(py, "REMOTE_PORT"), peer.remote_port.bind(py))
}
