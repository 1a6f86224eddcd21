//! Applying committed entries through the state machine (`super::super::apply`)
//! and acting on what each did; membership entries; snapshots.

#[allow(unused_imports)]
use super::*;

impl Store {
    pub(super) fn apply_entries(&mut self, ctx: &mut Ctx<'_>, entries: Vec<raft::eraftpb::Entry>) {
        for entry in entries {
            if self.fatal.is_some() {
                return;
            }
            // Every member applies the same log in order: an entry out of order or a
            // gap would fork the state machines.
            assert_eq!(
                entry.index,
                self.state.applied + 1,
                "member {}: committed entries apply in log order, without gaps",
                self.config.id
            );
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if !entry.data.is_empty() {
                        self.apply_proposal(ctx, &entry.data);
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(ctx, &entry)
                }
            }
            self.state.applied = entry.index;
            self.entries_since_snapshot += 1;
            if self.removed && self.raft.is_some() {
                // This member applied its own removal: it stops, as an etcd member
                // does. Its raft must not run on: a leader that removed itself is no
                // longer in its own progress set, and raft-rs (which leaves it leader)
                // panics on the next append response it counts towards commit. The
                // rest of the cluster elects a leader among the remaining voters.
                self.raft = None;
                return;
            }
            let every = self.config.applied_report_every_entries;
            if every > 0 && entry.index % every == 0 {
                ctx.emit(Message::Report(Report::Store(StoreReport::Applied {
                    id: self.config.id,
                    index: entry.index,
                    revision: self.state.mvcc.current_revision(),
                    digest: self.state.mvcc.digest(),
                })));
            }
        }
    }

    pub(super) fn apply_proposal(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) {
        let proposal: Proposal = match bincode::deserialize(data) {
            Ok(p) => p,
            Err(e) => {
                // Every member applies the same log: an entry nobody can decode is
                // corruption, and applying around it would fork the state machines.
                self.fatal = Some(format!(
                    "raft entry at index {} does not decode: {e}",
                    self.state.applied + 1
                ));
                return;
            }
        };
        let now = ctx.now();
        let (result, events) = match self.state.apply_write(&proposal) {
            Applied::Duplicate => {
                // A duplicate of a request already applied: the client has (or will
                // time out on) the first answer; applying again could undo later writes.
                self.pending_writes.remove(&proposal.seq);
                return;
            }
            Applied::Done {
                result,
                events,
                follow_up,
            } => {
                match follow_up {
                    FollowUp::Nothing => {}
                    FollowUp::Compacted => self.cancel_lagging_watchers(ctx),
                    FollowUp::LeaseGranted { id, ttl_seconds } => {
                        if self.is_leader() {
                            self.lease_deadlines.insert(
                                id,
                                now.plus(Duration::from_secs(ttl_seconds.max(1) as u64)),
                            );
                        }
                    }
                    FollowUp::LeaseRevoked { id } => {
                        self.lease_deadlines.remove(&id);
                        self.revoking.remove(&id);
                    }
                }
                (result, events)
            }
        };
        if !events.is_empty() {
            self.notify_watchers(ctx, &events);
        }
        if proposal.origin == self.config.id {
            if let Some(pending) = self.pending_writes.remove(&proposal.seq) {
                if let Some((client, request_id)) = pending.client {
                    self.respond(ctx, client, request_id, result);
                }
            }
        }
    }

    pub(super) fn apply_conf_change(&mut self, ctx: &mut Ctx<'_>, entry: &raft::eraftpb::Entry) {
        let change: ConfChangeV2 = if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            match ConfChangeV2::parse_from_bytes(&entry.data) {
                Ok(cc) => cc,
                Err(e) => {
                    self.fatal = Some(format!(
                        "conf change at index {} does not decode: {e}",
                        entry.index
                    ));
                    return;
                }
            }
        } else {
            match raft::eraftpb::ConfChange::parse_from_bytes(&entry.data) {
                Ok(cc) => {
                    let mut v2 = single_change(cc.node_id, cc.get_change_type());
                    v2.context = cc.context;
                    v2
                }
                Err(e) => {
                    self.fatal = Some(format!(
                        "conf change at index {} does not decode: {e}",
                        entry.index
                    ));
                    return;
                }
            }
        };
        let context: Option<ConfContext> = bincode::deserialize(&change.context).ok();
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        let result = raft.apply_conf_change(&change);
        let outcome = match result {
            Ok(_) => {
                // A member that must catch up by snapshot refuses one whose membership
                // does not name it, so a snapshot built before this change must not be
                // sent (seen under the nemesis: a learner added after the last
                // snapshot was sent that snapshot, refused it, and never caught up).
                raft.mut_store().drop_outgoing_snapshot();
                // Stored with the state this turn: a restart resumes raft at the state's
                // applied index, so it must find the membership in force there.
                self.conf_changed = true;
                let changes = change.get_changes();
                if self
                    .state
                    .apply_membership(changes, context.as_ref(), self.config.id)
                {
                    self.removed = true;
                }
                for single in changes {
                    match single.get_change_type() {
                        ConfChangeType::AddNode => {
                            self.promoting.remove(&single.node_id);
                        }
                        ConfChangeType::RemoveNode => {
                            self.last_heard.remove(&single.node_id);
                        }
                        ConfChangeType::AddLearnerNode => {}
                    }
                }
                Ok(StoreResponse::Members {
                    header_revision: self.state.mvcc.current_revision(),
                    members: self.member_list(),
                })
            }
            Err(e) => Err(StoreError::Invalid(format!(
                "membership change refused: {e}"
            ))),
        };
        ctx.emit(Message::Report(Report::Store(StoreReport::Members {
            id: self.config.id,
            index: entry.index,
            voters: self.voters(),
            learners: self.learners(),
        })));
        if let Some(ctxt) = context {
            if ctxt.origin == self.config.id {
                if let Some(pending) = self.pending_writes.remove(&ctxt.seq) {
                    if let Some((client, request_id)) = pending.client {
                        self.respond(ctx, client, request_id, outcome);
                    }
                }
            }
        }
    }

    pub(super) fn member_list(&self) -> Vec<Member> {
        let learners: BTreeSet<u64> = self.learners().into_iter().collect();
        let mut ids: BTreeSet<u64> = self.voters().into_iter().collect();
        ids.extend(learners.iter().copied());
        ids.into_iter()
            .filter_map(|id| {
                self.address_of(id).map(|address| Member {
                    id,
                    address,
                    learner: learners.contains(&id),
                })
            })
            .collect()
    }

    /// After every Ready: writes what applying changed to storage (`super::checkpoint`;
    /// it costs what this turn applied), and every `snapshot_every_entries` entries
    /// drops the log below the applied index in the same batch (keeping the catch-up
    /// entries). Then, on a leader whose raft asked for a snapshot to send, builds one
    /// from the whole state.
    pub(super) fn maybe_snapshot(&mut self, ctx: &mut Ctx<'_>) {
        if self.fatal.is_some() {
            return;
        }
        let behind = self.persisted.behind(&self.state);
        let snapshot_due = self.entries_since_snapshot >= self.config.snapshot_every_entries;
        if behind > 0 && (behind >= self.config.state_write_every_entries || snapshot_due) {
            let mut batch = WriteBatch::new();
            checkpoint::write_changes(&mut self.state, &mut self.persisted, &mut batch);
            let conf_changed = std::mem::take(&mut self.conf_changed);
            if let Some(raft) = self.raft.as_mut() {
                let conf_state = raft.raft.prs().conf().to_conf_state();
                if snapshot_due {
                    // The applied entry is in the log (it is dropped only below earlier
                    // snapshots); were it not, the log would simply stay.
                    let _ = raft.mut_store().install_local_snapshot(
                        self.state.applied,
                        conf_state.clone(),
                        self.config.snapshot_catch_up_entries,
                        &mut batch,
                    );
                }
                if conf_changed {
                    raft.mut_store().set_conf_state(conf_state, &mut batch);
                }
            }
            if snapshot_due {
                self.entries_since_snapshot = 0;
                self.local_snapshots += 1;
            }
            // No sync: the entries it reflects are synced, and the batch is atomic.
            if let Err(e) = ctx.persist(batch) {
                self.fail_storage(ctx, e);
                return;
            }
        }
        let wanted = self
            .raft
            .as_ref()
            .is_some_and(|raft| raft.store().snapshot_wanted());
        if !wanted {
            return;
        }
        if !self.is_leader() {
            if let Some(raft) = self.raft.as_mut() {
                raft.mut_store().drop_outgoing_snapshot();
            }
            return;
        }
        // raft's message carries the descriptor; the bytes stay with the log and the
        // follower fetches them in chunks (`snapshots`).
        let bytes = self.state.snapshot();
        let descriptor = snapshots::Descriptor::of(&bytes).encode();
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        let conf_state = raft.raft.prs().conf().to_conf_state();
        if raft
            .mut_store()
            .set_outgoing_snapshot(self.state.applied, descriptor, bytes, conf_state)
            .is_ok()
        {
            self.snapshots_built += 1;
        }
    }
}

pub(super) fn single_change(id: u64, kind: ConfChangeType) -> ConfChangeV2 {
    let mut single = ConfChangeSingle {
        node_id: id,
        ..Default::default()
    };
    single.set_change_type(kind);
    let mut change = ConfChangeV2::default();
    change.set_changes(vec![single].into());
    change
}
