//! What the server does by itself: compaction rounds and the system namespaces.

#[allow(unused_imports)]
use super::*;

impl ApiServer {
    /// Moves a compaction round or a system namespace's creation on; `Some` is the final answer.
    pub(super) fn advance_housekeeping(
        &mut self,
        ctx: &mut Ctx<'_>,
        op_id: u64,
        op: &mut Op,
        result: StoreResponse,
    ) -> Option<ApiResponse> {
        let now = ctx.now();
        match (&op.stage, result) {
            (Stage::CompactClaim, StoreResponse::Txn(t)) => {
                // As kube-apiserver does: whoever moves the key's version compacts to the
                // revision recorded a round ago; the others learn the version.
                let previous = self.compact_revision;
                self.compact_revision = t.header_revision;
                if !t.succeeded {
                    self.compact_version = t
                        .responses
                        .iter()
                        .find_map(|r| match r {
                            ResponseOp::Range(range) => range.kvs.first().map(|kv| kv.version),
                            _ => None,
                        })
                        .unwrap_or(self.compact_version);
                    return Some(ApiResponse {
                        code: 200,
                        body: Vec::new(),
                    });
                }
                self.compact_version += 1;
                if previous == 0 {
                    return Some(ApiResponse {
                        code: 200,
                        body: Vec::new(),
                    });
                }
                op.stage = Stage::Compact;
                let request = StoreRequest::Compact(crate::store::types::CompactRequest {
                    revision: previous,
                });
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::Compact, _) => Some(ApiResponse {
                code: 200,
                body: Vec::new(),
            }),
            (Stage::Bootstrap, _) => Some(ApiResponse {
                code: 200,
                body: Vec::new(),
            }),
            (_, other) => Some(unexpected(&other)),
        }
    }
}

impl ApiServer {
    /// Starts a compaction round when one is due (see `compaction_interval_ms`).
    pub(super) fn maybe_compact(&mut self, ctx: &mut Ctx<'_>) {
        let every = self.config.compaction_interval_ms;
        let now = ctx.now();
        if every == 0 || !self.bootstrap_pending.is_empty() {
            return;
        }
        // The first round waits a whole interval too: it only records a revision (as
        // kube-apiserver's bootstrap round does) but writes the compaction key, and a
        // write right at start-up would move the revision under clients that just
        // listed.
        let Some(at) = self.compact_round_at else {
            self.compact_round_at = Some(now);
            return;
        };
        let due = now.since(at) >= Duration::from_millis(every);
        let busy = self
            .ops
            .values()
            .any(|op| matches!(op.stage, Stage::CompactClaim | Stage::Compact));
        if !due || busy {
            return;
        }
        self.compact_round_at = Some(now);
        let key = COMPACT_KEY.as_bytes().to_vec();
        let request = StoreRequest::Txn(TxnRequest {
            compare: vec![Compare {
                key: key.clone(),
                range_end: Vec::new(),
                result: CompareResult::Equal,
                target: CompareTarget::Version(self.compact_version),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: key.clone(),
                value: self.compact_revision.to_string().into_bytes(),
                ..Default::default()
            })],
            failure: vec![RequestOp::Range(RangeRequest {
                key,
                ..Default::default()
            })],
        });
        let op_id = self.new_op(
            None,
            ApiRequest {
                verb: Verb::Update,
                group: String::new(),
                version: "v1".into(),
                resource: "compaction".into(),
                subresource: None,
                namespace: None,
                name: None,
                body: Vec::new(),
                options: ListOptions::default(),
            },
            &RESOURCES[0],
            Stage::CompactClaim,
            None,
        );
        if self.store(ctx, now, op_id, request).is_err() {
            self.ops.remove(&op_id);
        }
    }

    pub(super) fn bootstrap(&mut self, ctx: &mut Ctx<'_>) {
        // Every replica may do this: "create if absent" makes it idempotent.
        let now = ctx.now();
        let in_flight = self
            .ops
            .values()
            .any(|op| matches!(op.stage, Stage::Bootstrap));
        if in_flight {
            return;
        }
        let pending = self.bootstrap_pending.clone();
        for name in &pending {
            let object = json!({
                "kind": "Namespace", "apiVersion": "v1",
                "metadata": { "name": name, "uid": uid(ctx), "creationTimestamp": rfc3339(now.0) },
                "spec": { "finalizers": ["kubernetes"] },
                "status": { "phase": "Active" },
            });
            let key = RESOURCES[0].key(None, name).into_bytes();
            let op_id = self.new_op(
                None,
                ApiRequest {
                    verb: Verb::Create,
                    group: String::new(),
                    version: "v1".into(),
                    resource: "namespaces".into(),
                    subresource: None,
                    namespace: None,
                    name: Some(name.clone()),
                    body: Vec::new(),
                    options: ListOptions::default(),
                },
                &RESOURCES[0],
                Stage::Bootstrap,
                None,
            );
            if self
                .store(
                    ctx,
                    now,
                    op_id,
                    txn_put_if(&key, CompareTarget::Version(0), body(&object)),
                )
                .is_err()
            {
                self.ops.remove(&op_id);
            }
        }
    }
}
