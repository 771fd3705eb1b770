//! The money rules of a settle and of a slash, written once. Every backend
//! (the embedded ledger, the EVM backend's simulation of a batch) calls
//! these pure functions and only moves the amounts they return, so the two
//! cannot disagree about who pays what; the Solidity contract implements the
//! same rules (`contracts/src/Staking.sol`, `_slashTake`) and checks what it
//! cannot recompute (a settle's split) for conservation.
//!
//! [`settle`]: what a session's settlement charges, refunds and splits.
//!
//! ```text
//! charged       = min(billed + extra, escrow)        billed: the receipt's amount
//! extra_charged = charged − min(billed, escrow)      the receipt is paid first
//! refunded      = escrow − charged
//! shortfall     = billed + extra − charged
//! charged       = provider + checkers + indexers + treasury   (the fee split)
//! ```
//!
//! [`slash`]: what a penalty takes, and from where.
//!
//! ```text
//! from_rewards   = min(amount, pending)
//! cap            = floor((stake + Σ unbonding) × slash_bps / 10,000)
//! from_bonded    = min(amount − from_rewards, cap)
//! from_stake     = min(from_bonded, stake)
//! from_unbonding = from_bonded − from_stake
//! uncollected    = amount − from_rewards − from_bonded
//! ```
//!
//! `from_unbonding` is taken from the role's unbonding entries latest
//! release first; among entries released at the same time, the smallest
//! first. That order depends only on the entries, not on how a backend
//! stores them (SQLite rows, the contract's array reordered by swap-remove),
//! so every backend leaves the same entries behind.
//!
//! Bounds both backends keep, so that every loop over an account's entries
//! (the contract's slash) is bounded: [`unbonding_room`] — at most
//! [`MAX_UNBONDING`] unbonding entries per account and role; and
//! [`committee`] — a committee is published for an epoch after the latest
//! one, with 1 to [`MAX_COMMITTEE`] distinct, non-zero members.

use dci_model::{AccountId, Amount, SessionId, Timestamp};

use crate::fees::BPS;
use crate::slash::{SlashReport, Slashed};
use crate::{FeeSplit, LedgerError, SlashFractions, StakeRole, accounts};

/// Unbonding entries an account may have per role (the contract's
/// `MAX_UNBONDING`).
pub const MAX_UNBONDING: usize = 16;

/// Members a committee may have (the contract's `MAX_COMMITTEE`).
pub const MAX_COMMITTEE: usize = 256;

/// May `account`, which has `entries` unbonding entries in `role`, start
/// one more? [`LedgerError::TooManyUnbonding`] at [`MAX_UNBONDING`].
pub fn unbonding_room(account: &AccountId, role: StakeRole, entries: usize) -> Result<(), LedgerError> {
    if entries >= MAX_UNBONDING {
        return Err(LedgerError::TooManyUnbonding { account: account.clone(), role, max: MAX_UNBONDING as u64 });
    }
    Ok(())
}

