//! Workload runtimes (R-AG2): how a session's service actually runs.
//!
//! [`Runtime`] is the boundary between the agent and the host. Its contract:
//! `start` returns only once the service accepts connections at the returned
//! endpoint, or fails with a reason; `stop` ends the workload and frees its
//! resources, and is idempotent; a runtime never outlives its workloads (they
//! are killed when the runtime is dropped).
//!
//! [`ProcessRuntime`] runs each session as a child process of the agent: the
//! embedded default. The `docker` runtime (`dci-docker`) implements the same
//! trait. [`Warm`] wraps any runtime and keeps one started instance of each
//! pre-installed service ready (R-AG3), so a session, or a failover to this
//! container, starts without waiting for the service to boot.

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

/// Keeps one started instance of each pre-installed service ready (R-AG3):
/// `start` hands a ready instance to the session at once and [`Warm::refill`]
/// (called periodically by the host) starts the next one. Each instance
/// still serves exactly one session; a warm instance that exits is replaced.
pub struct Warm<R> {
    inner: R,
    services: Vec<ServiceName>,
    state: Mutex<WarmState>,
}

#[derive(Default)]
struct WarmState {
    /// A started, unassigned instance per service: its own id and endpoint.
    ready: HashMap<ServiceName, (SessionId, String)>,
    /// Services whose next instance is being started.
    starting: std::collections::HashSet<ServiceName>,
    /// Sessions served by a warm instance: session → the instance's id.
    given: HashMap<SessionId, SessionId>,
    next: u64,
}

/// The id a warm instance runs under until a session takes it: a fixed
/// prefix no random session id is expected to have, and a counter.
fn warm_id(n: u64) -> SessionId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(b"dci-warm");
    id[8..].copy_from_slice(&n.to_be_bytes());
    SessionId(id)
}

impl<R: Runtime> Warm<R> {
    /// Keeps `services` warm on `inner`.
    pub fn new(inner: R, services: Vec<ServiceName>) -> Self {
        Warm { inner, services, state: Mutex::new(WarmState::default()) }
    }

    /// Starts an instance of every service that has none ready.
    pub async fn refill(&self) {
        let todo: Vec<(ServiceName, SessionId)> = {
            let mut st = self.state.lock().expect("warm lock");
            let missing: Vec<ServiceName> = self
                .services
                .iter()
                .filter(|s| !st.ready.contains_key(*s) && !st.starting.contains(*s))
                .cloned()
                .collect();
            missing
                .into_iter()
                .map(|s| {
                    st.starting.insert(s.clone());
                    st.next += 1;
                    (s, warm_id(st.next))
                })
                .collect()
        };
        for (service, id) in todo {
            let started = self.inner.start(id, &service).await;
            let mut st = self.state.lock().expect("warm lock");
            st.starting.remove(&service);
            match started {
                Ok(endpoint) => {
                    st.ready.insert(service, (id, endpoint));
                }
                Err(e) => tracing::warn!(%service, error = %e, "could not start a warm instance"),
            }
        }
    }

    /// The services with an instance ready now.
    pub fn warm(&self) -> Vec<ServiceName> {
        let st = self.state.lock().expect("warm lock");
        let mut v: Vec<ServiceName> = st.ready.keys().cloned().collect();
        v.sort();
        v
    }

    /// The runtime it wraps.
    pub fn inner(&self) -> &R {
        &self.inner
    }
}

impl<R: Runtime> Runtime for Warm<R> {
    async fn start(&self, session: SessionId, service: &ServiceName) -> Result<String, RuntimeError> {
        let taken = {
            let mut st = self.state.lock().expect("warm lock");
            let taken = st.ready.remove(service);
            if let Some((id, _)) = &taken {
                st.given.insert(session, *id);
            }
            taken
        };
        match taken {
            Some((_, endpoint)) => Ok(endpoint),
            None => self.inner.start(session, service).await,
        }
    }

    async fn stop(&self, session: SessionId) -> Result<(), RuntimeError> {
        let id = self.state.lock().expect("warm lock").given.remove(&session).unwrap_or(session);
        self.inner.stop(id).await
    }

