//! The ATH token economy (SPEC §7): genesis allocation, accounts and
//! transfers, staking with unbonding for containers and checkers, session
//! escrow and settlement of usage receipts with the fee split, epoch rewards
//! from the mining pool on a documented emission schedule, committee-signed
//! slashing, refunds of undelivered time, governance parameters, API keys
//! bound to accounts, and the supply invariant (R-LG5).
//!
//! [`Settlement`] is the boundary a node talks to (R-LG6); [`EmbeddedLedger`]
//! is its single-node backend on a SQLite file (WAL, one transaction per
//! batch, crash-safe). Amounts are [`dci_model::Amount`] (u128 base units),
//! stored as decimal text because SQLite integers are only 64 bits; all
//! arithmetic is checked integer Rust. Time is always an input (`now`); the
//! ledger never reads a clock.
//!
//! Where the money is, at every moment (R-LG5):
//!
//! ```text
//! TOTAL_SUPPLY = Σ balances (users, nodes, and the pools/treasury accounts)
//!              + Σ open escrows + Σ stakes + Σ unbonding + Σ pending rewards
//! ```
//!
//! The pools are ordinary accounts ([`accounts`]): `pool:mining` (emitted per
//! epoch, [`emission`]), `pool:checker-fees` and `pool:indexer-fees` (session
//! fees shared per epoch, [`rewards`]), `pool:slashed` ([`slash`]) and
//! `treasury:protocol`.
//!
//! This crate is not: the EVM backend (`dci-chain`), the CLI (`dci`), the
//! checker logic that decides verdicts and committees, nor an authorization
//! layer — it moves funds it is asked to move; the gateway and the governance
//! process decide who may ask.

pub mod accounts;
pub mod bench;
mod embedded;
pub mod emission;
mod error;
pub mod fees;
pub mod genesis;
mod math;
pub mod ops;
pub mod params;
pub mod rewards;
pub mod rules;
pub mod slash;
pub mod staking;

pub use embedded::EmbeddedLedger;
pub use emission::{EmissionSchedule, EpochEmission};
pub use error::LedgerError;
pub use fees::FeeSplit;
pub use genesis::{Allocation, Genesis, NetworkKind, Share};
pub use ops::{LedgerOp, OpOutcome, UndeliveredRefund};
pub use params::{Params, ParamsChange, RewardShares, SlashFractions};
pub use rewards::{
    CheckerWork, ContainerWork, EpochInput, EpochSummary, IndexerWork, RewardBasis, RewardEntry, RewardExplanation,
    RewardLine, RewardRole, RoleSummary,
};
pub use slash::{SlashReport, Slashed};
pub use staking::{StakeEntry, StakeRole, UnbondingEntry};

use dci_model::{AccountId, Amount, AmountError, NodeId, SessionId, Timestamp, money::TOTAL_SUPPLY};
use dci_proto::SignedReceipt;
use serde::{Deserialize, Serialize};

