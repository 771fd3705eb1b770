//! The workload runtime a node's containers use, chosen at start-up
//! (R-AG2): `process` (the default, child processes of the agent) or
//! `docker` (containers on a Docker engine, with resource limits).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use dci_agent::runtime::{ProcessRuntime, Runtime, RuntimeError};
use dci_docker::{DockerConfig, DockerRuntime, LocalDaemon, connect_engine};
use dci_model::{ServiceName, SessionId};

/// Which runtime runs sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Child processes of the agent.
    #[default]
    Process,
    /// Containers on a Docker engine.
    Docker,
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(RuntimeKind::Process),
            "docker" => Ok(RuntimeKind::Docker),
            other => Err(format!("expected a runtime `process` or `docker`, found {other:?}")),
        }
    }
}

/// One of the runtimes behind the `Runtime` trait (which is not object-safe).
pub enum AnyRuntime {
    /// See [`ProcessRuntime`].
    Process(ProcessRuntime),
    /// See [`DockerRuntime`].
    Docker(DockerRuntime),
}

impl Runtime for AnyRuntime {
    async fn start(&self, session: SessionId, service: &ServiceName) -> Result<String, RuntimeError> {
        match self {
            AnyRuntime::Process(r) => r.start(session, service).await,
            AnyRuntime::Docker(r) => r.start(session, service).await,
        }
    }

    async fn stop(&self, session: SessionId) -> Result<(), RuntimeError> {
        match self {
            AnyRuntime::Process(r) => r.stop(session).await,
            AnyRuntime::Docker(r) => r.stop(session).await,
        }
    }

    fn exited(&self) -> Vec<SessionId> {
        match self {
            AnyRuntime::Process(r) => r.exited(),
            AnyRuntime::Docker(r) => r.exited(),
        }
    }
}

/// A devnet's docker runtime: a private engine under
/// `$DCI_DOCKER_DIR` (default `~/.cache/dci-docker`, started if it is not
/// running; needs root), an image holding `program` (the `dci` binary) and
/// its libraries, and the default limits (1 CPU, 1 GiB, 512 pids). `agent`
/// labels the containers, so a restarted devnet removes its leftovers.
pub async fn devnet_docker(program: &Path, agent: &str) -> anyhow::Result<DockerRuntime> {
    let dir = std::env::var_os("DCI_DOCKER_DIR").map_or_else(LocalDaemon::default_dir, std::path::PathBuf::from);
    let daemon = tokio::task::spawn_blocking(move || LocalDaemon::ensure(&dir, Duration::from_secs(60)))
        .await?
        .context("starting the docker engine (install it with `cargo xtask deps`; it needs root)")?;
    let host = daemon.host();
    let docker = connect_engine(Some(&host)).await.context("connecting to the docker engine")?;
    let config = DockerConfig { host: Some(host), ..DockerConfig::default() };
    let image = dci_docker::image::build_service_image(&docker, program, &config.program, "dci-service")
        .await
        .context("building the service image from the dci binary")?;
    let runtime = DockerRuntime::connect(DockerConfig { image, ..config }, agent).await?;
    if !runtime.leftovers_removed().is_empty() {
        tracing::warn!(removed = runtime.leftovers_removed().len(), "removed containers a previous run left behind");
    }
    Ok(runtime)
}
