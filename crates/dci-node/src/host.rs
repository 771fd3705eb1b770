//! `dci container run`: one container host as its own process, what a GPU
//! provider runs on each machine (SPEC §5), and the operator's control of it
//! (R-AG5: `dci container maintenance|price|status`).
//!
//! A host reads its data directory: `container.toml` (what it offers: the
//! pre-installed services it keeps warm, price, slots, runtime, location,
//! optionally a simulated GPU profile for development; [`HostConfig`],
//! `dci container run --print-example`), `container.key` (its node
//! identity, created 0600 on first start) and the network file it joins
//! ([`crate::network`]: it registers with the first indexer and trusts the
//! listed indexers, gateways and checkers; `dci devnet` writes one in its
//! data directory). It re-reads the network file when it changes. A host
//! behind NAT (`reach = "relay"`) dials the relay of the first gateway that
//! lists one, registers the relay's public address, and exposes each
//! service through it ([`crate::reach`]). The
//! spec comes from the hardware probe (`dci-probe`): a real GPU through
//! NVML, else CPU capacity only; a simulated profile is always labelled so.
//! `dci devnet` runs each of its containers through [`run`] too, each with
//! its own data directory.
//!
//! The operator talks to a running host over `control.sock` in its data
//! directory (a Unix socket, 0600: whoever may read the node key may steer
//! the host): one JSON [`ControlRequest`] per line, one [`ControlReply`] back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dci_agent::runtime::Warm;
use dci_agent::{AgentConfig, AgentStatus, OperatorCommand};
use dci_model::{AccountId, ContainerSpec, GeoPoint, PricePerHour, ServiceName};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::network::{Network, resolve};
use crate::reach::{Exposed, Reach};
use crate::roles::{AgentControl, RoleHandle, spawn_agent_controlled};
use crate::runtime::{AnyRuntime, RuntimeKind};
use dci_proto::NetworkId;

/// The host's config file in its data directory.
pub const CONTAINER_FILE: &str = "container.toml";
/// The host's key file in its data directory.
pub const KEY_FILE: &str = "container.key";
/// The operator's control socket in the host's data directory.
pub const CONTROL_SOCKET: &str = "control.sock";

fn default_listen() -> String {
    "127.0.0.1:0".to_owned()
}
fn default_slots() -> u32 {
    1
}
fn default_bandwidth() -> u32 {
    1000
}

/// How other machines reach this host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReachMode {
    /// At its `listen` address: others can dial it.
    #[default]
    Direct,
    /// Through the gateway's relay: the host dials out to it (behind NAT).
    Relay,
}

impl ReachMode {
    fn is_direct(&self) -> bool {
        *self == ReachMode::Direct
    }
}

/// A latitude/longitude pair in degrees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Degrees north.
    pub lat: f64,
    /// Degrees east.
    pub lon: f64,
}

/// What a host offers (`container.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The network file to join (relative paths are from the data directory).
    pub network: PathBuf,
    /// Where it listens for node messages.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `direct` (default: others dial `listen`) or `relay` (behind NAT: the
    /// host dials the relay of the first gateway that lists one and is
    /// reached through it).
    #[serde(default, skip_serializing_if = "ReachMode::is_direct")]
    pub reach: ReachMode,
    /// Pre-installed services, kept warm (R-AG3): built-in ones (`render`)
    /// or catalogue models (`all-minilm-l6-v2`, whose weights are fetched
    /// and verified at start so a session never waits for them).
    pub services: Vec<String>,
    /// ATH per slot-hour, e.g. "1.5".
    pub price: String,
    /// Concurrent sessions.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// `process` or `docker`.
    #[serde(default)]
    pub runtime: String,
    /// Where the host is.
    pub location: Location,
    /// Upload bandwidth offered, Mbit/s.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_up_mbps: u32,
    /// Download bandwidth offered, Mbit/s.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_down_mbps: u32,
    /// Account for earnings (default: the container's own, `node:<id>`).
    #[serde(default)]
    pub payout: Option<String>,
    /// Development only: offer simulated GPUs (always labelled simulated).
    #[serde(default)]
    pub simulated_gpu: Option<dci_probe::SimulatedProfile>,
    /// Development only: play capacity challenges dishonestly, to watch the
    /// checkers catch it (`wrong-product`, `replay`,
    /// `change-rows-after-commit`, `dark`; `dci devnet --dishonest` sets it).
    /// Absent: honest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<String>,
    /// The chain's endpoint registry: its staked, signed checkers and
    /// indexers are merged into the network file and followed
    /// ([`crate::membership`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::membership::ChainSection>,
}

