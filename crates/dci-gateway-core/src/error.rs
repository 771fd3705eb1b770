//! Why a consumer's command was refused: domain values, mapped to HTTP
//! status codes by `dci-gateway`.

use dci_ledger::LedgerError;
use dci_model::{Eliminations, SessionId};

use crate::record::Status;

/// Why a command failed. Whatever the variant, a failed command leaves no
/// escrow locked and no slot reserved for it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No container passed every criterion.
    #[error("{0}")]
    NoMatch(Eliminations),
    /// The ledger refused (insufficient funds, …).
    #[error("{0}")]
    Ledger(LedgerError),
    /// The session does not exist for this caller.
    #[error("no session {0} for this account")]
    NoSession(SessionId),
    /// The session exists but is not running.
    #[error("session {session} is {status:?}, not running")]
    NotRunning {
        /// The session.
        session: SessionId,
        /// What it is.
        status: Status,
    },
    /// The session is moving to another container.
    #[error("session {0} is moving to another container; try again in a few seconds")]
    Recovering(SessionId),
    /// The session is already being stopped.
    #[error("session {0} is already stopping")]
    Stopping(SessionId),
    /// Not what the session offers (e.g. a relay to a non-model service).
    #[error("{0}")]
    NotOffered(String),
    /// A node did not answer, or the container could not start the service.
    #[error("{0}")]
    Unavailable(String),
    /// This gateway does not do that (e.g. it coordinates no committee).
    #[error("{0}")]
    NotFound(String),
}
