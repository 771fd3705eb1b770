//! Random operation sequences — transfers, escrows, receipts, refunds of
//! undelivered time, stakes, unbonding, withdrawals, epoch rewards, claims and
//! slashes — against a reference model (an oracle written the obvious way
//! with maps and plain u128 arithmetic): same outcome, same balances, stakes,
//! unbonding entries and pending rewards; the supply conserved; no charge
//! above its escrow; no second paid twice.

use dci_ledger::{
    CheckerWork, ContainerWork, EpochInput, EscrowState, FeeSplit, IndexerWork, LedgerError, LedgerOp, OpOutcome,
    Params, SlashReport, StakeRole, fees::BPS,
};
use dci_model::{Amount, money::TOTAL_SUPPLY};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

use crate::{Signers, acc, committee, ledger, sid};

/// 0 funds everyone; 1, 2 consume; 3, 4 are nodes; 5 is never funded.
const ACCOUNTS: [&str; 6] = ["genesis:liquidity", "consumer:a", "consumer:b", "node:p", "node:q", "node:z"];
const TENTH: u128 = dci_model::money::ONE_ATH / 10;
const SESSIONS: u8 = 3;
/// Accounts 1 to 4 start with this many tenths of an ATH.
const FUNDING: u128 = 100;
const HOUR_MS: u64 = 3_600_000;
const POOL: Amount = Amount::ath(21_000_000_000);

fn role(checker: bool) -> StakeRole {
    if checker { StakeRole::Checker } else { StakeRole::Container }
}

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
    /// At 3.6 ATH/h a second costs 0.001 ATH; `extra` tenths of an ATH
    /// metered by the gateway come on top.
    Settle {
        session: u8,
        consumer: usize,
        secs: u64,
        forged: bool,
        payout: usize,
        extra: u128,
    },
    Refund {
        session: u8,
    },
    Undelivered {
        session: u8,
        secs: u64,
    },
    Stake {
        account: usize,
        checker: bool,
        tenths: u128,
    },
    Unstake {
        account: usize,
        checker: bool,
        tenths: u128,
        hour: u64,
    },
    Withdraw {
        account: usize,
        hour: u64,
    },
    Claim {
        account: usize,
    },
    /// Containers (node, capacity, uptime), checkers (node, inspections),
    /// indexer matches of consumer:a.
    Distribute {
        epoch: u64,
        containers: Vec<(usize, u64, u32)>,
        checkers: Vec<(usize, u64)>,
        matches: Option<u64>,
    },
    /// Signed by the first `signers` of a committee of 3; `forged` corrupts
    /// the first signature.
    Slash {
        offender: usize,
        checker: bool,
        epoch: u64,
        evidence: u8,
        tenths: u128,
        signers: usize,
        forged: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let any_account = 0..ACCOUNTS.len();
    let consumer = prop_oneof![6 => 1..3usize, 1 => 0..ACCOUNTS.len()];
    let node = prop_oneof![6 => 3..5usize, 1 => 0..ACCOUNTS.len()];
    let weight = (0..20u64, 0..=1_000_000u32);
    prop_oneof![
        2 => (any_account.clone(), any_account.clone(), 0..=60u128)
            .prop_map(|(from, to, tenths)| Op::Transfer { from, to, tenths }),
        3 => (0..SESSIONS, consumer, 0..=40u128).prop_map(|(session, consumer, tenths)| Op::Lock { session, consumer, tenths }),
        3 => (0..SESSIONS, 1..3usize, 0..=5000u64, proptest::bool::weighted(0.1), 3..6usize, prop_oneof![2 => Just(0u128), 1 => 0..=30u128])
            .prop_map(|(session, consumer, secs, forged, payout, extra)| Op::Settle { session, consumer, secs, forged, payout, extra }),
        1 => (0..SESSIONS).prop_map(|session| Op::Refund { session }),
        2 => (0..SESSIONS, 0..=5001u64).prop_map(|(session, secs)| Op::Undelivered { session, secs }),
        3 => (node.clone(), any::<bool>(), 0..=40u128).prop_map(|(account, checker, tenths)| Op::Stake { account, checker, tenths }),
        3 => (node.clone(), any::<bool>(), 0..=10u128, 0..100u64)
            .prop_map(|(account, checker, tenths, hour)| Op::Unstake { account, checker, tenths, hour }),
        2 => (node.clone(), 0..400u64).prop_map(|(account, hour)| Op::Withdraw { account, hour }),
        1 => (0..ACCOUNTS.len()).prop_map(|account| Op::Claim { account }),
        2 => (0..4u64,
              proptest::option::of(weight.clone()), proptest::option::of(weight),
              proptest::option::of(0..10u64), proptest::option::of(0..10u64), proptest::option::of(0..10u64))
            .prop_map(|(epoch, p, q, cp, cq, matches)| {
                let containers = [(3, p), (4, q)].into_iter().filter_map(|(a, w)| w.map(|(c, u)| (a, c, u))).collect();
                let checkers = [(3, cp), (4, cq)].into_iter().filter_map(|(a, n)| n.map(|n| (a, n))).collect();
                Op::Distribute { epoch, containers, checkers, matches }
            }),
        2 => (node, any::<bool>(), 0..3u64, 0..3u8, 0..=80u128, 0..=3usize, proptest::bool::weighted(0.2))
            .prop_map(|(offender, checker, epoch, evidence, tenths, signers, forged)| {
                Op::Slash { offender, checker, epoch, evidence, tenths, signers, forged }
            }),
    ]
}

