//! The container role's state machine.

use std::collections::HashMap;
use std::time::Duration;

use dci_capacity::{Attempt, Behaviour, Solution};
use dci_model::{
    AccountId, Activity, ContainerSpec, NodeId, PricePerHour, ServiceName, SessionId, State, Timestamp, Transition,
};
use dci_proto::{
    ChallengeParams, ConnId, Heartbeat, Identity, Inbound, Message, Net, Peer, Registration, SignedReceipt,
    UsageReceipt, sign_transcript,
};

/// What the container offers and whom it trusts.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This container's own listening address (announced at registration).
    pub listen_addr: String,
    /// Declared resources.
    pub spec: ContainerSpec,
    /// Pre-installed services (R-AG3).
    pub services: Vec<ServiceName>,
    /// Price of one slot per hour.
    pub price: PricePerHour,
    /// Concurrent sessions.
    pub slots: u32,
    /// Account for earnings.
    pub payout: AccountId,
    /// The indexers: it registers and heartbeats with every one (each keeps
    /// its own view of it, so that any of them can serve a request), and
    /// takes state reports only from them.
    pub indexers: Vec<Peer>,
    /// Checkers allowed to challenge this container.
    pub checkers: Vec<NodeId>,
    /// Gateways allowed to start and stop sessions.
    pub gateways: Vec<NodeId>,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// How it plays capacity challenges: honestly, except in tests and
    /// devnets that show the checkers catching a cheat.
    pub behaviour: Behaviour,
}

/// Inputs of the container core.
#[derive(Debug)]
pub enum Input {
    /// The agent started (or restarted): register.
    Boot,
    /// Periodic timer.
    Tick,
    /// An authenticated message.
    Net(Inbound),
    /// A challenge computation finished.
    Computed {
        /// The checker that sent the challenge.
        checker: NodeId,
        /// The challenge.
        params: ChallengeParams,
        /// What was committed to, and the data to answer from.
        attempt: Attempt,
    },
    /// The runtime started a session's service.
    ServiceStarted {
        /// The session.
        session: SessionId,
        /// Where the consumer reaches it.
        endpoint: String,
    },
    /// The runtime could not start it.
    ServiceFailed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: String,
    },
    /// The runtime stopped a session's service (asked to, or it exited).
    ServiceStopped {
        /// The session.
        session: SessionId,
    },
    /// The operator's command (R-AG5), from the host's control socket.
    Operator(OperatorCommand),
    /// The pre-installed services with an instance started and waiting now
    /// (R-AG3), from the runtime; reported in heartbeats.
    Warm(Vec<ServiceName>),
    /// The network changed (its file was edited): whom to trust and where
    /// the indexers are from now on. A container registers with each
    /// indexer that is new or moved (a known container's registration
    /// changes nothing at an indexer) and forgets those no longer listed.
    Peers(Peers),
}

/// Whom a container trusts, and where it registers, as its network file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers {
    /// The indexers it registers and heartbeats with.
    pub indexers: Vec<Peer>,
    /// Checkers allowed to challenge this container.
    pub checkers: Vec<NodeId>,
    /// Gateways allowed to start and stop sessions.
    pub gateways: Vec<NodeId>,
}

/// What the operator of a container can ask of it (R-AG5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorCommand {
    /// Lock for maintenance: unschedulable from now on. Running sessions
    /// move to other containers (each ends here with its final receipt and
    /// the gateway re-matches it), or with `drain` run until their
    /// consumers stop them.
    MaintenanceOn {
        /// Let running sessions finish instead of moving them.
        drain: bool,
    },
    /// Unlock: the container asks for a fresh inspection, then is scheduled again.
    MaintenanceOff,
    /// The price of one slot per hour for new sessions (running ones keep theirs).
    SetPrice(PricePerHour),
}

/// What the container earned, from the final receipts it signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Earnings {
    /// Sessions settled by a final receipt.
    pub sessions: u64,
    /// Seconds they were billed.
    pub seconds: u64,
    /// What they were billed (before the fee split).
    pub amount: dci_model::Amount,
}

