//! `dci devnet`: a whole DCI network on loopback in one command (R-UX2).
//!
//! A ledger (the embedded one, or the DCI contracts on an anvil it starts on a
//! free port with `--settlement evm`: [`crate::settlement`]), one indexer, several staked checkers (an epoch
//! committee is drawn from them), a gateway with its HTTP API that also
//! coordinates the committee, and N staked containers with simulated GPU
//! profiles (always labelled simulated),
//! each role on its own TCP port talking signed messages, exactly as separate
//! machines would (R-SC1). State lives in the data directory: node keys
//! (0600), the ledger, the indexer's registry and the gateway's sessions, so a
//! restart resumes where the last run stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dci_agent::AgentConfig;
use dci_agent::runtime::ProcessRuntime;
use dci_chain::{Anvil, AnvilOptions, Deployment, EvmLedger};
use dci_ledger::{EmbeddedLedger, Genesis, LedgerOp, Params, Settlement, StakeRole, Transfer};
use dci_model::{AccountId, Amount, ContainerSpec, GeoPoint, GpuSpec, PricePerHour, ServiceName, State};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::gateway::{GatewayNode, spawn_gateway};
use crate::keys;
use crate::roles::{Bound, RoleHandle, spawn_agent, spawn_checker, spawn_indexer};
use crate::runtime::{AnyRuntime, RuntimeKind};
use crate::settlement::{ANVIL_STATE_FILE, Backend, EvmConfig, NodeLedger, OnThread, SettlementConfig};
use crate::store::RecordStore;
use dci_gateway_core::CheckerSeat;

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
    /// The ledger backend; `None`: the data directory's `settlement.toml`,
    /// or embedded if there is none. The choice is written back there.
    pub settlement: Option<Backend>,
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

/// The evm backend, ready: its anvil (if the devnet runs one), the node
/// ledger (chain on its thread, API keys in the books), the config to write back, and whether the contracts were
/// just deployed (a fresh chain: the devnet consumer needs funding).
struct StartedChain {
    anvil: Option<Anvil>,
    ledger: NodeLedger,
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

/// Starts anvil if the config says so, connects to the deployment or
/// deploys the contracts (blocking: call it from a blocking thread).
fn start_chain(
    mut evm: EvmConfig,
    state: PathBuf,
    books: EmbeddedLedger,
    queue: RecordStore,
    settings: SettlementConfig,
    launch: Launch,
) -> anyhow::Result<StartedChain> {
    let anvil = if evm.anvil {
        let opts = AnvilOptions { state: Some(state), own_process_group: true, ..AnvilOptions::default() };
        let a = Anvil::start_with(&opts).context("starting anvil")?;
        evm.rpc_url = a.url();
        Some(a)
    } else {
        None
    };
    let connect = |dep: Deployment, evm: &EvmConfig| {
        let (url, key) = (evm.rpc_url.clone(), evm.settler_key.clone());
        OnThread::spawn("dci-chain", move || Ok(EvmLedger::connect(&url, &key, &dep)?))
    };
    let existing = match evm.deployment.clone() {
        Some(dep) => match connect(dep, &evm) {
            Ok(l) => Some(l),
            // The devnet's own chain was lost (anvil killed before it wrote its state).
            Err(e) if evm.anvil => {
                tracing::warn!(error = %e, "the devnet's chain lost its contracts; deploying them again");
                None
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to the dci ledger at {}", evm.rpc_url)),
        },
        None => None,
    };
    let (ledger, fresh) = match existing {
        Some(l) => (l, false),
        None => {
            let params = Params { epoch_secs: launch.epoch.as_secs().max(1), ..Params::default() };
            let dep = dci_chain::deploy(&evm.rpc_url, &evm.settler_key, &Genesis::devnet(), &params, &launch.committee)
                .with_context(|| format!("deploying the dci contracts to {}", evm.rpc_url))?;
            evm.deployment = Some(dep.clone());
            (connect(dep, &evm)?, true)
        }
    };
    let ledger = NodeLedger::on_chain(books, ledger, queue, &settings)?;
    Ok(StartedChain { anvil, ledger, config: evm, fresh })
}

/// What a CLI on this machine needs to talk to the devnet; written to
/// `<data-dir>/client.json` (0600: it holds an API key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientFile {
    /// Base URL of the API.
    pub api: String,
    /// The funded consumer's API key.
    pub api_key: String,
    /// The consumer's ledger account.
    pub account: String,
}

/// Name of the client file in the data directory.
pub const CLIENT_FILE: &str = "client.json";
/// The funded consumer account of a devnet.
pub const CONSUMER: &str = "consumer:devnet";
/// What the devnet consumer is given at creation.
pub const CONSUMER_FUNDS: Amount = Amount::ath(10_000);

/// The services every devnet container offers pre-installed: the built-in
/// render service and the catalogue's all-MiniLM-L6-v2 (its runtime runs
/// `dci service <name>`; a model's files are fetched into the model store on
/// first start).
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
    anvil: Option<Anvil>,
    roles: Vec<RoleHandle>,
    http: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
}

