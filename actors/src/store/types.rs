//! The store's request/response vocabulary: etcd v3's KV, Txn and Compact RPCs in keel
//! names, the errors a client can see, and the size limits every write is checked
//! against.
//!
//! Owns: the shapes only. The semantics live in [`super::mvcc`]; routing, raft and
//! leases' clocks live in the store actor.
//!
//! Every type here travels in bus messages encoded with bincode, so none uses serde
//! features bincode cannot honour (untagged enums, skipped fields, dynamic values).

use serde::{Deserialize, Serialize};
use std::ops::Bound;
use thiserror::Error;

/// One key's state at some revision, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// The revision of the put that created this incarnation of the key.
    pub create_revision: i64,
    /// The revision of the last write to the key.
    pub mod_revision: i64,
    /// 1 on create, +1 per put; a deleted key has version 0.
    pub version: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Put,
    Delete,
}

/// One change to one key. For a delete, `kv` holds only the key and the deleting
/// revision (`mod_revision`), with an empty value and zero version, create revision and
/// lease, as etcd reports it. `prev_kv` is the key's state just before the change, or
/// `None` if it did not exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// Reads the keys selected by `key`/`range_end` (see [`KeyRange::new`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// At most this many keys; 0 means no limit. Negative is refused.
    pub limit: i64,
    /// Read the store as it was at this revision; 0 means the current revision.
    pub revision: i64,
    /// Return only `count`, no key-values.
    pub count_only: bool,
    /// Return key-values with empty values.
    pub keys_only: bool,
    /// A follower may answer from its own applied state (the actor's concern; the
    /// state machine reads the same way either way).
    pub serializable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The store's revision when the read was served (not the revision read at).
    pub header_revision: i64,
    /// Matching keys in key order, at most `limit` of them.
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the result short.
    pub more: bool,
    /// How many keys matched before `limit` was applied.
    pub count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Attach the key to this lease (0 for none); a key already attached to another
    /// lease moves.
    pub lease: i64,
    /// Return the key's previous state in the response.
    pub prev_kv: bool,
    /// Keep the key's current value (the key must exist and `value` must be empty).
    pub ignore_value: bool,
    /// Keep the key's current lease (the key must exist and `lease` must be 0).
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    pub header_revision: i64,
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// Return the deleted keys' last states.
    pub prev_kv: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    pub header_revision: i64,
    pub deleted: i64,
    /// Filled only when the request asked for `prev_kv`, in key order.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a [`Compare`] looks at, and the value it compares with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    /// Byte-wise (lexicographic) comparison of the value.
    Value(Vec<u8>),
    Lease(i64),
}

/// How the key's field must relate to the target: `Greater` means the key's field is
/// greater than the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// One guard of a transaction. A missing key compares as version, create revision,
/// mod revision and lease 0, and any `Value` compare on a missing key is false. With a
/// `range_end`, every existing key in the range must satisfy the compare (and an empty
/// range compares as one missing key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub result: CompareResult,
    pub target: CompareTarget,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

