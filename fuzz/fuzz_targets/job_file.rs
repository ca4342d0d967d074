//! Fuzz target `job_file`: see guardian::invariants::job_file for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    guardian::invariants::job_file(data);
});
