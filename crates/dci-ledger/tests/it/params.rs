use dci_ledger::{EmbeddedLedger, FeeSplit, Genesis, LedgerError, Params, StakeRole, accounts};
use dci_model::{Amount, Timestamp};

use crate::{Signers, acc, funded, hours, sid, snapshot};

/// Governance changes apply from the moment they are set, are recorded with
/// that moment, survive a restart, and do not rewrite the past.
#[test]
fn parameter_changes_apply_forward_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let s = Signers::default();
    let alice = acc("consumer:alice");
    let mut l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(100)).unwrap();
    l.transfer(&accounts::liquidity(), &acc("node:p"), Amount::ath(100)).unwrap();
    l.lock_escrow(sid(1), &alice, Amount::ath(10)).unwrap();
    let before = l.settle(&s.receipt(sid(1), &alice, 3600, "10"), &s.gateway.id(), &acc("node:p")).unwrap();
    assert_eq!(before.treasury, "0.3".parse().unwrap());

    let new = Params { fees: FeeSplit::new(8_000, 1_000, 500, 500).unwrap(), unbonding_secs: 3_600, ..l.params() };
    l.set_params(&new, hours(5)).unwrap();
    assert_eq!(l.params(), new);
    l.lock_escrow(sid(2), &alice, Amount::ath(10)).unwrap();
    let after = l.settle(&s.receipt(sid(2), &alice, 3600, "10"), &s.gateway.id(), &acc("node:p")).unwrap();
    assert_eq!((after.provider, after.treasury), (Amount::ath(8), "0.5".parse().unwrap()));
    let entry = l.unstake_after_stake();
    assert_eq!(entry.release_at, Timestamp(hours(6).0 + 3_600_000));
    drop(l);

    let l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
    assert_eq!(l.params(), new);
    let history = l.params_history().unwrap();
    assert_eq!(
        history.iter().map(|h| (h.seq, h.set_at, h.params)).collect::<Vec<_>>(),
        [(1, Timestamp(0), Params::default()), (2, hours(5), new)]
    );
    assert_eq!(l.settlement(sid(1)).unwrap().unwrap().settled, before, "the past keeps its split");
}

trait UnstakeAfterStake {
    fn unstake_after_stake(&mut self) -> dci_ledger::UnbondingEntry;
}

impl UnstakeAfterStake for EmbeddedLedger {
    fn unstake_after_stake(&mut self) -> dci_ledger::UnbondingEntry {
        self.stake(&acc("node:p"), StakeRole::Checker, Amount::ath(1)).unwrap();
        self.unstake(&acc("node:p"), StakeRole::Checker, Amount::ath(1), hours(6)).unwrap()
    }
}

#[test]
fn invalid_parameters_are_refused_and_change_nothing() {
    let mut l = funded();
    let d = Params::default();
    let cases = [
        (Params { epoch_secs: 0, ..d }, "expected an epoch length from 1"),
        (Params { unbonding_secs: u64::MAX, ..d }, "unbonding period of at most"),
        (
            Params { rewards: dci_ledger::RewardShares { containers_bps: 1, checkers_bps: 0, indexers_bps: 0 }, ..d },
            "found 1",
        ),
    ];
    for (p, needle) in cases {
        let before = snapshot(&l, &[]);
        let e = l.set_params(&p, hours(1)).unwrap_err();
        assert!(matches!(e, LedgerError::InvalidParams(_)), "{e:?}");
        assert!(e.to_string().contains(needle), "expected {needle:?} in {e}");
        assert_eq!(snapshot(&l, &[]), before);
        assert_eq!(l.params(), d);
    }
    let e = l.set_params(&d, Timestamp(u64::MAX)).unwrap_err();
    assert!(e.to_string().contains("expected a time"), "{e}");
    assert_eq!(l.params_history().unwrap().len(), 1);
}
