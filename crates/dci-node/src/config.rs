//! The node config of each role that runs on its own (`dci gateway|indexer|
//! checker run`): ONE file, `node.toml`, in the node's data directory.
//! TOML, unknown keys refused, ids as 64 hex digits; a listen address with
//! a fixed port (a restart keeps the address the network file gives
//! others), the key file (created 0600 if missing), and the network file it
//! joins ([`crate::network`]). Relative paths are from the data directory.
//! A container host's config is `container.toml` ([`crate::host`]).
//!
//! Each role's keys, with their defaults, are in its `EXAMPLE`, which
//! `dci <role> run --print-example` prints.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use dci_model::{AccountId, Amount, NodeId};
use dci_proto::Identity;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::membership::ChainSection;
use crate::network::{Network, check_addr, opt_hex_id, resolve};
use dci_gateway::limits::LimitsConfig;
use dci_gateway::server::TlsFiles;

/// The node config's name in a data directory.
pub const NODE_FILE: &str = "node.toml";
/// The default key file, in the data directory.
pub const DEFAULT_KEY_FILE: &str = "node.key";

fn default_key() -> PathBuf {
    PathBuf::from(DEFAULT_KEY_FILE)
}

/// What every role's node config has.
#[derive(Clone, Copy, Debug)]
pub struct Base<'a> {
    /// The node id the key file must hold (optional, a check).
    pub id: Option<NodeId>,
    /// Where it listens for node messages.
    pub listen: &'a str,
    /// Its key file.
    pub key: &'a Path,
    /// The network file it joins.
    pub network: &'a Path,
    /// The chain's endpoint registry, merged into the network file.
    pub chain: Option<&'a ChainSection>,
}

/// A role's node config.
pub trait NodeFile: DeserializeOwned + Serialize + Sized {
    /// The role, as the command names it (`dci <role> run`).
    const ROLE: &'static str;
    /// A commented example: every key, its meaning and its default.
    const EXAMPLE: &'static str;
    /// The keys every role has.
    fn base(&self) -> Base<'_>;
    /// The role's own checks (the base keys are checked before).
    fn validate(&self) -> anyhow::Result<()>;

    /// Parses and checks `text`.
    fn parse(text: &str) -> anyhow::Result<Self> {
        let c: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        check_addr("listen", c.base().listen)?;
        if let Some(chain) = c.base().chain {
            chain.validate()?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Reads and checks `<dir>/node.toml`.
    fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(NODE_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("reading {} (`dci {} run --print-example` shows one)", path.display(), Self::ROLE)
        })?;
        Self::parse(&text).with_context(|| format!("{}: not a valid {} config", path.display(), Self::ROLE))
    }

    /// Writes it to `<dir>/node.toml`.
    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = format!(
            "# The {role}'s node config (`dci {role} run --print-example` explains every key).\n{}",
            toml::to_string_pretty(self)?,
            role = Self::ROLE
        );
        crate::keys::write_private(&dir.join(NODE_FILE), &text)
    }

    /// The node's key (created 0600 if missing), checked against `id`.
    fn identity(&self, dir: &Path) -> anyhow::Result<Identity> {
        let base = self.base();
        let path = resolve(dir, base.key);
        let identity = crate::keys::load_or_create(&path)?;
        if let Some(id) = base.id {
            anyhow::ensure!(
                id == identity.id(),
                "id: expected the id of the key file {} ({}), found {id}",
                path.display(),
                identity.id()
            );
        }
        Ok(identity)
    }

    /// Where the network file is.
    fn network_path(&self, dir: &Path) -> PathBuf {
        resolve(dir, self.base().network)
    }

    /// The network file it joins.
    fn network(&self, dir: &Path) -> anyhow::Result<Network> {
        Network::load(&self.network_path(dir))
    }
}

