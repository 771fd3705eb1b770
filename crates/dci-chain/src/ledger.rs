//! [`EvmLedger`]: [`Settlement`] on the DciLedger contract.
//!
//! `apply(ops)` simulates the ops in order against the chain state they
//! touch (read fresh in a few calls), with the same rules and errors as the
//! embedded ledger (the money rules are the same functions:
//! `dci_ledger::rules::settle` and `rules::slash`, `rewards::distribute`);
//! a refused op refuses the whole batch before anything is sent. The accepted batch becomes ONE transaction, `DciLedger.batch(id,
//! calls)`, in which consecutive settles and refunds are netted into one
//! `settleNetted` call (see the crate docs for why) and consecutive escrow
//! locks into one `lockEscrows` call. The contract re-checks every rule it
//! can and reverts the whole transaction if the chain disagrees.
//!
//! Chain faults: a transaction whose outcome is unknown (RPC down, anvil
//! stopped, receipt not seen in time) is kept as the *pending batch*. The
//! next call resolves it first: if `applied(id)` is true it landed (its
//! outcomes are kept for [`EvmLedger::take_resolution`] and the new batch is
//! refused, so the caller never applies anything twice by mistake); if not,
//! its nonce is consumed by a no-op transaction so it can never land later,
//! and the new batch proceeds. A batch is one transaction, so it is never
//! half-applied.
//!
//! For callers that queue ops: [`EvmLedger::check`] is `apply` without the
//! sending; [`EvmLedger::prepare`] and [`EvmLedger::submit_prepared`] split
//! `apply` so that the batch's id and nonce can be recorded before it
//! leaves, and [`EvmLedger::resolve_batch`] resolves such a batch after a
//! restart as the pending batch is resolved within one process.
//!
//! Committees and slashing: the contract counts ECDSA signatures of the
//! epoch's committee as published on chain. A committee gets there only by
//! a `SetCommittee` op (`setCommittee(epoch, members, signatures)`): for an
//! epoch after the latest committee on chain, signed by ⌈2n/3⌉ distinct
//! members of that committee ([`crate::committee_digest_at`]); the genesis
//! committee (epoch 0) is fixed at deployment. A `Slash` of an epoch with
//! no committee on chain (nor published earlier in the same batch) is
//! refused ([`LedgerError::NoCommittee`]): the settler never publishes one
//! by itself. The simulation checks both quorums before anything is sent.
//! A piece of evidence is slashed at most once, in any epoch: the contract
//! keys `slashApplied` by the evidence hash, and the simulation reads it
//! there.
//!
//! Time: an epoch is distributed only once it has ended on the chain's
//! clock (`genesisTime + (epoch + 1) × epochSecs`, read against the pending
//! block's time), and an account has at most
//! [`dci_ledger::rules::MAX_UNBONDING`] unbonding entries per role.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use dci_ledger::rules::Slashable;
use dci_ledger::{
    AccountView, EpochInput, EpochSummary, EscrowState, FeeSplit, LedgerError, LedgerOp, OpOutcome, Params,
    RewardExplanation, RewardLine, RewardShares, Settled, Settlement, SlashFractions, SlashReport, Slashed, StakeRole,
    SupplyReport, UnbondingEntry, accounts,
};
use dci_model::{AccountId, Amount, NodeId, SessionId, Timestamp, money::TOTAL_SUPPLY};
use dci_proto::SignedReceipt;

use crate::abi::{AthToken, DciLedger};
use crate::client::{Client, batch_id};
use crate::{ChainError, Deployment, account_address, amount_u256, u256_amount};

/// One session's escrow as the chain records it.
#[derive(Clone, Debug)]
struct Session {
    index: u64,
    consumer: Address,
    amount: Amount,
    state: EscrowState,
}

/// A batch sent whose outcome is not known yet.
#[derive(Clone, Debug)]
struct Pending {
    id: B256,
    nonce: u64,
    outcomes: Vec<OpOutcome>,
    effects: Effects,
}

/// A distributed epoch's summary and lines, kept for `reward_breakdown`.
type EpochRecord = (EpochSummary, Vec<(AccountId, RewardLine)>);

/// What a landed batch changes in this process's caches.
#[derive(Clone, Debug, Default)]
struct Effects {
    sessions: Vec<(SessionId, Session)>,
    epochs: Vec<(u64, EpochRecord)>,
    names: Vec<(Address, AccountId)>,
}

/// How a pending batch was resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// It landed: these are its outcomes.
    Applied {
        /// The batch id.
        id: B256,
        /// One per op, as `apply` would have returned them.
        outcomes: Vec<OpOutcome>,
    },
    /// It did not land and never will (its nonce is used up).
    NotApplied {
        /// The batch id.
        id: B256,
    },
}

/// Gas used by the last batch that landed (bench, metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastBatch {
    /// Gas used by the transaction.
    pub gas_used: u64,
    /// Ops in it.
    pub ops: usize,
    /// Contract calls it made (after netting).
    pub calls: usize,
}

/// The DCI ledger on an EVM chain (R-LG6 `evm`). See the module docs.
pub struct EvmLedger {
    client: Client,
    dep: Deployment,
    params: Params,
    mining_genesis: Amount,
    sessions: HashMap<SessionId, Session>,
    names: HashMap<Address, AccountId>,
    epochs: BTreeMap<u64, EpochRecord>,
    pending: Option<Pending>,
    resolution: Option<Resolution>,
    last: LastBatch,
    /// When epoch 0 started on chain (seconds; the deployment block's time).
    genesis_time: u64,
}

/// A batch simulated and ready to send ([`EvmLedger::prepare`]): its id
/// and nonce are known before it leaves, so a caller can record them first
/// and find out later whether it landed ([`EvmLedger::resolve_batch`]).
#[derive(Debug)]
pub struct Prepared {
    id: B256,
    nonce: u64,
    tx: TransactionRequest,
    outcomes: Vec<OpOutcome>,
    effects: Effects,
    ops: usize,
    calls: usize,
}

impl Prepared {
    /// The batch id (`DciLedger.applied(id)` once it landed).
    pub fn id(&self) -> B256 {
        self.id
    }

    /// The settler nonce it is sent with.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The outcomes it will have, one per op.
    pub fn outcomes(&self) -> &[OpOutcome] {
        &self.outcomes
    }
}

impl std::fmt::Debug for EvmLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmLedger").field("rpc", &self.client.url).field("deployment", &self.dep).finish()
    }
}

fn role_u8(r: StakeRole) -> u8 {
    r.code()
}

fn role_of(r: u8) -> Result<StakeRole, ChainError> {
    StakeRole::from_code(r)
        .ok_or_else(|| ChainError::Deployment(format!("expected a stake role 0, 1 or 2 on chain, found {r}")))
}

/// What the ledger holds for one account, as simulated.
#[derive(Clone, Copy, Debug, Default)]
struct Row {
    balance: Amount,
    escrowed: Amount,
    staked: [Amount; 3],
    pending: Amount,
}

#[derive(Clone, Debug)]
struct Unb {
    role: StakeRole,
    release_ms: u64,
    amount: Amount,
}

/// Consecutive settles and refunds, netted.
#[derive(Default)]
struct Netting {
    close: BTreeMap<u64, U256>,
    refund: BTreeMap<u64, U256>,
    debits: BTreeMap<Address, (Amount, Amount)>,
    credits: BTreeMap<Address, Amount>,
    records: Vec<u8>,
}

impl Netting {
    fn is_empty(&self) -> bool {
        self.close.is_empty()
    }

    fn close(&mut self, index: u64, refund: bool) {
        let bit = U256::from(1u8) << (index % 256) as usize;
        *self.close.entry(index / 256).or_default() |= bit;
        if refund {
            *self.refund.entry(index / 256).or_default() |= bit;
        }
    }

    fn debit(&mut self, consumer: Address, released: Amount, refunded: Amount) -> Result<(), LedgerError> {
        let e = self.debits.entry(consumer).or_default();
        e.0 = e.0.checked_add(released)?;
        e.1 = e.1.checked_add(refunded)?;
        Ok(())
    }

    fn credit(&mut self, to: Address, amount: Amount) -> Result<(), LedgerError> {
        if !amount.is_zero() {
            let e = self.credits.entry(to).or_default();
            *e = e.checked_add(amount)?;
        }
        Ok(())
    }

    fn call(self) -> Bytes {
        let words = |m: BTreeMap<u64, U256>| m.into_iter().flat_map(|(w, b)| [U256::from(w), b]).collect::<Vec<_>>();
        DciLedger::settleNettedCall {
            recordsHash: keccak256(&self.records),
            closeWords: words(self.close),
            refundWords: words(self.refund),
            debits: self
                .debits
                .into_iter()
                .map(|(consumer, (r, f))| DciLedger::Debit {
                    consumer,
                    released: amount_u256(r),
                    refunded: amount_u256(f),
                })
                .collect(),
            credits: self.credits.into_iter().map(|(to, a)| DciLedger::Credit { to, amount: amount_u256(a) }).collect(),
        }
        .abi_encode()
        .into()
    }
}

/// The simulation of one batch.
struct Sim<'a> {
    l: &'a EvmLedger,
    rows: HashMap<Address, Row>,
    unb: HashMap<Address, Vec<Unb>>,
    sessions: HashMap<SessionId, Session>,
    next_index: u64,
    locks: Vec<DciLedger::Lock>,
    first_lock: u64,
    netting: Netting,
    epochs_done: HashSet<u64>,
    slashes_done: HashSet<B256>,
    /// Committees on chain (read before the batch, or published in it).
    committees: HashMap<u64, Vec<Address>>,
    /// The latest committee on chain: its epoch and members (read before
    /// the batch when it publishes one, then the one it published).
    latest: Option<(u64, Vec<Address>)>,
    /// The chain's time for the batch (seconds; read when it distributes).
    chain_now: u64,
    calls: Vec<Bytes>,
    effects: Effects,
}