/// Effects the driver carries out.
#[derive(Debug)]
pub enum Output {
    /// Network traffic.
    Net(Net),
    /// Run a proof-of-capacity computation (off the core's thread):
    /// `behaviour.commit(&params, earlier)`, then answer with
    /// [`Input::Computed`].
    Compute {
        /// The checker that sent the challenge (echoed in `Computed`).
        checker: NodeId,
        /// The challenge.
        params: ChallengeParams,
        /// How to play it.
        behaviour: Behaviour,
        /// The previous result (only for a replaying container).
        earlier: Option<Solution>,
    },
    /// Start the service for a session.
    StartService {
        /// The session.
        session: SessionId,
        /// Which service.
        service: ServiceName,
    },
    /// Stop the service of a session.
    StopService {
        /// The session.
        session: SessionId,
    },
    /// A message was refused.
    Rejected {
        /// Sender.
        from: NodeId,
        /// Why.
        reason: String,
    },
    /// The indexer reported a lifecycle change.
    StateChanged(Transition),
    /// The indexer refused the registration, and why (e.g. no container
    /// stake bonded); for the log. [`AgentStatus::refused`] keeps it.
    Refused(String),
}

#[derive(Debug)]
struct Session {
    service: ServiceName,
    consumer: AccountId,
    price: PricePerHour,
    start_conn: ConnId,
    started_at: Option<Timestamp>,
    endpoint: Option<String>,
    stop: Option<(ConnId, Timestamp)>,
    /// When the last per-second usage receipt was signed.
    metered_at: Option<Timestamp>,
    /// The final receipt went out with `SessionEnded`: nothing more is owed.
    ended: bool,
}

/// A session as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The session.
    pub id: SessionId,
    /// Its service.
    pub service: ServiceName,
    /// Where it is reachable, once started.
    pub endpoint: Option<String>,
}

/// A challenge computed and committed to: what the answer to its reveal needs.
type Computed = (ChallengeParams, Attempt);

/// How long an agent the indexer has not admitted yet (no state reported:
/// its registration was refused, or never answered) waits before it
/// registers again; the wait doubles up to [`REGISTER_RETRY_MAX`].
pub const REGISTER_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between two registrations of an agent not admitted.
pub const REGISTER_RETRY_MAX: Duration = Duration::from_secs(300);

/// At most this many challenges of one checker are worked on at once; more
/// are refused. Per checker, so that one checker's abandoned challenges
/// never keep another's out.
pub const MAX_CHALLENGES_PER_CHECKER: usize = 2;
/// At most this many in-service evaluation sessions of one checker run at once.
pub const MAX_EVALUATIONS_PER_CHECKER: usize = 2;
/// How long after the checker's own deadline ([`ChallengeParams::deadline_ms`],
/// `EvaluationRequest::deadline_ms`, counted from arrival here) a challenge
/// without its reveal, or an evaluation without its `EvaluationDone`, is
/// still held: room for the network. Then it is forgotten (an evaluation's
/// session stopped): the checker gave up on it long before.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// A checker's challenge being worked on.
struct Challenge {
    /// Where the commitment goes.
    conn: ConnId,
    /// Past this without a reveal, the checker has given up: forget it.
    expires: Timestamp,
    /// The commitment's data, once computed.
    computed: Option<Computed>,
}

/// A checker's evaluation session (R-CK3, R-CK4): unbilled, outside the slots.
struct Evaluation {
    checker: NodeId,
    conn: ConnId,
    id: u64,
    started: bool,
    /// Past this without `EvaluationDone`, the checker has given up: stop it.
    expires: Timestamp,
}

/// The session id of `checker`'s evaluation `id`: distinct from consumer
/// sessions' random ids and the same on every retry.
fn evaluation_session(checker: &NodeId, id: u64) -> SessionId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&checker.0[..8]);
    b[8..].copy_from_slice(&id.to_be_bytes());
    SessionId(b)
}

