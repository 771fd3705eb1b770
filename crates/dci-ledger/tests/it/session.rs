use dci_ledger::{EscrowState, LedgerError, LedgerOp, OpOutcome, Settled, Settlement, accounts};
use dci_model::{AccountId, Amount, SessionId, money::TOTAL_SUPPLY};
use dci_proto::{Identity, ReceiptError};

use crate::{Signers, acc, ledger, sid, snapshot};

/// A consumer is funded, locks an escrow, uses a container for 20 minutes at
/// 3 ATH/h and the session is settled against the signed, acknowledged receipt.
#[test]
fn a_paid_session_end_to_end() {
    let s = Signers::default();
    let mut l = ledger();
    let alice = acc("consumer:alice");
    let payout = AccountId::for_node(&s.container.id());
    let session = sid(1);

    l.transfer(&accounts::liquidity(), &alice, Amount::ath(100)).unwrap();
    let key = l.create_api_key(&alice, [7; 32]).unwrap();
    assert_eq!(l.account_for_api_key(&key).unwrap(), Some(alice.clone()));

    l.lock_escrow(session, &alice, Amount::ath(10)).unwrap();
    let view = l.account(&alice).unwrap();
    assert_eq!((view.balance, view.escrowed), (Amount::ath(90), Amount::ath(10)));
    let report = l.check_invariant().unwrap();
    assert_eq!((report.escrowed, report.open_escrows), (Amount::ath(10), 1));

    let receipt = s.receipt(session, &alice, 1200, "3");
    assert_eq!(receipt.receipt.amount, Amount::ath(1));
    let settled = l.settle(&receipt, &s.gateway.id(), &payout).unwrap();
    let tenth = |n: u128| Amount(n * dci_model::money::ONE_ATH / 100);
    assert_eq!(
        settled,
        Settled {
            session,
            charged: Amount::ath(1),
            extra_charged: Amount::ZERO,
            provider: tenth(90),
            checkers: tenth(5),
            indexers: tenth(2),
            treasury: tenth(3),
            refunded: Amount::ath(9),
            shortfall: Amount::ZERO,
        }
    );
    for (account, expect) in [
        (alice.clone(), Amount::ath(99)),
        (payout.clone(), tenth(90)),
        (accounts::checker_fees(), tenth(5)),
        (accounts::indexer_fees(), tenth(2)),
        (accounts::treasury(), tenth(3)),
        (accounts::liquidity(), Amount::ath(1_680_000_000 - 100)),
    ] {
        assert_eq!(l.balance(&account).unwrap(), expect, "{account}");
    }
    assert_eq!(l.account(&alice).unwrap().escrowed, Amount::ZERO);
    assert_eq!(l.escrow(session).unwrap().unwrap().state, EscrowState::Settled);
    let report = l.check_invariant().unwrap();
    assert_eq!((report.found(), report.open_escrows), (TOTAL_SUPPLY, 0));

    // The settlement is listed for both sides, with its receipt.
    let record = l.settlement(session).unwrap().unwrap();
    assert_eq!((record.settled, &record.receipt, &record.payout), (settled, &receipt, &payout));
    assert_eq!(record.acker, s.gateway.id());
    assert_eq!(l.settlements(&alice, 10).unwrap(), vec![record.clone()]);
    assert_eq!(l.settlements(&payout, 10).unwrap(), vec![record]);
    assert!(l.settlements(&acc("consumer:bob"), 10).unwrap().is_empty());

    // Paying the same session again is refused and changes nothing.
    let before = snapshot(&l, &[session]);
    let e = l.settle(&receipt, &s.gateway.id(), &payout).unwrap_err();
    assert_eq!(e, LedgerError::AlreadySettled(session));
    assert!(l.refund(session).is_err());
    assert_eq!(snapshot(&l, &[session]), before);
}

#[test]
fn a_receipt_above_the_escrow_charges_the_escrow_and_records_the_shortfall() {
    let s = Signers::default();
    let mut l = ledger();
    let alice = acc("consumer:alice");
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(5)).unwrap();
    l.lock_escrow(sid(2), &alice, Amount::ath(2)).unwrap();
    let settled = l.settle(&s.receipt(sid(2), &alice, 3600, "3"), &s.gateway.id(), &acc("node:x")).unwrap();
    assert_eq!((settled.charged, settled.refunded, settled.shortfall), (Amount::ath(2), Amount::ZERO, Amount::ath(1)));
    assert_eq!(l.balance(&alice).unwrap(), Amount::ath(3));
    l.check_invariant().unwrap();
}

