//! The relay on loopback: a host reached only through its tunnel, and the
//! attacks the relay must turn away (each test named for one), with a
//! list standing in for the gateway's stake check.

use std::collections::HashSet;
use std::time::Duration;

use dci_model::NodeId;
use dci_proto::Identity;
use dci_proto::relay::{Challenge, Hello, HelloReply, Request, Response, decode_relay, encode_relay, relay_frame_len};
use dci_relay::table::Target;
use dci_relay::{Admission, ClientError, Limits, RelayClient, RelayConfig, RelayHandle, serve};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The nodes with "stake".
struct Bonded(HashSet<NodeId>);

impl Admission for Bonded {
    async fn admit(&self, node: NodeId) -> Result<(), String> {
        if self.0.contains(&node) {
            Ok(())
        } else {
            Err(format!("expected container stake of at least 100 ATH bonded by node:{node}, found 0"))
        }
    }
}

struct Net {
    relay: RelayHandle,
    relay_id: Identity,
    stop: CancellationToken,
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn key(b: u8) -> Identity {
    Identity::from_secret([b; 32])
}

/// A free run of `n` ports on loopback (probably: the relay skips taken ones).
fn ports(n: u16) -> std::ops::RangeInclusive<u16> {
    let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = p.min(65535 - n);
    base..=base + n - 1
}

async fn relay(limits: Limits, range: std::ops::RangeInclusive<u16>, bonded: &[&Identity]) -> Net {
    let relay_id = key(200);
    let stop = CancellationToken::new();
    let config = RelayConfig { listen: "127.0.0.1:0".into(), public_host: "127.0.0.1".into(), ports: range, limits };
    let admission = Bonded(bonded.iter().map(|i| i.id()).collect());
    let relay = serve(relay_id.clone(), config, admission, stop.clone()).await.unwrap();
    Net { relay, relay_id, stop }
}

impl Net {
    fn addr(&self) -> String {
        self.relay.addr().to_string()
    }

