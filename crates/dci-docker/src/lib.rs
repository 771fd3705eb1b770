//! The `docker` workload runtime of the container host agent (SPEC R-AG2).
//!
//! [`DockerRuntime`] implements [`dci_agent::runtime::Runtime`] through the
//! Docker Engine API (`bollard`): one container per session, with CPU, memory
//! and pids limits, NVIDIA GPU device requests when configured, host
//! networking (the service binds `127.0.0.1:0` and announces
//! `listening on <url>` on its standard output, read from the container log),
//! and labels (`dci.agent=<id>`) that let a restarted agent remove what a
//! crashed one left behind.
//!
//! [`image`] builds local images for DCI services from one binary (no
//! registry needed: `docker import` of a root file system holding the binary
//! and the shared libraries `ldd` reports). [`daemon`] starts a private
//! `dockerd` under a directory of its own, for development hosts and tests.
//!
//! This crate is the only one that knows the Docker API (STYLE rule 4). It is
//! not the agent: which sessions run is decided by `dci-agent`'s sans-IO core.

pub mod config;
pub mod daemon;
pub mod image;
mod runtime;

pub use config::{DockerConfig, GpuRequest, Limits};
pub use daemon::LocalDaemon;
pub use runtime::{DockerError, DockerRuntime, connect_engine, remove_leftovers};
