//! Each role built from its own data directory, as its own process builds
//! it (`dci gateway|indexer|checker run`, R-SC1) and as `dci devnet` builds
//! every role in one process: the node config (`node.toml`,
//! [`crate::config`]), the key file, and the network file it names
//! ([`crate::network`]). A role reads nothing else: no shared disk, no
//! shared process. Each watches its network file (merged with the chain's
//! endpoint registry when its config has `[chain]`) and hands its core the
//! new peers when it changes ([`crate::membership::follow`]).
//! The container host is built the same way by [`crate::host::run`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dci_ledger::{Genesis, Settlement};
use dci_proto::{Identity, NetworkId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{CheckerConfig, GatewayConfig, IndexerConfig, NodeFile};
use crate::gateway::{GatewayNode, spawn_gateway};
use crate::membership::{ChainSection, Start, follow};
use crate::network::{CheckerEntry, GatewayEntry, IndexerEntry, Network};
use crate::roles::{Bound, RoleHandle, spawn_checker, spawn_indexer};
use crate::settlement::NodeLedger;
use crate::store::RecordStore;

/// What a CLI on this machine needs to talk to a gateway as its funded
/// consumer (`consumer` in the gateway's node.toml; the devnet's): written
/// to `<data-dir>/client.json` (0600: it holds an API key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientFile {
    /// Base URL of the API.
    pub api: String,
    /// The funded consumer's API key.
    pub api_key: String,
    /// The consumer's ledger account.
    pub account: String,
}

/// Name of the client file in a data directory.
pub const CLIENT_FILE: &str = "client.json";

/// An indexer's peers from the network file: it inspects through the
/// checkers (the first before any committee), takes matches from the
/// gateways, and asks the first gateway what a registrant bonded.
pub fn indexer_peers(network: &Network) -> anyhow::Result<dci_indexer::Peers> {
    let oracle = network.ledger_gateway()?;
    let first = network.checkers.first().context(
        "checkers: expected at least one checker (the indexer sends inspections to the first before any committee), found none",
    )?;
    Ok(dci_indexer::Peers {
        checker_addr: first.addr.clone(),
        checkers: network.checker_ids(),
        gateways: network.gateway_ids(),
        stake_oracle: Some((oracle.id, oracle.addr.clone())),
    })
}

/// A checker's peers: inspections from the indexers (each one's verdicts
/// to it), the first gateway as the epoch coordinator, every checker's
/// chain signer.
pub fn checker_peers(network: &Network) -> anyhow::Result<dci_checker::Peers> {
    let coordinator = network.ledger_gateway()?;
    Ok(dci_checker::Peers {
        indexers: network.indexer_peers()?,
        coordinator: Some(dci_checker::Coordinator { id: coordinator.id, addr: coordinator.addr.clone() }),
        chain_signers: network.checkers.iter().map(|c| (c.id, c.chain_signer)).collect(),
    })
}

/// A container's peers: it registers and heartbeats with every indexer and
/// trusts every listed checker and gateway.
pub fn container_peers(network: &Network) -> anyhow::Result<dci_agent::Peers> {
    Ok(dci_agent::Peers {
        indexers: network.indexer_peers()?,
        checkers: network.checker_ids(),
        gateways: network.gateway_ids(),
    })
}

/// A gateway's peers: the indexers it asks (each request the one the epoch
/// seed names among the live ones) and the committee seats.
pub fn gateway_peers(
    network: &Network,
) -> anyhow::Result<(Vec<dci_gateway_core::Peer>, Vec<dci_gateway_core::CheckerSeat>)> {
    let indexers = network.indexer_peers()?;
    let seats = network.checkers.iter().map(CheckerEntry::seat).collect();
    Ok((indexers, seats))
}

/// Logs a warning when neither the network file nor the chain's registry
/// (with `[chain]`) lists this node.
fn warn_unlisted(role: &str, listed: bool, id: &Identity, path: &Path, chain: bool) {
    if listed {
        return;
    }
    if chain && role != "gateway" {
        tracing::warn!(
            id = %id.id(),
            file = %path.display(),
            "this {role} is neither in the network file nor in the chain's registry: other nodes will not trust it \
             until it is (`dci {role} stake`, then `dci {role} register`; or add `dci {role} id` to the file)"
        );
    } else {
        tracing::warn!(
            id = %id.id(),
            file = %path.display(),
            "this {role} is not in the network file: other nodes will not trust it (add its entry: `dci {role} id`)"
        );
    }
}

