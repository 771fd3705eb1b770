use dci_ledger::{EmbeddedLedger, LedgerError, LedgerOp, OpOutcome, StakeRole, Transfer, accounts};
use dci_model::{Amount, SessionId};

use crate::{acc, ledger, sid, snapshot};

/// Every refused operation names the problem and leaves every balance,
/// escrow and settlement exactly as it was.
#[test]
fn refused_operations_change_nothing() {
    let mut l = ledger();
    let alice = acc("consumer:alice");
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(10)).unwrap();
    l.lock_escrow(sid(1), &alice, Amount::ath(4)).unwrap();

    type Op = Box<dyn Fn(&mut EmbeddedLedger) -> Result<(), LedgerError>>;
    let op = |f: fn(&mut EmbeddedLedger) -> Result<(), LedgerError>| -> Op { Box::new(f) };
    let cases: Vec<(&str, Op, &str)> = vec![
        (
            "transfer from an unknown account",
            op(|l| l.transfer(&acc("consumer:nobody"), &acc("consumer:alice"), Amount::ath(1))),
            "unknown account consumer:nobody",
        ),
        (
            "transfer more than the balance",
            op(|l| l.transfer(&acc("consumer:alice"), &acc("consumer:bob"), Amount::ath(7))),
            "insufficient funds in consumer:alice: have 6 ATH, need 7 ATH",
        ),
        (
            "transfer of zero",
            op(|l| l.transfer(&acc("consumer:alice"), &acc("consumer:bob"), Amount::ZERO)),
            "expected a positive amount, found 0",
        ),
        (
            "transfer to oneself",
            op(|l| l.transfer(&acc("consumer:alice"), &acc("consumer:alice"), Amount::ath(1))),
            "expected two different accounts",
        ),
        (
            "escrow from an unknown account",
            op(|l| l.lock_escrow(sid(2), &acc("consumer:nobody"), Amount::ath(1))),
            "unknown account consumer:nobody",
        ),
        (
            "escrow more than the balance (escrowed funds are not spendable)",
            op(|l| l.lock_escrow(sid(2), &acc("consumer:alice"), Amount::ath(6).checked_add(Amount(1)).unwrap())),
            "have 6 ATH, need 6.000000000000000001 ATH",
        ),
        ("escrow of zero", op(|l| l.lock_escrow(sid(2), &acc("consumer:alice"), Amount::ZERO)), "positive amount"),
        (
            "second escrow for a session",
            op(|l| l.lock_escrow(sid(1), &acc("consumer:alice"), Amount::ath(1))),
            "already has an escrow",
        ),
        ("refund without escrow", op(|l| l.refund(sid(2)).map(drop)), "no escrow for session"),
        (
            "a batch whose last transfer fails applies none",
            op(|l| {
                l.transfer_batch(&[
                    Transfer { from: acc("consumer:alice"), to: acc("consumer:bob"), amount: Amount::ath(1) },
                    Transfer { from: acc("consumer:alice"), to: acc("consumer:carol"), amount: Amount::ath(2) },
                    Transfer { from: acc("consumer:bob"), to: acc("consumer:carol"), amount: Amount::ath(2) },
                ])
            }),
            "transfer 2 of the batch failed, nothing was applied: insufficient funds in consumer:bob",
        ),
    ];
    let sessions: [SessionId; 2] = [sid(1), sid(2)];
    for (name, f, needle) in cases {
        let before = snapshot(&l, &sessions);
        let e = f(&mut l).unwrap_err();
        assert!(e.to_string().contains(needle), "{name}: expected {needle:?} in {e:?}");
        assert_eq!(snapshot(&l, &sessions), before, "{name}: state changed");
        l.check_invariant().unwrap();
    }
    // Unknown accounts read as zero but have no account view.
    assert_eq!(l.balance(&acc("consumer:nobody")).unwrap(), Amount::ZERO);
    assert_eq!(l.account(&acc("consumer:nobody")).unwrap_err(), LedgerError::UnknownAccount(acc("consumer:nobody")));
}

#[test]
fn a_good_batch_applies_in_order() {
    let mut l = ledger();
    let (a, b, c) = (acc("consumer:a"), acc("consumer:b"), acc("consumer:c"));
    l.transfer_batch(&[
        Transfer { from: accounts::liquidity(), to: a.clone(), amount: Amount::ath(3) },
        Transfer { from: a.clone(), to: b.clone(), amount: Amount::ath(2) },
        Transfer { from: b.clone(), to: c.clone(), amount: Amount::ath(1) },
    ])
    .unwrap();
    let got: Vec<_> = [&a, &b, &c].iter().map(|x| l.balance(x).unwrap()).collect();
    assert_eq!(got, [Amount::ath(1); 3]);
    l.check_invariant().unwrap();
}

