//! A Part 10 file through every reader the service has for it:
//! `read_header_and_transfer_syntax` on a file (STOW-RS and gRPC uploads),
//! `parse_part10` on the bytes (the worker), and the file's data set as a
//! C-STORE data set behind the listener's own Part 10 header (`read_header`
//! of what the listener writes).
//!
//! Seeds: `tests/corpus/dataset` (see `fuzz/README.md`).
#![no_main]

#[path = "../../tests/src/bad_input.rs"]
mod bad_input;
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::run(data, |data| {
        let _ = bad_input::dataset(data);
    });
});
