//! The TCP bus between keel processes.
//!
//! Owns: the listening socket, one outbound connection per peer node, the inbound
//! connections peers open to us, and the wire format. Touches: the network only; what
//! arrives is handed to the host through a bounded [`Inbox`].
//!
//! Wire format. Every frame is a `u32` big-endian length followed by that many bytes.
//! The first frame a connection carries is a bincode [`Handshake`] (magic `KEELBUS1`,
//! [`WIRE_VERSION`], the sender's node name); every later frame is one bincode
//! [`Envelope`]. Connections are one-way: the node that dials only writes, the node that
//! accepts only reads, so each pair of nodes uses two connections.
//!
//! Identify. A handshake naming the reserved node [`IDENTIFY_NODE`] asks "who are you?":
//! the receiver writes back one handshake frame naming itself and closes. This is the
//! only frame a receiver ever writes; clients use it ([`identify`]) to accept plain
//! `host:port` endpoints as etcdctl does, learning each member's node name.
//!
//! Refusals. A handshake that is late (`handshake_timeout_ms`), too long, malformed, of
//! another magic or version, or names no node; a frame longer than `max_frame_bytes`;
//! an envelope that does not decode or is of another version; an envelope addressed to
//! another node or claiming to come from a node other than the one the handshake named:
//! each is logged with the peer's address and closes *that* connection only. The
//! process keeps serving every other peer.
//!
//! Delivery semantics: at-most-once datagrams, as in the simulator's network. Actors
//! already tolerate loss, so the transport never blocks an actor and never retries a
//! message:
//! * each peer has a bounded queue (`send_queue_capacity`); when it is full the NEW
//!   message is dropped and counted in `dropped_queue_full` (old messages keep their
//!   place, so a reconnecting peer sees an in-order prefix of what was sent);
//! * a message being written when the connection breaks is lost;
//! * a peer that stops reading for `write_timeout_ms` is treated as broken.
//!
//! Reconnection: the per-peer task reconnects after any failure with exponential backoff
//! (`backoff_initial_ms` doubling up to `backoff_max_ms`) and full jitter, so peers that
//! lost each other at the same moment do not redial in lockstep.
//!
//! Inbound backpressure: decoded envelopes go to a bounded inbox (`inbox_capacity`);
//! while it is full a connection's reader waits, which stalls that peer's TCP stream and
//! in turn fills (and drops at) that peer's send queue. Nothing grows without bound.

use keel_actors::Message;
use keel_engine::{Envelope, NodeId, WIRE_VERSION};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

/// The first eight bytes of every handshake: "this is a keel bus connection".
pub const HANDSHAKE_MAGIC: [u8; 8] = *b"KEELBUS1";

/// A handshake is a few dozen bytes; anything longer is not one.
pub const HANDSHAKE_MAX_BYTES: usize = 4096;

/// How long the accept loop pauses after a failed `accept` (say, out of file
/// descriptors) so that it does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

/// The node name a handshake uses to ask the receiver for its own name (see the module
/// docs); not a valid name for a real node.
pub const IDENTIFY_NODE: &str = "?identify";

/// Read buffer per inbound connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Queued frames are coalesced into writes of up to about this many bytes.
const WRITE_COALESCE_BYTES: usize = 256 * 1024;

/// Validated envelopes for this node's actors, in arrival order per connection.
pub type Inbox = mpsc::Receiver<Envelope<Message>>;

/// The first frame on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    pub magic: [u8; 8],
    pub wire_version: u16,
    /// The dialling node's name.
    pub node: String,
    /// Where the dialling node listens, so that a node that does not know it (a client,
    /// a member joining later) can answer: the receiver dials back to this address.
    pub listen: Option<SocketAddr>,
}

