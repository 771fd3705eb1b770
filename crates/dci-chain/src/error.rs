//! Why a chain operation failed.

use dci_ledger::LedgerError;

/// Everything that can go wrong talking to the chain or its tools. Ledger
/// rules that refuse an op are [`LedgerError`]s, not these.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A tool (anvil, forge) or an artifact is not where the setup puts it.
    #[error(
        "{what} not found at {path}: run `cargo xtask deps` (it installs the evm tools under contracts/node_modules and builds contracts/out){hint}"
    )]
    Missing {
        /// What is missing.
        what: String,
        /// Where it was looked for.
        path: String,
        /// How to override the location.
        hint: String,
    },
    /// A process could not be started or answered unexpectedly.
    #[error("{0}")]
    Process(String),
    /// The RPC endpoint did not answer (chain down, wrong URL).
    #[error("chain at {url} unreachable: {why}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// The transport error.
        why: String,
    },
    /// The chain refused a call or a transaction (a revert, decoded).
    #[error("chain refused {what}: {why}")]
    Refused {
        /// What was attempted.
        what: String,
        /// The decoded revert reason.
        why: String,
    },
    /// Something on chain is not what a DCI deployment looks like.
    #[error("{0}")]
    Deployment(String),
    /// Bad input (a key, a URL, an amount too large).
    #[error("invalid input: {0}")]
    Input(String),
    /// A ledger rule refused the operation.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<ChainError> for LedgerError {
    fn from(e: ChainError) -> LedgerError {
        match e {
            ChainError::Ledger(l) => l,
            other => LedgerError::Storage(format!("evm backend: {other}")),
        }
    }
}
