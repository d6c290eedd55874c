//! Request bytes as Python strings, the way PEP 3333 asks: each byte one
//! latin-1 character; the common methods interned.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Make a `str` from bytes, each byte one latin-1 character. (CPython's
/// latin-1 decoder is a scan and a copy: cheaper than checking for UTF-8 or
/// ASCII first.)
pub(crate) fn latin1_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let length = isize::try_from(bytes.len()).map_err(|_| PyErr::fetch(py))?;
    // SAFETY: the pointer and length describe `bytes`, alive for the call; the
    // result is a new reference or NULL with an exception set.
    unsafe {
        let raw = ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), length, std::ptr::null());
        Bound::from_owned_ptr_or_err(py, raw).map(|any| any.cast_into_unchecked())
    }
}

/// REQUEST_METHOD: the usual ones interned.
pub(crate) fn method_str<'py>(py: Python<'py>, method: &[u8]) -> PyResult<Bound<'py, PyString>> {
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
