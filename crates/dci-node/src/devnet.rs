//! `dci devnet`: a whole DCI network on loopback in one command (R-UX2).
//!
//! A ledger (the embedded one, or the DCI contracts on an anvil it starts on a
//! free port with `--settlement evm`: [`crate::settlement`]), one indexer, several staked checkers (an epoch
//! committee is drawn from them), a gateway with its HTTP API that also
//! coordinates the committee, and N staked containers with simulated GPU
//! profiles (always labelled simulated),
//! each role on its own TCP port talking signed messages, exactly as separate
//! machines would (R-SC1). The devnet is one process, but it builds each
//! role exactly as `dci <role> run` builds it ([`crate::node`],
//! [`crate::host::run`]): from its own data directory under the devnet's,
//! with its own node config and key, and the network file the devnet writes:
//!
//! ```text
//! <data-dir>/network.toml        the network: every role reads it (../network.toml)
//! <data-dir>/client.json         the funded consumer's API key, for the CLI
//! <data-dir>/anvil-state.json    the devnet's own chain (--settlement evm)
//! <data-dir>/gateway/            node.toml node.key ledger.db settlement.toml gateway.db client.json
//! <data-dir>/indexer/            node.toml node.key indexer.db
//! <data-dir>/checker-<i>/        node.toml node.key
//! <data-dir>/container-<i>/      container.toml container.key control.sock
//! ```
//!
//! Each node's port is chosen on the first start and kept (a restart keeps
//! every address); the devnet's flags (API port, epoch, committee size,
//! challenge size, inspection interval, runtime, `--dishonest`) are written
//! into the node configs at each start. State survives a restart.
//! A data directory of the earlier layout (`keys/`, `ledger.db` at its top)
//! is refused with a message: it is not migrated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dci_chain::{Anvil, AnvilOptions, Deployment, EvmLedger};
use dci_ledger::{Genesis, LedgerOp, Params, Settlement, StakeRole, Transfer};
use dci_model::{AccountId, Amount, NodeId, State};
use dci_proto::Identity;
use tokio_util::sync::CancellationToken;

use crate::config::{
    CheckerConfig, Consumer, DEFAULT_KEY_FILE, Floor, GatewayConfig, IndexerConfig, NODE_FILE, NodeFile,
};
use crate::gateway::GatewayNode;
use crate::host::{HostConfig, Location};
use crate::network::{CheckerEntry, GatewayEntry, IndexerEntry, NETWORK_FILE, Network};
pub use crate::node::{CLIENT_FILE, ClientFile};
use crate::node::{GatewayRun, start_checker, start_gateway, start_indexer};
use crate::roles::RoleHandle;
use crate::runtime::RuntimeKind;
use crate::settlement::{ANVIL_STATE_FILE, Backend, EvmConfig, NodeLedger, OnThread, SettlementConfig};

/// How to start a devnet.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// Where state lives.
    pub data_dir: PathBuf,
    /// Containers to run (at least the number already in the data directory).
    pub containers: usize,
    /// Address of the HTTP API.
    pub api_listen: SocketAddr,
    /// Program that runs services (`<program> service <name> --listen …`), normally the `dci` binary.
    pub service_program: PathBuf,
    /// Proof-of-capacity matrix size used by the checker.
    pub challenge_n: u32,
    /// Length of a reward epoch.
    pub epoch: Duration,
    /// If set, the last container cheats at its capacity challenges this way
    /// (to watch the checkers catch it).
    pub dishonest: Option<dci_capacity::Behaviour>,
    /// Checkers to run (each stakes a different amount; at least 1).
    pub checkers: usize,
    /// Seats of the epoch committee.
    pub committee_size: usize,
    /// Each container is inspected at random about once per this interval:
    /// a standby inspection when idle, an in-service evaluation by the
    /// checkers' simulated user when it serves a session.
    pub inspect_every: Duration,
    /// Where sessions run: child processes or Docker containers.
    pub runtime: RuntimeKind,
    /// Serve the API over https with this certificate and key (PEM);
    /// `None`: plain http (the devnet's API listens on loopback).
    pub tls: Option<dci_gateway::server::TlsFiles>,
    /// The ledger backend; `None`: the gateway's `settlement.toml`
    /// (`<data-dir>/gateway/`), or embedded if there is none. The choice is
    /// written back there.
    pub settlement: Option<Backend>,
}

