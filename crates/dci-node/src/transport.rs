//! Signed frames over TCP (R-SEC1, R-SC1).
//!
//! Every node listens on one address. A connection is duplex: either side may
//! send sealed, length-prefixed frames at any time. Inbound frames are opened
//! (size, signature, version, freshness, replay) before anything else sees
//! them; a rejected frame is logged with its reason, counted in
//! `dci_messages_rejected_total`, and dropped, and the connection stays up if
//! its framing is intact. Outbound connections are pooled per address, and
//! frames that arrive on them are delivered like any other.

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
    outbound: Mutex<HashMap<String, ConnId>>,
    next_conn: AtomicU64,
    inbox: mpsc::Sender<Inbound>,
    local: SocketAddr,
    rejected: AtomicU64,
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
        let pooled = self.outbound.lock().expect("outbound lock").get(addr).copied();
        if let Some(conn) = pooled {
            if self.write(conn, msg).is_ok() {
                return Ok(conn);
            }
            self.outbound.lock().expect("outbound lock").remove(addr);
        }
        // Connect without holding the pool lock: a dead peer must not stall
        // sends to every other peer.
        let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await;
        let stream = match connect {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(TransportError::Connect { addr: addr.into(), detail: e.to_string() }),
            Err(_) => return Err(TransportError::Connect { addr: addr.into(), detail: "timed out".into() }),
        };
        let _ = stream.set_nodelay(true);
        let conn = self.adopt(stream);
        self.outbound.lock().expect("outbound lock").insert(addr.to_owned(), conn);
        self.write(conn, msg)?;
        Ok(conn)
    }

    /// Carries out a core's network output, logging failures (the cores treat
    /// the network as lossy: timeouts recover).
    pub async fn dispatch(self: &Arc<Self>, net: Net) {
        let result = match &net {
            Net::Reply { conn, msg } => self.reply(*conn, msg).map(|_| ()),
            Net::Send { addr, msg } => self.send(addr, msg).await.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "message not sent");
        }
    }
}
