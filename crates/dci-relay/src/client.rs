//! The host's side of the relay: one outbound TCP connection to the relay
//! (so it works behind a masquerading NAT), the hello signed with the
//! host's node key, then yamux. The host opens one control stream to ask
//! for public ports ([`RelayClient::forward`], [`RelayClient::release`]);
//! the relay opens a stream per connection that arrived at one of the
//! host's public ports, and the host connects it to `127.0.0.1:<local
//! port>`: its node listener for the node port, else the local port it
//! asked that public port for. A stream for a port it never asked for is
//! closed. When the connection drops, the host dials again with backoff
//! (0.5 s doubling to 30 s), asks for its node port and every public port
//! it held, and logs loudly if one of them could not be kept.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dci_model::NodeId;
use dci_proto::Identity;
use dci_proto::relay::{Challenge, Hello, HelloReply, Request, Response, StreamOpen};
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{read_frame, splice, write_frame, yamux_config};

/// How long a request waits for a tunnel that is down to come back.
const WAIT_FOR_TUNNEL: Duration = Duration::from_secs(10);
/// How long a relayed connection may sit idle on the host's side.
const HOST_IDLE: Duration = Duration::from_secs(600);

/// Why the host could not use the relay.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The relay could not be reached or the connection broke.
    #[error("relay {addr}: {detail}")]
    Io {
        /// The relay's control address.
        addr: String,
        /// What happened.
        detail: String,
    },
    /// The relay refused, and said why.
    #[error("the relay refused: {0}")]
    Refused(String),
    /// The relay's answer was not signed by the relay the network file names.
    #[error("the relay at {0} did not prove to be the gateway the network file names")]
    NotTheRelay(String),
}

/// An open control stream, one request at a time.
type Control = Arc<tokio::sync::Mutex<tokio_yamux::StreamHandle>>;

struct Inner {
    identity: Identity,
    relay_addr: String,
    relay_id: NodeId,
    public_host: String,
    node_port: AtomicU16,
    /// The host's node listener (0 until known).
    node_local: AtomicU16,
    /// Public port → local port, for every forward the host holds.
    forwards: Mutex<BTreeMap<u16, u16>>,
    /// The current control stream (None while the tunnel is down).
    control: watch::Sender<Option<Control>>,
    shutdown: CancellationToken,
}

/// A host's tunnel through the relay. Cheap to clone.
#[derive(Clone)]
pub struct RelayClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelayClient({} via {})", self.node_addr(), self.inner.relay_addr)
    }
}

struct Connected {
    session: tokio_yamux::Session<TcpStream>,
    control: tokio_yamux::StreamHandle,
    public_host: String,
    node_port: u16,
}

