//! A network of `dci <role> run` processes (R-SC1), as operators on separate
//! machines run them: each node has its own data directory and config, and
//! the network file is assembled from what `dci <role> id` prints. Every
//! node runs at a [`Place`]: loopback, or a network namespace with its own
//! address (`multihost.rs`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dci_gateway::api::{ContainerInfo, SessionInfo, SessionStatus};
use dci_model::{AccountId, Amount, NodeId};

use super::{DCI, free_port};

/// Where a node runs: its address, and the network namespace it runs in
/// (None: this one).
#[derive(Clone, Debug)]
pub struct Place {
    /// The address it listens on and others reach it at.
    pub ip: String,
    /// The network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl Place {
    /// This machine's loopback.
    pub fn loopback() -> Place {
        Place { ip: "127.0.0.1".into(), netns: None }
    }

    /// `dci` run at this place.
    pub fn command(&self) -> Command {
        match &self.netns {
            None => Command::new(DCI),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, DCI]);
                c
            }
        }
    }

    /// A free port here: a free one on loopback, the next of a range in a
    /// namespace (each test's namespaces are its own).
    pub fn port(&self) -> u16 {
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(21_000);
        match self.netns {
            None => free_port(),
            Some(_) => NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// `host:port` on a fresh port here.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port())
    }
}

/// A `dci <role> run` process, killed when dropped.
pub struct Proc {
    child: Option<Child>,
    /// The node id its banner printed.
    pub id: String,
    /// Its role.
    pub role: String,
}

impl Proc {
    /// Starts `dci <role> run --data-dir <dir>` at `place` and waits for its banner.
    pub fn start(role: &str, dir: &Path, place: &Place) -> Proc {
        let mut child = place
            .command()
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
        Proc { child: Some(child), id, role: role.into() }
    }

    /// SIGTERM, then a clean exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "{} {} did not stop cleanly: {exit:?}", self.role, self.id);
    }

    /// SIGKILL: gone at once, nothing flushed.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A container host to run.
#[derive(Clone, Debug)]
pub struct HostSpec {
    /// Where.
    pub place: Place,
    /// What it offers.
    pub services: Vec<String>,
    /// Price per slot-hour, ATH.
    pub price: String,
    /// Not reachable from outside: it joins through the gateway's relay.
    pub relay: bool,
}

impl HostSpec {
    /// A directly reachable render host at `place`, priced `price`.
    pub fn render(place: Place, price: &str) -> HostSpec {
        HostSpec { place, services: vec!["render".into()], price: price.into(), relay: false }
    }
}

/// What to build.
pub struct Layout {
    /// The gateway (it holds the ledger and the relay).
    pub gateway: Place,
    /// The gateway runs a relay for hosts behind NAT.
    pub relay: bool,
    /// One per indexer.
    pub indexers: Vec<Place>,
    /// One per checker.
    pub checkers: Vec<Place>,
    /// One per container host.
    pub hosts: Vec<HostSpec>,
    /// Seats on the epoch committee.
    pub committee: usize,
    /// Epoch length.
    pub epoch_secs: u64,
}

