//! When the process runs out of file descriptors, a node's accept loop backs
//! off instead of spinning, and serves again once descriptors are free. (Its
//! own test binary: it lowers the process's descriptor limit.)

use std::time::{Duration, Instant};

use dci_node::transport::{Dialed, Transport};
use dci_proto::{Identity, NetworkId};
use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};

fn cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Duration::from_micros(micros(u.user_time()) + micros(u.system_time()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accept_loop_backs_off_when_descriptors_run_out() {
    let (_soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 512, hard).unwrap();
    let network = NetworkId::of("fd");
    let (tx, _inbox) = tokio::sync::mpsc::channel(16);
    let node = Transport::bind(Identity::from_secret([1; 32]), network, "127.0.0.1:0", tx).await.unwrap();
    let addr = node.local_addr();

    // Take every descriptor but a few, then connect clients with them: the
    // kernel completes their handshakes, and the node cannot accept them.
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    filler.truncate(filler.len() - 4);
    let clients: Vec<_> = (0..4).map_while(|_| std::net::TcpStream::connect(addr).ok()).collect();
    assert!(!clients.is_empty(), "no descriptor left for a client");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (cpu0, errors0, t0) = (cpu(), node.accept_errors(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (spent, errors, wall) = (cpu() - cpu0, node.accept_errors() - errors0, t0.elapsed());
    println!("out of descriptors for {wall:?}: {errors} failed accepts, {spent:?} of CPU");
    assert!(errors >= 1, "the node never tried to accept");
    // Waits of 5, 10, 20 ... ms up to 1 s: about ten tries in 2 s.
    assert!(errors <= 16, "the accept loop retries without waiting: {errors} failed accepts in {wall:?}");

    // Descriptors free again: the node serves.
    drop(filler);
    let t1 = Instant::now();
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        Dialed::connect(Identity::from_secret([2; 32]), network, &addr.to_string()),
    )
    .await
    .expect("served within 5 s of descriptors being freed");
    assert!(conn.is_ok(), "{:?}", conn.err());
    println!("served again {:?} after descriptors were freed", t1.elapsed());
    drop(clients);
}