/// What the container knows of one indexer it registers with.
#[derive(Clone, Debug)]
struct Link {
    peer: Peer,
    /// The lifecycle state this indexer last reported.
    state: Option<State>,
    /// Its latest refusal of the registration, until it reports a state.
    refused: Option<String>,
    /// Until it reports a state: when to register with it again, and the
    /// wait after that (doubling from [`REGISTER_RETRY`] to
    /// [`REGISTER_RETRY_MAX`]: a refused host, e.g. not bonded yet, is
    /// admitted once its operator bonds, without a restart).
    register_again: Option<(Timestamp, Duration)>,
}

impl Link {
    /// A link to `peer` that nothing was heard from yet; registration is
    /// due again [`REGISTER_RETRY`] after `now`.
    fn new(peer: Peer, now: Timestamp) -> Link {
        Link { peer, state: None, refused: None, register_again: Some((now.plus(REGISTER_RETRY), REGISTER_RETRY)) }
    }
}

/// One indexer as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexerView {
    /// Its node id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: String,
    /// The lifecycle state it last reported (None: not admitted there yet).
    pub state: Option<State>,
    /// Why it refused the registration, until it reports a state.
    pub refused: Option<String>,
}

/// The container core. See the crate docs.
pub struct Agent {
    config: AgentConfig,
    identity: Identity,
    /// One per indexer of [`AgentConfig::indexers`], in that order.
    links: Vec<Link>,
    /// The lifecycle state last reported by any indexer.
    state: Option<State>,
    heartbeat_seq: u64,
    last_heartbeat: Option<Timestamp>,
    /// Challenges worked on, by (checker, challenge id).
    challenges: HashMap<(NodeId, u64), Challenge>,
    /// The last result computed (what a replaying container answers with).
    last_solution: Option<Solution>,
    sessions: HashMap<SessionId, Session>,
    evaluations: HashMap<SessionId, Evaluation>,
    /// The operator locked this container (R-AG5).
    maintenance: bool,
    earned: Earnings,
    /// The latest lifecycle transitions the indexers reported, newest last.
    transitions: Vec<Transition>,
    /// Services with a started instance waiting (as the runtime last said).
    warm: Vec<ServiceName>,
}

/// How often a running session's usage is signed (R-AG4).
pub const METERING_INTERVAL: Duration = Duration::from_secs(1);
/// Lifecycle transitions kept for the operator's status.
const TRANSITIONS_KEPT: usize = 8;

/// The container as its operator sees it (`dci container status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStatus {
    /// The container's node id.
    pub id: NodeId,
    /// The lifecycle state last reported by any indexer.
    pub state: Option<State>,
    /// Each indexer's view of it.
    pub indexers: Vec<IndexerView>,
    /// Locked for maintenance by the operator.
    pub maintenance: bool,
    /// Price of one slot per hour for new sessions.
    pub price: PricePerHour,
    /// Concurrent sessions offered.
    pub slots: u32,
    /// Pre-installed services.
    pub services: Vec<ServiceName>,
    /// Those with a started instance waiting.
    pub warm: Vec<ServiceName>,
    /// Sessions running now.
    pub sessions: Vec<SessionView>,
    /// What the final receipts it signed billed.
    pub earned: Earnings,
    /// The latest lifecycle transitions, newest last (with who and why).
    pub transitions: Vec<Transition>,
    /// Why an indexer refused the registration (`Message::Refused`, e.g.
    /// no container stake bonded), until it reports a state (the first
    /// such indexer's reason).
    pub refused: Option<String>,
}

impl Agent {
    /// A core for `config`, signing receipts as `identity`.
    pub fn new(config: AgentConfig, identity: Identity) -> Self {
        let links = config.indexers.iter().map(|p| Link::new(p.clone(), Timestamp(0))).collect();
        Agent {
            config,
            identity,
            links,
            state: None,
            heartbeat_seq: 0,
            last_heartbeat: None,
            challenges: HashMap::new(),
            last_solution: None,
            sessions: HashMap::new(),
            evaluations: HashMap::new(),
            maintenance: false,
            earned: Earnings::default(),
            transitions: Vec::new(),
            warm: Vec::new(),
        }
    }

