//! The gateway role's sans-IO core: the consumer's entry point, and the one
//! role that moves consumers' money.
//!
//! [`Gateway::handle`] takes one [`Input`] at a time — a consumer's command
//! from the HTTP API, an authenticated node message, the result of a ledger
//! call it asked for, or a tick — with `now` passed in, and returns
//! [`Output`]s: messages to send, ledger calls to make, session records to
//! persist, replies to the API. Randomness comes from a seed the caller
//! gives. Like the indexer, checker and container cores it reads no clock,
//! opens no socket and touches no file: the driver in `dci-node` does, and
//! tests drive it in virtual time.
//!
//! What it does (see ARCHITECTURE.md, "dci-gateway-core", for the invariants):
//!
//! - **Placement** ([`placement`]): one state machine places a session on a
//!   container, for a deploy and for every failover: match at the indexer,
//!   lock escrow, start the service, watch it. A deploy escrows `price ×
//!   hours`; a failover moves the rest of that budget to the next placement
//!   in the same ledger batch that settles the failed one.
//! - **Metering** ([`receipts`]): a usage receipt is acknowledged only if it
//!   agrees with the session record (container, placement, consumer,
//!   service, price, start) and with the gateway's own clock, and only if it
//!   is cumulative and monotone. Tokens are billed from the placement's
//!   escrow, at most one per byte the gateway relayed. A session whose
//!   escrow runs out is stopped and settled, and says why.
//! - **Answers only from the node asked**: every answer must name a request
//!   in flight and come from the node it was sent to; a match counts for the
//!   indexer's reward only then.
//! - **Crash consistency** ([`record::Intent`]): every ledger call that
//!   moves a session's money is recorded in the session before it is made;
//!   [`Gateway::restore`] completes or reverses what a crash interrupted.
//! - **The epoch** ([`epoch`]): samples the network's containers, counts
//!   served matches, releases each epoch's rewards; and the committee duties
//!   ([`duties`]): sortition, penalty proposals and votes.
//!
//! This crate is not: the HTTP API (`dci-gateway` maps [`GatewayError`] to
//! status codes and records to JSON), the transport or the ledger backends
//! (`dci-node` carries out the outputs), nor the matching itself (the
//! indexer's).

pub mod config;
pub mod duties;
pub mod epoch;
mod error;
mod gateway;
mod io;
pub mod placement;
pub mod receipts;
pub mod record;
mod recovery;

pub use config::{CommitteeConfig, Config, ModelTerms, Peer, Timing};
pub use duties::{ChainHooks, ChainVerifier, CheckerSeat, CommitteeVerifier, CommitteeView, PenaltyRecord};
pub use error::GatewayError;
pub use gateway::Gateway;
pub use io::{CallId, Command, Event, Input, LedgerCall, LedgerReply, Output, Relayed, Reply, Ticket};
pub use record::{Host, Intent, Placement, Segment, SessionRecord, Status, token_charge};
