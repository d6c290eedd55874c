//! Python's way into the server log: `wsgi.errors` (a line-buffered text
//! stream whose lines are logged at ERROR from source `wsgi.errors`) and
//! `log_line`, which `rwsgi.logs` calls for every `logging` record when the
//! app left the root logger without handlers. Both release the GIL while
//! the line is written, so a slow disk never stalls the other threads' Python.

use parking_lot::Mutex;
use pyo3::prelude::*;

use crate::log::{self, Level};

/// Write `message` (from `source`) to the server log at `levelno` (a
/// Python `logging` level), with the GIL released.
#[pyfunction]
pub(crate) fn log_line(py: Python<'_>, levelno: i32, source: String, message: String) {
    let level = Level::from_python(levelno);
    if log::enabled(level) {
        py.detach(move || log::write_from(level, Some(&source), &message));
    }
}

/// The least `logging` level the server log writes (`--log-level`), for the
/// root logger `rwsgi.logs` configures.
#[pyfunction]
pub(crate) fn log_level() -> i32 {
    log::least_level().python_number()
}

/// `environ['wsgi.errors']`: each complete line written becomes one ERROR
/// line of the server log; `flush()` writes a partial one.
#[pyclass(module = "rwsgi._rwsgi", name = "ErrorStream", frozen)]
#[derive(Default)]
pub(crate) struct ErrorStream {
    /// The text written since the last newline.
    partial: Mutex<String>,
}

impl ErrorStream {
    fn emit(py: Python<'_>, lines: Vec<String>) {
        if lines.is_empty() || !log::enabled(Level::Error) {
            return;
        }
        py.detach(move || {
            for line in lines {
                log::write_from(Level::Error, Some("wsgi.errors"), &line);
            }
        });
    }
}

#[pymethods]
impl ErrorStream {
    /// Buffer `text`; log the lines it completes. Returns its length, as a
    /// text file's `write` does.
    fn write(&self, py: Python<'_>, text: &str) -> usize {
        let lines = {
            let mut partial = self.partial.lock();
            partial.push_str(text);
            match partial.rfind('\n') {
                Some(end) => {
                    let rest = partial.split_off(end + 1);
                    let done = std::mem::replace(&mut *partial, rest);
                    done.lines().map(str::to_owned).collect()
                }
                None => Vec::new(),
            }
        };
        Self::emit(py, lines);
        text.chars().count()
    }

    /// `write` each of `lines`.
    fn writelines(&self, py: Python<'_>, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(py, line?.extract::<&str>()?);
        }
        Ok(())
    }

    /// Log the partial line, if any.
    fn flush(&self, py: Python<'_>) {
        let rest = std::mem::take(&mut *self.partial.lock());
        if !rest.is_empty() {
            Self::emit(py, vec![rest]);
        }
    }

    /// Not a terminal (what `logging` and `traceback` may ask).
    #[staticmethod]
    fn isatty() -> bool {
        false
    }

    /// Always writable.
    #[staticmethod]
    fn writable() -> bool {
        true
    }
}
