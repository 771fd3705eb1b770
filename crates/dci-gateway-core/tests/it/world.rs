//! A gateway core in virtual time, with a real ledger (the embedded SQLite
//! one, in memory) and a record store, and the test playing every other
//! node: the indexer, the containers, hostile senders. No sockets, no clock.
//!
//! Outputs are carried out in order, as the node's driver does: a ledger
//! call is applied when it is output (its effect is in the ledger at once)
//! and its answer queued as the next input. A crash can be injected after
//! any number of carried-out outputs: everything queued is lost, the ledger
//! and the records stay, and a new core restores from them.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use dci_gateway_core::{
    CallId, Command, Config, Event, Gateway, GatewayError, Input, LedgerCall, LedgerReply, Output, Peer, Relayed,
    Reply, SessionRecord,
};
use dci_ledger::{EmbeddedLedger, Genesis, LedgerOp};
use dci_model::{
    AccountId, Amount, ContainerSpec, GeoPoint, MatchRequest, NodeId, PricePerHour, ServiceName, SessionId, Timestamp,
};
use dci_proto::{ConnId, Identity, Inbound, Message, Net, Offer, SignedReceipt, UsageReceipt};

pub const INDEXER_ADDR: &str = "10.0.0.1:7000";
pub const START: Timestamp = Timestamp(1_800_000_000_000);

pub fn identity(n: u8) -> Identity {
    Identity::from_secret([n; 32])
}

pub fn consumer() -> AccountId {
    AccountId::new("consumer:alice").unwrap()
}

/// A container the test plays.
#[derive(Clone)]
pub struct Host {
    pub identity: Identity,
    pub addr: String,
    pub price: PricePerHour,
}

impl Host {
    pub fn new(n: u8, price: &str) -> Host {
        Host { identity: identity(n), addr: format!("10.0.1.{n}:7000"), price: price.parse().unwrap() }
    }

    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    pub fn payout(&self) -> AccountId {
        AccountId::for_node(&self.id())
    }

    pub fn offer(&self) -> Offer {
        Offer {
            container: self.id(),
            addr: self.addr.clone(),
            spec: ContainerSpec {
                gpu: None,
                cpu_cores: 8,
                ram_gib: 32,
                disk_gib: 100,
                bandwidth_up_mbps: 100,
                bandwidth_down_mbps: 100,
                location: GeoPoint::new(38.7, -9.1).unwrap(),
            },
            price: self.price,
            estimated_rtt_ms: None,
            payout: self.payout(),
        }
    }

    /// A receipt for `placement` from `started` lasting `seconds`, signed.
    pub fn receipt(&self, placement: SessionId, service: &str, started: Timestamp, seconds: u64) -> SignedReceipt {
        UsageReceipt {
            session: placement,
            container: self.id(),
            consumer: consumer(),
            service: ServiceName::new(service).unwrap(),
            started_at: started,
            ended_at: started.plus(Duration::from_secs(seconds)),
            seconds,
            price: self.price,
            amount: self.price.cost_for_secs(seconds).unwrap(),
        }
        .sign(&self.identity)
    }
}

/// What the funded consumer starts with.
pub const FUNDS: Amount = Amount::ath(1_000);

pub struct World {
    pub gw: Gateway,
    pub config: Config,
    pub now: Timestamp,
    pub ledger: EmbeddedLedger,
    pub store: BTreeMap<SessionId, SessionRecord>,
    pub queue: VecDeque<Input>,
    /// Every node message sent, oldest first: (address, message).
    pub sent: Vec<(String, Message)>,
    pub replies: BTreeMap<CallId, Result<Reply, GatewayError>>,
    pub rejected: Vec<(NodeId, &'static str, String)>,
    pub events: Vec<Event>,
    /// Every ledger batch applied (whatever its outcome).
    pub applied: Vec<Vec<LedgerOp>>,
    next_call: CallId,
    /// Outputs carried out so far.
    pub steps: usize,
    /// Crash after this many carried-out outputs.
    pub crash_at: Option<usize>,
    pub crashed: bool,
    pub indexer: Identity,
    seed: u8,
}

pub fn config() -> Config {
    let mut c = Config::new(vec![Peer { id: identity(1).id(), addr: INDEXER_ADDR.into() }]);
    c.models.insert(
        ServiceName::new("all-minilm-l6-v2").unwrap(),
        dci_gateway_core::ModelTerms { memory_mib: 512, price_per_1k_tokens: Amount::ath(1) },
    );
    c
}

impl World {
    pub fn new() -> World {
        World::with_config(config())
    }