/// Dials the relay, says hello, opens the control stream.
async fn dial(identity: &Identity, addr: &str, relay_id: &NodeId, want: Option<u16>) -> Result<Connected, ClientError> {
    let io = |detail: String| ClientError::Io { addr: addr.to_owned(), detail };
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| io("connect timed out".into()))?
        .map_err(|e| io(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let handshake = async {
        let challenge: Challenge =
            read_frame(&mut stream).await.map_err(|e| io(format!("reading its challenge: {e}")))?;
        if challenge.relay != *relay_id {
            return Err(ClientError::NotTheRelay(addr.to_owned()));
        }
        let hello = Hello::sign(identity, &challenge, want);
        write_frame(&mut stream, &hello).await.map_err(|e| io(format!("sending the hello: {e}")))?;
        match read_frame::<_, HelloReply>(&mut stream).await.map_err(|e| io(format!("reading its answer: {e}")))? {
            HelloReply::Refused(why) => Err(ClientError::Refused(why)),
            HelloReply::Welcome(w) if w.verifies(relay_id, &identity.id(), &challenge.nonce) => Ok(w),
            HelloReply::Welcome(_) => Err(ClientError::NotTheRelay(addr.to_owned())),
        }
    };
    let welcome = tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .map_err(|_| io("no answer to the hello within 10 s".into()))??;
    let mut session = tokio_yamux::Session::new_client(stream, yamux_config(1024));
    let control = session.open_stream().map_err(|e| io(format!("opening the control stream: {e}")))?;
    Ok(Connected { session, control, public_host: welcome.public_host, node_port: welcome.node_port })
}

impl RelayClient {
    /// Dials the relay at `relay_addr` as `identity` (the relay must prove
    /// to be `relay_id`) and keeps the tunnel up until `shutdown`. The first
    /// connection must succeed: a refusal (no stake bonded, the relay full)
    /// is returned as it is, for the operator to read.
    pub async fn connect(
        identity: Identity,
        relay_addr: &str,
        relay_id: NodeId,
        shutdown: CancellationToken,
    ) -> Result<RelayClient, ClientError> {
        let first = dial(&identity, relay_addr, &relay_id, None).await?;
        let (control_tx, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            identity,
            relay_addr: relay_addr.to_owned(),
            relay_id,
            public_host: first.public_host.clone(),
            node_port: AtomicU16::new(first.node_port),
            node_local: AtomicU16::new(0),
            forwards: Mutex::new(BTreeMap::new()),
            control: control_tx,
            shutdown,
        });
        let client = RelayClient { inner };
        let keeper = client.clone();
        tokio::spawn(async move { keeper.keep(first).await });
        Ok(client)
    }

    /// The host's public node address, `public_host:node_port`: what it registers.
    pub fn node_addr(&self) -> String {
        format!("{}:{}", self.inner.public_host, self.inner.node_port.load(Ordering::Relaxed))
    }

    /// The host others reach its public ports at.
    pub fn public_host(&self) -> &str {
        &self.inner.public_host
    }

    /// Where the node port's connections go: the host's node listener.
    pub fn set_node_local(&self, port: u16) {
        self.inner.node_local.store(port, Ordering::Relaxed);
    }

    /// Whether the tunnel is up now.
    pub fn is_up(&self) -> bool {
        self.inner.control.borrow().is_some()
    }

    /// A public port whose connections reach `local_port` on this host.
    pub async fn forward(&self, local_port: u16) -> Result<u16, ClientError> {
        match self.request(Request::Forward { local_port, want: None }).await? {
            Response::Forwarded { public_port, .. } => {
                self.inner.forwards.lock().expect("forwards lock").insert(public_port, local_port);
                Ok(public_port)
            }
            Response::Refused(why) => Err(ClientError::Refused(why)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Gives `public_port` back (its connections stop reaching the host).
    pub async fn release(&self, public_port: u16) -> Result<(), ClientError> {
        self.inner.forwards.lock().expect("forwards lock").remove(&public_port);
        match self.request(Request::Release { public_port }).await? {
            Response::Released { .. } => Ok(()),
            Response::Refused(why) => Err(ClientError::Refused(why)),
            other => Err(self.unexpected(&other)),
        }
    }

    fn unexpected(&self, r: &Response) -> ClientError {
        ClientError::Io { addr: self.inner.relay_addr.clone(), detail: format!("unexpected answer {r:?}") }
    }

    /// Sends one request on the control stream, waiting for the tunnel
    /// (at most [`WAIT_FOR_TUNNEL`]) if it is down.
    async fn request(&self, req: Request) -> Result<Response, ClientError> {
        let mut rx = self.inner.control.subscribe();
        let control = tokio::time::timeout(WAIT_FOR_TUNNEL, rx.wait_for(|c| c.is_some()))
            .await
            .map_err(|_| ClientError::Io {
                addr: self.inner.relay_addr.clone(),
                detail: format!("the tunnel is down and did not come back within {} s", WAIT_FOR_TUNNEL.as_secs()),
            })?
            .map_err(|_| ClientError::Io {
                addr: self.inner.relay_addr.clone(),
                detail: "the host is stopping".into(),
            })?
            .clone()
            .expect("waited for one");
        exchange(&control, &req).await.map_err(|e| ClientError::Io {
            addr: self.inner.relay_addr.clone(),
            detail: format!("the control stream: {e}"),
        })
    }

    /// Runs the tunnel, and dials again whenever it drops, until shutdown.
    async fn keep(self, first: Connected) {
        let mut next = Some(first);
        let mut backoff = Duration::from_millis(500);
        loop {
            if let Some(c) = next.take() {
                backoff = Duration::from_millis(500);
                self.run(c).await;
                if self.inner.shutdown.is_cancelled() {
                    break;
                }
                tracing::warn!(relay = %self.inner.relay_addr, "the relay tunnel dropped; dialling again");
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            let want = Some(self.inner.node_port.load(Ordering::Relaxed));
            match dial(&self.inner.identity, &self.inner.relay_addr, &self.inner.relay_id, want).await {
                Ok(c) => {
                    if Some(c.node_port) != want {
                        tracing::error!(
                            was = ?want, now = c.node_port,
                            "the relay gave this host another node port: the address it registered no longer reaches it; restart the host"
                        );
                        self.inner.node_port.store(c.node_port, Ordering::Relaxed);
                    }
                    next = Some(c);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "the relay tunnel is down");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        self.inner.control.send_replace(None);
    }

    /// One tunnel's life: ask again for the ports held, then serve the
    /// relay's streams until the session ends.
    async fn run(&self, c: Connected) {
        let Connected { mut session, control, .. } = c;
        let control: Control = Arc::new(tokio::sync::Mutex::new(control));
        let again = self.clone();
        let replay = control.clone();
        // The session must be polled for the replay's answers to arrive:
        // the replay runs beside it, and only then is the control handed out.
        let restore = tokio::spawn(async move {
            again.restore(&replay).await;
            again.inner.control.send_replace(Some(replay));
        });
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => break,
                s = session.next() => match s {
                    Some(Ok(stream)) => {
                        let me = self.clone();
                        tokio::spawn(async move { me.serve(stream).await });
                    }
                    Some(Err(_)) | None => break,
                },
            }
        }
        restore.abort();
        self.inner.control.send_replace(None);
    }

    /// After a reconnect: the same public port for every forward held.
    async fn restore(&self, control: &Control) {
        let held: Vec<(u16, u16)> =
            self.inner.forwards.lock().expect("forwards lock").iter().map(|(p, l)| (*p, *l)).collect();
        for (public, local) in held {
            let mut got = exchange(control, &Request::Forward { local_port: local, want: Some(public) }).await;
            if let Ok(Response::Refused(why)) = &got {
                tracing::error!(public, %why, "the relay did not keep a forwarded port; asking for another");
                got = exchange(control, &Request::Forward { local_port: local, want: None }).await;
            }
            match got {
                Ok(Response::Forwarded { public_port, .. }) if public_port == public => {}
                Ok(Response::Forwarded { public_port, .. }) => {
                    tracing::error!(
                        was = public,
                        now = public_port,
                        local,
                        "a service's public port changed: its endpoint no longer reaches it"
                    );
                    let mut f = self.inner.forwards.lock().expect("forwards lock");
                    f.remove(&public);
                    f.insert(public_port, local);
                }
                other => tracing::error!(public, local, answer = ?other, "a forwarded port was lost"),
            }
        }
    }

    /// One stream the relay opened: connect it to the local port its public port stands for.
    async fn serve(&self, mut stream: tokio_yamux::StreamHandle) {
        let open: StreamOpen = match tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream)).await {
            Ok(Ok(o)) => o,
            _ => return,
        };
        let local = if open.public_port == self.inner.node_port.load(Ordering::Relaxed) {
            Some(self.inner.node_local.load(Ordering::Relaxed)).filter(|p| *p != 0)
        } else {
            self.inner.forwards.lock().expect("forwards lock").get(&open.public_port).copied()
        };
        let Some(local) = local else {
            tracing::warn!(
                port = open.public_port,
                "the relay opened a stream for a port this host never asked for; closed"
            );
            return;
        };
        match TcpStream::connect(("127.0.0.1", local)).await {
            Ok(conn) => {
                let _ = conn.set_nodelay(true);
                splice(conn, stream, HOST_IDLE).await;
            }
            Err(e) => tracing::warn!(local, error = %e, "a relayed connection found nothing listening"),
        }
    }
}

/// One request, one answer.
async fn exchange(control: &Control, req: &Request) -> std::io::Result<Response> {
    let mut c = control.lock().await;
    write_frame(&mut *c, req).await?;
    tokio::time::timeout(Duration::from_secs(10), read_frame(&mut *c))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 10 s"))?
}
