//! Node-to-node transport (R-SEC1, R-SC1): authenticated, encrypted
//! connections over TCP that hold up under abuse.
//!
//! **A connection.** The side that dials sends a preface (the protocol
//! version; an older release refuses it for its version and logs so, and a
//! node of this release refuses an older peer's first message the same
//! way). The two sides run a Noise handshake (`Noise_NN_25519_ChaChaPoly_BLAKE2s`,
//! the `snow` crate), then each proves its node id by signing the handshake
//! hash ([`dci_proto::bind_proof`]). From then on every byte is encrypted
//! and authenticated, and every message is sealed for that one connection:
//! network, recipient and binding are inside its signed header, so it opens
//! nowhere else, before or after a restart (see [`dci_proto`]). Frames of up
//! to [`dci_proto::MAX_MESSAGE_BYTES`] are split into Noise records of at
//! most 64 KiB, each `[u16 length][ciphertext]`.
//!
//! **Limits** ([`Limits`]): connections still in their handshake, per
//! client address and in total, and established connections, per address
//! and in total; the handshake, each frame once begun, and an idle
//! connection have deadlines; each connection may deliver at most
//! [`Limits::messages_per_sec`] messages a second (a token bucket, the
//! `governor` crate), and what is over is dropped before its signature is
//! checked. A connection over a limit is closed at once
//! and counted (`dci_connections_refused_total`). Accept errors (file
//! descriptors exhausted) back off from 5 ms to 1 s instead of spinning.
//!
//! **Work off any shared lock.** Each connection decrypts, checks signatures
//! and decodes its own frames in its own task (an [`Opener`] per
//! connection, no state shared between them); a rejected frame is logged
//! with its reason, counted in `dci_messages_rejected_total` and dropped,
//! and the connection stays up while its framing is intact.
//!
//! **Writes never wait.** A core's sends ([`Transport::dispatch`]) go to a
//! connection's bounded queue ([`Limits::write_queue`] frames). The policy
//! when it is full: the peer is not reading, so the connection is closed and
//! its queue dropped (the cores treat the network as lossy; the next send
//! dials again). A message to an address without an open connection waits
//! in that address's queue (in order, at most [`MAX_WAITING`]) while a task
//! dials and shakes hands, so a peer that is dead, slow or blackholed (any
//! registrant can name such an address) never stalls the role's loop or
//! its sends to anyone else.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dci_model::NodeId;
use dci_proto::{
    Channel, ConnId, FRAME_HEADER_LEN, Identity, Inbound, MAX_MESSAGE_BYTES, MAX_PREFACE_BYTES, Message, Net,
    NetworkId, Opener, ProtoError, Side, bind_proof, check_bind_proof, check_preface, frame, preface, seal,
};
use governor::{Quota, RateLimiter};
use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::clock;

/// How old (or how far ahead) a message may be.
pub const FRESHNESS_WINDOW: Duration = Duration::from_secs(60);
/// How long a connection attempt may take (the handshake has its own
/// deadline, [`Limits::handshake_timeout`]).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages that wait for one address's connection; more are dropped (the
/// cores treat the network as lossy).
pub const MAX_WAITING: usize = 1024;
/// Rejections of one connection logged as warnings (the rest at debug).
const LOGGED_REJECTIONS: u64 = 10;
/// How often an unreachable address is logged as a warning.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// The Noise protocol of every connection.
const NOISE: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";
/// Largest Noise message.
const MAX_RECORD: usize = 65535;
/// Queued bytes a connection's writer gathers into one write.
const WRITE_BATCH_BYTES: usize = 256 << 10;
/// A connection's read buffer.
const READ_BUFFER_BYTES: usize = 64 << 10;
/// ChaChaPoly's tag.
const TAG_LEN: usize = 16;
/// Largest plaintext in one record.
const MAX_PLAIN: usize = MAX_RECORD - TAG_LEN;