/// `dci indexer run`: `node.toml` of an indexer. Its registry of containers
/// is `<data-dir>/indexer.db`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexerConfig {
    /// The node id its key must hold (optional; catches a config copied
    /// with the wrong key).
    #[serde(default, with = "opt_hex_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<NodeId>,
    /// Where it listens for node messages, `host:port` with a fixed port.
    pub listen: String,
    /// Its key file (default `node.key`).
    #[serde(default = "default_key")]
    pub key: PathBuf,
    /// The network file it joins.
    pub network: PathBuf,
    /// Each schedulable container is inspected at random about once per
    /// this many seconds (default 3600).
    #[serde(default = "default_inspect_every")]
    pub inspect_every_secs: u64,
    /// The chain's endpoint registry: its staked, signed checkers and
    /// indexers are merged into the network file and followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSection>,
}

fn default_inspect_every() -> u64 {
    dci_indexer::DEFAULT_STANDBY_EVERY.as_secs()
}

impl NodeFile for IndexerConfig {
    const ROLE: &'static str = "indexer";
    const EXAMPLE: &'static str = r#"# <data-dir>/node.toml of `dci indexer run`. Relative paths are from the data
# directory; its registry of containers is <data-dir>/indexer.db.

# Optional: the node id its key file must hold (64 hex digits; `dci indexer id` prints it).
# id = "..."
# Where it listens for node messages: host:port, a fixed port (required).
listen = "0.0.0.0:7100"
# Its ed25519 key, created 0600 if missing (default "node.key").
key = "node.key"
# The network file it joins (required): trusted gateways (the first is its
# stake oracle) and checkers (the first inspects before any committee).
network = "network.toml"
# Each schedulable container is inspected at random about once per this many
# seconds (default 3600).
inspect_every_secs = 3600

# Optional, on the evm backend: the chain's endpoint registry. Staked checkers
# and indexers registered there (`dci indexer register`, `dci checker register`)
# are verified, merged into the network file (adding nodes, or replacing the
# file's entry of the same id) and followed every poll_secs.
# [chain]
# rpc_url = "http://127.0.0.1:8545"   # the chain's JSON-RPC endpoint
# registry = "0x..."                  # DciRegistry (`dci chain deploy` prints it)
# poll_secs = 5                       # how often to read it (default 5)
"#;

    fn base(&self) -> Base<'_> {
        Base { id: self.id, listen: &self.listen, key: &self.key, network: &self.network, chain: self.chain.as_ref() }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.inspect_every_secs >= 1, "inspect_every_secs: expected at least 1, found 0");
        Ok(())
    }
}

/// How a checker judges in-service evaluations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Floor {
    /// What the devnet's CPU renderers sustain on a shared machine.
    #[default]
    Devnet,
    /// What an interactive stream must sustain in production.
    Production,
}

impl Floor {
    /// The checker core's floor.
    pub fn floor(self) -> dci_checker::EvaluationFloor {
        match self {
            Floor::Devnet => dci_checker::EvaluationFloor::DEVNET,
            Floor::Production => dci_checker::EvaluationFloor::PRODUCTION,
        }
    }
}

/// `dci checker run`: `node.toml` of a checker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckerConfig {
    /// The node id its key must hold (optional).
    #[serde(default, with = "opt_hex_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<NodeId>,
    /// Where it listens for node messages, `host:port` with a fixed port.
    pub listen: String,
    /// Its key file (default `node.key`).
    #[serde(default = "default_key")]
    pub key: PathBuf,
    /// The network file it joins.
    pub network: PathBuf,
    /// The largest proof-of-capacity dimension n (default 256; a
    /// production network uses 16384).
    #[serde(default = "default_challenge_n")]
    pub challenge_n: u32,
    /// No challenge deadline is shorter than this many seconds (default 10,
    /// for shared machines; 0 in production).
    #[serde(default = "default_min_deadline")]
    pub min_deadline_secs: u64,
    /// The in-service evaluation floor: `devnet` (default) or `production`.
    #[serde(default)]
    pub evaluation: Floor,
    /// The chain's endpoint registry: its staked, signed checkers and
    /// indexers are merged into the network file and followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSection>,
}

fn default_challenge_n() -> u32 {
    256
}
fn default_min_deadline() -> u64 {
    10
}