impl Sim<'_> {
    fn row(&mut self, a: Address) -> &mut Row {
        self.rows.entry(a).or_default()
    }

    fn name(&mut self, id: &AccountId) -> Address {
        let a = account_address(id);
        self.effects.names.push((a, id.clone()));
        a
    }

    fn debit(&mut self, id: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        let a = self.name(id);
        let row = self.row(a);
        row.balance = row.balance.checked_sub(amount).map_err(|_| LedgerError::InsufficientFunds {
            account: id.clone(),
            have: row.balance,
            need: amount,
        })?;
        Ok(())
    }

    fn credit(&mut self, a: Address, amount: Amount) -> Result<(), LedgerError> {
        let row = self.row(a);
        row.balance = row.balance.checked_add(amount)?;
        Ok(())
    }

    /// Ends the current lock and netting groups (a different op follows).
    fn flush_groups(&mut self, keep_locks: bool, keep_netting: bool) {
        if !keep_locks && !self.locks.is_empty() {
            let mut locks = std::mem::take(&mut self.locks);
            // Grouped by consumer, the contract moves each consumer's
            // tokens once; session indices follow the sorted order.
            locks.sort_by_key(|l| l.consumer);
            for (k, l) in locks.iter().enumerate() {
                let id = SessionId(l.session.0);
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.index = self.first_lock + k as u64;
                    self.effects.sessions.push((id, s.clone()));
                }
            }
            self.calls.push(DciLedger::lockEscrowsCall { firstIndex: self.first_lock, locks }.abi_encode().into());
        }
        if !keep_netting && !self.netting.is_empty() {
            let n = std::mem::take(&mut self.netting);
            self.calls.push(n.call());
        }
    }

    fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id).or_else(|| self.l.sessions.get(&id))
    }

    fn open(&self, id: SessionId) -> Result<Session, LedgerError> {
        let s = self.session(id).ok_or(LedgerError::NoEscrow(id))?;
        match s.state {
            EscrowState::Open => Ok(s.clone()),
            EscrowState::Settled => Err(LedgerError::AlreadySettled(id)),
            EscrowState::Refunded => Err(LedgerError::AlreadyRefunded(id)),
        }
    }

    fn close(&mut self, id: SessionId, mut s: Session, state: EscrowState) {
        s.state = state;
        self.effects.sessions.push((id, s.clone()));
        self.sessions.insert(id, s);
    }

    fn op(&mut self, op: &LedgerOp) -> Result<OpOutcome, LedgerError> {
        let (locks, netting) = (
            matches!(op, LedgerOp::LockEscrow { .. }),
            matches!(op, LedgerOp::Settle { .. } | LedgerOp::Refund { .. }),
        );
        self.flush_groups(locks, netting);
        match op {
            LedgerOp::Transfer(t) => {
                if t.amount.is_zero() {
                    return Err(LedgerError::ZeroAmount);
                }
                if t.from == t.to {
                    return Err(LedgerError::SameAccount(t.from.clone()));
                }
                self.debit(&t.from, t.amount)?;
                let (from, to) = (account_address(&t.from), self.name(&t.to));
                self.credit(to, t.amount)?;
                self.calls.push(DciLedger::moveCall { from, to, amount: amount_u256(t.amount) }.abi_encode().into());
                Ok(OpOutcome::Done)
            }
            LedgerOp::Stake { account, role, amount } => {
                if amount.is_zero() {
                    return Err(LedgerError::ZeroAmount);
                }
                self.debit(account, *amount)?;
                let a = account_address(account);
                let i = role_u8(*role);
                let row = self.row(a);
                row.staked[i as usize] = row.staked[i as usize].checked_add(*amount)?;
                self.calls.push(
                    DciLedger::stakeCall { account: a, role: i, amount: amount_u256(*amount) }.abi_encode().into(),
                );
                Ok(OpOutcome::Done)
            }
            LedgerOp::Unstake { account, role, amount, now } => {
                if amount.is_zero() {
                    return Err(LedgerError::ZeroAmount);
                }
                let a = self.name(account);
                let i = role_u8(*role);
                let have = self.row(a).staked[i as usize];
                let left = have.checked_sub(*amount).map_err(|_| LedgerError::InsufficientStake {
                    account: account.clone(),
                    role: *role,
                    have,
                    need: *amount,
                })?;
                let entries = self.unb.get(&a).map_or(0, |l| l.iter().filter(|u| u.role == *role).count());
                dci_ledger::rules::unbonding_room(account, *role, entries)?;
                self.row(a).staked[i as usize] = left;
                let release = now.0.saturating_add(self.l.params.unbonding_ms());
                self.unb.entry(a).or_default().push(Unb { role: *role, release_ms: release, amount: *amount });
                self.calls.push(
                    DciLedger::unstakeCall { account: a, role: i, amount: amount_u256(*amount), nowMs: now.0 }
                        .abi_encode()
                        .into(),
                );
                Ok(OpOutcome::Unbonding(UnbondingEntry {
                    account: account.clone(),
                    role: *role,
                    amount: *amount,
                    release_at: Timestamp(release),
                }))
            }
            LedgerOp::WithdrawUnbonded { account, now } => {
                let a = self.name(account);
                let list = self.unb.entry(a).or_default();
                let (due, later): (Vec<Unb>, Vec<Unb>) = list.drain(..).partition(|u| u.release_ms <= now.0);
                *list = later;
                let next = list.iter().map(|u| u.release_ms).min().map(Timestamp);
                let total = due.iter().try_fold(Amount::ZERO, |s, u| s.checked_add(u.amount))?;
                if total.is_zero() {
                    return Err(LedgerError::NothingToWithdraw { account: account.clone(), now: *now, next });
                }
                self.credit(a, total)?;
                self.calls.push(DciLedger::withdrawUnbondedCall { account: a, nowMs: now.0 }.abi_encode().into());
                Ok(OpOutcome::Amount(total))
            }
            LedgerOp::ClaimRewards { account } => {
                let a = self.name(account);
                let row = self.row(a);
                let p = std::mem::take(&mut row.pending);
                if p.is_zero() {
                    return Err(LedgerError::NoPendingRewards(account.clone()));
                }
                row.balance = row.balance.checked_add(p)?;
                self.calls.push(DciLedger::claimRewardsCall { account: a }.abi_encode().into());
                Ok(OpOutcome::Amount(p))
            }
            LedgerOp::LockEscrow { session, consumer, amount } => {
                if amount.is_zero() {
                    return Err(LedgerError::ZeroAmount);
                }
                if self.session(*session).is_some() {
                    return Err(LedgerError::EscrowExists(*session));
                }
                self.debit(consumer, *amount)?;
                let a = account_address(consumer);
                let row = self.row(a);
                row.escrowed = row.escrowed.checked_add(*amount)?;
                if self.locks.is_empty() {
                    self.first_lock = self.next_index;
                }
                let s = Session { index: self.next_index, consumer: a, amount: *amount, state: EscrowState::Open };
                self.next_index += 1;
                self.effects.sessions.push((*session, s.clone()));
                self.sessions.insert(*session, s);
                self.locks.push(DciLedger::Lock {
                    session: FixedBytes(session.0),
                    consumer: a,
                    amount: amount_u256(*amount),
                });
                Ok(OpOutcome::Done)
            }
            LedgerOp::Refund { session } => {
                let s = self.open(*session)?;
                let row = self.row(s.consumer);
                row.escrowed = row.escrowed.checked_sub(s.amount)?;
                row.balance = row.balance.checked_add(s.amount)?;
                self.netting.close(s.index, true);
                self.netting.debit(s.consumer, s.amount, s.amount)?;
                self.netting.records.extend_from_slice(&session.0);
                self.netting.records.extend_from_slice(&s.amount.0.to_be_bytes());
                let amount = s.amount;
                self.close(*session, s, EscrowState::Refunded);
                Ok(OpOutcome::Amount(amount))
            }
            LedgerOp::Settle { receipt, acker, payout, extra } => {
                self.settle(receipt, acker, payout, *extra).map(OpOutcome::Settled)
            }
            LedgerOp::DistributeEpoch { epoch, input } => self.distribute(*epoch, input).map(OpOutcome::Epoch),
            LedgerOp::Slash { report, committee } => self.slash(report, committee).map(OpOutcome::Slashed),
            LedgerOp::SetCommittee { epoch, members, signatures } => {
                self.set_committee(*epoch, members, signatures).map(|()| OpOutcome::Done)
            }
            LedgerOp::RefundUndelivered { .. } => Err(unsupported(
                "refund_undelivered",
                "settled sessions keep no per-session record on chain (they are netted); refund with a transfer from the payout account",
            )),
            LedgerOp::SetParams { .. } => Err(unsupported(
                "set_params",
                "the parameters are fixed when the contracts are deployed; deploy a new ledger to change them",
            )),
        }
    }

    fn settle(
        &mut self,
        receipt: &SignedReceipt,
        acker: &NodeId,
        payout: &AccountId,
        extra: Amount,
    ) -> Result<Settled, LedgerError> {
        receipt.verify(acker)?;
        let r = &receipt.receipt;
        let s = self.open(r.session)?;
        if s.consumer != account_address(&r.consumer) {
            let escrow = self.l.names.get(&s.consumer).cloned().unwrap_or_else(|| evm_account(s.consumer));
            return Err(LedgerError::ConsumerMismatch { session: r.session, escrow, receipt: r.consumer.clone() });
        }
        let settled = dci_ledger::rules::settle(r.session, r.amount, extra, s.amount, &self.l.params.fees)?;
        let payout_a = self.name(payout);
        let pools = [
            (payout_a, settled.provider),
            (account_address(&accounts::checker_fees()), settled.checkers),
            (account_address(&accounts::indexer_fees()), settled.indexers),
            (account_address(&accounts::treasury()), settled.treasury),
        ];
        for (to, amount) in pools {
            self.credit(to, amount)?;
            self.netting.credit(to, amount)?;
        }
        let row = self.row(s.consumer);
        row.escrowed = row.escrowed.checked_sub(s.amount)?;
        row.balance = row.balance.checked_add(settled.refunded)?;
        self.netting.close(s.index, false);
        self.netting.debit(s.consumer, s.amount, settled.refunded)?;
        // The record: session ‖ charged ‖ extra charged ‖ payout ‖ the
        // container's receipt signature.
        let n = &mut self.netting.records;
        n.extend_from_slice(&r.session.0);
        n.extend_from_slice(&settled.charged.0.to_be_bytes());
        n.extend_from_slice(&settled.extra_charged.0.to_be_bytes());
        n.extend_from_slice(payout_a.as_slice());
        n.extend_from_slice(&receipt.container_sig);
        self.close(r.session, s, EscrowState::Settled);
        Ok(settled)
    }

    fn distribute(&mut self, epoch: u64, input: &EpochInput) -> Result<EpochSummary, LedgerError> {
        if self.epochs_done.contains(&epoch) {
            return Err(LedgerError::EpochAlreadyDistributed(epoch));
        }
        let ends = self.l.epoch_end(epoch);
        if self.chain_now < ends {
            return Err(LedgerError::EpochNotEnded {
                epoch,
                ends_at: Timestamp(ends.saturating_mul(1000)),
                now: Timestamp(self.chain_now.saturating_mul(1000)),
            });
        }
        let schedule = self.l.params.emission(self.l.mining_genesis, epoch)?;
        let (mining, cf, ix) = (
            account_address(&accounts::mining_pool()),
            account_address(&accounts::checker_fees()),
            account_address(&accounts::indexer_fees()),
        );
        let pool = self.row(mining).balance;
        let fee_pools = [self.row(cf).balance, self.row(ix).balance];
        let dci_ledger::rewards::Distribution { summary, lines } =
            dci_ledger::rewards::distribute(&self.l.params, schedule, pool, fee_pools, input)?;
        let (cf_paid, ix_paid) = (summary.roles[1].fees_paid, summary.roles[2].fees_paid);
        for (a, amount) in [(mining, summary.paid), (cf, cf_paid), (ix, ix_paid)] {
            let row = self.row(a);
            row.balance = row.balance.checked_sub(amount)?;
        }
        let mut per_account: BTreeMap<Address, Amount> = BTreeMap::new();
        for (account, line) in &lines {
            let a = self.name(account);
            let earned = line.mining.checked_add(line.fees)?;
            let e = per_account.entry(a).or_default();
            *e = e.checked_add(earned)?;
            let row = self.row(a);
            row.pending = row.pending.checked_add(earned)?;
        }
        let (accounts, amounts): (Vec<Address>, Vec<U256>) =
            per_account.into_iter().filter(|(_, v)| !v.is_zero()).map(|(a, v)| (a, amount_u256(v))).unzip();
        self.calls.push(
            DciLedger::distributeEpochCall {
                epoch,
                mining: amount_u256(summary.paid),
                checkerFees: amount_u256(cf_paid),
                indexerFees: amount_u256(ix_paid),
                accounts,
                amounts,
            }
            .abi_encode()
            .into(),
        );
        self.epochs_done.insert(epoch);
        self.effects.epochs.push((epoch, (summary.clone(), lines)));
        Ok(summary)
    }

    fn slash(&mut self, report: &SlashReport, committee: &[NodeId]) -> Result<Slashed, LedgerError> {
        dci_ledger::rules::slashable(report.role)?;
        if report.amount.is_zero() {
            return Err(LedgerError::ZeroAmount);
        }
        let signers = report.verify_quorum(committee)?;
        let (offender, role) = (&report.offender, report.role);
        let key = B256::from(report.evidence_hash);
        if self.slashes_done.contains(&key) {
            return Err(LedgerError::SlashAlreadyApplied { evidence: report.evidence_hash });
        }
        let members: HashSet<&NodeId> = committee.iter().collect();
        let chain_sigs: Vec<Bytes> = report
            .signatures
            .iter()
            .filter(|(id, sig)| sig.len() == 65 && members.contains(id))
            .map(|(_, sig)| Bytes::copy_from_slice(sig))
            .collect();
        if chain_sigs.is_empty() {
            return Err(unsupported(
                "slash without chain signatures",
                "the contract checks the committee's ECDSA signatures: each member adds dci_chain::chain_slash_signature next to its ed25519 one",
            ));
        }
        // The epoch's committee on chain: published by an earlier batch, or
        // by a `SetCommittee` earlier in this one.
        let on_chain = self.committees.get(&report.epoch).cloned().ok_or(LedgerError::NoCommittee(report.epoch))?;
        let digest = crate::slash_digest(&self.l.dep, report);
        let valid = distinct_signers(digest, &chain_sigs, &on_chain);
        let needed = (2 * on_chain.len() as u64).div_ceil(3);
        if valid < needed {
            return Err(LedgerError::SlashQuorum {
                offender: report.offender.clone(),
                valid,
                needed,
                committee: on_chain.len() as u64,
            });
        }
        let a = self.name(offender);
        let i = role_u8(role);
        let row = *self.row(a);
        let list = self.unb.entry(a).or_default();
        let mine: Vec<usize> = (0..list.len()).filter(|&k| list[k].role == role).collect();
        let held = Slashable {
            pending: row.pending,
            stake: row.staked[i as usize],
            unbonding: mine.iter().map(|&k| (Timestamp(list[k].release_ms), list[k].amount)).collect(),
        };
        let take = dci_ledger::rules::slash(report, &held, &self.l.params.slash)?;
        for (&k, taken) in mine.iter().zip(&take.unbonding_takes) {
            list[k].amount = list[k].amount.checked_sub(*taken)?;
        }
        // The contract removes the entries taken whole (their order does
        // not matter to the rule).
        list.retain(|u| !u.amount.is_zero());
        let r = self.row(a);
        r.pending = r.pending.checked_sub(take.from_rewards)?;
        r.staked[i as usize] = r.staked[i as usize].checked_sub(take.from_stake)?;
        let out = take.slashed(report, signers);
        self.credit(account_address(&out.to), out.taken())?;
        self.slashes_done.insert(key);
        self.calls.push(
            DciLedger::slashCall {
                offender: a,
                role: i,
                epoch: report.epoch,
                evidence: key,
                amount: amount_u256(report.amount),
                signatures: chain_sigs,
            }
            .abi_encode()
            .into(),
        );
        Ok(out)
    }

    /// `setCommittee`: an epoch after the latest committee's, valid members
    /// ([`dci_ledger::rules::committee`]), and the signatures of ⌈2n/3⌉
    /// distinct members of the latest committee.
    fn set_committee(&mut self, epoch: u64, members: &[[u8; 20]], signatures: &[Vec<u8>]) -> Result<(), LedgerError> {
        let (latest, signers) = self
            .latest
            .clone()
            .ok_or_else(|| LedgerError::Storage("evm backend: the latest committee was not read".into()))?;
        dci_ledger::rules::committee(epoch, members, Some(latest))?;
        let members: Vec<Address> = members.iter().map(|m| Address::from(*m)).collect();
        let sigs: Vec<Bytes> = signatures.iter().map(|s| Bytes::copy_from_slice(s)).collect();
        let digest = crate::committee_digest_at(self.l.dep.chain_id, self.l.dep.ledger, epoch, &members);
        let valid = distinct_signers(digest, &sigs, &signers);
        let n = signers.len() as u64;
        let needed = (2 * n).div_ceil(3);
        if valid < needed {
            return Err(LedgerError::CommitteeQuorum { epoch, latest, valid, needed, committee: n });
        }
        self.calls.push(
            DciLedger::setCommitteeCall { epoch, members: members.clone(), signatures: sigs }.abi_encode().into(),
        );
        self.committees.insert(epoch, members.clone());
        self.latest = Some((epoch, members));
        Ok(())
    }
}