/// One kind of miner in the model: (account, weight) entries, share in basis
/// points, fee pool balance.
type RoleInput<'a> = (Vec<(&'a str, u128)>, u128, u128);

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
        LedgerError::NotSettled(_) => "not settled",
        LedgerError::UndeliveredSeconds { .. } => "undelivered seconds",
        LedgerError::UndeliveredAlreadyRefunded(_) => "undelivered refunded",
        LedgerError::InsufficientStake { .. } => "insufficient stake",
        LedgerError::NothingToWithdraw { .. } => "nothing to withdraw",
        LedgerError::NoPendingRewards(_) => "no rewards",
        LedgerError::EpochAlreadyDistributed(_) => "epoch distributed",
        LedgerError::SlashQuorum { .. } => "quorum",
        LedgerError::SlashAlreadyApplied { .. } => "slash applied",
        LedgerError::NothingToSlash { .. } => "nothing to slash",
        other => panic!("unexpected error {other}"),
    }
}

struct Unbonding {
    account: usize,
    role: StakeRole,
    amount: u128,
    release_ms: u64,
}

#[derive(Default)]
struct Model {
    balances: BTreeMap<String, u128>,
    /// session -> (consumer, amount, state)
    escrows: BTreeMap<u8, (usize, u128, EscrowState)>,
    /// session -> (consumer, charged for the receipt, billed seconds, payout)
    settled: BTreeMap<u8, (usize, u128, u64, usize)>,
    undelivered: BTreeSet<u8>,
    stakes: BTreeMap<(usize, StakeRole), u128>,
    unbonding: Vec<Unbonding>,
    pending: BTreeMap<String, u128>,
    epochs: BTreeSet<u64>,
    /// Evidence slashed (a piece of evidence is slashed at most once).
    slashes: BTreeSet<u8>,
}

impl Model {
    fn bal(&self, who: &str) -> u128 {
        self.balances.get(who).copied().unwrap_or(0)
    }

    fn debit(&mut self, who: &str, amount: u128) -> Outcome {
        let have = *self.balances.get(who).ok_or("unknown")?;
        if have < amount {
            return Err("insufficient");
        }
        self.balances.insert(who.to_owned(), have - amount);
        Ok(())
    }

    /// Credits, creating the account (the ledger creates payout and reward
    /// accounts even for zero).
    fn credit(&mut self, who: &str, amount: u128) {
        *self.balances.entry(who.to_owned()).or_default() += amount;
    }