/// The data directories and network file of a network, written and not yet started.
pub struct Cluster {
    /// The network file.
    pub network: PathBuf,
    /// The gateway's data directory.
    pub gateway: PathBuf,
    /// The indexers' data directories.
    pub indexers: Vec<PathBuf>,
    /// The checkers' data directories.
    pub checkers: Vec<PathBuf>,
    /// The hosts' data directories.
    pub hosts: Vec<PathBuf>,
    /// Where each runs.
    pub layout: Layout,
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

impl Cluster {
    /// Writes every node's config under `root` and the network file built
    /// from their `dci <role> id`.
    pub fn write(root: &Path, layout: Layout) -> Cluster {
        let network = root.join("network.toml");
        let gateway = root.join("gateway");
        let indexers: Vec<PathBuf> = (0..layout.indexers.len()).map(|i| root.join(format!("indexer-{i}"))).collect();
        let checkers: Vec<PathBuf> = (0..layout.checkers.len()).map(|i| root.join(format!("checker-{i}"))).collect();
        let hosts: Vec<PathBuf> = (0..layout.hosts.len()).map(|i| root.join(format!("host-{i}"))).collect();
        let node =
            |place: &Place, extra: &str| format!("listen = \"{}\"\nnetwork = {network:?}\n{extra}", place.addr());
        let g = &layout.gateway;
        let relay = match layout.relay {
            true => {
                format!("[relay]\nlisten = \"{}\"\npublic_host = \"{}\"\nports = \"41000-41099\"\n", g.addr(), g.ip)
            }
            false => String::new(),
        };
        write(
            &gateway.join("node.toml"),
            &node(
                g,
                &format!(
                    "api_listen = \"{}\"\nepoch_secs = {}\ncommittee_size = {}\ndev_network = true\n\
                     consumer = {{ account = \"consumer:operator\", funds = \"5000\" }}\n{relay}",
                    g.addr(),
                    layout.epoch_secs,
                    layout.committee
                ),
            ),
        );
        for (dir, place) in indexers.iter().zip(&layout.indexers) {
            write(&dir.join("node.toml"), &node(place, "inspect_every_secs = 600\n"));
        }
        for (dir, place) in checkers.iter().zip(&layout.checkers) {
            write(&dir.join("node.toml"), &node(place, "challenge_n = 64\n"));
        }
        let mut text = "name = \"e2e\"\n".to_owned();
        let roles = std::iter::once(("gateway", &gateway, g))
            .chain(indexers.iter().zip(&layout.indexers).map(|(d, p)| ("indexer", d, p)))
            .chain(checkers.iter().zip(&layout.checkers).map(|(d, p)| ("checker", d, p)));
        for (role, dir, place) in roles {
            let (ok, out, err) = run(place, dir, &[role, "id"]);
            assert!(ok, "dci {role} id: {err}");
            text.push_str(&out);
        }
        write(&network, &text);
        for (dir, h) in hosts.iter().zip(&layout.hosts) {
            // Behind NAT it listens on its LAN only; the relay gives it its address.
            let (listen, reach) = match h.relay {
                true => (format!("0.0.0.0:{}", h.place.port()), "reach = \"relay\"\n"),
                false => (h.place.addr(), ""),
            };
            write(
                &dir.join("container.toml"),
                &format!(
                    "network = {network:?}\nlisten = \"{listen}\"\nservices = {:?}\nprice = \"{}\"\nslots = 2\n\
                     location = {{ lat = 38.7, lon = -9.1 }}\n\
                     simulated_gpu = {{ model = \"RTX 4090\", count = 1, vram_gib = 24 }}\n{reach}",
                    h.services, h.price
                ),
            );
        }
        Cluster { network, gateway, indexers, checkers, hosts, layout }
    }

    /// The network file as the nodes read it.
    pub fn parsed(&self) -> dci_node::network::Network {
        dci_node::network::Network::load(&self.network).unwrap()
    }

    /// `dci <args> --data-dir <gateway>`, at the gateway.
    pub fn at_gateway(&self, args: &[&str]) -> (bool, String, String) {
        run(&self.layout.gateway, &self.gateway, args)
    }

    /// The same, parsed from `--json`.
    pub fn gateway_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut a = args.to_vec();
        a.push("--json");
        let (ok, out, err) = self.at_gateway(&a);
        assert!(ok, "dci {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("dci {args:?} printed non-JSON ({e}): {out}"))
    }

    /// Funds each host from the consumer and bonds the minimum container
    /// stake with its own node key (`dci container stake`).
    pub fn bond_hosts(&self) {
        for (dir, h) in self.hosts.iter().zip(&self.layout.hosts) {
            let place = &h.place;
            let key = dci_node::keys::load_or_create(&dir.join("container.key")).unwrap();
            let account = AccountId::for_node(&key.id());
            let (ok, _, err) = self.at_gateway(&["transfer", account.as_str(), "100"]);
            assert!(ok, "funding {account}: {err}");
            let (ok, out, err) = run(place, dir, &["container", "stake", "100"]);
            assert!(ok && out.contains("staked 100 ATH"), "dci container stake: {out}{err}");
        }
    }

