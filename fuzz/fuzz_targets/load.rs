//! Fuzz target `load`: see `breakfix::fuzzing::load` (the body lives in the library so the
//! stable test suite replays the corpus and past crashes through the same code).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| breakfix::fuzzing::load(data));
