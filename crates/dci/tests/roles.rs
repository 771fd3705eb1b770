//! Every role as its own process (R-SC1), as operators on separate machines
//! run them, here on loopback: one `dci gateway run`, one `dci indexer
//! run`, two `dci checker run` and two `dci container run` hosts, each with
//! its own data directory and node config, and one network file assembled
//! from what `dci <role> id` prints. The hosts bond their stake with `dci
//! container stake`, the checkers with `dci checker stake` (and then sit on
//! the epoch committee); a render session is deployed, used and stopped; the
//! indexer then moves to another port and every role follows the edited
//! network file; at the end each process stops cleanly on SIGTERM and the
//! ledger's supply is conserved.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DCI, free_port};
use dci_gateway::api::{ContainerInfo, SessionInfo, SessionStatus};
use dci_model::{AccountId, Amount, NodeId};

/// A `dci <role> run` process.
struct Node {
    child: Child,
    id: String,
}

impl Node {
    /// Starts `dci <role> run --data-dir <dir>` and waits for its banner.
    fn start(role: &str, dir: &Path) -> Node {
        let mut child = Command::new(DCI)
            .args([role, "run", "--data-dir"])
            .arg(dir)
            .env("DCI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning dci {role} run: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let prefix = format!("DCI {role} ");
        let id = loop {
            let line = lines.next().unwrap_or_else(|| panic!("dci {role} run exited before it started")).unwrap();
            if let Some(id) = line.strip_prefix(&prefix) {
                break id.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Node { child, id }
    }

    /// SIGTERM, then a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "{} did not stop cleanly: {exit:?}", self.id);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dci <args> --data-dir <dir>`: (success, stdout, stderr).
fn dci(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(DCI).args(args).arg("--data-dir").arg(dir).env("DCI_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json<T: serde::de::DeserializeOwned>(dir: &Path, args: &[&str]) -> T {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = dci(dir, &a);
    assert!(ok, "dci {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("dci {args:?} printed non-JSON ({e}): {out}"))
}

/// Polls `f` every 250 ms until it returns `Some`, at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `n` containers are listed (the gateway reaches the indexer), each
/// schedulable and heartbeating to the indexer (a restarted indexer has
/// heard none until a host reaches it).
fn all_schedulable(gateway: &Path, n: usize) -> bool {
    let (ok, out, _) = dci(gateway, &["containers", "--json"]);
    let fine = |c: &ContainerInfo| {
        (c.state == "healthy" || c.state == "ready") && c.last_heartbeat_ago_ms.is_some_and(|ms| ms < 2000)
    };
    ok && serde_json::from_str::<Vec<ContainerInfo>>(&out).is_ok_and(|l| l.len() == n && l.iter().all(fine))
}

/// Deploys render, uses it for a moment, stops it: the bill is settled.
fn session(gateway: &Path) -> SessionInfo {
    let s: SessionInfo = json(gateway, &["deploy", "render"]);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(2200) {
        let png = reqwest::blocking::get(format!("{}/frame?width=64&height=48", s.endpoint)).unwrap();
        assert_eq!(png.status(), 200);
        assert!(png.bytes().unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    }
    let stopped: SessionInfo = json(gateway, &["stop", &s.id]);
    assert_eq!(stopped.status, SessionStatus::Stopped);
    assert!(stopped.billed_seconds.unwrap() >= 2, "{stopped:?}");
    stopped
}

#[test]
fn every_role_runs_as_its_own_process_and_follows_the_network_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let network = root.join("network.toml");
    let (gateway, indexer) = (root.join("gateway"), root.join("indexer"));
    let checkers = [root.join("checker-0"), root.join("checker-1")];
    let hosts = [root.join("host-0"), root.join("host-1")];
    let api_port = free_port();

    // The node configs, each in its own data directory.
    let node = |extra: &str| format!("listen = \"127.0.0.1:{}\"\nnetwork = {network:?}\n{extra}", free_port());
    write(
        &gateway.join("node.toml"),
        &node(&format!(
            "api_listen = \"127.0.0.1:{api_port}\"\nepoch_secs = 4\ncommittee_size = 2\ndev_network = true\n\
             consumer = {{ account = \"consumer:operator\", funds = \"5000\" }}\n"
        )),
    );
    write(&indexer.join("node.toml"), &node("inspect_every_secs = 600\n"));
    for c in &checkers {
        write(&c.join("node.toml"), &node("challenge_n = 64\n"));
    }
    // A config with a typo is refused, saying what was expected and found.
    let bad = root.join("bad");
    write(&bad.join("node.toml"), &node("inspect_evry_secs = 600\n"));
    let (ok, _, err) = dci(&bad, &["indexer", "run"]);
    assert!(!ok && err.contains("unknown field `inspect_evry_secs`") && err.contains("expected one of"), "{err}");
    let (ok, out, _) = dci(&bad, &["indexer", "run", "--print-example"]);
    assert!(ok && out.contains("inspect_every_secs = 3600"), "{out}");

    // The network file, from each node's own entry.
    let mut text = "name = \"roles-e2e\"\n".to_owned();
    for (role, dir) in
        [("gateway", &gateway), ("indexer", &indexer), ("checker", &checkers[0]), ("checker", &checkers[1])]
    {
        let (ok, out, err) = dci(dir, &[role, "id"]);
        assert!(ok, "dci {role} id: {err}");
        text.push_str(&out);
    }
    write(&network, &text);
    let parsed = dci_node::network::Network::load(&network).unwrap();
    assert_eq!((parsed.gateways.len(), parsed.indexers.len(), parsed.checkers.len()), (1, 1, 2));

    // Checkers listen before the gateway opens its first epoch.
    let indexer_node = Node::start("indexer", &indexer);
    let checker_nodes: Vec<Node> = checkers.iter().map(|d| Node::start("checker", d)).collect();
    let gateway_node = Node::start("gateway", &gateway);
    assert_eq!(gateway_node.id, parsed.gateways[0].id.to_string());
    assert_eq!(indexer_node.id, parsed.indexers[0].id.to_string());
    assert!(gateway.join("client.json").exists(), "the funded consumer's API key");

    // Two hosts: each bonds the minimum container stake from its own account.
    for (i, h) in hosts.iter().enumerate() {
        write(
            &h.join("container.toml"),
            &format!(
                "network = {network:?}\nlisten = \"127.0.0.1:{}\"\nservices = [\"render\"]\nprice = \"0.{}\"\nslots = 1\n\
                 location = {{ lat = 38.7, lon = -9.1 }}\nsimulated_gpu = {{ model = \"RTX 4090\", count = 1, vram_gib = 24 }}\n",
                free_port(),
                i + 5
            ),
        );
        let key = dci_node::keys::load_or_create(&h.join("container.key")).unwrap();
        let account = AccountId::for_node(&key.id());
        let (ok, _, err) = dci(&gateway, &["transfer", account.as_str(), "100"]);
        assert!(ok, "funding {account}: {err}");
        let (ok, out, err) = dci(h, &["container", "stake", "100"]);
        assert!(ok && out.contains("staked 100 ATH"), "dci container stake: {out}{err}");
    }
    let host_nodes: Vec<Node> = hosts.iter().map(|d| Node::start("container", d)).collect();

    // The checkers bond stake from their own accounts too: from the next
    // epoch on they sit on the committee.
    for (c, dir) in parsed.checkers.iter().zip(&checkers) {
        let account = AccountId::for_node(&c.id);
        let (ok, _, err) = dci(&gateway, &["transfer", account.as_str(), "1000"]);
        assert!(ok, "funding {account}: {err}");
        let (ok, out, err) = dci(dir, &["checker", "stake", "1000"]);
        assert!(ok && out.contains("staked 1000 ATH"), "dci checker stake: {out}{err}");
    }
    let committee = wait_for(Duration::from_secs(30), "a committee of the staked checkers", || {
        let (ok, out, _) = dci(&gateway, &["committee", "--json"]);
        let info: dci_gateway::api::CommitteeInfo = serde_json::from_str(&out).ok().filter(|_| ok)?;
        (info.members.len() == 2).then_some(info)
    });
    let ids: Vec<String> = parsed.checkers.iter().map(|c| c.id.to_string()).collect();
    assert!(committee.members.iter().all(|m| ids.contains(m)), "{committee:?}");
    wait_for(Duration::from_secs(90), "both hosts inspected and schedulable", || {
        all_schedulable(&gateway, 2).then_some(())
    });

    let first = session(&gateway);
    assert!(host_nodes.iter().any(|h| h.id == first.container), "{first:?}");

    // The indexer moves to another port: its operator restarts it there and
    // edits the network file; every role re-reads it and follows.
    indexer_node.stop();
    let moved = format!("127.0.0.1:{}", free_port());
    let config = std::fs::read_to_string(indexer.join("node.toml")).unwrap();
    let old = config.lines().find(|l| l.starts_with("listen")).unwrap().to_owned();
    write(&indexer.join("node.toml"), &config.replace(&old, &format!("listen = \"{moved}\"")));
    let old_addr = parsed.indexers[0].addr.clone();
    write(&network, &std::fs::read_to_string(&network).unwrap().replace(&old_addr, &moved));
    let indexer_node = Node::start("indexer", &indexer);
    wait_for(Duration::from_secs(60), "the hosts heartbeating to the moved indexer", || {
        all_schedulable(&gateway, 2).then_some(())
    });
    let second = session(&gateway);

    // Everyone stops cleanly; the gateway settles first.
    for h in host_nodes {
        h.stop();
    }
    gateway_node.stop();
    for c in checker_nodes {
        c.stop();
    }
    indexer_node.stop();

    // The supply is conserved, and the providers were paid.
    let report: serde_json::Value = json(&gateway, &["ledger", "check"]);
    let part = |k: &str| report[k].as_str().unwrap().parse::<u128>().unwrap();
    let sum: u128 = ["balances", "escrowed", "staked", "unbonding", "rewards"].iter().map(|k| part(k)).sum();
    assert_eq!(sum, part("expected"), "{report}");
    assert_eq!(part("escrowed"), 0, "{report}");
    let ledger = dci_ledger::EmbeddedLedger::open(gateway.join("ledger.db"), &dci_ledger::Genesis::devnet()).unwrap();
    for s in [&first, &second] {
        let provider = AccountId::for_node(&s.container.parse::<NodeId>().unwrap());
        assert!(ledger.balance(&provider).unwrap() > Amount::ZERO, "{provider} was paid");
    }
}
