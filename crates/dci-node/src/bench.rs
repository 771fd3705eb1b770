//! `dci bench transport`: authenticated messages per second between two
//! nodes on loopback through the transport ([`crate::transport`]: Noise,
//! a seal per message, each connection opening its own frames), against
//! the plain TCP path it replaced (the same seal per message, framed on a
//! bare socket, opened under one lock shared by every connection), measured
//! in the same run; and the time to set up a connection on each.
//!
//! The plain path is rebuilt here for the comparison only: it is what
//! protocol 10 did per message (sign, frame, write; read, lock, verify,
//! decode), with this build's envelope.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dci_proto::{Channel, Heartbeat, Identity, Inbound, Message, Net, NetworkId, Opener, frame, frame_len, seal};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::clock;
use crate::transport::{Dialed, FRESHNESS_WINDOW, Limits, Transport};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Messages sent one way on each path.
    pub messages: u64,
    /// Messages in flight at most (the sender waits for the receiver).
    pub window: u64,
    /// Connections set up on each path for the setup time.
    pub connections: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig { messages: 100_000, window: 512, connections: 200 }
    }
}

/// The report, as JSON.
#[derive(Debug, Serialize)]
pub struct TransportBench {
    /// Authenticated heartbeats per second through the transport.
    pub noise_msgs_per_sec: f64,
    /// The same through the plain TCP path.
    pub plain_tcp_msgs_per_sec: f64,
    /// `noise_msgs_per_sec / plain_tcp_msgs_per_sec`.
    pub ratio: f64,
    /// Median time to a usable connection: TCP connect, preface, Noise
    /// handshake and both binding proofs.
    pub noise_connect_p50_ms: f64,
    /// Median TCP connect time (all the plain path did).
    pub plain_connect_p50_ms: f64,
    /// Messages per run.
    pub messages: u64,
    /// Bytes of one sealed heartbeat.
    pub sealed_bytes: usize,
}

fn beat(seq: u64) -> Message {
    Message::Heartbeat(Heartbeat { seq, sessions: 0, warm: vec![] })
}

/// Runs the benchmark on a runtime of its own.
pub fn run(config: &BenchConfig) -> anyhow::Result<TransportBench> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let noise = noise_rate(config).await?;
        let plain = plain_rate(config).await?;
        let noise_connect = noise_connect(config.connections).await?;
        let plain_connect = plain_connect(config.connections).await?;
        let network = NetworkId::of("bench");
        let (a, b) = (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]));
        let channel = Channel { network, local: a.id(), peer: b.id(), binding: [0; 32] };
        Ok(TransportBench {
            noise_msgs_per_sec: noise,
            plain_tcp_msgs_per_sec: plain,
            ratio: noise / plain,
            noise_connect_p50_ms: noise_connect,
            plain_connect_p50_ms: plain_connect,
            messages: config.messages,
            sealed_bytes: seal(&a, &channel, clock::now(), &beat(u64::MAX)).len(),
        })
    })
}

/// Sends `config.messages` heartbeats with at most `config.window` in
/// flight, counting what the receiver delivered in `received`.
async fn pump(config: &BenchConfig, received: &AtomicU64, mut send: impl AsyncFnMut(u64)) -> f64 {
    let t0 = Instant::now();
    for seq in 0..config.messages {
        while seq.saturating_sub(received.load(Ordering::Relaxed)) >= config.window {
            tokio::task::yield_now().await;
        }
        send(seq).await;
    }
    while received.load(Ordering::Relaxed) < config.messages {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    config.messages as f64 / t0.elapsed().as_secs_f64()
}

async fn noise_rate(config: &BenchConfig) -> anyhow::Result<f64> {
    let network = NetworkId::of("bench");
    let (tx, mut rx) = mpsc::channel::<Inbound>(4096);
    // No per-connection message budget: the rate measured is the transport's own.
    let unlimited = Limits { messages_per_sec: u32::MAX, message_burst: u32::MAX, ..Limits::default() };
    let receiver = Transport::bind_with(Identity::from_secret([2; 32]), network, "127.0.0.1:0", tx, unlimited).await?;
    let (stx, _srx) = mpsc::channel::<Inbound>(16);
    let sender = Transport::bind(Identity::from_secret([1; 32]), network, "127.0.0.1:0", stx).await?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let drain = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let addr = receiver.local_addr().to_string();
    // Connect first, so the rate is of messages, not of the handshake.
    sender.send(&addr, &beat(0)).await?;
    while received.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    received.store(0, Ordering::Relaxed);
    let rate = pump(config, &received, async |seq| {
        sender.dispatch(Net::Send { addr: addr.clone(), msg: beat(seq) }).await;
    })
    .await;
    drop(receiver);
    drain.abort();
    Ok(rate)
}

async fn plain_rate(config: &BenchConfig) -> anyhow::Result<f64> {
    let network = NetworkId::of("bench");
    let (a, b) = (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]));
    let at_a = Channel { network, local: a.id(), peer: b.id(), binding: [0; 32] };
    let at_b = Channel { network, local: b.id(), peer: a.id(), binding: [0; 32] };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    // One opener behind one lock, as every connection shared it.
    let opener = Arc::new(Mutex::new(Opener::new(FRESHNESS_WINDOW, at_b)));
    let (tx, mut rx) = mpsc::channel::<Message>(4096);
    let reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let mut header = [0u8; 4];
        loop {
            if stream.read_exact(&mut header).await.is_err() {
                break;
            }
            let mut body = vec![0u8; frame_len(header)?];
            stream.read_exact(&mut body).await?;
            let opened = opener.lock().expect("opener lock").open(clock::now(), &body)?;
            if tx.send(opened.message).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    });
    let drain = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (_rd, mut wr) = stream.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let rate = pump(config, &received, async |seq| {
        let _ = wtx.send(frame(&seal(&a, &at_a, clock::now(), &beat(seq))));
    })
    .await;
    drop(wtx);
    let _ = writer.await;
    reader.abort();
    drain.abort();
    Ok(rate)
}

fn p50_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

async fn noise_connect(n: usize) -> anyhow::Result<f64> {
    let network = NetworkId::of("bench");
    let (tx, _rx) = mpsc::channel::<Inbound>(16);
    let receiver = Transport::bind(Identity::from_secret([2; 32]), network, "127.0.0.1:0", tx).await?;
    let addr = receiver.local_addr().to_string();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let conn = Dialed::connect(Identity::from_secret([(i % 200) as u8 + 3; 32]), network, &addr).await?;
        times.push(t0.elapsed());
        drop(conn);
    }
    Ok(p50_ms(times))
}

async fn plain_connect(n: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        times.push(t0.elapsed());
    }
    accept.abort();
    Ok(p50_ms(times))
}
