//! The network file (`network.toml`): who is in the network and where to
//! reach them. Every role reads the one it was given (its node config
//! names it) and takes from it whom to trust and where to send: the
//! gateways (node address and public API), the indexers, and the checkers
//! (with the keys the committee needs: the VRF public key and the chain
//! signer). Ids and keys are hex. Nothing else is shared between nodes.
//!
//! ```toml
//! name = "devnet"                 # the network's name (part of every epoch seed)
//!
//! [[gateways]]
//! id = "<64 hex digits>"          # its node id
//! addr = "10.0.0.1:7000"          # where it receives node messages
//! api = "http://10.0.0.1:8700"    # its public HTTP API
//! relay = "10.0.0.1:7001"         # optional: its relay, for hosts behind NAT
//!
//! [[indexers]]
//! id = "<64 hex digits>"
//! addr = "10.0.0.2:7100"
//!
//! [[checkers]]
//! id = "<64 hex digits>"
//! addr = "10.0.0.3:7200"
//! vrf_public = "<64 hex digits>"  # its committee VRF key (`dci checker id` prints it)
//! chain_signer = "0x<40 hex digits>"  # its chain signing address
//! ```
//!
//! Lists, so a network can have several of each; today the first gateway
//! holds the ledger (stake oracle, epoch coordinator) and containers,
//! checkers and gateways send to the first indexer, while every listed
//! node is trusted. A running role re-reads the file when it changes
//! ([`watch`]): a node that moved is reached at its new address, and a
//! node added or removed is trusted or not from then on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use dci_model::NodeId;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The conventional name of the network file.
pub const NETWORK_FILE: &str = "network.toml";

/// How often a running role looks at the network file's modification time.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The network file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The network's name: part of every epoch seed the coordinator draws.
    pub name: String,
    /// The gateways; the first holds the ledger (the indexers' stake
    /// oracle, the checkers' epoch coordinator).
    #[serde(default)]
    pub gateways: Vec<GatewayEntry>,
    /// The indexers; containers, checkers and gateways send to the first.
    #[serde(default)]
    pub indexers: Vec<IndexerEntry>,
    /// The checkers: seated on the committee by the gateway, allowed to
    /// inspect by containers and indexers.
    #[serde(default)]
    pub checkers: Vec<CheckerEntry>,
}

/// A gateway of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    /// Its node id.
    #[serde(with = "hex_id")]
    pub id: NodeId,
    /// Where it receives node messages (`host:port`).
    pub addr: String,
    /// Its public HTTP API (`http://host:port`): consumers, and hosts that
    /// bond their stake (`dci container stake`).
    pub api: String,
    /// Its relay's control port (`host:port`), if it runs one: hosts behind
    /// NAT (`reach = "relay"`) dial it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// An indexer of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexerEntry {
    /// Its node id.
    #[serde(with = "hex_id")]
    pub id: NodeId,
    /// Where it receives node messages (`host:port`).
    pub addr: String,
}

/// A checker of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckerEntry {
    /// Its node id.
    #[serde(with = "hex_id")]
    pub id: NodeId,
    /// Where it receives node messages (`host:port`).
    pub addr: String,
    /// Its committee VRF public key (derived from its node key).
    #[serde(with = "hex32")]
    pub vrf_public: [u8; 32],
    /// The address of its chain signing key (derived from its node key),
    /// which a chain ledger's committee lists.
    #[serde(with = "hex20")]
    pub chain_signer: [u8; 20],
}

impl CheckerEntry {
    /// The entry of the checker with key `identity`, reached at `addr`.
    pub fn of(identity: &dci_proto::Identity, addr: impl Into<String>) -> CheckerEntry {
        CheckerEntry {
            id: identity.id(),
            addr: addr.into(),
            vrf_public: dci_committee::CommitteeKey::from_identity(identity).public(),
            chain_signer: dci_chain::node_signer(identity).address().into_array(),
        }
    }

    /// Its committee seat, as the gateway core takes it.
    pub fn seat(&self) -> dci_gateway_core::CheckerSeat {
        dci_gateway_core::CheckerSeat {
            id: self.id,
            addr: self.addr.clone(),
            vrf_public: self.vrf_public,
            chain_signer: self.chain_signer,
        }
    }
}

