//! Each I/O thread of a worker keeps one Python thread state for its whole
//! life, so taking the GIL per request is a cheap re-attach rather than the
//! creation and destruction of a thread state (measured: about 1% of samples
//! instead of a visible share).
//!
//! A worker with a single thread goes further: nothing else in the process
//! runs Python, so the thread keeps the GIL while it works and gives it up
//! only when it parks (waits in epoll), as bjoern does. A request then costs
//! no GIL hand-over at all; under load a thread parks once per many requests.

use std::cell::Cell;

use pyo3::ffi;

thread_local! {
    static ATTACHED: Cell<Option<(ffi::PyGILState_STATE, *mut ffi::PyThreadState)>> = const { Cell::new(None) };
    /// Whether this thread holds the GIL between requests (single-thread workers).
    static HOLDS_GIL: Cell<bool> = const { Cell::new(false) };
}

/// Create this thread's Python thread state and release the GIL, keeping the state.
pub(crate) fn attach_for_life() {
    // SAFETY: the interpreter is initialised (we run inside a Python process);
    // Ensure/SaveThread are paired, leaving the GIL released.
    let state = unsafe {
        let gil = ffi::PyGILState_Ensure();
        let thread_state = ffi::PyEval_SaveThread();
        (gil, thread_state)
    };
    ATTACHED.with(|cell| cell.set(Some(state)));
}

/// Undo `attach_for_life` when the thread ends.
pub(crate) fn detach_for_life() {
    if let Some((gil, thread_state)) = ATTACHED.with(Cell::take) {
        // SAFETY: reverses exactly the calls of `attach_for_life` on this thread.
        unsafe {
            ffi::PyEval_RestoreThread(thread_state);
            ffi::PyGILState_Release(gil);
        }
    }
}

/// After a worker thread unparks: take the GIL and keep it while it works
/// (single-thread workers). Only worker threads park, so a thread of the
/// blocking pool never holds the GIL idle.
pub(crate) fn hold_after_unpark() {
    if HOLDS_GIL.with(Cell::get) {
        return;
    }
    if let Some((_, thread_state)) = ATTACHED.with(Cell::get) {
        // SAFETY: `thread_state` is this thread's own state, saved by
        // `attach_for_life` or `release_before_park`, and the GIL is not held.
        unsafe { ffi::PyEval_RestoreThread(thread_state) };
        HOLDS_GIL.with(|holds| holds.set(true));
    }
}

/// Before a worker thread parks (waits in epoll): let go of the GIL.
pub(crate) fn release_before_park() {
    if !HOLDS_GIL.with(Cell::get) {
        return;
    }
    // SAFETY: this thread holds the GIL (set by `hold_after_unpark`).
    let thread_state = unsafe { ffi::PyEval_SaveThread() };
    HOLDS_GIL.with(|holds| holds.set(false));
    ATTACHED.with(|cell| {
        if let Some((gil, _)) = cell.get() {
            cell.set(Some((gil, thread_state)));
        }
    });
}

/// When a thread of a single-thread worker ends.
pub(crate) fn detach_after_holding() {
    release_before_park();
    detach_for_life();
}
