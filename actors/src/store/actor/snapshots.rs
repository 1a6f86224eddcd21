//! Whole-state snapshots for a follower behind the log's start, sent in chunks.
//!
//! raft-rs sends a snapshot as one raft message. keel's carries only a [`Descriptor`]
//! (index, term, length, checksum); the leader keeps the state's bytes beside it
//! (`RaftLog::outgoing_bytes`, built when raft asked for a snapshot: see
//! `RaftLog::snapshot`), and the follower, before it hands raft the message, fetches
//! them in chunks of `snapshot_chunk_bytes` — one request in flight, each asked for
//! again after `snapshot_chunk_retry_ticks`, the transfer given up after
//! `snapshot_chunk_retries` unanswered tries or when the leader no longer holds the
//! snapshot (raft's own retry, `snapshot_retry_ticks`, then sends a new one). The
//! follower checks the length and checksum, puts the bytes into the message and steps
//! it; raft then installs it as before (`raft_io`).
//!
//! Why: etcd streams its bbolt file to such a follower; keel sent the whole state in
//! one message, which the real transport drops above its frame limit (16 MiB), so a
//! member behind a larger store could never catch up, and a message of hundreds of MB
//! would hold the link for its whole length.

#[allow(unused_imports)]
use super::*;

/// Marks a descriptor, so it is never mistaken for a state's bytes.
const DESCRIPTOR_MAGIC: u64 = 0x6b65_656c_736e_6170; // "keelsnap"

/// What a snapshot message carries instead of the state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Descriptor {
    magic: u64,
    pub(super) len: u64,
    pub(super) crc: u32,
}

impl Descriptor {
    pub(super) fn of(bytes: &[u8]) -> Descriptor {
        Descriptor {
            magic: DESCRIPTOR_MAGIC,
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("a descriptor encodes")
    }

    /// The descriptor in a snapshot's data, if that is what it holds.
    pub(super) fn decode(data: &[u8]) -> Option<Descriptor> {
        bincode::deserialize::<Descriptor>(data)
            .ok()
            .filter(|d| d.magic == DESCRIPTOR_MAGIC)
    }
}

/// A transfer in progress on a follower.
pub(super) struct Incoming {
    /// The raft message to step once the bytes are in.
    message: raft::eraftpb::Message,
    leader: Address,
    index: u64,
    term: u64,
    descriptor: Descriptor,
    received: Vec<u8>,
    asked_at_tick: u64,
    tries: u32,
}

impl Store {
    /// A raft snapshot message arrived: a descriptor starts a transfer (or is a copy
    /// of the one under way); anything else is stepped as it is. Returns the message
    /// when it should be stepped now.
    pub(super) fn on_snapshot_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        message: raft::eraftpb::Message,
    ) -> Option<raft::eraftpb::Message> {
        let meta = message.get_snapshot().get_metadata();
        let (index, term) = (meta.index, meta.term);
        let Some(descriptor) = Descriptor::decode(message.get_snapshot().get_data()) else {
            return Some(message);
        };
        if self
            .incoming
            .as_ref()
            .is_some_and(|t| t.index == index && t.term == term)
        {
            return None;
        }
        if index <= self.state.applied {
            // Nothing to fetch: raft refuses a snapshot it is past, and answers so.
            return Some(message);
        }
        self.incoming = Some(Incoming {
            message,
            leader: from,
            index,
            term,
            received: Vec::with_capacity(descriptor.len.min(64 * 1024 * 1024) as usize),
            descriptor,
            asked_at_tick: self.ticks,
            tries: 0,
        });
        self.ask_next_chunk(ctx);
        None
    }

    fn ask_next_chunk(&mut self, ctx: &mut Ctx<'_>) {
        let ticks = self.ticks;
        let Some(incoming) = self.incoming.as_mut() else {
            return;
        };
        incoming.asked_at_tick = ticks;
        incoming.tries += 1;
        ctx.send(
            incoming.leader.clone(),
            Message::Store(StoreMessage::SnapshotChunkRequest {
                index: incoming.index,
                term: incoming.term,
                offset: incoming.received.len() as u64,
            }),
        );
    }

    /// Leader: answers a chunk of the snapshot it holds (or that it holds none).
    pub(super) fn on_snapshot_chunk_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Address,
        index: u64,
        term: u64,
        offset: u64,
    ) {
        let bytes = self
            .raft
            .as_ref()
            .and_then(|raft| raft.store().outgoing_bytes(index, term))
            .filter(|bytes| offset <= bytes.len() as u64)
            .map(|bytes| {
                let start = offset as usize;
                let end = (start + self.config.snapshot_chunk_bytes).min(bytes.len());
                serde_bytes::ByteBuf::from(bytes[start..end].to_vec())
            });
        ctx.send(
            from,
            Message::Store(StoreMessage::SnapshotChunk {
                index,
                term,
                offset,
                bytes,
            }),
        );
    }

    /// Follower: takes a chunk; once every byte is in and checks out, steps the
    /// snapshot message into raft with the state in it.
    pub(super) fn on_snapshot_chunk(
        &mut self,
        ctx: &mut Ctx<'_>,
        index: u64,
        term: u64,
        offset: u64,
        bytes: Option<serde_bytes::ByteBuf>,
    ) {
        let Some(incoming) = self.incoming.as_mut() else {
            return;
        };
        if incoming.index != index || incoming.term != term {
            return;
        }
        if offset != incoming.received.len() as u64 {
            // A late or duplicated answer to an earlier request.
            return;
        }
        let Some(bytes) = bytes else {
            // The leader no longer holds it; it will send another.
            self.incoming = None;
            return;
        };
        if bytes.is_empty() && (incoming.received.len() as u64) < incoming.descriptor.len {
            self.incoming = None;
            return;
        }
        incoming.received.extend_from_slice(&bytes);
        incoming.tries = 0;
        self.snapshot_chunks_received += 1;
        let len = incoming.received.len() as u64;
        if len < incoming.descriptor.len {
            self.ask_next_chunk(ctx);
            return;
        }
        let Some(incoming) = self.incoming.take() else {
            return;
        };
        if len != incoming.descriptor.len
            || crc32fast::hash(&incoming.received) != incoming.descriptor.crc
        {
            // Damaged on the way (or a leader's bytes that changed): never installed.
            self.snapshot_transfers_failed += 1;
            return;
        }
        let mut message = incoming.message;
        message.mut_snapshot().set_data(incoming.received.into());
        self.snapshots_received += 1;
        if let Some(raft) = self.raft.as_mut() {
            let _ = raft.step(message);
        }
        self.schedule_flush(ctx);
    }

    /// On every tick: asks again for a chunk gone unanswered, or gives the transfer up.
    pub(super) fn retry_snapshot_chunk(&mut self, ctx: &mut Ctx<'_>) {
        let Some(incoming) = self.incoming.as_ref() else {
            return;
        };
        if self.ticks.saturating_sub(incoming.asked_at_tick)
            < self.config.snapshot_chunk_retry_ticks
        {
            return;
        }
        if incoming.tries >= self.config.snapshot_chunk_retries {
            self.incoming = None;
            self.snapshot_transfers_failed += 1;
            return;
        }
        self.ask_next_chunk(ctx);
    }
}
