#![no_main]
//! Fuzz target: see `simple_cache_core::fuzz::backup_file` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| simple_cache_core::fuzz::backup_file(data));
