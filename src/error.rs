//! The crate's error type: everything that can stop the master or a worker
//! before it serves, and its one conversion into a Python exception.

use std::fmt;
use std::io;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

/// Why the server could not start or keep running.
#[derive(Debug)]
pub(crate) enum Error {
    /// A config value is unusable; names the option.
    Config {
        option: &'static str,
        message: String,
    },
    /// Binding or preparing a listener failed; names the address.
    Bind { address: String, source: io::Error },
    /// A system call of the supervisor failed (fork, pipe, signal set-up...).
    System {
        what: &'static str,
        source: io::Error,
    },
    /// The app could not be loaded in a worker (lazy mode), so respawning is pointless.
    AppLoad(String),
}

/// The crate's result alias.
pub(crate) type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for a failed system call.
    pub(crate) fn system(what: &'static str, source: io::Error) -> Self {
        Self::System { what, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { option, message } => write!(f, "{option}: {message}"),
            Self::Bind { address, source } => write!(f, "cannot listen on {address}: {source}"),
            Self::System { what, source } => write!(f, "{what} failed: {source}"),
            Self::AppLoad(message) => write!(f, "the app failed to load: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The errno a Python `OSError` carries, also for errors rewritten with a
/// clearer message (which keep only their kind), so callers can tell
/// EADDRINUSE from EACCES (the Django command's friendly lines do).
fn errno_of(error: &io::Error) -> i32 {
    error.raw_os_error().unwrap_or(match error.kind() {
        io::ErrorKind::AddrInUse => libc::EADDRINUSE,
        io::ErrorKind::AddrNotAvailable => libc::EADDRNOTAVAIL,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::NotFound => libc::ENOENT,
        _ => 0,
    })
}

impl From<Error> for PyErr {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Config { .. } => PyValueError::new_err(message),
            Error::Bind { source, .. } | Error::System { source, .. } => {
                PyOSError::new_err((errno_of(&source), message))
            }
            Error::AppLoad(_) => PyRuntimeError::new_err(message),
        }
    }
}
