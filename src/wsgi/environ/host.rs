//! SERVER_NAME and SERVER_PORT from a Host header: parsed, and the strings
//! made from the last Host seen on this thread kept, since nearly every
//! request repeats its connection's (or its site's) Host.

use std::cell::RefCell;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// A Host header's text with the SERVER_NAME and SERVER_PORT strings made from it.
type HostStrings = (Box<[u8]>, Py<PyString>, Py<PyString>);

thread_local! {
    static LAST_HOST: RefCell<Option<HostStrings>> = const { RefCell::new(None) };
}

/// Split a Host header into name and port; no port means the scheme's.
pub(crate) fn split_host(host: &str) -> (&str, Option<&str>) {
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

/// The SERVER_NAME and SERVER_PORT strings for a Host header's bytes, or
/// `None` when it is not printable ASCII (then the listener's address is used).
pub(crate) fn server_name_and_port<'py>(
    py: Python<'py>,
    host: &[u8],
) -> Option<(Bound<'py, PyString>, Bound<'py, PyString>)> {
    if !host
        .iter()
        .all(|&byte| byte == b'\t' || (b' '..=b'~').contains(&byte))
    {
        return None;
    }
    let text = std::str::from_utf8(host).ok()?;
    LAST_HOST.with(|last| {
        if let Some((seen, name, port)) = last.borrow().as_ref() {
            if **seen == *host {
                return Some((name.bind(py).clone(), port.bind(py).clone()));
            }
        }
        let (name, port) = split_host(text);
        let name = PyString::new(py, name);
        let port = port.map_or_else(|| intern!(py, "80").clone(), |port| PyString::new(py, port));
        *last.borrow_mut() = Some((host.into(), name.clone().unbind(), port.clone().unbind()));
        Some((name, port))
    })
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
