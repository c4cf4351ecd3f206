//! The Redis protocol front end: a RESP listener on `redis_addr` whose commands run through the
//! same [`Service`] as HTTP and gRPC (limits, forwarding to the leader, linearizable reads,
//! metrics with `api="resp"`).
//!
//! **Connections.** Each connection reads what the client sent, takes every whole command off
//! the buffer (at most [`PIPELINE_COMMANDS_MAX`] per turn) and answers them in order. A run of
//! key writes that follow each other in a pipeline is one `Command::Exec` log entry (one
//! proposal, one fsync, one forward from a follower); a run of reads is one `Query::Batch`
//! (one ReadIndex round); a read after a write in the same pipeline waits for it. Replies go
//! out once [`OUTPUT_FLUSH_BYTES`] of them wait, so a connection's output buffer holds at most
//! that plus one reply, and no reply carries more than [`REPLY_VALUE_BYTES_MAX`] of values. At
//! most `resp_max_clients` connections are open; the next is told `-ERR max number of clients
//! reached` and closed.
//!
//! **Semantics.** Every write is one log entry decided by the state machine: `INCR`,
//! `SET NX`, `GETSET`, `MSETNX`, `RENAME` are `core::cache::KeyOp`s or batches, never a read
//! then a write here. `MULTI`/`EXEC` is one `Command::Exec` entry; `WATCH` compares the watched
//! keys' revisions in it. Reads are linearizable (ReadIndex) unless the connection sent
//! `READONLY`. Values written over RESP are stored raw; see README's "Redis protocol" for how
//! values read across the front ends and what differs from Redis.

use crate::error::ApiError;
use crate::node_loop::{Query, QueryResult, Status};
use crate::resp::{self, ProtocolError, Reply, RequestLimits};
use crate::resp_commands::{Spec, command_command, spec_of};
use crate::service::{Caller, Consistency, Service};
use crate::tls::ServerStream;
use bytes::{Bytes, BytesMut};
use simple_cache_core::cache::{
    ApplyResult, BATCH_OPS_MAX, Batch, BatchOutcome, Compare, Condition, ExpireWhen, KeyCompare,
    KeyOp, KeyOutcome, KeyWrite, Pattern, SearchMode, Ttl, TtlStatus, Versioned, value_form,
};
use simple_cache_core::exec::WriteOp;
use simple_cache_core::node::Written;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;

/// Commands taken off a connection's buffer per turn: bounds the replies waiting in memory.
pub const PIPELINE_COMMANDS_MAX: usize = 1024;
/// Replies are written out once this many bytes are waiting.
pub const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;
/// Bytes of values one `MGET` may answer: a reply is built in memory before it is written.
pub const REPLY_VALUE_BYTES_MAX: usize = 64 << 20;
/// Reads of one pipeline handed to the node loop before the first answer is awaited.
pub const PIPELINE_READS_MAX: usize = 256;
/// Arguments in one command (Redis accepts more; `MSET` and `DEL` batches are bounded by
/// `BATCH_OPS_MAX` anyway, and `MGET` and `EXISTS` by this).
pub const ARGS_MAX: usize = 4096;
/// Commands one `MULTI` may queue, and their bytes (a transaction is one log entry, at most
/// `PROPOSAL_BYTES_MAX`); past either, the command is refused and `EXEC` answers `EXECABORT`.
pub const MULTI_COMMANDS_MAX: usize = 2 * BATCH_OPS_MAX;
pub const MULTI_BYTES_MAX: usize = simple_cache_core::cache::PROPOSAL_BYTES_MAX;
/// Keys one connection may `WATCH` (each is a compare of the `EXEC` batch).
pub const WATCHED_KEYS_MAX: usize = BATCH_OPS_MAX;
/// `SCAN` cursors remembered per node; an older cursor is `invalid cursor`.
pub const SCAN_CURSORS_MAX: usize = 4096;
/// The Redis version this front end answers as (`INFO`, `HELLO`): the command set and replies
/// follow Redis 7.0.
pub const REDIS_VERSION: &str = "7.0.0";

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

/// What every connection of one listener shares.
struct Shared {
    svc: Service,
    local: SocketAddr,
    started: std::time::Instant,
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, ClientInfo>>,
    cursors: Mutex<Cursors>,
    commands: AtomicU64,
    connections: AtomicU64,
    rejected: AtomicU64,
}

/// One open connection, for `CLIENT LIST` and `INFO clients`.
#[derive(Clone, Debug)]
struct ClientInfo {
    addr: SocketAddr,
    name: String,
    opened: std::time::Instant,
    last: std::time::Instant,
    cmd: &'static str,
    resp: u8,
    lib_name: String,
    lib_ver: String,
}

/// `SCAN` cursors: a number handed to the client for the key a scan resumes after.
#[derive(Default)]
struct Cursors {
    next: u64,
    by_id: BTreeMap<u64, String>,
    order: VecDeque<u64>,
}

impl Cursors {
    fn put(&mut self, after: String) -> u64 {
        self.next += 1;
        let id = self.next;
        self.by_id.insert(id, after);
        self.order.push_back(id);
        while self.order.len() > SCAN_CURSORS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        id
    }
}

/// Serves RESP on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, svc: Service, mut stop: watch::Receiver<bool>) {
    let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let shared = Arc::new(Shared {
        svc,
        local,
        started: std::time::Instant::now(),
        next_id: AtomicU64::new(1),
        clients: Mutex::new(BTreeMap::new()),
        cursors: Mutex::new(Cursors::default()),
        commands: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    });
    let tls = shared.svc.tls.client_acceptor(&[]);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        while tasks.try_join_next().is_some() {}
        let (sock, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!("RESP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut clients = shared.clients.lock().expect("not poisoned");
            if clients.len() >= shared.svc.cfg.resp_max_clients {
                drop(clients);
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                if tls.is_some() {
                    // Not a handshake for a connection that is refused anyway: refused
                    // connections must cost nothing while they last.
                    tracing::debug!(
                        "RESP: max number of clients reached; a TLS connection was closed"
                    );
                    continue;
                }
                tasks.spawn(async move {
                    let mut sock = ServerStream::Plain(sock);
                    let _ = send(&mut sock, b"-ERR max number of clients reached\r\n").await;
                });
                continue;
            }
            let now = std::time::Instant::now();
            clients.insert(
                id,
                ClientInfo {
                    addr,
                    name: String::new(),
                    opened: now,
                    last: now,
                    cmd: "NULL",
                    resp: 2,
                    lib_name: String::new(),
                    lib_ver: String::new(),
                },
            );
        }
        let shared = shared.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            if let Some(sock) = upgrade(sock, tls.as_ref()).await {
                let mut conn = Conn::new(shared.clone(), id);
                conn.run(sock, stop).await;
            }
            shared.clients.lock().expect("not poisoned").remove(&id);
        });
    }
    // Connections finish the pipeline they are running, then close.
    while tasks.join_next().await.is_some() {}
}

