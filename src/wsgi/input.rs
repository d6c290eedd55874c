//! `wsgi.input`: the request body Rust has finished reading (in memory, or
//! spooled to an unnamed file by `crate::body`) behind the file-like
//! interface PEP 3333 asks for (`read`, `readline`, `readlines`, iteration),
//! plus `seek`/`tell` so apps and frameworks can read a body twice.
//!
//! A spooled body is read with `pread` through a small read-ahead window, so
//! line-by-line reading costs one system call per window, not per line;
//! reads larger than the window go straight into the new `bytes` object.
//! Every file read happens with the GIL released, as CPython's own file
//! objects do: a body evicted from the page cache must not stall the other
//! Python threads while the disk answers.

use bytes::Bytes;
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::body::{RequestBody, SpooledBody};

/// Bytes a spooled body reads ahead for `readline` and small reads.
const READ_AHEAD: usize = 64 * 1024;

/// The request body as a read-only, seekable binary stream.
#[pyclass(module = "rwsgi._rwsgi", name = "Input")]
pub(crate) struct Input {
    source: Source,
    /// Never past the end: `seek` clamps, so the empty input environ template
    /// shares between requests stays at 0 and carries nothing from one to the next.
    position: u64,
}

/// Where the body's bytes are.
enum Source {
    Memory(Bytes),
    Spooled(Spool),
}

/// A spooled body and the window of it read ahead.
struct Spool {
    body: SpooledBody,
    /// Allocated on the first buffered read; `window_len` bytes of it are valid.
    window: Vec<u8>,
    window_start: u64,
    window_len: usize,
}

impl Input {
    /// Wrap a body that Rust has finished reading.
    pub(crate) fn new(body: RequestBody) -> Self {
        let source = match body {
            RequestBody::Empty => Source::Memory(Bytes::new()),
            RequestBody::Memory(data) => Source::Memory(data),
            RequestBody::Spooled(body) => Source::Spooled(Spool {
                body,
                window: Vec::new(),
                window_start: 0,
                window_len: 0,
            }),
        };
        Self {
            source,
            position: 0,
        }
    }

    fn len(&self) -> u64 {
        match &self.source {
            Source::Memory(data) => data.len() as u64,
            Source::Spooled(spool) => spool.body.len(),
        }
    }

    fn remaining(&self) -> u64 {
        self.len().saturating_sub(self.position)
    }

    /// Length of the next line (including its newline), at most `limit` bytes.
    fn line_length(&mut self, py: Python<'_>, limit: Option<u64>) -> PyResult<u64> {
        let remaining = self.remaining();
        let limit = limit.map_or(remaining, |limit| limit.min(remaining));
        if limit == 0 {
            return Ok(0);
        }
        match &mut self.source {
            Source::Memory(data) => {
                let start = to_usize(self.position)?;
                let window = &data[start..start + to_usize(limit)?];
                Ok(memchr::memchr(b'\n', window).map_or(limit, |newline| newline as u64 + 1))
            }
            Source::Spooled(spool) => spool.line_length(py, self.position, limit),
        }
    }

    /// The next `length` bytes, which the caller has checked are there.
    fn take<'py>(&mut self, py: Python<'py>, length: u64) -> PyResult<Bound<'py, PyBytes>> {
        if length == 0 {
            return Ok(PyBytes::new(py, b""));
        }
        let bytes = match &mut self.source {
            Source::Memory(data) => {
                let start = to_usize(self.position)?;
                PyBytes::new(py, &data[start..start + to_usize(length)?])
            }
            Source::Spooled(spool) => spool.take(py, self.position, to_usize(length)?)?,
        };
        self.position += length;
        Ok(bytes)
    }
}

impl Spool {
    /// What the window holds from `position` on (empty when it does not hold `position`).
    fn buffered(&self, position: u64) -> &[u8] {
        let Some(skip) = position.checked_sub(self.window_start) else {
            return &[];
        };
        usize::try_from(skip)
            .ok()
            .and_then(|skip| self.window[..self.window_len].get(skip..))
            .unwrap_or(&[])
    }

