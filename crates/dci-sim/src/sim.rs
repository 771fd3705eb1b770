//! The engine: one virtual clock, one event queue, one RNG, and the real
//! cores. Every node is a core plus what its driver in `dci-node` would do
//! with its outputs, done here without IO: messages go through
//! [`crate::net::Network`], the gateway's ledger calls to an in-memory
//! [`EmbeddedLedger`], a host's challenge computations run for real (at
//! the scenario's small size) and take the time the capacity crate's timing
//! model gives the host's real hardware, services start after a drawn delay.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use dci_agent::Agent;
use dci_capacity::{Attempt, Behaviour, TimingClass, TimingNoise};
use dci_checker::Checker;
use dci_gateway_core::{CallId, Command, Gateway, GatewayError, LedgerCall, LedgerReply, Reply, SessionRecord};
use dci_indexer::Indexer;
use dci_ledger::{EmbeddedLedger, Genesis, LedgerOp, StakeRole, Transfer};
use dci_model::{AccountId, Amount, ContainerSpec, GeoPoint, GpuSpec, MatchRequest, NodeId, SessionId, Timestamp};
use dci_proto::{ChallengeParams, ConnId, Identity, Inbound, Message, Net, Peer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::net::Network;
use crate::report::{Collector, End, Report};
use crate::scenario::{OutageKind, Scenario};

/// Virtual time zero (a fixed instant: nothing reads the wall clock).
pub const START: Timestamp = Timestamp(1_800_000_000_000);

/// How often each role's driver ticks its core, as `dci-node` does (the
/// gateway every 250 ms; the others every second, their coarsest timer).
const GATEWAY_TICK_MS: u64 = 250;
const ROLE_TICK_MS: u64 = 1_000;
/// How long a host's runtime takes to stop a service.
const STOP_MS: u64 = 50;
/// The supply invariant is checked after every ledger batch and at least this often.
const AUDIT_MS: u64 = 60_000;

/// Why a simulation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The ledger refused the set-up (funding, stakes).
    #[error("ledger: {0}")]
    Ledger(#[from] dci_ledger::LedgerError),
    /// A core refused its configuration.
    #[error("{role} configuration: {why}")]
    Config {
        /// Which role.
        role: &'static str,
        /// Why.
        why: String,
    },
}

enum Role {
    Gateway(Box<Gateway>),
    Indexer(Box<Indexer>),
    Checker(Box<Checker>),
    Host(Box<Host>),
}

struct Host {
    agent: Agent,
    group: usize,
    behaviour: Behaviour,
    /// The class its GPU claims (the checker judges against it).
    claimed: TimingClass,
    next_port: u32,
}

struct Node {
    id: NodeId,
    name: String,
    at: GeoPoint,
    role: Role,
    /// Out: cut off (dark) or gone (crashed).
    down: Option<OutageKind>,
    /// What a restart after a crash builds the core from.
    restart: Restart,
}

/// What a crashed node restarts from: its configuration and key, and for
/// an indexer the records its driver persisted (in memory here).
enum Restart {
    Never,
    Host(Box<dci_agent::AgentConfig>, Identity),
    Indexer(Box<dci_indexer::Config>, BTreeMap<NodeId, dci_indexer::ContainerRecord>),
    Checker(Box<dci_checker::Config>, Identity),
}

/// Something that happens at a virtual instant.
enum Ev {
    Deliver {
        to: usize,
        inbound: Inbound,
    },
    Tick(usize),
    Computed {
        host: usize,
        checker: NodeId,
        params: ChallengeParams,
        attempt: Attempt,
    },
    ServiceStarted {
        host: usize,
        session: SessionId,
        endpoint: String,
    },
    ServiceStopped {
        host: usize,
        session: SessionId,
    },
    Evaluated {
        checker: usize,
        id: u64,
    },
    LedgerReply {
        ticket: dci_gateway_core::Ticket,
        reply: LedgerReply,
    },
    Deploy,
    Stop {
        account: AccountId,
        session: SessionId,
    },
    Audit,
    /// The gateway's transport could not connect to `addr`.
    Unreachable {
        addr: String,
    },
    OutageStart {
        node: usize,
        kind: OutageKind,
    },
    OutageEnd {
        node: usize,
    },
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// What a consumer's call was, for when its answer comes.
enum Call {
    Deploy { at: u64, account: AccountId },
    Stop,
}

/// One simulation run.
pub struct Sim {
    scenario: Scenario,
    rng: ChaCha20Rng,
    now: u64,
    end: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    nodes: Vec<Node>,
    by_addr: BTreeMap<String, usize>,
    addrs: Vec<String>,
    /// Connections: (dialer, listener), by id; and the id of each pair.
    conns: Vec<(usize, usize)>,
    conn_of: BTreeMap<(usize, usize), ConnId>,
    net: Network,
    ledger: EmbeddedLedger,
    sessions: BTreeMap<SessionId, SessionRecord>,
    accounts: Vec<AccountId>,
    calls: BTreeMap<CallId, Call>,
    next_call: CallId,
    /// Match requests the gateway sent, by request id: when.
    matches_sent: BTreeMap<u64, u64>,
    noise: TimingNoise,
    collect: Collector,
    /// Hosts under a maintenance lock.
    maintenance: std::collections::BTreeSet<usize>,
}

/// The gateway is node 0.
const GATEWAY: usize = 0;

fn secret(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill(&mut s);
    s
}

fn config_error(role: &'static str) -> impl Fn(String) -> SimError {
    move |why| SimError::Config { role, why }
}

impl Sim {
    /// Builds the network of `scenario`, every key and seed drawn from
    /// `seed`, to run for `hours` of virtual time.
    pub fn new(scenario: Scenario, seed: u64, hours: f64) -> Result<Sim, SimError> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let s = &scenario;
        // Identities and addresses first: every role's config names its peers.
        let gw_id = Identity::from_secret(secret(&mut rng));
        let idx_ids: Vec<Identity> = s.indexers.iter().map(|_| Identity::from_secret(secret(&mut rng))).collect();
        let chk_ids: Vec<Identity> = s.checkers.iter().map(|_| Identity::from_secret(secret(&mut rng))).collect();
        let addr = |i: usize| format!("node-{i}.sim:7000");
        let gw_addr = addr(GATEWAY);
        let idx_peers: Vec<Peer> =
            idx_ids.iter().enumerate().map(|(k, id)| Peer { id: id.id(), addr: addr(1 + k) }).collect();
        let chk_base = 1 + idx_ids.len();
        let chk_peers: Vec<Peer> =
            chk_ids.iter().enumerate().map(|(k, id)| Peer { id: id.id(), addr: addr(chk_base + k) }).collect();
        let checker_ids: Vec<NodeId> = chk_peers.iter().map(|p| p.id).collect();

        let mut ledger = EmbeddedLedger::open_in_memory(&Genesis::default())?;
        let liquidity = dci_ledger::accounts::liquidity();
        let bond = |ledger: &mut EmbeddedLedger, node: &NodeId, role: StakeRole, ath: u64| {
            let account = AccountId::for_node(node);
            let amount = Amount::ath(ath);
            let fund = Transfer { from: liquidity.clone(), to: account.clone(), amount };
            ledger.apply(&[LedgerOp::Transfer(fund), LedgerOp::Stake { account, role, amount }]).map(|_| ())
        };

        let mut nodes = Vec::new();
        // The gateway: the ledger, the epoch clock and the committee duties.
        let mut gc = dci_gateway_core::Config::new(idx_peers.clone());
        gc.epoch = Some(Duration::from_secs(s.epoch_minutes * 60));
        gc.min_container_stake = ledger.params().min_container_stake;
        gc.committee = Some(dci_gateway_core::CommitteeConfig {
            network: s.name.clone(),
            size: s.committee_size,
            checkers: chk_ids
                .iter()
                .zip(&chk_peers)
                .map(|(id, p)| dci_gateway_core::CheckerSeat {
                    id: p.id,
                    addr: p.addr.clone(),
                    vrf_public: dci_committee::CommitteeKey::from_identity(id).public(),
                    chain_signer: [0; 20],
                })
                .collect(),
            chain: None,
        });
        let gateway =
            Gateway::new(gc, gw_id.clone(), secret(&mut rng)).map_err(|e| config_error("gateway")(e.to_string()))?;
        nodes.push(Node {
            id: gw_id.id(),
            name: s.gateway.name.clone(),
            at: s.gateway.location(),
            role: Role::Gateway(Box::new(gateway)),
            down: None,
            restart: Restart::Never,
        });

        for (k, id) in idx_ids.iter().enumerate() {
            let mut c = dci_indexer::Config::new(chk_peers[0].addr.clone(), checker_ids.clone(), vec![gw_id.id()]);
            c.seed = rng.random();
            c.stake_oracle = Some((gw_id.id(), gw_addr.clone()));
            c.standby_every = Some(Duration::from_secs(s.standby_every_minutes * 60));
            // No scripted simulated user runs here: in-service evaluations
            // are off (see the crate docs).
            c.evaluated_service = None;
            c.validate().map_err(|e| config_error("indexer")(e.to_string()))?;
            bond(&mut ledger, &id.id(), StakeRole::Indexer, 100)?;
            nodes.push(Node {
                id: id.id(),
                name: s.indexers[k].name.clone(),
                at: s.indexers[k].location(),
                role: Role::Indexer(Box::new(Indexer::new(c.clone()))),
                down: None,
                restart: Restart::Indexer(Box::new(c), BTreeMap::new()),
            });
        }
        for (k, id) in chk_ids.iter().enumerate() {
            let mut c = dci_checker::Config::devnet(idx_peers.clone());
            c.challenge_n = s.challenge_n;
            c.min_deadline = Duration::ZERO;
            c.evaluation = dci_checker::EvaluationFloor::PRODUCTION;
            c.coordinator = Some(dci_checker::Coordinator { id: gw_id.id(), addr: gw_addr.clone() });
            bond(&mut ledger, &id.id(), StakeRole::Checker, s.checker_stake_ath)?;
            let checker = Checker::new(c.clone(), secret(&mut rng), id.clone())
                .map_err(|e| config_error("checker")(e.to_string()))?;
            nodes.push(Node {
                id: id.id(),
                name: s.checkers[k].name.clone(),
                at: s.checkers[k].location(),
                role: Role::Checker(Box::new(checker)),
                down: None,
                restart: Restart::Checker(Box::new(c), id.clone()),
            });
        }
        for (g, group) in s.hosts.iter().enumerate() {
            let price = group.price().map_err(|e| config_error("host")(e.to_string()))?;
            let behaviour = group.behaviour().map_err(|e| config_error("host")(e.to_string()))?;
            let gpu = group.gpu.as_ref().map(|model| GpuSpec {
                model: model.clone(),
                count: group.gpu_count,
                vram_gib: group.vram_gib,
                simulated: false,
            });
            let claimed = group.gpu.as_deref().and_then(dci_capacity::class_of_model).unwrap_or(TimingClass::Cpu);
            for _ in 0..group.count {
                let identity = Identity::from_secret(secret(&mut rng));
                let i = nodes.len();
                let spec = ContainerSpec {
                    gpu: gpu.clone(),
                    cpu_cores: group.cpu_cores,
                    ram_gib: group.ram_gib,
                    disk_gib: 500,
                    bandwidth_up_mbps: 1_000,
                    bandwidth_down_mbps: 1_000,
                    location: group.location(),
                };
                let config = dci_agent::AgentConfig {
                    listen_addr: addr(i),
                    spec,
                    services: group.service_names(),
                    price,
                    slots: group.slots,
                    payout: AccountId::for_node(&identity.id()),
                    indexers: idx_peers.clone(),
                    checkers: checker_ids.clone(),
                    gateways: vec![gw_id.id()],
                    heartbeat_interval: Duration::from_secs(1),
                    behaviour,
                };
                bond(&mut ledger, &identity.id(), StakeRole::Container, s.container_stake_ath)?;
                let id = identity.id();
                let agent = Agent::new(config.clone(), identity.clone());
                let host = Host { agent, group: g, behaviour, claimed, next_port: 9_000 };
                nodes.push(Node {
                    id,
                    name: group.name.clone(),
                    at: group.location(),
                    role: Role::Host(Box::new(host)),
                    down: None,
                    restart: Restart::Host(Box::new(config), identity),
                });
            }
        }
        let mut accounts = Vec::new();
        for k in 0..s.users.accounts {
            let account = AccountId::new(format!("consumer:user-{k}")).expect("a valid account id");
            ledger.transfer(&liquidity, &account, Amount::ath(s.users.funds_ath))?;
            accounts.push(account);
        }
        ledger.check_invariant()?;

        let addrs: Vec<String> = (0..nodes.len()).map(addr).collect();
        let by_addr = addrs.iter().enumerate().map(|(i, a)| (a.clone(), i)).collect();
        let end = (hours * 3_600_000.0).round() as u64;
        let collect = Collector::new(&scenario, seed);
        let net = Network::new(scenario.network.clone());
        let mut sim = Sim {
            scenario,
            rng,
            now: 0,
            end,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            by_addr,
            addrs,
            conns: Vec::new(),
            conn_of: BTreeMap::new(),
            net,
            ledger,
            sessions: BTreeMap::new(),
            accounts,
            calls: BTreeMap::new(),
            next_call: 1,
            matches_sent: BTreeMap::new(),
            noise: TimingNoise { rtt_ms: (0, 0), ..TimingNoise::REALISTIC },
            collect,
            maintenance: std::collections::BTreeSet::new(),
        };
        sim.boot();
        Ok(sim)
    }

    fn ts(&self) -> Timestamp {
        START.plus(Duration::from_millis(self.now))
    }

    fn at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at, seq: self.seq, ev }));
    }

    fn host_meta(&self, i: usize) -> Option<(usize, Behaviour)> {
        match &self.nodes[i].role {
            Role::Host(h) => Some((h.group, h.behaviour)),
            _ => None,
        }
    }

    /// Starts every core as its driver does, arms the ticks (each node at
    /// its own phase) and the first consumer.
    fn boot(&mut self) {
        let now = self.ts();
        for i in 0..self.nodes.len() {
            match &mut self.nodes[i].role {
                Role::Gateway(g) => {
                    let out = g.restore(now, Vec::new(), None);
                    self.gateway_outputs(out);
                }
                Role::Indexer(x) => {
                    let out = x.restore(Vec::new(), now);
                    self.indexer_outputs(i, out);
                }
                Role::Checker(_) => {}
                Role::Host(h) => {
                    let join = self.scenario.hosts[h.group].join_minutes;
                    if join > 0.0 {
                        // Not there yet: it joins as a restarted host boots.
                        self.nodes[i].down = Some(OutageKind::Crash);
                        self.at((join * 60_000.0).round() as u64, Ev::OutageEnd { node: i });
                    } else {
                        self.host_input(i, dci_agent::Input::Boot);
                    }
                }
            }
            let period = if i == GATEWAY { GATEWAY_TICK_MS } else { ROLE_TICK_MS };
            let phase = self.rng.random_range(0..period);
            self.at(phase, Ev::Tick(i));
        }
        let first = self.next_arrival();
        if let Some(t) = first {
            self.at(t, Ev::Deploy);
        }
        self.at(AUDIT_MS, Ev::Audit);
        for o in self.scenario.outages.clone() {
            let from = (o.from_minutes * 60_000.0).round() as u64;
            let to = from + (o.minutes * 60_000.0).round().max(1.0) as u64;
            let hit: Vec<usize> =
                (0..self.nodes.len()).filter(|&i| self.nodes[i].name == o.node).take(o.count as usize).collect();
            for node in hit {
                self.at(from, Ev::OutageStart { node, kind: o.kind });
                self.at(to, Ev::OutageEnd { node });
            }
        }
    }

    fn crashed(&self, i: usize) -> bool {
        self.nodes[i].down == Some(OutageKind::Crash)
    }

    /// A crashed node comes back: its core is built again, as its process
    /// would be at start (a host boots afresh, an indexer restores the
    /// records it persisted, a checker draws a new seed).
    fn restart(&mut self, i: usize) {
        let now = self.ts();
        match &self.nodes[i].restart {
            Restart::Never => {}
            Restart::Host(config, identity) => {
                let agent = Agent::new((**config).clone(), identity.clone());
                if let Role::Host(h) = &mut self.nodes[i].role {
                    h.agent = agent;
                }
                self.host_input(i, dci_agent::Input::Boot);
            }
            Restart::Indexer(config, records) => {
                let mut x = Indexer::new((**config).clone());
                let out = x.restore(records.values().cloned().collect(), now);
                self.nodes[i].role = Role::Indexer(Box::new(x));
                self.indexer_outputs(i, out);
            }
            Restart::Checker(config, identity) => {
                let seed = secret(&mut self.rng);
                if let Ok(c) = Checker::new((**config).clone(), seed, identity.clone()) {
                    self.nodes[i].role = Role::Checker(Box::new(c));
                }
            }
        }
    }

    fn next_arrival(&mut self) -> Option<u64> {
        let rate = self.scenario.users.deploys_per_hour;
        if rate <= 0.0 {
            return None;
        }
        let u: f64 = 1.0 - self.rng.random::<f64>();
        let ms = (-u.ln() / rate * 3_600_000.0).ceil() as u64;
        Some(self.now + ms.max(1))
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> Report {
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > self.end {
                break;
            }
            self.now = q.at;
            self.collect.events += 1;
            self.dispatch(q.ev);
        }
        self.now = self.end;
        self.audit_all();
        let states = self.final_states();
        let slashed: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| self.ledger.slashes(&AccountId::for_node(&n.id)).map(|s| !s.is_empty()).unwrap_or(false))
            .collect();
        let supply = self.ledger.check_invariant().ok().map(|r| r.expected);
        let earnings = self.earnings();
        let end = End { states, slashed, supply, sessions: &self.sessions, earnings };
        self.collect.finish(&self.scenario, self.end, end)
    }

    /// Each node's holdings at the end less what it bonded at the start,
    /// by role.
    fn earnings(&self) -> BTreeMap<String, Vec<i128>> {
        let s = &self.scenario;
        let mut by_role: BTreeMap<String, Vec<i128>> = BTreeMap::new();
        for n in &self.nodes {
            let (role, bonded) = match n.role {
                Role::Gateway(_) => ("gateway", 0),
                Role::Indexer(_) => ("indexer", 100),
                Role::Checker(_) => ("checker", s.checker_stake_ath),
                Role::Host(_) => ("host", s.container_stake_ath),
            };
            let held = self
                .ledger
                .account(&AccountId::for_node(&n.id))
                .map_or(0, |v| (v.balance.0 + v.escrowed.0 + v.staked.0 + v.unbonding.0 + v.rewards.0) as i128);
            by_role.entry(role.to_owned()).or_default().push(held - Amount::ath(bonded).0 as i128);
        }
        by_role
    }

    /// For each host, whether any indexer would still schedule it.
    fn final_states(&self) -> Vec<Option<Vec<dci_model::State>>> {
        let indexers: Vec<&Indexer> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.role {
                Role::Indexer(x) => Some(&**x),
                _ => None,
            })
            .collect();
        self.nodes
            .iter()
            .map(|n| match n.role {
                Role::Host(_) => {
                    Some(indexers.iter().filter_map(|x| x.container(&n.id).map(|c| c.record.state)).collect())
                }
                _ => None,
            })
            .collect()
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, .. } if self.nodes[to].down.is_some() => self.collect.dropped += 1,
            Ev::Tick(i) if self.crashed(i) => {
                let period = if i == GATEWAY { GATEWAY_TICK_MS } else { ROLE_TICK_MS };
                self.at(self.now + period, Ev::Tick(i));
            }
            Ev::Computed { host: i, .. }
            | Ev::ServiceStarted { host: i, .. }
            | Ev::ServiceStopped { host: i, .. }
            | Ev::Evaluated { checker: i, .. }
                if self.crashed(i) => {}
            Ev::Unreachable { addr } => self.gateway_input(dci_gateway_core::Input::Unreachable { addr }),
            Ev::OutageStart { node, kind: OutageKind::Maintenance } => {
                self.collect.outages += 1;
                self.maintenance.insert(node);
                let lock = dci_agent::OperatorCommand::MaintenanceOn { drain: false };
                self.host_input(node, dci_agent::Input::Operator(lock));
            }
            Ev::OutageStart { node, kind } => {
                self.collect.outages += 1;
                self.nodes[node].down = Some(kind);
            }
            Ev::OutageEnd { node } if self.maintenance.remove(&node) => {
                self.host_input(node, dci_agent::Input::Operator(dci_agent::OperatorCommand::MaintenanceOff));
            }
            Ev::OutageEnd { node } => {
                let was = self.nodes[node].down.take();
                if was == Some(OutageKind::Crash) {
                    self.restart(node);
                }
            }
            Ev::Deliver { to, inbound } => {
                if to == GATEWAY
                    && let Message::Matched { request_id, .. } | Message::NoMatch { request_id, .. } = &inbound.msg
                    && let Some(sent) = self.matches_sent.remove(request_id)
                {
                    self.collect.match_latency.push(self.now - sent);
                }
                self.deliver(to, inbound);
            }
            Ev::Tick(i) => {
                match &self.nodes[i].role {
                    Role::Gateway(_) => self.gateway_input(dci_gateway_core::Input::Tick),
                    Role::Indexer(_) => self.indexer_input(i, dci_indexer::Input::Tick),
                    Role::Checker(_) => self.checker_input(i, dci_checker::Input::Tick),
                    Role::Host(_) => self.host_input(i, dci_agent::Input::Tick),
                }
                let period = if i == GATEWAY { GATEWAY_TICK_MS } else { ROLE_TICK_MS };
                self.at(self.now + period, Ev::Tick(i));
            }
            Ev::Computed { host, checker, params, attempt } => {
                self.host_input(host, dci_agent::Input::Computed { checker, params, attempt })
            }
            Ev::ServiceStarted { host, session, endpoint } => {
                self.host_input(host, dci_agent::Input::ServiceStarted { session, endpoint })
            }
            Ev::ServiceStopped { host, session } => self.host_input(host, dci_agent::Input::ServiceStopped { session }),
            Ev::Evaluated { checker, id } => {
                let result = Err("dci-sim runs no scripted simulated user".to_owned());
                self.checker_input(checker, dci_checker::Input::Evaluated { id, result })
            }
            Ev::LedgerReply { ticket, reply } => self.gateway_input(dci_gateway_core::Input::Ledger { ticket, reply }),
            Ev::Deploy => {
                self.deploy();
                if let Some(t) = self.next_arrival() {
                    self.at(t, Ev::Deploy);
                }
            }
            Ev::Stop { account, session } => {
                self.call(Call::Stop, Command::Stop { account, session });
            }
            Ev::Audit => {
                self.audit_all();
                self.at(self.now + AUDIT_MS, Ev::Audit);
            }
        }
    }

    fn deliver(&mut self, to: usize, inbound: Inbound) {
        match &self.nodes[to].role {
            Role::Gateway(_) => self.gateway_input(dci_gateway_core::Input::Net(inbound)),
            Role::Indexer(_) => self.indexer_input(to, dci_indexer::Input::Net(inbound)),
            Role::Checker(_) => self.checker_input(to, dci_checker::Input::Net(inbound)),
            Role::Host(_) => self.host_input(to, dci_agent::Input::Net(inbound)),
        }
    }

    /// Carries a message out of node `from` into the network.
    fn send(&mut self, from: usize, net: Net) {
        let (to, conn, msg) = match net {
            Net::Send { addr, msg } => {
                let Some(&to) = self.by_addr.get(&addr) else {
                    self.collect.undeliverable += 1;
                    return;
                };
                let next = ConnId(self.conns.len() as u64 + 1);
                let conn = *self.conn_of.entry((from, to)).or_insert(next);
                if conn == next {
                    self.conns.push((from, to));
                }
                (to, conn, msg)
            }
            Net::Reply { conn, msg } => {
                let Some(&(dialer, listener)) = self.conns.get((conn.0 as usize).wrapping_sub(1)) else {
                    self.collect.undeliverable += 1;
                    return;
                };
                let to = if from == dialer { listener } else { dialer };
                (to, conn, msg)
            }
        };
        if self.nodes[from].down.is_some() {
            self.collect.dropped += 1;
            return;
        }
        if self.crashed(to) {
            // A connection to a process that is gone is refused: the
            // gateway's transport tells its core (a round trip later).
            if from == GATEWAY {
                let (a, b) = (self.nodes[from].at, self.nodes[to].at);
                let at = self.now + 2 * self.net.base_ms(&a, &b);
                self.at(at, Ev::Unreachable { addr: self.addrs[to].clone() });
            }
            self.collect.dropped += 1;
            return;
        }
        if from == GATEWAY
            && let Message::Match { request_id, .. } = &msg
        {
            self.matches_sent.insert(*request_id, self.now);
        }
        self.collect.messages += 1;
        let (a, b) = (self.nodes[from].at, self.nodes[to].at);
        let at = self.net.arrival(self.now, (from, &a), (to, &b), &mut self.rng);
        let inbound = Inbound { conn, from: self.nodes[from].id, msg };
        self.at(at, Ev::Deliver { to, inbound });
    }

    /// The periodic audit: every indexer's invariants, and the supply.
    fn audit_all(&mut self) {
        for i in 0..self.nodes.len() {
            if matches!(self.nodes[i].role, Role::Indexer(_)) && !self.crashed(i) {
                self.check_index(i);
            }
        }
        self.audit();
    }

    /// The supply invariant.
    fn audit(&mut self) {
        self.collect.supply_checks += 1;
        if let Err(e) = self.ledger.check_invariant() {
            self.collect.supply_violations.push(format!("at {} ms: {e}", self.now));
        }
    }

    // --- consumers

    fn call(&mut self, kind: Call, cmd: Command) {
        let call = self.next_call;
        self.next_call += 1;
        self.calls.insert(call, kind);
        self.gateway_input(dci_gateway_core::Input::Api { call, cmd });
    }

    fn deploy(&mut self) {
        let u = &self.scenario.users;
        let account = self.accounts[self.rng.random_range(0..self.accounts.len())].clone();
        let service = u.services[self.rng.random_range(0..u.services.len())].clone();
        let near = if u.at.is_empty() {
            None
        } else {
            let (lat, lon) = u.at[self.rng.random_range(0..u.at.len())];
            GeoPoint::new(lat, lon).ok()
        };
        let hours = u.budget_hours;
        let mut request = MatchRequest::for_service(dci_model::ServiceName::new(service).expect("validated"));
        request.near = near;
        if !u.policies.is_empty() {
            request.policy = u.policies[self.rng.random_range(0..u.policies.len())];
        }
        self.collect.deploys_asked += 1;
        self.call(Call::Deploy { at: self.now, account: account.clone() }, Command::Deploy { account, request, hours });
    }

    fn answered(&mut self, call: CallId, result: Result<Reply, GatewayError>) {
        match (self.calls.remove(&call), result) {
            (Some(Call::Deploy { at, account }), Ok(Reply::Session(r))) => {
                self.collect.deployed += 1;
                self.collect.deploy_latency.push(self.now - at);
                let mean = self.scenario.users.session_minutes * 60_000.0;
                let u: f64 = 1.0 - self.rng.random::<f64>();
                // Stopped by its user before the budget runs out (or not:
                // the gateway stops it when the escrow is used up).
                let ms = (-u.ln() * mean).ceil() as u64;
                self.at(self.now + ms.max(1), Ev::Stop { account, session: r.id });
            }
            (Some(Call::Deploy { .. }), result) => {
                let why = match result {
                    Err(e) => e.to_string(),
                    Ok(other) => format!("unexpected answer {other:?}"),
                };
                // The reason's kind: what comes before its details.
                let kind = why.split([':', '(']).next().unwrap_or("").trim().to_owned();
                *self.collect.deploy_failures.entry(kind).or_insert(0) += 1;
            }
            (Some(Call::Stop), Ok(_)) => self.collect.stopped += 1,
            (Some(Call::Stop), Err(_)) => self.collect.stop_refused += 1,
            (None, _) => {}
        }
    }

    // --- the gateway's driver

    fn gateway_input(&mut self, input: dci_gateway_core::Input) {
        let now = self.ts();
        let Role::Gateway(g) = &mut self.nodes[GATEWAY].role else { unreachable!("node 0 is the gateway") };
        let out = g.handle(now, input);
        self.gateway_outputs(out);
    }

    fn gateway_outputs(&mut self, out: Vec<dci_gateway_core::Output>) {
        use dci_gateway_core::Output;
        for o in out {
            match o {
                Output::Net(net) => self.send(GATEWAY, net),
                Output::Ledger { ticket, call } => {
                    let reply = match call {
                        LedgerCall::Apply(ops) => {
                            let r = self.ledger.apply(&ops);
                            self.audit();
                            LedgerReply::Applied(r)
                        }
                        LedgerCall::Stakes { role, nodes } => LedgerReply::Stakes(
                            nodes
                                .iter()
                                .map(|n| self.ledger.staked(&AccountId::for_node(n), role).unwrap_or(Amount::ZERO))
                                .collect(),
                        ),
                        LedgerCall::Flush => LedgerReply::Flushed(Ok(0)),
                    };
                    self.at(self.now, Ev::LedgerReply { ticket, reply });
                }
                Output::Persist(r) => {
                    self.sessions.insert(r.id, r);
                }
                Output::Forget(id) => {
                    self.sessions.remove(&id);
                }
                Output::Reply { call, result } => self.answered(call, result),
                Output::Rejected { kind, reason, .. } => self.collect.rejected("gateway", &format!("{kind}: {reason}")),
                Output::Event(e) => {
                    if let dci_gateway_core::Event::Placed { session, container, .. } = &e {
                        self.rtt_over_best(*session, container);
                    }
                    self.collect.gateway_event(&e);
                }
            }
        }
    }

    /// Measures a placement: the estimated RTT from the consumer to the
    /// host it got over the best any host offering the service could give
    /// (wherever it is, busy or not). A figure for the report; nothing
    /// here chooses anything.
    fn rtt_over_best(&mut self, session: SessionId, container: &NodeId) {
        let Some(r) = self.sessions.get(&session) else { return };
        let Some(near) = r.request.near else { return };
        let service = r.request.service.as_str();
        let Some(host) = self.nodes.iter().find(|n| n.id == *container) else { return };
        let got = u64::from(near.estimated_rtt_ms(&host.at));
        let offers = |n: &Node| match &n.role {
            Role::Host(h) => self.scenario.hosts[h.group].services.iter().any(|s| s == service),
            _ => false,
        };
        let best = self.nodes.iter().filter(|n| offers(n)).map(|n| u64::from(near.estimated_rtt_ms(&n.at))).min();
        if let Some(best) = best {
            self.collect.rtt_ratio.push(got * 1000 / best.max(1));
        }
    }

    // --- the indexer's driver

    fn indexer_input(&mut self, i: usize, input: dci_indexer::Input) {
        let now = self.ts();
        // The messages that reserve or free a slot.
        let slots = matches!(&input, dci_indexer::Input::Net(m)
            if matches!(m.msg, Message::Match { .. } | Message::Release { .. }));
        let Role::Indexer(x) = &mut self.nodes[i].role else { unreachable!("an indexer") };
        let out = x.handle(now, input);
        self.indexer_outputs(i, out);
        if slots {
            self.check_index(i);
        }
    }

    /// `Indexer::check_invariants` (no slot given twice, every reservation
    /// armed to expire, the index agreeing with the records) in debug
    /// builds, after every message that reserves or frees a slot and at
    /// every simulated minute (renewals, expiries on ticks): it walks the
    /// whole index, so not after every heartbeat.
    fn check_index(&mut self, i: usize) {
        if cfg!(debug_assertions)
            && let Role::Indexer(x) = &self.nodes[i].role
            && let Err(e) = x.check_invariants()
        {
            self.collect.index_violations.push(format!("at {} ms: {e}", self.now));
        }
    }

    fn indexer_outputs(&mut self, i: usize, out: Vec<dci_indexer::Output>) {
        use dci_indexer::Output;
        for o in out {
            match o {
                Output::Net(net) => self.send(i, net),
                Output::Persist(record) => {
                    if let Restart::Indexer(_, records) = &mut self.nodes[i].restart {
                        records.insert(record.id, record);
                    }
                }
                Output::Forget(id) => {
                    self.collect.pruned += 1;
                    if let Restart::Indexer(_, records) = &mut self.nodes[i].restart {
                        records.remove(&id);
                    }
                }
                Output::Rejected { reason, .. } => self.collect.rejected("indexer", &reason.to_string()),
            }
        }
    }

    // --- the checker's driver

    fn checker_input(&mut self, i: usize, input: dci_checker::Input) {
        let now = self.ts();
        let Role::Checker(c) = &mut self.nodes[i].role else { unreachable!("a checker") };
        let out = c.handle(now, input);
        for o in out {
            match o {
                dci_checker::Output::Net(net) => self.send(i, net),
                dci_checker::Output::Evaluate { id, .. } => {
                    self.collect.evaluations += 1;
                    self.at(self.now, Ev::Evaluated { checker: i, id });
                }
                dci_checker::Output::Verdict(v) => {
                    let host = self.nodes.iter().position(|n| n.id == v.container);
                    let meta = host.and_then(|h| self.host_meta(h));
                    self.collect.verdict(self.now, host, meta, v.passed, &v.reason);
                }
                dci_checker::Output::Rejected { reason, .. } => self.collect.rejected("checker", &reason),
            }
        }
    }

    // --- a host's driver (and its simulated runtime)

    fn host_input(&mut self, i: usize, input: dci_agent::Input) {
        let now = self.ts();
        let Role::Host(h) = &mut self.nodes[i].role else { unreachable!("a host") };
        let out = h.agent.handle(now, input);
        for o in out {
            match o {
                dci_agent::Output::Net(net) => self.send(i, net),
                dci_agent::Output::Compute { checker, params, behaviour, earlier } => {
                    let Role::Host(h) = &self.nodes[i].role else { unreachable!("a host") };
                    let claimed = h.claimed;
                    // The computation is real (at the small size); its
                    // duration is the timing model's for the real hardware.
                    match behaviour.commit(&params, earlier.as_ref()) {
                        Ok(attempt) => {
                            let ms = behaviour.commit_ms(claimed, params.n, &self.noise, &mut self.rng);
                            self.at(self.now + ms, Ev::Computed { host: i, checker, params, attempt });
                        }
                        Err(_) => self.collect.compute_errors += 1,
                    }
                }
                dci_agent::Output::StartService { session, .. } => {
                    let Role::Host(h) = &mut self.nodes[i].role else { unreachable!("a host") };
                    let port = h.next_port;
                    h.next_port += 1;
                    let host = self.addrs[i].split(':').next().unwrap_or("").to_owned();
                    let (lo, hi) = self.scenario.users.start_ms;
                    let ms = self.rng.random_range(lo..=hi);
                    let endpoint = format!("http://{host}:{port}");
                    self.at(self.now + ms, Ev::ServiceStarted { host: i, session, endpoint });
                }
                dci_agent::Output::StopService { session } => {
                    self.at(self.now + STOP_MS, Ev::ServiceStopped { host: i, session })
                }
                dci_agent::Output::StateChanged(_) => self.collect.transitions += 1,
                dci_agent::Output::Refused(_) => self.collect.registrations_refused += 1,
                dci_agent::Output::Rejected { reason, .. } => self.collect.rejected("host", &reason),
            }
        }
    }
}
