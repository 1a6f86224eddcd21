//! Client requests: routing, admission of writes, proposals and membership
//! changes.

#[allow(unused_imports)]
use super::*;

impl Store {
    pub(super) fn on_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        id: u64,
        request: StoreRequest,
    ) {
        if let Some(reason) = &self.fatal {
            let error = StoreError::Stopped(reason.clone());
            self.respond(ctx, from, id, Err(error));
            return;
        }
        if self.removed {
            self.respond(
                ctx,
                from,
                id,
                Err(StoreError::Stopped(
                    "this member was removed from the cluster".into(),
                )),
            );
            return;
        }
        let now = ctx.now();
        match request {
            StoreRequest::Range(range) if range.serializable => {
                let result = self.state.mvcc.range(&range).map(StoreResponse::Range);
                self.respond(ctx, from, id, result);
            }
            StoreRequest::Range(range) => {
                self.linearizable_read(ctx, from, id, ReadOp::Range(range))
            }
            StoreRequest::Txn(txn) if txn.is_read_only() => {
                self.linearizable_read(ctx, from, id, ReadOp::Txn(txn))
            }
            StoreRequest::Put(put) => self.propose(ctx, from, id, ProposalOp::Put(put)),
            StoreRequest::DeleteRange(delete) => {
                self.propose(ctx, from, id, ProposalOp::DeleteRange(delete))
            }
            StoreRequest::Txn(txn) => self.propose(ctx, from, id, ProposalOp::Txn(txn)),
            StoreRequest::Compact(compact) => {
                self.propose(ctx, from, id, ProposalOp::Compact(compact))
            }
            StoreRequest::LeaseGrant {
                id: lease,
                ttl_seconds,
            } => {
                if ttl_seconds <= 0 {
                    self.respond(
                        ctx,
                        from,
                        id,
                        Err(StoreError::Invalid("lease TTL must be positive".into())),
                    );
                    return;
                }
                let lease = if lease == 0 && self.is_leader() {
                    // Positive, unused, drawn from the seeded RNG.
                    loop {
                        let candidate = (rand::Rng::gen::<u64>(ctx.rng()) >> 2) as i64 + 1;
                        if self.state.mvcc.lease_ttl(candidate).is_none() {
                            break candidate;
                        }
                    }
                } else {
                    lease
                };
                self.propose(
                    ctx,
                    from,
                    id,
                    ProposalOp::LeaseGrant {
                        id: lease,
                        ttl_seconds,
                    },
                );
            }
            StoreRequest::LeaseRevoke { id: lease } => {
                self.propose(ctx, from, id, ProposalOp::LeaseRevoke { id: lease })
            }
            StoreRequest::LeaseKeepAlive { id: lease } => {
                if !self.is_leader() {
                    let error = self.not_leader(now);
                    self.respond(ctx, from, id, Err(error));
                } else if self.pending_reads.len() >= self.config.inflight_reads_max {
                    let limit = self.config.inflight_reads_max;
                    self.respond(ctx, from, id, Err(StoreError::TooManyRequests { limit }));
                } else {
                    self.start_read_index(from, id, ReadOp::KeepAlive(lease), now);
                }
            }
            StoreRequest::LeaseTimeToLive { id: lease } => {
                if !self.is_leader() {
                    let error = self.not_leader(now);
                    self.respond(ctx, from, id, Err(error));
                    return;
                }
                let result = match (
                    self.state.mvcc.lease_ttl(lease),
                    self.lease_deadlines.get(&lease),
                ) {
                    (Some(granted), deadline) => {
                        let remaining = deadline
                            .map(|d| d.since(now).as_secs() as i64)
                            .unwrap_or(granted);
                        Ok(StoreResponse::LeaseTimeToLive {
                            id: lease,
                            ttl_seconds: remaining,
                            granted_ttl_seconds: granted,
                            keys: self.state.mvcc.lease_keys(lease),
                        })
                    }
                    (None, _) => Err(StoreError::LeaseNotFound(lease)),
                };
                self.respond(ctx, from, id, result);
            }
            StoreRequest::LeaseList => {
                let leases = self.state.mvcc.leases();
                self.respond(ctx, from, id, Ok(StoreResponse::LeaseList { leases }));
            }
            StoreRequest::WatchCreate(create) => self.watch_create(ctx, from, id, create),
            StoreRequest::WatchCancel { watch_id } => {
                self.watchers.remove(&(from.clone(), watch_id));
                self.respond(ctx, from, id, Ok(StoreResponse::WatchCanceled { watch_id }));
            }
            StoreRequest::MemberAdd { address, learner } => {
                self.member_add(ctx, from, id, address, learner)
            }
            StoreRequest::MemberRemove { id: member } => {
                if !self.voters().contains(&member) && !self.learners().contains(&member) {
                    self.respond(
                        ctx,
                        from,
                        id,
                        Err(StoreError::Invalid(format!(
                            "member {member} does not exist"
                        ))),
                    );
                    return;
                }
                self.propose_member_change(ctx, from, id, member, ConfChangeType::RemoveNode);
            }
            StoreRequest::MemberPromote { id: member } => {
                if !self.learners().contains(&member) {
                    self.respond(
                        ctx,
                        from,
                        id,
                        Err(StoreError::Invalid(format!(
                            "member {member} is not a learner"
                        ))),
                    );
                    return;
                }
                self.propose_member_change(ctx, from, id, member, ConfChangeType::AddNode);
            }
            StoreRequest::MemberList => {
                let members = self.member_list();
                let header_revision = self.state.mvcc.current_revision();
                self.respond(
                    ctx,
                    from,
                    id,
                    Ok(StoreResponse::Members {
                        header_revision,
                        members,
                    }),
                );
            }
            StoreRequest::Status => {
                let status = self.status_now(now);
                self.respond(ctx, from, id, Ok(StoreResponse::Status(status)));
            }
        }
        self.schedule_flush(ctx);
    }

    pub(super) fn not_leader(&self, now: Time) -> StoreError {
        match self.leader_id() {
            Some(leader) => StoreError::NotLeader {
                leader: Some(leader),
            },
            None => self.no_leader_error(now),
        }
    }

    /// Admission for anything that goes through the log: leader, quorum, limits. A
    /// follower that knows the leader admits a `forwardable` write too and proposes it
    /// there (raft-rs forwards a follower's proposal to the leader, as etcd's followers
    /// forward puts): the client saves the redirect's round trip, and the follower
    /// answers once the entry applies here. The quorum check is the leader's (a
    /// follower hears only the leader); a forwarded proposal lost on the way leaves
    /// the client to time out and resend (sessions apply it once).
    pub(super) fn admit_write(
        &self,
        now: Time,
        encoded_size: usize,
        forwardable: bool,
    ) -> Result<(), StoreError> {
        let leader = self.is_leader();
        let reachable = self.reachable(now);
        // Forwarded only to a leader heard from within an election timeout: one gone
        // silent is not sent writes that would only time out.
        let forward_to_live_leader =
            forwardable && self.leader_id().is_some_and(|id| reachable.contains(&id));
        if !leader && !forward_to_live_leader {
            return Err(self.not_leader(now));
        }
        let voters = self.voters().len().max(1);
        let needed = voters / 2 + 1;
        let reachable = reachable.len();
        if leader && reachable < needed {
            // The leader has not heard from a quorum lately: refuse now rather than
            // leave the client with an ambiguous timeout.
            return Err(StoreError::NoQuorum {
                reachable,
                members: voters,
                needed,
            });
        }
        if self.pending_writes.len() >= self.config.inflight_proposals_max {
            return Err(StoreError::TooManyRequests {
                limit: self.config.inflight_proposals_max,
            });
        }
        if encoded_size > self.config.limits.max_request_bytes {
            return Err(StoreError::RequestTooLarge {
                size: encoded_size,
                limit: self.config.limits.max_request_bytes,
            });
        }
        Ok(())
    }

    pub(super) fn propose(&mut self, ctx: &mut Ctx<'_>, from: Address, id: u64, op: ProposalOp) {
        let client_request = (self.current_session != 0).then_some((self.current_session, id));
        self.propose_from(ctx, Some((from, id)), client_request, op);
    }

    /// Proposes `op`; false (and the client answered) if it was refused.
    pub(super) fn propose_from(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: Option<(Address, u64)>,
        client_request: Option<(u64, u64)>,
        op: ProposalOp,
    ) -> bool {
        let now = ctx.now();
        self.next_seq += 1;
        let proposal = Proposal {
            origin: self.config.id,
            seq: self.next_seq,
            client_request,
            op,
        };
        let data = bincode::serialize(&proposal).expect("proposal serializes");
        // A grant without an id is the leader's: the leader draws the id.
        let forwardable = !matches!(proposal.op, ProposalOp::LeaseGrant { id: 0, .. });
        if let Err(error) = self.admit_write(now, data.len(), forwardable) {
            if let Some((to, request_id)) = client {
                self.respond(ctx, to, request_id, Err(error));
            }
            return false;
        }
        let Some(raft) = self.raft.as_mut() else {
            return false;
        };
        match raft.propose(Vec::new(), data) {
            Ok(()) => {
                self.proposals_since_flush += 1;
                if !self.is_leader() {
                    self.proposals_forwarded += 1;
                }
                self.pending_writes
                    .insert(proposal.seq, PendingWrite { client, since: now });
                true
            }
            Err(e) => {
                if let Some((to, request_id)) = client {
                    let error = match e {
                        raft::Error::ProposalDropped => StoreError::NotLeader {
                            leader: self.leader_id(),
                        },
                        other => StoreError::Invalid(format!("proposal refused: {other}")),
                    };
                    self.respond(ctx, to, request_id, Err(error));
                }
                false
            }
        }
    }

    /// Proposes removing or promoting a member already in the directory.
    pub(super) fn propose_member_change(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        id: u64,
        member: u64,
        kind: ConfChangeType,
    ) {
        let change = single_change(member, kind);
        let address = self
            .address_of(member)
            .unwrap_or_else(|| Address::new("?", KIND, 0));
        let member = Member {
            id: member,
            address,
            learner: false,
        };
        self.propose_conf_change(ctx, from, id, change, member, false);
    }

    pub(super) fn propose_conf_change(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        id: u64,
        change: ConfChangeV2,
        member: Member,
        auto_promote: bool,
    ) {
        let now = ctx.now();
        // Membership changes are the leader's: it checks learners' progress first.
        if let Err(error) = self.admit_write(now, 0, false) {
            self.respond(ctx, from, id, Err(error));
            return;
        }
        if self
            .raft
            .as_ref()
            .is_some_and(|r| r.raft.has_pending_conf())
        {
            let error = StoreError::Invalid(
                "another membership change is in progress; retry shortly".into(),
            );
            self.respond(ctx, from, id, Err(error));
            return;
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let mut change = change;
        let context = ConfContext {
            origin: self.config.id,
            seq,
            member,
            auto_promote,
        };
        change.context = bincode::serialize(&context)
            .expect("conf context serializes")
            .into();
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        match raft.propose_conf_change(Vec::new(), change) {
            Ok(()) => {
                self.pending_writes.insert(
                    seq,
                    PendingWrite {
                        client: Some((from, id)),
                        since: now,
                    },
                );
            }
            Err(e) => {
                self.respond(
                    ctx,
                    from,
                    id,
                    Err(StoreError::Invalid(format!(
                        "membership change refused: {e}"
                    ))),
                );
            }
        }
    }

    pub(super) fn member_add(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        id: u64,
        address: Address,
        learner: bool,
    ) {
        if self.state.members.values().any(|m| m.address == address) {
            self.respond(
                ctx,
                from,
                id,
                Err(StoreError::Invalid(format!(
                    "{address} is already a member"
                ))),
            );
            return;
        }
        let mut known: BTreeSet<u64> = self.state.members.keys().copied().collect();
        known.extend(self.voters());
        known.extend(self.learners());
        let new_id = known.iter().max().copied().unwrap_or(0) + 1;
        let change = single_change(new_id, ConfChangeType::AddLearnerNode);
        let member = Member {
            id: new_id,
            address,
            learner: true,
        };
        self.propose_conf_change(ctx, from, id, change, member, !learner);
    }
}