    /// Read the window afresh from `position`, which is inside the body.
    fn fill(&mut self, py: Python<'_>, position: u64) -> PyResult<()> {
        self.window.resize(READ_AHEAD, 0);
        let wanted = self
            .body
            .len()
            .saturating_sub(position)
            .min(READ_AHEAD as u64) as usize;
        self.window_len = 0;
        let body = &self.body;
        let window = &mut self.window[..wanted];
        py.detach(|| body.read_exact_at(window, position))?;
        self.window_start = position;
        self.window_len = wanted;
        Ok(())
    }

    fn line_length(&mut self, py: Python<'_>, position: u64, limit: u64) -> PyResult<u64> {
        let mut scanned = 0;
        while scanned < limit {
            let at = position + scanned;
            if self.buffered(at).is_empty() {
                self.fill(py, at)?;
            }
            let window = self.buffered(at);
            let window = &window[..window.len().min(to_usize(limit - scanned)?)];
            if let Some(newline) = memchr::memchr(b'\n', window) {
                return Ok(scanned + newline as u64 + 1);
            }
            scanned += window.len() as u64;
        }
        Ok(limit)
    }

    fn take<'py>(
        &mut self,
        py: Python<'py>,
        position: u64,
        length: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if self.buffered(position).len() < length && length < READ_AHEAD {
            self.fill(py, position)?;
        }
        let buffered = self.buffered(position);
        if let Some(all) = buffered.get(..length) {
            return Ok(PyBytes::new(py, all));
        }
        // A large read: what the window has, then the rest straight from the
        // file into the new bytes object, which nothing else can see yet.
        let body = &self.body;
        PyBytes::new_with(py, length, |out| {
            let (head, rest) = out.split_at_mut(buffered.len());
            head.copy_from_slice(buffered);
            let offset = position + buffered.len() as u64;
            py.detach(|| body.read_exact_at(rest, offset))?;
            Ok(())
        })
    }
}

fn to_usize(length: u64) -> PyResult<usize> {
    usize::try_from(length)
        .map_err(|_| PyOverflowError::new_err("the request body is too large for this platform"))
}

fn limit(size: Option<i64>) -> Option<u64> {
    size.and_then(|size| u64::try_from(size).ok())
}

#[pymethods]
impl Input {
    /// Read `size` bytes, or everything left when `size` is omitted or negative.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let available = self.remaining();
        let length = limit(size).map_or(available, |size| size.min(available));
        self.take(py, length)
    }

    /// Read one line, or at most `size` bytes of it.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<i64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let length = self.line_length(py, limit(size))?;
        self.take(py, length)
    }

    /// Read the remaining lines; stop once `hint` bytes have been read when it is positive.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let lines = PyList::empty(py);
        let hint = limit(hint).filter(|&hint| hint > 0);
        let mut total = 0;
        while self.remaining() > 0 {
            let length = self.line_length(py, None)?;
            total += length;
            lines.append(self.take(py, length)?)?;
            if hint.is_some_and(|hint| total >= hint) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let length = self.line_length(py, None)?;
        self.take(py, length).map(Some)
    }

    /// Move to `offset` from the start (`whence` 0), the current position (1)
    /// or the end (2), with `io.BytesIO`'s errors; a position outside the
    /// body is clamped to its start or end (`io.BytesIO` would keep one past
    /// the end, but reads there return `b""` either way). Returns the new position.
    #[pyo3(signature = (offset, whence = 0))]
    fn seek(&mut self, offset: i64, whence: i32) -> PyResult<u64> {
        let base = match whence {
            0 if offset < 0 => {
                return Err(PyValueError::new_err(format!(
                    "negative seek value {offset}"
                )))
            }
            0 => 0,
            1 => i128::from(self.position),
            2 => i128::from(self.len()),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "invalid whence ({whence}, should be 0, 1 or 2)"
                )))
            }
        };
        let target = (base + i128::from(offset)).clamp(0, i128::from(self.len()));
        self.position = u64::try_from(target).expect("clamped to 0..=len");
        Ok(self.position)
    }

    /// The current position, in bytes from the start of the body.
    fn tell(&self) -> u64 {
        self.position
    }

    /// Accepted and ignored: the body (and a spool file's descriptor) is freed with the request.
    #[staticmethod]
    fn close() {}

    #[staticmethod]
    fn readable() -> bool {
        true
    }

    #[staticmethod]
    fn seekable() -> bool {
        true
    }
}