/// The connection as the listener speaks it: in TLS if `tls_cert_file` is set. A client that
/// speaks plain RESP to a TLS listener is told so in plain RESP.
async fn upgrade(
    sock: tokio::net::TcpStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Option<ServerStream> {
    const PLAIN: &[u8] = b"-ERR this port requires TLS (redis-cli --tls)\r\n";
    crate::tls::upgrade(sock, tls, PLAIN).await
}

/// A pipelined write command: its key writes and how to answer, or its error.
type Planned = Result<(Vec<KeyWrite>, Render), RespError>;

/// Pipelined key writes waiting to go as one log entry.
#[derive(Default)]
struct Run {
    cmds: Vec<(Started, Planned)>,
    /// Key operations in `cmds`.
    ops: usize,
}

/// A pipelined read command: its query and how to answer, or its error.
type PlannedRead = Result<(Query, ReadKind), RespError>;

/// Pipelined reads waiting to go to the node loop together.
#[derive(Default)]
struct Reads {
    cmds: Vec<(Started, PlannedRead)>,
}

/// A transaction being queued (`MULTI`).
#[derive(Default)]
struct Multi {
    queued: Vec<Vec<Bytes>>,
    /// Bytes of the arguments in `queued`.
    bytes: usize,
    /// A command was refused while queuing: `EXEC` answers `EXECABORT`.
    failed: bool,
}

struct Conn {
    shared: Arc<Shared>,
    svc: Service,
    id: u64,
    resp3: bool,
    authenticated: bool,
    /// Authenticated with the admin token: may `FLUSHALL`.
    admin: bool,
    readonly: bool,
    multi: Option<Multi>,
    /// `WATCH`ed keys and their `mod_revision` then (0: absent).
    watched: Vec<(String, u64)>,
    /// `WATCH` failed to read a key: `EXEC` must fail.
    watch_failed: bool,
    /// The revision of this connection's latest write, for `WAIT`.
    last_revision: u64,
}

/// What the connection does after a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// A reply error line (without the `-`).
type RespError = String;

fn err(text: impl Into<String>) -> RespError {
    text.into()
}

impl Conn {
    fn new(shared: Arc<Shared>, id: u64) -> Conn {
        let svc = shared.svc.clone();
        let authenticated = password(&svc).is_none();
        let admin = svc.cfg.admin_token.is_none();
        Conn {
            shared,
            svc,
            id,
            resp3: false,
            authenticated,
            admin,
            readonly: false,
            multi: None,
            watched: Vec::new(),
            watch_failed: false,
            last_revision: 0,
        }
    }

    /// `WAIT`: how many other members have this connection's writes. The leader counts the
    /// members whose log matches past the latest one, waiting (at most `timeout_ms`, 0 meaning
    /// as long as a request may take) until `want` do. Only the leader knows the others'
    /// progress; elsewhere the answer is what every acknowledged write guarantees: a majority
    /// of the voters have it, so that many others.
    async fn wait_replicas(&self, want: usize, timeout_ms: u64) -> usize {
        let st = self.svc.status.borrow().clone();
        let guaranteed = st.membership.voters.len() / 2;
        if st.role != simple_cache_core::Role::Leader {
            return guaranteed;
        }
        let limit = self.svc.limits.request_timeout_ms();
        let limit = if timeout_ms == 0 { limit } else { timeout_ms.min(limit) };
        let deadline = TokioInstant::now() + Duration::from_millis(limit);
        let mut status = self.svc.status.clone();
        loop {
            let (reply, rx) = tokio::sync::oneshot::channel();
            let input = crate::node_loop::Input::Peers { reply };
            if self.svc.send_input(input, deadline).await.is_err() {
                return guaranteed;
            }
            let Ok((_, peers)) = self.svc.await_reply(rx, deadline).await else {
                return guaranteed;
            };
            let have = peers
                .iter()
                .filter(|p| p.id != st.id && p.match_index.0 >= self.last_revision)
                .count();
            if have >= want || TokioInstant::now() >= deadline {
                return have;
            }
            // Replication progresses with the node loop's turns: look again after the next
            // status change, or a little later (a follower catching up moves no commit index).
            let next = (TokioInstant::now() + Duration::from_millis(10)).min(deadline);
            let _ = tokio::time::timeout_at(next, status.changed()).await;
        }
    }

    fn limits(&self) -> RequestLimits {
        // A bulk over max_value_bytes but within the frame is answered with a precise error
        // about the value (and the connection goes on); past the frame bound it cannot be
        // read at all.
        let frame = self.svc.cfg.max_body_bytes;
        RequestLimits { max_args: ARGS_MAX, max_bulk: frame, max_frame: frame }
    }

    fn caller(&self) -> Caller {
        let authorization = match (&self.svc.cfg.admin_token, self.admin) {
            (Some(t), true) => Some(format!("Bearer {t}")),
            _ => None,
        };
        Caller { authorization, forwarded: false }
    }

    fn consistency(&self) -> Consistency {
        if self.readonly { Consistency::Stale } else { Consistency::Linearizable }
    }

    async fn run(&mut self, mut sock: ServerStream, mut stop: watch::Receiver<bool>) {
        let mut input = BytesMut::with_capacity(16 * 1024);
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            let mut cmds = Vec::new();
            let mut broken = None;
            while cmds.len() < PIPELINE_COMMANDS_MAX {
                match resp::parse(&mut input, &self.limits()) {
                    Ok(Some(c)) => cmds.push(c),
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if cmds.is_empty() && broken.is_none() {
                if *stop.borrow() {
                    return;
                }
                // Keep the buffer's memory in proportion to what it holds.
                if input.is_empty() && input.capacity() > 1 << 20 {
                    input = BytesMut::with_capacity(16 * 1024);
                }
                let read = tokio::select! {
                    r = sock.read_buf(&mut input) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
            let flow = self.pipeline(cmds, &mut out, &mut sock).await;
            if let Some(e) = &broken {
                Reply { out: &mut out, resp3: self.resp3 }.error(&protocol_error(e));
            }
            if send(&mut sock, &out).await.is_err() {
                return;
            }
            out.clear();
            if out.capacity() > 1 << 20 {
                out = BytesMut::with_capacity(16 * 1024);
            }
            if flow == Flow::Close || broken.is_some() {
                let _ = sock.shutdown().await;
                return;
            }
        }
    }

    /// Runs the commands of one read in order, writing their replies to `out` (and out to
    /// `sock` whenever `out` passes [`OUTPUT_FLUSH_BYTES`]).
    async fn pipeline(
        &mut self,
        cmds: Vec<Vec<Bytes>>,
        out: &mut BytesMut,
        sock: &mut ServerStream,
    ) -> Flow {
        let mut run = Run::default();
        let mut reads = Reads::default();
        for args in cmds {
            let started = Started::new(&args);
            self.shared.commands.fetch_add(1, Ordering::Relaxed);
            self.note_command(started.name);
            // A run of key writes becomes one log entry.
            if self.multi.is_none()
                && self.authenticated
                && let Some(plan) = self.plan_pipelined(&started, &args)
            {
                self.finish_reads(&mut reads, out, sock).await;
                let ops = plan.as_ref().map_or(0, |(w, _)| w.len());
                if run.ops + ops > BATCH_OPS_MAX {
                    self.finish_run(&mut run, out, sock).await;
                }
                run.ops += ops;
                run.cmds.push((started, plan));
                continue;
            }
            // A run of reads goes to the node loop together, after the writes before it.
            if self.multi.is_none()
                && self.authenticated
                && let Some(read) = self.plan_read(&started, &args)
            {
                self.finish_run(&mut run, out, sock).await;
                reads.cmds.push((started, read));
                if reads.cmds.len() >= PIPELINE_READS_MAX {
                    self.finish_reads(&mut reads, out, sock).await;
                }
                continue;
            }
            self.finish_run(&mut run, out, sock).await;
            self.finish_reads(&mut reads, out, sock).await;
            let result = self.command(&started, args, out).await;
            let flow = result.as_ref().map_or(Flow::Continue, |f| *f);
            started.answer(&self.svc, result.map(drop), &mut Reply { out, resp3: self.resp3 });
            flush_if_full(out, sock).await;
            if flow == Flow::Close {
                return Flow::Close;
            }
        }
        self.finish_run(&mut run, out, sock).await;
        self.finish_reads(&mut reads, out, sock).await;
        Flow::Continue
    }

    /// The query a read command is, if it may join a run of pipelined reads.
    fn plan_read(&self, started: &Started, args: &[Bytes]) -> Option<PlannedRead> {
        let spec = started.spec?;
        if spec.write || !spec.key_plan || check_arity(spec, args).is_err() {
            return None;
        }
        match self.plan_keys(spec.name, args) {
            Err(e) => Some(Err(e)),
            Ok(Plan::Read { keys, kind }) => {
                if let ReadKind::Ttl { ms } = kind {
                    // Outside a transaction TTL is a query of its own.
                    let key = keys.into_iter().next()?;
                    return Some(Ok((Query::Ttl(key), ReadKind::TtlQuery { ms })));
                }
                for k in &keys {
                    if let Err(e) = self.svc.check_key(k) {
                        return Some(Err(api_error(&e)));
                    }
                }
                Some(Ok((read_query(keys, &kind), kind)))
            }
            Ok(Plan::Keys { .. }) => None,
        }
    }

    /// Answers a run of pipelined reads, in order.
    async fn finish_reads(
        &mut self,
        reads: &mut Reads,
        out: &mut BytesMut,
        sock: &mut ServerStream,
    ) {
        if reads.cmds.is_empty() {
            return;
        }
        let cmds = std::mem::take(&mut reads.cmds);
        let queries: Vec<Query> =
            cmds.iter().filter_map(|(_, p)| p.as_ref().ok().map(|(q, _)| q.clone())).collect();
        let answers = match queries.len() {
            0 => Ok(Vec::new()),
            1 => self
                .svc
                .read(queries.into_iter().next().expect("one"), self.consistency())
                .await
                .map(|a| vec![a]),
            _ => self.svc.read_many(queries, self.consistency()).await,
        };
        let mut answers = match answers {
            Ok(a) => a.into_iter().map(Ok).collect::<Vec<_>>().into_iter(),
            Err(e) => vec![Err(api_error(&e)); cmds.len()].into_iter(),
        };
        for (started, plan) in cmds {
            let mut r = Reply { out, resp3: self.resp3 };
            let rendered = plan.and_then(|(_, kind)| {
                let answer = answers.next().expect("one answer per query")?;
                kind.write_answer(answer, &mut r)
            });
            started.answer(&self.svc, rendered, &mut r);
            flush_if_full(out, sock).await;
        }
    }

    /// Writes a run of pipelined key writes: one command as itself; several as one
    /// `Command::Exec` entry (one proposal, one fsync, one forward from a follower), each
    /// command answered from its own operations. If the memory limits refuse the entry,
    /// nothing of it applied and the commands run one by one, so each gets its own answer.
    async fn finish_run(&mut self, run: &mut Run, out: &mut BytesMut, sock: &mut ServerStream) {
        let cmds = std::mem::take(&mut run.cmds);
        run.ops = 0;
        let valid = cmds.iter().filter(|(_, p)| p.is_ok()).count();
        let caller = self.caller();
        let mut results: Vec<Result<(bool, Vec<KeyOutcome>), RespError>> = Vec::new();
        if valid > 1 {
            let then: Vec<KeyWrite> = cmds
                .iter()
                .filter_map(|(_, p)| p.as_ref().ok())
                .flat_map(|(w, _)| w.clone())
                .collect();
            let b = Batch { compares: Vec::new(), then, otherwise: Vec::new() };
            match self.svc.exec(&caller, b).await {
                Ok(outcome) => {
                    let mut outs = outcome.results.into_iter();
                    for (_, plan) in &cmds {
                        results.push(match plan {
                            Ok((writes, _)) => {
                                let mine: Vec<KeyOutcome> =
                                    outs.by_ref().take(writes.len()).collect();
                                match mine.iter().find_map(|o| o.refusal) {
                                    Some(r) => Err(api_error(&crate::service::refused(r))),
                                    None => Ok((true, mine)),
                                }
                            }
                            Err(e) => Err(e.clone()),
                        });
                    }
                }
                Err(e) if e.code == "out_of_memory" => {
                    for (_, plan) in &cmds {
                        results.push(self.write_one(&caller, plan).await);
                    }
                }
                Err(e) => {
                    let e = api_error(&e);
                    for (_, plan) in &cmds {
                        results.push(Err(plan
                            .as_ref()
                            .err()
                            .cloned()
                            .unwrap_or_else(|| e.clone())));
                    }
                }
            }
        } else {
            for (_, plan) in &cmds {
                results.push(self.write_one(&caller, plan).await);
            }
        }
        for ((started, plan), result) in cmds.into_iter().zip(results) {
            let mut r = Reply { out, resp3: self.resp3 };
            if let Ok((_, outs)) = &result {
                self.last_revision =
                    outs.iter().map(|o| o.revision).fold(self.last_revision, u64::max);
            }
            let rendered = result.and_then(|(succeeded, outs)| match plan {
                Ok((_, render)) => render.write(succeeded, &outs, &mut r),
                Err(e) => Err(e),
            });
            started.answer(&self.svc, rendered, &mut r);
            flush_if_full(out, sock).await;
        }
    }

    /// One pipelined write on its own.
    async fn write_one(
        &self,
        caller: &Caller,
        plan: &Planned,
    ) -> Result<(bool, Vec<KeyOutcome>), RespError> {
        let (writes, _) = plan.as_ref().map_err(Clone::clone)?;
        let op = self.write_op(Vec::new(), writes.clone())?;
        let w = self.svc.write(caller, op).await.map_err(|e| api_error(&e))?;
        outcomes(&self.svc, w).map_err(|e| api_error(&e))
    }

    fn note_command(&self, name: &'static str) {
        if let Some(c) = self.shared.clients.lock().expect("not poisoned").get_mut(&self.id) {
            c.last = std::time::Instant::now();
            c.cmd = name;
        }
    }

    /// The writes this command is, if it may join a run of pipelined writes: key writes
    /// without compares, outside a transaction. A command whose arguments are wrong is in the
    /// run as its error, so that replies stay in order.
    fn plan_pipelined(&self, started: &Started, args: &[Bytes]) -> Option<Planned> {
        let spec = started.spec?;
        if !spec.write || !spec.key_plan || check_arity(spec, args).is_err() {
            return None;
        }
        match self.plan_keys(spec.name, args) {
            Err(e) => Some(Err(e)),
            Ok(Plan::Keys { compares, writes, render }) if compares.is_empty() => {
                if writes.len() > BATCH_OPS_MAX {
                    return Some(Err(too_many_keys()));
                }
                for w in &writes {
                    if let Err(e) = self.svc.check_key_write(w) {
                        return Some(Err(api_error(&e)));
                    }
                }
                Some(Ok((writes, render)))
            }
            Ok(_) => None,
        }
    }

    /// The log write for key operations: plain sets and deletes as the commands every
    /// version decodes, one key write as itself, several (or compares) as an atomic batch.
    fn write_op(
        &self,
        compares: Vec<KeyCompare>,
        mut writes: Vec<KeyWrite>,
    ) -> Result<WriteOp, RespError> {
        if compares.is_empty() && writes.len() == 1 {
            let w = writes.pop().expect("one write");
            self.svc.check_key_write(&w).map_err(|e| api_error(&e))?;
            let plain = w.condition == Condition::Always && !w.return_previous;
            return Ok(match w.op {
                KeyOp::Set { value, ttl: Ttl::Never } if plain => {
                    WriteOp::Set { key: w.key, value, ttl_ms: None }
                }
                KeyOp::Set { value, ttl: Ttl::Ms(ms) } if plain => {
                    WriteOp::Set { key: w.key, value, ttl_ms: Some(ms) }
                }
                KeyOp::Del if plain => WriteOp::Del { key: w.key },
                _ => WriteOp::Key(w),
            });
        }
        let b = Batch { compares, then: writes, otherwise: Vec::new() };
        if b.then.len() > BATCH_OPS_MAX {
            return Err(too_many_keys());
        }
        self.svc.check_batch(&b).map_err(|e| api_error(&e))?;
        Ok(WriteOp::Batch(b))
    }

    /// Runs one command that is not a pipelined write.
    async fn command(
        &mut self,
        started: &Started,
        args: Vec<Bytes>,
        out: &mut BytesMut,
    ) -> Result<Flow, RespError> {
        let Some(spec) = started.spec else {
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            return Err(unknown_command(&args));
        };
        let name = spec.name;
        if !self.authenticated && !matches!(name, "auth" | "hello" | "quit" | "reset") {
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            return Err(err("NOAUTH Authentication required."));
        }
        if let Some(m) = &mut self.multi
            && !matches!(name, "exec" | "discard" | "multi" | "watch" | "quit" | "reset")
        {
            if let Err(e) = check_arity(spec, &args) {
                m.failed = true;
                return Err(e);
            }
            if !spec.in_multi {
                m.failed = true;
                return Err(err("ERR Command not allowed inside a transaction"));
            }
            let bytes: usize = args.iter().map(Bytes::len).sum();
            if m.queued.len() >= MULTI_COMMANDS_MAX || m.bytes + bytes > MULTI_BYTES_MAX {
                m.failed = true;
                return Err(err(format!(
                    "ERR a transaction holds at most {MULTI_COMMANDS_MAX} commands and \
                     {MULTI_BYTES_MAX} bytes in simple-cache (one log entry)"
                )));
            }
            m.bytes += bytes;
            m.queued.push(args);
            Reply { out, resp3: self.resp3 }.simple("QUEUED");
            return Ok(Flow::Continue);
        }
        check_arity(spec, &args)?;
        let c = self.consistency();
        let resp3 = self.resp3;
        match name {
            "ping" => {
                let mut r = Reply { out, resp3 };
                match args.get(1) {
                    None => r.simple("PONG"),
                    Some(m) if args.len() == 2 => r.bulk(m),
                    Some(_) => return Err(arity_error("ping")),
                }
            }
            "echo" => Reply { out, resp3 }.bulk(&args[1]),
            "quit" => {
                Reply { out, resp3 }.ok();
                return Ok(Flow::Close);
            }
            "select" => match parse_i64(&args[1]) {
                Some(0) => Reply { out, resp3 }.ok(),
                Some(_) => return Err(err("ERR DB index is out of range")),
                None => return Err(err(NOT_INTEGER)),
            },
            "auth" => {
                self.auth(&args[1..])?;
                Reply { out, resp3 }.ok();
            }
            "hello" => self.hello(&args, out)?,
            "reset" => {
                self.multi = None;
                self.watched.clear();
                self.watch_failed = false;
                self.readonly = false;
                self.resp3 = false;
                self.authenticated = password(&self.svc).is_none();
                self.admin = self.svc.cfg.admin_token.is_none();
                self.set_client(|c| {
                    c.name.clear();
                    c.resp = 2;
                });
                Reply { out, resp3: false }.simple("RESET");
            }
            "readonly" => {
                self.readonly = true;
                Reply { out, resp3 }.ok();
            }
            "readwrite" => {
                self.readonly = false;
                Reply { out, resp3 }.ok();
            }
            "multi" => {
                if self.multi.is_some() {
                    return Err(err("ERR MULTI calls can not be nested"));
                }
                self.multi = Some(Multi::default());
                Reply { out, resp3 }.ok();
            }
            "discard" => {
                if self.multi.take().is_none() {
                    return Err(err("ERR DISCARD without MULTI"));
                }
                self.watched.clear();
                self.watch_failed = false;
                Reply { out, resp3 }.ok();
            }
            "exec" => self.exec(out).await?,
            "watch" => {
                if self.multi.is_some() {
                    return Err(err("ERR WATCH inside MULTI is not allowed"));
                }
                self.watch(&args[1..]).await?;
                Reply { out, resp3 }.ok();
            }
            "unwatch" => {
                self.watched.clear();
                self.watch_failed = false;
                Reply { out, resp3 }.ok();
            }
            "flushall" | "flushdb" => {
                if let Some(mode) = args.get(1) {
                    let m = mode.to_ascii_uppercase();
                    if args.len() > 2 || (m != b"ASYNC" && m != b"SYNC") {
                        return Err(err(SYNTAX));
                    }
                }
                if !self.admin {
                    return Err(err(format!(
                        "NOPERM this user has no permissions to run the '{name}' command (AUTH \
                         with the admin token)"
                    )));
                }
                self.svc.reset(&self.caller()).await.map_err(|e| api_error(&e))?;
                Reply { out, resp3 }.ok();
            }
            "keys" => {
                let pattern = redis_glob(&args[1])?;
                let found = self
                    .svc
                    .search(
                        &pattern,
                        SearchMode::Wildcard,
                        Some(simple_cache_core::cache::SEARCH_RESULTS_MAX),
                        c,
                    )
                    .await
                    .map_err(|e| api_error(&e))?;
                if found.truncated {
                    return Err(err(format!(
                        "ERR KEYS matched more than {} keys; use SCAN",
                        simple_cache_core::cache::SEARCH_RESULTS_MAX
                    )));
                }
                let mut r = Reply { out, resp3 };
                r.array(found.keys.len());
                for k in &found.keys {
                    r.bulk(k.as_bytes());
                }
            }
            "scan" => self.scan(&args, out).await?,
            "dbsize" => match self.svc.read(Query::Count, c).await.map_err(|e| api_error(&e))? {
                QueryResult::Count(n) => Reply { out, resp3 }.int(n as i64),
                _ => return Err(err("ERR internal: unexpected query result")),
            },
            "randomkey" => {
                let key = self.random_key(c).await?;
                let mut r = Reply { out, resp3 };
                match key {
                    Some(k) => r.bulk(k.as_bytes()),
                    None => r.null(),
                }
            }
            "ttl" | "pttl" => {
                let k = key_of(&args[1])?;
                self.svc.check_key(&k).map_err(|e| api_error(&e))?;
                let t = self.svc.ttl(&k, c).await.map_err(|e| api_error(&e))?;
                Reply { out, resp3 }.int(ttl_reply(t, name == "pttl"));
            }
            "client" => self.client(&args, out)?,
            "command" => command_command(&args, out, resp3)?,
            "info" => {
                let text = self.info(&args[1..]);
                Reply { out, resp3 }.verbatim(text.as_bytes());
            }
            "config" => self.config(&args, out)?,
            "time" => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                let mut r = Reply { out, resp3 };
                r.array(2);
                r.bulk(now.as_secs().to_string().as_bytes());
                r.bulk(now.subsec_micros().to_string().as_bytes());
            }
            "wait" => {
                let want =
                    parse_i64(&args[1]).filter(|n| *n >= 0).ok_or_else(|| err(NOT_INTEGER))?;
                let timeout_ms = parse_i64(&args[2])
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| err("ERR timeout is negative"))?;
                let n = self.wait_replicas(want as usize, timeout_ms as u64).await;
                Reply { out, resp3 }.int(n as i64);
            }
            "role" => self.role(out),
            _ if spec.key_plan => {
                let plan = self.plan_keys(name, &args)?;
                match plan {
                    Plan::Keys { compares, writes, render } => {
                        let op = self.write_op(compares, writes)?;
                        let w =
                            self.svc.write(&self.caller(), op).await.map_err(|e| api_error(&e))?;
                        let (succeeded, outs) =
                            outcomes(&self.svc, w).map_err(|e| api_error(&e))?;
                        render.write(succeeded, &outs, &mut Reply { out, resp3 })?;
                    }
                    Plan::Read { keys, kind } => {
                        self.read(keys, &kind, c, &mut Reply { out, resp3 }).await?;
                    }
                }
            }
            _ => return Err(unknown_command(&args)),
        }
        Ok(Flow::Continue)
    }

    /// Runs a read command and renders it.
    async fn read(
        &self,
        keys: Vec<String>,
        kind: &ReadKind,
        c: Consistency,
        r: &mut Reply<'_>,
    ) -> Result<(), RespError> {
        for k in &keys {
            self.svc.check_key(k).map_err(|e| api_error(&e))?;
        }
        let answer = self.svc.read(read_query(keys, kind), c).await;
        kind.write_answer(answer.map_err(|e| api_error(&e))?, r)
    }

    /// The key operations (or reads) of a key command, from its arguments.
    fn plan_keys(&self, name: &str, args: &[Bytes]) -> Result<Plan, RespError> {
        let k = |i: usize| key_of(&args[i]);
        let raw = |b: &Bytes| {
            let mut v = BytesMut::with_capacity(1 + b.len());
            v.extend_from_slice(&[value_form::RAW]);
            v.extend_from_slice(b);
            v.freeze()
        };
        let one =
            |key: String, op: KeyOp, condition: Condition, rp: bool, render: Render| Plan::Keys {
                compares: Vec::new(),
                writes: vec![KeyWrite { key, op, condition, return_previous: rp }],
                render,
            };
        let read = |keys: Vec<String>, kind: ReadKind| Plan::Read { keys, kind };
        let max_value = self.svc.limits.max_value_bytes();
        let check_len = |len: usize| {
            if len > max_value {
                Err(err(format!(
                    "ERR string exceeds maximum allowed size (max_value_bytes {max_value})"
                )))
            } else {
                Ok(())
            }
        };
        Ok(match name {
            "get" => read(vec![k(1)?], ReadKind::Get),
            "strlen" => read(vec![k(1)?], ReadKind::Strlen),
            "type" => read(vec![k(1)?], ReadKind::Type),
            "getrange" | "substr" => {
                let start = parse_i64(&args[2]).ok_or_else(|| err(NOT_INTEGER))?;
                let end = parse_i64(&args[3]).ok_or_else(|| err(NOT_INTEGER))?;
                read(vec![k(1)?], ReadKind::GetRange(start, end))
            }
            "expiretime" | "pexpiretime" => {
                read(vec![k(1)?], ReadKind::ExpireTime { ms: name == "pexpiretime" })
            }
            "ttl" | "pttl" => read(vec![k(1)?], ReadKind::Ttl { ms: name == "pttl" }),
            "mget" => read(keys_of(&args[1..])?, ReadKind::Mget),
            "exists" | "touch" => read(keys_of(&args[1..])?, ReadKind::Exists),
            "set" => {
                check_len(args[2].len())?;
                let o = SetOptions::parse(&args[3..], "set")?;
                let ttl = o.ttl;
                let render = if o.get { Render::Previous } else { Render::SetCond };
                let condition = o.condition;
                one(k(1)?, KeyOp::Set { value: raw(&args[2]), ttl }, condition, o.get, render)
            }
            "setnx" => {
                check_len(args[2].len())?;
                let op = KeyOp::Set { value: raw(&args[2]), ttl: Ttl::Never };
                one(k(1)?, op, Condition::Absent, false, Render::Applied)
            }
            "setex" | "psetex" => {
                check_len(args[3].len())?;
                let n = parse_i64(&args[2]).ok_or_else(|| err(NOT_INTEGER))?;
                let ms = if name == "setex" { n.checked_mul(1000) } else { Some(n) };
                let ms = ms
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| err(format!("ERR invalid expire time in '{name}' command")))?;
                let op = KeyOp::Set { value: raw(&args[3]), ttl: Ttl::Ms(ms as u64) };
                one(k(1)?, op, Condition::Always, false, Render::Ok)
            }
            "getset" => {
                check_len(args[2].len())?;
                let op = KeyOp::Set { value: raw(&args[2]), ttl: Ttl::Never };
                one(k(1)?, op, Condition::Always, true, Render::Previous)
            }
            "getdel" => one(k(1)?, KeyOp::Del, Condition::Always, true, Render::Previous),
            "getex" => match GetExOption::parse(&args[2..])? {
                None => read(vec![k(1)?], ReadKind::Get),
                Some(GetExOption::Persist) => {
                    one(k(1)?, KeyOp::Persist, Condition::Always, true, Render::Previous)
                }
                Some(GetExOption::In(ttl_ms)) => {
                    let op = KeyOp::Expire { ttl_ms, when: ExpireWhen::Always };
                    one(k(1)?, op, Condition::Always, true, Render::Previous)
                }
                Some(GetExOption::At(at_ms)) => {
                    let op = KeyOp::ExpireAt { at_ms, when: ExpireWhen::Always };
                    one(k(1)?, op, Condition::Always, true, Render::Previous)
                }
                Some(GetExOption::Invalid(e)) => read(vec![k(1)?], ReadKind::FailIfPresent(e)),
            },
            "mset" | "msetnx" => {
                if args.len().is_multiple_of(2) {
                    return Err(arity_error(name));
                }
                let mut writes = Vec::new();
                let mut compares = Vec::new();
                for pair in args[1..].chunks(2) {
                    check_len(pair[1].len())?;
                    let key = key_of(&pair[0])?;
                    if name == "msetnx" {
                        compares.push(KeyCompare { key: key.clone(), compare: Compare::Absent });
                    }
                    let op = KeyOp::Set { value: raw(&pair[1]), ttl: Ttl::Never };
                    writes.push(Command::write(key, op));
                }
                let render = if name == "msetnx" { Render::Succeeded } else { Render::Ok };
                Plan::Keys { compares, writes, render }
            }
            "del" | "unlink" => {
                let writes = keys_of(&args[1..])?
                    .into_iter()
                    .map(|key| Command::write(key, KeyOp::Del))
                    .collect();
                Plan::Keys { compares: Vec::new(), writes, render: Render::CountExisted }
            }
            "expire" | "pexpire" | "expireat" | "pexpireat" => {
                // Redis reads the options before the time.
                let when = expire_when(&args[3..])?;
                let n = parse_i64(&args[2]).ok_or_else(|| err(NOT_INTEGER))?;
                let invalid = || err(format!("ERR invalid expire time in '{name}' command"));
                let ms = match name {
                    "expire" | "expireat" => n.checked_mul(1000).ok_or_else(invalid)?,
                    _ => n,
                };
                let op = if name.ends_with("at") {
                    KeyOp::ExpireAt { at_ms: ms.max(0) as u64, when }
                } else {
                    ms.checked_add(now_ms() as i64).ok_or_else(invalid)?;
                    KeyOp::Expire { ttl_ms: ms.max(0) as u64, when }
                };
                one(k(1)?, op, Condition::Always, false, Render::Applied)
            }
            "persist" => one(k(1)?, KeyOp::Persist, Condition::Always, false, Render::Applied),
            "incr" | "decr" | "incrby" | "decrby" => {
                let by = match args.get(2) {
                    None => 1,
                    Some(a) => parse_i64(a).ok_or_else(|| err(NOT_INTEGER))?,
                };
                let delta = if name.starts_with("decr") {
                    by.checked_neg().ok_or_else(|| err("ERR decrement would overflow"))?
                } else {
                    by
                };
                one(k(1)?, KeyOp::Incr { delta }, Condition::Always, false, Render::Number)
            }
            "incrbyfloat" => {
                let delta = value_form::parse_float(&args[2])
                    .ok_or_else(|| err("ERR value is not a valid float"))?;
                let op = KeyOp::IncrFloat { delta_bits: delta.to_bits() };
                one(k(1)?, op, Condition::Always, false, Render::Text)
            }
            "append" => {
                check_len(args[2].len())?;
                let op = KeyOp::Splice { offset: None, bytes: args[2].clone() };
                one(k(1)?, op, Condition::Always, false, Render::Number)
            }
            "setrange" => {
                let offset = parse_i64(&args[2]).ok_or_else(|| err(NOT_INTEGER))?;
                if offset < 0 {
                    return Err(err("ERR offset is out of range"));
                }
                check_len((offset as usize).saturating_add(args[3].len()))?;
                let op = KeyOp::Splice { offset: Some(offset as u64), bytes: args[3].clone() };
                one(k(1)?, op, Condition::Always, false, Render::Number)
            }
            "rename" | "renamenx" => {
                let (from, to) = (k(1)?, k(2)?);
                let (condition, render) = if name == "renamenx" {
                    (Condition::Absent, Render::Applied)
                } else {
                    (Condition::Always, Render::Ok)
                };
                one(to, KeyOp::Rename { from }, condition, false, render)
            }
            _ => return Err(err(format!("ERR internal: no plan for '{name}'"))),
        })
    }

    fn auth(&mut self, args: &[Bytes]) -> Result<(), RespError> {
        let (user, pass) = match args {
            [pass] => ("default".as_bytes(), pass),
            [user, pass] => (&user[..], pass),
            _ => return Err(err(SYNTAX)),
        };
        let Some(password) = password(&self.svc) else {
            return Err(err(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            ));
        };
        let admin = self.svc.cfg.admin_token.as_deref();
        if user == b"default" && same(pass, password.as_bytes()) {
            self.authenticated = true;
            self.admin = admin.is_none_or(|t| same(pass, t.as_bytes()));
            Ok(())
        } else if user == b"default" && admin.is_some_and(|t| same(pass, t.as_bytes())) {
            self.authenticated = true;
            self.admin = true;
            Ok(())
        } else {
            Err(err("WRONGPASS invalid username-password pair or user is disabled."))
        }
    }

    fn hello(&mut self, args: &[Bytes], out: &mut BytesMut) -> Result<(), RespError> {
        let mut version = None;
        let mut i = 1;
        if let Some(v) = args.get(1) {
            match parse_i64(v) {
                Some(n @ (2 | 3)) => version = Some(n == 3),
                Some(_) => return Err(err("NOPROTO unsupported protocol version")),
                None => return Err(err("ERR Protocol version is not an integer or out of range")),
            }
            i = 2;
        }
        let mut name = None;
        while i < args.len() {
            let opt = args[i].to_ascii_uppercase();
            if opt == b"AUTH" && i + 2 < args.len() {
                self.auth(&args[i + 1..i + 3])?;
                i += 3;
            } else if opt == b"SETNAME" && i + 1 < args.len() {
                name = Some(client_name(&args[i + 1])?);
                i += 2;
            } else {
                return Err(err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                )));
            }
        }
        if !self.authenticated {
            return Err(err(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time",
            ));
        }
        if let Some(v) = version {
            self.resp3 = v;
        }
        let resp = if self.resp3 { 3 } else { 2 };
        self.set_client(|c| {
            c.resp = resp;
            if let Some(n) = name {
                c.name = n;
            }
        });
        let leader = self.svc.status.borrow().role == simple_cache_core::Role::Leader;
        let mut r = Reply { out, resp3: self.resp3 };
        r.map(7);
        r.bulk(b"server");
        r.bulk(b"simple-cache");
        r.bulk(b"version");
        r.bulk(REDIS_VERSION.as_bytes());
        r.bulk(b"proto");
        r.int(resp.into());
        r.bulk(b"id");
        r.int(self.id as i64);
        r.bulk(b"mode");
        r.bulk(b"standalone");
        r.bulk(b"role");
        r.bulk(if leader { b"master" } else { b"replica" });
        r.bulk(b"modules");
        r.array(0);
        Ok(())
    }

    fn set_client(&self, f: impl FnOnce(&mut ClientInfo)) {
        if let Some(c) = self.shared.clients.lock().expect("not poisoned").get_mut(&self.id) {
            f(c);
        }
    }

    fn client(&mut self, args: &[Bytes], out: &mut BytesMut) -> Result<(), RespError> {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        let mut r = Reply { out, resp3: self.resp3 };
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(format!("ERR wrong number of arguments for 'client|{sub}' command")))
            }
        };
        match sub.as_str() {
            "id" => {
                arity(2)?;
                r.int(self.id as i64);
            }
            "setname" => {
                arity(3)?;
                let name = client_name(&args[2])?;
                self.set_client(|c| c.name = name);
                r.ok();
            }
            "getname" => {
                arity(2)?;
                let name = self.client_info().map(|c| c.name).unwrap_or_default();
                if name.is_empty() { r.null() } else { r.bulk(name.as_bytes()) }
            }
            "setinfo" => {
                arity(4)?;
                let attr = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
                let value = client_name(&args[3])?;
                match attr.as_str() {
                    "lib-name" => self.set_client(|c| c.lib_name = value),
                    "lib-ver" => self.set_client(|c| c.lib_ver = value),
                    _ => {
                        return Err(err(format!(
                            "ERR Unrecognized option '{}'",
                            String::from_utf8_lossy(&args[2])
                        )));
                    }
                }
                r.ok();
            }
            "info" => {
                arity(2)?;
                let line = self.client_info().map(|c| self.client_line(self.id, &c));
                r.verbatim(format!("{}\n", line.unwrap_or_default()).as_bytes());
            }
            "list" => {
                if args.len() > 2 {
                    return Err(err(SYNTAX));
                }
                let clients = self.shared.clients.lock().expect("not poisoned").clone();
                let text: String = clients
                    .iter()
                    .map(|(id, c)| format!("{}\n", self.client_line(*id, c)))
                    .collect();
                r.verbatim(text.as_bytes());
            }
            "no-evict" | "no-touch" => {
                arity(3)?;
                r.ok();
            }
            _ => {
                return Err(err(format!(
                    "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                    String::from_utf8_lossy(&args[1])
                )));
            }
        }
        Ok(())
    }

    fn client_info(&self) -> Option<ClientInfo> {
        self.shared.clients.lock().expect("not poisoned").get(&self.id).cloned()
    }

    fn client_line(&self, id: u64, c: &ClientInfo) -> String {
        let now = std::time::Instant::now();
        format!(
            "id={id} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db=0 sub=0 psub=0 \
             multi=-1 cmd={} user=default lib-name={} lib-ver={} resp={}",
            c.addr,
            self.shared.local,
            c.name,
            now.duration_since(c.opened).as_secs(),
            now.duration_since(c.last).as_secs(),
            c.cmd,
            c.lib_name,
            c.lib_ver,
            c.resp
        )
    }

    fn info(&self, sections: &[Bytes]) -> String {
        let wanted: Vec<String> =
            sections.iter().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()).collect();
        let all = wanted.is_empty()
            || wanted.iter().any(|w| matches!(w.as_str(), "all" | "everything" | "default"));
        let want = |s: &str| all || wanted.iter().any(|w| w == s);
        let st: Status = self.svc.status.borrow().clone();
        let mut text = String::new();
        let uptime = self.shared.started.elapsed().as_secs();
        if want("server") {
            text += &format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nsimple_cache_version:{}\r\n\
                 redis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\n\
                 tcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n\
                 node_id:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                self.shared.local.port(),
                uptime / 86_400,
                st.id,
            );
        }
        if want("clients") {
            let n = self.shared.clients.lock().expect("not poisoned").len();
            text += &format!(
                "# Clients\r\nconnected_clients:{n}\r\nmaxclients:{}\r\n\r\n",
                self.svc.cfg.resp_max_clients
            );
        }
        if want("memory") {
            text += &format!(
                "# Memory\r\nused_memory:{}\r\nmaxmemory:{}\r\nmaxmemory_policy:{}\r\n\r\n",
                st.used_bytes,
                st.limits.max_memory_bytes,
                st.limits.policy.name()
            );
        }
        if want("stats") {
            text += &format!(
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 rejected_connections:{}\r\n\r\n",
                self.shared.connections.load(Ordering::Relaxed),
                self.shared.commands.load(Ordering::Relaxed),
                self.shared.rejected.load(Ordering::Relaxed),
            );
        }
        if want("replication") {
            let leader = st.role == simple_cache_core::Role::Leader;
            let others: Vec<_> = st.membership.voters.iter().filter(|v| **v != st.id).collect();
            text += &format!(
                "# Replication\r\nrole:{}\r\nraft_role:{:?}\r\nraft_term:{}\r\nleader_id:{}\r\n\
                 commit_index:{}\r\nlast_applied:{}\r\nconnected_slaves:{}\r\n",
                if leader { "master" } else { "slave" },
                st.role,
                st.term.0,
                st.leader.map_or("none".to_string(), |l| l.0.to_string()),
                st.commit_index.0,
                st.last_applied.0,
                if leader { others.len() } else { 0 },
            );
            if !leader && let Some(addr) = st.leader_http_addr() {
                let (host, port) = split_addr(&addr);
                text += &format!(
                    "master_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:up\r\n"
                );
            }
            text += "\r\n";
        }
        if want("keyspace") {
            text += "# Keyspace\r\n";
            if st.keys > 0 {
                text += &format!("db0:keys={}\r\n", st.keys);
            }
            text += "\r\n";
        }
        text
    }

    fn config(&self, args: &[Bytes], out: &mut BytesMut) -> Result<(), RespError> {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        let mut r = Reply { out, resp3: self.resp3 };
        match sub.as_str() {
            "get" => {
                if args.len() < 3 {
                    return Err(err("ERR wrong number of arguments for 'config|get' command"));
                }
                let st = self.svc.status.borrow().clone();
                let cfg = &self.svc.cfg;
                let values: Vec<(&str, String)> = vec![
                    ("maxmemory", st.limits.max_memory_bytes.to_string()),
                    ("maxmemory-policy", st.limits.policy.name().to_string()),
                    ("maxclients", cfg.resp_max_clients.to_string()),
                    ("databases", "1".into()),
                    ("save", String::new()),
                    ("appendonly", "yes".into()),
                    ("appendfsync", "always".into()),
                    ("timeout", "0".into()),
                    ("port", self.shared.local.port().to_string()),
                    ("bind", self.shared.local.ip().to_string()),
                    ("proto-max-bulk-len", self.svc.limits.max_value_bytes().to_string()),
                    ("cluster-enabled", "no".into()),
                    ("slave-read-only", "yes".into()),
                    ("replica-read-only", "yes".into()),
                ];
                let mut found: Vec<(&str, String)> = Vec::new();
                for p in &args[2..] {
                    let p = String::from_utf8_lossy(p).to_ascii_lowercase();
                    let pattern = Pattern::compile(&redis_glob_text(&p), SearchMode::Wildcard)
                        .map_err(|e| err(format!("ERR {e}")))?;
                    for (k, v) in &values {
                        if pattern.matches(k) && !found.iter().any(|(f, _)| f == k) {
                            found.push((k, v.clone()));
                        }
                    }
                }
                r.map(found.len());
                for (k, v) in found {
                    r.bulk(k.as_bytes());
                    r.bulk(v.as_bytes());
                }
            }
            "set" => {
                return Err(err(
                    "ERR CONFIG SET is not supported: simple-cache is configured by its config \
                     file (hot_reload) and the admin API",
                ));
            }
            "resetstat" => r.ok(),
            _ => {
                return Err(err(format!(
                    "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                    String::from_utf8_lossy(&args[1])
                )));
            }
        }
        Ok(())
    }

    fn role(&self, out: &mut BytesMut) {
        let st = self.svc.status.borrow().clone();
        let mut r = Reply { out, resp3: self.resp3 };
        if st.role == simple_cache_core::Role::Leader {
            let others: Vec<_> = st.membership.voters.iter().filter(|v| **v != st.id).collect();
            r.array(3);
            r.bulk(b"master");
            r.int(st.commit_index.0 as i64);
            r.array(others.len());
            for id in others {
                let (host, port) = split_addr(&st.client_addr(*id).unwrap_or_default());
                r.array(3);
                r.bulk(host.as_bytes());
                r.bulk(port.as_bytes());
                r.bulk(st.commit_index.0.to_string().as_bytes());
            }
        } else {
            let (host, port) = split_addr(&st.leader_http_addr().unwrap_or_default());
            r.array(5);
            r.bulk(b"slave");
            r.bulk(host.as_bytes());
            r.int(port.parse().unwrap_or(0));
            r.bulk(if st.leader.is_some() { b"connected" } else { b"connect" });
            r.int(st.last_applied.0 as i64);
        }
    }

    async fn scan(&self, args: &[Bytes], out: &mut BytesMut) -> Result<(), RespError> {
        let cursor = std::str::from_utf8(&args[1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| err("ERR invalid cursor"))?;
        let mut pattern = "*".to_string();
        let mut count = 10usize;
        let mut only_strings = true;
        let mut i = 2;
        while i < args.len() {
            let opt = args[i].to_ascii_uppercase();
            let value = args.get(i + 1).ok_or_else(|| err(SYNTAX))?;
            match &opt[..] {
                b"MATCH" => pattern = redis_glob(value)?,
                b"COUNT" => {
                    count = parse_i64(value)
                        .filter(|n| *n >= 1)
                        .map(|n| n.min(simple_cache_core::cache::SEARCH_RESULTS_MAX as i64))
                        .ok_or_else(|| {
                            err(if parse_i64(value).is_some() { SYNTAX } else { NOT_INTEGER })
                        })? as usize;
                }
                b"TYPE" => only_strings = value.eq_ignore_ascii_case(b"string"),
                _ => return Err(err(SYNTAX)),
            }
            i += 2;
        }
        let after = match cursor {
            0 => None,
            n => Some(
                self.shared
                    .cursors
                    .lock()
                    .expect("not poisoned")
                    .by_id
                    .get(&n)
                    .cloned()
                    .ok_or_else(|| err("ERR invalid cursor"))?,
            ),
        };
        let (keys, next) = if only_strings {
            let pattern = Pattern::compile(&pattern, SearchMode::Wildcard)
                .map_err(|e| err(format!("ERR {e}")))?;
            let query = Query::Search { pattern, limit: count, after, examine_max: count };
            match self.svc.read(query, self.consistency()).await.map_err(|e| api_error(&e))? {
                QueryResult::Keys(page) => {
                    let next = match page.resume_after.or_else(|| {
                        // A full page: the next one starts after its last key.
                        (page.keys.len() >= count).then(|| page.keys.last().cloned()).flatten()
                    }) {
                        Some(k) => self.shared.cursors.lock().expect("not poisoned").put(k),
                        None => 0,
                    };
                    (page.keys, next)
                }
                _ => return Err(err("ERR internal: unexpected query result")),
            }
        } else {
            (Vec::new(), 0)
        };
        let mut r = Reply { out, resp3: self.resp3 };
        r.array(2);
        r.bulk(next.to_string().as_bytes());
        r.array(keys.len());
        for k in &keys {
            r.bulk(k.as_bytes());
        }
        Ok(())
    }

    async fn random_key(&self, c: Consistency) -> Result<Option<String>, RespError> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let mixed =
            (u64::from(nanos) ^ self.id.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let start: String =
            [(b' ' + (mixed >> 56) as u8 % 95) as char, (b' ' + (mixed >> 48) as u8 % 95) as char]
                .iter()
                .collect();
        for after in [Some(start), None] {
            let pattern = Pattern::compile("*", SearchMode::Wildcard).expect("a valid pattern");
            let query = Query::Search { pattern, limit: 1, after, examine_max: 1024 };
            if let QueryResult::Keys(page) =
                self.svc.read(query, c).await.map_err(|e| api_error(&e))?
                && let Some(k) = page.keys.into_iter().next()
            {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    async fn watch(&mut self, keys: &[Bytes]) -> Result<(), RespError> {
        let keys = keys_of(keys)?;
        if self.watched.len() + keys.len() > WATCHED_KEYS_MAX {
            return Err(err(format!(
                "ERR at most {WATCHED_KEYS_MAX} keys may be watched per connection in simple-cache"
            )));
        }
        for key in keys {
            self.svc.check_key(&key).map_err(|e| api_error(&e))?;
            let item = self
                .svc
                .get_item(&key, Consistency::Linearizable)
                .await
                .map_err(|e| api_error(&e))?;
            let revision = item.map_or(0, |i| i.revisions.modified);
            self.watched.push((key, revision));
        }
        Ok(())
    }

    /// `EXEC`: the queued commands as one `Command::Exec` log entry, compared against the
    /// watched keys' revisions.
    async fn exec(&mut self, out: &mut BytesMut) -> Result<(), RespError> {
        let Some(multi) = self.multi.take() else {
            return Err(err("ERR EXEC without MULTI"));
        };
        let watched = std::mem::take(&mut self.watched);
        let watch_failed = std::mem::replace(&mut self.watch_failed, false);
        if multi.failed {
            return Err(err("EXECABORT Transaction discarded because of previous errors."));
        }
        if watch_failed {
            Reply { out, resp3: self.resp3 }.null_array();
            return Ok(());
        }
        // Each queued command's plan, and where its operations sit in the batch.
        let mut items: Vec<TxItem> = Vec::new();
        let mut then = Vec::new();
        for args in &multi.queued {
            let name = Started::new(args).spec.map_or("", |s| s.name);
            let item = match name {
                "ping" | "echo" | "time" | "select" => TxItem::Static(args.clone()),
                _ => match self.plan_keys(name, args) {
                    Err(e) => TxItem::Failed(e),
                    Ok(Plan::Keys { compares, .. }) if !compares.is_empty() => TxItem::Failed(err(
                        "ERR MSETNX inside MULTI is not supported by simple-cache",
                    )),
                    Ok(Plan::Keys { writes, render, .. }) => {
                        let start = then.len();
                        for w in &writes {
                            self.svc.check_key_write(w).map_err(|e| api_error(&e))?;
                        }
                        then.extend(writes);
                        TxItem::Keys { range: start..then.len(), render }
                    }
                    Ok(Plan::Read { keys, kind }) => {
                        let start = then.len();
                        for key in keys {
                            self.svc.check_key(&key).map_err(|e| api_error(&e))?;
                            then.push(KeyWrite {
                                key,
                                op: KeyOp::Read,
                                condition: Condition::Always,
                                return_previous: true,
                            });
                        }
                        TxItem::Read { range: start..then.len(), kind }
                    }
                },
            };
            items.push(item);
        }
        if then.len() > BATCH_OPS_MAX {
            return Err(err(format!(
                "EXECABORT the transaction has {} key operations; simple-cache's limit is \
                 {BATCH_OPS_MAX}",
                then.len()
            )));
        }
        let compares: Vec<KeyCompare> = watched
            .into_iter()
            .map(|(key, revision)| KeyCompare { key, compare: Compare::Revision(revision) })
            .collect();
        let outcome = if then.is_empty() && compares.is_empty() {
            BatchOutcome { succeeded: true, revision: 0, results: Vec::new() }
        } else {
            let b = Batch { compares, then, otherwise: Vec::new() };
            self.svc.exec(&self.caller(), b).await.map_err(|e| api_error(&e))?
        };
        self.last_revision = self.last_revision.max(outcome.revision);
        let mut r = Reply { out, resp3: self.resp3 };
        if !outcome.succeeded {
            r.null_array();
            return Ok(());
        }
        r.array(items.len());
        for item in items {
            let written = match item {
                TxItem::Failed(e) => Err(e),
                TxItem::Static(args) => {
                    static_reply(&args, &mut r);
                    Ok(())
                }
                TxItem::Keys { range, render } => {
                    let outs = &outcome.results[range];
                    match outs.iter().find_map(|o| o.refusal) {
                        Some(refusal) => Err(api_error(&crate::service::refused(refusal))),
                        None => render.write(true, outs, &mut r),
                    }
                }
                TxItem::Read { range, kind } => {
                    let items: Vec<Option<Versioned>> =
                        outcome.results[range].iter().map(|o| o.previous.clone()).collect();
                    kind.write(&items, &mut r)
                }
            };
            if let Err(e) = written {
                r.error(&e);
            }
        }
        Ok(())
    }
}

/// One queued command of a transaction, planned at `EXEC`.
enum TxItem {
    /// Its arguments did not parse (`-ERR syntax error` in its place, as Redis answers).
    Failed(RespError),
    /// A command that reads no key (`PING`, `ECHO`, `TIME`, `SELECT`).
    Static(Vec<Bytes>),
    Keys {
        range: std::ops::Range<usize>,
        render: Render,
    },
    Read {
        range: std::ops::Range<usize>,
        kind: ReadKind,
    },
}

fn static_reply(args: &[Bytes], r: &mut Reply<'_>) {
    match args[0].to_ascii_lowercase().as_slice() {
        b"ping" => match args.get(1) {
            Some(m) => r.bulk(m),
            None => r.simple("PONG"),
        },
        b"echo" => r.bulk(&args[1]),
        b"time" => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            r.array(2);
            r.bulk(now.as_secs().to_string().as_bytes());
            r.bulk(now.subsec_micros().to_string().as_bytes());
        }
        _ => match parse_i64(args.get(1).map_or(&b""[..], |a| a)) {
            Some(0) => r.ok(),
            _ => r.error("ERR DB index is out of range"),
        },
    }
}

/// What a key command becomes.
enum Plan {
    /// Writes (and, for `MSETNX`, compares), rendered from their outcomes.
    Keys { compares: Vec<KeyCompare>, writes: Vec<KeyWrite>, render: Render },
    /// A read of these keys.
    Read { keys: Vec<String>, kind: ReadKind },
}

/// Convenience: a plain [`KeyWrite`].
struct Command;
impl Command {
    fn write(key: String, op: KeyOp) -> KeyWrite {
        KeyWrite { key, op, condition: Condition::Always, return_previous: false }
    }
}

/// How a write's outcomes become its reply.
#[derive(Clone, Copy, Debug)]
enum Render {
    /// `+OK`.
    Ok,
    /// `+OK` if the condition held, else null (`SET NX/XX`).
    SetCond,
    /// `:1` if the operation applied, else `:0`.
    Applied,
    /// `:1` if the batch's compares held (`MSETNX`).
    Succeeded,
    /// The previous value, or null (`GETSET`, `GETDEL`, `SET GET`, `GETEX`).
    Previous,
    /// How many keys existed (`DEL`).
    CountExisted,
    /// The operation's number (`INCR`, `APPEND`, `SETRANGE`).
    Number,
    /// The operation's text (`INCRBYFLOAT`).
    Text,
}

impl Render {
    fn write(
        self,
        succeeded: bool,
        outs: &[KeyOutcome],
        r: &mut Reply<'_>,
    ) -> Result<(), RespError> {
        let first = outs.first();
        match self {
            Render::Ok => r.ok(),
            Render::SetCond => {
                if first.is_some_and(|o| o.applied) {
                    r.ok()
                } else {
                    r.null()
                }
            }
            Render::Applied => r.int(i64::from(first.is_some_and(|o| o.applied))),
            Render::Succeeded => r.int(i64::from(succeeded)),
            Render::Previous => match first.and_then(|o| o.previous.as_ref()) {
                None => r.null(),
                Some(v) => r.bulk(text_of(&v.value)?),
            },
            Render::CountExisted => {
                r.int(outs.iter().filter(|o| o.applied && o.existed).count() as i64)
            }
            Render::Number => r.int(first.and_then(|o| o.number).unwrap_or(0)),
            Render::Text => match first.and_then(|o| o.text.as_ref()) {
                Some(t) => r.bulk(t),
                None => r.null(),
            },
        }
        Ok(())
    }
}

/// A read command, rendered from the keys it read.
#[derive(Clone, Debug)]
enum ReadKind {
    Get,
    Strlen,
    Type,
    GetRange(i64, i64),
    ExpireTime {
        ms: bool,
    },
    /// Nil if the key is absent, else this error (Redis validates some arguments only after
    /// it found the key).
    FailIfPresent(RespError),
    /// `TTL` in a transaction (outside one it is a query of its own).
    Ttl {
        ms: bool,
    },
    /// `TTL` outside a transaction: answered from a `Query::Ttl`.
    TtlQuery {
        ms: bool,
    },
    Mget,
    Exists,
}

impl ReadKind {
    /// Renders the answer to the query [`read_query`] made for this read.
    fn write_answer(&self, answer: QueryResult, r: &mut Reply<'_>) -> Result<(), RespError> {
        let value_only =
            |value: Bytes| Versioned { value, expires_at: None, revisions: Default::default() };
        let items = match answer {
            QueryResult::Ttl(t) => {
                let ReadKind::TtlQuery { ms } = self else {
                    return Err(err("ERR internal: unexpected query result"));
                };
                r.int(ttl_reply(t, *ms));
                return Ok(());
            }
            QueryResult::Item(v) => vec![v],
            QueryResult::Value(v) => vec![v.map(value_only)],
            QueryResult::Values(vs) => vs.into_iter().map(|v| v.map(value_only)).collect(),
            _ => return Err(err("ERR internal: unexpected query result")),
        };
        self.write(&items, r)
    }

    fn write(&self, items: &[Option<Versioned>], r: &mut Reply<'_>) -> Result<(), RespError> {
        let first = items.first().and_then(Option::as_ref);
        match self {
            ReadKind::Get => match first {
                None => r.null(),
                Some(v) => r.bulk(text_of(&v.value)?),
            },
            ReadKind::Strlen => match first {
                None => r.int(0),
                Some(v) => r.int(text_of(&v.value)?.len() as i64),
            },
            ReadKind::Type => r.simple(if first.is_some() { "string" } else { "none" }),
            ReadKind::GetRange(start, end) => match first {
                None => r.bulk(b""),
                Some(v) => r.bulk(get_range(text_of(&v.value)?, *start, *end)),
            },
            ReadKind::ExpireTime { ms } => r.int(match first {
                None => -2,
                Some(v) => match v.expires_at {
                    None => -1,
                    Some(at) if *ms => at.as_millis() as i64,
                    Some(at) => (at.as_millis() / 1000) as i64,
                },
            }),
            ReadKind::FailIfPresent(e) => match first {
                None => r.null(),
                Some(_) => return Err(e.clone()),
            },
            ReadKind::TtlQuery { .. } => {
                return Err(err("ERR internal: TTL is a query of its own"));
            }
            ReadKind::Ttl { ms } => r.int(match first {
                None => -2,
                Some(v) => match v.expires_at {
                    None => -1,
                    Some(at) => {
                        let left = at.as_millis().saturating_sub(now_ms());
                        ttl_reply(TtlStatus::Remaining { ms: left }, *ms)
                    }
                },
            }),
            ReadKind::Mget => {
                let total: usize = items.iter().flatten().map(|v| v.value.len()).sum();
                if total > REPLY_VALUE_BYTES_MAX {
                    return Err(err(format!(
                        "ERR the values are {total} bytes together; simple-cache answers at most \
                         {REPLY_VALUE_BYTES_MAX} bytes of values per command (ask for fewer keys)"
                    )));
                }
                r.array(items.len());
                for item in items {
                    match item.as_ref().map(|v| text_of(&v.value)) {
                        Some(Ok(t)) => r.bulk(t),
                        // A protobuf Any reads as nil, as Redis answers MGET for other types.
                        _ => r.null(),
                    }
                }
            }
            ReadKind::Exists => r.int(items.iter().filter(|i| i.is_some()).count() as i64),
        }
        Ok(())
    }
}

/// Writes the waiting replies out once they pass [`OUTPUT_FLUSH_BYTES`]. A failed write is
/// left to the connection loop, whose next write fails the same way and closes.
async fn flush_if_full(out: &mut BytesMut, sock: &mut ServerStream) {
    if out.len() >= OUTPUT_FLUSH_BYTES && send(sock, out).await.is_ok() {
        out.clear();
    }
}

/// Writes `bytes` and flushes them: over TLS, written bytes may wait in the session's buffer
/// until a flush.
async fn send(sock: &mut ServerStream, bytes: &[u8]) -> std::io::Result<()> {
    sock.write_all(bytes).await?;
    sock.flush().await
}

/// The query that reads what `kind` needs of `keys`: the deadline too for `EXPIRETIME`, one
/// value for one key, else several values at one point.
fn read_query(mut keys: Vec<String>, kind: &ReadKind) -> Query {
    if matches!(kind, ReadKind::ExpireTime { .. }) {
        Query::Item(keys.swap_remove(0))
    } else if keys.len() == 1 {
        Query::Get(keys.swap_remove(0))
    } else {
        Query::Values(keys)
    }
}

/// Redis's `GETRANGE` on `text`: negative offsets count from the end, both ends inclusive.
fn get_range(text: &[u8], start: i64, end: i64) -> &[u8] {
    let len = text.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return b"";
    }
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    s = s.max(0);
    e = e.max(0);
    if e >= len {
        e = len - 1;
    }
    if s > e || s >= len {
        return b"";
    }
    &text[s as usize..=e as usize]
}

/// The value as a Redis string: raw bytes or JSON text; a protobuf `Any` is `WRONGTYPE`.
fn text_of(stored: &Bytes) -> Result<&[u8], RespError> {
    value_form::text(stored).ok_or_else(|| err(WRONGTYPE))
}

/// The outcomes of a write, whatever command it went as: whether its compares held, and one
/// outcome per operation.
fn outcomes(svc: &Service, w: Written) -> Result<(bool, Vec<KeyOutcome>), ApiError> {
    let revision = w.revision;
    let plain = |applied: bool, existed: bool| KeyOutcome {
        applied,
        revision,
        existed,
        current: None,
        previous: None,
        number: None,
        text: None,
        refusal: None,
    };
    Ok(match &w.result {
        ApplyResult::Set => {
            svc.set_result(w)?;
            (true, vec![plain(true, false)])
        }
        ApplyResult::Del { existed } => (true, vec![plain(true, *existed)]),
        ApplyResult::Batch(_) | ApplyResult::BatchRefused { .. } => {
            let b = svc.batch_result(w)?;
            (b.succeeded, b.results)
        }
        _ => (true, vec![svc.key_result(w)?]),
    })
}

/// A RESP error line for a service error: Redis's words where Redis has them.
fn api_error(e: &ApiError) -> RespError {
    let msg = &e.message;
    match e.code.as_ref() {
        "not_an_integer" => NOT_INTEGER.into(),
        "integer_overflow" => "ERR increment or decrement would overflow".into(),
        "wrong_type" | "not_raw" => WRONGTYPE.into(),
        "not_a_float" => "ERR value is not a valid float".into(),
        "not_finite" => "ERR increment would produce NaN or Infinity".into(),
        "no_such_key" => "ERR no such key".into(),
        "out_of_memory" => format!("OOM command not allowed when used memory > 'maxmemory'. {msg}"),
        "unauthorized" => format!("NOPERM {msg}"),
        "no_leader"
        | "overloaded"
        | "not_leader"
        | "transfer_in_progress"
        | "superseded"
        | "stopping" => format!("TRYAGAIN {msg}"),
        _ => format!("ERR {msg}"),
    }
}

/// The HTTP status a RESP error counts as in the request metrics.
fn status_of(e: &str) -> u16 {
    match e.split(' ').next().unwrap_or("") {
        "OOM" => 507,
        "NOAUTH" | "WRONGPASS" => 401,
        "NOPERM" => 403,
        "TRYAGAIN" => 503,
        "WRONGTYPE" | "EXECABORT" => 409,
        _ => 400,
    }
}

fn protocol_error(e: &ProtocolError) -> String {
    format!("ERR Protocol error: {e}")
}

fn unknown_command(args: &[Bytes]) -> RespError {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&args[0][..args[0].len().min(128)])
    );
    for a in args.iter().skip(1).take(16) {
        text += &format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(128)]));
    }
    text
}

