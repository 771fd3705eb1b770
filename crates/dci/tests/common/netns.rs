//! A lab of "machines" in Linux network namespaces, for end-to-end tests
//! across addresses with no loopback shortcuts (`nat.rs`).
//!
//! [`Lab::new`] makes a bridge in its own namespace; [`Lab::machine`] a
//! namespace with one address on the bridge (10.201.0.N/24);
//! [`Lab::behind_nat`] a router namespace on the bridge and a machine on a
//! private LAN behind it (192.168.201.2/24), the router masquerading its
//! traffic (iptables MASQUERADE) and dropping every connection that starts
//! on the bridge side: the machine can dial out, nothing can dial in.
//! Every link is created inside the lab's namespaces (veth pairs made
//! directly in them), and every iptables rule lives in the router's
//! namespace, so deleting the namespaces removes everything: [`Lab`]'s
//! `Drop` kills what still runs in them and deletes them, also when a test
//! fails. A lab left by a killed test run (its process gone) is removed by
//! the next one.
//!
//! Where namespaces cannot be made (not root, no `ip`), [`Lab::new`]
//! panics saying so: such a test fails, it never passes silently.
//! `cargo xtask deps` installs `ip` and `iptables`.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// One machine: its namespace and its address.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The namespace's name.
    pub ns: String,
    /// Its address (on the bridge, or on its LAN behind a NAT router).
    pub ip: Ipv4Addr,
}

/// A machine behind a NAT router.
#[derive(Clone, Debug)]
pub struct Natted {
    /// The machine on the LAN.
    pub host: Machine,
    /// The router: its address on the bridge is the LAN's public face.
    pub router: Machine,
}

/// The lab. See the module docs.
pub struct Lab {
    prefix: String,
    bridge: String,
    namespaces: Vec<String>,
    next: u8,
}

const BRIDGE_NET: &str = "10.201.0";
const LAN_NET: &str = "192.168.201";

/// Runs `ip <args>`, panicking with what failed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "network namespaces cannot be made here: running `ip` failed ({e}); install iproute2 (`cargo xtask deps`)"
        )
    });
    assert!(
        out.status.success(),
        "network namespaces cannot be made here (root and iproute2 are needed): `ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `program args…` inside namespace `ns`, panicking with what failed.
fn exec(ns: &str, program: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} in {ns}: {e}"));
    assert!(
        out.status.success(),
        "in namespace {ns}: `{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

/// Kills what runs in `ns` (our own processes: the lab started them) and deletes it.
fn remove(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

impl Lab {
    /// A lab with its bridge; panics (the test fails) where namespaces
    /// cannot be made.
    pub fn new() -> Lab {
        // Labs of earlier runs whose process is gone.
        for ns in namespaces() {
            let Some(pid) = ns.strip_prefix("dcilab").and_then(|r| r.split('-').next()) else { continue };
            if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                remove(&ns);
            }
        }
        let prefix = format!("dcilab{}", std::process::id());
        let mut lab = Lab { bridge: format!("{prefix}-br"), prefix, namespaces: Vec::new(), next: 1 };
        lab.add_ns(&lab.bridge.clone());
        ip(&["-n", &lab.bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lab.bridge, "link", "set", "br0", "up"]);
        lab
    }

    fn add_ns(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.namespaces.push(ns.to_owned());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    /// A machine on the bridge with the next free address.
    pub fn machine(&mut self, name: &str) -> Machine {
        let ns = format!("{}-{name}", self.prefix);
        self.add_ns(&ns);
        let ip4 = self.plug(&ns);
        Machine { ns, ip: ip4 }
    }

    /// Plugs `ns`'s eth0 into the bridge with the next address.
    fn plug(&mut self, ns: &str) -> Ipv4Addr {
        let n = self.next;
        self.next += 1;
        let port = format!("v{n}");
        ip(&["link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &port, "netns", &self.bridge]);
        ip(&["-n", &self.bridge, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.bridge, "link", "set", &port, "up"]);
        let addr = format!("{BRIDGE_NET}.{n}");
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
        addr.parse().unwrap()
    }

    /// A machine on a private LAN behind a masquerading router on the
    /// bridge: it can dial out; no connection from the bridge gets in.
    pub fn behind_nat(&mut self, name: &str) -> Natted {
        let router = format!("{}-{name}-rt", self.prefix);
        self.add_ns(&router);
        let public = self.plug(&router);
        let host = format!("{}-{name}", self.prefix);
        self.add_ns(&host);
        ip(&["link", "add", "lan0", "netns", &router, "type", "veth", "peer", "name", "eth0", "netns", &host]);
        ip(&["-n", &router, "addr", "add", &format!("{LAN_NET}.1/24"), "dev", "lan0"]);
        ip(&["-n", &router, "link", "set", "lan0", "up"]);
        ip(&["-n", &host, "addr", "add", &format!("{LAN_NET}.2/24"), "dev", "eth0"]);
        ip(&["-n", &host, "link", "set", "eth0", "up"]);
        ip(&["-n", &host, "route", "add", "default", "via", &format!("{LAN_NET}.1")]);
        exec(&router, "sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        exec(&router, "iptables", &["-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE"]);
        let established = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"];
        let mut inbound = vec!["-A", "FORWARD", "-i", "eth0", "-o", "lan0"];
        inbound.extend(established);
        exec(&router, "iptables", &inbound);
        exec(&router, "iptables", &["-A", "FORWARD", "-i", "eth0", "-o", "lan0", "-j", "DROP"]);
        Natted {
            host: Machine { ns: host, ip: format!("{LAN_NET}.2").parse().unwrap() },
            router: Machine { ns: router, ip: public },
        }
    }

    /// Gives `from` a route to `nat`'s LAN through its router, as if the
    /// LAN's addresses were reachable: a connection then really reaches the
    /// router, which drops it.
    pub fn route_to_lan(&self, from: &Machine, nat: &Natted) {
        ip(&["-n", &from.ns, "route", "add", &format!("{LAN_NET}.0/24"), "via", &nat.router.ip.to_string()]);
    }

    /// `program` to run inside `m`'s namespace (`ip netns exec`, which
    /// execs it: the child's pid is the program's).
    pub fn command(&self, m: &Machine, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &m.ns, program]).stdin(Stdio::null());
        c
    }

    /// Runs `f` on a thread inside `m`'s network namespace: every socket it
    /// opens (and every thread it starts) is there.
    pub fn within<T: Send>(&self, m: &Machine, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", m.ns);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("entering namespace {}: {e}", m.ns));
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            remove(ns);
        }
    }
}
