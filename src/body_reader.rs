//! The one request-body reader, for every protocol: the whole body is read
//! by the I/O side before the app is called, within `--max-body-size`, each
//! read within `--body-timeout`, kept in memory up to `--post-buffering` and
//! spooled to a file past it (see `body.rs`). A protocol says how its body
//! is framed: a length, or a decoder of its own (HTTP's chunked coding).

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::body::{BodySink, RequestBody, SpoolError};
use crate::deadline;

/// Bytes asked of the socket per read while a body arrives.
const READ_STEP: usize = 256 * 1024;

/// What a body decoder found at the front of the buffer.
pub(crate) enum Piece {
    Data(Bytes),
    /// Nothing complete yet: read more.
    NeedMore,
    /// The body is complete; what follows belongs to the next request.
    End,
}

/// A body framing that needs decoding (HTTP's chunked transfer coding).
pub(crate) trait BodyDecoder {
    type Error: Display + Send;
    /// Take the next piece from the front of `input`.
    fn next_piece(&mut self, input: &mut BytesMut) -> Result<Piece, Self::Error>;
}

/// How a request's body is framed.
pub(crate) enum Framing<D> {
    None,
    Length(u64),
    Decoded(D),
}

/// The limits a body is read under.
pub(crate) struct BodyLimits<'a> {
    pub max_size: u64,
    pub idle: Duration,
    pub post_buffering: u64,
    pub spool_dir: &'a Path,
}

/// Why a body was not read in full.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over `--max-body-size`, declared or counted.
    TooLarge,
    TimedOut,
    /// The framing was broken (a bad chunk); says how.
    Malformed(String),
    /// The client closed or the read failed: nobody to answer.
    Gone,
    /// The spool file could not be made or written.
    Spool(SpoolError),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => f.write_str("the body is larger than --max-body-size"),
            Self::TimedOut => f.write_str("timed out waiting for the request body"),
            Self::Malformed(why) => write!(f, "malformed body: {why}"),
            Self::Gone => f.write_str("the connection closed in the middle of the request body"),
            Self::Spool(why) => write!(f, "{why}"),
        }
    }
}

impl BodyError {
    /// The status the client gets, if it is still there.
    pub(crate) fn status(&self) -> Option<StatusCode> {
        match self {
            Self::TooLarge => Some(StatusCode::PAYLOAD_TOO_LARGE),
            Self::TimedOut => Some(StatusCode::REQUEST_TIMEOUT),
            Self::Malformed(_) => Some(StatusCode::BAD_REQUEST),
            Self::Gone => None,
            Self::Spool(_) => Some(StatusCode::SERVICE_UNAVAILABLE),
        }
    }

    /// Whether the rest of the client's body should be read and dropped
    /// before closing, so the client (or its proxy) sees the answer.
    pub(crate) fn drain(&self) -> bool {
        matches!(self, Self::TooLarge | Self::Spool(_))
    }
}

/// A read of more body bytes into `buffer`, within the idle limit.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    want: usize,
    idle: Duration,
) -> Result<(), BodyError> {
    buffer.reserve(want);
    match deadline::within(idle, stream.read_buf(buffer)).await {
        Err(deadline::TimedOut) => Err(BodyError::TimedOut),
        Ok(Ok(read)) if read > 0 => Ok(()),
        Ok(_) => Err(BodyError::Gone),
    }
}

/// Read a whole body framed by `framing`, starting with what `buffer`
/// already holds; bytes after the body stay in `buffer`. `framing` is kept
/// up to date (bytes left, decoder state), so that after an error the rest
/// of the body can be discarded (`refusal::discard_body`). A `continue_line`
/// is written before the first read that needs the client (`Expect:
/// 100-continue`) and taken: still there after an error means the client
/// was never asked for its body.
pub(crate) async fn read_body<S, D>(
    stream: &mut S,
    buffer: &mut BytesMut,
    framing: &mut Framing<D>,
    limits: &BodyLimits<'_>,
    continue_line: &mut Option<&'static [u8]>,
) -> Result<RequestBody, BodyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: BodyDecoder,
{
    match framing {
        Framing::None | Framing::Length(0) => Ok(RequestBody::Empty),
        Framing::Length(left) => {
            let length = *left;
            if length > limits.max_size {
                return Err(BodyError::TooLarge);
            }
            let mut sink = BodySink::new(Some(length), limits.post_buffering, limits.spool_dir);
            if length <= limits.post_buffering {
                // Read it whole into the buffer, sized once: one piece, no copy.
                let whole = usize::try_from(length).map_err(|_| BodyError::TooLarge)?;
                if buffer.len() < whole {
                    buffer.reserve(whole - buffer.len());
                }
                while buffer.len() < whole {
                    send_continue(stream, continue_line).await?;
                    let want = (whole - buffer.len()).min(READ_STEP);
                    read_more(stream, buffer, want, limits.idle).await?;
                }
            }
            loop {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                if take > 0 {
                    *left -= take as u64;
                    sink.push(buffer.split_to(take).freeze())
                        .map_err(BodyError::Spool)?;
                }
                if *left == 0 {
                    return Ok(sink.finish());
                }
                send_continue(stream, continue_line).await?;
                let want = usize::try_from(*left).unwrap_or(READ_STEP).min(READ_STEP);
                read_more(stream, buffer, want, limits.idle).await?;
            }
        }
        Framing::Decoded(decoder) => {
            let mut sink = BodySink::new(None, limits.post_buffering, limits.spool_dir);
            loop {
                match decoder.next_piece(buffer) {
                    Err(error) => return Err(BodyError::Malformed(error.to_string())),
                    Ok(Piece::Data(data)) => {
                        if sink.len() + data.len() as u64 > limits.max_size {
                            return Err(BodyError::TooLarge);
                        }
                        sink.push(data).map_err(BodyError::Spool)?;
                    }
                    Ok(Piece::End) => return Ok(sink.finish()),
                    Ok(Piece::NeedMore) => {
                        send_continue(stream, continue_line).await?;
                        read_more(stream, buffer, READ_STEP, limits.idle).await?;
                    }
                }
            }
        }
    }
}

