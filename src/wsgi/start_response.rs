//! `start_response` and the legacy `write()` callable: they check what the app
//! gives (status line, header names and values) and keep it, in Rust types,
//! until the first body bytes commit the response head.

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// What `start_response` recorded.
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    /// Set only when the app's reason phrase differs from the standard one.
    pub reason: Option<Bytes>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The `start_response` callable handed to the app, one per request.
#[pyclass(module = "rwsgi._rwsgi", name = "StartResponse")]
pub(crate) struct StartResponse {
    pub(crate) head: Option<ResponseHead>,
    /// Once true, the head is on its way to the client and can no longer change.
    pub(crate) head_sent: bool,
    /// Bytes given to `write()`; they go out before the returned iterable's.
    pub(crate) written: BytesMut,
}

impl StartResponse {
    pub(crate) fn new() -> Self {
        Self {
            head: None,
            head_sent: false,
            written: BytesMut::new(),
        }
    }

    /// Make a used one as good as new (see `wsgi::start_response`).
    pub(crate) fn reset(&mut self) {
        self.head = None;
        self.head_sent = false;
        self.written = BytesMut::new();
    }
}

/// Encode a native string as latin-1 bytes, as PEP 3333 requires of header text.
pub(crate) fn latin1_bytes<'a>(
    text: &'a Bound<'_, PyString>,
    what: &str,
) -> PyResult<Cow<'a, [u8]>> {
    let utf8 = text.to_str()?;
    if utf8.is_ascii() {
        return Ok(Cow::Borrowed(utf8.as_bytes()));
    }
    utf8.chars()
        .map(|ch| {
            u8::try_from(u32::from(ch)).map_err(|_| {
                PyValueError::new_err(format!("{what} {utf8:?} has a character outside latin-1"))
            })
        })
        .collect::<PyResult<Vec<u8>>>()
        .map(Cow::Owned)
}

/// Parse `"200 OK"`: three digits, then a space and a reason phrase (which may be empty).
pub(crate) fn parse_status(status: &[u8]) -> Result<(StatusCode, Option<Bytes>), String> {
    let invalid = || {
        format!(
            "invalid status {:?}: expected '<3-digit code> <reason>'",
            String::from_utf8_lossy(status)
        )
    };
    if status.len() < 3 || !status[..3].iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let code = StatusCode::from_bytes(&status[..3]).map_err(|_| invalid())?;
    if code.as_u16() < 100 {
        return Err(invalid());
    }
    let reason = match &status[3..] {
        [] => None,
        [b' ', reason @ ..] => {
            if reason
                .iter()
                .any(|&byte| byte == b'\r' || byte == b'\n' || byte == 0)
            {
                return Err(invalid());
            }
            if code
                .canonical_reason()
                .is_some_and(|canonical| canonical.as_bytes() == reason)
            {
                None
            } else {
                Some(Bytes::copy_from_slice(reason))
            }
        }
        _ => return Err(invalid()),
    };
    Ok((code, reason))
}

/// Most apps pass the same `str` objects (literals) as header names and many
/// values on every request: remembering what each object parsed to skips
/// validating and copying it again. Entries are keyed by object identity and
/// hold a reference, so an address cannot be reused by another string while
/// it is remembered. An object is remembered once it has been seen twice, so
/// strings built per request (a Content-Length) do not fill the cache.
struct ParsedStrings<T> {
    entries: Vec<(Py<PyString>, T)>,
    /// The last strings seen once, most recent last.
    seen_once: Vec<Py<PyString>>,
}

/// How many distinct name and value objects each thread remembers.
const PARSED_CACHE: usize = 64;
/// How many strings seen once are kept as candidates.
const CANDIDATES: usize = 8;

impl<T: Clone> ParsedStrings<T> {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
            seen_once: Vec::new(),
        }
    }

    fn get_or_parse(
        &mut self,
        text: &Bound<'_, PyString>,
        parse: impl FnOnce(&Bound<'_, PyString>) -> PyResult<T>,
    ) -> PyResult<T> {
        let pointer = text.as_ptr();
        if let Some((_, parsed)) = self
            .entries
            .iter()
            .find(|(known, _)| known.as_ptr() == pointer)
        {
            return Ok(parsed.clone());
        }
        let parsed = parse(text)?;
        if self.entries.len() < PARSED_CACHE {
            if let Some(index) = self
                .seen_once
                .iter()
                .position(|seen| seen.as_ptr() == pointer)
            {
                let known = self.seen_once.remove(index);
                self.entries.push((known, parsed.clone()));
            } else {
                if self.seen_once.len() == CANDIDATES {
                    self.seen_once.remove(0);
                }
                self.seen_once.push(text.clone().unbind());
            }
        }
        Ok(parsed)
    }
}

