//! Linearizable reads (ranges, read-only txns, lease keep-alives) through raft's
//! ReadIndex.

#[allow(unused_imports)]
use super::*;

/// A read-index request's context: this member's id, then its read id. raft-rs keys
/// the leader's pending read indexes by context and silently drops a request whose
/// context is already pending, so contexts must differ across members (two followers
/// both at read 5 used to collide: one read went unanswered until its timeout).
pub(super) fn read_context(member: u64, read_id: u64) -> Vec<u8> {
    let mut ctx = member.to_be_bytes().to_vec();
    ctx.extend_from_slice(&read_id.to_be_bytes());
    ctx
}

/// The read id of a context this member made (`None`: another member's, or malformed).
pub(super) fn read_id_of(member: u64, ctx: &[u8]) -> Option<u64> {
    let (owner, id) = (ctx.get(..8)?, ctx.get(8..16)?);
    if ctx.len() != 16 || owner != member.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

impl Store {
    /// Asks raft to confirm (with a quorum) that this member's state is current, and
    /// serves `op` once the confirmed index is applied.
    pub(super) fn start_read_index(
        &mut self,
        client: Address,
        request_id: u64,
        op: ReadOp,
        now: Time,
    ) {
        self.next_read += 1;
        let read_id = self.next_read;
        self.pending_reads.insert(
            read_id,
            PendingRead {
                client,
                request_id,
                op,
                since: now,
            },
        );
        if let Some(raft) = self.raft.as_mut() {
            raft.read_index(read_context(self.config.id, read_id));
        }
    }

    /// Renews a lease, once its leadership is confirmed.
    pub(super) fn renew_lease(
        &mut self,
        now: Time,
        lease: i64,
    ) -> Result<StoreResponse, StoreError> {
        if !self.is_leader() {
            return Err(self.not_leader(now));
        }
        // etcd's rule: a lease past its deadline cannot be renewed, even if its
        // revocation has not been applied yet — renewing it here would answer OK and
        // then lose its keys to the revocation already under way.
        let expired = self.revoking.contains(&lease)
            || self.lease_deadlines.get(&lease).is_some_and(|d| *d <= now);
        match self.state.mvcc.lease_ttl(lease) {
            Some(_) if expired => Err(StoreError::LeaseNotFound(lease)),
            Some(ttl) => {
                self.lease_deadlines
                    .insert(lease, now.plus(Duration::from_secs(ttl.max(1) as u64)));
                Ok(StoreResponse::LeaseKeepAlive {
                    id: lease,
                    ttl_seconds: ttl,
                })
            }
            None => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    pub(super) fn serve_ready_reads(&mut self, ctx: &mut Ctx<'_>) {
        let applied = self.state.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .ready_reads
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        self.ready_reads = waiting;
        for (_, read_id) in ready {
            if let Some(read) = self.pending_reads.remove(&read_id) {
                let result = match &read.op {
                    ReadOp::Range(request) => {
                        self.state.mvcc.range(request).map(StoreResponse::Range)
                    }
                    ReadOp::Txn(request) => {
                        self.state.mvcc.txn_read(request).map(StoreResponse::Txn)
                    }
                    ReadOp::KeepAlive(lease) => self.renew_lease(ctx.now(), *lease),
                };
                self.respond(ctx, read.client, read.request_id, result);
            }
        }
    }

    /// Serves a linearizable read once a quorum confirms this member's state is current
    /// (refused without a leader or over `inflight_reads_max`).
    pub(super) fn linearizable_read(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        id: u64,
        op: ReadOp,
    ) {
        let now = ctx.now();
        if self.leader_id().is_none() {
            let error = self.no_leader_error(now);
            self.respond(ctx, from, id, Err(error));
        } else if self.pending_reads.len() >= self.config.inflight_reads_max {
            let limit = self.config.inflight_reads_max;
            self.respond(ctx, from, id, Err(StoreError::TooManyRequests { limit }));
        } else {
            self.start_read_index(from, id, op, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two members' reads with the same read id have different contexts (raft-rs drops
    /// a read whose context is already pending at the leader); a member takes back only
    /// its own.
    #[test]
    fn read_contexts_differ_across_members() {
        assert_ne!(read_context(2, 5), read_context(3, 5));
        assert_eq!(read_id_of(2, &read_context(2, 5)), Some(5));
        assert_eq!(read_id_of(3, &read_context(2, 5)), None);
        assert_eq!(read_id_of(2, &5u64.to_be_bytes()), None);
    }
}
