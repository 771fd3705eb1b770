//! Who is in the network: the network file, merged with the chain's
//! endpoint registry when the node config has a `[chain]` table (issue 15).
//!
//! On the evm backend, staked checkers and indexers publish signed endpoint
//! records on chain (`dci indexer register`, `dci checker register`;
//! `dci_chain::read_members` verifies each one and keeps those whose stake
//! is at or above the role minimum). A node with `[chain]` reads them at
//! start and every `poll_secs`, and merges them into its network file: the
//! file's entries stay valid; a chain entry adds a node, or replaces the
//! file's entry of the same id (the address, and a checker's keys). The
//! merged network takes the path a changed network file always took: the
//! role's peers, handed to its core ([`follow`]), so a node that moved or a
//! new indexer is picked up without a restart, and one that unstaked or
//! was pruned drops out (unless the file lists it). A chain that does not
//! answer keeps the last members read; at start it is an error.
//!
//! ```toml
//! [chain]
//! rpc_url = "http://127.0.0.1:8545"   # the chain's JSON-RPC endpoint
//! registry = "0x<40 hex digits>"      # DciRegistry (`dci chain deploy` prints it)
//! poll_secs = 5                       # how often to read it (default 5)
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use dci_chain::{Address, Members};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::network::{CheckerEntry, IndexerEntry, Network, WATCH_EVERY};

/// The default `poll_secs`.
pub const DEFAULT_POLL_SECS: u64 = 5;

/// How long one read of the registry may take (a blackholed RPC endpoint
/// must not stall the file watch behind it).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn default_poll_secs() -> u64 {
    DEFAULT_POLL_SECS
}

/// `[chain]` of a node config: where the endpoint registry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// The chain's JSON-RPC endpoint (`http://` or `https://`).
    pub rpc_url: String,
    /// The registry contract's address (0x and 40 hex digits).
    pub registry: String,
    /// How often the registry is read, in seconds (default 5, at least 1).
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
}

impl ChainSection {
    /// Checks every key; the error names it, what was expected and found.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.rpc_url.starts_with("http://") || self.rpc_url.starts_with("https://"),
            "chain.rpc_url: expected an http(s) JSON-RPC URL, found {:?}",
            self.rpc_url
        );
        self.registry_address()?;
        anyhow::ensure!(self.poll_secs >= 1, "chain.poll_secs: expected at least 1 second, found 0");
        Ok(())
    }

    /// The registry's address.
    pub fn registry_address(&self) -> anyhow::Result<Address> {
        let digits = self.registry.strip_prefix("0x").unwrap_or(&self.registry);
        let mut b = [0u8; 20];
        hex::decode_to_slice(digits, &mut b).map_err(|_| {
            anyhow::anyhow!("chain.registry: expected a contract address of 40 hex digits, found {:?}", self.registry)
        })?;
        Ok(Address::from(b))
    }

    /// How often it is read.
    pub fn poll(&self) -> Duration {
        Duration::from_secs(self.poll_secs)
    }

    /// Reads the registry's members now (within [`READ_TIMEOUT`]).
    pub async fn read(&self) -> anyhow::Result<Members> {
        let registry = self.registry_address()?;
        let what = || format!("reading the endpoint registry {} at {}", self.registry, self.rpc_url);
        tokio::time::timeout(READ_TIMEOUT, dci_chain::read_members(&self.rpc_url, registry))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {} s", READ_TIMEOUT.as_secs()))
            .with_context(what)?
            .with_context(what)
    }
}

/// The network file `file` with the chain's `members` merged in: each
/// chain indexer or checker is added, or replaces the file's entry of the
/// same id.
pub fn merge(file: &Network, members: Option<&Members>) -> Network {
    let mut n = file.clone();
    let Some(m) = members else { return n };
    for p in &m.indexers {
        match n.indexers.iter_mut().find(|x| x.id == p.id) {
            Some(x) => x.addr = p.addr.clone(),
            None => n.indexers.push(IndexerEntry { id: p.id, addr: p.addr.clone() }),
        }
    }
    for c in &m.checkers {
        let entry = CheckerEntry {
            id: c.peer.id,
            addr: c.peer.addr.clone(),
            vrf_public: c.vrf_public,
            chain_signer: c.chain_signer,
        };
        match n.checkers.iter_mut().find(|x| x.id == c.peer.id) {
            Some(x) => *x = entry,
            None => n.checkers.push(entry),
        }
    }
    n
}

/// What a role starts from: its network file and, with `chain`, the
/// registry's members as read now.
pub struct Start {
    /// The network file as it is.
    pub file: Network,
    /// The registry's members (with `[chain]`).
    pub members: Option<Members>,
}

impl Start {
    /// The merged network (what the role's peers come from).
    pub fn network(&self) -> Network {
        merge(&self.file, self.members.as_ref())
    }
}

/// Reads the network file at `path` and, with `chain`, the registry (an
/// error if it does not answer: the node was told its peers are there).
pub async fn load(path: &Path, chain: Option<&ChainSection>) -> anyhow::Result<Start> {
    let file = Network::load(path)?;
    let members = match chain {
        Some(c) => {
            let m = c.read().await?;
            log_members(&m);
            Some(m)
        }
        None => None,
    };
    Ok(Start { file, members })
}