fn too_many_keys() -> RespError {
    err(format!("ERR at most {BATCH_OPS_MAX} keys per command in simple-cache (one atomic batch)"))
}

fn arity_error(name: &str) -> RespError {
    format!("ERR wrong number of arguments for '{name}' command")
}

fn check_arity(spec: &Spec, args: &[Bytes]) -> Result<(), RespError> {
    let n = args.len() as i64;
    let ok = if spec.arity >= 0 { n == spec.arity } else { n >= -spec.arity };
    if ok { Ok(()) } else { Err(arity_error(spec.name)) }
}

/// A key: simple-cache keys are text.
fn key_of(b: &Bytes) -> Result<String, RespError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| err("ERR simple-cache keys are UTF-8 text; this key is not valid UTF-8"))
}

fn keys_of(args: &[Bytes]) -> Result<Vec<String>, RespError> {
    args.iter().map(key_of).collect()
}

fn client_name(b: &Bytes) -> Result<String, RespError> {
    let ok = b.iter().all(|c| (b'!'..=b'~').contains(c));
    if !ok {
        return Err(err("ERR Client names cannot contain spaces, newlines or special characters."));
    }
    Ok(String::from_utf8_lossy(b).into_owned())
}

/// A decimal as Redis reads integers (`string2ll`).
fn parse_i64(b: &[u8]) -> Option<i64> {
    resp::number(b)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn password(svc: &Service) -> Option<&str> {
    svc.cfg.resp_password.as_deref().or(svc.cfg.admin_token.as_deref())
}

fn ttl_reply(t: TtlStatus, ms: bool) -> i64 {
    match t {
        TtlStatus::Missing => -2,
        TtlStatus::NoExpiry => -1,
        TtlStatus::Remaining { ms: left } if ms => left as i64,
        TtlStatus::Remaining { ms: left } => left.div_ceil(1000) as i64,
    }
}

fn split_addr(addr: &str) -> (String, String) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.to_string()),
        None => (addr.to_string(), String::new()),
    }
}