    pub fn with_config(config: Config) -> World {
        let mut ledger = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
        ledger.transfer(&dci_ledger::accounts::liquidity(), &consumer(), FUNDS).unwrap();
        let mut w = World {
            gw: Gateway::new(config.clone(), identity(2), [7; 32]).unwrap(),
            config,
            now: START,
            ledger,
            store: BTreeMap::new(),
            queue: VecDeque::new(),
            sent: Vec::new(),
            replies: BTreeMap::new(),
            rejected: Vec::new(),
            events: Vec::new(),
            applied: Vec::new(),
            next_call: 1,
            steps: 0,
            crash_at: None,
            crashed: false,
            indexer: identity(1),
            seed: 7,
        };
        let out = w.gw.restore(START, Vec::new(), None);
        w.carry_out(out);
        w.pump();
        w
    }

    /// Feeds `input` and everything it causes (ledger answers) until quiet.
    pub fn input(&mut self, input: Input) {
        if self.crashed {
            return;
        }
        self.queue.push_back(input);
        self.pump();
    }

    pub fn pump(&mut self) {
        while !self.crashed {
            let Some(input) = self.queue.pop_front() else { break };
            let out = self.gw.handle(self.now, input);
            self.carry_out(out);
        }
    }

    fn carry_out(&mut self, out: Vec<Output>) {
        for o in out {
            if self.crashed {
                return;
            }
            self.steps += 1;
            if self.crash_at.is_some_and(|k| self.steps > k) {
                self.crashed = true;
                self.queue.clear();
                return;
            }
            match o {
                Output::Net(Net::Send { addr, msg }) => self.sent.push((addr, msg)),
                Output::Net(Net::Reply { msg, .. }) => self.sent.push(("<reply>".into(), msg)),
                Output::Ledger { ticket, call } => {
                    let reply = match call {
                        LedgerCall::Apply(ops) => {
                            self.applied.push(ops.clone());
                            LedgerReply::Applied(self.ledger.apply(&ops))
                        }
                        LedgerCall::Stakes { role, nodes } => LedgerReply::Stakes(
                            nodes
                                .iter()
                                .map(|n| self.ledger.staked(&AccountId::for_node(n), role).unwrap_or(Amount::ZERO))
                                .collect(),
                        ),
                        LedgerCall::Flush => LedgerReply::Flushed(Ok(0)),
                    };
                    self.queue.push_back(Input::Ledger { ticket, reply });
                }
                Output::Persist(r) => {
                    self.store.insert(r.id, r);
                }
                Output::Forget(id) => {
                    self.store.remove(&id);
                }
                Output::Reply { call, result } => {
                    self.replies.insert(call, result);
                }
                Output::Rejected { from, kind, reason } => self.rejected.push((from, kind, reason)),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    /// The process died: a new core restores from the records and the ledger.
    pub fn restart(&mut self) {
        self.crashed = false;
        self.crash_at = None;
        self.queue.clear();
        self.seed = self.seed.wrapping_add(1);
        self.gw = Gateway::new(self.config.clone(), identity(2), [self.seed; 32]).unwrap();
        let records: Vec<SessionRecord> =
            self.store.values().filter(|r| !r.status.is_terminal() || r.intent.is_some()).cloned().collect();
        let out = self.gw.restore(self.now, records, None);
        self.carry_out(out);
        self.pump();
    }

    pub fn call(&mut self, cmd: Command) -> CallId {
        let call = self.next_call;
        self.next_call += 1;
        self.input(Input::Api { call, cmd });
        call
    }

    pub fn reply(&self, call: CallId) -> Option<&Result<Reply, GatewayError>> {
        self.replies.get(&call)
    }

    /// The session a reply carries.
    pub fn session_of(&self, call: CallId) -> SessionRecord {
        match self.reply(call) {
            Some(Ok(Reply::Session(r))) => r.clone(),
            other => panic!("expected a session reply to call {call}, found {other:?}"),
        }
    }

    pub fn deploy(&mut self, service: &str, hours: u32) -> CallId {
        let request = MatchRequest::for_service(ServiceName::new(service).unwrap());
        self.call(Command::Deploy { account: consumer(), request, hours })
    }

    /// A message from `from` (authenticated as that node).
    pub fn from(&mut self, from: &Identity, msg: Message) {
        self.input(Input::Net(Inbound { conn: ConnId(1), from: from.id(), msg }));
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now.plus(d);
        self.input(Input::Tick);
    }

    /// Ticks every `step` until `d` has passed.
    pub fn run_for(&mut self, d: Duration, step: Duration) {
        let end = self.now.plus(d);
        while self.now < end {
            self.advance(step);
        }
    }

    /// The messages sent of one kind, newest last.
    pub fn sent_of(&self, kind: &str) -> Vec<(String, Message)> {
        self.sent.iter().filter(|(_, m)| m.kind() == kind).cloned().collect()
    }

    /// The latest Match sent: (request id, placement).
    pub fn last_match(&self) -> (u64, SessionId) {
        self.try_last_match().expect("no match was asked")
    }

    pub fn try_last_match(&self) -> Option<(u64, SessionId)> {
        match self.sent_of("match").last() {
            Some((_, Message::Match { request_id, session, .. })) => Some((*request_id, *session)),
            _ => None,
        }
    }

    /// The indexer answers the latest Match with `host`.
    pub fn indexer_matches(&mut self, host: &Host) {
        let (request_id, _) = self.last_match();
        let indexer = self.indexer.clone();
        self.from(&indexer, Message::Matched { request_id, offer: host.offer() });
    }

    /// The latest StartSession sent to `host`: (placement, when the world's clock read).
    pub fn start_asked(&self, host: &Host) -> SessionId {
        self.try_start_asked(host).unwrap_or_else(|| panic!("{} was not asked to start anything", host.addr))
    }

    pub fn try_start_asked(&self, host: &Host) -> Option<SessionId> {
        match self.sent.iter().rev().find(|(a, m)| a == &host.addr && m.kind() == "start_session") {
            Some((_, Message::StartSession { session, .. })) => Some(*session),
            _ => None,
        }
    }

    /// `host` says the service runs at `endpoint`.
    pub fn host_started(&mut self, host: &Host, endpoint: &str) -> SessionId {
        let placement = self.start_asked(host);
        self.from(&host.identity, Message::SessionStarted { session: placement, endpoint: endpoint.into() });
        placement
    }

    /// Deploys `service` on `host` all the way to running; returns the session.
    pub fn running_on(&mut self, host: &Host, service: &str, hours: u32) -> SessionRecord {
        let call = self.deploy(service, hours);
        self.indexer_matches(host);
        self.host_started(host, "http://127.0.0.1:9000");
        self.session_of(call)
    }

    pub fn record(&self, id: SessionId) -> SessionRecord {
        self.store.get(&id).cloned().unwrap_or_else(|| panic!("no record of session {id}"))
    }

    pub fn rejected_since(&self, n: usize) -> &[(NodeId, &'static str, String)] {
        &self.rejected[n..]
    }

    pub fn balance(&self, a: &AccountId) -> Amount {
        self.ledger.balance(a).unwrap()
    }

    pub fn escrowed(&self, a: &AccountId) -> Amount {
        self.ledger.account(a).map(|v| v.escrowed).unwrap_or(Amount::ZERO)
    }

    /// The books add up and nothing of the consumer's is locked any more.
    pub fn settled_cleanly(&self) {
        self.ledger.check_invariant().unwrap();
        assert_eq!(self.escrowed(&consumer()), Amount::ZERO, "escrow left locked");
        for r in self.store.values() {
            assert!(r.status.is_terminal(), "session {} left {:?}", r.id, r.status);
            assert!(r.intent.is_none(), "session {} left an intent {:?}", r.id, r.intent);
        }
    }

    pub fn relayed(&mut self, session: SessionId, request_bytes: u64, response_bytes: u64, tokens: u64) -> CallId {
        let relayed = Relayed { request_bytes, response_bytes, tokens };
        self.call(Command::Relayed { account: consumer(), session, relayed })
    }
}
