//! Fuzz target `expr`: see guardian::invariants::expr for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    guardian::invariants::expr(data);
});
