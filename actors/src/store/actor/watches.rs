//! The watch server: creating watches, catching them up from history, live
//! events with flow control, cancelling watchers that fall behind.

#[allow(unused_imports)]
use super::*;

impl Store {
    pub(super) fn watch_create(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        id: u64,
        create: WatchCreate,
    ) {
        let now = ctx.now();
        if let Some(watcher) = self.watchers.get(&(from.clone(), create.watch_id)) {
            // A duplicated create (the bus duplicates datagrams): the watch exists and
            // its stream has begun. Starting it again would send a second stream under
            // the same id whose sequence numbers collide with the first (seen: a watch
            // missed a revision once the client stopped re-creating watches on every
            // reordering); answer as the first time.
            let header_revision = watcher.created_revision;
            let watch_id = create.watch_id;
            let created = StoreResponse::WatchCreated {
                watch_id,
                header_revision,
            };
            self.respond(ctx, from, id, Ok(created));
            return;
        }
        let per_client = self
            .watchers
            .range((from.clone(), 0)..=(from.clone(), u64::MAX))
            .count();
        if per_client >= self.config.watchers_per_client_max {
            let limit = self.config.watchers_per_client_max;
            self.respond(ctx, from, id, Err(StoreError::TooManyRequests { limit }));
            return;
        }
        let current = self.state.mvcc.current_revision();
        let start = if create.start_revision <= 0 {
            current + 1
        } else {
            create.start_revision
        };
        let compacted = self.state.mvcc.compacted_revision();
        if compacted > 0 && start <= compacted {
            self.respond(
                ctx,
                from,
                id,
                Err(StoreError::Compacted {
                    requested: start,
                    compacted,
                }),
            );
            return;
        }
        let watch_id = create.watch_id;
        self.watchers.insert(
            (from.clone(), watch_id),
            Watcher {
                range: create,
                created_revision: current,
                next_revision: start,
                seq: 0,
                unacked: VecDeque::new(),
                unacked_events: 0,
                last_sent: now,
            },
        );
        self.respond(
            ctx,
            from.clone(),
            id,
            Ok(StoreResponse::WatchCreated {
                watch_id,
                header_revision: current,
            }),
        );
        self.catch_up_watcher(ctx, &(from, watch_id));
    }

    pub(super) fn send_watch(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &(Address, u64),
        events: Vec<Event>,
        canceled: Option<String>,
    ) {
        let header_revision = self.state.mvcc.current_revision();
        let compact_revision = self.state.mvcc.compacted_revision();
        let now = ctx.now();
        let Some(watcher) = self.watchers.get_mut(key) else {
            return;
        };
        watcher.seq += 1;
        watcher.last_sent = now;
        if !events.is_empty() {
            watcher.unacked.push_back((watcher.seq, events.len()));
            watcher.unacked_events += events.len();
        }
        let message = WatchEvents {
            watch_id: key.1,
            seq: watcher.seq,
            header_revision,
            events,
            canceled,
            compact_revision,
        };
        ctx.send(key.0.clone(), Message::Store(StoreMessage::Watch(message)));
    }

    pub(super) fn cancel_watcher(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &(Address, u64),
        reason: String,
    ) {
        self.send_watch(ctx, key, Vec::new(), Some(reason));
        self.watchers.remove(key);
    }

