//! A devnet as a real `dci devnet` process, and the CLI against it, for the
//! service tests (`models.rs`, `view.rs`).
#![allow(dead_code)]

pub mod netns;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DCI: &str = env!("CARGO_BIN_EXE_dci");

/// A running `dci devnet`; killed when dropped.
pub struct Devnet {
    child: Child,
    /// The gateway's HTTP API.
    pub api: String,
    /// What it printed before it was ready.
    pub banner: Vec<String>,
}

impl Devnet {
    /// Starts a devnet of `containers` containers on API port `port` and
    /// returns once it says every one is schedulable.
    pub fn start(dir: &Path, port: u16, containers: u16) -> Devnet {
        Devnet::start_expecting(dir, port, containers, &[], &format!("{containers}/{containers}"))
    }

    /// Starts a devnet with `extra` flags and returns once it says every
    /// container is decided, checking how many are schedulable (`ready`, e.g. "2/3").
    pub fn start_expecting(dir: &Path, port: u16, containers: u16, extra: &[&str], ready: &str) -> Devnet {
        let mut child = Command::new(DCI)
            .args(["devnet", "--containers", &containers.to_string(), "--api-port", &port.to_string()])
            .args(["--challenge-n", "64"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .env("DCI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning dci devnet");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        loop {
            let line = lines.next().unwrap_or_else(|| panic!("devnet exited before it was ready: {banner:?}")).unwrap();
            if let Some(rest) = line.strip_prefix("ready: ") {
                assert!(rest.starts_with(ready), "expected {ready} containers schedulable: {line}");
                break;
            }
            banner.push(line);
        }
        // Keep draining stdout so the devnet never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Devnet { child, api: format!("http://127.0.0.1:{port}"), banner }
    }

    /// Sends `sig` (e.g. "-TERM", "-KILL") and waits; a SIGTERM must end in a clean exit.
    pub fn signal(mut self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        if sig == "-TERM" {
            assert!(exit.success(), "devnet did not stop cleanly: {exit:?}");
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port that no outbound connection can take before the
/// process it is meant for binds it (see `free_loopback_port`).
pub fn free_port() -> u16 {
    dci_node::devnet::free_loopback_port().expect("a free port on 127.0.0.1")
}

/// Runs the CLI against the devnet in `dir`; returns (success, stdout, stderr).
pub fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(DCI).args(args).arg("--data-dir").arg(dir).env("DCI_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

pub fn cli_json<T: serde::de::DeserializeOwned>(dir: &Path, args: &[&str]) -> T {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = cli(dir, &a);
    assert!(ok, "dci {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("dci {args:?} printed non-JSON ({e}): {out}"))
}

/// The devnet consumer's API key, from `<dir>/client.json`.
pub fn api_key(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("client.json")).expect("client.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["api_key"].as_str().expect("api_key").to_owned()
}
pub mod cluster;

/// The p50 of `n` GETs of `url` (new connection each time when `fresh`), in ms.
pub fn p50_get_ms(url: &str, n: usize, fresh: bool) -> f64 {
    let mut b = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(5));
    if fresh {
        b = b.pool_max_idle_per_host(0);
    }
    let http = b.build().unwrap();
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let r = http.get(url).send().unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.status());
            r.bytes().unwrap();
            t0.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so
/// a connection attempt hangs, like one to a blackholed address. Keep the
/// listener and the filler alive while the address is used.
pub async fn blackhole() -> (tokio::net::TcpListener, std::net::TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    let probe = tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await;
    assert!(probe.is_err(), "this kernel does not drop SYNs on a full accept queue: the test cannot make a black hole");
    (listener, filler, addr.to_string())
}