impl NodeFile for CheckerConfig {
    const ROLE: &'static str = "checker";
    const EXAMPLE: &'static str = r#"# <data-dir>/node.toml of `dci checker run`. Relative paths are from the data
# directory.

# Optional: the node id its key file must hold (64 hex digits; `dci checker id`
# prints it, with the VRF key and chain signer the network file lists).
# id = "..."
# Where it listens for node messages: host:port, a fixed port (required).
listen = "0.0.0.0:7200"
# Its ed25519 key, created 0600 if missing (default "node.key"); its committee
# VRF key and chain signer derive from it.
key = "node.key"
# The network file it joins (required): the indexers it takes inspections from
# (verdicts go to the first), the first gateway as its epoch coordinator, and
# every checker's chain signer.
network = "network.toml"
# The largest proof-of-capacity matrix dimension (default 256; production 16384).
challenge_n = 256
# No challenge deadline is shorter than this many seconds (default 10; production 0).
min_deadline_secs = 10
# In-service evaluation floor: "devnet" (default) or "production".
evaluation = "devnet"

# Optional, on the evm backend: the chain's endpoint registry. Staked checkers
# and indexers registered there (`dci indexer register`, `dci checker register`)
# are verified, merged into the network file (adding nodes, or replacing the
# file's entry of the same id) and followed every poll_secs.
# [chain]
# rpc_url = "http://127.0.0.1:8545"   # the chain's JSON-RPC endpoint
# registry = "0x..."                  # DciRegistry (`dci chain deploy` prints it)
# poll_secs = 5                       # how often to read it (default 5)
"#;

    fn base(&self) -> Base<'_> {
        Base { id: self.id, listen: &self.listen, key: &self.key, network: &self.network, chain: self.chain.as_ref() }
    }

    fn validate(&self) -> anyhow::Result<()> {
        // The core's own checks, with the peers left aside.
        let mut c = dci_checker::Config::devnet(vec![dci_proto::Peer { id: NodeId([0; 32]), addr: "unset:1".into() }]);
        c.challenge_n = self.challenge_n;
        c.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

impl CheckerConfig {
    /// The shortest challenge deadline.
    pub fn min_deadline(&self) -> Duration {
        Duration::from_secs(self.min_deadline_secs)
    }
}

/// A consumer account the gateway creates when it creates its books
/// (development networks): funded from the liquidity pool, its API key
/// written to `<data-dir>/client.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// The account, e.g. `consumer:devnet`.
    pub account: String,
    /// ATH it is given, e.g. "10000".
    pub funds: String,
}

impl Consumer {
    /// The account and the amount.
    pub fn parse(&self) -> anyhow::Result<(AccountId, Amount)> {
        let account = AccountId::new(&self.account).map_err(|e| anyhow::anyhow!("consumer.account: {e}"))?;
        let funds = dci_ledger::parse_amount(&self.funds).map_err(|e| anyhow::anyhow!("consumer.funds: {e}"))?;
        Ok((account, funds))
    }
}

/// `dci gateway run`: `node.toml` of a gateway. Its ledger is the data
/// directory's `settlement.toml` (backend) and `ledger.db` (the embedded
/// books), its sessions `gateway.db`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The node id its key must hold (optional).
    #[serde(default, with = "opt_hex_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<NodeId>,
    /// Where it listens for node messages, `host:port` with a fixed port.
    pub listen: String,
    /// Its key file (default `node.key`).
    #[serde(default = "default_key")]
    pub key: PathBuf,
    /// The network file it joins.
    pub network: PathBuf,
    /// Where its public HTTP API listens (default 127.0.0.1:8700).
    #[serde(default = "default_api_listen")]
    pub api_listen: String,
    /// Length of a reward epoch in seconds (default 900; on a chain ledger
    /// the chain's own length wins).
    #[serde(default = "default_epoch_secs")]
    pub epoch_secs: u64,
    /// Seats of each epoch's committee (default 3).
    #[serde(default = "default_committee_size")]
    pub committee_size: usize,
    /// A development network (default false): the books it creates have the
    /// dev genesis, where hosts with simulated GPUs earn by what their CPU
    /// proved. Must agree with the books it finds.
    #[serde(default)]
    pub dev_network: bool,
    /// Development: a consumer funded from the liquidity pool when the
    /// books are created, its API key written to `<data-dir>/client.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<Consumer>,
    /// The relay for hosts behind NAT (R-SC3), when this gateway offers one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelaySection>,
    /// The public reads (`/v1/containers`, `/v1/offers`) are served from a
    /// view of the network refreshed at most this often, in ms (default 500).
    #[serde(default = "default_view_refresh_ms")]
    pub view_refresh_ms: u64,
    /// The API's rate limits (`[api_limits]`; production defaults).
    #[serde(default)]
    pub api_limits: LimitsConfig,
    /// https: the API's certificate and key (`[tls]`); plain http without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// The chain's endpoint registry: its staked, signed checkers and
    /// indexers are merged into the network file and followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSection>,
}

