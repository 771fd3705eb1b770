//! The indexer role's sans-IO core (SPEC §2 and §3).
//!
//! An [`Indexer`] keeps the registry of containers, drives their lifecycle
//! from registrations, heartbeats, checker verdicts and a timer, and matches
//! consumer requests to the most suitable container, reserving one slot per
//! session atomically (R-IX1, R-IX2, R-IX4). It is a deterministic state
//! machine: `handle(now, input) -> Vec<Output>`; the caller passes the time in
//! and carries the outputs out (messages to send, records to persist).
//!
//! Matching is a naive full scan in [`scan`]: a pure function that later,
//! faster indexes are checked against.
//!
//! This crate is not: the transport or the store (`dci-node` owns sockets and
//! disk and persists [`ContainerRecord`]s), the wire format (`dci-proto`), the
//! vocabulary (`dci-model`), or the verifiable choice of which indexer serves
//! a request (R-IX3's indexer selection happens before a request gets here).

mod config;
mod container;
mod indexer;
pub mod scan;

pub use config::{Config, ConfigError};
pub use container::{Container, ContainerRecord, HISTORY_LEN};
pub use indexer::{Indexer, Input, InvariantError, Output, Rejection};

/// Reputation of a newly registered container (scale 0..=[`REPUTATION_MAX`]).
pub const REPUTATION_START: u32 = 500;
/// Highest reputation.
pub const REPUTATION_MAX: u32 = 1000;
/// Reputation gained per passed inspection.
pub const REPUTATION_PASS: u32 = 50;
/// Reputation lost per failed inspection (failing costs more than passing earns).
pub const REPUTATION_FAIL: u32 = 100;