    fn stake(&self, account: usize, role: StakeRole) -> u128 {
        self.stakes.get(&(account, role)).copied().unwrap_or(0)
    }

    fn set_stake(&mut self, account: usize, role: StakeRole, v: u128) {
        if v == 0 {
            self.stakes.remove(&(account, role));
        } else {
            self.stakes.insert((account, role), v);
        }
    }

    fn pend(&self, account: &str) -> u128 {
        self.pending.get(account).copied().unwrap_or(0)
    }

    fn set_pend(&mut self, account: &str, v: u128) {
        if v == 0 {
            self.pending.remove(account);
        } else {
            self.pending.insert(account.to_owned(), v);
        }
    }

    fn open(&self, session: u8) -> Result<(usize, u128), &'static str> {
        let (owner, locked, state) = *self.escrows.get(&session).ok_or("no escrow")?;
        match state {
            EscrowState::Open => Ok((owner, locked)),
            EscrowState::Settled => Err("settled"),
            EscrowState::Refunded => Err("refunded"),
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
            Op::Settle { session, consumer, secs, forged, payout, extra } => {
                if forged {
                    return Err("receipt");
                }
                let (owner, locked) = self.open(session)?;
                if owner != consumer {
                    return Err("mismatch");
                }
                let billed = u128::from(secs) * dci_model::money::ONE_ATH / 1000;
                let charged = (billed + extra * TENTH).min(locked);
                let f = FeeSplit::default();
                let part = |bps: u32| charged * u128::from(bps) / u128::from(BPS);
                let (c, i, t) = (part(f.checkers_bps()), part(f.indexers_bps()), part(f.treasury_bps()));
                self.credit(ACCOUNTS[payout], charged - c - i - t);
                self.credit("pool:checker-fees", c);
                self.credit("pool:indexer-fees", i);
                self.credit("treasury:protocol", t);
                self.credit(ACCOUNTS[owner], locked - charged);
                self.escrows.insert(session, (owner, locked, EscrowState::Settled));
                // Undelivered time refunds a share of what the time cost.
                self.settled.insert(session, (owner, billed.min(locked), secs, payout));
                Ok(())
            }
            Op::Refund { session } => {
                let (owner, locked) = self.open(session)?;
                self.credit(ACCOUNTS[owner], locked);
                self.escrows.insert(session, (owner, locked, EscrowState::Refunded));
                Ok(())
            }
            Op::Undelivered { session, secs } => {
                let Some(&(consumer, charged, paid, payout)) = self.settled.get(&session) else {
                    return match self.open(session) {
                        Ok(_) => Err("not settled"),
                        Err(e) => Err(e),
                    };
                };
                if secs == 0 || secs > paid {
                    return Err("undelivered seconds");
                }
                if self.undelivered.contains(&session) {
                    return Err("undelivered refunded");
                }
                let amount = charged * u128::from(secs) / u128::from(paid);
                let who = ACCOUNTS[payout];
                let (bal, pend, stake) = (self.bal(who), self.pend(who), self.stake(payout, StakeRole::Container));
                if bal + pend + stake < amount {
                    return Err("insufficient");
                }
                let from_bal = bal.min(amount);
                let from_pend = pend.min(amount - from_bal);
                let from_stake = amount - from_bal - from_pend;
                self.balances.insert(who.to_owned(), bal - from_bal);
                self.set_pend(who, pend - from_pend);
                self.set_stake(payout, StakeRole::Container, stake - from_stake);
                self.credit(ACCOUNTS[consumer], amount);
                self.undelivered.insert(session);
                Ok(())
            }
            Op::Stake { account, checker, tenths } => {
                if tenths == 0 {
                    return Err("zero");
                }
                self.debit(ACCOUNTS[account], tenths * TENTH)?;
                let r = role(checker);
                self.set_stake(account, r, self.stake(account, r) + tenths * TENTH);
                Ok(())
            }
            Op::Unstake { account, checker, tenths, hour } => {
                if tenths == 0 {
                    return Err("zero");
                }
                let r = role(checker);
                let have = self.stake(account, r);
                if have < tenths * TENTH {
                    return Err("insufficient stake");
                }
                self.set_stake(account, r, have - tenths * TENTH);
                let release_ms = hour * HOUR_MS + Params::default().unbonding_secs * 1000;
                self.unbonding.push(Unbonding { account, role: r, amount: tenths * TENTH, release_ms });
                Ok(())
            }
            Op::Withdraw { account, hour } => {
                let now = hour * HOUR_MS;
                let due: u128 = self
                    .unbonding
                    .iter()
                    .filter(|u| u.account == account && u.release_ms <= now)
                    .map(|u| u.amount)
                    .sum();
                if !self.unbonding.iter().any(|u| u.account == account && u.release_ms <= now) {
                    return Err("nothing to withdraw");
                }
                self.unbonding.retain(|u| !(u.account == account && u.release_ms <= now));
                self.credit(ACCOUNTS[account], due);
                Ok(())
            }
            Op::Claim { account } => {
                let p = self.pend(ACCOUNTS[account]);
                if p == 0 {
                    return Err("no rewards");
                }
                self.set_pend(ACCOUNTS[account], 0);
                self.credit(ACCOUNTS[account], p);
                Ok(())
            }
            Op::Distribute { epoch, ref containers, ref checkers, matches } => {
                if self.epochs.contains(&epoch) {
                    return Err("epoch distributed");
                }
                let emitted = Params::default().emission(POOL, epoch).unwrap().amount.0.min(self.bal("pool:mining"));
                let roles: [RoleInput<'_>; 3] = [
                    (
                        containers.iter().map(|&(a, c, u)| (ACCOUNTS[a], u128::from(c) * u128::from(u))).collect(),
                        7_000,
                        0,
                    ),
                    (
                        checkers.iter().map(|&(a, n)| (ACCOUNTS[a], u128::from(n))).collect(),
                        2_000,
                        self.bal("pool:checker-fees"),
                    ),
                    (
                        matches.map(|m| ("consumer:a", u128::from(m))).into_iter().collect(),
                        1_000,
                        self.bal("pool:indexer-fees"),
                    ),
                ];
                let pools = ["pool:checker-fees", "pool:checker-fees", "pool:indexer-fees"];
                for (i, (entries, bps, fees)) in roles.iter().enumerate() {
                    let budget = emitted * bps / u128::from(BPS);
                    let total: u128 = entries.iter().map(|e| e.1).sum();
                    for &(who, w) in entries {
                        let (m, f) =
                            ((budget * w).checked_div(total).unwrap_or(0), (fees * w).checked_div(total).unwrap_or(0));
                        self.credit(who, 0);
                        *self.balances.get_mut("pool:mining").unwrap() -= m;
                        if f > 0 {
                            *self.balances.get_mut(pools[i]).unwrap() -= f;
                        }
                        self.set_pend(who, self.pend(who) + m + f);
                    }
                }
                self.epochs.insert(epoch);
                Ok(())
            }
            Op::Slash { offender, checker, epoch: _, evidence, tenths, signers, forged } => {
                if tenths == 0 {
                    return Err("zero");
                }
                let valid = if forged && signers > 0 { signers - 1 } else { signers };
                if valid < 2 {
                    return Err("quorum");
                }
                let r = role(checker);
                if !self.slashes.insert(evidence) {
                    return Err("slash applied");
                }
                let who = ACCOUNTS[offender];
                let (pend, stake) = (self.pend(who), self.stake(offender, r));
                let unbonding: u128 =
                    self.unbonding.iter().filter(|u| u.account == offender && u.role == r).map(|u| u.amount).sum();
                if pend == 0 && stake == 0 && unbonding == 0 {
                    self.slashes.remove(&evidence);
                    return Err("nothing to slash");
                }
                let amount = tenths * TENTH;
                let from_rewards = pend.min(amount);
                let cap = (stake + unbonding) * 1_000 / u128::from(BPS);
                let from_bonded = (amount - from_rewards).min(cap);
                let from_stake = from_bonded.min(stake);
                let mut left = from_bonded - from_stake;
                self.set_pend(who, pend - from_rewards);
                self.set_stake(offender, r, stake - from_stake);
                let mut order: Vec<usize> = (0..self.unbonding.len())
                    .filter(|&i| self.unbonding[i].account == offender && self.unbonding[i].role == r)
                    .collect();
                // Latest release first; released together, smallest first.
                order.sort_by_key(|&i| (std::cmp::Reverse(self.unbonding[i].release_ms), self.unbonding[i].amount));
                for i in order {
                    let take = self.unbonding[i].amount.min(left);
                    self.unbonding[i].amount -= take;
                    left -= take;
                }
                self.unbonding.retain(|u| u.amount > 0);
                self.credit("pool:slashed", from_rewards + from_bonded);
                Ok(())
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_conserve_supply_and_match_the_model(ops in proptest::collection::vec(op(), 1..50)) {
        let s = Signers::default();
        let (members, committee_ids) = committee(3);
        let mut l = ledger();
        let mut model = Model::default();
        for (a, amount) in dci_ledger::Genesis::default().amounts().unwrap() {
            model.credit(a.as_str(), amount.0);
        }
        for (account, name) in ACCOUNTS.iter().enumerate().take(5).skip(1) {
            let fund = Op::Transfer { from: 0, to: account, tenths: FUNDING };
            l.transfer(&acc(ACCOUNTS[0]), &acc(name), Amount(FUNDING * TENTH)).unwrap();
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
                Op::Settle { session, consumer, secs, forged, payout, extra } => {
                    let mut r = s.receipt(sid(session), &acc(ACCOUNTS[consumer]), secs, "3.6");
                    if forged {
                        r.receipt.amount = Amount(r.receipt.amount.0 + 1);
                    }
                    let escrow = l.escrow(sid(session)).unwrap();
                    let op = LedgerOp::Settle {
                        receipt: r.clone(),
                        acker: s.gateway.id(),
                        payout: acc(ACCOUNTS[payout]),
                        extra: Amount(extra * TENTH),
                    };
                    l.apply(&[op]).map_err(LedgerError::unbatch).map(|out| {
                        let [OpOutcome::Settled(settled)] = out[..] else { panic!("{out:?}") };
                        let escrow = escrow.expect("settled without an escrow").amount;
                        assert!(settled.charged <= escrow, "charged {} above escrow {escrow}", settled.charged);
                        assert!(settled.charged.0 <= r.receipt.amount.0 + extra * TENTH);
                        assert!(settled.extra_charged.0 <= extra * TENTH);
                        assert_eq!(settled.charged.0 + settled.shortfall.0, r.receipt.amount.0 + extra * TENTH);
                        assert_eq!(settled.charged.0 + settled.refunded.0, escrow.0);
                        assert_eq!(
                            settled.provider.0 + settled.checkers.0 + settled.indexers.0 + settled.treasury.0,
                            settled.charged.0
                        );
                    })
                }
                Op::Refund { session } => l.refund(sid(session)).map(drop),
                Op::Undelivered { session, secs } => l.refund_undelivered(sid(session), secs).map(|r| {
                    let paid = l.settlement(sid(session)).unwrap().unwrap();
                    assert!(r.amount <= paid.settled.charged, "refunded more than was paid");
                }),
                Op::Stake { account, checker, tenths } => {
                    l.stake(&acc(ACCOUNTS[account]), role(checker), Amount(tenths * TENTH))
                }
                Op::Unstake { account, checker, tenths, hour } => l
                    .unstake(&acc(ACCOUNTS[account]), role(checker), Amount(tenths * TENTH), dci_model::Timestamp(hour * HOUR_MS))
                    .map(drop),
                Op::Withdraw { account, hour } => {
                    l.withdraw_unbonded(&acc(ACCOUNTS[account]), dci_model::Timestamp(hour * HOUR_MS)).map(drop)
                }
                Op::Claim { account } => l.claim_rewards(&acc(ACCOUNTS[account])).map(drop),
                Op::Distribute { epoch, ref containers, ref checkers, matches } => {
                    let input = EpochInput {
                        containers: containers
                            .iter()
                            .map(|&(a, capacity_units, uptime_ppm)| ContainerWork { account: acc(ACCOUNTS[a]), capacity_units, uptime_ppm })
                            .collect(),
                        checkers: checkers
                            .iter()
                            .map(|&(a, correct_inspections)| CheckerWork { account: acc(ACCOUNTS[a]), correct_inspections })
                            .collect(),
                        indexers: matches
                            .map(|served_matches| IndexerWork { account: acc("consumer:a"), served_matches })
                            .into_iter()
                            .collect(),
                    };
                    l.distribute_epoch(epoch, &input).map(|summary| {
                        assert!(summary.paid <= summary.emitted);
                        assert_eq!(summary.paid.0 + summary.kept.0, summary.emitted.0);
                    })
                }
                Op::Slash { offender, checker, epoch, evidence, tenths, signers, forged } => {
                    let mut r = SlashReport::new(acc(ACCOUNTS[offender]), role(checker), epoch, [evidence; 32], Amount(tenths * TENTH));
                    for m in &members[..signers] {
                        r.sign(m);
                    }
                    if forged && signers > 0 {
                        r.signatures[0].1[0] ^= 1;
                    }
                    l.slash(&r, &committee_ids).map(|done| assert!(done.taken() <= r.amount))
                }
            };
            let expected = model.apply(op);
            prop_assert_eq!(got.as_ref().map_err(kind).copied(), expected, "{:?}: {:?}", op, got);

            let report = l.check_invariant().unwrap();
            prop_assert_eq!(report.found(), TOTAL_SUPPLY);
            let snap = l.snapshot().unwrap();
            let nonzero = |m: &BTreeMap<String, u128>| -> BTreeMap<String, u128> {
                m.iter().filter(|(_, a)| **a != 0).map(|(k, v)| (k.clone(), *v)).collect()
            };
            let got_balances: BTreeMap<String, u128> =
                snap.accounts.iter().map(|(id, a)| (id.as_str().to_owned(), a.0)).collect();
            prop_assert_eq!(nonzero(&got_balances), nonzero(&model.balances));
            let got_stakes: BTreeMap<(String, StakeRole), u128> =
                snap.stakes.iter().map(|s| ((s.account.as_str().to_owned(), s.role), s.amount.0)).collect();
            let model_stakes: BTreeMap<(String, StakeRole), u128> =
                model.stakes.iter().map(|((a, r), v)| ((ACCOUNTS[*a].to_owned(), *r), *v)).collect();
            prop_assert_eq!(got_stakes, model_stakes);
            let mut got_unbonding: Vec<(String, StakeRole, u128, u64)> =
                snap.unbonding.iter().map(|u| (u.account.as_str().to_owned(), u.role, u.amount.0, u.release_at.0)).collect();
            let mut model_unbonding: Vec<(String, StakeRole, u128, u64)> =
                model.unbonding.iter().map(|u| (ACCOUNTS[u.account].to_owned(), u.role, u.amount, u.release_ms)).collect();
            got_unbonding.sort();
            model_unbonding.sort();
            prop_assert_eq!(got_unbonding, model_unbonding);
            let got_pending: BTreeMap<String, u128> =
                snap.rewards.iter().map(|(a, v)| (a.as_str().to_owned(), v.0)).collect();
            prop_assert_eq!(got_pending, nonzero(&model.pending));
            let open: u128 = model.escrows.values().filter(|e| e.2 == EscrowState::Open).map(|e| e.1).sum();
            prop_assert_eq!(report.escrowed.0, open);
            prop_assert_eq!(snap.settlements, model.settled.len() as u64);
            prop_assert_eq!(snap.epochs, model.epochs.iter().copied().collect::<Vec<_>>());
        }
    }
}
