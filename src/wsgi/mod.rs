//! The GIL boundary: the only module that touches Python objects per request.
//! `WsgiApp::call` runs on the I/O thread that read the request, holds the GIL
//! for the app call and its first body chunk (a worker with one thread keeps
//! it until the thread parks, see `python_thread.rs`), and hands back a
//! response whose remaining body is pulled chunk by chunk as the socket
//! drains, taking the GIL for each pull. With `--harakiri`, each of those
//! stretches of Python is watched (`crate::harakiri`, `timeout.rs`).

pub(crate) mod environ;
pub(crate) mod errors;
pub(crate) mod file_wrapper;
pub(crate) mod input;
pub(crate) mod output;
pub(crate) mod python_thread;
pub(crate) mod start_response;
pub(crate) mod timeout;

use std::cell::RefCell;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::BorrowedFd;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::StatusCode;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::capacity::Capacity;
use crate::config::Config;
use crate::harakiri::{self, Client, Outcome, Watch};
use crate::log;
use crate::request::Request;
use crate::response::{FileBody, Response, ResponseBody};
use environ::{ConnectionCache, EnvironTemplate};
use file_wrapper::FileWrapper;
use output::{chunk_bytes, close_result, CloseOnDrop, IterBody};
use start_response::StartResponse;

/// The app of one worker and what it needs to call it fast.
pub(crate) struct WsgiApp {
    app: Py<PyAny>,
    environ: EnvironTemplate,
    /// Threads inside the app; the accept loops read it for backpressure.
    pub(crate) capacity: Capacity,
    /// `--harakiri`, when on.
    harakiri: Option<Duration>,
}

impl WsgiApp {
    pub(crate) fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        config: &Config,
        capacity: Capacity,
    ) -> PyResult<Self> {
        Ok(Self {
            app,
            environ: EnvironTemplate::new(py, config)?,
            capacity,
            harakiri: (!config.harakiri.is_zero()).then_some(config.harakiri),
        })
    }

    /// Run the app for one request. Never fails: app errors become a logged
    /// 500. `cache` is the request's connection's (see `environ::template`);
    /// `client` is where the watchdog answers if the call runs past
    /// `--harakiri`: then `None`, and the caller sends nothing and closes.
    pub(crate) fn call(
        &self,
        request: &mut Request,
        cache: &mut ConnectionCache,
        client: Client,
    ) -> Option<Response> {
        let _busy = self.capacity.enter();
        let watch = self
            .harakiri
            .map(|limit| Watch::new(client, &request.head, limit));
        Python::attach(|py| {
            let token = watch.as_ref().map(|watch| harakiri::enter(watch, false));
            let result = self.call_app(py, request, cache, watch.as_ref());
            if token.map(harakiri::leave) == Some(Outcome::TimedOut) {
                timeout::clear_pending(py);
                if let Err(error) = &result {
                    if !timeout::is_timeout(py, error) {
                        log::error(&format!(
                            "the app failed on {} after its 504:",
                            request.head.describe()
                        ));
                        error.print(py);
                    }
                }
                log::info(&format!(
                    "harakiri: {} left the app after its timeout",
                    request.head.describe()
                ));
                // Dropping a response closes what the app returned.
                return None;
            }
            Some(match result {
                Ok(response) => response,
                Err(error) => {
                    crate::counters::exception();
                    log::error(&format!(
                        "the app failed on {}; answering 500:",
                        request.head.describe()
                    ));
                    error.print(py);
                    Response::plain(StatusCode::INTERNAL_SERVER_ERROR)
                }
            })
        })
    }

    fn call_app(
        &self,
        py: Python<'_>,
        request: &mut Request,
        cache: &mut ConnectionCache,
        watch: Option<&Watch>,
    ) -> PyResult<Response> {
        let environ = environ::build(py, &self.environ, request, cache)?;
        let start = start_response(py)?;
        let result = self.app.bind(py).call1((environ, &start))?;
        match collect_body(py, &result, &start, watch) {
            Ok(body) => build_response(&start, body),
            Err(error) => {
                close_result(py, &result);
                Err(error)
            }
        }
    }
}

thread_local! {
    /// The last request's `start_response`, reused when nothing else kept it.
    static SPARE_START: RefCell<Option<Py<StartResponse>>> = const { RefCell::new(None) };
}