#[test]
fn refund_returns_the_whole_escrow_once() {
    let s = Signers::default();
    let mut l = ledger();
    let alice = acc("consumer:alice");
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(5)).unwrap();
    l.lock_escrow(sid(3), &alice, Amount::ath(4)).unwrap();
    assert_eq!(l.refund(sid(3)).unwrap(), Amount::ath(4));
    assert_eq!(l.account(&alice).unwrap().balance, Amount::ath(5));
    let before = snapshot(&l, &[sid(3), sid(4)]);
    assert_eq!(l.refund(sid(3)).unwrap_err(), LedgerError::AlreadyRefunded(sid(3)));
    let e = l.settle(&s.receipt(sid(3), &alice, 60, "3"), &s.gateway.id(), &acc("node:x")).unwrap_err();
    assert_eq!(e, LedgerError::AlreadyRefunded(sid(3)));
    assert_eq!(l.lock_escrow(sid(3), &alice, Amount::ath(1)).unwrap_err(), LedgerError::EscrowExists(sid(3)));
    assert_eq!(l.refund(sid(4)).unwrap_err(), LedgerError::NoEscrow(sid(4)));
    assert_eq!(snapshot(&l, &[sid(3), sid(4)]), before);
}

/// Forged or mismatched receipts are refused with the reason and change nothing.
#[test]
fn forged_receipts_are_refused_and_change_nothing() {
    let s = Signers::default();
    let mut l = ledger();
    let alice = acc("consumer:alice");
    let payout = acc("node:payout");
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(100)).unwrap();
    l.lock_escrow(sid(1), &alice, Amount::ath(10)).unwrap();
    let gw = s.gateway.id();
    let stranger = Identity::from_secret([9; 32]);

    let good = s.receipt(sid(1), &alice, 600, "3");
    let mut inflated = good.clone();
    inflated.receipt.amount = Amount::ath(9);
    let mut bad_sig = good.clone();
    bad_sig.container_sig[0] ^= 1;
    let unacked = s.unacked(sid(1), &alice, 600, "3").sign(&s.container);
    let mut acked_by_stranger = unacked.clone();
    acked_by_stranger.acknowledge(&stranger);
    let mut wrong_arithmetic = s.unacked(sid(1), &alice, 600, "3");
    wrong_arithmetic.amount = Amount::ath(2);
    let mut wrong_arithmetic = wrong_arithmetic.sign(&s.container);
    wrong_arithmetic.acknowledge(&s.gateway);
    let mut signed_by_stranger = s.unacked(sid(1), &alice, 600, "3").sign(&stranger);
    signed_by_stranger.acknowledge(&s.gateway);
    let bob = acc("consumer:bob");
    let other_consumer = s.receipt(sid(1), &bob, 600, "3");
    let no_escrow = s.receipt(sid(2), &alice, 600, "3");

    type Check = fn(&LedgerError) -> bool;
    let cases: Vec<(&str, _, Check)> = vec![
        ("amount changed after signing", inflated, |e| {
            matches!(e, LedgerError::Receipt(ReceiptError::ContainerSignature(_)))
        }),
        ("corrupted container signature", bad_sig, |e| {
            matches!(e, LedgerError::Receipt(ReceiptError::ContainerSignature(_)))
        }),
        ("signed by another key", signed_by_stranger, |e| {
            matches!(e, LedgerError::Receipt(ReceiptError::ContainerSignature(_)))
        }),
        ("not acknowledged", unacked, |e| matches!(e, LedgerError::Receipt(ReceiptError::Ack(_)))),
        ("acknowledged by the wrong node", acked_by_stranger, |e| {
            matches!(e, LedgerError::Receipt(ReceiptError::Ack(_)))
        }),
        ("amount != price x seconds", wrong_arithmetic, |e| {
            matches!(e, LedgerError::Receipt(ReceiptError::Inconsistent { .. }))
        }),
        ("billed to another consumer", other_consumer, |e| {
            matches!(e, LedgerError::ConsumerMismatch { escrow, receipt, .. }
                if escrow.as_str() == "consumer:alice" && receipt.as_str() == "consumer:bob")
        }),
        ("session without escrow", no_escrow, |e| *e == LedgerError::NoEscrow(crate::sid(2))),
    ];
    let sessions = [sid(1), sid(2)];
    for (name, receipt, check) in cases {
        let before = snapshot(&l, &sessions);
        let e = l.settle(&receipt, &gw, &payout).unwrap_err();
        assert!(check(&e), "{name}: unexpected error {e:?}");
        assert!(!e.to_string().is_empty() && e.to_string().chars().next().unwrap().is_lowercase(), "{name}: {e}");
        assert_eq!(snapshot(&l, &sessions), before, "{name}: state changed");
    }
    // The right receipt still pays.
    let settled = l.settle(&good, &gw, &payout).unwrap();
    assert_eq!(settled.charged, "0.5".parse().unwrap());
    l.check_invariant().unwrap();
}