/// `[relay]` of a gateway's node.toml: the reverse tunnel hosts behind NAT
/// dial (`dci-relay`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// The control port hosts dial, `host:port` with a fixed port; the
    /// public ports are bound on the same host.
    pub listen: String,
    /// The host (name or address) other machines reach the public ports at.
    pub public_host: String,
    /// The public ports it hands out, `first-last`, e.g. "41000-41999".
    pub ports: String,
}

impl RelaySection {
    /// The port range.
    pub fn port_range(&self) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
        let bad = || anyhow::anyhow!("relay.ports: expected a range such as \"41000-41999\", found {:?}", self.ports);
        let (a, b) = self.ports.split_once('-').ok_or_else(bad)?;
        let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
        anyhow::ensure!(a >= 1 && a <= b, bad());
        Ok(a..=b)
    }

    fn validate(&self) -> anyhow::Result<()> {
        check_addr("relay.listen", &self.listen)?;
        let host = self.public_host.trim();
        anyhow::ensure!(
            !host.is_empty() && !host.contains(char::is_whitespace) && !host.contains('/') && host != "0.0.0.0",
            "relay.public_host: expected the host other machines reach the relay at, such as 203.0.113.7, found {:?}",
            self.public_host
        );
        let range = self.port_range()?;
        if let Some(port) = self.listen.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()) {
            anyhow::ensure!(
                !range.contains(&port),
                "relay.ports: expected a range apart from relay.listen's port {port}, found {:?}",
                self.ports
            );
        }
        Ok(())
    }

    /// The relay's config.
    pub fn relay_config(&self) -> anyhow::Result<dci_relay::RelayConfig> {
        Ok(dci_relay::RelayConfig {
            listen: self.listen.clone(),
            public_host: self.public_host.clone(),
            ports: self.port_range()?,
            limits: dci_relay::Limits::default(),
        })
    }
}

fn default_view_refresh_ms() -> u64 {
    crate::gateway::DEFAULT_VIEW_REFRESH.as_millis() as u64
}
fn default_api_listen() -> String {
    "127.0.0.1:8700".into()
}
fn default_epoch_secs() -> u64 {
    900
}
fn default_committee_size() -> usize {
    3
}

