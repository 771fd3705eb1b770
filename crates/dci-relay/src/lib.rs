//! The relay for container hosts behind NAT (R-SC3): a reverse TCP tunnel.
//!
//! A host that nobody can dial (a home GPU behind a masquerading router)
//! dials the relay instead, which runs in the gateway's process
//! ([`server`]). Over that one outbound TCP connection the host proves its
//! node key (a challenge-response hello, `dci_proto::relay`), the relay
//! asks its [`Admission`] check (the gateway: bonded container stake), and
//! both sides then speak yamux (`tokio-yamux`). The relay binds a public
//! port for the host's node listener and, on request, one per service the
//! host runs; every TCP connection to such a port becomes one yamux stream
//! to the host ([`client`]), which connects it to its own local port.
//! Everyone else sees plain `host:port` addresses: the host registers
//! `public_host:node_port` and reports `http://public_host:public_port`
//! endpoints, so no other role knows the relay exists.
//!
//! What it is not: a proxy anywhere but back to the host that asked (a
//! forward names only a local port of the asking host, and streams go over
//! that host's own tunnel), a way in for unbonded or unauthenticated
//! nodes, or unbounded: [`Limits`] caps tunnels, ports per node, streams
//! per node, handshakes in flight and idle connections. [`table`] is the
//! port bookkeeping, sans-IO.

pub mod client;
pub mod server;
pub mod table;

use std::time::Duration;

use dci_model::NodeId;
use dci_proto::relay::{MAX_RELAY_FRAME, decode_relay, encode_relay, relay_frame_len};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use client::{ClientError, RelayClient};
pub use server::{RelayConfig, RelayHandle, serve};

/// The relay's bounds: what one node, and everyone together, may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Hosts connected at once.
    pub max_tunnels: usize,
    /// Public ports one node may hold (its node port included).
    pub ports_per_node: usize,
    /// Relayed TCP connections one node may have open at once; one more is
    /// closed at once.
    pub streams_per_node: usize,
    /// Connections still in their handshake at once; one more is closed.
    pub max_handshakes: usize,
    /// A connection that has not finished its hello by then is closed.
    pub handshake_timeout: Duration,
    /// A relayed connection with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long a disconnected node's ports stay reserved for it.
    pub reserve_for: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_tunnels: 1024,
            ports_per_node: 32,
            streams_per_node: 256,
            max_handshakes: 64,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            reserve_for: Duration::from_secs(600),
        }
    }
}

/// Who may use the relay: a real boundary (the gateway answers from its
/// ledger: bonded container stake at least the governance minimum; tests
/// use a list). `admit` resolves to `Err(why)` for a node that may not,
/// saying what was expected and what was found; it changes nothing.
pub trait Admission: Send + Sync + 'static {
    /// Whether `node` may open a tunnel.
    fn admit(&self, node: NodeId) -> impl Future<Output = Result<(), String>> + Send;
}

/// The yamux settings of both ends: keep-alive pings every 10 s, so a
/// tunnel whose peer vanished is noticed (its writes time out).
pub(crate) fn yamux_config(max_streams: usize) -> tokio_yamux::Config {
    tokio_yamux::Config {
        keepalive_interval: Duration::from_secs(10),
        max_stream_count: max_streams,
        ..tokio_yamux::Config::default()
    }
}

/// Writes one relay frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> std::io::Result<()> {
    w.write_all(&encode_relay(msg)).await?;
    w.flush().await
}

/// Reads one relay frame (at most [`MAX_RELAY_FRAME`] bytes).
pub(crate) async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> std::io::Result<T> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).await?;
    let len = relay_frame_len(header).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len.min(MAX_RELAY_FRAME)];
    r.read_exact(&mut body).await?;
    decode_relay(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Copies bytes both ways between `a` and `b` until both directions ended,
/// either failed, or nothing moved for `idle`.
pub(crate) async fn splice<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Send,
    B: AsyncRead + AsyncWrite + Send,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut abuf, mut bbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        tokio::select! {
            n = ar.read(&mut abuf), if a_open => match n {
                Ok(0) | Err(_) => { a_open = false; let _ = bw.shutdown().await; }
                Ok(n) => if bw.write_all(&abuf[..n]).await.is_err() { break },
            },
            n = br.read(&mut bbuf), if b_open => match n {
                Ok(0) | Err(_) => { b_open = false; let _ = aw.shutdown().await; }
                Ok(n) => if aw.write_all(&bbuf[..n]).await.is_err() { break },
            },
            _ = tokio::time::sleep(idle) => {
                tracing::debug!(idle_secs = idle.as_secs(), "closing an idle relayed connection");
                break;
            }
        }
    }
}