/// May `members` (chain signer addresses) be recorded as the committee of
/// `epoch`, the latest committee recorded being that of `latest`? The epoch
/// must come after it ([`LedgerError::CommitteeEpochNotNewer`]), and the
/// members be 1 to [`MAX_COMMITTEE`], none zero, none twice
/// ([`LedgerError::InvalidCommittee`]). Who signed it is the backend's to
/// check (the contract: ⌈2n/3⌉ of the latest committee).
pub fn committee(epoch: u64, members: &[[u8; 20]], latest: Option<u64>) -> Result<(), LedgerError> {
    if let Some(latest) = latest.filter(|l| epoch <= *l) {
        return Err(LedgerError::CommitteeEpochNotNewer { epoch, latest });
    }
    let bad = |why: String| Err(LedgerError::InvalidCommittee { epoch, why });
    if members.is_empty() || members.len() > MAX_COMMITTEE {
        return bad(format!("expected 1 to {MAX_COMMITTEE} members, found {}", members.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in members {
        if *m == [0; 20] {
            return bad("expected members' addresses, found the zero address".into());
        }
        if !seen.insert(m) {
            return bad(format!("expected each member once, found 0x{} twice", hex::encode(m)));
        }
    }
    Ok(())
}

/// What a settlement takes from an escrow, before the fee split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    /// `min(billed + extra, escrow)`.
    pub charged: Amount,
    /// The part of `charged` that paid `extra`.
    pub extra_charged: Amount,
    /// `escrow − charged`.
    pub refunded: Amount,
    /// `billed + extra − charged`.
    pub shortfall: Amount,
}

/// What a settlement of `billed` (the receipt's amount) plus `extra` takes
/// from `escrow`: the receipt first, then the extra. The gateway uses it to
/// know, before it asks the ledger, what a failed placement leaves of an
/// escrow. An error only if `billed + extra` overflows.
pub fn charge(billed: Amount, extra: Amount, escrow: Amount) -> Result<Charge, LedgerError> {
    let asked = billed.checked_add(extra)?;
    let for_receipt = billed.min(escrow);
    let extra_charged = extra.min(escrow.checked_sub(for_receipt)?);
    let charged = for_receipt.checked_add(extra_charged)?;
    Ok(Charge {
        charged,
        extra_charged,
        refunded: escrow.checked_sub(charged)?,
        shortfall: asked.checked_sub(charged)?,
    })
}

/// The amounts of one settlement: [`charge`], and the whole charge split by
/// `fees`.
pub fn settle(
    session: SessionId,
    billed: Amount,
    extra: Amount,
    escrow: Amount,
    fees: &FeeSplit,
) -> Result<crate::Settled, LedgerError> {
    let c = charge(billed, extra, escrow)?;
    let split = fees.split(c.charged)?;
    Ok(crate::Settled {
        session,
        charged: c.charged,
        extra_charged: c.extra_charged,
        provider: split.provider,
        checkers: split.checkers,
        indexers: split.indexers,
        treasury: split.treasury,
        refunded: c.refunded,
        shortfall: c.shortfall,
    })
}

/// What an offender holds in the role a report punishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slashable {
    /// Pending rewards (all roles: rewards are per account).
    pub pending: Amount,
    /// Bonded stake in the role.
    pub stake: Amount,
    /// The role's unbonding entries as (release time, amount), in any order.
    pub unbonding: Vec<(Timestamp, Amount)>,
}

/// What a slash takes, by the rule of the module docs.
/// `from_rewards + from_stake + from_unbonding + uncollected` = the amount
/// asked; `from_stake + from_unbonding ≤ cap`; `unbonding_takes` sums to
/// `from_unbonding`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlashTake {
    /// Taken from pending rewards.
    pub from_rewards: Amount,
    /// Taken from bonded stake.
    pub from_stake: Amount,
    /// Taken from unbonding entries.
    pub from_unbonding: Amount,
    /// Asked but not taken.
    pub uncollected: Amount,
    /// The most stake + unbonding this report may take.
    pub cap: Amount,
    /// What is taken from each of [`Slashable::unbonding`], in its order.
    pub unbonding_takes: Vec<Amount>,
}

impl SlashTake {
    /// Everything taken (to `pool:slashed`).
    pub fn taken(&self) -> Amount {
        Amount(self.from_rewards.0 + self.from_stake.0 + self.from_unbonding.0)
    }

    /// The outcome of applying `report` with this take and `signers` valid
    /// committee signatures (`seq` 0: the embedded ledger numbers it).
    pub fn slashed(&self, report: &SlashReport, signers: u64) -> Slashed {
        Slashed {
            seq: 0,
            offender: report.offender.clone(),
            role: report.role,
            epoch: report.epoch,
            evidence_hash: report.evidence_hash,
            amount: report.amount,
            from_rewards: self.from_rewards,
            from_stake: self.from_stake,
            from_unbonding: self.from_unbonding,
            uncollected: self.uncollected,
            signers,
            to: accounts::slashed(),
        }
    }
}

