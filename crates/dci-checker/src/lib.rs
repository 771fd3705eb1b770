//! The checker role's sans-IO core (SPEC §4).
//!
//! Today it does registration validation (R-CK1) by proof of compute
//! capacity (R-CK5): a trusted indexer asks for an inspection, the checker
//! sends the container a fresh challenge, the container commits to the
//! Merkle root of its result, the checker then picks random rows, the
//! container opens them, and the checker sends its verdict to the indexer.
//! [`Checker::handle`] takes one [`Input`] at a time, with `now` passed in, and
//! returns [`Output`]s; all randomness comes from a seed the caller gives.
//!
//! This crate does no IO, reads no clock and signs nothing: the driver
//! (`dci-node`) moves and seals the messages. The math lives in
//! `dci-capacity`. Standby inspections, in-service evaluation, simulated
//! sessions, timing against the claimed GPU class and committees are not
//! here yet.

mod checker;
mod config;

pub use checker::{Checker, Input, Output};
pub use config::{Config, ConfigError};
