//! The one place where wire messages, log entry payloads and snapshots become bytes.
//!
//! Format: one version byte ([`WIRE_VERSION`]) followed by the value encoded with `postcard`
//! (a documented, stable, varint-based format). Decoding checks the total length against the
//! caller's limit before touching the body, and postcard bounds every length prefix by the bytes
//! actually present, so hostile input returns [`DecodeError`] and never allocates more than it
//! sent, nor panics.

use serde::{Serialize, de::DeserializeOwned};

/// The version of every encoding produced here. Bumped on any incompatible change.
pub const WIRE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty input")]
    Empty,
    #[error("unsupported encoding version {found} (this build speaks version {WIRE_VERSION})")]
    Version { found: u8 },
    #[error("input of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("{trailing} trailing bytes after the encoded value")]
    Trailing { trailing: usize },
}

/// Encodes `value` with the version byte in front.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // Serializing our own plain data types into a Vec cannot fail: they contain no maps with
    // non-string keys or other constructs postcard rejects.
    postcard::to_io(value, &mut out).expect("postcard encoding of core types is infallible");
    out
}

/// Decodes a value produced by [`encode`], refusing inputs longer than `limit` bytes and inputs
/// with trailing garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge { len: bytes.len(), limit });
    }
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != WIRE_VERSION {
        return Err(DecodeError::Version { found: version });
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing { trailing: rest.len() });
    }
    Ok(value)
}
