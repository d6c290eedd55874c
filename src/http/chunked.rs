//! The HTTP/1.1 chunked transfer coding (RFC 9112 §7.1) of request bodies, as
//! a pure, strict, incremental decoder, plus the two pieces a response
//! encoder writes. It only turns bytes it is given into body data and says
//! where they went wrong; reading the socket, timeouts, `--max-body-size` and
//! answering the 400 are the connection's job. It needs nothing but `std` and
//! `bytes`, so the fuzz targets compile it by `#[path]`.
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
pub(crate) const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section accepted (every field line and the final CRLF),
/// the same bound as a request head's.
pub(crate) const MAX_TRAILER_BYTES: usize = 64 * 1024;
/// Most trailer fields accepted, the same bound as a request head's.
pub(crate) const MAX_TRAILER_FIELDS: usize = 100;
/// 16 hex digits fill a u64, so no size can overflow.
const MAX_SIZE_DIGITS: u32 = 16;

/// The last chunk with no trailers, which ends every chunked response body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Write the chunk-size line for `len` bytes of data (`{hex}\r\n`) into `out`,
/// for the response encoder. `len` must not be 0: that line is the last chunk.
pub(crate) fn push_chunk_head(out: &mut BytesMut, len: usize) {
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
pub(crate) enum Chunk {
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
pub(crate) enum ChunkError {
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
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests and the fuzz target
    pub(crate) fn offset(&self) -> u64 {
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
pub(crate) struct ChunkedDecoder {
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
    pub(crate) fn new() -> Self {
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
    pub(crate) fn decode(&mut self, input: &mut BytesMut) -> Result<Chunk, ChunkError> {
        let result = self.step(input);
        if let Err(error) = result {
            self.state = State::Failed(error);
        }
        result
    }

    /// Body bytes decoded so far, for the caller's `--max-body-size` check.
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests and the fuzz target
    pub(crate) fn decoded(&self) -> u64 {
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
mod tests {
    use super::*;

    /// How feeding a body ended.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Status {
        End,
        NeedMore,
        Failed(ChunkError),
    }

    /// Everything feeding a body produced.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Outcome {
        data: Vec<u8>,
        status: Status,
        /// What stayed after `End` (empty otherwise).
        rest: Vec<u8>,
        decoded: u64,
    }

    /// Feed `pieces` one read at a time, decoding all each allows.
    fn feed_pieces(pieces: &[&[u8]]) -> Outcome {
        let mut decoder = ChunkedDecoder::new();
        let mut input = BytesMut::new();
        let mut data = Vec::new();
        let mut pieces = pieces.iter();
        let status = 'read: loop {
            loop {
                match decoder.decode(&mut input) {
                    Ok(Chunk::Data(bytes)) => {
                        assert!(!bytes.is_empty(), "empty data returned");
                        data.extend_from_slice(&bytes);
                    }
                    Ok(Chunk::NeedMore) => {
                        assert!(input.is_empty(), "NeedMore left {input:?}");
                        break;
                    }
                    Ok(Chunk::End) => break 'read Status::End,
                    Err(error) => break 'read Status::Failed(error),
                }
            }
            match pieces.next() {
                Some(piece) => input.extend_from_slice(piece),
                None => break Status::NeedMore,
            }
        };
        let mut rest = Vec::new();
        if status == Status::End {
            rest.extend_from_slice(&input);
            pieces.for_each(|piece| rest.extend_from_slice(piece));
        }
        // Terminal states answer the same and leave the input alone.
        let before = input.len();
        match (&status, decoder.decode(&mut input)) {
            (Status::End, Ok(Chunk::End)) | (Status::NeedMore, Ok(Chunk::NeedMore)) => {}
            (Status::Failed(error), Err(again)) => assert_eq!(*error, again),
            (status, again) => panic!("{status:?} then {again:?}"),
        }
        if status != Status::NeedMore {
            assert_eq!(input.len(), before);
        }
        assert_eq!(decoder.decoded(), data.len() as u64);
        Outcome {
            data,
            status,
            rest,
            decoded: decoder.decoded(),
        }
    }

    fn whole(body: &[u8]) -> Outcome {
        feed_pieces(&[body])
    }

    fn error_of(body: &[u8]) -> ChunkError {
        match whole(body).status {
            Status::Failed(error) => error,
            other => panic!("{body:?} gave {other:?}"),
        }
    }

    fn assert_body(body: &[u8], data: &[u8]) {
        let outcome = whole(body);
        assert_eq!(outcome.status, Status::End, "{body:?}");
        assert_eq!(outcome.data, data, "{body:?}");
        assert!(outcome.rest.is_empty());
    }

    /// The same outcome for every split into two reads and for byte-by-byte reads.
    fn assert_split_invariant(body: &[u8]) {
        let expected = whole(body);
        for at in 0..=body.len() {
            let (head, tail) = body.split_at(at);
            assert_eq!(
                feed_pieces(&[head, tail]),
                expected,
                "{body:?} split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(feed_pieces(&bytes), expected, "{body:?} byte by byte");
    }

    const VALID: &[(&[u8], &[u8])] = &[
        (b"0\r\n\r\n", b""),
        (b"000\r\n\r\n", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (
            b"5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n005\r\nworld\r\n0\r\n\r\n",
            b"hello 0123456789world",
        ),
        (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"3;a\r\nabc\r\n0;last\r\n\r\n", b"abc"),
        (b"3;a=b;c=d\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3 ;a=b\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3\t; a = b ;c\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;a=\"\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        (
            b"3;a=\"q \\\"x\\\" \t\xe9\";b=c\r\nabc\r\n0\r\n\r\n",
            b"abc",
        ),
        (b"3;a=\"x\" ;b\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;!#$%&'*+-.^_`|~09az=AZ\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"0\r\nX-Sum: abc\r\n\r\n", b""),
        (
            b"2\r\nok\r\n0\r\nX-Sum: abc\r\nEmpty:\r\nSpaced:  v \t w  \r\nObs: \xff\r\n\r\n",
            b"ok",
        ),
        // Data bytes are not looked at: CR, LF and NUL pass.
        (b"4\r\n\r\n\0\n\r\n0\r\n\r\n", b"\r\n\0\n"),
    ];

    const INVALID: &[&[u8]] = &[
        b"\r\n",
        b";a\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"\t5\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b"0 \r\n\r\n",
        b"5 5\r\n",
        b"5x\r\n",
        b"5\0\r\n",
        b"\0",
        b"11111111111111111\r\n",
        b"5;\r\n",
        b"5;=b\r\n",
        b"5;a=\r\n",
        b"5;a b\r\n",
        b"5;a=b c\r\n",
        b"5;a=b \r\n",
        b"5;a \r\n",
        b"5;a=\"b\r\n",
        b"5;a=\"b\nc\"\r\n",
        b"5;a=\"\x01\"\r\n",
        b"5;a=\"b\"c\r\n",
        b"5;a=\"\\\x7f\"\r\n",
        b"5;a\0\r\n",
        b"5;a=b\x7f\r\n",
        b"5;a\nb\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\rhello",
        b"5\rx",
        b"0\n\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\rX",
        b"5\r\nhello0\r\n\r\n",
        b"0\r\nX: a\nY: b\r\n\r\n",
        b"0\r\nX: a\r\n folded\r\n\r\n",
        b"0\r\n\tX: a\r\n\r\n",
        b"0\r\nX : a\r\n\r\n",
        b"0\r\nX\r\n\r\n",
        b"0\r\n: v\r\n\r\n",
        b"0\r\nX: a\x01b\r\n\r\n",
        b"0\r\nX: \0\r\n\r\n",
        b"0\r\nX: \x7f\r\n\r\n",
        b"0\r\nX: a\rb\r\n\r\n",
        b"0\r\n\r\r",
        b"0\r\n\n",
        b"0\r\nX\0: a\r\n\r\n",
    ];

    #[test]
    fn decodes_valid_bodies() {
        for (body, data) in VALID {
            assert_body(body, data);
        }
    }

    #[test]
    fn rejects_invalid_bodies() {
        for body in INVALID {
            let error = error_of(body);
            assert!(error.offset() < body.len() as u64, "{body:?}: {error:?}");
            assert!(error.to_string().contains(&error.offset().to_string()));
        }
    }

    use ChunkError as E;

    /// Bodies with the error each must give, offset and byte exactly.
    const OFFENDING: &[(&[u8], ChunkError)] = &[
        (
            b"\r\n",
            E::InvalidSize {
                offset: 0,
                byte: b'\r',
            },
        ),
        (
            b";a\r\n",
            E::InvalidSize {
                offset: 0,
                byte: b';',
            },
        ),
        (
            b"+5\r\n",
            E::InvalidSize {
                offset: 0,
                byte: b'+',
            },
        ),
        (
            b"0x5\r\n",
            E::InvalidSize {
                offset: 1,
                byte: b'x',
            },
        ),
        (
            b" 5\r\n",
            E::InvalidSize {
                offset: 0,
                byte: b' ',
            },
        ),
        (
            b"5 \r\n",
            E::InvalidSize {
                offset: 2,
                byte: b'\r',
            },
        ),
        (
            b"5\t\r\n",
            E::InvalidSize {
                offset: 2,
                byte: b'\r',
            },
        ),
        (
            b"5 5\r\n",
            E::InvalidSize {
                offset: 2,
                byte: b'5',
            },
        ),
        (b"5\0\r\n", E::InvalidSize { offset: 1, byte: 0 }),
        (b"00000000000000000\r\n", E::SizeTooLarge { offset: 16 }),
        (
            b"5;\r\n",
            E::InvalidExtension {
                offset: 2,
                byte: b'\r',
            },
        ),
        (
            b"5;a=b \r\n",
            E::InvalidExtension {
                offset: 6,
                byte: b'\r',
            },
        ),
        (
            b"5;a=\"\x01\"\r\n",
            E::InvalidExtension { offset: 5, byte: 1 },
        ),
        (
            b"5;a=\"b\r\n",
            E::InvalidExtension {
                offset: 6,
                byte: b'\r',
            },
        ),
        (b"5;a\0\r\n", E::InvalidExtension { offset: 3, byte: 0 }),
        (b"5\n", E::BadLineEnding { offset: 1 }),
        (b"5;a\nb\r\n", E::BadLineEnding { offset: 3 }),
        (b"5\r\r", E::BadLineEnding { offset: 2 }),
        (
            b"5\r\nhelloX",
            E::UnterminatedData {
                offset: 8,
                byte: b'X',
            },
        ),
        (b"5\r\nhello\n", E::BadLineEnding { offset: 8 }),
        (b"5\r\nhello\rX", E::BadLineEnding { offset: 9 }),
        (b"0\r\nX: a\r\n folded", E::ObsFold { offset: 9 }),
        (
            b"0\r\nX : a",
            E::InvalidTrailer {
                offset: 4,
                byte: b' ',
            },
        ),
        (
            b"0\r\nX\r\n",
            E::InvalidTrailer {
                offset: 4,
                byte: b'\r',
            },
        ),
        (b"0\r\nX: \0", E::InvalidTrailer { offset: 6, byte: 0 }),
        (b"0\r\nX: a\nY", E::BadLineEnding { offset: 7 }),
        (b"0\r\n\r\r", E::BadLineEnding { offset: 4 }),
    ];

    #[test]
    fn names_the_offending_byte() {
        for (body, expected) in OFFENDING {
            assert_eq!(error_of(body), *expected, "{body:?}");
        }
    }

    #[test]
    fn a_16_digit_size_fits_and_waits_for_data() {
        let outcome = whole(b"ffffffffffffffff\r\nabc");
        assert_eq!(outcome.status, Status::NeedMore);
        assert_eq!(outcome.data, b"abc");
    }

    #[test]
    fn bounds_the_size_line_even_without_its_end() {
        let mut line = b"5;".to_vec();
        line.resize(MAX_SIZE_LINE - 2, b'a');
        line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_body(&line, b"hello");

        let mut endless = b"5;".to_vec();
        endless.resize(MAX_SIZE_LINE * 2, b'a');
        assert_eq!(
            error_of(&endless),
            ChunkError::LineTooLong {
                offset: MAX_SIZE_LINE as u64
            }
        );
        // Across many reads the count carries on.
        let pieces: Vec<&[u8]> = endless.chunks(7).collect();
        assert_eq!(
            feed_pieces(&pieces).status,
            Status::Failed(ChunkError::LineTooLong {
                offset: MAX_SIZE_LINE as u64
            })
        );
    }

    #[test]
    fn bounds_the_trailer_section() {
        let mut section = b"0\r\n".to_vec();
        for index in 0..MAX_TRAILER_FIELDS {
            section.extend_from_slice(format!("X-{index}: v\r\n").as_bytes());
        }
        let mut full = section.clone();
        full.extend_from_slice(b"\r\n");
        assert_body(&full, b"");
        let extra = section.len() as u64;
        section.extend_from_slice(b"Y: v\r\n\r\n");
        assert_eq!(
            error_of(&section),
            ChunkError::TooManyTrailers { offset: extra }
        );

        // Exactly the limit, final CRLF included, passes; one more byte does not.
        let value_len = MAX_TRAILER_BYTES - b"X: \r\n\r\n".len();
        let mut largest = b"0\r\nX: ".to_vec();
        largest.resize(largest.len() + value_len, b'v');
        largest.extend_from_slice(b"\r\n\r\n");
        assert_body(&largest, b"");
        let mut endless = b"0\r\nX: ".to_vec();
        endless.resize(MAX_TRAILER_BYTES + 100, b'v');
        assert_eq!(
            error_of(&endless),
            ChunkError::TrailersTooLarge {
                offset: 3 + MAX_TRAILER_BYTES as u64
            }
        );
    }

    #[test]
    fn leaves_a_pipelined_request_in_the_input() {
        let outcome = whole(b"3\r\nabc\r\n0\r\nX: y\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(outcome.status, Status::End);
        assert_eq!(outcome.data, b"abc");
        assert_eq!(outcome.rest, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn returns_data_as_it_arrives_without_copying() {
        let mut decoder = ChunkedDecoder::new();
        let mut input = BytesMut::from(&b"10000\r\n0123456789"[..]);
        let start = input.as_ptr() as usize;
        let Ok(Chunk::Data(data)) = decoder.decode(&mut input) else {
            panic!("no data");
        };
        assert_eq!(&data[..], b"0123456789");
        assert_eq!(data.as_ptr() as usize, start + 7, "the data was copied");
        assert_eq!(decoder.decode(&mut input), Ok(Chunk::NeedMore));
        input.extend_from_slice(&vec![b'x'; 0x10000 - 10]);
        let Ok(Chunk::Data(data)) = decoder.decode(&mut input) else {
            panic!("no data");
        };
        assert_eq!(data.len(), 0x10000 - 10);
        assert_eq!(decoder.decoded(), 0x10000);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(decoder.decode(&mut input), Ok(Chunk::End));
    }

    #[test]
    fn end_of_input_mid_body_is_need_more() {
        for body in [
            &b""[..],
            b"5",
            b"5;a=\"x",
            b"5\r",
            b"5\r\nhel",
            b"5\r\nhello\r",
        ] {
            assert_eq!(whole(body).status, Status::NeedMore, "{body:?}");
        }
        assert_eq!(whole(b"0\r\nX: y\r\n").status, Status::NeedMore);
    }

    #[test]
    fn every_split_gives_the_same_outcome() {
        for (body, _) in VALID {
            assert_split_invariant(body);
            let mut pipelined = body.to_vec();
            pipelined.extend_from_slice(b"POST / HTTP/1.1\r\n");
            assert_split_invariant(&pipelined);
        }
        for body in INVALID {
            assert_split_invariant(body);
        }
    }

    #[test]
    fn the_encoder_pieces_decode_back() {
        let mut out = BytesMut::new();
        for (len, line) in [
            (1, &b"1\r\n"[..]),
            (10, b"a\r\n"),
            (255, b"ff\r\n"),
            (4096, b"1000\r\n"),
            (usize::MAX, b"ffffffffffffffff\r\n"),
        ] {
            out.clear();
            push_chunk_head(&mut out, len);
            assert_eq!(&out[..], line);
        }
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut body = BytesMut::new();
        for piece in data.chunks(777) {
            push_chunk_head(&mut body, piece.len());
            body.extend_from_slice(piece);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(LAST_CHUNK);
        assert_body(&body, &data);
        assert_body(LAST_CHUNK, b"");
    }

    /// What our size-line scanner makes of a buffer, in httparse's terms.
    #[derive(Debug, PartialEq, Eq)]
    enum Line {
        Accept { consumed: usize, size: u64 },
        Partial,
        Reject(ChunkError),
    }

    fn scan_size_line(buffer: &[u8]) -> Line {
        let mut line = SizeLine::new();
        for (index, &byte) in buffer.iter().enumerate() {
            match line.push(byte, index as u64) {
                Ok(Some(size)) => {
                    return Line::Accept {
                        consumed: index + 1,
                        size,
                    }
                }
                Ok(None) => {}
                Err(error) => return Line::Reject(error),
            }
        }
        Line::Partial
    }

    fn httparse_line(buffer: &[u8]) -> Result<Option<(usize, u64)>, ()> {
        match httparse::parse_chunk_size(buffer) {
            Ok(httparse::Status::Complete(found)) => Ok(Some(found)),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::InvalidChunkSize) => Err(()),
        }
    }

    /// Lines httparse accepts and we reject, one group per deliberate
    /// difference (httparse 1.10 is lenient on purpose; we are strict, see
    /// the module doc):
    /// 1. an empty chunk-size, which httparse reads as 0;
    /// 2. whitespace after the size with no extension after it;
    /// 3. the chunk-ext grammar: httparse skips any byte but CR up to the
    ///    CRLF (a bare LF, NUL, CTLs, an empty name or value, trailing
    ///    whitespace); we require `token [ "=" ( token / quoted-string ) ]`;
    /// 4. a line longer than MAX_SIZE_LINE (httparse has no bound).
    const STRICTER: &[&[u8]] = &[
        // 1
        b"\r\n",
        b";a\r\n",
        b" \r\n",
        b"\t;a\r\n",
        // 2
        b"5 \r\n",
        b"5\t\r\n",
        b"5 \t \r\n",
        // 3
        b"5;\r\n",
        b"5;=b\r\n",
        b"5;a=\r\n",
        b"5;a b\r\n",
        b"5;a=b \r\n",
        b"5;a\nb\r\n",
        b"5;a\0\r\n",
        b"5;a=\"\x01\"\r\n",
        b"5;a=\"b\"c\r\n",
        b"5;a=b;;\r\n",
        b"5;a\x7f\r\n",
        b"5;\xff\r\n",
    ];

    #[test]
    fn stricter_than_httparse_where_we_mean_to_be() {
        for line in STRICTER {
            assert!(
                matches!(httparse_line(line), Ok(Some(_))),
                "httparse no longer accepts {line:?}"
            );
            assert!(
                matches!(scan_size_line(line), Line::Reject(_)),
                "we accept {line:?}"
            );
        }
        let mut long = b"5;".to_vec();
        long.resize(MAX_SIZE_LINE * 2, b'a');
        long.extend_from_slice(b"\r\n");
        assert!(matches!(httparse_line(&long), Ok(Some((_, 5)))));
        assert!(matches!(
            scan_size_line(&long),
            Line::Reject(ChunkError::LineTooLong { .. })
        ));
        // Both accept BWS before `;` (RFC 9112 allows it).
        assert_eq!(httparse_line(b"5 ;a=b\r\n"), Ok(Some((8, 5))));
        assert_eq!(
            scan_size_line(b"5 ;a=b\r\n"),
            Line::Accept {
                consumed: 8,
                size: 5
            }
        );
    }

    /// A tiny deterministic PRNG (xorshift64), so the sweep needs no crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    fn random_line(rng: &mut XorShift) -> Vec<u8> {
        const DIGITS: &[&[u8]] = &[b"0", b"1", b"7", b"9", b"a", b"f", b"A", b"F", b"00"];
        const PARTS: &[&[u8]] = &[
            b"0",
            b"5",
            b"f",
            b"A",
            b";",
            b";",
            b"=",
            b"a",
            b"b=c",
            b"tok",
            b"\"",
            b"\"q s\"",
            b"\\",
            b" ",
            b" ",
            b"\t",
            b"\r",
            b"\n",
            b"\r\n",
            b"x",
            b"0x",
            b"+",
            b"-",
            b"\0",
            b"\x7f",
            b"\x01",
            b"\xff",
            b",",
            b"/",
            b"ab",
            b"\"\\\"\"",
        ];
        let mut line = Vec::new();
        for _ in 0..rng.below(20) {
            line.extend_from_slice(DIGITS[rng.below(DIGITS.len())]);
        }
        for _ in 0..rng.below(10) {
            line.extend_from_slice(PARTS[rng.below(PARTS.len())]);
        }
        if rng.below(5) != 0 {
            line.extend_from_slice(b"\r\n");
        }
        if rng.below(4) == 0 {
            line.extend_from_slice(b"data");
        }
        line
    }

    #[test]
    fn differs_from_httparse_only_by_being_stricter() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let (mut agreed, mut empty, mut blank, mut extension) = (0, 0, 0, 0);
        for _ in 0..200_000 {
            let line = random_line(&mut rng);
            let ours = scan_size_line(&line);
            let theirs = httparse_line(&line);
            match (&ours, theirs) {
                (Line::Reject(_), Err(())) | (Line::Partial, Ok(None)) => {}
                (Line::Accept { consumed, size }, Ok(Some(found))) => {
                    assert_eq!((*consumed, *size), found, "{line:?}");
                    agreed += 1;
                }
                (Line::Reject(error), Ok(_)) => {
                    // Only the deliberate differences listed at STRICTER.
                    let before = &line[..error.offset() as usize];
                    match *error {
                        ChunkError::InvalidSize { offset: 0, .. } => empty += 1,
                        ChunkError::InvalidSize { byte: b'\r', .. }
                            if before.last().is_some_and(|&byte| is_blank(byte)) =>
                        {
                            blank += 1;
                        }
                        ChunkError::InvalidExtension { .. } | ChunkError::BadLineEnding { .. }
                            if before.contains(&b';') =>
                        {
                            extension += 1;
                        }
                        _ => panic!("{line:?}: we reject ({error}), httparse accepts"),
                    }
                }
                (ours, theirs) => panic!("{line:?}: ours {ours:?}, httparse {theirs:?}"),
            }
        }
        assert!(agreed > 1000 && empty > 100 && blank > 100 && extension > 1000);
    }
}