// The spooled path cannot be reached from pytest until the connection code
// produces spooled bodies, so these tests drive `Input` from an embedded
// interpreter and compare every method with `io.BytesIO` on the same bytes.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::BodySink;
    use pyo3::types::PyDict;

    /// Lines of many lengths: short ones, some crossing the read-ahead
    /// window's edges, one longer than the window, and no final newline.
    fn body_text() -> Vec<u8> {
        let mut data = Vec::new();
        for i in 0..3000_usize {
            data.resize(data.len() + i * 7 % 211, b'a' + (i % 26) as u8);
            data.push(b'\n');
        }
        data.resize(data.len() + READ_AHEAD * 2 + 5, b'L');
        data.extend(b"\n\nlast line without newline");
        data
    }

    fn spooled(data: &[u8]) -> RequestBody {
        let mut sink = BodySink::new(None, 0, &std::env::temp_dir());
        for piece in data.chunks(10_000) {
            sink.push(Bytes::copy_from_slice(piece)).unwrap();
        }
        let body = sink.finish();
        assert!(matches!(body, RequestBody::Spooled(_)));
        body
    }

    const COMPARE: &std::ffi::CStr = cr#"
import io

def run(stream):
    out = []
    n = 0
    for size in (1, 7, 4096, 65535, 65536, 65537, 200000, -1):
        stream.seek(0)
        out.append(("read", size, b"".join(iter(lambda: stream.read(size), b"")), stream.tell()))
    stream.seek(0)
    out.append(("readline", list(iter(stream.readline, b""))))
    stream.seek(0)
    out.append(("readline5", list(iter(lambda: stream.readline(5), b""))))
    stream.seek(0)
    out.append(("readline70000", list(iter(lambda: stream.readline(70000), b""))))
    stream.seek(0)
    out.append(("iter", list(stream), stream.read()))
    stream.seek(0)
    out.append(("readlines", stream.readlines(1000), stream.readlines(), stream.readlines()))
    stream.seek(0)
    out.append(("mixed", stream.read(3), stream.readline(), stream.readline(2), stream.read(4), stream.read(100000), stream.tell()))
    for offset, whence in ((10, 0), (-5, 1), (-100, 2), (0, 2), (65530, 0), (-1, 2)):
        position = stream.seek(offset, whence)
        out.append(("seek", offset, whence, position, stream.tell(), stream.readline(), stream.read(70000)))
    out.append(("seek-before-start", stream.seek(-10**9, 1), stream.tell()))
    return out

expected = run(io.BytesIO(data))
for name, stream in (("memory", memory), ("spooled", spool)):
    got = run(stream)
    for want, have in zip(expected, got):
        assert want == have, (name, want[:2], have[:2])
    assert len(got) == len(expected)
    assert stream.seekable() and stream.readable()
    for bad in ((-1, 0), (0, 3)):
        try:
            stream.seek(*bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"seek{bad} did not raise")
"#;

    #[test]
    fn spooled_and_memory_inputs_behave_like_bytesio() {
        let data = body_text();
        Python::initialize();
        Python::attach(|py| {
            let locals = PyDict::new(py);
            locals.set_item("data", PyBytes::new(py, &data)).unwrap();
            let memory = Input::new(RequestBody::Memory(Bytes::from(data.clone())));
            locals
                .set_item("memory", Bound::new(py, memory).unwrap())
                .unwrap();
            locals
                .set_item("spool", Bound::new(py, Input::new(spooled(&data))).unwrap())
                .unwrap();
            if let Err(error) = py.run(COMPARE, Some(&locals), None) {
                panic!("{error}");
            }
        });
    }

    #[test]
    fn an_empty_input_stays_at_zero() {
        Python::initialize();
        Python::attach(|py| {
            let input = Bound::new(py, Input::new(RequestBody::Empty)).unwrap();
            let locals = PyDict::new(py);
            locals.set_item("stream", input).unwrap();
            let code =
                c"assert stream.seek(10) == 0 and stream.tell() == 0 and stream.read() == b''";
            if let Err(error) = py.run(code, Some(&locals), None) {
                panic!("{error}");
            }
        });
    }
}
