//! Arbitrary bytes as a chunked request body (`rwsgi_codec::chunked`): the
//! decoder never panics, answers the same however the bytes are split into
//! reads, and what it decodes survives a round trip through our encoder.
//! The first input byte seeds the read sizes; the rest is the body.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rwsgi_codec::chunked::{push_chunk_head, Chunk, ChunkError, ChunkedDecoder, LAST_CHUNK};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    End,
    NeedMore,
    Failed(ChunkError),
}

/// Everything feeding a body produced; `rest` is what followed `End`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    data: Vec<u8>,
    status: Status,
    rest: Vec<u8>,
}

fn feed<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut input = BytesMut::new();
    let mut data = Vec::new();
    let mut pieces = pieces.into_iter();
    let status = 'read: loop {
        loop {
            match decoder.decode(&mut input) {
                Ok(Chunk::Data(bytes)) => {
                    assert!(!bytes.is_empty(), "empty data returned");
                    data.extend_from_slice(&bytes);
                }
                Ok(Chunk::NeedMore) => {
                    assert!(input.is_empty(), "NeedMore left bytes in the input");
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
    assert_eq!(decoder.decoded(), data.len() as u64);
    let mut rest = Vec::new();
    if status == Status::End {
        rest.extend_from_slice(&input);
        pieces.for_each(|piece| rest.extend_from_slice(piece));
        let before = input.len();
        assert_eq!(decoder.decode(&mut input), Ok(Chunk::End));
        assert_eq!(input.len(), before, "a call after End consumed bytes");
    }
    if let Status::Failed(error) = status {
        assert_eq!(
            decoder.decode(&mut input),
            Err(error),
            "errors are not sticky"
        );
    }
    Outcome { data, status, rest }
}

/// Read sizes from 1 to 64 bytes, drawn from `seed` with xorshift.
fn pieces(body: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u64::from(seed) | 0x1234_5678_0000_0100;
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = ((state % 64) as usize + 1).min(rest.len());
        let (piece, tail) = rest.split_at(take);
        out.push(piece);
        rest = tail;
    }
    out
}

/// `data` as chunks of at most `piece` bytes, then the last chunk.
fn encode(data: &[u8], piece: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    for part in data.chunks(piece) {
        push_chunk_head(&mut out, part.len());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(LAST_CHUNK);
    out.to_vec()
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, body)) = input.split_first() else {
        return;
    };
    let whole = feed([body]);
    match whole.status {
        Status::Failed(error) => {
            assert!(
                error.offset() < body.len() as u64,
                "{error:?} past the input"
            );
            assert!(!error.to_string().is_empty());
        }
        Status::End => {
            let consumed = body.len() - whole.rest.len();
            assert_eq!(whole.rest, &body[consumed..]);
            assert!(consumed >= whole.data.len() + LAST_CHUNK.len());
            // End comes at the last byte of the body, not before.
            assert_eq!(feed([&body[..consumed - 1]]).status, Status::NeedMore);
        }
        Status::NeedMore => {}
    }
    assert_eq!(feed(body.chunks(1)), whole, "byte-by-byte reads differ");
    assert_eq!(feed(pieces(body, seed)), whole, "split reads differ");
    if whole.status != Status::End {
        return;
    }
    let piece = usize::from(seed).max(1);
    for encoded in [encode(&whole.data, usize::MAX), encode(&whole.data, piece)] {
        let again = feed([&encoded[..]]);
        assert_eq!(
            again.status,
            Status::End,
            "our own encoding does not decode"
        );
        assert_eq!(again.data, whole.data, "the round trip changed the data");
        assert!(again.rest.is_empty());
    }
});
