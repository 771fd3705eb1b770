//! The indexer role's sans-IO core (SPEC §2 and §3).
//!
//! An [`Indexer`] keeps the registry of containers, drives their lifecycle
//! from registrations, heartbeats, checker verdicts and a timer, and matches
//! consumer requests to the most suitable container, reserving one slot per
//! session atomically (R-IX1, R-IX2, R-IX4). A reservation expires
//! [`Config::reservation_ttl`] after its match unless the gateway renews it
//! (`Message::Renew`) or releases it, so no slot stays reserved for a
//! gateway that crashed or never saw the answer. It is a deterministic state
//! machine: `handle(now, input) -> Vec<Output>`; the caller passes the time in
//! and carries the outputs out (messages to send, records to persist).
//!
//! Matching runs on an index (`index.rs`: per service/GPU bucket trees over a
//! geographic grid, best-first search with bounds) that returns exactly what
//! the naive full scan in [`scan`] returns; the scan is kept as the oracle
//! that tests and [`mod@bench`] compare against. [`filter`] parses the offers
//! filter language (R-IX5) and [`Indexer::offers`] lists offers with it;
//! [`serving_indexer`] is the verifiable choice of the indexer that serves a
//! request (R-IX3). The indexer asks checkers for inspections: at
//! registration (R-CK1) and, at random, of idle schedulable containers
//! (R-CK2); it applies only the verdict of the inspection in flight, and keeps
//! the latest verdicts and a reputation per container.
//!
//! Sybil cost (issue 14): with a [`Config::stake_oracle`] (the gateway that
//! holds the ledger), a registration from a node not in the registry waits
//! in a bounded pending map ([`MAX_PENDING`], oldest dropped first) until
//! the oracle answers `Message::StakeOf` for that query; below the minimum
//! container stake the container gets `Message::Refused` and nothing is
//! kept; unanswered after [`STAKE_QUERY_TIMEOUT`], it is dropped. Containers
//! that never passed an inspection and were silent for
//! [`Config::prune_after`] are removed on a tick ([`Output::Forget`]; their
//! slot stays a tombstone, slots are never reused). Registrations list at
//! most `dci_proto::MAX_SERVICES` services, heartbeats as many warm ones.
//!
//! This crate is not: the transport or the store (`dci-node` owns sockets and
//! disk and persists [`ContainerRecord`]s), the wire format (`dci-proto`), the
//! vocabulary (`dci-model`), or the CLI and HTTP API (`dci`, `dci-gateway`
//! call [`Indexer::offers`], [`filter::Filter::parse`] and [`bench::run`]).

pub mod bench;
mod config;
mod container;
pub mod filter;
mod index;
mod indexer;
mod offers;
mod rng;
pub mod scan;
mod serving;

pub use config::{Config, ConfigError, DEFAULT_PRUNE_AFTER, DEFAULT_RESERVATION_TTL, DEFAULT_STANDBY_EVERY};
pub use container::{Container, ContainerRecord, HISTORY_LEN, VERDICTS_LEN};
pub use index::{IndexStats, MAX_BUCKETS, MAX_BUCKETS_UX, SearchStats};
pub use indexer::{
    InFlight, Indexer, Input, InvariantError, MAX_PENDING, Output, Peers, Rejection, STAKE_QUERY_TIMEOUT,
};
pub use offers::{SortKey, SortKeyError};
pub use scan::Choice;
pub use serving::{serving_indexer, serving_score};

/// Reputation of a newly registered container (scale 0..=[`REPUTATION_MAX`]).
pub const REPUTATION_START: u32 = 500;
/// Highest reputation.
pub const REPUTATION_MAX: u32 = 1000;
/// Reputation gained per passed inspection.
pub const REPUTATION_PASS: u32 = 50;
/// Reputation lost per failed inspection (failing costs more than passing earns).
pub const REPUTATION_FAIL: u32 = 100;