fn spec_for(i: usize) -> (ContainerSpec, PricePerHour, &'static str) {
    let p = &PROFILES[i % PROFILES.len()];
    let spec = ContainerSpec {
        gpu: Some(GpuSpec { model: p.gpu.into(), count: p.count, vram_gib: p.vram_gib, simulated: true }),
        cpu_cores: 16,
        ram_gib: 64 * p.count.max(1),
        disk_gib: 1000,
        bandwidth_up_mbps: 1000,
        bandwidth_down_mbps: 1000,
        location: GeoPoint::new(p.lat, p.lon).expect("profile locations are valid"),
    };
    (spec, p.price.parse().expect("profile prices are valid"), p.city)
}

impl Devnet {
    /// Starts every role; returns once the API is listening.
    pub async fn start(config: DevnetConfig) -> anyhow::Result<Devnet> {
        // Bind the API first: if the port is taken, fail before touching any state.
        let listener = tokio::net::TcpListener::bind(config.api_listen).await.with_context(|| {
            format!("binding the API on {} (is another devnet running? use --api-port)", config.api_listen)
        })?;
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
        let shutdown = CancellationToken::new();
        let key = |name: &str| keys::load_or_create(&dir.join("keys").join(format!("{name}.key")));
        let (indexer_id, gateway_id) = (key("indexer")?, key("gateway")?);
        // The first checker keeps the historical key name, so old data directories resume.
        let checker_ids = (0..config.checkers.max(1))
            .map(|i| key(&if i == 0 { "checker".to_owned() } else { format!("checker-{i}") }))
            .collect::<anyhow::Result<Vec<_>>>()?;

        // Ledger and the devnet consumer. The embedded ledger always opens:
        // on the evm backend it keeps the API keys.
        let mut settings = SettlementConfig::load(dir)?;
        if let Some(b) = config.settlement {
            settings.backend = b;
        }
        let genesis = Genesis::devnet();
        let books = EmbeddedLedger::open(dir.join("ledger.db"), &genesis)
            .with_context(|| format!("opening the ledger in {}", dir.display()))?;
        let client_path = dir.join(CLIENT_FILE);
        let new_client = !client_path.exists();
        let (mut ledger, fund_consumer, anvil, chain) = match settings.backend {
            Backend::Embedded => (NodeLedger::embedded(books), new_client, None, None),
            Backend::Evm => {
                let evm = settings.evm.take().unwrap_or_else(EvmConfig::devnet_anvil);
                let state = dir.join(ANVIL_STATE_FILE);
                let queue = RecordStore::open(&dir.join("ledger.db"), crate::settlement::QUEUE_TABLE)?;
                let cfg = settings.clone();
                // The genesis committee: every staked checker of the devnet.
                let committee = checker_ids.iter().map(|id| dci_chain::node_signer(id).address()).collect();
                let launch = Launch { committee, epoch: config.epoch };
                let started =
                    tokio::task::spawn_blocking(move || start_chain(evm, state, books, queue, cfg, launch)).await??;
                let chain = ChainInfo {
                    rpc_url: started.config.rpc_url.clone(),
                    deployment: started.config.deployment.clone().context("a started chain has a deployment")?,
                    own_anvil: started.anvil.is_some(),
                };
                settings.evm = Some(started.config);
                (started.ledger, started.fresh || new_client, started.anvil, Some(chain))
            }
        };
        settings.save(dir)?;
        let api_url = format!("http://{}", config.api_listen);
        let client = if new_client {
            let consumer = AccountId::new(CONSUMER).expect("valid account name");
            let api_key = ledger.create_api_key(&consumer, rand::random())?;
            ClientFile { api: api_url.clone(), api_key, account: consumer.to_string() }
        } else {
            let mut c: ClientFile = serde_json::from_str(&std::fs::read_to_string(&client_path)?)
                .with_context(|| format!("reading {}", client_path.display()))?;
            c.api = api_url.clone();
            c
        };
        if fund_consumer {
            let consumer = AccountId::new(&client.account).context("the client file's account")?;
            crate::settlement::blocking(|| {
                ledger.transfer(&dci_ledger::accounts::liquidity(), &consumer, CONSUMER_FUNDS)
            })?;
        }
        keys::write_private(&client_path, &serde_json::to_string_pretty(&client)?)?;

        // Indexer, gateway and checkers: bind all first so each knows the others' addresses.
        let indexer_bound = Bound::bind(indexer_id, "127.0.0.1:0").await?;
        let gateway_bound = Bound::bind(gateway_id.clone(), "127.0.0.1:0").await?;
        let gateway_addr = gateway_bound.addr();
        let mut checker_bounds = Vec::new();
        for (i, id) in checker_ids.iter().enumerate() {
            crate::settlement::blocking(|| bond(&mut ledger, &id.id(), StakeRole::Checker, checker_stake(i)))?;
            checker_bounds.push(Bound::bind(id.clone(), "127.0.0.1:0").await?);
        }
        let checker_nodes: Vec<_> = checker_bounds.iter().map(|b| b.id()).collect();
        let indexer_addr = indexer_bound.addr();
        let indexer_cfg = dci_indexer::Config {
            standby_every: Some(config.inspect_every),
            seed: rand::random(),
            // The gateway holds the ledger: it says what a registrant bonded.
            stake_oracle: Some((gateway_id.id(), gateway_addr.clone())),
            // Before the first committee, inspections go to the first checker.
            ..dci_indexer::Config::new(checker_bounds[0].addr(), checker_nodes.clone(), vec![gateway_id.id()])
        };
        let registry = Arc::new(RecordStore::open(&dir.join("indexer.db"), "containers")?);
        let indexer_node = indexer_bound.id();
        let mut roles = vec![spawn_indexer(indexer_bound, indexer_cfg, registry, shutdown.clone())?];

        // Gateway: it also coordinates the epoch committee.
        let seats = checker_ids
            .iter()
            .zip(&checker_bounds)
            .map(|(id, b)| CheckerSeat {
                id: id.id(),
                addr: b.addr(),
                vrf_public: dci_committee::CommitteeKey::from_identity(id).public(),
                chain_signer: dci_chain::node_signer(id).address().into_array(),
            })
            .collect::<Vec<_>>();
        // On a chain, slashes need the members' chain signatures, counted
        // against the epoch's committee on chain (the genesis committee, or
        // one signed by two thirds of the committee before it); and epochs
        // are the chain's: the deployed length, whatever --epoch-secs says.
        let (domain, epoch) = crate::settlement::blocking(|| {
            let domain = ledger.chain_domain()?;
            let epoch = match domain {
                Some(_) => Duration::from_secs(Settlement::params(&ledger)?.epoch_secs),
                None => config.epoch,
            };
            Ok::<_, dci_ledger::LedgerError>((domain, epoch))
        })?;
        if epoch != config.epoch {
            tracing::warn!(
                chain_secs = epoch.as_secs(),
                asked_secs = config.epoch.as_secs(),
                "the chain's ledger was deployed with another epoch length; the gateway follows the chain's"
            );
        }
        let sessions = RecordStore::open(&dir.join("gateway.db"), crate::gateway::SESSIONS_TABLE)?;
        let mut gateway_cfg = dci_gateway_core::Config::new(vec![dci_gateway_core::Peer {
            id: indexer_node,
            addr: indexer_addr.clone(),
        }]);
        gateway_cfg.models = crate::gateway::catalogue_terms(&dci_models::Catalogue::builtin());
        gateway_cfg.epoch = Some(epoch);
        gateway_cfg.dev_network = genesis.network() == dci_ledger::NetworkKind::Dev;
        gateway_cfg.min_container_stake =
            crate::settlement::blocking(|| Settlement::params(&ledger))?.min_container_stake;
        gateway_cfg.committee = Some(dci_gateway_core::CommitteeConfig {
            network: "devnet".into(),
            size: config.committee_size.max(1),
            checkers: seats.clone(),
            chain: domain.map(|domain| dci_gateway_core::ChainHooks {
                domain,
                vote_signer: crate::gateway::chain_vote_signer,
                committee_signer: crate::gateway::chain_committee_signer,
            }),
        });
        // A restarted gateway settles what the last run left unfinished first.
        let (gateway_role, gateway) =
            spawn_gateway(gateway_bound, gateway_cfg, gateway_id.clone(), ledger, sessions, shutdown.clone())?;
        roles.push(gateway_role);
        let coordinator = dci_checker::Coordinator { id: gateway_id.id(), addr: gateway_addr.clone() };
        for (bound, identity) in checker_bounds.into_iter().zip(&checker_ids) {
            let checker_cfg = dci_checker::Config {
                challenge_n: config.challenge_n,
                coordinator: Some(coordinator.clone()),
                // Every checker knows every checker's chain signer (the
                // devnet's network), to sign committees for the chain.
                chain_signers: seats.iter().map(|s| (s.id, s.chain_signer)).collect(),
                ..dci_checker::Config::devnet(indexer_addr.clone(), vec![indexer_node])
            };
            roles.push(spawn_checker(bound, checker_cfg, identity.clone(), shutdown.clone())?);
        }
        // Other hosts join with `dci container run`, reading this file.
        crate::host::Network {
            indexer: crate::host::Peer { id: indexer_node, addr: indexer_addr.clone() },
            gateways: vec![gateway_id.id()],
            checkers: checker_nodes.clone(),
            api: Some(api_url.clone()),
        }
        .save(dir)?;
        // Containers: as many as asked, and never fewer than already exist.
        let existing = std::fs::read_dir(dir.join("keys"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("container-"))
            .count();
        let n = config.containers.max(existing);
        let runtime = Arc::new(match config.runtime {
            RuntimeKind::Process => AnyRuntime::Process(ProcessRuntime::new(config.service_program.clone(), vec![])),
            RuntimeKind::Docker => {
                let agent = format!("devnet-{}", gateway_id.id().short());
                AnyRuntime::Docker(crate::runtime::devnet_docker(&config.service_program, &agent).await?)
            }
        });
        let mut containers = Vec::new();
        for i in 0..n {
            let identity = key(&format!("container-{i}"))?;
            gateway.with_ledger(|l| bond(l, &identity.id(), StakeRole::Container, CONTAINER_STAKE))?;
            let (spec, price, city) = spec_for(i);
            let gpu = spec.gpu.clone().expect("profiles have GPUs");
            let agent_cfg = AgentConfig {
                indexer_addr: indexer_addr.clone(),
                listen_addr: String::new(),
                spec,
                services: DEVNET_SERVICES.iter().map(|s| ServiceName::new(*s).expect("valid")).collect(),
                price,
                slots: 2,
                payout: AccountId::for_node(&identity.id()),
                indexers: vec![indexer_node],
                checkers: checker_nodes.clone(),
                gateways: vec![gateway_id.id()],
                heartbeat_interval: Duration::from_secs(1),
                behaviour: match config.dishonest {
                    Some(b) if i + 1 == n => b,
                    _ => dci_capacity::Behaviour::Honest,
                },
            };
            let cheat = if agent_cfg.behaviour.is_honest() {
                String::new()
            } else {
                format!("  DISHONEST: {}", agent_cfg.behaviour.name())
            };
            let id = identity.id();
            let h = spawn_agent(identity, "127.0.0.1:0", agent_cfg, runtime.clone(), shutdown.clone()).await?;
            containers.push(format!(
                "{}  {} x{} {} GiB (simulated)  {}  {} ATH/h  services: {}  at {}{cheat}",
                id.short(),
                gpu.model,
                gpu.count,
                gpu.vram_gib,
                city,
                price.0,
                DEVNET_SERVICES.join(","),
                h.addr
            ));
            roles.push(h);
        }

        // HTTP API.
        let metrics = crate::metrics::install();
        let router = dci_gateway::server::router(gateway.clone(), metrics);
        let stop = shutdown.clone();
        let http = tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await;
        });
        Ok(Devnet { api_url, client, gateway, containers, chain, anvil, roles, http, shutdown })
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
        self.gateway.stop_all().await;
        // What the sessions settled goes on chain before anvil stops.
        match self.gateway.with_ledger(|l| l.flush()) {
            Ok(0) => {}
            Ok(ops) => tracing::info!(ops, "queued settlement sent at shutdown"),
            Err(e) => tracing::warn!(error = %e, "queued settlement not sent at shutdown; the next start sends it"),
        }
        self.shutdown.cancel();
        let _ = self.http.await;
        for r in self.roles {
            let _ = r.task.await;
        }
        let report = self.gateway.with_ledger(|l| l.check_invariant());
        match report {
            Ok(r) => {
                tracing::info!(balances = %r.balances, escrowed = %r.escrowed, "supply invariant holds at shutdown")
            }
            Err(e) => tracing::error!(error = %e, "supply invariant broken at shutdown"),
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
