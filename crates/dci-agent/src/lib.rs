//! The container host agent (SPEC §5): what a GPU provider runs on each host.
//!
//! [`Agent`] is the container role's sans-IO core: it registers with an
//! indexer, heartbeats, answers checkers' proof-of-capacity challenges, starts
//! and stops consumer sessions and meters them into signed usage receipts
//! (R-AG4). It never touches a socket, a clock or a process: the driver in
//! `dci-node` feeds it [`Input`]s and carries out its [`Output`]s.
//!
//! [`runtime`] holds the workload runtimes behind the [`runtime::Runtime`]
//! trait (R-AG2): `process` (a child process per session); the `docker` runtime
//! lives in `dci-docker`. The operator's commands (R-AG5) arrive as
//! [`Input::Operator`]; [`Agent::status`] is what `dci container status` shows.

mod core;
pub mod runtime;

pub use core::{
    Agent, AgentConfig, AgentStatus, Earnings, Input, METERING_INTERVAL, OperatorCommand, Output, SessionView,
};