/// The transport's limits. [`Limits::default`] is what nodes run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections from one address still in their handshake.
    pub pending_per_ip: usize,
    /// Connections still in their handshake, in total.
    pub pending: usize,
    /// Established inbound connections from one address.
    pub connections_per_ip: usize,
    /// Established inbound connections in total.
    pub connections: usize,
    /// Time for a connection's preface, handshake and binding proofs.
    pub handshake_timeout: Duration,
    /// Time for a frame to arrive whole once its first byte has.
    pub frame_timeout: Duration,
    /// A connection with no frame for this long is closed.
    pub idle_timeout: Duration,
    /// Frames queued for one connection; when full the connection closes.
    pub write_queue: usize,
    /// Messages one connection may deliver per second; more are dropped
    /// (and counted as rejected) before their signature is checked.
    pub messages_per_sec: u32,
    /// Messages one connection may deliver at once above that rate.
    pub message_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pending_per_ip: 16,
            pending: 512,
            connections_per_ip: 256,
            connections: 4096,
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            write_queue: 1024,
            messages_per_sec: 2000,
            message_burst: 4000,
        }
    }
}

/// An outbound connection: open, or being made with messages waiting for it.
enum Outbound {
    Open(ConnId),
    Connecting(Vec<Message>),
}

/// Why a frame could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not connect.
    #[error("cannot connect to {addr}: {detail}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        detail: String,
    },
    /// The connection is gone.
    #[error("connection {0:?} is closed")]
    Closed(ConnId),
    /// The peer does not read: its queue is full and the connection closed.
    #[error("connection {0:?} closed: its write queue is full (the peer does not read)")]
    QueueFull(ConnId),
}

/// An established connection.
struct Conn {
    channel: Channel,
    tx: mpsc::Sender<Vec<u8>>,
    tasks: Vec<AbortHandle>,
}

/// Connection slots taken, per address and in total.
#[derive(Default)]
struct Slots {
    pending: usize,
    open: usize,
    by_ip: HashMap<IpAddr, (usize, usize)>,
}

#[derive(Clone, Copy)]
enum SlotKind {
    Pending,
    Open,
}

/// A slot held while its connection lives; dropping it frees the slot.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    ip: IpAddr,
    kind: SlotKind,
}

impl Slot {
    /// Takes a slot of `kind` for `ip`, or says which limit is reached.
    fn take(slots: &Arc<Mutex<Slots>>, ip: IpAddr, kind: SlotKind, limits: &Limits) -> Result<Slot, String> {
        let mut s = slots.lock().expect("slots lock");
        let (pending, open) = (s.pending, s.open);
        let entry = s.by_ip.entry(ip).or_default();
        match kind {
            SlotKind::Pending if entry.0 >= limits.pending_per_ip => {
                return Err(format!("{} handshakes already pending from {ip}", limits.pending_per_ip));
            }
            SlotKind::Pending if pending >= limits.pending => {
                return Err(format!("{} handshakes already pending", limits.pending));
            }
            SlotKind::Open if entry.1 >= limits.connections_per_ip => {
                return Err(format!("{} connections already open from {ip}", limits.connections_per_ip));
            }
            SlotKind::Open if open >= limits.connections => {
                return Err(format!("{} connections already open", limits.connections));
            }
            SlotKind::Pending => entry.0 += 1,
            SlotKind::Open => entry.1 += 1,
        }
        match kind {
            SlotKind::Pending => s.pending += 1,
            SlotKind::Open => s.open += 1,
        }
        Ok(Slot { slots: slots.clone(), ip, kind })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().expect("slots lock");
        match self.kind {
            SlotKind::Pending => s.pending -= 1,
            SlotKind::Open => s.open -= 1,
        }
        if let Some(e) = s.by_ip.get_mut(&self.ip) {
            match self.kind {
                SlotKind::Pending => e.0 -= 1,
                SlotKind::Open => e.1 -= 1,
            }
            if *e == (0, 0) {
                s.by_ip.remove(&self.ip);
            }
        }
    }
}

/// A node's network endpoint. Cheap to share (`Arc`).
pub struct Transport {
    identity: Identity,
    network: NetworkId,
    limits: Limits,
    conns: Mutex<HashMap<ConnId, Conn>>,
    outbound: Mutex<HashMap<String, Outbound>>,
    slots: Arc<Mutex<Slots>>,
    next_conn: AtomicU64,
    inbox: mpsc::Sender<Inbound>,
    local: SocketAddr,
    rejected: AtomicU64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
    /// When a failure to reach each address was last logged as a warning.
    warned: Mutex<HashMap<String, Instant>>,
    /// Where addresses that could not be connected to are reported.
    unreachable: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transport({} at {})", self.identity.id().short(), self.local)
    }
}

