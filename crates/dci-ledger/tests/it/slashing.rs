use dci_ledger::{
    ContainerWork, EpochInput, LedgerError, Settlement, SlashReport, StakeRole, accounts, rewards::PPM,
    slash::SLASH_DOMAIN,
};
use dci_model::{Amount, NodeId};
use dci_proto::Identity;

use crate::{acc, committee, funded, hours, snapshot};

fn report(evidence: u8, amount: Amount, signers: &[Identity]) -> SlashReport {
    let mut r = SlashReport::new(acc("node:p"), StakeRole::Container, 3, [evidence; 32], amount);
    for s in signers {
        r.sign(s);
    }
    r
}

/// A slash takes pending rewards first, then bonded stake up to the slash
/// fraction (10% of staked + unbonding), then unbonding stake; the funds go to
/// `pool:slashed` and the supply is conserved.
#[test]
fn rewards_before_stake_within_the_fraction() {
    let (members, ids) = committee(3);
    let mut l = funded();
    let p = acc("node:p");
    l.transfer(&accounts::liquidity(), &p, Amount::ath(1_000_000)).unwrap();
    l.stake(&p, StakeRole::Container, Amount::ath(1_000_000)).unwrap();
    l.unstake(&p, StakeRole::Container, Amount::ath(100_000), hours(1)).unwrap();
    l.unstake(&p, StakeRole::Container, Amount::ath(100_000), hours(2)).unwrap();
    let only_p = EpochInput {
        containers: vec![ContainerWork { account: p.clone(), capacity_units: 1, uptime_ppm: PPM }],
        ..EpochInput::default()
    };
    l.distribute_epoch(0, &only_p).unwrap();
    let rewards = l.pending_rewards(&p).unwrap();
    assert!(!rewards.is_zero());

    // 1. All rewards, then 10% of the 1,000,000 bonded; 50 ATH uncollected.
    let ask = Amount(rewards.0 + Amount::ath(100_050).0);
    let s = l.slash(&report(1, ask, &members[..2]), &ids).unwrap();
    assert_eq!(
        (s.from_rewards, s.from_stake, s.from_unbonding, s.uncollected, s.signers),
        (rewards, Amount::ath(100_000), Amount::ZERO, Amount::ath(50), 2)
    );
    assert_eq!(s.taken(), Amount(rewards.0 + Amount::ath(100_000).0));
    assert_eq!(l.balance(&accounts::slashed()).unwrap(), s.taken());
    assert_eq!(l.pending_rewards(&p).unwrap(), Amount::ZERO);
    assert_eq!(l.staked(&p, StakeRole::Container).unwrap(), Amount::ath(700_000));
    l.check_invariant().unwrap();

    // 2. No rewards left: 10% of the 900,000 still bonded.
    let s = l.slash(&report(2, Amount::ath(1_000_000), &members), &ids).unwrap();
    assert_eq!(
        (s.from_rewards, s.from_stake, s.uncollected),
        (Amount::ZERO, Amount::ath(90_000), Amount::ath(910_000))
    );

    // 3. Unstaking does not escape a slash: unbonding stake is taken, the
    // entry released last first.
    l.unstake(&p, StakeRole::Container, Amount::ath(610_000), hours(3)).unwrap();
    let s = l.slash(&report(3, Amount::ath(700_000), &members), &ids).unwrap();
    assert_eq!((s.from_stake, s.from_unbonding), (Amount::ZERO, Amount::ath(81_000)));
    let left: Vec<Amount> = l.unbonding(&p).unwrap().iter().map(|u| u.amount).collect();
    assert_eq!(left, [Amount::ath(100_000), Amount::ath(100_000), Amount::ath(529_000)]);
    assert_eq!(l.slashes(&p).unwrap().iter().map(|s| s.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let report = l.check_invariant().unwrap();
    assert_eq!(report.unbonding, Amount::ath(729_000));
}

#[test]
fn only_a_two_thirds_quorum_once_and_never_from_nothing() {
    let (members, ids) = committee(3);
    let mut l = funded();
    let p = acc("node:p");
    l.stake(&p, StakeRole::Container, Amount::ath(100)).unwrap();
    let outsider = Identity::from_secret([7; 32]);

    let one = report(1, Amount::ath(5), &members[..1]);
    let mut repeated = report(1, Amount::ath(5), &members[..1]);
    repeated.sign(&members[0]);
    let with_outsider = report(1, Amount::ath(5), &[members[0].clone(), outsider]);
    let mut altered = report(1, Amount::ath(5), &members[..2]);
    altered.amount = Amount::ath(6);
    let nobody = SlashReport::new(acc("node:q"), StakeRole::Container, 3, [1; 32], Amount::ath(5));
    let mut checker_role = report(1, Amount::ath(5), &[]);
    checker_role.role = StakeRole::Checker;
    checker_role.sign(&members[0]);
    checker_role.sign(&members[1]);
    let mut nothing = nobody.clone();
    nothing.sign(&members[0]);
    nothing.sign(&members[1]);

    let cases: Vec<(&str, SlashReport, &[NodeId], &str)> = vec![
        ("one signature of three", one, &ids[..], "has 1 valid signatures from a committee of 3: expected at least 2"),
        ("the same member twice", repeated, &ids[..], "has 1 valid signatures"),
        ("an outsider's signature", with_outsider, &ids[..], "has 1 valid signatures"),
        ("amount changed after signing", altered, &ids[..], "has 0 valid signatures"),
        ("an empty committee", report(1, Amount::ath(5), &members), &[][..], "committee of 0"),
        ("zero amount", report(1, Amount::ZERO, &members), &ids[..], "positive amount"),
        (
            "no stake in the role",
            checker_role,
            &ids[..],
            "nothing to slash: node:p has no pending rewards and no checker",
        ),
        ("no stake, no rewards", nothing, &ids[..], "nothing to slash: node:q"),
    ];
    for (name, r, committee, needle) in cases {
        let before = snapshot(&l, &[]);
        let e = l.slash(&r, committee).unwrap_err();
        assert!(e.to_string().contains(needle), "{name}: expected {needle:?} in {e}");
        assert_eq!(snapshot(&l, &[]), before, "{name}: state changed");
    }

    let good = report(1, Amount::ath(5), &members[1..]);
    assert_eq!(l.slash(&good, &ids).unwrap().from_stake, Amount::ath(5));
    let before = snapshot(&l, &[]);
    // The same report again, or the same evidence with another amount.
    for again in [good.clone(), report(1, Amount::ath(1), &members)] {
        let e = l.slash(&again, &ids).unwrap_err();
        assert_eq!(e, LedgerError::SlashAlreadyApplied { evidence: [1; 32] });
        assert!(e.to_string().contains(&format!("evidence {} was already slashed", "01".repeat(32))), "{e}");
    }
    assert_eq!(snapshot(&l, &[]), before);
    // The signed payload is domain-separated.
    assert!(good.signing_bytes().starts_with(SLASH_DOMAIN));
    l.check_invariant().unwrap();
}

/// A piece of evidence causes at most one slash, ever: the same report
/// re-signed by the committee of a later epoch is refused, as is the same
/// evidence against another role; new evidence is still slashed.
#[test]
fn the_same_evidence_is_never_slashed_twice_even_in_a_later_epoch() {
    let (members, ids) = committee(3);
    let mut l = funded();
    let p = acc("node:p");
    l.stake(&p, StakeRole::Container, Amount::ath(100)).unwrap();
    l.stake(&p, StakeRole::Checker, Amount::ath(100)).unwrap();
    l.slash(&report(1, Amount::ath(5), &members), &ids).unwrap();
    let before = snapshot(&l, &[]);
    let resign = |epoch: u64, role: StakeRole| {
        let mut r = SlashReport::new(p.clone(), role, epoch, [1; 32], Amount::ath(5));
        for m in &members {
            r.sign(m);
        }
        r
    };
    for (epoch, role) in [(4, StakeRole::Container), (40, StakeRole::Container), (3, StakeRole::Checker)] {
        let e = l.slash(&resign(epoch, role), &ids).unwrap_err();
        assert_eq!(e, LedgerError::SlashAlreadyApplied { evidence: [1; 32] }, "epoch {epoch} {role}");
    }
    assert_eq!(snapshot(&l, &[]), before);
    assert_eq!(l.slash(&report(2, Amount::ath(5), &members), &ids).unwrap().from_stake, Amount::ath(5));
    l.check_invariant().unwrap();
}

/// Stake unbonding with the same release time is taken smallest entry
/// first (an order every backend agrees on, whatever its storage order).
#[test]
fn unbonding_released_together_is_taken_smallest_first() {
    let (members, ids) = committee(3);
    let mut l = funded();
    let p = acc("node:p");
    l.transfer(&accounts::liquidity(), &p, Amount::ath(500)).unwrap();
    l.stake(&p, StakeRole::Container, Amount::ath(1_500)).unwrap();
    for ath in [600, 100, 300, 500] {
        l.unstake(&p, StakeRole::Container, Amount::ath(ath), hours(1)).unwrap();
    }
    // 10% of the 1,500 unbonding: the 100 entry whole, then 50 of the 300.
    let s = l.slash(&report(1, Amount::ath(1_000), &members), &ids).unwrap();
    assert_eq!((s.from_stake, s.from_unbonding), (Amount::ZERO, Amount::ath(150)));
    let left: Vec<Amount> = l.unbonding(&p).unwrap().iter().map(|u| u.amount).collect();
    assert_eq!(left, [Amount::ath(600), Amount::ath(250), Amount::ath(500)]);
    l.check_invariant().unwrap();
}

/// The embedded ledger records committees published for the chain under
/// the chain's epoch and member rules (it has no chain to count their
/// signatures for), and its slashes still count the ed25519 quorum of the
/// committee each report names.
#[test]
fn committees_are_recorded_in_order_and_slashes_keep_their_quorum() {
    let mut l = funded();
    let p = acc("node:p");
    l.stake(&p, StakeRole::Container, Amount::ath(100)).unwrap();
    let sig = vec![vec![1u8; 65]];
    l.set_committee(0, &[[1; 20], [2; 20]], &sig).unwrap();
    let ops = [dci_ledger::LedgerOp::SetCommittee { epoch: 2, members: vec![[3; 20]], signatures: sig.clone() }];
    Settlement::apply(&mut l, &ops).unwrap();
    assert_eq!(l.committee(0).unwrap(), Some(vec![[1; 20], [2; 20]]));
    assert_eq!(l.committee(1).unwrap(), None, "skipped");
    assert_eq!(l.committee(2).unwrap(), Some(vec![[3; 20]]));
    let before = snapshot(&l, &[]);
    for (epoch, members, needle) in [
        (2, vec![[4; 20]], "expected an epoch after 2"),
        (1, vec![[4; 20]], "expected an epoch after 2"),
        (3, vec![], "expected 1 to 256 members, found 0"),
        (3, vec![[4; 20], [4; 20]], "twice"),
    ] {
        let e = l.set_committee(epoch, &members, &sig).unwrap_err();
        assert!(e.to_string().contains(needle), "epoch {epoch}: expected {needle:?} in {e}");
    }
    assert_eq!(snapshot(&l, &[]), before, "refusals change nothing");
    let (members, ids) = committee(3);
    let e = l.slash(&report(1, Amount::ath(1), &members[..1]), &ids).unwrap_err();
    assert!(matches!(e, LedgerError::SlashQuorum { valid: 1, needed: 2, .. }), "{e}");
    l.slash(&report(1, Amount::ath(1), &members[..2]), &ids).unwrap();
    l.check_invariant().unwrap();
}
