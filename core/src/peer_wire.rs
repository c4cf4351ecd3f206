//! The peer protocol: how nodes carry Raft messages to each other over one TCP connection per
//! direction. No IO here (the server's `transport` and `raft_http` do it); the simulator runs
//! every message it delivers through the same frames.
//!
//! A connection, opened by the sending node on the receiver's Raft address:
//!
//! 1. The sender writes [`PREAMBLE`]: a zero byte (no HTTP request starts with one, so the Raft
//!    listener tells a peer connection from an HTTP request by its first byte), `scpeer`, and
//!    [`PROTOCOL_VERSION`].
//! 2. The sender writes one frame holding a [`Hello`]: who it is, its cluster id and the
//!    `peer_token`. Until the hello is accepted a frame may hold at most [`HELLO_BYTES_MAX`].
//! 3. The receiver answers one frame holding an [`Answer`]: accepted (naming itself, so a sender
//!    pointed at the wrong node notices) or refused with a typed [`Refusal`], then closes.
//! 4. From then on the sender writes [`Frame`]s and the receiver writes nothing. Raft replies,
//!    and answers to forwarded writes, travel on the connection the other node opened, as
//!    etcd's stream transport does.
//!
//! A frame is a 4-byte little-endian length and that many bytes of `codec` encoding (version
//! byte, postcard). A frame's length is checked against the limit before any of it is buffered,
//! so a hostile length costs the receiver nothing.

use crate::codec::{self, DecodeError};
use crate::exec::WriteOp;
use crate::message::Message;
use crate::node::{WriteError, Written};
use crate::types::NodeId;
use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The peer protocol's version; a change to [`Hello`], [`Answer`] or the framing bumps it.
pub const PROTOCOL_VERSION: u8 = 1;
/// What a peer connection opens with.
pub const PREAMBLE: [u8; 8] = [0, b's', b'c', b'p', b'e', b'e', b'r', PROTOCOL_VERSION];
/// The largest frame a receiver takes after the hello: room for one message carrying the largest
/// entry core allows plus its framing.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
const _: () = assert!(
    crate::config::ENTRY_BYTES_LIMIT + 16 * 1024 < FRAME_BYTES_MAX,
    "a frame of one message with the largest entry fits the receiver's limit"
);
/// The largest frame before the hello is accepted (the hello and the answer).
pub const HELLO_BYTES_MAX: usize = 64 * 1024;
/// Bytes of a frame's length prefix.
pub const LEN_BYTES: usize = 4;

/// The first frame of a connection: who is sending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's node id; every message on the connection must be from it.
    pub from: NodeId,
    /// The sender's cluster id, 0 while it does not know it (a joining node).
    pub cluster_id: u64,
    /// The `peer_token` the sender was configured with.
    pub token: Option<String>,
    /// The sender's Raft address, so a leader can answer a node it has no address for.
    pub raft_addr: String,
    /// The sender's client HTTP address, so members learn where to forward writes.
    pub client_addr: String,
}

/// The receiver's one frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Accepted {
        /// The receiver's node id.
        node_id: NodeId,
    },
    Refused {
        reason: Refusal,
        /// For the sender's log.
        message: String,
    },
}

/// Why a receiver refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The hello's token does not match the receiver's `peer_token`.
    Unauthorized,
    /// The sender belongs to another cluster.
    WrongCluster,
    /// The hello names the receiver's own id.
    SameNodeId,
    /// The receiver has as many peer connections as it accepts.
    TooManyConnections,
}

impl Refusal {
    /// A stable name for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::WrongCluster => "wrong_cluster",
            Refusal::SameNodeId => "same_node_id",
            Refusal::TooManyConnections => "too_many_connections",
        }
    }
}

/// What a sender writes after the hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// A batch of Raft messages, in the order the sender's node produced them.
    Raft(Vec<Message>),
    /// A client write a follower forwards to the node it believes leads.
    Forward(Forward),
    /// The answer to the [`Forward`] with this `id` that the receiver of this frame sent. It
    /// travels on the answering node's own connection, as Raft replies do.
    ForwardAnswer { id: u64, answer: ForwardAnswer },
}

/// A forwarded client write: the leader checks it against its own limits (and the admin token,
/// for a reset) and proposes it once; it is never forwarded again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// Chosen by the follower, unique among its forwards in flight.
    pub id: u64,
    pub op: WriteOp,
    /// The client's `Authorization` (HTTP), `authorization` metadata (gRPC) or RESP `AUTH`, as
    /// `Bearer <token>`.
    pub authorization: Option<String>,
    /// How long the follower waits for the answer; the leader gives up after this.
    pub timeout_ms: u64,
}

/// The leader's answer to a [`Forward`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardAnswer {
    /// It took effect.
    Written(Written),
    /// The proposal failed: the follower decides with [`crate::exec::ForwardFailure::of`]
    /// whether to retry.
    Failed(WriteError),
    /// The leader refused the request before proposing it (a limit, the admin token, an
    /// overload): what the client is told, as the leader's own client would be.
    Refused { status: u16, code: String, message: String },
}

/// Why the bytes of a connection are not a peer protocol stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a simple-cache peer connection")]
    NotAPeer,
    #[error("peer protocol version {found}, this build speaks version {PROTOCOL_VERSION}")]
    Version { found: u8 },
    #[error("a frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("an empty frame")]
    Empty,
    #[error("a frame does not decode: {0}")]
    Decode(#[from] DecodeError),
}

