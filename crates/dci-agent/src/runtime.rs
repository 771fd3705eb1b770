//! Workload runtimes (R-AG2): how a session's service actually runs.
//!
//! [`Runtime`] is the boundary between the agent and the host. Its contract:
//! `start` returns only once the service accepts connections at the returned
//! endpoint, or fails with a reason; `stop` ends the workload and frees its
//! resources, and is idempotent; a runtime never outlives its workloads (they
//! are killed when the runtime is dropped).
//!
//! [`ProcessRuntime`] runs each session as a child process of the agent: the
//! embedded default. A `docker` runtime comes later behind the same trait.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use dci_model::{ServiceName, SessionId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Why a workload could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The program could not be spawned.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// What was run.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The service did not announce its endpoint in time or said something else.
    #[error("service {service} did not report `listening on <url>` within {secs} s: {detail}")]
    NoEndpoint {
        /// The service.
        service: ServiceName,
        /// Wait limit.
        secs: u64,
        /// What happened instead.
        detail: String,
    },
    /// Stop failed.
    #[error("cannot stop session {session}: {detail}")]
    Stop {
        /// The session.
        session: SessionId,
        /// What happened.
        detail: String,
    },
}

/// A workload runtime. See the module docs for the contract.
pub trait Runtime: Send + Sync + 'static {
    /// Starts `service` for `session`; resolves to the service's URL.
    fn start(
        &self,
        session: SessionId,
        service: &ServiceName,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    /// Stops the session's workload (no-op if it is not running).
    fn stop(&self, session: SessionId) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Sessions whose workload exited on its own since the last call.
    fn exited(&self) -> Vec<SessionId>;
}

/// Runs each session as a child process: `<program> <args…> service <name> --listen 127.0.0.1:0 --exit-with-stdin`, with a pipe as its standard input.
/// The child must print `listening on <url>` as its first line of stdout.
pub struct ProcessRuntime {
    program: PathBuf,
    args: Vec<String>,
    start_timeout: Duration,
    children: Mutex<HashMap<SessionId, Child>>,
}

impl ProcessRuntime {
    /// A runtime that starts services with `program args…`.
    pub fn new(program: PathBuf, args: Vec<String>) -> Self {
        ProcessRuntime { program, args, start_timeout: Duration::from_secs(20), children: Mutex::new(HashMap::new()) }
    }

    /// Number of live children.
    pub fn running(&self) -> usize {
        self.children.lock().expect("runtime lock").len()
    }
}

impl Runtime for ProcessRuntime {
    async fn start(&self, session: SessionId, service: &ServiceName) -> Result<String, RuntimeError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .args(["service", service.as_str(), "--listen", "127.0.0.1:0", "--exit-with-stdin"])
            // The pipe stays open while this process lives (the handle is
            // kept with the child); when the agent dies, even by SIGKILL, the
            // service sees end of input and exits instead of lingering.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| RuntimeError::Spawn { program: self.program.display().to_string(), source })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let no_endpoint = |detail: String| RuntimeError::NoEndpoint {
            service: service.clone(),
            secs: self.start_timeout.as_secs(),
            detail,
        };
        let first = match tokio::time::timeout(self.start_timeout, lines.next_line()).await {
            Err(_) => Err(no_endpoint("timed out".into())),
            Ok(Err(e)) => Err(no_endpoint(e.to_string())),
            Ok(Ok(None)) => Err(no_endpoint("the process closed its output".into())),
            Ok(Ok(Some(line))) => line
                .strip_prefix("listening on ")
                .map(|u| u.trim().to_owned())
                .ok_or_else(|| no_endpoint(format!("first line was {line:?}"))),
        };
        let url = match first {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill().await;
                return Err(e);
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.children.lock().expect("runtime lock").insert(session, child);
        Ok(url)
    }

    async fn stop(&self, session: SessionId) -> Result<(), RuntimeError> {
        let child = self.children.lock().expect("runtime lock").remove(&session);
        if let Some(mut child) = child {
            child.kill().await.map_err(|e| RuntimeError::Stop { session, detail: e.to_string() })?;
        }
        Ok(())
    }

    fn exited(&self) -> Vec<SessionId> {
        let mut children = self.children.lock().expect("runtime lock");
        let gone: Vec<SessionId> =
            children.iter_mut().filter_map(|(s, c)| (!matches!(c.try_wait(), Ok(None))).then_some(*s)).collect();
        for s in &gone {
            children.remove(s);
        }
        gone
    }
}