/// A fresh `start_response` callable: the thread's previous one when only
/// this cache still refers to it (the app kept no reference), else a new one.
/// Saves allocating and freeing an object per request.
fn start_response(py: Python<'_>) -> PyResult<Bound<'_, StartResponse>> {
    SPARE_START.with(|spare| {
        let mut spare = spare.borrow_mut();
        if let Some(previous) = spare.as_ref() {
            // SAFETY: `previous` is a live object; reading its count needs the GIL, held here.
            if unsafe { pyo3::ffi::Py_REFCNT(previous.as_ptr()) } == 1 {
                let previous = previous.bind(py).clone();
                previous.borrow_mut().reset();
                return Ok(previous);
            }
        }
        let fresh = Bound::new(py, StartResponse::new())?;
        *spare = Some(fresh.clone().unbind());
        Ok(fresh)
    })
}

/// Pull the body up to its first non-empty chunk, so `start_response` has
/// been called. A streamed rest stays under `watch`.
fn collect_body(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    start: &Bound<'_, StartResponse>,
    watch: Option<&Watch>,
) -> PyResult<ResponseBody> {
    if let Ok(list) = result.cast::<PyList>() {
        return concat_sequence(start, list.iter());
    }
    if let Ok(tuple) = result.cast::<PyTuple>() {
        return concat_sequence(start, tuple.iter());
    }
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if let Some(body) = file_body(py, wrapper, start) {
            return Ok(body);
        }
    }
    let mut iterator = result.try_iter()?;
    let first = loop {
        match iterator.next() {
            None => {
                close_result(py, result);
                let written = std::mem::take(&mut start.borrow_mut().written);
                return Ok(ResponseBody::full(written.freeze()));
            }
            Some(chunk) => {
                let chunk = chunk?;
                let bytes = chunk.cast::<PyBytes>().map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err(format!(
                        "the response iterable must yield bytes, not {}",
                        chunk
                            .get_type()
                            .name()
                            .map_or_else(|_| "?".into(), |n| n.to_string())
                    ))
                })?;
                if !bytes.as_bytes().is_empty() {
                    break chunk_bytes(bytes);
                }
            }
        }
    };
    let mut this = start.borrow_mut();
    this.head_sent = true;
    let first = if this.written.is_empty() {
        first
    } else {
        let mut joined = std::mem::take(&mut this.written);
        joined.extend_from_slice(&first);
        joined.freeze()
    };
    Ok(ResponseBody::Stream(Box::new(IterBody::new(
        Some(first),
        iterator.unbind(),
        result.clone().unbind(),
        watch.copied(),
    ))))
}

fn concat_sequence<'py>(
    start: &Bound<'py, StartResponse>,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
) -> PyResult<ResponseBody> {
    let mut this = start.borrow_mut();
    let mut single: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    for item in items {
        let bytes = item.cast::<PyBytes>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err("the response iterable must contain bytes")
        })?;
        if bytes.as_bytes().is_empty() {
            continue;
        }
        match (&mut joined, single.take()) {
            (Some(buffer), _) => buffer.extend_from_slice(bytes.as_bytes()),
            (None, None) if this.written.is_empty() => single = Some(chunk_bytes(bytes)),
            (None, previous) => {
                let mut buffer = std::mem::take(&mut this.written);
                if let Some(previous) = previous {
                    buffer.extend_from_slice(&previous);
                }
                buffer.extend_from_slice(bytes.as_bytes());
                joined = Some(buffer);
            }
        }
    }
    this.head_sent = true;
    Ok(match (joined, single) {
        (Some(buffer), _) => ResponseBody::full(buffer.freeze()),
        (None, Some(bytes)) => ResponseBody::full(bytes),
        (None, None) => ResponseBody::full(std::mem::take(&mut this.written).freeze()),
    })
}

/// Serve a `wsgi.file_wrapper` file from Rust when it has a real descriptor.
fn file_body(
    py: Python<'_>,
    wrapper: &Bound<'_, FileWrapper>,
    start: &Bound<'_, StartResponse>,
) -> Option<ResponseBody> {
    let filelike = wrapper.borrow().filelike.clone_ref(py);
    let Ok(fileno) = filelike.bind(py).call_method0("fileno") else {
        return None;
    };
    let Ok(fd) = fileno.extract::<i32>() else {
        return None;
    };
    if !start.borrow().written.is_empty() {
        return None;
    }
    // Flush Python-level buffers so the descriptor's offset is where the app left it.
    let _ = filelike.bind(py).call_method0("flush");
    let offset = filelike
        .bind(py)
        .call_method0("tell")
        .and_then(|tell| tell.extract::<u64>())
        .ok();
    // SAFETY: `fd` is open for the duration of this call (the file object holds it);
    // we only duplicate it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(owned) = borrowed.try_clone_to_owned() else {
        return None;
    };
    let mut file = File::from(owned);
    let Ok(metadata) = file.metadata() else {
        return None;
    };
    if !metadata.is_file() {
        return None;
    }
    let offset = offset?;
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return None;
    }
    let declared = start.borrow().head.as_ref().and_then(|head| {
        head.headers
            .iter()
            .find(|(name, _)| name == CONTENT_LENGTH)
            .and_then(|(_, value)| value.to_str().ok()?.parse::<u64>().ok())
    });
    let remaining = declared.unwrap_or_else(|| metadata.len().saturating_sub(offset));
    start.borrow_mut().head_sent = true;
    Some(ResponseBody::File(Box::new(FileBody::new(
        file,
        remaining,
        Some(Box::new(CloseOnDrop::new(
            wrapper.clone().into_any().unbind(),
        ))),
    ))))
}

fn build_response(start: &Bound<'_, StartResponse>, body: ResponseBody) -> PyResult<Response> {
    let mut this = start.borrow_mut();
    let Some(head) = this.head.take() else {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "the app returned without calling start_response()",
        ));
    };
    Ok(Response {
        status: head.status,
        reason: head.reason,
        headers: head.headers,
        body,
    })
}
