//! A container as the indexer knows it: the durable record and the live,
//! in-memory part (liveness, load, reservations).

use dci_model::{NodeId, ServiceName, State, Timestamp, Transition};
use dci_proto::{ContainerView, Offer, Registration, VerdictRecord};
use serde::{Deserialize, Serialize};

/// How many transitions a record keeps (the most recent ones).
pub const HISTORY_LEN: usize = 20;
/// Verdicts kept per container.
pub const VERDICTS_LEN: usize = 5;

/// What the indexer persists about a container and restores after a restart
/// ([`crate::Indexer::restore`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container's node id.
    pub id: NodeId,
    /// Its latest accepted registration.
    pub registration: Registration,
    /// Its lifecycle state.
    pub state: State,
    /// Checker reputation, 0..=[`crate::REPUTATION_MAX`].
    pub reputation: u32,
    /// The most recent transitions (at most [`HISTORY_LEN`]), newest last.
    pub transitions: Vec<Transition>,
    /// The most recent checker verdicts (at most [`VERDICTS_LEN`]), newest last.
    #[serde(default)]
    pub verdicts: Vec<VerdictRecord>,
    /// What its latest passed proof of capacity verified: its reward
    /// weight. Cleared when its spec changes (it must prove the new one).
    #[serde(default)]
    pub verified: Option<dci_proto::VerifiedCapacity>,
    /// Some inspection of it passed, ever: it is never pruned
    /// ([`crate::Config::prune_after`]). Records written before this field
    /// existed get it from what they show ([`ContainerRecord::shows_a_pass`]).
    #[serde(default)]
    pub ever_passed: bool,
}

impl ContainerRecord {
    /// Whether the record shows that an inspection passed: the flag, a
    /// passed verdict, verified capacity, a schedulable state or a
    /// transition to `Ready`.
    pub fn shows_a_pass(&self) -> bool {
        self.ever_passed
            || self.state.is_schedulable()
            || self.verified.is_some()
            || self.verdicts.iter().any(|v| v.passed)
            || self.transitions.iter().any(|t| t.to == State::Ready)
    }

    /// Records a verdict, keeping the most recent [`VERDICTS_LEN`].
    pub(crate) fn note_verdict(&mut self, v: VerdictRecord) {
        self.verdicts.push(v);
        let excess = self.verdicts.len().saturating_sub(VERDICTS_LEN);
        self.verdicts.drain(..excess);
    }

    /// Applies `t` (which must start from the current state) and keeps the
    /// history bounded.
    pub(crate) fn apply(&mut self, t: Transition) {
        debug_assert_eq!(t.from, self.state);
        self.state = t.to;
        self.transitions.push(t);
        if self.transitions.len() > HISTORY_LEN {
            let excess = self.transitions.len() - HISTORY_LEN;
            self.transitions.drain(..excess);
        }
    }
}

/// A container as the matcher sees it: the record plus live data that is
/// not persisted.
///
/// Plain data, so that matchers and benchmarks can build containers
/// directly; inside an [`crate::Indexer`] the fields are kept consistent.
/// (`repr(C)`: what a heartbeat writes comes first, in one cache line.)
#[derive(Clone, Debug, PartialEq)]
#[repr(C)]
pub struct Container {
    /// Last sign of life: registration, heartbeat, or the restore time. The
    /// heartbeat criterion and the re-inspection timer count from here.
    pub last_seen: Timestamp,
    /// Last actual heartbeat (`None`: none since registration or restore).
    pub last_heartbeat: Option<Timestamp>,
    /// Sessions the container reported running in its last heartbeat.
    pub reported_sessions: u32,
    /// Slots reserved by this indexer for sessions not yet released.
    pub reserved: u32,
    /// Services the last heartbeat reported warm (R-AG3).
    pub warm: Vec<ServiceName>,
    /// The durable part.
    pub record: ContainerRecord,
}

impl Container {
    /// A container known only from its record, last seen at `now`.
    pub fn from_record(record: ContainerRecord, now: Timestamp) -> Self {
        Container { record, last_seen: now, last_heartbeat: None, reported_sessions: 0, reserved: 0, warm: Vec::new() }
    }

    /// The container's id.
    pub fn id(&self) -> NodeId {
        self.record.id
    }

    /// Slots neither reserved here nor reported busy by the container.
    ///
    /// Reported sessions count as a floor so that, after an indexer restart
    /// (reservations are not persisted), slots that are still serving are not
    /// handed out again. A container can only make itself look busier this
    /// way, never less busy than its reservations.
    pub fn free_slots(&self) -> u32 {
        self.record.registration.slots.saturating_sub(self.reserved.max(self.reported_sessions))
    }

    /// The offer for one slot on this container.
    pub fn offer(&self, estimated_rtt_ms: Option<u32>) -> Offer {
        let r = &self.record.registration;
        Offer {
            container: self.record.id,
            addr: r.addr.clone(),
            spec: r.spec.clone(),
            price: r.price,
            estimated_rtt_ms,
            payout: r.payout.clone(),
        }
    }

    /// The operator-facing view.
    pub fn view(&self, now: Timestamp) -> ContainerView {
        let r = &self.record.registration;
        ContainerView {
            id: self.record.id,
            addr: r.addr.clone(),
            state: self.record.state,
            spec: r.spec.clone(),
            services: r.services.clone(),
            warm: self.warm.clone(),
            price: r.price,
            slots: r.slots,
            reserved: self.reserved,
            reputation: self.record.reputation,
            last_heartbeat_ago_ms: self.last_heartbeat.map(|t| now.since(t).as_millis() as u64),
            transitions: self.record.transitions.clone(),
            verdicts: self.record.verdicts.clone(),
            verified: self.record.verified.clone(),
            payout: r.payout.clone(),
        }
    }
}