/// A commented `container.toml`: every key, its meaning and its default
/// (`dci container run --print-example`).
pub const EXAMPLE: &str = r#"# <data-dir>/container.toml of `dci container run`. Relative paths are from the
# data directory; its key is <data-dir>/container.key (created 0600 if missing).

# The network file it joins (required): it registers with the first indexer and
# trusts the listed indexers, gateways and checkers.
network = "network.toml"
# Where it listens for node messages (default "127.0.0.1:0": a port chosen at
# each start; give a fixed one so a restart keeps its address). Other nodes
# reach it at this address: give one they can reach. Its services are reached
# at the same address (each through a forwarder on a free port).
listen = "0.0.0.0:7300"
# "direct" (default: others dial `listen`) or "relay": the host is behind NAT
# and nothing can dial it; it dials the relay of the first gateway in the network
# file that lists one (`relay = "host:port"`), proves its key, and is reached at
# public ports of that relay. Needs the minimum container stake bonded first.
# reach = "relay"
# Pre-installed services, kept warm (required): built-in ones ("render") or
# catalogue models ("all-minilm-l6-v2": weights fetched and verified at start).
services = ["render"]
# ATH per slot-hour (required).
price = "0.5"
# Concurrent sessions (default 1).
slots = 2
# "process" (default: child processes) or "docker" (containers on a private
# Docker engine with CPU, memory and pids limits; needs root).
runtime = "process"
# Where the host is (required).
location = { lat = 38.7, lon = -9.1 }
# Bandwidth offered, Mbit/s (default 1000 each).
bandwidth_up_mbps = 1000
bandwidth_down_mbps = 1000
# Account for earnings (default: the host's own, node:<id>).
# payout = "consumer:alice"
# Development only: offer simulated GPUs (always labelled simulated).
# simulated_gpu = { model = "RTX 4090", count = 1, vram_gib = 24 }
# Development only: cheat at capacity challenges to watch the checkers catch it
# ("wrong-product", "replay", "change-rows-after-commit" or "dark"; default honest).
# behaviour = "wrong-product"

# Optional, on the evm backend: the chain's endpoint registry. Staked checkers
# and indexers registered there are verified and merged into the network file
# (adding nodes, or replacing the file's entry of the same id): the host
# registers with each indexer and trusts each checker it lists, followed every
# poll_secs.
# [chain]
# rpc_url = "http://127.0.0.1:8545"
# registry = "0x..."
# poll_secs = 5
"#;