impl Transport {
    /// Binds `addr` for a node of `network`, starts accepting, and delivers
    /// authenticated messages to `inbox`, with the default [`Limits`].
    pub async fn bind(
        identity: Identity,
        network: NetworkId,
        addr: &str,
        inbox: mpsc::Sender<Inbound>,
    ) -> std::io::Result<Arc<Self>> {
        Transport::bind_with(identity, network, addr, inbox, Limits::default()).await
    }

    /// [`Transport::bind`] with `limits`.
    pub async fn bind_with(
        identity: Identity,
        network: NetworkId,
        addr: &str,
        inbox: mpsc::Sender<Inbound>,
        limits: Limits,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let t = Arc::new(Transport {
            identity,
            network,
            limits,
            conns: Mutex::new(HashMap::new()),
            outbound: Mutex::new(HashMap::new()),
            slots: Arc::new(Mutex::new(Slots::default())),
            next_conn: AtomicU64::new(1),
            inbox,
            local,
            rejected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            warned: Mutex::new(HashMap::new()),
            unreachable: Mutex::new(None),
        });
        let weak = Arc::downgrade(&t);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(5);
            loop {
                let accepted = listener.accept().await;
                let Some(t) = weak.upgrade() else { break };
                match accepted {
                    Ok((stream, peer)) => {
                        backoff = Duration::from_millis(5);
                        t.admit(stream, peer);
                    }
                    Err(e) => {
                        // Out of file descriptors (or a transient error):
                        // wait instead of spinning, longer each time.
                        t.accept_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed; backing off");
                        drop(t);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        });
        Ok(t)
    }

    /// The address this node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The network this node is in.
    pub fn network(&self) -> NetworkId {
        self.network
    }

    /// Inbound frames rejected so far (bad size, framing, signature,
    /// version, network, recipient, binding or freshness).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Inbound connections refused so far (over a limit, or a failed
    /// preface, handshake or binding proof).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether a failure to reach `addr` is the first in 30 s (a peer that
    /// is down fails every send: one warning says so).
    fn first_failure_in_a_while(&self, addr: &str) -> bool {
        let mut warned = self.warned.lock().expect("warned lock");
        let now = Instant::now();
        if warned.len() >= 1024 {
            warned.retain(|_, at| now.duration_since(*at) < WARN_EVERY);
        }
        match warned.get(addr) {
            Some(at) if now.duration_since(*at) < WARN_EVERY => false,
            _ => {
                warned.insert(addr.to_owned(), now);
                true
            }
        }
    }

    /// Failed accepts so far (each followed by a wait, see the module docs).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// Established connections, inbound and outbound.
    pub fn connections(&self) -> usize {
        self.conns.lock().expect("conns lock").len()
    }

    /// Counts a rejected frame; logs the first [`LOGGED_REJECTIONS`] of a
    /// connection as warnings (its `nth`), the rest at debug.
    fn reject(&self, peer: &NodeId, reason: &str, nth: u64) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("dci_messages_rejected_total").increment(1);
        if nth <= LOGGED_REJECTIONS {
            tracing::warn!(node = %self.identity.id().short(), peer = %peer.short(), %reason, "rejected node message");
        } else {
            tracing::debug!(node = %self.identity.id().short(), peer = %peer.short(), %reason, "rejected node message");
        }
    }

    fn refuse(&self, peer: SocketAddr, reason: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("dci_connections_refused_total").increment(1);
        tracing::warn!(node = %self.identity.id().short(), %peer, %reason, "refused a connection");
    }

    /// From now on, each address a queued message could not be delivered
    /// to (the connection refused, timed out or failed its handshake) is
    /// sent to `tx`.
    pub fn report_unreachable(&self, tx: mpsc::UnboundedSender<String>) {
        *self.unreachable.lock().expect("unreachable lock") = Some(tx);
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    /// Takes an accepted connection through its handshake, within the limits.
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        // Both slots at once: a connection that could not be kept once
        // established is refused before any work is spent on it.
        let slots = Slot::take(&self.slots, peer.ip(), SlotKind::Pending, &self.limits)
            .and_then(|p| Ok((p, Slot::take(&self.slots, peer.ip(), SlotKind::Open, &self.limits)?)));
        let (pending, open) = match slots {
            Ok(slots) => slots,
            Err(reason) => return self.refuse(peer, &reason),
        };
        let _ = stream.set_nodelay(true);
        let t = Arc::clone(self);
        tokio::spawn(async move {
            let mut stream = stream;
            let shaken = tokio::time::timeout(
                t.limits.handshake_timeout,
                handshake(&mut stream, &t.identity, t.network, Side::Responder),
            )
            .await;
            let established = match shaken {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => return t.refuse(peer, &e),
                Err(_) => return t.refuse(peer, "handshake not finished in time"),
            };
            drop(pending);
            t.adopt(stream, established, Some(open));
        });
    }