/// The node sees the ledger only through the trait.
#[test]
fn the_trait_is_enough_to_run_a_session() {
    fn run(l: &mut dyn Settlement, s: &Signers) -> Result<Settled, LedgerError> {
        let bob = AccountId::new("consumer:bob").unwrap();
        l.transfer(&accounts::liquidity(), &bob, Amount::ath(3))?;
        l.lock_escrow(sid(5), &bob, Amount::ath(3))?;
        let settled = l.settle(&s.receipt(sid(5), &bob, 3600, "1"), &s.gateway.id(), &acc("node:n"))?;
        assert_eq!(l.account(&bob)?.balance, Amount::ath(2));
        l.check_invariant()?;
        Ok(settled)
    }
    let s = Signers::default();
    let mut l = ledger();
    assert_eq!(run(&mut l, &s).unwrap().charged, Amount::ath(1));
}

/// A container that failed mid-session: the consumer gets back the share of
/// what it paid for the undelivered seconds, once, from the provider's payout.
#[test]
fn undelivered_time_is_refunded_once_from_the_payout() {
    let s = Signers::default();
    let mut l = ledger();
    let alice = acc("consumer:alice");
    let payout = acc("node:payout");
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(100)).unwrap();
    l.lock_escrow(sid(1), &alice, Amount::ath(10)).unwrap();
    let settled = l.settle(&s.receipt(sid(1), &alice, 3600, "3"), &s.gateway.id(), &payout).unwrap();
    assert_eq!(settled.provider, "2.7".parse().unwrap());

    let r = l.refund_undelivered(sid(1), 1200).unwrap();
    assert_eq!((r.amount, r.paid_seconds, r.from_balance), (Amount::ath(1), 3600, Amount::ath(1)));
    assert_eq!(l.balance(&alice).unwrap(), Amount::ath(98));
    assert_eq!(l.balance(&payout).unwrap(), "1.7".parse().unwrap());
    assert_eq!(l.undelivered_refund(sid(1)).unwrap(), Some(r));
    l.check_invariant().unwrap();

    let before = snapshot(&l, &[sid(1)]);
    let e = l.refund_undelivered(sid(1), 1).unwrap_err();
    assert_eq!(e, LedgerError::UndeliveredAlreadyRefunded(sid(1)));
    assert_eq!(snapshot(&l, &[sid(1)]), before);
}

#[test]
fn undelivered_refunds_take_stake_when_the_balance_is_gone_and_refuse_bad_input() {
    let s = Signers::default();
    let mut l = ledger();
    let alice = acc("consumer:alice");
    let payout = acc("node:payout");
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(100)).unwrap();
    l.transfer(&accounts::liquidity(), &payout, Amount::ath(2)).unwrap();
    l.stake(&payout, dci_ledger::StakeRole::Container, Amount::ath(2)).unwrap();
    l.lock_escrow(sid(1), &alice, Amount::ath(10)).unwrap();
    l.settle(&s.receipt(sid(1), &alice, 3600, "3"), &s.gateway.id(), &payout).unwrap();
    l.lock_escrow(sid(2), &alice, Amount::ath(10)).unwrap();
    l.lock_escrow(sid(3), &alice, Amount::ath(1)).unwrap();
    l.refund(sid(3)).unwrap();
    // The provider spent its payout: 2.7 ATH gone.
    l.transfer(&payout, &acc("consumer:elsewhere"), "2.7".parse().unwrap()).unwrap();

    let sessions = [sid(1), sid(2), sid(3), sid(4)];
    let cases: Vec<(SessionId, u64, &str)> = vec![
        (sid(1), 0, "billed 3600 seconds: expected 1 to 3600 undelivered seconds, found 0"),
        (sid(1), 3601, "found 3601"),
        (sid(1), 3600, "insufficient funds in node:payout: have 2 ATH, need 3 ATH"),
        (sid(2), 10, "is not settled"),
        (sid(3), 10, "was already refunded"),
        (sid(4), 10, "no escrow for session"),
    ];
    for (session, secs, needle) in cases {
        let before = snapshot(&l, &sessions);
        let e = l.refund_undelivered(session, secs).unwrap_err();
        assert!(e.to_string().contains(needle), "expected {needle:?} in {e}");
        assert_eq!(snapshot(&l, &sessions), before);
    }
    let r = l.refund_undelivered(sid(1), 2400).unwrap();
    assert_eq!((r.amount, r.from_balance, r.from_stake), (Amount::ath(2), Amount::ZERO, Amount::ath(2)));
    assert_eq!(l.staked(&payout, dci_ledger::StakeRole::Container).unwrap(), Amount::ZERO);
    l.check_invariant().unwrap();
}

