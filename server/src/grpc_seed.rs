//! The seed's gRPC service, `pb.CacheService` (`proto/pb/*.proto`), served beside
//! `simplecache.v1.CacheService` on the same port and over the same service layer, so a client
//! generated from the Go simple-cache's .proto files works unchanged.
//!
//! Where the seed's messages say less than ours:
//! - `GetResponse.value` is a `google.protobuf.Any`. A value stored as an `Any` comes back as
//!   it was written; one written as JSON (over HTTP, or `json_value`) comes back packed as a
//!   `google.protobuf.Value`, and raw bytes (`raw_value`) as a `google.protobuf.BytesValue`,
//!   the well-known types for those shapes.
//! - Reads are linearizable (the seed has no consistency field).
//! - `SearchRequest` has no limit: a search answers up to the server's default limit
//!   ([`SEARCH_LIMIT_DEFAULT`]) keys, as our API does when no limit is given.
//! - `ResetResponse.keys_cleared` is an `int32`: a count above `i32::MAX` is reported as
//!   `i32::MAX`.
//!
//! Requests are counted under the same `op` names as the other front ends.

use crate::error::ApiError;
use crate::grpc::{caller, run};
use crate::pb::seed as pb;
use crate::pb::seed::cache_service_server::CacheService;
use crate::service::{Consistency, SEARCH_LIMIT_DEFAULT, Service};
use crate::value::StoredValue;
use prost::Message;
use tonic::{Request, Response, Status};

/// The fully qualified name of the seed's service.
pub const SERVICE_NAME: &str = "pb.CacheService";

const VALUE_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Value";
const BYTES_VALUE_TYPE_URL: &str = "type.googleapis.com/google.protobuf.BytesValue";

/// `pb.CacheService`: a thin translation over [`Service`].
pub struct SeedGrpc {
    svc: Service,
}

impl SeedGrpc {
    pub fn new(svc: Service) -> SeedGrpc {
        SeedGrpc { svc }
    }
}

/// A stored value as the seed's `Any` (see the module documentation).
pub fn as_any(v: StoredValue) -> Result<prost_types::Any, ApiError> {
    Ok(match v {
        StoredValue::Any(a) => a,
        StoredValue::Raw(b) => prost_types::Any {
            type_url: BYTES_VALUE_TYPE_URL.into(),
            value: b.to_vec().encode_to_vec(),
        },
        StoredValue::Json(text) => {
            let json: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| ApiError::internal(format!("stored value is not JSON: {e}")))?;
            prost_types::Any {
                type_url: VALUE_TYPE_URL.into(),
                value: json_to_value(json).encode_to_vec(),
            }
        }
    })
}

/// JSON as a `google.protobuf.Value` (numbers become doubles, as the type defines).
fn json_to_value(j: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match j {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[tonic::async_trait]
impl CacheService for SeedGrpc {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = req.into_inner();
        run(&self.svc, "get", async {
            Ok(match self.svc.get(&r.key, Consistency::Linearizable).await? {
                Some(v) => pb::GetResponse { value: Some(as_any(v)?), found: true },
                None => pb::GetResponse { value: None, found: false },
            })
        })
        .await
    }

    async fn set(&self, req: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "set", async {
            self.svc.check_key(&r.key)?;
            let value = r.value.map(StoredValue::Any).ok_or_else(|| {
                ApiError::bad_request(
                    "missing_value",
                    "`value` (a google.protobuf.Any) is required",
                )
            })?;
            let ttl_ms = Service::ttl_ms_from_expire(&r.expire)?;
            self.svc.set(&caller, r.key, &value, ttl_ms).await?;
            Ok(pb::SetResponse { success: true })
        })
        .await
    }

    async fn del(&self, req: Request<pb::DelRequest>) -> Result<Response<pb::DelResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        run(&self.svc, "delete", async {
            let (existed, _) = self.svc.del(&caller, r.key).await?;
            Ok(pb::DelResponse { success: true, existed })
        })
        .await
    }

    async fn reset(
        &self,
        req: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let caller = caller(&req);
        run(&self.svc, "reset", async {
            let cleared = self.svc.reset(&caller).await?;
            let keys_cleared = i32::try_from(cleared).unwrap_or(i32::MAX);
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
            let mode = crate::grpc::search_mode(r.mode)?;
            let found = self
                .svc
                .search(&r.pattern, mode, Some(SEARCH_LIMIT_DEFAULT), Consistency::Linearizable)
                .await?;
            Ok(pb::SearchResponse { keys: found.keys })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    // JSON and raw values come back packed in the well-known types a seed client can unpack.
    #[test]
    fn stored_values_pack_into_well_known_types() {
        let any = as_any(StoredValue::json(&serde_json::json!({"a": [1, "x", null]}))).unwrap();
        assert_eq!(any.type_url, VALUE_TYPE_URL);
        let v = prost_types::Value::decode(any.value.as_slice()).unwrap();
        use prost_types::value::Kind;
        let Some(Kind::StructValue(s)) = v.kind else { panic!("a struct: {v:?}") };
        let Some(Kind::ListValue(l)) = &s.fields["a"].kind else { panic!("a list") };
        assert_eq!(l.values[0].kind, Some(Kind::NumberValue(1.0)));
        assert_eq!(l.values[1].kind, Some(Kind::StringValue("x".into())));
        assert_eq!(l.values[2].kind, Some(Kind::NullValue(0)));
        let any = as_any(StoredValue::Raw(bytes::Bytes::from_static(b"\x00\x01"))).unwrap();
        assert_eq!(any.type_url, BYTES_VALUE_TYPE_URL);
        assert_eq!(Vec::<u8>::decode(any.value.as_slice()).unwrap(), vec![0, 1]);
        let a = prost_types::Any { type_url: "t/x".into(), value: vec![9] };
        assert_eq!(as_any(StoredValue::Any(a.clone())).unwrap(), a, "an Any as it was written");
    }
}
