//! The watch cache: one store watch per resource feeds every watcher of it.

#[allow(unused_imports)]
use super::*;

impl ApiServer {
    /// Lists the resource and starts the store watch that keeps the cache current.
    pub(super) fn load_cache(&mut self, ctx: &mut Ctx<'_>, resource: &'static Resource) {
        let now = ctx.now();
        // Load the cache as of the oldest version a waiting watcher resumes from (the
        // store keeps history until compaction), so a watcher that moved here from a
        // dead API server resumes without a gap instead of getting 410. A failed
        // historical read falls back to the current state.
        let mut from = 0;
        if let Some(cache) = self.caches.get_mut(cache_key(resource)) {
            cache.loading = true;
            if !cache.historical_failed {
                from = cache
                    .waiting
                    .iter()
                    .filter_map(|key| self.watchers.get(key))
                    .filter_map(|w| w.start.parse::<i64>().ok())
                    .filter(|v| *v > 0)
                    .min()
                    .unwrap_or(0);
            }
            cache.loading_from = from;
        }
        let prefix = resource.prefix(None).into_bytes();
        let request = StoreRequest::Range(RangeRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            revision: from,
            ..Default::default()
        });
        let op_id = self.new_op(
            None,
            ApiRequest {
                verb: Verb::List,
                group: resource.group.into(),
                version: resource.version.into(),
                resource: resource.plural.into(),
                subresource: Some("watch-cache".into()),
                namespace: None,
                name: None,
                body: Vec::new(),
                options: ListOptions::default(),
            },
            resource,
            Stage::List,
            None,
        );
        if self.store(ctx, now, op_id, request).is_err() {
            self.ops.remove(&op_id);
            if let Some(cache) = self.caches.get_mut(cache_key(resource)) {
                cache.loading = false;
            }
        }
    }

    pub(super) fn cache_loaded(
        &mut self,
        ctx: &mut Ctx<'_>,
        resource: &'static Resource,
        kvs: Vec<KeyValue>,
        revision: i64,
    ) {
        let now = ctx.now();
        let prefix = resource.prefix(None).into_bytes();
        let create = WatchCreate {
            watch_id: 0,
            range_end: prefix_end(&prefix),
            key: prefix,
            start_revision: revision + 1,
            prev_kv: true,
            progress_notify: true,
        };
        let store_watch = self.client.watch(ctx, now, create).ok();
        let Some(cache) = self.caches.get_mut(cache_key(resource)) else {
            return;
        };
        cache.objects = kvs
            .into_iter()
            .map(|kv| {
                (
                    kv.key,
                    (
                        serde_json::from_slice(&kv.value).unwrap_or_default(),
                        kv.mod_revision,
                    ),
                )
            })
            .collect();
        cache.revision = revision;
        cache.window_start = revision;
        cache.window.clear();
        cache.store_watch = store_watch;
        cache.ready = true;
        cache.loading = false;
        let waiting = std::mem::take(&mut cache.waiting);
        for key in waiting {
            self.begin_watcher(ctx, &key);
        }
    }

    pub(super) fn on_cache_events(
        &mut self,
        ctx: &mut Ctx<'_>,
        store_watch: u64,
        output: WatchOutput,
    ) {
        let Some(cache_name) = self
            .caches
            .iter()
            .find(|(_, c)| c.store_watch == Some(store_watch))
            .map(|(k, _)| *k)
        else {
            return;
        };
        let Some(resource) = RESOURCES.iter().find(|r| cache_key(r) == cache_name) else {
            return;
        };
        match output {
            WatchOutput::Events(events) => {
                let watcher_keys: Vec<(Address, u64)> = self
                    .watchers
                    .iter()
                    .filter(|(_, w)| w.begun && w.resource.plural == resource.plural)
                    .map(|(k, _)| k.clone())
                    .collect();
                for event in events {
                    let revision = event.kv.mod_revision;
                    let (kind, object) = match event.kind {
                        StoreEventType::Put => {
                            let kind = if event.kv.create_revision == event.kv.mod_revision {
                                EventType::Added
                            } else {
                                EventType::Modified
                            };
                            (
                                kind,
                                serde_json::from_slice::<Value>(&event.kv.value)
                                    .unwrap_or_default(),
                            )
                        }
                        StoreEventType::Delete => {
                            let previous = event
                                .prev_kv
                                .as_ref()
                                .map(|p| p.value.clone())
                                .unwrap_or_default();
                            (
                                EventType::Deleted,
                                serde_json::from_slice::<Value>(&previous).unwrap_or_default(),
                            )
                        }
                    };
                    let mut object = object;
                    set_identity(resource, &mut object, revision);
                    if let Some(cache) = self.caches.get_mut(cache_name) {
                        match kind {
                            EventType::Deleted => {
                                cache.objects.remove(&event.kv.key);
                            }
                            _ => {
                                cache
                                    .objects
                                    .insert(event.kv.key.clone(), (object.clone(), revision));
                            }
                        }
                        cache.revision = cache.revision.max(revision);
                        // The window replays in order: a watcher resumed from it must
                        // never see an older change after a newer one.
                        assert!(
                            cache.window.back().is_none_or(|(last, _, _)| *last <= revision),
                            "watch cache {cache_name}: event at revision {revision} after a newer one"
                        );
                        cache.window.push_back((revision, kind, object.clone()));
                        while cache.window.len() > self.config.watch_cache_events {
                            if let Some((dropped, _, _)) = cache.window.pop_front() {
                                cache.window_start = dropped;
                            }
                        }
                    }
                    let bytes = body(&object);
                    for key in &watcher_keys {
                        if self.matches(key, &object) {
                            self.emit_bytes(ctx, key, kind, bytes.clone(), revision);
                        }
                    }
                }
            }
            WatchOutput::Progress { revision } => {
                if let Some(cache) = self.caches.get_mut(cache_name) {
                    cache.revision = cache.revision.max(revision);
                }
            }
            WatchOutput::Canceled { .. } => {
                // The store compacted past the cache: every watcher re-lists.
                let keys: Vec<(Address, u64)> = self
                    .watchers
                    .iter()
                    .filter(|(_, w)| w.resource.plural == resource.plural)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in keys {
                    let object: Value = serde_json::from_slice(&status(
                        410,
                        "Expired",
                        "the watch cache was reset; re-list and watch again",
                        json!({}),
                    ))
                    .unwrap_or_default();
                    self.emit(ctx, &key, EventType::Error, object, 0);
                    self.watchers.remove(&key);
                }
                self.caches.remove(cache_name);
            }
        }
    }
}

pub(super) fn cache_key(resource: &Resource) -> &'static str {
    // One cache per resource; plurals are unique across the served groups.
    resource.plural
}

pub(super) fn cache_revision(caches: &BTreeMap<&'static str, Cache>, resource: &Resource) -> i64 {
    caches
        .get(cache_key(resource))
        .map(|c| c.revision)
        .unwrap_or(0)
}
