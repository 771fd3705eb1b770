//! Random operation sequences against a reference model (an oracle written
//! the obvious way with maps): same outcome, same balances, the supply
//! conserved, no charge above its escrow.

use dci_ledger::{EscrowState, FeeSplit, LedgerError, fees::BPS};
use dci_model::{Amount, money::TOTAL_SUPPLY};
use proptest::prelude::*;
use std::collections::BTreeMap;

use crate::{Signers, acc, ledger, sid};

const ACCOUNTS: [&str; 4] = ["genesis:liquidity", "consumer:a", "consumer:b", "node:p"];
const TENTH: u128 = dci_model::money::ONE_ATH / 10;
const SESSIONS: u8 = 6;
/// Each consumer starts with this many tenths of an ATH.
const FUNDING: u128 = 100;

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        tenths: u128,
    },
    Lock {
        session: u8,
        consumer: usize,
        tenths: u128,
    },
    /// At 3.6 ATH/h a second costs 0.001 ATH.
    Settle {
        session: u8,
        consumer: usize,
        secs: u64,
        forged: bool,
    },
    Refund {
        session: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // Consumers are accounts 1 and 2; account 3 (the payout) starts unknown.
    let consumer = prop_oneof![6 => 1..3usize, 1 => 0..4usize];
    prop_oneof![
        2 => (0..4usize, 0..4usize, 0..=60u128).prop_map(|(from, to, tenths)| Op::Transfer { from, to, tenths }),
        3 => (0..SESSIONS, consumer, 0..=40u128)
            .prop_map(|(session, consumer, tenths)| Op::Lock { session, consumer, tenths }),
        4 => (0..SESSIONS, 1..3usize, 0..=5000u64, proptest::bool::weighted(0.1))
            .prop_map(|(session, consumer, secs, forged)| Op::Settle { session, consumer, secs, forged }),
        1 => (0..SESSIONS).prop_map(|session| Op::Refund { session }),
    ]
}

/// What the model expects an operation to do.
type Outcome = Result<(), &'static str>;

fn kind(e: &LedgerError) -> &'static str {
    match e {
        LedgerError::UnknownAccount(_) => "unknown",
        LedgerError::InsufficientFunds { .. } => "insufficient",
        LedgerError::ZeroAmount => "zero",
        LedgerError::SameAccount(_) => "same",
        LedgerError::AlreadySettled(_) => "settled",
        LedgerError::AlreadyRefunded(_) => "refunded",
        LedgerError::NoEscrow(_) => "no escrow",
        LedgerError::EscrowExists(_) => "escrow exists",
        LedgerError::ConsumerMismatch { .. } => "mismatch",
        LedgerError::Receipt(_) => "receipt",
        other => panic!("unexpected error {other}"),
    }
}

#[derive(Default)]
struct Model {
    balances: BTreeMap<String, u128>,
    /// session -> (consumer, amount, state)
    escrows: BTreeMap<u8, (usize, u128, EscrowState)>,
}

impl Model {
    fn debit(&mut self, who: &str, amount: u128) -> Outcome {
        let have = *self.balances.get(who).ok_or("unknown")?;
        if have < amount {
            return Err("insufficient");
        }
        self.balances.insert(who.to_owned(), have - amount);
        Ok(())
    }