/// Follows the membership (the network file at `path`, merged with the
/// chain's registry with `chain`) and sends the peers `map` derives from
/// each new version into `tx`; a version that does not give the role's
/// peers is logged.
fn watch_peers<P: Send + 'static, I: Send + 'static>(
    path: PathBuf,
    chain: Option<ChainSection>,
    start: Start,
    shutdown: CancellationToken,
    map: fn(&Network) -> anyhow::Result<P>,
    wrap: fn(P) -> I,
    tx: mpsc::Sender<I>,
) {
    follow(path, chain, start, shutdown, move |n| {
        let tx = tx.clone();
        async move {
            match map(&n) {
                Ok(p) => {
                    let _ = tx.send(wrap(p)).await;
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the new network file is not usable; keeping the peers")
                }
            }
        }
    });
}

/// Starts the indexer of data directory `dir` until `shutdown`.
pub async fn start_indexer(dir: &Path, shutdown: CancellationToken) -> anyhow::Result<RoleHandle> {
    let config = IndexerConfig::load(dir)?;
    let identity = config.identity(dir)?;
    let path = config.network_path(dir);
    let start = crate::membership::load(&path, config.chain.as_ref()).await?;
    let network = start.network();
    let peers = indexer_peers(&network).with_context(|| format!("the network file {}", path.display()))?;
    let listed = network.indexers.iter().any(|x| x.id == identity.id());
    warn_unlisted("indexer", listed, &identity, &path, config.chain.is_some());
    let core = dci_indexer::Config {
        standby_every: Some(Duration::from_secs(config.inspect_every_secs)),
        seed: rand::random(),
        stake_oracle: peers.stake_oracle,
        ..dci_indexer::Config::new(peers.checker_addr, peers.checkers, peers.gateways)
    };
    core.validate().map_err(|e| anyhow::anyhow!("indexer configuration: {e}"))?;
    let store = Arc::new(RecordStore::open(&dir.join("indexer.db"), "containers")?);
    let bound = Bound::bind(identity, NetworkId::of(&network.name), &config.listen).await?;
    let (tx, rx) = mpsc::channel(4);
    let role = spawn_indexer(bound, core, store, rx, shutdown.clone())?;
    watch_peers(path, config.chain, start, shutdown, indexer_peers, dci_indexer::Input::Peers, tx);
    Ok(role)
}

/// Starts the checker of data directory `dir` until `shutdown`.
pub async fn start_checker(dir: &Path, shutdown: CancellationToken) -> anyhow::Result<RoleHandle> {
    let config = CheckerConfig::load(dir)?;
    let identity = config.identity(dir)?;
    let path = config.network_path(dir);
    let start = crate::membership::load(&path, config.chain.as_ref()).await?;
    let network = start.network();
    let peers = checker_peers(&network).with_context(|| format!("the network file {}", path.display()))?;
    match network.checkers.iter().find(|c| c.id == identity.id()) {
        Some(listed) => {
            let mine = CheckerEntry::of(&identity, listed.addr.clone());
            anyhow::ensure!(
                listed.vrf_public == mine.vrf_public && listed.chain_signer == mine.chain_signer,
                "{}: expected this checker's vrf_public {} and chain_signer 0x{} (from its key), found {} and 0x{}",
                path.display(),
                hex::encode(mine.vrf_public),
                hex::encode(mine.chain_signer),
                hex::encode(listed.vrf_public),
                hex::encode(listed.chain_signer)
            );
        }
        None => warn_unlisted("checker", false, &identity, &path, config.chain.is_some()),
    }
    let core = dci_checker::Config {
        indexers: peers.indexers,
        challenge_n: config.challenge_n,
        params: dci_capacity::Params::DEFAULT,
        min_deadline: config.min_deadline(),
        coordinator: peers.coordinator,
        evaluation: config.evaluation.floor(),
        chain_signers: peers.chain_signers,
    };
    let bound = Bound::bind(identity.clone(), NetworkId::of(&network.name), &config.listen).await?;
    let (tx, rx) = mpsc::channel(4);
    let role = spawn_checker(bound, core, identity, rx, shutdown.clone())?;
    watch_peers(path, config.chain, start, shutdown, checker_peers, dci_checker::Input::Peers, tx);
    Ok(role)
}

