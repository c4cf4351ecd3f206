//! The gRPC front end on `grpc_addr`: `simplecache.v1.CacheService` (see `proto/cache.proto`),
//! the seed's `pb.CacheService` (`proto/pb/`, see `grpc_seed`), `grpc.health.v1.Health` and
//! server reflection (v1 and v1alpha, so `grpcurl` works without the
//! .proto file).
//!
//! Each RPC only translates messages: the logic (validation, limits, forwarding writes to the
//! leader, linearizable or stale reads, waiting for a leader, the admin token) is the shared
//! `service`, and errors become gRPC statuses in one place (`From<ApiError> for
//! tonic::Status`). Requests are counted in the same metric families as HTTP, with
//! `api="grpc"`.
//!
//! Health: the overall service (`""`) and `simplecache.v1.CacheService` report SERVING exactly
//! when `/readyz` would answer 200 (a leader is known and everything known committed is
//! applied), and NOT_SERVING otherwise and from the moment shutdown starts.

use crate::error::ApiError;
use crate::node_loop::Status as NodeStatus;
use crate::pb;
use crate::pb::cache_service_server::{CacheService, CacheServiceServer};
use crate::service::{Caller, Consistency, Item, Service, WriteOptions};
use crate::value::StoredValue;
use simple_cache_core::cache::{
    Batch, Compare, ExpireWhen, KeyCompare, KeyOp, KeyWrite, Revisions, SearchMode, TtlStatus,
    Versioned,
};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The fully qualified service name, as health checks and reflection know it.
pub const SERVICE_NAME: &str = "simplecache.v1.CacheService";

/// Clients that have not sent anything for this long are pinged; one that does not answer the
/// ping within [`HTTP2_KEEPALIVE_TIMEOUT`] is disconnected, so dead connections do not pile up.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// The `CacheService` implementation: a thin translation over [`Service`].
pub struct CacheGrpc {
    svc: Service,
}

impl CacheGrpc {
    pub fn new(svc: Service) -> CacheGrpc {
        CacheGrpc { svc }
    }
}

/// Runs one RPC's logic and records it (`api="grpc"`, the HTTP status of the outcome).
pub(crate) async fn run<T>(
    svc: &Service,
    op: &'static str,
    f: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response<T>, Status> {
    let started = TokioInstant::now();
    let r = f.await;
    let status = match &r {
        Ok(_) => 200,
        Err(e) => e.status.as_u16(),
    };
    svc.observe("grpc", op, status, started);
    r.map(Response::new).map_err(Status::from)
}

/// A `SearchRequest.mode` (the same enum numbers in both packages).
pub(crate) fn search_mode(v: i32) -> Result<SearchMode, ApiError> {
    use pb::search_request::MatchMode;
    match MatchMode::try_from(v) {
        Ok(MatchMode::Wildcard) => Ok(SearchMode::Wildcard),
        Ok(MatchMode::Regex) => Ok(SearchMode::Regex),
        Err(_) => Err(ApiError::bad_request(
            "bad_mode",
            format!("mode must be WILDCARD (0) or REGEX (1), not {v}"),
        )),
    }
}

fn consistency(v: i32) -> Result<Consistency, ApiError> {
    match pb::Consistency::try_from(v) {
        Ok(pb::Consistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(pb::Consistency::Stale) => Ok(Consistency::Stale),
        Err(_) => Err(ApiError::bad_request(
            "bad_consistency",
            format!("consistency must be LINEARIZABLE (0) or STALE (1), not {v}"),
        )),
    }
}

pub(crate) fn caller<T>(req: &Request<T>) -> Caller {
    Caller {
        authorization: req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        forwarded: false,
    }
}

/// The value of a `SetRequest`, in the form it will be stored in.
fn stored_value(data: Option<pb::set_request::Data>) -> Result<StoredValue, ApiError> {
    use pb::set_request::Data;
    match data {
        None => Err(ApiError::bad_request(
            "missing_value",
            "set one of `value` (Any), `raw_value` or `json_value`",
        )),
        Some(Data::Value(any)) => Ok(StoredValue::Any(any)),
        Some(Data::RawValue(b)) => Ok(StoredValue::Raw(b.into())),
        Some(Data::JsonValue(text)) => {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                ApiError::bad_request("bad_json", format!("`json_value` is not valid JSON: {e}"))
            })?;
            Ok(StoredValue::json(&v))
        }
    }
}

