//! Epoch rewards (R-LG3): how one epoch's emission and the accumulated
//! checker and indexer fees are shared, and how any account's reward is
//! explained afterwards.
//!
//! The rule, for epoch `e` with emission `E` ([`crate::emission`], capped by
//! the balance of `pool:mining`):
//!
//! - Each kind of miner gets a budget `floor(E × share_bps / 10,000)` with the
//!   shares of [`crate::RewardShares`] (default containers 70%, checkers 20%,
//!   indexers 10%).
//! - Within a kind, every participant has a weight: containers
//!   `capacity_units × uptime_ppm` (verified capacity × uptime), checkers
//!   their correct inspections, indexers their served matches. A participant
//!   receives `floor(budget × weight / total weight)`.
//! - Checkers and indexers also share, by the same weights, everything held in
//!   `pool:checker-fees` / `pool:indexer-fees` (their part of session fees).
//! - Rewards are credited to the account's **pending rewards**, which
//!   `claim_rewards` moves to the spendable balance. Pending rewards are what
//!   a slash takes first ([`crate::slash`]).
//! - Whatever is not paid — the rounding of every share, and the whole budget
//!   of a kind without participants or with zero total weight — stays where
//!   it was: in `pool:mining` (not re-emitted by the schedule) or in the fee
//!   pool (shared again next epoch).
//!
//! An epoch is distributed at most once. Every input and result is recorded,
//! so [`RewardExplanation`] can show each number of the computation.

use dci_model::{AccountId, Amount};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

use crate::emission::EpochEmission;
use crate::fees::BPS;
use crate::math::{mul_div_floor, u128_text};
use crate::{LedgerError, Params, accounts};

/// Uptime in parts per million: 1,000,000 = always up.
pub const PPM: u32 = 1_000_000;

/// What the miners did in one epoch, as verified by checkers and indexers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInput {
    /// Containers and their verified capacity and uptime.
    pub containers: Vec<ContainerWork>,
    /// Checkers and their correct inspections.
    pub checkers: Vec<CheckerWork>,
    /// Indexers and their served matches.
    pub indexers: Vec<IndexerWork>,
}

/// A container's verified capacity and uptime in an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerWork {
    /// Its payout account.
    pub account: AccountId,
    /// Verified capacity, in the checker's capacity units.
    pub capacity_units: u64,
    /// Uptime in the epoch, parts per million (at most 1,000,000).
    pub uptime_ppm: u32,
}

/// A checker's correct inspections in an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckerWork {
    /// Its account.
    pub account: AccountId,
    /// Inspections whose verdict the committee confirmed.
    pub correct_inspections: u64,
}

/// An indexer's served matches in an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexerWork {
    /// Its account.
    pub account: AccountId,
    /// Matches it served.
    pub served_matches: u64,
}

/// The three kinds of miner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardRole {
    /// By capacity × uptime.
    Container,
    /// By correct inspections.
    Checker,
    /// By served matches.
    Indexer,
}

impl RewardRole {
    /// In the order of [`EpochSummary::roles`].
    pub const ALL: [RewardRole; 3] = [RewardRole::Container, RewardRole::Checker, RewardRole::Indexer];

    /// `container`, `checker` or `indexer`.
    pub fn as_str(self) -> &'static str {
        match self {
            RewardRole::Container => "container",
            RewardRole::Checker => "checker",
            RewardRole::Indexer => "indexer",
        }
    }

    /// The pool whose fees this role shares, if any.
    pub fn fee_pool(self) -> Option<AccountId> {
        match self {
            RewardRole::Container => None,
            RewardRole::Checker => Some(accounts::checker_fees()),
            RewardRole::Indexer => Some(accounts::indexer_fees()),
        }
    }

    fn share_bps(self, p: &Params) -> u32 {
        match self {
            RewardRole::Container => p.rewards.containers_bps,
            RewardRole::Checker => p.rewards.checkers_bps,
            RewardRole::Indexer => p.rewards.indexers_bps,
        }
    }
}