    /// Runs an established connection: a writer task draining its queue
    /// and a reader task opening its frames.
    fn adopt(self: &Arc<Self>, stream: TcpStream, e: Established, slot: Option<Slot>) -> ConnId {
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel::<Vec<u8>>(self.limits.write_queue.max(1));
        let noise = Arc::new(e.noise);
        let writer = tokio::spawn(write_loop(wr, noise.clone(), e.send_nonce, rx));
        let reader = tokio::spawn(Arc::clone(self).read_loop(conn, rd, noise, e.recv_nonce, e.channel, slot));
        self.conns
            .lock()
            .expect("conns lock")
            .insert(conn, Conn { channel: e.channel, tx, tasks: vec![writer.abort_handle(), reader.abort_handle()] });
        conn
    }

    async fn read_loop(
        self: Arc<Self>,
        conn: ConnId,
        rd: OwnedReadHalf,
        noise: Arc<StatelessTransportState>,
        mut nonce: u64,
        channel: Channel,
        _slot: Option<Slot>,
    ) {
        let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
        let opener = Opener::new(FRESHNESS_WINDOW, channel);
        let quota =
            Quota::per_second(nonzero(self.limits.messages_per_sec)).allow_burst(nonzero(self.limits.message_burst));
        let budget = RateLimiter::direct(quota);
        let mut rejected = 0u64;
        let mut reject = |t: &Transport, reason: &str| {
            rejected += 1;
            t.reject(&channel.peer, reason, rejected);
        };
        loop {
            let body = match read_frame(&mut rd, &noise, &mut nonce, &self.limits).await {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(e @ (ReadError::Io(_) | ReadError::Idle(_))) => {
                    // The peer went away, or went quiet: a close, not an attack.
                    tracing::debug!(peer = %channel.peer.short(), reason = %e, "connection closed");
                    break;
                }
                Err(e) => {
                    // Framing or decryption lost: nothing after it can be read.
                    reject(&self, &format!("{e}; closing the connection"));
                    break;
                }
            };
            // Over its budget, a message is dropped before any work is
            // spent on its signature.
            if budget.check().is_err() {
                reject(&self, &format!("over {} messages per second on one connection", self.limits.messages_per_sec));
                continue;
            }
            match opener.open(clock::now(), &body) {
                Ok(o) => {
                    metrics::counter!("dci_messages_received_total", "kind" => o.message.kind()).increment(1);
                    if self.inbox.send(Inbound { conn, from: o.sender, msg: o.message }).await.is_err() {
                        break;
                    }
                }
                Err(e) => reject(&self, &e.to_string()),
            }
        }
        if rejected > LOGGED_REJECTIONS {
            tracing::warn!(peer = %channel.peer.short(), rejected, "connection closed after rejecting its messages");
        }
        self.conns.lock().expect("conns lock").remove(&conn);
    }

    /// Closes `conn` now: both its tasks end and its queue is dropped.
    fn close(&self, conn: ConnId) {
        if let Some(c) = self.conns.lock().expect("conns lock").remove(&conn) {
            for task in c.tasks {
                task.abort();
            }
        }
    }