    /// The operator's view.
    pub fn status(&self) -> AgentStatus {
        AgentStatus {
            id: self.identity.id(),
            state: self.state,
            indexers: self
                .links
                .iter()
                .map(|l| IndexerView {
                    id: l.peer.id,
                    addr: l.peer.addr.clone(),
                    state: l.state,
                    refused: l.refused.clone(),
                })
                .collect(),
            maintenance: self.maintenance,
            price: self.config.price,
            slots: self.config.slots,
            services: self.config.services.clone(),
            warm: self.warm.clone(),
            sessions: self.sessions(),
            earned: self.earned,
            transitions: self.transitions.clone(),
            refused: self.links.iter().find_map(|l| l.refused.clone()),
        }
    }

    /// `session`'s usage from its start until `ended`, signed.
    fn receipt(&self, id: SessionId, s: &Session, ended: Timestamp) -> SignedReceipt {
        let started = s.started_at.unwrap_or(ended);
        let ended = ended.max(started);
        let seconds = ended.since(started).as_secs();
        UsageReceipt {
            session: id,
            container: self.identity.id(),
            consumer: s.consumer.clone(),
            service: s.service.clone(),
            started_at: started,
            ended_at: ended,
            seconds,
            price: s.price,
            amount: s.price.cost_for_secs(seconds).unwrap_or_default(),
        }
        .sign(&self.identity)
    }

    /// Counts a final receipt in the earnings.
    fn earn(&mut self, r: &SignedReceipt) {
        self.earned.sessions += 1;
        self.earned.seconds += r.receipt.seconds;
        self.earned.amount = self.earned.amount.checked_add(r.receipt.amount).unwrap_or(self.earned.amount);
    }

