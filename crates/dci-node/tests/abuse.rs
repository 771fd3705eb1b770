//! The node transport under attack (issue 16): floods of idle connections
//! and of 4 MiB garbage frames delay no honest peer's messages; a message
//! signed for one network or one connection is refused by another, also
//! after the receiver restarts; an older release is refused with a reason
//! it can read; a peer that does not read loses its connection, not the
//! node's memory; connections over a limit are refused at once. Each test
//! prints what it measured (`cargo test -p dci-node --test abuse -- --nocapture`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dci_node::transport::{Dialed, Limits, Transport, TransportError};
use dci_proto::{Heartbeat, Identity, Inbound, Message, Net, NetworkId, frame};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

fn net() -> NetworkId {
    NetworkId::of("abuse")
}

fn beat(seq: u64) -> Message {
    Message::Heartbeat(Heartbeat { seq, sessions: 0, warm: vec![] })
}

async fn node_with(seed: u8, network: NetworkId, limits: Limits) -> (Arc<Transport>, mpsc::Receiver<Inbound>) {
    let (tx, rx) = mpsc::channel(4096);
    (Transport::bind_with(Identity::from_secret([seed; 32]), network, "127.0.0.1:0", tx, limits).await.unwrap(), rx)
}

async fn node(seed: u8) -> (Arc<Transport>, mpsc::Receiver<Inbound>) {
    node_with(seed, net(), Limits::default()).await
}

