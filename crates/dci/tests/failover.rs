//! A container host as its own process (`dci container run`), as a provider
//! runs it, against a real `dci devnet`: the operator's commands (status,
//! price, maintenance that moves a running session away), then SIGKILL of the
//! host while it serves. The session continues on another container within
//! the stated bound, with a new endpoint that serves frames, and the consumer
//! pays each container for the seconds it signed for and nothing for the gap.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DCI, Devnet, cli_json, free_port};
use dci_gateway::api::{ContainerInfo, SessionInfo, SessionStatus};
use dci_ledger::{EmbeddedLedger, Genesis};

use dci_model::{AccountId, Amount, NodeId, PricePerHour};

/// The bound the gateway states (`dci_node::gateway::stated_failover_bound`).
fn bound() -> Duration {
    dci_node::gateway::stated_failover_bound()
}

/// A `dci container run` process.
struct Host {
    child: Child,
    id: String,
}

impl Host {
    fn start(dir: &Path) -> Host {
        let mut child = Command::new(DCI)
            .args(["container", "run", "--data-dir"])
            .arg(dir)
            .env("DCI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning dci container run");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let id = loop {
            let line = lines.next().expect("the host exited before it started").unwrap();
            if let Some(id) = line.strip_prefix("DCI container ") {
                break id.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Host { child, id }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bonds the minimum container stake for the host of `host_dir` as its
/// operator would: the devnet consumer funds the host's node account, then
/// `dci container stake` bonds it, signed with the host's node key (no API
/// key). The host's container.toml must exist (it names the network file,
/// which names the gateway's API). Returns the host's key.
fn bond_host(net_dir: &Path, host_dir: &Path) -> dci_proto::Identity {
    let key = dci_node::keys::load_or_create(&host_dir.join("container.key")).unwrap();
    let account = AccountId::for_node(&key.id());
    let (ok, _, err) = common::cli(net_dir, &["transfer", account.as_str(), "100"]);
    assert!(ok, "funding {account}: {err}");
    let (ok, out, err) = host_cli(host_dir, &["container", "stake", "100"]);
    assert!(ok && out.contains("staked 100 ATH"), "dci container stake: {out}{err}");
    // A copy of a signed request is refused, and so is a stake by a stranger's key.
    let mut req = dci_node::host::stake_request(host_dir, Amount::ath(1)).unwrap();
    let api = dci_node::host::network_of(host_dir).unwrap().api().unwrap();
    let post = |req: &dci_gateway::api::NodeStakeRequest| {
        reqwest::blocking::Client::new()
            .post(format!("{api}/v1/node-stake"))
            .json(req)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(&req), 402, "the account holds nothing more to bond");
    assert_eq!(post(&req), 409, "a replayed request");
    req.node = dci_proto::Identity::from_secret([0x77; 32]).id().to_string();
    assert_eq!(post(&req), 401, "signed by another key");
    key
}

fn host_cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(DCI).args(args).arg("--data-dir").arg(dir).env("DCI_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn host_status(dir: &Path) -> serde_json::Value {
    let (ok, out, err) = host_cli(dir, &["container", "status", "--json"]);
    assert!(ok, "dci container status failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Polls `f` every 200 ms until it returns `Some`, at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn container<'a>(list: &'a [ContainerInfo], id: &str) -> Option<&'a ContainerInfo> {
    list.iter().find(|c| c.id == id)
}

fn session(dir: &Path, id: &str) -> SessionInfo {
    let all: Vec<SessionInfo> = cli_json(dir, &["sessions"]);
    all.into_iter().find(|s| s.id == id).expect("the session is listed")
}

/// Fetches a frame from a render endpoint; true if it is a PNG.
fn frame(endpoint: &str) -> bool {
    reqwest::blocking::get(format!("{endpoint}/frame?width=64&height=48"))
        .ok()
        .filter(|r| r.status() == 200)
        .and_then(|r| r.bytes().ok())
        .is_some_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn operator_control_and_failover_after_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let (net_dir, host_dir) = (tmp.path().join("devnet"), tmp.path().join("host"));
    let port = free_port();
    let net = Devnet::start(&net_dir, port, 1);
    let others: Vec<ContainerInfo> = cli_json(&net_dir, &["containers"]);
    assert_eq!(others.len(), 1);

    // The operator's side, before the host runs: a clear error.
    std::fs::create_dir_all(&host_dir).unwrap();
    let (ok, _, err) = host_cli(&host_dir, &["container", "status"]);
    assert!(!ok && err.contains("dci container run"), "{err}");

    // A host far cheaper than the devnet's containers, so `cheapest` picks it.
    let config = format!(
        "network = {:?}\nservices = [\"render\"]\nprice = \"0.01\"\nslots = 1\nlocation = {{ lat = 38.7, lon = -9.1 }}\nsimulated_gpu = {{ model = \"RTX 4090\", count = 1, vram_gib = 24 }}\n",
        net_dir.join("network.toml")
    );
    std::fs::write(host_dir.join("container.toml"), config).unwrap();
    bond_host(&net_dir, &host_dir);
    let mut host = Host::start(&host_dir);
    let schedulable = |dir: &Path, id: &str| {
        let list: Vec<ContainerInfo> = cli_json(dir, &["containers"]);
        container(&list, id).is_some_and(|c| c.state == "healthy" || c.state == "ready")
    };
    wait_for(Duration::from_secs(60), "the host to pass its inspection", || {
        schedulable(&net_dir, &host.id).then_some(())
    });
    let status = host_status(&host_dir);
    assert_eq!(status["id"], host.id.as_str());
    assert_eq!(status["maintenance"], false);
    assert_eq!(status["warm"], serde_json::json!(["render"]), "the pre-installed service is kept warm");
    wait_for(Duration::from_secs(10), "the heartbeat to report the warm service", || {
        let list: Vec<ContainerInfo> = cli_json(&net_dir, &["containers"]);
        container(&list, &host.id).filter(|c| c.warm == ["render"]).map(|_| ())
    });

    // Price: bad input is refused with what was expected and changes nothing.
    let (ok, _, err) = host_cli(&host_dir, &["container", "price", "cheap"]);
    assert!(!ok && err.contains("price"), "{err}");
    assert_eq!(host_status(&host_dir)["price_ath_per_hour"], "0.01");
    let (ok, _, err) = host_cli(&host_dir, &["container", "price", "0.02"]);
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(10), "the new price in the offer", || {
        let list: Vec<ContainerInfo> = cli_json(&net_dir, &["containers"]);
        container(&list, &host.id).filter(|c| c.price_ath_per_hour == "0.02").map(|_| ())
    });

    // Maintenance moves a running session to the other container.
    let deployed: SessionInfo = cli_json(&net_dir, &["deploy", "render", "--policy", "cheapest"]);
    assert_eq!(deployed.container, host.id, "the cheapest container is the host");
    assert!(frame(&deployed.endpoint));
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, out, err) = host_cli(&host_dir, &["container", "maintenance", "on"]);
    assert!(ok, "{err}");
    assert!(out.contains("maintenance-lock") || out.contains("maintenance lock"), "{out}");
    let moved = wait_for(Duration::from_secs(30), "the session to move off the locked host", || {
        let s = session(&net_dir, &deployed.id);
        (s.status == SessionStatus::Running && s.container != host.id).then_some(s)
    });
    assert_eq!(moved.segments.len(), 1);
    assert!(moved.segments[0].ended_because.contains("maintenance"), "{:?}", moved.segments[0]);
    assert!(moved.segments[0].billed_seconds >= 1, "{:?}", moved.segments[0]);
    assert!(frame(&moved.endpoint), "the new endpoint serves frames");
    let list: Vec<ContainerInfo> = cli_json(&net_dir, &["containers"]);
    assert_eq!(container(&list, &host.id).unwrap().state, "maintenance-lock");
    let stopped: SessionInfo = cli_json(&net_dir, &["stop", &deployed.id]);
    assert_eq!(stopped.status, SessionStatus::Stopped);

    // Locking twice is refused; unlocked, the host is inspected again and scheduled again.
    let (ok, _, err) = host_cli(&host_dir, &["container", "maintenance", "on"]);
    assert!(!ok && err.contains("already locked"), "{err}");
    let (ok, _, err) = host_cli(&host_dir, &["container", "maintenance", "off"]);
    assert!(ok, "{err}");
    let (ok, _, err) = host_cli(&host_dir, &["container", "maintenance", "off"]);
    assert!(!ok && err.contains("expected a container locked for maintenance"), "{err}");
    wait_for(Duration::from_secs(60), "the host to pass its re-inspection", || {
        schedulable(&net_dir, &host.id).then_some(())
    });

    // SIGKILL while serving: the session continues elsewhere within the bound.
    let s: SessionInfo = cli_json(&net_dir, &["deploy", "render", "--policy", "cheapest"]);
    assert_eq!(s.container, host.id);
    wait_for(Duration::from_secs(10), "a few metered seconds", || {
        (host_status(&host_dir)["sessions"].as_array().is_some_and(|v| !v.is_empty())).then_some(())
    });
    // The host lists the session as soon as it starts the service; its
    // receipts come once a second from then: 3.5 s leave time for two.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(frame(&s.endpoint));
    let status = Command::new("kill").args(["-KILL", &host.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let killed = Instant::now();
    let killed_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let _ = host.child.wait();
    let moved = wait_for(bound(), "the session to run on another container", || {
        let m = session(&net_dir, &s.id);
        (m.status == SessionStatus::Running && m.container != host.id && frame(&m.endpoint)).then_some(m)
    });
    let took = killed.elapsed();
    eprintln!("failover after SIGKILL: serving frames again on another container after {} ms", took.as_millis());
    assert!(moved.endpoint != s.endpoint);

    // What the dead host delivered is paid; the gap is not.
    let seg = &moved.segments[0];
    assert_eq!(seg.container, host.id);
    assert!(seg.ended_at_ms <= killed_ms, "billed past the kill: {seg:?}");
    assert!(seg.billed_seconds >= 2, "the receipts it signed before it died count: {seg:?}");
    assert!(moved.placed_at_ms >= killed_ms, "{moved:?}");
    std::thread::sleep(Duration::from_millis(2000));
    let stopped: SessionInfo = cli_json(&net_dir, &["stop", &s.id]);
    assert_eq!(stopped.status, SessionStatus::Stopped);
    let total = stopped.billed_seconds.unwrap();
    let last = total - seg.billed_seconds;
    let (seg_ms, last_ms) = (seg.ended_at_ms - seg.started_at_ms, stopped.ended_at_ms.unwrap() - stopped.placed_at_ms);
    assert!(seg.billed_seconds * 1000 <= seg_ms + 1000, "{seg:?}");
    assert!(last * 1000 <= last_ms + 1000, "{stopped:?}");
    let gap_ms = stopped.placed_at_ms - seg.ended_at_ms;
    let wall_ms = stopped.ended_at_ms.unwrap() - stopped.started_at_ms;
    assert!(total * 1000 + gap_ms <= wall_ms + 2000, "billed {total} s over {wall_ms} ms with a gap of {gap_ms} ms");
    let price_a: PricePerHour = "0.02".parse().unwrap();
    let price_b: PricePerHour = stopped.price_ath_per_hour.parse().unwrap();
    let charged: Amount = stopped.charged_ath.as_deref().unwrap().parse().unwrap();
    let expected =
        price_a.cost_for_secs(seg.billed_seconds).unwrap().checked_add(price_b.cost_for_secs(last).unwrap()).unwrap();
    assert_eq!(charged, expected);

    // The dead host is no longer scheduled.
    let list: Vec<ContainerInfo> = cli_json(&net_dir, &["containers"]);
    let dead = container(&list, &host.id).unwrap();
    assert!(dead.last_heartbeat_ago_ms.unwrap_or(u64::MAX) >= 3000, "{dead:?}");

    // The ledger: the host's account holds its share of both of its placements.
    drop(net);
    let ledger = EmbeddedLedger::open(net_dir.join("gateway").join("ledger.db"), &Genesis::devnet()).unwrap();
    let host_account = AccountId::for_node(&host.id.parse::<NodeId>().unwrap());
    assert!(ledger.balance(&host_account).unwrap().0 > 0, "the dead host was paid for what it delivered");
    ledger.check_invariant().expect("supply conserved");
}

/// Issue 14: a host claiming 64 × 1024 GiB of simulated H100 on this CPU
/// machine joins a devnet as its own process. Its weight is what its proof
/// verified (the CPU's), so in none of its first three epochs does it earn
/// more than the best honest devnet container.
#[test]
fn a_host_lying_about_its_gpus_earns_no_more_than_an_honest_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (net_dir, host_dir) = (tmp.path().join("devnet"), tmp.path().join("host"));
    let net = Devnet::start_expecting(&net_dir, free_port(), 2, &["--epoch-secs", "8"], "2/2");
    std::fs::create_dir_all(&host_dir).unwrap();
    let config = format!(
        "network = {:?}\nservices = [\"render\"]\nprice = \"0.5\"\nslots = 1\nlocation = {{ lat = 38.7, lon = -9.1 }}\nsimulated_gpu = {{ model = \"H100\", count = 64, vram_gib = 1024 }}\n",
        net_dir.join("network.toml")
    );
    std::fs::write(host_dir.join("container.toml"), config).unwrap();
    // The liar bonds the minimum stake, as any host must.
    let key = bond_host(&net_dir, &host_dir);
    let liar = Host::start(&host_dir);
    assert_eq!(liar.id, key.id().to_string());
    let honest: Vec<String> = {
        let list: Vec<ContainerInfo> = cli_json(&net_dir, &["containers"]);
        list.iter().filter(|c| c.id != liar.id).map(|c| c.id.clone()).collect()
    };
    let proven = wait_for(Duration::from_secs(60), "the liar to pass its inspection", || {
        let list: Vec<ContainerInfo> = cli_json(&net_dir, &["containers"]);
        container(&list, &liar.id).filter(|c| c.verified_units.is_some()).cloned()
    });
    assert_eq!((proven.gpu_count, proven.vram_gib, proven.gpu_simulated), (64, 1024, true), "{proven:?}");
    assert_eq!(proven.verified_class.as_deref(), Some("cpu"), "a simulated GPU is proven as the CPU it is");
    let latest = || -> Option<u64> {
        let (ok, out, _) = common::cli(&net_dir, &["rewards", "--json"]);
        ok.then(|| serde_json::from_str::<serde_json::Value>(&out).ok()?["epoch"].as_u64()).flatten()
    };
    let first = latest().map_or(0, |e| e + 1);
    wait_for(Duration::from_secs(90), "three epochs with the liar", || (latest()? >= first + 2).then_some(()));
    let earned = |epoch: u64, id: &str| -> u128 {
        let account = AccountId::for_node(&id.parse::<NodeId>().unwrap());
        let e = epoch.to_string();
        let info: serde_json::Value = cli_json(&net_dir, &["rewards", "--epoch", &e, "--account", account.as_str()]);
        info["details"]["total"].as_str().unwrap().parse().unwrap()
    };
    for epoch in first..=first + 2 {
        let lie = earned(epoch, &liar.id);
        let best = honest.iter().map(|id| earned(epoch, id)).max().unwrap();
        println!(
            "epoch {epoch}: the liar (64 x 1024 GiB simulated H100) earned {} ATH, the best honest container {} ATH",
            Amount(lie),
            Amount(best)
        );
        assert!(best > 0, "epoch {epoch}: the honest containers earned nothing");
        assert!(lie <= best, "epoch {epoch}: the liar earned {lie} > {best}");
    }
    net.signal("-TERM");
}
