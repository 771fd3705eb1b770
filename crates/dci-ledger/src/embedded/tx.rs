//! One write transaction: every mutation of the ledger, applied to SQLite
//! through a per-transaction cache of balances.
//!
//! A batch reads each touched balance once, applies its ops in order in
//! memory (so each op sees the effect of the ones before it, exactly as if
//! they were applied one by one), and writes each changed balance once at the
//! end ([`Tx::flush`]). That is what makes batched transfers fast. Everything
//! other than balances (escrows, stakes, rewards, records) goes straight to
//! SQL inside the same transaction. Dropping a `Tx` without committing the
//! SQLite transaction discards everything.

use dci_model::{AccountId, Amount, NodeId, SessionId, Timestamp};
use dci_proto::SignedReceipt;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

use super::{
    OrStorage, amount, corrupt, get_escrow, json, ms, open_escrow, pending_of, read_settlement, stake_of, stored_time,
    text,
};
use crate::ops::UndeliveredRefund;
use crate::rewards::{self, EpochInput, EpochSummary};
use crate::rules::{self, Slashable};
use crate::slash::{SlashReport, Slashed};
use crate::staking::{StakeRole, UnbondingEntry};
use crate::{EscrowState, LedgerError, LedgerOp, OpOutcome, Params, Settled, Transfer, accounts};

struct Slot {
    /// `None`: the account does not exist.
    value: Option<Amount>,
    dirty: bool,
}

pub(super) struct Tx<'c> {
    c: &'c Connection,
    pub(super) params: Params,
    mining_genesis: Amount,
    cache: HashMap<AccountId, Slot>,
}

