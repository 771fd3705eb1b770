//! The ATH ledger (SPEC §7): genesis allocation, accounts, transfers, session
//! escrow and settlement of usage receipts with the fee split, API keys bound
//! to accounts, and the supply invariant (R-LG5).
//!
//! [`Settlement`] is the boundary a node talks to (R-LG6); [`EmbeddedLedger`]
//! is its single-node backend on a SQLite file. Amounts are
//! [`dci_model::Amount`] (u128 base units), stored as decimal text because
//! SQLite integers are only 64 bits; all arithmetic is checked Rust.
//!
//! This crate is not: the EVM backend (`dci-chain`), staking, epoch rewards or
//! slashing (a later version of this crate), nor an authorization layer — it
//! moves funds it is asked to move; the gateway decides who may ask.

pub mod accounts;
mod embedded;
mod error;
pub mod fees;
pub mod genesis;

pub use embedded::EmbeddedLedger;
pub use error::LedgerError;
pub use fees::FeeSplit;
pub use genesis::{Allocation, Genesis, Share};

use dci_model::{AccountId, Amount, NodeId, SessionId};
use dci_proto::SignedReceipt;
use serde::{Deserialize, Serialize};

/// What a node needs from a ledger backend (R-LG6). Implemented by
/// [`EmbeddedLedger`] (SQLite) and, later, by the EVM backend.
///
/// The contract every backend keeps:
///
/// - **Atomic.** Each mutating call either applies completely or returns an
///   error and changes nothing at all.
/// - **Conservation (R-LG5).** The sum of all balances and open escrows equals
///   [`dci_model::money::TOTAL_SUPPLY`] before and after every call; no balance
///   is ever negative (amounts are unsigned and every debit is checked).
/// - **A session is paid at most once.** `lock_escrow` refuses a session that
///   already has an escrow; `settle` and `refund` each close an open escrow,
///   and any later `settle` or `refund` of that session fails
///   ([`LedgerError::AlreadySettled`] / [`LedgerError::AlreadyRefunded`]) without
///   changing anything. Retrying a `settle` that succeeded is therefore safe.
/// - **A charge never exceeds its escrow.** `settle` charges
///   `min(receipt amount, escrow)`, splits it by the backend's [`FeeSplit`] and
///   refunds the rest of the escrow to the consumer.
/// - **Receipts are verified.** `settle` pays only against a receipt whose
///   container signature, arithmetic and acknowledgement by `acker` verify.
///
/// Methods are synchronous and may block on disk or network: an async node
/// calls them from a blocking thread (`tokio::task::spawn_blocking`), behind a
/// mutex (`Settlement: Send`, not `Sync`).
pub trait Settlement: Send {
    /// The spendable balance of `account`; zero for an account never seen.
    fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError>;
    /// Balance and funds locked in open escrows; [`LedgerError::UnknownAccount`]
    /// for an account never seen.
    fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError>;
    /// Moves `amount` from `from` to `to` (creating `to` if needed).
    fn transfer(&mut self, from: &AccountId, to: &AccountId, amount: Amount) -> Result<(), LedgerError>;
    /// Locks `amount` of `consumer`'s balance for `session`.
    fn lock_escrow(&mut self, session: SessionId, consumer: &AccountId, amount: Amount) -> Result<(), LedgerError>;
    /// Pays a session from its escrow against a verified receipt; the
    /// provider's share goes to `payout`.
    fn settle(&mut self, receipt: &SignedReceipt, acker: &NodeId, payout: &AccountId) -> Result<Settled, LedgerError>;
    /// Returns a whole open escrow to its consumer; returns the amount.
    fn refund(&mut self, session: SessionId) -> Result<Amount, LedgerError>;
    /// Recomputes the supply from scratch; an error if it is not the total supply.
    fn check_invariant(&self) -> Result<SupplyReport, LedgerError>;
}

/// An account as a consumer sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Spendable balance.
    pub balance: Amount,
    /// Locked in this account's open session escrows.
    pub escrowed: Amount,
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

/// The outcome of settling one session. `charged` = `provider + checkers +
/// indexers + treasury`; `charged + refunded` = the escrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// The session paid.
    pub session: SessionId,
    /// What the consumer paid: `min(receipt amount, escrow)`.
    pub charged: Amount,
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
    /// What the receipt billed beyond the escrow (unpaid; zero normally).
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

/// The parts of the supply, recomputed from every account and escrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyReport {
    /// The total supply the parts must add up to.
    pub expected: Amount,
    /// Sum of all balances.
    pub balances: Amount,
    /// Sum of all open escrows.
    pub escrowed: Amount,
    /// Number of accounts.
    pub accounts: u64,
    /// Number of open escrows.
    pub open_escrows: u64,
}

impl SupplyReport {
    /// `balances + escrowed` (saturating: an overflow is a broken invariant).
    pub fn found(&self) -> Amount {
        Amount(self.balances.0.saturating_add(self.escrowed.0))
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