/// A Redis glob as the cache's wildcard pattern: Redis has no `{a,b}` alternatives, so braces
/// match themselves, and a class negates with `^` (the cache's glob writes `!`).
fn redis_glob(b: &Bytes) -> Result<String, RespError> {
    let text = std::str::from_utf8(b).map_err(|_| err("ERR the pattern is not valid UTF-8"))?;
    Ok(redis_glob_text(text))
}

fn redis_glob_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    let mut chars = text.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('!');
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '{' | '}' | ',' if !in_class => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `SET`'s options.
struct SetOptions {
    condition: Condition,
    get: bool,
    ttl: Ttl,
}

impl SetOptions {
    /// Redis's rules: `NX` and `XX` exclude each other, `KEEPTTL` and the expiry options
    /// exclude each other, and one expiry option may be repeated (the last one wins); the
    /// time is checked after every option parsed.
    fn parse(args: &[Bytes], cmd: &str) -> Result<SetOptions, RespError> {
        let (mut nx, mut xx, mut get, mut keep) = (false, false, false, false);
        let mut expiry: Option<(Vec<u8>, &Bytes)> = None;
        let mut i = 0;
        while i < args.len() {
            let opt = args[i].to_ascii_uppercase();
            let same_expiry =
                |e: &Option<(Vec<u8>, &Bytes)>| e.as_ref().is_none_or(|(o, _)| *o == opt);
            match &opt[..] {
                b"NX" if !xx => nx = true,
                b"XX" if !nx => xx = true,
                b"GET" => get = true,
                b"KEEPTTL" if expiry.is_none() => keep = true,
                b"EX" | b"PX" | b"EXAT" | b"PXAT"
                    if !keep && same_expiry(&expiry) && i + 1 < args.len() =>
                {
                    expiry = Some((opt.clone(), &args[i + 1]));
                    i += 1;
                }
                _ => return Err(err(SYNTAX)),
            }
            i += 1;
        }
        let condition = match (nx, xx) {
            (true, _) => Condition::Absent,
            (_, true) => Condition::Present,
            _ => Condition::Always,
        };
        let ttl = match expiry {
            None if keep => Ttl::Keep,
            None => Ttl::Never,
            Some((opt, n)) => {
                let n = parse_i64(n).ok_or_else(|| err(NOT_INTEGER))?;
                let invalid = || err(format!("ERR invalid expire time in '{cmd}' command"));
                if n <= 0 {
                    return Err(invalid());
                }
                let ms = match &opt[..] {
                    b"EX" | b"EXAT" => n.checked_mul(1000).ok_or_else(invalid)?,
                    _ => n,
                };
                if opt.ends_with(b"AT") {
                    Ttl::At(ms as u64)
                } else {
                    ms.checked_add(now_ms() as i64).ok_or_else(invalid)?;
                    Ttl::Ms(ms as u64)
                }
            }
        };
        Ok(SetOptions { condition, get, ttl })
    }
}