/// A settle carries an extra charge the gateway metered itself (model
/// tokens), taken from the same escrow after the receipt's amount and split
/// like it.
#[test]
fn an_extra_charge_is_paid_from_the_same_escrow_after_the_receipt() {
    /// (name, receipt seconds at 3 ATH/h, extra, escrow) -> (charged,
    /// extra_charged, refunded, shortfall), in tenths of an ATH.
    type Case = (&'static str, u64, u128, u128, (u128, u128, u128, u128));
    let s = Signers::default();
    let tenths = |n: u128| Amount(n * dci_model::money::ONE_ATH / 10);
    let cases: [Case; 4] = [
        ("extra within the escrow", 1_200, 5, 40, (15, 5, 25, 0)),
        ("extra beyond the escrow: capped, shortfall", 1_200, 30, 20, (20, 10, 0, 20)),
        ("no escrow left for the extra", 2_400, 5, 20, (20, 0, 0, 5)),
        ("no extra", 1_200, 0, 40, (10, 0, 30, 0)),
    ];
    for (n, (name, secs, extra, escrow, (charged, extra_charged, refunded, shortfall))) in cases.into_iter().enumerate()
    {
        let mut l = ledger();
        let (alice, payout, session) = (acc("consumer:alice"), acc("node:payout"), sid(n as u8));
        l.transfer(&accounts::liquidity(), &alice, Amount::ath(10)).unwrap();
        l.lock_escrow(session, &alice, tenths(escrow)).unwrap();
        let op = LedgerOp::Settle {
            receipt: s.receipt(session, &alice, secs, "3"),
            acker: s.gateway.id(),
            payout: payout.clone(),
            extra: tenths(extra),
        };
        let out = l.apply(&[op]).unwrap();
        let [OpOutcome::Settled(got)] = out.as_slice() else { panic!("{name}: {out:?}") };
        let want = (tenths(charged), tenths(extra_charged), tenths(refunded), tenths(shortfall));
        assert_eq!((got.charged, got.extra_charged, got.refunded, got.shortfall), want, "{name}");
        let split = l.fee_split().split(got.charged).unwrap();
        assert_eq!(
            (got.provider, got.checkers, got.treasury),
            (split.provider, split.checkers, split.treasury),
            "{name}"
        );
        assert_eq!(l.balance(&alice).unwrap(), Amount::ath(10).checked_sub(tenths(charged)).unwrap(), "{name}");
        assert_eq!(l.balance(&payout).unwrap(), split.provider, "{name}");
        assert_eq!(l.settlement(session).unwrap().unwrap().settled, *got, "{name}: recorded");
        l.check_invariant().unwrap();
    }
}

/// Undelivered seconds refund the share of what the receipt's time cost,
/// not of an extra charge (tokens the gateway relayed were delivered).
#[test]
fn undelivered_time_is_refunded_from_the_time_charge_only() {
    let s = Signers::default();
    let mut l = ledger();
    let (alice, payout) = (acc("consumer:alice"), acc("node:payout"));
    l.transfer(&accounts::liquidity(), &alice, Amount::ath(100)).unwrap();
    l.lock_escrow(sid(1), &alice, Amount::ath(10)).unwrap();
    let op = LedgerOp::Settle {
        receipt: s.receipt(sid(1), &alice, 3600, "3"),
        acker: s.gateway.id(),
        payout: payout.clone(),
        extra: Amount::ath(2),
    };
    let out = l.apply(&[op]).unwrap();
    assert!(
        matches!(&out[..], [OpOutcome::Settled(x)] if x.charged == Amount::ath(5) && x.extra_charged == Amount::ath(2))
    );
    let r = l.refund_undelivered(sid(1), 1200).unwrap();
    assert_eq!(r.amount, Amount::ath(1), "a third of the 3 ATH of time, none of the 2 ATH extra");
    l.check_invariant().unwrap();
}