/// Something done on a gateway's ledger after it opens and before the
/// gateway runs (the devnet's faucet: bonds and funds). Blocking.
pub type LedgerSetup = Box<dyn FnOnce(&mut NodeLedger) -> anyhow::Result<()> + Send>;

/// A running gateway: its role, its node (the API's [`GatewayNode`]) and its
/// HTTP API.
pub struct GatewayRun {
    /// The role (node messages).
    pub role: RoleHandle,
    /// What the API and the devnet hold.
    pub node: Arc<GatewayNode>,
    /// Its API's base URL (the network file's, else `http://<api_listen>`).
    pub api_url: String,
    /// The funded consumer (`consumer` in node.toml), if any.
    pub client: Option<ClientFile>,
    http: JoinHandle<()>,
}

impl GatewayRun {
    /// Stops and settles every running session, then sends queued
    /// settlement to the chain: what a gateway does before it stops.
    pub async fn settle(&self) {
        self.node.stop_all().await;
        match self.node.with_ledger(|l| l.flush()) {
            Ok(0) => {}
            Ok(ops) => tracing::info!(ops, "queued settlement sent at shutdown"),
            Err(e) => tracing::warn!(error = %e, "queued settlement not sent at shutdown; the next start sends it"),
        }
    }

    /// Waits for the API and the role to end (after shutdown), then checks
    /// the supply invariant.
    pub async fn join(self) {
        let _ = self.http.await;
        let _ = self.role.task.await;
        match self.node.with_ledger(|l| l.check_invariant()) {
            Ok(r) => {
                tracing::info!(balances = %r.balances, escrowed = %r.escrowed, "supply invariant holds at shutdown")
            }
            Err(e) => tracing::error!(error = %e, "supply invariant broken at shutdown"),
        }
    }
}