fn expire_when(when: i32) -> Result<ExpireWhen, ApiError> {
    use pb::expire_request::When;
    Ok(match When::try_from(when) {
        Ok(When::Always) => ExpireWhen::Always,
        Ok(When::Nx) => ExpireWhen::NoDeadline,
        Ok(When::Xx) => ExpireWhen::HasDeadline,
        Ok(When::Gt) => ExpireWhen::Later,
        Ok(When::Lt) => ExpireWhen::Sooner,
        Err(_) => {
            return Err(ApiError::bad_request(
                "bad_when",
                format!("`when` {when} is not one of ALWAYS, NX, XX, GT, LT"),
            ));
        }
    })
}

fn batch_compare(c: pb::Compare) -> Result<KeyCompare, ApiError> {
    use pb::compare::Target;
    let compare = match c.target {
        Some(Target::ModRevision(r)) => Compare::Revision(r),
        Some(Target::Absent(true)) => Compare::Absent,
        Some(Target::Present(true)) => Compare::Present,
        Some(Target::JsonValue(j)) => {
            let v: serde_json::Value = serde_json::from_str(&j).map_err(|e| {
                ApiError::bad_request("bad_json", format!("`json_value` is not JSON: {e}"))
            })?;
            Compare::Value(StoredValue::json(&v).encode())
        }
        Some(Target::RawValue(b)) => Compare::Value(StoredValue::Raw(b.into()).encode()),
        Some(Target::Absent(false) | Target::Present(false)) | None => {
            return Err(ApiError::bad_request(
                "bad_compare",
                format!("the compare of `{}` has no target", c.key),
            ));
        }
    };
    Ok(KeyCompare { key: c.key, compare })
}

fn batch_op(svc: &Service, o: pb::BatchOp) -> Result<KeyWrite, ApiError> {
    use pb::batch_op::Op;
    let write = |key: String, op| Ok(simple_cache_core::cache::Command::key_write(key, op));
    match o.op {
        Some(Op::Set(r)) => {
            if r.if_absent || r.if_present || r.if_revision.is_some() || r.return_previous {
                return Err(ApiError::bad_request(
                    "bad_options",
                    "the operations of a batch take no conditions: use its compares",
                ));
            }
            let value = stored_value(r.data)?;
            svc.check_value(&value)?;
            let ttl = Service::set_ttl(Service::ttl_ms_from_expire(&r.expire)?, r.keep_ttl)?;
            write(r.key, KeyOp::Set { value: value.encode(), ttl })
        }
        Some(Op::Del(r)) => {
            if r.if_revision.is_some() || r.return_previous {
                return Err(ApiError::bad_request(
                    "bad_options",
                    "the operations of a batch take no conditions: use its compares",
                ));
            }
            write(r.key, KeyOp::Del)
        }
        Some(Op::Incr(r)) => write(r.key, KeyOp::Incr { delta: r.delta }),
        Some(Op::Append(r)) => write(r.key, KeyOp::Append { bytes: r.data.into() }),
        Some(Op::Persist(r)) => write(r.key, KeyOp::Persist),
        Some(Op::Expire(r)) => {
            let when = expire_when(r.when)?;
            write(r.key, KeyOp::Expire { ttl_ms: Service::expire_ms(&r.expire)?, when })
        }
        None => Err(ApiError::bad_request("bad_op", "a batch operation has no `op`")),
    }
}

fn revisions(r: Revisions) -> pb::Revisions {
    pb::Revisions { create_revision: r.create, mod_revision: r.modified, version: r.version }
}