impl fmt::Display for RewardRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The measured work a weight was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardBasis {
    /// weight = capacity_units × uptime_ppm.
    Capacity {
        /// Verified capacity units.
        capacity_units: u64,
        /// Uptime, ppm.
        uptime_ppm: u32,
    },
    /// weight = correct inspections.
    Inspections(u64),
    /// weight = served matches.
    Matches(u64),
}

impl RewardBasis {
    /// The weight.
    pub fn weight(self) -> u128 {
        match self {
            RewardBasis::Capacity { capacity_units, uptime_ppm } => u128::from(capacity_units) * u128::from(uptime_ppm),
            RewardBasis::Inspections(n) | RewardBasis::Matches(n) => u128::from(n),
        }
    }
}

/// One kind of miner in one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSummary {
    /// Which kind.
    pub role: RewardRole,
    /// Its share of the emission, basis points.
    pub share_bps: u32,
    /// `floor(emitted × share_bps / 10,000)`.
    pub budget: Amount,
    /// What its fee pool held when the epoch was distributed (zero for
    /// containers, which are paid per session).
    pub fee_budget: Amount,
    /// Participants listed.
    pub participants: u64,
    /// Sum of their weights.
    #[serde(with = "u128_text")]
    pub total_weight: u128,
    /// Mining rewards paid to them.
    pub paid: Amount,
    /// Fees paid to them.
    pub fees_paid: Amount,
}

/// One distributed epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// The epoch.
    pub epoch: u64,
    /// What the schedule releases for it.
    pub schedule: EpochEmission,
    /// What was emitted: the schedule's amount, capped by `pool:mining`.
    pub emitted: Amount,
    /// Per kind of miner, in [`RewardRole::ALL`] order.
    pub roles: Vec<RoleSummary>,
    /// Mining rewards paid in total.
    pub paid: Amount,
    /// `emitted − paid`: stays in `pool:mining`.
    pub kept: Amount,
}

/// One account's reward for one role in one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardLine {
    /// The role.
    pub role: RewardRole,
    /// What it did.
    pub basis: RewardBasis,
    /// Its weight.
    #[serde(with = "u128_text")]
    pub weight: u128,
    /// `floor(role budget × weight / total weight)`.
    pub mining: Amount,
    /// `floor(fee budget × weight / total weight)`.
    pub fees: Amount,
}

/// How an account's reward for an epoch was computed: every number of the
/// rule, so anyone can recompute it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardExplanation {
    /// The account.
    pub account: AccountId,
    /// The epoch and its role totals.
    pub summary: EpochSummary,
    /// The account's lines (none if it was not in the epoch's input).
    pub lines: Vec<RewardLine>,
    /// Sum of its mining rewards and fees.
    pub total: Amount,
}

/// An account's reward in one epoch (history view).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardEntry {
    /// The epoch.
    pub epoch: u64,
    /// The line.
    pub line: RewardLine,
}

/// The outcome of the rule before it touches any account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribution {
    /// The epoch's totals per role.
    pub summary: EpochSummary,
    /// Each account's line, in role order then input order.
    pub lines: Vec<(AccountId, RewardLine)>,
}

fn invalid(m: String) -> LedgerError {
    LedgerError::InvalidEpochInput(m)
}

