//! The relay's port table, sans-IO: which public port forwards to which
//! node (and, on that node, to its node listener or to one of its local
//! ports), which nodes are connected, and how long an absent node's ports
//! stay reserved for it. Time is an argument; binding a socket is the
//! caller's `usable` function. A refused request changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::time::Instant;

use dci_model::NodeId;

use crate::Limits;

/// Where a public port's connections go on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The node's own listener (node messages: challenges, sessions).
    Node,
    /// One of the node's local ports (a service).
    Local(u16),
}

/// One public port's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The node holding it.
    pub node: NodeId,
    /// Where its connections go.
    pub target: Target,
}

/// Why a request was refused: what was expected, what was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(why.into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    Connected,
    Away { since: Instant },
}

/// The port table. See the module docs.
#[derive(Debug)]
pub struct Table {
    range: RangeInclusive<u16>,
    limits: Limits,
    leases: BTreeMap<u16, Lease>,
    nodes: HashMap<NodeId, Presence>,
}

impl Table {
    /// An empty table handing out ports of `range`.
    pub fn new(range: RangeInclusive<u16>, limits: Limits) -> Table {
        Table { range, limits, leases: BTreeMap::new(), nodes: HashMap::new() }
    }

    /// `node`'s tunnel is up: its node port (`want`, the one it held, if
    /// it is still its own or free). Refused when the relay already
    /// carries its maximum of tunnels, or no port can be had.
    pub fn connect(
        &mut self,
        node: NodeId,
        want: Option<u16>,
        usable: &mut dyn FnMut(u16) -> bool,
    ) -> Result<u16, Refusal> {
        let connected = self.nodes.values().filter(|p| **p == Presence::Connected).count();
        if self.nodes.get(&node) != Some(&Presence::Connected) && connected >= self.limits.max_tunnels {
            return refuse(format!(
                "expected a relay with room for another host, found all {} tunnels in use",
                self.limits.max_tunnels
            ));
        }
        let port = self.lease(node, Target::Node, want, usable)?;
        self.nodes.insert(node, Presence::Connected);
        Ok(port)
    }

    /// `node`'s tunnel is down at `now`: its ports stay reserved for it for
    /// [`Limits::reserve_for`].
    pub fn disconnect(&mut self, node: &NodeId, now: Instant) {
        if let Some(p) = self.nodes.get_mut(node) {
            *p = Presence::Away { since: now };
        }
    }

