//! The Python side of `--harakiri` (the bookkeeping is `crate::harakiri`'s):
//! the `rwsgi.RequestTimeout` exception, raised in a thread whose request
//! ran too long so that pure-Python code unwinds and the worker keeps its
//! thread; the log line with that thread's stack; and the clean-up a thread
//! does when it leaves such a call.

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::harakiri::Report;
use crate::log;

pyo3::create_exception!(
    rwsgi,
    RequestTimeout,
    pyo3::exceptions::PyBaseException,
    "Raised in a thread whose request ran longer than --harakiri; the client \
     already got a 504. A BaseException, so that `except Exception:` does not \
     swallow it."
);

/// Log the timed-out thread's stack and raise `RequestTimeout` in it (run by
/// the watchdog's helper thread, for each report).
pub(crate) fn unwind(report: &Report) {
    Python::attach(|py| {
        let stack = stack_of(py, report.thread_id())
            .unwrap_or_else(|error| format!("(its stack could not be read: {error})\n"));
        let raised = report.raise_if_inside(|thread_id| {
            let exception = py.get_type::<RequestTimeout>();
            // SAFETY: the GIL is held and the type object is alive
            // (`exception` holds it); an unknown id changes nothing.
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(thread_id as _, exception.as_ptr());
            }
        });
        let what = if report.answered {
            "answered 504"
        } else {
            "its response had started: connection closed"
        };
        let then = if raised {
            "raising rwsgi.RequestTimeout in its thread, whose Python stack is"
        } else {
            "its call ended meanwhile; its thread's Python stack was"
        };
        log::error(&format!(
            "harakiri: {} ran longer than {:?}; {what}; {then}:\n{}",
            report.line().text(),
            report.limit(),
            stack.trim_end()
        ));
    });
}

/// `traceback.format_stack` of the thread with CPython id `thread_id`.
fn stack_of(py: Python<'_>, thread_id: u64) -> PyResult<String> {
    let frames = py.import("sys")?.call_method0("_current_frames")?;
    let Ok(frame) = frames.get_item(thread_id) else {
        return Ok("(the thread runs no Python)".into());
    };
    let lines = py
        .import("traceback")?
        .call_method1("format_stack", (frame,))?;
    PyString::new(py, "")
        .call_method1("join", (lines,))?
        .extract()
}

/// A thread leaving a call the watchdog answered for: drop a `RequestTimeout`
/// set too late to fire inside it, so it cannot fire in the next request.
pub(crate) fn clear_pending(_py: Python<'_>) {
    // SAFETY: the GIL is held (`_py`); a null exception clears the pending one.
    unsafe {
        pyo3::ffi::PyThreadState_SetAsyncExc(
            pyo3::ffi::PyThread_get_thread_ident() as _,
            std::ptr::null_mut(),
        );
    }
}

/// Whether `error` is the `RequestTimeout` the watchdog raised (already logged).
pub(crate) fn is_timeout(py: Python<'_>, error: &PyErr) -> bool {
    error.is_instance_of::<RequestTimeout>(py)
}
