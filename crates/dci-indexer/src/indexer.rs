//! The indexer state machine: registry, lifecycle, reservations.

use crate::config::Config;
use crate::container::{Container, ContainerRecord, HISTORY_LEN};
use crate::scan;
use crate::{REPUTATION_FAIL, REPUTATION_MAX, REPUTATION_PASS, REPUTATION_START};
use dci_model::{Actor, MatchRequest, NodeId, SessionId, SpecError, State, Timestamp, Transition};
use dci_proto::{
    ConnId, ContainerView, Heartbeat, Inbound, InspectionRequest, Message, Net, Offer, Registration, Verdict,
};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// Everything the indexer core reacts to.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// An authenticated message from another node.
    Net(Inbound),
    /// Time passed; the driver sends this about once per heartbeat interval.
    Tick,
}

/// Everything the indexer core asks its driver to do, in order.
///
/// A `Persist` always comes before the messages that announce the change it
/// records, so a driver that writes before it sends never announces a state
/// it could lose in a crash.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send a message.
    Net(Net),
    /// Store this record, replacing any earlier record with the same id.
    Persist(ContainerRecord),
    /// An inbound message was refused; nothing changed. For logs and metrics.
    Rejected {
        /// The sender.
        from: NodeId,
        /// Why.
        reason: Rejection,
    },
}

/// Why an inbound message was refused. A refused message changes no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The registration's spec is out of range.
    #[error("invalid registration: {0}")]
    Spec(#[from] SpecError),
    /// A registration offers no slot.
    #[error("invalid registration: expected at least 1 slot, found 0")]
    NoSlots,
    /// A registration offers no service.
    #[error("invalid registration: expected at least one pre-installed service, found none")]
    NoServices,
    /// A registration's address is unusable.
    #[error("invalid registration: expected an address host:port without spaces, found {0:?}")]
    BadAddr(String),
    /// A re-registration offers fewer slots than are reserved right now.
    #[error(
        "invalid registration: expected at least {reserved} slots (reserved by unreleased sessions), found {slots}"
    )]
    SlotsBelowReserved {
        /// Slots offered.
        slots: u32,
        /// Slots reserved.
        reserved: u32,
    },
    /// A heartbeat from, or a verdict about, a container that never registered.
    #[error("expected a registered container, found unknown node {0}")]
    UnknownContainer(NodeId),
    /// A verdict from a node that is not a trusted checker, or a gateway
    /// request from a node that is not a trusted gateway.
    #[error("expected a message from a trusted {expected}, found an untrusted sender")]
    Untrusted {
        /// `checker` or `gateway`.
        expected: &'static str,
    },
    /// A message the indexer does not handle.
    #[error("expected a message for the indexer, found {0}")]
    Unexpected(&'static str),
}

/// A broken internal invariant (a bug, never a consequence of input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    /// R-IX2: more reservations than slots.
    #[error("container {container:?}: expected at most {slots} reserved slots, found {reserved}")]
    OverBooked {
        /// The container.
        container: NodeId,
        /// Its slots.
        slots: u32,
        /// Its reservations.
        reserved: u32,
    },
    /// A container's reservation count disagrees with the session table.
    #[error("container {container:?}: expected {sessions} reserved slots (sessions), found {reserved}")]
    ReservedMismatch {
        /// The container.
        container: NodeId,
        /// Sessions mapped to it.
        sessions: u32,
        /// Its counter.
        reserved: u32,
    },
    /// A session is mapped to a container that does not exist.
    #[error("session {session:?}: expected a known container, found {container:?}")]
    DanglingReservation {
        /// The session.
        session: SessionId,
        /// The container it points at.
        container: NodeId,
    },
    /// A container is stored under another id.
    #[error("expected a record with id {key:?}, found {found:?}")]
    IdMismatch {
        /// Map key.
        key: NodeId,
        /// Record id.
        found: NodeId,
    },
    /// The state disagrees with the last recorded transition.
    #[error("container {container:?}: expected state {expected} (last transition), found {found}")]
    StateMismatch {
        /// The container.
        container: NodeId,
        /// The last transition's target.
        expected: State,
        /// The state.
        found: State,
    },
    /// The history is longer than [`HISTORY_LEN`] or reputation out of range.
    #[error(
        "container {container:?}: expected at most {HISTORY_LEN} transitions and reputation <= {REPUTATION_MAX}, found {transitions} and {reputation}"
    )]
    Bounds {
        /// The container.
        container: NodeId,
        /// History length.
        transitions: usize,
        /// Reputation.
        reputation: u32,
    },
}