thread_local! {
    static HEADER_NAMES: RefCell<ParsedStrings<HeaderName>> = const { RefCell::new(ParsedStrings::new()) };
    static HEADER_VALUES: RefCell<ParsedStrings<HeaderValue>> = const { RefCell::new(ParsedStrings::new()) };
}

fn parse_name(name: &Bound<'_, PyString>) -> PyResult<HeaderName> {
    let bytes = latin1_bytes(name, "response header name")?;
    HeaderName::from_bytes(&bytes)
        .map_err(|_| PyValueError::new_err(format!("invalid response header name {name:?}")))
}

fn parse_value(value: &Bound<'_, PyString>) -> PyResult<HeaderValue> {
    let bytes = latin1_bytes(value, "response header value")?;
    HeaderValue::from_bytes(&bytes).map_err(|_| {
        PyValueError::new_err(format!(
            "invalid response header value {value:?}: control characters (CR, LF...) are not allowed"
        ))
    })
}

fn parse_header(item: &Bound<'_, PyAny>) -> PyResult<(HeaderName, HeaderValue)> {
    let pair = item
        .cast::<PyTuple>()
        .map_err(|_| PyTypeError::new_err("each response header must be a (name, value) tuple"))?;
    if pair.len() != 2 {
        return Err(PyTypeError::new_err(
            "each response header must be a (name, value) tuple",
        ));
    }
    let name = pair.get_item(0)?;
    let value = pair.get_item(1)?;
    let name = name
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("response header names must be str"))?;
    let value = value.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!("response header {name} must have a str value"))
    })?;
    let header_name =
        HEADER_NAMES.with(|cache| cache.borrow_mut().get_or_parse(name, parse_name))?;
    let header_value =
        HEADER_VALUES.with(|cache| cache.borrow_mut().get_or_parse(value, parse_value))?;
    Ok((header_name, header_value))
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(HeaderName, HeaderValue)>> {
    if let Ok(list) = headers.cast::<PyList>() {
        return list.iter().map(|item| parse_header(&item)).collect();
    }
    headers
        .try_iter()
        .map_err(|_| {
            PyTypeError::new_err("response headers must be a list of (name, value) tuples")
        })?
        .map(|item| parse_header(&item?))
        .collect()
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, headers, exc_info=None)`. It returns itself as
    /// the `write()` callable: called with one bytes argument it writes. That
    /// spares a bound-method object per request.
    #[pyo3(signature = (status, headers = None, exc_info = None))]
    fn __call__(
        slf: Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: Option<&Bound<'_, PyAny>>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(headers) = headers else {
            if status.is_instance_of::<PyBytes>() {
                slf.borrow_mut().write(status)?;
                return Ok(slf.py().None());
            }
            return Err(PyTypeError::new_err(
                "start_response() takes (status, headers[, exc_info]); write() takes bytes",
            ));
        };
        let exc_info = exc_info.filter(|info| !info.is_none());
        {
            let this = slf.borrow();
            if let Some(info) = exc_info {
                if this.head_sent {
                    let error = info.get_item(1)?;
                    return Err(PyErr::from_value(error));
                }
            } else if this.head.is_some() {
                return Err(PyRuntimeError::new_err(
                    "start_response() called a second time without exc_info",
                ));
            }
        }
        let status = status
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("status must be a str such as '200 OK'"))?;
        let (code, reason) =
            parse_status(status.to_str()?.as_bytes()).map_err(PyValueError::new_err)?;
        let headers = parse_headers(headers)?;
        slf.borrow_mut().head = Some(ResponseHead {
            status: code,
            reason,
            headers,
        });
        Ok(slf.into_any().unbind())
    }

    /// The legacy `write()` callable: its bytes precede those of the returned iterable.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.head.is_none() {
            return Err(PyRuntimeError::new_err(
                "write() called before start_response()",
            ));
        }
        let data = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        self.head_sent = true;
        self.written.extend_from_slice(data.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_status;

    #[test]
    fn parses_statuses() {
        assert_eq!(parse_status(b"200 OK").unwrap().0.as_u16(), 200);
        assert!(parse_status(b"200 OK").unwrap().1.is_none());
        assert_eq!(
            parse_status(b"200 Fine").unwrap().1.unwrap().as_ref(),
            b"Fine"
        );
        assert_eq!(parse_status(b"404").unwrap().0.as_u16(), 404);
        assert_eq!(parse_status(b"599 Custom").unwrap().0.as_u16(), 599);
        for bad in [
            &b"abc"[..],
            b"20 OK",
            b"200OK",
            b"099 Low",
            b"200 A\r\nB",
            b"",
            b"2000 X",
        ] {
            assert!(parse_status(bad).is_err(), "{bad:?}");
        }
    }
}
