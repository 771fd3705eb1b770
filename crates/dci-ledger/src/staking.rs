//! Staking vocabulary (R-LG2): who stakes, and stake on its way out.
//!
//! Containers, checkers and indexers bond stake per role (an indexer's is
//! the Sybil cost of its place in the chain's endpoint registry; it is never
//! slashed: no evidence convicts an indexer). `unstake` moves stake into an
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
    /// A matcher (its place in the chain's endpoint registry).
    Indexer,
}

impl StakeRole {
    /// Every role.
    pub const ALL: [StakeRole; 3] = [StakeRole::Container, StakeRole::Checker, StakeRole::Indexer];

    /// The role's number on the wire and on chain: 0 container, 1 checker,
    /// 2 indexer.
    pub fn code(self) -> u8 {
        match self {
            StakeRole::Container => 0,
            StakeRole::Checker => 1,
            StakeRole::Indexer => 2,
        }
    }

    /// The role of number `code` ([`StakeRole::code`]).
    pub fn from_code(code: u8) -> Option<StakeRole> {
        StakeRole::ALL.into_iter().find(|r| r.code() == code)
    }

    /// `container`, `checker` or `indexer`.
    pub fn as_str(self) -> &'static str {
        match self {
            StakeRole::Container => "container",
            StakeRole::Checker => "checker",
            StakeRole::Indexer => "indexer",
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
            "indexer" => Ok(StakeRole::Indexer),
            other => Err(LedgerError::InvalidInput(format!(
                "expected a stake role `container`, `checker` or `indexer`, found {other:?}"
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
        let e = "gateway".parse::<StakeRole>().unwrap_err();
        assert!(
            e.to_string().contains("expected a stake role `container`, `checker` or `indexer`, found \"gateway\""),
            "{e}"
        );
    }
}