    /// Funds and bonds each checker (`dci checker stake`), then waits for a
    /// full committee of them.
    pub fn bond_checkers(&self) {
        let parsed = self.parsed();
        for ((c, dir), place) in parsed.checkers.iter().zip(&self.checkers).zip(&self.layout.checkers) {
            let account = AccountId::for_node(&c.id);
            let (ok, _, err) = self.at_gateway(&["transfer", account.as_str(), "1000"]);
            assert!(ok, "funding {account}: {err}");
            let (ok, out, err) = run(place, dir, &["checker", "stake", "1000"]);
            assert!(ok && out.contains("staked 1000 ATH"), "dci checker stake: {out}{err}");
        }
        let seats = self.layout.committee.min(parsed.checkers.len());
        let committee = wait_for(Duration::from_secs(60), "a committee of the staked checkers", || {
            let (ok, out, _) = self.at_gateway(&["committee", "--json"]);
            let info: dci_gateway::api::CommitteeInfo = serde_json::from_str(&out).ok().filter(|_| ok)?;
            (info.members.len() == seats).then_some(info)
        });
        let ids: Vec<String> = parsed.checkers.iter().map(|c| c.id.to_string()).collect();
        assert!(committee.members.iter().all(|m| ids.contains(m)), "{committee:?}");
    }

    /// `n` containers are listed by the indexer the gateway asks, each
    /// schedulable and heartbeating.
    pub fn all_schedulable(&self, n: usize) -> bool {
        let (ok, out, _) = self.at_gateway(&["containers", "--json"]);
        let fine = |c: &ContainerInfo| {
            (c.state == "healthy" || c.state == "ready") && c.last_heartbeat_ago_ms.is_some_and(|ms| ms < 2000)
        };
        ok && serde_json::from_str::<Vec<ContainerInfo>>(&out).is_ok_and(|l| l.len() == n && l.iter().all(fine))
    }

    /// What host `i` says of itself (`dci container status`).
    pub fn host_status(&self, i: usize) -> Option<dci_node::host::StatusView> {
        let (ok, out, _) = run(&self.layout.hosts[i].place, &self.hosts[i], &["container", "status", "--json"]);
        serde_json::from_str(&out).ok().filter(|_| ok)
    }

    /// Every host reports every indexer's view of it as schedulable.
    pub fn every_indexer_schedules_every_host(&self) -> bool {
        (0..self.hosts.len()).all(|i| {
            self.host_status(i).is_some_and(|s| {
                s.indexers.len() == self.indexers.len()
                    && s.indexers.iter().all(|x| matches!(x.state.as_deref(), Some("healthy" | "ready")))
            })
        })
    }

    /// The ledger conserves its supply, holds no escrow, every session
    /// stopped, and the provider of each that billed was paid.
    pub fn check_ledger(&self, sessions: &[SessionInfo]) {
        let report: serde_json::Value = self.gateway_json(&["ledger", "check"]);
        let part = |k: &str| report[k].as_str().unwrap().parse::<u128>().unwrap();
        let sum: u128 = ["balances", "escrowed", "staked", "unbonding", "rewards"].iter().map(|k| part(k)).sum();
        assert_eq!(sum, part("expected"), "{report}");
        assert_eq!(part("escrowed"), 0, "{report}");
        let ledger =
            dci_ledger::EmbeddedLedger::open(self.gateway.join("ledger.db"), &dci_ledger::Genesis::devnet()).unwrap();
        for s in sessions {
            assert!(s.status == SessionStatus::Stopped, "{s:?}");
            if s.billed_seconds == Some(0) {
                continue;
            }
            let provider = AccountId::for_node(&s.container.parse::<NodeId>().unwrap());
            assert!(ledger.balance(&provider).unwrap() > Amount::ZERO, "{provider} was paid");
        }
    }
}

impl Cluster {
    /// Starts the indexers, then the checkers (they listen before the
    /// gateway opens its first epoch), then the gateway.
    pub fn start_roles(&self) -> (Vec<Proc>, Vec<Proc>, Proc) {
        let l = &self.layout;
        let indexers = self.indexers.iter().zip(&l.indexers).map(|(d, p)| Proc::start("indexer", d, p)).collect();
        let checkers = self.checkers.iter().zip(&l.checkers).map(|(d, p)| Proc::start("checker", d, p)).collect();
        let gateway = Proc::start("gateway", &self.gateway, &l.gateway);
        assert!(self.gateway.join("client.json").exists(), "the funded consumer's API key");
        (indexers, checkers, gateway)
    }

    /// Starts every container host.
    pub fn start_hosts(&self) -> Vec<Proc> {
        self.hosts.iter().zip(&self.layout.hosts).map(|(d, h)| Proc::start("container", d, &h.place)).collect()
    }