impl Handshake {
    pub fn new(node: &NodeId, listen: Option<SocketAddr>) -> Handshake {
        Handshake {
            magic: HANDSHAKE_MAGIC,
            wire_version: WIRE_VERSION,
            node: node.as_str().to_string(),
            listen,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // An in-memory value of our own type into a Vec: serialization cannot fail.
        bincode::serialize(self).expect("handshake serialization is infallible")
    }

    /// Decodes and validates a handshake from a peer; the error says why it was refused.
    pub fn decode(bytes: &[u8]) -> Result<Handshake, String> {
        use bincode::Options;
        let handshake: Handshake = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_limit(HANDSHAKE_MAX_BYTES as u64)
            .reject_trailing_bytes()
            .deserialize(bytes)
            .map_err(|e| format!("handshake is not valid bincode: {e}"))?;
        if handshake.magic != HANDSHAKE_MAGIC {
            return Err(format!(
                "handshake magic {:?} is not {:?} (not a keel bus peer)",
                String::from_utf8_lossy(&handshake.magic),
                String::from_utf8_lossy(&HANDSHAKE_MAGIC)
            ));
        }
        if handshake.wire_version != WIRE_VERSION {
            return Err(format!(
                "peer speaks wire version {}, this node speaks {WIRE_VERSION}; run the same keel version on both",
                handshake.wire_version
            ));
        }
        if handshake.node.is_empty() {
            return Err("handshake names no node".to_string());
        }
        Ok(handshake)
    }
}

/// Every limit of the transport, with its unit in its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// The largest envelope accepted or sent, in bytes.
    pub max_frame_bytes: usize,
    /// Messages waiting for one peer; beyond it new messages are dropped.
    pub send_queue_capacity: usize,
    /// The first reconnect delay bound; it doubles after each failure.
    pub backoff_initial_ms: u64,
    /// The largest reconnect delay bound.
    pub backoff_max_ms: u64,
    /// How long a dialled or accepted connection has to complete its handshake.
    pub handshake_timeout_ms: u64,
    /// How long one frame may take to write before the connection counts as broken.
    pub write_timeout_ms: u64,
    /// Envelopes received but not yet taken by the host (also each actor's mailbox size).
    pub inbox_capacity: usize,
    /// Inbound connections served at once; more are refused.
    pub max_inbound_connections: usize,
    /// Peers learned from handshakes (clients, joining members) at most; beyond it a
    /// new node's messages are received but cannot be answered.
    #[serde(default = "default_dynamic_peers_max")]
    pub dynamic_peers_max: usize,
}

fn default_dynamic_peers_max() -> usize {
    1024
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame_bytes: 16 * 1024 * 1024,
            send_queue_capacity: 1024,
            backoff_initial_ms: 50,
            backoff_max_ms: 2000,
            handshake_timeout_ms: 5000,
            write_timeout_ms: 5000,
            inbox_capacity: 4096,
            max_inbound_connections: 1024,
            dynamic_peers_max: default_dynamic_peers_max(),
        }
    }
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    low: T,
    high: T,
) -> Result<(), TransportError> {
    if value < low || value > high {
        return Err(TransportError::Config(format!(
            "{name} must be within {low}..={high}, got {value}"
        )));
    }
    Ok(())
}

impl TransportConfig {
    /// Refuses zero and absurd limits.
    pub fn validate(&self) -> Result<(), TransportError> {
        check_range("max_frame_bytes", self.max_frame_bytes, 1024, 1 << 30)?;
        check_range(
            "send_queue_capacity",
            self.send_queue_capacity,
            1,
            1_000_000,
        )?;
        check_range("backoff_initial_ms", self.backoff_initial_ms, 1, 60_000)?;
        check_range(
            "backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_initial_ms,
            600_000,
        )?;
        check_range(
            "handshake_timeout_ms",
            self.handshake_timeout_ms,
            1,
            600_000,
        )?;
        check_range("write_timeout_ms", self.write_timeout_ms, 1, 600_000)?;
        check_range("inbox_capacity", self.inbox_capacity, 1, 1_000_000)?;
        check_range(
            "max_inbound_connections",
            self.max_inbound_connections,
            1,
            100_000,
        )?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid transport configuration: {0}")]
    Config(String),
    #[error("cannot listen on {address}: {source} (is another process using that port, or is the address not on this machine?)")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the transport must be started inside a tokio runtime")]
    NoRuntime,
}

/// The transport's counters, as shown in status lines and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportStats {
    /// Envelopes written to a peer's socket.
    pub frames_sent: u64,
    /// Envelopes received, validated and handed to the inbox.
    pub frames_received: u64,
    /// New messages dropped because their peer's send queue was full.
    pub dropped_queue_full: u64,
    /// Messages for a node that is not a configured peer.
    pub dropped_unknown_node: u64,
    /// Messages whose encoding exceeds `max_frame_bytes`.
    pub dropped_too_large: u64,
    /// Inbound connections closed for a bad handshake or frame, or over the limit.
    pub connections_rejected: u64,
    /// Outbound reconnect attempts after a failed or broken connection.
    pub reconnects: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames_sent: AtomicU64,
    frames_received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unknown_node: AtomicU64,
    dropped_too_large: AtomicU64,
    connections_rejected: AtomicU64,
    reconnects: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> TransportStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            frames_sent: read(&self.frames_sent),
            frames_received: read(&self.frames_received),
            dropped_queue_full: read(&self.dropped_queue_full),
            dropped_unknown_node: read(&self.dropped_unknown_node),
            dropped_too_large: read(&self.dropped_too_large),
            connections_rejected: read(&self.connections_rejected),
            reconnects: read(&self.reconnects),
        }
    }
}