impl NodeFile for GatewayConfig {
    const ROLE: &'static str = "gateway";
    const EXAMPLE: &'static str = r#"# <data-dir>/node.toml of `dci gateway run`. Relative paths are from the data
# directory. Its ledger is <data-dir>/settlement.toml (backend = "embedded",
# the default, or "evm" after `dci chain deploy --data-dir <data-dir>`) and
# <data-dir>/ledger.db; its sessions <data-dir>/gateway.db.

# Optional: the node id its key file must hold (64 hex digits; `dci gateway id` prints it).
# id = "..."
# Where it listens for node messages: host:port, a fixed port (required).
listen = "0.0.0.0:7000"
# Its ed25519 key, created 0600 if missing (default "node.key").
key = "node.key"
# The network file it joins (required): the indexer it asks (the first), and
# the checkers it seats on the committee.
network = "network.toml"
# Where the public HTTP API listens (default "127.0.0.1:8700").
api_listen = "0.0.0.0:8700"
# Length of a reward epoch in seconds (default 900; on a chain, the chain's).
epoch_secs = 900
# Seats of each epoch's committee (default 3).
committee_size = 3
# A development network (default false): simulated GPUs earn by what their CPU
# proved. Fixed when the books are created.
dev_network = false
# Development (optional): a consumer funded from the liquidity pool when the
# books are created; its API key goes to <data-dir>/client.json.
# consumer = { account = "consumer:operator", funds = "10000" }
# The public reads (GET /v1/containers, /v1/offers) are served from a view of
# the network refreshed at most this often, in ms (default 500).
view_refresh_ms = 500

# Optional: a relay for container hosts behind NAT (hosts with reach = "relay").
# Hosts dial `listen` (list it as `relay` in this gateway's network file entry);
# each gets public ports from `ports`, reached at `public_host`. Only hosts with
# the minimum container stake bonded are admitted.
# [relay]
# listen = "0.0.0.0:7001"
# public_host = "203.0.113.7"
# ports = "41000-41999"

# Optional: serve the API over https (PEM files; relative to the data directory).
# Without [tls] the API is plain http: keep it on loopback or behind a proxy
# that terminates TLS.
# [tls]
# cert = "tls/cert.pem"
# key = "tls/key.pem"

# The API's rate limits (these are the defaults). Each bucket holds `burst`
# requests and refills at `per_minute`; a refused request gets 429 with
# Retry-After. per_address: every request of one client address (the TCP peer);
# per_key: every authenticated request of one API key's account; failed_auth:
# requests of one address with a missing or unknown key: once spent, the
# address is refused until it refills. At most max_clients addresses (and
# accounts) are tracked; past that every client shares one bucket until the
# idle ones are forgotten.
[api_limits]
per_address = { per_minute = 1200, burst = 200 }
per_key = { per_minute = 1200, burst = 200 }
failed_auth = { per_minute = 10, burst = 20 }
max_clients = 100000

# Optional, on the evm backend: the chain's endpoint registry. Staked checkers
# and indexers registered there are verified, merged into the network file and
# followed (the gateway asks the indexers and seats the checkers it lists).
# This gateway also relays nodes' signed registrations to it (POST
# /v1/node-register) when its own ledger's deployment has a registry.
# [chain]
# rpc_url = "http://127.0.0.1:8545"
# registry = "0x..."
# poll_secs = 5
"#;

    fn base(&self) -> Base<'_> {
        Base { id: self.id, listen: &self.listen, key: &self.key, network: &self.network, chain: self.chain.as_ref() }
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.api_listen.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!("api_listen: expected an address such as 127.0.0.1:8700, found {:?}", self.api_listen)
        })?;
        anyhow::ensure!(self.epoch_secs >= 1, "epoch_secs: expected at least 1, found 0");
        anyhow::ensure!(
            (1..=256).contains(&self.committee_size),
            "committee_size: expected 1..=256 seats, found {}",
            self.committee_size
        );
        if let Some(c) = &self.consumer {
            c.parse()?;
        }
        if let Some(r) = &self.relay {
            r.validate()?;
        }
        anyhow::ensure!(
            (10..=60_000).contains(&self.view_refresh_ms),
            "view_refresh_ms: expected 10..=60000, found {}",
            self.view_refresh_ms
        );
        self.api_limits.validate().map_err(|e| anyhow::anyhow!(e))?;
        Ok(())
    }
}