/// If every compare holds, run `success`, else `failure`; either way as one atomic
/// write at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// Whether both branches only read (ranges, no nested txns). etcd serves such a txn
    /// as it serves a range — a linearizable read confirmed by ReadIndex, no log entry,
    /// no fsync — and so does keel's store.
    pub fn is_read_only(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .all(|op| matches!(op, RequestOp::Range(_)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub header_revision: i64,
    pub succeeded: bool,
    /// One response per executed op, in order.
    pub responses: Vec<ResponseOp>,
}

/// Forget history older than `revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactRequest {
    pub revision: i64,
}

/// Everything a store request can fail with. The messages tell the client what
/// happened and, where it can, what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error(
        "revision {requested} has been compacted (oldest is {compacted}): re-read at a newer revision"
    )]
    Compacted { requested: i64, compacted: i64 },
    #[error("required revision {requested} is a future revision (current revision is {current})")]
    FutureRevision { requested: i64, current: i64 },
    #[error("key too large ({size} bytes, limit {limit})")]
    KeyTooLarge { size: usize, limit: usize },
    #[error("value too large ({size} bytes, limit {limit})")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("request too large ({size} bytes, limit {})", format_bytes(*.limit))]
    RequestTooLarge { size: usize, limit: usize },
    #[error("key is not provided: keys must be at least one byte")]
    EmptyKey,
    #[error("key not found: {} (ignore_value and ignore_lease need an existing key)", String::from_utf8_lossy(.key))]
    KeyNotFound { key: Vec<u8> },
    #[error("requested lease {0} not found")]
    LeaseNotFound(i64),
    #[error("lease {0} already exists")]
    LeaseExists(i64),
    #[error("too many operations in txn request ({count}, limit {limit} per branch)")]
    TooManyOps { count: usize, limit: usize },
    #[error("txn requests nested too deeply (limit {limit} levels)")]
    TxnTooDeep { limit: usize },
    #[error("duplicate key given in txn request: {}", String::from_utf8_lossy(.key))]
    DuplicateKeyInTxn { key: Vec<u8> },
    #[error("no quorum: {reachable} of {members} members reachable (need {needed})")]
    NoQuorum {
        reachable: usize,
        members: usize,
        needed: usize,
    },
    #[error("not the leader{}", match .leader { Some(id) => format!(" (leader is member {id})"), None => " (no leader elected yet: retry shortly)".to_string() })]
    NotLeader { leader: Option<u64> },
    #[error("request timed out")]
    Timeout,
    #[error("outcome unknown: {0}")]
    Ambiguous(String),
    #[error("too many requests in flight (limit {limit}): retry later")]
    TooManyRequests { limit: usize },
    #[error("store stopped: {0}")]
    Stopped(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// "1.5 MiB", "8 KiB", "100 bytes": limits read better in binary units.
fn format_bytes(bytes: usize) -> String {
    const KIB: u128 = 1024;
    const MIB: u128 = 1024 * 1024;
    let exact = bytes as u128;
    // Whole tenths of a MiB print as MiB, whole KiB as KiB, anything else in bytes.
    let tenths_of_mib = exact * 10 / MIB;
    if exact >= MIB && tenths_of_mib * MIB == exact * 10 {
        let (whole, tenth) = (tenths_of_mib / 10, tenths_of_mib % 10);
        if tenth == 0 {
            format!("{whole} MiB")
        } else {
            format!("{whole}.{tenth} MiB")
        }
    } else if exact >= KIB && exact / KIB * KIB == exact {
        format!("{} KiB", exact / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Size limits every write is checked against. Defaults are etcd's where etcd has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// etcd has no separate key limit (only the request limit); keel refuses keys
    /// longer than this, which is far beyond any Kubernetes key.
    pub max_key_bytes: usize,
    /// etcd has no separate value limit either; by default this equals the request
    /// limit, so the request limit is the one a large object meets.
    pub max_value_bytes: usize,
    /// The bincode-encoded request, as etcd's `--max-request-bytes` (1.5 MiB).
    pub max_request_bytes: usize,
    /// Per txn level: compares, success ops and failure ops each (etcd's
    /// `--max-txn-ops`, 128).
    pub max_txn_ops: usize,
    /// How deeply txns may nest inside txns (etcd bounds this only by request size;
    /// keel bounds it so checking a request never recurses without limit).
    pub max_txn_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 8192,
            max_value_bytes: 1_572_864,
            max_request_bytes: 1_572_864,
            max_txn_ops: 128,
            max_txn_depth: 16,
        }
    }
}

impl Limits {
    /// Every limit must be at least 1, and no part of a request may be allowed to be
    /// larger than a whole request.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("max_key_bytes", self.max_key_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("max_request_bytes", self.max_request_bytes),
            ("max_txn_ops", self.max_txn_ops),
            ("max_txn_depth", self.max_txn_depth),
        ] {
            if value == 0 {
                return Err(format!("limits.{name} must be at least 1"));
            }
        }
        if self.max_key_bytes > self.max_request_bytes {
            return Err(format!(
                "limits.max_key_bytes ({}) must not exceed limits.max_request_bytes ({})",
                self.max_key_bytes, self.max_request_bytes
            ));
        }
        if self.max_value_bytes > self.max_request_bytes {
            return Err(format!(
                "limits.max_value_bytes ({}) must not exceed limits.max_request_bytes ({})",
                self.max_value_bytes, self.max_request_bytes
            ));
        }
        // Deeper nesting than this would let a single request recurse far enough in
        // serde and in the checks to threaten the stack.
        if self.max_txn_depth > 64 {
            return Err(format!(
                "limits.max_txn_depth must be at most 64, got {}",
                self.max_txn_depth
            ));
        }
        Ok(())
    }
}

