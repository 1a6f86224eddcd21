//! Creates: preparation (defaults, validation), admission from one read-only txn,
//! then the write "create if absent" with allocations and quota charges.

#[allow(unused_imports)]
use super::*;

impl ApiServer {
    /// Moves a create on; `Some` is the final answer.
    pub(super) fn advance_create(
        &mut self,
        ctx: &mut Ctx<'_>,
        op_id: u64,
        op: &mut Op,
        result: StoreResponse,
    ) -> Option<ApiResponse> {
        let resource = op.resource;
        let now = ctx.now();
        match (&op.stage, result) {
            (Stage::CreateAdmit { reads }, StoreResponse::Txn(t)) => {
                let reads = reads.clone();
                if let Err(refused) = Self::admit(op, &reads, &t.responses) {
                    return Some(refused);
                }
                op.stage = Stage::CreateWrite;
                let request = self.create_txn(ctx, op);
                self.next_step(ctx, now, op_id, request)
            }
            (Stage::CreateWrite, StoreResponse::Txn(t)) => {
                let object = op.prepared.clone().unwrap_or_default();
                let name = meta_str(&object, "name").unwrap_or("").to_string();
                if t.succeeded {
                    let mut object = object;
                    metadata_mut(&mut object).insert(
                        "resourceVersion".into(),
                        json!(t.header_revision.to_string()),
                    );
                    return Some(ApiResponse {
                        code: 201,
                        body: body(&object),
                    });
                }
                // The failure branch reads the object's key first (then the namespace
                // and the quotas, which exist): only that first read says "exists".
                let exists = matches!(t.responses.first(),
                    Some(ResponseOp::Range(range)) if range.count > 0);
                if exists {
                    let message = format!(
                        "{} \"{name}\" already exists",
                        qualified(resource.plural, resource.group)
                    );
                    return Some(ApiResponse {
                        code: 409,
                        body: status(
                            409,
                            "AlreadyExists",
                            &message,
                            json!({ "name": name, "group": resource.group, "kind": resource.plural }),
                        ),
                    });
                }
                // A quota it charged or its namespace changed meanwhile (another
                // create or delete in the namespace, the namespace being deleted):
                // admit it again from what is there now.
                let unchanged = |key: &[u8], revision: i64| {
                    t.responses.iter().any(|r| {
                        matches!(r, ResponseOp::Range(range)
                            if range.kvs.first().is_some_and(|kv| kv.key == key && kv.mod_revision == revision))
                    })
                };
                let namespace_key = op
                    .request
                    .namespace
                    .as_deref()
                    .map(|ns| RESOURCES[0].key(None, ns).into_bytes());
                let namespace_changed = match (&namespace_key, op.namespace_revision) {
                    (Some(key), Some(revision)) => !unchanged(key, revision),
                    _ => false,
                };
                let quota_changed = op
                    .quota_writes
                    .iter()
                    .any(|(key, revision, _)| !unchanged(key, *revision));
                if namespace_changed || quota_changed {
                    op.attempts += 1;
                    if op.attempts >= self.config.update_attempts_max {
                        return Some(conflict(resource, &name));
                    }
                    op.prepared = op.unadmitted.clone();
                    op.quota_writes.clear();
                    op.namespace_revision = None;
                    let (reads, request) = admission_read(op);
                    op.stage = Stage::CreateAdmit { reads };
                    return self.next_step(ctx, now, op_id, request);
                }
                // The object is new but an IP or port it wanted was taken meanwhile.
                if requested_allocations(&op.request) {
                    let shown = clusterip_of(&op.request.body).unwrap_or_default();
                    let causes = vec![validation::Cause::invalid(
                        "spec.clusterIP",
                        &validation::go_quote(&shown),
                        "provided IP or port is already allocated",
                    )];
                    return Some(invalid(resource, &name, &causes));
                }
                op.attempts += 1;
                if op.attempts >= self.config.allocation_attempts_max {
                    return Some(failure(
                        500,
                        "InternalError",
                        "no free cluster IP or node port found; the ranges may be full".into(),
                    ));
                }
                let request = self.create_txn(ctx, op);
                self.next_step(ctx, now, op_id, request)
            }
            (_, other) => Some(unexpected(&other)),
        }
    }
}

