//! What the docker runtime runs and with which limits.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use dci_model::{ServiceName, SessionId};
use serde::{Deserialize, Serialize};

/// Label carrying the agent id; leftovers are found by it.
pub const LABEL_AGENT: &str = "dci.agent";
/// Label carrying the session id (hex).
pub const LABEL_SESSION: &str = "dci.session";
/// Label carrying the service name.
pub const LABEL_SERVICE: &str = "dci.service";

/// The docker runtime's configuration (the agent's `[runtime.docker]`
/// table). Every field has a default that works on a devnet host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Engine address: `unix:///path/to/docker.sock`; `None` means the
    /// client default (`DOCKER_HOST`, else `/var/run/docker.sock`).
    pub host: Option<String>,
    /// Image the services run in, e.g. one made by
    /// [`crate::image::build_service_image`].
    pub image: String,
    /// Program inside the image.
    pub program: String,
    /// Arguments before `service <name> --listen 127.0.0.1:0`.
    pub args: Vec<String>,
    /// Environment of the service, `KEY` → value.
    pub env: BTreeMap<String, String>,
    /// Bind mounts in the engine's `host-path:container-path[:ro]` form
    /// (e.g. the model store for model services).
    pub mounts: Vec<String>,
    /// Pass `--exit-with-stdin` and keep the container's standard input
    /// attached: when the agent dies (even by SIGKILL) the engine closes it
    /// and the service exits, freeing its CPU, memory and GPUs at once; the
    /// stopped container is removed when the agent starts again. Turn off
    /// for programs without that flag.
    pub exit_with_stdin: bool,
    /// Resource limits of each session's container.
    pub limits: Limits,
    /// GPUs given to each container.
    pub gpus: GpuRequest,
    /// How long a service may take to print `listening on <url>`, seconds.
    pub start_timeout_secs: u64,
    /// How long `stop` lets a service end on SIGTERM before SIGKILL, seconds.
    pub stop_grace_secs: u64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: None,
            image: "dci-service:latest".into(),
            program: "/usr/local/bin/dci".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            mounts: Vec::new(),
            exit_with_stdin: true,
            limits: Limits::default(),
            gpus: GpuRequest::None,
            start_timeout_secs: 20,
            stop_grace_secs: 2,
        }
    }
}

/// Resource limits enforced by the engine (cgroups). `None` = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU time in thousandths of a core (1500 = 1.5 cores).
    pub cpu_millis: Option<u64>,
    /// Memory in MiB; swap is not allowed beyond it.
    pub memory_mib: Option<u64>,
    /// Maximum number of processes and threads.
    pub pids: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { cpu_millis: Some(1000), memory_mib: Some(1024), pids: Some(512) }
    }
}

/// Which GPUs a container gets (NVIDIA container toolkit device requests).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum GpuRequest {
    /// No GPU (CPU-only hosts).
    None,
    /// Every GPU of the host.
    All,
    /// These GPUs, by index or UUID.
    Devices(Vec<String>),
}

impl GpuRequest {
    /// The engine's device requests for this choice.
    pub fn device_requests(&self) -> Option<Vec<DeviceRequest>> {
        let nvidia = |count, device_ids| DeviceRequest {
            driver: Some("nvidia".into()),
            count,
            device_ids,
            capabilities: Some(vec![vec!["gpu".into()]]),
            options: None,
        };
        match self {
            GpuRequest::None => None,
            GpuRequest::All => Some(vec![nvidia(Some(-1), None)]),
            GpuRequest::Devices(ids) => Some(vec![nvidia(None, Some(ids.clone()))]),
        }
    }
}

