//! A STOW-RS request as the gateway reads it: the first line of the input
//! is the Content-Type header, the rest the body. The Content-Type check
//! (the logic of the gateway's private `stow::boundary`), multer with the
//! gateway's constraints, the parts' content types, then each part as the
//! gateway checks an upload.
//!
//! Seeds: `tests/corpus/multipart` (see `fuzz/README.md`).
#![no_main]

#[path = "../../tests/src/bad_input.rs"]
mod bad_input;
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::run(data, |data| {
        let _ = bad_input::multipart(data);
    });
});
