//! The HTTP/1.1 chunked transfer coding (RFC 9112 §7.1) of request bodies, as
//! a pure, strict, incremental decoder, plus the two pieces a response
//! encoder writes. It only turns bytes it is given into body data and says
//! where they went wrong; reading the socket, timeouts, `--max-body-size` and
//! answering the 400 are the connection's job. It needs nothing but `std` and
//! `bytes`, and the fuzz target links it like any other user.
//!
//! Strict on purpose: request smuggling lives in the gaps between two
//! parsers' readings of the same bytes, so whatever RFC 9112 does not allow —
//! a bare LF or CR, junk or whitespace after the size, a malformed extension,
//! an obs-folded trailer, a NUL — is an error, never a guess. Whitespace is
//! accepted exactly where the RFC's BWS is: before and after `;` and around
//! `=` of an extension (`5 ;a = b`), but not at the end of a line (`5 \r\n`).
//! Quoted-string extension values may hold obs-text (bytes 0x80-0xFF), as the
//! grammar allows. Extensions and trailer fields are checked, then dropped.
//!
//! Client-controlled sizes are bounded: a chunk-size line (extensions and
//! CRLF included) is at most [`MAX_SIZE_LINE`] bytes, a size at most 16 hex
//! digits (so it fits a u64), the trailer section at most
//! [`MAX_TRAILER_BYTES`] bytes and [`MAX_TRAILER_FIELDS`] fields. Chunk data is
//! handed on as it arrives, never buffered whole. Lines are scanned byte by
//! byte into the decoder's state, so a partial line is consumed, not
//! rescanned, and every error names the offending byte's offset in the body.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line accepted, extensions and CRLF included: enough for
/// any real client, small enough that a line without an end costs nothing.
pub const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section accepted (every field line and the final CRLF),
/// the same bound as a request head's.
pub const MAX_TRAILER_BYTES: usize = crate::http::MAX_HEAD_BYTES;
/// Most trailer fields accepted, the same bound as a request head's.
pub const MAX_TRAILER_FIELDS: usize = crate::http::MAX_HEADERS;
/// 16 hex digits fill a u64, so no size can overflow.
const MAX_SIZE_DIGITS: u32 = 16;

/// The last chunk with no trailers, which ends every chunked response body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Write the chunk-size line for `len` bytes of data (`{hex}\r\n`) into `out`,
/// for the response encoder. `len` must not be 0: that line is the last chunk.
pub fn push_chunk_head(out: &mut BytesMut, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    debug_assert!(len > 0, "a zero-size chunk is the last chunk");
    let mut digits = [0u8; (usize::BITS / 4) as usize];
    let mut at = digits.len();
    let mut rest = len;
    loop {
        at -= 1;
        digits[at] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.reserve(digits.len() - at + 2);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// One step of decoding, so the caller can stream data and knows when to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body data (never empty), split off the front of the input without a copy.
    Data(Bytes),
    /// The input holds no complete next piece: read more, then call again.
    NeedMore,
    /// The last chunk and the trailer section are consumed; what follows stays
    /// in the input (a pipelined request).
    End,
}

/// Why a chunked body is malformed; each is a 400 for the caller, and
/// `offset` is the offending byte's position in the chunked body (0 is the
/// first byte after the request head), for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A byte that is no hex digit where the chunk size needs one (an empty
    /// size, a sign, `0x`, leading whitespace), or junk after the size
    /// (including whitespace with no extension after it).
    InvalidSize { offset: u64, byte: u8 },
    /// A 17th hex digit: the size would not fit 16, or a u64.
    SizeTooLarge { offset: u64 },
    /// A byte the chunk-ext grammar does not allow where it stands (a name
    /// that is no token, a value that is no token or quoted-string, a CTL,
    /// trailing whitespace).
    InvalidExtension { offset: u64, byte: u8 },
    /// A chunk-size line longer than [`MAX_SIZE_LINE`], CRLF or not.
    LineTooLong { offset: u64 },
    /// A bare LF, or a CR not followed by LF.
    BadLineEnding { offset: u64 },
    /// Something other than CRLF right after a chunk's data.
    UnterminatedData { offset: u64, byte: u8 },
    /// A trailer line that is no `token ":" value`, or a CTL in its value.
    InvalidTrailer { offset: u64, byte: u8 },
    /// A trailer line starting with whitespace (obs-fold, RFC 9112 §5.2).
    ObsFold { offset: u64 },
    /// A trailer section longer than [`MAX_TRAILER_BYTES`].
    TrailersTooLarge { offset: u64 },
    /// More trailer fields than [`MAX_TRAILER_FIELDS`].
    TooManyTrailers { offset: u64 },
}

