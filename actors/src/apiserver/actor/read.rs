//! Gets and lists: one linearizable read each; lists page with continue tokens.

#[allow(unused_imports)]
use super::*;

impl ApiServer {
    /// Moves a get or a list on; `Some` is the final answer.
    pub(super) fn advance_read(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _op_id: u64,
        op: &mut Op,
        result: StoreResponse,
    ) -> Option<ApiResponse> {
        let (resource, name, _, _) = op.target();
        match (&op.stage, result) {
            (Stage::Get, StoreResponse::Range(r)) => Some(match r.kvs.first() {
                Some(kv) => {
                    let object = present(resource, &kv.value, kv.mod_revision);
                    let object = if op.request.subresource.as_deref() == Some("scale") {
                        scale_of(&object)
                    } else {
                        object
                    };
                    ApiResponse {
                        code: 200,
                        body: body(&object),
                    }
                }
                None => not_found(resource, &name),
            }),
            (Stage::List, StoreResponse::Range(r)) => {
                Some(self.list_response(resource, &op.request, r.kvs, r.header_revision))
            }
            (_, other) => Some(unexpected(&other)),
        }
    }
}

impl ApiServer {
    pub(super) fn list_request(
        &self,
        resource: &Resource,
        request: &ApiRequest,
    ) -> Result<RangeRequest, ApiResponse> {
        let prefix = resource.prefix(request.namespace.as_deref()).into_bytes();
        let mut range = RangeRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            ..Default::default()
        };
        let options = &request.options;
        if options.limit > 0
            && options.label_selector.is_empty()
            && options.field_selector.is_empty()
        {
            // Without selectors the page is the first `limit` keys: let the store cut it
            // (one more, to know whether there are more).
            range.limit = options.limit + 1;
        }
        if !options.continue_token.is_empty() {
            let (revision, after) = decode_continue(&options.continue_token).ok_or_else(|| {
                failure(400, "BadRequest", "the continue token is not valid".into())
            })?;
            range.revision = revision;
            let mut start = after;
            start.push(0);
            range.key = start;
        } else if let Ok(revision) = options.resource_version.parse::<i64>() {
            if revision > 0 {
                range.revision = revision;
            } else {
                range.serializable = true;
            }
        }
        Ok(range)
    }

    pub(super) fn list_response(
        &self,
        resource: &Resource,
        request: &ApiRequest,
        kvs: Vec<KeyValue>,
        revision: i64,
    ) -> ApiResponse {
        let options = &request.options;
        let labels_selector = match parse_label_selector(&options.label_selector) {
            Ok(s) => s,
            Err(e) => return failure(400, "BadRequest", e),
        };
        let fields_selector = match parse_field_selector(&options.field_selector) {
            Ok(s) => s,
            Err(e) => return failure(400, "BadRequest", e),
        };
        let read_revision = decode_continue(&options.continue_token)
            .map(|(r, _)| r)
            .filter(|r| *r > 0)
            .unwrap_or(revision);
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = false;
        for kv in kvs {
            let object = present(resource, &kv.value, kv.mod_revision);
            if !labels_selector.matches(&labels(&object)) || !fields_selector.matches(&object) {
                continue;
            }
            if options.limit > 0 && items.len() as i64 >= options.limit {
                more = true;
                break;
            }
            last_key = Some(kv.key.clone());
            items.push(object);
        }
        let mut metadata = json!({ "resourceVersion": read_revision.to_string() });
        if more {
            if let Some(key) = last_key {
                metadata["continue"] = json!(encode_continue(read_revision, &key));
            }
        }
        let list = json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": items,
        });
        ApiResponse {
            code: 200,
            body: body(&list),
        }
    }
}

pub(super) fn encode_continue(revision: i64, key: &[u8]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{revision}.{hex}")
}

pub(super) fn decode_continue(token: &str) -> Option<(i64, Vec<u8>)> {
    let (revision, hex) = token.split_once('.')?;
    let revision = revision.parse().ok()?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let key = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((revision, key))
}
