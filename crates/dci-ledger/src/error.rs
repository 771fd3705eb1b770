//! Why a ledger operation was refused. A refused operation changes nothing.

use dci_model::{AccountId, Amount, AmountError, SessionId, Timestamp};
use dci_proto::ReceiptError;

use crate::StakeRole;

fn next_release(next: &Option<Timestamp>) -> String {
    match next {
        Some(t) => format!(" (next release at {t})"),
        None => " (nothing is unbonding)".to_owned(),
    }
}

/// Every way a ledger operation can fail. Whatever the variant, the ledger
/// state is exactly what it was before the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Funds were asked of an account that has never held any.
    #[error("unknown account {0}: expected an account that exists in the ledger")]
    UnknownAccount(AccountId),
    /// The account holds less than the operation needs.
    #[error("insufficient funds in {account}: have {have} ATH, need {need} ATH")]
    InsufficientFunds {
        /// The account debited.
        account: AccountId,
        /// Its balance.
        have: Amount,
        /// What the operation needed.
        need: Amount,
    },
    /// Transfers and escrows must move something.
    #[error("expected a positive amount, found 0")]
    ZeroAmount,
    /// A transfer from an account to itself.
    #[error("expected two different accounts, found {0} on both sides of the transfer")]
    SameAccount(AccountId),
    /// The session was paid already (R-LG2: a session is paid at most once).
    #[error("session {0} is already settled: expected an open escrow")]
    AlreadySettled(SessionId),
    /// The session's escrow went back to the consumer already.
    #[error("session {0} was already refunded: expected an open escrow")]
    AlreadyRefunded(SessionId),
    /// Nothing was locked for the session.
    #[error("no escrow for session {0}: expected funds locked at session start")]
    NoEscrow(SessionId),
    /// A session has one escrow, locked once.
    #[error("session {0} already has an escrow: expected a session without one")]
    EscrowExists(SessionId),
    /// The receipt names a different payer than the escrow.
    #[error("receipt for session {session} is billed to {receipt}, but the escrow was locked by {escrow}")]
    ConsumerMismatch {
        /// The session.
        session: SessionId,
        /// Who locked the escrow.
        escrow: AccountId,
        /// Who the receipt bills.
        receipt: AccountId,
    },
    /// The receipt does not verify (signatures or arithmetic).
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// The genesis configuration is not acceptable.
    #[error("invalid genesis: {0}")]
    InvalidGenesis(String),
    /// The ledger file was created with another genesis.
    #[error("the ledger was created with genesis [{stored}], refusing to open it with genesis [{given}]")]
    GenesisMismatch {
        /// The genesis recorded in the ledger.
        stored: String,
        /// The genesis given to `open`.
        given: String,
    },
    /// Fee split parameters that do not add up.
    #[error("invalid fee split: {0}")]
    InvalidFeeSplit(String),
    /// The generated API key is already registered (reused randomness).
    #[error("api key already registered: expected fresh random bytes for a new key")]
    DuplicateApiKey,
    /// An amount given as text is not acceptable.
    #[error(
        "invalid amount {found:?}: expected a positive ATH amount like 12 or 0.5 with at most 18 decimals and at most the total supply of 42000000000 ATH, found {why}"
    )]
    InvalidAmount {
        /// The text given.
        found: String,
        /// What is wrong with it.
        why: String,
    },
    /// Other input that does not parse or is out of range.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Less stake bonded than the operation needs.
    #[error("insufficient {role} stake of {account}: have {have} ATH staked, need {need} ATH")]
    InsufficientStake {
        /// Whose stake.
        account: AccountId,
        /// In which role.
        role: StakeRole,
        /// What is bonded.
        have: Amount,
        /// What the operation needed.
        need: Amount,
    },
    /// `withdraw_unbonded` found nothing released.
    #[error("nothing to withdraw for {account}: expected unbonding stake released at or before {now}, found none{}", next_release(.next))]
    NothingToWithdraw {
        /// Whose stake.
        account: AccountId,
        /// The time given.
        now: Timestamp,
        /// The earliest future release, if any.
        next: Option<Timestamp>,
    },
    /// `claim_rewards` found no pending rewards.
    #[error("no pending rewards for {0}: expected rewards credited by a distributed epoch")]
    NoPendingRewards(AccountId),
    /// Governance parameters that do not validate.
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// An epoch's input that does not validate.
    #[error("invalid epoch input: {0}")]
    InvalidEpochInput(String),
    /// Each epoch is distributed once.
    #[error("epoch {0} was already distributed: expected an epoch not distributed yet")]
    EpochAlreadyDistributed(u64),
    /// No record of the epoch.
    #[error("epoch {0} has not been distributed: expected a distributed epoch")]
    EpochNotDistributed(u64),
    /// Not enough valid committee signatures.
    #[error(
        "slash report against {offender} has {valid} valid signatures from a committee of {committee}: expected at least {needed} (two thirds)"
    )]
    SlashQuorum {
        /// The accused.
        offender: AccountId,
        /// Distinct committee members whose signature verified.
        valid: u64,
        /// `ceil(2n/3)`.
        needed: u64,
        /// Committee size.
        committee: u64,
    },
    /// A report with this evidence was applied before (in any epoch): a
    /// piece of evidence causes at most one slash.
    #[error(
        "evidence {} was already slashed: expected evidence never slashed before (a piece of evidence causes at most one slash, in any epoch)",
        hex::encode(.evidence)
    )]
    SlashAlreadyApplied {
        /// The evidence's hash ([`crate::SlashReport::evidence_hash`]).
        evidence: [u8; 32],
    },
    /// An account has as many unbonding entries in a role as it may have
    /// ([`crate::rules::MAX_UNBONDING`]): it withdraws released ones first.
    #[error(
        "{account} already has {max} {role} stake entries unbonding: expected at most {max}, so withdraw the released ones before unstaking again"
    )]
    TooManyUnbonding {
        /// Whose stake.
        account: AccountId,
        /// In which role.
        role: StakeRole,
        /// The bound.
        max: u64,
    },
    /// An epoch's rewards before the epoch has ended on the ledger's clock
    /// (the evm backend: the chain's).
    #[error("epoch {epoch} ends at {ends_at}, the ledger's clock is at {now}: expected an epoch that has ended")]
    EpochNotEnded {
        /// The epoch.
        epoch: u64,
        /// When it ends.
        ends_at: Timestamp,
        /// The ledger's clock.
        now: Timestamp,
    },
    /// A committee for an epoch at or before the latest one recorded.
    #[error("a committee of epoch {epoch} cannot be set: expected an epoch after {latest}, the latest committee's")]
    CommitteeEpochNotNewer {
        /// The epoch asked.
        epoch: u64,
        /// The latest committee's epoch.
        latest: u64,
    },
    /// A committee not signed by two thirds of the latest one.
    #[error(
        "the committee of epoch {epoch} has {valid} valid signatures from the latest committee (epoch {latest}, {committee} members): expected at least {needed} (two thirds)"
    )]
    CommitteeQuorum {
        /// The epoch of the committee published.
        epoch: u64,
        /// The latest committee's epoch (the signers').
        latest: u64,
        /// Distinct members of the latest committee whose signature recovered.
        valid: u64,
        /// `ceil(2n/3)`.
        needed: u64,
        /// The latest committee's size.
        committee: u64,
    },
    /// A committee's member list that cannot be a committee.
    #[error("invalid committee of epoch {epoch}: {why}")]
    InvalidCommittee {
        /// The epoch.
        epoch: u64,
        /// What is wrong with the members.
        why: String,
    },
    /// A slash of an epoch whose committee is not on chain.
    #[error(
        "no committee of epoch {0} on chain: expected it published (LedgerOp::SetCommittee, signed by two thirds of the latest committee) before a slash of that epoch"
    )]
    NoCommittee(u64),
    /// The offender has neither pending rewards nor stake in the role.
    #[error("nothing to slash: {offender} has no pending rewards and no {role} stake")]
    NothingToSlash {
        /// The accused.
        offender: AccountId,
        /// The role.
        role: StakeRole,
    },
    /// Undelivered time can only be refunded from a settled session.
    #[error("session {0} is not settled: expected a settled session to refund undelivered time from")]
    NotSettled(SessionId),
    /// More undelivered seconds than were paid.
    #[error("session {session} billed {paid} seconds: expected 1 to {paid} undelivered seconds, found {asked}")]
    UndeliveredSeconds {
        /// The session.
        session: SessionId,
        /// Seconds asked to refund.
        asked: u64,
        /// Seconds the receipt billed.
        paid: u64,
    },
    /// Undelivered time of a session is refunded once.
    #[error("undelivered time of session {0} was already refunded: expected a session not refunded yet")]
    UndeliveredAlreadyRefunded(SessionId),
    /// Supply conservation (R-LG5) is broken.
    #[error(
        "supply invariant broken: expected balances + escrows + stakes + unbonding + pending rewards = {expected} ATH, found {found} ATH"
    )]
    Invariant {
        /// The total supply.
        expected: Amount,
        /// What the ledger adds up to.
        found: Amount,
    },
    /// Arithmetic that does not fit.
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// One op of a batch failed; the whole batch was refused.
    #[error("{op} {index} of the batch failed, nothing was applied: {source}")]
    Batch {
        /// What the failed op was (`transfer`, `stake`, ...).
        op: &'static str,
        /// Position in the batch, from 0.
        index: usize,
        /// Why it failed.
        source: Box<LedgerError>,
    },
    /// The storage backend failed or holds something unreadable.
    #[error("ledger storage: {0}")]
    Storage(String),
}
