//! The response body: bytes the app returned, a Python iterator pulled one
//! chunk at a time as the socket can take it, or a file streamed by Rust.
//! Whatever the app returned has its `close()` called exactly once, when the
//! body ends, fails, or is dropped because the client went away.

use std::fs::File;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator};

use crate::log;

/// Chunk size for files sent through `wsgi.file_wrapper`.
const FILE_CHUNK: usize = 256 * 1024;
/// Bodies smaller than this are copied out of Python; larger ones are shared without a copy.
const COPY_LIMIT: usize = 16 * 1024;

/// Why a body stopped before its end; hyper then closes the connection.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The app's iterator raised (already logged with its traceback).
    App,
    /// Reading a file for `wsgi.file_wrapper` failed.
    File(std::io::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::App => f.write_str("the app's response iterator raised"),
            Self::File(error) => write!(f, "reading the file to send failed: {error}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A `bytes` object kept alive while hyper writes it, so large bodies are never copied.
struct PyBytesOwner(Py<PyBytes>);

impl AsRef<[u8]> for PyBytesOwner {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: a bytes object is immutable and this reference keeps it alive;
        // reading its buffer needs no interpreter lock.
        unsafe {
            let raw = self.0.as_ptr();
            let data = pyo3::ffi::PyBytes_AsString(raw);
            let size = pyo3::ffi::PyBytes_Size(raw);
            std::slice::from_raw_parts(data.cast::<u8>(), size as usize)
        }
    }
}

/// Turn a chunk from the app into `Bytes`, copying only small ones.
pub(crate) fn chunk_bytes(chunk: &Bound<'_, PyBytes>) -> Bytes {
    let data = chunk.as_bytes();
    if data.len() < COPY_LIMIT {
        Bytes::copy_from_slice(data)
    } else {
        Bytes::from_owner(PyBytesOwner(chunk.clone().unbind()))
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

/// A Python iterator still producing the body.
pub(crate) struct IterBody {
    pending: Option<Bytes>,
    /// Set after each chunk: the next poll answers `Pending` once (waking at
    /// once) so hyper flushes the chunk before the app is asked for another;
    /// otherwise a slow generator's chunks would sit in hyper's buffer.
    flush_first: bool,
    iterator: Option<Py<PyIterator>>,
    /// What the app returned: the object whose `close()` is owed.
    result: Option<Py<PyAny>>,
}

impl IterBody {
    pub(crate) fn new(first: Option<Bytes>, iterator: Py<PyIterator>, result: Py<PyAny>) -> Self {
        Self {
            pending: first,
            flush_first: false,
            iterator: Some(iterator),
            result: Some(result),
        }
    }

    fn finish(&mut self, py: Python<'_>) {
        self.iterator = None;
        if let Some(result) = self.result.take() {
            close_result(py, result.bind(py));
        }
    }

    fn next_chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        if let Some(chunk) = self.pending.take() {
            return Some(Ok(chunk));
        }
        self.iterator.as_ref()?;
        Python::attach(|py| loop {
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
                        log::error(&format!(
                            "the response iterable yielded {} instead of bytes; closing the connection",
                            chunk.get_type().name().map_or_else(|_| "?".into(), |n| n.to_string())
                        ));
                        self.finish(py);
                        return Some(Err(BodyError::App));
                    }
                },
                Some(Err(error)) => {
                    log::error("the response iterable raised after the head was sent; closing the connection:");
                    error.print(py);
                    self.finish(py);
                    return Some(Err(BodyError::App));
                }
            }
        })
    }
}

impl Drop for IterBody {
    fn drop(&mut self) {
        if self.result.is_some() || self.iterator.is_some() {
            Python::attach(|py| self.finish(py));
        }
    }
}

/// A file handed over through `wsgi.file_wrapper`, read by Rust.
pub(crate) struct FileBody {
    file: File,
    remaining: Option<u64>,
    /// The `FileWrapper`, closed when the body ends.
    result: Option<Py<PyAny>>,
}

impl FileBody {
    pub(crate) fn new(file: File, remaining: Option<u64>, result: Py<PyAny>) -> Self {
        Self {
            file,
            remaining,
            result: Some(result),
        }
    }

    fn next_chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        let want = self.remaining.map_or(FILE_CHUNK, |left| {
            FILE_CHUNK.min(usize::try_from(left).unwrap_or(FILE_CHUNK))
        });
        if want == 0 {
            self.close();
            return None;
        }
        let mut buffer = vec![0u8; want];
        match self.file.read(&mut buffer) {
            Ok(0) => {
                self.close();
                None
            }
            Ok(read) => {
                buffer.truncate(read);
                if let Some(left) = self.remaining.as_mut() {
                    *left -= read as u64;
                }
                Some(Ok(Bytes::from(buffer)))
            }
            Err(error) => {
                self.close();
                Some(Err(BodyError::File(error)))
            }
        }
    }

    fn close(&mut self) {
        if let Some(result) = self.result.take() {
            Python::attach(|py| close_result(py, result.bind(py)));
        }
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        self.close();
    }
}

/// Every kind of response body the server sends.
pub(crate) enum ResponseBody {
    Empty,
    Full(Option<Bytes>),
    Iter(Box<IterBody>),
    File(Box<FileBody>),
}

impl ResponseBody {
    /// A body of known bytes.
    pub(crate) fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::Empty
        } else {
            Self::Full(Some(bytes))
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let next = match self.get_mut() {
            Self::Empty => None,
            Self::Full(bytes) => bytes.take().map(Ok),
            Self::Iter(body) => {
                if body.flush_first {
                    body.flush_first = false;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                let next = body.next_chunk();
                body.flush_first = next.as_ref().is_some_and(Result::is_ok);
                next
            }
            Self::File(body) => body.next_chunk(),
        };
        Poll::Ready(next.map(|chunk| chunk.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty | Self::Full(None) => true,
            Self::Full(Some(_)) | Self::Iter(_) | Self::File(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty | Self::Full(None) => SizeHint::with_exact(0),
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Iter(_) => SizeHint::default(),
            Self::File(body) => body
                .remaining
                .map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}