/// What became of a message handed to [`Transport::send`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// In the peer's queue; it will be written unless the connection breaks first.
    Queued,
    /// Dropped: the peer's queue was full.
    DroppedQueueFull,
    /// Dropped: the destination node is not a configured peer.
    UnknownNode,
    /// Dropped: the encoded envelope exceeds `max_frame_bytes`.
    TooLarge,
    /// Dropped: the transport has shut down.
    Stopped,
}

/// A bound listening socket, before the transport starts serving it. Binding first lets
/// callers learn the port (tests bind port 0) before they tell peers about it.
#[derive(Debug)]
pub struct BoundListener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl BoundListener {
    pub async fn bind(address: SocketAddr) -> Result<BoundListener, TransportError> {
        let bind_error = |source| TransportError::Bind { address, source };
        let listener = TcpListener::bind(address).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(BoundListener {
            listener,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// The running transport: cheap to clone; the tasks stop when the last clone is dropped
/// or on [`Transport::shutdown`].
#[derive(Clone, Debug)]
pub struct Transport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: NodeId,
    local_addr: SocketAddr,
    max_frame_bytes: usize,
    /// Encoded frames (length prefix included) waiting for each peer's task; peers
    /// that introduced themselves with a listen address are added as they come.
    outbound: Arc<Mutex<BTreeMap<NodeId, mpsc::Sender<Vec<u8>>>>>,
    counters: Arc<Counters>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    runtime: tokio::runtime::Handle,
    inbound: InboundShared,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data regardless.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).iter() {
            task.abort();
        }
    }
}

impl Transport {
    /// Starts serving `listener` and one outbound task per peer. Must run inside a tokio
    /// runtime. Returns the transport and the inbox of validated envelopes for this node.
    pub fn start(
        node: NodeId,
        listener: BoundListener,
        peers: BTreeMap<NodeId, SocketAddr>,
        config: TransportConfig,
    ) -> Result<(Transport, Inbox), TransportError> {
        config.validate()?;
        if node.as_str().is_empty() {
            return Err(TransportError::Config("the node name is empty".into()));
        }
        if peers.contains_key(&node) {
            return Err(TransportError::Config(format!(
                "the peer list names this node ({node}) itself; list only the other nodes"
            )));
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let counters = Arc::new(Counters::default());
        let (inbox_sender, inbox) = mpsc::channel(config.inbox_capacity);
        let local_addr = listener.local_addr;
        let outbound = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let dialer = Dialer {
            local_node: node.clone(),
            local_listen: local_addr,
            config: config.clone(),
            counters: counters.clone(),
            outbound: outbound.clone(),
            tasks: tasks.clone(),
            runtime: runtime.clone(),
            dynamic_peers: Arc::new(AtomicU64::new(0)),
        };
        for (peer, address) in peers {
            dialer.add_peer(peer, address);
        }
        let inbound = InboundShared {
            node: node.clone(),
            config: config.clone(),
            counters: counters.clone(),
            inbox: inbox_sender,
            dialer,
        };
        let accept = runtime.spawn(accept_loop(listener.listener, inbound.clone()));
        lock(&tasks).push(accept.abort_handle());
        let inner = Inner {
            node,
            local_addr,
            max_frame_bytes: config.max_frame_bytes,
            outbound,
            counters,
            tasks,
            runtime,
            inbound,
        };
        Ok((
            Transport {
                inner: Arc::new(inner),
            },
            inbox,
        ))
    }

    pub fn node(&self) -> &NodeId {
        &self.inner.node
    }

    /// Serves one more listener with the same rules (a member's client address).
    pub fn serve(&self, listener: BoundListener) {
        let task = self
            .inner
            .runtime
            .spawn(accept_loop(listener.listener, self.inner.inbound.clone()));
        lock(&self.inner.tasks).push(task.abort_handle());
    }

    /// The address the listener is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Queues `envelope` for its destination node without waiting: at-most-once (see the
    /// module docs for when a message is dropped).
    pub fn send(&self, envelope: &Envelope<Message>) -> SendOutcome {
        let counters = &self.inner.counters;
        let Some(queue) = lock(&self.inner.outbound).get(&envelope.to.node).cloned() else {
            bump(&counters.dropped_unknown_node);
            return SendOutcome::UnknownNode;
        };
        let body = envelope.encode();
        if body.len() > self.inner.max_frame_bytes {
            bump(&counters.dropped_too_large);
            return SendOutcome::TooLarge;
        }
        let frame = frame_bytes(&body);
        match queue.try_send(frame) {
            Ok(()) => SendOutcome::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&counters.dropped_queue_full);
                SendOutcome::DroppedQueueFull
            }
            Err(mpsc::error::TrySendError::Closed(_)) => SendOutcome::Stopped,
        }
    }

