//! Interned Python strings for environ keys, cached per thread: `HTTP_*`
//! keys by header name as clients spell it, and CGI variable names as a
//! proxy sends them. Both are one bounded cache type with a fast hash.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::strings::latin1_str;

/// How many distinct names each cache holds per thread.
const CACHED_KEYS: usize = 256;

/// The Fx hash (as in rustc): a few instructions per word. The keys are
/// header names, so SipHash's flood resistance buys nothing here (the cache
/// is bounded) and cost a visible share of environ building.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Names already turned into environ keys.
type KeyCache = RefCell<HashMap<Box<[u8]>, Py<PyString>, BuildHasherDefault<FxHasher>>>;

thread_local! {
    static HEADER_KEYS: KeyCache = RefCell::new(HashMap::default());
    static VAR_KEYS: KeyCache = RefCell::new(HashMap::default());
}

fn cached<'py>(
    cache: &'static std::thread::LocalKey<KeyCache>,
    py: Python<'py>,
    name: &[u8],
    make: impl FnOnce() -> PyResult<Bound<'py, PyString>>,
) -> PyResult<Bound<'py, PyString>> {
    cache.with(|cache| {
        if let Some(key) = cache.borrow().get(name) {
            return Ok(key.bind(py).clone());
        }
        let key = make()?;
        let mut cache = cache.borrow_mut();
        if cache.len() < CACHED_KEYS {
            cache.insert(name.into(), key.clone().unbind());
        }
        Ok(key)
    })
}

/// `HTTP_USER_AGENT` for `User-Agent`. Header names are tokens (ASCII),
/// checked by the parser.
pub(crate) fn header_key<'py>(py: Python<'py>, name: &[u8]) -> PyResult<Bound<'py, PyString>> {
    cached(&HEADER_KEYS, py, name, || {
        let mut text = String::with_capacity(5 + name.len());
        text.push_str("HTTP_");
        text.extend(name.iter().map(|&byte| {
            if byte == b'-' {
                '_'
            } else {
                char::from(byte.to_ascii_uppercase())
            }
        }));
        Ok(PyString::intern(py, &text))
    })
}

/// A CGI variable name as a proxy sent it.
pub(crate) fn var_key<'py>(py: Python<'py>, name: &[u8]) -> PyResult<Bound<'py, PyString>> {
    cached(&VAR_KEYS, py, name, || latin1_str(py, name))
}
