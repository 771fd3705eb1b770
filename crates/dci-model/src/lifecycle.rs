//! The container lifecycle: seven states and the one closed table of legal
//! transitions between them (R-LC1..3).
//!
//! Every state change anywhere in DCI goes through [`State::transition`], which
//! rejects anything not in [`TABLE`] with an error naming both states and the
//! actor, and returns a [`Transition`] record (who, why, when) otherwise.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A container's lifecycle state (R-LC1). Seed names in the docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// \[Configurando\] New; waiting for configuration.
    Configuring,
    /// \[Aguardando Inspeção\] Configured; waiting for registration validation.
    AwaitingInspection,
    /// \[Inspecionado e Pronto\] Passed inspection; may be scheduled.
    Ready,
    /// \[Requer Re-inspeção\] A problem was found; not schedulable until it passes again.
    ReinspectionRequired,
    /// \[Conectado e Saudável\] Connected and heartbeating; schedulable.
    Healthy,
    /// \[Bloqueio de Manutenção\] Operator lock; not schedulable.
    MaintenanceLock,
    /// \[Controle de Qualidade\] Under checks after degraded quality; not schedulable.
    QualityControl,
}

impl State {
    /// All states, in lifecycle order.
    pub const ALL: [State; 7] = [
        State::Configuring,
        State::AwaitingInspection,
        State::Ready,
        State::ReinspectionRequired,
        State::Healthy,
        State::MaintenanceLock,
        State::QualityControl,
    ];

    /// May the indexer match consumers to a container in this state?
    pub fn is_schedulable(self) -> bool {
        matches!(self, State::Ready | State::Healthy)
    }

    /// Moves from `self` to `to`, if the table allows `actor` to do so.
    pub fn transition(
        self,
        to: State,
        actor: Actor,
        reason: impl Into<String>,
        at: Timestamp,
    ) -> Result<Transition, LifecycleError> {
        if allowed(self, to, actor) {
            Ok(Transition { from: self, to, actor, reason: reason.into(), at })
        } else {
            Err(LifecycleError { from: self, to, actor })
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            State::Configuring => "configuring",
            State::AwaitingInspection => "awaiting-inspection",
            State::Ready => "ready",
            State::ReinspectionRequired => "reinspection-required",
            State::Healthy => "healthy",
            State::MaintenanceLock => "maintenance-lock",
            State::QualityControl => "quality-control",
        };
        f.write_str(s)
    }
}

/// Who caused a transition (R-LC2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// The container itself (registration, spec change).
    Container,
    /// A checker's signed verdict.
    Checker,
    /// The indexer (heartbeats observed).
    Indexer,
    /// The host's operator.
    Operator,
    /// A timeout (missed heartbeats).
    Timer,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

use Actor::*;
use State::*;

/// The closed transition table: `(from, to, actors allowed to cause it)`.
pub const TABLE: &[(State, State, &[Actor])] = &[
    (Configuring, AwaitingInspection, &[Container, Operator]),
    (AwaitingInspection, Ready, &[Checker]),
    (AwaitingInspection, ReinspectionRequired, &[Checker, Timer]),
    (AwaitingInspection, Configuring, &[Container, Operator]),
    (Ready, Healthy, &[Indexer]),
    (Ready, ReinspectionRequired, &[Checker, Container, Operator, Timer]),
    (Ready, QualityControl, &[Checker]),
    (Healthy, ReinspectionRequired, &[Checker, Container, Operator, Timer]),
    (Healthy, QualityControl, &[Checker]),
    (ReinspectionRequired, Ready, &[Checker]),
    // A host that fails its inspection again cannot back its claim.
    (ReinspectionRequired, QualityControl, &[Checker]),
    (ReinspectionRequired, Configuring, &[Container, Operator]),
    (QualityControl, Ready, &[Checker]),
    (QualityControl, ReinspectionRequired, &[Checker, Timer]),
    (Configuring, MaintenanceLock, &[Operator]),
    (AwaitingInspection, MaintenanceLock, &[Operator]),
    (Ready, MaintenanceLock, &[Operator]),
    (Healthy, MaintenanceLock, &[Operator]),
    (ReinspectionRequired, MaintenanceLock, &[Operator]),
    (QualityControl, MaintenanceLock, &[Operator]),
    // Leaving maintenance always means a fresh inspection: the host may have changed.
    (MaintenanceLock, ReinspectionRequired, &[Operator]),
    (MaintenanceLock, Configuring, &[Operator]),
];

