//! [`DockerRuntime`]: one container per session, through the Docker Engine API.

use std::collections::HashMap;
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::AttachContainerResults;
use bollard::query_parameters::{
    AttachContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, ClientVersion, Docker};
use dci_agent::runtime::{Runtime, RuntimeError};
use dci_model::{ServiceName, SessionId};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::config::{DockerConfig, GpuRequest, LABEL_AGENT, Limits, container_body};

/// Why the engine could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No client could be made for the configured address.
    #[error("cannot reach the docker engine at {host}: {source}")]
    Connect {
        /// The address (`default` for the client default).
        host: String,
        /// The client's error.
        source: bollard::errors::Error,
    },
    /// The engine refused a request.
    #[error("docker engine refused to {action}: {source}")]
    Engine {
        /// What was asked.
        action: String,
        /// The engine's error.
        source: bollard::errors::Error,
    },
    /// No container runs for this session.
    #[error("expected a running container for session {0}, found none")]
    NoSession(SessionId),
}

/// Runs each session as a Docker container of [`DockerConfig::image`]:
/// `<program> <args…> service <name> --listen 127.0.0.1:0` on the host's
/// network, with the configured CPU, memory and pids limits and GPU device
/// requests. The URL is the `listening on <url>` line the service prints
/// first on its standard output, read from the container's log.
///
/// A runtime never outlives its workloads: dropping it removes its
/// containers; if the agent dies instead (even by SIGKILL), the container's
/// standard input, which the runtime keeps attached, is closed by the engine
/// and the service (started with `--exit-with-stdin`) exits at once, freeing
/// its CPU, memory and GPUs. Every container carries the label
/// `dci.agent=<agent id>`, and [`connect`] removes what an earlier instance
/// with the same agent id left behind. A container whose service exits on
/// its own is removed and reported by [`Runtime::exited`].
///
/// Networking is the host's: no port mapping is needed (the engine runs with
/// `--bridge=none` on development hosts), and the service is reachable at
/// the loopback URL it announces.
///
/// [`connect`]: DockerRuntime::connect
pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
    agent: String,
    leftovers: Vec<String>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Live sessions.
    running: Mutex<HashMap<SessionId, Workload>>,
    /// Sessions that ended on their own, not yet reported.
    exited: Mutex<Vec<SessionId>>,
    /// Woken when `exited` grows.
    notify: Notify,
}

/// A live session's container.
struct Workload {
    /// The container id.
    id: String,
    /// The attached standard input (with [`DockerConfig::exit_with_stdin`]):
    /// held open while this process lives; when it dies the engine closes the
    /// container's input and the service exits.
    _stdin: Option<AttachContainerResults>,
}

impl DockerRuntime {
    /// Connects to the engine of `config.host`, negotiates the API version and
    /// removes the containers labelled with `agent` that are left over.
    pub async fn connect(config: DockerConfig, agent: &str) -> Result<DockerRuntime, DockerError> {
        let docker = connect_engine(config.host.as_deref()).await?;
        let leftovers = remove_leftovers(&docker, agent).await?;
        if !leftovers.is_empty() {
            tracing::warn!(agent, count = leftovers.len(), "removed containers left over by an earlier agent");
        }
        Ok(DockerRuntime { docker, config, agent: agent.to_owned(), leftovers, shared: Arc::default() })
    }

    /// The engine client (for inspection by the operator's tools and tests).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The ids of the leftover containers [`DockerRuntime::connect`] removed.
    pub fn leftovers_removed(&self) -> &[String] {
        &self.leftovers
    }

    /// The id of the container running `session`.
    pub fn container_id(&self, session: SessionId) -> Option<String> {
        self.shared.running.lock().expect("runtime lock").get(&session).map(|w| w.id.clone())
    }

    /// Number of live sessions.
    pub fn running(&self) -> usize {
        self.shared.running.lock().expect("runtime lock").len()
    }

    /// What the session's service wrote so far (stdout and stderr, merged).
    pub async fn logs(&self, session: SessionId) -> Result<String, DockerError> {
        let id = self.container_id(session).ok_or(DockerError::NoSession(session))?;
        read_logs(&self.docker, &id)
            .await
            .map_err(|source| DockerError::Engine { action: format!("read the logs of container {id}"), source })
    }

    /// Waits until at least one session has ended on its own and returns
    /// them (as [`Runtime::exited`] does).
    pub async fn wait_exited(&self) -> Vec<SessionId> {
        loop {
            let mut notified = pin!(self.shared.notify.notified());
            notified.as_mut().enable();
            let gone = self.exited();
            if !gone.is_empty() {
                return gone;
            }
            notified.await;
        }
    }