    /// Deploys `args` (e.g. `["render"]`) and stops the session at once;
    /// returns it and how long the deploy took (until it served).
    pub fn quick_session(&self, args: &[&str]) -> (SessionInfo, u128) {
        let mut deploy = vec!["deploy"];
        deploy.extend(args);
        let t0 = Instant::now();
        let s: SessionInfo = self.gateway_json(&deploy);
        let took = t0.elapsed().as_millis();
        let stopped: SessionInfo = self.gateway_json(&["stop", &s.id]);
        assert_eq!(stopped.status, SessionStatus::Stopped);
        (stopped, took)
    }

    /// Deploys render until each of `indexers` matched at least `each`
    /// sessions (which one serves a request is drawn from the epoch seed),
    /// for at most 60 s; returns every session and its deploy time.
    pub fn deploy_through(&self, indexers: &[&str], each: usize) -> Vec<(SessionInfo, u128)> {
        let t0 = Instant::now();
        let mut done: Vec<(SessionInfo, u128)> = Vec::new();
        let served = |done: &[(SessionInfo, u128)], id: &str| {
            done.iter().filter(|(s, _)| s.indexer.as_deref() == Some(id)).count()
        };
        while indexers.iter().any(|id| served(&done, id) < each) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "60 s of deploys and not every indexer matched {each}: {indexers:?}"
            );
            done.push(self.quick_session(&["render"]));
            std::thread::sleep(Duration::from_millis(200));
        }
        done
    }

    /// Prints the p50 deploy time through each of `indexers`.
    pub fn print_deploys_by_indexer(&self, indexers: &[String], deploys: &[(SessionInfo, u128)]) {
        for id in indexers {
            let times: Vec<u128> =
                deploys.iter().filter(|(s, _)| s.indexer.as_deref() == Some(id)).map(|(_, t)| *t).collect();
            match p50(&times) {
                Some(p) => println!("deploy through indexer {}: p50 {p} ms over {} deploys", &id[..8], times.len()),
                None => println!("deploy through indexer {}: no deploys", &id[..8]),
            }
        }
    }

    /// SIGKILLs `killed` (an indexer) and deploys for 8 s after: every
    /// deploy must go through `other`. Prints when the first served and the
    /// p50 and slowest deploy; returns the sessions.
    pub fn deploys_after_killing(&self, killed: Proc, other: &str) -> Vec<SessionInfo> {
        let killed_at = Instant::now();
        killed.kill();
        let (mut sessions, mut times, mut first) = (Vec::new(), Vec::new(), None);
        while killed_at.elapsed() < Duration::from_secs(8) {
            let (s, took) = self.quick_session(&["render"]);
            first.get_or_insert(killed_at.elapsed().as_millis());
            assert_eq!(s.indexer.as_deref(), Some(other), "only the live indexer matches");
            times.push(took);
            sessions.push(s);
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "after the indexer kill: the first deploy served {} ms after it; {} deploys in 8 s, p50 {} ms, slowest {} ms",
            first.unwrap(),
            times.len(),
            p50(&times).unwrap(),
            times.iter().max().unwrap()
        );
        sessions
    }

    /// Waits until each host was inspected again since `since_ms` (Unix ms)
    /// and every indexer schedules every host; returns how long it took.
    pub fn wait_reinspected(&self, since_ms: u64) -> Duration {
        let t0 = Instant::now();
        wait_for(Duration::from_secs(90), "every indexer schedules every host again", || {
            let inspected = (0..self.hosts.len()).all(|i| {
                self.host_status(i)
                    .is_some_and(|s| s.transitions.iter().any(|t| t.to == "ready" && t.at_ms >= since_ms))
            });
            (inspected && self.every_indexer_schedules_every_host()).then_some(())
        });
        t0.elapsed()
    }
}

/// Now, in ms since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `dci <args> --data-dir <dir>` at `place`: (success, stdout, stderr).
pub fn run(place: &Place, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = place.command().args(args).arg("--data-dir").arg(dir).env("DCI_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Polls `f` every 250 ms until it returns `Some`, at most `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The median of `xs` (ms), or None.
pub fn p50(xs: &[u128]) -> Option<u128> {
    let mut v = xs.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}