    /// Per-second metering (R-AG4): a signed receipt of the usage so far for
    /// every running session due one, sent to the gateway that started it.
    fn meter(&mut self, now: Timestamp) -> Vec<Output> {
        let mut due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.started_at.is_some() && s.stop.is_none() && !s.ended)
            .filter(|(_, s)| s.metered_at.is_none_or(|t| now.since(t) >= METERING_INTERVAL))
            .map(|(id, _)| *id)
            .collect();
        // In a fixed order, not the map's: the same inputs give the same outputs.
        due.sort_unstable();
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            let s = &self.sessions[&id];
            let receipt = self.receipt(id, s, now);
            let conn = s.start_conn;
            self.sessions.get_mut(&id).expect("present").metered_at = Some(now);
            out.push(Output::Net(Net::Reply { conn, msg: Message::Usage { receipt } }));
        }
        out
    }

    /// Ends `session` here with its final receipt, for the gateway to settle
    /// and move elsewhere; the service is stopped.
    fn end_session(&mut self, now: Timestamp, session: SessionId, reason: &str) -> Vec<Output> {
        let Some(s) = self.sessions.get(&session) else { return vec![] };
        if s.stop.is_some() || s.ended || s.started_at.is_none() {
            return vec![];
        }
        let receipt = self.receipt(session, s, now);
        let conn = s.start_conn;
        self.earn(&receipt);
        self.sessions.get_mut(&session).expect("present").ended = true;
        vec![
            Output::Net(Net::Reply { conn, msg: Message::SessionEnded { receipt, reason: reason.to_owned() } }),
            Output::StopService { session },
        ]
    }

    fn operator(&mut self, now: Timestamp, cmd: OperatorCommand) -> Vec<Output> {
        match cmd {
            OperatorCommand::MaintenanceOn { drain } => {
                self.maintenance = true;
                let mut out = self.to_indexers(Message::Maintenance { on: true });
                if !drain {
                    let mut ids: Vec<SessionId> = self.sessions.keys().copied().collect();
                    ids.sort();
                    for id in ids {
                        out.extend(self.end_session(now, id, "the container's operator locked it for maintenance"));
                    }
                }
                out
            }
            OperatorCommand::MaintenanceOff => {
                self.maintenance = false;
                self.to_indexers(Message::Maintenance { on: false })
            }
            OperatorCommand::SetPrice(price) => {
                self.config.price = price;
                // Re-registering with the new price updates the offer; the
                // spec is unchanged, so no inspection is needed.
                self.to_indexers(Message::Register(self.registration()))
            }
        }
    }

    /// The lifecycle state last reported by any indexer.
    pub fn state(&self) -> Option<State> {
        self.state
    }

    /// Idle or serving (R-LC3).
    pub fn activity(&self) -> Activity {
        Activity::of(self.config.slots, self.sessions.len() as u32)
    }

    /// Sessions on this container.
    pub fn sessions(&self) -> Vec<SessionView> {
        let mut v: Vec<_> = self
            .sessions
            .iter()
            .map(|(id, s)| SessionView { id: *id, service: s.service.clone(), endpoint: s.endpoint.clone() })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }

    fn registration(&self) -> Registration {
        Registration {
            addr: self.config.listen_addr.clone(),
            spec: self.config.spec.clone(),
            services: self.config.services.clone(),
            price: self.config.price,
            slots: self.config.slots,
            payout: self.config.payout.clone(),
        }
    }

    /// `msg` to the indexer of link `i`.
    fn to_link(&self, i: usize, msg: Message) -> Output {
        Output::Net(Net::Send { addr: self.links[i].peer.addr.clone(), msg })
    }

    /// `msg` to every indexer.
    fn to_indexers(&self, msg: Message) -> Vec<Output> {
        (0..self.links.len()).map(|i| self.to_link(i, msg.clone())).collect()
    }

    /// A heartbeat to every indexer.
    fn heartbeat(&mut self, now: Timestamp) -> Vec<Output> {
        self.heartbeat_seq += 1;
        self.last_heartbeat = Some(now);
        let (seq, sessions, warm) = (self.heartbeat_seq, self.sessions.len() as u32, self.warm.clone());
        self.to_indexers(Message::Heartbeat(Heartbeat { seq, sessions, warm }))
    }

    /// Advances the core by one input.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        match input {
            Input::Boot => {
                for link in &mut self.links {
                    link.register_again = Some((now.plus(REGISTER_RETRY), REGISTER_RETRY));
                }
                let mut out = self.to_indexers(Message::Register(self.registration()));
                out.extend(self.heartbeat(now));
                out
            }
            Input::Tick => {
                let due = self.last_heartbeat.is_none_or(|t| now.since(t) >= self.config.heartbeat_interval);
                let mut out = self.expire(now);
                for i in 0..self.links.len() {
                    let link = &mut self.links[i];
                    if let Some((at, wait)) = link.register_again
                        && link.state.is_none()
                        && now >= at
                    {
                        let wait = (wait * 2).min(REGISTER_RETRY_MAX);
                        link.register_again = Some((now.plus(wait), wait));
                        out.push(self.to_link(i, Message::Register(self.registration())));
                    }
                }
                out.extend(self.meter(now));
                if due {
                    out.extend(self.heartbeat(now));
                }
                out
            }
            Input::Operator(cmd) => self.operator(now, cmd),
            Input::Peers(p) => {
                let old = std::mem::take(&mut self.links);
                let mut out = Vec::new();
                for peer in &p.indexers {
                    match old.iter().find(|l| l.peer == *peer) {
                        Some(kept) => self.links.push(kept.clone()),
                        // New or moved: it has not heard of this container.
                        None => {
                            self.links.push(Link::new(peer.clone(), now));
                            out.push(self.to_link(self.links.len() - 1, Message::Register(self.registration())));
                        }
                    }
                }
                self.config.indexers = p.indexers;
                self.config.checkers = p.checkers;
                self.config.gateways = p.gateways;
                out
            }
            Input::Warm(mut warm) => {
                warm.sort();
                if warm == self.warm {
                    return vec![];
                }
                // A change is news for the indexer now, not at the next beat.
                self.warm = warm;
                self.heartbeat(now)
            }
            Input::Net(inbound) => self.on_message(now, inbound),
            Input::Computed { checker, params, attempt } => match self.challenges.get_mut(&(checker, params.id)) {
                // A challenge forgotten meanwhile (cancelled, expired) is not committed to.
                Some(c) if c.computed.is_none() => {
                    let conn = c.conn;
                    let root = attempt.root();
                    if self.config.behaviour == Behaviour::Replay {
                        self.last_solution = Some(attempt.solution().clone());
                    }
                    let challenge = params.id;
                    c.computed = Some((params, attempt));
                    vec![Output::Net(Net::Reply { conn, msg: Message::Commitment { challenge, root } })]
                }
                _ => vec![],
            },
            Input::ServiceStarted { session, endpoint } => {
                if let Some(e) = self.evaluations.get_mut(&session) {
                    e.started = true;
                    let msg = Message::EvaluationReady { id: e.id, endpoint };
                    return vec![Output::Net(Net::Reply { conn: e.conn, msg })];
                }
                // Nobody owns it any more (an evaluation ended or expired
                // before its service started): stop it.
                let Some(s) = self.sessions.get_mut(&session) else { return vec![Output::StopService { session }] };
                s.started_at = Some(now);
                s.endpoint = Some(endpoint.clone());
                let conn = s.start_conn;
                let mut out =
                    vec![Output::Net(Net::Reply { conn, msg: Message::SessionStarted { session, endpoint } })];
                // A stop that raced the start: honour it now.
                if s.stop.is_some() {
                    out.push(Output::StopService { session });
                }
                out.extend(self.heartbeat(now));
                out
            }
            Input::ServiceFailed { session, reason } => {
                if let Some(e) = self.evaluations.remove(&session) {
                    return vec![Output::Net(Net::Reply {
                        conn: e.conn,
                        msg: Message::EvaluationFailed { id: e.id, reason },
                    })];
                }
                let Some(s) = self.sessions.remove(&session) else { return vec![] };
                let mut out = vec![Output::Net(Net::Reply {
                    conn: s.start_conn,
                    msg: Message::SessionFailed { session, reason },
                })];
                out.extend(self.heartbeat(now));
                out
            }
            Input::ServiceStopped { session } => {
                if self.evaluations.remove(&session).is_some() {
                    return vec![];
                }
                let Some(s) = self.sessions.get(&session) else { return vec![] };
                let Some((conn, requested)) = s.stop else {
                    // The service exited on its own (crashed, killed): the
                    // consumer pays until now and the gateway moves the
                    // session elsewhere. After `SessionEnded`, nothing is owed.
                    let mut out = self.end_session(now, session, "the service exited");
                    out.retain(|o| !matches!(o, Output::StopService { .. }));
                    self.sessions.remove(&session);
                    out.extend(self.heartbeat(now));
                    return out;
                };
                // Billing ends when the stop was asked for, not when teardown finished.
                let receipt = self.receipt(session, s, requested);
                self.earn(&receipt);
                self.sessions.remove(&session);
                let mut out = vec![Output::Net(Net::Reply { conn, msg: Message::SessionStopped { receipt } })];
                out.extend(self.heartbeat(now));
                out
            }
        }
    }

    /// Forgets an evaluation session and stops its service if it started
    /// (one that starts later is stopped then: nobody owns it).
    fn end_evaluation(&mut self, session: SessionId) -> Vec<Output> {
        match self.evaluations.remove(&session) {
            Some(e) if e.started => vec![Output::StopService { session }],
            _ => vec![],
        }
    }

    /// Forgets the challenges whose reveal, and the evaluations whose end,
    /// did not come by their deadline and grace: the checker gave up on
    /// them, so they must not keep its next ones out.
    fn expire(&mut self, now: Timestamp) -> Vec<Output> {
        self.challenges.retain(|_, c| now <= c.expires);
        let mut due: Vec<SessionId> =
            self.evaluations.iter().filter(|(_, e)| now > e.expires).map(|(session, _)| *session).collect();
        due.sort();
        due.into_iter().flat_map(|session| self.end_evaluation(session)).collect()
    }

    fn on_message(&mut self, now: Timestamp, Inbound { conn, from, msg }: Inbound) -> Vec<Output> {
        let reject = |reason: String| vec![Output::Rejected { from, reason }];
        match msg {
            Message::StateChanged { container, transition } => {
                let Some(i) = self.links.iter().position(|l| l.peer.id == from) else {
                    return reject(format!("state report from {} which is not a trusted indexer", from.short()));
                };
                if container != self.identity.id() {
                    // Another registration names this container's address.
                    return reject(format!(
                        "expected a state report about this container {}, found one about {}",
                        self.identity.id().short(),
                        container.short()
                    ));
                }
                self.state = Some(transition.to);
                self.links[i].state = Some(transition.to);
                self.links[i].refused = None;
                self.transitions.push(transition.clone());
                if self.transitions.len() > TRANSITIONS_KEPT {
                    self.transitions.remove(0);
                }
                let mut out = vec![Output::StateChanged(transition.clone())];
                match transition.to {
                    State::Ready => out.extend(self.heartbeat(now)),
                    // Heartbeats alone never bring a container back: register
                    // again so the indexer asks for a fresh inspection.
                    State::ReinspectionRequired => {
                        out.push(self.to_link(i, Message::Register(self.registration())));
                    }
                    _ => {}
                }
                out
            }
            Message::Refused { reason } => {
                let Some(i) = self.links.iter().position(|l| l.peer.id == from) else {
                    return reject(format!(
                        "registration refusal from {} which is not a trusted indexer",
                        from.short()
                    ));
                };
                self.links[i].refused = Some(reason.clone());
                vec![Output::Refused(reason)]
            }
            Message::Unregistered => {
                let Some(i) = self.links.iter().position(|l| l.peer.id == from) else {
                    return reject(format!("unregistered notice from {} which is not a trusted indexer", from.short()));
                };
                // An indexer that had admitted this container and no longer
                // knows it (restarted without its registry) gets the
                // registration again at once; one that never admitted it
                // gets it on the timer, as for any registration not answered.
                let link = &mut self.links[i];
                if link.state.take().is_none() {
                    return vec![];
                }
                link.register_again = Some((now.plus(REGISTER_RETRY), REGISTER_RETRY));
                vec![self.to_link(i, Message::Register(self.registration()))]
            }
            Message::Challenge(params) => {
                // An untrusted sender gets no answer and takes no place.
                if !self.config.checkers.contains(&from) {
                    return reject(format!("challenge from {} which is not a trusted checker", from.short()));
                }
                let challenge = params.id;
                if self.challenges.contains_key(&(from, challenge)) {
                    return reject(format!("challenge {challenge} is already being worked on"));
                }
                let me = self.identity.id();
                let refusal = if params.container != me {
                    Some(format!(
                        "wrong_node: this is container {me}, the challenge is for container {}",
                        params.container
                    ))
                } else if params.n == 0 || params.n > dci_capacity::MAX_N {
                    Some(format!("challenge size: expected 1..={}, found {}", dci_capacity::MAX_N, params.n))
                } else if self.challenges.keys().filter(|(checker, _)| *checker == from).count()
                    >= MAX_CHALLENGES_PER_CHECKER
                {
                    Some(format!("already working on {MAX_CHALLENGES_PER_CHECKER} challenges of this checker"))
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    return vec![
                        Output::Net(Net::Reply {
                            conn,
                            msg: Message::ChallengeRefused { challenge, reason: reason.clone() },
                        }),
                        Output::Rejected { from, reason },
                    ];
                }
                let expires = now.plus(Duration::from_millis(params.deadline_ms)).plus(DEADLINE_GRACE);
                self.challenges.insert((from, challenge), Challenge { conn, expires, computed: None });
                let behaviour = self.config.behaviour;
                let earlier = if behaviour == Behaviour::Replay { self.last_solution.clone() } else { None };
                vec![Output::Compute { checker: from, params, behaviour, earlier }]
            }
            Message::ChallengeCancelled { challenge } => {
                // Only the checker's own: the key is (sender, id). An
                // unknown one (answered, expired) is nothing to forget.
                if self.challenges.remove(&(from, challenge)).is_some() {
                    return vec![];
                }
                self.end_evaluation(evaluation_session(&from, challenge))
            }
            Message::Reveal(reveal) => {
                let challenge = reveal.challenge;
                let key = (from, challenge);
                if self.challenges.get(&key).is_none_or(|c| c.computed.is_none()) {
                    return reject(format!("reveal for unknown or unfinished challenge {challenge}"));
                }
                let Some(Challenge { computed: Some((params, attempt)), .. }) = self.challenges.remove(&key) else {
                    return vec![];
                };
                match attempt.respond(&reveal) {
                    Ok(Some(response)) => {
                        // Signed whatever it says: an honest answer always
                        // verifies, a cheat's becomes evidence against it.
                        let signature = sign_transcript(&self.identity, &params, &attempt.root(), &reveal, &response);
                        vec![Output::Net(Net::Reply { conn, msg: Message::Answer { response, signature } })]
                    }
                    Ok(None) => vec![], // a container that went dark
                    Err(e) => reject(format!("cannot answer the reveal: {e}")),
                }
            }
            Message::StartSession { session, service, consumer, price } => {
                if !self.config.gateways.contains(&from) {
                    return reject(format!("start session from {} which is not a trusted gateway", from.short()));
                }
                if self.sessions.contains_key(&session) {
                    return reject(format!("session {session} already exists"));
                }
                let fail = |reason: String| {
                    vec![Output::Net(Net::Reply { conn, msg: Message::SessionFailed { session, reason } })]
                };
                if !self.config.services.contains(&service) {
                    return fail(format!("service {service} is not installed on this container"));
                }
                if self.maintenance {
                    return fail("the container is locked for maintenance".to_owned());
                }
                if self.sessions.len() as u32 >= self.config.slots {
                    return fail(format!("all {} slots are busy", self.config.slots));
                }
                if price < self.config.price {
                    return fail(format!("price {price} is below this container's price {}", self.config.price));
                }
                self.sessions.insert(
                    session,
                    Session {
                        service: service.clone(),
                        consumer,
                        price,
                        start_conn: conn,
                        started_at: None,
                        endpoint: None,
                        stop: None,
                        metered_at: None,
                        ended: false,
                    },
                );
                vec![Output::StartService { session, service }]
            }
            Message::StopSession { session } => {
                if !self.config.gateways.contains(&from) {
                    return reject(format!("stop session from {} which is not a trusted gateway", from.short()));
                }
                let Some(s) = self.sessions.get_mut(&session) else {
                    return reject(format!("no session {session} on this container"));
                };
                if s.ended {
                    // Its final receipt already went out with `SessionEnded`.
                    return vec![];
                }
                if s.stop.is_some() {
                    return reject(format!("session {session} is already stopping"));
                }
                s.stop = Some((conn, now));
                if s.started_at.is_some() { vec![Output::StopService { session }] } else { vec![] }
            }
            Message::EvaluationRequest { id, service, container, deadline_ms } => {
                if !self.config.checkers.contains(&from) {
                    return reject(format!("evaluation request from {} which is not a trusted checker", from.short()));
                }
                let session = evaluation_session(&from, id);
                let fail = |reason: String| {
                    vec![Output::Net(Net::Reply { conn, msg: Message::EvaluationFailed { id, reason } })]
                };
                let me = self.identity.id();
                if container != me {
                    return fail(format!(
                        "wrong_node: this is container {me}, the evaluation is for container {container}"
                    ));
                }
                if !self.config.services.contains(&service) {
                    return fail(format!("service {service} is not installed on this container"));
                }
                if self.evaluations.contains_key(&session) {
                    return reject(format!("evaluation {id} already runs"));
                }
                if self.evaluations.values().filter(|e| e.checker == from).count() >= MAX_EVALUATIONS_PER_CHECKER {
                    return fail(format!("already running {MAX_EVALUATIONS_PER_CHECKER} evaluations of this checker"));
                }
                let expires = now.plus(Duration::from_millis(deadline_ms)).plus(DEADLINE_GRACE);
                self.evaluations.insert(session, Evaluation { checker: from, conn, id, started: false, expires });
                vec![Output::StartService { session, service }]
            }
            // An unknown one (already over) is nothing to stop.
            Message::EvaluationDone { id } => self.end_evaluation(evaluation_session(&from, id)),
            other => reject(format!("a container does not handle {} messages", other.kind())),
        }
    }
}