/// Read and drop the rest of a refused body as its framing says, so the
/// connection can close when the client has sent it all; bounded by
/// `max_bytes`, the `until` instant and `idle` per read (0: no own limit).
pub(crate) async fn discard_body<S, D>(
    stream: &mut S,
    buffer: &mut BytesMut,
    framing: &mut Framing<D>,
    max_bytes: u64,
    until: tokio::time::Instant,
    idle: Duration,
) where
    S: AsyncRead + Unpin,
    D: BodyDecoder,
{
    let mut dropped: u64 = 0;
    loop {
        match framing {
            Framing::None => return,
            Framing::Length(left) => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                buffer.advance(take);
                *left -= take as u64;
                dropped += take as u64;
                if *left == 0 {
                    return;
                }
            }
            Framing::Decoded(decoder) => loop {
                match decoder.next_piece(buffer) {
                    Ok(Piece::Data(data)) => dropped += data.len() as u64,
                    Ok(Piece::NeedMore) => break,
                    Ok(Piece::End) | Err(_) => return,
                }
            },
        }
        let now = tokio::time::Instant::now();
        if dropped >= max_bytes || now >= until {
            return;
        }
        let idle = if idle.is_zero() {
            until - now
        } else {
            idle.min(until - now)
        };
        buffer.clear();
        if read_more(stream, buffer, READ_STEP, idle).await.is_err() {
            return;
        }
    }
}

/// Write the interim `100 Continue` once, before the client is waited on.
async fn send_continue<S: AsyncWrite + Unpin>(
    stream: &mut S,
    line: &mut Option<&'static [u8]>,
) -> Result<(), BodyError> {
    if let Some(bytes) = line.take() {
        stream.write_all(bytes).await.map_err(|_| BodyError::Gone)?;
    }
    Ok(())
}

/// The framing of a protocol without a decoder of its own.
pub(crate) enum NoDecoder {}

impl BodyDecoder for NoDecoder {
    type Error = std::convert::Infallible;

    fn next_piece(&mut self, _input: &mut BytesMut) -> Result<Piece, Self::Error> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::{read_body, BodyError, BodyLimits, Framing, NoDecoder};
    use crate::body::RequestBody;
    use bytes::BytesMut;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    fn limits(max_size: u64) -> BodyLimits<'static> {
        BodyLimits {
            max_size,
            idle: Duration::from_secs(5),
            post_buffering: 1 << 20,
            spool_dir: std::path::Path::new("/tmp"),
        }
    }

    #[tokio::test]
    async fn reads_a_length_body_and_leaves_the_next_request() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut buffer = BytesMut::from(&b"hel"[..]);
        let writer = tokio::spawn(async move {
            client.write_all(b"lo world").await.expect("write");
            client
        });
        let body = read_body(
            &mut server,
            &mut buffer,
            &mut Framing::<NoDecoder>::Length(5),
            &limits(100),
            &mut None,
        )
        .await
        .expect("body");
        let _client = writer.await.expect("joined");
        match body {
            RequestBody::Memory(bytes) => assert_eq!(&bytes[..], b"hello"),
            _ => panic!("expected a memory body"),
        }
        // Whatever else arrived stays for the next request.
        assert!(b" world".starts_with(&buffer[..]));
    }

    #[tokio::test]
    async fn refuses_a_declared_length_over_the_limit_without_reading() {
        let (_client, mut server) = tokio::io::duplex(64);
        let mut buffer = BytesMut::new();
        let result = read_body(
            &mut server,
            &mut buffer,
            &mut Framing::<NoDecoder>::Length(101),
            &limits(100),
            &mut None,
        )
        .await;
        assert!(matches!(result, Err(BodyError::TooLarge)));
    }

    #[tokio::test]
    async fn a_closed_client_is_gone() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let mut buffer = BytesMut::new();
        let result = read_body(
            &mut server,
            &mut buffer,
            &mut Framing::<NoDecoder>::Length(10),
            &limits(100),
            &mut None,
        )
        .await;
        assert!(matches!(result, Err(BodyError::Gone)));
    }

    #[tokio::test]
    async fn discards_exactly_the_rest_of_a_refused_body() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut framing = Framing::<NoDecoder>::Length(101);
        let mut buffer = BytesMut::from(&b"0123456789"[..]);
        let refused = read_body(
            &mut server,
            &mut buffer,
            &mut framing,
            &limits(100),
            &mut None,
        )
        .await;
        assert!(matches!(refused, Err(BodyError::TooLarge)));
        client.write_all(&[b'x'; 91]).await.expect("write");
        // The client keeps the connection open: the discard must end when the body does.
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        tokio::time::timeout(
            Duration::from_secs(2),
            super::discard_body(
                &mut server,
                &mut buffer,
                &mut framing,
                1 << 20,
                until,
                Duration::from_secs(5),
            ),
        )
        .await
        .expect("ended with the body, not a timeout");
        assert!(matches!(framing, Framing::Length(0)));
        drop(client);
    }
}
