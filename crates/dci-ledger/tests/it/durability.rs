use dci_ledger::{EmbeddedLedger, EscrowState, Genesis, accounts};
use dci_model::{AccountId, Amount};

use crate::{Signers, acc, sid, snapshot};

/// Everything a ledger holds survives closing and reopening its file.
#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let s = Signers::default();
    let alice = acc("consumer:alice");
    let payout = AccountId::for_node(&s.container.id());
    let sessions = [sid(1), sid(2)];

    let mut l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(50)).unwrap();
    let key = l.create_api_key(&alice, [3; 32]).unwrap();
    l.lock_escrow(sid(1), &alice, Amount::ath(5)).unwrap();
    l.settle(&s.receipt(sid(1), &alice, 3600, "2"), &s.gateway.id(), &payout).unwrap();
    l.lock_escrow(sid(2), &alice, Amount::ath(7)).unwrap();
    let before = snapshot(&l, &sessions);
    drop(l);

    let mut l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
    assert_eq!(snapshot(&l, &sessions), before);
    assert_eq!(l.account_for_api_key(&key).unwrap(), Some(alice.clone()));
    assert_eq!(l.settlements(&payout, 10).unwrap().len(), 1);
    let report = l.check_invariant().unwrap();
    assert_eq!((report.open_escrows, report.escrowed), (1, Amount::ath(7)));
    // The open escrow is still usable after the restart.
    assert_eq!(l.refund(sid(2)).unwrap(), Amount::ath(7));
    assert_eq!(l.escrow(sid(2)).unwrap().unwrap().state, EscrowState::Refunded);
    assert_eq!(l.balance(&alice).unwrap(), Amount::ath(48));
}