impl HostConfig {
    /// Reads `dir/container.toml`.
    pub fn load(dir: &Path) -> anyhow::Result<HostConfig> {
        let path = dir.join(CONTAINER_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (`dci container run --print-example` shows one)", path.display()))?;
        let c: HostConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
            .with_context(|| format!("{}: not a valid container config", path.display()))?;
        if let Some(chain) = &c.chain {
            chain.validate().with_context(|| format!("{}: not a valid container config", path.display()))?;
        }
        Ok(c)
    }

    /// Writes it to `dir/container.toml`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = format!(
            "# The container host's config (`dci container run --print-example` explains every key).\n{}",
            toml::to_string_pretty(self)?
        );
        crate::keys::write_private(&dir.join(CONTAINER_FILE), &text)
    }

    fn services(&self) -> anyhow::Result<Vec<ServiceName>> {
        if self.services.is_empty() {
            anyhow::bail!("services: expected at least one pre-installed service, found none");
        }
        self.services
            .iter()
            .map(|s| ServiceName::new(s.clone()).map_err(|e| anyhow::anyhow!("services: {s:?}: {e}")))
            .collect()
    }

    fn behaviour(&self) -> anyhow::Result<dci_capacity::Behaviour> {
        let Some(name) = &self.behaviour else { return Ok(dci_capacity::Behaviour::Honest) };
        let cheats = dci_capacity::Behaviour::ALL.into_iter().filter(|b| !b.is_honest());
        cheats.clone().find(|b| b.name() == name).ok_or_else(|| {
            let names: Vec<&str> = cheats.map(|b| b.name()).collect();
            anyhow::anyhow!("behaviour: expected one of {}, found {name:?}", names.join(", "))
        })
    }

    fn runtime(&self) -> anyhow::Result<RuntimeKind> {
        if self.runtime.is_empty() {
            return Ok(RuntimeKind::Process);
        }
        self.runtime.parse().map_err(|e: String| anyhow::anyhow!("runtime: {e}"))
    }

    /// The spec this host offers: the probe's, or the simulated profile's.
    fn spec(&self, dir: &Path) -> anyhow::Result<ContainerSpec> {
        let location =
            GeoPoint::new(self.location.lat, self.location.lon).map_err(|e| anyhow::anyhow!("location: {e}"))?;
        let options = dci_probe::SpecOptions {
            location,
            bandwidth_up_mbps: self.bandwidth_up_mbps,
            bandwidth_down_mbps: self.bandwidth_down_mbps,
            disk_path: dir.to_path_buf(),
            reserve_cpu_cores: 0,
            reserve_ram_gib: 0,
            reserve_disk_gib: 0,
            gpu_model: None,
        };
        let probe = match &self.simulated_gpu {
            Some(p) => dci_probe::Probe::collect(&dci_probe::SimulatedGpus::profile(&p.model, p.count, p.vram_gib)),
            None => dci_probe::Probe::collect(&dci_probe::NvmlProbe::new()),
        };
        Ok(probe.container_spec(&options)?)
    }
}

/// A running host.
pub struct Host {
    /// The agent role.
    pub role: RoleHandle,
    /// The operator's handle.
    pub control: AgentControl,
    /// What it offers, as registered.
    pub spec: ContainerSpec,
    /// How it plays capacity challenges (honest unless configured to cheat).
    pub behaviour: dci_capacity::Behaviour,
}

/// The network the host in `dir` joins (its `container.toml` names the file).
pub fn network_of(dir: &Path) -> anyhow::Result<Network> {
    let config = HostConfig::load(dir)?;
    Network::load(&resolve(dir, &config.network))
}

/// The node-signed request that bonds `amount` of the host's own account
/// (`node:<id>`) as container stake, signed now with the host's key
/// (created if the host never ran: an operator may bond before the first run).
pub fn stake_request(dir: &Path, amount: dci_model::Amount) -> anyhow::Result<dci_gateway::api::NodeStakeRequest> {
    let identity = crate::keys::load_or_create(&dir.join(KEY_FILE))?;
    Ok(node_stake_request(&identity, dci_proto::StakeAs::Container, amount))
}

/// The request that bonds `amount` of `identity`'s own account as `role`
/// stake, signed now with its key.
pub fn node_stake_request(
    identity: &dci_proto::Identity,
    role: dci_proto::StakeAs,
    amount: dci_model::Amount,
) -> dci_gateway::api::NodeStakeRequest {
    let stake = dci_proto::NodeStake { node: identity.id(), role, amount, at: crate::clock::now() };
    dci_gateway::api::NodeStakeRequest {
        node: identity.id().to_string(),
        amount_ath: amount.to_string(),
        role: match role {
            dci_proto::StakeAs::Container => None,
            dci_proto::StakeAs::Checker => Some("checker".into()),
            dci_proto::StakeAs::Indexer => Some("indexer".into()),
        },
        at_ms: stake.at.0,
        signature: hex::encode(stake.sign(identity)),
    }
}

