//! Building the WSGI environ from the protocol-neutral request: one builder
//! for every protocol. The worker's template is copied, then the request's
//! own keys are set: the request line, the connection's addresses (unless a
//! proxy sent them as CGI variables), `HTTP_*` keys from header fields, a
//! proxy's CGI variables as they are, and the body.

mod host;
mod keys;
mod recent;
mod strings;
pub(crate) mod template;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::request::{Protocol, Request, RequestHead};
use crate::wsgi::input::Input;
use recent::RecentFields;
use strings::{latin1_str, method_str};
use template::{set_remote, ConnectionTemplate, PeerStrings};
pub(crate) use template::{ConnectionCache, EnvironTemplate};

/// The environ for one request; `cache` is its connection's.
pub(crate) fn build<'py>(
    py: Python<'py>,
    template: &EnvironTemplate,
    request: &mut Request,
    cache: &mut ConnectionCache,
) -> PyResult<Bound<'py, PyDict>> {
    let head = &request.head;
    let environ = if head.from_proxy {
        let environ = template.proxied.bind(py).copy()?;
        set_request_line(py, &environ, head)?;
        set_headers(py, &environ, head, None)?;
        for (name, value) in head.cgi() {
            environ.set_item(keys::var_key(py, name)?, latin1_str(py, value)?)?;
        }
        environ
    } else if cache.first_request() {
        let strings = PeerStrings::new(py, request);
        let environ = template.direct.bind(py).copy()?;
        set_request_line(py, &environ, head)?;
        set_remote(py, &environ, &strings)?;
        set_server_name(py, &environ, head.header(b"host"), &strings)?;
        set_headers(py, &environ, head, None)?;
        environ
    } else {
        if cache.template.is_none() {
            let peer = cache.peer(py, request);
            let environ = template.direct.bind(py).copy()?;
            set_remote(py, &environ, peer)?;
            let host = head.header(b"host");
            set_server_name(py, &environ, host, peer)?;
            cache.template = Some(ConnectionTemplate {
                environ: environ.unbind(),
                host: host.map(bytes::Bytes::copy_from_slice),
                recent: RecentFields::default(),
            });
        }
        let (Some(peer), Some(connection)) = (cache.peer.as_ref(), cache.template.as_mut()) else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "no connection template",
            ));
        };
        let environ = connection.environ.bind(py).copy()?;
        set_request_line(py, &environ, head)?;
        let host = head.header(b"host");
        if host != connection.host.as_deref() {
            set_server_name(py, &environ, host, peer)?;
        }
        set_headers(py, &environ, head, Some(&mut connection.recent))?;
        environ
    };
    if request.counted_length {
        environ.set_item(
            intern!(py, "CONTENT_LENGTH"),
            request.body.len().to_string(),
        )?;
    }
    if !request.body.is_empty() {
        let body = std::mem::replace(&mut request.body, crate::body::RequestBody::Empty);
        let input = Bound::new(py, Input::new(body))?;
        environ.set_item(intern!(py, "wsgi.input"), input)?;
    }
    Ok(environ)
}

/// The keys from the request line (and a proxy's mount prefix and scheme).
fn set_request_line(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    head: &RequestHead,
) -> PyResult<()> {
    let method = head.method();
    if !method.is_empty() && method != b"GET" {
        environ.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, method)?)?;
    }
    environ.set_item(intern!(py, "PATH_INFO"), latin1_str(py, head.path())?)?;
    let query = head.query();
    if !query.is_empty() {
        environ.set_item(intern!(py, "QUERY_STRING"), latin1_str(py, query)?)?;
    }
    let uri = latin1_str(py, head.uri())?;
    environ.set_item(intern!(py, "RAW_URI"), &uri)?;
    environ.set_item(intern!(py, "REQUEST_URI"), uri)?;
    match &head.protocol {
        Protocol::Http11 => {}
        Protocol::Http10 => {
            environ.set_item(intern!(py, "SERVER_PROTOCOL"), intern!(py, "HTTP/1.0"))?;
        }
        Protocol::Other(span) => {
            environ.set_item(
                intern!(py, "SERVER_PROTOCOL"),
                latin1_str(py, head.slice(span))?,
            )?;
        }
    }
    let script_name = head.script_name();
    if !script_name.is_empty() {
        environ.set_item(intern!(py, "SCRIPT_NAME"), latin1_str(py, script_name)?)?;
    }
    if head.https {
        environ.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
    }
    Ok(())
}

/// SERVER_NAME and SERVER_PORT from the Host header, or the listener's
/// address when there is none (or it is not printable).
fn set_server_name(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    host: Option<&[u8]>,
    peer: &PeerStrings,
) -> PyResult<()> {
    let (name, port) = host
        .and_then(|host| host::server_name_and_port(py, host))
        .unwrap_or_else(|| {
            (
                peer.local_addr.bind(py).clone(),
                peer.local_port.bind(py).clone(),
            )
        });
    environ.set_item(intern!(py, "SERVER_NAME"), name)?;
    environ.set_item(intern!(py, "SERVER_PORT"), port)
}

/// The header fields as `HTTP_*` keys (CONTENT_TYPE and CONTENT_LENGTH
/// without the prefix): repeated names joined with ", " wherever they
/// appear, names with "_" dropped (they would collide with their "-" twin,
/// letting a client spoof a header a proxy set). `recent` is the
/// connection's memory of its last request.
fn set_headers(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    head: &RequestHead,
    mut recent: Option<&mut RecentFields>,
) -> PyResult<()> {
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
            keys::header_key(py, name)?
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