impl ChunkError {
    /// Where in the chunked body the error is (the offending byte's offset).
    #[must_use]
    pub fn offset(&self) -> u64 {
        match *self {
            Self::InvalidSize { offset, .. }
            | Self::SizeTooLarge { offset }
            | Self::InvalidExtension { offset, .. }
            | Self::LineTooLong { offset }
            | Self::BadLineEnding { offset }
            | Self::UnterminatedData { offset, .. }
            | Self::InvalidTrailer { offset, .. }
            | Self::ObsFold { offset }
            | Self::TrailersTooLarge { offset }
            | Self::TooManyTrailers { offset } => offset,
        }
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::InvalidSize { offset, byte } => write!(
                f,
                "byte 0x{byte:02x} at offset {offset} is not allowed in a chunk size"
            ),
            Self::SizeTooLarge { offset } => write!(
                f,
                "a chunk size with more than {MAX_SIZE_DIGITS} hex digits at offset {offset}"
            ),
            Self::InvalidExtension { offset, byte } => write!(
                f,
                "byte 0x{byte:02x} at offset {offset} is not allowed in a chunk extension"
            ),
            Self::LineTooLong { offset } => write!(
                f,
                "a chunk-size line longer than {MAX_SIZE_LINE} bytes at offset {offset}"
            ),
            Self::BadLineEnding { offset } => {
                write!(f, "a bare CR or LF at offset {offset}")
            }
            Self::UnterminatedData { offset, byte } => write!(
                f,
                "byte 0x{byte:02x} at offset {offset} where CRLF must end the chunk data"
            ),
            Self::InvalidTrailer { offset, byte } => write!(
                f,
                "byte 0x{byte:02x} at offset {offset} is not allowed in a trailer field"
            ),
            Self::ObsFold { offset } => write!(
                f,
                "a trailer line starting with whitespace (obs-fold) at offset {offset}"
            ),
            Self::TrailersTooLarge { offset } => write!(
                f,
                "a trailer section longer than {MAX_TRAILER_BYTES} bytes at offset {offset}"
            ),
            Self::TooManyTrailers { offset } => write!(
                f,
                "more than {MAX_TRAILER_FIELDS} trailer fields at offset {offset}"
            ),
        }
    }
}

impl std::error::Error for ChunkError {}

