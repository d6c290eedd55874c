//! Invariants shared by the fuzz targets; included by `#[path]` next to the codec.

use bytes::Bytes;

use crate::codec::{CodecError, Vars};

/// Parse `block` as a vars block and check everything that must hold for the result.
pub fn vars_block(block: &[u8]) {
    match Vars::parse(Bytes::copy_from_slice(block)) {
        Ok(vars) => check_ok(block, &vars),
        Err(error) => check_err(block, &error),
    }
}

fn check_ok(block: &[u8], vars: &Vars) {
    let mut pairs = 0usize;
    let mut total = 0usize;
    let mut reencoded = Vec::with_capacity(block.len());
    for (key, value) in vars.iter() {
        assert!(!key.is_empty(), "empty key accepted");
        let got = vars.get(key);
        assert!(got.is_some(), "get() misses a key that iter() yields");
        // `get` returns the last value sent for a key.
        let last = vars
            .iter()
            .filter(|(name, _)| *name == key)
            .map(|(_, value)| value)
            .last();
        assert_eq!(got, last);
        assert!(key.len() <= usize::from(u16::MAX) && value.len() <= usize::from(u16::MAX));
        pairs += 1;
        total += key.len() + value.len();
        reencoded.extend_from_slice(&(key.len() as u16).to_le_bytes());
        reencoded.extend_from_slice(key);
        reencoded.extend_from_slice(&(value.len() as u16).to_le_bytes());
        reencoded.extend_from_slice(value);
    }
    assert_eq!(
        total + 4 * pairs,
        block.len(),
        "pairs do not cover the block"
    );
    assert_eq!(
        reencoded, block,
        "re-encoding the pairs does not give the block back"
    );
}

fn check_err(block: &[u8], error: &CodecError) {
    let message = error.to_string();
    assert!(!message.is_empty());
    let len = block.len();
    match *error {
        CodecError::TruncatedLength { offset } => {
            assert!(
                offset <= len && offset + 2 > len,
                "{error:?} for a {len}-byte block"
            );
        }
        CodecError::Overrun {
            offset,
            length,
            available,
        } => {
            assert!(
                offset <= len && offset + available == len,
                "{error:?} for a {len}-byte block"
            );
            assert!(length > available, "{error:?}");
        }
        CodecError::EmptyKey { offset } => {
            assert!(offset + 2 <= len, "{error:?} for a {len}-byte block");
            assert_eq!(&block[offset..offset + 2], &[0, 0]);
        }
    }
}
