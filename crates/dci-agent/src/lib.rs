//! The container host agent (SPEC §5): what a GPU provider runs on each host.
//!
//! [`Agent`] is the container role's sans-IO core: it registers with an
//! indexer, heartbeats, answers checkers' proof-of-capacity challenges, starts
//! and stops consumer sessions and meters them into signed usage receipts
//! (R-AG4). It never touches a socket, a clock or a process: the driver in
//! `dci-node` feeds it [`Input`]s and carries out its [`Output`]s.
//!
//! Challenges and evaluations never pile up: one that names another
//! container (a registration that names this container's address) is
//! refused at once (`ChallengeRefused`, `EvaluationFailed`) and takes no
//! place; each trusted checker has places of its own
//! ([`MAX_CHALLENGES_PER_CHECKER`], [`MAX_EVALUATIONS_PER_CHECKER`]); a
//! challenge or evaluation is forgotten (its session stopped) when the
//! checker cancels it or ends it, or on [`Input::Tick`] once its deadline
//! and [`DEADLINE_GRACE`] have passed. State reports about another
//! container are refused.
//!
//! [`runtime`] holds the workload runtimes behind the [`runtime::Runtime`]
//! trait (R-AG2): `process` (a child process per session); the `docker` runtime
//! lives in `dci-docker`. The operator's commands (R-AG5) arrive as
//! [`Input::Operator`]; [`Agent::status`] is what `dci container status` shows.

mod core;
pub mod runtime;

pub use core::{
    Agent, AgentConfig, AgentStatus, DEADLINE_GRACE, Earnings, IndexerView, Input, MAX_CHALLENGES_PER_CHECKER,
    MAX_EVALUATIONS_PER_CHECKER, METERING_INTERVAL, OperatorCommand, Output, Peers, SessionView,
};
