//! The bodies of the `client_request` and `resp_request` fuzz targets.
//!
//! `client_request`: the server's parsing of untrusted client input,
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

/// The body of the `resp_request` fuzz target: untrusted bytes through the RESP request parser
/// (`crate::resp::parse`), as a connection would feed them, in pieces. Checks: no panic; the
/// pieces give the same commands as the whole; every command has an argument and respects the
/// limits; what parses, written again as multibulk frames, parses back to the same commands.
pub fn resp_request(data: &[u8]) {
    use crate::resp::{RequestLimits, parse};
    use bytes::BytesMut;
    let Some((&split, rest)) = data.split_first() else { return };
    let limits = RequestLimits { max_args: 16, max_bulk: 256, max_frame: 1024 };
    let run = |pieces: &[&[u8]]| {
        let mut buf = BytesMut::new();
        let mut cmds = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match parse(&mut buf, &limits) {
                    Ok(Some(c)) => cmds.push(c),
                    Ok(None) => break,
                    Err(e) => return (cmds, Some(e)),
                }
            }
        }
        (cmds, None)
    };
    let whole = run(&[rest]);
    let at = usize::from(split) % (rest.len() + 1);
    let pieces = run(&[&rest[..at], &rest[at..]]);
    assert_eq!(whole, pieces, "the same bytes in two pieces parse the same");
    let (cmds, _) = whole;
    let mut again = Vec::new();
    for c in &cmds {
        assert!(!c.is_empty() && c.len() <= limits.max_args, "a command has 1..=max_args args");
        assert!(c.iter().all(|a| a.len() <= limits.max_bulk), "no argument past max_bulk");
        again.extend(format!("*{}\r\n", c.len()).into_bytes());
        for a in c {
            again.extend(format!("${}\r\n", a.len()).into_bytes());
            again.extend_from_slice(a);
            again.extend_from_slice(b"\r\n");
        }
    }
    let mut buf = BytesMut::from(&again[..]);
    let big = RequestLimits { max_frame: usize::MAX, ..limits };
    for c in &cmds {
        assert_eq!(parse(&mut buf, &big).ok().flatten().as_ref(), Some(c), "round trip");
    }
}