/// A reserved slot: the container and the offer given for it, replayed
/// unchanged if the same session asks again.
#[derive(Clone, Debug)]
struct Reservation {
    container: NodeId,
    offer: Offer,
}

/// The indexer role's core. See the crate docs.
///
/// Behaviour worth knowing beyond SPEC:
/// - A re-registration that changes nothing visible gets no reply; a reply
///   (`StateChanged`) is sent only when a transition happened.
/// - Matching the same session twice replies the existing reservation (the
///   same offer) and reserves nothing more: `Match` is idempotent per session.
/// - Reservations are released only by the gateway (`Release`), also when a
///   container goes stale or changes state; a re-registration may not offer
///   fewer slots than are reserved.
/// - Reservations are not persisted. After a restart, the sessions that
///   containers report in their heartbeats keep those slots busy
///   ([`Container::free_slots`]).
/// - Missing `missed_heartbeats` heartbeats only makes a container
///   unschedulable; after `reinspect_after_missed` a [`Input::Tick`] moves it
///   to `ReinspectionRequired` and tells the container (if it is reachable).
/// - A container in `ReinspectionRequired` (failed verdict, missed heartbeats,
///   spec change) or `AwaitingInspection` gets a fresh `InspectionRequest`
///   each time it registers again; heartbeats alone never bring it back.
///   The agent should re-register when it reconnects or learns of that state.
/// - A verdict moves the state only where the lifecycle table allows it
///   (a passed standby inspection of a `Healthy` container changes only its
///   reputation); it always updates the reputation.
#[derive(Debug)]
pub struct Indexer {
    config: Config,
    containers: BTreeMap<NodeId, Container>,
    reservations: BTreeMap<SessionId, Reservation>,
}

impl Indexer {
    /// An empty indexer.
    pub fn new(config: Config) -> Self {
        Indexer { config, containers: BTreeMap::new(), reservations: BTreeMap::new() }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Brings back persisted containers after a restart.
    ///
    /// Each comes back in its recorded state with its liveness clock at `now`
    /// (a grace period of one full heartbeat window) and no reservations.
    /// Containers awaiting (re-)inspection get their inspection request sent
    /// again. Records for ids already known are ignored: live state is newer
    /// than the store. Over-long histories are trimmed, reputations clamped,
    /// and a history whose last transition disagrees with the state dropped.
    pub fn restore(&mut self, records: Vec<ContainerRecord>, now: Timestamp) -> Vec<Output> {
        let mut out = Vec::new();
        for mut record in records {
            if self.containers.contains_key(&record.id) {
                continue;
            }
            let excess = record.transitions.len().saturating_sub(HISTORY_LEN);
            record.transitions.drain(..excess);
            record.reputation = record.reputation.min(REPUTATION_MAX);
            if record.transitions.last().is_some_and(|t| t.to != record.state) {
                // A history that disagrees with the state is not trustworthy.
                record.transitions.clear();
            }
            if needs_inspection(record.state) {
                out.push(inspection_request(&self.config, &record, "indexer restart"));
            }
            self.containers.insert(record.id, Container::from_record(record, now));
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
        out
    }

    /// Reacts to one input.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Tick => self.tick(now, &mut out),
            Input::Net(Inbound { conn, from, msg }) => {
                if let Err(reason) = self.on_message(now, conn, from, msg, &mut out) {
                    out.push(Output::Rejected { from, reason });
                }
            }
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
        out
    }

    /// Every container's view, ordered by id.
    pub fn containers(&self, now: Timestamp) -> Vec<ContainerView> {
        self.containers.values().map(|c| c.view(now)).collect()
    }

    /// One container.
    pub fn container(&self, id: &NodeId) -> Option<&Container> {
        self.containers.get(id)
    }

    /// All containers, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &Container> {
        self.containers.values()
    }

    /// Number of known containers.
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    /// True when no container is known.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    /// The container reserved for `session`, if any.
    pub fn reservation(&self, session: &SessionId) -> Option<NodeId> {
        self.reservations.get(session).map(|r| r.container)
    }