/// The devnet's API limits: one developer's scripts and tests on loopback
/// poll far more than a production client, so the per-address and per-key
/// budgets are 50 times the production defaults; failed authentications
/// keep the production budget.
pub fn devnet_limits() -> dci_gateway::limits::LimitsConfig {
    use dci_gateway::limits::{Budget, LimitsConfig};
    let d = LimitsConfig::default();
    let wide = |b: Budget| Budget { per_minute: b.per_minute * 50, burst: b.burst * 50 };
    LimitsConfig { per_address: wide(d.per_address), per_key: wide(d.per_key), ..d }
}

/// What each devnet container bonds at creation (slashable by the committee).
pub const CONTAINER_STAKE: Amount = Amount::ath(1_000);
/// What devnet checker `i` bonds at creation: 1,000 × (i + 1) ATH, so the
/// sortition has unequal stakes to weigh.
pub fn checker_stake(i: usize) -> Amount {
    Amount::ath(1_000 * (i as u64 + 1))
}

/// Funds `node`'s account from the liquidity pool and bonds `stake` in
/// `role`, once (one batch): a restarted devnet finds the stake already there.
fn bond(ledger: &mut NodeLedger, node: &dci_model::NodeId, role: StakeRole, stake: Amount) -> anyhow::Result<()> {
    let account = AccountId::for_node(node);
    if ledger.staked(&account, role)? == Amount::ZERO {
        let fund = Transfer { from: dci_ledger::accounts::liquidity(), to: account.clone(), amount: stake };
        ledger.apply(&[LedgerOp::Transfer(fund), LedgerOp::Stake { account, role, amount: stake }])?;
    }
    Ok(())
}

/// Where a devnet on the evm backend settles.
#[derive(Clone, Debug)]
pub struct ChainInfo {
    /// The chain's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The contracts.
    pub deployment: Deployment,
    /// Whether the devnet started this anvil (and stops it).
    pub own_anvil: bool,
}

/// The devnet's chain, ready for its gateway: its anvil (if the devnet
/// runs one), the config to write to the gateway's settlement.toml, and
/// whether the contracts were just deployed (a fresh chain: the devnet
/// consumer needs funding again).
struct StartedChain {
    anvil: Option<Anvil>,
    config: EvmConfig,
    fresh: bool,
}

/// What a devnet deploys on a fresh chain: the genesis committee (the
/// checkers' chain signers) and the epoch length (the gateway's: the
/// contract pays an epoch only once it has ended on the chain's clock).
struct Launch {
    committee: Vec<dci_chain::Address>,
    epoch: Duration,
}

/// Starts anvil if the config says so, checks that the deployment is
/// there or deploys the contracts (blocking: call it from a blocking
/// thread). The gateway connects to it itself.
fn start_chain(mut evm: EvmConfig, state: PathBuf, launch: Launch) -> anyhow::Result<StartedChain> {
    let anvil = if evm.anvil {
        let opts = AnvilOptions { state: Some(state), own_process_group: true, ..AnvilOptions::default() };
        let a = Anvil::start_with(&opts).context("starting anvil")?;
        evm.rpc_url = a.url();
        Some(a)
    } else {
        None
    };
    let there = match evm.deployment.clone() {
        Some(dep) => {
            let (url, key) = (evm.rpc_url.clone(), evm.settler_key.clone());
            match OnThread::spawn("dci-chain", move || Ok(EvmLedger::connect(&url, &key, &dep)?)) {
                Ok(_) => true,
                // The devnet's own chain was lost (anvil killed before it wrote its state).
                Err(e) if evm.anvil => {
                    tracing::warn!(error = %e, "the devnet's chain lost its contracts; deploying them again");
                    false
                }
                Err(e) => return Err(e).with_context(|| format!("connecting to the dci ledger at {}", evm.rpc_url)),
            }
        }
        None => false,
    };
    if !there {
        let params = Params { epoch_secs: launch.epoch.as_secs().max(1), ..Params::default() };
        let dep = dci_chain::deploy(&evm.rpc_url, &evm.settler_key, &Genesis::devnet(), &params, &launch.committee)
            .with_context(|| format!("deploying the dci contracts to {}", evm.rpc_url))?;
        evm.deployment = Some(dep);
    }
    Ok(StartedChain { anvil, config: evm, fresh: !there })
}