    fn write(&self, conn: ConnId, msg: &Message) -> Result<(), TransportError> {
        let (channel, tx) = {
            let conns = self.conns.lock().expect("conns lock");
            let c = conns.get(&conn).ok_or(TransportError::Closed(conn))?;
            (c.channel, c.tx.clone())
        };
        let sealed = seal(&self.identity, &channel, clock::now(), msg);
        match tx.try_send(frame(&sealed)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(peer = %channel.peer.short(), kind = msg.kind(), "write queue full: closing the connection");
                self.close(conn);
                Err(TransportError::QueueFull(conn))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TransportError::Closed(conn)),
        }
    }

    /// Answers on connection `conn`.
    pub fn reply(&self, conn: ConnId, msg: &Message) -> Result<(), TransportError> {
        self.write(conn, msg)
    }

    /// The authenticated peer of connection `conn`, while it is open.
    pub fn peer_of(&self, conn: ConnId) -> Option<NodeId> {
        self.conns.lock().expect("conns lock").get(&conn).map(|c| c.channel.peer)
    }

    /// Sends to the node listening at `addr`, connecting if needed. Returns
    /// the connection used (replies arrive in the inbox tagged with it).
    pub async fn send(self: &Arc<Self>, addr: &str, msg: &Message) -> Result<ConnId, TransportError> {
        if let Some(conn) = self.open_conn(addr) {
            if self.write(conn, msg).is_ok() {
                return Ok(conn);
            }
            self.forget_open(addr, conn);
        }
        // Connect without holding the pool lock: a dead peer must not stall
        // sends to every other peer.
        let (stream, established) = self.dial(addr).await?;
        let conn = self.adopt(stream, established, None);
        {
            let mut pool = self.outbound.lock().expect("outbound lock");
            // Messages already waiting for this address go first.
            if let Some(Outbound::Connecting(waiting)) = pool.insert(addr.to_owned(), Outbound::Open(conn)) {
                for m in &waiting {
                    let _ = self.write(conn, m);
                }
            }
        }
        self.write(conn, msg)?;
        Ok(conn)
    }

    /// Connects to `addr` and shakes hands, within their deadlines.
    async fn dial(&self, addr: &str) -> Result<(TcpStream, Established), TransportError> {
        let mut stream = connect(addr).await?;
        let shaken = tokio::time::timeout(
            self.limits.handshake_timeout,
            handshake(&mut stream, &self.identity, self.network, Side::Initiator),
        )
        .await;
        match shaken {
            Ok(Ok(e)) => Ok((stream, e)),
            Ok(Err(detail)) => Err(TransportError::Connect { addr: addr.into(), detail }),
            Err(_) => {
                Err(TransportError::Connect { addr: addr.into(), detail: "handshake not finished in time".into() })
            }
        }
    }

    /// The open pooled connection to `addr`, if any.
    fn open_conn(&self, addr: &str) -> Option<ConnId> {
        match self.outbound.lock().expect("outbound lock").get(addr) {
            Some(Outbound::Open(conn)) => Some(*conn),
            _ => None,
        }
    }

    /// Drops the pooled connection `conn` to `addr` (it closed).
    fn forget_open(&self, addr: &str, conn: ConnId) {
        let mut pool = self.outbound.lock().expect("outbound lock");
        if matches!(pool.get(addr), Some(Outbound::Open(c)) if *c == conn) {
            pool.remove(addr);
        }
    }

    /// Carries out a core's network output without waiting for the network
    /// (see the module docs), logging failures (the cores treat the network
    /// as lossy: timeouts recover).
    pub async fn dispatch(self: &Arc<Self>, net: Net) {
        match net {
            Net::Reply { conn, msg } => {
                if let Err(e) = self.reply(conn, &msg) {
                    tracing::warn!(error = %e, "message not sent");
                }
            }
            Net::Send { addr, msg } => self.enqueue(addr, msg),
        }
    }

    /// Sends `msg` to `addr` on the open connection, or queues it for the
    /// connection being made (starting one if none is).
    fn enqueue(self: &Arc<Self>, addr: String, msg: Message) {
        let mut pool = self.outbound.lock().expect("outbound lock");
        match pool.get_mut(&addr) {
            Some(Outbound::Open(conn)) if self.write(*conn, &msg).is_ok() => return,
            // Closed: connect again below.
            Some(Outbound::Open(_)) => {}
            Some(Outbound::Connecting(waiting)) => {
                if waiting.len() < MAX_WAITING {
                    waiting.push(msg);
                } else {
                    tracing::warn!(%addr, kind = msg.kind(), "message dropped: {MAX_WAITING} already wait for this peer");
                }
                return;
            }
            None => {}
        }
        pool.insert(addr.clone(), Outbound::Connecting(vec![msg]));
        drop(pool);
        let t = Arc::clone(self);
        tokio::spawn(async move {
            let connected = t.dial(&addr).await;
            let mut pool = t.outbound.lock().expect("outbound lock");
            let waiting = match pool.remove(&addr) {
                Some(Outbound::Connecting(waiting)) => waiting,
                // `send` connected meanwhile (and flushed the queue).
                Some(open) => {
                    pool.insert(addr, open);
                    return;
                }
                None => return,
            };
            match connected {
                Ok((stream, established)) => {
                    let conn = t.adopt(stream, established, None);
                    pool.insert(addr, Outbound::Open(conn));
                    for m in &waiting {
                        let _ = t.write(conn, m);
                    }
                }
                Err(e) => {
                    drop(pool);
                    if t.first_failure_in_a_while(&addr) {
                        tracing::warn!(error = %e, dropped = waiting.len(), "messages not sent (repeats within 30 s are logged at debug)");
                    } else {
                        tracing::debug!(error = %e, dropped = waiting.len(), "messages not sent");
                    }
                    if let Some(tx) = t.unreachable.lock().expect("unreachable lock").as_ref() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
    }
}

/// `n`, or 1 if it is 0.
fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Connects to `addr` within [`CONNECT_TIMEOUT`].
async fn connect(addr: &str) -> Result<TcpStream, TransportError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(TransportError::Connect { addr: addr.into(), detail: e.to_string() }),
        Err(_) => return Err(TransportError::Connect { addr: addr.into(), detail: "timed out".into() }),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A connection after its handshake.
pub struct Established {
    noise: StatelessTransportState,
    channel: Channel,
    send_nonce: u64,
    recv_nonce: u64,
}

impl Established {
    /// The connection as this end sees it.
    pub fn channel(&self) -> Channel {
        self.channel
    }
}

/// Runs the preface, the Noise handshake and the binding proofs on `stream`
/// as `side`. The error says what was expected.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    identity: &Identity,
    network: NetworkId,
    side: Side,
) -> Result<Established, String> {
    let params = NOISE.parse().expect("a valid noise pattern");
    let mut buf = vec![0u8; MAX_RECORD];
    let noise_err = |e: snow::Error| format!("noise handshake failed: {e}");
    let io_err = |e: std::io::Error| {
        format!(
            "connection lost during the handshake ({e}): the peer may run an older dci release or not be a dci node"
        )
    };
    let hs = match side {
        Side::Initiator => {
            let mut hs = snow::Builder::new(params).build_initiator().map_err(noise_err)?;
            let mut out = frame(&preface(identity.id(), clock::now()));
            let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&buf[..n]);
            stream.write_all(&out).await.map_err(io_err)?;
            let msg = read_record_raw(stream).await.map_err(io_err)?;
            hs.read_message(&msg, &mut buf).map_err(noise_err)?;
            hs
        }
        Side::Responder => {
            let mut header = [0u8; FRAME_HEADER_LEN];
            stream.read_exact(&mut header).await.map_err(io_err)?;
            let len = u32::from_be_bytes(header) as usize;
            if len > MAX_PREFACE_BYTES {
                return Err(format!(
                    "expected a connection preface of at most {MAX_PREFACE_BYTES} bytes, found a frame of {len} bytes \
                     (an older dci release, or not a dci node)"
                ));
            }
            let mut first = vec![0u8; len];
            stream.read_exact(&mut first).await.map_err(io_err)?;
            if let Err(e) = check_preface(&first) {
                if let ProtoError::Version { .. } = e {
                    // Tell an older node why, in terms it can read: it
                    // refuses our preface for its version, and logs that.
                    let _ = stream.write_all(&frame(&preface(identity.id(), clock::now()))).await;
                }
                return Err(e.to_string());
            }
            let mut hs = snow::Builder::new(params).build_responder().map_err(noise_err)?;
            let msg = read_record_raw(stream).await.map_err(io_err)?;
            hs.read_message(&msg, &mut buf).map_err(noise_err)?;
            let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
            let mut out = (n as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&buf[..n]);
            stream.write_all(&out).await.map_err(io_err)?;
            hs
        }
    };
    let binding: [u8; 32] = hs.get_handshake_hash().try_into().map_err(|_| "expected a 32-byte handshake hash")?;
    let noise = hs.into_stateless_transport_mode().map_err(noise_err)?;
    let (mut send_nonce, mut recv_nonce) = (0u64, 0u64);
    let proof = bind_proof(identity, network, &binding, side);
    write_records(stream, &noise, &mut send_nonce, &proof).await.map_err(io_err)?;
    let theirs = read_record(stream, &noise, &mut recv_nonce).await.map_err(|e| e.to_string())?;
    let other = match side {
        Side::Initiator => Side::Responder,
        Side::Responder => Side::Initiator,
    };
    let peer = check_bind_proof(&theirs, network, &binding, other).map_err(|e| {
        format!("{e}: the peer did not prove its node id for this connection (another network, or an impostor)")
    })?;
    let channel = Channel { network, local: identity.id(), peer, binding };
    Ok(Established { noise, channel, send_nonce, recv_nonce })
}

/// Reads one unencrypted `[u16 length][bytes]` handshake record.
async fn read_record_raw<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

/// Why a connection's byte stream can no longer be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("a record that does not decrypt: expected one sealed by the connection's peer")]
    Decrypt,
    #[error("idle for longer than {0:?}")]
    Idle(Duration),
    #[error("a frame not received whole within {0:?} of its first byte")]
    Slow(Duration),
    #[error("{0}")]
    Frame(String),
}