    /// Starts `service` for `session` with these limits and GPUs instead of
    /// the configured ones (for sessions that bought a share of the host);
    /// otherwise as [`Runtime::start`].
    pub async fn start_with(
        &self,
        session: SessionId,
        service: &ServiceName,
        limits: Limits,
        gpus: &GpuRequest,
    ) -> Result<String, RuntimeError> {
        let (workload, url) = self.start_container(session, service, limits, gpus).await?;
        let id = workload.id.clone();
        let previous = self.shared.running.lock().expect("runtime lock").insert(session, workload);
        if let Some(old) = previous {
            remove(&self.docker, &old.id).await;
        }
        self.watch(session, id);
        Ok(url)
    }

    /// Creates, attaches and starts the container; returns it and the service's URL.
    async fn start_container(
        &self,
        session: SessionId,
        service: &ServiceName,
        limits: Limits,
        gpus: &GpuRequest,
    ) -> Result<(Workload, String), RuntimeError> {
        let spawn = |detail: String| RuntimeError::Spawn {
            program: format!("{} in image {}", self.config.program, self.config.image),
            source: io::Error::other(detail),
        };
        let body = container_body(&self.config, &self.agent, session, service, limits, gpus);
        let id = self
            .docker
            .create_container(None, body)
            .await
            .map_err(|e| spawn(format!("docker engine refused to create the container: {e}")))?
            .id;
        let stdin = if self.config.exit_with_stdin {
            let options = AttachContainerOptions { stdin: true, stream: true, ..Default::default() };
            match self.docker.attach_container(&id, Some(options)).await {
                Ok(attached) => Some(attached),
                Err(e) => {
                    remove(&self.docker, &id).await;
                    return Err(spawn(format!("docker engine refused to attach to container {id}: {e}")));
                }
            }
        } else {
            None
        };
        if let Err(e) = self.docker.start_container(&id, None).await {
            remove(&self.docker, &id).await;
            return Err(spawn(format!("docker engine refused to start container {id}: {e}")));
        }
        let timeout = Duration::from_secs(self.config.start_timeout_secs);
        let no_endpoint =
            |detail: String| RuntimeError::NoEndpoint { service: service.clone(), secs: timeout.as_secs(), detail };
        let first = match tokio::time::timeout(timeout, first_stdout_line(&self.docker, &id)).await {
            Err(_) => Err("timed out".to_owned()),
            Ok(Err(e)) => Err(e),
            Ok(Ok(line)) => line
                .strip_prefix("listening on ")
                .map(|u| u.trim().to_owned())
                .ok_or_else(|| format!("first line was {line:?}")),
        };
        match first {
            Ok(url) => Ok((Workload { id, _stdin: stdin }, url)),
            Err(detail) => {
                let output = read_logs(&self.docker, &id).await.unwrap_or_default();
                remove(&self.docker, &id).await;
                Err(no_endpoint(format!("{detail}; container output:\n{}", last_lines(&output, 20))))
            }
        }
    }

    fn watch(&self, session: SessionId, id: String) {
        let docker = self.docker.clone();
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            // Ends when the container stops (or the engine goes away).
            let code = match docker.wait_container(&id, None).next().await {
                Some(Ok(r)) => r.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                _ => -1,
            };
            let Some(shared) = shared.upgrade() else { return };
            let ours = {
                let mut running = shared.running.lock().expect("runtime lock");
                let ours = running.get(&session).is_some_and(|w| w.id == id);
                if ours {
                    running.remove(&session);
                }
                ours
            };
            // Not ours: `stop` took it out and removes it.
            if ours {
                let output = read_logs(&docker, &id).await.unwrap_or_default();
                tracing::warn!(session = %session.short(), container = %id, code, output = %last_lines(&output, 20), "service exited");
                remove(&docker, &id).await;
                shared.exited.lock().expect("runtime lock").push(session);
                shared.notify.notify_waiters();
            }
        });
    }
}

impl Runtime for DockerRuntime {
    /// Starts with the configured [`DockerConfig::limits`] and [`DockerConfig::gpus`].
    async fn start(&self, session: SessionId, service: &ServiceName) -> Result<String, RuntimeError> {
        self.start_with(session, service, self.config.limits, &self.config.gpus).await
    }