/// RFC 9110 tchar: what field names and chunk-ext names and tokens are made of.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// SP or HTAB, the only whitespace (BWS/OWS) HTTP knows.
fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// qdtext: a quoted-string byte that needs no backslash.
fn is_qdtext(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// HTAB, SP, VCHAR or obs-text: what may follow a backslash in a
/// quoted-string, and what a field value is made of.
fn is_text(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Where in a chunk-size line the scanner stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SizeState {
    Digits,
    /// Whitespace after the size: only `;` may end it.
    AfterSize,
    /// After `;`, BWS then a name.
    BeforeName,
    Name,
    /// Whitespace after a name: only `=` or `;` may end it.
    AfterName,
    /// After `=`, BWS then a token or quoted-string.
    BeforeValue,
    Token,
    Quoted,
    QuotedPair,
    /// Right after a quoted-string's closing quote.
    Closed,
    /// Whitespace after a value: only `;` may end it.
    AfterValue,
    Cr,
}

/// A chunk-size line read so far: `chunk-size [ chunk-ext ] CRLF`.
#[derive(Clone, Copy, Debug)]
struct SizeLine {
    state: SizeState,
    size: u64,
    digits: u32,
    len: usize,
}

impl SizeLine {
    const fn new() -> Self {
        Self {
            state: SizeState::Digits,
            size: 0,
            digits: 0,
            len: 0,
        }
    }

    /// Take the line's next byte (at body `offset`); the size once the CRLF is in.
    fn push(&mut self, byte: u8, offset: u64) -> Result<Option<u64>, ChunkError> {
        use SizeState as S;
        self.len += 1;
        if self.len > MAX_SIZE_LINE {
            return Err(ChunkError::LineTooLong { offset });
        }
        if byte == b'\n' && self.state != S::Cr {
            return Err(ChunkError::BadLineEnding { offset });
        }
        let size = ChunkError::InvalidSize { offset, byte };
        let ext = ChunkError::InvalidExtension { offset, byte };
        self.state = match self.state {
            S::Digits => {
                if let Some(value) = hex_value(byte) {
                    if self.digits == MAX_SIZE_DIGITS {
                        return Err(ChunkError::SizeTooLarge { offset });
                    }
                    self.digits += 1;
                    self.size = self.size << 4 | u64::from(value);
                    S::Digits
                } else if self.digits == 0 {
                    return Err(size);
                } else {
                    match byte {
                        b'\r' => S::Cr,
                        b';' => S::BeforeName,
                        b' ' | b'\t' => S::AfterSize,
                        _ => return Err(size),
                    }
                }
            }
            S::AfterSize => match byte {
                b' ' | b'\t' => S::AfterSize,
                b';' => S::BeforeName,
                _ => return Err(size),
            },
            S::BeforeName => match byte {
                b' ' | b'\t' => S::BeforeName,
                _ if is_tchar(byte) => S::Name,
                _ => return Err(ext),
            },
            S::Name => match byte {
                _ if is_tchar(byte) => S::Name,
                b' ' | b'\t' => S::AfterName,
                b'=' => S::BeforeValue,
                b';' => S::BeforeName,
                b'\r' => S::Cr,
                _ => return Err(ext),
            },
            S::AfterName => match byte {
                b' ' | b'\t' => S::AfterName,
                b'=' => S::BeforeValue,
                b';' => S::BeforeName,
                _ => return Err(ext),
            },
            S::BeforeValue => match byte {
                b' ' | b'\t' => S::BeforeValue,
                b'"' => S::Quoted,
                _ if is_tchar(byte) => S::Token,
                _ => return Err(ext),
            },
            S::Token => match byte {
                _ if is_tchar(byte) => S::Token,
                b' ' | b'\t' => S::AfterValue,
                b';' => S::BeforeName,
                b'\r' => S::Cr,
                _ => return Err(ext),
            },
            S::Quoted => match byte {
                b'"' => S::Closed,
                b'\\' => S::QuotedPair,
                _ if is_qdtext(byte) => S::Quoted,
                _ => return Err(ext),
            },
            S::QuotedPair if is_text(byte) => S::Quoted,
            S::QuotedPair => return Err(ext),
            S::Closed => match byte {
                b' ' | b'\t' => S::AfterValue,
                b';' => S::BeforeName,
                b'\r' => S::Cr,
                _ => return Err(ext),
            },
            S::AfterValue => match byte {
                b' ' | b'\t' => S::AfterValue,
                b';' => S::BeforeName,
                _ => return Err(ext),
            },
            S::Cr if byte == b'\n' => return Ok(Some(self.size)),
            S::Cr => return Err(ChunkError::BadLineEnding { offset }),
        };
        Ok(None)
    }
}

/// Where in the trailer section the scanner stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrailerState {
    LineStart,
    Name,
    Value,
    ValueCr,
    /// The CR of the empty line that ends the section.
    EndCr,
}

/// The trailer section read so far: `*( field-line CRLF ) CRLF`.
#[derive(Clone, Copy, Debug)]
struct Trailers {
    state: TrailerState,
    bytes: usize,
    fields: usize,
}

impl Trailers {
    const fn new() -> Self {
        Self {
            state: TrailerState::LineStart,
            bytes: 0,
            fields: 0,
        }
    }

    /// Take the section's next byte (at body `offset`); `Some` once it has ended.
    fn push(&mut self, byte: u8, offset: u64) -> Result<Option<()>, ChunkError> {
        use TrailerState as T;
        self.bytes += 1;
        if self.bytes > MAX_TRAILER_BYTES {
            return Err(ChunkError::TrailersTooLarge { offset });
        }
        if byte == b'\n' && !matches!(self.state, T::ValueCr | T::EndCr) {
            return Err(ChunkError::BadLineEnding { offset });
        }
        let invalid = ChunkError::InvalidTrailer { offset, byte };
        self.state = match self.state {
            T::LineStart => match byte {
                b'\r' => T::EndCr,
                _ if is_blank(byte) => return Err(ChunkError::ObsFold { offset }),
                _ if is_tchar(byte) => {
                    if self.fields == MAX_TRAILER_FIELDS {
                        return Err(ChunkError::TooManyTrailers { offset });
                    }
                    self.fields += 1;
                    T::Name
                }
                _ => return Err(invalid),
            },
            T::Name => match byte {
                b':' => T::Value,
                _ if is_tchar(byte) => T::Name,
                _ => return Err(invalid),
            },
            T::Value => match byte {
                b'\r' => T::ValueCr,
                _ if is_text(byte) => T::Value,
                _ => return Err(invalid),
            },
            T::ValueCr if byte == b'\n' => T::LineStart,
            T::EndCr if byte == b'\n' => return Ok(Some(())),
            T::ValueCr | T::EndCr => return Err(ChunkError::BadLineEnding { offset }),
        };
        Ok(None)
    }
}

/// What the decoder expects next.
#[derive(Clone, Copy, Debug)]
enum State {
    SizeLine(SizeLine),
    Data {
        remaining: u64,
    },
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    Trailers(Trailers),
    End,
    /// Errors are sticky: a broken body stays broken.
    Failed(ChunkError),
}

/// Push bytes from the front of `input` into a line scanner until it is done;
/// a partial line is consumed into the scanner's state.
fn feed<T>(
    input: &mut BytesMut,
    offset: &mut u64,
    mut push: impl FnMut(u8, u64) -> Result<Option<T>, ChunkError>,
) -> Result<Option<T>, ChunkError> {
    let mut done = None;
    let mut used = input.len();
    for (index, &byte) in input.iter().enumerate() {
        if let Some(value) = push(byte, *offset + index as u64)? {
            done = Some(value);
            used = index + 1;
            break;
        }
    }
    input.advance(used);
    *offset += used as u64;
    Ok(done)
}

/// Incremental decoder of one chunked request body: the connection feeds it
/// its read buffer as bytes arrive and streams out the data it returns.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the chunked body consumed so far.
    offset: u64,
    decoded: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: State::SizeLine(SizeLine::new()),
            offset: 0,
            decoded: 0,
        }
    }

    /// Consume what it can from the front of `input` (the connection's read
    /// buffer). Data comes back as it is buffered, in pieces, never waiting
    /// for a whole chunk. On `NeedMore` the input is empty (a partial line has
    /// been absorbed), on `End` it holds what followed the body. After `End`
    /// or an error, every call answers the same and leaves the input alone.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Chunk, ChunkError> {
        let result = self.step(input);
        if let Err(error) = result {
            self.state = State::Failed(error);
        }
        result
    }

    /// Body bytes decoded so far, for the caller's `--max-body-size` check.
    #[must_use]
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    fn step(&mut self, input: &mut BytesMut) -> Result<Chunk, ChunkError> {
        loop {
            match &mut self.state {
                State::Failed(error) => return Err(*error),
                State::End => return Ok(Chunk::End),
                State::SizeLine(line) => {
                    let Some(size) = feed(input, &mut self.offset, |byte, at| line.push(byte, at))?
                    else {
                        return Ok(Chunk::NeedMore);
                    };
                    self.state = if size == 0 {
                        State::Trailers(Trailers::new())
                    } else {
                        State::Data { remaining: size }
                    };
                }
                State::Data { remaining } => {
                    if input.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let take = usize::try_from(*remaining)
                        .map_or(input.len(), |remaining| remaining.min(input.len()));
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = State::DataCr;
                    }
                    self.offset += take as u64;
                    self.decoded += take as u64;
                    return Ok(Chunk::Data(input.split_to(take).freeze()));
                }
                State::DataCr => {
                    let Some(&byte) = input.first() else {
                        return Ok(Chunk::NeedMore);
                    };
                    let offset = self.offset;
                    match byte {
                        b'\r' => {}
                        b'\n' => return Err(ChunkError::BadLineEnding { offset }),
                        _ => return Err(ChunkError::UnterminatedData { offset, byte }),
                    }
                    input.advance(1);
                    self.offset += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    let Some(&byte) = input.first() else {
                        return Ok(Chunk::NeedMore);
                    };
                    if byte != b'\n' {
                        return Err(ChunkError::BadLineEnding {
                            offset: self.offset,
                        });
                    }
                    input.advance(1);
                    self.offset += 1;
                    self.state = State::SizeLine(SizeLine::new());
                }
                State::Trailers(trailers) => {
                    if feed(input, &mut self.offset, |byte, at| trailers.push(byte, at))?.is_none()
                    {
                        return Ok(Chunk::NeedMore);
                    }
                    self.state = State::End;
                }
            }
        }
    }
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
