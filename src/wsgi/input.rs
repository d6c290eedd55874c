//! `wsgi.input`: the request body, already complete in memory, behind the
//! file-like interface PEP 3333 asks for (`read`, `readline`, `readlines`,
//! iteration).

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// The request body as a read-only binary stream.
#[pyclass(module = "rwsgi._rwsgi", name = "Input")]
pub(crate) struct Input {
    data: Bytes,
    position: usize,
}

impl Input {
    /// Wrap a body that Rust has finished reading.
    pub(crate) fn new(data: Bytes) -> Self {
        Self { data, position: 0 }
    }

    fn remaining(&self) -> &[u8] {
        &self.data[self.position..]
    }

    /// Length of the next line (including its newline), at most `limit` bytes.
    fn line_length(&self, limit: Option<usize>) -> usize {
        let rest = self.remaining();
        let window = limit.map_or(rest, |limit| &rest[..limit.min(rest.len())]);
        window
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(window.len(), |newline| newline + 1)
    }

    fn take<'py>(&mut self, py: Python<'py>, length: usize) -> Bound<'py, PyBytes> {
        let start = self.position;
        self.position += length;
        PyBytes::new(py, &self.data[start..self.position])
    }
}

fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|size| usize::try_from(size).ok())
}

#[pymethods]
impl Input {
    /// Read `size` bytes, or everything left when `size` is omitted or negative.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let available = self.remaining().len();
        let length = limit(size).map_or(available, |size| size.min(available));
        self.take(py, length)
    }

    /// Read one line, or at most `size` bytes of it.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let length = self.line_length(limit(size));
        self.take(py, length)
    }

    /// Read the remaining lines; stop once `hint` bytes have been read when it is positive.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let lines = PyList::empty(py);
        let hint = limit(hint).filter(|&hint| hint > 0);
        let mut total = 0;
        while !self.remaining().is_empty() {
            let length = self.line_length(None);
            total += length;
            lines.append(self.take(py, length))?;
            if hint.is_some_and(|hint| total >= hint) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if self.remaining().is_empty() {
            return None;
        }
        let length = self.line_length(None);
        Some(self.take(py, length))
    }

    /// Accepted and ignored: the body lives in memory and is freed with the request.
    #[staticmethod]
    fn close() {}

    #[staticmethod]
    fn readable() -> bool {
        true
    }
}
