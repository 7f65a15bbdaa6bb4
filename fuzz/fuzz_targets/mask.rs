//! Arbitrary text into the masker: no panic, masking twice changes nothing, and no plain
//! mobile or resident-ID number is left (see `citypulse_fuzz::check_mask`). Bytes that are not
//! UTF-8 are read lossily: the masker only ever sees decoded text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    citypulse_fuzz::check_mask(&String::from_utf8_lossy(data));
});