/// How many distinct members of `committee` signed `digest` among `sigs`,
/// as the contract counts them (`_countSigners`).
fn distinct_signers(digest: B256, sigs: &[Bytes], committee: &[Address]) -> u64 {
    let valid: HashSet<Address> =
        sigs.iter().filter_map(|s| crate::recover(digest, s)).filter(|a| committee.contains(a)).collect();
    valid.len() as u64
}

fn unsupported(op: &str, why: &str) -> LedgerError {
    LedgerError::InvalidInput(format!("{op} is not supported by the evm settlement backend: {why}"))
}

/// An account known only by its address (e.g. after a restart).
fn evm_account(a: Address) -> AccountId {
    AccountId::new(format!("evm:{}", hex::encode(a.as_slice()))).unwrap_or_else(|_| accounts::treasury())
}

impl EvmLedger {
    /// Connects to the ledger of `deployment` at `rpc_url` with the settler's
    /// key, checks that the contracts are there and that the key is the
    /// settler, and loads the parameters and the session escrows from chain.
    pub fn connect(rpc_url: &str, settler_key: &str, deployment: &Deployment) -> Result<EvmLedger, ChainError> {
        let client = Client::connect(rpc_url, settler_key)?;
        let mut l = EvmLedger {
            client,
            dep: deployment.clone(),
            params: Params::default(),
            mining_genesis: Amount::ZERO,
            sessions: HashMap::new(),
            names: HashMap::new(),
            epochs: BTreeMap::new(),
            pending: None,
            resolution: None,
            last: LastBatch::default(),
            genesis_time: 0,
        };
        for id in [
            accounts::mining_pool(),
            accounts::checker_fees(),
            accounts::indexer_fees(),
            accounts::treasury(),
            accounts::slashed(),
            accounts::liquidity(),
        ] {
            l.names.insert(account_address(&id), id);
        }
        l.load()?;
        Ok(l)
    }

