//! Why a ledger operation was refused. A refused operation changes nothing.

use dci_model::{AccountId, Amount, AmountError, SessionId};
use dci_proto::ReceiptError;

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
    /// Supply conservation (R-LG5) is broken.
    #[error("supply invariant broken: expected balances + open escrows = {expected} ATH, found {found} ATH")]
    Invariant {
        /// The total supply.
        expected: Amount,
        /// What the ledger adds up to.
        found: Amount,
    },
    /// Arithmetic that does not fit.
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// One transfer of a batch failed; the whole batch was refused.
    #[error("transfer {index} of the batch failed, nothing was applied: {source}")]
    Batch {
        /// Position in the batch, from 0.
        index: usize,
        /// Why it failed.
        source: Box<LedgerError>,
    },
    /// The storage backend failed or holds something unreadable.
    #[error("ledger storage: {0}")]
    Storage(String),
}
