//! Governance parameters (R-LG2, R-LG3, R-LG4): the fee split, the unbonding
//! period, the epoch length, the emission schedule, the reward shares of the
//! three kinds of miner and the slash fractions.
//!
//! They live in the ledger, not in a config file: every change goes through
//! [`crate::EmbeddedLedger::set_params`], is validated, and is recorded with
//! the time it took effect ([`ParamsChange`]), so past settlements, rewards
//! and slashes can be explained with the parameters in force at the time.
//!
//! Defaults ([`Params::default`]): fee split provider 90% / checkers 5% /
//! indexers 2% / treasury 3%; unbonding 7 days; epochs of 15 minutes;
//! emission over 10 years decaying 20% a year ([`crate::emission`]); epoch
//! rewards 70% to containers, 20% to checkers, 10% to indexers; one slash
//! report may take at most 10% of the offender's bonded stake in the role
//! (after all of its pending rewards); a container must bond at least
//! 100 ATH before it is inspected (the Sybil cost of a registration).

use dci_model::{Amount, Timestamp};
use serde::{Deserialize, Serialize};

use crate::emission::{EmissionSchedule, YEAR_SECS};
use crate::fees::BPS;
use crate::{FeeSplit, LedgerError, StakeRole};

/// Everything governance can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Seconds between `unstake` and the funds becoming withdrawable
    /// (0 to one year).
    pub unbonding_secs: u64,
    /// Length of an epoch in seconds (1, for devnets, to one year; a
    /// production network uses 900). On the evm backend it is the chain's
    /// epoch clock too: epoch e ends `(e + 1) × epoch_secs` after the
    /// ledger's deployment, and is distributed only then.
    pub epoch_secs: u64,
    /// How a session's charge is split.
    pub fees: FeeSplit,
    /// How the mining pool is released.
    pub emission: EmissionSchedule,
    /// How an epoch's emission is shared among the kinds of miner.
    pub rewards: RewardShares,
    /// The largest part of bonded stake one slash report may take.
    pub slash: SlashFractions,
    /// The container stake a host must have bonded before it is inspected
    /// and scheduled (at most 1,000,000 ATH). Absent in parameters recorded
    /// before it existed: the default.
    #[serde(default = "default_min_container_stake")]
    pub min_container_stake: Amount,
}

/// Shares of an epoch's emission, in basis points summing to 10,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardShares {
    /// Containers, by verified capacity × uptime.
    pub containers_bps: u32,
    /// Checkers, by correct inspections.
    pub checkers_bps: u32,
    /// Indexers, by served matches.
    pub indexers_bps: u32,
}

/// Per role, the largest fraction (basis points) of an offender's bonded
/// stake (staked + unbonding in that role) one report may take once its
/// pending rewards are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlashFractions {
    /// Containers.
    pub container_bps: u32,
    /// Checkers.
    pub checker_bps: u32,
}

/// One recorded change of the parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamsChange {
    /// Order of the change; 1 is the parameters the ledger was created with.
    pub seq: u64,
    /// When the change took effect (0 for the initial parameters).
    pub set_at: Timestamp,
    /// The parameters from then on.
    pub params: Params,
}

impl Default for RewardShares {
    fn default() -> Self {
        RewardShares { containers_bps: 7_000, checkers_bps: 2_000, indexers_bps: 1_000 }
    }
}

impl Default for SlashFractions {
    fn default() -> Self {
        SlashFractions { container_bps: 1_000, checker_bps: 1_000 }
    }
}

/// The default [`Params::min_container_stake`]: 100 ATH.
pub const DEFAULT_MIN_CONTAINER_STAKE: Amount = Amount::ath(100);

fn default_min_container_stake() -> Amount {
    DEFAULT_MIN_CONTAINER_STAKE
}

impl Default for Params {
    fn default() -> Self {
        Params {
            unbonding_secs: 7 * 86_400,
            epoch_secs: 15 * 60,
            fees: FeeSplit::default(),
            emission: EmissionSchedule::default(),
            rewards: RewardShares::default(),
            slash: SlashFractions::default(),
            min_container_stake: DEFAULT_MIN_CONTAINER_STAKE,
        }
    }
}

impl SlashFractions {
    /// The fraction for `role`, in basis points.
    pub fn bps(&self, role: StakeRole) -> u32 {
        match role {
            StakeRole::Container => self.container_bps,
            StakeRole::Checker => self.checker_bps,
            // Never slashed (`rules::slash` refuses the role first).
            StakeRole::Indexer => 0,
        }
    }
}

