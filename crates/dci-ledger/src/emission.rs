//! The emission schedule of the mining pool (R-LG3).
//!
//! Let `P` be the mining pool's genesis allocation (`pool:mining`, 50% of
//! the supply = 21,000,000,000 ATH with the default genesis). The schedule
//! emits exactly `P` over [`EmissionSchedule::years`] years (default 10) with
//! a yearly decay (default 8,000 bps: each year emits 80% of the year before),
//! in integer arithmetic only:
//!
//! 1. Year weights: `w_0 = 10^18`, `w_{y+1} = floor(w_y × decay_bps / 10,000)`.
//! 2. Year budgets: `B_y = floor(P × w_y / Σw)` for every year but the last;
//!    the last year gets `P − Σ B_y` (the rounding remainder), so the budgets
//!    sum to exactly `P`.
//! 3. Epochs: a year has `E = floor(31,536,000 s / epoch_secs)` epochs (35,040
//!    with the default 15-minute epochs); epoch `e` (numbered from 0 at
//!    launch) lies in year `e / E` and emits `floor(B_y / E)`; the year's last
//!    epoch also emits `B_y mod E`. Epochs after the last year emit nothing.
//!
//! So the emissions of all epochs sum to exactly `P` (a test checks it for
//! the default and a property test for random schedules), and never more.
//! With the defaults year 0 emits ≈ 4.705 × 10^9 ATH (≈ 134,281 ATH per
//! epoch) and year 9 ≈ 0.632 × 10^9 ATH.
//!
//! What an epoch emits but does not pay (a role without participants, the
//! rounding of shares) stays in `pool:mining`; it is not re-emitted by the
//! schedule. The ledger also never pays more than the pool holds: if
//! governance changes the schedule mid-way, an epoch's emission is capped by
//! the pool's balance.

use dci_model::Amount;
use serde::{Deserialize, Serialize};

use crate::LedgerError;
use crate::fees::BPS;

/// Seconds in a (365-day) year of the schedule.
pub const YEAR_SECS: u64 = 365 * 86_400;
/// Fixed-point scale of the year weights.
const WEIGHT_ONE: u128 = 1_000_000_000_000_000_000;
/// Longest schedule accepted (keeps `P × w_y` computable without overflow).
pub const MAX_YEARS: u32 = 100;

/// A yearly-decaying emission over a fixed number of years (see the module
/// docs for the exact arithmetic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmissionSchedule {
    /// Years over which the whole pool is emitted (1 to 100).
    pub years: u32,
    /// Each year's budget relative to the year before, in basis points
    /// (0 to 10,000; 10,000 = flat).
    pub decay_bps: u32,
}

impl Default for EmissionSchedule {
    fn default() -> Self {
        EmissionSchedule { years: 10, decay_bps: 8_000 }
    }
}

/// What one epoch emits, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEmission {
    /// The epoch.
    pub epoch: u64,
    /// Its year of the schedule (from 0).
    pub year: u64,
    /// Epochs per year.
    pub epochs_per_year: u64,
    /// The year's budget (zero after the schedule).
    pub year_budget: Amount,
    /// The epoch's emission.
    pub amount: Amount,
}

