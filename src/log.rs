//! The server log (the error log): one line per event, Rust's and Python's
//! alike (`_rwsgi.log_line`, used by `rwsgi.logs` for `logging` and by
//! `wsgi.errors`), filtered by `--log-level`, as text
//! (`[rwsgi PID] LEVEL message`) or JSON (`--log-format json`), always on
//! fd 2: `--log-file` opens its file and makes fd 2 point at it, so stray
//! prints and C-level messages of the app land there too. SIGUSR1 calls
//! [`reopen`] (logrotate). A failed write (closed stderr, full disk) is
//! ignored: there is nowhere else to say it, and a response never waits on it.

pub(crate) mod time;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// How much a log line matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Debug = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }

    /// The `--log-level` named `name`.
    pub(crate) fn named(name: &str) -> Option<Self> {
        match name {
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warning" => Some(Self::Warning),
            "error" => Some(Self::Error),
            _ => None,
        }
    }

    /// The level of a Python `logging` level number (CRITICAL counts as ERROR).
    pub(crate) fn from_python(levelno: i32) -> Self {
        match levelno {
            ..=10 => Self::Debug,
            11..=20 => Self::Info,
            21..=30 => Self::Warning,
            _ => Self::Error,
        }
    }

    /// Python's number for this level (what `rwsgi.logs` sets the root logger to).
    pub(crate) fn python_number(self) -> i32 {
        10 * (self as i32 + 1)
    }
}

/// The least level written (`--log-level`).
static LEAST: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// `--log-format json`.
static JSON: AtomicBool = AtomicBool::new(false);
/// The worker's position; 0 in the master and the loaders.
static WORKER: AtomicUsize = AtomicUsize::new(0);
/// `--log-file`, opened again on SIGUSR1.
static FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Apply `--log-level`, `--log-format` and `--log-file` in this process (the
/// master, before anything forks: workers inherit it all).
pub(crate) fn configure(least: Level, json: bool, file: Option<&Path>) -> std::io::Result<()> {
    LEAST.store(least as u8, Ordering::Relaxed);
    JSON.store(json, Ordering::Relaxed);
    *FILE.lock() = file.map(Path::to_path_buf);
    reopen()
}

/// This process is worker `id` (named in JSON lines).
pub(crate) fn set_worker(id: usize) {
    WORKER.store(id, Ordering::Relaxed);
}

/// The least level written, for the Python side's root logger.
pub(crate) fn least_level() -> Level {
    match LEAST.load(Ordering::Relaxed) {
        0 => Level::Debug,
        1 => Level::Info,
        2 => Level::Warning,
        _ => Level::Error,
    }
}

/// Open `--log-file` again (appending, created if missing) and point fd 2
/// at it: after logrotate moved it (`create`) or truncated it
/// (`copytruncate`, where appending keeps writing at the new end).
/// Nothing to do without `--log-file`.
pub(crate) fn reopen() -> std::io::Result<()> {
    let Some(path) = FILE.lock().clone() else {
        return Ok(());
    };
    let file = File::options().create(true).append(true).open(&path)?;
    // SAFETY: dup2 takes two descriptors; fd 2 is replaced atomically, and
    // `file`'s own descriptor is closed when it drops.
    if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a line at `level` is written at all.
pub(crate) fn enabled(level: Level) -> bool {
    level as u8 >= LEAST.load(Ordering::Relaxed)
}

/// Write one line from `source` (`None`: rwsgi itself; else a Python
/// logger's name or `wsgi.errors`).
pub(crate) fn write_from(level: Level, source: Option<&str>, message: &str) {
    if !enabled(level) {
        return;
    }
    let line = if JSON.load(Ordering::Relaxed) {
        json_line(level, source, message)
    } else {
        text_line(level, source, message)
    };
    let _ = std::io::stderr().lock().write_all(&line);
}

fn text_line(level: Level, source: Option<&str>, message: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len() + 32);
    let _ = write!(line, "[rwsgi {}] {} ", std::process::id(), level.label());
    if let Some(source) = source {
        let _ = write!(line, "{source}: ");
    }
    // One event, one line: a traceback's lines stay together, indented.
    let message = message.trim_end_matches('\n');
    line.extend_from_slice(message.replace('\n', "\n    ").as_bytes());
    line.push(b'\n');
    line
}

fn json_line(level: Level, source: Option<&str>, message: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let time = time::LocalTime::local(now.as_secs()).iso(Some(now.subsec_millis()));
    let mut line = Vec::with_capacity(message.len() + 96);
    let _ = write!(
        line,
        "{{\"time\":\"{time}\",\"level\":\"{}\",\"pid\":{}",
        level.label(),
        std::process::id()
    );
    let worker = WORKER.load(Ordering::Relaxed);
    if worker != 0 {
        let _ = write!(line, ",\"worker\":{worker}");
    }
    line.extend_from_slice(b",\"source\":");
    json_string(&mut line, source.unwrap_or("rwsgi").as_bytes());
    line.extend_from_slice(b",\"message\":");
    json_string(&mut line, message.trim_end_matches('\n').as_bytes());
    line.extend_from_slice(b"}\n");
    line
}

/// `text` as a JSON string: UTF-8 kept as it is, control characters, quotes
/// and backslashes escaped; bytes that are not UTF-8 are taken as latin-1
/// (`\u00NN`), so any request makes a valid, single-line value.
pub(crate) fn json_string(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    let utf8 = std::str::from_utf8(text).is_ok();
    for &byte in text {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1f | 0x7f => {
                let _ = write!(out, "\\u{byte:04x}");
            }
            0x80.. if !utf8 => {
                let _ = write!(out, "\\u{byte:04x}");
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// Write one line of rwsgi's own.
pub(crate) fn write(level: Level, message: &str) {
    write_from(level, None, message);
}

/// Details for whoever debugs (`--log-level debug`).
#[allow(
    dead_code,
    reason = "for modules that log details at --log-level debug"
)]
pub(crate) fn debug(message: &str) {
    write(Level::Debug, message);
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

#[cfg(test)]
mod tests {
    use super::{json_line, json_string, text_line, Level};

    #[test]
    fn json_strings_are_valid_for_any_bytes() {
        let mut out = Vec::new();
        json_string(&mut out, b"a\"b\\c\n\x01\x7f");
        assert_eq!(out, b"\"a\\\"b\\\\c\\n\\u0001\\u007f\"");
        out.clear();
        json_string(&mut out, "é".as_bytes());
        assert_eq!(out, "\"é\"".as_bytes());
        out.clear();
        json_string(&mut out, b"\xff");
        assert_eq!(out, b"\"\\u00ff\"");
    }

    #[test]
    fn lines_of_both_formats() {
        let text = String::from_utf8(text_line(Level::Warning, Some("app"), "a\nb\n")).unwrap();
        assert!(text.ends_with("] WARNING app: a\n    b\n"), "{text}");
        let json = String::from_utf8(json_line(Level::Error, None, "boom")).unwrap();
        assert!(json.contains("\"level\":\"ERROR\""), "{json}");
        assert!(
            json.ends_with(",\"source\":\"rwsgi\",\"message\":\"boom\"}\n"),
            "{json}"
        );
        assert_eq!(Level::from_python(30), Level::Warning);
        assert_eq!(Level::from_python(50), Level::Error);
        assert_eq!(Level::Info.python_number(), 20);
    }
}