    /// Checks R-IX2 (no slot double-booked: reserved ≤ slots, one session
    /// maps to one container, counters agree with the session table) and the
    /// record invariants (state = last transition's target, bounded history
    /// and reputation).
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let mut per_container: BTreeMap<NodeId, u32> = BTreeMap::new();
        for (session, r) in &self.reservations {
            if !self.containers.contains_key(&r.container) {
                return Err(InvariantError::DanglingReservation { session: *session, container: r.container });
            }
            *per_container.entry(r.container).or_default() += 1;
        }
        for (key, c) in &self.containers {
            let rec = &c.record;
            if *key != rec.id {
                return Err(InvariantError::IdMismatch { key: *key, found: rec.id });
            }
            let sessions = per_container.get(key).copied().unwrap_or(0);
            if c.reserved != sessions {
                return Err(InvariantError::ReservedMismatch { container: *key, sessions, reserved: c.reserved });
            }
            if c.reserved > rec.registration.slots {
                return Err(InvariantError::OverBooked {
                    container: *key,
                    slots: rec.registration.slots,
                    reserved: c.reserved,
                });
            }
            if let Some(last) = rec.transitions.last()
                && last.to != rec.state
            {
                return Err(InvariantError::StateMismatch { container: *key, expected: last.to, found: rec.state });
            }
            if rec.transitions.len() > HISTORY_LEN || rec.reputation > REPUTATION_MAX {
                return Err(InvariantError::Bounds {
                    container: *key,
                    transitions: rec.transitions.len(),
                    reputation: rec.reputation,
                });
            }
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        from: NodeId,
        msg: Message,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        match msg {
            Message::Register(reg) => self.on_register(now, conn, from, reg, out),
            Message::Heartbeat(hb) => self.on_heartbeat(now, conn, from, hb, out),
            Message::Verdict(v) => {
                self.require(&self.config.checkers, from, "checker")?;
                self.on_verdict(now, v, out)
            }
            Message::Match { request_id, session, request } => {
                self.require(&self.config.gateways, from, "gateway")?;
                out.push(self.on_match(now, conn, request_id, session, &request));
                Ok(())
            }
            Message::Release { session } => {
                self.require(&self.config.gateways, from, "gateway")?;
                self.on_release(session);
                Ok(())
            }
            Message::ListContainers { request_id } => {
                self.require(&self.config.gateways, from, "gateway")?;
                let containers = self.containers(now);
                out.push(reply(conn, Message::Containers { request_id, containers }));
                Ok(())
            }
            other => Err(Rejection::Unexpected(other.kind())),
        }
    }

    fn require(&self, trusted: &[NodeId], from: NodeId, expected: &'static str) -> Result<(), Rejection> {
        if trusted.contains(&from) { Ok(()) } else { Err(Rejection::Untrusted { expected }) }
    }

    fn on_register(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        from: NodeId,
        reg: Registration,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        validate(&reg)?;
        let (c, persist, transition, why) = match self.containers.entry(from) {
            Entry::Vacant(slot) => {
                let record = ContainerRecord {
                    id: from,
                    registration: reg,
                    state: State::Configuring,
                    reputation: REPUTATION_START,
                    transitions: Vec::new(),
                };
                let c = slot.insert(Container::from_record(record, now));
                let t = transition(&mut c.record, State::AwaitingInspection, Actor::Container, "registered", now);
                (c, true, t, "registration")
            }
            Entry::Occupied(slot) => {
                let c = slot.into_mut();
                if reg.slots < c.reserved {
                    return Err(Rejection::SlotsBelowReserved { slots: reg.slots, reserved: c.reserved });
                }
                let spec_changed = c.record.registration.spec != reg.spec;
                let changed = c.record.registration != reg;
                c.record.registration = reg;
                c.last_seen = now;
                let (t, why) = match c.record.state {
                    State::Configuring => (
                        transition(&mut c.record, State::AwaitingInspection, Actor::Container, "registered", now),
                        "registration",
                    ),
                    State::Ready | State::Healthy if spec_changed => (
                        transition(&mut c.record, State::ReinspectionRequired, Actor::Container, "spec changed", now),
                        "spec changed",
                    ),
                    _ => (None, "re-registration"),
                };
                (c, changed || t.is_some(), t, why)
            }
        };
        if persist {
            out.push(Output::Persist(c.record.clone()));
        }
        if needs_inspection(c.record.state) {
            out.push(inspection_request(&self.config, &c.record, why));
        }
        if let Some(t) = transition {
            out.push(reply(conn, Message::StateChanged { transition: t }));
        }
        Ok(())
    }

    fn on_heartbeat(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        from: NodeId,
        hb: Heartbeat,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let c = self.containers.get_mut(&from).ok_or(Rejection::UnknownContainer(from))?;
        c.last_seen = now;
        c.last_heartbeat = Some(now);
        c.reported_sessions = hb.sessions;
        if c.record.state == State::Ready
            && let Some(t) = transition(&mut c.record, State::Healthy, Actor::Indexer, "heartbeat", now)
        {
            out.push(Output::Persist(c.record.clone()));
            out.push(reply(conn, Message::StateChanged { transition: t }));
        }
        Ok(())
    }

