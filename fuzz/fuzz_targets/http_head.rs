//! Arbitrary bytes as the start of an HTTP connection: the direct path's head
//! recogniser must never panic, and what it accepts must be self-consistent.
#![no_main]
#![allow(dead_code)]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// The limits `head.rs` reads from the main crate's config.
mod config {
    pub const MAX_HEADERS: usize = 100;
    pub const MAX_HEAD_BYTES: usize = 64 * 1024;
}

#[path = "../../src/http/head.rs"]
mod head;

fuzz_target!(|data: &[u8]| {
    let mut spare = Vec::new();
    let head::Parsed::Simple(simple) = head::parse(data, &mut spare) else {
        return;
    };
    assert!(simple.length <= data.len());
    assert!(simple.length <= config::MAX_HEAD_BYTES);
    let length = simple.length;
    let parsed = simple.into_head(Bytes::copy_from_slice(&data[..length]));
    assert!(!parsed.method().is_empty());
    assert!(parsed.method().iter().all(u8::is_ascii_uppercase));
    assert!(parsed.target().starts_with(b"/"));
    assert!(parsed.field_count() <= config::MAX_HEADERS);
    for index in 0..parsed.field_count() {
        let (name, _) = parsed.field(index);
        assert!(!name.is_empty());
        assert!(!name.eq_ignore_ascii_case(b"transfer-encoding"));
    }
    // The head alone parses the same way.
    let mut again = Vec::new();
    match head::parse(&data[..length], &mut again) {
        head::Parsed::Simple(second) => assert_eq!(second.length, length),
        other => panic!("the head alone parsed as {other:?}"),
    }
});
