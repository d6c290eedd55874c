//! The protocol-neutral response: what the app (or the server itself, for
//! errors) answered — status, headers in the app's order, and a body that is
//! bytes, a stream pulled chunk by chunk, or a file read by Rust. `encode.rs`
//! turns it into HTTP/1.x for every protocol; `write.rs` sends it.
//!
//! Nothing here holds Python objects directly: a body that needs the
//! interpreter (an app's iterator) comes in behind the `BodyStream` trait.

pub(crate) mod encode;
pub(crate) mod write;

use std::fs::File;
use std::io::Read;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

/// Chunk size for file bodies.
const FILE_CHUNK: usize = 256 * 1024;

/// Why a body stopped before its end; the connection is then closed.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// The app's iterator raised (already logged with its traceback).
    App,
    /// Reading a file body failed.
    File(std::io::Error),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::App => f.write_str("the app's response iterator raised"),
            Self::File(error) => write!(f, "reading the file to send failed: {error}"),
        }
    }
}

/// A body produced piece by piece (an app's iterator).
pub(crate) trait BodyStream: Send {
    /// The next non-empty chunk; `None` at the end. Called as the socket
    /// drains, so a slow app's chunks go out as they come.
    fn next_chunk(&mut self) -> Option<Result<Bytes, StreamError>>;
}

/// A file sent by the server, from its current offset, `remaining` bytes.
pub(crate) struct FileBody {
    file: File,
    remaining: u64,
    /// Dropped when the body ends or is abandoned (closes what the app gave).
    _owner: Option<Box<dyn Send>>,
}

impl FileBody {
    /// `owner` is kept until the body is done: its drop is the "close" owed.
    pub(crate) fn new(file: File, remaining: u64, owner: Option<Box<dyn Send>>) -> Self {
        Self {
            file,
            remaining,
            _owner: owner,
        }
    }

    /// The bytes still to send.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The file, for the kernel to send from (`sendfile`); the caller
    /// reports what it sent with [`sent`](Self::sent).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// `count` bytes went out without reading (by `sendfile`, which leaves
    /// the file's offset alone: it is moved here).
    pub(crate) fn sent(&mut self, count: u64) {
        use std::io::Seek;
        self.remaining = self.remaining.saturating_sub(count);
        let _ = self.file.seek(std::io::SeekFrom::Current(
            i64::try_from(count).unwrap_or(i64::MAX),
        ));
    }

    fn next_chunk(&mut self) -> Option<Result<Bytes, StreamError>> {
        let want = usize::try_from(self.remaining)
            .unwrap_or(FILE_CHUNK)
            .min(FILE_CHUNK);
        if want == 0 {
            return None;
        }
        let mut buffer = vec![0u8; want];
        match self.file.read(&mut buffer) {
            Ok(0) => {
                self.remaining = 0;
                None
            }
            Ok(read) => {
                buffer.truncate(read);
                self.remaining -= read as u64;
                Some(Ok(Bytes::from(buffer)))
            }
            Err(error) => {
                self.remaining = 0;
                Some(Err(StreamError::File(error)))
            }
        }
    }
}

/// Every kind of response body.
pub(crate) enum ResponseBody {
    Empty,
    Full(Bytes),
    Stream(Box<dyn BodyStream>),
    File(Box<FileBody>),
}

impl ResponseBody {
    /// A body of known bytes.
    pub(crate) fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::Empty
        } else {
            Self::Full(bytes)
        }
    }

    /// The body's length when it is known before sending.
    pub(crate) fn exact_len(&self) -> Option<u64> {
        match self {
            Self::Empty => Some(0),
            Self::Full(bytes) => Some(bytes.len() as u64),
            Self::Stream(_) => None,
            Self::File(file) => Some(file.remaining),
        }
    }

    /// The next chunk to send; `None` at the end.
    pub(crate) fn next_chunk(&mut self) -> Option<Result<Bytes, StreamError>> {
        match self {
            Self::Empty => None,
            Self::Full(_) => match std::mem::replace(self, Self::Empty) {
                Self::Full(bytes) => Some(Ok(bytes)),
                _ => None,
            },
            Self::Stream(stream) => stream.next_chunk(),
            Self::File(file) => file.next_chunk(),
        }
    }
}

/// A response head and body.
pub(crate) struct Response {
    pub status: StatusCode,
    /// Set only when the app's reason phrase differs from the standard one.
    pub reason: Option<Bytes>,
    /// In the app's order, repeated names kept.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: ResponseBody,
}

impl Response {
    /// A plain-text response the server makes itself (errors, refusals).
    pub(crate) fn plain(status: StatusCode) -> Self {
        let text = format!("{}\n", status.canonical_reason().unwrap_or("Error"));
        Self {
            status,
            reason: None,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            body: ResponseBody::full(Bytes::from(text)),
        }
    }

    /// The reason phrase to send: the app's own, or the standard one.
    pub(crate) fn reason_phrase(&self) -> &[u8] {
        self.reason.as_deref().unwrap_or_else(|| {
            self.status
                .canonical_reason()
                .unwrap_or("Unknown")
                .as_bytes()
        })
    }
}
