use dci_ledger::{LedgerError, Settlement, StakeEntry, StakeRole, UnbondingEntry};
use dci_model::{Amount, Timestamp};

use crate::{acc, funded, hours, snapshot};

const WEEK_MS: u64 = 7 * 24 * 3_600_000;

/// A container bonds stake, unbonds part of it, and gets it back only once
/// the unbonding period (7 days by default) has passed.
#[test]
fn stake_unbond_and_withdraw_after_the_period() {
    let mut l = funded();
    let p = acc("node:p");
    l.stake(&p, StakeRole::Container, Amount::ath(300)).unwrap();
    l.stake(&p, StakeRole::Checker, Amount::ath(50)).unwrap();
    l.stake(&p, StakeRole::Container, Amount::ath(100)).unwrap();
    assert_eq!(l.staked(&p, StakeRole::Container).unwrap(), Amount::ath(400));
    assert_eq!(
        l.stakers(StakeRole::Checker).unwrap(),
        vec![StakeEntry { account: p.clone(), role: StakeRole::Checker, amount: Amount::ath(50) }]
    );

    let first = l.unstake(&p, StakeRole::Container, Amount::ath(150), hours(10)).unwrap();
    assert_eq!(
        first,
        UnbondingEntry {
            account: p.clone(),
            role: StakeRole::Container,
            amount: Amount::ath(150),
            release_at: Timestamp(hours(10).0 + WEEK_MS),
        }
    );
    let second = l.unstake(&p, StakeRole::Container, Amount::ath(50), hours(20)).unwrap();
    let view = l.account(&p).unwrap();
    assert_eq!(
        (view.balance, view.staked, view.unbonding),
        (Amount::ath(550), Amount::ath(250), Amount::ath(200)),
        "staked counts both roles"
    );
    assert_eq!(l.unbonding(&p).unwrap(), vec![first.clone(), second.clone()]);
    let report = l.check_invariant().unwrap();
    assert_eq!((report.staked, report.unbonding), (Amount::ath(250), Amount::ath(200)));

    // One millisecond early: nothing, and the error says when.
    let early = Timestamp(first.release_at.0 - 1);
    let before = snapshot(&l, &[]);
    let e = l.withdraw_unbonded(&p, early).unwrap_err();
    assert!(matches!(e, LedgerError::NothingToWithdraw { next: Some(t), .. } if t == first.release_at), "{e:?}");
    assert!(e.to_string().contains(&format!("next release at {}", first.release_at)), "{e}");
    assert_eq!(snapshot(&l, &[]), before);

    // At the release time: the first entry only.
    assert_eq!(l.withdraw_unbonded(&p, first.release_at).unwrap(), Amount::ath(150));
    assert_eq!(l.unbonding(&p).unwrap(), vec![second.clone()]);
    // Much later: the rest; then nothing is left.
    assert_eq!(l.withdraw_unbonded(&p, hours(10_000)).unwrap(), Amount::ath(50));
    let e = l.withdraw_unbonded(&p, hours(10_000)).unwrap_err();
    assert!(e.to_string().contains("nothing is unbonding"), "{e}");
    let view = l.account(&p).unwrap();
    assert_eq!((view.balance, view.staked, view.unbonding), (Amount::ath(750), Amount::ath(250), Amount::ZERO));
    l.check_invariant().unwrap();
}

