//! A whole uwsgi packet: 4-byte header, then the vars block (cut to what is there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsgi_codec::uwsgi::packet::{
    PacketHeader, HEADER_LEN, MODIFIER_STRIP_SCRIPT_NAME, MODIFIER_WSGI,
};

mod check;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    let header = PacketHeader::parse(*head);
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
