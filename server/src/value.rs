//! How a client value is stored in the cache: the bytes the Raft log carries and the cache keeps.
//!
//! A value is stored in the form it was written in, and the first byte tells which:
//!
//! | form | written by | stored bytes |
//! |---|---|---|
//! | JSON | HTTP `value`, gRPC `json_value` | the JSON text itself (compact) |
//! | raw | gRPC `raw_value` | `0x00` then the bytes |
//! | Any | gRPC `value` (`google.protobuf.Any`) | `0x01` then the protobuf encoding of the `Any` |
//!
//! JSON text never starts with `0x00` or `0x01` (it starts with `{`, `[`, `"`, a digit, `-`,
//! `t`, `f` or `n`, and serde_json writes no leading whitespace), so every value the HTTP API
//! stored before the tags existed still reads as JSON: the format is backward compatible.
//!
//! Each front end renders each form in its own way (see `http_api` and `grpc`), so any value
//! written by one front end can be read by the other.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

const TAG_RAW: u8 = 0x00;
const TAG_ANY: u8 = 0x01;

#[derive(Clone, Debug, PartialEq)]
pub enum StoredValue {
    /// JSON text, as serialized by serde_json (valid JSON; the writer checked it).
    Json(Bytes),
    /// Opaque bytes.
    Raw(Bytes),
    /// A protobuf `Any`: type URL and encoded message.
    Any(prost_types::Any),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("a stored value is never empty")]
    Empty,
    #[error("a stored protobuf Any does not decode: {0}")]
    BadAny(String),
}

impl StoredValue {
    /// The JSON form of a JSON value.
    pub fn json(value: &serde_json::Value) -> StoredValue {
        StoredValue::Json(Bytes::from(serde_json::to_vec(value).expect("a JSON value serializes")))
    }

    /// The size `max_value_bytes` limits: the JSON text, the raw bytes or the encoded `Any`.
    pub fn payload_len(&self) -> usize {
        match self {
            StoredValue::Json(b) | StoredValue::Raw(b) => b.len(),
            StoredValue::Any(a) => a.encoded_len(),
        }
    }

    /// The bytes to store.
    pub fn encode(&self) -> Bytes {
        match self {
            StoredValue::Json(b) => b.clone(),
            StoredValue::Raw(b) => {
                let mut out = BytesMut::with_capacity(1 + b.len());
                out.put_u8(TAG_RAW);
                out.put_slice(b);
                out.freeze()
            }
            StoredValue::Any(a) => {
                let mut out = BytesMut::with_capacity(1 + a.encoded_len());
                out.put_u8(TAG_ANY);
                a.encode(&mut out).expect("BytesMut grows as needed");
                out.freeze()
            }
        }
    }

    /// Reads stored bytes back. JSON is classified by its first byte, not parsed here.
    pub fn decode(stored: Bytes) -> Result<StoredValue, ValueError> {
        match stored.first() {
            None => Err(ValueError::Empty),
            Some(&TAG_RAW) => Ok(StoredValue::Raw(stored.slice(1..))),
            Some(&TAG_ANY) => prost_types::Any::decode(&stored[1..])
                .map(StoredValue::Any)
                .map_err(|e| ValueError::BadAny(e.to_string())),
            Some(_) => Ok(StoredValue::Json(stored)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every form survives encode then decode unchanged.
    #[test]
    fn every_form_round_trips() {
        let values = [
            StoredValue::json(&serde_json::json!({"a": [1, 2.5, null], "b": "x"})),
            StoredValue::json(&serde_json::json!(null)),
            StoredValue::json(&serde_json::json!(-3)),
            StoredValue::Raw(Bytes::new()),
            StoredValue::Raw(Bytes::from_static(b"\x00\x01{not json")),
            StoredValue::Any(prost_types::Any {
                type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
                value: vec![10, 2, b'h', b'i'],
            }),
            StoredValue::Any(prost_types::Any::default()),
        ];
        for v in values {
            assert_eq!(StoredValue::decode(v.encode()).unwrap(), v);
        }
    }

    // Values the HTTP API stored before the tags existed (plain JSON text) still read as JSON:
    // no JSON text starts with a tag byte.
    #[test]
    fn json_never_starts_with_a_tag() {
        for v in [
            serde_json::json!({}),
            serde_json::json!([]),
            serde_json::json!("s"),
            serde_json::json!(0),
            serde_json::json!(-1.5),
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!(null),
        ] {
            let text = serde_json::to_vec(&v).unwrap();
            assert!(text[0] != TAG_RAW && text[0] != TAG_ANY, "{v}");
            assert_eq!(
                StoredValue::decode(Bytes::from(text.clone())).unwrap(),
                StoredValue::Json(text.into())
            );
        }
    }

    // Garbage after the Any tag is an error, not a panic; empty bytes are an error.
    #[test]
    fn bad_stored_bytes_are_errors() {
        assert_eq!(StoredValue::decode(Bytes::new()), Err(ValueError::Empty));
        assert!(StoredValue::decode(Bytes::from_static(&[TAG_ANY, 0xff, 0xff])).is_err());
    }
}
