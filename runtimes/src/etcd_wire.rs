//! A small etcd v3 gRPC client (KV Put and Range), for `keel bench store --compare-etcd`.
//!
//! Why not the `etcd-client` crate: its build script runs `protoc` (through
//! `tonic-build`), so depending on it made a bare `cargo build` fail on a machine with
//! only the Rust toolchain. Here the few etcd v3 messages the benchmark needs are
//! declared directly with `prost`'s derive macros (protobuf encoding without generated
//! code, so no `protoc`), and the calls go through `tonic`'s generic unary client over
//! HTTP/2 — the same wire bytes `etcd-client` would send.
//!
//! The messages follow etcd's `etcdserverpb` and `mvccpb` packages (field names and tag
//! numbers from etcd's API reference); unused fields are left out, which protobuf allows
//! (unknown fields in a response are skipped). The etcd v3 API issue extends this
//! vocabulary for keel's own gRPC server.

use std::time::Duration;

use tonic::codec::ProstCodec;
use tonic::transport::{Channel, Endpoint};

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
    #[prost(bool, tag = "4")]
    pub prev_kv: bool,
}

/// `etcdserverpb.PutResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    pub prev_kv: Option<KeyValue>,
}

/// `etcdserverpb.RangeRequest` (the fields a plain get or prefix read uses).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    #[prost(int64, tag = "4")]
    pub revision: i64,
    /// false: a linearizable read (etcd's default), true: served by the member alone.
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    pub more: bool,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

/// An etcd v3 KV client over one HTTP/2 channel balanced across the given endpoints.
/// Cloning is cheap and shares the channel, as with `etcd-client`.
#[derive(Clone)]
pub struct EtcdKvClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl EtcdKvClient {
    /// Connects lazily to `endpoints` (`http://host:port`); the first call dials.
    pub fn connect(endpoints: &[String]) -> Result<Self, String> {
        let mut list = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let parsed = Endpoint::from_shared(endpoint.clone())
                .map_err(|e| format!("bad etcd endpoint {endpoint:?}: {e}"))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10));
            list.push(parsed);
        }
        if list.is_empty() {
            return Err("no etcd endpoints".into());
        }
        Ok(Self {
            grpc: tonic::client::Grpc::new(Channel::balance_list(list.into_iter())),
        })
    }

    async fn unary<Req, Resp>(&mut self, path: &'static str, request: Req) -> Result<Resp, String>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| format!("etcd not reachable: {e}"))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
        let codec: ProstCodec<Req, Resp> = ProstCodec::default();
        self.grpc
            .unary(tonic::Request::new(request), path, codec)
            .await
            .map(|response| response.into_inner())
            .map_err(|status| format!("etcd: {}: {}", status.code(), status.message()))
    }

    /// `KV.Put`.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<PutResponse, String> {
        let request = PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        };
        self.unary("/etcdserverpb.KV/Put", request).await
    }

    /// `KV.Range` of one key, linearizable.
    pub async fn get(&mut self, key: &[u8]) -> Result<RangeResponse, String> {
        let request = RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        self.unary("/etcdserverpb.KV/Range", request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The hand-declared messages encode to the bytes protobuf defines for their tags.
    #[test]
    fn messages_encode_with_etcd_tags() {
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        // field 1 (bytes, wire type 2) = "k"; field 2 (bytes) = "v".
        assert_eq!(put.encode_to_vec(), vec![0x0a, 1, b'k', 0x12, 1, b'v']);
        let range = RangeRequest {
            key: b"a".to_vec(),
            serializable: true,
            ..Default::default()
        };
        // field 1 = "a"; field 7 (varint, wire type 0) = 1.
        assert_eq!(range.encode_to_vec(), vec![0x0a, 1, b'a', 0x38, 1]);
        // A response with a header (revision 9) and one kv decodes, unknown fields skipped.
        let mut bytes = vec![0x0a, 2, 0x18, 9]; // header { revision: 9 }
        bytes.extend([0x12, 6, 0x0a, 1, b'a', 0x2a, 1, b'b']); // kvs { key a, value b }
        bytes.extend([0x78, 1]); // field 15 (unknown to us) = 1
        let decoded = RangeResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded.header.map(|h| h.revision), Some(9));
        assert_eq!(decoded.kvs[0].value, b"b");
    }
}
