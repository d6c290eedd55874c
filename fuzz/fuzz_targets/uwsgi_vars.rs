//! The input as a bare vars block (no header), so every byte reaches the pair parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod check;

fuzz_target!(|data: &[u8]| {
    check::vars_block(data);
});
