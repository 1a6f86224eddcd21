//! Deletes: one read (the object, and for a namespaced one its namespace's quotas, in
//! a read-only txn), then DeleteOptions and grace periods decide between marking and
//! removing; removal gives quota usage back in the same write.

#[allow(unused_imports)]
use super::*;

impl ApiServer {
    /// Moves a delete on; `Some` is the final answer.
    pub(super) fn advance_delete(
        &mut self,
        ctx: &mut Ctx<'_>,
        op_id: u64,
        op: &mut Op,
        result: StoreResponse,
    ) -> Option<ApiResponse> {
        let (resource, name, namespace, key) = op.target();
        let now = ctx.now();
        match (&op.stage, result) {
            (Stage::DeleteRead, read) => {
                // A namespaced object comes with its namespace's quotas (delete_read).
                let (r, quotas) = match read {
                    StoreResponse::Range(r) => (r, None),
                    StoreResponse::Txn(t) => {
                        let mut ranges = t.responses.into_iter().filter_map(|r| match r {
                            ResponseOp::Range(range) => Some(range),
                            _ => None,
                        });
                        match (ranges.next(), ranges.next()) {
                            (Some(r), Some(quotas)) => (r, Some(quotas.kvs)),
                            _ => {
                                let message = "the delete's read came back incomplete";
                                return Some(failure(500, "InternalError", message.into()));
                            }
                        }
                    }
                    other => return Some(unexpected(&other)),
                };
                let Some(kv) = r.kvs.first() else {
                    return Some(not_found(resource, &name));
                };
                let mut object = present(resource, &kv.value, kv.mod_revision);
                let options = match delete_options(&op.request.body) {
                    Ok(o) => o,
                    Err(response) => return Some(response),
                };
                if let Some(response) = check_preconditions(resource, &name, &options, &object) {
                    return Some(response);
                }
                // Pods are deleted gracefully: the kubelet stops the containers within
                // the grace period and then deletes with grace 0.
                let grace =
                    (resource.kind == "Pod").then(|| pod_grace_period(&object, options.grace));
                let has_finalizers = !finalizers(&object).is_empty();
                let marked = meta_str(&object, "deletionTimestamp").is_some();
                let mark = |object: &mut Value, at_nanos: u64, grace: i64| {
                    let meta = metadata_mut(object);
                    meta.insert("deletionTimestamp".into(), json!(rfc3339(at_nanos)));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                };
                let remove = match grace {
                    Some(grace) if marked => {
                        // Already being deleted: the grace period may only shorten.
                        let current = object["metadata"]["deletionGracePeriodSeconds"]
                            .as_i64()
                            .unwrap_or(0);
                        if grace >= current {
                            return Some(ApiResponse {
                                code: 200,
                                body: body(&object),
                            });
                        }
                        let started = meta_str(&object, "deletionTimestamp")
                            .and_then(parse_rfc3339)
                            .map(|at| at.saturating_sub(current as u64 * 1_000_000_000))
                            .unwrap_or(now.0);
                        mark(&mut object, started + grace as u64 * 1_000_000_000, grace);
                        grace == 0 && !has_finalizers
                    }
                    Some(grace) if grace > 0 => {
                        mark(&mut object, now.0 + grace as u64 * 1_000_000_000, grace);
                        false
                    }
                    _ if has_finalizers || resource.kind == "Namespace" => {
                        if marked {
                            return Some(ApiResponse {
                                code: 200,
                                body: body(&object),
                            });
                        }
                        mark(&mut object, now.0, 0);
                        if resource.kind == "Namespace" {
                            object["status"]["phase"] = json!("Terminating");
                        }
                        false
                    }
                    _ => true,
                };
                if !remove {
                    let request = txn_put_if(
                        &key,
                        CompareTarget::ModRevision(kv.mod_revision),
                        body(&strip(&object)),
                    );
                    op.stage = Stage::DeleteWrite { old: object };
                    self.next_step(ctx, now, op_id, request)
                } else if let Some(quotas) = quotas {
                    // Quotas the object counts toward get it back in the same write.
                    let credits = quota_credits(resource, &key, &object, &quotas);
                    let request = removal_txn(&key, &object, kv.mod_revision, &credits);
                    op.stage = Stage::DeleteWrite { old: object };
                    self.next_step(ctx, now, op_id, request)
                } else {
                    let request = removal_txn(&key, &object, kv.mod_revision, &[]);
                    op.stage = Stage::DeleteWrite { old: object };
                    self.next_step(ctx, now, op_id, request)
                }
            }
            (Stage::DeleteCheckQuota { old, mod_revision }, StoreResponse::Range(r)) => {
                let (old, mod_revision) = (old.clone(), *mod_revision);
                let credits = quota_credits(resource, &key, &old, &r.kvs);
                let request = removal_txn(&key, &old, mod_revision, &credits);
                op.stage = Stage::DeleteWrite { old };
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::DeleteWrite { old, .. }, StoreResponse::Txn(t)) => {
                if t.succeeded {
                    let mut object = old.clone();
                    metadata_mut(&mut object).insert(
                        "resourceVersion".into(),
                        json!(t.header_revision.to_string()),
                    );
                    return Some(ApiResponse {
                        code: 200,
                        body: body(&object),
                    });
                }
                op.attempts += 1;
                if op.attempts >= self.config.update_attempts_max {
                    return Some(conflict(resource, &name));
                }
                if op.request.verb == Verb::Update {
                    // An update that removed the last finalizer of an object being
                    // deleted: it is retried as the update it is (read again, apply
                    // its own rules), not as a delete — a delete of an object already
                    // marked would answer 200 and drop the update.
                    op.stage = Stage::UpdateRead;
                    let request = StoreRequest::Range(RangeRequest {
                        key,
                        ..Default::default()
                    });
                    return self.next_step(ctx, now, op_id, request);
                }
                op.stage = Stage::DeleteRead;
                let request = delete_read(resource, namespace.as_deref(), key);
                self.next_step(ctx, now, op_id, request)
            }
            (_, other) => Some(unexpected(&other)),
        }
    }
}