    pub fn stats(&self) -> TransportStats {
        self.inner.counters.snapshot()
    }

    /// Stops listening, closes every connection and stops the peer tasks. Messages still
    /// queued are dropped (at-most-once).
    pub fn shutdown(&self) {
        for task in lock(&self.inner.tasks).iter() {
            task.abort();
        }
    }
}

/// Prefixes `body` with its big-endian length.
fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 4);
    // Callers pass handshakes or envelopes within max_frame_bytes (validated to at most
    // 1 GiB), so the length fits in a u32.
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// Asks the keel node listening at `address` for its node name (the identify exchange in
/// the module docs), within `timeout`. Blocking: for command-line clients before their
/// bus node starts. The error says what answered instead (nothing, not keel, another
/// wire version).
pub fn identify(address: SocketAddr, timeout: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("{address}: cannot connect: {e}"))?;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
            "{address}: no answer within {} ms (not a keel bus listener, or overloaded)",
            timeout.as_millis()
        ),
        _ => format!("{address}: no keel node answered: {e}"),
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let question = Handshake {
        magic: HANDSHAKE_MAGIC,
        wire_version: WIRE_VERSION,
        node: IDENTIFY_NODE.to_string(),
        listen: None,
    };
    stream
        .write_all(&frame_bytes(&question.encode()))
        .map_err(io)?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).map_err(io)?;
    let length = u32::from_be_bytes(header) as usize;
    if length > HANDSHAKE_MAX_BYTES {
        return Err(format!(
            "{address}: answered with a {length}-byte frame: not a keel bus listener"
        ));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).map_err(io)?;
    let answer = Handshake::decode(&body).map_err(|e| format!("{address}: {e}"))?;
    if answer.node == IDENTIFY_NODE {
        return Err(format!("{address}: answered with the identify name itself"));
    }
    Ok(answer.node)
}

/// Why reading a frame stopped.
#[derive(Debug)]
enum FrameEnd {
    /// The peer closed the connection between frames.
    Closed,
    /// The connection failed (reset, closed mid-frame).
    Io(std::io::Error),
    /// The peer sent something we refuse; the reason is logged.
    Rejected(String),
}

/// Reads one length-prefixed frame of at most `limit` bytes.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, FrameEnd> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameEnd::Closed),
        Err(e) => return Err(FrameEnd::Io(e)),
    }
    let length = u32::from_be_bytes(header) as usize;
    if length > limit {
        return Err(FrameEnd::Rejected(format!(
            "{what} frame claims {length} bytes, over the limit of {limit} bytes"
        )));
    }
    // Bounded by `limit`, which the configuration caps.
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.map_err(FrameEnd::Io)?;
    Ok(body)
}

/// What every inbound connection shares.
#[derive(Clone, Debug)]
struct InboundShared {
    node: NodeId,
    config: TransportConfig,
    counters: Arc<Counters>,
    inbox: mpsc::Sender<Envelope<Message>>,
    dialer: Dialer,
}

