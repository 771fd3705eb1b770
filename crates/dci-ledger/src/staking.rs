//! Staking vocabulary (R-LG2): who stakes, and stake on its way out.
//!
//! Containers and checkers bond stake per role. `unstake` moves stake into an
//! unbonding entry released `unbonding_secs` ([`crate::Params`]) after the
//! call's `now`; `withdraw_unbonded` returns every released entry to the
//! balance. Unbonding stake is still slashable (a report cannot be dodged by
//! unstaking) and is part of the supply.

use dci_model::{AccountId, Amount, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::LedgerError;

/// The roles that bond stake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StakeRole {
    /// A GPU host.
    Container,
    /// A verifier.
    Checker,
}

impl StakeRole {
    /// Both roles.
    pub const ALL: [StakeRole; 2] = [StakeRole::Container, StakeRole::Checker];

    /// `container` or `checker`.
    pub fn as_str(self) -> &'static str {
        match self {
            StakeRole::Container => "container",
            StakeRole::Checker => "checker",
        }
    }
}

impl fmt::Display for StakeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StakeRole {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "container" => Ok(StakeRole::Container),
            "checker" => Ok(StakeRole::Checker),
            other => Err(LedgerError::InvalidInput(format!(
                "expected a stake role `container` or `checker`, found {other:?}"
            ))),
        }
    }
}

/// Stake leaving a role: withdrawable from `release_at` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbondingEntry {
    /// Whose stake.
    pub account: AccountId,
    /// The role it was bonded for (slashable there until withdrawn).
    pub role: StakeRole,
    /// How much.
    pub amount: Amount,
    /// From when `withdraw_unbonded` returns it.
    pub release_at: Timestamp,
}

/// One bonded stake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeEntry {
    /// Whose stake.
    pub account: AccountId,
    /// For which role.
    pub role: StakeRole,
    /// How much is bonded.
    pub amount: Amount,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        for r in StakeRole::ALL {
            assert_eq!(r.to_string().parse::<StakeRole>().unwrap(), r);
        }
        let e = "indexer".parse::<StakeRole>().unwrap_err();
        assert!(e.to_string().contains("expected a stake role `container` or `checker`, found \"indexer\""), "{e}");
    }
}