/// The end of the range holding every key that starts with `prefix` (etcd's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff incremented and the
/// 0xff bytes after it dropped. A prefix of only 0xff bytes (or an empty one) has no
/// such end, so the answer is `[0]`, which means "every key from `prefix` on".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&byte| byte < 0xff) {
        Some(last) => {
            let mut end = prefix[..=last].to_vec();
            end[last] += 1;
            end
        }
        None => vec![0],
    }
}

/// The set of keys a `key`/`range_end` pair selects, with etcd's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRange {
    /// Exactly this key (`range_end` empty).
    Single(Vec<u8>),
    /// Every key `>= start` (`range_end` is `[0]`; with `key` also `[0]` that is every
    /// key, since no key sorts below `[0]` except the empty key, which is never stored).
    From(Vec<u8>),
    /// `[start, end)`; empty when `end <= start`.
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.to_vec())
        } else if range_end == [0] {
            KeyRange::From(key.to_vec())
        } else {
            KeyRange::Between(key.to_vec(), range_end.to_vec())
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(only) => key == only.as_slice(),
            KeyRange::From(start) => key >= start.as_slice(),
            KeyRange::Between(start, end) => key >= start.as_slice() && key < end.as_slice(),
        }
    }

    /// Whether no key at all is selected.
    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Between(start, end) if end <= start)
    }

    /// Bounds for `BTreeMap::range`. Callers check [`KeyRange::is_empty`] first:
    /// `BTreeMap::range` panics on a start above the end.
    pub fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        match self {
            KeyRange::Single(only) => (Bound::Included(only), Bound::Included(only)),
            KeyRange::From(start) => (Bound::Included(start), Bound::Unbounded),
            KeyRange::Between(start, end) => (Bound::Included(start), Bound::Excluded(end)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_etcd() {
        // prefix_end increments the last byte below 0xff and handles all-0xff prefixes.
        assert_eq!(prefix_end(b"abc"), b"abd".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), vec![b'b']);
        assert_eq!(prefix_end(&[0x01, 0xff, 0xff]), vec![0x02]);
        assert_eq!(prefix_end(&[0xff, 0xff]), vec![0]);
        assert_eq!(prefix_end(&[]), vec![0]);
    }

    #[test]
    fn key_range_follows_etcd_rules() {
        // Empty range_end selects one key, [0] selects everything from key on.
        assert!(KeyRange::new(b"a", b"").contains(b"a"));
        assert!(!KeyRange::new(b"a", b"").contains(b"ab"));
        assert!(KeyRange::new(b"a", &[0]).contains(b"zzz"));
        assert!(!KeyRange::new(b"b", &[0]).contains(b"a"));
        assert!(KeyRange::new(&[0], &[0]).contains(&[0]));
        assert!(KeyRange::new(&[0], &[0]).contains(b"a"));
        assert!(KeyRange::new(b"a", b"c").contains(b"b"));
        assert!(!KeyRange::new(b"a", b"c").contains(b"c"));
        assert!(KeyRange::new(b"c", b"a").is_empty());
        assert!(!KeyRange::new(b"a", b"c").is_empty());
    }

    #[test]
    fn error_messages_carry_the_numbers() {
        // Messages include both numbers and readable byte units.
        let compacted = StoreError::Compacted {
            requested: 3,
            compacted: 7,
        };
        assert!(compacted
            .to_string()
            .contains("revision 3 has been compacted"));
        assert!(compacted.to_string().contains("(oldest is 7)"));
        let too_large = StoreError::RequestTooLarge {
            size: 2_000_000,
            limit: 1_572_864,
        };
        assert_eq!(
            too_large.to_string(),
            "request too large (2000000 bytes, limit 1.5 MiB)"
        );
        assert_eq!(format_bytes(8192), "8 KiB");
        assert_eq!(format_bytes(100), "100 bytes");
        assert_eq!(
            StoreError::NoQuorum {
                reachable: 1,
                members: 3,
                needed: 2
            }
            .to_string(),
            "no quorum: 1 of 3 members reachable (need 2)"
        );
    }

    #[test]
    fn default_limits_are_valid() {
        // The defaults pass their own validation; a zero limit does not.
        assert_eq!(Limits::default().validate(), Ok(()));
        let zero = Limits {
            max_txn_ops: 0,
            ..Limits::default()
        };
        assert!(zero.validate().is_err());
    }
}
