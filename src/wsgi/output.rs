//! What the app returned, as the response module's body types: a Python
//! iterator pulled one chunk at a time as the socket drains, or a
//! `wsgi.file_wrapper` file read by Rust. Whatever the app returned has its
//! `close()` called exactly once: when the body ends, fails, or is dropped
//! because the client went away. Under `--harakiri`, each pull of an
//! iterator is watched like the app call, whose clock it continues.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator};

use super::timeout;
use crate::harakiri::{self, Outcome, Watch};
use crate::log;
use crate::response::{BodyStream, StreamError};

/// Bodies smaller than this are copied out of Python; larger ones are shared without a copy.
const COPY_LIMIT: usize = 16 * 1024;

/// A `bytes` object kept alive while its buffer is written, so large bodies
/// are never copied. The pointer and length are read once, under the GIL.
struct PyBytesOwner {
    data: *const u8,
    len: usize,
    _object: Py<PyBytes>,
}

// SAFETY: the buffer belongs to an immutable bytes object that `_object`
// keeps alive; reading it needs no interpreter lock, from any thread.
unsafe impl Send for PyBytesOwner {}
// SAFETY: as above: the buffer is never written after the object is made.
unsafe impl Sync for PyBytesOwner {}

impl AsRef<[u8]> for PyBytesOwner {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `data`/`len` describe the live object's immutable buffer.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

/// Turn a chunk from the app into `Bytes`, copying only small ones.
pub(crate) fn chunk_bytes(chunk: &Bound<'_, PyBytes>) -> Bytes {
    let data = chunk.as_bytes();
    if data.len() < COPY_LIMIT {
        Bytes::copy_from_slice(data)
    } else {
        Bytes::from_owner(PyBytesOwner {
            data: data.as_ptr(),
            len: data.len(),
            _object: chunk.clone().unbind(),
        })
    }
}

/// Call `close()` on what the app returned, logging (never raising) its errors.
pub(crate) fn close_result(py: Python<'_>, result: &Bound<'_, PyAny>) {
    if let Ok(close) = result.getattr(pyo3::intern!(py, "close")) {
        if let Err(error) = close.call0() {
            log::error("the response's close() raised:");
            error.print(py);
        }
    }
}

/// The object whose `close()` is owed, called when this is dropped.
pub(crate) struct CloseOnDrop(Option<Py<PyAny>>);

impl CloseOnDrop {
    pub(crate) fn new(result: Py<PyAny>) -> Self {
        Self(Some(result))
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(result) = self.0.take() {
            Python::attach(|py| close_result(py, result.bind(py)));
        }
    }
}

/// A Python iterator still producing the body.
pub(crate) struct IterBody {
    pending: Option<Bytes>,
    iterator: Option<Py<PyIterator>>,
    /// What the app returned: the object whose `close()` is owed.
    result: Option<Py<PyAny>>,
    /// The request's `--harakiri` clock, which runs on through the pulls.
    watch: Option<Watch>,
}

/// Why a pull gave no chunk.
enum Failure {
    NotBytes(String),
    Raised(PyErr),
}

impl IterBody {
    pub(crate) fn new(
        first: Option<Bytes>,
        iterator: Py<PyIterator>,
        result: Py<PyAny>,
        watch: Option<Watch>,
    ) -> Self {
        Self {
            pending: first,
            iterator: Some(iterator),
            result: Some(result),
            watch,
        }
    }

    fn finish(&mut self, py: Python<'_>) {
        self.iterator = None;
        if let Some(result) = self.result.take() {
            close_result(py, result.bind(py));
        }
    }
}

impl BodyStream for IterBody {
    fn next_chunk(&mut self) -> Option<Result<Bytes, StreamError>> {
        if let Some(chunk) = self.pending.take() {
            return Some(Ok(chunk));
        }
        self.iterator.as_ref()?;
        if let Some(watch) = self.watch.as_ref().filter(|watch| watch.expired()) {
            // Between pulls (the app yields quickly but never ends): the
            // watchdog only sees a thread inside Python, so cut here.
            log::error(&format!(
                "harakiri: {} ran longer than {:?}; its response had started: connection closed",
                watch.line().text(),
                watch.limit()
            ));
            Python::attach(|py| self.finish(py));
            return Some(Err(StreamError::App));
        }
        Python::attach(|py| {
            let token = self
                .watch
                .as_ref()
                .map(|watch| harakiri::enter(watch, true));
            let step = self.pull(py);
            if token.map(harakiri::leave) == Some(Outcome::TimedOut) {
                timeout::clear_pending(py);
                self.finish(py);
                return Some(Err(StreamError::App));
            }
            match step? {
                Ok(bytes) => Some(Ok(bytes)),
                Err(failure) => {
                    match failure {
                        Failure::NotBytes(kind) => log::error(&format!(
                            "the response iterable yielded {kind} instead of bytes; closing the connection"
                        )),
                        Failure::Raised(error) => {
                            log::error("the response iterable raised after the head was sent; closing the connection:");
                            error.print(py);
                        }
                    }
                    self.finish(py);
                    Some(Err(StreamError::App))
                }
            }
        })
    }
}

impl IterBody {
    /// The next non-empty chunk from the app's iterator; `None` at its end
    /// (then closed).
    fn pull(&mut self, py: Python<'_>) -> Option<Result<Bytes, Failure>> {
        loop {
            let iterator = self.iterator.as_ref()?;
            let step = iterator.bind(py).clone().next();
            match step {
                None => {
                    self.finish(py);
                    return None;
                }
                Some(Ok(chunk)) => match chunk.cast::<PyBytes>() {
                    Ok(bytes) if bytes.as_bytes().is_empty() => {}
                    Ok(bytes) => return Some(Ok(chunk_bytes(bytes))),
                    Err(_) => {
                        let kind = chunk
                            .get_type()
                            .name()
                            .map_or_else(|_| "?".into(), |n| n.to_string());
                        return Some(Err(Failure::NotBytes(kind)));
                    }
                },
                Some(Err(error)) => return Some(Err(Failure::Raised(error))),
            }
        }
    }
}

impl Drop for IterBody {
    fn drop(&mut self) {
        if self.result.is_some() || self.iterator.is_some() {
            Python::attach(|py| self.finish(py));
        }
    }
}