/// The funded consumer account of a devnet.
pub const CONSUMER: &str = "consumer:devnet";
/// What the devnet consumer is given at creation.
pub const CONSUMER_FUNDS: Amount = Amount::ath(10_000);

/// The services every devnet container offers pre-installed and keeps
/// warm: the built-in render service and the catalogue's all-MiniLM-L6-v2
/// (its runtime runs `dci service <name>`; a model's files are fetched into
/// the model store before the host registers).
pub const DEVNET_SERVICES: [&str; 2] = ["render", "all-minilm-l6-v2"];

/// A simulated host profile: GPU, place, price.
struct Profile {
    gpu: &'static str,
    vram_gib: u32,
    count: u32,
    city: &'static str,
    lat: f64,
    lon: f64,
    price: &'static str,
}

const PROFILES: &[Profile] = &[
    Profile { gpu: "RTX 4090", vram_gib: 24, count: 1, city: "Lisbon", lat: 38.72, lon: -9.14, price: "0.9" },
    Profile { gpu: "A100", vram_gib: 80, count: 2, city: "Frankfurt", lat: 50.11, lon: 8.68, price: "2.4" },
    Profile { gpu: "H100", vram_gib: 80, count: 8, city: "Ashburn", lat: 39.04, lon: -77.49, price: "3.2" },
    Profile { gpu: "RTX 3090", vram_gib: 24, count: 2, city: "Sao Paulo", lat: -23.55, lon: -46.63, price: "0.6" },
    Profile { gpu: "L40S", vram_gib: 48, count: 4, city: "Singapore", lat: 1.35, lon: 103.82, price: "1.5" },
    Profile { gpu: "H200", vram_gib: 141, count: 8, city: "Tokyo", lat: 35.68, lon: 139.69, price: "4.1" },
];

/// The gateway's data directory inside a devnet's.
pub const GATEWAY_DIR: &str = "gateway";
/// The indexer's data directory inside a devnet's.
pub const INDEXER_DIR: &str = "indexer";

/// Checker `i`'s data directory inside a devnet's.
pub fn checker_dir(i: usize) -> String {
    format!("checker-{i}")
}

/// Container `i`'s data directory inside a devnet's.
pub fn container_dir(i: usize) -> String {
    format!("container-{i}")
}

/// The data directory of the gateway of `dir`: `dir/gateway` when `dir`
/// is a devnet's, else `dir` itself (a gateway's own).
pub fn gateway_dir_of(dir: &Path) -> PathBuf {
    let inner = dir.join(GATEWAY_DIR);
    if inner.join(NODE_FILE).exists() { inner } else { dir.to_path_buf() }
}

/// A running devnet.
pub struct Devnet {
    /// The HTTP API's base URL.
    pub api_url: String,
    /// The consumer's API key.
    pub client: ClientFile,
    /// The gateway.
    pub gateway: Arc<GatewayNode>,
    /// Container summaries (printed at start).
    pub containers: Vec<String>,
    /// The chain, on the evm backend.
    pub chain: Option<ChainInfo>,
    gateway_run: GatewayRun,
    anvil: Option<Anvil>,
    roles: Vec<RoleHandle>,
    shutdown: CancellationToken,
}

/// The listen address a devnet node keeps: the one its config gave last
/// time if that port is still free, else a free one now (on loopback).
fn keep_port(previous: Option<String>) -> anyhow::Result<String> {
    if let Some(addr) = previous {
        if std::net::TcpListener::bind(&addr).is_ok() {
            return Ok(addr);
        }
        tracing::warn!(%addr, "a devnet node's port is taken now; it moves to another (the network file follows)");
    }
    Ok(format!("127.0.0.1:{}", free_loopback_port()?))
}

