//! Arbitrary bytes into the Weibo decoder: no panic, and every outcome well formed
//! (see `citypulse_fuzz::check_decoder`).
#![no_main]

use citypulse::event::Channel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    citypulse_fuzz::check_decoder(Channel::Weibo, data);
});
