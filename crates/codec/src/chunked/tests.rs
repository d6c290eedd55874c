//! Tests of the chunked decoder: valid bodies, every error with its offset,
//! split feeding, and the encoder pieces decoding back.

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