    async fn stop(&self, session: SessionId) -> Result<(), RuntimeError> {
        let workload = self.shared.running.lock().expect("runtime lock").remove(&session);
        let Some(Workload { id, _stdin: stdin }) = workload else { return Ok(()) };
        // Closing its input asks a service started with `--exit-with-stdin`
        // to exit now; SIGTERM follows, then SIGKILL after the grace period.
        drop(stdin);
        let grace = i32::try_from(self.config.stop_grace_secs).unwrap_or(i32::MAX);
        // 304 (already stopped) and 404 (already gone) are fine: stopping is idempotent.
        match self.docker.stop_container(&id, Some(StopContainerOptions { t: Some(grace), signal: None })).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => {}
            Err(e) => return Err(RuntimeError::Stop { session, detail: format!("container {id}: {e}") }),
        }
        match self
            .docker
            .remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() }))
            .await
        {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(RuntimeError::Stop { session, detail: format!("container {id}: {e}") }),
        }
    }

    fn exited(&self) -> Vec<SessionId> {
        std::mem::take(&mut *self.shared.exited.lock().expect("runtime lock"))
    }
}

impl Drop for DockerRuntime {
    /// Removes every container of this runtime. The engine API is async and
    /// `drop` is not, so a short-lived thread with its own client does it.
    fn drop(&mut self) {
        let ids: Vec<String> =
            self.shared.running.lock().map(|mut r| r.drain().map(|(_, w)| w.id).collect()).unwrap_or_default();
        if ids.is_empty() {
            return;
        }
        let host = self.config.host.clone();
        let version = self.docker.client_version();
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let Ok(docker) = connect(host.as_deref(), &version) else { return };
                for id in ids {
                    remove(&docker, &id).await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A client for the engine at `host` (`unix://…`, a socket path,
/// `tcp://…`/`http://…`, or `None` for `DOCKER_HOST`, else
/// `/var/run/docker.sock`), speaking the API version the engine supports.
pub async fn connect_engine(host: Option<&str>) -> Result<Docker, DockerError> {
    connect(host, API_DEFAULT_VERSION)?
        .negotiate_version()
        .await
        .map_err(|source| DockerError::Connect { host: host.unwrap_or("default").to_owned(), source })
}

/// A client for `host` (see [`connect_engine`]) speaking `version`, without asking the engine.
fn connect(host: Option<&str>, version: &ClientVersion) -> Result<Docker, DockerError> {
    const TIMEOUT_SECS: u64 = 120;
    let result = match host {
        None => Docker::connect_with_local_defaults(),
        Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
            Docker::connect_with_http(h, TIMEOUT_SECS, version)
        }
        Some(h) => Docker::connect_with_unix(h, TIMEOUT_SECS, version),
    };
    result.map_err(|source| DockerError::Connect { host: host.unwrap_or("default").to_owned(), source })
}

/// Force-removes the containers labelled `dci.agent=<agent>`; returns their ids.
pub async fn remove_leftovers(docker: &Docker, agent: &str) -> Result<Vec<String>, DockerError> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_AGENT}={agent}")])]);
    let list = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
        .await
        .map_err(|source| DockerError::Engine { action: format!("list the containers of agent {agent}"), source })?;
    let mut removed = Vec::new();
    for id in list.into_iter().filter_map(|c| c.id) {
        match docker.remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                removed.push(id)
            }
            Err(source) => {
                return Err(DockerError::Engine { action: format!("remove leftover container {id}"), source });
            }
        }
    }
    Ok(removed)
}

/// Force-removes a container, logging (not returning) failures: used on
/// paths that already report another error or cannot report at all.
async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions { force: true, ..Default::default() };
    match docker.remove_container(id, Some(options)).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(e) => tracing::warn!(container = id, error = %e, "cannot remove container"),
    }
}

/// The container's first line of standard output, following the log until
/// it arrives; an error when the container ends first.
async fn first_stdout_line(docker: &Docker, id: &str) -> Result<String, String> {
    let options = LogsOptions { follow: true, stdout: true, stderr: false, tail: "all".into(), ..Default::default() };
    let mut stream = docker.logs(id, Some(options));
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("cannot read the container's output: {e}"))?;
        buf.extend_from_slice(&chunk.into_bytes());
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            return Ok(String::from_utf8_lossy(&buf[..end]).trim_end_matches('\r').to_owned());
        }
    }
    Err(if buf.is_empty() {
        "the container exited without output".to_owned()
    } else {
        format!("the container exited after printing {:?} without a newline", String::from_utf8_lossy(&buf))
    })
}

/// Everything the container wrote so far (stdout and stderr merged).
async fn read_logs(docker: &Docker, id: &str) -> Result<String, bollard::errors::Error> {
    let options = LogsOptions { follow: false, stdout: true, stderr: true, tail: "all".into(), ..Default::default() };
    let mut stream = docker.logs(id, Some(options));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?.into_bytes());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
