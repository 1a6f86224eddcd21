//! Raft I/O: persisting what raft hands out (one synced batch per Ready), then
//! sending its messages; the zero-delay flush that batches proposals.

#[allow(unused_imports)]
use super::*;

impl Store {
    pub(super) fn send_raft_messages(
        &mut self,
        ctx: &mut Ctx<'_>,
        messages: Vec<raft::eraftpb::Message>,
    ) {
        for message in messages {
            let Some(address) = self.address_of(message.to) else {
                continue;
            };
            ctx.send(
                address,
                Message::Store(StoreMessage::Raft(
                    message.write_to_bytes().unwrap_or_default(),
                )),
            );
        }
    }

    /// Persists, sends and applies whatever raft has ready, until it has nothing.
    pub(super) fn handle_ready(&mut self, ctx: &mut Ctx<'_>) {
        self.check_role_change(ctx);
        for _ in 0..64 {
            let Some(raft) = self.raft.as_mut() else {
                return;
            };
            if !raft.has_ready() {
                break;
            }
            let mut ready = raft.ready();
            self.readies += 1;
            // raft-rs separates messages that may leave before this Ready is persisted
            // (the leader's appends: it may write its own log in parallel with the
            // followers, Raft thesis 10.2.1) from those that must wait (votes, append
            // responses: `persisted_messages`). Sending the former first overlaps the
            // leader's fsync with replication.
            let early = ready.take_messages();
            self.send_raft_messages(ctx, early);
            let mut batch = WriteBatch::new();
            let snapshot = ready.snapshot().clone();
            let installed = snapshot.get_metadata().index != 0;
            if installed {
                // The leader's whole state: checked and taken first, then written as
                // this member's checkpoint with the log's new start, in one batch.
                let index = snapshot.get_metadata().index;
                if let Err(reason) = self.state.restore(snapshot.get_data(), index) {
                    self.fatal = Some(reason);
                    return;
                }
                if let Err(e) = self.write_whole_state(ctx, &mut batch) {
                    self.fail_storage(ctx, e);
                    return;
                }
                let Some(raft) = self.raft.as_mut() else {
                    return;
                };
                raft.mut_store().apply_snapshot(snapshot, &mut batch);
            }
            let Some(raft) = self.raft.as_mut() else {
                return;
            };
            if !ready.entries().is_empty() {
                raft.mut_store().append(ready.entries(), &mut batch);
            }
            if let Some(hs) = ready.hs() {
                raft.mut_store().set_hard_state(hs.clone(), &mut batch);
            }
            // Entries, a new term or vote, or a snapshot must be on disk before anyone
            // hears of them; a commit-index-only hard state can be recovered from peers.
            let must_sync = ready.must_sync() || installed;
            if must_sync {
                if !self.persist_synced(ctx, batch) {
                    return;
                }
            } else if !batch.is_empty() {
                let _ = ctx.persist(batch);
            }
            if installed {
                self.entries_since_snapshot = 0;
                // Watchers ahead of the snapshot keep going; behind it they re-sync.
                self.cancel_lagging_watchers(ctx);
            }
            let persisted = ready.take_persisted_messages();
            self.send_raft_messages(ctx, persisted);
            for state in ready.take_read_states() {
                if let Some(read_id) = reads::read_id_of(self.config.id, &state.request_ctx) {
                    self.ready_reads.push((state.index, read_id));
                }
            }
            let committed = ready.take_committed_entries();
            self.apply_entries(ctx, committed);
            let Some(raft) = self.raft.as_mut() else {
                return;
            };
            let mut light = raft.advance(ready);
            if let Some(commit) = light.commit_index() {
                let mut batch = WriteBatch::new();
                raft.mut_store().set_commit(commit, &mut batch);
                // The commit index is recoverable from peers: no sync needed.
                let _ = ctx.persist(batch);
            }
            let messages = light.take_messages();
            let committed = light.take_committed_entries();
            self.send_raft_messages(ctx, messages);
            self.apply_entries(ctx, committed);
            if let Some(raft) = self.raft.as_mut() {
                raft.advance_apply();
            }
            self.check_role_change(ctx);
        }
        self.serve_ready_reads(ctx);
        self.maybe_snapshot(ctx);
    }

    /// Defers the Ready loop to a zero-delay timer: inputs that arrive before it fires
    /// are batched into one Ready.
    pub(super) fn schedule_flush(&mut self, ctx: &mut Ctx<'_>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.set_timer(StoreTimer::Flush, Duration::ZERO);
        }
    }

    pub(super) fn persist_synced(&mut self, ctx: &mut Ctx<'_>, batch: WriteBatch) -> bool {
        self.syncs += 1;
        if let Err(e) = ctx.persist(batch).and_then(|_| ctx.sync()) {
            self.fail_storage(ctx, e);
            return false;
        }
        true
    }

    /// Adds the whole state to `batch`, replacing what storage held (bootstrap, an old
    /// data directory, a snapshot from the leader).
    pub(super) fn write_whole_state(
        &mut self,
        ctx: &Ctx<'_>,
        batch: &mut WriteBatch,
    ) -> Result<(), keel_engine::StorageError> {
        checkpoint::write_full(&mut self.state, &mut self.persisted, ctx.storage(), batch)
    }

    /// A member that cannot use its storage must not acknowledge anything: it stops.
    pub(super) fn fail_storage(&mut self, ctx: &mut Ctx<'_>, error: keel_engine::StorageError) {
        let reason = format!("storage failed: {error}");
        ctx.control(Control::Fatal {
            reason: format!("member {}: {reason}", self.config.id),
        });
        self.fatal = Some(reason);
    }
}