/// Decrypts the next record (waiting as long as it takes).
async fn read_record<S: AsyncRead + Unpin>(
    stream: &mut S,
    noise: &StatelessTransportState,
    nonce: &mut u64,
) -> Result<Vec<u8>, ReadError> {
    let cipher = read_record_raw(stream).await?;
    decrypt(noise, nonce, &cipher)
}

fn decrypt(noise: &StatelessTransportState, nonce: &mut u64, cipher: &[u8]) -> Result<Vec<u8>, ReadError> {
    if cipher.len() < TAG_LEN {
        return Err(ReadError::Decrypt);
    }
    let mut plain = vec![0u8; cipher.len()];
    let n = noise.read_message(*nonce, cipher, &mut plain).map_err(|_| ReadError::Decrypt)?;
    *nonce += 1;
    plain.truncate(n);
    Ok(plain)
}

/// Encrypts `plain` as records and writes them.
async fn write_records<S: AsyncWrite + Unpin>(
    stream: &mut S,
    noise: &StatelessTransportState,
    nonce: &mut u64,
    plain: &[u8],
) -> std::io::Result<()> {
    let out = encrypt(noise, nonce, plain);
    stream.write_all(&out).await
}

fn encrypt(noise: &StatelessTransportState, nonce: &mut u64, plain: &[u8]) -> Vec<u8> {
    let records = plain.len().div_ceil(MAX_PLAIN).max(1);
    let mut out = Vec::with_capacity(plain.len() + records * (2 + TAG_LEN));
    let mut cipher = vec![0u8; MAX_RECORD];
    let chunks: Box<dyn Iterator<Item = &[u8]>> =
        if plain.is_empty() { Box::new(std::iter::once(plain)) } else { Box::new(plain.chunks(MAX_PLAIN)) };
    for chunk in chunks {
        let n = noise.write_message(*nonce, chunk, &mut cipher).expect("a record within noise's limit");
        *nonce += 1;
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&cipher[..n]);
    }
    out
}