/// Applies the rule. `pool_balance` caps the emission; `fee_pools` are the
/// balances of the checker and indexer fee pools. Pure: every backend (the
/// embedded ledger, the EVM one) computes an epoch's lines with it, so both
/// pay the same amounts to the same accounts.
pub fn distribute(
    params: &Params,
    schedule: EpochEmission,
    pool_balance: Amount,
    fee_pools: [Amount; 2],
    input: &EpochInput,
) -> Result<Distribution, LedgerError> {
    let emitted = schedule.amount.min(pool_balance);
    let mut per_role: Vec<(RewardRole, Vec<(AccountId, RewardBasis)>)> = Vec::with_capacity(3);
    let mut containers = Vec::with_capacity(input.containers.len());
    for c in &input.containers {
        if c.uptime_ppm > PPM {
            return Err(invalid(format!(
                "expected the uptime of container {} to be at most {PPM} ppm, found {}",
                c.account, c.uptime_ppm
            )));
        }
        let basis = RewardBasis::Capacity { capacity_units: c.capacity_units, uptime_ppm: c.uptime_ppm };
        containers.push((c.account.clone(), basis));
    }
    per_role.push((RewardRole::Container, containers));
    let checkers =
        input.checkers.iter().map(|c| (c.account.clone(), RewardBasis::Inspections(c.correct_inspections))).collect();
    per_role.push((RewardRole::Checker, checkers));
    let indexers = input.indexers.iter().map(|c| (c.account.clone(), RewardBasis::Matches(c.served_matches))).collect();
    per_role.push((RewardRole::Indexer, indexers));

    let mut roles = Vec::with_capacity(3);
    let mut lines = Vec::new();
    let mut paid = Amount::ZERO;
    for (role, entries) in per_role {
        let mut seen = HashSet::with_capacity(entries.len());
        let mut total_weight = 0u128;
        for (account, basis) in &entries {
            if !seen.insert(account) {
                return Err(invalid(format!("expected each {role} once in the epoch input, found {account} twice")));
            }
            total_weight = total_weight
                .checked_add(basis.weight())
                .ok_or_else(|| invalid(format!("the total {role} weight overflows 128 bits")))?;
        }
        let share_bps = role.share_bps(params);
        let budget = emitted.mul_div(u128::from(share_bps), u128::from(BPS))?;
        let fee_budget = match role {
            RewardRole::Container => Amount::ZERO,
            RewardRole::Checker => fee_pools[0],
            RewardRole::Indexer => fee_pools[1],
        };
        let mut summary = RoleSummary {
            role,
            share_bps,
            budget,
            fee_budget,
            participants: entries.len() as u64,
            total_weight,
            paid: Amount::ZERO,
            fees_paid: Amount::ZERO,
        };
        for (account, basis) in entries {
            let weight = basis.weight();
            let part = |of: Amount| -> Result<Amount, LedgerError> {
                if total_weight == 0 {
                    return Ok(Amount::ZERO);
                }
                // weight ≤ total_weight, so the quotient is at most `of`.
                mul_div_floor(of.0, weight, total_weight)
                    .map(Amount)
                    .ok_or(LedgerError::Amount(dci_model::AmountError::Overflow))
            };
            let line = RewardLine { role, basis, weight, mining: part(budget)?, fees: part(fee_budget)? };
            summary.paid = summary.paid.checked_add(line.mining)?;
            summary.fees_paid = summary.fees_paid.checked_add(line.fees)?;
            lines.push((account, line));
        }
        paid = paid.checked_add(summary.paid)?;
        roles.push(summary);
    }
    let kept = emitted.checked_sub(paid)?;
    Ok(Distribution { summary: EpochSummary { epoch: schedule.epoch, schedule, emitted, roles, paid, kept }, lines })
}

impl RewardExplanation {
    /// The role summary a line belongs to.
    pub fn role(&self, role: RewardRole) -> Option<&RoleSummary> {
        self.summary.roles.iter().find(|r| r.role == role)
    }
}