    fn on_verdict(&mut self, now: Timestamp, v: Verdict, out: &mut Vec<Output>) -> Result<(), Rejection> {
        let c = self.containers.get_mut(&v.container).ok_or(Rejection::UnknownContainer(v.container))?;
        let rec = &mut c.record;
        let (to, default_reason) = if v.passed {
            rec.reputation = (rec.reputation + REPUTATION_PASS).min(REPUTATION_MAX);
            (State::Ready, "inspection passed")
        } else {
            rec.reputation = rec.reputation.saturating_sub(REPUTATION_FAIL);
            (State::ReinspectionRequired, "inspection failed")
        };
        let reason = if v.reason.trim().is_empty() { default_reason.to_owned() } else { v.reason };
        // The table decides: e.g. a passed standby inspection of a Healthy
        // container changes only its reputation.
        let t = transition(rec, to, Actor::Checker, reason, now);
        out.push(Output::Persist(rec.clone()));
        if let Some(t) = t {
            out.push(send(&rec.registration.addr, Message::StateChanged { transition: t }));
        }
        Ok(())
    }

    fn on_match(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        request_id: u64,
        session: SessionId,
        request: &MatchRequest,
    ) -> Output {
        if let Some(r) = self.reservations.get(&session) {
            return reply(conn, Message::Matched { request_id, offer: r.offer.clone() });
        }
        let eliminations = match scan::match_scan(self.containers.values(), request, session, now, &self.config) {
            Ok(choice) => match self.containers.get_mut(&choice.container) {
                Some(c) => {
                    c.reserved += 1;
                    let offer = c.offer(choice.estimated_rtt_ms);
                    self.reservations.insert(session, Reservation { container: c.id(), offer: offer.clone() });
                    return reply(conn, Message::Matched { request_id, offer });
                }
                None => Default::default(),
            },
            Err(e) => e,
        };
        reply(conn, Message::NoMatch { request_id, eliminations })
    }

    fn on_release(&mut self, session: SessionId) {
        if let Some(r) = self.reservations.remove(&session)
            && let Some(c) = self.containers.get_mut(&r.container)
        {
            c.reserved = c.reserved.saturating_sub(1);
        }
    }

    fn tick(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let window = self.config.reinspect_window();
        let interval_ms = self.config.heartbeat_interval.as_millis().max(1);
        for c in self.containers.values_mut() {
            let silent = now.since(c.last_seen);
            if !c.record.state.is_schedulable() || silent <= window {
                continue;
            }
            let missed = silent.as_millis() / interval_ms;
            let reason = format!("missed {missed} heartbeats");
            if let Some(t) = transition(&mut c.record, State::ReinspectionRequired, Actor::Timer, reason, now) {
                out.push(Output::Persist(c.record.clone()));
                out.push(send(&c.record.registration.addr, Message::StateChanged { transition: t }));
            }
        }
    }
}

/// States in which a container waits for a checker.
fn needs_inspection(state: State) -> bool {
    matches!(state, State::AwaitingInspection | State::ReinspectionRequired)
}

/// Moves `record` to `to` if the lifecycle table allows it; the only place
/// the indexer changes a state.
fn transition(
    record: &mut ContainerRecord,
    to: State,
    actor: Actor,
    reason: impl Into<String>,
    now: Timestamp,
) -> Option<Transition> {
    let t = record.state.transition(to, actor, reason, now).ok()?;
    record.apply(t.clone());
    Some(t)
}

fn validate(reg: &Registration) -> Result<(), Rejection> {
    reg.spec.validate()?;
    if reg.slots == 0 {
        return Err(Rejection::NoSlots);
    }
    if reg.services.is_empty() {
        return Err(Rejection::NoServices);
    }
    let addr_ok =
        !reg.addr.is_empty() && reg.addr.len() <= 255 && !reg.addr.chars().any(|c| c.is_whitespace() || c.is_control());
    if !addr_ok {
        return Err(Rejection::BadAddr(reg.addr.clone()));
    }
    Ok(())
}

fn inspection_request(config: &Config, record: &ContainerRecord, why: &str) -> Output {
    send(
        &config.checker_addr,
        Message::InspectionRequest(InspectionRequest {
            container: record.id,
            addr: record.registration.addr.clone(),
            spec: record.registration.spec.clone(),
            reason: why.to_owned(),
        }),
    )
}

fn reply(conn: ConnId, msg: Message) -> Output {
    Output::Net(Net::Reply { conn, msg })
}

fn send(addr: &str, msg: Message) -> Output {
    Output::Net(Net::Send { addr: addr.to_owned(), msg })
}
