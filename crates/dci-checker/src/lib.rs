//! The checker role's sans-IO core (SPEC §4).
//!
//! It inspects containers when a trusted indexer asks: at registration
//! (R-CK1) and at random while they stand by (R-CK2; the indexer draws them),
//! by proof of compute capacity (R-CK5). The checker sends a challenge sized
//! to the memory the container claims; the container commits to the Merkle
//! root of its product; the checker judges that time against the claimed
//! class, then reveals Freivalds vectors and rows to open; the container
//! answers, and the checker verifies and sends its verdict, with the
//! indexer's request id, to the indexer. [`Checker::handle`] takes one
//! [`Input`] at a time, with `now` passed in, and returns [`Output`]s; all
//! randomness comes from a seed the caller gives.
//!
//! This crate does no IO, reads no clock and signs only its penalty votes
//! (ed25519, and for a chain ledger through the [`ChainSigner`] the node
//! gives it, so the EVM stays in `dci-chain`): the driver
//! (`dci-node`) moves and seals the messages. The math lives in
//! `dci-capacity`, the epoch committee in `dci-committee`. In-service
//! evaluation with a simulated user (R-CK3, R-CK4) is not here yet.

mod checker;
mod config;

pub use checker::{ChainSigner, Checker, Input, Output, ServiceReport};
pub use config::{Config, ConfigError, Coordinator, EvaluationFloor};
