#![no_main]
//! Fuzz target: see `simple_cache_server::fuzz::resp_request` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| simple_cache_server::fuzz::resp_request(data));
