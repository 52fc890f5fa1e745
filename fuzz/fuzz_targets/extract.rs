#![no_main]
//! See `fuzz/harness.rs` for what this target feeds torcx and checks.

#[path = "../harness.rs"]
mod harness;

#[global_allocator]
static HEAP: harness::Counting = harness::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::extract(data));