/// Reads the next frame: `Ok(None)` at a clean end of the stream. A frame
/// is `[u32 length][sealed message]` in plaintext, carried by as many
/// records as it needs (records never carry two frames).
async fn read_frame<S: AsyncRead + Unpin>(
    rd: &mut S,
    noise: &StatelessTransportState,
    nonce: &mut u64,
    limits: &Limits,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut len = [0u8; 2];
    match tokio::time::timeout(limits.idle_timeout, rd.read_exact(&mut len)).await {
        Err(_) => return Err(ReadError::Idle(limits.idle_timeout)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(r) => r?,
    };
    let deadline = Instant::now() + limits.frame_timeout;
    let limit = limits.frame_timeout;
    let mut cipher = vec![0u8; u16::from_be_bytes(len) as usize];
    within(deadline, limit, rd.read_exact(&mut cipher)).await?;
    let mut plain = decrypt(noise, nonce, &cipher)?;
    if plain.len() < FRAME_HEADER_LEN {
        return Err(ReadError::Frame("expected a frame's 4-byte length at the start of a record".into()));
    }
    let body_len = u32::from_be_bytes(plain[..FRAME_HEADER_LEN].try_into().expect("4 bytes")) as usize;
    if body_len > MAX_MESSAGE_BYTES {
        return Err(ReadError::Frame(ProtoError::TooLarge { size: body_len, max: MAX_MESSAGE_BYTES }.to_string()));
    }
    let total = FRAME_HEADER_LEN + body_len;
    plain.reserve(total.saturating_sub(plain.len()));
    while plain.len() < total {
        let mut len = [0u8; 2];
        within(deadline, limit, rd.read_exact(&mut len)).await?;
        let mut cipher = vec![0u8; u16::from_be_bytes(len) as usize];
        within(deadline, limit, rd.read_exact(&mut cipher)).await?;
        plain.extend_from_slice(&decrypt(noise, nonce, &cipher)?);
    }
    if plain.len() != total {
        return Err(ReadError::Frame(format!(
            "a record runs past its frame: expected {total} bytes, found {}",
            plain.len()
        )));
    }
    plain.drain(..FRAME_HEADER_LEN);
    Ok(Some(plain))
}

/// Runs `f` until `deadline`: a part of a frame that must arrive in time.
async fn within<T>(
    deadline: Instant,
    limit: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ReadError> {
    match tokio::time::timeout_at(deadline, f).await {
        Err(_) => Err(ReadError::Slow(limit)),
        Ok(r) => Ok(r?),
    }
}

/// Drains a connection's queue: each frame is encrypted as records and
/// written. Ends when the queue closes or the peer is gone.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    noise: Arc<StatelessTransportState>,
    mut nonce: u64,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(plain) = rx.recv().await {
        // Frames already queued go out in the same write (fewer syscalls
        // under load, none of the waiting a timer-based batch would add).
        let mut out = encrypt(&noise, &mut nonce, &plain);
        while out.len() < WRITE_BATCH_BYTES {
            let Ok(more) = rx.try_recv() else { break };
            out.extend_from_slice(&encrypt(&noise, &mut nonce, &more));
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
    }
}

/// A client's end of one connection, for tools and tests that speak the
/// node protocol by hand (an attacker's script, a probe): it dials,
/// shakes hands, and writes frames it chose.
pub struct Dialed {
    stream: TcpStream,
    established: Established,
    identity: Identity,
}

impl Dialed {
    /// Dials `addr` as `identity` in `network` and shakes hands.
    pub async fn connect(identity: Identity, network: NetworkId, addr: &str) -> Result<Dialed, TransportError> {
        let mut stream = connect(addr).await?;
        let established = handshake(&mut stream, &identity, network, Side::Initiator)
            .await
            .map_err(|detail| TransportError::Connect { addr: addr.into(), detail })?;
        Ok(Dialed { stream, established, identity })
    }

    /// The connection as this end sees it.
    pub fn channel(&self) -> Channel {
        self.established.channel
    }

    /// Seals `msg` for this connection.
    pub fn seal(&self, msg: &Message) -> Vec<u8> {
        seal(&self.identity, &self.established.channel, clock::now(), msg)
    }

    /// Sends `sealed` (any bytes) as one frame.
    pub async fn send_sealed(&mut self, sealed: &[u8]) -> std::io::Result<()> {
        let e = &mut self.established;
        write_records(&mut self.stream, &e.noise, &mut e.send_nonce, &frame(sealed)).await
    }

    /// Sends `plain` as records, not necessarily a well-formed frame.
    pub async fn send_plain(&mut self, plain: &[u8]) -> std::io::Result<()> {
        let e = &mut self.established;
        write_records(&mut self.stream, &e.noise, &mut e.send_nonce, plain).await
    }

    /// Waits for the next message from the peer, opened as the transport
    /// opens it (within `wait`).
    pub async fn recv(&mut self, wait: Duration) -> Result<Message, String> {
        let e = &mut self.established;
        let limits = Limits { idle_timeout: wait, ..Limits::default() };
        let body = read_frame(&mut self.stream, &e.noise, &mut e.recv_nonce, &limits)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the peer closed the connection")?;
        Opener::new(FRESHNESS_WINDOW, e.channel).open(clock::now(), &body).map(|o| o.message).map_err(|e| e.to_string())
    }
}
