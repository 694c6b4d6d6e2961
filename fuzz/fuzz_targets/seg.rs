//! A resubmitted segmentation as `liverseg_ingest::correction` checks it:
//! lenient reading (`repair::read_lenient`), the repairs, `parse_object`,
//! the SEG reader (`seg::parse`), the liver segment, rasterisation on the
//! fixed series of `bad_input::base` and the rewrite as Part 10.
//!
//! Seeds: `tests/corpus/seg` (see `fuzz/README.md`).
#![no_main]

#[path = "../../tests/src/bad_input.rs"]
mod bad_input;
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::run(data, |data| {
        let _ = bad_input::seg(data);
    });
});