/// A `return_previous` value, in the form it was stored in.
fn previous(v: Option<Versioned>) -> Result<Option<pb::PreviousValue>, ApiError> {
    use pb::previous_value::Data;
    let Some(v) = v else { return Ok(None) };
    let item = Item::of(v)?;
    let data = match get_data(item.value)? {
        pb::get_response::Data::Value(a) => Data::Value(a),
        pb::get_response::Data::RawValue(b) => Data::RawValue(b),
        pb::get_response::Data::JsonValue(j) => Data::JsonValue(j),
    };
    Ok(Some(pb::PreviousValue { data: Some(data), revisions: Some(revisions(item.revisions)) }))
}

/// A found value, in the form it was stored in.
fn get_data(v: StoredValue) -> Result<pb::get_response::Data, ApiError> {
    use pb::get_response::Data;
    Ok(match v {
        StoredValue::Json(text) => Data::JsonValue(
            String::from_utf8(text.to_vec())
                .map_err(|_| ApiError::internal("a stored JSON value is not UTF-8"))?,
        ),
        StoredValue::Raw(b) => Data::RawValue(b.to_vec()),
        StoredValue::Any(a) => Data::Value(a),
    })
}

/// A change event as gRPC sends it.
fn watch_event(e: simple_cache_core::watch::Event) -> pb::WatchEvent {
    use pb::watch_event::{Data, Type};
    use simple_cache_core::watch::EventKind;
    let mut out = pb::WatchEvent { key: e.key, revision: e.revision, ..Default::default() };
    match e.kind {
        EventKind::Put { value, revisions: r, expires_at } => {
            out.r#type = Type::Put as i32;
            out.data =
                StoredValue::decode(value).ok().and_then(|v| get_data(v).ok()).map(|d| match d {
                    pb::get_response::Data::Value(a) => Data::Value(a),
                    pb::get_response::Data::RawValue(b) => Data::RawValue(b),
                    pb::get_response::Data::JsonValue(j) => Data::JsonValue(j),
                });
            out.revisions = Some(revisions(r));
            out.expires_at_ms = expires_at.map_or(0, |t| t.as_millis());
        }
        EventKind::Delete { cause } => {
            out.r#type = Type::Delete as i32;
            out.cause = cause.name().to_string();
        }
        EventKind::Reset => out.r#type = Type::Reset as i32,
    }
    out
}

type WatchStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CacheService for CacheGrpc {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use pb::watch_request::Target;
        use simple_cache_core::watch::Filter;
        use tokio_stream::StreamExt as _;
        let r = req.into_inner();
        run(&self.svc, "watch", async {
            let filter = match r.target {
                Some(Target::Key(k)) => Filter::Key(k),
                Some(Target::Prefix(p)) => Filter::Prefix(p),
                None => {
                    return Err(ApiError::bad_request("bad_watch", "give a `key` or a `prefix`"));
                }
            };
            let opened = self.svc.watch(filter, r.start_revision).await?;
            let created = pb::WatchResponse {
                created: true,
                start_revision: opened.start_revision,
                ..Default::default()
            };
            let messages =
                tokio_stream::wrappers::ReceiverStream::new(opened.rx).map(|m| match m {
                    crate::watch::WatchMsg::Event(e, _charge) => {
                        pb::WatchResponse { event: Some(watch_event(e)), ..Default::default() }
                    }
                    crate::watch::WatchMsg::Cancelled { reason, resume_from } => {
                        pb::WatchResponse {
                            cancelled: true,
                            cancel_reason: reason,
                            resume_from,
                            ..Default::default()
                        }
                    }
                });
            let stream = tokio_stream::once(created).chain(messages).map(Ok);
            Ok(Box::pin(stream) as WatchStream)
        })
        .await
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = req.into_inner();
        run(&self.svc, "get", async {
            let c = consistency(r.consistency)?;
            Ok(match self.svc.get_item(&r.key, c).await? {
                Some(item) => pb::GetResponse {
                    data: Some(get_data(item.value)?),
                    found: true,
                    revisions: Some(revisions(item.revisions)),
                },
                None => pb::GetResponse::default(),
            })
        })
        .await
    }

    async fn set(&self, req: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "set", async {
            self.svc.check_key(&r.key)?;
            let value = stored_value(r.data)?;
            let ttl_ms = Service::ttl_ms_from_expire(&r.expire)?;
            let opts = WriteOptions {
                if_absent: r.if_absent,
                if_present: r.if_present,
                if_revision: r.if_revision,
                return_previous: r.return_previous,
                keep_ttl: r.keep_ttl,
            };
            if !opts.any() {
                let revision = self.svc.set(&caller, r.key, &value, ttl_ms).await?;
                return Ok(pb::SetResponse {
                    success: true,
                    applied: true,
                    revision,
                    ..Default::default()
                });
            }
            let o = self.svc.set_with(&caller, r.key, &value, ttl_ms, &opts).await?;
            Ok(pb::SetResponse {
                success: true,
                applied: o.applied,
                revision: o.revision,
                current: o.current.map(revisions),
                previous: previous(o.previous)?,
            })
        })
        .await
    }

    async fn del(&self, req: Request<pb::DelRequest>) -> Result<Response<pb::DelResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "delete", async {
            let opts = WriteOptions {
                if_revision: r.if_revision,
                return_previous: r.return_previous,
                ..WriteOptions::default()
            };
            if !opts.any() {
                let (existed, revision) = self.svc.del(&caller, r.key).await?;
                return Ok(pb::DelResponse {
                    success: true,
                    existed,
                    applied: true,
                    revision,
                    previous: None,
                });
            }
            let o = self.svc.del_with(&caller, r.key, &opts).await?;
            Ok(pb::DelResponse {
                success: true,
                existed: o.existed,
                applied: o.applied,
                revision: o.revision,
                previous: previous(o.previous)?,
            })
        })
        .await
    }

    async fn incr(
        &self,
        req: Request<pb::IncrRequest>,
    ) -> Result<Response<pb::IncrResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "incr", async {
            let o = self.svc.incr(&caller, r.key, r.delta).await?;
            Ok(pb::IncrResponse {
                value: o.number.unwrap_or_default(),
                revision: o.revision,
                current: o.current.map(revisions),
            })
        })
        .await
    }

    async fn append(
        &self,
        req: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "append", async {
            let o = self.svc.append(&caller, r.key, r.data.into()).await?;
            Ok(pb::AppendResponse {
                length: o.number.unwrap_or_default().max(0) as u64,
                revision: o.revision,
                current: o.current.map(revisions),
            })
        })
        .await
    }

    async fn persist(
        &self,
        req: Request<pb::PersistRequest>,
    ) -> Result<Response<pb::PersistResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "persist", async {
            let o = self.svc.persist(&caller, r.key).await?;
            Ok(pb::PersistResponse { applied: o.applied, revision: o.revision })
        })
        .await
    }

    async fn expire(
        &self,
        req: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "expire", async {
            let when = expire_when(r.when)?;
            let ttl_ms = Service::expire_ms(&r.expire)?;
            let o = self.svc.expire_in(&caller, r.key, ttl_ms, when).await?;
            Ok(pb::ExpireResponse { applied: o.applied, revision: o.revision })
        })
        .await
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "batch", async {
            let batch = Batch {
                compares: r.compare.into_iter().map(batch_compare).collect::<Result<_, _>>()?,
                then: r
                    .then
                    .into_iter()
                    .map(|o| batch_op(&self.svc, o))
                    .collect::<Result<_, _>>()?,
                otherwise: r
                    .r#else
                    .into_iter()
                    .map(|o| batch_op(&self.svc, o))
                    .collect::<Result<_, _>>()?,
            };
            let o = self.svc.batch(&caller, batch).await?;
            let results = o
                .results
                .into_iter()
                .map(|k| {
                    Ok(pb::BatchOpResult {
                        applied: k.applied,
                        existed: k.existed,
                        current: k.current.map(revisions),
                        previous: previous(k.previous)?,
                        number: k.number.unwrap_or_default(),
                    })
                })
                .collect::<Result<_, ApiError>>()?;
            Ok(pb::BatchResponse { succeeded: o.succeeded, revision: o.revision, results })
        })
        .await
    }

    async fn reset(
        &self,
        req: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let caller = caller(&req);
        run(&self.svc, "reset", async {
            let keys_cleared = self.svc.reset(&caller).await?;
            Ok(pb::ResetResponse { success: true, keys_cleared })
        })
        .await
    }

    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let r = req.into_inner();
        run(&self.svc, "search", async {
            let mode = search_mode(r.mode)?;
            let limit = (r.limit != 0).then_some(r.limit as usize);
            let c = consistency(r.consistency)?;
            let found = self.svc.search(&r.pattern, mode, limit, c).await?;
            Ok(pb::SearchResponse { keys: found.keys, truncated: found.truncated })
        })
        .await
    }

    async fn expire_key(
        &self,
        req: Request<pb::ExpireKeyRequest>,
    ) -> Result<Response<pb::ExpireKeyResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "expire", async {
            let existed = self.svc.expire(&caller, r.key).await?;
            Ok(pb::ExpireKeyResponse { success: true, existed })
        })
        .await
    }

    async fn ttl(&self, req: Request<pb::TtlRequest>) -> Result<Response<pb::TtlResponse>, Status> {
        let r = req.into_inner();
        run(&self.svc, "ttl", async {
            let c = consistency(r.consistency)?;
            Ok(match self.svc.ttl(&r.key, c).await? {
                TtlStatus::Missing => pb::TtlResponse::default(),
                TtlStatus::NoExpiry => pb::TtlResponse { found: true, no_expiry: true, ttl_ms: 0 },
                TtlStatus::Remaining { ms } => {
                    pb::TtlResponse { found: true, no_expiry: false, ttl_ms: ms }
                }
            })
        })
        .await
    }
}

