//! `dci-sim`: a deterministic discrete-event simulation of a DCI network
//! (SPEC §11, R-SIM; issue 17) that drives the real role cores.
//!
//! One thread runs the gateway core ([`dci_gateway_core::Gateway`]) with an
//! in-memory [`dci_ledger::EmbeddedLedger`] (the ledger's own rules, not a
//! copy), the indexers ([`dci_indexer::Indexer`]), the checkers
//! ([`dci_checker::Checker`], with the epoch committee they form through the
//! gateway's duties) and the container hosts ([`dci_agent::Agent`]) on a
//! virtual clock: a binary heap of events ordered by (time, sequence). Every
//! random draw — keys, core seeds, network jitter, challenge timings,
//! consumers' arrivals — comes from one ChaCha20 RNG seeded by the caller;
//! nothing reads the wall clock, opens a socket or touches a file. The same
//! seed and scenario give the same [`Report`], byte for byte.
//!
//! What stands in for IO, and only that: [`net`] delivers messages with the
//! latency of great-circle distance (the indexer's own RTT estimate, times
//! a fibre factor) plus seeded jitter, in order per link; a host's
//! challenge is computed for real by the capacity crate
//! (`Behaviour::commit`), at the scenario's small `challenge_n`, and takes
//! the time the capacity crate's timing model gives its real hardware
//! (`Behaviour::commit_ms`); services start after a drawn delay.
//!
//! What the small challenge size changes: the checker's verification code
//! runs for real, so every wrong answer it can prove (wrong product, replay,
//! rows changed after commit, dark) is caught and slashed as in production;
//! but the deadline at a small `n` is dominated by the fixed slack, so a
//! host of a slower class than it claims (`slower-class`) is not told apart
//! by timing at this size.
//!
//! **Invariant: this crate holds no matching, verification, settlement or
//! reward logic of its own.** It only delivers inputs to the cores and
//! carries out their outputs; every decision (which host, whether a proof
//! holds, who pays what, who is slashed) is made by the cores and the
//! ledger. `tests/purity.rs` enforces it by scanning this crate's sources
//! for the entry points of that logic (scan/match functions, Freivalds
//! verification, settlement and reward ops built here).
//!
//! Outages are data too (`[[outages]]`): a node goes `dark` (still running,
//! cut off from the network) or `crash`es (connections to it refused; at
//! the end it restarts as its process would: a host afresh, an indexer from
//! the records it persisted, a checker with a new seed), or a host is
//! locked for `maintenance` by its operator; host groups may join late.
//!
//! Not yet here (issue 17): hosts leaving for good, slow hosts, capacity liars and receipt inflaters, in-service
//! evaluations (no scripted user runs: the indexers ask none), several
//! gateways, the 40,000-GPU default scenario, utilisation over time, the
//! invariants on billed seconds and penalties, the trace export and the
//! HTML report.

pub mod net;
pub mod report;
pub mod scenario;
mod sim;

pub use report::Report;
pub use scenario::{Scenario, ScenarioError};
pub use sim::{START, Sim, SimError};

/// Runs `scenario` for `hours` of virtual time with every random draw from `seed`.
pub fn run(scenario: Scenario, seed: u64, hours: f64) -> Result<Report, SimError> {
    Ok(Sim::new(scenario, seed, hours)?.run())
}