    /// Whether `node`'s tunnel is up.
    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.nodes.get(node) == Some(&Presence::Connected)
    }

    /// A public port for `node`'s `target`. Asking again for a target it
    /// already has gives the same port. `want`: a port it held before,
    /// taken if it is its own or free. Refused (and nothing changes) when
    /// `want` is outside the range or another node's, when the node holds
    /// [`Limits::ports_per_node`] ports already, or when no port is free.
    /// `usable(p)` is asked before a port not yet leased is given (the
    /// caller binds it there).
    pub fn lease(
        &mut self,
        node: NodeId,
        target: Target,
        want: Option<u16>,
        usable: &mut dyn FnMut(u16) -> bool,
    ) -> Result<u16, Refusal> {
        if let Some(p) = self.port_of(&node, target) {
            return Ok(p);
        }
        if let Some(p) = want {
            if !self.range.contains(&p) {
                return refuse(format!("expected a port in {}-{}, found {p}", self.range.start(), self.range.end()));
            }
            match self.leases.get(&p) {
                Some(l) if l.node != node => return refuse(format!("port {p} is held by another node")),
                Some(_) => {
                    // Its own port, for another target (a restarted service): moved.
                    self.leases.insert(p, Lease { node, target });
                    return Ok(p);
                }
                None => {}
            }
        }
        let held = self.leases.values().filter(|l| l.node == node).count();
        if held >= self.limits.ports_per_node {
            return refuse(format!(
                "expected at most {} public ports per node, found {held} held already",
                self.limits.ports_per_node
            ));
        }
        let port = match want {
            Some(p) if usable(p) => Some(p),
            Some(p) => return refuse(format!("port {p} cannot be bound on the relay")),
            None => {
                let range = self.range.clone();
                range.into_iter().find(|p| !self.leases.contains_key(p) && usable(*p))
            }
        };
        match port {
            Some(p) => {
                self.leases.insert(p, Lease { node, target });
                Ok(p)
            }
            None => refuse(format!(
                "expected a free public port in {}-{}, found none",
                self.range.start(),
                self.range.end()
            )),
        }
    }

    /// `node` gives back `port`. Refused when the port is not leased, is
    /// another node's, or is its node port (that one goes with the tunnel).
    pub fn release(&mut self, node: &NodeId, port: u16) -> Result<Target, Refusal> {
        match self.leases.get(&port) {
            None => refuse(format!("port {port} is not leased")),
            Some(l) if l.node != *node => refuse(format!("port {port} is held by another node")),
            Some(l) if l.target == Target::Node => {
                refuse(format!("port {port} is the node port: it is kept while the node is connected"))
            }
            Some(l) => {
                let target = l.target;
                self.leases.remove(&port);
                Ok(target)
            }
        }
    }

    /// Forgets the nodes away for longer than [`Limits::reserve_for`] at
    /// `now`, and frees their ports (returned).
    pub fn expire(&mut self, now: Instant) -> Vec<u16> {
        let reserve = self.limits.reserve_for;
        let gone: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, p)| matches!(p, Presence::Away { since } if now.saturating_duration_since(*since) >= reserve))
            .map(|(n, _)| *n)
            .collect();
        let mut freed = Vec::new();
        for n in gone {
            self.nodes.remove(&n);
            self.leases.retain(|p, l| {
                let keep = l.node != n;
                if !keep {
                    freed.push(*p);
                }
                keep
            });
        }
        freed
    }

    /// The lease of a public port.
    pub fn lookup(&self, port: u16) -> Option<Lease> {
        self.leases.get(&port).copied()
    }

    /// The port `node` holds for `target`.
    pub fn port_of(&self, node: &NodeId, target: Target) -> Option<u16> {
        self.leases.iter().find(|(_, l)| l.node == *node && l.target == target).map(|(p, _)| *p)
    }

    /// Every port `node` holds.
    pub fn ports_of(&self, node: &NodeId) -> Vec<(u16, Target)> {
        self.leases.iter().filter(|(_, l)| l.node == *node).map(|(p, l)| (*p, l.target)).collect()
    }

    /// Ports leased in all.
    pub fn leased(&self) -> usize {
        self.leases.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits { max_tunnels: 2, ports_per_node: 3, reserve_for: Duration::from_secs(60), ..Limits::default() }
    }

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn any(_: u16) -> bool {
        true
    }

    #[test]
    fn each_node_gets_its_own_ports_and_keeps_them_while_away() {
        let mut t = Table::new(100..=105, limits());
        let t0 = Instant::now();
        let (a, b) = (id(1), id(2));
        assert_eq!(t.connect(a, None, &mut any), Ok(100));
        assert_eq!(t.connect(b, None, &mut any), Ok(101));
        assert_eq!(t.lease(a, Target::Local(8080), None, &mut any), Ok(102));
        assert_eq!(t.lease(a, Target::Local(8080), None, &mut any), Ok(102), "asking again: the same port");
        // Away: reserved for it; back within the time: the same ports.
        t.disconnect(&a, t0);
        assert!(t.expire(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(t.connect(a, Some(100), &mut any), Ok(100));
        assert_eq!(t.lease(a, Target::Local(8080), Some(102), &mut any), Ok(102));
        // A restarted service on another local port takes its old public port.
        assert_eq!(t.lease(a, Target::Local(9090), Some(102), &mut any), Ok(102));
        assert_eq!(t.lookup(102), Some(Lease { node: a, target: Target::Local(9090) }));
        // Away too long: forgotten, its ports free.
        t.disconnect(&a, t0);
        let mut freed = t.expire(t0 + Duration::from_secs(60));
        freed.sort();
        assert_eq!(freed, vec![100, 102]);
        assert!(t.ports_of(&a).is_empty() && !t.is_connected(&a));
        assert_eq!(t.ports_of(&b), vec![(101, Target::Node)]);
    }

    #[test]
    fn refusals_change_nothing() {
        let mut t = Table::new(100..=103, limits());
        let (a, b, c) = (id(1), id(2), id(3));
        t.connect(a, None, &mut any).unwrap();
        t.connect(b, None, &mut any).unwrap();
        let before = format!("{t:?}");
        let e = t.connect(c, None, &mut any).unwrap_err();
        assert!(e.0.contains("all 2 tunnels in use"), "{e}");
        let e = t.lease(b, Target::Local(1), Some(100), &mut any).unwrap_err();
        assert_eq!(e.0, "port 100 is held by another node");
        let e = t.lease(b, Target::Local(1), Some(99), &mut any).unwrap_err();
        assert_eq!(e.0, "expected a port in 100-103, found 99");
        let e = t.release(&b, 100).unwrap_err();
        assert_eq!(e.0, "port 100 is held by another node");
        let e = t.release(&a, 100).unwrap_err();
        assert!(e.0.contains("is the node port"), "{e}");
        assert_eq!(t.release(&a, 103).unwrap_err().0, "port 103 is not leased");
        let e = t.lease(a, Target::Local(1), None, &mut |_| false).unwrap_err();
        assert!(e.0.contains("found none"), "{e}");
        assert_eq!(format!("{t:?}"), before);
        // Per node: at most three ports.
        t.lease(a, Target::Local(1), None, &mut any).unwrap();
        t.lease(a, Target::Local(2), None, &mut any).unwrap();
        let e = t.lease(a, Target::Local(3), None, &mut any).unwrap_err();
        assert!(e.0.contains("at most 3 public ports per node"), "{e}");
        assert_eq!(t.release(&a, 102), Ok(Target::Local(1)));
    }
}