/// What a node needs from a ledger backend (R-LG6). Implemented by
/// [`EmbeddedLedger`] (SQLite) and, next, by the EVM backend.
///
/// A backend implements the views, [`Settlement::apply`] and
/// [`Settlement::check_invariant`]; every mutation is a [`LedgerOp`], and the
/// one-op methods are provided on top of `apply`. The contract every backend
/// keeps:
///
/// - **Atomic batches.** `apply` applies every op of a batch in order, or
///   returns [`LedgerError::Batch`] naming the first op that failed and
///   changes nothing at all. (An EVM backend maps a batch to one
///   transaction; the provided one-op methods return the op's own error.)
/// - **Conservation (R-LG5).** The sum of balances, open escrows, stakes,
///   unbonding and pending rewards is [`TOTAL_SUPPLY`] before and after every batch;
///   no balance is ever negative (amounts are unsigned, every debit is
///   checked).
/// - **A second is paid at most once.** `lock_escrow` refuses a session that
///   already has an escrow; `settle` and `refund` each close an open escrow,
///   and any later `settle` or `refund` of that session fails
///   ([`LedgerError::AlreadySettled`] / [`LedgerError::AlreadyRefunded`]). A
///   settled session's undelivered seconds are refunded at most once and never
///   more than were paid.
/// - **A charge never exceeds its escrow.** `settle` charges
///   `min(receipt amount + extra, escrow)` ([`rules::settle`]), splits it by
///   the fee split in force and refunds the rest of the escrow to the
///   consumer.
/// - **Receipts are verified.** `settle` pays only against a receipt whose
///   container signature, arithmetic and acknowledgement by `acker` verify.
/// - **Stake leaves only through unbonding.** `unstake` starts the unbonding
///   period of the parameters in force; `withdraw_unbonded` returns only
///   entries released at or before `now`. An account has at most
///   [`rules::MAX_UNBONDING`] unbonding entries per role
///   ([`LedgerError::TooManyUnbonding`]).
/// - **Rewards follow the schedule.** Each epoch is distributed once, pays at
///   most its emission ([`emission`]) and never more than `pool:mining` holds.
/// - **Penalties need a quorum.** `slash` applies a report only with valid
///   signatures of ≥ 2/3 of the given committee, rewards before stake
///   ([`rules::slash`]); a piece of evidence (its hash) is slashed at most
///   once, whatever the report's epoch, offender or amount
///   ([`LedgerError::SlashAlreadyApplied`]).
/// - **Committees follow one another.** `set_committee` records an epoch's
///   committee only for an epoch after the latest recorded, with valid
///   members ([`rules::committee`]); a chain backend also requires the
///   signatures of ⌈2n/3⌉ of the latest committee, and slashes only with
///   the signatures of the report's epoch's committee on chain.
///
/// Methods are synchronous and may block on disk or network: an async node
/// calls them from a blocking thread (`tokio::task::spawn_blocking`), behind a
/// mutex (`Settlement: Send`, not `Sync`).
pub trait Settlement: Send {
    /// The spendable balance of `account`; zero for an account never seen.
    fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError>;
    /// Everything `account` holds; [`LedgerError::UnknownAccount`] for an
    /// account never seen.
    fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError>;
    /// Stake bonded by `account` for `role`.
    fn staked(&self, account: &AccountId, role: StakeRole) -> Result<Amount, LedgerError>;
    /// `account`'s unbonding entries, earliest release first.
    fn unbonding(&self, account: &AccountId) -> Result<Vec<UnbondingEntry>, LedgerError>;
    /// The governance parameters in force.
    fn params(&self) -> Result<Params, LedgerError>;
    /// How `account`'s reward for `epoch` was computed.
    fn reward_breakdown(&self, epoch: u64, account: &AccountId) -> Result<RewardExplanation, LedgerError>;
    /// Recomputes the supply from scratch; an error if it is not the total supply.
    fn check_invariant(&self) -> Result<SupplyReport, LedgerError>;
    /// Applies `ops` in order, all or none; one outcome per op.
    fn apply(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError>;

    /// Moves `amount` from `from` to `to` (creating `to` if needed).
    fn transfer(&mut self, from: &AccountId, to: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        let t = Transfer { from: from.clone(), to: to.clone(), amount };
        apply_one(self, LedgerOp::Transfer(t))?.done("transfer")
    }
    /// Locks `amount` of `consumer`'s balance for `session`.
    fn lock_escrow(&mut self, session: SessionId, consumer: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        apply_one(self, LedgerOp::LockEscrow { session, consumer: consumer.clone(), amount })?.done("lock_escrow")
    }
    /// Pays a session from its escrow against a verified receipt; the
    /// provider's share goes to `payout`. (No extra charge: to add one, apply
    /// a [`LedgerOp::Settle`] with `extra`.)
    fn settle(&mut self, receipt: &SignedReceipt, acker: &NodeId, payout: &AccountId) -> Result<Settled, LedgerError> {
        let op =
            LedgerOp::Settle { receipt: receipt.clone(), acker: *acker, payout: payout.clone(), extra: Amount::ZERO };
        apply_one(self, op)?.settled("settle")
    }
    /// Returns a whole open escrow to its consumer; returns the amount.
    fn refund(&mut self, session: SessionId) -> Result<Amount, LedgerError> {
        apply_one(self, LedgerOp::Refund { session })?.amount("refund")
    }
    /// Refunds `seconds` of a settled session that were paid but not delivered.
    fn refund_undelivered(&mut self, session: SessionId, seconds: u64) -> Result<UndeliveredRefund, LedgerError> {
        apply_one(self, LedgerOp::RefundUndelivered { session, seconds })?.undelivered("refund_undelivered")
    }
    /// Bonds `amount` of `account`'s balance for `role`.
    fn stake(&mut self, account: &AccountId, role: StakeRole, amount: Amount) -> Result<(), LedgerError> {
        apply_one(self, LedgerOp::Stake { account: account.clone(), role, amount })?.done("stake")
    }
    /// Starts unbonding `amount` of `account`'s `role` stake at `now`.
    fn unstake(
        &mut self,
        account: &AccountId,
        role: StakeRole,
        amount: Amount,
        now: Timestamp,
    ) -> Result<UnbondingEntry, LedgerError> {
        apply_one(self, LedgerOp::Unstake { account: account.clone(), role, amount, now })?.unbonding("unstake")
    }
    /// Returns every unbonding entry of `account` released at or before `now`.
    fn withdraw_unbonded(&mut self, account: &AccountId, now: Timestamp) -> Result<Amount, LedgerError> {
        apply_one(self, LedgerOp::WithdrawUnbonded { account: account.clone(), now })?.amount("withdraw_unbonded")
    }
    /// Moves `account`'s pending rewards to its balance.
    fn claim_rewards(&mut self, account: &AccountId) -> Result<Amount, LedgerError> {
        apply_one(self, LedgerOp::ClaimRewards { account: account.clone() })?.amount("claim_rewards")
    }
    /// Pays `epoch`'s rewards for `input`.
    fn distribute_epoch(&mut self, epoch: u64, input: &EpochInput) -> Result<EpochSummary, LedgerError> {
        apply_one(self, LedgerOp::DistributeEpoch { epoch, input: input.clone() })?.epoch("distribute_epoch")
    }
    /// Applies a committee-signed penalty.
    fn slash(&mut self, report: &SlashReport, committee: &[NodeId]) -> Result<Slashed, LedgerError> {
        let op = LedgerOp::Slash { report: report.clone(), committee: committee.to_vec() };
        apply_one(self, op)?.slashed("slash")
    }
    /// Publishes the committee of `epoch` ([`LedgerOp::SetCommittee`]).
    fn set_committee(&mut self, epoch: u64, members: &[[u8; 20]], signatures: &[Vec<u8>]) -> Result<(), LedgerError> {
        let op = LedgerOp::SetCommittee { epoch, members: members.to_vec(), signatures: signatures.to_vec() };
        apply_one(self, op)?.done("set_committee")
    }
    /// Changes the governance parameters from `now` on.
    fn set_params(&mut self, params: &Params, now: Timestamp) -> Result<(), LedgerError> {
        apply_one(self, LedgerOp::SetParams { params: *params, now })?.done("set_params")
    }
}

/// Applies one op through [`Settlement::apply`], returning the op's own error
/// rather than a one-element batch error.
fn apply_one<S: Settlement + ?Sized>(s: &mut S, op: LedgerOp) -> Result<OpOutcome, LedgerError> {
    let name = op.name();
    let mut out = s.apply(std::slice::from_ref(&op)).map_err(LedgerError::unbatch)?;
    match (out.pop(), out.is_empty()) {
        (Some(o), true) => Ok(o),
        _ => Err(LedgerError::Storage(format!("backend answered {} outcomes to one {name}", out.len() + 1))),
    }
}

/// Parses an ATH amount typed by a person (`"12"`, `"0.5"`, `"2.5 ATH"`):
/// positive, at most 18 decimals, at most the total supply. The error says
/// what was expected and what was found (a negative number, too many
/// decimals, an amount beyond the supply, ...).
pub fn parse_amount(text: &str) -> Result<Amount, LedgerError> {
    let err = |why: &str| LedgerError::InvalidAmount { found: text.to_owned(), why: why.to_owned() };
    let t = text.trim();
    if t.is_empty() {
        return Err(err("nothing"));
    }
    if t.starts_with('-') {
        return Err(err("a negative amount"));
    }
    if t.starts_with('+') {
        return Err(err("a sign"));
    }
    match t.parse::<Amount>() {
        Ok(a) if a.is_zero() => Err(err("zero")),
        Ok(a) if a > TOTAL_SUPPLY => Err(err("more than the total supply")),
        Ok(a) => Ok(a),
        Err(AmountError::Overflow) => Err(err("a number too large for any amount")),
        Err(_) => {
            let number = t.strip_suffix("ATH").map(str::trim_end).unwrap_or(t);
            let decimals = number.split_once('.').map(|(_, f)| f).filter(|f| f.bytes().all(|b| b.is_ascii_digit()));
            match decimals {
                Some(f) if f.len() > dci_model::money::DECIMALS as usize => Err(err(&format!("{} decimals", f.len()))),
                _ => Err(err("text that is not a decimal number")),
            }
        }
    }
}

/// Everything an account holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Spendable balance.
    pub balance: Amount,
    /// Locked in this account's open session escrows.
    pub escrowed: Amount,
    /// Bonded stake, all roles.
    pub staked: Amount,
    /// Stake unbonding, all roles.
    pub unbonding: Amount,
    /// Rewards credited by epochs and not claimed yet.
    pub rewards: Amount,
}

