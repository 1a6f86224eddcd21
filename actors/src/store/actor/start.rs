//! Starting and recovering a member from its storage.

#[allow(unused_imports)]
use super::*;

impl Store {
    pub(super) fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        // The first tick at a random point within one tick: members started at the
        // same instant (a whole cluster restarted at once) would otherwise tick in
        // phase, time out together and split their votes term after term (seen in
        // the simulator: store-membership --nemesis seed 363, seven seconds without a
        // leader after a restart of every member).
        let tick_ms = self.config.tick_ms.max(1);
        let first = rand::Rng::gen_range(ctx.rng(), 1..=tick_ms);
        ctx.set_timer(StoreTimer::Tick, Duration::from_millis(first));
        if let Err(reason) = self.recover(ctx) {
            ctx.control(Control::Fatal {
                reason: format!("member {}: {reason}", self.config.id),
            });
            self.fatal = Some(reason);
            return;
        }
        // Proposal sequence numbers start at a random point so that entries proposed
        // by an earlier incarnation of this member are never mistaken for new ones.
        self.next_seq = rand::Rng::gen::<u64>(ctx.rng()) >> 1;
        self.handle_ready(ctx);
    }

    pub(super) fn recover(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let member = self.config.id;
        let storage_error = move |e: keel_engine::StorageError| format!("member {member}: {e}");
        let meta = ctx.storage().get(KEY_META).map_err(storage_error)?;
        let mut log = match meta {
            Some(bytes) => {
                let meta: Meta = bincode::deserialize(&bytes).map_err(|e| {
                    format!("data directory is corrupt: member metadata does not decode ({e})")
                })?;
                if meta.magic != META_MAGIC {
                    return Err(format!(
                        "data directory is not a keel store ({:?})",
                        meta.magic
                    ));
                }
                if meta.member_id != self.config.id {
                    return Err(format!(
                        "data directory belongs to member {}, not member {}",
                        meta.member_id, self.config.id
                    ));
                }
                RaftLog::load(ctx.storage())
                    .map_err(|e| format!("data directory is corrupt: {e}"))?
            }
            None => {
                let any = ctx.storage().scan(&[], None, 1).map_err(storage_error)?;
                if !any.is_empty() {
                    return Err(
                        "data directory holds data that is not a keel store member's".into(),
                    );
                }
                let voters = if self.config.join {
                    Vec::new()
                } else {
                    self.config
                        .initial_members
                        .iter()
                        .map(|(id, _)| *id)
                        .collect()
                };
                let founding = !voters.is_empty();
                let (log, mut batch) = RaftLog::bootstrap(voters);
                if founding {
                    // The fresh state at the bootstrap snapshot: empty MVCC, the
                    // initial members, no sessions.
                    self.state.applied = 1;
                    self.write_whole_state(ctx, &mut batch)
                        .map_err(storage_error)?;
                }
                let meta = Meta {
                    magic: META_MAGIC.into(),
                    member_id: self.config.id,
                };
                batch.put(
                    KEY_META,
                    bincode::serialize(&meta).expect("meta serializes"),
                );
                ctx.persist(batch).map_err(storage_error)?;
                ctx.sync().map_err(storage_error)?;
                log
            }
        };
        let snapshot_index = log.last_snapshot().get_metadata().index;
        let applied = match checkpoint::load(ctx.storage())
            .map_err(|e| format!("data directory is corrupt: {e}"))?
        {
            Some((state, persisted)) => {
                if state.applied < snapshot_index {
                    return Err(format!(
                        "data directory is corrupt: the state is at entry {}, below the log's snapshot at {snapshot_index}",
                        state.applied
                    ));
                }
                self.state = state;
                self.persisted = persisted;
                self.state.applied
            }
            None if !log.last_snapshot().get_data().is_empty() => {
                // A data directory from before checkpoints: its state is the snapshot's
                // data. Moved into the checkpoint layout once.
                let data = log.last_snapshot().get_data().to_vec();
                self.state.restore(&data, snapshot_index)?;
                log.adopt_snapshot_conf_state();
                let mut batch = WriteBatch::new();
                self.write_whole_state(ctx, &mut batch)
                    .map_err(storage_error)?;
                log.forget_snapshot_data(&mut batch);
                ctx.persist(batch).map_err(storage_error)?;
                ctx.sync().map_err(storage_error)?;
                snapshot_index
            }
            None => {
                // A joiner that has not been sent a snapshot yet.
                self.state.applied = snapshot_index;
                snapshot_index
            }
        };
        if applied > log.hard_state().commit {
            // Storage keeps batches in order, and the commit index is written before
            // the entries it covers are applied: a state ahead of it is not ours.
            return Err(format!(
                "data directory is corrupt: the state is at entry {applied}, beyond the commit index {}",
                log.hard_state().commit
            ));
        }
        let raft_config = raft_config(&self.config, applied);
        let node = RawNode::new(&raft_config, log, &self.logger)
            .map_err(|e| format!("raft refused to start: {e}"))?;
        self.raft = Some(node);
        let role_skip = self.config.election_ticks;
        self.skip_ticks = rand::Rng::gen_range(ctx.rng(), 0..role_skip);
        Ok(())
    }
}

/// raft-rs's configuration for a member. raft-rs draws each randomized election timeout
/// from the process-wide `thread_rng` over `[min_election_tick, max_election_tick)`:
/// keel keeps that range one tick wide so the draw has a single outcome and runs stay
/// deterministic (the member randomises elections itself, from its seeded RNG, by
/// withholding ticks). Widening the range would make runs depend on `thread_rng`.
pub(super) fn raft_config(config: &StoreConfig, applied: u64) -> raft::Config {
    let raft_config = raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        min_election_tick: config.election_ticks,
        max_election_tick: config.election_ticks + 1,
        applied,
        max_size_per_msg: config.max_size_per_msg,
        max_inflight_msgs: config.max_inflight_msgs,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    assert_eq!(
        raft_config.max_election_tick,
        raft_config.min_election_tick + 1,
        "raft-rs draws election jitter outside the member's seeded RNG: its range must stay one tick wide"
    );
    raft_config
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The randomized election timeout raft-rs draws from `thread_rng` has exactly one
    /// possible value, for every member configuration (default and adjusted).
    #[test]
    fn raft_draws_its_election_timeout_from_a_single_value() {
        let mut config = StoreConfig::new(1, Vec::new());
        for ticks in [config.election_ticks, 3, 50] {
            config.election_ticks = ticks;
            let raft = raft_config(&config, 0);
            assert_eq!(raft.min_election_tick, ticks);
            assert_eq!(raft.max_election_tick - raft.min_election_tick, 1);
        }
    }
}
