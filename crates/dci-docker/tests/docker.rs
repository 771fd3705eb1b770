//! The docker runtime against a real Docker engine.
//!
//! The engine is `DCI_DOCKER_HOST` when set, else a private daemon under
//! `DCI_DOCKER_DIR` (default `~/.cache/dci-docker`) that
//! [`LocalDaemon::ensure`] starts when it is not answering. The service is
//! the crate's `dci-test-service` binary, packed into an image by
//! [`build_service_image`] exactly as the `dci` binary would be.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use dci_agent::runtime::{Runtime, RuntimeError};
use dci_docker::image::build_service_image;
use dci_docker::{DockerConfig, DockerRuntime, GpuRequest, Limits, LocalDaemon, connect_engine};
use dci_model::{ServiceName, SessionId};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROGRAM: &str = "/usr/local/bin/dci";

/// The engine address, starting the private daemon if needed.
fn engine() -> Result<String> {
    if let Ok(host) = std::env::var("DCI_DOCKER_HOST") {
        return Ok(host);
    }
    let dir = std::env::var_os("DCI_DOCKER_DIR").map_or_else(LocalDaemon::default_dir, PathBuf::from);
    let daemon = LocalDaemon::ensure(&dir, Duration::from_secs(60)).context("starting the test docker engine")?;
    Ok(daemon.host())
}

/// The engine address and the test service's image, made once per test
/// binary (concurrent imports of one tag would leave untagged copies).
fn prepared() -> Result<(String, String)> {
    static PREPARED: OnceLock<Result<(String, String), String>> = OnceLock::new();
    let prepared = PREPARED.get_or_init(|| {
        // A thread of its own: a runtime cannot be started inside the tests' runtimes.
        let made = std::thread::spawn(|| -> Result<(String, String)> {
            let host = engine()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let image = rt.block_on(async {
                let docker = connect_engine(Some(&host)).await?;
                let binary = Path::new(env!("CARGO_BIN_EXE_dci-test-service"));
                anyhow::Ok(build_service_image(&docker, binary, PROGRAM, "dci-test-service").await?)
            })?;
            Ok((host, image))
        });
        made.join().map_err(|_| "preparing the engine panicked".to_owned())?.map_err(|e| format!("{e:#}"))
    });
    prepared.clone().map_err(anyhow::Error::msg)
}

/// A config running the test service, plus a unique agent id.
async fn setup() -> Result<(DockerConfig, String)> {
    let (host, image) = tokio::task::spawn_blocking(prepared).await??;
    let config = DockerConfig { host: Some(host), image, program: PROGRAM.into(), ..DockerConfig::default() };
    Ok((config, format!("test-{:016x}", rand::random::<u64>())))
}

fn echo() -> ServiceName {
    ServiceName::new("echo").unwrap()
}

fn session() -> SessionId {
    SessionId(rand::random())
}

/// `GET url+path` with a bare HTTP/1.1 request; returns status and body.
async fn get(url: &str, path: &str) -> Result<(u16, String)> {
    let addr = url.strip_prefix("http://").context("expected an http:// url")?;
    let mut stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    let (head, body) = reply.split_once("\r\n\r\n").context("expected an HTTP reply")?;
    let status = head.split_whitespace().nth(1).context("expected a status")?.parse()?;
    Ok((status, body.to_owned()))
}

