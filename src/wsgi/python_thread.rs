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
    /// For a thread that holds the GIL while running: its state while parked.
    static PARKED: Cell<Option<*mut ffi::PyThreadState>> = const { Cell::new(None) };
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

/// Create this thread's Python thread state and keep the GIL (single-thread workers).
pub(crate) fn attach_holding() {
    // SAFETY: the interpreter is initialised; the matching Release happens in
    // `detach_holding` on this thread, while it holds the GIL.
    let gil = unsafe { ffi::PyGILState_Ensure() };
    ATTACHED.with(|cell| cell.set(Some((gil, std::ptr::null_mut()))));
    HOLDS_GIL.with(|holds| holds.set(true));
}

/// Before the thread parks: let go of the GIL.
pub(crate) fn release_to_park() {
    if HOLDS_GIL.with(Cell::get) && PARKED.with(Cell::get).is_none() {
        // SAFETY: this thread holds the GIL (it is not parked); SaveThread
        // releases it and returns the state to restore on unpark.
        let state = unsafe { ffi::PyEval_SaveThread() };
        PARKED.with(|parked| parked.set(Some(state)));
    }
}

/// After the thread unparks: take the GIL back.
pub(crate) fn reacquire_after_park() {
    if let Some(state) = PARKED.with(Cell::take) {
        // SAFETY: restores exactly the state `release_to_park` saved on this thread.
        unsafe { ffi::PyEval_RestoreThread(state) };
    }
}

/// Undo `attach_holding` when the thread ends.
pub(crate) fn detach_holding() {
    reacquire_after_park();
    HOLDS_GIL.with(|holds| holds.set(false));
    if let Some((gil, _)) = ATTACHED.with(Cell::take) {
        // SAFETY: this thread holds the GIL again; Release pairs with the
        // Ensure of `attach_holding`, deletes the thread state and so
        // releases the GIL.
        unsafe { ffi::PyGILState_Release(gil) };
    }
}