/// `GETEX`'s option.
enum GetExOption {
    Persist,
    /// Expire this many milliseconds from now (0: now).
    In(u64),
    /// Expire at this absolute time (milliseconds of cluster time).
    At(u64),
    /// The time is not a valid one: Redis says so only if the key exists (it looks the key up
    /// first, and answers nil for a missing one).
    Invalid(RespError),
}

impl GetExOption {
    fn parse(args: &[Bytes]) -> Result<Option<GetExOption>, RespError> {
        match args {
            [] => Ok(None),
            [p] if p.eq_ignore_ascii_case(b"PERSIST") => Ok(Some(GetExOption::Persist)),
            [opt, n] => {
                let opt = opt.to_ascii_uppercase();
                if !matches!(&opt[..], b"EX" | b"EXAT" | b"PX" | b"PXAT") {
                    return Err(err(SYNTAX));
                }
                let invalid =
                    || GetExOption::Invalid(err("ERR invalid expire time in 'getex' command"));
                let Some(n) = parse_i64(n) else {
                    return Ok(Some(GetExOption::Invalid(err(NOT_INTEGER))));
                };
                if n <= 0 {
                    return Ok(Some(invalid()));
                }
                let ms = match &opt[..] {
                    b"EX" | b"EXAT" => match n.checked_mul(1000) {
                        Some(ms) => ms,
                        None => return Ok(Some(invalid())),
                    },
                    _ => n,
                };
                if opt.ends_with(b"AT") {
                    Ok(Some(GetExOption::At(ms as u64)))
                } else if ms.checked_add(now_ms() as i64).is_none() {
                    Ok(Some(invalid()))
                } else {
                    Ok(Some(GetExOption::In(ms as u64)))
                }
            }
            _ => Err(err(SYNTAX)),
        }
    }
}