/// Starts the gateway of data directory `dir` until `shutdown`: binds its
/// API (first, so a taken port fails before anything is touched) and its
/// node port, opens its ledger, runs `setup` on it, creates the funded
/// consumer if node.toml asks and it does not exist yet, settles what an
/// earlier run left unfinished, and serves.
pub async fn start_gateway(
    dir: &Path,
    shutdown: CancellationToken,
    setup: Option<LedgerSetup>,
) -> anyhow::Result<GatewayRun> {
    let config = GatewayConfig::load(dir)?;
    let listener = tokio::net::TcpListener::bind(config.api_addr()).await.with_context(|| {
        format!("binding the API on {} (is another gateway or devnet running there?)", config.api_listen)
    })?;
    let identity = config.identity(dir)?;
    let path = config.network_path(dir);
    let start = crate::membership::load(&path, config.chain.as_ref()).await?;
    let network = start.network();
    let (indexers, seats) = gateway_peers(&network).with_context(|| format!("the network file {}", path.display()))?;
    let me = network.gateways.iter().find(|g| g.id == identity.id());
    warn_unlisted("gateway", me.is_some(), &identity, &path, false);
    let api_url = me.map_or_else(|| config.api_url(), |g| g.api.clone());
    // A certificate that does not load fails the start, before any state is touched.
    let tls = match config.tls_files(dir) {
        Some(files) => {
            Some(files.load().with_context(|| format!("{}: [tls]", dir.join(crate::config::NODE_FILE).display()))?)
        }
        None => None,
    };
    let bound = Bound::bind(identity.clone(), NetworkId::of(&network.name), &config.listen).await?;

    // The ledger, the operator's set-up, the funded consumer.
    let genesis = if config.dev_network { Genesis::devnet() } else { Genesis::default() };
    let (owned, g) = (dir.to_path_buf(), genesis.clone());
    let mut ledger = tokio::task::spawn_blocking(move || crate::settlement::open(&owned, &g)).await??;
    if let Some(setup) = setup {
        ledger = tokio::task::spawn_blocking(move || setup(&mut ledger).map(|()| ledger)).await??;
    }
    let client = match &config.consumer {
        Some(c) => Some(consumer(dir, c, &api_url, &mut ledger)?),
        None => None,
    };

    // On a chain, slashes need the members' chain signatures, counted
    // against the epoch's committee on chain (the genesis committee, or one
    // signed by two thirds of the committee before it); and epochs are the
    // chain's: the deployed length, whatever epoch_secs says.
    let (domain, epoch, params) = crate::settlement::blocking(|| {
        let domain = ledger.chain_domain()?;
        let params = Settlement::params(&ledger)?;
        let epoch = match domain {
            Some(_) => Duration::from_secs(params.epoch_secs),
            None => config.epoch(),
        };
        Ok::<_, dci_ledger::LedgerError>((domain, epoch, params))
    })?;
    if epoch != config.epoch() {
        tracing::warn!(
            chain_secs = epoch.as_secs(),
            asked_secs = config.epoch_secs,
            "the chain's ledger was deployed with another epoch length; the gateway follows the chain's"
        );
    }
    let mut core = dci_gateway_core::Config::new(indexers);
    core.models = crate::gateway::catalogue_terms(&dci_models::Catalogue::builtin());
    core.epoch = Some(epoch);
    core.dev_network = genesis.network() == dci_ledger::NetworkKind::Dev;
    core.min_container_stake = params.min_container_stake;
    core.committee = Some(dci_gateway_core::CommitteeConfig {
        network: network.name.clone(),
        size: config.committee_size,
        checkers: seats,
        chain: domain.map(|domain| dci_gateway_core::ChainHooks {
            domain,
            vote_signer: crate::gateway::chain_vote_signer,
            committee_signer: crate::gateway::chain_committee_signer,
        }),
    });
    let sessions = RecordStore::open(&dir.join("gateway.db"), crate::gateway::SESSIONS_TABLE)?;
    // A restarted gateway settles what the last run left unfinished first.
    let refresh = Duration::from_millis(config.view_refresh_ms);
    let (role, node) = spawn_gateway(bound, core, refresh, identity.clone(), ledger, sessions, shutdown.clone())?;

    // The HTTP API.
    let options = dci_gateway::server::ServerOptions { limits: config.api_limits };
    let router = dci_gateway::server::router_with(node.clone(), crate::metrics::install(), options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = shutdown.clone();
    let http = tokio::spawn(async move {
        let stopped = async move { stop.cancelled().await };
        if let Err(e) = dci_gateway::server::serve(listener, router, tls, stopped).await {
            tracing::error!(error = %e, "the API stopped serving");
        }
    });
    if let Some(relay) = &config.relay {
        crate::relay::start(relay, identity.clone(), node.clone(), shutdown.clone()).await?;
    }
    let peers = node.clone();
    follow(path, config.chain.clone(), start, shutdown, move |n| {
        let node = peers.clone();
        async move {
            match gateway_peers(&n) {
                Ok((indexers, seats)) => node.peers(indexers, seats).await,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the new network file is not usable; keeping the peers")
                }
            }
        }
    });
    Ok(GatewayRun { role, node, api_url, http, client })
}

/// The funded consumer of a gateway: created with its API key and funds
/// when `<dir>/client.json` does not exist, else read from it.
fn consumer(
    dir: &Path,
    c: &crate::config::Consumer,
    api_url: &str,
    ledger: &mut NodeLedger,
) -> anyhow::Result<ClientFile> {
    let path = dir.join(CLIENT_FILE);
    let client = if path.exists() {
        let mut c: ClientFile = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        c.api = api_url.to_owned();
        c
    } else {
        let (account, funds) = c.parse()?;
        let api_key = ledger.create_api_key(&account, rand::random())?;
        crate::settlement::blocking(|| ledger.transfer(&dci_ledger::accounts::liquidity(), &account, funds))?;
        tracing::info!(%account, %funds, "created the funded consumer");
        ClientFile { api: api_url.to_owned(), api_key, account: account.to_string() }
    };
    crate::keys::write_private(&path, &serde_json::to_string_pretty(&client)?)?;
    Ok(client)
}