impl Network {
    /// Reads and checks the network file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Network> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the network file {}", path.display()))?;
        Network::parse(&text).with_context(|| format!("the network file {}", path.display()))
    }

    /// Parses and checks a network file's text.
    pub fn parse(text: &str) -> anyhow::Result<Network> {
        let n: Network = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        n.validate()?;
        Ok(n)
    }

    /// Every address is `host:port` with a port, every API an http(s) URL,
    /// and no id is listed twice in a list.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.name.trim().is_empty(), "name: expected the network's name, found an empty string");
        for (i, g) in self.gateways.iter().enumerate() {
            check_addr(&format!("gateways[{i}].addr"), &g.addr)?;
            anyhow::ensure!(
                g.api.starts_with("http://") || g.api.starts_with("https://"),
                "gateways[{i}].api: expected a URL such as http://host:port, found {:?}",
                g.api
            );
            if let Some(r) = &g.relay {
                check_addr(&format!("gateways[{i}].relay"), r)?;
            }
        }
        for (i, x) in self.indexers.iter().enumerate() {
            check_addr(&format!("indexers[{i}].addr"), &x.addr)?;
        }
        for (i, c) in self.checkers.iter().enumerate() {
            check_addr(&format!("checkers[{i}].addr"), &c.addr)?;
        }
        distinct("gateways", self.gateways.iter().map(|g| g.id))?;
        distinct("indexers", self.indexers.iter().map(|x| x.id))?;
        distinct("checkers", self.checkers.iter().map(|c| c.id))?;
        Ok(())
    }

    /// Writes it to `path` (0600, atomically).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = format!(
            "# The network: whom every role trusts and where to reach it (see dci-node's network.rs).\n{}",
            toml::to_string_pretty(self)?
        );
        crate::keys::write_private(path, &text)
    }

    /// The first gateway: it holds the ledger (stake oracle, epoch coordinator).
    pub fn ledger_gateway(&self) -> anyhow::Result<&GatewayEntry> {
        self.gateways.first().context("gateways: expected at least one gateway, found none")
    }

    /// The indexers (at least one): containers register and heartbeat with
    /// each, checkers send each its verdicts, gateways ask the one the epoch
    /// seed names.
    pub fn indexer_peers(&self) -> anyhow::Result<Vec<dci_proto::Peer>> {
        anyhow::ensure!(!self.indexers.is_empty(), "indexers: expected at least one indexer, found none");
        Ok(self.indexers.iter().map(|i| dci_proto::Peer { id: i.id, addr: i.addr.clone() }).collect())
    }

    /// The ids of the gateways.
    pub fn gateway_ids(&self) -> Vec<NodeId> {
        self.gateways.iter().map(|g| g.id).collect()
    }

    /// The ids of the indexers.
    pub fn indexer_ids(&self) -> Vec<NodeId> {
        self.indexers.iter().map(|x| x.id).collect()
    }

    /// The ids of the checkers.
    pub fn checker_ids(&self) -> Vec<NodeId> {
        self.checkers.iter().map(|c| c.id).collect()
    }

    /// The first gateway that runs a relay (for hosts behind NAT).
    pub fn relay_gateway(&self) -> anyhow::Result<(&GatewayEntry, &str)> {
        self.gateways.iter().find_map(|g| g.relay.as_deref().map(|r| (g, r))).context(
            "gateways: expected a gateway with a `relay` address (a host with reach = \"relay\" dials it), found none",
        )
    }

    /// The public API of the first gateway.
    pub fn api(&self) -> Option<String> {
        self.gateways.first().map(|g| g.api.clone())
    }
}

/// `host:port` with a non-zero port.
pub fn check_addr(field: &str, addr: &str) -> anyhow::Result<()> {
    let ok =
        addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    anyhow::ensure!(ok, "{field}: expected host:port with a fixed port, found {addr:?}");
    Ok(())
}

fn distinct(list: &str, ids: impl Iterator<Item = NodeId>) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        anyhow::ensure!(seen.insert(id), "{list}: expected distinct ids, found {id} twice");
    }
    Ok(())
}

/// `path` relative to `dir` unless it is absolute.
pub fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { dir.join(path) }
}

/// Watches the network file at `path` until `shutdown`: every
/// [`WATCH_EVERY`] it looks at the file's modification time and length,
/// and when they changed and the file reads as a valid network different
/// from `current`, calls `changed` with it (awaited: a role hands it to its
/// core). A file that does not read is logged and the last one is kept.
/// ([`crate::membership::follow`] without a chain.)
pub fn watch<F, Fut>(path: PathBuf, current: Network, shutdown: CancellationToken, changed: F)
where
    F: FnMut(Network) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    crate::membership::follow(path, None, crate::membership::Start { file: current, members: None }, shutdown, changed)
}

/// A node id as 64 hex digits.
pub mod hex_id {
    use dci_model::NodeId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes the id as hex.
    pub fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    /// Reads 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| D::Error::custom(format!("expected a node id of 64 hex digits, found {s:?}")))
    }
}