async fn accept_loop(listener: TcpListener, shared: InboundShared) {
    // Dropping the set (when this task is aborted) aborts every connection task in it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= shared.config.max_inbound_connections {
                        bump(&shared.counters.connections_rejected);
                        tracing::warn!(
                            %peer,
                            limit = shared.config.max_inbound_connections,
                            "refusing inbound connection: too many inbound connections"
                        );
                        drop(stream);
                        continue;
                    }
                    connections.spawn(serve_inbound(stream, peer, shared.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                }
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_inbound(mut stream: TcpStream, peer: SocketAddr, shared: InboundShared) {
    // Buffered: a burst of small frames costs one read syscall, not two per frame.
    let mut stream = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, &mut stream);
    let end = read_inbound(&mut stream, peer, &shared).await;
    match end {
        FrameEnd::Closed => tracing::debug!(%peer, "inbound connection closed by peer"),
        FrameEnd::Io(error) => tracing::info!(%peer, %error, "inbound connection failed"),
        FrameEnd::Rejected(reason) => {
            bump(&shared.counters.connections_rejected);
            tracing::warn!(%peer, %reason, "closing inbound connection");
        }
    }
    // Dropping the stream closes this connection only.
}

/// Serves one inbound connection until it ends; returns why it ended.
async fn read_inbound(
    stream: &mut tokio::io::BufReader<&mut TcpStream>,
    peer: SocketAddr,
    shared: &InboundShared,
) -> FrameEnd {
    let handshake_timeout = Duration::from_millis(shared.config.handshake_timeout_ms);
    let handshake_bytes = match tokio::time::timeout(
        handshake_timeout,
        read_frame(stream, HANDSHAKE_MAX_BYTES, "handshake"),
    )
    .await
    {
        Err(_elapsed) => {
            return FrameEnd::Rejected(format!(
                "no handshake within {} ms",
                shared.config.handshake_timeout_ms
            ))
        }
        Ok(Err(end)) => return end,
        Ok(Ok(bytes)) => bytes,
    };
    let handshake = match Handshake::decode(&handshake_bytes) {
        Ok(handshake) => handshake,
        Err(reason) => return FrameEnd::Rejected(reason),
    };
    if handshake.node == IDENTIFY_NODE {
        let answer = frame_bytes(&Handshake::new(&shared.node, None).encode());
        let written = tokio::time::timeout(handshake_timeout, stream.get_mut().write_all(&answer));
        return match written.await {
            Ok(Ok(())) => {
                tracing::debug!(%peer, "answered an identify request");
                FrameEnd::Closed
            }
            Ok(Err(error)) => FrameEnd::Io(error),
            Err(_elapsed) => FrameEnd::Rejected("identify answer not taken in time".into()),
        };
    }
    tracing::debug!(%peer, node = %handshake.node, "inbound connection accepted");
    if let Some(listen) = handshake.listen {
        if !shared.dialer.learn(&handshake.node, listen) {
            tracing::warn!(node = %handshake.node, limit = shared.config.dynamic_peers_max,
                "not learning a new peer: too many peers learned from handshakes");
        }
    }
    let limit = shared.config.max_frame_bytes;
    loop {
        let body = match read_frame(stream, limit, "envelope").await {
            Ok(body) => body,
            Err(end) => return end,
        };
        let envelope = match Envelope::<Message>::decode(&body, limit) {
            Ok(envelope) => envelope,
            Err(error) => return FrameEnd::Rejected(error.to_string()),
        };
        if envelope.to.node != shared.node {
            return FrameEnd::Rejected(format!(
                "envelope for {} reached node {}",
                envelope.to, shared.node
            ));
        }
        // A peer speaks only for its own actors: this keeps a confused or misconfigured
        // process from impersonating another node's actors.
        if envelope.from.node.as_str() != handshake.node {
            return FrameEnd::Rejected(format!(
                "envelope from {} on a connection that introduced itself as node {}",
                envelope.from, handshake.node
            ));
        }
        bump(&shared.counters.frames_received);
        if shared.inbox.send(envelope).await.is_err() {
            // The host has stopped taking envelopes: we are shutting down.
            return FrameEnd::Closed;
        }
    }
}

