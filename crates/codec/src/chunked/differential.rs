//! The chunk-size line decided by our decoder and by httparse's
//! `parse_chunk_size` over generated inputs: where httparse rejects, we
//! reject; where we accept, httparse agrees; every other difference is one
//! of the deliberate ones listed in `STRICTER`.

use super::*;

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
