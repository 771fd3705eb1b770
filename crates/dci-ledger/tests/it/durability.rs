use dci_ledger::{EmbeddedLedger, EscrowState, Genesis, LedgerError, SlashReport, StakeRole, accounts};
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

/// A file of schema version 2 (slashes keyed by offender, role, epoch and
/// evidence; settlements without `extra_charged`) opens as version 3: its
/// rows are kept, its settlements read with no extra charged, and evidence
/// it slashed (even twice, in two epochs, as version 2 allowed) is never
/// slashed again.
#[test]
fn a_version_2_file_is_upgraded_keeping_its_slashes_and_settlements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let s = Signers::default();
    let (members, ids) = crate::committee(3);
    let alice = acc("consumer:alice");
    let p = acc("node:p");
    let report = |epoch: u64, evidence: u8| {
        let mut r = SlashReport::new(p.clone(), StakeRole::Container, epoch, [evidence; 32], Amount::ath(1));
        for m in &members {
            r.sign(m);
        }
        r
    };

    let mut l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(50)).unwrap();
    l.transfer(&accounts::liquidity(), &p, Amount::ath(100)).unwrap();
    l.stake(&p, StakeRole::Container, Amount::ath(100)).unwrap();
    l.lock_escrow(sid(1), &alice, Amount::ath(5)).unwrap();
    let settled = l.settle(&s.receipt(sid(1), &alice, 3600, "2"), &s.gateway.id(), &p).unwrap();
    l.slash(&report(3, 1), &ids).unwrap();
    drop(l);
    // Back to version 2, with evidence 1 slashed again in epoch 4.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TABLE slashed_evidence; DROP TABLE committees; ALTER TABLE settlements DROP COLUMN extra_charged; \
         INSERT INTO slashes (offender, role, epoch, evidence, record) \
             SELECT offender, role, 4, evidence, record FROM slashes; \
         UPDATE meta SET value = '2' WHERE key = 'schema';",
    )
    .unwrap();
    drop(c);

    let mut l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
    let record = l.settlement(sid(1)).unwrap().unwrap();
    assert_eq!((record.settled, record.settled.extra_charged), (settled, Amount::ZERO));
    assert_eq!(l.slashes(&p).unwrap().iter().map(|s| s.epoch).collect::<Vec<_>>(), [3, 3], "rows kept");
    for epoch in [3, 4, 5] {
        let e = l.slash(&report(epoch, 1), &ids).unwrap_err();
        assert_eq!(e, LedgerError::SlashAlreadyApplied { evidence: [1; 32] }, "epoch {epoch}");
    }
    assert_eq!(l.slash(&report(5, 2), &ids).unwrap().from_stake, Amount::ath(1));
    // Version 4's committees start empty.
    assert_eq!(l.committee(0).unwrap(), None);
    l.set_committee(0, &[[1; 20]], &[]).unwrap();
    l.check_invariant().unwrap();
    drop(l);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: String = c.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "5", "upgraded to the current version");
}
