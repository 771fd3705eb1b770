//! The indexer state machine: registry, lifecycle, reservations.

use crate::config::Config;
use crate::container::{Container, ContainerRecord, HISTORY_LEN};
use crate::index::{Index, IndexStats, SearchStats};
use crate::scan::{self, Choice};
use crate::{REPUTATION_FAIL, REPUTATION_MAX, REPUTATION_PASS, REPUTATION_START};
use dci_model::{
    AccountId, Actor, Amount, Eliminations, MatchRequest, NodeId, ServiceName, SessionId, SpecError, State, Timestamp,
    Transition,
};
use dci_proto::{
    ConnId, ContainerView, Heartbeat, Inbound, InspectionKind, InspectionRequest, MAX_SERVICES, Message, Net, Offer,
    Registration, Verdict, VerdictRecord,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Duration;

/// Most new registrations waiting for the stake oracle at once
/// ([`Config::stake_oracle`]); beyond it the oldest is dropped (its
/// container registers again later). About 200 bytes each plus the
/// registration: a flood of registrations from fresh keys costs at most
/// this many in memory.
pub const MAX_PENDING: usize = 10_000;

/// How long a new registration waits for the stake oracle's answer; then
/// it is dropped (checked on [`Input::Tick`]).
pub const STAKE_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the indexer core reacts to.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// An authenticated message from another node.
    Net(Inbound),
    /// Time passed; the driver sends this about once per heartbeat interval.
    Tick,
    /// The network changed (its file was edited): whom to trust and where
    /// to send from now on. A stake query in flight to an oracle that is
    /// no longer the oracle times out.
    Peers(Peers),
}

/// Whom an indexer trusts and where it sends, as its network file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers {
    /// Where inspection requests go before any committee exists.
    pub checker_addr: String,
    /// Nodes whose verdicts are accepted.
    pub checkers: Vec<NodeId>,
    /// Nodes allowed to match, renew, release and list.
    pub gateways: Vec<NodeId>,
    /// The stake oracle (see [`Config::stake_oracle`]).
    pub stake_oracle: Option<(NodeId, String)>,
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
    /// Delete the stored record of this container: it was pruned
    /// ([`Config::prune_after`]).
    Forget(NodeId),
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
    /// A registration lists more than [`MAX_SERVICES`] services.
    #[error("invalid registration: expected at most {max} services, found {found}")]
    TooManyServices {
        /// [`MAX_SERVICES`].
        max: usize,
        /// Services listed.
        found: usize,
    },
    /// A heartbeat reports more than [`MAX_SERVICES`] warm services.
    #[error("invalid heartbeat: expected at most {max} warm services, found {found}")]
    TooManyWarm {
        /// [`MAX_SERVICES`].
        max: usize,
        /// Warm services reported.
        found: usize,
    },
    /// A heartbeat reports a warm service the container did not register.
    #[error(
        "invalid heartbeat: expected warm services among those the container registered, found {0}, which it did not register"
    )]
    WarmNotRegistered(ServiceName),
    /// The stake oracle says the registrant has not bonded the minimum
    /// container stake: the registration is refused (the container is told
    /// with `Message::Refused`, whose reason is this text) and nothing kept.
    #[error(
        "registration refused: expected a container stake of at least {minimum} ATH bonded by {account}, found {bonded} ATH; fund that account and bond {missing} ATH more with `dci container stake {missing}` on the host",
        account = AccountId::for_node(.node),
        missing = Amount(.minimum.0.saturating_sub(.bonded.0)),
    )]
    Unstaked {
        /// The registrant.
        node: NodeId,
        /// Container stake its account has bonded.
        bonded: Amount,
        /// The governance minimum.
        minimum: Amount,
    },
    /// A new registration whose stake query the oracle did not answer in
    /// time: it is dropped (the container registers again later).
    #[error(
        "registration dropped: expected the stake oracle {oracle} to answer within {} ms, found no answer",
        STAKE_QUERY_TIMEOUT.as_millis()
    )]
    StakeUnanswered {
        /// The stake oracle.
        oracle: NodeId,
    },
    /// A stake answer for no query in flight: late (the registration was
    /// answered, dropped or timed out), repeated, or made up.
    #[error(
        "expected a stake answer for a registration in flight, found one for request {request_id} about node {node}, which is not"
    )]
    StaleStake {
        /// The node it names.
        node: NodeId,
        /// The request it names.
        request_id: u64,
    },
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
    /// An operator's request the lifecycle table does not allow from the
    /// container's state (e.g. locking a container that is already locked).
    #[error("{0}")]
    Lifecycle(#[from] dci_model::LifecycleError),
    /// An unlock of a container that is not locked for maintenance.
    #[error("expected a container in maintenance-lock to unlock, found it {0}")]
    NotLocked(State),
    /// A heartbeat from, or a verdict about, a container that never registered.
    #[error("expected a registered container, found unknown node {0}")]
    UnknownContainer(NodeId),
    /// A verdict from a node that is not a trusted checker, a gateway
    /// request from a node that is not a trusted gateway, or a stake answer
    /// from a node that is not the stake oracle.
    #[error("expected a message from a trusted {expected}, found an untrusted sender")]
    Untrusted {
        /// `checker`, `gateway` or `stake oracle`.
        expected: &'static str,
    },
    /// A verdict that answers no inspection of this container in flight:
    /// late (a newer inspection replaced it), repeated, or made up.
    #[error("expected a verdict for inspection {expected} of the container, found one for {found}")]
    StaleVerdict {
        /// The inspection in flight (`none` if there is none).
        expected: InFlight,
        /// The inspection the verdict names.
        found: u64,
    },
    /// A verdict from a checker other than the one the inspection was
    /// assigned to.
    #[error(
        "expected the verdict from checker {expected}, the member assigned to this inspection, found one from {found}"
    )]
    WrongChecker {
        /// The assigned member.
        expected: NodeId,
        /// The sender.
        found: NodeId,
    },
    /// A `Renew` naming more sessions than [`dci_proto::MAX_RENEW`]; nothing
    /// is renewed.
    #[error("expected a renew of at most {max} sessions, found {found}")]
    RenewTooLong {
        /// [`dci_proto::MAX_RENEW`].
        max: usize,
        /// Sessions in the message.
        found: usize,
    },
    /// A committee announcement that does not recompute.
    #[error("expected a committee announcement that recomputes, found one that does not: {0}")]
    Committee(String),
    /// A message the indexer does not handle.
    #[error("expected a message for the indexer, found {0}")]
    Unexpected(&'static str),
}

/// The inspection of a container in flight, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight(pub Option<u64>);