/// An optional node id as 64 hex digits.
pub mod opt_hex_id {
    use dci_model::NodeId;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the id as hex.
    pub fn serialize<S: Serializer>(id: &Option<NodeId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => super::hex_id::serialize(id, s),
            None => s.serialize_none(),
        }
    }

    /// Reads 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NodeId>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::hex_id")] NodeId);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

fn hex_bytes<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out)
        .map_err(|_| format!("expected {what} of {} hex digits, found {s:?}", 2 * N))?;
    Ok(out)
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        super::hex_bytes(&String::deserialize(d)?, "a VRF public key").map_err(D::Error::custom)
    }
}

mod hex20 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 20], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 20], D::Error> {
        super::hex_bytes(&String::deserialize(d)?, "a chain signer address").map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Network {
        let key = |b: u8| dci_proto::Identity::from_secret([b; 32]);
        Network {
            name: "test".into(),
            gateways: vec![GatewayEntry {
                id: key(1).id(),
                addr: "127.0.0.1:7000".into(),
                api: "http://127.0.0.1:8700".into(),
                relay: Some("127.0.0.1:7001".into()),
            }],
            indexers: vec![IndexerEntry { id: key(2).id(), addr: "127.0.0.1:7100".into() }],
            checkers: vec![CheckerEntry::of(&key(3), "127.0.0.1:7200"), CheckerEntry::of(&key(4), "[::1]:7201")],
        }
    }

    #[test]
    fn a_network_file_round_trips_with_hex_ids() {
        let n = sample();
        let text = toml::to_string_pretty(&n).unwrap();
        assert!(text.contains(&format!("id = \"{}\"", n.indexers[0].id)), "{text}");
        assert!(text.contains("chain_signer = \"0x"), "{text}");
        assert_eq!(Network::parse(&text).unwrap(), n);
        // A chain signer without its 0x reads too.
        let bare = text.replace("chain_signer = \"0x", "chain_signer = \"");
        assert_eq!(Network::parse(&bare).unwrap(), n);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NETWORK_FILE);
        n.save(&path).unwrap();
        assert_eq!(Network::load(&path).unwrap(), n);
    }

    #[test]
    fn bad_network_files_say_what_was_expected_and_found() {
        let good = toml::to_string_pretty(&sample()).unwrap();
        let id = sample().indexers[0].id.to_string();
        let cases: Vec<(String, &str)> = vec![
            (good.replace(&id, "zz"), "expected a node id of 64 hex digits, found \"zz\""),
            (good.replace(&id, &id[..62]), "expected a node id of 64 hex digits"),
            (format!("{good}\nextra = 1\n"), "unknown field `extra`"),
            (good.replace("addr = \"127.0.0.1:7100\"", "addr = \"127.0.0.1:7100\"\nport = 3"), "unknown field `port`"),
            (good.replace("127.0.0.1:7100", "127.0.0.1"), "indexers[0].addr: expected host:port"),
            (good.replace("127.0.0.1:7100", "127.0.0.1:0"), "with a fixed port, found \"127.0.0.1:0\""),
            (good.replace("http://127.0.0.1:8700", "127.0.0.1:8700"), "gateways[0].api: expected a URL"),
            (good.replace("name = \"test\"", "name = \"\""), "name: expected the network's name"),
            (good.replace("name = \"test\"\n", ""), "missing field `name`"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Network::parse(&text).unwrap_err());
            assert!(err.contains(want), "expected {want:?} in: {err}");
        }
        let mut twice = sample();
        twice.checkers.push(twice.checkers[0].clone());
        let err = Network::parse(&toml::to_string_pretty(&twice).unwrap()).unwrap_err().to_string();
        assert!(err.contains("checkers: expected distinct ids"), "{err}");
        let vrf = hex::encode(sample().checkers[0].vrf_public);
        let err = format!("{:#}", Network::parse(&good.replace(&vrf, "00")).unwrap_err());
        assert!(err.contains("expected a VRF public key of 64 hex digits, found \"00\""), "{err}");
    }

    #[tokio::test]
    async fn a_running_role_sees_the_file_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NETWORK_FILE);
        let n = sample();
        n.save(&path).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let stop = CancellationToken::new();
        watch(path.clone(), n.clone(), stop.clone(), move |n| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(n).await;
            }
        });
        // A file that does not read is ignored; the next valid change is taken.
        std::fs::write(&path, "name = 5").unwrap();
        tokio::time::sleep(WATCH_EVERY + Duration::from_millis(500)).await;
        assert!(rx.try_recv().is_err());
        let mut moved = n.clone();
        moved.indexers[0].addr = "127.0.0.1:7999".into();
        moved.save(&path).unwrap();
        let got = tokio::time::timeout(WATCH_EVERY * 3, rx.recv()).await.unwrap().unwrap();
        assert_eq!(got, moved);
        stop.cancel();
    }
}