/// Keeps the health service in step with the node: SERVING while ready, NOT_SERVING otherwise
/// and once `stop` turns true.
async fn report_health(
    reporter: HealthReporter,
    mut status: watch::Receiver<NodeStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        let serving = !*stop.borrow_and_update() && status.borrow_and_update().is_ready();
        if last != Some(serving) {
            let s = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
            reporter.set_service_status("", s).await;
            reporter.set_service_status(SERVICE_NAME, s).await;
            reporter.set_service_status(crate::grpc_seed::SERVICE_NAME, s).await;
            last = Some(serving);
        }
        tokio::select! {
            r = status.changed() => if r.is_err() { break },
            r = stop.changed() => if r.is_err() { break },
        }
    }
    reporter.set_service_status("", ServingStatus::NotServing).await;
    reporter.set_service_status(SERVICE_NAME, ServingStatus::NotServing).await;
    reporter.set_service_status(crate::grpc_seed::SERVICE_NAME, ServingStatus::NotServing).await;
}

/// Serves gRPC on `listener` until `stop` turns true, then stops accepting and lets in-flight
/// calls finish. Bounded like the HTTP listener: a per-call timeout (the request timeout plus a
/// margin, or the client's `grpc-timeout` if shorter), at most `max_concurrent_requests` calls
/// at once across all connections, messages up to `max_body_bytes`.
pub async fn serve(listener: TcpListener, svc: Service, stop: watch::Receiver<bool>) {
    let cfg = svc.cfg.clone();
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(reporter, svc.status.clone(), stop.clone()));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().expect("the descriptor sets are valid");
    let reflection_v1alpha = reflection().build_v1alpha().expect("the descriptor sets are valid");
    let encoding_max = cfg.max_body_bytes.max(cfg.max_value_bytes + 1024);
    let seed = crate::pb::seed::cache_service_server::CacheServiceServer::new(
        crate::grpc_seed::SeedGrpc::new(svc.clone()),
    )
    .max_decoding_message_size(cfg.max_body_bytes)
    .max_encoding_message_size(encoding_max);
    let svc_tls = svc.tls.clone();
    let cache = CacheServiceServer::new(CacheGrpc::new(svc))
        .max_decoding_message_size(cfg.max_body_bytes)
        .max_encoding_message_size(encoding_max);
    let tls = svc_tls.client_acceptor(&[b"h2"]);
    let mut stop = stop;
    let router = tonic::transport::Server::builder()
        .timeout(Duration::from_millis(cfg.request_timeout_ms) + Duration::from_secs(1))
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(cfg.max_concurrent_requests))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(cache)
        .add_service(seed);
    let stopped = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let result = match tls {
        None => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
        Some(acceptor) => {
            let (tx, rx) = tokio::sync::mpsc::channel(TLS_ACCEPTED_QUEUE);
            let handshakes = crate::tls::Handshakes::default();
            tokio::spawn(async move {
                loop {
                    let tcp = tokio::select! {
                        r = listener.accept() => match r {
                            Ok((tcp, _)) => tcp,
                            Err(e) => {
                                crate::http_serve::accept_failed(e).await;
                                continue;
                            }
                        },
                        // The guard `wait_for` returns is not Send: drop it inside the future.
                        _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                    };
                    let _ = tcp.set_nodelay(true);
                    let Some(permit) = handshakes.start() else { continue };
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    // The handshake runs in its own task, so a slow client cannot hold up the
                    // accept loop.
                    tokio::spawn(async move {
                        // A gRPC client speaking plain HTTP/2 cannot read an answer in plain
                        // text: it is closed, and its own error says the connection ended.
                        let upgraded = crate::tls::upgrade(tcp, Some(&acceptor), &[]).await;
                        drop(permit);
                        if let Some(crate::tls::ServerStream::Tls(s)) = upgraded {
                            let _ = tx.send(Ok::<_, std::io::Error>(TlsConn(*s))).await;
                        }
                    });
                }
            });
            let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "the gRPC server failed");
    }
}

