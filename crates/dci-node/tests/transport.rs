//! A role's sends never wait for the network: a peer that never answers a
//! connection (any registrant can name such an address) must not stall the
//! role's loop nor its messages to anyone else, and messages to one peer
//! arrive in the order they were sent.

use std::time::{Duration, Instant};

use dci_node::transport::Transport;
use dci_proto::{Heartbeat, Identity, Inbound, Message, Net, NetworkId};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;

fn beat(seq: u64) -> Message {
    Message::Heartbeat(Heartbeat { seq, sessions: 0, warm: vec![] })
}

async fn node(seed: u8) -> (std::sync::Arc<Transport>, mpsc::Receiver<Inbound>) {
    let (tx, rx) = mpsc::channel(1024);
    (Transport::bind(Identity::from_secret([seed; 32]), NetworkId::of("test"), "127.0.0.1:0", tx).await.unwrap(), rx)
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so
/// a connection attempt hangs, like one to a blackholed address.
async fn blackhole() -> (tokio::net::TcpListener, std::net::TcpStream, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    let probe = tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await;
    assert!(probe.is_err(), "this kernel does not drop SYNs on a full accept queue: the test cannot make a blackhole");
    (listener, filler, addr.to_string())
}

#[tokio::test]
async fn a_blackholed_peer_stalls_neither_the_loop_nor_sends_to_others() {
    let (sender, _) = node(1).await;
    let (receiver, mut inbox) = node(2).await;
    let (_listener, _filler, dead) = blackhole().await;

    let t0 = Instant::now();
    for seq in 0..3 {
        sender.dispatch(Net::Send { addr: dead.clone(), msg: beat(seq) }).await;
    }
    sender.dispatch(Net::Send { addr: receiver.local_addr().to_string(), msg: beat(7) }).await;
    let dispatched = t0.elapsed();
    assert!(dispatched < Duration::from_millis(200), "dispatch waited for the network: {dispatched:?}");

    let got = tokio::time::timeout(Duration::from_secs(2), inbox.recv()).await.expect("delivered").unwrap();
    assert_eq!((got.from, got.msg), (sender.id(), beat(7)));
    assert!(t0.elapsed() < Duration::from_secs(2), "the live peer waited for the dead one: {:?}", t0.elapsed());
}

#[tokio::test]
async fn messages_to_one_peer_arrive_in_order_while_it_is_being_connected() {
    let (sender, _) = node(3).await;
    let (receiver, mut inbox) = node(4).await;
    let addr = receiver.local_addr().to_string();
    for seq in 0..200 {
        sender.dispatch(Net::Send { addr: addr.clone(), msg: beat(seq) }).await;
    }
    for seq in 0..200 {
        let got = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await.expect("delivered").unwrap();
        assert_eq!(got.msg, beat(seq));
    }
}
