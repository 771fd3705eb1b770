//! The epoch reward rule of `dci_ledger::rewards` (crate-private there), so
//! the EVM backend computes the same lines as the embedded one. Keep in step
//! with dci-ledger; the e2e test compares both backends on one epoch.

use std::collections::HashSet;

use dci_ledger::fees::BPS;
use dci_ledger::rewards::PPM;
use dci_ledger::{
    EpochEmission, EpochInput, EpochSummary, LedgerError, Params, RewardBasis, RewardLine, RewardRole, RoleSummary,
};
use dci_model::{AccountId, Amount};

fn invalid(m: String) -> LedgerError {
    LedgerError::InvalidEpochInput(m)
}

/// floor(a × b / c) in 256 bits; `None` if the result does not fit 128 bits.
fn mul_div(a: u128, b: u128, c: u128) -> Option<u128> {
    use alloy::primitives::U256;
    let r = U256::from(a).checked_mul(U256::from(b))?.checked_div(U256::from(c))?;
    u128::try_from(r).ok()
}

/// Applies the rule; returns the summary and each account's lines.
pub(crate) fn distribute(
    params: &Params,
    schedule: EpochEmission,
    pool_balance: Amount,
    fee_pools: [Amount; 2],
    input: &EpochInput,
) -> Result<(EpochSummary, Vec<(AccountId, RewardLine)>), LedgerError> {
    let emitted = schedule.amount.min(pool_balance);
    let mut containers = Vec::with_capacity(input.containers.len());
    for c in &input.containers {
        if c.uptime_ppm > PPM {
            return Err(invalid(format!(
                "expected the uptime of container {} to be at most {PPM} ppm, found {}",
                c.account, c.uptime_ppm
            )));
        }
        containers.push((
            c.account.clone(),
            RewardBasis::Capacity { capacity_units: c.capacity_units, uptime_ppm: c.uptime_ppm },
        ));
    }
    let checkers =
        input.checkers.iter().map(|c| (c.account.clone(), RewardBasis::Inspections(c.correct_inspections))).collect();
    let indexers = input.indexers.iter().map(|c| (c.account.clone(), RewardBasis::Matches(c.served_matches))).collect();
    let per_role: [(RewardRole, Vec<(AccountId, RewardBasis)>); 3] =
        [(RewardRole::Container, containers), (RewardRole::Checker, checkers), (RewardRole::Indexer, indexers)];
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
        let share_bps = match role {
            RewardRole::Container => params.rewards.containers_bps,
            RewardRole::Checker => params.rewards.checkers_bps,
            RewardRole::Indexer => params.rewards.indexers_bps,
        };
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
                mul_div(of.0, weight, total_weight)
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
    Ok((EpochSummary { epoch: schedule.epoch, schedule, emitted, roles, paid, kept }, lines))
}
