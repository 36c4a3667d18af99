//! Fuzzes the frame decoder: arbitrary bytes through the incremental decoder (in uneven
//! pieces), the blocking reader and the payload parsers. The checks live in one file
//! shared with the stable test `crates/proto/tests/decoder_garbage.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/proto/tests/support/fuzz_body.rs"]
mod fuzz_body;

fuzz_target!(|data: &[u8]| {
    fuzz_body::check(data);
});