/// Starts outbound peer tasks: the configured peers at start, and peers that dial in
/// with a listen address we do not know yet (bounded by `dynamic_peers_max`).
#[derive(Clone, Debug)]
struct Dialer {
    local_node: NodeId,
    local_listen: SocketAddr,
    config: TransportConfig,
    counters: Arc<Counters>,
    outbound: Arc<Mutex<BTreeMap<NodeId, mpsc::Sender<Vec<u8>>>>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    runtime: tokio::runtime::Handle,
    dynamic_peers: Arc<AtomicU64>,
}

impl Dialer {
    fn add_peer(&self, peer: NodeId, address: SocketAddr) {
        let (queue_sender, queue) = mpsc::channel(self.config.send_queue_capacity);
        let task = self.runtime.spawn(run_outbound(
            OutboundPeer {
                local_node: self.local_node.clone(),
                local_listen: self.local_listen,
                peer: peer.clone(),
                address,
                config: self.config.clone(),
                counters: self.counters.clone(),
            },
            queue,
        ));
        lock(&self.tasks).push(task.abort_handle());
        lock(&self.outbound).insert(peer, queue_sender);
    }

    /// Learns a peer from its handshake; false when the dynamic peer budget is spent.
    fn learn(&self, peer: &str, address: SocketAddr) -> bool {
        let node = NodeId::new(peer);
        if node == self.local_node || lock(&self.outbound).contains_key(&node) {
            return true;
        }
        if self.dynamic_peers.load(Ordering::Relaxed) >= self.config.dynamic_peers_max as u64 {
            return false;
        }
        self.dynamic_peers.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%node, %address, "learned a new peer from its handshake");
        self.add_peer(node, address);
        true
    }
}

/// One peer's outbound side.
struct OutboundPeer {
    local_node: NodeId,
    local_listen: SocketAddr,
    peer: NodeId,
    address: SocketAddr,
    config: TransportConfig,
    counters: Arc<Counters>,
}

/// The delay before reconnect attempt `failures + 1`: uniform in `[0, bound]` where the
/// bound doubles from `backoff_initial_ms` up to `backoff_max_ms` ("full jitter").
fn backoff_delay(failures: u32, config: &TransportConfig) -> Duration {
    let bound = config
        .backoff_initial_ms
        .saturating_mul(1u64.checked_shl(failures.min(63)).unwrap_or(u64::MAX))
        .min(config.backoff_max_ms);
    Duration::from_millis(rand::thread_rng().gen_range(0..=bound))
}

async fn run_outbound(peer: OutboundPeer, mut queue: mpsc::Receiver<Vec<u8>>) {
    let mut failures: u32 = 0;
    loop {
        match dial(&peer).await {
            Ok(stream) => {
                tracing::info!(peer = %peer.peer, address = %peer.address, "connected to peer");
                failures = 0;
                match pump(stream, &mut queue, &peer).await {
                    PumpEnd::QueueClosed => return,
                    PumpEnd::Broken(reason) => tracing::warn!(
                        peer = %peer.peer, address = %peer.address, %reason,
                        "connection to peer lost; reconnecting"
                    ),
                }
            }
            Err(reason) => {
                // Say it loudly once; a peer that stays down would flood the log.
                if failures == 0 {
                    tracing::warn!(peer = %peer.peer, address = %peer.address, %reason,
                        "cannot connect to peer; retrying with backoff");
                } else {
                    tracing::debug!(peer = %peer.peer, address = %peer.address, %reason,
                        failures, "still cannot connect to peer");
                }
            }
        }
        let delay = backoff_delay(failures, &peer.config);
        failures = failures.saturating_add(1);
        bump(&peer.counters.reconnects);
        tokio::time::sleep(delay).await;
    }
}

/// Connects and sends the handshake, within `handshake_timeout_ms`.
async fn dial(peer: &OutboundPeer) -> Result<TcpStream, String> {
    let timeout = Duration::from_millis(peer.config.handshake_timeout_ms);
    let attempt = async {
        let mut stream = TcpStream::connect(peer.address)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        // Bus messages are small and latency-sensitive.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let handshake =
            frame_bytes(&Handshake::new(&peer.local_node, Some(peer.local_listen)).encode());
        stream
            .write_all(&handshake)
            .await
            .map_err(|e| format!("sending the handshake failed: {e}"))?;
        Ok(stream)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_elapsed) => Err(format!(
            "no connection within {} ms",
            peer.config.handshake_timeout_ms
        )),
    }
}