#[test]
fn staking_refusals_say_why_and_change_nothing() {
    let mut l = funded();
    let p = acc("node:p");
    l.stake(&p, StakeRole::Checker, Amount::ath(10)).unwrap();
    type Op = fn(&mut dci_ledger::EmbeddedLedger) -> Result<(), LedgerError>;
    let cases: Vec<(&str, Op, &str)> = vec![
        ("stake zero", |l| l.stake(&acc("node:p"), StakeRole::Container, Amount::ZERO), "positive amount, found 0"),
        (
            "stake from an unknown account",
            |l| l.stake(&acc("node:nobody"), StakeRole::Container, Amount::ath(1)),
            "unknown account node:nobody",
        ),
        (
            "stake more than the balance",
            |l| l.stake(&acc("node:p"), StakeRole::Container, Amount::ath(991)),
            "insufficient funds in node:p: have 990 ATH, need 991 ATH",
        ),
        (
            "unstake more than staked",
            |l| l.unstake(&acc("node:p"), StakeRole::Checker, Amount::ath(11), hours(1)).map(drop),
            "insufficient checker stake of node:p: have 10 ATH staked, need 11 ATH",
        ),
        (
            "unstake a role never staked",
            |l| l.unstake(&acc("node:p"), StakeRole::Container, Amount::ath(1), hours(1)).map(drop),
            "have 0 ATH staked",
        ),
        (
            "unstake zero",
            |l| l.unstake(&acc("node:p"), StakeRole::Checker, Amount::ZERO, hours(1)).map(drop),
            "positive amount",
        ),
        (
            "unstake at a time beyond the storable range",
            |l| l.unstake(&acc("node:p"), StakeRole::Checker, Amount::ath(1), Timestamp(u64::MAX)).map(drop),
            "expected a time",
        ),
        (
            "withdraw with nothing unbonding",
            |l| l.withdraw_unbonded(&acc("node:p"), hours(1)).map(drop),
            "nothing to withdraw for node:p",
        ),
    ];
    for (name, f, needle) in cases {
        let before = snapshot(&l, &[]);
        let e = f(&mut l).unwrap_err();
        assert!(e.to_string().contains(needle), "{name}: expected {needle:?} in {e}");
        assert_eq!(snapshot(&l, &[]), before, "{name}: state changed");
    }
    l.check_invariant().unwrap();
}

/// The node and the CLI see staking only through the trait.
#[test]
fn staking_through_the_trait() {
    fn run(l: &mut dyn Settlement) -> Result<(), LedgerError> {
        let q = acc("node:q");
        l.stake(&q, StakeRole::Container, Amount::ath(5))?;
        let entry = l.unstake(&q, StakeRole::Container, Amount::ath(2), Timestamp(0))?;
        assert_eq!(l.staked(&q, StakeRole::Container)?, Amount::ath(3));
        assert_eq!(l.unbonding(&q)?, vec![entry.clone()]);
        assert_eq!(l.withdraw_unbonded(&q, entry.release_at)?, Amount::ath(2));
        // The trait returns the op's own error, not a batch error.
        let e = l.stake(&q, StakeRole::Container, Amount::ZERO).unwrap_err();
        assert_eq!(e, LedgerError::ZeroAmount);
        l.check_invariant().map(drop)
    }
    let mut l = funded();
    run(&mut l).unwrap();
    assert_eq!(l.account(&acc("node:q")).unwrap().balance, Amount::ath(997));
}

/// At most `rules::MAX_UNBONDING` unbonding entries per account and role
/// (the contract's bound); withdrawn entries free their places.
#[test]
fn unbonding_entries_are_bounded_per_account_and_role() {
    let mut l = funded();
    let p = acc("node:p");
    let max = dci_ledger::rules::MAX_UNBONDING;
    l.stake(&p, StakeRole::Container, Amount::ath(100)).unwrap();
    l.stake(&p, StakeRole::Checker, Amount::ath(100)).unwrap();
    for i in 0..max as u64 {
        l.unstake(&p, StakeRole::Container, Amount::ath(1), hours(i)).unwrap();
    }
    let before = snapshot(&l, &[]);
    let e = l.unstake(&p, StakeRole::Container, Amount::ath(1), hours(20)).unwrap_err();
    assert_eq!(e, LedgerError::TooManyUnbonding { account: p.clone(), role: StakeRole::Container, max: max as u64 });
    assert_eq!(snapshot(&l, &[]), before, "nothing changed");
    // The other role has its own bound.
    l.unstake(&p, StakeRole::Checker, Amount::ath(1), hours(20)).unwrap();
    // Released entries withdrawn: room again.
    let released = hours(2).0 + l.params().unbonding_ms();
    l.withdraw_unbonded(&p, Timestamp(released)).unwrap();
    l.unstake(&p, StakeRole::Container, Amount::ath(1), hours(20)).unwrap();
    l.unstake(&p, StakeRole::Container, Amount::ath(1), hours(20)).unwrap();
    l.unstake(&p, StakeRole::Container, Amount::ath(1), hours(20)).unwrap();
    assert!(matches!(
        l.unstake(&p, StakeRole::Container, Amount::ath(1), hours(20)),
        Err(LedgerError::TooManyUnbonding { .. })
    ));
    l.check_invariant().unwrap();
}
