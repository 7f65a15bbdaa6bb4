//! Arbitrary bytes as the input of `process` without `--channel` (one envelope per line),
//! through the real stages: no panic, one well-formed output line per non-blank input line
//! (see `citypulse_fuzz::check_envelope`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    citypulse_fuzz::check_envelope(citypulse_fuzz::stages(), data);
});