/// Handshaken TLS connections waiting for the gRPC server to take them.
const TLS_ACCEPTED_QUEUE: usize = 64;

/// A TLS connection as tonic takes it.
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    // Each front-end error maps to the gRPC code the issue asks for, with the code in the text.
    #[test]
    fn api_errors_map_to_grpc_codes() {
        let cases = [
            (ApiError::bad_request("bad_duration", "x"), tonic::Code::InvalidArgument),
            (
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", "x"),
                tonic::Code::InvalidArgument,
            ),
            (
                ApiError::new(StatusCode::URI_TOO_LONG, "key_too_large", "x"),
                tonic::Code::InvalidArgument,
            ),
            (
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "x"),
                tonic::Code::Unauthenticated,
            ),
            (ApiError::new(StatusCode::NOT_FOUND, "not_member", "x"), tonic::Code::NotFound),
            (ApiError::unavailable("no_leader", "x"), tonic::Code::Unavailable),
            (ApiError::stopping(), tonic::Code::Unavailable),
            (ApiError::unavailable("timeout", "x"), tonic::Code::DeadlineExceeded),
            (ApiError::unavailable("leader_address_unknown", "x"), tonic::Code::FailedPrecondition),
            (
                ApiError::new(StatusCode::CONFLICT, "change_pending", "x"),
                tonic::Code::FailedPrecondition,
            ),
            (
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_pending", "x"),
                tonic::Code::ResourceExhausted,
            ),
            (
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "out_of_memory", "x"),
                tonic::Code::ResourceExhausted,
            ),
            (ApiError::internal("x"), tonic::Code::Internal),
        ];
        for (e, code) in cases {
            let s = Status::from(e.clone());
            assert_eq!(s.code(), code, "{e:?}");
            assert_eq!(s.message(), format!("{}: {}", e.code, e.message));
        }
    }

    // A SetRequest's oneof picks the stored form; JSON is validated and normalized.
    #[test]
    fn set_values_pick_the_stored_form() {
        use pb::set_request::Data;
        assert_eq!(stored_value(None).unwrap_err().code, "missing_value");
        assert_eq!(
            stored_value(Some(Data::JsonValue("{ \"a\" : [1] }".into()))).unwrap(),
            StoredValue::Json(bytes::Bytes::from_static(br#"{"a":[1]}"#))
        );
        assert_eq!(stored_value(Some(Data::JsonValue("{".into()))).unwrap_err().code, "bad_json");
        assert_eq!(
            stored_value(Some(Data::RawValue(vec![0, 1]))).unwrap(),
            StoredValue::Raw(bytes::Bytes::from_static(&[0, 1]))
        );
        assert_eq!(consistency(7).unwrap_err().code, "bad_consistency");
    }
}