fn expire_when(args: &[Bytes]) -> Result<ExpireWhen, RespError> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for a in args {
        match &a.to_ascii_uppercase()[..] {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return Err(err(format!("ERR Unsupported option {}", String::from_utf8_lossy(a))));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(err("ERR NX and XX, GT or LT options at the same time are not compatible"));
    }
    if gt && lt {
        return Err(err("ERR GT and LT options at the same time are not compatible"));
    }
    Ok(match (nx, xx, gt, lt) {
        (true, ..) => ExpireWhen::NoDeadline,
        (_, _, true, _) => ExpireWhen::Later,
        (_, _, _, true) => ExpireWhen::Sooner,
        (_, true, ..) => ExpireWhen::HasDeadline,
        _ => ExpireWhen::Always,
    })
}

/// A command being run: its spec and when it started, for the metrics.
struct Started {
    spec: Option<&'static Spec>,
    name: &'static str,
    at: TokioInstant,
}

impl Started {
    fn new(args: &[Bytes]) -> Started {
        let spec = spec_of(&args[0]);
        Started { spec, name: spec.map_or("unknown", |s| s.name), at: TokioInstant::now() }
    }
    fn observe(&self, svc: &Service, status: u16) {
        svc.observe("resp", self.name, status, self.at);
    }
    /// Counts the command in the metrics and, if it failed, answers its error.
    fn answer(&self, svc: &Service, result: Result<(), RespError>, r: &mut Reply<'_>) {
        match result {
            Ok(()) => self.observe(svc, 200),
            Err(e) => {
                self.observe(svc, status_of(&e));
                r.error(&e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp_commands::COMMANDS;

    // Redis's GETRANGE edge cases.
    #[test]
    fn get_range_follows_redis() {
        let t = b"This is a string";
        assert_eq!(get_range(t, 0, 3), b"This");
        assert_eq!(get_range(t, -3, -1), b"ing");
        assert_eq!(get_range(t, 0, -1), t);
        assert_eq!(get_range(t, 10, 100), b"string");
        assert_eq!(get_range(t, 5, 3), b"");
        assert_eq!(get_range(t, -1, -5), b"");
        assert_eq!(get_range(t, -100, 2), b"Thi");
        assert_eq!(get_range(b"", 0, -1), b"");
    }

    // Redis globs become the cache's wildcard syntax: braces are literal, `[^` negates.
    #[test]
    fn redis_globs_translate() {
        assert_eq!(redis_glob_text("user:*"), "user:*");
        assert_eq!(redis_glob_text("a{b,c}"), "a\\{b\\,c\\}");
        assert_eq!(redis_glob_text("h[^e]llo"), "h[!e]llo");
        assert_eq!(redis_glob_text("a\\*b"), "a\\*b");
        let p = Pattern::compile(&redis_glob_text("a{1}*"), SearchMode::Wildcard).unwrap();
        assert!(p.matches("a{1}x"));
        assert!(!p.matches("a1x"));
        let p = Pattern::compile(&redis_glob_text("h[^e]llo"), SearchMode::Wildcard).unwrap();
        assert!(p.matches("hallo"));
        assert!(!p.matches("hello"));
    }

    // Every command in the table is found by name in any case; arity is checked.
    #[test]
    fn the_command_table_answers() {
        for s in COMMANDS {
            assert_eq!(spec_of(s.name.to_ascii_uppercase().as_bytes()).unwrap().name, s.name);
        }
        assert!(spec_of(b"nosuch").is_none());
        let get = spec_of(b"get").unwrap();
        assert!(check_arity(get, &[Bytes::from("get")]).is_err());
        assert_eq!(
            check_arity(get, &[Bytes::from("get"), Bytes::from("k"), Bytes::from("x")]),
            Err("ERR wrong number of arguments for 'get' command".to_string())
        );
    }

    // EXPIRE's options combine as Redis allows.
    #[test]
    fn expire_options() {
        let a =
            |s: &[&str]| s.iter().map(|x| Bytes::copy_from_slice(x.as_bytes())).collect::<Vec<_>>();
        assert_eq!(expire_when(&a(&[])).unwrap(), ExpireWhen::Always);
        assert_eq!(expire_when(&a(&["nx"])).unwrap(), ExpireWhen::NoDeadline);
        assert_eq!(expire_when(&a(&["XX"])).unwrap(), ExpireWhen::HasDeadline);
        assert_eq!(expire_when(&a(&["gt"])).unwrap(), ExpireWhen::Later);
        assert_eq!(expire_when(&a(&["xx", "lt"])).unwrap(), ExpireWhen::Sooner);
        assert!(expire_when(&a(&["nx", "gt"])).is_err());
        assert!(expire_when(&a(&["gt", "lt"])).is_err());
        assert!(expire_when(&a(&["zz"])).is_err());
    }

    // An MGET whose values pass REPLY_VALUE_BYTES_MAX is refused before anything is copied
    // into the reply; one within it is answered.
    #[test]
    fn mget_replies_are_bounded() {
        let mib = Bytes::from(vec![b'x'; 1 << 20]);
        let item = Some(Versioned { value: mib, expires_at: None, revisions: Default::default() });
        let n = REPLY_VALUE_BYTES_MAX / (1 << 20);
        let mut out = BytesMut::new();
        let e = ReadKind::Mget
            .write(&vec![item.clone(); n + 1], &mut Reply { out: &mut out, resp3: false })
            .unwrap_err();
        assert!(e.starts_with("ERR the values are"), "{e}");
        assert!(out.is_empty(), "nothing was rendered");
        ReadKind::Mget.write(&vec![item; n], &mut Reply { out: &mut out, resp3: false }).unwrap();
        assert!(out.len() > REPLY_VALUE_BYTES_MAX - 1);
    }

    #[test]
    fn integers_parse_as_redis_reads_them() {
        assert_eq!(parse_i64(b"10"), Some(10));
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b" 1"), None);
    }
}