/// An honest peer sends a heartbeat to `to` every 50 ms for `span`, each
/// stamped with its send time; the receiver's lags are returned, in order.
async fn heartbeats_during(
    to: SocketAddr,
    inbox: &mut mpsc::Receiver<Inbound>,
    span: Duration,
    attack: impl std::future::Future<Output = ()>,
) -> Vec<Duration> {
    let (honest, _) = node(0x11).await;
    let base = Instant::now();
    let n = (span.as_millis() / 50) as u64;
    let sender = tokio::spawn(async move {
        for _ in 0..n {
            let stamp = base.elapsed().as_micros() as u64;
            honest.dispatch(Net::Send { addr: to.to_string(), msg: beat(stamp) }).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        honest
    });
    let receive = async {
        let mut lags = Vec::new();
        while lags.len() < n as usize {
            let got = tokio::time::timeout(Duration::from_secs(10), inbox.recv()).await;
            let Ok(Some(Inbound { msg: Message::Heartbeat(h), .. })) = got else {
                panic!("a heartbeat did not arrive within 10 s ({} of {n} did)", lags.len())
            };
            lags.push(base.elapsed().saturating_sub(Duration::from_micros(h.seq)));
        }
        lags
    };
    let (lags, ()) = tokio::join!(receive, attack);
    let _ = sender.await;
    lags
}

fn summary(lags: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = lags.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

/// A connection from another address than the honest peers' (127.0.0.2).
async fn attacker_socket(to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.2:0".parse().unwrap())?;
    socket.connect(to).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_delay_no_heartbeat() {
    let limits = Limits { handshake_timeout: Duration::from_secs(2), ..Limits::default() };
    let (node, mut inbox) = node_with(1, net(), limits.clone()).await;
    let to = node.local_addr();
    let mut held = Vec::new();
    let attack = async {
        // Half say nothing at all, half send a preface and stop.
        for i in 0..2000 {
            match attacker_socket(to).await {
                Ok(mut s) => {
                    if i % 2 == 1 {
                        let _ = s
                            .write_all(&frame(&dci_proto::preface(
                                Identity::from_secret([9; 32]).id(),
                                dci_node::clock::now(),
                            )))
                            .await;
                    }
                    held.push(s);
                }
                Err(e) => panic!("the attacker could not even connect: {e}"),
            }
        }
    };
    let t0 = Instant::now();
    let lags = heartbeats_during(to, &mut inbox, Duration::from_secs(4), attack).await;
    let (p50, max) = summary(&lags);
    // Every attacking connection is refused: at once over the pending
    // limit, the rest when their handshake deadline passes.
    while node.refused() < 2000 {
        assert!(t0.elapsed() < Duration::from_secs(15), "only {} of 2000 idle connections refused", node.refused());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "2,000 idle connections from one address: {} refused ({} pending at most, then the {:?} handshake deadline); \
         {} heartbeats from an honest peer meanwhile, lag p50 {p50:.2} ms, max {max:.2} ms",
        node.refused(),
        limits.pending_per_ip,
        limits.handshake_timeout,
        lags.len(),
    );
    assert!(max < 1000.0, "a heartbeat was delayed {max:.0} ms by idle connections");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mib_garbage_frames_are_refused_without_delaying_others() {
    let (node, mut inbox) = node(2).await;
    let to = node.local_addr();
    const FRAMES: u64 = 24;
    let attack = async {
        // An authenticated stranger sends frames of 4 MiB of noise.
        let mut attacker = Dialed::connect(Identity::from_secret([0x66; 32]), net(), &to.to_string()).await.unwrap();
        let mut garbage = vec![0u8; dci_proto::MAX_MESSAGE_BYTES];
        for _ in 0..FRAMES {
            rand::rng().fill_bytes(&mut garbage);
            attacker.send_sealed(&garbage).await.unwrap();
        }
        // And an unauthenticated one sends 4 MiB of noise where the preface goes.
        let mut raw = attacker_socket(to).await.unwrap();
        let _ = raw.write_all(&garbage).await;
    };
    let t0 = Instant::now();
    let lags = heartbeats_during(to, &mut inbox, Duration::from_secs(3), attack).await;
    while node.rejected() < FRAMES || node.refused() < 1 {
        assert!(t0.elapsed() < Duration::from_secs(20), "rejected {}, refused {}", node.rejected(), node.refused());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (p50, max) = summary(&lags);
    println!(
        "{FRAMES} garbage frames of 4 MiB: {} rejected, the unauthenticated flood refused ({}); {} heartbeats \
         meanwhile, lag p50 {p50:.2} ms, max {max:.2} ms",
        node.rejected(),
        node.refused(),
        lags.len()
    );
    assert!(inbox.try_recv().is_err(), "garbage reached the role");
    assert!(max < 1000.0, "a heartbeat was delayed {max:.0} ms by garbage frames");
}

#[tokio::test]
async fn a_node_of_another_network_cannot_connect() {
    let (receiver, mut inbox) = node(3).await;
    let (stranger, _) = node_with(4, NetworkId::of("another network"), Limits::default()).await;
    let (tx, mut unreachable) = mpsc::unbounded_channel();
    stranger.report_unreachable(tx);
    stranger.dispatch(Net::Send { addr: receiver.local_addr().to_string(), msg: beat(1) }).await;
    let reported = tokio::time::timeout(Duration::from_secs(5), unreachable.recv()).await.unwrap().unwrap();
    assert_eq!(reported, receiver.local_addr().to_string());
    // Each end finds the other's proof names another network.
    let t0 = Instant::now();
    while receiver.refused() < 1 {
        assert!(t0.elapsed() < Duration::from_secs(5), "the receiver did not refuse the stranger");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await.is_err(), "a message got through");
    // The same node in the right network is served.
    let mut friend =
        Dialed::connect(Identity::from_secret([4; 32]), net(), &receiver.local_addr().to_string()).await.unwrap();
    let sealed = friend.seal(&beat(2));
    friend.send_sealed(&sealed).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await.unwrap().unwrap();
    assert_eq!(got.msg, beat(2));
}

#[tokio::test]
async fn a_replayed_message_is_refused_after_the_receiver_restarts() {
    let sender = Identity::from_secret([5; 32]);
    let (receiver, mut inbox) = node(6).await;
    let mut conn = Dialed::connect(sender.clone(), net(), &receiver.local_addr().to_string()).await.unwrap();
    let recorded = conn.seal(&beat(1));
    conn.send_sealed(&recorded).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await.unwrap().unwrap().msg, beat(1));

    // The receiver restarts: same key, nothing remembered.
    drop((receiver, inbox, conn));
    let (restarted, mut inbox) = node(6).await;
    let mut again = Dialed::connect(sender.clone(), net(), &restarted.local_addr().to_string()).await.unwrap();
    again.send_sealed(&recorded).await.unwrap();
    // Also replayed by a third party, on its own connection.
    let mut thief =
        Dialed::connect(Identity::from_secret([7; 32]), net(), &restarted.local_addr().to_string()).await.unwrap();
    thief.send_sealed(&recorded).await.unwrap();
    let t0 = Instant::now();
    while restarted.rejected() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5), "the replays were not refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(inbox.try_recv().is_err(), "a replay reached the role");
    // The sender's connection still works for fresh messages.
    let fresh = again.seal(&beat(2));
    again.send_sealed(&fresh).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await.unwrap().unwrap().msg, beat(2));
}

/// Protocol 10's envelope, as an older release sends and reads it.
#[derive(serde::Serialize, serde::Deserialize)]
struct V10Envelope {
    signed: Vec<u8>,
    signature: Vec<u8>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct V10Header {
    version: u16,
    sender: dci_model::NodeId,
    nonce: u64,
    sent_at: dci_model::Timestamp,
    body: Vec<u8>,
}

#[tokio::test]
async fn an_older_release_is_refused_with_a_reason_it_can_read() {
    let (receiver, mut inbox) = node(8).await;
    let mut old = TcpStream::connect(receiver.local_addr()).await.unwrap();
    let body = postcard::to_stdvec(&beat(1)).unwrap();
    let header = V10Header {
        version: 10,
        sender: Identity::from_secret([8; 32]).id(),
        nonce: 1,
        sent_at: dci_node::clock::now(),
        body,
    };
    let signed = postcard::to_stdvec(&header).unwrap();
    old.write_all(&frame(&postcard::to_stdvec(&V10Envelope { signed, signature: vec![0; 64] }).unwrap()))
        .await
        .unwrap();
    // The answer is one frame an old node opens as far as its version
    // check, then the connection closes.
    let mut len = [0u8; 4];
    old.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    old.read_exact(&mut reply).await.unwrap();
    let env: V10Envelope = postcard::from_bytes(&reply).unwrap();
    let header: V10Header = postcard::from_bytes(&env.signed).unwrap();
    assert_eq!(header.version, dci_proto::VERSION, "an old node refuses this for its version");
    assert_eq!(old.read(&mut [0u8; 1]).await.unwrap(), 0, "the connection is closed");
    assert_eq!(receiver.refused(), 1);
    assert!(inbox.try_recv().is_err());
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_refused_at_once() {
    let limits = Limits { connections_per_ip: 4, ..Limits::default() };
    let (receiver, _inbox) = node_with(9, net(), limits).await;
    let addr = receiver.local_addr().to_string();
    let mut kept = Vec::new();
    for i in 0..4u8 {
        kept.push(Dialed::connect(Identity::from_secret([0x20 + i; 32]), net(), &addr).await.unwrap());
    }
    let t0 = Instant::now();
    let fifth = Dialed::connect(Identity::from_secret([0x30; 32]), net(), &addr).await;
    assert!(matches!(fifth, Err(TransportError::Connect { .. })), "a fifth connection from one address was kept");
    println!("the fifth connection from one address was refused in {:?}", t0.elapsed());
    assert_eq!(receiver.refused(), 1);
    // Another address is still served.
    let socket = attacker_socket(receiver.local_addr()).await;
    assert!(socket.is_ok());
    drop(kept);
}

#[tokio::test]
async fn a_peer_that_does_not_read_loses_its_connection() {
    let limits = Limits { write_queue: 8, ..Limits::default() };
    let (node, mut inbox) = node_with(10, net(), limits).await;
    // A peer says hello and then never reads.
    let mut lazy =
        Dialed::connect(Identity::from_secret([0x40; 32]), net(), &node.local_addr().to_string()).await.unwrap();
    let hello = lazy.seal(&beat(1));
    lazy.send_sealed(&hello).await.unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await.unwrap().unwrap().conn;
    // Large answers fill the socket's buffers, then the queue.
    let big = Message::Refused { reason: "x".repeat(1 << 20) };
    let mut sent = 0;
    let full = loop {
        match node.reply(conn, &big) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 10_000, "the queue never filled");
        tokio::task::yield_now().await;
    };
    assert!(matches!(full, TransportError::QueueFull(_)), "{full}");
    assert!(node.peer_of(conn).is_none(), "the connection is closed");
    println!("a peer that does not read: its connection closed after {sent} queued 1 MiB answers");
    // The node still serves others.
    let (other, _) = self::node(11).await;
    other.dispatch(Net::Send { addr: node.local_addr().to_string(), msg: beat(2) }).await;
    let got = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await.unwrap().unwrap();
    assert_eq!(got.msg, beat(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_valid_messages_from_one_peer_is_cut_to_its_budget() {
    let limits = Limits::default();
    let (node, mut inbox) = node_with(12, net(), limits.clone()).await;
    let to = node.local_addr();
    const FLOOD: u64 = 20_000;
    let mut delivered = 0u64;
    let stranger = Identity::from_secret([0x77; 32]);
    let flood = async {
        let mut conn = Dialed::connect(stranger.clone(), net(), &to.to_string()).await.unwrap();
        for seq in 0..FLOOD {
            let sealed = conn.seal(&beat(seq));
            conn.send_sealed(&sealed).await.unwrap();
        }
    };
    let t0 = Instant::now();
    // The heartbeats of an honest peer and the flood share the inbox: count
    // what the stranger got through on the way.
    let (honest, _) = self::node(0x12).await;
    let base = Instant::now();
    let beats = tokio::spawn(async move {
        for _ in 0..40 {
            let stamp = base.elapsed().as_micros() as u64;
            honest.dispatch(Net::Send { addr: to.to_string(), msg: beat(stamp) }).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let honest_id = Identity::from_secret([0x12; 32]).id();
    let mut lags = Vec::new();
    let receive = async {
        while lags.len() < 40 {
            let got = tokio::time::timeout(Duration::from_secs(10), inbox.recv()).await.unwrap().unwrap();
            match got.msg {
                Message::Heartbeat(h) if got.from == honest_id => {
                    lags.push(base.elapsed().saturating_sub(Duration::from_micros(h.seq)))
                }
                _ => delivered += 1,
            }
        }
    };
    tokio::join!(flood, receive);
    beats.await.unwrap();
    while node.rejected() + delivered < FLOOD {
        assert!(t0.elapsed() < Duration::from_secs(30), "the flood was neither delivered nor rejected");
        match tokio::time::timeout(Duration::from_millis(10), inbox.recv()).await {
            Ok(Some(_)) => delivered += 1,
            _ => continue,
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (p50, max) = summary(&lags);
    println!(
        "{FLOOD} valid messages from one stranger in {elapsed:.2} s: {} rejected over the budget of {}/s (burst {}); \
         honest heartbeats meanwhile, lag p50 {p50:.2} ms, max {max:.2} ms",
        node.rejected(),
        limits.messages_per_sec,
        limits.message_burst
    );
    let allowed = limits.message_burst as f64 + limits.messages_per_sec as f64 * elapsed;
    assert!(
        (FLOOD - node.rejected()) as f64 <= allowed + 1.0,
        "{} delivered, more than the budget allows ({allowed:.0})",
        FLOOD - node.rejected()
    );
    assert!(node.rejected() > 0, "nothing was cut");
    assert!(max < 1000.0, "a heartbeat was delayed {max:.0} ms by the flood");
}