/// The network file's entry for the node of data directory `dir` whose
/// node config is `role`'s (its key is created if missing): what an
/// operator adds to the network file. The address is its listen address
/// (replace a wildcard host with the one other machines reach).
pub fn entry(role: &str, dir: &Path) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Snippet {
        #[serde(skip_serializing_if = "Vec::is_empty")]
        gateways: Vec<GatewayEntry>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        indexers: Vec<IndexerEntry>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        checkers: Vec<CheckerEntry>,
    }
    let mut s = Snippet { gateways: vec![], indexers: vec![], checkers: vec![] };
    let listen = match role {
        "gateway" => {
            let c = GatewayConfig::load(dir)?;
            let id = c.identity(dir)?.id();
            let relay = c.relay.as_ref().map(|r| r.listen.clone());
            s.gateways.push(GatewayEntry { id, addr: c.listen.clone(), api: c.api_url(), relay });
            c.listen
        }
        "indexer" => {
            let c = IndexerConfig::load(dir)?;
            s.indexers.push(IndexerEntry { id: c.identity(dir)?.id(), addr: c.listen.clone() });
            c.listen
        }
        "checker" => {
            let c = CheckerConfig::load(dir)?;
            s.checkers.push(CheckerEntry::of(&c.identity(dir)?, c.listen.clone()));
            c.listen
        }
        other => anyhow::bail!("expected a role gateway, indexer or checker, found {other:?}"),
    };
    let mut text = format!("# The network file's entry of this {role}.\n");
    if listen.starts_with("0.0.0.0:") || listen.starts_with("[::]:") {
        text.push_str("# Its addresses listen on every interface: put the host other machines reach it at.\n");
    }
    text.push_str(&toml::to_string_pretty(&s)?);
    Ok(text)
}

/// The request that publishes the endpoint of the node with key
/// `identity` as a `role` reached at `addr` (empty: withdraws its record)
/// in the registry of `chain`, signed now (the sequence is the node's
/// clock in ms) for that chain's id, which is asked of its RPC endpoint.
pub async fn register_request(
    identity: &Identity,
    role: dci_proto::EndpointRole,
    addr: String,
    chain: &ChainSection,
) -> anyhow::Result<dci_gateway::api::NodeRegisterRequest> {
    let registry = chain.registry_address()?;
    let domain = dci_chain::registry_domain(&chain.rpc_url, registry)
        .await
        .with_context(|| format!("asking {} for its chain id", chain.rpc_url))?;
    let (vrf_public, chain_signer) = match role {
        dci_proto::EndpointRole::Checker if !addr.is_empty() => {
            let e = CheckerEntry::of(identity, addr.clone());
            (e.vrf_public, e.chain_signer)
        }
        _ => ([0; 32], [0; 20]),
    };
    let record = dci_proto::EndpointRecord {
        node: identity.id(),
        role,
        seq: crate::clock::now().0,
        addr,
        vrf_public,
        chain_signer,
    };
    record.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let signature = record.sign(identity, &domain);
    let keys = vrf_public != [0; 32];
    Ok(dci_gateway::api::NodeRegisterRequest {
        node: identity.id().to_string(),
        role: role.as_str().into(),
        seq: record.seq,
        addr: record.addr,
        vrf_public: keys.then(|| hex::encode(vrf_public)),
        chain_signer: keys.then(|| format!("0x{}", hex::encode(chain_signer))),
        signature: hex::encode(signature),
    })
}

/// The address a node registers: `addr` if given, else its `listen`,
/// which must then name a host other machines reach.
pub fn register_addr(listen: &str, addr: Option<String>) -> anyhow::Result<String> {
    if let Some(a) = addr {
        crate::network::check_addr("--addr", &a)?;
        return Ok(a);
    }
    anyhow::ensure!(
        !(listen.starts_with("0.0.0.0:") || listen.starts_with("[::]:")),
        "listen is {listen:?}, every interface: pass --addr host:port, the address other machines reach this node at"
    );
    Ok(listen.to_owned())
}
