//! Sending an encoded response: the head (with a small body) in one write,
//! then a streamed body chunk by chunk as the app yields it, each chunk on
//! the wire before the next is asked for, framed as the encoder decided.
//!
//! Every write to a client is bounded by `--write-timeout`: a write that
//! makes no progress that long (the client stopped reading) fails with
//! `TimedOut`, the body (and with it the app's iterable, whose `close()`
//! its drop calls) is dropped and the connection ends. Only a write that
//! does not complete at once arms a timer.

use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use rwsgi_codec::chunked::{push_chunk_head, LAST_CHUNK};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use std::os::fd::{AsRawFd, RawFd};

use super::encode::{Encoded, Framing};
use super::{FileBody, ResponseBody};
use crate::deadline;
use crate::log;

/// A connection keeps its head buffer for the next response up to this size.
const KEPT_BUFFER: usize = 4 * 1024;

/// Run one write, failing with `TimedOut` if it makes no progress within
/// `limit` (zero: no limit).
async fn progress<F>(write: F, limit: Duration) -> std::io::Result<usize>
where
    F: Future<Output = std::io::Result<usize>>,
{
    let mut write = std::pin::pin!(write);
    // Most writes complete at once: they never make a timer.
    if let Poll::Ready(result) = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        return result;
    }
    deadline::within(limit, write).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client read nothing within --write-timeout",
        ))
    })
}

/// Whether a failed send was the client not reading within `--write-timeout`.
pub(crate) fn is_stalled(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::TimedOut
}

/// Log a send that `--write-timeout` ended; other failures (the client
/// went away) are routine and not logged.
pub(crate) fn log_stalled(error: &std::io::Error, limit: Duration, describe: impl Fn() -> String) {
    if is_stalled(error) {
        log::warning(&format!(
            "{}: the client read nothing for {:.1} s (--write-timeout); the response was abandoned and the connection closed",
            describe(),
            limit.as_secs_f64()
        ));
    }
}

/// Write all of `data`, each write bounded by `limit` (see the module doc).
pub(crate) async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut data: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    while !data.is_empty() {
        let written = progress(stream.write(data), limit).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[written..];
    }
    Ok(())
}

/// Write every byte of `parts` with as few system calls as the socket
/// allows, each write bounded by `limit`.
async fn write_all_parts<S: AsyncWrite + Unpin>(
    stream: &mut S,
    parts: &[&[u8]],
    limit: Duration,
) -> std::io::Result<()> {
    let mut slices: Vec<&[u8]> = parts
        .iter()
        .copied()
        .filter(|part| !part.is_empty())
        .collect();
    let mut first = 0;
    while first < slices.len() {
        let io: Vec<IoSlice<'_>> = slices[first..]
            .iter()
            .map(|part| IoSlice::new(part))
            .collect();
        let mut written = progress(stream.write_vectored(&io), limit).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while first < slices.len() && written >= slices[first].len() {
            written -= slices[first].len();
            first += 1;
        }
        if first < slices.len() {
            slices[first] = &slices[first][written..];
        }
    }
    Ok(())
}

/// A socket the kernel can send a file to directly (`sendfile(2)`), so a
/// file body never passes through user space.
pub(crate) trait FileSink: AsyncWrite + Unpin {
    /// Send up to `count` bytes of `file` from its current offset, once
    /// the socket is writable; `Ok(0)` at the file's end.
    fn send_file(
        &self,
        file: &std::fs::File,
        count: usize,
    ) -> impl Future<Output = std::io::Result<usize>> + Send;
}

/// One non-blocking `sendfile` from `file`'s offset (left unmoved).
fn sendfile_once(socket: RawFd, file: &std::fs::File, count: usize) -> std::io::Result<usize> {
    // SAFETY: lseek and sendfile take descriptors both kept open by their
    // owners for this call, and one offset we own.
    unsafe {
        let mut offset = libc::lseek(file.as_raw_fd(), 0, libc::SEEK_CUR);
        if offset < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sent = libc::sendfile(socket, file.as_raw_fd(), &raw mut offset, count);
        if sent < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }
}

macro_rules! file_sink {
    ($stream:ty) => {
        impl FileSink for $stream {
            async fn send_file(
                &self,
                file: &std::fs::File,
                count: usize,
            ) -> std::io::Result<usize> {
                loop {
                    self.writable().await?;
                    match self.try_io(tokio::io::Interest::WRITABLE, || {
                        sendfile_once(self.as_raw_fd(), file, count)
                    }) {
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        result => return result,
                    }
                }
            }
        }
    };
}

file_sink!(tokio::net::TcpStream);
file_sink!(tokio::net::UnixStream);