impl std::fmt::Display for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, "{id}"),
            None => f.write_str("none"),
        }
    }
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
    /// A reservation with no live entry in the expiry queue (it would never
    /// expire), or armed for later than it expires.
    #[error("session {session:?}: expected an expiry deadline armed at or before {expires}, found {armed}")]
    UnarmedReservation {
        /// The session.
        session: SessionId,
        /// When it expires, ms.
        expires: u64,
        /// Its deadline in the queue, ms (`u64::MAX`: none in the queue).
        armed: u64,
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
    /// The match index or the timer queue disagrees with the containers.
    #[error("container {container:?}: the match index disagrees with the container: {detail}")]
    Index {
        /// The container (zero when the index as a whole is inconsistent).
        container: NodeId,
        /// What disagrees.
        detail: String,
    },
    /// Pruning's bookkeeping is wrong: a tombstone still reachable, a
    /// never-passed container without a prune deadline, a schedulable one
    /// never passed.
    #[error("container {container:?}: pruning disagrees with the container: {detail}")]
    Prune {
        /// The container.
        container: NodeId,
        /// What disagrees.
        detail: String,
    },
    /// The registrations waiting for the stake oracle are inconsistent.
    #[error("pending registrations: {0}")]
    Pending(String),
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
/// unchanged if the same session asks again, and until when it holds.
#[derive(Clone, Debug)]
struct Reservation {
    slot: u32,
    offer: Offer,
    /// Expires at this time (ms) unless renewed; only ever moves later.
    expires: u64,
    /// The deadline of this reservation's one entry in `Indexer::expiries`
    /// (≤ `expires`: renewing moves `expires` and leaves the entry, which
    /// is re-armed when it comes due).
    armed: u64,
}

/// A new registration waiting for the stake oracle.
#[derive(Clone, Debug)]
struct Pending {
    /// The query in flight (only its answer is taken).
    request_id: u64,
    /// Where the registration came from (the `StateChanged` reply goes there).
    conn: ConnId,
    /// The latest registration (a repeat while pending replaces it).
    registration: Registration,
}

/// "No timer armed".
const NO_TIMER: u64 = u64::MAX;

/// Index summaries are recomputed on each tick; beyond this many waiting,
/// an eighth of them right away.
const REPAIR_BACKLOG: usize = 65_536;

/// Debug builds check every invariant after every input while the fleet is
/// at most this big (the check is linear); bigger tests call
/// [`Indexer::check_invariants`] themselves.
const DEBUG_CHECK_LIMIT: usize = 512;

/// The indexer role's core. See the crate docs.
///
/// Behaviour worth knowing beyond SPEC:
/// - A re-registration that changes nothing visible gets no reply; a reply
///   (`StateChanged`) is sent only when a transition happened.
/// - Matching the same session twice replies the existing reservation (the
///   same offer) and reserves nothing more: `Match` is idempotent per session
///   (it renews the reservation, see below).
/// - Reservations expire: each holds until `now + reservation_ttl`
///   ([`Config::reservation_ttl`]), which a `Renew` naming the session, or a
///   repeated `Match` of it, moves to `now + reservation_ttl` again. The
///   first tick at or after that time releases it exactly as `Release`
///   would, so a gateway that crashed, or a `Match` whose answer the
///   gateway never saw, holds a slot for at most the ttl. Only trusted
///   gateways renew; unknown sessions in a `Renew` are ignored, and one
///   naming more than [`dci_proto::MAX_RENEW`] sessions is refused whole.
///   A running session's slot stays busy regardless while its container
///   reports it in heartbeats ([`Container::free_slots`]).
/// - Reservations are released by the gateway (`Release`, session end),
///   when they expire, and when the container is lost: when the timer moves it to
///   `ReinspectionRequired` after `reinspect_after_missed` missed heartbeats,
///   its sessions are dropped (a later `Release` for them is a no-op). Other
///   state changes (a failed verdict, a spec change) keep them: the container
///   is still there and its sessions may still run. A re-registration may not
///   offer fewer slots than are reserved.
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
/// - With a stake oracle ([`Config::stake_oracle`]) a registration from a
///   node not in the registry waits in a pending map (at most
///   [`MAX_PENDING`], oldest dropped first) for `StakeOf` from that oracle
///   for the query in flight; `bonded >= minimum` admits it exactly as a
///   registration without the check, below it the container gets
///   `Refused` on the connection it registered on (not at its registered
///   address, which may be someone else's) and nothing is kept; no answer
///   within [`STAKE_QUERY_TIMEOUT`] drops it. A repeat while pending
///   replaces the registration and asks nothing more. Re-registrations of
///   known containers are not checked again (a stake withdrawn later costs
///   the container its reward weight at the next epoch: that is the
///   ledger's rule, not the indexer's).
/// - Containers that never passed an inspection and have been silent for
///   [`Config::prune_after`] are removed on a tick ([`Output::Forget`]):
///   their slot stays as a tombstone (slots are never reused), their id is
///   free (registering again is a new registration), and nothing lists,
///   matches, inspects or counts them any more.
/// - Lists are bounded: a registration lists at most [`MAX_SERVICES`]
///   services, a heartbeat at most as many warm ones, all registered.
///
/// Matching uses the match index (`index.rs`) and returns exactly what
/// [`scan::match_scan`] over all containers would ([`Indexer::evaluate`] and
/// [`Indexer::evaluate_scan`] expose both without reserving). A heartbeat is
/// O(1); a tick looks only at containers whose re-inspection deadline has
/// come (a queue of deadlines re-armed lazily), not at every container;
/// likewise it looks only at reservations whose expiry has come (a second
/// such queue, one entry per reservation, pushed by `Match` in O(log n);
/// `Renew` only moves the expiry and the entry is re-armed when due), so a
/// tick costs O((expired + re-armed) · log n). An entry is re-armed only
/// if its reservation was renewed since it was armed (so never more often
/// than renewals come, and about once per ttl under frequent renewals).
#[derive(Debug)]
pub struct Indexer {
    config: Config,
    /// Slot → container; slots are never reused (a pruned container leaves
    /// a tombstone, see `removed`).
    containers: Vec<Container>,
    /// Per slot: a tombstone (pruned; its id is no longer in `slots`).
    removed: Vec<bool>,
    /// Tombstones.
    pruned: usize,
    /// Prune deadlines of containers that never passed: (due ms, slot), at
    /// most one entry per slot, re-armed lazily at the container's last
    /// sign of life plus `prune_after` when it comes due.
    prunes: BinaryHeap<Reverse<(u64, u32)>>,
    /// New registrations waiting for the stake oracle (keyed with a random
    /// seed, like `slots`).
    pending: HashMap<NodeId, Pending, foldhash::fast::RandomState>,
    /// (asked ms, node, request id) of each stake query, in arrival order:
    /// the oldest is dropped first, and timeouts are found at the front.
    /// An entry whose query is no longer in `pending` is stale, skipped.
    pending_order: VecDeque<(u64, NodeId, u64)>,
    /// The next stake query id (random start, like inspections).
    next_stake_query: u64,
    /// Keyed with a per-process random seed: ids are chosen by containers,
    /// so a fixed hash could be flooded with colliding ids.
    slots: HashMap<NodeId, u32, foldhash::fast::RandomState>,
    reservations: BTreeMap<SessionId, Reservation>,
    /// (slot, session) for every reservation, to release a lost container's.
    sessions: BTreeSet<(u32, SessionId)>,
    /// Reservation expiry deadlines: (due ms, session). An entry is live
    /// only while the session's reservation has `armed` equal to its due
    /// time; released sessions leave stale entries, skipped when popped.
    expiries: BinaryHeap<Reverse<(u64, SessionId)>>,
    index: Index,
    /// Re-inspection deadlines: (due ms, slot). An entry is live only while
    /// `timer_due[slot]` equals its due time.
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    timer_due: Vec<u64>,
    /// Per slot, the inspection in flight: (request id, kind, the committee
    /// member it was assigned to, if a committee was in force).
    inspecting: HashMap<u32, (u64, InspectionKind, Option<NodeId>)>,
    /// The epoch committee in force and its members' addresses (R-CK7).
    committee: Option<(dci_committee::Committee, HashMap<NodeId, String>)>,
    /// The next inspection id (random start: a restarted indexer does not
    /// reuse recent ids, so no earlier verdict can answer a new request).
    next_inspection: u64,
    /// Randomness of standby inspections ([`Config::seed`]).
    rng: crate::rng::Rng,
    /// Standby inspections owed but not yet drawn (fractional), and when
    /// they were last counted.
    standby_credit: f64,
    last_tick: Option<Timestamp>,
}

impl Indexer {
    /// An empty indexer.
    pub fn new(config: Config) -> Self {
        let mut rng = crate::rng::Rng::new(config.seed);
        let next_inspection = rng.next_u64();
        // A stream of its own, so the draws of standby inspections stay as they were.
        let next_stake_query = crate::rng::Rng::new(config.seed ^ 0x5354_414b_4551_5259).next_u64();
        Indexer {
            removed: Vec::new(),
            pruned: 0,
            prunes: BinaryHeap::new(),
            pending: HashMap::default(),
            pending_order: VecDeque::new(),
            next_stake_query,
            inspecting: HashMap::new(),
            committee: None,
            next_inspection,
            rng,
            standby_credit: 0.0,
            last_tick: None,
            config,
            containers: Vec::new(),
            slots: HashMap::default(),
            reservations: BTreeMap::new(),
            sessions: BTreeSet::new(),
            expiries: BinaryHeap::new(),
            index: Index::new(),
            timers: BinaryHeap::new(),
            timer_due: Vec::new(),
        }
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
    /// A record written before `ever_passed` existed gets it from what it
    /// shows ([`ContainerRecord::shows_a_pass`]). Restoring counts as a sign
    /// of life: pruning counts `prune_after` from `now`.
    pub fn restore(&mut self, records: Vec<ContainerRecord>, now: Timestamp) -> Vec<Output> {
        let mut out = Vec::new();
        let mut batch: HashSet<NodeId> = HashSet::new();
        let mut kept = Vec::with_capacity(records.len());
        for mut record in records {
            if self.slots.contains_key(&record.id) || !batch.insert(record.id) {
                continue;
            }
            let excess = record.transitions.len().saturating_sub(HISTORY_LEN);
            record.transitions.drain(..excess);
            record.reputation = record.reputation.min(REPUTATION_MAX);
            if record.transitions.last().is_some_and(|t| t.to != record.state) {
                // A history that disagrees with the state is not trustworthy.
                record.transitions.clear();
            }
            record.ever_passed = record.shows_a_pass();
            kept.push(record);
        }
        // Neighbours on the map are neighbours in the index: loading them
        // together keeps its nodes in cache.
        kept.sort_by_cached_key(|r| crate::index::leaf_cell(&r.registration.spec.location));
        self.slots.reserve(kept.len());
        self.containers.reserve(kept.len());
        self.timer_due.reserve(kept.len());
        self.index.begin_bulk();
        let mut waiting = Vec::new();
        for record in kept {
            let wait = needs_inspection(record.state).then_some(record.id);
            let slot = self.add(Container::from_record(record, now));
            waiting.extend(wait.map(|id| (id, slot)));
        }
        self.index.end_bulk();
        // In id order, as the records came: deterministic whatever the load order.
        waiting.sort_unstable();
        for (_, slot) in waiting {
            out.push(self.request_inspection(slot, InspectionKind::Registration, "indexer restart"));
        }
        if cfg!(debug_assertions) && self.containers.len() + self.pending.len() <= DEBUG_CHECK_LIMIT {
            debug_assert_eq!(self.check_invariants(), Ok(()));
        }
        out
    }

    /// Reacts to one input.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {
                self.index.repair(usize::MAX);
                self.expire(now);
                self.expire_pending(now, &mut out);
                self.tick(now, &mut out);
                self.prune(now, &mut out);
                self.standby_inspections(now, &mut out);
                self.last_tick = Some(now);
            }
            Input::Peers(p) => {
                self.config.checker_addr = p.checker_addr;
                self.config.checkers = p.checkers;
                self.config.gateways = p.gateways;
                self.config.stake_oracle = p.stake_oracle;
            }
            Input::Net(Inbound { conn, from, msg }) => {
                if let Err(reason) = self.on_message(now, conn, from, msg, &mut out) {
                    out.push(Output::Rejected { from, reason });
                }
                // Departures loosen index summaries (still valid bounds);
                // ticks tighten them. Should a burst queue very many, tighten
                // some now.
                if self.index.repair_pending() > REPAIR_BACKLOG {
                    self.index.repair(REPAIR_BACKLOG / 8);
                }
            }
        }
        if cfg!(debug_assertions) && self.containers.len() + self.pending.len() <= DEBUG_CHECK_LIMIT {
            debug_assert_eq!(self.check_invariants(), Ok(()));
        }
        out
    }

    /// What a `Match` for `request` would answer now, through the index,
    /// without reserving anything (and ignoring any reservation `session`
    /// already holds). `session` salts the final tie-break.
    pub fn evaluate(&self, now: Timestamp, request: &MatchRequest, session: SessionId) -> Result<Choice, Eliminations> {
        self.evaluate_with_stats(now, request, session).0
    }

    /// [`Indexer::evaluate`], with the work the search did.
    pub fn evaluate_with_stats(
        &self,
        now: Timestamp,
        request: &MatchRequest,
        session: SessionId,
    ) -> (Result<Choice, Eliminations>, SearchStats) {
        let mut stats = SearchStats::default();
        let p = self.index.prepare(request, now.0, self.fresh_ms());
        let result = match self.index.best(&p, session, &self.containers, &mut stats) {
            Some(choice) => Ok(choice),
            None => Err(self.index.eliminations(&p)),
        };
        (result, stats)
    }

    /// The same answer as [`Indexer::evaluate`] by the naive full scan
    /// ([`scan::match_scan`] over every container): the oracle.
    pub fn evaluate_scan(
        &self,
        now: Timestamp,
        request: &MatchRequest,
        session: SessionId,
    ) -> Result<Choice, Eliminations> {
        scan::match_scan(self.iter_unordered(), request, session, now, &self.config)
    }

    /// The inspection of a container in flight: its request id and kind.
    pub fn inspection(&self, id: &NodeId) -> Option<(u64, InspectionKind)> {
        self.slots.get(id).and_then(|slot| self.inspecting.get(slot)).map(|&(id, kind, _)| (id, kind))
    }

    /// The epoch committee in force, if one was announced.
    pub fn committee(&self) -> Option<&dci_committee::Committee> {
        self.committee.as_ref().map(|(c, _)| c)
    }

    /// Sizes of the match index.
    pub fn index_stats(&self) -> IndexStats {
        self.index.stats()
    }

    /// Every container's view, ordered by id.
    pub fn containers(&self, now: Timestamp) -> Vec<ContainerView> {
        self.iter().map(|c| c.view(now)).collect()
    }

    /// Views of the first [`dci_proto::MAX_CONTAINERS_PAGE`] + 1 containers
    /// with an id above `after` (all, when `None`), in id order: one page of
    /// `ListContainers` and whether more follow. One pass over the
    /// containers, keeping the smallest ids in a bounded heap.
    pub fn containers_after(&self, now: Timestamp, after: Option<NodeId>) -> Vec<ContainerView> {
        let keep = dci_proto::MAX_CONTAINERS_PAGE + 1;
        let mut heap: std::collections::BinaryHeap<(NodeId, u32)> = std::collections::BinaryHeap::new();
        for (&id, &slot) in &self.slots {
            if after.is_some_and(|a| id <= a) || self.removed.get(slot as usize).copied().unwrap_or(true) {
                continue;
            }
            if heap.len() < keep {
                heap.push((id, slot));
            } else if heap.peek().is_some_and(|&(top, _)| id < top) {
                heap.pop();
                heap.push((id, slot));
            }
        }
        heap.into_sorted_vec().into_iter().map(|(_, slot)| self.containers[slot as usize].view(now)).collect()
    }

    /// One container.
    pub fn container(&self, id: &NodeId) -> Option<&Container> {
        self.slots.get(id).map(|&s| &self.containers[s as usize])
    }

    /// All containers, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &Container> {
        let mut all: Vec<&Container> = self.iter_unordered().collect();
        all.sort_unstable_by_key(|c| c.record.id);
        all.into_iter()
    }

    /// All containers in no particular order (cheaper than [`Indexer::iter`]).
    pub fn iter_unordered(&self) -> impl Iterator<Item = &Container> {
        self.containers.iter().zip(&self.removed).filter(|(_, removed)| !**removed).map(|(c, _)| c)
    }

    /// Number of known containers (pruned ones are not).
    pub fn len(&self) -> usize {
        self.containers.len() - self.pruned
    }

    /// True when no container is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New registrations waiting for the stake oracle (at most [`MAX_PENDING`]).
    pub fn pending_registrations(&self) -> usize {
        self.pending.len()
    }

    /// Whether `node`'s registration waits for the stake oracle.
    pub fn is_pending(&self, node: &NodeId) -> bool {
        self.pending.contains_key(node)
    }

    /// The container reserved for `session`, if any.
    pub fn reservation(&self, session: &SessionId) -> Option<NodeId> {
        self.reservations.get(session).map(|r| self.containers[r.slot as usize].id())
    }

    /// When the reservation of `session` expires unless renewed, if it has one.
    pub fn reservation_expires(&self, session: &SessionId) -> Option<Timestamp> {
        self.reservations.get(session).map(|r| Timestamp(r.expires))
    }

    /// Number of reservations held.
    pub fn reservations(&self) -> usize {
        self.reservations.len()
    }

    /// Checks R-IX2 (no slot double-booked: reserved ≤ slots, one session
    /// maps to one container, counters agree with the session table), the
    /// record invariants (state = last transition's target, bounded history
    /// and reputation), that the match index mirrors the containers, that
    /// tombstones are unreachable and every never-passed container has a
    /// prune deadline, and that the pending registrations are bounded.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let armed: HashSet<(u64, SessionId)> = self.expiries.iter().map(|&Reverse(e)| e).collect();
        for (session, r) in &self.reservations {
            let live = armed.contains(&(r.armed, *session));
            if r.armed > r.expires || !live {
                let armed = if live { r.armed } else { u64::MAX };
                return Err(InvariantError::UnarmedReservation { session: *session, expires: r.expires, armed });
            }
        }
        let mut per_slot: HashMap<u32, u32> = HashMap::new();
        for (session, r) in &self.reservations {
            let Some(c) = self.containers.get(r.slot as usize).filter(|_| !self.removed[r.slot as usize]) else {
                return Err(InvariantError::DanglingReservation { session: *session, container: r.offer.container });
            };
            if c.id() != r.offer.container || !self.sessions.contains(&(r.slot, *session)) {
                return Err(InvariantError::DanglingReservation { session: *session, container: r.offer.container });
            }
            *per_slot.entry(r.slot).or_default() += 1;
        }
        if self.sessions.len() != self.reservations.len() {
            let (slot, session) = self
                .sessions
                .iter()
                .find(|(_, s)| !self.reservations.contains_key(s))
                .copied()
                .unwrap_or((0, SessionId([0; 16])));
            let container = self.containers.get(slot as usize).map_or(NodeId([0; 32]), Container::id);
            return Err(InvariantError::DanglingReservation { session, container });
        }
        let prunes: HashSet<u32> = self.prunes.iter().map(|&Reverse((_, slot))| slot).collect();
        for (slot, c) in self.containers.iter().enumerate() {
            let rec = &c.record;
            let key = rec.id;
            if self.removed[slot] {
                let reachable = self.slots.get(&key) == Some(&(slot as u32))
                    || self.inspecting.contains_key(&(slot as u32))
                    || self.timer_due[slot] != NO_TIMER;
                if reachable || c.reserved > 0 {
                    return Err(InvariantError::Prune { container: key, detail: "a tombstone is reachable".into() });
                }
                continue;
            }
            if !rec.ever_passed && !prunes.contains(&(slot as u32)) {
                return Err(InvariantError::Prune { container: key, detail: "never passed, no prune deadline".into() });
            }
            if rec.state.is_schedulable() && !rec.ever_passed {
                return Err(InvariantError::Prune { container: key, detail: "schedulable, never passed".into() });
            }
            if self.slots.get(&key) != Some(&(slot as u32)) {
                let found = self.slots.iter().find(|&(_, &s)| s == slot as u32).map_or(NodeId([0; 32]), |(id, _)| *id);
                return Err(InvariantError::IdMismatch { key, found });
            }
            let sessions = per_slot.get(&(slot as u32)).copied().unwrap_or(0);
            if c.reserved != sessions {
                return Err(InvariantError::ReservedMismatch { container: key, sessions, reserved: c.reserved });
            }
            if c.reserved > rec.registration.slots {
                return Err(InvariantError::OverBooked {
                    container: key,
                    slots: rec.registration.slots,
                    reserved: c.reserved,
                });
            }
            if let Some(last) = rec.transitions.last()
                && last.to != rec.state
            {
                return Err(InvariantError::StateMismatch { container: key, expected: last.to, found: rec.state });
            }
            if rec.transitions.len() > HISTORY_LEN || rec.reputation > REPUTATION_MAX {
                return Err(InvariantError::Bounds {
                    container: key,
                    transitions: rec.transitions.len(),
                    reputation: rec.reputation,
                });
            }
            let due = self.timer_due[slot];
            if rec.state.is_schedulable() && (due == NO_TIMER || due > self.due(c.last_seen.0)) {
                return Err(InvariantError::Index { container: key, detail: "no re-inspection deadline armed".into() });
            }
        }
        if self.slots.len() != self.len() || self.removed.iter().filter(|&&r| r).count() != self.pruned {
            return Err(InvariantError::IdMismatch { key: NodeId([0; 32]), found: NodeId([0; 32]) });
        }
        self.check_pending()?;
        self.index.check(&self.containers, &self.removed).map_err(|(slot, detail)| InvariantError::Index {
            container: self.containers.get(slot).map_or(NodeId([0; 32]), Container::id),
            detail,
        })
    }

    /// Bounded, disjoint from the registry, each query with its entry.
    fn check_pending(&self) -> Result<(), InvariantError> {
        if self.pending.len() > MAX_PENDING || self.pending_order.len() > 2 * MAX_PENDING {
            let (n, order) = (self.pending.len(), self.pending_order.len());
            return Err(InvariantError::Pending(format!(
                "expected at most {MAX_PENDING} pending and {} queued, found {n} and {order}",
                2 * MAX_PENDING
            )));
        }
        let queued: HashSet<(NodeId, u64)> = self.pending_order.iter().map(|&(_, n, r)| (n, r)).collect();
        for (node, p) in &self.pending {
            if self.slots.contains_key(node) {
                return Err(InvariantError::Pending(format!("{node} is both pending and registered")));
            }
            if !queued.contains(&(*node, p.request_id)) {
                return Err(InvariantError::Pending(format!("{node}'s query {} is not queued", p.request_id)));
            }
        }
        Ok(())
    }

    fn fresh_ms(&self) -> u64 {
        u64::try_from(self.config.fresh_window().as_millis()).unwrap_or(u64::MAX)
    }

    /// When a container last seen at `last_seen` is due for re-inspection:
    /// the first millisecond at which its silence exceeds the window.
    fn due(&self, last_seen: u64) -> u64 {
        let window = u64::try_from(self.config.reinspect_window().as_millis()).unwrap_or(u64::MAX);
        last_seen.saturating_add(window).saturating_add(1).min(NO_TIMER - 1)
    }

    /// Adds a new container (its id is not known yet) and returns its slot.
    fn add(&mut self, c: Container) -> u32 {
        let slot = self.containers.len() as u32;
        self.slots.insert(c.id(), slot);
        if !c.record.ever_passed {
            self.prunes.push(Reverse((self.prune_due(c.last_seen), slot)));
        }
        self.containers.push(c);
        self.removed.push(false);
        self.timer_due.push(NO_TIMER);
        self.changed(slot);
        slot
    }

    /// When a never-passed container last seen at `last_seen` is pruned.
    fn prune_due(&self, last_seen: Timestamp) -> u64 {
        let after = u64::try_from(self.config.prune_after.as_millis()).unwrap_or(u64::MAX);
        last_seen.0.saturating_add(after)
    }

    /// Removes containers that never passed an inspection and have been
    /// silent for `prune_after` (in id order). Looks only at deadlines that
    /// are due; one whose container was heard from since is re-armed, one
    /// whose container passed meanwhile is dropped.
    fn prune(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let mut gone = Vec::new();
        while let Some(&Reverse((due, slot))) = self.prunes.peek() {
            if due > now.0 {
                break;
            }
            self.prunes.pop();
            let c = &self.containers[slot as usize];
            if self.removed[slot as usize] || c.record.ever_passed {
                continue;
            }
            let due = self.prune_due(c.last_seen);
            if due > now.0 {
                self.prunes.push(Reverse((due, slot)));
            } else {
                gone.push(slot);
            }
        }
        gone.sort_unstable_by_key(|&s| self.containers[s as usize].id());
        for slot in gone {
            out.push(Output::Forget(self.remove(slot)));
        }
    }

    /// Turns the container at `slot` into a tombstone: out of the id map,
    /// the index, the timers, inspections and reservations; its slot is
    /// never reused and its id may register again (a new slot).
    fn remove(&mut self, slot: u32) -> NodeId {
        self.release_all(slot);
        self.inspecting.remove(&slot);
        self.timer_due[slot as usize] = NO_TIMER;
        self.index.tombstone(slot);
        self.removed[slot as usize] = true;
        self.pruned += 1;
        let c = &mut self.containers[slot as usize];
        let id = c.id();
        self.slots.remove(&id);
        // A tombstone keeps only what its slot needs.
        c.warm = Vec::new();
        c.record.transitions = Vec::new();
        c.record.verdicts = Vec::new();
        c.record.registration.services = Vec::new();
        id
    }

    /// Tells the index and the timer queue that the container at `slot` changed.
    fn changed(&mut self, slot: u32) {
        self.index.upsert(slot, &self.containers[slot as usize]);
        self.arm(slot, false);
    }

    /// Arms the re-inspection deadline of a schedulable container if none is
    /// armed, or always (`force`, when its last sign of life moved back).
    fn arm(&mut self, slot: u32, force: bool) {
        let c = &self.containers[slot as usize];
        if c.record.state.is_schedulable() && (force || self.timer_due[slot as usize] == NO_TIMER) {
            let due = self.due(c.last_seen.0);
            self.timer_due[slot as usize] = due;
            self.timers.push(Reverse((due, slot)));
        }
    }

    /// Records a sign of life.
    fn seen(&mut self, slot: u32, now: Timestamp) {
        let c = &mut self.containers[slot as usize];
        let earlier = now < c.last_seen;
        c.last_seen = now;
        if earlier {
            self.arm(slot, true);
        }
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
            Message::StakeOf { request_id, node, bonded, minimum } => {
                self.on_stake_of(now, from, (node, request_id), (bonded, minimum), out)
            }
            Message::Heartbeat(hb) => self.on_heartbeat(now, conn, from, hb, out),
            Message::Maintenance { on } => self.on_maintenance(now, conn, from, on, out),
            Message::Verdict(v) => {
                if !self.committee().is_some_and(|c| c.contains(&from)) {
                    self.require(&self.config.checkers, from, "checker")?;
                }
                self.on_verdict(now, from, v, out)
            }
            Message::Committee(announcement) => {
                self.require(&self.config.gateways, from, "gateway")?;
                // Recomputed here from the proofs: the coordinator's word is not taken.
                let committee =
                    dci_committee::recompute(&announcement).map_err(|e| Rejection::Committee(e.to_string()))?;
                if self.committee().is_some_and(|c| c.epoch >= committee.epoch) {
                    return Err(Rejection::Committee(format!("epoch {} is not newer", committee.epoch)));
                }
                let addrs = announcement.candidates.into_iter().map(|c| (c.id, c.addr)).collect();
                self.committee = Some((committee, addrs));
                Ok(())
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
            Message::Renew { sessions } => {
                self.require(&self.config.gateways, from, "gateway")?;
                if sessions.len() > dci_proto::MAX_RENEW {
                    return Err(Rejection::RenewTooLong { max: dci_proto::MAX_RENEW, found: sessions.len() });
                }
                let until = self.expiry(now);
                for session in sessions {
                    if let Some(r) = self.reservations.get_mut(&session) {
                        r.expires = r.expires.max(until);
                    }
                }
                Ok(())
            }
            Message::ListContainers { request_id, after } => {
                self.require(&self.config.gateways, from, "gateway")?;
                let (containers, next) = dci_proto::containers_page(self.containers_after(now, after));
                out.push(reply(conn, Message::Containers { request_id, containers, next }));
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
        if !self.slots.contains_key(&from)
            && let Some((_, oracle)) = &self.config.stake_oracle
        {
            let oracle = oracle.clone();
            self.pend(now, conn, from, reg, &oracle, out);
            return Ok(());
        }
        self.admit(now, conn, from, reg, out)
    }

    /// Holds a new registration until the stake oracle answers (asking it
    /// once per registration in flight).
    fn pend(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        from: NodeId,
        registration: Registration,
        oracle: &str,
        out: &mut Vec<Output>,
    ) {
        if let Some(p) = self.pending.get_mut(&from) {
            // Asked already: the answer admits this latest registration.
            p.conn = conn;
            p.registration = registration;
            return;
        }
        while self.pending.len() >= MAX_PENDING && self.drop_oldest_pending() {}
        let request_id = self.next_stake_query;
        self.next_stake_query = self.next_stake_query.wrapping_add(1);
        self.pending.insert(from, Pending { request_id, conn, registration });
        self.pending_order.push_back((now.0, from, request_id));
        if self.pending_order.len() > 2 * MAX_PENDING {
            // Answered queries leave stale entries behind: drop them.
            let pending = &self.pending;
            self.pending_order.retain(|(_, n, r)| pending.get(n).is_some_and(|p| p.request_id == *r));
        }
        out.push(send(oracle, Message::StakeQuery { request_id, node: from }));
    }

    /// Whether the queue entry (`node`, `request_id`) is a query in flight.
    fn is_live_query(&self, node: &NodeId, request_id: u64) -> bool {
        self.pending.get(node).is_some_and(|p| p.request_id == request_id)
    }

    /// Drops the oldest pending registration (to make room); false if
    /// there was none.
    fn drop_oldest_pending(&mut self) -> bool {
        while let Some((_, node, request_id)) = self.pending_order.pop_front() {
            if self.is_live_query(&node, request_id) {
                self.pending.remove(&node);
                return true;
            }
        }
        false
    }

    /// Drops pending registrations whose query went unanswered for
    /// [`STAKE_QUERY_TIMEOUT`] (in arrival order).
    fn expire_pending(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let timeout = STAKE_QUERY_TIMEOUT.as_millis() as u64;
        let Some((oracle, _)) = &self.config.stake_oracle else { return };
        let oracle = *oracle;
        while let Some(&(asked, node, request_id)) = self.pending_order.front() {
            if asked.saturating_add(timeout) > now.0 {
                break;
            }
            self.pending_order.pop_front();
            if self.is_live_query(&node, request_id) {
                self.pending.remove(&node);
                out.push(Output::Rejected { from: node, reason: Rejection::StakeUnanswered { oracle } });
            }
        }
    }

    /// The stake oracle's answer: admit the registration in flight, or
    /// refuse it and keep nothing.
    fn on_stake_of(
        &mut self,
        now: Timestamp,
        from: NodeId,
        (node, request_id): (NodeId, u64),
        (bonded, minimum): (Amount, Amount),
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        if self.config.stake_oracle.as_ref().is_none_or(|(oracle, _)| *oracle != from) {
            return Err(Rejection::Untrusted { expected: "stake oracle" });
        }
        if !self.is_live_query(&node, request_id) {
            return Err(Rejection::StaleStake { node, request_id });
        }
        // Its queue entry is stale from now on.
        let Some(p) = self.pending.remove(&node) else { return Err(Rejection::StaleStake { node, request_id }) };
        if bonded >= minimum {
            if let Err(reason) = self.admit(now, p.conn, node, p.registration, out) {
                out.push(Output::Rejected { from: node, reason });
            }
        } else {
            let reason = Rejection::Unstaked { node, bonded, minimum };
            // On the registration's own connection: the registered address
            // is the registrant's claim, and may be someone else's.
            out.push(reply(p.conn, Message::Refused { reason: reason.to_string() }));
            out.push(Output::Rejected { from: node, reason });
        }
        Ok(())
    }

    /// A registration that may enter the registry: a new container is
    /// added (`Configuring → AwaitingInspection`, inspection requested), a
    /// known one updated.
    fn admit(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        from: NodeId,
        reg: Registration,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let (slot, persist, transition, why) = match self.slots.get(&from) {
            None => {
                let record = ContainerRecord {
                    id: from,
                    registration: reg,
                    state: State::Configuring,
                    reputation: REPUTATION_START,
                    transitions: Vec::new(),
                    verdicts: Vec::new(),
                    verified: None,
                    ever_passed: false,
                };
                let mut c = Container::from_record(record, now);
                let t = transition(&mut c.record, State::AwaitingInspection, Actor::Container, "registered", now);
                (self.add(c), true, t, "registration")
            }
            Some(&slot) => {
                let c = &mut self.containers[slot as usize];
                if reg.slots < c.reserved {
                    return Err(Rejection::SlotsBelowReserved { slots: reg.slots, reserved: c.reserved });
                }
                let spec_changed = c.record.registration.spec != reg.spec;
                let changed = c.record.registration != reg;
                // Warm is a subset of the registered services.
                c.warm.retain(|s| reg.services.contains(s));
                c.record.registration = reg;
                if spec_changed {
                    // What was proven was the old spec.
                    c.record.verified = None;
                }
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
                self.seen(slot, now);
                self.changed(slot);
                (slot, changed || t.is_some(), t, why)
            }
        };
        let c = &self.containers[slot as usize];
        if persist {
            out.push(Output::Persist(c.record.clone()));
        }
        if needs_inspection(c.record.state) {
            out.push(self.request_inspection(slot, InspectionKind::Registration, why));
        }
        if let Some(t) = transition {
            out.push(reply(conn, Message::StateChanged { container: from, transition: t }));
        }
        Ok(())
    }

    /// The operator (who holds the container's key) locks or unlocks it
    /// (R-AG5). Locked, it is never scheduled; unlocked, it needs a fresh
    /// inspection first (the host may have changed), which its
    /// re-registration asks for.
    fn on_maintenance(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        from: NodeId,
        on: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let slot = *self.slots.get(&from).ok_or(Rejection::UnknownContainer(from))?;
        let c = &mut self.containers[slot as usize];
        if !on && c.record.state != State::MaintenanceLock {
            return Err(Rejection::NotLocked(c.record.state));
        }
        let (to, reason) = if on {
            (State::MaintenanceLock, "locked for maintenance")
        } else {
            (State::ReinspectionRequired, "maintenance over: a fresh inspection first")
        };
        let t = c.record.state.transition(to, Actor::Operator, reason, now)?;
        c.record.apply(t.clone());
        out.push(Output::Persist(c.record.clone()));
        out.push(reply(conn, Message::StateChanged { container: from, transition: t }));
        self.changed(slot);
        Ok(())
    }

    /// The hot path (R-PF2): a hash lookup and a few stores; the index moves
    /// the container only if it became full or got a free slot.
    fn on_heartbeat(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        from: NodeId,
        hb: Heartbeat,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let Some(&slot) = self.slots.get(&from) else {
            // A container this indexer does not know (it lost its registry,
            // or pruned the container) is told so on its own connection, and
            // registers again; one whose registration waits for the stake
            // oracle is known soon.
            if !self.pending.contains_key(&from) {
                out.push(reply(conn, Message::Unregistered));
            }
            return Err(Rejection::UnknownContainer(from));
        };
        if hb.warm.len() > MAX_SERVICES {
            return Err(Rejection::TooManyWarm { max: MAX_SERVICES, found: hb.warm.len() });
        }
        let c = &self.containers[slot as usize];
        if c.warm != hb.warm
            && let Some(s) = hb.warm.iter().find(|s| !c.record.registration.services.contains(s))
        {
            return Err(Rejection::WarmNotRegistered(s.clone()));
        }
        // The compact record knows whether the state is `Ready`: the full
        // record is read only then.
        let ready = self.index.heartbeat(slot, now.0, hb.sessions);
        self.seen(slot, now);
        let c = &mut self.containers[slot as usize];
        c.last_heartbeat = Some(now);
        c.reported_sessions = hb.sessions;
        if c.warm != hb.warm {
            c.warm = hb.warm;
        }
        if ready && let Some(t) = transition(&mut c.record, State::Healthy, Actor::Indexer, "heartbeat", now) {
            out.push(Output::Persist(c.record.clone()));
            out.push(reply(conn, Message::StateChanged { container: from, transition: t }));
            self.changed(slot);
        }
        Ok(())
    }

    fn on_verdict(
        &mut self,
        now: Timestamp,
        checker: NodeId,
        v: Verdict,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let slot = *self.slots.get(&v.container).ok_or(Rejection::UnknownContainer(v.container))?;
        match self.inspecting.get(&slot) {
            Some(&(id, _, Some(member))) if id == v.request && member != checker => {
                return Err(Rejection::WrongChecker { expected: member, found: checker });
            }
            Some(&(id, kind, _)) if id == v.request && kind == v.kind => {
                self.inspecting.remove(&slot);
            }
            other => return Err(Rejection::StaleVerdict { expected: InFlight(other.map(|o| o.0)), found: v.request }),
        }
        let rec = &mut self.containers[slot as usize].record;
        let (to, default_reason) = match (v.passed, v.kind) {
            (true, _) => (State::Ready, "inspection passed"),
            (false, InspectionKind::InService) => (State::QualityControl, "in-service evaluation failed"),
            // Failing again: it cannot back its claim.
            (false, _) if rec.state == State::ReinspectionRequired => {
                (State::QualityControl, "inspection failed again")
            }
            (false, _) => (State::ReinspectionRequired, "inspection failed"),
        };
        if v.passed && v.kind != InspectionKind::InService {
            // Its reward weight is what this proof verified, and nothing else.
            rec.verified = v.capacity.clone();
        }
        // Never pruned from now on.
        rec.ever_passed |= v.passed;
        rec.reputation = if v.passed {
            (rec.reputation + REPUTATION_PASS).min(REPUTATION_MAX)
        } else {
            rec.reputation.saturating_sub(REPUTATION_FAIL)
        };
        let reason = if v.reason.trim().is_empty() { default_reason.to_owned() } else { v.reason };
        rec.note_verdict(VerdictRecord {
            at: now,
            checker,
            kind: v.kind,
            passed: v.passed,
            reason: reason.clone(),
            compute_ms: v.compute_ms,
            capacity: v.capacity.clone(),
        });
        // The table decides: e.g. a passed standby inspection of a Healthy
        // container changes only its reputation.
        let t = transition(rec, to, Actor::Checker, reason, now);
        out.push(Output::Persist(rec.clone()));
        if let Some(t) = t {
            out.push(send(&rec.registration.addr, Message::StateChanged { container: rec.id, transition: t }));
        }
        self.changed(slot);
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
        let until = self.expiry(now);
        if let Some(r) = self.reservations.get_mut(&session) {
            r.expires = r.expires.max(until);
            return reply(conn, Message::Matched { request_id, offer: r.offer.clone() });
        }
        let eliminations = match self.evaluate(now, request, session) {
            Ok(choice) => match self.slots.get(&choice.container) {
                Some(&slot) => {
                    let c = &mut self.containers[slot as usize];
                    c.reserved += 1;
                    let offer = c.offer(choice.estimated_rtt_ms);
                    let reserved = c.reserved;
                    self.index.set_reserved(slot, reserved);
                    self.sessions.insert((slot, session));
                    self.expiries.push(Reverse((until, session)));
                    self.reservations
                        .insert(session, Reservation { slot, offer: offer.clone(), expires: until, armed: until });
                    return reply(conn, Message::Matched { request_id, offer });
                }
                None => Default::default(),
            },
            Err(e) => e,
        };
        reply(conn, Message::NoMatch { request_id, eliminations })
    }

    fn on_release(&mut self, session: SessionId) {
        if let Some(r) = self.reservations.remove(&session) {
            self.sessions.remove(&(r.slot, session));
            let c = &mut self.containers[r.slot as usize];
            c.reserved = c.reserved.saturating_sub(1);
            let reserved = c.reserved;
            self.index.set_reserved(r.slot, reserved);
        }
    }

    /// When a reservation made or renewed at `now` expires.
    fn expiry(&self, now: Timestamp) -> u64 {
        let ttl = u64::try_from(self.config.reservation_ttl.as_millis()).unwrap_or(u64::MAX);
        now.0.saturating_add(ttl)
    }

    /// Releases the reservations whose expiry has come, as `Release` would.
    /// Looks only at queue entries that are due: stale ones (released
    /// sessions) are dropped, renewed ones re-armed at their new expiry.
    fn expire(&mut self, now: Timestamp) {
        while let Some(&Reverse((due, session))) = self.expiries.peek() {
            if due > now.0 {
                break;
            }
            self.expiries.pop();
            let Some(r) = self.reservations.get_mut(&session) else { continue };
            if r.armed != due {
                continue; // an entry of an earlier reservation of this session
            }
            if r.expires > now.0 {
                r.armed = r.expires;
                self.expiries.push(Reverse((r.expires, session)));
            } else {
                self.on_release(session);
            }
        }
    }

    /// Asks the checker to inspect the container at `slot`; the request
    /// replaces any inspection of it in flight (whose verdict will then be
    /// refused as stale).
    fn request_inspection(&mut self, slot: u32, kind: InspectionKind, why: &str) -> Output {
        let service = match kind {
            InspectionKind::InService => self.config.evaluated_service.clone(),
            _ => None,
        };
        let id = self.next_inspection;
        self.next_inspection = self.next_inspection.wrapping_add(1);
        let record = &self.containers[slot as usize].record;
        // The epoch committee's member for this container (R-CK7), else the
        // configured checker.
        let member = self.committee.as_ref().and_then(|(c, addrs)| {
            let m = dci_committee::assign_one(c, &record.id)?;
            Some((m, addrs.get(&m)?.clone()))
        });
        let addr = member.as_ref().map_or(self.config.checker_addr.as_str(), |(_, a)| a.as_str());
        self.inspecting.insert(slot, (id, kind, member.as_ref().map(|(m, _)| *m)));
        send(
            addr,
            Message::InspectionRequest(InspectionRequest {
                id,
                kind,
                container: record.id,
                addr: record.registration.addr.clone(),
                spec: record.registration.spec.clone(),
                reason: why.to_owned(),
                service,
            }),
        )
    }

    /// Random inspections: each schedulable container not already being
    /// inspected is picked with the same small chance, so that each is
    /// inspected about once per [`Config::standby_every`], at times it cannot
    /// predict. An idle container gets a standby inspection (R-CK2); one
    /// serving sessions an in-service evaluation of
    /// [`Config::evaluated_service`] if it offers it (R-CK3, R-CK4). Draws
    /// slots uniformly (with replacement); a draw that lands on a tombstone,
    /// an unschedulable container, or a busy one without the service, is
    /// dropped, so the rate per container does not depend on the others.
    fn standby_inspections(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        const MAX_PER_TICK: f64 = 10_000.0;
        let (Some(every), Some(last)) = (self.config.standby_every, self.last_tick) else { return };
        let n = self.containers.len();
        if n == 0 || now <= last {
            return;
        }
        let elapsed = now.since(last).as_secs_f64();
        self.standby_credit = (self.standby_credit + n as f64 * elapsed / every.as_secs_f64()).min(MAX_PER_TICK);
        while self.standby_credit >= 1.0 {
            self.standby_credit -= 1.0;
            let slot = self.rng.below(n) as u32;
            if self.removed[slot as usize] {
                continue;
            }
            let c = &self.containers[slot as usize];
            let idle = c.reserved == 0 && c.reported_sessions == 0;
            let fresh = now.since(c.last_seen) <= self.config.fresh_window();
            if !c.record.state.is_schedulable() || !fresh || self.inspecting.contains_key(&slot) {
                continue;
            }
            if idle {
                out.push(self.request_inspection(slot, InspectionKind::Standby, "random standby inspection"));
            } else if self.config.evaluated_service.as_ref().is_some_and(|s| c.record.registration.services.contains(s))
            {
                out.push(self.request_inspection(slot, InspectionKind::InService, "random in-service evaluation"));
            }
        }
    }

    /// Moves containers silent for longer than the re-inspection window to
    /// `ReinspectionRequired` (in id order) and releases their sessions.
    /// Looks only at containers whose deadline has come.
    fn tick(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let window = self.config.reinspect_window();
        let interval_ms = self.config.heartbeat_interval.as_millis().max(1);
        let mut lost = Vec::new();
        while let Some(&Reverse((due, slot))) = self.timers.peek() {
            if due > now.0 {
                break;
            }
            self.timers.pop();
            if self.timer_due[slot as usize] != due {
                continue; // superseded
            }
            self.timer_due[slot as usize] = NO_TIMER;
            let c = &self.containers[slot as usize];
            if !c.record.state.is_schedulable() {
                continue; // armed again when it becomes schedulable
            }
            if now.since(c.last_seen) > window {
                lost.push(slot);
            } else {
                self.arm(slot, false);
            }
        }
        lost.sort_unstable_by_key(|&s| self.containers[s as usize].id());
        for slot in lost {
            let c = &mut self.containers[slot as usize];
            let missed = now.since(c.last_seen).as_millis() / interval_ms;
            let reason = format!("missed {missed} heartbeats");
            if let Some(t) = transition(&mut c.record, State::ReinspectionRequired, Actor::Timer, reason, now) {
                out.push(Output::Persist(c.record.clone()));
                let container = c.record.id;
                out.push(send(&c.record.registration.addr, Message::StateChanged { container, transition: t }));
            }
            self.release_all(slot);
            self.changed(slot);
        }
    }

    /// Drops every reservation on a lost container.
    fn release_all(&mut self, slot: u32) {
        let sessions: Vec<SessionId> =
            self.sessions.range((slot, SessionId([0; 16]))..=(slot, SessionId([0xff; 16]))).map(|&(_, s)| s).collect();
        for s in sessions {
            self.sessions.remove(&(slot, s));
            self.reservations.remove(&s);
        }
        self.containers[slot as usize].reserved = 0;
    }
}

/// States in which a container waits for a checker.
fn needs_inspection(state: State) -> bool {
    matches!(state, State::AwaitingInspection | State::ReinspectionRequired | State::QualityControl)
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
    if reg.services.len() > MAX_SERVICES {
        return Err(Rejection::TooManyServices { max: MAX_SERVICES, found: reg.services.len() });
    }
    let addr_ok =
        !reg.addr.is_empty() && reg.addr.len() <= 255 && !reg.addr.chars().any(|c| c.is_whitespace() || c.is_control());
    if !addr_ok {
        return Err(Rejection::BadAddr(reg.addr.clone()));
    }
    Ok(())
}

fn reply(conn: ConnId, msg: Message) -> Output {
    Output::Net(Net::Reply { conn, msg })
}

fn send(addr: &str, msg: Message) -> Output {
    Output::Net(Net::Send { addr: addr.to_owned(), msg })
}