/// Refuses a slash of a role that is never slashed: an indexer's stake (no
/// evidence scheme convicts an indexer; its stake is only the Sybil cost of
/// its registry entry). The contract refuses it too (`RoleNotSlashable`).
pub fn slashable(role: StakeRole) -> Result<(), LedgerError> {
    match role {
        StakeRole::Container | StakeRole::Checker => Ok(()),
        StakeRole::Indexer => Err(LedgerError::InvalidInput(
            "expected a slash of container or checker stake, found indexer stake (never slashed)".into(),
        )),
    }
}

/// What `report` takes from `held`, by the rule of the module docs and the
/// role's fraction in `fractions`. [`LedgerError::NothingToSlash`] if the
/// offender holds nothing at all in the role (no pending rewards, stake or
/// unbonding stake).
pub fn slash(report: &SlashReport, held: &Slashable, fractions: &SlashFractions) -> Result<SlashTake, LedgerError> {
    slashable(report.role)?;
    let unbonding = held.unbonding.iter().try_fold(Amount::ZERO, |s, (_, a)| s.checked_add(*a))?;
    if held.pending.is_zero() && held.stake.is_zero() && unbonding.is_zero() {
        return Err(LedgerError::NothingToSlash { offender: report.offender.clone(), role: report.role });
    }
    let from_rewards = held.pending.min(report.amount);
    let rest = report.amount.checked_sub(from_rewards)?;
    let cap = held.stake.checked_add(unbonding)?.mul_div(u128::from(fractions.bps(report.role)), u128::from(BPS))?;
    let from_bonded = rest.min(cap);
    let from_stake = from_bonded.min(held.stake);
    let from_unbonding = from_bonded.checked_sub(from_stake)?;
    let mut order: Vec<usize> = (0..held.unbonding.len()).collect();
    order.sort_by_key(|&i| {
        let (release, amount) = held.unbonding[i];
        (std::cmp::Reverse(release), amount)
    });
    let mut unbonding_takes = vec![Amount::ZERO; held.unbonding.len()];
    let mut left = from_unbonding;
    for i in order {
        if left.is_zero() {
            break;
        }
        let take = held.unbonding[i].1.min(left);
        unbonding_takes[i] = take;
        left = left.checked_sub(take)?;
    }
    Ok(SlashTake {
        from_rewards,
        from_stake,
        from_unbonding,
        uncollected: rest.checked_sub(from_bonded)?,
        cap,
        unbonding_takes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StakeRole;
    use dci_model::AccountId;
    use proptest::prelude::*;

    const FRACTIONS: SlashFractions = SlashFractions { container_bps: 1_000, checker_bps: 2_500 };

    /// (billed, extra, escrow) -> (charged, extra_charged, refunded, shortfall).
    type SettleCase = ((u128, u128, u128), (u128, u128, u128, u128));

    /// The cases of [`SettleCase`], with the default split (90/5/2/3) of the
    /// charge checked on the side.
    #[test]
    fn settle_charges_the_receipt_then_the_extra_within_the_escrow() {
        let cases: [SettleCase; 9] = [
            ((600, 0, 1_000), (600, 0, 400, 0)),       // a receipt within the escrow
            ((1_500, 0, 1_000), (1_000, 0, 0, 500)),   // beyond it: capped, shortfall
            ((600, 300, 1_000), (900, 300, 100, 0)),   // extra within the escrow
            ((600, 700, 1_000), (1_000, 400, 0, 300)), // extra beyond it: capped
            ((1_000, 50, 1_000), (1_000, 0, 0, 50)),   // no escrow left for the extra
            ((1_200, 50, 1_000), (1_000, 0, 0, 250)),  // nor for the receipt's excess
            ((0, 400, 1_000), (400, 400, 600, 0)),     // tokens only
            ((0, 0, 1_000), (0, 0, 1_000, 0)),         // nothing used
            ((0, 0, 0), (0, 0, 0, 0)),                 // an empty escrow
        ];
        let fees = FeeSplit::default();
        for ((billed, extra, escrow), (charged, extra_charged, refunded, shortfall)) in cases {
            let s = settle(SessionId([1; 16]), Amount(billed), Amount(extra), Amount(escrow), &fees).unwrap();
            let got = (s.charged.0, s.extra_charged.0, s.refunded.0, s.shortfall.0);
            assert_eq!(
                got,
                (charged, extra_charged, refunded, shortfall),
                "billed {billed} extra {extra} escrow {escrow}"
            );
            let split = fees.split(s.charged).unwrap();
            assert_eq!(
                (s.provider, s.checkers, s.indexers, s.treasury),
                (split.provider, split.checkers, split.indexers, split.treasury)
            );
        }
        let e = settle(SessionId([1; 16]), Amount(u128::MAX), Amount(1), Amount(1), &fees).unwrap_err();
        assert!(matches!(e, LedgerError::Amount(_)), "{e}");
    }

    fn report(role: StakeRole, amount: u128) -> SlashReport {
        SlashReport::new(AccountId::new("node:x").unwrap(), role, 1, [9; 32], Amount(amount))
    }

    fn held(pending: u128, stake: u128, unbonding: &[(u64, u128)]) -> Slashable {
        Slashable {
            pending: Amount(pending),
            stake: Amount(stake),
            unbonding: unbonding.iter().map(|&(t, a)| (Timestamp(t), Amount(a))).collect(),
        }
    }

    type SlashCase<'a> = ((StakeRole, u128), (u128, u128, &'a [(u64, u128)]), (u128, u128, u128, u128), &'a [u128]);

    /// (role, amount asked), (pending, stake, unbonding (release, amount)) ->
    /// (from rewards, from stake, from unbonding, uncollected), per-entry takes.
    #[test]
    fn slash_takes_rewards_then_stake_then_the_latest_unbonding_within_the_fraction() {
        let cases: [SlashCase<'_>; 9] = [
            // Rewards cover it all.
            ((StakeRole::Container, 5), (10, 1_000, &[]), (5, 0, 0, 0), &[]),
            // Rewards, then stake.
            ((StakeRole::Container, 50), (10, 1_000, &[]), (10, 40, 0, 0), &[]),
            // Capped at 10% of stake + unbonding.
            ((StakeRole::Container, 500), (10, 1_000, &[]), (10, 100, 0, 390), &[]),
            // The checker fraction is 25%.
            ((StakeRole::Checker, 500), (0, 1_000, &[]), (0, 250, 0, 250), &[]),
            // Stake first, then unbonding, latest release first.
            ((StakeRole::Container, 150), (0, 100, &[(1, 600), (3, 300), (2, 500)]), (0, 100, 50, 0), &[0, 50, 0]),
            ((StakeRole::Container, 1_000), (0, 0, &[(1, 600), (3, 300), (2, 500)]), (0, 0, 140, 860), &[0, 140, 0]),
            // Across entries.
            (
                (StakeRole::Container, 1_000),
                (0, 0, &[(1, 1_000), (3, 100), (2, 900)]),
                (0, 0, 200, 800),
                &[0, 100, 100],
            ),
            // Released at the same time: the smallest first.
            ((StakeRole::Container, 1_000), (0, 0, &[(5, 700), (5, 300), (5, 1_000)]), (0, 0, 200, 800), &[0, 200, 0]),
            (
                (StakeRole::Container, 1_000),
                (0, 0, &[(5, 700), (5, 150), (4, 2_150)]),
                (0, 0, 300, 700),
                &[150, 150, 0],
            ),
        ];
        for ((role, amount), (pending, stake, unbonding), (r, s, u, n), takes) in cases {
            let t = slash(&report(role, amount), &held(pending, stake, unbonding), &FRACTIONS).unwrap();
            let got = (t.from_rewards.0, t.from_stake.0, t.from_unbonding.0, t.uncollected.0);
            assert_eq!(got, (r, s, u, n), "{role} {amount} from {pending}/{stake}/{unbonding:?}");
            assert_eq!(t.unbonding_takes.iter().map(|a| a.0).collect::<Vec<_>>(), takes, "{unbonding:?}");
        }
        let e = slash(&report(StakeRole::Checker, 5), &held(0, 0, &[]), &FRACTIONS).unwrap_err();
        assert_eq!(e.to_string(), "nothing to slash: node:x has no pending rewards and no checker stake");
        // Holding only rewards, or only unbonding stake, is something.
        assert_eq!(slash(&report(StakeRole::Checker, 5), &held(2, 0, &[]), &FRACTIONS).unwrap().uncollected, Amount(3));
        assert!(slash(&report(StakeRole::Checker, 5), &held(0, 0, &[(1, 4)]), &FRACTIONS).is_ok());
    }

    /// The report's outcome carries the take and the report's identity.
    #[test]
    fn a_take_becomes_the_slashed_outcome() {
        let r = report(StakeRole::Container, 50);
        let t = slash(&r, &held(10, 1_000, &[]), &FRACTIONS).unwrap();
        let s = t.slashed(&r, 2);
        assert_eq!((s.from_rewards, s.from_stake, s.uncollected, s.signers), (Amount(10), Amount(40), Amount(0), 2));
        assert_eq!((s.taken(), t.taken(), &s.to), (Amount(50), Amount(50), &accounts::slashed()));
        assert_eq!(
            (s.offender, s.role, s.epoch, s.evidence_hash, s.amount),
            (r.offender, r.role, 1, [9; 32], r.amount)
        );
    }

    /// (entries already unbonding) -> room for one more?
    #[test]
    fn unbonding_is_bounded_per_account_and_role() {
        let a = AccountId::new("node:x").unwrap();
        for (entries, ok) in [(0, true), (MAX_UNBONDING - 1, true), (MAX_UNBONDING, false), (100, false)] {
            let got = unbonding_room(&a, StakeRole::Checker, entries);
            assert_eq!(got.is_ok(), ok, "{entries}: {got:?}");
        }
        let e = unbonding_room(&a, StakeRole::Container, MAX_UNBONDING).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node:x already has 16 container stake entries unbonding: expected at most 16, so withdraw the released ones before unstaking again"
        );
    }

    /// (epoch, members, latest) -> the error's words, or accepted.
    #[test]
    fn a_committee_is_for_a_later_epoch_with_distinct_members() {
        let m = |b: u8| [b; 20];
        let many: Vec<[u8; 20]> = (0..=MAX_COMMITTEE as u16)
            .map(|i| {
                let mut a = [1; 20];
                a[..2].copy_from_slice(&i.to_be_bytes());
                a
            })
            .collect();
        /// (epoch, members, latest) -> the error's words, or `None`: accepted.
        type Case<'a> = (u64, &'a [[u8; 20]], Option<u64>, Option<&'a str>);
        let cases: [Case<'_>; 8] = [
            (0, &[m(1)], None, None),
            (5, &[m(1), m(2), m(3)], Some(4), None),
            (4, &[m(1)], Some(4), Some("expected an epoch after 4")),
            (3, &[m(1)], Some(4), Some("expected an epoch after 4")),
            (5, &[], Some(4), Some("expected 1 to 256 members, found 0")),
            (5, &many, Some(4), Some("expected 1 to 256 members, found 257")),
            (5, &[m(1), m(0)], Some(4), Some("found the zero address")),
            (5, &[m(1), m(2), m(1)], Some(4), Some("found 0x0101010101010101010101010101010101010101 twice")),
        ];
        for (epoch, members, latest, want) in cases {
            let got = committee(epoch, members, latest);
            match (want, got) {
                (None, Ok(())) => {}
                (Some(needle), Err(e)) => assert!(e.to_string().contains(needle), "{needle:?} in {e}"),
                (want, got) => panic!("epoch {epoch} latest {latest:?}: expected {want:?}, found {got:?}"),
            }
        }
        assert!(committee(5, &many[..MAX_COMMITTEE], Some(4)).is_ok());
    }

    const BIG: u128 = dci_model::money::TOTAL_SUPPLY.0;

    proptest! {
        #[test]
        fn settle_amounts_add_up(billed in 0..BIG, extra in 0..BIG, escrow in 0..BIG,
                                 a in 0u32..=BPS / 3, b in 0u32..=BPS / 3, c in 0u32..=BPS / 3) {
            let fees = FeeSplit::new(BPS - a - b - c, a, b, c).unwrap();
            let s = settle(SessionId([0; 16]), Amount(billed), Amount(extra), Amount(escrow), &fees).unwrap();
            prop_assert_eq!(s.charged.0, (billed + extra).min(escrow));
            prop_assert_eq!(s.charged.0 + s.refunded.0, escrow);
            prop_assert_eq!(s.provider.0 + s.checkers.0 + s.indexers.0 + s.treasury.0, s.charged.0);
            prop_assert_eq!(s.charged.0 + s.shortfall.0, billed + extra);
            // The receipt is paid first; the extra only from what it leaves.
            prop_assert_eq!(s.charged.0 - s.extra_charged.0, billed.min(escrow));
            prop_assert!(s.extra_charged.0 <= extra);
        }

        #[test]
        fn slash_amounts_add_up(amount in 1..BIG / 4, pending in 0..BIG / 4, stake in 0..BIG / 4,
                                unbonding in proptest::collection::vec((0u64..4, 0..BIG / 64), 0..8),
                                checker in any::<bool>()) {
            let role = if checker { StakeRole::Checker } else { StakeRole::Container };
            let h = held(pending, stake, &unbonding);
            let Ok(t) = slash(&report(role, amount), &h, &FRACTIONS) else {
                prop_assert!(pending == 0 && stake == 0 && unbonding.iter().all(|u| u.1 == 0));
                return Ok(());
            };
            let total: u128 = unbonding.iter().map(|u| u.1).sum();
            prop_assert_eq!(t.from_rewards.0 + t.from_stake.0 + t.from_unbonding.0 + t.uncollected.0, amount);
            prop_assert_eq!(t.cap.0, (stake + total) * u128::from(FRACTIONS.bps(role)) / u128::from(BPS));
            prop_assert!(t.from_stake.0 + t.from_unbonding.0 <= t.cap.0);
            prop_assert_eq!(t.from_rewards.0, pending.min(amount));
            prop_assert!(t.from_stake.0 <= stake);
            prop_assert!(t.from_unbonding.is_zero() || t.from_stake.0 == stake, "stake before unbonding");
            prop_assert_eq!(t.unbonding_takes.iter().map(|a| a.0).sum::<u128>(), t.from_unbonding.0);
            for (take, (_, have)) in t.unbonding_takes.iter().zip(&unbonding) {
                prop_assert!(take.0 <= *have);
            }
            // Latest release first: an entry is touched only when every
            // later-released one is taken whole.
            for (i, (ti, _)) in unbonding.iter().enumerate() {
                if t.unbonding_takes[i].is_zero() {
                    continue;
                }
                for (j, (tj, aj)) in unbonding.iter().enumerate() {
                    if tj > ti {
                        prop_assert_eq!(t.unbonding_takes[j].0, *aj, "entry {} before {}", j, i);
                    }
                }
            }
            // The entries left do not depend on the order they were given in.
            let mut reversed = h.clone();
            reversed.unbonding.reverse();
            let r = slash(&report(role, amount), &reversed, &FRACTIONS).unwrap();
            let left = |h: &Slashable, t: &SlashTake| {
                let mut v: Vec<(Timestamp, u128)> =
                    h.unbonding.iter().zip(&t.unbonding_takes).map(|((at, a), k)| (*at, a.0 - k.0)).collect();
                v.sort();
                v
            };
            prop_assert_eq!(left(&h, &t), left(&reversed, &r));
        }
    }
}