impl GatewayConfig {
    /// The API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_listen.parse().expect("validated")
    }

    /// The epoch length.
    pub fn epoch(&self) -> Duration {
        Duration::from_secs(self.epoch_secs)
    }

    /// The API's base URL as this config serves it: `https://` with
    /// `[tls]`, else `http://`; an unspecified address is named as loopback.
    pub fn api_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.api_listen)
    }

    /// The TLS files with relative paths resolved against the data directory.
    pub fn tls_files(&self, dir: &Path) -> Option<TlsFiles> {
        self.tls.as_ref().map(|t| TlsFiles { cert: resolve(dir, &t.cert), key: resolve(dir, &t.key) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: NodeFile + std::fmt::Debug>(text: &str) -> String {
        format!("{:#}", T::parse(text).unwrap_err())
    }

    #[test]
    fn the_examples_parse_with_the_defaults_they_state() {
        let i = IndexerConfig::parse(IndexerConfig::EXAMPLE).unwrap();
        assert_eq!((i.key.as_path(), i.inspect_every_secs), (Path::new("node.key"), 3600));
        let c = CheckerConfig::parse(CheckerConfig::EXAMPLE).unwrap();
        assert_eq!((c.challenge_n, c.min_deadline_secs, c.evaluation), (256, 10, Floor::Devnet));
        let g = GatewayConfig::parse(GatewayConfig::EXAMPLE).unwrap();
        assert_eq!((g.epoch_secs, g.committee_size, g.dev_network, g.consumer), (900, 3, false, None));
        assert_eq!((g.api_limits, g.view_refresh_ms, g.tls), (LimitsConfig::default(), 500, None));
        // Only the required keys: the defaults.
        let g = GatewayConfig::parse("listen = \"127.0.0.1:7000\"\nnetwork = \"n.toml\"").unwrap();
        assert_eq!(
            (g.api_listen.as_str(), g.epoch_secs, g.committee_size, g.key.as_path()),
            ("127.0.0.1:8700", 900, 3, Path::new("node.key"))
        );
        assert_eq!(
            (g.api_limits, g.view_refresh_ms, g.api_url().as_str()),
            (LimitsConfig::default(), 500, "http://127.0.0.1:8700")
        );
        let i = IndexerConfig::parse("listen = \"127.0.0.1:7100\"\nnetwork = \"n.toml\"").unwrap();
        assert_eq!(i.inspect_every_secs, 3600);
        // What is written reads back the same.
        let text = toml::to_string_pretty(&g).unwrap();
        assert_eq!(GatewayConfig::parse(&text).unwrap(), g);
    }

    /// `[chain]` in every role's node.toml: the examples document it (commented
    /// out), a good one reads back, a bad one says what it expected, unknown
    /// keys are refused.
    #[test]
    fn a_chain_table_is_read_checked_and_documented() {
        for example in [IndexerConfig::EXAMPLE, CheckerConfig::EXAMPLE, GatewayConfig::EXAMPLE] {
            assert!(example.contains("# [chain]") && example.contains("# registry = \"0x...\""), "{example}");
        }
        let base = "listen = \"127.0.0.1:7100\"\nnetwork = \"n.toml\"\n";
        let chain = format!("[chain]\nrpc_url = \"http://127.0.0.1:8545\"\nregistry = \"0x{}\"\n", "ab".repeat(20));
        let i = IndexerConfig::parse(&format!("{base}{chain}")).unwrap();
        let c = i.chain.clone().unwrap();
        assert_eq!((c.poll_secs, c.registry_address().unwrap().into_array()), (5, [0xab; 20]));
        assert_eq!(IndexerConfig::parse(&toml::to_string_pretty(&i).unwrap()).unwrap(), i);
        let g = GatewayConfig::parse(&format!("{base}{chain}poll_secs = 2\n")).unwrap();
        assert_eq!(g.chain.unwrap().poll_secs, 2);
        let e = err::<CheckerConfig>(&format!("{base}{chain}registy = \"0x00\"\n"));
        assert!(e.contains("unknown field `registy`"), "{e}");
        let e = err::<CheckerConfig>(&format!("{base}{}", chain.replace("0xabab", "0xzzab")));
        assert!(e.contains("chain.registry: expected a contract address of 40 hex digits"), "{e}");
        let e = err::<IndexerConfig>(&format!("{base}{chain}poll_secs = 0\n"));
        assert!(e.contains("chain.poll_secs: expected at least 1 second, found 0"), "{e}");
    }

    #[test]
    fn bad_configs_say_what_was_expected_and_found() {
        let base = "listen = \"127.0.0.1:7100\"\nnetwork = \"n.toml\"\n";
        let e = err::<IndexerConfig>(&format!("{base}inspect_every = 3\n"));
        assert!(e.contains("unknown field `inspect_every`"), "{e}");
        let e = err::<IndexerConfig>(&format!("{base}id = \"xyz\"\n"));
        assert!(e.contains("expected a node id of 64 hex digits, found \"xyz\""), "{e}");
        let e = err::<IndexerConfig>("listen = \"127.0.0.1:0\"\nnetwork = \"n.toml\"\n");
        assert!(e.contains("listen: expected host:port with a fixed port, found \"127.0.0.1:0\""), "{e}");
        let e = err::<IndexerConfig>("listen = \"127.0.0.1:7100\"\n");
        assert!(e.contains("missing field `network`"), "{e}");
        let e = err::<CheckerConfig>(&format!("{base}challenge_n = 0\n"));
        assert!(e.contains("challenge_n: expected 1..="), "{e}");
        let e = err::<CheckerConfig>(&format!("{base}evaluation = \"strict\"\n"));
        assert!(e.contains("unknown variant `strict`"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}api_listen = \"localhost\"\n"));
        assert!(e.contains("api_listen: expected an address such as 127.0.0.1:8700, found \"localhost\""), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}committee_size = 0\n"));
        assert!(e.contains("committee_size: expected 1..=256 seats, found 0"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}consumer = {{ account = \"Bob!\", funds = \"10\" }}\n"));
        assert!(e.contains("consumer.account"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}consumer = {{ account = \"consumer:a\", funds = \"ten\" }}\n"));
        assert!(e.contains("consumer.funds"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}epoch_secs = -1\n"));
        assert!(e.contains("epoch_secs"), "{e}");
        let relay = "[relay]\nlisten = \"0.0.0.0:7001\"\npublic_host = \"10.0.0.1\"\nports = \"41000-41999\"\n";
        let g = GatewayConfig::parse(&format!("{base}{relay}")).unwrap();
        assert_eq!(g.relay.unwrap().port_range().unwrap(), 41000..=41999);
        let e = err::<GatewayConfig>(&format!("{base}{relay}portz = 3\n"));
        assert!(e.contains("unknown field `portz`"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}{}", relay.replace("41000-41999", "41999-41000")));
        assert!(e.contains("relay.ports: expected a range such as \"41000-41999\", found \"41999-41000\""), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}{}", relay.replace("41000-41999", "7000-7005")));
        assert!(e.contains("apart from relay.listen's port 7001"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}{}", relay.replace("10.0.0.1", "0.0.0.0")));
        assert!(e.contains("relay.public_host: expected the host other machines reach"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}{}", relay.replace("0.0.0.0:7001", "0.0.0.0")));
        assert!(e.contains("relay.listen: expected host:port"), "{e}");
        // Limits and TLS.
        let e = err::<GatewayConfig>(&format!("{base}[api_limits]\nper_key = {{ per_minute = 0, burst = 5 }}\n"));
        assert!(e.contains("api_limits.per_key.per_minute: expected at least 1, found 0"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}[api_limits]\nper_ip = {{ per_minute = 1, burst = 5 }}\n"));
        assert!(e.contains("unknown field `per_ip`"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}[api_limits]\nper_key = {{ per_minute = 1 }}\n"));
        assert!(e.contains("missing field `burst`"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}view_refresh_ms = 0\n"));
        assert!(e.contains("view_refresh_ms: expected 10..=60000, found 0"), "{e}");
        let e = err::<GatewayConfig>(&format!("{base}[tls]\ncert = \"c.pem\"\n"));
        assert!(e.contains("missing field `key`"), "{e}");
        let g = GatewayConfig::parse(&format!("{base}[tls]\ncert = \"c.pem\"\nkey = \"/k.pem\"\n")).unwrap();
        assert!(g.api_url().starts_with("https://"));
        let files = g.tls_files(Path::new("/data")).unwrap();
        assert_eq!((files.cert.as_path(), files.key.as_path()), (Path::new("/data/c.pem"), Path::new("/k.pem")));
    }

    #[test]
    fn the_key_file_is_created_private_and_checked_against_the_id() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let c = IndexerConfig::parse("listen = \"127.0.0.1:7100\"\nnetwork = \"n.toml\"").unwrap();
        let id = c.identity(dir.path()).unwrap().id();
        let mode = std::fs::metadata(dir.path().join("node.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(IndexerConfig { id: Some(id), ..c.clone() }.identity(dir.path()).unwrap().id(), id);
        let other = NodeId([7; 32]);
        let e = IndexerConfig { id: Some(other), ..c.clone() }.identity(dir.path()).unwrap_err().to_string();
        assert!(e.contains("expected the id of the key file") && e.contains(&format!("found {other}")), "{e}");
        c.save(dir.path()).unwrap();
        assert_eq!(IndexerConfig::load(dir.path()).unwrap(), c);
        let e = format!("{:#}", CheckerConfig::load(&dir.path().join("nowhere")).unwrap_err());
        assert!(e.contains("dci checker run --print-example"), "{e}");
    }
}