    fn credit(&mut self, who: &str, amount: u128) {
        if amount > 0 {
            *self.balances.entry(who.to_owned()).or_default() += amount;
        }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match *op {
            Op::Transfer { from, to, tenths } => {
                if tenths == 0 {
                    return Err("zero");
                }
                if from == to {
                    return Err("same");
                }
                self.debit(ACCOUNTS[from], tenths * TENTH)?;
                self.credit(ACCOUNTS[to], tenths * TENTH);
                Ok(())
            }
            Op::Lock { session, consumer, tenths } => {
                if tenths == 0 {
                    return Err("zero");
                }
                if self.escrows.contains_key(&session) {
                    return Err("escrow exists");
                }
                self.debit(ACCOUNTS[consumer], tenths * TENTH)?;
                self.escrows.insert(session, (consumer, tenths * TENTH, EscrowState::Open));
                Ok(())
            }
            Op::Settle { session, consumer, secs, forged } => {
                if forged {
                    return Err("receipt");
                }
                let (owner, locked, state) = *self.escrows.get(&session).ok_or("no escrow")?;
                match state {
                    EscrowState::Open => {}
                    EscrowState::Settled => return Err("settled"),
                    EscrowState::Refunded => return Err("refunded"),
                }
                if owner != consumer {
                    return Err("mismatch");
                }
                let billed = u128::from(secs) * dci_model::money::ONE_ATH / 1000;
                let charged = billed.min(locked);
                let f = FeeSplit::default();
                let part = |bps: u32| charged * u128::from(bps) / u128::from(BPS);
                let (c, i, t) = (part(f.checkers_bps()), part(f.indexers_bps()), part(f.treasury_bps()));
                self.credit("node:p", charged - c - i - t);
                self.credit("pool:checker-fees", c);
                self.credit("pool:indexer-fees", i);
                self.credit("treasury:protocol", t);
                self.credit(ACCOUNTS[owner], locked - charged);
                self.escrows.insert(session, (owner, locked, EscrowState::Settled));
                Ok(())
            }
            Op::Refund { session } => {
                let (owner, locked, state) = *self.escrows.get(&session).ok_or("no escrow")?;
                match state {
                    EscrowState::Open => {}
                    EscrowState::Settled => return Err("settled"),
                    EscrowState::Refunded => return Err("refunded"),
                }
                self.credit(ACCOUNTS[owner], locked);
                self.escrows.insert(session, (owner, locked, EscrowState::Refunded));
                Ok(())
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_conserve_supply_and_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let s = Signers::default();
        let mut l = ledger();
        let mut model = Model::default();
        for (a, amount) in dci_ledger::Genesis::default().amounts().unwrap() {
            model.credit(a.as_str(), amount.0);
        }
        for consumer in [1, 2] {
            let fund = Op::Transfer { from: 0, to: consumer, tenths: FUNDING };
            l.transfer(&acc(ACCOUNTS[0]), &acc(ACCOUNTS[consumer]), Amount(FUNDING * TENTH)).unwrap();
            model.apply(&fund).unwrap();
        }
        for op in &ops {
            let got = match *op {
                Op::Transfer { from, to, tenths } => {
                    l.transfer(&acc(ACCOUNTS[from]), &acc(ACCOUNTS[to]), Amount(tenths * TENTH))
                }
                Op::Lock { session, consumer, tenths } => {
                    l.lock_escrow(sid(session), &acc(ACCOUNTS[consumer]), Amount(tenths * TENTH))
                }
                Op::Settle { session, consumer, secs, forged } => {
                    let mut r = s.receipt(sid(session), &acc(ACCOUNTS[consumer]), secs, "3.6");
                    if forged {
                        r.receipt.amount = Amount(r.receipt.amount.0 + 1);
                    }
                    let escrow = l.escrow(sid(session)).unwrap();
                    l.settle(&r, &s.gateway.id(), &acc("node:p")).map(|settled| {
                        let escrow = escrow.expect("settled without an escrow").amount;
                        assert!(settled.charged <= escrow, "charged {} above escrow {escrow}", settled.charged);
                        assert!(settled.charged <= r.receipt.amount);
                        assert_eq!(settled.charged.0 + settled.refunded.0, escrow.0);
                        assert_eq!(
                            settled.provider.0 + settled.checkers.0 + settled.indexers.0 + settled.treasury.0,
                            settled.charged.0
                        );
                    })
                }
                Op::Refund { session } => l.refund(sid(session)).map(drop),
            };
            let expected = model.apply(op);
            prop_assert_eq!(got.as_ref().map_err(kind).copied(), expected, "{:?}: {:?}", op, got);
            let report = l.check_invariant().unwrap();
            prop_assert_eq!(report.found(), TOTAL_SUPPLY);
            let nonzero: BTreeMap<String, u128> = l
                .accounts()
                .unwrap()
                .into_iter()
                .filter(|(_, a)| !a.is_zero())
                .map(|(id, a)| (id.as_str().to_owned(), a.0))
                .collect();
            let model_nonzero: BTreeMap<String, u128> =
                model.balances.iter().filter(|(_, a)| **a != 0).map(|(k, v)| (k.clone(), *v)).collect();
            prop_assert_eq!(nonzero, model_nonzero);
            let open: u128 = model.escrows.values().filter(|e| e.2 == EscrowState::Open).map(|e| e.1).sum();
            prop_assert_eq!(report.escrowed.0, open);
        }
    }
}