#[test]
fn api_keys_resolve_only_to_their_account() {
    let mut l = ledger();
    let alice = acc("consumer:alice");
    let key = l.create_api_key(&alice, [1; 32]).unwrap();
    assert!(key.starts_with("dci_") && key.len() == 4 + 64, "{key}");
    // Creating a key opens the account with a zero balance.
    assert_eq!(l.account(&alice).unwrap().balance, Amount::ZERO);
    let bob_key = l.create_api_key(&acc("consumer:bob"), [2; 32]).unwrap();
    assert_eq!(l.account_for_api_key(&bob_key).unwrap(), Some(acc("consumer:bob")));
    assert_eq!(l.create_api_key(&acc("consumer:eve"), [1; 32]).unwrap_err(), LedgerError::DuplicateApiKey);
    assert_eq!(l.balance(&acc("consumer:eve")).unwrap(), Amount::ZERO);
    assert!(l.account(&acc("consumer:eve")).is_err(), "a refused key creation must not create the account");
    let mut wrong = key.clone();
    wrong.replace_range(10..11, if &key[10..11] == "0" { "1" } else { "0" });
    for bad in [wrong.as_str(), "", "dci_", "DCI_00", &key.to_uppercase(), &key[4..], &format!("{key}0")] {
        assert_eq!(l.account_for_api_key(bad).unwrap(), None, "{bad:?}");
    }
    assert_eq!(l.account_for_api_key(&key).unwrap(), Some(alice));
}

/// Amounts no ledger can hold are refused by every op that moves funds, with
/// the account and what it has; nothing changes.
#[test]
fn overflowing_amounts_are_refused_and_change_nothing() {
    let mut l = crate::funded();
    let p = acc("node:p");
    l.stake(&p, StakeRole::Container, Amount::ath(1)).unwrap();
    let huge = Amount(u128::MAX);
    type Op = Box<dyn Fn(&mut EmbeddedLedger) -> Result<(), LedgerError>>;
    let cases: Vec<(&str, Op)> = vec![
        ("transfer", Box::new(move |l| l.transfer(&acc("node:p"), &acc("node:q"), huge))),
        ("escrow", Box::new(move |l| l.lock_escrow(sid(9), &acc("consumer:alice"), huge))),
        ("stake", Box::new(move |l| l.stake(&acc("node:p"), StakeRole::Checker, huge))),
        (
            "unstake",
            Box::new(move |l| l.unstake(&acc("node:p"), StakeRole::Container, huge, crate::hours(1)).map(drop)),
        ),
        (
            "batch",
            Box::new(move |l| {
                l.transfer_batch(&[Transfer { from: accounts::liquidity(), to: acc("node:p"), amount: huge }])
            }),
        ),
    ];
    for (name, f) in cases {
        let before = snapshot(&l, &[sid(9)]);
        let e = f(&mut l).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("insufficient") && m.contains("need 340282366920938463463.374607431768211455 ATH"),
            "{name}: {m}"
        );
        assert_eq!(snapshot(&l, &[sid(9)]), before, "{name}: state changed");
    }
    l.check_invariant().unwrap();
}

/// A batch of mixed ops is one transaction: the error names the failing op
/// and its position, and none of the ops before it is applied.
#[test]
fn a_mixed_batch_is_all_or_nothing() {
    let mut l = crate::funded();
    let p = acc("node:p");
    let ops = vec![
        LedgerOp::Transfer(Transfer { from: accounts::liquidity(), to: p.clone(), amount: Amount::ath(5) }),
        LedgerOp::Stake { account: p.clone(), role: StakeRole::Checker, amount: Amount::ath(5) },
        LedgerOp::LockEscrow { session: sid(1), consumer: acc("consumer:alice"), amount: Amount::ath(1) },
        LedgerOp::Unstake {
            account: p.clone(),
            role: StakeRole::Checker,
            amount: Amount::ath(6),
            now: crate::hours(1),
        },
    ];
    let before = snapshot(&l, &[sid(1)]);
    let e = l.apply(&ops).unwrap_err();
    assert!(matches!(e, LedgerError::Batch { op: "unstake", index: 3, .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("unstake 3 of the batch failed, nothing was applied: insufficient checker stake")
    );
    assert_eq!(snapshot(&l, &[sid(1)]), before);

    let outcomes = l.apply(&ops[..3]).unwrap();
    assert_eq!(outcomes, vec![OpOutcome::Done; 3]);
    assert_eq!(l.staked(&p, StakeRole::Checker).unwrap(), Amount::ath(5));
    let out = l.apply(&[LedgerOp::Refund { session: sid(1) }, LedgerOp::ClaimRewards { account: p.clone() }]);
    assert!(matches!(out, Err(LedgerError::Batch { op: "claim_rewards", index: 1, .. })), "{out:?}");
    assert_eq!(l.apply(&[LedgerOp::Refund { session: sid(1) }]).unwrap(), vec![OpOutcome::Amount(Amount::ath(1))]);
    l.check_invariant().unwrap();
}