fn allowed(from: State, to: State, actor: Actor) -> bool {
    TABLE.iter().any(|(f, t, who)| *f == from && *t == to && who.contains(&actor))
}

/// A transition the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal lifecycle transition from {from} to {to} by {actor:?}")]
pub struct LifecycleError {
    /// State the container was in.
    pub from: State,
    /// State that was asked for.
    pub to: State,
    /// Who asked.
    pub actor: Actor,
}

/// A recorded state change: from, to, who and why (R-LC2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Who caused it.
    pub actor: Actor,
    /// Why, in words.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// Within a schedulable state: idle or serving (R-LC3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activity {
    /// Idle; may be matched.
    Standby,
    /// Running sessions, with this many slots still free.
    Serving {
        /// Sessions running.
        sessions: u32,
        /// Slots still free.
        free_slots: u32,
    },
}

impl Activity {
    /// The activity of a container with `slots` slots and `sessions` running.
    pub fn of(slots: u32, sessions: u32) -> Activity {
        if sessions == 0 {
            Activity::Standby
        } else {
            Activity::Serving { sessions, free_slots: slots.saturating_sub(sessions) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data-driven: every (from, to, actor) triple, checked against the
    /// expected answer written out independently of `TABLE`'s layout.
    #[test]
    fn table_is_closed() {
        let expect_ok = [
            (Configuring, AwaitingInspection, Container),
            (AwaitingInspection, Ready, Checker),
            (Ready, Healthy, Indexer),
            (Healthy, ReinspectionRequired, Timer),
            (Healthy, QualityControl, Checker),
            (QualityControl, Ready, Checker),
            (Healthy, MaintenanceLock, Operator),
            (MaintenanceLock, ReinspectionRequired, Operator),
            (ReinspectionRequired, Ready, Checker),
        ];
        for (f, t, a) in expect_ok {
            assert!(f.transition(t, a, "test", Timestamp(1)).is_ok(), "{f} -> {t} by {a:?}");
        }
        let expect_err = [
            (Configuring, Ready, Checker),          // must be inspected first
            (AwaitingInspection, Ready, Container), // a container cannot pass itself
            (Healthy, Ready, Indexer),
            (MaintenanceLock, Healthy, Operator), // leaving maintenance needs inspection
            (Ready, Healthy, Container),
            (Healthy, Healthy, Indexer),
            (QualityControl, Healthy, Checker),
        ];
        for (f, t, a) in expect_err {
            let e = f.transition(t, a, "test", Timestamp(1)).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&f.to_string()) && msg.contains(&t.to_string()), "{msg}");
        }
    }

    #[test]
    fn every_state_is_reachable_and_left() {
        for s in State::ALL {
            if s != Configuring {
                assert!(TABLE.iter().any(|(_, t, _)| *t == s), "{s} unreachable");
            }
            assert!(TABLE.iter().any(|(f, _, _)| *f == s), "{s} is a dead end");
        }
        // No self-loops, no duplicates.
        for (i, (f, t, _)) in TABLE.iter().enumerate() {
            assert_ne!(f, t);
            assert!(!TABLE[i + 1..].iter().any(|(f2, t2, _)| f2 == f && t2 == t));
        }
    }

    #[test]
    fn only_ready_and_healthy_schedule() {
        let s: Vec<_> = State::ALL.into_iter().filter(|s| s.is_schedulable()).collect();
        assert_eq!(s, vec![Ready, Healthy]);
    }
}
