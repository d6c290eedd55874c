//! The uwsgi packet that nginx's `uwsgi_pass` sends, as a pure parser.
//!
//! A request is a 4-byte header — modifier1 (u8), datasize (u16 little-endian,
//! the size of the vars block), modifier2 (u8) — then the vars block: pairs of
//! (u16 LE key length, key, u16 LE value length, value), then CONTENT_LENGTH
//! bytes of body. This module only decodes bytes it is given; reading them
//! from a socket, with limits and timeouts, is the server's job, and making
//! a request head of the vars is [`super::head`]'s.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

/// Size of the fixed packet header.
pub const HEADER_LEN: usize = 4;

/// modifier1 of a plain WSGI request.
pub const MODIFIER_WSGI: u8 = 0;
/// modifier1 nginx sends with `uwsgi_modifier1 30;`: SCRIPT_NAME is cut from PATH_INFO.
pub const MODIFIER_STRIP_SCRIPT_NAME: u8 = 30;

/// The fixed header in front of every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// Which kind of request (0: WSGI, 30: WSGI with SCRIPT_NAME stripped).
    pub modifier1: u8,
    /// Size of the vars block that follows.
    pub datasize: u16,
    /// A sub-kind; unused by WSGI requests.
    pub modifier2: u8,
}

impl PacketHeader {
    /// Decode the 4 header bytes (any 4 bytes are a header; meaning is checked later).
    #[must_use]
    pub fn parse(bytes: [u8; HEADER_LEN]) -> Self {
        Self {
            modifier1: bytes[0],
            datasize: u16::from_le_bytes([bytes[1], bytes[2]]),
            modifier2: bytes[3],
        }
    }

    /// Whether rwsgi serves requests with this modifier1.
    #[must_use]
    pub fn is_supported(self) -> bool {
        matches!(self.modifier1, MODIFIER_WSGI | MODIFIER_STRIP_SCRIPT_NAME)
    }
}

/// Why a vars block is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// A key or value length field is cut off by the end of the block.
    TruncatedLength { offset: usize },
    /// A key or value runs past the end of the block.
    Overrun {
        offset: usize,
        length: usize,
        available: usize,
    },
    /// A key of length zero (never sent by a real proxy).
    EmptyKey { offset: usize },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedLength { offset } => {
                write!(f, "a length field at byte {offset} is cut off by the end of the vars block")
            }
            Self::Overrun { offset, length, available } => write!(
                f,
                "an item at byte {offset} claims {length} bytes but only {available} remain in the vars block"
            ),
            Self::EmptyKey { offset } => write!(f, "an empty key at byte {offset}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// The decoded vars block; keys and values point into the one buffer received.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    block: Bytes,
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

fn read_length(block: &[u8], offset: usize) -> Result<usize, CodecError> {
    match block.get(offset..offset + 2) {
        Some(&[low, high]) => Ok(usize::from(u16::from_le_bytes([low, high]))),
        _ => Err(CodecError::TruncatedLength { offset }),
    }
}

fn take(block: &[u8], offset: usize, length: usize) -> Result<Range<usize>, CodecError> {
    let available = block.len() - offset;
    if length > available {
        return Err(CodecError::Overrun {
            offset,
            length,
            available,
        });
    }
    Ok(offset..offset + length)
}

impl Vars {
    /// Decode a whole vars block.
    pub fn parse(block: Bytes) -> Result<Self, CodecError> {
        let mut pairs = Vec::with_capacity(24);
        let mut offset = 0;
        while offset < block.len() {
            let key_length = read_length(&block, offset)?;
            if key_length == 0 {
                return Err(CodecError::EmptyKey { offset });
            }
            let key = take(&block, offset + 2, key_length)?;
            offset = key.end;
            let value_length = read_length(&block, offset)?;
            let value = take(&block, offset + 2, value_length)?;
            offset = value.end;
            pairs.push((key, value));
        }
        Ok(Self { block, pairs })
    }

    /// Every (key, value) pair, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.pairs
            .iter()
            .map(|(key, value)| (&self.block[key.clone()], &self.block[value.clone()]))
    }

    /// The last value sent for `key` (a later `uwsgi_param` overrides an earlier one).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.iter()
            .filter(|(name, _)| *name == key)
            .map(|(_, value)| value)
            .last()
    }

    /// The block the pairs point into.
    pub fn block(&self) -> &Bytes {
        &self.block
    }

    /// Each pair as (key, value) ranges of `block`, in the order sent.
    pub fn pairs(&self) -> &[(Range<usize>, Range<usize>)] {
        &self.pairs
    }

    /// How many pairs were sent.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pairs.len()
    }
}

