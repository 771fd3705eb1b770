//! How a session's charge is split among the provider, the checkers, the
//! indexers and the protocol treasury (R-LG2). The shares are parameters in
//! basis points; they sum to exactly 10,000.

use dci_model::Amount;
use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// Basis points in a whole.
pub const BPS: u32 = 10_000;

/// Fee split parameters in basis points (1/100 of a percent).
///
/// Defaults: provider 9000, checkers 500, indexers 200, treasury 300.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FeeSplitFile", into = "FeeSplitFile")]
pub struct FeeSplit {
    provider: u32,
    checkers: u32,
    indexers: u32,
    treasury: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeeSplitFile {
    provider: u32,
    checkers: u32,
    indexers: u32,
    treasury: u32,
}

impl TryFrom<FeeSplitFile> for FeeSplit {
    type Error = LedgerError;
    fn try_from(f: FeeSplitFile) -> Result<Self, Self::Error> {
        FeeSplit::new(f.provider, f.checkers, f.indexers, f.treasury)
    }
}

impl From<FeeSplit> for FeeSplitFile {
    fn from(f: FeeSplit) -> Self {
        FeeSplitFile { provider: f.provider, checkers: f.checkers, indexers: f.indexers, treasury: f.treasury }
    }
}

/// One charge, split. The parts sum to the charge exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// To the container's payout account (gets the rounding remainder).
    pub provider: Amount,
    /// To the checker fee pool.
    pub checkers: Amount,
    /// To the indexer fee pool.
    pub indexers: Amount,
    /// To the protocol treasury.
    pub treasury: Amount,
}

impl FeeSplit {
    /// Validates that the four shares sum to exactly [`BPS`].
    pub fn new(provider: u32, checkers: u32, indexers: u32, treasury: u32) -> Result<FeeSplit, LedgerError> {
        let sum = [provider, checkers, indexers, treasury].iter().map(|&x| u64::from(x)).sum::<u64>();
        if sum != u64::from(BPS) {
            return Err(LedgerError::InvalidFeeSplit(format!(
                "expected provider + checkers + indexers + treasury = {BPS} basis points, found {sum}"
            )));
        }
        Ok(FeeSplit { provider, checkers, indexers, treasury })
    }

    /// The provider's share in basis points.
    pub fn provider_bps(&self) -> u32 {
        self.provider
    }

    /// The checkers' share in basis points.
    pub fn checkers_bps(&self) -> u32 {
        self.checkers
    }

    /// The indexers' share in basis points.
    pub fn indexers_bps(&self) -> u32 {
        self.indexers
    }

    /// The treasury's share in basis points.
    pub fn treasury_bps(&self) -> u32 {
        self.treasury
    }

    /// Splits `charge`: each pool gets its share rounded down, the provider
    /// gets the rest, so nothing is created or lost.
    pub fn split(&self, charge: Amount) -> Result<Split, LedgerError> {
        let part = |bps: u32| charge.mul_div(u128::from(bps), u128::from(BPS));
        let checkers = part(self.checkers)?;
        let indexers = part(self.indexers)?;
        let treasury = part(self.treasury)?;
        let provider = charge.checked_sub(checkers)?.checked_sub(indexers)?.checked_sub(treasury)?;
        Ok(Split { provider, checkers, indexers, treasury })
    }
}

impl Default for FeeSplit {
    fn default() -> Self {
        FeeSplit { provider: 9000, checkers: 500, indexers: 200, treasury: 300 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_and_validation() {
        let d = FeeSplit::default();
        assert_eq!(FeeSplit::new(9000, 500, 200, 300).unwrap(), d);
        let e = FeeSplit::new(9000, 500, 200, 200).unwrap_err();
        assert!(e.to_string().contains("found 9900"), "{e}");
        assert!(FeeSplit::new(u32::MAX, 1, 0, 0).is_err());
        let s = d.split(Amount(10_000)).unwrap();
        assert_eq!(
            s,
            Split { provider: Amount(9000), checkers: Amount(500), indexers: Amount(200), treasury: Amount(300) }
        );
        // Rounding goes to the provider.
        let s = d.split(Amount(19)).unwrap();
        assert_eq!((s.provider, s.checkers, s.indexers, s.treasury), (Amount(19), Amount(0), Amount(0), Amount(0)));
    }

    proptest! {
        #[test]
        fn split_conserves_the_charge(charge in 0u128..dci_model::money::TOTAL_SUPPLY.0,
                                      a in 0u32..=BPS / 3, b in 0u32..=BPS / 3, c in 0u32..=BPS / 3) {
            let f = FeeSplit::new(BPS - a - b - c, a, b, c).unwrap();
            let s = f.split(Amount(charge)).unwrap();
            prop_assert_eq!(s.provider.0 + s.checkers.0 + s.indexers.0 + s.treasury.0, charge);
            prop_assert_eq!(s.checkers.0, charge * u128::from(a) / u128::from(BPS));
        }
    }
}
