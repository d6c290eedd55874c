//! `wsgi.file_wrapper`: marks a file the app wants sent. When the file has a
//! real descriptor, the response body streams it from Rust (see `output.rs`);
//! otherwise it is an ordinary iterable reading `blksize` bytes at a time.

use pyo3::prelude::*;

/// The object an app returns to have a file sent by the server.
#[pyclass(module = "rwsgi._rwsgi", name = "FileWrapper")]
pub(crate) struct FileWrapper {
    pub(crate) filelike: Py<PyAny>,
    pub(crate) blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let chunk = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok(if chunk.is_truthy()? {
            Some(chunk)
        } else {
            None
        })
    }

    /// Close the wrapped file, as PEP 3333 asks of the server when the response ends.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}
