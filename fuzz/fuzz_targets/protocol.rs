//! Fuzz target `protocol`: see guardian::invariants::protocol for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    guardian::invariants::protocol(data);
});
