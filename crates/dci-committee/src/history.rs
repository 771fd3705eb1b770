//! The history term: public selection history and the weight it gives.
//!
//! Every node's weight is `units × factor`, where `units` is its stake in
//! whole ATH and `factor = clamp(1 + gain · deficit, min, max)` with
//! `deficit = expected − selected`: the seats its stake share would have won
//! at proportional rates so far, minus the seats it did win. A node selected
//! less often than its stake predicts weighs more; one selected more often
//! weighs less. Everything is integer fixed point and derived from public
//! data (stakes, committees), so every node computes the same weights.
//!
//! The deficit is kept in O(1) per epoch with a global accumulator
//! `A = Σ_epochs seats_e · 2^64 / units_e` (expected seats per stake unit,
//! Q64) and a per-node offset: `deficit_i = offset_i + units_i · A` (Q64).
//! A new node starts even (`offset = −units · A`); each seat it wins
//! subtracts `2^64`; a stake change from `u` to `u'` adds `(u − u') · A`, so
//! the deficit carries over and accrues at the new stake from then on.

use dci_model::{Amount, money::ONE_ATH};
use serde::{Deserialize, Serialize};

/// Stake is counted in whole ATH for sortition, capped at 2^40 ATH (more than
/// the total supply), so weights fit in 64 bits.
pub const MAX_UNITS: u64 = 1 << 40;

/// One in [`HistoryRule`]'s Q16 fixed point.
pub const FACTOR_ONE: u32 = 1 << 16;

/// A node's public selection history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Committees the node has been a member of.
    pub selected: u64,
    /// `deficit − units · accumulator` in seats (Q64); see the module docs.
    pub offset: i128,
}

impl History {
    /// A fresh history for `units` of stake at accumulator value
    /// `accumulator`: the node starts even (nothing expected, nothing won).
    pub fn starting_at(units: u64, accumulator: u128) -> History {
        History { selected: 0, offset: running(units, accumulator).saturating_neg() }
    }

    /// `expected − selected` in seats (Q64, signed).
    pub fn deficit_q64(&self, units: u64, accumulator: u128) -> i128 {
        self.offset.saturating_add(running(units, accumulator))
    }

    /// Records a seat won.
    pub fn won(&mut self) {
        self.selected += 1;
        self.offset = self.offset.saturating_sub(1 << 64);
    }

    /// Carries the deficit over a stake change from `old` to `new` units.
    pub fn restake(&mut self, old: u64, new: u64, accumulator: u128) {
        self.offset = self.offset.saturating_add(running(old, accumulator)).saturating_sub(running(new, accumulator));
    }
}

/// `units · accumulator` as a signed Q64 amount of seats (saturating).
fn running(units: u64, accumulator: u128) -> i128 {
    if accumulator < 1 << 86 && units <= MAX_UNITS {
        // The product is below 2^126: no overflow possible.
        return (units as u128 * accumulator) as i128;
    }
    (units as u128).saturating_mul(accumulator).min(i128::MAX as u128) as i128
}

/// The public rule turning history into a weight factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRule {
    /// Factor change per seat of deficit (Q16; 0 = stake weighting alone).
    pub gain_q16: u32,
    /// Lowest factor (Q16, ≥ 1).
    pub min_factor_q16: u32,
    /// Highest factor (Q16, ≤ 16 · 2^16).
    pub max_factor_q16: u32,
}

impl Default for HistoryRule {
    /// gain 0.5 per seat, factor within [1/4, 4].
    fn default() -> Self {
        HistoryRule { gain_q16: FACTOR_ONE / 2, min_factor_q16: FACTOR_ONE / 4, max_factor_q16: 4 * FACTOR_ONE }
    }
}

impl HistoryRule {
    /// Stake weighting alone (factor always 1).
    pub const STAKE_ONLY: HistoryRule =
        HistoryRule { gain_q16: 0, min_factor_q16: FACTOR_ONE, max_factor_q16: FACTOR_ONE };

