//! The input as a bare vars block (no header), so every byte reaches the pair parser.
#![no_main]
#![allow(dead_code)]

use libfuzzer_sys::fuzz_target;

mod check;
#[path = "../../src/uwsgi/codec.rs"]
mod codec;

fuzz_target!(|data: &[u8]| {
    check::vars_block(data);
});