    async fn host(&self, identity: &Identity) -> Result<RelayClient, ClientError> {
        RelayClient::connect(identity.clone(), &self.addr(), self.relay_id.id(), self.stop.child_token()).await
    }
}

/// A local service answering each line with `name: line`.
async fn echo(name: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut out = format!("{name}: ").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Sends `msg` to 127.0.0.1:`port` and reads the answer (None: closed or refused).
async fn ask(port: u16, msg: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(msg.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.ok()?.ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f().await {
        assert!(t0.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read<T: serde::de::DeserializeOwned>(s: &mut TcpStream) -> T {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.unwrap();
    let mut body = vec![0u8; relay_frame_len(header).unwrap()];
    s.read_exact(&mut body).await.unwrap();
    decode_relay(&body).unwrap()
}

/// A raw connection that has read the relay's challenge.
async fn challenged(net: &Net) -> (TcpStream, Challenge) {
    let mut s = TcpStream::connect(net.addr()).await.unwrap();
    let c: Challenge = read(&mut s).await;
    (s, c)
}

async fn refused(s: &mut TcpStream, hello: &Hello) -> String {
    s.write_all(&encode_relay(hello)).await.unwrap();
    match read::<HelloReply>(s).await {
        HelloReply::Refused(why) => why,
        HelloReply::Welcome(w) => panic!("expected a refusal, got a welcome to port {}", w.node_port),
    }
}

#[tokio::test]
async fn a_host_is_reached_at_its_public_ports_and_keeps_them_when_the_tunnel_drops() {
    let host = key(1);
    let net = relay(Limits::default(), ports(8), &[&host]).await;
    let client = net.host(&host).await.unwrap();
    let (node_listener, service) = (echo("node").await, echo("render").await);
    client.set_node_local(node_listener);
    let node_port: u16 = client.node_addr().rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(client.node_addr().starts_with("127.0.0.1:"));
    assert_eq!(ask(node_port, "challenge").await.as_deref(), Some("node: challenge"));
    let public = client.forward(service).await.unwrap();
    assert_ne!(public, node_port);
    assert_eq!(ask(public, "frame").await.as_deref(), Some("render: frame"));
    assert_eq!(client.forward(service).await.unwrap(), public, "asking again: the same port");
    let mut expected = vec![(node_port, Target::Node), (public, Target::Local(service))];
    expected.sort_by_key(|(p, _)| *p);
    assert_eq!(net.relay.ports_of(&host.id()), expected);

    // The tunnel breaks: the host dials again and keeps both ports.
    net.relay.drop_tunnel(&host.id());
    until("the tunnel to drop", async || !client.is_up()).await;
    until("the host to dial again", async || client.is_up() && net.relay.is_connected(&host.id())).await;
    assert_eq!(client.node_addr(), format!("127.0.0.1:{node_port}"));
    assert_eq!(ask(public, "again").await.as_deref(), Some("render: again"));
    assert_eq!(ask(node_port, "again").await.as_deref(), Some("node: again"));

    // A released port reaches nothing.
    client.release(public).await.unwrap();
    assert_eq!(ask(public, "gone?").await, None);

    // A restarted host (a new process, same key) gets its node port back.
    let again = net.host(&host).await.unwrap();
    assert_eq!(again.node_addr(), format!("127.0.0.1:{node_port}"));
}

#[tokio::test]
async fn an_unbonded_node_is_refused_with_why() {
    let (bonded, unbonded) = (key(1), key(2));
    let net = relay(Limits::default(), ports(4), &[&bonded]).await;
    match net.host(&unbonded).await {
        Err(ClientError::Refused(why)) => assert!(why.contains("expected container stake"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(net.relay.ports_of(&unbonded.id()).is_empty() && !net.relay.is_connected(&unbonded.id()));
}

#[tokio::test]
async fn a_hello_claiming_another_nodes_id_is_refused() {
    let (victim, attacker) = (key(1), key(2));
    let net = relay(Limits::default(), ports(4), &[&victim]).await;
    let (mut s, challenge) = challenged(&net).await;
    let forged = Hello { node: victim.id(), ..Hello::sign(&attacker, &challenge, None) };
    let why = refused(&mut s, &forged).await;
    assert!(why.contains("signature is not the node's"), "{why}");
    assert!(net.relay.ports_of(&victim.id()).is_empty());
}

#[tokio::test]
async fn a_replayed_hello_is_refused() {
    let host = key(1);
    let net = relay(Limits::default(), ports(4), &[&host]).await;
    // The host's genuine hello, captured on one connection...
    let (mut first, challenge) = challenged(&net).await;
    let hello = Hello::sign(&host, &challenge, None);
    first.write_all(&encode_relay(&hello)).await.unwrap();
    assert!(matches!(read::<HelloReply>(&mut first).await, HelloReply::Welcome(_)));
    // ...and replayed on another: it answers the first connection's challenge.
    let (mut second, _) = challenged(&net).await;
    let why = refused(&mut second, &hello).await;
    assert!(why.contains("answers another challenge"), "{why}");
    // A hello meant for another relay is refused too.
    let (mut third, c) = challenged(&net).await;
    let elsewhere = Hello::sign(&host, &Challenge { relay: key(99).id(), ..c }, None);
    assert!(refused(&mut third, &elsewhere).await.contains("another relay"));
}

#[tokio::test]
async fn a_host_cannot_take_or_release_another_nodes_port() {
    let (victim, attacker) = (key(1), key(2));
    let net = relay(Limits::default(), ports(8), &[&victim, &attacker]).await;
    let v = net.host(&victim).await.unwrap();
    let service = echo("victim").await;
    let public = v.forward(service).await.unwrap();

    // The attacker's own tunnel, raw: it asks for the victim's port.
    let (mut s, challenge) = challenged(&net).await;
    s.write_all(&encode_relay(&Hello::sign(&attacker, &challenge, None))).await.unwrap();
    let HelloReply::Welcome(w) = read::<HelloReply>(&mut s).await else { panic!("the attacker is bonded") };
    let victim_node_port: u16 = v.node_addr().rsplit_once(':').unwrap().1.parse().unwrap();
    assert_ne!(w.node_port, victim_node_port);
    let mut session = tokio_yamux::Session::new_client(s, tokio_yamux::Config::default());
    let mut control = session.open_stream().unwrap();
    tokio::spawn(async move { while session.next().await.is_some() {} });
    let mut exchange = async |req: Request| -> Response {
        control.write_all(&encode_relay(&req)).await.unwrap();
        let mut header = [0u8; 4];
        control.read_exact(&mut header).await.unwrap();
        let mut body = vec![0u8; relay_frame_len(header).unwrap()];
        control.read_exact(&mut body).await.unwrap();
        decode_relay(&body).unwrap()
    };
    let r = exchange(Request::Forward { local_port: 22, want: Some(public) }).await;
    assert_eq!(r, Response::Refused(format!("port {public} is held by another node")));
    let r = exchange(Request::Forward { local_port: 22, want: Some(victim_node_port) }).await;
    assert_eq!(r, Response::Refused(format!("port {victim_node_port} is held by another node")));
    let r = exchange(Request::Release { public_port: public }).await;
    assert_eq!(r, Response::Refused(format!("port {public} is held by another node")));
    let r = exchange(Request::Forward { local_port: 0, want: None }).await;
    assert_eq!(r, Response::Refused("expected a local port, found 0".into()));
    // Nothing changed for the victim.
    assert_eq!(ask(public, "still mine").await.as_deref(), Some("victim: still mine"));
    assert_eq!(net.relay.ports_of(&victim.id()).len(), 2);
}

#[tokio::test]
async fn ports_per_node_and_in_total_are_bounded() {
    let (a, b) = (key(1), key(2));
    let limits = Limits { ports_per_node: 3, ..Limits::default() };
    let range = ports(4);
    let net = relay(limits, range.clone(), &[&a, &b]).await;
    let ca = net.host(&a).await.unwrap();
    ca.forward(1001).await.unwrap();
    ca.forward(1002).await.unwrap();
    match ca.forward(1003).await {
        Err(ClientError::Refused(why)) => assert!(why.contains("at most 3 public ports per node"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Another node: its node port is the last free one, then none is left.
    let cb = net.host(&b).await.unwrap();
    match cb.forward(1001).await {
        Err(ClientError::Refused(why)) => assert!(why.contains("found none"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(net.relay.ports_of(&a.id()).len() + net.relay.ports_of(&b.id()).len(), 4);
}

#[tokio::test]
async fn the_number_of_tunnels_is_bounded() {
    let (a, b) = (key(1), key(2));
    let net = relay(Limits { max_tunnels: 1, ..Limits::default() }, ports(4), &[&a, &b]).await;
    let _a = net.host(&a).await.unwrap();
    match net.host(&b).await {
        Err(ClientError::Refused(why)) => assert!(why.contains("all 1 tunnels in use"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn streams_per_node_are_bounded() {
    let host = key(1);
    let net = relay(Limits { streams_per_node: 2, ..Limits::default() }, ports(4), &[&host]).await;
    let client = net.host(&host).await.unwrap();
    let public = client.forward(echo("svc").await).await.unwrap();
    // Two connections held open take the node's two streams...
    let mut held = Vec::new();
    for i in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", public)).await.unwrap();
        s.write_all(format!("hold {i}").as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        held.push(s);
    }
    // ...so a third is closed at once, and one frees a place when it ends.
    assert_eq!(ask(public, "third").await, None);
    drop(held.pop());
    until("a freed stream", async || ask(public, "fourth").await.as_deref() == Some("svc: fourth")).await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_handshakes_in_flight_are_bounded() {
    let host = key(1);
    let limits = Limits { max_handshakes: 2, handshake_timeout: Duration::from_millis(500), ..Limits::default() };
    let net = relay(limits, ports(4), &[&host]).await;
    let (mut a, _) = challenged(&net).await;
    let (_b, _) = challenged(&net).await;
    // A third connection while two say nothing: closed without a challenge.
    let mut c = TcpStream::connect(net.addr()).await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await.unwrap().unwrap_or(0), 0);
    // The silent one is told why and closed after the timeout.
    match tokio::time::timeout(Duration::from_secs(3), read::<HelloReply>(&mut a)).await.unwrap() {
        HelloReply::Refused(why) => assert!(why.contains("expected a hello within"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Then there is room again.
    until("room for a handshake", async || net.host(&host).await.is_ok()).await;
}

#[tokio::test]
async fn a_garbage_hello_is_refused_and_changes_nothing() {
    let host = key(1);
    let net = relay(Limits::default(), ports(4), &[&host]).await;
    let (mut s, _) = challenged(&net).await;
    s.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    match read::<HelloReply>(&mut s).await {
        HelloReply::Refused(why) => assert!(why.contains("expected a hello frame"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(!net.relay.is_connected(&host.id()));
}

#[tokio::test]
async fn a_host_cannot_open_streams_into_the_relay() {
    let host = key(1);
    let net = relay(Limits::default(), ports(4), &[&host]).await;
    let (mut s, challenge) = challenged(&net).await;
    s.write_all(&encode_relay(&Hello::sign(&host, &challenge, None))).await.unwrap();
    assert!(matches!(read::<HelloReply>(&mut s).await, HelloReply::Welcome(_)));
    let mut session = tokio_yamux::Session::new_client(s, tokio_yamux::Config::default());
    let _control = session.open_stream().unwrap();
    let mut extra = session.open_stream().unwrap();
    tokio::spawn(async move { while session.next().await.is_some() {} });
    // The second stream is the host's attempt to reach something through the
    // relay: nothing answers, and the stream ends.
    let _ = extra.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "nothing answers a stream the host opens");
    assert!(net.relay.is_connected(&host.id()), "the tunnel itself stays up");
}

#[tokio::test]
async fn a_relay_that_cannot_prove_it_is_the_named_gateway_is_not_trusted() {
    let host = key(1);
    let net = relay(Limits::default(), ports(4), &[&host]).await;
    let wrong = RelayClient::connect(host.clone(), &net.addr(), key(77).id(), CancellationToken::new()).await;
    assert!(matches!(wrong, Err(ClientError::NotTheRelay(_))), "{wrong:?}");
}
