//! Signed frames over TCP (R-SEC1, R-SC1).
//!
//! Every node listens on one address. A connection is duplex: either side may
//! send sealed, length-prefixed frames at any time. Inbound frames are opened
//! (size, signature, version, freshness, replay) before anything else sees
//! them; a rejected frame is logged with its reason, counted in
//! `dci_messages_rejected_total`, and dropped, and the connection stays up if
//! its framing is intact. Outbound connections are pooled per address, and
//! frames that arrive on them are delivered like any other.
//!
//! A core's sends ([`Transport::dispatch`]) never wait for the network: a
//! message to an address without an open connection waits in that
//! address's queue (in order, at most [`MAX_WAITING`]) while a task
//! connects, so a peer that is dead, slow or blackholed (any registrant can
//! name such an address) never stalls the role's loop or its sends to
//! anyone else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dci_proto::{ConnId, FRAME_HEADER_LEN, Identity, Inbound, Message, Net, Opener, frame, frame_len, seal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::clock;

/// How old (or how far ahead) a message may be.
pub const FRESHNESS_WINDOW: Duration = Duration::from_secs(60);
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages that wait for one address's connection; more are dropped (the
/// cores treat the network as lossy).
pub const MAX_WAITING: usize = 1024;

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
}

/// A node's network endpoint. Cheap to share (`Arc`).
pub struct Transport {
    identity: Identity,
    opener: Mutex<Opener>,
    conns: Mutex<HashMap<ConnId, mpsc::UnboundedSender<Vec<u8>>>>,
    outbound: Mutex<HashMap<String, Outbound>>,
    next_conn: AtomicU64,
    inbox: mpsc::Sender<Inbound>,
    local: SocketAddr,
    rejected: AtomicU64,
    /// Where addresses that could not be connected to are reported.
    unreachable: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transport({} at {})", self.identity.id().short(), self.local)
    }
}

impl Transport {
    /// Binds `addr`, starts accepting, and delivers authenticated messages to `inbox`.
    pub async fn bind(identity: Identity, addr: &str, inbox: mpsc::Sender<Inbound>) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let t = Arc::new(Transport {
            identity,
            opener: Mutex::new(Opener::new(FRESHNESS_WINDOW)),
            conns: Mutex::new(HashMap::new()),
            outbound: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            inbox,
            local,
            rejected: AtomicU64::new(0),
            unreachable: Mutex::new(None),
        });
        let weak = Arc::downgrade(&t);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _peer)) = listener.accept().await else { continue };
                let Some(t) = weak.upgrade() else { break };
                let _ = stream.set_nodelay(true);
                t.adopt(stream);
            }
        });
        Ok(t)
    }

    /// The address this node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Inbound frames rejected so far (bad size, framing, signature, version,
    /// freshness or replay).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    fn reject(&self, reason: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("dci_messages_rejected_total").increment(1);
        tracing::warn!(node = %self.identity.id().short(), %reason, "rejected node message");
    }

    /// From now on, each address a queued message could not be delivered
    /// to (the connection refused or timed out) is sent to `tx`.
    pub fn report_unreachable(&self, tx: mpsc::UnboundedSender<String>) {
        *self.unreachable.lock().expect("unreachable lock") = Some(tx);
    }

    /// This node's id.
    pub fn id(&self) -> dci_model::NodeId {
        self.identity.id()
    }

    fn adopt(self: &Arc<Self>, stream: TcpStream) -> ConnId {
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.conns.lock().expect("conns lock").insert(conn, tx);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut header = [0u8; FRAME_HEADER_LEN];
            loop {
                if rd.read_exact(&mut header).await.is_err() {
                    break;
                }
                let len = match frame_len(header) {
                    Ok(n) => n,
                    Err(e) => {
                        if let Some(t) = weak.upgrade() {
                            t.reject(&e.to_string());
                        }
                        break; // framing lost: close
                    }
                };
                let mut body = vec![0u8; len];
                if rd.read_exact(&mut body).await.is_err() {
                    break;
                }
                let Some(t) = weak.upgrade() else { break };
                let opened = t.opener.lock().expect("opener lock").open(clock::now(), &body);
                match opened {
                    Ok(o) => {
                        metrics::counter!("dci_messages_received_total", "kind" => o.message.kind()).increment(1);
                        let inbound = Inbound { conn, from: o.sender, msg: o.message };
                        if t.inbox.send(inbound).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => t.reject(&e.to_string()),
                }
            }
            if let Some(t) = weak.upgrade() {
                t.conns.lock().expect("conns lock").remove(&conn);
            }
        });
        conn
    }

    fn write(&self, conn: ConnId, msg: &Message) -> Result<(), TransportError> {
        let sealed = seal(&self.identity, rand::random(), clock::now(), msg);
        let conns = self.conns.lock().expect("conns lock");
        let tx = conns.get(&conn).ok_or(TransportError::Closed(conn))?;
        tx.send(frame(&sealed)).map_err(|_| TransportError::Closed(conn))
    }

    /// Answers on connection `conn`.
    pub fn reply(&self, conn: ConnId, msg: &Message) -> Result<(), TransportError> {
        self.write(conn, msg)
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
        let stream = connect(addr).await?;
        let conn = self.adopt(stream);
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
            let connected = connect(&addr).await;
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
                Ok(stream) => {
                    let conn = t.adopt(stream);
                    pool.insert(addr, Outbound::Open(conn));
                    for m in &waiting {
                        let _ = t.write(conn, m);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, dropped = waiting.len(), "messages not sent");
                    drop(pool);
                    if let Some(tx) = t.unreachable.lock().expect("unreachable lock").as_ref() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
    }
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