impl<'c> Tx<'c> {
    pub(super) fn new(c: &'c Connection, params: Params, mining_genesis: Amount) -> Tx<'c> {
        Tx { c, params, mining_genesis, cache: HashMap::new() }
    }

    // ----- balances (cached) -----

    fn slot(&mut self, account: &AccountId) -> Result<&mut Slot, LedgerError> {
        if !self.cache.contains_key(account) {
            let value: Option<Amount> = self
                .c
                .prepare_cached("SELECT balance FROM accounts WHERE id = ?1")
                .st()?
                .query_row([account.as_str()], |r| r.get::<_, String>(0))
                .optional()
                .st()?
                .as_deref()
                .map(amount)
                .transpose()?;
            self.cache.insert(account.clone(), Slot { value, dirty: false });
        }
        // Inserted above if it was missing.
        self.cache.get_mut(account).ok_or_else(|| LedgerError::Storage("balance cache lost an entry".into()))
    }

    pub(super) fn balance(&mut self, account: &AccountId) -> Result<Option<Amount>, LedgerError> {
        Ok(self.slot(account)?.value)
    }

    fn set_balance(&mut self, account: &AccountId, value: Amount) -> Result<(), LedgerError> {
        let slot = self.slot(account)?;
        slot.value = Some(value);
        slot.dirty = true;
        Ok(())
    }

    /// Creates `account` with a zero balance if it does not exist.
    fn touch(&mut self, account: &AccountId) -> Result<(), LedgerError> {
        if self.balance(account)?.is_none() {
            self.set_balance(account, Amount::ZERO)?;
        }
        Ok(())
    }

    pub(super) fn credit(&mut self, account: &AccountId, value: Amount) -> Result<(), LedgerError> {
        if value.is_zero() {
            return Ok(());
        }
        let have = self.balance(account)?.unwrap_or(Amount::ZERO);
        self.set_balance(account, have.checked_add(value)?)
    }

    pub(super) fn debit(&mut self, account: &AccountId, value: Amount) -> Result<(), LedgerError> {
        let have = self.balance(account)?.ok_or_else(|| LedgerError::UnknownAccount(account.clone()))?;
        let left = have.checked_sub(value).map_err(|_| LedgerError::InsufficientFunds {
            account: account.clone(),
            have,
            need: value,
        })?;
        self.set_balance(account, left)
    }

    /// Writes every changed balance. Called once, before the supply check
    /// and the commit.
    pub(super) fn flush(&mut self) -> Result<(), LedgerError> {
        let mut stmt = self
            .c
            .prepare_cached(
                "INSERT INTO accounts (id, balance) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET balance = excluded.balance",
            )
            .st()?;
        // In key order: neighbouring rows share B-tree pages.
        let mut dirty: Vec<(&AccountId, Amount)> = self
            .cache
            .iter()
            .filter_map(|(a, slot)| match (slot.dirty, slot.value) {
                (true, Some(v)) => Some((a, v)),
                _ => None,
            })
            .collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (account, v) in dirty {
            stmt.execute(params![account.as_str(), text(v)]).st()?;
        }
        for slot in self.cache.values_mut() {
            slot.dirty = false;
        }
        Ok(())
    }

    // ----- stakes and pending rewards (SQL) -----

    fn set_stake(&mut self, account: &AccountId, role: StakeRole, value: Amount) -> Result<(), LedgerError> {
        if value.is_zero() {
            self.c
                .prepare_cached("DELETE FROM stakes WHERE account = ?1 AND role = ?2")
                .st()?
                .execute(params![account.as_str(), role.as_str()])
                .st()?;
        } else {
            self.c
                .prepare_cached(
                    "INSERT INTO stakes (account, role, amount) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (account, role) DO UPDATE SET amount = excluded.amount",
                )
                .st()?
                .execute(params![account.as_str(), role.as_str(), text(value)])
                .st()?;
        }
        Ok(())
    }

    fn set_pending(&mut self, account: &AccountId, value: Amount) -> Result<(), LedgerError> {
        if value.is_zero() {
            self.c
                .prepare_cached("DELETE FROM pending_rewards WHERE account = ?1")
                .st()?
                .execute([account.as_str()])
                .st()?;
        } else {
            self.c
                .prepare_cached(
                    "INSERT INTO pending_rewards (account, amount) VALUES (?1, ?2) \
                     ON CONFLICT (account) DO UPDATE SET amount = excluded.amount",
                )
                .st()?
                .execute(params![account.as_str(), text(value)])
                .st()?;
        }
        Ok(())
    }

    /// `account`'s unbonding entries in `role`: (rowid, release, amount).
    fn unbonding_in(&self, account: &AccountId, role: StakeRole) -> Result<Vec<(i64, Timestamp, Amount)>, LedgerError> {
        let mut stmt = self
            .c
            .prepare_cached("SELECT id, release_at, amount FROM unbonding WHERE account = ?1 AND role = ?2 ORDER BY id")
            .st()?;
        let mut rows = stmt.query(params![account.as_str(), role.as_str()]).st()?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().st()? {
            let s: String = r.get(2).st()?;
            out.push((r.get(0).st()?, stored_time(r.get(1).st()?)?, amount(&s)?));
        }
        Ok(out)
    }

    // ----- the ops -----

    /// Applies one op.
    pub(super) fn apply(&mut self, op: &LedgerOp) -> Result<OpOutcome, LedgerError> {
        Ok(match op {
            LedgerOp::Transfer(t) => {
                self.transfer(&t.from, &t.to, t.amount)?;
                OpOutcome::Done
            }
            LedgerOp::Stake { account, role, amount } => {
                self.stake(account, *role, *amount)?;
                OpOutcome::Done
            }
            LedgerOp::Unstake { account, role, amount, now } => {
                OpOutcome::Unbonding(self.unstake(account, *role, *amount, *now)?)
            }
            LedgerOp::WithdrawUnbonded { account, now } => OpOutcome::Amount(self.withdraw_unbonded(account, *now)?),
            LedgerOp::ClaimRewards { account } => OpOutcome::Amount(self.claim_rewards(account)?),
            LedgerOp::LockEscrow { session, consumer, amount } => {
                self.lock_escrow(*session, consumer, *amount)?;
                OpOutcome::Done
            }
            LedgerOp::Settle { receipt, acker, payout, extra } => {
                OpOutcome::Settled(self.settle(receipt, acker, payout, *extra)?)
            }
            LedgerOp::Refund { session } => OpOutcome::Amount(self.refund(*session)?),
            LedgerOp::RefundUndelivered { session, seconds } => {
                OpOutcome::Undelivered(self.refund_undelivered(*session, *seconds)?)
            }
            LedgerOp::DistributeEpoch { epoch, input } => OpOutcome::Epoch(self.distribute_epoch(*epoch, input)?),
            LedgerOp::Slash { report, committee } => OpOutcome::Slashed(self.slash(report, committee)?),
            LedgerOp::SetCommittee { epoch, members, signatures } => {
                self.set_committee(*epoch, members, signatures)?;
                OpOutcome::Done
            }
            LedgerOp::SetParams { params, now } => {
                self.set_params(params, *now)?;
                OpOutcome::Done
            }
        })
    }

    pub(super) fn transfer(&mut self, from: &AccountId, to: &AccountId, value: Amount) -> Result<(), LedgerError> {
        if value.is_zero() {
            return Err(LedgerError::ZeroAmount);
        }
        if from == to {
            return Err(LedgerError::SameAccount(from.clone()));
        }
        self.debit(from, value)?;
        self.credit(to, value)
    }

    pub(super) fn transfers(&mut self, batch: &[Transfer]) -> Result<(), LedgerError> {
        // Read every touched balance once, in key order (B-tree locality).
        let mut touched: Vec<&AccountId> = batch.iter().flat_map(|t| [&t.from, &t.to]).collect();
        touched.sort_unstable();
        touched.dedup();
        for account in touched {
            self.slot(account)?;
        }
        for (index, t) in batch.iter().enumerate() {
            self.transfer(&t.from, &t.to, t.amount).map_err(|e| LedgerError::Batch {
                op: "transfer",
                index,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    pub(super) fn stake(&mut self, account: &AccountId, role: StakeRole, value: Amount) -> Result<(), LedgerError> {
        if value.is_zero() {
            return Err(LedgerError::ZeroAmount);
        }
        self.debit(account, value)?;
        let have = stake_of(self.c, account, role)?;
        self.set_stake(account, role, have.checked_add(value)?)
    }

    pub(super) fn unstake(
        &mut self,
        account: &AccountId,
        role: StakeRole,
        value: Amount,
        now: Timestamp,
    ) -> Result<UnbondingEntry, LedgerError> {
        if value.is_zero() {
            return Err(LedgerError::ZeroAmount);
        }
        let have = stake_of(self.c, account, role)?;
        let left = have.checked_sub(value).map_err(|_| LedgerError::InsufficientStake {
            account: account.clone(),
            role,
            have,
            need: value,
        })?;
        let entries: i64 = self
            .c
            .prepare_cached("SELECT count(*) FROM unbonding WHERE account = ?1 AND role = ?2")
            .st()?
            .query_row(params![account.as_str(), role.as_str()], |r| r.get(0))
            .st()?;
        rules::unbonding_room(account, role, usize::try_from(entries).map_err(|_| corrupt("a row count", entries))?)?;
        ms(now)?;
        let release_at = Timestamp(now.0.checked_add(self.params.unbonding_ms()).ok_or_else(|| {
            LedgerError::InvalidInput(format!("expected a time that leaves room for the unbonding period, found {now}"))
        })?);
        self.set_stake(account, role, left)?;
        self.c
            .prepare_cached("INSERT INTO unbonding (account, role, amount, release_at) VALUES (?1, ?2, ?3, ?4)")
            .st()?
            .execute(params![account.as_str(), role.as_str(), text(value), ms(release_at)?])
            .st()?;
        Ok(UnbondingEntry { account: account.clone(), role, amount: value, release_at })
    }

    pub(super) fn withdraw_unbonded(&mut self, account: &AccountId, now: Timestamp) -> Result<Amount, LedgerError> {
        let t = ms(now)?;
        let mut total = Amount::ZERO;
        let mut found = 0usize;
        {
            let mut stmt =
                self.c.prepare_cached("SELECT amount FROM unbonding WHERE account = ?1 AND release_at <= ?2").st()?;
            let mut rows = stmt.query(params![account.as_str(), t]).st()?;
            while let Some(r) = rows.next().st()? {
                let s: String = r.get(0).st()?;
                total = total.checked_add(amount(&s)?)?;
                found += 1;
            }
        }
        if found == 0 {
            let next: Option<i64> = self
                .c
                .prepare_cached("SELECT min(release_at) FROM unbonding WHERE account = ?1")
                .st()?
                .query_row([account.as_str()], |r| r.get(0))
                .st()?;
            return Err(LedgerError::NothingToWithdraw {
                account: account.clone(),
                now,
                next: next.map(stored_time).transpose()?,
            });
        }
        self.c
            .prepare_cached("DELETE FROM unbonding WHERE account = ?1 AND release_at <= ?2")
            .st()?
            .execute(params![account.as_str(), t])
            .st()?;
        self.touch(account)?;
        self.credit(account, total)?;
        Ok(total)
    }

    pub(super) fn claim_rewards(&mut self, account: &AccountId) -> Result<Amount, LedgerError> {
        let pending = pending_of(self.c, account)?;
        if pending.is_zero() {
            return Err(LedgerError::NoPendingRewards(account.clone()));
        }
        self.set_pending(account, Amount::ZERO)?;
        self.touch(account)?;
        self.credit(account, pending)?;
        Ok(pending)
    }

    pub(super) fn lock_escrow(
        &mut self,
        session: SessionId,
        consumer: &AccountId,
        value: Amount,
    ) -> Result<(), LedgerError> {
        if value.is_zero() {
            return Err(LedgerError::ZeroAmount);
        }
        if get_escrow(self.c, session)?.is_some() {
            return Err(LedgerError::EscrowExists(session));
        }
        self.debit(consumer, value)?;
        self.c
            .prepare_cached("INSERT INTO escrows (session, consumer, amount, state) VALUES (?1, ?2, ?3, 'open')")
            .st()?
            .execute(params![&session.0[..], consumer.as_str(), text(value)])
            .st()?;
        Ok(())
    }

    fn close_escrow(&mut self, session: SessionId, state: EscrowState) -> Result<(), LedgerError> {
        let s = match state {
            EscrowState::Open => "open",
            EscrowState::Settled => "settled",
            EscrowState::Refunded => "refunded",
        };
        self.c
            .prepare_cached("UPDATE escrows SET state = ?2 WHERE session = ?1 AND state = 'open'")
            .st()?
            .execute(params![&session.0[..], s])
            .st()?;
        Ok(())
    }

    pub(super) fn settle(
        &mut self,
        receipt: &SignedReceipt,
        acker: &NodeId,
        payout: &AccountId,
        extra: Amount,
    ) -> Result<Settled, LedgerError> {
        receipt.verify(acker)?;
        let r = &receipt.receipt;
        let escrow = open_escrow(self.c, r.session)?;
        if escrow.consumer != r.consumer {
            return Err(LedgerError::ConsumerMismatch {
                session: r.session,
                escrow: escrow.consumer,
                receipt: r.consumer.clone(),
            });
        }
        let s = rules::settle(r.session, r.amount, extra, escrow.amount, &self.params.fees)?;
        self.touch(payout)?;
        self.credit(payout, s.provider)?;
        self.credit(&accounts::checker_fees(), s.checkers)?;
        self.credit(&accounts::indexer_fees(), s.indexers)?;
        self.credit(&accounts::treasury(), s.treasury)?;
        self.credit(&escrow.consumer, s.refunded)?;
        self.close_escrow(r.session, EscrowState::Settled)?;
        self.c
            .prepare_cached(
                "INSERT INTO settlements (session, consumer, payout, container, acker, charged, provider, checkers, \
                 indexers, treasury, refunded, shortfall, receipt, extra_charged) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .st()?
            .execute(params![
                &r.session.0[..],
                r.consumer.as_str(),
                payout.as_str(),
                &r.container.0[..],
                &acker.0[..],
                text(s.charged),
                text(s.provider),
                text(s.checkers),
                text(s.indexers),
                text(s.treasury),
                text(s.refunded),
                text(s.shortfall),
                json(receipt)?,
                text(s.extra_charged),
            ])
            .st()?;
        if !s.shortfall.is_zero() {
            tracing::warn!(session = %r.session.short(), shortfall = %s.shortfall, "receipt and extra exceed escrow; charged the escrow");
        }
        Ok(s)
    }

    pub(super) fn refund(&mut self, session: SessionId) -> Result<Amount, LedgerError> {
        let escrow = open_escrow(self.c, session)?;
        self.credit(&escrow.consumer, escrow.amount)?;
        self.close_escrow(session, EscrowState::Refunded)?;
        Ok(escrow.amount)
    }

    pub(super) fn refund_undelivered(
        &mut self,
        session: SessionId,
        seconds: u64,
    ) -> Result<UndeliveredRefund, LedgerError> {
        let Some(record) = read_settlement(self.c, session)? else {
            return Err(match get_escrow(self.c, session)?.map(|e| e.state) {
                None => LedgerError::NoEscrow(session),
                Some(EscrowState::Refunded) => LedgerError::AlreadyRefunded(session),
                Some(_) => LedgerError::NotSettled(session),
            });
        };
        let paid = record.receipt.receipt.seconds;
        if seconds == 0 || seconds > paid {
            return Err(LedgerError::UndeliveredSeconds { session, asked: seconds, paid });
        }
        let done: Option<i64> = self
            .c
            .prepare_cached("SELECT 1 FROM undelivered WHERE session = ?1")
            .st()?
            .query_row([&session.0[..]], |r| r.get(0))
            .optional()
            .st()?;
        if done.is_some() {
            return Err(LedgerError::UndeliveredAlreadyRefunded(session));
        }
        let for_time = record.settled.charged.checked_sub(record.settled.extra_charged)?;
        let value = for_time.mul_div(u128::from(seconds), u128::from(paid))?;
        let payout = record.payout;
        let balance = self.balance(&payout)?.unwrap_or(Amount::ZERO);
        let pending = pending_of(self.c, &payout)?;
        let stake = stake_of(self.c, &payout, StakeRole::Container)?;
        let from_balance = balance.min(value);
        let rest = value.checked_sub(from_balance)?;
        let from_rewards = pending.min(rest);
        let rest = rest.checked_sub(from_rewards)?;
        let from_stake = stake.min(rest);
        if from_stake < rest {
            let have = balance.checked_add(pending)?.checked_add(stake)?;
            return Err(LedgerError::InsufficientFunds { account: payout, have, need: value });
        }
        if !from_balance.is_zero() {
            self.debit(&payout, from_balance)?;
        }
        self.set_pending(&payout, pending.checked_sub(from_rewards)?)?;
        self.set_stake(&payout, StakeRole::Container, stake.checked_sub(from_stake)?)?;
        self.credit(&record.consumer, value)?;
        let out = UndeliveredRefund {
            session,
            seconds,
            paid_seconds: paid,
            amount: value,
            consumer: record.consumer,
            payout,
            from_balance,
            from_rewards,
            from_stake,
        };
        self.c
            .prepare_cached("INSERT INTO undelivered (session, record) VALUES (?1, ?2)")
            .st()?
            .execute(params![&session.0[..], json(&out)?])
            .st()?;
        Ok(out)
    }

    pub(super) fn distribute_epoch(&mut self, epoch: u64, input: &EpochInput) -> Result<EpochSummary, LedgerError> {
        let key = i64::try_from(epoch).map_err(|_| {
            LedgerError::InvalidEpochInput(format!("expected an epoch number up to {}, found {epoch}", i64::MAX))
        })?;
        let done: Option<i64> = self
            .c
            .prepare_cached("SELECT 1 FROM epochs WHERE epoch = ?1")
            .st()?
            .query_row([key], |r| r.get(0))
            .optional()
            .st()?;
        if done.is_some() {
            return Err(LedgerError::EpochAlreadyDistributed(epoch));
        }
        let schedule = self.params.emission(self.mining_genesis, epoch)?;
        let (mining, checker_fees, indexer_fees) =
            (accounts::mining_pool(), accounts::checker_fees(), accounts::indexer_fees());
        let pool = self.balance(&mining)?.unwrap_or(Amount::ZERO);
        let fee_pools = [
            self.balance(&checker_fees)?.unwrap_or(Amount::ZERO),
            self.balance(&indexer_fees)?.unwrap_or(Amount::ZERO),
        ];
        let d = rewards::distribute(&self.params, schedule, pool, fee_pools, input)?;
        for (account, amount) in [
            (&mining, d.summary.paid),
            (&checker_fees, d.summary.roles[1].fees_paid),
            (&indexer_fees, d.summary.roles[2].fees_paid),
        ] {
            if !amount.is_zero() {
                self.debit(account, amount)?;
            }
        }
        for (account, line) in &d.lines {
            self.touch(account)?;
            let earned = line.mining.checked_add(line.fees)?;
            if !earned.is_zero() {
                let pending = pending_of(self.c, account)?;
                self.set_pending(account, pending.checked_add(earned)?)?;
            }
            self.c
                .prepare_cached("INSERT INTO epoch_rewards (epoch, account, role, line) VALUES (?1, ?2, ?3, ?4)")
                .st()?
                .execute(params![key, account.as_str(), line.role.as_str(), json(line)?])
                .st()?;
        }
        self.c
            .prepare_cached("INSERT INTO epochs (epoch, summary) VALUES (?1, ?2)")
            .st()?
            .execute(params![key, json(&d.summary)?])
            .st()?;
        Ok(d.summary)
    }

    pub(super) fn slash(&mut self, report: &SlashReport, committee: &[NodeId]) -> Result<Slashed, LedgerError> {
        rules::slashable(report.role)?;
        if report.amount.is_zero() {
            return Err(LedgerError::ZeroAmount);
        }
        let signers = report.verify_quorum(committee)?;
        let epoch = i64::try_from(report.epoch).map_err(|_| {
            LedgerError::InvalidInput(format!("expected an epoch number up to {}, found {}", i64::MAX, report.epoch))
        })?;
        let (offender, role) = (&report.offender, report.role);
        let seen: Option<i64> = self
            .c
            .prepare_cached("SELECT 1 FROM slashed_evidence WHERE evidence = ?1")
            .st()?
            .query_row([&report.evidence_hash[..]], |r| r.get(0))
            .optional()
            .st()?;
        if seen.is_some() {
            return Err(LedgerError::SlashAlreadyApplied { evidence: report.evidence_hash });
        }
        let pending = pending_of(self.c, offender)?;
        let stake = stake_of(self.c, offender, role)?;
        let unbonding = self.unbonding_in(offender, role)?;
        let held = Slashable { pending, stake, unbonding: unbonding.iter().map(|&(_, at, a)| (at, a)).collect() };
        let take = rules::slash(report, &held, &self.params.slash)?;
        self.set_pending(offender, pending.checked_sub(take.from_rewards)?)?;
        self.set_stake(offender, role, stake.checked_sub(take.from_stake)?)?;
        for ((id, _, have), taken) in unbonding.iter().zip(&take.unbonding_takes) {
            if taken.is_zero() {
                continue;
            }
            let remains = have.checked_sub(*taken)?;
            if remains.is_zero() {
                self.c.prepare_cached("DELETE FROM unbonding WHERE id = ?1").st()?.execute([id]).st()?;
            } else {
                self.c
                    .prepare_cached("UPDATE unbonding SET amount = ?2 WHERE id = ?1")
                    .st()?
                    .execute(params![id, text(remains)])
                    .st()?;
            }
        }
        let mut out = take.slashed(report, signers);
        self.credit(&out.to, out.taken())?;
        self.c
            .prepare_cached("INSERT INTO slashes (offender, role, epoch, evidence, record) VALUES (?1, ?2, ?3, ?4, ?5)")
            .st()?
            .execute(params![offender.as_str(), role.as_str(), epoch, &report.evidence_hash[..], json(&out)?])
            .st()?;
        let seq = self.c.last_insert_rowid();
        self.c
            .prepare_cached("INSERT INTO slashed_evidence (evidence, seq) VALUES (?1, ?2)")
            .st()?
            .execute(params![&report.evidence_hash[..], seq])
            .st()?;
        out.seq = u64::try_from(seq).map_err(|_| corrupt("a positive sequence", "negative"))?;
        tracing::info!(offender = %out.offender, role = %role, taken = %out.taken(), "slashed");
        Ok(out)
    }

    pub(super) fn set_committee(
        &mut self,
        epoch: u64,
        members: &[[u8; 20]],
        signatures: &[Vec<u8>],
    ) -> Result<(), LedgerError> {
        let key = i64::try_from(epoch).map_err(|_| {
            LedgerError::InvalidInput(format!("expected an epoch number up to {}, found {epoch}", i64::MAX))
        })?;
        let latest: Option<i64> =
            self.c.prepare_cached("SELECT max(epoch) FROM committees").st()?.query_row([], |r| r.get(0)).st()?;
        let latest = latest.map(|e| u64::try_from(e).map_err(|_| corrupt("a non-negative epoch", e))).transpose()?;
        rules::committee(epoch, members, latest)?;
        let hexes = |v: &[&[u8]]| v.iter().map(|b| format!("0x{}", hex::encode(b))).collect::<Vec<_>>();
        let members = hexes(&members.iter().map(|m| &m[..]).collect::<Vec<_>>());
        let signatures = hexes(&signatures.iter().map(Vec::as_slice).collect::<Vec<_>>());
        self.c
            .prepare_cached("INSERT INTO committees (epoch, members, signatures) VALUES (?1, ?2, ?3)")
            .st()?
            .execute(params![key, json(&members)?, json(&signatures)?])
            .st()?;
        Ok(())
    }

    pub(super) fn set_params(&mut self, params: &Params, now: Timestamp) -> Result<(), LedgerError> {
        params.validate()?;
        self.c
            .prepare_cached("INSERT INTO params (set_at, params) VALUES (?1, ?2)")
            .st()?
            .execute(params![ms(now)?, json(params)?])
            .st()?;
        self.params = *params;
        Ok(())
    }

    /// Creates `n` accounts `{prefix}{i:09}` funded with `each` from `from`,
    /// with one prepared insert (bench set-up).
    pub(super) fn bulk_accounts(
        &mut self,
        from: &AccountId,
        prefix: &str,
        n: u64,
        each: Amount,
    ) -> Result<(), LedgerError> {
        let total = each.0.checked_mul(u128::from(n)).ok_or(LedgerError::Amount(dci_model::AmountError::Overflow))?;
        self.debit(from, Amount(total))?;
        let mut stmt = self.c.prepare_cached("INSERT INTO accounts (id, balance) VALUES (?1, ?2)").st()?;
        let value = text(each);
        let mut id = String::with_capacity(prefix.len() + 9);
        for i in 0..n {
            id.clear();
            id.push_str(prefix);
            id.push_str(&format!("{i:09}"));
            stmt.execute(params![id, value]).st()?;
        }
        Ok(())
    }
}