/// Where a session's escrow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscrowState {
    /// Funds locked, session not paid yet.
    Open,
    /// Paid against a receipt.
    Settled,
    /// Returned to the consumer unpaid.
    Refunded,
}

/// One session's escrow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowView {
    /// The session.
    pub session: SessionId,
    /// Who locked the funds.
    pub consumer: AccountId,
    /// How much was locked.
    pub amount: Amount,
    /// Open, settled or refunded.
    pub state: EscrowState,
}

/// The outcome of settling one session, computed by [`rules::settle`].
/// `charged` = `provider + checkers + indexers + treasury`; `charged +
/// refunded` = the escrow; `charged + shortfall` = the receipt's amount +
/// the op's `extra`; `charged − extra_charged` = `min(receipt amount,
/// escrow)`, the part paid for the receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// The session paid.
    pub session: SessionId,
    /// What the consumer paid: `min(receipt amount + extra, escrow)`.
    pub charged: Amount,
    /// The part of `charged` that paid the op's `extra` (taken after the
    /// receipt's amount: `min(extra, escrow − min(receipt amount, escrow))`).
    /// Zero in records written before extras existed.
    #[serde(default)]
    pub extra_charged: Amount,
    /// To the payout account.
    pub provider: Amount,
    /// To `pool:checker-fees`.
    pub checkers: Amount,
    /// To `pool:indexer-fees`.
    pub indexers: Amount,
    /// To `treasury:protocol`.
    pub treasury: Amount,
    /// Returned to the consumer.
    pub refunded: Amount,
    /// What the receipt and the extra billed beyond the escrow (unpaid; zero
    /// normally).
    pub shortfall: Amount,
}