/// The container's state, or `None` once it is gone.
async fn inspect(docker: &Docker, id: &str) -> Result<Option<bollard::models::ContainerInspectResponse>> {
    match docker.inspect_container(id, None).await {
        Ok(c) => Ok(Some(c)),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn containers_of(docker: &Docker, agent: &str) -> Result<Vec<String>> {
    let filters = std::collections::HashMap::from([("label".to_owned(), vec![format!("dci.agent={agent}")])]);
    let list = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
        .await?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

#[tokio::test]
async fn a_session_runs_in_a_limited_container_and_is_cleaned_up() -> Result<()> {
    let (config, agent) = setup().await?;
    let config = DockerConfig {
        env: BTreeMap::from([("DCI_GREETING".to_owned(), "hello from the host".to_owned())]),
        limits: Limits { cpu_millis: Some(500), memory_mib: Some(64), pids: Some(64) },
        ..config
    };
    let runtime = DockerRuntime::connect(config, &agent).await?;
    assert!(runtime.leftovers_removed().is_empty());
    let s = session();
    let url = runtime.start(s, &echo()).await?;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    assert_eq!(get(&url, "/health").await?, (200, "{\"ok\":true}".to_owned()));
    assert_eq!(get(&url, "/service").await?, (200, "echo".to_owned()));
    assert_eq!(get(&url, "/env/DCI_GREETING").await?, (200, "hello from the host".to_owned()));

    let id = runtime.container_id(s).context("a running session has a container")?;
    let inspected = inspect(runtime.docker(), &id).await?.context("the container exists")?;
    let host = inspected.host_config.context("host config")?;
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.memory_swap, Some(64 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.pids_limit, Some(64));
    assert_eq!(host.network_mode.as_deref(), Some("host"));
    let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get("dci.agent"), Some(&agent));
    assert_eq!(labels.get("dci.session"), Some(&s.to_string()));
    assert!(runtime.logs(s).await?.contains("echo: serving on"));

    runtime.stop(s).await?;
    assert!(inspect(runtime.docker(), &id).await?.is_none(), "stop removes the container");
    assert_eq!(runtime.running(), 0);
    runtime.stop(s).await?; // idempotent
    assert!(get(&url, "/health").await.is_err(), "the service is gone");
    assert!(runtime.exited().is_empty(), "a stopped session did not exit on its own");
    Ok(())
}

#[tokio::test]
async fn a_service_that_exits_is_reported_and_removed_and_per_session_limits_apply() -> Result<()> {
    let (config, agent) = setup().await?;
    let runtime = DockerRuntime::connect(config, &agent).await?;
    let s = session();
    let limits = Limits { cpu_millis: Some(250), memory_mib: Some(32), pids: Some(16) };
    let url = runtime.start_with(s, &echo(), limits, &GpuRequest::None).await?;
    let id = runtime.container_id(s).context("container")?;
    let host = inspect(runtime.docker(), &id).await?.and_then(|c| c.host_config).context("host config")?;
    assert_eq!((host.nano_cpus, host.memory, host.pids_limit), (Some(250_000_000), Some(32 << 20), Some(16)));
    assert_eq!(get(&url, "/exit").await?, (200, "bye".to_owned()));
    assert_eq!(runtime.wait_exited().await, vec![s]);
    assert!(inspect(runtime.docker(), &id).await?.is_none());
    assert_eq!(runtime.running(), 0);
    Ok(())
}

#[tokio::test]
async fn leftovers_of_a_crashed_agent_are_removed_at_startup() -> Result<()> {
    let (config, agent) = setup().await?;
    let crashed = DockerRuntime::connect(config.clone(), &agent).await?;
    let s1 = session();
    crashed.start(s1, &echo()).await?;
    let left = crashed.container_id(s1).context("container")?;
    let other_agent = format!("{agent}-other");
    let other = DockerRuntime::connect(config.clone(), &other_agent).await?;
    let s2 = session();
    other.start(s2, &echo()).await?;
    let kept = other.container_id(s2).context("container")?;
    // A crash: the runtime's destructor never runs.
    std::mem::forget(crashed);

    let restarted = DockerRuntime::connect(config, &agent).await?;
    assert_eq!(restarted.leftovers_removed(), std::slice::from_ref(&left));
    assert!(inspect(restarted.docker(), &left).await?.is_none());
    let running = inspect(restarted.docker(), &kept).await?.and_then(|c| c.state).and_then(|s| s.running);
    assert_eq!(running, Some(true), "another agent's container is not touched");

    // Dropping a runtime removes its containers.
    drop(other);
    assert!(inspect(restarted.docker(), &kept).await?.is_none());
    assert!(containers_of(restarted.docker(), &other_agent).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_service_that_does_not_announce_fails_with_its_output() -> Result<()> {
    let (config, agent) = setup().await?;
    let config = DockerConfig { args: vec!["not-a-command".into()], ..config };
    let runtime = DockerRuntime::connect(config, &agent).await?;
    match runtime.start(session(), &echo()).await {
        Err(RuntimeError::NoEndpoint { detail, .. }) => {
            assert!(detail.contains("usage: dci-test-service"), "{detail}");
        }
        other => bail!("expected no endpoint, found {other:?}"),
    }
    assert!(containers_of(runtime.docker(), &agent).await?.is_empty(), "the failed container is removed");
    Ok(())
}

#[tokio::test]
async fn gpu_device_requests_reach_the_engine() -> Result<()> {
    let (config, agent) = setup().await?;
    let runtime = DockerRuntime::connect(DockerConfig { gpus: GpuRequest::All, ..config }, &agent).await?;
    let s = session();
    match runtime.start(s, &echo()).await {
        // A host with the NVIDIA container toolkit runs it with the request.
        Ok(_) => {
            let id = runtime.container_id(s).context("container")?;
            let requests =
                inspect(runtime.docker(), &id).await?.and_then(|c| c.host_config).and_then(|h| h.device_requests);
            assert_eq!(requests.map(|r| r[0].driver.clone()), Some(Some("nvidia".to_owned())));
        }
        // Without it (this machine) the engine refuses, saying why.
        Err(RuntimeError::Spawn { source, .. }) => {
            assert!(source.to_string().contains("nvidia"), "{source}");
            assert!(containers_of(runtime.docker(), &agent).await?.is_empty());
        }
        Err(e) => bail!("expected a start or a refusal naming nvidia, found {e}"),
    }
    Ok(())
}

/// Set in the child process of `a_killed_agents_services_end_and_are_removed_at_restart`.
const CHILD_AGENT: &str = "DCI_DOCKER_TEST_CHILD_AGENT";

/// The agent process that gets killed: starts one session, prints its
/// container id, then waits to be killed. Does nothing when run on its own.
#[tokio::test]
#[ignore = "the killed agent of a_killed_agents_services_end_and_are_removed_at_restart"]
async fn killed_agent() -> Result<()> {
    let Ok(agent) = std::env::var(CHILD_AGENT) else { return Ok(()) };
    let (config, _) = setup().await?;
    let runtime = DockerRuntime::connect(config, &agent).await?;
    let s = session();
    runtime.start(s, &echo()).await?;
    // On its own line: libtest has printed `test killed_agent ... ` before it.
    println!("\nkilled-agent-container={}", runtime.container_id(s).context("container")?);
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test]
async fn a_killed_agents_services_end_and_are_removed_at_restart() -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let (config, agent) = setup().await?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--exact", "killed_agent", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_AGENT, &agent)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let read_id = async {
        loop {
            let line = lines.next_line().await?.context("the agent process ended before starting its session")?;
            if let Some(id) = line.strip_prefix("killed-agent-container=") {
                return anyhow::Ok(id.to_owned());
            }
        }
    };
    // A guard against a hung child, not a timing assertion.
    let id = tokio::time::timeout(Duration::from_secs(60), read_id).await.context("the agent process hung")??;
    child.start_kill()?; // SIGKILL: no destructor runs
    child.wait().await?;

    // The engine closes the container's input, the service exits by itself.
    let docker = connect_engine(config.host.as_deref()).await?;
    let waited = tokio::time::timeout(Duration::from_secs(30), docker.wait_container(&id, None).next()).await;
    assert!(matches!(waited, Ok(Some(Ok(_)))), "expected the service to exit, found {waited:?}");
    let state = inspect(&docker, &id).await?.and_then(|c| c.state).context("the stopped container is still there")?;
    assert_eq!((state.running, state.exit_code), (Some(false), Some(0)));

    let restarted = DockerRuntime::connect(config, &agent).await?;
    assert_eq!(restarted.leftovers_removed(), std::slice::from_ref(&id));
    assert!(inspect(&docker, &id).await?.is_none());
    Ok(())
}