/// Starts the host of data directory `dir`, running services with `program`
/// (normally the `dci` binary itself); serves the control socket and
/// follows its network file until `shutdown`.
pub async fn run(dir: &Path, program: &Path, shutdown: CancellationToken) -> anyhow::Result<Host> {
    let config = HostConfig::load(dir)?;
    let network_path = resolve(dir, &config.network);
    let start = crate::membership::load(&network_path, config.chain.as_ref()).await?;
    let network = start.network();
    let peers = crate::node::container_peers(&network)
        .with_context(|| format!("the network file {}", network_path.display()))?;
    let services = config.services()?;
    let behaviour = config.behaviour()?;
    let price: PricePerHour = config.price.parse().map_err(|e| anyhow::anyhow!("price: {e}"))?;
    let spec = config.spec(dir)?;
    let identity = crate::keys::load_or_create(&dir.join(KEY_FILE))?;
    let relay = match config.reach {
        ReachMode::Direct => None,
        ReachMode::Relay => Some(join_relay(&network, &identity, shutdown.clone()).await?),
    };
    let payout = match &config.payout {
        Some(a) => AccountId::new(a).map_err(|e| anyhow::anyhow!("payout: {e}"))?,
        None => AccountId::for_node(&identity.id()),
    };
    fetch_models(&services).await?;
    let inner = match config.runtime()? {
        RuntimeKind::Process => AnyRuntime::Process(dci_agent::runtime::ProcessRuntime::new(program.into(), vec![])),
        RuntimeKind::Docker => {
            let agent = format!("host-{}", identity.id().short());
            AnyRuntime::Docker(crate::runtime::devnet_docker(program, &agent).await?)
        }
    };
    // Every instance is exposed (to other machines, or through the relay)
    // before the agent sees its endpoint; one of each service waits warm.
    let reach = match &relay {
        Some(client) => Reach::Relay(client.clone()),
        None => Reach::for_listen(&config.listen),
    };
    let runtime = Arc::new(Warm::new(Exposed::new(inner, reach), services.clone()));
    runtime.refill().await;
    let agent = AgentConfig {
        // Behind the relay it registers its public address; else its own.
        listen_addr: relay.as_ref().map(|r| r.node_addr()).unwrap_or_default(),
        spec: spec.clone(),
        services,
        price,
        slots: config.slots,
        payout,
        indexers: peers.indexers,
        checkers: peers.checkers,
        gateways: peers.gateways,
        heartbeat_interval: Duration::from_secs(1),
        behaviour,
    };
    let (role, control) = spawn_agent_controlled(
        identity,
        NetworkId::of(&network.name),
        &config.listen,
        agent,
        runtime.clone(),
        shutdown.clone(),
    )
    .await?;
    if let Some(client) = &relay {
        let local = role.addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).context("the agent's listen port")?;
        client.set_node_local(local);
    }
    // Refill every second, and tell the agent (its heartbeats report them).
    let refill = (runtime.clone(), control.clone(), shutdown.clone());
    tokio::spawn(async move {
        let (runtime, control, shutdown) = refill;
        loop {
            if control.warm(runtime.warm()).await.is_err() {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => runtime.refill().await,
            }
        }
    });
    let follow = control.clone();
    crate::membership::follow(network_path, config.chain.clone(), start, shutdown.clone(), move |n| {
        let control = follow.clone();
        async move {
            match crate::node::container_peers(&n) {
                Ok(p) => {
                    let _ = control.peers(p).await;
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the new network file is not usable; keeping the peers")
                }
            }
        }
    });
    serve_control(&dir.join(CONTROL_SOCKET), control.clone(), shutdown)?;
    Ok(Host { role, control, spec, behaviour })
}

