//! Updates: read, then a write "if unchanged since" (a stale resourceVersion is a
//! Conflict); preconditions shared with deletes.

#[allow(unused_imports)]
use super::*;

impl ApiServer {
    /// Moves an update on; `Some` is the final answer.
    pub(super) fn advance_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        op_id: u64,
        op: &mut Op,
        result: StoreResponse,
    ) -> Option<ApiResponse> {
        let (resource, name, namespace, key) = op.target();
        let now = ctx.now();
        match (&op.stage, result) {
            (Stage::UpdateRead, StoreResponse::Range(r)) => {
                let Some(kv) = r.kvs.first() else {
                    return Some(not_found(resource, &name));
                };
                match self.prepare_update(resource, &op.request, kv) {
                    Err(response) => Some(response),
                    Ok(mut next) => {
                        if resource.kind == "ResourceQuota" && op.request.subresource.is_none() {
                            admission::refresh_quota_hard(&mut next);
                        }
                        let expected = kv.mod_revision;
                        // An object being deleted whose last finalizer went goes — unless
                        // it is a pod still in its grace period (the kubelet deletes it).
                        let deleting = meta_str(&next, "deletionTimestamp").is_some()
                            && finalizers(&next).is_empty()
                            && next["metadata"]["deletionGracePeriodSeconds"]
                                .as_i64()
                                .unwrap_or(0)
                                == 0;
                        if deleting && resource.namespaced {
                            // The last finalizer of an object being deleted is gone: delete
                            // it, giving its quota usage back in the same write.
                            op.stage = Stage::DeleteCheckQuota {
                                old: next,
                                mod_revision: expected,
                            };
                            let request = quotas_read(namespace.as_deref().unwrap_or(""));
                            return self.next_step(ctx, now, op_id, request);
                        }
                        let request = if deleting {
                            // The last finalizer of an object being deleted is gone: delete it.
                            delete_if(&key, expected)
                        } else {
                            txn_put_if(
                                &key,
                                CompareTarget::ModRevision(expected),
                                body(&strip(&next)),
                            )
                        };
                        op.stage = Stage::UpdateWrite { replace_with: next };
                        self.next_step(ctx, now, op_id, request)
                    }
                }
            }
            (Stage::UpdateWrite { replace_with, .. }, StoreResponse::Txn(t)) => {
                if t.succeeded {
                    let mut object = replace_with.clone();
                    metadata_mut(&mut object).insert(
                        "resourceVersion".into(),
                        json!(t.header_revision.to_string()),
                    );
                    if op.request.subresource.as_deref() == Some("scale") {
                        object = scale_of(&object);
                    }
                    return Some(ApiResponse {
                        code: 200,
                        body: body(&object),
                    });
                }
                let client_version = body_resource_version(&op.request.body);
                op.attempts += 1;
                if client_version.is_some() || op.attempts >= self.config.update_attempts_max {
                    return Some(conflict(resource, &name));
                }
                // An unconditional update lost a race: read again and retry.
                op.stage = Stage::UpdateRead;
                let request = StoreRequest::Range(RangeRequest {
                    key,
                    ..Default::default()
                });
                self.next_step(ctx, now, op_id, request)
            }
            (_, other) => Some(unexpected(&other)),
        }
    }
}