/// Bytes handed to one `sendfile` call.
const SENDFILE_CHUNK: usize = 1 << 20;

/// Send a file body of exactly `length` bytes with `sendfile`, each call
/// bounded by `limit`. `Ok(false)` when the file ended early (it shrank).
async fn send_file_body<S: FileSink>(
    stream: &mut S,
    file: &mut FileBody,
    limit: Duration,
) -> std::io::Result<bool> {
    while file.remaining() > 0 {
        let count = usize::try_from(file.remaining())
            .unwrap_or(SENDFILE_CHUNK)
            .min(SENDFILE_CHUNK);
        let sent = progress(stream.send_file(file.file(), count), limit).await?;
        if sent == 0 {
            return Ok(false);
        }
        file.sent(sent as u64);
    }
    Ok(true)
}

/// How sending a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Complete, and the connection may serve another request.
    KeepAlive,
    /// Complete or cut short on purpose: close the connection now.
    Close,
}

impl Encoded {
    /// The head's buffer, for the connection's next response (unless a
    /// large inline body grew it: idle connections should not hold that).
    pub(crate) fn into_buffer(self) -> BytesMut {
        if self.head.capacity() > KEPT_BUFFER {
            BytesMut::new()
        } else {
            self.head
        }
    }
}

/// Send `encoded`, each write bounded by `limit` (`--write-timeout`). An
/// error is a failed write: the client is gone, or stopped reading
/// (`is_stalled`); the body is dropped before it returns. `describe` names
/// the request for the log line of a body that ends early.
pub(crate) async fn send<S: FileSink>(
    stream: &mut S,
    encoded: &mut Encoded,
    limit: Duration,
    describe: impl Fn() -> String,
) -> std::io::Result<Sent> {
    let framing = encoded.framing;
    let verdict = |keep_alive: bool| {
        if keep_alive {
            Sent::KeepAlive
        } else {
            Sent::Close
        }
    };
    let Some(mut body) = encoded.body.take() else {
        write_all(stream, &encoded.head, limit).await?;
        return Ok(verdict(encoded.keep_alive));
    };
    if let (Framing::Length(length), ResponseBody::File(file)) = (framing, &mut body) {
        if file.remaining() == length {
            write_all(stream, &encoded.head, limit).await?;
            if send_file_body(stream, file, limit).await? {
                return Ok(verdict(encoded.keep_alive));
            }
            log::warning(&format!(
                "{}: the file ended {} byte(s) before its Content-Length; closing the connection",
                describe(),
                file.remaining()
            ));
            return Ok(Sent::Close);
        }
    }
    let mut head_sent = false;
    let mut remaining = match framing {
        Framing::Length(length) => length,
        _ => u64::MAX,
    };
    let mut failed = false;
    let mut chunk_head = BytesMut::new();
    while let Some(chunk) = body.next_chunk() {
        let Ok(mut data) = chunk else {
            failed = true;
            break;
        };
        if data.is_empty() {
            continue;
        }
        let head: &[u8] = if head_sent { &[] } else { &encoded.head };
        head_sent = true;
        if framing == Framing::Chunked {
            chunk_head.clear();
            push_chunk_head(&mut chunk_head, data.len());
            write_all_parts(stream, &[head, &chunk_head, &data, b"\r\n"], limit).await?;
        } else {
            if (data.len() as u64) > remaining {
                log::warning(&format!(
                    "{}: the app sent more than its Content-Length; the rest was cut and the connection closed",
                    describe()
                ));
                data.truncate(remaining as usize);
                write_all_parts(stream, &[head, &data], limit).await?;
                return Ok(Sent::Close);
            }
            remaining -= data.len() as u64;
            write_all_parts(stream, &[head, &data], limit).await?;
        }
    }
    drop(body);
    let head: &[u8] = if head_sent { &[] } else { &encoded.head };
    match framing {
        Framing::Chunked if !failed => {
            write_all_parts(stream, &[head, LAST_CHUNK], limit).await?;
            Ok(verdict(encoded.keep_alive))
        }
        // An unfinished chunked body: no last chunk, so the client sees the break.
        Framing::Chunked => {
            write_all_parts(stream, &[head], limit).await?;
            Ok(Sent::Close)
        }
        Framing::Length(_) if remaining > 0 && !failed => {
            write_all_parts(stream, &[head], limit).await?;
            log::warning(&format!(
                "{}: the app sent {remaining} byte(s) less than its Content-Length; closing the connection",
                describe()
            ));
            Ok(Sent::Close)
        }
        _ => {
            write_all_parts(stream, &[head], limit).await?;
            Ok(verdict(encoded.keep_alive && !failed))
        }
    }
}
