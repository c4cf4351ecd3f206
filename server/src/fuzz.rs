//! The body of the `client_request` fuzz target: the server's parsing of untrusted client input,
//! as plain functions over bytes (no IO). `fuzz/fuzz_targets/client_request.rs` calls it and
//! `server/tests/fuzz_corpus.rs` replays the committed corpus and regressions through it.
//!
//! The first byte picks what the rest is: a set body (`{"value": .., "expire": ..}`), a Go
//! duration, a search mode and pattern, or a stored value as read back from the cache.

use crate::http_api::{parse_mode, parse_set_body};
use crate::service::Service;
use crate::value::StoredValue;
use simple_cache_core::cache::Pattern;

pub fn client_request(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else { return };
    match kind % 4 {
        0 => {
            if let Ok(crate::http_api::SetBody { value, ttl_ms, .. }) = parse_set_body("k", rest) {
                // What parses must store and read back unchanged.
                let again = StoredValue::decode(value.encode()).expect("a stored value decodes");
                assert_eq!(again, value, "stored values round-trip");
                assert!(ttl_ms != Some(0), "a zero TTL means no expiry, never an instant expiry");
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = Service::ttl_ms_from_duration(text);
            }
        }
        2 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            let (mode, pattern) = text.split_once('\n').unwrap_or(("wildcard", text));
            if let Ok(mode) = parse_mode(Some(mode)) {
                let _ = Pattern::compile(pattern, mode);
            }
        }
        _ => {
            if let Ok(v) = StoredValue::decode(bytes::Bytes::copy_from_slice(rest)) {
                let _ = v.payload_len();
            }
        }
    }
}
