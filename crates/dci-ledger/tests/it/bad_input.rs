use dci_ledger::{EmbeddedLedger, LedgerError, Transfer, accounts};
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
