//! The relay server, in the gateway's process: accepts hosts' tunnels on
//! its control port and forwards the public ports it leased them.
//!
//! Per control connection: at most [`Limits::max_handshakes`] at once, each
//! with [`Limits::handshake_timeout`] to finish; a [`Challenge`], the
//! host's [`Hello`] (checked: addressed here, answering this challenge,
//! signed by the node), the [`Admission`] check, then the node port from
//! the [`Table`]; a refusal is sent as `HelloReply::Refused` and the
//! connection closed, changing nothing. A node that connects again
//! replaces its earlier tunnel. Per public port: a listener that opens one
//! yamux stream to the holding node per connection (at most
//! [`Limits::streams_per_node`] open), or closes the connection when the
//! node is away. Ports stay bound while leased, so an absent node keeps
//! its address for [`Limits::reserve_for`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dci_model::NodeId;
use dci_proto::Identity;
use dci_proto::relay::{Challenge, Hello, HelloReply, Request, Response, StreamOpen, Welcome};
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::table::{Refusal, Table, Target};
use crate::{Admission, Limits, read_frame, splice, write_frame, yamux_config};

/// What the relay needs to run.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The control port hosts dial, `host:port`; public ports are bound on
    /// the same host.
    pub listen: String,
    /// The host others reach the public ports at (what hosts register).
    pub public_host: String,
    /// The public ports it hands out.
    pub ports: RangeInclusive<u16>,
    /// Its bounds.
    pub limits: Limits,
}

struct Tunnel {
    generation: u64,
    control: tokio_yamux::Control,
    streams: Arc<Semaphore>,
    cancel: CancellationToken,
}

struct State {
    table: Table,
    tunnels: HashMap<NodeId, Tunnel>,
    listeners: HashMap<u16, CancellationToken>,
    next_generation: u64,
}

struct Shared {
    identity: Identity,
    config: RelayConfig,
    bind_ip: IpAddr,
    state: Mutex<State>,
    handshakes: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// A running relay.
#[derive(Clone)]
pub struct RelayHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl RelayHandle {
    /// Where the control port listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The public ports `node` holds, and where each goes.
    pub fn ports_of(&self, node: &NodeId) -> Vec<(u16, Target)> {
        self.shared.state.lock().expect("relay lock").table.ports_of(node)
    }

    /// Whether `node`'s tunnel is up.
    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.shared.state.lock().expect("relay lock").tunnels.contains_key(node)
    }

    /// Closes `node`'s tunnel (its ports stay reserved): what a broken
    /// connection does; the host dials again.
    pub fn drop_tunnel(&self, node: &NodeId) {
        if let Some(t) = self.shared.state.lock().expect("relay lock").tunnels.get(node) {
            t.cancel.cancel();
        }
    }
}

/// Binds the control port and serves until `shutdown`.
pub async fn serve<A: Admission>(
    identity: Identity,
    config: RelayConfig,
    admission: A,
    shutdown: CancellationToken,
) -> std::io::Result<RelayHandle> {
    let listener = TcpListener::bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        identity,
        bind_ip: addr.ip(),
        state: Mutex::new(State {
            table: Table::new(config.ports.clone(), config.limits),
            tunnels: HashMap::new(),
            listeners: HashMap::new(),
            next_generation: 1,
        }),
        handshakes: Arc::new(Semaphore::new(config.limits.max_handshakes)),
        config,
        shutdown: shutdown.clone(),
    });
    let admission = Arc::new(admission);
    let accept = shared.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = accept.shutdown.cancelled() => break,
                s = listener.accept() => match s { Ok(s) => s, Err(_) => continue },
            };
            let Ok(permit) = accept.handshakes.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "relay: too many handshakes in flight; connection closed");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (shared, admission) = (accept.clone(), admission.clone());
            tokio::spawn(async move { tunnel(shared, admission, stream, peer, permit).await });
        }
    });
    // Absent nodes' reservations run out.
    let expire = shared.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = expire.shutdown.cancelled() => break,
                _ = every.tick() => {
                    let mut st = expire.state.lock().expect("relay lock");
                    for port in st.table.expire(Instant::now()) {
                        if let Some(l) = st.listeners.remove(&port) {
                            l.cancel();
                        }
                    }
                }
            }
        }
    });
    tracing::info!(%addr, public_host = %shared.config.public_host, "relay listening");
    Ok(RelayHandle { addr, shared })
}