    /// Sends a watcher the stored events it has not seen yet, a batch at a time.
    pub(super) fn catch_up_watcher(&mut self, ctx: &mut Ctx<'_>, key: &(Address, u64)) {
        let current = self.state.mvcc.current_revision();
        let Some(watcher) = self.watchers.get(key) else {
            return;
        };
        if watcher.next_revision > current {
            return;
        }
        if watcher.unacked_events >= self.config.watch_unacked_events_max {
            let reason = format!(
                "watcher fell behind: {} events unacknowledged (limit {}); re-create it from revision {}",
                watcher.unacked_events, self.config.watch_unacked_events_max, watcher.next_revision
            );
            self.cancel_watcher(ctx, key, reason);
            return;
        }
        let batch = self.config.watch_batch_events;
        let start = watcher.next_revision;
        let range = watcher.range.clone();
        let mut events =
            match self
                .state
                .mvcc
                .events_since(start, &range.key, &range.range_end, batch)
            {
                Ok(events) => events,
                Err(error) => {
                    self.cancel_watcher(ctx, key, error.to_string());
                    return;
                }
            };
        let next = if events.len() >= batch {
            // Never split a revision across messages: a client resumes by revision.
            let last = events.last().map(|e| e.kv.mod_revision).unwrap_or(start);
            if events.first().map(|e| e.kv.mod_revision) == Some(last) {
                events = match self.state.mvcc.events_since(
                    last,
                    &range.key,
                    &range.range_end,
                    usize::MAX,
                ) {
                    Ok(all) => all
                        .into_iter()
                        .filter(|e| e.kv.mod_revision == last)
                        .collect(),
                    Err(error) => {
                        self.cancel_watcher(ctx, key, error.to_string());
                        return;
                    }
                };
                last + 1
            } else {
                events.retain(|e| e.kv.mod_revision < last);
                last
            }
        } else {
            current + 1
        };
        if !range.prev_kv {
            for event in &mut events {
                event.prev_kv = None;
            }
        }
        if let Some(watcher) = self.watchers.get_mut(key) {
            watcher.next_revision = next;
        }
        if !events.is_empty() {
            self.send_watch(ctx, key, events, None);
        }
    }

    /// Feeds freshly applied events to watchers that are caught up.
    pub(super) fn notify_watchers(&mut self, ctx: &mut Ctx<'_>, events: &[Event]) {
        let Some(revision) = events.first().map(|e| e.kv.mod_revision) else {
            return;
        };
        let keys: Vec<(Address, u64)> = self.watchers.keys().cloned().collect();
        for key in keys {
            let Some(watcher) = self.watchers.get(&key) else {
                continue;
            };
            if watcher.next_revision != revision {
                continue;
            }
            let range = KeyRange::new(&watcher.range.key, &watcher.range.range_end);
            let prev_kv = watcher.range.prev_kv;
            let matching: Vec<Event> = events
                .iter()
                .filter(|e| range.contains(&e.kv.key))
                .map(|e| {
                    let mut e = e.clone();
                    if !prev_kv {
                        e.prev_kv = None;
                    }
                    e
                })
                .collect();
            if let Some(watcher) = self.watchers.get_mut(&key) {
                watcher.next_revision = revision + 1;
            }
            if watcher_too_slow(
                self.watchers.get(&key),
                self.config.watch_unacked_events_max,
            ) {
                let reason = format!(
                    "watcher fell behind: too many unacknowledged events (limit {}); re-create it from revision {revision}",
                    self.config.watch_unacked_events_max
                );
                self.cancel_watcher(ctx, &key, reason);
                continue;
            }
            if !matching.is_empty() {
                self.send_watch(ctx, &key, matching, None);
            }
        }
    }

    pub(super) fn cancel_lagging_watchers(&mut self, ctx: &mut Ctx<'_>) {
        let compacted = self.state.mvcc.compacted_revision();
        let lagging: Vec<(Address, u64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| compacted > 0 && w.next_revision <= compacted)
            .map(|(k, _)| k.clone())
            .collect();
        for key in lagging {
            let reason = format!(
                "revision has been compacted (oldest is {}); re-list and watch again",
                compacted + 1
            );
            self.cancel_watcher(ctx, &key, reason);
        }
    }

    pub(super) fn on_watch_ack(&mut self, from: Address, watch_id: u64, seq: u64) {
        if let Some(watcher) = self.watchers.get_mut(&(from, watch_id)) {
            while watcher.unacked.front().is_some_and(|(s, _)| *s <= seq) {
                if let Some((_, n)) = watcher.unacked.pop_front() {
                    watcher.unacked_events -= n;
                }
            }
        }
    }

    pub(super) fn watch_duties(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let progress_every = Duration::from_millis(self.config.watch_progress_ms);
        let keys: Vec<(Address, u64)> = self.watchers.keys().cloned().collect();
        for key in keys {
            self.catch_up_watcher(ctx, &key);
            let Some(watcher) = self.watchers.get(&key) else {
                continue;
            };
            if watcher.range.progress_notify
                && watcher.next_revision > self.state.mvcc.current_revision()
                && now.since(watcher.last_sent) >= progress_every
            {
                self.send_watch(ctx, &key, Vec::new(), None);
            }
        }
    }
}

pub(super) fn watcher_too_slow(watcher: Option<&Watcher>, limit: usize) -> bool {
    watcher.is_some_and(|w| w.unacked_events >= limit)
}
