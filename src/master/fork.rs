//! The one place a process is forked: through `CPython`'s `os.fork`, so the
//! interpreter's own before/after-fork handling (locks, thread states,
//! `os.register_at_fork` hooks) runs as it would for a Python program; and
//! the one way a forked child leaves.

use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::worker;

/// Which side of the fork we are on.
pub(crate) enum Forked {
    Parent { child: i32 },
    Child,
}

/// Fork the process. The caller must have started no thread (tokio or other) yet.
pub(crate) fn fork(py: Python<'_>) -> Result<Forked> {
    fork_through_python(py).map_err(|error| Error::system("fork", as_io_error(py, &error)))
}

/// Keep the errno of the `OSError` `os.fork` raised (EAGAIN, ENOMEM...).
fn as_io_error(py: Python<'_>, error: &PyErr) -> std::io::Error {
    error
        .value(py)
        .getattr("errno")
        .and_then(|errno| errno.extract::<i32>())
        .map_or_else(
            |_| std::io::Error::other(error.to_string()),
            std::io::Error::from_raw_os_error,
        )
}

fn fork_through_python(py: Python<'_>) -> PyResult<Forked> {
    // Unflushed Python output would otherwise be written once by each process.
    flush_python_streams(py);
    let os_fork = py.import("os")?.getattr("fork")?;
    // SIGTERM/SIGINT stay blocked in the child until it handles them.
    let previous = worker::block_stop_signals();
    let pid = os_fork.call0().and_then(|pid| pid.extract::<i32>());
    if !matches!(pid, Ok(0)) {
        worker::restore_signal_mask(&previous);
    }
    Ok(match pid? {
        0 => Forked::Child,
        child => Forked::Parent { child },
    })
}

fn flush_python_streams(py: Python<'_>) {
    let Ok(sys) = py.import("sys") else {
        return;
    };
    for stream in ["stdout", "stderr"] {
        if let Ok(stream) = sys.getattr(stream) {
            let _ = stream.call_method0("flush");
        }
    }
}

/// Leave a forked child without unwinding into the caller's Python code.
pub(crate) fn exit_child(py: Python<'_>, code: i32) -> ! {
    flush_python_streams(py);
    // SAFETY: _exit ends the process at once; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// Wait for a child of this process; its wait status, or `None` when it
/// cannot be waited for (not ours, or already reaped).
pub(crate) fn wait_for(pid: i32) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int we own.
        let waited = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if waited == pid {
            return Some(status);
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}