/// A settlement as recorded by the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRecord {
    /// Order of settlement (increasing).
    pub seq: u64,
    /// The amounts.
    pub settled: Settled,
    /// Who paid.
    pub consumer: AccountId,
    /// Who received the provider's share.
    pub payout: AccountId,
    /// The container that served the session.
    pub container: NodeId,
    /// The node whose acknowledgement was required.
    pub acker: NodeId,
    /// The receipt paid against.
    pub receipt: SignedReceipt,
}

/// The parts of the supply, recomputed from every account, escrow, stake,
/// unbonding entry and pending reward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyReport {
    /// The total supply the parts must add up to.
    pub expected: Amount,
    /// Sum of all balances (pools and treasury included).
    pub balances: Amount,
    /// Sum of all open escrows.
    pub escrowed: Amount,
    /// Sum of all bonded stakes.
    pub staked: Amount,
    /// Sum of all unbonding entries.
    pub unbonding: Amount,
    /// Sum of all pending rewards.
    pub rewards: Amount,
    /// Number of accounts.
    pub accounts: u64,
    /// Number of open escrows.
    pub open_escrows: u64,
}

impl SupplyReport {
    /// The sum of the parts (saturating: an overflow is a broken invariant).
    pub fn found(&self) -> Amount {
        Amount(
            [self.balances, self.escrowed, self.staked, self.unbonding, self.rewards]
                .iter()
                .fold(0u128, |s, a| s.saturating_add(a.0)),
        )
    }

