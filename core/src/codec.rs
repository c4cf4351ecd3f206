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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
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

/// 64-bit FNV-1a over `bytes`, continuing from `state` (start from [`FNV_OFFSET`]): the
/// state machine's rolling digest.
pub fn fnv1a(bytes: &[u8], state: u64) -> u64 {
    bytes.iter().fold(state, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// FNV-1a's offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Encodes `value` with the version byte in front.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    encode_as(WIRE_VERSION, value)
}

/// Encodes `value` with `version` in front: for a format that has its own version (snapshots).
/// The `Vec` is exactly as large as the encoding: a log entry or a snapshot keeps its
/// allocation for as long as it lives, and a grown `Vec` would hold up to twice the bytes.
pub fn encode_as<T: Serialize + ?Sized>(version: u8, value: &T) -> Vec<u8> {
    // Serializing our own plain data types cannot fail: they contain no maps with non-string
    // keys or other constructs postcard rejects.
    const INFALLIBLE: &str = "postcard encoding of core types is infallible";
    let mut counter = CountingWriter::default();
    postcard::to_io(value, &mut counter).expect(INFALLIBLE);
    let mut out = Vec::with_capacity(1 + usize::try_from(counter.count).expect(INFALLIBLE));
    out.push(version);
    postcard::to_io(value, &mut out).expect(INFALLIBLE);
    debug_assert_eq!(out.len(), out.capacity(), "the count is the encoding's length");
    out
}

/// Writes what [`encode_as`] returns to `out`, as it is produced.
pub fn write_as<T: Serialize + ?Sized>(
    version: u8,
    value: &T,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    /// Keeps the writer's own error: postcard reports every one as "buffer full".
    struct Keep<'w, W> {
        out: &'w mut W,
        error: Option<std::io::Error>,
    }
    impl<W: std::io::Write> std::io::Write for Keep<'_, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.out.write(buf).inspect_err(|e| {
                self.error.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
            })
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush().inspect_err(|e| {
                self.error.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
            })
        }
    }
    out.write_all(&[version])?;
    let mut keep = Keep { out, error: None };
    match postcard::to_io(value, &mut keep) {
        Ok(_) => Ok(()),
        Err(e) => Err(keep.error.take().unwrap_or_else(|| std::io::Error::other(e))),
    }
}

/// An `io::Write` that only counts the bytes written to it: the length of an encoding without
/// producing it.
#[derive(Debug, Default)]
pub struct CountingWriter {
    pub count: u64,
}

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.count += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a value produced by [`encode`], refusing inputs longer than `limit` bytes and inputs
/// with trailing garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    decode_as(WIRE_VERSION, bytes, limit)
}

/// [`decode`] for a value [`encode_as`] wrote with `expected` in front.
pub fn decode_as<T: DeserializeOwned>(
    expected: u8,
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge { len: bytes.len(), limit });
    }
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != expected {
        return Err(DecodeError::Version { found: version });
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing { trailing: rest.len() });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;
    use crate::types::{LogIndex, NodeId, Term};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn meta() -> impl Strategy<Value = SnapshotMeta> {
        crate::arb::meta(u64::MAX)
    }

    fn body() -> impl Strategy<Value = MessageBody> {
        crate::arb::body(u64::MAX)
    }

    fn message() -> impl Strategy<Value = Message> {
        (any::<u64>(), any::<u64>(), any::<u64>(), body()).prop_map(|(f, t, term, body)| Message {
            from: NodeId(f),
            to: NodeId(t),
            term: Term(term),
            body,
        })
    }

    proptest! {
        // Every message type survives encode -> decode unchanged.
        #[test]
        fn every_message_roundtrips(m in message()) {
            let bytes = encode(&m);
            prop_assert_eq!(bytes[0], WIRE_VERSION);
            // Exactly sized: a log entry keeps this allocation for as long as it lives.
            prop_assert_eq!(bytes.capacity(), bytes.len());
            prop_assert_eq!(decode::<Message>(&bytes, usize::MAX).unwrap(), m);
        }

        // Hard state and snapshots round-trip too.
        #[test]
        fn hard_state_and_snapshot_roundtrip(t in any::<u64>(), v in proptest::option::of(any::<u64>()), c in any::<u64>(), meta in meta(), d in proptest::collection::vec(any::<u8>(), 0..64)) {
            let hs = HardState { current_term: Term(t), voted_for: v.map(NodeId), commit_index: LogIndex(c) };
            prop_assert_eq!(decode::<HardState>(&encode(&hs), usize::MAX).unwrap(), hs);
            let s = Snapshot { meta, data: Bytes::from(d) };
            prop_assert_eq!(decode::<Snapshot>(&encode(&s), usize::MAX).unwrap(), s);
        }

        // Arbitrary bytes never panic the decoder: they decode or return an error.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Message>(&bytes, 1 << 20);
        }

        // Truncating a valid encoding anywhere gives an error, never a different message.
        #[test]
        fn truncated_message_is_an_error(m in message(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&m);
            let at = cut.index(bytes.len());
            prop_assert!(decode::<Message>(&bytes[..at], usize::MAX).is_err());
        }
    }

    // The size limit is checked before anything is decoded.
    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::TimeoutNow,
        };
        let bytes = encode(&m);
        assert_eq!(
            decode::<Message>(&bytes, 2),
            Err(DecodeError::TooLarge { len: bytes.len(), limit: 2 })
        );
    }

    // A wrong version byte, an empty input and trailing bytes are each a distinct error.
    #[test]
    fn version_empty_and_trailing_errors() {
        let mut bytes = encode(&HardState::default());
        assert_eq!(decode::<HardState>(&[], 10), Err(DecodeError::Empty));
        bytes.push(0);
        assert_eq!(decode::<HardState>(&bytes, 100), Err(DecodeError::Trailing { trailing: 1 }));
        bytes[0] = 9;
        assert_eq!(decode::<HardState>(&bytes, 100), Err(DecodeError::Version { found: 9 }));
    }

    // A length prefix claiming a huge vector does not allocate it: it fails on missing bytes.
    #[test]
    fn hostile_length_prefix_is_an_error() {
        // Version, then an AppendEntries-shaped prefix is not needed: a Vec<u8> with a length of
        // u64::MAX-ish encoded as a varint.
        let mut bytes = vec![WIRE_VERSION];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(decode::<Vec<u8>>(&bytes, 1 << 20).is_err());
    }
}