/// The hello: what the host said, or why it is refused (`Err(Some(why))`
/// to tell it, `Err(None)` when the connection is already gone).
async fn hello<A: Admission>(
    shared: &Shared,
    admission: &A,
    stream: &mut TcpStream,
) -> Result<(Hello, [u8; 32]), Option<String>> {
    let challenge = Challenge { relay: shared.identity.id(), nonce: rand::random() };
    write_frame(stream, &challenge).await.map_err(|_| None)?;
    let hello: Hello = read_frame(stream).await.map_err(|e| Some(format!("expected a hello frame: {e}")))?;
    if let Some(why) = hello.check(&challenge) {
        return Err(Some(why.to_owned()));
    }
    admission.admit(hello.node).await.map_err(Some)?;
    Ok((hello, challenge.nonce))
}

/// One control connection, from the handshake to the end of its tunnel.
async fn tunnel<A: Admission>(
    shared: Arc<Shared>,
    admission: Arc<A>,
    mut stream: TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let limits = shared.config.limits;
    let said = tokio::time::timeout(limits.handshake_timeout, hello(&shared, &*admission, &mut stream)).await;
    let (hello, nonce) = match said {
        Ok(Ok(h)) => h,
        Ok(Err(Some(why))) => {
            tracing::warn!(%peer, %why, "relay: hello refused");
            let _ = write_frame(&mut stream, &HelloReply::Refused(why)).await;
            return;
        }
        Ok(Err(None)) => return,
        Err(_) => {
            tracing::warn!(%peer, "relay: no hello in time; connection closed");
            let why = format!("expected a hello within {} s", limits.handshake_timeout.as_secs());
            let _ = write_frame(&mut stream, &HelloReply::Refused(why)).await;
            return;
        }
    };
    let node = hello.node;
    // The node port, a listener on it, and this tunnel in place of any earlier.
    let granted = {
        let mut st = shared.state.lock().expect("relay lock");
        let mut bound = Vec::new();
        let r = {
            let State { table, listeners, .. } = &mut *st;
            table.connect(node, hello.want_node_port, &mut |p| usable(&shared, listeners, &mut bound, p))
        };
        r.inspect(|port| start_listeners(&shared, &mut st, bound, *port))
    };
    let node_port = match granted {
        Ok(p) => p,
        Err(Refusal(why)) => {
            tracing::warn!(%peer, node = %node.short(), %why, "relay: tunnel refused");
            let _ = write_frame(&mut stream, &HelloReply::Refused(why)).await;
            return;
        }
    };
    let welcome = Welcome::sign(&shared.identity, &node, &nonce, shared.config.public_host.clone(), node_port);
    if write_frame(&mut stream, &HelloReply::Welcome(welcome)).await.is_err() {
        shared.state.lock().expect("relay lock").table.disconnect(&node, Instant::now());
        return;
    }
    drop(permit);
    let mut session = tokio_yamux::Session::new_server(stream, yamux_config(limits.streams_per_node + 2));
    let cancel = shared.shutdown.child_token();
    let generation = {
        let mut st = shared.state.lock().expect("relay lock");
        let generation = st.next_generation;
        st.next_generation += 1;
        let t = Tunnel {
            generation,
            control: session.control(),
            streams: Arc::new(Semaphore::new(limits.streams_per_node)),
            cancel: cancel.clone(),
        };
        if let Some(old) = st.tunnels.insert(node, t) {
            old.cancel.cancel();
        }
        generation
    };
    tracing::info!(%peer, node = %node.short(), node_port, "relay: tunnel up");
    let mut control_taken = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            s = session.next() => match s {
                Some(Ok(stream)) if !control_taken => {
                    control_taken = true;
                    let shared = shared.clone();
                    let cancel = cancel.clone();
                    tokio::spawn(async move { control(shared, node, stream, cancel).await });
                }
                Some(Ok(_extra)) => {
                    tracing::warn!(node = %node.short(), "relay: a host opened a second stream; closed (only the relay opens data streams)");
                }
                Some(Err(_)) | None => break,
            },
        }
    }
    cancel.cancel();
    // Dropping the session closes the connection (and every stream on it).
    drop(session);
    let mut st = shared.state.lock().expect("relay lock");
    if st.tunnels.get(&node).is_some_and(|t| t.generation == generation) {
        st.tunnels.remove(&node);
        st.table.disconnect(&node, Instant::now());
        tracing::info!(node = %node.short(), "relay: tunnel down; its ports stay reserved for it");
    }
}