impl EmissionSchedule {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), LedgerError> {
        if !(1..=MAX_YEARS).contains(&self.years) {
            return Err(LedgerError::InvalidParams(format!(
                "expected emission years from 1 to {MAX_YEARS}, found {}",
                self.years
            )));
        }
        if self.decay_bps > BPS {
            return Err(LedgerError::InvalidParams(format!(
                "expected an emission decay from 0 to {BPS} basis points, found {}",
                self.decay_bps
            )));
        }
        Ok(())
    }

    /// The yearly budgets for a pool of `pool`; they sum to exactly `pool`.
    pub fn year_budgets(&self, pool: Amount) -> Result<Vec<Amount>, LedgerError> {
        self.validate()?;
        let mut weights = Vec::with_capacity(self.years as usize);
        let mut w = WEIGHT_ONE;
        for _ in 0..self.years {
            weights.push(w);
            w = w * u128::from(self.decay_bps) / u128::from(BPS);
        }
        // Σw ≤ 100 × 10^18, so P × w_y / Σw fits Amount::mul_div's split.
        let total: u128 = weights.iter().sum();
        let mut budgets = Vec::with_capacity(weights.len());
        let mut sum = Amount::ZERO;
        for w in &weights[..weights.len() - 1] {
            let b = pool.mul_div(*w, total)?;
            sum = sum.checked_add(b)?;
            budgets.push(b);
        }
        budgets.push(pool.checked_sub(sum)?);
        Ok(budgets)
    }

    /// The emission of `epoch` for a pool of `pool` with epochs of
    /// `epoch_secs` seconds.
    pub fn epoch(&self, pool: Amount, epoch_secs: u64, epoch: u64) -> Result<EpochEmission, LedgerError> {
        if !(1..=YEAR_SECS).contains(&epoch_secs) {
            return Err(LedgerError::InvalidParams(format!(
                "expected an epoch length from 1 to {YEAR_SECS} seconds, found {epoch_secs}"
            )));
        }
        let per_year = YEAR_SECS / epoch_secs;
        let year = epoch / per_year;
        let mut out =
            EpochEmission { epoch, year, epochs_per_year: per_year, year_budget: Amount::ZERO, amount: Amount::ZERO };
        if year >= u64::from(self.years) {
            return Ok(out);
        }
        let budget = self.year_budgets(pool)?[year as usize];
        let per = u128::from(per_year);
        let mut amount = budget.0 / per;
        if epoch % per_year == per_year - 1 {
            amount += budget.0 % per;
        }
        out.year_budget = budget;
        out.amount = Amount(amount);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dci_model::money::ONE_ATH;
    use proptest::prelude::*;

    const POOL: Amount = Amount::ath(21_000_000_000);

    #[test]
    fn default_schedule_emits_exactly_the_pool() {
        let s = EmissionSchedule::default();
        let budgets = s.year_budgets(POOL).unwrap();
        assert_eq!(budgets.len(), 10);
        assert_eq!(budgets.iter().map(|b| b.0).sum::<u128>(), POOL.0);
        // Decays by 20% a year (up to rounding).
        for pair in budgets.windows(2) {
            let ratio = pair[1].0 * 10_000 / pair[0].0;
            assert!((7_999..=8_001).contains(&ratio), "{ratio}");
        }
        assert_eq!(budgets[0].0 / ONE_ATH, 4_705_219_048);
        // Every epoch of the schedule, summed one by one.
        let e0 = s.epoch(POOL, 900, 0).unwrap();
        assert_eq!((e0.year, e0.epochs_per_year), (0, 35_040));
        assert_eq!(e0.amount.0 / ONE_ATH, 134_281);
        let mut total = 0u128;
        let per_year = e0.epochs_per_year;
        for (year, budget) in budgets.iter().enumerate() {
            let regular = budget.0 / u128::from(per_year);
            let last = s.epoch(POOL, 900, (year as u64 + 1) * per_year - 1).unwrap();
            let first = s.epoch(POOL, 900, year as u64 * per_year).unwrap();
            assert_eq!((first.year, first.amount.0), (year as u64, regular));
            assert_eq!(last.amount.0, regular + budget.0 % u128::from(per_year));
            total += regular * u128::from(per_year - 1) + last.amount.0;
        }
        assert_eq!(total, POOL.0);
        assert_eq!(s.epoch(POOL, 900, 10 * per_year).unwrap().amount, Amount::ZERO);
        assert_eq!(s.epoch(POOL, 900, u64::MAX).unwrap().amount, Amount::ZERO);
    }

    #[test]
    fn invalid_schedules_are_refused() {
        for (s, needle) in [
            (EmissionSchedule { years: 0, decay_bps: 8000 }, "found 0"),
            (EmissionSchedule { years: 101, decay_bps: 8000 }, "found 101"),
            (EmissionSchedule { years: 10, decay_bps: 10_001 }, "found 10001"),
        ] {
            let e = s.year_budgets(POOL).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e = EmissionSchedule::default().epoch(POOL, 0, 1).unwrap_err();
        assert!(e.to_string().contains("epoch length"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Summing every epoch one by one never exceeds the pool and, at the
        /// end of the schedule, equals it.
        #[test]
        fn all_epochs_sum_to_the_pool(
            years in 1u32..=6,
            decay_bps in 0u32..=10_000,
            epoch_secs in (YEAR_SECS / 300)..=YEAR_SECS,
            pool in 0u128..=dci_model::money::TOTAL_SUPPLY.0,
        ) {
            let s = EmissionSchedule { years, decay_bps };
            let pool = Amount(pool);
            let mut sum = 0u128;
            let mut epoch = 0;
            loop {
                let e = s.epoch(pool, epoch_secs, epoch).unwrap();
                if e.year >= u64::from(years) {
                    prop_assert_eq!(e.amount, Amount::ZERO);
                    break;
                }
                sum += e.amount.0;
                prop_assert!(sum <= pool.0);
                epoch += 1;
            }
            prop_assert_eq!(sum, pool.0);
        }
    }
}
