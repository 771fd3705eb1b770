//! The indexer core's configuration.

use dci_model::{NodeId, ServiceName};
use std::time::Duration;

/// How the indexer core behaves and whom it trusts.
///
/// The node builds this from its typed config file; [`Config::validate`]
/// says whether the values make sense. The core never panics on an invalid
/// config, it just behaves accordingly (a zero interval makes every container
/// stale at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How often containers heartbeat.
    pub heartbeat_interval: Duration,
    /// After this many missed heartbeats a container is unschedulable (R-IX4).
    pub missed_heartbeats: u32,
    /// After this many missed heartbeats a `Ready`/`Healthy` container moves
    /// to `ReinspectionRequired` (on the next tick).
    pub reinspect_after_missed: u32,
    /// Where inspection requests go (`host:port` of a checker).
    pub checker_addr: String,
    /// Nodes whose verdicts are accepted.
    pub checkers: Vec<NodeId>,
    /// Nodes allowed to match, renew, release and list.
    pub gateways: Vec<NodeId>,
    /// How long a reservation lives unless renewed: a `Match` reserves a
    /// slot until `now + reservation_ttl`, each `Renew` (or repeated `Match`)
    /// of the session moves that to `now + reservation_ttl` again, and the
    /// first tick after it frees the slot as a `Release` would. Gateways
    /// renew their sessions well within it (a third of it or more often);
    /// a crashed gateway's reservations, or one whose `Matched` was lost,
    /// are free again after at most this long. A running session's slot
    /// stays busy anyway while its container reports it in heartbeats.
    pub reservation_ttl: Duration,
    /// Random standby inspections (R-CK2): on average, each schedulable idle
    /// container is inspected once per this interval, at unpredictable
    /// times. `None`: no standby inspections.
    pub standby_every: Option<Duration>,
    /// The service the checkers' scripted simulated user exercises (R-CK4).
    /// A container drawn for a random inspection while it serves sessions,
    /// and offering this service, gets an in-service evaluation of it
    /// (R-CK3) instead of a standby inspection. `None`: serving containers
    /// are not evaluated.
    pub evaluated_service: Option<ServiceName>,
    /// Seeds the indexer's randomness (which containers a standby inspection
    /// picks, inspection and stake query ids). The node passes fresh OS
    /// randomness; tests a fixed value.
    pub seed: u64,
    /// The stake oracle (the gateway that holds the ledger): its node id
    /// and node address. With one, a *new* registration waits (at most
    /// [`crate::MAX_PENDING`] at once, oldest dropped first) until the
    /// oracle says the registrant's account has bonded at least the
    /// governance minimum of container stake (`Message::StakeQuery` →
    /// `StakeOf`, taken only from this node for a query in flight, dropped
    /// after [`crate::STAKE_QUERY_TIMEOUT`]); below it the container gets
    /// `Message::Refused` and nothing is kept. A container already in the
    /// registry is not asked again when it re-registers. `None`: no check.
    pub stake_oracle: Option<(NodeId, String)>,
    /// A container that never passed an inspection and has not been heard
    /// from (registration, heartbeat, or this indexer's start) for this
    /// long is removed from the registry at the next tick: no longer listed,
    /// matched or persisted. A container that passed once is never removed.
    pub prune_after: Duration,
}

