//! The server log: one line per event on stderr, prefixed with the process id
//! so master and worker lines can be told apart.

use std::io::Write;

/// How much a log line matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }
}

/// Write one log line; a failed write to stderr is ignored (there is nowhere else to say it).
pub(crate) fn write(level: Level, message: &str) {
    let line = format!(
        "[rwsgi {}] {} {}\n",
        std::process::id(),
        level.label(),
        message
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// An informational line (start-up, worker life cycle).
pub(crate) fn info(message: &str) {
    write(Level::Info, message);
}

/// Something went wrong but the server keeps serving.
pub(crate) fn warning(message: &str) {
    write(Level::Warning, message);
}

/// A failure that cost a request or a process.
pub(crate) fn error(message: &str) {
    write(Level::Error, message);
}
