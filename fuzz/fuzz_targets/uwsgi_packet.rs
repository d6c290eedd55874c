//! A whole uwsgi packet: 4-byte header, then the vars block (cut to what is there).
#![no_main]
#![allow(dead_code)]

use libfuzzer_sys::fuzz_target;

mod check;
#[path = "../../src/uwsgi/codec.rs"]
mod codec;

use codec::{PacketHeader, HEADER_LEN, MODIFIER_STRIP_SCRIPT_NAME, MODIFIER_WSGI};

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_LEN {
        return;
    }
    let (head, rest) = data.split_at(HEADER_LEN);
    let header = PacketHeader::parse(head.try_into().unwrap());
    assert_eq!(header.modifier1, head[0]);
    assert_eq!(header.datasize, u16::from_le_bytes([head[1], head[2]]));
    assert_eq!(header.modifier2, head[3]);
    assert_eq!(
        header.is_supported(),
        header.modifier1 == MODIFIER_WSGI || header.modifier1 == MODIFIER_STRIP_SCRIPT_NAME
    );
    let size = usize::from(header.datasize).min(rest.len());
    check::vars_block(&rest[..size]);
});