impl Params {
    /// Checks every field; the error names the field, what was expected and
    /// what was found. ([`FeeSplit`] is valid by construction.)
    pub fn validate(&self) -> Result<(), LedgerError> {
        let bad = |m: String| Err(LedgerError::InvalidParams(m));
        if self.unbonding_secs > YEAR_SECS {
            return bad(format!(
                "expected an unbonding period of at most {YEAR_SECS} seconds, found {}",
                self.unbonding_secs
            ));
        }
        if !(1..=YEAR_SECS).contains(&self.epoch_secs) {
            return bad(format!("expected an epoch length from 1 to {YEAR_SECS} seconds, found {}", self.epoch_secs));
        }
        self.emission.validate()?;
        let r = self.rewards;
        let sum = u64::from(r.containers_bps) + u64::from(r.checkers_bps) + u64::from(r.indexers_bps);
        if sum != u64::from(BPS) {
            return bad(format!(
                "expected reward shares containers + checkers + indexers = {BPS} basis points, found {sum}"
            ));
        }
        if self.min_container_stake > Amount::ath(1_000_000) {
            return bad(format!(
                "expected a minimum container stake of at most 1000000 ATH, found {}",
                self.min_container_stake
            ));
        }
        for (name, bps) in [("container", self.slash.container_bps), ("checker", self.slash.checker_bps)] {
            if bps > BPS {
                return bad(format!("expected the {name} slash fraction from 0 to {BPS} basis points, found {bps}"));
            }
        }
        Ok(())
    }

    /// Parses and validates parameters from TOML text (all fields required).
    pub fn from_toml(text: &str) -> Result<Params, LedgerError> {
        let p: Params = toml::from_str(text).map_err(|e| LedgerError::InvalidParams(e.message().trim().to_owned()))?;
        p.validate()?;
        Ok(p)
    }

    /// The parameters as TOML text.
    pub fn to_toml(&self) -> Result<String, LedgerError> {
        toml::to_string(self).map_err(|e| LedgerError::InvalidParams(e.to_string()))
    }

    /// The unbonding period in milliseconds.
    pub fn unbonding_ms(&self) -> u64 {
        self.unbonding_secs.saturating_mul(1000)
    }

    /// The epoch that contains `now`, for a network launched at `launch`
    /// (epoch 0 starts at `launch`; times before it are in epoch 0).
    pub fn epoch_at(&self, launch: Timestamp, now: Timestamp) -> u64 {
        now.0.saturating_sub(launch.0) / self.epoch_secs.max(1).saturating_mul(1000)
    }

    /// The emission of `epoch` for a mining pool whose genesis allocation is
    /// `pool` ([`crate::emission`]).
    pub fn emission(&self, pool: Amount, epoch: u64) -> Result<crate::EpochEmission, LedgerError> {
        self.emission.epoch(pool, self.epoch_secs, epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let p = Params::default();
        p.validate().unwrap();
        let text = p.to_toml().unwrap();
        assert_eq!(Params::from_toml(&text).unwrap(), p);
        assert_eq!(p.epoch_at(Timestamp(1_000), Timestamp(1_000 + 15 * 60 * 1000 * 3 + 5)), 3);
        assert_eq!(p.epoch_at(Timestamp(1_000), Timestamp(0)), 0);
    }

    #[test]
    fn invalid_params_say_what_is_wrong() {
        let d = Params::default();
        let cases: Vec<(Params, &str)> = vec![
            (Params { unbonding_secs: YEAR_SECS + 1, ..d }, "unbonding period of at most 31536000 seconds, found"),
            (Params { epoch_secs: 0, ..d }, "epoch length from 1"),
            (Params { emission: EmissionSchedule { years: 0, decay_bps: 1 }, ..d }, "emission years"),
            (
                Params { rewards: RewardShares { containers_bps: 7000, checkers_bps: 2000, indexers_bps: 2000 }, ..d },
                "= 10000 basis points, found 11000",
            ),
            (
                Params { slash: SlashFractions { container_bps: 10_001, checker_bps: 0 }, ..d },
                "container slash fraction",
            ),
        ];
        for (p, needle) in cases {
            let e = p.validate().unwrap_err();
            assert!(e.to_string().contains(needle), "expected {needle:?} in {e}");
        }
        let text = d.to_toml().unwrap().replace("checkers_bps = 2000", "checkers_bps = 2500");
        assert!(Params::from_toml(&text).unwrap_err().to_string().contains("found 10500"));
        let text = d.to_toml().unwrap().replace("provider = 9000", "provider = 9100");
        assert!(Params::from_toml(&text).unwrap_err().to_string().contains("fee split"), "fee split validated");
        assert!(Params::from_toml("epoch_secs = 900").unwrap_err().to_string().contains("missing field"));
    }
}
