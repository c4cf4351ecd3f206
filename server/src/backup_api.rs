//! `GET /admin/snapshot`: a consistent backup of the whole cache, streamed.
//!
//! The point is linearizable: a ReadIndex round first makes this node's applied state include
//! every write acknowledged before the request arrived, then the node loop hands out its state
//! at its applied index ([`CacheNode::backup_job`], detached and cheap), and a blocking thread
//! encodes it into `core::backup`'s file format (magic, snapshot, crc32c trailer) as the client
//! reads it. Nothing is held in memory beyond a few chunks; a client that stops reading for
//! [`CHUNK_SEND_TIMEOUT`], or reads slower than 1 MiB/s after five minutes, is dropped. One backup at a time per node ([`BACKUP_SLOTS`]): each
//! keeps the state it started from alive while writes go on.
//!
//! [`CacheNode::backup_job`]: simple_cache_core::node::CacheNode::backup_job

use crate::error::ApiError;
use crate::node_loop::{Input, Query};
use crate::service::{Consistency, Service};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use simple_cache_core::backup;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Response headers: the applied index and term the backup was taken at.
pub const INDEX_HEADER: &str = "x-simple-cache-snapshot-index";
pub const TERM_HEADER: &str = "x-simple-cache-snapshot-term";
/// Backups streaming at once on one node.
static BACKUP_SLOTS: Semaphore = Semaphore::const_new(1);
/// The encoder's chunks, and how many may wait for the client.
const CHUNK_BYTES: usize = 256 << 10;
const CHUNKS_QUEUED: usize = 4;
/// A client that takes no chunk for this long is disconnected.
pub const CHUNK_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole transfer must go at least this fast (after a grace of [`TRANSFER_GRACE`]), so a
/// reader that takes a chunk now and then cannot hold the one slot, and the state the backup
/// keeps alive, for ever.
const TRANSFER_MIN_BYTES_PER_SEC: u64 = 1 << 20;
const TRANSFER_GRACE: Duration = Duration::from_secs(300);

/// How long a backup of `len` bytes may take to stream.
fn transfer_limit(len: u64) -> Duration {
    TRANSFER_GRACE + Duration::from_secs(len / TRANSFER_MIN_BYTES_PER_SEC)
}

pub async fn snapshot(State(st): State<Service>, headers: HeaderMap) -> Result<Response, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    st.check_admin(authorization)?;
    let Ok(slot) = BACKUP_SLOTS.try_acquire() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "backup_in_progress",
            "a backup is already streaming from this node; retry when it is done, or ask \
             another node",
        ));
    };
    // Every write acknowledged before now is applied here once this returns.
    st.read(Query::Count, Consistency::Linearizable).await?;
    let deadline = st.deadline();
    let (reply, rx) = oneshot::channel();
    st.send_input(Input::Backup { reply }, deadline).await?;
    let job = st.await_reply(rx, deadline).await?;
    // Measuring is a pass over the cache: not on the runtime's threads, which serve clients
    // and peers.
    let (job, lengths) = tokio::task::spawn_blocking(move || {
        let lengths = backup::lengths(&job);
        (job, lengths)
    })
    .await
    .map_err(|e| ApiError::internal(format!("measuring the backup failed: {e}")))?;
    let len = lengths.file;
    let (index, term) = (job.meta.last_index.0, job.meta.last_term.0);
    tracing::info!(index, term, bytes = len, "backup started");
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_QUEUED);
    let runtime = tokio::runtime::Handle::current();
    let ends_by = std::time::Instant::now() + transfer_limit(len);
    tokio::task::spawn_blocking(move || {
        // The slot is given back when the encoder ends, not when the handler returns.
        let _slot = slot;
        let mut out = Chunks { tx, runtime, ends_by, buf: Vec::with_capacity(CHUNK_BYTES) };
        let r =
            backup::write(&job, lengths, &mut out).and_then(|crc| out.flush_chunk().map(|()| crc));
        match r {
            Ok(crc) => tracing::info!(index, crc32c = %format!("{crc:08x}"), "backup streamed"),
            Err(e) => {
                tracing::warn!(index, error = %e, "backup stopped");
                // Ends the body with an error if there is room for it, so the client sees a
                // broken transfer rather than a short file (its checksum would fail anyway);
                // never waits for a client that is not reading.
                let _ = out.tx.try_send(Err(e));
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(INDEX_HEADER, HeaderValue::from(index));
    h.insert(TERM_HEADER, HeaderValue::from(term));
    let name = format!("attachment; filename=\"simple-cache-{index}.backup\"");
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// An `io::Write` that hands the encoder's output to the response body in chunks.
struct Chunks {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    runtime: tokio::runtime::Handle,
    /// The end of the transfer's time ([`transfer_limit`]).
    ends_by: std::time::Instant,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self, item: Result<Bytes, std::io::Error>) -> std::io::Result<()> {
        let left = self.ends_by.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client reads slower than 1 MiB/s: the transfer took too long",
            ));
        }
        let wait = CHUNK_SEND_TIMEOUT.min(left);
        let sent = self.runtime.block_on(tokio::time::timeout(wait, self.tx.send(item)));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
            }
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s, or too slowly", wait.as_secs()),
            )),
        }
    }

    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.send(Ok(Bytes::from(chunk)))
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK_BYTES - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