/// A port free now on 127.0.0.1, below the kernel's ephemeral range. A
/// port the kernel hands out for `:0` is exactly what it hands the next
/// outbound connection, so one chosen now and bound later (a devnet writes
/// its nodes' configs first) could be taken meanwhile by any connection
/// on the machine; one below the range is taken only by another listener.
pub fn free_loopback_port() -> anyhow::Result<u16> {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, first_ephemeral.max(10_001));
    for _ in 0..2_000 {
        let port = rand::random_range(low..high);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("choosing a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// How many `<prefix><i>` directories `dir` holds.
fn count_dirs(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir() && e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

impl Devnet {
    /// Writes every role's config, then starts every role as its own node
    /// would start; returns once the API is listening.
    pub async fn start(config: DevnetConfig) -> anyhow::Result<Devnet> {
        let dir = &config.data_dir;
        if dir.join("keys").is_dir() && !dir.join(GATEWAY_DIR).join(NODE_FILE).exists() {
            anyhow::bail!(
                "{} holds a devnet of an earlier layout (keys/ and ledger.db at its top): expected one directory \
                 per role (gateway/, indexer/, checker-N/, container-N/); it is not migrated: remove it or pass \
                 another --data-dir",
                dir.display()
            );
        }
        // The API port first: if it is taken, fail before touching any state.
        drop(std::net::TcpListener::bind(config.api_listen).with_context(|| {
            format!("binding the API on {} (is another devnet running? use --api-port)", config.api_listen)
        })?);
        std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
        let shutdown = CancellationToken::new();
        let network_file = PathBuf::from("..").join(NETWORK_FILE);
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let api_url = format!("{scheme}://{}", config.api_listen);

        // Every role's node config: ports kept, the flags written in.
        let gateway_dir = dir.join(GATEWAY_DIR);
        let gateway = GatewayConfig {
            id: None,
            listen: keep_port(GatewayConfig::load(&gateway_dir).ok().map(|c| c.listen))?,
            key: DEFAULT_KEY_FILE.into(),
            network: network_file.clone(),
            api_listen: config.api_listen.to_string(),
            epoch_secs: config.epoch.as_secs().max(1),
            committee_size: config.committee_size.clamp(1, 256),
            dev_network: true,
            consumer: Some(Consumer { account: CONSUMER.into(), funds: CONSUMER_FUNDS.to_string() }),
            relay: None,
            view_refresh_ms: crate::gateway::DEFAULT_VIEW_REFRESH.as_millis() as u64,
            api_limits: devnet_limits(),
            tls: config.tls.clone(),
            chain: None,
        };
        gateway.save(&gateway_dir)?;
        let gateway_key = gateway.identity(&gateway_dir)?;
        let indexer_dir = dir.join(INDEXER_DIR);
        let indexer = IndexerConfig {
            id: None,
            listen: keep_port(IndexerConfig::load(&indexer_dir).ok().map(|c| c.listen))?,
            key: DEFAULT_KEY_FILE.into(),
            network: network_file.clone(),
            inspect_every_secs: config.inspect_every.as_secs().max(1),
            chain: None,
        };
        indexer.save(&indexer_dir)?;
        let indexer_key = indexer.identity(&indexer_dir)?;
        let mut checkers: Vec<(CheckerConfig, Identity)> = Vec::new();
        for i in 0..config.checkers.max(1) {
            let d = dir.join(checker_dir(i));
            let c = CheckerConfig {
                id: None,
                listen: keep_port(CheckerConfig::load(&d).ok().map(|c| c.listen))?,
                key: DEFAULT_KEY_FILE.into(),
                network: network_file.clone(),
                challenge_n: config.challenge_n,
                min_deadline_secs: 10,
                evaluation: Floor::Devnet,
                chain: None,
            };
            c.save(&d)?;
            let key = c.identity(&d)?;
            checkers.push((c, key));
        }
        // Containers: as many as asked, and never fewer than already exist.
        let n = config.containers.max(count_dirs(dir, "container-"));
        let runtime = match config.runtime {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
        };
        let mut containers: Vec<(PathBuf, NodeId, &Profile)> = Vec::new();
        for i in 0..n {
            let d = dir.join(container_dir(i));
            let p = &PROFILES[i % PROFILES.len()];
            let host = HostConfig {
                network: network_file.clone(),
                listen: keep_port(HostConfig::load(&d).ok().map(|c| c.listen).filter(|l| !l.ends_with(":0")))?,
                reach: crate::host::ReachMode::Direct,
                services: DEVNET_SERVICES.iter().map(|s| s.to_string()).collect(),
                price: p.price.into(),
                slots: 2,
                runtime: runtime.into(),
                location: Location { lat: p.lat, lon: p.lon },
                bandwidth_up_mbps: 1000,
                bandwidth_down_mbps: 1000,
                payout: None,
                simulated_gpu: Some(dci_probe::SimulatedProfile {
                    model: p.gpu.into(),
                    count: p.count,
                    vram_gib: p.vram_gib,
                }),
                behaviour: config.dishonest.filter(|_| i + 1 == n).map(|b| b.name().to_owned()),
                chain: None,
            };
            host.save(&d)?;
            let key = crate::keys::load_or_create(&d.join(crate::host::KEY_FILE))?;
            containers.push((d, key.id(), p));
        }

        // The network file: every role takes its peers from it.
        Network {
            name: "devnet".into(),
            gateways: vec![GatewayEntry {
                id: gateway_key.id(),
                addr: gateway.listen.clone(),
                api: api_url.clone(),
                relay: None,
            }],
            indexers: vec![IndexerEntry { id: indexer_key.id(), addr: indexer.listen.clone() }],
            checkers: checkers.iter().map(|(c, key)| CheckerEntry::of(key, c.listen.clone())).collect(),
        }
        .save(&dir.join(NETWORK_FILE))?;

        // The ledger's backend: on evm, the devnet's chain is ready before the gateway connects.
        let mut settings = SettlementConfig::load(&gateway_dir)?;
        if let Some(b) = config.settlement {
            settings.backend = b;
        }
        let (anvil, chain, fresh) = match settings.backend {
            Backend::Embedded => (None, None, false),
            Backend::Evm => {
                let evm = settings.evm.take().unwrap_or_else(EvmConfig::devnet_anvil);
                // The genesis committee: every staked checker of the devnet.
                let committee = checkers.iter().map(|(_, key)| dci_chain::node_signer(key).address()).collect();
                let launch = Launch { committee, epoch: config.epoch };
                let state = dir.join(ANVIL_STATE_FILE);
                let started = tokio::task::spawn_blocking(move || start_chain(evm, state, launch)).await??;
                let chain = ChainInfo {
                    rpc_url: started.config.rpc_url.clone(),
                    deployment: started.config.deployment.clone().context("a started chain has a deployment")?,
                    own_anvil: started.anvil.is_some(),
                };
                settings.evm = Some(started.config);
                (started.anvil, Some(chain), started.fresh)
            }
        };
        settings.save(&gateway_dir)?;
        // On evm, every role follows the chain's endpoint registry too
        // (deployed with the ledger): `[chain]` in each node's config, its
        // RPC URL as this start's anvil has it.
        if let Some(registry) = chain.as_ref().and_then(|c| c.deployment.registry) {
            let section = crate::membership::ChainSection {
                rpc_url: chain.as_ref().map(|c| c.rpc_url.clone()).unwrap_or_default(),
                registry: format!("{registry:?}"),
                poll_secs: crate::membership::DEFAULT_POLL_SECS,
            };
            GatewayConfig { chain: Some(section.clone()), ..gateway.clone() }.save(&gateway_dir)?;
            IndexerConfig { chain: Some(section.clone()), ..indexer.clone() }.save(&indexer_dir)?;
            for (i, (c, _)) in checkers.iter().enumerate() {
                CheckerConfig { chain: Some(section.clone()), ..c.clone() }.save(&dir.join(checker_dir(i)))?;
            }
            for (d, _, _) in &containers {
                let mut host = HostConfig::load(d)?;
                host.chain = Some(section.clone());
                host.save(d)?;
            }
        }

        // What the devnet does on the gateway's ledger before it runs (a
        // faucet's work): fund and bond every checker and container once,
        // and fund the consumer again on a fresh chain.
        let mut bonds: Vec<(NodeId, StakeRole, Amount)> =
            checkers.iter().enumerate().map(|(i, (_, k))| (k.id(), StakeRole::Checker, checker_stake(i))).collect();
        bonds.extend(containers.iter().map(|(_, id, _)| (*id, StakeRole::Container, CONTAINER_STAKE)));
        let refund = fresh && gateway_dir.join(CLIENT_FILE).exists();
        let setup: crate::node::LedgerSetup = Box::new(move |ledger: &mut NodeLedger| {
            for (id, role, stake) in &bonds {
                bond(ledger, id, *role, *stake)?;
            }
            if refund {
                let consumer = AccountId::new(CONSUMER).expect("a valid account");
                ledger.transfer(&dci_ledger::accounts::liquidity(), &consumer, CONSUMER_FUNDS)?;
            }
            Ok(())
        });
        // The checkers listen before the gateway opens its first epoch
        // (its EpochOpen reaches them), the containers register after it
        // answers the indexer's stake queries.
        let mut roles = vec![start_indexer(&indexer_dir, shutdown.clone()).await?];
        for i in 0..checkers.len() {
            roles.push(start_checker(&dir.join(checker_dir(i)), shutdown.clone()).await?);
        }
        let started = start_gateway(&gateway_dir, shutdown.clone(), Some(setup)).await?;
        let client = started.client.clone().context("the devnet gateway has a funded consumer")?;
        crate::keys::write_private(&dir.join(CLIENT_FILE), &serde_json::to_string_pretty(&client)?)?;
        let mut lines = Vec::new();
        for (d, _, p) in &containers {
            let host = crate::host::run(d, &config.service_program, shutdown.clone())
                .await
                .with_context(|| format!("starting the container host of {}", d.display()))?;
            let cheat = if host.behaviour.is_honest() {
                String::new()
            } else {
                format!("  DISHONEST: {}", host.behaviour.name())
            };
            lines.push(format!(
                "{}  {} x{} {} GiB (simulated)  {}  {} ATH/h  services: {}  at {}{cheat}",
                host.role.id.short(),
                p.gpu,
                p.count,
                p.vram_gib,
                p.city,
                p.price,
                DEVNET_SERVICES.join(","),
                host.role.addr
            ));
            roles.push(host.role);
        }
        Ok(Devnet {
            api_url: started.api_url.clone(),
            client,
            gateway: started.node.clone(),
            containers: lines,
            chain,
            gateway_run: started,
            anvil,
            roles,
            shutdown,
        })
    }

    /// Waits until every container is schedulable or has failed an
    /// inspection (at most `limit`); returns (schedulable, all).
    pub async fn wait_ready(&self, limit: Duration) -> (usize, usize) {
        let t0 = Instant::now();
        loop {
            let views = self.gateway.container_views().await.unwrap_or_default();
            let ready = views.iter().filter(|v| matches!(v.state, State::Healthy | State::Ready)).count();
            // A container that failed its inspection is decided too.
            let failed = views
                .iter()
                .filter(|v| !v.state.is_schedulable() && v.verdicts.last().is_some_and(|x| !x.passed))
                .count();
            // Every container has registered, and each is decided.
            let all_in = views.len() >= self.containers.len() && !views.is_empty();
            if (all_in && ready + failed == views.len()) || t0.elapsed() > limit {
                return (ready, views.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops and settles running sessions, then stops every role.
    pub async fn shutdown(self) {
        // What the sessions settled goes on chain before anvil stops.
        self.gateway_run.settle().await;
        self.shutdown.cancel();
        self.gateway_run.join().await;
        for r in self.roles {
            let _ = r.task.await;
        }
        // Stop anvil last (cleanly: it writes its state for the next start).
        if let Some(a) = self.anvil {
            match tokio::task::spawn_blocking(move || a.stop()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "anvil did not stop cleanly"),
                Err(e) => tracing::warn!(error = %e, "stopping anvil"),
            }
        }
    }
}
