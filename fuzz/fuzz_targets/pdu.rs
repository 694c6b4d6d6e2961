//! The DICOM listener's path: the input is the byte stream of one
//! association (A-ASSOCIATE-RQ, P-DATA-TF, release...), read with dicom-ul's
//! `read_pdu` as the association reads the wire, PDVs reassembled, DIMSE
//! command sets parsed with `Command::parse` and C-STORE data sets read
//! behind the listener's Part 10 header. The input is also parsed directly
//! as a command set, so that the fuzzer reaches `Command::parse` without
//! first having to build a valid association.
//!
//! Seeds: `tests/corpus/pdu` (see `fuzz/README.md`).
#![no_main]

#[path = "../../tests/src/bad_input.rs"]
mod bad_input;
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::run(data, |data| {
        let _ = liverseg_dicom::dimse::Command::parse(data);
        let _ = bad_input::pdu_stream(data);
    });
});
