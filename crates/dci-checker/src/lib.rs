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
//! In service (R-CK3, R-CK4) it asks the container for an evaluation
//! session and has the driver run a scripted simulated user against it.
//!
//! A challenge or evaluation request names the container meant and a
//! deadline; the container refuses one that names another container, and a
//! registration whose address answers with another key fails at once as
//! `wrong_node`. Whatever ends an inspection, the container is freed of it
//! (a reveal, `ChallengeCancelled` or `EvaluationDone`). Only a wrong answer
//! the container signed is evidence; a failure of the checker's own
//! challenge or reveal never is, and never gets its vote.
//!
//! This crate does no IO, reads no clock and signs only its penalty votes
//! (ed25519, and for a chain ledger through the [`ChainSigner`] the node
//! gives it, so the EVM stays in `dci-chain`): the driver
//! (`dci-node`) moves and seals the messages. The math lives in
//! `dci-capacity`, the epoch committee in `dci-committee`.

mod checker;
mod config;

pub use checker::{ChainSigner, Checker, CommitteeSigner, Input, MAX_QUEUED, Output, Peers, ServiceReport};
pub use config::{Config, ConfigError, Coordinator, EvaluationFloor};