/// What a DELETE's body (`DeleteOptions`) asks for.
#[derive(Debug, Default)]
pub(super) struct DeleteOptions {
    pub(super) grace: Option<i64>,
    pub(super) uid: Option<String>,
    pub(super) resource_version: Option<String>,
}

pub(super) fn delete_options(body: &[u8]) -> Result<DeleteOptions, ApiResponse> {
    if body.is_empty() {
        return Ok(DeleteOptions::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        failure(
            400,
            "BadRequest",
            format!("the DeleteOptions could not be decoded: {e}"),
        )
    })?;
    let grace = match &value["gracePeriodSeconds"] {
        Value::Null => None,
        v => Some(v.as_i64().ok_or_else(|| {
            failure(
                400,
                "BadRequest",
                "gracePeriodSeconds must be an integer".to_string(),
            )
        })?),
    };
    let text = |v: &Value| v.as_str().map(str::to_string);
    Ok(DeleteOptions {
        grace,
        uid: text(&value["preconditions"]["uid"]),
        resource_version: text(&value["preconditions"]["resourceVersion"]),
    })
}

/// The grace period of a pod's deletion, as Kubernetes' pod strategy decides it: the
/// request's, else the pod's `terminationGracePeriodSeconds`; 0 for a pod never
/// scheduled or already finished; a negative request means 1.
pub(super) fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let mut period = requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(0);
    let scheduled = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        period = 0;
    }
    if period < 0 {
        period = 1;
    }
    period
}

/// Removes an object if unchanged since `mod_revision`, freeing its IP and port
/// allocations and writing the quotas it gave back (each guarded by its own revision).
pub(super) fn removal_txn(
    key: &[u8],
    object: &Value,
    mod_revision: i64,
    quotas: &[(Vec<u8>, i64, Value)],
) -> StoreRequest {
    let mut request = delete_if(key, mod_revision);
    if let StoreRequest::Txn(txn) = &mut request {
        for freed in allocation_keys(object) {
            txn.success.push(RequestOp::DeleteRange(DeleteRangeRequest {
                key: freed,
                range_end: Vec::new(),
                prev_kv: false,
            }));
        }
        for (quota_key, revision, credited) in quotas {
            txn.compare.push(unchanged_since(quota_key, *revision));
            txn.success.push(RequestOp::Put(PutRequest {
                key: quota_key.clone(),
                value: body(&strip(credited)),
                ..Default::default()
            }));
        }
    }
    request
}

pub(super) fn delete_if(key: &[u8], mod_revision: i64) -> StoreRequest {
    StoreRequest::Txn(TxnRequest {
        compare: vec![unchanged_since(key, mod_revision)],
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            range_end: Vec::new(),
            prev_kv: false,
        })],
        failure: Vec::new(),
    })
}

/// Reads a namespace's ResourceQuotas.
/// A delete's read: the object, and for a namespaced one its namespace's quotas too
/// (the removal credits them in the same write) — one read-only transaction.
pub(super) fn delete_read(
    resource: &Resource,
    namespace: Option<&str>,
    key: Vec<u8>,
) -> StoreRequest {
    let object = RangeRequest {
        key,
        ..Default::default()
    };
    let (true, Some(namespace)) = (resource.namespaced, namespace) else {
        return StoreRequest::Range(object);
    };
    let StoreRequest::Range(quotas) = quotas_read(namespace) else {
        return StoreRequest::Range(object);
    };
    StoreRequest::Txn(TxnRequest {
        compare: Vec::new(),
        success: vec![RequestOp::Range(object), RequestOp::Range(quotas)],
        failure: Vec::new(),
    })
}

/// What removing `old` gives back to each quota of its namespace (a quota being
/// deleted itself is not written back): (key, mod revision read, new value).
pub(super) fn quota_credits(
    resource: &Resource,
    key: &[u8],
    old: &Value,
    quotas: &[KeyValue],
) -> Vec<(Vec<u8>, i64, Value)> {
    let usage = admission::usage(resource.plural, resource.group, resource.kind, old);
    quotas
        .iter()
        .filter(|kv| kv.key != key)
        .filter_map(|kv| {
            let quota: Value = serde_json::from_slice(&kv.value).ok()?;
            let credited = admission::charge(&quota, &usage, old, -1).ok()??;
            Some((kv.key.clone(), kv.mod_revision, credited))
        })
        .collect()
}

pub(super) fn quotas_read(namespace: &str) -> StoreRequest {
    let prefix = Resource::find("", "resourcequotas")
        .map(|r| r.prefix(Some(namespace)))
        .unwrap_or_default()
        .into_bytes();
    StoreRequest::Range(RangeRequest {
        range_end: prefix_end(&prefix),
        key: prefix,
        ..Default::default()
    })
}