impl ApiServer {
    /// Builds the object to create: defaults, identity, validation. `Err` is the answer.
    pub(super) fn prepare_create(
        &mut self,
        ctx: &mut Ctx<'_>,
        resource: &Resource,
        request: &ApiRequest,
    ) -> Result<Value, ApiResponse> {
        let mut object: Value = serde_json::from_slice(&request.body).map_err(|e| {
            failure(
                400,
                "BadRequest",
                format!("the request body is not valid JSON: {e}"),
            )
        })?;
        if !object.is_object() {
            return Err(failure(
                400,
                "BadRequest",
                "the request body must be a JSON object".into(),
            ));
        }
        if let Some(kind) = object.get("kind").and_then(Value::as_str) {
            if kind != resource.kind {
                return Err(failure(
                    400,
                    "BadRequest",
                    format!(
                        "the object kind {kind} does not match the resource {}",
                        resource.plural
                    ),
                ));
            }
        }
        let now = ctx.now();
        let uid = uid(ctx);
        let suffix: String = (0..5)
            .map(|_| {
                const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                ALPHABET[ctx.rng().gen_range(0..ALPHABET.len())] as char
            })
            .collect();
        {
            let meta = metadata_mut(&mut object);
            let has_name = meta
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !has_name {
                if let Some(generate) = meta
                    .get("generateName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                {
                    meta.insert("name".into(), json!(format!("{generate}{suffix}")));
                }
            }
            if resource.namespaced {
                let requested = request.namespace.clone().unwrap_or_default();
                match meta.get("namespace").and_then(Value::as_str) {
                    Some(ns) if ns != requested => {
                        return Err(failure(
                            400,
                            "BadRequest",
                            "the namespace of the provided object does not match the namespace sent on the request".into(),
                        ));
                    }
                    _ => {
                        meta.insert("namespace".into(), json!(requested));
                    }
                }
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), json!(uid));
            meta.insert("creationTimestamp".into(), json!(rfc3339(now.0)));
            meta.insert("generation".into(), json!(1));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
        }
        if let Some(map) = object.as_object_mut() {
            map.insert("kind".into(), json!(resource.kind));
            map.insert("apiVersion".into(), json!(resource.api_version()));
        }
        defaults::apply_defaults(resource.kind, &mut object);
        if resource.kind == "Job" {
            defaults::default_job_selector(&mut object, &uid);
        }
        if resource.kind == "Pod"
            && object["spec"].get("serviceAccountName").is_none()
            && object["spec"].is_object()
        {
            // Service account admission: the namespace's default account.
            object["spec"]["serviceAccountName"] = json!("default");
        }
        if resource.kind == "Pod"
            && object["spec"].is_object()
            && object["spec"].get("priorityClassName").is_none()
        {
            // Priority admission without a class (and no global default class): 0.
            object["spec"]["priority"] = json!(0);
        }
        if resource.kind == "ResourceQuota" {
            admission::initial_quota_status(&mut object);
        }
        if resource.kind == "Namespace" {
            // Create-only: the namespace controller removes it while deleting.
            defaults::default_namespace_finalizers(&mut object);
            object["status"] = json!({ "phase": "Active" });
        }
        let causes = validation::validate(resource.kind, &object, request.namespace.as_deref());
        if !causes.is_empty() {
            let name = meta_str(&object, "name").unwrap_or("").to_string();
            return Err(invalid(resource, &name, &causes));
        }
        Ok(object)
    }

    /// Sends a create's next request: its admission read when namespaced (from the
    /// object as it was before admission), else its write.
    pub(super) fn create_step(&mut self, ctx: &mut Ctx<'_>, op_id: u64) {
        let now = ctx.now();
        let Some(mut op) = self.ops.remove(&op_id) else {
            return;
        };
        let request = if op.resource.namespaced {
            op.prepared = op.unadmitted.clone();
            op.quota_writes.clear();
            op.namespace_revision = None;
            let (reads, request) = admission_read(&op);
            op.stage = Stage::CreateAdmit { reads };
            request
        } else {
            op.stage = Stage::CreateWrite;
            self.create_txn(ctx, &mut op)
        };
        self.ops.insert(op_id, op);
        if let Err(e) = self.store(ctx, now, op_id, request) {
            let op = self.ops.remove(&op_id);
            self.reply(ctx, op.and_then(|o| o.client), store_failure(&e));
        }
    }

    /// Admission of a namespaced create from its one read: the namespace exists and is
    /// not terminating, LimitRanges and the PriorityClass apply to a Pod, a new quota
    /// counts what exists, and every quota can be charged. `Err` is the answer refusing
    /// the create.
    pub(super) fn admit(
        op: &mut Op,
        reads: &AdmitReads,
        responses: &[ResponseOp],
    ) -> Result<(), ApiResponse> {
        let range = |index: usize| match responses.get(index) {
            Some(ResponseOp::Range(range)) => Ok(range),
            _ => Err(failure(
                500,
                "InternalError",
                "the admission read came back incomplete".into(),
            )),
        };
        let resource = op.resource;
        let ns = op.request.namespace.clone().unwrap_or_default();
        let Some(kv) = range(0)?.kvs.first() else {
            return Err(not_found(&RESOURCES[0], &ns));
        };
        let namespace_object: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        if meta_str(&namespace_object, "deletionTimestamp").is_some() {
            return Err(failure(
                403,
                "Forbidden",
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        op.namespace_revision = Some(kv.mod_revision);
        let Some(object) = op.prepared.as_mut() else {
            return Err(failure(500, "InternalError", "no object".into()));
        };
        if let Some(index) = reads.limits {
            // LimitRange admission reads the namespace's ranges live (a range created
            // just before the pod must apply to it).
            let ranges: Vec<Value> = range(index)?
                .kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                .collect();
            let refs: Vec<&Value> = ranges.iter().collect();
            if let Err(errors) = admission::apply_limit_ranges(object, &refs) {
                let pod = meta_str(object, "name").unwrap_or("").to_string();
                let reason = if errors.len() == 1 {
                    errors[0].clone()
                } else {
                    format!("[{}]", errors.join(", "))
                };
                return Err(failure(
                    403,
                    "Forbidden",
                    format!("pods \"{pod}\" is forbidden: {reason}"),
                ));
            }
        }
        if let Some(index) = reads.priority {
            let class = object["spec"]["priorityClassName"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let Some(kv) = range(index)?.kvs.first() else {
                let pod = meta_str(object, "name").unwrap_or("").to_string();
                return Err(failure(
                    403,
                    "Forbidden",
                    format!(
                        "pods \"{pod}\" is forbidden: no PriorityClass with name {class} was found"
                    ),
                ));
            };
            let priority_class: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let value = priority_class["value"].as_i64().unwrap_or(0);
            object["spec"]["priority"] = json!(value);
            if let Some(policy) = priority_class.get("preemptionPolicy") {
                object["spec"]["preemptionPolicy"] = policy.clone();
            }
        }
        if !reads.counted.is_empty() {
            let mut existing = Vec::new();
            for (index, counted) in &reads.counted {
                for kv in &range(*index)?.kvs {
                    let object: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                    existing.push((
                        counted.plural.to_string(),
                        counted.group.to_string(),
                        counted.kind.to_string(),
                        object,
                    ));
                }
            }
            admission::count_existing(object, &existing);
        }
        let object = object.clone();
        let usage = admission::usage(resource.plural, resource.group, resource.kind, &object);
        op.quota_writes.clear();
        let own_key = resource
            .key(
                op.request.namespace.as_deref(),
                meta_str(&object, "name").unwrap_or(""),
            )
            .into_bytes();
        // A quota whose name is taken is not charged for itself: the create fails as
        // AlreadyExists (charging it would put its key twice in one transaction).
        for kv in range(reads.quotas)?
            .kvs
            .iter()
            .filter(|kv| kv.key != own_key)
        {
            let quota: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            match admission::charge(&quota, &usage, &object, 1) {
                Err(message) => {
                    let name = meta_str(&object, "name").unwrap_or("");
                    return Err(failure(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: {message}",
                            qualified(resource.plural, resource.group)
                        ),
                    ));
                }
                Ok(Some(charged)) => {
                    op.quota_writes
                        .push((kv.key.clone(), kv.mod_revision, charged))
                }
                Ok(None) => {}
            }
        }
        Ok(())
    }
}

impl ApiServer {
    /// The create transaction: "if absent, write" — for a Service also "if its cluster
    /// IP and node ports are free, take them", choosing free-looking ones at random
    /// from the seeded RNG. The failure branch reads the key so a failed create can
    /// tell "already exists" from "an allocation was taken".
    pub(super) fn create_txn(&mut self, ctx: &mut Ctx<'_>, op: &mut Op) -> StoreRequest {
        let mut object = op.prepared.clone().unwrap_or_default();
        if op.resource.kind == "Service" {
            self.allocate(ctx, &op.request, &mut object);
            op.prepared = Some(object.clone());
        }
        let name = meta_str(&object, "name").unwrap_or("").to_string();
        let key = op
            .resource
            .key(op.request.namespace.as_deref(), &name)
            .into_bytes();
        let absent = |key: Vec<u8>| Compare {
            key,
            range_end: Vec::new(),
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
        };
        let mut compare = vec![absent(key.clone())];
        let mut success = vec![RequestOp::Put(PutRequest {
            key: key.clone(),
            value: body(&strip(&object)),
            ..Default::default()
        })];
        let owner = format!(
            "{}/{name}",
            op.request.namespace.clone().unwrap_or_default()
        )
        .into_bytes();
        for allocation in allocation_keys(&object) {
            compare.push(absent(allocation.clone()));
            success.push(RequestOp::Put(PutRequest {
                key: allocation,
                value: owner.clone(),
                ..Default::default()
            }));
        }
        let mut failure = vec![RequestOp::Range(RangeRequest {
            key,
            count_only: true,
            ..Default::default()
        })];
        if let (Some(ns), Some(revision)) = (&op.request.namespace, op.namespace_revision) {
            // Admitted in this namespace as it was at `revision`: nothing is created
            // in a namespace that began terminating since (folded into the write
            // instead of a read before it).
            let namespace_key = RESOURCES[0].key(None, ns).into_bytes();
            compare.push(unchanged_since(&namespace_key, revision));
            failure.push(RequestOp::Range(RangeRequest {
                key: namespace_key,
                keys_only: true,
                ..Default::default()
            }));
        }
        for (quota_key, revision, charged) in &op.quota_writes {
            compare.push(unchanged_since(quota_key, *revision));
            success.push(RequestOp::Put(PutRequest {
                key: quota_key.clone(),
                value: body(&strip(charged)),
                ..Default::default()
            }));
            failure.push(RequestOp::Range(RangeRequest {
                key: quota_key.clone(),
                keys_only: true,
                ..Default::default()
            }));
        }
        StoreRequest::Txn(TxnRequest {
            compare,
            success,
            failure,
        })
    }

    /// Fills `spec.clusterIP(s)` and node ports that the client left empty.
    pub(super) fn allocate(&mut self, ctx: &mut Ctx<'_>, request: &ApiRequest, object: &mut Value) {
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        let kind = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if kind == "ExternalName" {
            return;
        }
        let user_ip = clusterip_of(&request.body);
        if user_ip.is_none() {
            let [a, b] = self.config.service_ip_base;
            // Hosts 0.2 .. 255.254 of the /16: 0.0 is the network, 0.1 the apiserver's.
            let host: u16 = ctx.rng().gen_range(2..65_535);
            let ip = format!("{a}.{b}.{}.{}", host >> 8, host & 0xff);
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        if kind == "NodePort" || kind == "LoadBalancer" {
            let (low, high) = self.config.node_port_range;
            // The ports the client chose stay; the others are chosen again on every
            // attempt (a retry after a collision must not keep the port that collided).
            let requested: Vec<Option<u64>> = serde_json::from_slice::<Value>(&request.body)
                .ok()
                .and_then(|body| body["spec"]["ports"].as_array().cloned())
                .map(|ports| ports.iter().map(|p| p["nodePort"].as_u64()).collect())
                .unwrap_or_default();
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for (i, port) in ports.iter_mut().enumerate() {
                    if requested.get(i).copied().flatten().is_none() {
                        let chosen = ctx.rng().gen_range(low..=high);
                        port["nodePort"] = json!(chosen);
                    }
                }
            }
        }
    }
}

/// The allocation keys a Service holds: its cluster IP and node ports.
pub(super) fn allocation_keys(object: &Value) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    if object.get("kind").and_then(Value::as_str) != Some("Service") {
        return keys;
    }
    let spec = &object["spec"];
    if let Some(ip) = spec.get("clusterIP").and_then(Value::as_str) {
        if !ip.is_empty() && ip != "None" {
            keys.push(format!("/registry/core/serviceipallocations/{ip}").into_bytes());
        }
    }
    if let Some(ports) = spec.get("ports").and_then(Value::as_array) {
        for port in ports {
            if let Some(node_port) = port.get("nodePort").and_then(Value::as_u64) {
                let protocol = port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP");
                keys.push(
                    format!("/registry/core/nodeportallocations/{protocol}/{node_port}")
                        .into_bytes(),
                );
            }
        }
    }
    keys
}

pub(super) fn clusterip_of(request_body: &[u8]) -> Option<String> {
    let object: Value = serde_json::from_slice(request_body).ok()?;
    object["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty())
        .map(str::to_string)
}

/// Whether the client chose the IP or node ports itself (a collision is then its error).
pub(super) fn requested_allocations(request: &ApiRequest) -> bool {
    let Ok(object) = serde_json::from_slice::<Value>(&request.body) else {
        return false;
    };
    clusterip_of(&request.body).is_some_and(|ip| ip != "None")
        || object["spec"]["ports"]
            .as_array()
            .is_some_and(|ports| ports.iter().any(|p| p.get("nodePort").is_some()))
}

/// The one read a namespaced create's admission needs: the namespace, then for a Pod
/// its namespace's LimitRanges and the PriorityClass it names, the namespace's
/// ResourceQuotas, and for a new ResourceQuota each resource it counts. A read-only
/// transaction: one linearizable read at one revision instead of up to four in a row.
pub(super) fn admission_read(op: &Op) -> (AdmitReads, StoreRequest) {
    let ns = op.request.namespace.clone().unwrap_or_default();
    let object = op.prepared.clone().unwrap_or_default();
    let key_read = |key: Vec<u8>| {
        RequestOp::Range(RangeRequest {
            key,
            ..Default::default()
        })
    };
    let prefix_read = |resource: Option<&Resource>| {
        let prefix = resource
            .map(|r| r.prefix(Some(&ns)))
            .unwrap_or_default()
            .into_bytes();
        RequestOp::Range(RangeRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            ..Default::default()
        })
    };
    let mut reads = AdmitReads::default();
    let mut success = vec![key_read(RESOURCES[0].key(None, &ns).into_bytes())];
    if op.resource.kind == "Pod" {
        reads.limits = Some(success.len());
        success.push(prefix_read(Resource::find("", "limitranges")));
        let class = object["spec"]["priorityClassName"].as_str().unwrap_or("");
        if !class.is_empty() {
            reads.priority = Some(success.len());
            let key = Resource::find("scheduling.k8s.io", "priorityclasses")
                .map(|r| r.key(None, class))
                .unwrap_or_default()
                .into_bytes();
            success.push(key_read(key));
        }
    }
    reads.quotas = success.len();
    success.push(prefix_read(Resource::find("", "resourcequotas")));
    if op.resource.kind == "ResourceQuota" {
        for resource in admission::quota_resources(&object)
            .iter()
            .filter_map(|(plural, group)| Resource::find(group, plural))
            .filter(|r| r.namespaced)
        {
            reads.counted.push((success.len(), resource));
            success.push(prefix_read(Some(resource)));
        }
    }
    let request = StoreRequest::Txn(TxnRequest {
        compare: Vec::new(),
        success,
        failure: Vec::new(),
    });
    (reads, request)
}
