//! The member's clock: raft ticks, the leader's duties (lease expiry, learner
//! promotion, snapshots for lagging peers).

#[allow(unused_imports)]
use super::*;

impl Store {
    pub(super) fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(StoreTimer::Tick, self.tick_duration());
        if self.fatal.is_some() || self.raft.is_none() {
            return;
        }
        self.ticks += 1;
        let leader = self.is_leader();
        if self.skip_ticks > 0 && !leader {
            self.skip_ticks -= 1;
        } else if let Some(raft) = self.raft.as_mut() {
            raft.tick();
        }
        let now = ctx.now();
        self.retry_snapshot_chunk(ctx);
        let forget = Duration::from_millis(self.config.pending_write_timeout_ms);
        self.pending_writes
            .retain(|_, pending| now.since(pending.since) < forget);
        if leader {
            self.retry_lost_snapshots();
            self.leader_duties(ctx, now);
        } else {
            self.snapshot_waits.clear();
        }
        // Reads that never got a read index (no leader reachable) are answered.
        let timeout = Duration::from_millis(self.config.read_timeout_ms);
        let expired: Vec<u64> = self
            .pending_reads
            .iter()
            .filter(|(_, r)| now.since(r.since) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for read_id in expired {
            if let Some(read) = self.pending_reads.remove(&read_id) {
                let error = match self.leader_id() {
                    Some(_) => StoreError::Timeout,
                    None => self.no_leader_error(now),
                };
                self.respond(ctx, read.client, read.request_id, Err(error));
            }
        }
        self.watch_duties(ctx);
        self.handle_ready(ctx);
    }

    /// raft-rs keeps a peer that was sent a snapshot paused until the application
    /// reports how the snapshot went; a snapshot message lost on the network would
    /// leave the peer paused for as long as this member leads (seen under the nemesis:
    /// a new learner never caught up, so it was never promoted). A peer still waiting
    /// after `snapshot_retry_ticks` is reported failed, which makes raft probe it and
    /// send a fresh snapshot. A snapshot that did arrive ends the wait by itself (the
    /// peer's append response), so a late report only costs one more probe.
    pub(super) fn retry_lost_snapshots(&mut self) {
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        let ticks = self.ticks;
        let waiting: BTreeSet<u64> = raft
            .raft
            .prs()
            .iter()
            .filter(|(_, progress)| progress.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_waits.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let since = *self.snapshot_waits.entry(id).or_insert(ticks);
            if ticks.saturating_sub(since) >= self.config.snapshot_retry_ticks {
                raft.report_snapshot(id, SnapshotStatus::Failure);
                self.snapshot_waits.remove(&id);
            }
        }
    }

    pub(super) fn leader_duties(&mut self, ctx: &mut Ctx<'_>, now: Time) {
        let expired: Vec<i64> = self
            .lease_deadlines
            .iter()
            .filter(|(id, deadline)| **deadline <= now && !self.revoking.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            // Marked only once proposed: a revocation refused now (no quorum heard
            // lately, proposal dropped) is proposed again on the next tick instead of
            // leaving the lease alive for as long as this member leads.
            if self.propose_from(ctx, None, None, ProposalOp::LeaseRevoke { id }) {
                self.revoking.insert(id);
            }
        }
        // Promote learners that asked for it once they have caught up.
        let Some(raft) = self.raft.as_ref() else {
            return;
        };
        if raft.raft.has_pending_conf() {
            return;
        }
        let committed = raft.raft.raft_log.committed;
        let learners = self.learners();
        let ready: Vec<u64> = learners
            .into_iter()
            .filter(|id| self.state.auto_promote.contains(id) && !self.promoting.contains(id))
            .filter(|id| {
                raft.raft
                    .prs()
                    .get(*id)
                    .is_some_and(|p| p.matched + 16 >= committed && p.matched > 0)
            })
            .collect();
        if let Some(id) = ready.first().copied() {
            self.promoting.insert(id);
            let address = self
                .address_of(id)
                .unwrap_or_else(|| Address::new("?", KIND, 0));
            let mut change = single_change(id, ConfChangeType::AddNode);
            self.next_seq += 1;
            let context = ConfContext {
                origin: self.config.id,
                seq: self.next_seq,
                member: Member {
                    id,
                    address,
                    learner: false,
                },
                auto_promote: false,
            };
            change.context = bincode::serialize(&context)
                .expect("conf context serializes")
                .into();
            if let Some(raft) = self.raft.as_mut() {
                if raft.propose_conf_change(Vec::new(), change).is_err() {
                    self.promoting.remove(&id);
                }
            }
        }
    }
}