fn log_members(m: &Members) {
    tracing::info!(
        indexers = m.indexers.len(),
        checkers = m.checkers.len(),
        ignored = m.ignored.len(),
        "read the chain's endpoint registry"
    );
    for i in &m.ignored {
        tracing::warn!(node = %i.node, why = %i.why, "a registry record is not taken");
    }
}

/// What tells a change of the file: its modification time and length.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Follows the membership until `shutdown`: the network file at `path`
/// (its modification time and length, every [`WATCH_EVERY`]) and, with
/// `chain`, the registry (every `poll_secs`). When the merged network
/// differs from the last one, calls `changed` with it (awaited: a role
/// hands it to its core). A file that does not read, or a chain that does
/// not answer, is logged and its last version kept.
pub fn follow<F, Fut>(
    path: PathBuf,
    chain: Option<ChainSection>,
    start: Start,
    shutdown: CancellationToken,
    mut changed: F,
) where
    F: FnMut(Network) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tick = chain.as_ref().map_or(WATCH_EVERY, |c| WATCH_EVERY.min(c.poll()));
    tokio::spawn(async move {
        let Start { mut file, mut members } = start;
        let mut current = merge(&file, members.as_ref());
        let mut last = stamp(&path);
        let mut next_read = chain.as_ref().map(|c| Instant::now() + c.poll());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(tick) => {}
            }
            let now = stamp(&path);
            if now != last {
                last = now;
                match Network::load(&path) {
                    Ok(n) => file = n,
                    Err(e) => tracing::error!(
                        error = %format!("{e:#}"),
                        "the network file changed but does not read; keeping the last one"
                    ),
                }
            }
            if let (Some(c), Some(at)) = (&chain, next_read)
                && Instant::now() >= at
            {
                next_read = Some(Instant::now() + c.poll());
                match c.read().await {
                    Ok(m) => {
                        if members.as_ref() != Some(&m) {
                            log_members(&m);
                        }
                        members = Some(m);
                    }
                    Err(e) => tracing::warn!(
                        error = %format!("{e:#}"),
                        "the chain's endpoint registry did not answer; keeping the last members"
                    ),
                }
            }
            let merged = merge(&file, members.as_ref());
            if merged != current {
                tracing::info!(
                    file = %path.display(),
                    indexers = merged.indexers.len(),
                    checkers = merged.checkers.len(),
                    "the membership changed: taking its peers"
                );
                current = merged.clone();
                changed(merged).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use dci_chain::ChainChecker;
    use dci_proto::{Identity, Peer};

    fn key(b: u8) -> Identity {
        Identity::from_secret([b; 32])
    }

    #[test]
    fn chain_entries_add_to_and_replace_the_files_by_id() {
        let file = Network {
            name: "t".into(),
            gateways: vec![],
            indexers: vec![
                IndexerEntry { id: key(1).id(), addr: "127.0.0.1:7100".into() },
                IndexerEntry { id: key(2).id(), addr: "127.0.0.1:7101".into() },
            ],
            checkers: vec![CheckerEntry::of(&key(3), "127.0.0.1:7200")],
        };
        assert_eq!(merge(&file, None), file);
        let moved_checker = CheckerEntry::of(&key(3), "127.0.0.1:7299");
        let members = Members {
            indexers: vec![
                Peer { id: key(2).id(), addr: "127.0.0.1:7999".into() },
                Peer { id: key(4).id(), addr: "127.0.0.1:7102".into() },
            ],
            checkers: vec![ChainChecker {
                peer: Peer { id: key(3).id(), addr: "127.0.0.1:7299".into() },
                vrf_public: moved_checker.vrf_public,
                chain_signer: moved_checker.chain_signer,
            }],
            ignored: vec![],
        };
        let m = merge(&file, Some(&members));
        let addrs: Vec<_> = m.indexers.iter().map(|x| (x.id, x.addr.as_str())).collect();
        assert_eq!(
            addrs,
            [(key(1).id(), "127.0.0.1:7100"), (key(2).id(), "127.0.0.1:7999"), (key(4).id(), "127.0.0.1:7102")],
            "the file's first kept, the second moved, a chain-only one added"
        );
        assert_eq!(m.checkers, vec![moved_checker]);
        m.validate().unwrap();
        // A node the chain no longer lists falls back to what the file says
        // (or out, when the file does not list it).
        let gone = merge(&file, Some(&Members::default()));
        assert_eq!(gone, file);
    }

    #[test]
    fn a_chain_table_says_what_was_expected() {
        let ok = ChainSection {
            rpc_url: "http://127.0.0.1:8545".into(),
            registry: format!("0x{}", "ab".repeat(20)),
            poll_secs: 5,
        };
        ok.validate().unwrap();
        let cases = [
            (ChainSection { rpc_url: "127.0.0.1:8545".into(), ..ok.clone() }, "chain.rpc_url: expected an http(s)"),
            (
                ChainSection { registry: "0x12".into(), ..ok.clone() },
                "chain.registry: expected a contract address of 40 hex digits, found \"0x12\"",
            ),
            (ChainSection { poll_secs: 0, ..ok.clone() }, "chain.poll_secs: expected at least 1"),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "expected {want:?} in {e}");
        }
        let e = toml::from_str::<ChainSection>("rpc_url = \"http://x:1\"\nregistry = \"0x00\"\nrpc = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `rpc`"), "{e}");
    }
}
