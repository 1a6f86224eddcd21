//! Watchers: starting a watch, its first events, live events with flow control,
//! bookmarks.

#[allow(unused_imports)]
use super::*;

impl ApiServer {
    pub(super) fn watch_start(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        resource: &'static Resource,
        request: ApiRequest,
    ) {
        let options = request.options.clone();
        if self
            .watchers
            .contains_key(&(from.clone(), options.watch_id))
        {
            // A duplicated watch request (the bus duplicates datagrams): the watch is
            // established and its events have begun. Starting it again would send a
            // second stream under the same id with colliding sequence numbers (the
            // store had this bug); answer again and start nothing.
            let established = ApiResponse {
                code: 200,
                body: Vec::new(),
            };
            return self.reply(ctx, Some((from, options.watch_id)), established);
        }
        let fail = |this: &mut Self, ctx: &mut Ctx<'_>, response: ApiResponse| {
            this.reply(ctx, Some((from.clone(), options.watch_id)), response);
        };
        if self.watchers.len() >= self.config.watchers_max {
            let message = format!("too many watches (limit {})", self.config.watchers_max);
            return fail(self, ctx, failure(429, "TooManyRequests", message));
        }
        let labels_selector = match parse_label_selector(&options.label_selector) {
            Ok(s) => s,
            Err(e) => return fail(self, ctx, failure(400, "BadRequest", e)),
        };
        let fields_selector = match parse_field_selector(&options.field_selector) {
            Ok(s) => s,
            Err(e) => return fail(self, ctx, failure(400, "BadRequest", e)),
        };
        let key = (from.clone(), options.watch_id);
        self.watchers.insert(
            key.clone(),
            Watcher {
                resource,
                namespace: if resource.namespaced {
                    request.namespace.clone()
                } else {
                    None
                },
                labels: labels_selector,
                fields: fields_selector,
                seq: 0,
                acked: 0,
                bookmarks: options.allow_watch_bookmarks,
                last_sent: ctx.now(),
                start: options.resource_version.clone(),
                begun: false,
                sent_revision: options.resource_version.parse().unwrap_or(0),
            },
        );
        // The watch is established: say so, then events follow.
        self.reply(
            ctx,
            Some((from, options.watch_id)),
            ApiResponse {
                code: 200,
                body: Vec::new(),
            },
        );
        let cache = self
            .caches
            .entry(cache_key(resource))
            .or_insert_with(|| Cache {
                store_watch: None,
                ready: false,
                loading: false,
                revision: 0,
                objects: BTreeMap::new(),
                window: VecDeque::new(),
                waiting: Vec::new(),
                loading_from: 0,
                historical_failed: false,
                window_start: 0,
            });
        if cache.ready {
            self.begin_watcher(ctx, &key);
        } else {
            cache.waiting.push(key);
            if !cache.loading {
                self.load_cache(ctx, resource);
            }
        }
    }

    /// Sends a new watcher what it asked to start from: the current state as ADDED, or
    /// the cached events after its resourceVersion, or 410 if those are gone.
    pub(super) fn begin_watcher(&mut self, ctx: &mut Ctx<'_>, key: &(Address, u64)) {
        let Some(watcher) = self.watchers.get(key) else {
            return;
        };
        let resource = watcher.resource;
        let start = watcher.start.clone();
        let Some(cache) = self.caches.get(cache_key(resource)) else {
            return;
        };
        let mut events: Vec<(EventType, Value, i64)> = Vec::new();
        match start.parse::<i64>() {
            Ok(version) if version > 0 => {
                let oldest_known = cache.window_start;
                if version < oldest_known {
                    let message =
                        format!("too old resource version: {version} ({})", cache.revision);
                    let object =
                        serde_json::from_slice(&status(410, "Expired", &message, json!({})))
                            .unwrap_or_default();
                    self.emit(
                        ctx,
                        key,
                        EventType::Error,
                        object,
                        cache_revision(&self.caches, resource),
                    );
                    self.watchers.remove(key);
                    return;
                }
                for (revision, kind, object) in &cache.window {
                    if *revision > version {
                        events.push((*kind, object.clone(), *revision));
                    }
                }
            }
            _ => {
                for (object, revision) in cache.objects.values() {
                    let mut object = object.clone();
                    set_identity(resource, &mut object, *revision);
                    events.push((EventType::Added, object, *revision));
                }
            }
        }
        for (kind, object, revision) in events {
            if self.matches(key, &object) {
                self.emit(ctx, key, kind, object, revision);
            }
        }
        // From here on only live events newer than what the cache has shown it.
        let revision = cache_revision(&self.caches, resource);
        if let Some(watcher) = self.watchers.get_mut(key) {
            watcher.begun = true;
            watcher.sent_revision = watcher.sent_revision.max(revision);
        }
    }

    pub(super) fn matches(&self, key: &(Address, u64), object: &Value) -> bool {
        let Some(watcher) = self.watchers.get(key) else {
            return false;
        };
        if let Some(ns) = &watcher.namespace {
            if meta_str(object, "namespace") != Some(ns.as_str()) {
                return false;
            }
        }
        watcher.labels.matches(&labels(object)) && watcher.fields.matches(object)
    }

    pub(super) fn emit(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &(Address, u64),
        kind: EventType,
        object: Value,
        revision: i64,
    ) {
        self.emit_bytes(ctx, key, kind, body(&object), revision);
    }

    /// Sends one event whose object is already serialized (a live event fanned out to
    /// many watchers is serialized once).
    pub(super) fn emit_bytes(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &(Address, u64),
        kind: EventType,
        object: Vec<u8>,
        revision: i64,
    ) {
        let now = ctx.now();
        let limit = self.config.watcher_unacked_max as u64;
        let Some(watcher) = self.watchers.get_mut(key) else {
            return;
        };
        if watcher.seq - watcher.acked >= limit && kind != EventType::Error {
            // Too slow: close it rather than buffer without bound or stall the others.
            let message = format!(
                "watcher fell behind by {} events (limit {limit}); re-list and watch again",
                watcher.seq - watcher.acked
            );
            let object: Value =
                serde_json::from_slice(&status(410, "Expired", &message, json!({})))
                    .unwrap_or_default();
            watcher.seq += 1;
            let event = WatchEvent {
                kind: EventType::Error,
                object: body(&object),
                resource_version: revision,
            };
            ctx.send(
                key.0.clone(),
                Message::Api(ApiMessage::Event {
                    watch_id: key.1,
                    seq: watcher.seq,
                    event,
                }),
            );
            self.watchers.remove(key);
            return;
        }
        if matches!(
            kind,
            EventType::Added | EventType::Modified | EventType::Deleted
        ) {
            if watcher.begun && revision <= watcher.sent_revision {
                // Older than what this watcher already has (the cache is catching up).
                return;
            }
            watcher.sent_revision = watcher.sent_revision.max(revision);
        }
        watcher.seq += 1;
        watcher.last_sent = now;
        let event = WatchEvent {
            kind,
            object,
            resource_version: revision,
        };
        ctx.send(
            key.0.clone(),
            Message::Api(ApiMessage::Event {
                watch_id: key.1,
                seq: watcher.seq,
                event,
            }),
        );
    }

    pub(super) fn bookmarks(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let every = Duration::from_millis(self.config.bookmark_ms);
        let due: Vec<(Address, u64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.bookmarks && now.since(w.last_sent) >= every)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(watcher) = self.watchers.get(&key) else {
                continue;
            };
            let resource = watcher.resource;
            let revision = cache_revision(&self.caches, resource);
            let object = json!({ "kind": resource.kind, "apiVersion": resource.api_version(), "metadata": { "resourceVersion": revision.to_string() } });
            self.emit(ctx, &key, EventType::Bookmark, object, revision);
        }
    }
}
