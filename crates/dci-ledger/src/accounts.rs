//! Well-known account names: genesis allocations, the mining, fee and
//! slashed pools, the treasury.

use dci_model::AccountId;

/// Team allocation (15% at genesis).
pub const TEAM: &str = "genesis:team";
/// Private sale allocation (15% at genesis).
pub const PRIVATE_SALE: &str = "genesis:private-sale";
/// Undistributed mining rewards (50% at genesis, released per epoch, R-LG3).
pub const MINING_POOL: &str = "pool:mining";
/// DAO foundation (16% at genesis; the seed's 17.5% would exceed 100%).
pub const DAO_FOUNDATION: &str = "dao:foundation";
/// Liquidity allocation (4% at genesis); devnet funds consumers from it.
pub const LIQUIDITY: &str = "genesis:liquidity";
/// The checkers' share of session fees, distributed per epoch.
pub const CHECKER_FEES: &str = "pool:checker-fees";
/// The indexers' share of session fees, distributed per epoch.
pub const INDEXER_FEES: &str = "pool:indexer-fees";
/// The protocol treasury's share of session fees.
pub const TREASURY: &str = "treasury:protocol";
/// Slashed funds, kept (never destroyed) until governance decides their use.
pub const SLASHED: &str = "pool:slashed";

/// The [`AccountId`] of one of the names above.
pub(crate) fn named(name: &'static str) -> AccountId {
    // Only called with the constants above, which are valid account ids
    // (checked by a test below).
    AccountId::new(name).unwrap_or_else(|e| unreachable!("{e}"))
}

/// [`LIQUIDITY`] as an account id.
pub fn liquidity() -> AccountId {
    named(LIQUIDITY)
}

/// [`MINING_POOL`] as an account id.
pub fn mining_pool() -> AccountId {
    named(MINING_POOL)
}

/// [`CHECKER_FEES`] as an account id.
pub fn checker_fees() -> AccountId {
    named(CHECKER_FEES)
}

/// [`INDEXER_FEES`] as an account id.
pub fn indexer_fees() -> AccountId {
    named(INDEXER_FEES)
}

/// [`TREASURY`] as an account id.
pub fn treasury() -> AccountId {
    named(TREASURY)
}

/// [`SLASHED`] as an account id.
pub fn slashed() -> AccountId {
    named(SLASHED)
}

#[cfg(test)]
mod tests {
    #[test]
    fn well_known_names_are_valid_account_ids() {
        for n in [
            super::TEAM,
            super::PRIVATE_SALE,
            super::MINING_POOL,
            super::DAO_FOUNDATION,
            super::LIQUIDITY,
            super::CHECKER_FEES,
            super::INDEXER_FEES,
            super::TREASURY,
            super::SLASHED,
        ] {
            assert!(dci_model::AccountId::new(n).is_ok(), "{n}");
        }
    }
}
