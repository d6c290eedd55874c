//! Invariants the two uwsgi targets share (a `mod check;` of each): what must
//! hold for a vars block the packet codec accepts or refuses, and for the
//! request head made of one it accepts.

use bytes::Bytes;
use rwsgi_codec::head::{PathInfo, Protocol, RequestHead, Span};
use rwsgi_codec::uwsgi::head::request_head;
use rwsgi_codec::uwsgi::packet::{CodecError, Vars, MODIFIER_STRIP_SCRIPT_NAME, MODIFIER_WSGI};

/// Parse `block` as a vars block and check everything that must hold for the result.
pub fn vars_block(block: &[u8]) {
    match Vars::parse(Bytes::copy_from_slice(block)) {
        Ok(vars) => {
            check_ok(block, &vars);
            for modifier1 in [MODIFIER_WSGI, MODIFIER_STRIP_SCRIPT_NAME] {
                check_head(&request_head(&vars, modifier1), vars.block().len());
            }
        }
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

fn in_block(span: &Span, len: usize, what: &str) {
    assert!(
        span.start <= span.end && span.end as usize <= len,
        "{what} {span:?} outside a {len}-byte block"
    );
}

/// A head made of an accepted vars block points only into that block, takes
/// nothing from the client's own fields, and is marked as a proxy's.
fn check_head(head: &RequestHead, len: usize) {
    assert_eq!(head.bytes.len(), len);
    for (span, what) in [
        (&head.method, "method"),
        (&head.uri, "uri"),
        (&head.query, "query"),
        (&head.script_name, "script_name"),
    ] {
        in_block(span, len, what);
    }
    if let PathInfo::Span(span) = &head.path {
        in_block(span, len, "path");
    }
    if let Protocol::Other(span) = &head.protocol {
        in_block(span, len, "protocol");
    }
    for field in &head.cgi {
        in_block(&field.name, len, "cgi name");
        in_block(&field.value, len, "cgi value");
    }
    assert!(head.fields.is_empty() && head.from_proxy);
    // The accessors only slice what was checked above.
    let _ = (
        head.method(),
        head.uri(),
        head.path(),
        head.query(),
        head.describe(),
    );
    assert_eq!(head.cgi().count(), head.cgi.len());
}