/// Checks a connection's first [`PREAMBLE`]`.len()` bytes.
pub fn check_preamble(bytes: &[u8; PREAMBLE.len()]) -> Result<(), WireError> {
    if bytes[..PREAMBLE.len() - 1] != PREAMBLE[..PREAMBLE.len() - 1] {
        return Err(WireError::NotAPeer);
    }
    match bytes[PREAMBLE.len() - 1] {
        PROTOCOL_VERSION => Ok(()),
        found => Err(WireError::Version { found }),
    }
}

/// Appends one frame holding `value` to `out`.
pub fn encode_frame<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    codec::write_as(codec::WIRE_VERSION, value, out).expect("writing to a Vec cannot fail");
    let len = u32::try_from(out.len() - start - LEN_BYTES).expect("a frame below 4 GiB");
    out[start..start + LEN_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// Decodes a frame's payload (what [`FrameDecoder::next_frame`] returns).
pub fn decode_frame<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    Ok(codec::decode(payload, usize::MAX)?)
}

/// Splits a byte stream into frame payloads. The IO side reads into [`FrameDecoder::buffer`]
/// (or [`FrameDecoder::push`]es bytes) and takes frames until `None`.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    limit: usize,
}

impl FrameDecoder {
    /// A decoder taking frames of at most `limit` bytes.
    pub fn new(limit: usize) -> FrameDecoder {
        FrameDecoder { buf: BytesMut::new(), limit }
    }

    /// Changes the limit (after the hello).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Where the IO side reads into.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many bytes the next read should make room for: the rest of the current frame when
    /// its length is known (bounded by the limit), else a small default.
    pub fn wanted(&self) -> usize {
        match self.header() {
            Some(len) if len <= self.limit => (LEN_BYTES + len).saturating_sub(self.buf.len()),
            _ => 0,
        }
        .clamp(4096, 1 << 20)
    }

    fn header(&self) -> Option<usize> {
        let head: [u8; LEN_BYTES] = self.buf.get(..LEN_BYTES)?.try_into().ok()?;
        Some(u32::from_le_bytes(head) as usize)
    }

    /// The next complete frame's payload, `None` until one is complete. An error means the
    /// stream is broken and the connection must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, WireError> {
        let Some(len) = self.header() else { return Ok(None) };
        if len > self.limit {
            return Err(WireError::TooLarge { len, limit: self.limit });
        }
        if len == 0 {
            return Err(WireError::Empty);
        }
        if self.buf.len() < LEN_BYTES + len {
            return Ok(None);
        }
        self.buf.advance(LEN_BYTES);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, MessageBody};
    use crate::types::{LogIndex, Term};

    fn heartbeat(i: u64) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(i),
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(i),
                prev_log_term: Term(1),
                entries: vec![],
                leader_commit: LogIndex(i),
            },
        }
    }

    // Frames split at every byte boundary come out whole and in order.
    #[test]
    fn frames_survive_any_split() {
        let mut wire = Vec::new();
        let frames: Vec<Frame> =
            (0..3).map(|i| Frame::Raft((0..i).map(heartbeat).collect())).collect();
        for f in &frames {
            encode_frame(f, &mut wire);
        }
        for cut in 0..wire.len() {
            let mut d = FrameDecoder::new(FRAME_BYTES_MAX);
            let mut got = Vec::new();
            for piece in [&wire[..cut], &wire[cut..]] {
                d.push(piece);
                while let Some(p) = d.next_frame().unwrap() {
                    got.push(decode_frame::<Frame>(&p).unwrap());
                }
            }
            assert_eq!(got, frames, "split at {cut}");
            assert_eq!(d.buffered(), 0);
        }
    }

    // A length over the limit is refused from the prefix alone, before the body arrives.
    #[test]
    fn an_oversized_length_is_refused_at_once() {
        let mut d = FrameDecoder::new(HELLO_BYTES_MAX);
        d.push(&(HELLO_BYTES_MAX as u32 + 1).to_le_bytes());
        assert_eq!(
            d.next_frame(),
            Err(WireError::TooLarge { len: HELLO_BYTES_MAX + 1, limit: HELLO_BYTES_MAX })
        );
        let mut d = FrameDecoder::new(HELLO_BYTES_MAX);
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(WireError::Empty));
        assert!(decode_frame::<Frame>(&[9, 1, 2]).is_err(), "a wrong codec version");
    }

    // The preamble: another protocol, another version.
    #[test]
    fn preambles_are_checked() {
        assert_eq!(check_preamble(&PREAMBLE), Ok(()));
        assert_eq!(check_preamble(b"POST /ra"), Err(WireError::NotAPeer));
        let mut later = PREAMBLE;
        later[7] = 2;
        assert_eq!(check_preamble(&later), Err(WireError::Version { found: 2 }));
    }

    // The handshake types round-trip.
    #[test]
    fn hello_and_answers_round_trip() {
        let hello = Hello {
            from: NodeId(3),
            cluster_id: 0xab,
            token: Some("t".into()),
            raft_addr: "127.0.0.1:9003".into(),
            client_addr: "127.0.0.1:8083".into(),
        };
        let answers = [
            Answer::Accepted { node_id: NodeId(1) },
            Answer::Refused { reason: Refusal::WrongCluster, message: "no".into() },
        ];
        let mut wire = Vec::new();
        encode_frame(&hello, &mut wire);
        for a in &answers {
            encode_frame(a, &mut wire);
        }
        let mut d = FrameDecoder::new(HELLO_BYTES_MAX);
        d.push(&wire);
        assert_eq!(decode_frame::<Hello>(&d.next_frame().unwrap().unwrap()).unwrap(), hello);
        for a in &answers {
            assert_eq!(&decode_frame::<Answer>(&d.next_frame().unwrap().unwrap()).unwrap(), a);
        }
    }
}