/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default number of missed heartbeats before a container is unschedulable (R-IX4).
pub const DEFAULT_MISSED_HEARTBEATS: u32 = 3;
/// Default mean interval between standby inspections of one container.
pub const DEFAULT_STANDBY_EVERY: Duration = Duration::from_secs(3600);
/// Default number of missed heartbeats before re-inspection is required.
pub const DEFAULT_REINSPECT_AFTER_MISSED: u32 = 30;
/// Default lifetime of an unrenewed reservation.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(30);
/// Default silence after which a never-inspected-ok container is removed.
pub const DEFAULT_PRUNE_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Config {
    /// A config with the default timings and the given peers, and no stake
    /// oracle.
    pub fn new(checker_addr: impl Into<String>, checkers: Vec<NodeId>, gateways: Vec<NodeId>) -> Self {
        Config {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            missed_heartbeats: DEFAULT_MISSED_HEARTBEATS,
            reinspect_after_missed: DEFAULT_REINSPECT_AFTER_MISSED,
            checker_addr: checker_addr.into(),
            checkers,
            gateways,
            reservation_ttl: DEFAULT_RESERVATION_TTL,
            standby_every: Some(DEFAULT_STANDBY_EVERY),
            evaluated_service: ServiceName::new("render").ok(),
            seed: 0,
            stake_oracle: None,
            prune_after: DEFAULT_PRUNE_AFTER,
        }
    }

    /// Checks that the timings are consistent and a checker is addressable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::ZeroInterval);
        }
        if self.missed_heartbeats == 0 {
            return Err(ConfigError::ZeroMissed);
        }
        if self.reinspect_after_missed < self.missed_heartbeats {
            return Err(ConfigError::ReinspectBeforeUnschedulable {
                reinspect: self.reinspect_after_missed,
                missed: self.missed_heartbeats,
            });
        }
        if self.checker_addr.trim().is_empty() {
            return Err(ConfigError::NoCheckerAddr);
        }
        if self.standby_every.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroStandbyInterval);
        }
        if self.reservation_ttl.is_zero() {
            return Err(ConfigError::ZeroReservationTtl);
        }
        if self.stake_oracle.as_ref().is_some_and(|(_, addr)| addr.trim().is_empty()) {
            return Err(ConfigError::NoStakeOracleAddr);
        }
        if self.prune_after.is_zero() {
            return Err(ConfigError::ZeroPruneAfter);
        }
        Ok(())
    }

    /// How long after the last sign of life a container stays schedulable.
    pub fn fresh_window(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.missed_heartbeats)
    }

    /// How long after the last sign of life a container needs re-inspection.
    pub fn reinspect_window(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.reinspect_after_missed)
    }
}

/// Why a [`Config`] is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The heartbeat interval is zero.
    #[error("expected a heartbeat interval above zero, found 0")]
    ZeroInterval,
    /// `missed_heartbeats` is zero.
    #[error("expected missed_heartbeats of at least 1, found 0")]
    ZeroMissed,
    /// Re-inspection would come before the container is even unschedulable.
    #[error("expected reinspect_after_missed >= missed_heartbeats ({missed}), found {reinspect}")]
    ReinspectBeforeUnschedulable {
        /// `reinspect_after_missed`.
        reinspect: u32,
        /// `missed_heartbeats`.
        missed: u32,
    },
    /// No checker address.
    #[error("expected a checker address host:port, found an empty string")]
    NoCheckerAddr,
    /// Standby inspections every zero seconds.
    #[error("expected standby_every above zero (or none), found 0")]
    ZeroStandbyInterval,
    /// Reservations that expire at once.
    #[error("expected a reservation_ttl above zero, found 0")]
    ZeroReservationTtl,
    /// A stake oracle without an address.
    #[error("expected the stake oracle's address host:port, found an empty string")]
    NoStakeOracleAddr,
    /// Containers removed as soon as they are silent.
    #[error("expected prune_after above zero, found 0")]
    ZeroPruneAfter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = Config::new("127.0.0.1:7400", vec![], vec![]);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.fresh_window(), Duration::from_secs(3));
        assert_eq!(ok.reservation_ttl, Duration::from_secs(30));
        type Edit = fn(&mut Config);
        assert_eq!((ok.stake_oracle.clone(), ok.prune_after), (None, Duration::from_secs(86_400)));
        let cases: [(Edit, ConfigError); 8] = [
            (|c| c.heartbeat_interval = Duration::ZERO, ConfigError::ZeroInterval),
            (|c| c.missed_heartbeats = 0, ConfigError::ZeroMissed),
            (|c| c.reinspect_after_missed = 2, ConfigError::ReinspectBeforeUnschedulable { reinspect: 2, missed: 3 }),
            (|c| c.checker_addr = " ".into(), ConfigError::NoCheckerAddr),
            (|c| c.standby_every = Some(Duration::ZERO), ConfigError::ZeroStandbyInterval),
            (|c| c.reservation_ttl = Duration::ZERO, ConfigError::ZeroReservationTtl),
            (|c| c.stake_oracle = Some((NodeId([1; 32]), "".into())), ConfigError::NoStakeOracleAddr),
            (|c| c.prune_after = Duration::ZERO, ConfigError::ZeroPruneAfter),
        ];
        for (edit, want) in cases {
            let mut c = ok.clone();
            edit(&mut c);
            assert_eq!(c.validate(), Err(want));
        }
    }
}