/// Dials the relay of the network's first gateway that lists one, as
/// `identity`: the first connection must be admitted (a refusal says why).
async fn join_relay(
    network: &Network,
    identity: &dci_proto::Identity,
    shutdown: CancellationToken,
) -> anyhow::Result<dci_relay::RelayClient> {
    let (gateway, addr) = network.relay_gateway()?;
    let client = dci_relay::RelayClient::connect(identity.clone(), addr, gateway.id, shutdown)
        .await
        .with_context(|| format!("reach = \"relay\": joining through the relay {addr} of gateway {}", gateway.id))?;
    tracing::info!(relay = addr, address = %client.node_addr(), "reached through the gateway's relay");
    Ok(client)
}

/// Before the pre-installed services are started and kept warm (R-AG3): a
/// catalogue model's weights are fetched and verified into the model store,
/// so that no instance waits for a download; built-in services need nothing.
async fn fetch_models(services: &[ServiceName]) -> anyhow::Result<()> {
    let catalogue = dci_models::Catalogue::builtin();
    for s in services {
        if let Ok(model) = catalogue.get(s.as_str()) {
            let model = model.clone();
            tokio::task::spawn_blocking(move || dci_models::Store::open_default()?.ensure(&model))
                .await?
                .with_context(|| format!("fetching the weights of the pre-installed model {s}"))?;
            tracing::info!(service = %s, "model weights present and verified");
        } else if !dci_services::catalog::is_builtin(s) {
            anyhow::bail!("services: {s} is neither a built-in service nor a catalogue model");
        }
    }
    Ok(())
}

/// What the operator asks a running host (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ControlRequest {
    /// The host's status.
    Status,
    /// Lock (`on`) or unlock for maintenance; `drain` lets sessions finish.
    Maintenance {
        /// Lock or unlock.
        on: bool,
        /// Let running sessions finish instead of moving them.
        #[serde(default)]
        drain: bool,
    },
    /// The price per slot-hour for new sessions, ATH (e.g. "2.5").
    Price {
        /// ATH per hour.
        ath_per_hour: String,
    },
}

/// The host's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The status after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusView>,
}

/// One session on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLine {
    /// Session (placement) id.
    pub id: String,
    /// Service.
    pub service: String,
    /// Endpoint, once started.
    pub endpoint: Option<String>,
}

/// One lifecycle transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionLine {
    /// From state.
    pub from: String,
    /// To state.
    pub to: String,
    /// Who caused it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// One indexer's view of the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexerLine {
    /// The indexer's node id.
    pub id: String,
    /// Where it listens.
    pub addr: String,
    /// The state it last reported (None: not admitted there yet).
    pub state: Option<String>,
    /// Why it refused the registration, until it reports a state.
    pub refused: Option<String>,
}

/// `dci container status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// Node id.
    pub id: String,
    /// Lifecycle state (as last reported by any indexer).
    pub state: Option<String>,
    /// Each indexer's view.
    #[serde(default)]
    pub indexers: Vec<IndexerLine>,
    /// Locked for maintenance by the operator.
    pub maintenance: bool,
    /// ATH per slot-hour for new sessions.
    pub price_ath_per_hour: String,
    /// Concurrent sessions offered.
    pub slots: u32,
    /// Pre-installed services.
    pub services: Vec<String>,
    /// Those with a started instance waiting for the next session.
    pub warm: Vec<String>,
    /// Running sessions.
    pub sessions: Vec<SessionLine>,
    /// Sessions settled by a final receipt this run.
    pub earned_sessions: u64,
    /// Seconds they billed.
    pub earned_seconds: u64,
    /// ATH they billed, before the fee split.
    pub earned_ath: String,
    /// The latest lifecycle transitions, newest last: inspections, verdicts, locks.
    pub transitions: Vec<TransitionLine>,
}