    /// Checks the bounds: `1 ≤ min ≤ 1.0 ≤ max ≤ 16` in Q16.
    pub fn validate(&self) -> Result<(), String> {
        let ok = self.min_factor_q16 >= 1
            && self.min_factor_q16 <= FACTOR_ONE
            && self.max_factor_q16 >= FACTOR_ONE
            && self.max_factor_q16 <= 16 * FACTOR_ONE;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected 1 <= min_factor_q16 <= 65536 <= max_factor_q16 <= 1048576, found min {} and max {}",
                self.min_factor_q16, self.max_factor_q16
            ))
        }
    }

    /// The history factor (Q16) for a deficit of `deficit_q64` seats.
    pub fn factor_q16(&self, deficit_q64: i128) -> u32 {
        // Clamping the Q16 deficit to 64 bits changes nothing: beyond that
        // range any non-zero gain pins the factor at a bound anyway.
        let deficit_q16 = (deficit_q64 >> 48).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let f = FACTOR_ONE as i128 + ((self.gain_q16 as i128 * deficit_q16 as i128) >> 16);
        f.clamp(self.min_factor_q16 as i128, self.max_factor_q16 as i128) as u32
    }

    /// The sortition weight of a node with `units` stake units and history
    /// offset `offset` ([`History::offset`]).
    pub fn weight(&self, units: u64, offset: i128, accumulator: u128) -> u64 {
        if units == 0 {
            return 0;
        }
        let units = units.min(MAX_UNITS);
        let deficit = offset.saturating_add(running(units, accumulator));
        units.saturating_mul(self.factor_q16(deficit) as u64)
    }
}

/// A stake in sortition units (whole ATH, capped at [`MAX_UNITS`]).
pub fn units(stake: Amount) -> u64 {
    (stake.0 / ONE_ATH).min(MAX_UNITS as u128) as u64
}

/// The accumulator increment for an epoch with `seats` members over
/// `total_units` of stake: `seats · 2^64 / total_units` (0 if no stake).
pub fn accrual(seats: usize, total_units: u128) -> u128 {
    if total_units == 0 {
        return 0;
    }
    ((seats as u128) << 64) / total_units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_table() {
        let rule = HistoryRule::default();
        let seat = 1i128 << 64;
        for (deficit, want) in [
            (0, FACTOR_ONE),
            (seat, FACTOR_ONE * 3 / 2),
            (2 * seat, 2 * FACTOR_ONE),
            (-seat, FACTOR_ONE / 2),
            (-10 * seat, FACTOR_ONE / 4),
            (100 * seat, 4 * FACTOR_ONE),
            (i128::MAX, 4 * FACTOR_ONE),
            (i128::MIN, FACTOR_ONE / 4),
        ] {
            assert_eq!(rule.factor_q16(deficit), want, "deficit {deficit}");
        }
        assert_eq!(HistoryRule::STAKE_ONLY.factor_q16(100 * seat), FACTOR_ONE);
    }

    #[test]
    fn deficits_follow_stake_share_and_wins() {
        // 4 units out of 100, 10 seats per epoch, 50 epochs: 20 seats expected.
        let mut acc = 0u128;
        let mut h = History::starting_at(4, acc);
        for _ in 0..50 {
            acc += accrual(10, 100);
        }
        let seats = |d: i128| d as f64 / 2f64.powi(64);
        assert!((seats(h.deficit_q64(4, acc)) - 20.0).abs() < 1e-9);
        for _ in 0..25 {
            h.won();
        }
        assert_eq!(h.selected, 25);
        assert!((seats(h.deficit_q64(4, acc)) + 5.0).abs() < 1e-9);
        assert!(HistoryRule::default().weight(4, h.offset, acc) < 4 * FACTOR_ONE as u64);
        // Doubling the stake keeps the deficit, then accrues twice as fast.
        h.restake(4, 8, acc);
        assert!((seats(h.deficit_q64(8, acc)) + 5.0).abs() < 1e-9);
        for _ in 0..10 {
            acc += accrual(10, 100);
        }
        assert!((seats(h.deficit_q64(8, acc)) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn units_are_whole_ath_and_capped() {
        assert_eq!(units(Amount(ONE_ATH - 1)), 0);
        assert_eq!(units(Amount::ath(7)), 7);
        assert_eq!(units(Amount(u128::MAX)), MAX_UNITS);
        assert_eq!(HistoryRule::default().weight(0, 0, 0), 0);
    }

    #[test]
    fn rule_bounds_are_validated() {
        assert!(HistoryRule::default().validate().is_ok());
        assert!(HistoryRule::STAKE_ONLY.validate().is_ok());
        let bad = HistoryRule { min_factor_q16: 0, ..HistoryRule::default() };
        assert!(bad.validate().unwrap_err().contains("found min 0"));
        let bad = HistoryRule { max_factor_q16: 17 * FACTOR_ONE, ..HistoryRule::default() };
        assert!(bad.validate().is_err());
    }
}