    /// Points the ledger at another endpoint of the same chain (a restarted
    /// node), reloading everything it caches. A pending batch stays pending
    /// and is resolved by the next call.
    pub fn reconnect(&mut self, rpc_url: &str, settler_key: &str) -> Result<(), ChainError> {
        let timeout = self.client.confirm_timeout;
        self.client = Client::connect(rpc_url, settler_key)?;
        self.client.confirm_timeout = timeout;
        self.load()
    }

    /// How long to wait for a batch's receipt before its outcome counts as
    /// unknown (default 60 s).
    pub fn set_confirm_timeout(&mut self, d: Duration) {
        self.client.confirm_timeout = d;
    }

    /// The deployment this ledger talks to.
    pub fn deployment(&self) -> &Deployment {
        &self.dep
    }

    /// Gas of the last batch that landed.
    pub fn last_batch(&self) -> LastBatch {
        self.last
    }

    /// Is a batch waiting to be resolved?
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The resolution of the last pending batch that turned out to have
    /// landed, once.
    pub fn take_resolution(&mut self) -> Option<Resolution> {
        self.resolution.take()
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn ledger(&self) -> DciLedger::DciLedgerInstance<&alloy::providers::DynProvider> {
        DciLedger::new(self.dep.ledger, &self.client.provider)
    }

    fn rpc<T, F: std::future::IntoFuture<Output = Result<T, alloy::contract::Error>>>(
        &self,
        what: &str,
        f: F,
    ) -> Result<T, ChainError> {
        self.client.block_on(f).map_err(|e| self.client.contract_error(what, e))
    }

    fn load(&mut self) -> Result<(), ChainError> {
        let c = &self.client;
        let chain_id = c.chain_id()?;
        if chain_id != self.dep.chain_id {
            return Err(ChainError::Deployment(format!(
                "expected chain id {} at {}, found {chain_id}: wrong endpoint for this deployment",
                self.dep.chain_id, c.url
            )));
        }
        let code = c.block_on(c.provider.get_code_at(self.dep.ledger)).map_err(|e| c.rpc_error("eth_getCode", e))?;
        if code.is_empty() {
            return Err(ChainError::Deployment(format!(
                "no DciLedger contract at {} on the chain at {}: was the chain replaced or reset? deploy again (`dci chain deploy`) and update the node config",
                self.dep.ledger, c.url
            )));
        }
        let ledger = self.ledger();
        let token = self.rpc("reading token()", ledger.token().call())?;
        let settler = self.rpc("reading settler()", ledger.settler().call())?;
        if token != self.dep.token {
            return Err(ChainError::Deployment(format!(
                "expected the ledger's token to be {}, found {token}",
                self.dep.token
            )));
        }
        if settler != self.client.from {
            return Err(ChainError::Deployment(format!(
                "the key given is for {}, but the ledger's settler is {settler}: only the settler's key can submit batches",
                self.client.from
            )));
        }
        let p = self.rpc("reading params()", ledger.params().call())?;
        let mining = self.rpc("reading miningGenesis()", ledger.miningGenesis().call())?;
        let genesis_time = self.rpc("reading genesisTime()", ledger.genesisTime().call())?;
        let genesis_time = u64::try_from(genesis_time)
            .map_err(|_| ChainError::Deployment(format!("expected a genesis time in seconds, found {genesis_time}")))?;
        let next = self.rpc("reading nextSession()", ledger.nextSession().call())?;
        let params = Params {
            unbonding_secs: p.unbondingSecs,
            epoch_secs: p.epochSecs,
            fees: FeeSplit::new(p.feeProviderBps, p.feeCheckersBps, p.feeIndexersBps, p.feeTreasuryBps)?,
            emission: dci_ledger::EmissionSchedule { years: p.emissionYears, decay_bps: p.decayBps },
            rewards: RewardShares {
                containers_bps: p.rewardContainersBps,
                checkers_bps: p.rewardCheckersBps,
                indexers_bps: p.rewardIndexersBps,
            },
            slash: SlashFractions { container_bps: p.containerSlashBps, checker_bps: p.checkerSlashBps },
            // Not on chain yet (the indexers enforce it, reading it from the
            // gateway): the default.
            min_container_stake: dci_ledger::params::DEFAULT_MIN_CONTAINER_STAKE,
        };
        let mining_genesis = u256_amount(mining)?;
        // Sessions: every lock is an event; closed/refunded are bitmaps.
        let filter = Filter::new()
            .address(self.dep.ledger)
            .event_signature(DciLedger::EscrowLocked::SIGNATURE_HASH)
            .from_block(self.dep.deployed_at_block);
        let logs =
            c.block_on(c.provider.get_logs(&filter)).map_err(|e| c.rpc_error("reading EscrowLocked events", e))?;
        let mut words: HashMap<u64, (U256, U256)> = HashMap::new();
        for w in 0..next.div_ceil(256) {
            let closed = self.rpc("reading closed()", ledger.closed(U256::from(w)).call())?;
            let refunded = self.rpc("reading refunded()", ledger.refunded(U256::from(w)).call())?;
            words.insert(w, (closed, refunded));
        }
        let mut sessions = HashMap::new();
        for log in logs {
            let e = DciLedger::EscrowLocked::decode_log_data(log.data())
                .map_err(|e| ChainError::Deployment(format!("cannot decode an EscrowLocked event: {e}")))?;
            let (closed, refunded) = words.get(&(e.index / 256)).copied().unwrap_or_default();
            let bit = U256::from(1u8) << (e.index % 256) as usize;
            let state = match (closed & bit != U256::ZERO, refunded & bit != U256::ZERO) {
                (false, _) => EscrowState::Open,
                (true, false) => EscrowState::Settled,
                (true, true) => EscrowState::Refunded,
            };
            sessions.insert(
                SessionId(e.session.0),
                Session { index: e.index, consumer: e.consumer, amount: u256_amount(e.amount)?, state },
            );
        }
        if sessions.len() as u64 != next {
            return Err(ChainError::Deployment(format!(
                "expected {next} EscrowLocked events from block {}, found {}: the endpoint's log history is incomplete",
                self.dep.deployed_at_block,
                sessions.len()
            )));
        }
        self.mining_genesis = mining_genesis;
        self.params = params;
        self.genesis_time = genesis_time;
        self.sessions = sessions;
        Ok(())
    }

    fn rows(&self, addrs: &[Address]) -> Result<Vec<Row>, ChainError> {
        let mut out = Vec::with_capacity(addrs.len());
        for chunk in addrs.chunks(500) {
            let rows = self.rpc("reading accountRows()", self.ledger().accountRows(chunk.to_vec()).call())?;
            for r in rows {
                out.push(Row {
                    balance: u256_amount(r.balance)?,
                    escrowed: u256_amount(r.escrowed)?,
                    staked: [
                        u256_amount(r.stakedContainer)?,
                        u256_amount(r.stakedChecker)?,
                        u256_amount(r.stakedIndexer)?,
                    ],
                    pending: u256_amount(r.pending)?,
                });
            }
        }
        Ok(out)
    }

    fn unbonding_entries(&self, a: Address) -> Result<Vec<Unb>, ChainError> {
        let list = self.rpc("reading unbondingOf()", self.ledger().unbondingOf(a).call())?;
        list.into_iter()
            .map(|u| Ok(Unb { role: role_of(u.role)?, release_ms: u.releaseAtMs, amount: u256_amount(u.amount)? }))
            .collect()
    }

    /// The latest committee on chain: its epoch and members (chain
    /// signers). Its members sign the next committee
    /// ([`crate::committee_signature_at`]).
    pub fn latest_committee(&self) -> Result<(u64, Vec<Address>), ChainError> {
        let ledger = self.ledger();
        let epoch = self.rpc("reading latestCommitteeEpoch()", ledger.latestCommitteeEpoch().call())?;
        Ok((epoch, self.committee(epoch)?))
    }

    /// The committee of `epoch` on chain (empty if none was published).
    pub fn committee(&self, epoch: u64) -> Result<Vec<Address>, ChainError> {
        self.rpc("reading committee()", self.ledger().committee(epoch).call())
    }

    /// When `epoch` ends on the chain's clock (seconds): the genesis time
    /// (the ledger's deployment block) + (epoch + 1) × the epoch length.
    pub fn epoch_end(&self, epoch: u64) -> u64 {
        self.genesis_time.saturating_add(epoch.saturating_add(1).saturating_mul(self.params.epoch_secs))
    }

    /// Resolves the pending batch, if any (see the module docs).
    pub fn resolve_pending(&mut self) -> Result<Option<Resolution>, ChainError> {
        let Some(p) = self.pending.clone() else { return Ok(None) };
        let ledger = self.ledger();
        if self.rpc("reading applied()", ledger.applied(p.id).call())? {
            return Ok(Some(self.landed(p)));
        }
        let c = &self.client;
        let mined = c
            .block_on(c.provider.get_transaction_count(c.from))
            .map_err(|e| c.rpc_error("eth_getTransactionCount", e))?;
        if mined <= p.nonce {
            // It may still be in a mempool: use its nonce up with a no-op
            // priced to replace it, so it can never land later.
            let gas_price = c.block_on(c.provider.get_gas_price()).map_err(|e| c.rpc_error("eth_gasPrice", e))?;
            let price = gas_price.saturating_mul(3).max(3_000_000_000);
            let tx = TransactionRequest::default()
                .with_to(c.from)
                .with_value(U256::ZERO)
                .with_nonce(p.nonce)
                .with_gas_limit(21_000)
                .with_max_fee_per_gas(price)
                .with_max_priority_fee_per_gas(price);
            if let Err(e) = c.send(tx, "cancelling the unconfirmed batch") {
                tracing::warn!(error = %e, "cancelling an unconfirmed batch failed; checking whether it landed");
            }
            if self.rpc("reading applied()", ledger.applied(p.id).call())? {
                return Ok(Some(self.landed(p)));
            }
            let mined = c
                .block_on(c.provider.get_transaction_count(c.from))
                .map_err(|e| c.rpc_error("eth_getTransactionCount", e))?;
            if mined <= p.nonce {
                return Err(ChainError::Unreachable {
                    url: c.url.clone(),
                    why: format!("batch {} is still unconfirmed and could not be cancelled; retry later", p.id),
                });
            }
        }
        self.pending = None;
        tracing::warn!(batch = %p.id, "an unconfirmed batch did not land; nothing of it was applied");
        Ok(Some(Resolution::NotApplied { id: p.id }))
    }

    fn landed(&mut self, p: Pending) -> Resolution {
        self.pending = None;
        self.absorb(p.effects);
        tracing::warn!(batch = %p.id, ops = p.outcomes.len(), "an unconfirmed batch did land on chain");
        Resolution::Applied { id: p.id, outcomes: p.outcomes }
    }

    fn absorb(&mut self, e: Effects) {
        for (id, s) in e.sessions {
            self.sessions.insert(id, s);
        }
        self.epochs.extend(e.epochs);
        self.names.extend(e.names);
    }

    fn resolve_before_new_batch(&mut self) -> Result<(), ChainError> {
        match self.resolve_pending()? {
            Some(r @ Resolution::Applied { .. }) => {
                let Resolution::Applied { id, ref outcomes } = r else { unreachable!() };
                let n = outcomes.len();
                self.resolution = Some(r);
                Err(ChainError::Deployment(format!(
                    "the earlier batch {id} ({n} ops) whose outcome was unknown did land on chain; its outcomes are in EvmLedger::take_resolution(). This new batch was not applied: submit it again"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Gets a batch of `calls` ready: its nonce and id, and the gas the
    /// chain estimates for it (a refusal costs nothing and sends nothing).
    fn prepare_calls(
        &mut self,
        calls: Vec<Bytes>,
        outcomes: Vec<OpOutcome>,
        effects: Effects,
        ops: usize,
    ) -> Result<Prepared, ChainError> {
        let c = &self.client;
        let nonce = c
            .block_on(c.provider.get_transaction_count(c.from).pending())
            .map_err(|e| c.rpc_error("eth_getTransactionCount", e))?;
        let id = batch_id(&calls, nonce);
        let n_calls = calls.len();
        let tx = self.ledger().batch(id, calls).into_transaction_request().with_from(c.from).with_nonce(nonce);
        let gas =
            c.block_on(c.provider.estimate_gas(tx.clone())).map_err(|e| c.rpc_error(&format!("batch {id}"), e))?;
        let tx = tx.with_gas_limit(gas.saturating_add(gas / 5).saturating_add(50_000));
        Ok(Prepared { id, nonce, tx, outcomes, effects, ops, calls: n_calls })
    }

    /// Sends a prepared batch and waits for it. An unknown outcome leaves
    /// it pending (see the module docs).
    fn submit(&mut self, p: Prepared) -> Result<Vec<OpOutcome>, ChainError> {
        let Prepared { id, nonce, tx, outcomes, effects, ops, calls } = p;
        let what = format!("batch {id} of {ops} ops");
        self.pending = Some(Pending { id, nonce, outcomes: outcomes.clone(), effects: effects.clone() });
        match self.client.send(tx, &what) {
            Ok(receipt) => {
                self.pending = None;
                self.absorb(effects);
                self.last = LastBatch { gas_used: receipt.gas_used, ops, calls };
                Ok(outcomes)
            }
            Err(e @ ChainError::Refused { .. }) => {
                self.pending = None;
                Err(e)
            }
            Err(e) => Err(ChainError::Unreachable {
                url: self.client.url.clone(),
                why: format!(
                    "{e}; the outcome of batch {id} is unknown: it is applied entirely or not at all, and the next call finds out which"
                ),
            }),
        }
    }

    /// The outcomes `ops` would have if applied now, with the same rules
    /// and errors as [`Settlement::apply`], without sending anything.
    pub fn check(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        Ok(self.simulate(ops)?.1)
    }

    /// Simulates `ops` and gets their batch ready to send, without sending
    /// it: `prepare` then [`EvmLedger::submit_prepared`] is `apply`, with a
    /// moment in between to record the batch's id and nonce.
    pub fn prepare(&mut self, ops: &[LedgerOp]) -> Result<Prepared, LedgerError> {
        let (calls, outcomes, effects) = self.simulate(ops)?;
        Ok(self.prepare_calls(calls, outcomes, effects, ops.len())?)
    }

    /// Sends a batch from [`EvmLedger::prepare`] and waits for it.
    pub fn submit_prepared(&mut self, p: Prepared) -> Result<Vec<OpOutcome>, LedgerError> {
        Ok(self.submit(p)?)
    }

    /// Did batch `id`, sent with settler nonce `nonce` (by this process or
    /// an earlier one), land? If it did not, its nonce is used up first so
    /// it never can (see the module docs); either way nothing stays pending.
    pub fn resolve_batch(&mut self, id: B256, nonce: u64) -> Result<bool, ChainError> {
        let mine = self.pending.as_ref().is_some_and(|p| p.id == id);
        if !mine {
            // Another pending batch of this process is resolved first.
            if self.pending.is_some() {
                self.resolve_before_new_batch()?;
            }
            self.pending = Some(Pending { id, nonce, outcomes: Vec::new(), effects: Effects::default() });
        }
        match self.resolve_pending()? {
            Some(Resolution::Applied { .. }) => {
                self.resolution = None;
                if !mine {
                    // Its effects are not known here: read them from chain.
                    self.load()?;
                }
                Ok(true)
            }
            Some(Resolution::NotApplied { .. }) | None => Ok(false),
        }
    }

    fn apply_ops(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        if ops.is_empty() {
            self.resolve_before_new_batch()?;
            return Ok(Vec::new());
        }
        let p = self.prepare(ops)?;
        self.submit_prepared(p)
    }

    /// Simulates `ops` against the chain state they touch: the contract
    /// calls, the outcomes and the effects on this process's caches.
    fn simulate(&mut self, ops: &[LedgerOp]) -> Result<(Vec<Bytes>, Vec<OpOutcome>, Effects), LedgerError> {
        self.resolve_before_new_batch()?;
        // Read what the ops touch, in as few calls as possible.
        let mut addrs: Vec<Address> = [
            accounts::mining_pool(),
            accounts::checker_fees(),
            accounts::indexer_fees(),
            accounts::treasury(),
            accounts::slashed(),
        ]
        .iter()
        .map(account_address)
        .collect();
        let mut unb_for = Vec::new();
        let mut epochs = Vec::new();
        let mut slashes = Vec::new();
        let mut locks = false;
        let mut publishes = false;
        for op in ops {
            match op {
                LedgerOp::Transfer(t) => addrs.extend([account_address(&t.from), account_address(&t.to)]),
                LedgerOp::Stake { account, .. } | LedgerOp::ClaimRewards { account } => {
                    addrs.push(account_address(account))
                }
                LedgerOp::Unstake { account, .. } | LedgerOp::WithdrawUnbonded { account, .. } => {
                    addrs.push(account_address(account));
                    unb_for.push(account_address(account));
                }
                LedgerOp::LockEscrow { consumer, .. } => {
                    addrs.push(account_address(consumer));
                    locks = true;
                }
                LedgerOp::Settle { receipt, payout, .. } => {
                    addrs.extend([account_address(&receipt.receipt.consumer), account_address(payout)]);
                }
                LedgerOp::Refund { session } => {
                    if let Some(s) = self.sessions.get(session) {
                        addrs.push(s.consumer);
                    }
                }
                LedgerOp::DistributeEpoch { epoch, input } => {
                    epochs.push(*epoch);
                    addrs.extend(input.containers.iter().map(|w| account_address(&w.account)));
                    addrs.extend(input.checkers.iter().map(|w| account_address(&w.account)));
                    addrs.extend(input.indexers.iter().map(|w| account_address(&w.account)));
                }
                LedgerOp::Slash { report, .. } => {
                    addrs.push(account_address(&report.offender));
                    unb_for.push(account_address(&report.offender));
                    slashes.push((B256::from(report.evidence_hash), report.epoch));
                }
                LedgerOp::SetCommittee { .. } => publishes = true,
                LedgerOp::RefundUndelivered { .. } | LedgerOp::SetParams { .. } => {}
            }
        }
        addrs.sort_unstable();
        addrs.dedup();
        let rows = self.rows(&addrs)?;
        let mut unb = HashMap::new();
        unb_for.sort_unstable();
        unb_for.dedup();
        for a in unb_for {
            unb.insert(a, self.unbonding_entries(a)?);
        }
        let ledger = self.ledger();
        let mut epochs_done = HashSet::new();
        let chain_now = if epochs.is_empty() { 0 } else { self.pending_time()? };
        for e in epochs {
            if self.rpc("reading distributed()", ledger.distributed(e).call())? {
                epochs_done.insert(e);
            }
        }
        let mut slashes_done = HashSet::new();
        let mut committees = HashMap::new();
        for (k, epoch) in slashes {
            if self.rpc("reading slashApplied()", ledger.slashApplied(k).call())? {
                slashes_done.insert(k);
            }
            let list = self.rpc("reading committee()", ledger.committee(epoch).call())?;
            if !list.is_empty() {
                committees.insert(epoch, list);
            }
        }
        let latest = if publishes { Some(self.latest_committee()?) } else { None };
        let next_index = if locks { self.rpc("reading nextSession()", ledger.nextSession().call())? } else { 0 };
        let mut sim = Sim {
            l: self,
            rows: addrs.into_iter().zip(rows).collect(),
            unb,
            sessions: HashMap::new(),
            next_index,
            locks: Vec::new(),
            first_lock: next_index,
            netting: Netting::default(),
            epochs_done,
            slashes_done,
            committees,
            latest,
            chain_now,
            calls: Vec::new(),
            effects: Effects::default(),
        };
        let mut outcomes = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let out = sim.op(op).map_err(|e| LedgerError::Batch { op: op.name(), index, source: Box::new(e) })?;
            outcomes.push(out);
        }
        sim.flush_groups(false, false);
        Ok((sim.calls, outcomes, sim.effects))
    }

    fn view_row(&self, account: &AccountId) -> Result<(Row, Amount), ChainError> {
        let a = account_address(account);
        let r = self.rpc("reading accountRows()", self.ledger().accountRows(vec![a]).call())?;
        let r = r.first().ok_or_else(|| ChainError::Deployment("accountRows answered no row".into()))?;
        Ok((
            Row {
                balance: u256_amount(r.balance)?,
                escrowed: u256_amount(r.escrowed)?,
                staked: [u256_amount(r.stakedContainer)?, u256_amount(r.stakedChecker)?, u256_amount(r.stakedIndexer)?],
                pending: u256_amount(r.pending)?,
            },
            u256_amount(r.unbonding)?,
        ))
    }

    fn supply(&self) -> Result<SupplyReport, ChainError> {
        let c = &self.client;
        let filter =
            Filter::new().address(self.dep.token).event_signature(AthToken::Transfer::SIGNATURE_HASH).from_block(0u64);
        let logs = c.block_on(c.provider.get_logs(&filter)).map_err(|e| c.rpc_error("reading Transfer events", e))?;
        let mut holders: Vec<Address> = logs
            .iter()
            .filter_map(|l| AthToken::Transfer::decode_log_data(l.data()).ok())
            .map(|t| t.to)
            .filter(|a| *a != self.dep.ledger && *a != Address::ZERO)
            .collect();
        holders.sort_unstable();
        holders.dedup();
        let rows = self.rows(&holders)?;
        let balances =
            rows.iter().try_fold(Amount::ZERO, |s, r| s.checked_add(r.balance)).map_err(LedgerError::from)?;
        let ledger = self.ledger();
        let total = |v: U256| u256_amount(v);
        let escrowed = total(self.rpc("reading totalEscrowed()", ledger.totalEscrowed().call())?)?;
        let staked = total(self.rpc("reading totalStaked()", ledger.totalStaked().call())?)?;
        let unbonding = total(self.rpc("reading totalUnbonding()", ledger.totalUnbonding().call())?)?;
        let rewards = total(self.rpc("reading totalPending()", ledger.totalPending().call())?)?;
        self.rpc("checking the ledger's holdings", ledger.checkHoldings().call())?;
        let supply =
            total(self.rpc("reading totalSupply()", AthToken::new(self.dep.token, &c.provider).totalSupply().call())?)?;
        if supply != TOTAL_SUPPLY {
            return Err(ChainError::Deployment(format!("expected an ATH supply of {TOTAL_SUPPLY}, found {supply}")));
        }
        Ok(SupplyReport {
            expected: TOTAL_SUPPLY,
            balances,
            escrowed,
            staked,
            unbonding,
            rewards,
            accounts: rows.iter().filter(|r| !r.balance.is_zero()).count() as u64,
            open_escrows: self.sessions.values().filter(|s| s.state == EscrowState::Open).count() as u64,
        })
    }

    /// Has `account` ever received tokens? (An account that holds nothing
    /// now is known if it did.)
    fn ever_credited(&self, account: &AccountId) -> Result<bool, ChainError> {
        let c = &self.client;
        let filter = Filter::new()
            .address(self.dep.token)
            .event_signature(AthToken::Transfer::SIGNATURE_HASH)
            .topic2(account_address(account).into_word())
            .from_block(0u64);
        let logs = c.block_on(c.provider.get_logs(&filter)).map_err(|e| c.rpc_error("reading Transfer events", e))?;
        Ok(!logs.is_empty())
    }

    /// The time (seconds) of the block the next transaction will be in, as
    /// the endpoint announces it (the pending block; the latest one if it
    /// announces none): the `block.timestamp` `distributeEpoch` will see,
    /// at least (anvil mines the pending block at the wall clock's time).
    fn pending_time(&self) -> Result<u64, ChainError> {
        use alloy::eips::BlockNumberOrTag;
        let c = &self.client;
        let pending = c.block_on(c.provider.get_block_by_number(BlockNumberOrTag::Pending)).ok().flatten();
        if let Some(b) = pending {
            return Ok(b.header.timestamp);
        }
        Ok(self.chain_time()?.0 / 1000)
    }

    /// The chain's clock (the latest block's time) in milliseconds: the
    /// `now` to give `unstake` and `withdraw_unbonded`, which the contract
    /// checks against it.
    pub fn chain_time(&self) -> Result<Timestamp, ChainError> {
        let c = &self.client;
        let block = c
            .block_on(c.provider.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest))
            .map_err(|e| c.rpc_error("eth_getBlockByNumber", e))?
            .ok_or_else(|| ChainError::Deployment("the chain has no latest block".into()))?;
        Ok(Timestamp(block.header.timestamp.saturating_mul(1000)))
    }
}

impl Settlement for EvmLedger {
    fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        let token = AthToken::new(self.dep.token, &self.client.provider);
        let v = self.rpc("reading balanceOf()", token.balanceOf(account_address(account)).call())?;
        u256_amount(v)
    }

    fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError> {
        let (r, unbonding) = self.view_row(account)?;
        let staked = r.staked[0].checked_add(r.staked[1])?.checked_add(r.staked[2])?;
        let view = AccountView { balance: r.balance, escrowed: r.escrowed, staked, unbonding, rewards: r.pending };
        if view == AccountView::default() && !self.ever_credited(account)? {
            return Err(LedgerError::UnknownAccount(account.clone()));
        }
        Ok(view)
    }

    fn staked(&self, account: &AccountId, role: StakeRole) -> Result<Amount, LedgerError> {
        let (r, _) = self.view_row(account)?;
        Ok(r.staked[role_u8(role) as usize])
    }

    fn unbonding(&self, account: &AccountId) -> Result<Vec<UnbondingEntry>, LedgerError> {
        let mut list = self.unbonding_entries(account_address(account))?;
        list.sort_by_key(|u| u.release_ms);
        Ok(list
            .into_iter()
            .map(|u| UnbondingEntry {
                account: account.clone(),
                role: u.role,
                amount: u.amount,
                release_at: Timestamp(u.release_ms),
            })
            .collect())
    }

    fn params(&self) -> Result<Params, LedgerError> {
        Ok(self.params)
    }

    fn reward_breakdown(&self, epoch: u64, account: &AccountId) -> Result<RewardExplanation, LedgerError> {
        let Some((summary, lines)) = self.epochs.get(&epoch) else {
            return if self.rpc("reading distributed()", self.ledger().distributed(epoch).call())? {
                Err(unsupported(
                    "reward_breakdown of an epoch distributed by another process",
                    "the chain keeps each account's reward, not the weights it came from",
                ))
            } else {
                Err(LedgerError::EpochNotDistributed(epoch))
            };
        };
        let mut mine: Vec<RewardLine> = lines.iter().filter(|(a, _)| a == account).map(|(_, l)| l.clone()).collect();
        mine.sort_by_key(|l| l.role);
        let total = mine.iter().try_fold(Amount::ZERO, |s, l| s.checked_add(l.mining)?.checked_add(l.fees))?;
        Ok(RewardExplanation { account: account.clone(), summary: summary.clone(), lines: mine, total })
    }

    fn check_invariant(&self) -> Result<SupplyReport, LedgerError> {
        let report = self.supply().map_err(|e| match e {
            ChainError::Refused { why, .. } if why.contains("HoldingsMismatch") => {
                LedgerError::Storage(format!("supply invariant broken on chain: {why}"))
            }
            other => other.into(),
        })?;
        report.check()?;
        Ok(report)
    }

    fn apply(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        self.apply_ops(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dci_ledger::{EmbeddedLedger, EpochInput, Genesis, Transfer};
    use dci_model::{PricePerHour, ServiceName, money::ONE_ATH};
    use dci_proto::{Identity, UsageReceipt};

    /// An EVM ledger that never reaches a chain: enough to run the batch
    /// simulation (`Sim`) on state the test gives it.
    fn offline() -> EvmLedger {
        let client = Client::connect("http://127.0.0.1:9", crate::DEV_KEYS[0]).unwrap();
        let dep = Deployment {
            chain_id: 31_337,
            token: Address::repeat_byte(1),
            ledger: Address::repeat_byte(2),
            settler: client.from,
            deployed_at_block: 0,
            registry: None,
        };
        EvmLedger {
            client,
            dep,
            params: Params::default(),
            mining_genesis: Amount::ZERO,
            sessions: HashMap::new(),
            names: HashMap::new(),
            epochs: BTreeMap::new(),
            pending: None,
            resolution: None,
            last: LastBatch::default(),
            genesis_time: 1_000,
        }
    }

    fn sim(l: &EvmLedger) -> Sim<'_> {
        Sim {
            l,
            rows: HashMap::new(),
            unb: HashMap::new(),
            sessions: HashMap::new(),
            next_index: 0,
            locks: Vec::new(),
            first_lock: 0,
            netting: Netting::default(),
            epochs_done: HashSet::new(),
            slashes_done: HashSet::new(),
            committees: HashMap::new(),
            latest: None,
            chain_now: 0,
            calls: Vec::new(),
            effects: Effects::default(),
        }
    }

    fn acc(s: &str) -> AccountId {
        AccountId::new(s).unwrap()
    }

    /// A receipt for `secs` at 3.6 ATH/h (0.001 ATH a second), signed by
    /// the container and acknowledged by the gateway.
    fn receipt(session: SessionId, consumer: &AccountId, secs: u64) -> SignedReceipt {
        let price = PricePerHour(Amount(36 * ONE_ATH / 10));
        let r = UsageReceipt {
            session,
            container: Identity::from_secret([1; 32]).id(),
            consumer: consumer.clone(),
            service: ServiceName::new("llm").unwrap(),
            started_at: Timestamp(1_000),
            ended_at: Timestamp(1_000 + secs * 1000),
            seconds: secs,
            price,
            amount: price.cost_for_secs(secs).unwrap(),
        };
        let mut s = r.sign(&Identity::from_secret([1; 32]));
        s.acknowledge(&Identity::from_secret([2; 32]));
        s
    }

    fn milli(n: u128) -> Amount {
        Amount(n * ONE_ATH / 1000)
    }

    /// A settle with an extra charge, simulated for the chain, gives the
    /// embedded ledger's outcome, and its netted call conserves value:
    /// the consumer's escrow released = its refund + every credit.
    #[test]
    fn a_settle_with_extra_is_simulated_like_the_embedded_ledger() {
        /// (name, seconds, extra, escrow in thousandths of an ATH) ->
        /// (charged, extra_charged, shortfall).
        type Case = (&'static str, u64, u128, u128, (u128, u128, u128));
        let cases: [Case; 4] = [
            ("extra within the escrow", 600, 300, 1_000, (900, 300, 0)),
            ("extra beyond the escrow: capped, shortfall", 600, 700, 1_000, (1_000, 400, 300)),
            ("no escrow left for the extra", 1_000, 250, 1_000, (1_000, 0, 250)),
            ("receipt beyond the escrow too", 1_200, 250, 1_000, (1_000, 0, 450)),
        ];
        let gateway = Identity::from_secret([2; 32]).id();
        let (alice, payout) = (acc("consumer:alice"), acc("node:payout"));
        for (n, (name, secs, extra, escrow, (charged, extra_charged, shortfall))) in cases.into_iter().enumerate() {
            let session = SessionId([n as u8 + 1; 16]);
            let op = LedgerOp::Settle {
                receipt: receipt(session, &alice, secs),
                acker: gateway,
                payout: payout.clone(),
                extra: milli(extra),
            };
            let mut emb = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
            let fund = Transfer { from: accounts::liquidity(), to: alice.clone(), amount: Amount::ath(10) };
            let lock = LedgerOp::LockEscrow { session, consumer: alice.clone(), amount: milli(escrow) };
            let want = emb.apply(&[LedgerOp::Transfer(fund), lock, op.clone()]).unwrap().pop().unwrap();

            let mut l = offline();
            let consumer = account_address(&alice);
            l.sessions.insert(session, Session { index: 7, consumer, amount: milli(escrow), state: EscrowState::Open });
            let mut sim = sim(&l);
            sim.rows.insert(consumer, Row { escrowed: milli(escrow), ..Row::default() });
            let got = sim.op(&op).unwrap();
            assert_eq!(got, want, "{name}");
            let OpOutcome::Settled(s) = got else { panic!("{name}: {got:?}") };
            assert_eq!(
                (s.charged, s.extra_charged, s.shortfall),
                (milli(charged), milli(extra_charged), milli(shortfall)),
                "{name}"
            );
            let (released, refunded) = sim.netting.debits[&consumer];
            let credited = sim.netting.credits.values().try_fold(Amount::ZERO, |t, a| t.checked_add(*a)).unwrap();
            assert_eq!((released, refunded, credited), (milli(escrow), s.refunded, s.charged), "{name}");
            assert_eq!(sim.netting.credits[&account_address(&payout)], s.provider, "{name}");
            assert_eq!(sim.rows[&consumer].balance, s.refunded, "{name}");
        }
    }

    /// A slash as the chain simulation applies it: evidence slashed once is
    /// refused when re-signed for a later epoch (in the same batch, or after
    /// an earlier batch put it on chain), and the unbonding entries left are
    /// the embedded ledger's.
    #[test]
    fn the_simulation_slashes_evidence_once_like_the_embedded_ledger() {
        let l = offline();
        let committee: Vec<Identity> = (0..3).map(|i| Identity::from_secret([50 + i; 32])).collect();
        let ids: Vec<NodeId> = committee.iter().map(Identity::id).collect();
        let signers: Vec<Address> = committee.iter().map(|m| crate::node_signer(m).address()).collect();
        let p = acc("node:p");
        let report = |epoch: u64, evidence: u8| {
            let mut r = SlashReport::new(p.clone(), StakeRole::Container, epoch, [evidence; 32], Amount::ath(1_000));
            for m in &committee[..2] {
                r.sign(m);
                r.signatures.push((m.id(), crate::slash_signature_at(l.dep.chain_id, l.dep.ledger, &r, m)));
            }
            r
        };
        let slash = |r: SlashReport| LedgerOp::Slash { report: r, committee: ids.clone() };

        // The embedded ledger: 100 staked, then unbonding 600, 100, 300,
        // 500 released together (and 200 earlier).
        let mut emb = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
        emb.transfer(&accounts::liquidity(), &p, Amount::ath(1_800)).unwrap();
        emb.stake(&p, StakeRole::Container, Amount::ath(1_800)).unwrap();
        emb.unstake(&p, StakeRole::Container, Amount::ath(200), Timestamp(0)).unwrap();
        for ath in [600, 100, 300, 500] {
            emb.unstake(&p, StakeRole::Container, Amount::ath(ath), Timestamp(1_000)).unwrap();
        }
        // The chain's array, in another order (swap-removes reorder it).
        let release = |ms: u64| ms + l.params.unbonding_ms();
        let entries = [(1_000, 500), (0, 200), (1_000, 300), (1_000, 100), (1_000, 600)];
        let a = account_address(&p);
        let mut sim = sim(&l);
        sim.rows.insert(a, Row { staked: [Amount::ath(100), Amount::ZERO, Amount::ZERO], ..Row::default() });
        let unb = entries.iter().map(|&(t, ath)| Unb {
            role: StakeRole::Container,
            release_ms: release(t),
            amount: Amount::ath(ath),
        });
        sim.unb.insert(a, unb.collect());
        for epoch in [3, 4] {
            sim.committees.insert(epoch, signers.clone());
        }

        let want = emb.apply(&[slash(report(3, 1))]).unwrap();
        let mut got = sim.op(&slash(report(3, 1))).unwrap();
        if let OpOutcome::Slashed(s) = &mut got {
            s.seq = 1;
        }
        assert_eq!(vec![got], want);
        let mut left: Vec<(u64, Amount)> = sim.unb[&a].iter().map(|u| (u.release_ms, u.amount)).collect();
        left.sort();
        let mut emb_left: Vec<(u64, Amount)> =
            emb.unbonding(&p).unwrap().iter().map(|u| (u.release_at.0, u.amount)).collect();
        emb_left.sort();
        assert_eq!(left, emb_left, "the same entries left");
        assert_eq!(sim.rows[&a].staked[0], Amount::ZERO);

        // The same evidence, re-signed for epoch 4: refused by both.
        let again = slash(report(4, 1));
        assert_eq!(sim.op(&again).unwrap_err(), LedgerError::SlashAlreadyApplied { evidence: [1; 32] });
        assert_eq!(
            emb.apply(std::slice::from_ref(&again)).unwrap_err().unbatch(),
            LedgerError::SlashAlreadyApplied { evidence: [1; 32] }
        );
        // Refused too when an earlier batch applied it on chain.
        let mut later = self::sim(&l);
        later.rows.insert(a, Row { staked: [Amount::ath(100), Amount::ZERO, Amount::ZERO], ..Row::default() });
        later.committees.insert(4, signers.clone());
        later.slashes_done.insert(B256::from([1; 32]));
        let e = later.op(&again).unwrap_err();
        assert_eq!(e, LedgerError::SlashAlreadyApplied { evidence: [1; 32] });
        assert!(e.to_string().contains(&"01".repeat(32)), "{e}");
        // New evidence is slashed; the call names the evidence.
        assert!(matches!(later.op(&slash(report(4, 2))), Ok(OpOutcome::Slashed(_))));
        let call = DciLedger::slashCall::abi_decode(later.calls.last().unwrap()).unwrap();
        assert_eq!((call.epoch, call.evidence), (4, B256::from([2; 32])));
    }

    /// `SetCommittee` as the simulation checks it, before anything is sent:
    /// the latest committee's two thirds, distinct, over this committee;
    /// an epoch after the latest; then a slash of that epoch counts its
    /// members, and a slash of an epoch without a committee is refused.
    #[test]
    fn a_committee_is_published_only_with_two_thirds_of_the_latest_one() {
        let l = offline();
        let genesis: Vec<Identity> = (0..3).map(|i| Identity::from_secret([50 + i; 32])).collect();
        let next: Vec<Identity> = (0..3).map(|i| Identity::from_secret([70 + i; 32])).collect();
        let addrs = |ids: &[Identity]| ids.iter().map(|m| crate::node_signer(m).address()).collect::<Vec<_>>();
        let (chain, ledger) = (l.dep.chain_id, l.dep.ledger);
        let op = |epoch: u64, by: &[&Identity]| LedgerOp::SetCommittee {
            epoch,
            members: addrs(&next).iter().map(|a| a.into_array()).collect(),
            signatures: by
                .iter()
                .map(|m| crate::committee_signature_at(chain, ledger, epoch, &addrs(&next), m))
                .collect(),
        };
        let mut sim = sim(&l);
        sim.latest = Some((0, addrs(&genesis)));
        sim.committees.insert(0, addrs(&genesis));
        let quorum = |valid| LedgerError::CommitteeQuorum { epoch: 1, latest: 0, valid, needed: 2, committee: 3 };
        let cases: Vec<(&str, LedgerOp, LedgerError)> = vec![
            ("one member", op(1, &[&genesis[0]]), quorum(1)),
            ("one member thrice", op(1, &[&genesis[0], &genesis[0], &genesis[0]]), quorum(1)),
            ("the new members themselves", op(1, &[&next[0], &next[1], &next[2]]), quorum(0)),
            ("the settler's keys alone", op(1, &[]), quorum(0)),
            ("the genesis epoch again", op(0, &[&genesis[0], &genesis[1]]), {
                LedgerError::CommitteeEpochNotNewer { epoch: 0, latest: 0 }
            }),
        ];
        for (name, op, want) in cases {
            assert_eq!(sim.op(&op).unwrap_err(), want, "{name}");
        }
        // Signatures of epoch 2's committee do not count for epoch 1.
        let LedgerOp::SetCommittee { signatures, .. } = op(2, &[&genesis[0], &genesis[1]]) else { unreachable!() };
        let LedgerOp::SetCommittee { members, .. } = op(1, &[]) else { unreachable!() };
        let swapped = LedgerOp::SetCommittee { epoch: 1, members, signatures };
        assert_eq!(sim.op(&swapped).unwrap_err(), quorum(0));
        assert!(sim.calls.is_empty(), "nothing to send");

        assert_eq!(sim.op(&op(1, &[&genesis[2], &genesis[0]])).unwrap(), OpOutcome::Done);
        let call = DciLedger::setCommitteeCall::abi_decode(sim.calls.last().unwrap()).unwrap();
        assert_eq!((call.epoch, call.members, call.signatures.len()), (1, addrs(&next), 2));
        assert_eq!(sim.latest, Some((1, addrs(&next))));
        // Now only epoch 1's committee signs for epoch 2.
        let e = sim.op(&op(2, &[&genesis[0], &genesis[1]])).unwrap_err();
        assert_eq!(e, LedgerError::CommitteeQuorum { epoch: 2, latest: 1, valid: 0, needed: 2, committee: 3 });

        // Slashes: epoch 1 by its committee; epoch 2 has none.
        let p = acc("node:p");
        sim.rows.insert(
            account_address(&p),
            Row { staked: [Amount::ath(100), Amount::ZERO, Amount::ZERO], ..Row::default() },
        );
        let slash = |epoch: u64, by: &[Identity]| {
            let mut r = SlashReport::new(p.clone(), StakeRole::Container, epoch, [epoch as u8; 32], Amount::ath(1));
            for m in by {
                r.sign(m);
                r.signatures.push((m.id(), crate::slash_signature_at(chain, ledger, &r, m)));
            }
            LedgerOp::Slash { report: r, committee: by.iter().map(Identity::id).collect() }
        };
        assert!(matches!(sim.op(&slash(1, &next[..2])), Ok(OpOutcome::Slashed(_))));
        assert_eq!(sim.op(&slash(2, &next[..2])).unwrap_err(), LedgerError::NoCommittee(2));
        let e = sim.op(&slash(3, &genesis[..2])).unwrap_err();
        assert!(e.to_string().contains("no committee of epoch 3 on chain"), "{e}");
    }

    /// An unstake beyond `rules::MAX_UNBONDING` entries of the role is
    /// refused by the simulation as by the embedded ledger, whatever the
    /// other role holds.
    #[test]
    fn the_simulation_bounds_unbonding_like_the_embedded_ledger() {
        let l = offline();
        let p = acc("node:p");
        let max = dci_ledger::rules::MAX_UNBONDING;
        let mut emb = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
        emb.transfer(&accounts::liquidity(), &p, Amount::ath(100)).unwrap();
        emb.stake(&p, StakeRole::Checker, Amount::ath(50)).unwrap();
        let mut sim = sim(&l);
        let a = account_address(&p);
        sim.rows.insert(a, Row { staked: [Amount::ZERO, Amount::ath(50), Amount::ZERO], ..Row::default() });
        let container = Unb { role: StakeRole::Container, release_ms: 5, amount: Amount(1) };
        sim.unb.insert(a, vec![container; max]);
        let unstake = |i: u64| LedgerOp::Unstake {
            account: p.clone(),
            role: StakeRole::Checker,
            amount: Amount::ath(1),
            now: Timestamp(i),
        };
        for i in 0..max as u64 {
            let want = emb.apply(&[unstake(i)]).unwrap().pop().unwrap();
            assert_eq!(sim.op(&unstake(i)).unwrap(), want, "entry {i}");
        }
        let want = emb.apply(&[unstake(99)]).unwrap_err().unbatch();
        assert_eq!(want, LedgerError::TooManyUnbonding { account: p.clone(), role: StakeRole::Checker, max: 16 });
        assert_eq!(sim.op(&unstake(99)).unwrap_err(), want);
        assert_eq!(sim.rows[&a].staked[1], Amount::ath(34), "the refused unstake moved nothing");
    }

    /// Epoch e is distributed only once genesis + (e + 1) × epoch length has
    /// passed on the chain's clock.
    #[test]
    fn the_simulation_distributes_an_epoch_only_once_it_has_ended() {
        let l = offline();
        assert_eq!((l.genesis_time, l.params.epoch_secs), (1_000, 900));
        assert_eq!(l.epoch_end(0), 1_900);
        assert_eq!(l.epoch_end(u64::MAX), u64::MAX, "saturates");
        let op = |epoch| LedgerOp::DistributeEpoch { epoch, input: EpochInput::default() };
        for (epoch, now, ended) in [(0, 1_899, false), (0, 1_900, true), (1, 2_799, false), (1, 2_800, true)] {
            let mut sim = sim(&l);
            sim.chain_now = now;
            match sim.op(&op(epoch)) {
                Err(LedgerError::EpochNotEnded { epoch: e, ends_at, now: n }) => {
                    assert!(!ended, "epoch {epoch} at {now}");
                    assert_eq!((e, ends_at, n), (epoch, Timestamp(l.epoch_end(epoch) * 1000), Timestamp(now * 1000)));
                }
                other => assert!(ended, "epoch {epoch} at {now}: {other:?}"),
            }
        }
        let mut sim = sim(&l);
        let e = sim.op(&op(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "epoch 0 ends at 1900.000, the ledger's clock is at 0.000: expected an epoch that has ended"
        );
    }

    /// (session indices closed, refunded) -> (word, bits) pairs sent on chain.
    #[test]
    fn sessions_close_as_bits_of_256_bit_words() {
        type Words<'a> = &'a [(u64, U256)];
        let cases: [(&[u64], &[u64], Words<'_>, Words<'_>); 3] = [
            (&[0], &[], &[(0, U256::from(1u8))], &[]),
            (&[0, 1, 255], &[1], &[(0, U256::from(3u8) | (U256::from(1u8) << 255))], &[(0, U256::from(2u8))]),
            (
                &[256, 1000],
                &[1000],
                &[(1, U256::from(1u8)), (3, U256::from(1u8) << 232)],
                &[(3, U256::from(1u8) << 232)],
            ),
        ];
        for (closed, refunded, want_close, want_refund) in cases {
            let mut n = Netting::default();
            for i in closed {
                n.close(*i, refunded.contains(i));
            }
            assert_eq!(n.close.clone().into_iter().collect::<Vec<_>>(), want_close, "{closed:?}");
            assert_eq!(n.refund.clone().into_iter().collect::<Vec<_>>(), want_refund, "{closed:?}");
        }
    }

    #[test]
    fn netting_adds_up_per_account() {
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let mut n = Netting::default();
        n.debit(a, Amount(10), Amount(4)).unwrap();
        n.debit(a, Amount(5), Amount(0)).unwrap();
        n.credit(b, Amount(6)).unwrap();
        n.credit(b, Amount(5)).unwrap();
        n.credit(a, Amount::ZERO).unwrap();
        assert_eq!(n.debits.get(&a), Some(&(Amount(15), Amount(4))));
        assert_eq!(n.credits.get(&b), Some(&Amount(11)));
        assert_eq!(n.credits.len(), 1, "zero credits are not sent");
    }

    #[test]
    fn amounts_beyond_128_bits_are_errors() {
        assert_eq!(u256_amount(U256::from(5u8)).unwrap(), Amount(5));
        assert!(u256_amount(U256::MAX).is_err());
        assert_eq!(crate::amount_u256(TOTAL_SUPPLY), U256::from(TOTAL_SUPPLY.0));
    }
}