    /// Ok if the parts add up to the expected supply.
    pub fn check(&self) -> Result<(), LedgerError> {
        if self.found() == self.expected {
            Ok(())
        } else {
            Err(LedgerError::Invariant { expected: self.expected, found: self.found() })
        }
    }
}

/// One transfer of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Debited.
    pub from: AccountId,
    /// Credited.
    pub to: AccountId,
    /// How much.
    pub amount: Amount,
}

/// Everything that holds value or records a payment, for comparing two
/// ledgers (tests, crash recovery, audits). Sizes grow with the ledger: this
/// is a diagnostic view, not a query for a busy node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    /// Every account's balance, by account id.
    pub accounts: Vec<(AccountId, Amount)>,
    /// Every bonded stake, by account and role.
    pub stakes: Vec<StakeEntry>,
    /// Every unbonding entry, by account, release time and role.
    pub unbonding: Vec<UnbondingEntry>,
    /// Every non-zero pending reward, by account.
    pub rewards: Vec<(AccountId, Amount)>,
    /// Every escrow, by session.
    pub escrows: Vec<EscrowView>,
    /// Sessions settled.
    pub settlements: u64,
    /// Sessions whose undelivered time was refunded.
    pub undelivered_refunds: u64,
    /// Distributed epochs, ascending.
    pub epochs: Vec<u64>,
    /// Slash reports applied.
    pub slashes: u64,
    /// Recorded parameter sets (1 + changes).
    pub params_changes: u64,
}

impl LedgerError {
    /// The error of the op inside a [`LedgerError::Batch`]; other errors as
    /// they are.
    pub fn unbatch(self) -> LedgerError {
        match self {
            LedgerError::Batch { source, .. } => *source,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_from_text_say_what_is_wrong() {
        let ok = |t: &str, base: u128| assert_eq!(parse_amount(t).unwrap(), Amount(base), "{t}");
        ok("12", 12 * dci_model::money::ONE_ATH);
        ok(" 0.5 ATH ", dci_model::money::ONE_ATH / 2);
        ok("42000000000", TOTAL_SUPPLY.0);
        ok("0.000000000000000001", 1);
        let cases = [
            ("-1", "found a negative amount"),
            ("-0.5", "found a negative amount"),
            ("+3", "found a sign"),
            ("", "found nothing"),
            ("0", "found zero"),
            ("0.000", "found zero"),
            ("42000000000.000000000000000001", "found more than the total supply"),
            ("999999999999999999999999999999", "found a number too large for any amount"),
            ("1.0000000000000000001", "found 19 decimals"),
            ("1e9", "found text that is not a decimal number"),
            ("ten", "found text that is not a decimal number"),
            ("1,5", "found text that is not a decimal number"),
        ];
        for (text, needle) in cases {
            let e = parse_amount(text).unwrap_err();
            assert!(matches!(e, LedgerError::InvalidAmount { .. }), "{text}: {e:?}");
            let m = e.to_string();
            assert!(m.contains(needle) && m.contains("expected a positive ATH amount"), "{text}: {m}");
        }
    }
}