    fn exited(&self) -> Vec<SessionId> {
        let gone = self.inner.exited();
        let mut st = self.state.lock().expect("warm lock");
        let mut sessions = Vec::new();
        for id in gone {
            if let Some(service) = st.ready.iter().find(|(_, (w, _))| *w == id).map(|(s, _)| s.clone()) {
                // An unassigned instance died: the next refill replaces it.
                st.ready.remove(&service);
                continue;
            }
            match st.given.iter().find(|(_, w)| **w == id).map(|(s, _)| *s) {
                Some(session) => {
                    st.given.remove(&session);
                    sessions.push(session);
                }
                None => sessions.push(id),
            }
        }
        sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime whose instances are entries in a list; `kill` makes one exit.
    #[derive(Default)]
    struct Instances {
        running: Mutex<Vec<SessionId>>,
        exited: Mutex<Vec<SessionId>>,
        starts: Mutex<u32>,
    }

    impl Runtime for Instances {
        async fn start(&self, session: SessionId, service: &ServiceName) -> Result<String, RuntimeError> {
            *self.starts.lock().unwrap() += 1;
            self.running.lock().unwrap().push(session);
            Ok(format!("http://{service}/{}", session))
        }
        async fn stop(&self, session: SessionId) -> Result<(), RuntimeError> {
            self.running.lock().unwrap().retain(|s| *s != session);
            Ok(())
        }
        fn exited(&self) -> Vec<SessionId> {
            std::mem::take(&mut *self.exited.lock().unwrap())
        }
    }

    impl Instances {
        fn kill(&self, id: SessionId) {
            self.running.lock().unwrap().retain(|s| *s != id);
            self.exited.lock().unwrap().push(id);
        }
    }

    #[tokio::test]
    async fn a_session_takes_the_warm_instance_and_the_next_one_is_started() {
        let render = ServiceName::new("render").unwrap();
        let warm = Warm::new(Instances::default(), vec![render.clone()]);
        warm.refill().await;
        assert_eq!(warm.warm(), vec![render.clone()]);
        let ready_endpoint = warm.state.lock().unwrap().ready[&render].1.clone();
        let s = SessionId([1; 16]);
        // Taken at once: no new start.
        assert_eq!(warm.start(s, &render).await.unwrap(), ready_endpoint);
        assert_eq!(*warm.inner().starts.lock().unwrap(), 1);
        assert!(warm.warm().is_empty());
        warm.refill().await;
        assert_eq!(warm.warm(), vec![render.clone()]);
        // Stopping the session stops the instance it was given.
        let given = warm.state.lock().unwrap().given[&s];
        warm.stop(s).await.unwrap();
        assert!(!warm.inner().running.lock().unwrap().contains(&given));
        assert_eq!(warm.inner().running.lock().unwrap().len(), 1, "the new warm instance still runs");
    }

    #[tokio::test]
    async fn exits_are_reported_as_sessions_and_dead_warm_instances_are_replaced() {
        let render = ServiceName::new("render").unwrap();
        let warm = Warm::new(Instances::default(), vec![render.clone()]);
        warm.refill().await;
        let s = SessionId([2; 16]);
        warm.start(s, &render).await.unwrap();
        let given = warm.state.lock().unwrap().given[&s];
        warm.refill().await;
        let spare = warm.state.lock().unwrap().ready[&render].0;
        warm.inner().kill(given);
        warm.inner().kill(spare);
        // The session's instance exiting is the session's exit; the spare's is nobody's.
        assert_eq!(warm.exited(), vec![s]);
        assert!(warm.warm().is_empty());
        warm.refill().await;
        assert_eq!(warm.warm(), vec![render]);
        // A session started without a warm instance keeps its own id.
        let cold = SessionId([3; 16]);
        let other = ServiceName::new("other").unwrap();
        warm.start(cold, &other).await.unwrap();
        warm.inner().kill(cold);
        assert_eq!(warm.exited(), vec![cold]);
    }
}