/// The create request for one session's container: the configured image,
/// command and environment, host networking (the service binds 127.0.0.1 on
/// the host's loopback and announces its port), `limits` and `gpus`, and
/// labels that find it again after a crash.
pub fn container_body(
    config: &DockerConfig,
    agent: &str,
    session: SessionId,
    service: &ServiceName,
    limits: Limits,
    gpus: &GpuRequest,
) -> ContainerCreateBody {
    let mut cmd = vec![config.program.clone()];
    cmd.extend(config.args.iter().cloned());
    cmd.extend(["service".into(), service.as_str().into(), "--listen".into(), "127.0.0.1:0".into()]);
    if config.exit_with_stdin {
        cmd.push("--exit-with-stdin".into());
    }
    let labels = HashMap::from([
        (LABEL_AGENT.to_owned(), agent.to_owned()),
        (LABEL_SESSION.to_owned(), session.to_string()),
        (LABEL_SERVICE.to_owned(), service.as_str().to_owned()),
    ]);
    let memory = limits.memory_mib.map(|m| i64::try_from(m.saturating_mul(1 << 20)).unwrap_or(i64::MAX));
    ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: Some(cmd),
        entrypoint: Some(Vec::new()),
        env: Some(config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        attach_stdin: Some(config.exit_with_stdin),
        open_stdin: Some(config.exit_with_stdin),
        stdin_once: Some(config.exit_with_stdin),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            binds: (!config.mounts.is_empty()).then(|| config.mounts.clone()),
            nano_cpus: limits.cpu_millis.map(|m| i64::try_from(m.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
            memory,
            memory_swap: memory,
            pids_limit: limits.pids.map(i64::from),
            device_requests: gpus.device_requests(),
            init: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        limits: Limits,
        gpus: GpuRequest,
        expect: (Option<i64>, Option<i64>, Option<i64>, Option<Vec<DeviceRequest>>),
    ) {
        let config = DockerConfig::default();
        let body = container_body(&config, "a1", SessionId([7; 16]), &ServiceName::new("echo").unwrap(), limits, &gpus);
        let host = body.host_config.unwrap();
        assert_eq!((host.nano_cpus, host.memory, host.pids_limit, host.device_requests), expect);
        assert_eq!(host.memory_swap, host.memory, "no swap beyond the memory limit");
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        let cmd = body.cmd.unwrap();
        assert_eq!(cmd[1..], ["service", "echo", "--listen", "127.0.0.1:0", "--exit-with-stdin"]);
        assert_eq!((body.open_stdin, body.stdin_once), (Some(true), Some(true)));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_AGENT], "a1");
        assert_eq!(labels[LABEL_SESSION], SessionId([7; 16]).to_string());
    }

    #[test]
    fn the_config_reads_from_toml() {
        let config: DockerConfig = toml::from_str(
            r#"
            host = "unix:///run/docker.sock"
            image = "dci-service:0123"
            env = { RUST_LOG = "info" }
            mounts = ["/var/lib/dci/models:/models:ro"]
            gpus = { devices = ["0", "GPU-1234"] }
            limits = { cpu_millis = 4000, memory_mib = 16384 }
            "#,
        )
        .unwrap();
        assert_eq!(config.host.as_deref(), Some("unix:///run/docker.sock"));
        assert_eq!(config.gpus, GpuRequest::Devices(vec!["0".into(), "GPU-1234".into()]));
        assert_eq!(config.limits, Limits { cpu_millis: Some(4000), memory_mib: Some(16384), pids: Some(512) });
        assert_eq!(config.program, DockerConfig::default().program);
        assert_eq!(toml::from_str::<DockerConfig>("gpus = \"all\"").unwrap().gpus, GpuRequest::All);
        assert_eq!(toml::from_str::<DockerConfig>("").unwrap(), DockerConfig::default());
        let typo = toml::from_str::<DockerConfig>("imgae = \"x\"").unwrap_err().to_string();
        assert!(typo.contains("unknown field `imgae`"), "{typo}");
    }

    #[test]
    fn limits_and_gpus_become_engine_fields() {
        let gpu = |count, ids: Option<Vec<&str>>| DeviceRequest {
            driver: Some("nvidia".into()),
            count,
            device_ids: ids.map(|v| v.into_iter().map(String::from).collect()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            options: None,
        };
        let full = Limits { cpu_millis: Some(1500), memory_mib: Some(64), pids: Some(32) };
        check(full, GpuRequest::None, (Some(1_500_000_000), Some(64 << 20), Some(32), None));
        check(
            Limits { cpu_millis: None, memory_mib: None, pids: None },
            GpuRequest::All,
            (None, None, None, Some(vec![gpu(Some(-1), None)])),
        );
        check(
            full,
            GpuRequest::Devices(vec!["0".into(), "GPU-1234".into()]),
            (Some(1_500_000_000), Some(64 << 20), Some(32), Some(vec![gpu(None, Some(vec!["0", "GPU-1234"]))])),
        );
    }
}