impl From<AgentStatus> for StatusView {
    fn from(s: AgentStatus) -> StatusView {
        StatusView {
            id: s.id.to_string(),
            state: s.state.map(|x| x.to_string()),
            indexers: s
                .indexers
                .into_iter()
                .map(|i| IndexerLine {
                    id: i.id.to_string(),
                    addr: i.addr,
                    state: i.state.map(|x| x.to_string()),
                    refused: i.refused,
                })
                .collect(),
            maintenance: s.maintenance,
            price_ath_per_hour: dci_gateway::api::ath(s.price.0),
            slots: s.slots,
            services: s.services.iter().map(|x| x.to_string()).collect(),
            warm: s.warm.iter().map(|x| x.to_string()).collect(),
            sessions: s
                .sessions
                .into_iter()
                .map(|x| SessionLine { id: x.id.to_string(), service: x.service.to_string(), endpoint: x.endpoint })
                .collect(),
            earned_sessions: s.earned.sessions,
            earned_seconds: s.earned.seconds,
            earned_ath: dci_gateway::api::ath(s.earned.amount),
            transitions: s
                .transitions
                .into_iter()
                .map(|t| TransitionLine {
                    from: t.from.to_string(),
                    to: t.to.to_string(),
                    actor: format!("{:?}", t.actor).to_lowercase(),
                    reason: t.reason,
                    at_ms: t.at.0,
                })
                .collect(),
        }
    }
}

/// Carries out one request.
async fn answer(control: &AgentControl, req: ControlRequest) -> ControlReply {
    let locked = control.status().maintenance;
    match req {
        ControlRequest::Maintenance { on: true, .. } if locked => {
            return failed("the container is already locked for maintenance".into());
        }
        ControlRequest::Maintenance { on: false, .. } if !locked => {
            return failed("expected a container locked for maintenance to unlock, found it unlocked".into());
        }
        _ => {}
    }
    let cmd = match req {
        ControlRequest::Status => None,
        ControlRequest::Maintenance { on: true, drain } => Some(OperatorCommand::MaintenanceOn { drain }),
        ControlRequest::Maintenance { on: false, .. } => Some(OperatorCommand::MaintenanceOff),
        ControlRequest::Price { ath_per_hour } => match ath_per_hour.parse::<PricePerHour>() {
            Ok(p) => Some(OperatorCommand::SetPrice(p)),
            Err(e) => return failed(format!("price: {e}")),
        },
    };
    if let Some(cmd) = cmd {
        if let Err(e) = control.command(cmd).await {
            return failed(e.to_string());
        }
        // Let the agent take the command before reading its status.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ControlReply { ok: true, error: None, status: Some(control.status().into()) }
}

fn failed(error: String) -> ControlReply {
    ControlReply { ok: false, error: Some(error), status: None }
}

/// Serves the control socket at `path` (replacing a stale one) until `shutdown`.
fn serve_control(path: &Path, control: AgentControl, shutdown: CancellationToken) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let path = path.to_path_buf();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                s = listener.accept() => match s { Ok((s, _)) => s, Err(_) => continue },
            };
            let control = control.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match serde_json::from_str::<ControlRequest>(&line) {
                        Ok(req) => answer(&control, req).await,
                        Err(e) => failed(format!(
                            "expected a JSON request such as {{\"command\":\"status\"}}, {{\"command\":\"maintenance\",\"on\":true}} or {{\"command\":\"price\",\"ath_per_hour\":\"2.5\"}}: {e}"
                        )),
                    };
                    let mut text = serde_json::to_string(&reply).expect("replies serialize");
                    text.push('\n');
                    if write.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