impl ApiServer {
    pub(super) fn prepare_update(
        &self,
        resource: &Resource,
        request: &ApiRequest,
        current: &KeyValue,
    ) -> Result<Value, ApiResponse> {
        let name = request.name.clone().unwrap_or_default();
        let mut incoming: Value = serde_json::from_slice(&request.body).map_err(|e| {
            failure(
                400,
                "BadRequest",
                format!("the request body is not valid JSON: {e}"),
            )
        })?;
        if !incoming.is_object() {
            return Err(failure(
                400,
                "BadRequest",
                "the request body must be a JSON object".into(),
            ));
        }
        if let Some(version) = body_resource_version(&request.body) {
            if version != current.mod_revision {
                return Err(conflict(resource, &name));
            }
        }
        if let Some(body_name) = meta_str(&incoming, "name") {
            if body_name != name {
                return Err(failure(400, "BadRequest", format!("the name of the object ({body_name}) does not match the name on the URL ({name})")));
            }
        }
        let old = present(resource, &current.value, current.mod_revision);
        let subresource = request.subresource.as_deref();
        let mut next = match subresource {
            // /status changes only the status.
            Some("status") => {
                let mut next = old.clone();
                next["status"] = incoming.get("status").cloned().unwrap_or(Value::Null);
                next
            }
            // /scale (autoscaling/v1 Scale) changes only spec.replicas.
            Some("scale") => {
                if !resource.scale {
                    return Err(failure(
                        404,
                        "NotFound",
                        format!("{} has no scale subresource", resource.plural),
                    ));
                }
                let Some(replicas) = incoming["spec"]["replicas"].as_i64() else {
                    let causes = vec![validation::Cause::required("spec.replicas", "")];
                    return Err(invalid(resource, &name, &causes));
                };
                let mut next = old.clone();
                next["spec"]["replicas"] = json!(replicas);
                next
            }
            _ => {
                if let Some(map) = incoming.as_object_mut() {
                    map.insert("kind".into(), json!(resource.kind));
                    map.insert("apiVersion".into(), json!(resource.api_version()));
                }
                // The main resource never changes status (when it has a subresource).
                if resource.status {
                    if let Some(status) = old.get("status") {
                        incoming["status"] = status.clone();
                    } else if let Some(map) = incoming.as_object_mut() {
                        map.remove("status");
                    }
                }
                defaults::apply_defaults(resource.kind, &mut incoming);
                incoming
            }
        };
        // Identity is the store's, not the client's.
        {
            let old_meta = crate::apiserver::object::metadata(&old)
                .cloned()
                .unwrap_or_default();
            let meta = metadata_mut(&mut next);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
            ] {
                match old_meta.get(field) {
                    Some(v) => {
                        meta.insert(field.into(), v.clone());
                    }
                    None => {
                        meta.remove(field);
                    }
                }
            }
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta.insert("generation".into(), json!(generation));
            meta.remove("resourceVersion");
        }
        if subresource != Some("status") && spec_part(&next) != spec_part(&old) {
            let generation = crate::apiserver::object::metadata(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata_mut(&mut next).insert("generation".into(), json!(generation + 1));
        }
        let mut causes = validation::validate(resource.kind, &next, request.namespace.as_deref());
        causes.extend(validation::validate_update(resource.kind, &old, &next));
        if !causes.is_empty() {
            return Err(invalid(resource, &name, &causes));
        }
        Ok(next)
    }
}

pub(super) fn txn_put_if(key: &[u8], target: CompareTarget, value: Vec<u8>) -> StoreRequest {
    StoreRequest::Txn(TxnRequest {
        compare: vec![Compare {
            key: key.to_vec(),
            range_end: Vec::new(),
            result: CompareResult::Equal,
            target,
        }],
        success: vec![RequestOp::Put(PutRequest {
            key: key.to_vec(),
            value,
            ..Default::default()
        })],
        failure: Vec::new(),
    })
}

pub(super) fn body_resource_version(request_body: &[u8]) -> Option<i64> {
    let object: Value = serde_json::from_slice(request_body).ok()?;
    meta_str(&object, "resourceVersion")
        .filter(|v| !v.is_empty())?
        .parse()
        .ok()
}

/// `DeleteOptions.preconditions` against the stored object: a mismatch is a Conflict.
pub(super) fn check_preconditions(
    resource: &Resource,
    name: &str,
    options: &DeleteOptions,
    object: &Value,
) -> Option<ApiResponse> {
    let conflict_with = |what: &str, wanted: &str, actual: &str| {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}",
            qualified(resource.plural, resource.group)
        );
        Some(ApiResponse {
            code: 409,
            body: status(
                409,
                "Conflict",
                &message,
                json!({ "name": name, "group": resource.group, "kind": resource.plural }),
            ),
        })
    };
    if let Some(uid) = &options.uid {
        let actual = meta_str(object, "uid").unwrap_or("");
        if uid != actual {
            return conflict_with("UID", uid, actual);
        }
    }
    if let Some(version) = &options.resource_version {
        let actual = meta_str(object, "resourceVersion").unwrap_or("");
        if version != actual {
            return conflict_with("ResourceVersion", version, actual);
        }
    }
    None
}