impl fmt::Display for RewardExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        let sch = &s.schedule;
        writeln!(
            f,
            "epoch {}: year {} of the emission schedule ({} epochs a year, year budget {} ATH)",
            s.epoch, sch.year, sch.epochs_per_year, sch.year_budget
        )?;
        write!(f, "  epoch emission {} ATH", sch.amount)?;
        if s.emitted != sch.amount {
            write!(f, ", capped at the {} ATH left in {}", s.emitted, accounts::MINING_POOL)?;
        }
        writeln!(f)?;
        if self.lines.is_empty() {
            writeln!(f, "  {} was not in the epoch's input: no reward", self.account)?;
        }
        for line in &self.lines {
            let Some(role) = self.role(line.role) else { continue };
            let weight = match line.basis {
                RewardBasis::Capacity { capacity_units, uptime_ppm } => {
                    format!("capacity {capacity_units} units × uptime {uptime_ppm} ppm = {}", line.weight)
                }
                RewardBasis::Inspections(n) => format!("{n} correct inspections"),
                RewardBasis::Matches(n) => format!("{n} served matches"),
            };
            writeln!(
                f,
                "  {} share {} bps of the emission = {} ATH, shared by {} {}s with total weight {}",
                line.role, role.share_bps, role.budget, role.participants, line.role, role.total_weight
            )?;
            writeln!(f, "    weight of {}: {weight}", self.account)?;
            writeln!(
                f,
                "    mining reward = floor({} × {} / {}) base units = {} ATH",
                role.budget.0, line.weight, role.total_weight, line.mining
            )?;
            if let Some(pool) = line.role.fee_pool() {
                writeln!(
                    f,
                    "    fees from {pool} (held {} ATH) = floor({} × {} / {}) base units = {} ATH",
                    role.fee_budget, role.fee_budget.0, line.weight, role.total_weight, line.fees
                )?;
            }
        }
        writeln!(f, "  total credited to pending rewards of {}: {} ATH", self.account, self.total)?;
        write!(
            f,
            "  rounding and unclaimed shares of the epoch: {} ATH stay in {}; unpaid fees stay in their fee pools",
            s.kept,
            accounts::MINING_POOL
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(s: &str) -> AccountId {
        AccountId::new(s).unwrap()
    }

    fn schedule(amount: u128) -> EpochEmission {
        EpochEmission {
            epoch: 3,
            year: 0,
            epochs_per_year: 35_040,
            year_budget: Amount(amount),
            amount: Amount(amount),
        }
    }

    #[test]
    fn shares_follow_the_weights_and_remainders_stay() {
        let input = EpochInput {
            containers: vec![
                ContainerWork { account: acc("node:a"), capacity_units: 3, uptime_ppm: PPM },
                ContainerWork { account: acc("node:b"), capacity_units: 1, uptime_ppm: PPM / 2 },
            ],
            checkers: vec![CheckerWork { account: acc("node:c"), correct_inspections: 5 }],
            indexers: vec![],
        };
        let d =
            distribute(&Params::default(), schedule(1_000), Amount(10_000), [Amount(7), Amount(9)], &input).unwrap();
        // Containers: budget 700, weights 3,000,000 and 500,000.
        let got: Vec<_> = d.lines.iter().map(|(a, l)| (a.as_str(), l.role, l.mining.0, l.fees.0)).collect();
        assert_eq!(
            got,
            vec![
                ("node:a", RewardRole::Container, 600, 0),
                ("node:b", RewardRole::Container, 100, 0),
                ("node:c", RewardRole::Checker, 200, 7),
            ]
        );
        // The indexers' 100 has nobody to go to: it stays in the pool.
        assert_eq!((d.summary.paid, d.summary.kept), (Amount(900), Amount(100)));
        assert_eq!(d.summary.roles[2].fees_paid, Amount::ZERO);
    }

    #[test]
    fn the_emission_is_capped_by_the_pool() {
        let input = EpochInput {
            containers: vec![ContainerWork { account: acc("node:a"), capacity_units: 1, uptime_ppm: 1 }],
            ..EpochInput::default()
        };
        let d = distribute(&Params::default(), schedule(1_000), Amount(10), [Amount::ZERO; 2], &input).unwrap();
        assert_eq!((d.summary.emitted, d.summary.paid, d.summary.kept), (Amount(10), Amount(7), Amount(3)));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let c = |a: &str, u| ContainerWork { account: acc(a), capacity_units: 1, uptime_ppm: u };
        let cases = [
            (EpochInput { containers: vec![c("node:a", PPM + 1)], ..Default::default() }, "at most 1000000 ppm"),
            (EpochInput { containers: vec![c("node:a", 1), c("node:a", 2)], ..Default::default() }, "twice"),
            (
                EpochInput {
                    checkers: vec![
                        CheckerWork { account: acc("node:a"), correct_inspections: u64::MAX },
                        CheckerWork { account: acc("node:b"), correct_inspections: 1 },
                    ],
                    ..Default::default()
                },
                "",
            ),
        ];
        for (input, needle) in cases {
            let r = distribute(&Params::default(), schedule(1_000), Amount(10_000), [Amount::ZERO; 2], &input);
            if needle.is_empty() {
                // Large weights are fine: the product is computed in 256 bits.
                assert!(r.is_ok());
            } else {
                let e = r.err().unwrap();
                assert!(e.to_string().contains(needle), "{e}");
            }
        }
    }
}