/// Sends one request to the host whose data directory is `dir` (the CLI side).
pub async fn request(dir: &Path, req: &ControlRequest) -> anyhow::Result<StatusView> {
    let path = dir.join(CONTROL_SOCKET);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!("connecting to {}: is `dci container run --data-dir {}` running?", path.display(), dir.display())
    })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(req)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let line = BufReader::new(read)
        .lines()
        .next_line()
        .await?
        .with_context(|| format!("{} closed without answering", path.display()))?;
    let reply: ControlReply = serde_json::from_str(&line).context("reading the host's answer")?;
    match (reply.ok, reply.status) {
        (true, Some(s)) => Ok(s),
        _ => anyhow::bail!(reply.error.unwrap_or_else(|| "the host refused the request".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_requests_parse_and_bad_ones_say_what_is_expected() {
        let r: ControlRequest = serde_json::from_str(r#"{"command":"maintenance","on":true}"#).unwrap();
        assert_eq!(r, ControlRequest::Maintenance { on: true, drain: false });
        let r: ControlRequest = serde_json::from_str(r#"{"command":"price","ath_per_hour":"2.5"}"#).unwrap();
        assert_eq!(r, ControlRequest::Price { ath_per_hour: "2.5".into() });
        assert!(serde_json::from_str::<ControlRequest>(r#"{"command":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<ControlRequest>(r#"{"command":"maintenance"}"#).is_err());
    }

    #[test]
    fn a_host_config_is_read_and_checked() {
        let text = r#"
            network = "../devnet/network.toml"
            services = ["render"]
            price = "0.5"
            slots = 2
            location = { lat = 38.7, lon = -9.1 }
            simulated_gpu = { model = "RTX 4090", count = 1, vram_gib = 24 }
        "#;
        let c: HostConfig = toml::from_str(text).unwrap();
        assert_eq!(c.services().unwrap(), vec![ServiceName::new("render").unwrap()]);
        assert_eq!(c.runtime().unwrap(), RuntimeKind::Process);
        let dir = tempfile::tempdir().unwrap();
        let spec = c.spec(dir.path()).unwrap();
        assert!(spec.gpu.as_ref().is_some_and(|g| g.simulated && g.model == "RTX 4090"));
        let bad: Result<HostConfig, _> = toml::from_str(&text.replace("slots = 2", "slots = 2\nslotz = 3"));
        assert!(bad.unwrap_err().to_string().contains("slotz"));
        assert_eq!(c.reach, ReachMode::Direct);
        let relayed: HostConfig = toml::from_str(&format!("{text}reach = \"relay\"\n")).unwrap();
        assert_eq!(relayed.reach, ReachMode::Relay);
        let bad: Result<HostConfig, _> = toml::from_str(&format!("{text}reach = \"tunnel\"\n"));
        assert!(bad.unwrap_err().to_string().contains("unknown variant `tunnel`, expected `direct` or `relay`"));
        let c = HostConfig { runtime: "vm".into(), ..c };
        assert!(c.runtime().unwrap_err().to_string().contains("expected a runtime"));
        // Development only: a cheat, by name.
        assert_eq!(c.behaviour().unwrap(), dci_capacity::Behaviour::Honest);
        let cheat = HostConfig { behaviour: Some("replay".into()), ..c.clone() };
        assert_eq!(cheat.behaviour().unwrap(), dci_capacity::Behaviour::Replay);
        let e = HostConfig { behaviour: Some("lazy".into()), ..c }.behaviour().unwrap_err().to_string();
        assert!(
            e.contains("behaviour: expected one of") && e.contains("wrong-product") && e.contains("found \"lazy\""),
            "{e}"
        );
    }

    #[test]
    fn the_example_parses_and_a_saved_config_reads_back() {
        let c: HostConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!((c.slots, c.listen.as_str(), c.behaviour.as_deref()), (2, "0.0.0.0:7300", None));
        let dir = tempfile::tempdir().unwrap();
        c.save(dir.path()).unwrap();
        assert_eq!(HostConfig::load(dir.path()).unwrap(), c);
        std::fs::write(dir.path().join(CONTAINER_FILE), "network = 5").unwrap();
        let e = format!("{:#}", HostConfig::load(dir.path()).unwrap_err());
        assert!(e.contains("not a valid container config") && e.contains("network"), "{e}");
    }
}