/// Encode pairs into a vars block and header (for tests and benchmarks).
#[cfg(test)]
pub(crate) fn encode(modifier1: u8, pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    for (key, value) in pairs {
        block.extend_from_slice(&(key.len() as u16).to_le_bytes());
        block.extend_from_slice(key);
        block.extend_from_slice(&(value.len() as u16).to_le_bytes());
        block.extend_from_slice(value);
    }
    let mut packet = vec![modifier1];
    packet.extend_from_slice(&(block.len() as u16).to_le_bytes());
    packet.push(0);
    packet.extend_from_slice(&block);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars_of(packet: &[u8]) -> Result<Vars, CodecError> {
        let header = PacketHeader::parse(packet[..4].try_into().unwrap());
        assert_eq!(usize::from(header.datasize), packet.len() - 4);
        Vars::parse(Bytes::copy_from_slice(&packet[4..]))
    }

    #[test]
    fn decodes_a_request_as_nginx_sends_it() {
        let packet = encode(
            0,
            &[
                (b"REQUEST_METHOD", b"GET"),
                (b"PATH_INFO", b"/a b"),
                (b"QUERY_STRING", b""),
                (b"HTTP_HOST", b"example.com"),
            ],
        );
        let header = PacketHeader::parse(packet[..4].try_into().unwrap());
        assert_eq!(header.modifier1, 0);
        assert!(header.is_supported());
        let vars = vars_of(&packet).unwrap();
        assert_eq!(vars.len(), 4);
        assert_eq!(vars.get(b"PATH_INFO"), Some(&b"/a b"[..]));
        assert_eq!(vars.get(b"QUERY_STRING"), Some(&b""[..]));
        assert_eq!(vars.get(b"MISSING"), None);
    }

    #[test]
    fn datasize_is_little_endian_and_reaches_64k() {
        let header = PacketHeader::parse([30, 0xff, 0xff, 0]);
        assert_eq!(header.datasize, 65535);
        assert_eq!(header.modifier1, MODIFIER_STRIP_SCRIPT_NAME);
        assert!(header.is_supported());
        assert!(!PacketHeader::parse([5, 0, 0, 0]).is_supported());
        let big = vec![b'x'; 65_000];
        let packet = encode(0, &[(b"HTTP_COOKIE", &big)]);
        assert_eq!(
            vars_of(&packet).unwrap().get(b"HTTP_COOKIE").unwrap().len(),
            65_000
        );
    }

    #[test]
    fn later_values_override_earlier_ones() {
        let packet = encode(0, &[(b"SCRIPT_NAME", b""), (b"SCRIPT_NAME", b"/app")]);
        assert_eq!(
            vars_of(&packet).unwrap().get(b"SCRIPT_NAME"),
            Some(&b"/app"[..])
        );
    }

    #[test]
    fn empty_block_has_no_vars() {
        assert_eq!(Vars::parse(Bytes::new()).unwrap().len(), 0);
    }

    #[test]
    fn rejects_a_cut_length_field() {
        assert_eq!(
            Vars::parse(Bytes::from_static(&[3])).unwrap_err(),
            CodecError::TruncatedLength { offset: 0 }
        );
        let block = [1, 0, b'K', 7];
        assert_eq!(
            Vars::parse(Bytes::copy_from_slice(&block)).unwrap_err(),
            CodecError::TruncatedLength { offset: 3 }
        );
    }

    #[test]
    fn rejects_a_key_running_past_the_block() {
        let block = [10, 0, b'A', b'B'];
        assert_eq!(
            Vars::parse(Bytes::copy_from_slice(&block)).unwrap_err(),
            CodecError::Overrun {
                offset: 2,
                length: 10,
                available: 2
            }
        );
    }

    #[test]
    fn rejects_a_value_running_past_the_block() {
        let block = [1, 0, b'K', 0xff, 0xff, b'v'];
        assert!(matches!(
            Vars::parse(Bytes::copy_from_slice(&block)).unwrap_err(),
            CodecError::Overrun { length: 65535, .. }
        ));
    }

    #[test]
    fn rejects_an_empty_key() {
        let block = [0, 0, 0, 0];
        assert_eq!(
            Vars::parse(Bytes::copy_from_slice(&block)).unwrap_err(),
            CodecError::EmptyKey { offset: 0 }
        );
    }

    #[test]
    fn any_bytes_parse_or_fail_cleanly() {
        // A cheap deterministic sweep in the spirit of the fuzz target.
        let mut seed: u32 = 12345;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let length = (seed >> 16) as usize % 40;
            let block: Vec<u8> = (0..length)
                .map(|index| (seed.rotate_left(index as u32) & 0x0f) as u8)
                .collect();
            if let Ok(vars) = Vars::parse(Bytes::from(block)) {
                for (key, _) in vars.iter() {
                    assert!(!key.is_empty());
                }
            }
        }
    }
}