/// Whether port `p` can be given: already listening, or bound now (kept in `bound`).
fn usable(
    shared: &Shared,
    listeners: &HashMap<u16, CancellationToken>,
    bound: &mut Vec<(u16, std::net::TcpListener)>,
    p: u16,
) -> bool {
    if listeners.contains_key(&p) {
        return true;
    }
    match std::net::TcpListener::bind((shared.bind_ip, p)) {
        Ok(l) => {
            bound.push((p, l));
            true
        }
        Err(_) => false,
    }
}

/// Starts the accept loop of `port` if it was bound for this lease; drops
/// any other socket bound while looking.
fn start_listeners(shared: &Arc<Shared>, st: &mut State, bound: Vec<(u16, std::net::TcpListener)>, port: u16) {
    for (p, l) in bound {
        if p != port {
            continue;
        }
        let listener = match l.set_nonblocking(true).and_then(|()| TcpListener::from_std(l)) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(port = p, error = %e, "relay: cannot listen on a public port");
                continue;
            }
        };
        let cancel = shared.shutdown.child_token();
        st.listeners.insert(p, cancel.clone());
        let shared = shared.clone();
        tokio::spawn(async move { public(shared, listener, p, cancel).await });
    }
}

/// A public port: each connection becomes a stream to the node holding it.
async fn public(shared: Arc<Shared>, listener: TcpListener, port: u16, cancel: CancellationToken) {
    loop {
        let (conn, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            c = listener.accept() => match c { Ok(c) => c, Err(_) => continue },
        };
        let found = {
            let st = shared.state.lock().expect("relay lock");
            st.table.lookup(port).and_then(|lease| {
                let t = st.tunnels.get(&lease.node)?;
                Some((lease.node, t.control.clone(), t.streams.clone(), t.cancel.clone()))
            })
        };
        let Some((node, mut control, streams, tunnel_down)) = found else {
            tracing::debug!(port, %peer, "relay: a connection to an absent node's port; closed");
            continue;
        };
        let Ok(permit) = streams.try_acquire_owned() else {
            tracing::warn!(port, node = %node.short(), "relay: the node has its maximum of streams open; connection closed");
            continue;
        };
        let idle = shared.config.limits.idle_timeout;
        let _ = conn.set_nodelay(true);
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(mut stream) = control.open_stream().await else { return };
            if write_frame(&mut stream, &StreamOpen { public_port: port }).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tunnel_down.cancelled() => {}
                _ = splice(conn, stream, idle) => {}
            }
        });
    }
}

/// The host's control stream: requests answered in order.
async fn control(shared: Arc<Shared>, node: NodeId, mut stream: tokio_yamux::StreamHandle, cancel: CancellationToken) {
    loop {
        let req: Request = tokio::select! {
            _ = cancel.cancelled() => break,
            r = read_frame(&mut stream) => match r {
                Ok(r) => r,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        tracing::warn!(node = %node.short(), error = %e, "relay: a bad control frame; tunnel closed");
                        cancel.cancel();
                    }
                    break;
                }
            },
        };
        let resp = answer(&shared, node, req);
        if let Response::Refused(why) = &resp {
            tracing::warn!(node = %node.short(), %why, "relay: request refused");
        }
        if write_frame(&mut stream, &resp).await.is_err() {
            break;
        }
    }
}

fn answer(shared: &Arc<Shared>, node: NodeId, req: Request) -> Response {
    let mut st = shared.state.lock().expect("relay lock");
    match req {
        Request::Forward { local_port, want } => {
            if local_port == 0 {
                return Response::Refused("expected a local port, found 0".into());
            }
            let mut bound = Vec::new();
            let r = {
                let State { table, listeners, .. } = &mut *st;
                table.lease(node, Target::Local(local_port), want, &mut |p| usable(shared, listeners, &mut bound, p))
            };
            match r {
                Ok(public_port) => {
                    start_listeners(shared, &mut st, bound, public_port);
                    Response::Forwarded { local_port, public_port }
                }
                Err(Refusal(why)) => Response::Refused(why),
            }
        }
        Request::Release { public_port } => match st.table.release(&node, public_port) {
            Ok(_) => {
                if let Some(l) = st.listeners.remove(&public_port) {
                    l.cancel();
                }
                Response::Released { public_port }
            }
            Err(Refusal(why)) => Response::Refused(why),
        },
    }
}
