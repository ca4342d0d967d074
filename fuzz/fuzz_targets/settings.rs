//! Fuzz target `settings`: see guardian::invariants::settings for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    guardian::invariants::settings(data);
});