enum PumpEnd {
    /// Every sender is gone: the transport was dropped.
    QueueClosed,
    Broken(String),
}

/// Writes queued frames until the connection breaks or the queue closes.
async fn pump(
    stream: TcpStream,
    queue: &mut mpsc::Receiver<Vec<u8>>,
    peer: &OutboundPeer,
) -> PumpEnd {
    let (mut reader, mut writer) = stream.into_split();
    let write_timeout = Duration::from_millis(peer.config.write_timeout_ms);
    // The receiver never writes on this connection; reading only tells us when it closed
    // (for example because it refused us), so we notice before the next message is lost.
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            next = queue.recv() => {
                let Some(mut frame) = next else { return PumpEnd::QueueClosed };
                // Coalesce whatever else is queued into one write (one syscall, and TCP
                // segments full of frames instead of one frame each).
                let mut frames = 1u64;
                while frame.len() < WRITE_COALESCE_BYTES {
                    match queue.try_recv() {
                        Ok(more) => {
                            frame.extend_from_slice(&more);
                            frames += 1;
                        }
                        Err(_) => break,
                    }
                }
                match tokio::time::timeout(write_timeout, writer.write_all(&frame)).await {
                    Ok(Ok(())) => {
                        peer.counters.frames_sent.fetch_add(frames, Ordering::Relaxed);
                    }
                    // The frame is lost with the connection (at-most-once).
                    Ok(Err(error)) => return PumpEnd::Broken(format!("write failed: {error}")),
                    Err(_elapsed) => {
                        return PumpEnd::Broken(format!(
                            "peer did not take a frame within {} ms",
                            peer.config.write_timeout_ms
                        ))
                    }
                }
            }
            read = reader.read(&mut probe) => {
                return PumpEnd::Broken(match read {
                    Ok(0) => "peer closed the connection".to_string(),
                    Ok(_) => "peer wrote on a one-way connection".to_string(),
                    Err(error) => format!("connection failed: {error}"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_actors::selftest::SelfTestMessage;
    use keel_engine::Address;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    fn ping(from: &str, to: &str, seq: u64) -> Envelope<Message> {
        Envelope::new(
            Address::new(from, "selftest", 0),
            Address::new(to, "selftest", 0),
            Message::SelfTest(SelfTestMessage::Ping {
                seq,
                incarnation: 1,
            }),
        )
    }

    async fn pair() -> ((Transport, Inbox), (Transport, Inbox)) {
        let listener_a = BoundListener::bind(loopback()).await.unwrap();
        let listener_b = BoundListener::bind(loopback()).await.unwrap();
        let (addr_a, addr_b) = (listener_a.local_addr(), listener_b.local_addr());
        let a = Transport::start(
            NodeId::new("a"),
            listener_a,
            BTreeMap::from([(NodeId::new("b"), addr_b)]),
            TransportConfig::default(),
        )
        .unwrap();
        let b = Transport::start(
            NodeId::new("b"),
            listener_b,
            BTreeMap::from([(NodeId::new("a"), addr_a)]),
            TransportConfig::default(),
        )
        .unwrap();
        (a, b)
    }

    async fn receive(inbox: &mut Inbox) -> Envelope<Message> {
        tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .expect("envelope within 10 s")
            .expect("inbox open")
    }

    /// Waits until the peer closes `stream` (EOF or reset); panics if it stays open.
    async fn assert_closed_by_peer(stream: &mut TcpStream) {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the connection is closed within 10 s");
        assert!(matches!(read, Ok(0) | Err(_)), "unexpected {read:?}");
    }

    /// An envelope sent on one transport arrives, intact, in the other's inbox, both ways.
    #[tokio::test]
    async fn envelopes_cross_between_two_transports() {
        let ((a, mut inbox_a), (b, mut inbox_b)) = pair().await;
        assert_eq!(a.send(&ping("a", "b", 1)), SendOutcome::Queued);
        assert_eq!(receive(&mut inbox_b).await, ping("a", "b", 1));
        assert_eq!(b.send(&ping("b", "a", 2)), SendOutcome::Queued);
        assert_eq!(receive(&mut inbox_a).await, ping("b", "a", 2));
        assert_eq!(a.send(&ping("a", "c", 3)), SendOutcome::UnknownNode);
        assert_eq!(a.stats().frames_sent, 1);
        assert_eq!(b.stats().frames_received, 1);
    }

    /// Identify answers with the node name; a closed port or a listener that is not
    /// keel gives a clear error.
    #[tokio::test]
    async fn identify_names_the_node_and_refuses_what_is_not_keel() {
        let ((a, _inbox_a), (b, mut inbox_b)) = pair().await;
        let target = b.local_addr();
        let timeout = Duration::from_secs(2);
        let answer = tokio::task::spawn_blocking(move || identify(target, timeout));
        assert_eq!(answer.await.unwrap(), Ok("b".to_string()));

        // Nothing listening: a clear error, not a hang.
        let closed = {
            let probe = std::net::TcpListener::bind(loopback()).unwrap();
            probe.local_addr().unwrap()
        };
        let refused = tokio::task::spawn_blocking(move || identify(closed, timeout));
        let refused = refused.await.unwrap().unwrap_err();
        assert!(refused.contains("cannot connect"), "{refused}");

        // Something that is not keel answers with bytes that are no handshake.
        let impostor = TcpListener::bind(loopback()).await.unwrap();
        let impostor_addr = impostor.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = impostor.accept().await.unwrap();
            let mut request = [0u8; 256];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let wrong = tokio::task::spawn_blocking(move || identify(impostor_addr, timeout));
        let wrong = wrong.await.unwrap().unwrap_err();
        assert!(wrong.contains("not a keel bus listener"), "{wrong}");

        // The identify connection was answered, not counted as a refusal, and the
        // transport keeps serving its peers.
        assert_eq!(b.stats().connections_rejected, 0);
        assert_eq!(a.send(&ping("a", "b", 1)), SendOutcome::Queued);
        assert_eq!(receive(&mut inbox_b).await, ping("a", "b", 1));
    }

    /// Bad handshakes and oversized or misaddressed frames close only their own
    /// connection; a good peer keeps being served throughout.
    #[tokio::test]
    async fn bad_peers_are_cut_off_and_good_peers_keep_working() {
        let ((a, _inbox_a), (b, mut inbox_b)) = pair().await;
        let target = b.local_addr();

        // Garbage instead of a handshake.
        let mut garbage = TcpStream::connect(target).await.unwrap();
        garbage
            .write_all(&frame_bytes(b"not keel at all"))
            .await
            .unwrap();
        assert_closed_by_peer(&mut garbage).await;

        // A length prefix far over any limit, before the handshake.
        let mut huge = TcpStream::connect(target).await.unwrap();
        huge.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert_closed_by_peer(&mut huge).await;

        // A good handshake, then an envelope over max_frame_bytes.
        let mut oversized = TcpStream::connect(target).await.unwrap();
        oversized
            .write_all(&frame_bytes(
                &Handshake::new(&NodeId::new("a"), None).encode(),
            ))
            .await
            .unwrap();
        let too_long = (TransportConfig::default().max_frame_bytes as u32) + 1;
        oversized.write_all(&too_long.to_be_bytes()).await.unwrap();
        assert_closed_by_peer(&mut oversized).await;

        // A good handshake, then an envelope for another node.
        let mut misaddressed = TcpStream::connect(target).await.unwrap();
        misaddressed
            .write_all(&frame_bytes(
                &Handshake::new(&NodeId::new("a"), None).encode(),
            ))
            .await
            .unwrap();
        misaddressed
            .write_all(&frame_bytes(&ping("a", "elsewhere", 9).encode()))
            .await
            .unwrap();
        assert_closed_by_peer(&mut misaddressed).await;

        assert_eq!(b.stats().connections_rejected, 4);
        for seq in 1..=3 {
            assert_eq!(a.send(&ping("a", "b", seq)), SendOutcome::Queued);
            assert_eq!(receive(&mut inbox_b).await, ping("a", "b", seq));
        }
    }

    /// Zero and inverted limits are refused by validation.
    #[test]
    fn config_validation_refuses_zero_and_inverted_limits() {
        assert!(TransportConfig::default().validate().is_ok());
        let zero_queue = TransportConfig {
            send_queue_capacity: 0,
            ..TransportConfig::default()
        };
        assert!(zero_queue.validate().is_err());
        let inverted = TransportConfig {
            backoff_initial_ms: 500,
            backoff_max_ms: 100,
            ..TransportConfig::default()
        };
        assert!(inverted.validate().is_err());
    }
}
