//! The endpoint registry on chain (issue 15, `contracts/src/DciRegistry.sol`):
//! staked checkers and indexers publish where they are reached, in records
//! they sign with their node key (`dci_proto::EndpointRecord`), and every
//! node reads them back ([`read_members`]) and computes the active set
//! itself.
//!
//! Who does what:
//! - the node signs its record for this chain and this registry
//!   (`dci indexer register`, `dci checker register`);
//! - the gateway holding the ledger relays it (`POST /v1/node-register`):
//!   it verifies the signature before paying gas and submits it with the
//!   settler key ([`EvmLedger::register_endpoint`]), the only key the
//!   registry takes writes from;
//! - the contract checks what the chain can: the node's stake in the role
//!   (from the ledger, for the node's own custodial account), newer
//!   sequences only, sizes, at most 1,024 records;
//! - every reader verifies each record's ed25519 signature off chain and
//!   compares its current stake with the role's minimum, ignoring the
//!   records that fail ([`judge`]).
//!
//! The settler can censor (refuse to relay, or overwrite a record with one
//! that does not verify, which readers then ignore), as it can refuse a
//! stake today; it cannot forge or replay a node's record.

use alloy::eips::BlockId;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::sol_types::{SolConstructor, SolInterface};
use alloy::transports::{RpcError, TransportErrorKind};
use dci_model::{Amount, NodeId};
use dci_proto::{EndpointRecord, EndpointRole, Peer, RegistryDomain};

use crate::abi::DciRegistry::{self, DciRegistryErrors};
use crate::client::Client;
use crate::{ChainError, EvmLedger, amount_u256, u256_amount};

/// Records asked for in one `page` call.
pub const PAGE: u64 = 100;

/// The minimum stake a node needs bonded in its role to be listed and
/// read as a member; fixed at the registry's deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryMinimums {
    /// A checker's (role 1).
    pub checker: Amount,
    /// An indexer's (role 2).
    pub indexer: Amount,
}

impl Default for RegistryMinimums {
    /// 1,000 ATH for a checker (what each devnet checker bonds at least),
    /// 100 ATH for an indexer (a container's minimum).
    fn default() -> RegistryMinimums {
        RegistryMinimums { checker: Amount::ath(1_000), indexer: Amount::ath(100) }
    }
}

/// Deploys a registry over `ledger` with `client` (which must be the
/// ledger's settler: the registry takes its writer from the ledger).
pub(crate) fn deploy_with(client: &Client, ledger: Address, mins: &RegistryMinimums) -> Result<Address, ChainError> {
    let args = DciRegistry::constructorCall {
        ledger,
        minCheckerStake: amount_u256(mins.checker),
        minIndexerStake: amount_u256(mins.indexer),
    }
    .abi_encode();
    let (address, _) = crate::deploy::create(client, crate::bytecode("DciRegistry")?, args, "deploying DciRegistry")?;
    Ok(address)
}

/// Deploys an endpoint registry over an existing ledger (one deployed
/// before the registry existed). `settler_key` must be the ledger's settler.
pub fn deploy_registry(
    rpc_url: &str,
    settler_key: &str,
    ledger: Address,
    mins: &RegistryMinimums,
) -> Result<Address, ChainError> {
    let client = Client::connect(rpc_url, settler_key)?;
    deploy_with(&client, ledger, mins)
}

/// A checker listed on chain, with the keys the committee needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainChecker {
    /// Its id and address.
    pub peer: Peer,
    /// Its committee VRF public key.
    pub vrf_public: [u8; 32],
    /// Its chain signer's address.
    pub chain_signer: [u8; 20],
}

/// A record a reader did not take, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    /// The node the record names.
    pub node: NodeId,
    /// Why it was not taken.
    pub why: String,
}

/// The active set as the registry lists it: every record that verifies,
/// whose node has at least its role's minimum stake bonded now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    /// The indexers.
    pub indexers: Vec<Peer>,
    /// The checkers.
    pub checkers: Vec<ChainChecker>,
    /// The records left out (a bad signature, a stake below the minimum, a
    /// malformed field).
    pub ignored: Vec<Ignored>,
}

/// A record as the registry holds it.
fn record_of(e: &DciRegistry::Endpoint) -> Result<EndpointRecord, String> {
    let role = EndpointRole::from_code(e.role).map_err(|e| e.to_string())?;
    Ok(EndpointRecord {
        node: NodeId(e.node.0),
        role,
        seq: e.seq,
        addr: e.addr.clone(),
        vrf_public: e.vrfPublic.0,
        chain_signer: e.chainSigner.into_array(),
    })
}

fn endpoint_of(r: &EndpointRecord, signature: &[u8]) -> DciRegistry::Endpoint {
    DciRegistry::Endpoint {
        node: FixedBytes(r.node.0),
        role: r.role.code(),
        seq: r.seq,
        vrfPublic: FixedBytes(r.vrf_public),
        chainSigner: Address::from(r.chain_signer),
        addr: r.addr.clone(),
        signature: Bytes::copy_from_slice(signature),
    }
}

/// Takes or leaves one row of the registry: its signature must be its
/// node's over the record for `domain`, and `stake` (its account's current
/// stake in the role) at least the role's minimum in `mins`.
pub fn judge(
    row: &DciRegistry::Row,
    domain: &RegistryDomain,
    mins: &RegistryMinimums,
    members: &mut Members,
) -> Result<(), Ignored> {
    let node = NodeId(row.endpoint.node.0);
    let ignore = |why: String| Ignored { node, why };
    let record = record_of(&row.endpoint).map_err(ignore)?;
    record.verify(domain, &row.endpoint.signature).map_err(|e| ignore(e.to_string()))?;
    if record.is_withdrawal() {
        return Err(ignore("a withdrawal record".into()));
    }
    let stake = u256_amount(row.stake).map_err(|e| ignore(format!("stake: {e}")))?;
    let need = match record.role {
        EndpointRole::Checker => mins.checker,
        EndpointRole::Indexer => mins.indexer,
    };
    if stake < need {
        return Err(ignore(format!(
            "stake: expected at least {need} ATH bonded as {}, found {stake} ATH",
            record.role.as_str()
        )));
    }
    let peer = Peer { id: node, addr: record.addr };
    match record.role {
        EndpointRole::Indexer => members.indexers.push(peer),
        EndpointRole::Checker => members.checkers.push(ChainChecker {
            peer,
            vrf_public: record.vrf_public,
            chain_signer: record.chain_signer,
        }),
    }
    Ok(())
}

fn read_error(url: &str, what: &str, e: impl std::fmt::Display) -> ChainError {
    ChainError::Unreachable { url: url.to_owned(), why: format!("{what}: {e}") }
}

/// The chain id of `rpc_url` and `registry` as a signing domain.
pub async fn registry_domain(rpc_url: &str, registry: Address) -> Result<RegistryDomain, ChainError> {
    let url = rpc_url
        .parse()
        .map_err(|e| ChainError::Input(format!("expected an http(s) RPC URL, found {rpc_url:?}: {e}")))?;
    let provider = ProviderBuilder::new().connect_http(url);
    let chain_id = provider.get_chain_id().await.map_err(|e| read_error(rpc_url, "eth_chainId", e))?;
    Ok(RegistryDomain { chain_id, registry: registry.into_array() })
}

/// Reads the registry at `registry` through `rpc_url`, as of the latest
/// block: pages through every record ([`PAGE`] at a time, all at that
/// block), verifies each off chain and keeps
/// those whose node has the role's minimum stake bonded ([`judge`]). No
/// key is needed: anyone can read.
pub async fn read_members(rpc_url: &str, registry: Address) -> Result<Members, ChainError> {
    let url = rpc_url
        .parse()
        .map_err(|e| ChainError::Input(format!("expected an http(s) RPC URL, found {rpc_url:?}: {e}")))?;
    let provider = ProviderBuilder::new().connect_http(url);
    let chain_id = provider.get_chain_id().await.map_err(|e| read_error(rpc_url, "eth_chainId", e))?;
    let domain = RegistryDomain { chain_id, registry: registry.into_array() };
    // Every call reads the same block, so a record pruned or withdrawn
    // while we page (the list is compacted by moving its last record into
    // the gap) is neither skipped nor read twice.
    let at = BlockId::number(provider.get_block_number().await.map_err(|e| read_error(rpc_url, "eth_blockNumber", e))?);
    let c = DciRegistry::new(registry, &provider);
    let min = |role: u8| {
        let c = &c;
        async move {
            let v =
                c.minStake(role).block(at).call().await.map_err(|e| read_error(rpc_url, "DciRegistry.minStake", e))?;
            u256_amount(v).map_err(|e| ChainError::Deployment(format!("DciRegistry.minStake({role}): {e}")))
        }
    };
    let mins = RegistryMinimums { checker: min(1).await?, indexer: min(2).await? };
    let count = c.count().block(at).call().await.map_err(|e| read_error(rpc_url, "DciRegistry.count", e))?;
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    let mut members = Members::default();
    let mut start = 0u64;
    while start < count {
        let rows = c
            .page(U256::from(start), U256::from(PAGE))
            .block(at)
            .call()
            .await
            .map_err(|e| read_error(rpc_url, "DciRegistry.page", e))?;
        if rows.is_empty() {
            break;
        }
        start += rows.len() as u64;
        for row in &rows {
            if let Err(ignored) = judge(row, &domain, &mins, &mut members) {
                tracing::debug!(node = %ignored.node.short(), why = %ignored.why, "a registry record is ignored");
                members.ignored.push(ignored);
            }
        }
    }
    Ok(members)
}

/// A registry revert in words.
pub(crate) fn describe(e: &DciRegistryErrors) -> String {
    let amount = |v: &U256| u256_amount(*v).map_or_else(|_| v.to_string(), |a| format!("{a} ATH"));
    match e {
        DciRegistryErrors::StaleSequence(s) => format!(
            "seq: expected a sequence newer than {} (node {}'s last on chain), found {}: an older or replayed record",
            s.last,
            NodeId(s.node.0),
            s.seq
        ),
        DciRegistryErrors::StakeBelowMinimum(s) => format!(
            "stake: expected at least {} bonded by node:{} as role {}, found {}",
            amount(&s.need),
            NodeId(s.node.0),
            s.role,
            amount(&s.have)
        ),
        DciRegistryErrors::SequenceAhead(s) => format!(
            "seq: expected at most {} (the chain's clock in ms plus 15 minutes), found {}: is node {}'s clock ahead?",
            s.limit,
            s.seq,
            NodeId(s.node.0)
        ),
        DciRegistryErrors::NotSettler(s) => {
            format!("only the ledger's settler writes the registry; {} is not it", s.caller)
        }
        other => format!("{other:?}"),
    }
}

fn refused(url: &str, what: &str, e: alloy::contract::Error) -> ChainError {
    let decoded = match &e {
        alloy::contract::Error::TransportError(t) => decode(t),
        _ => None,
    };
    match (decoded, e) {
        (Some(why), _) => ChainError::Refused { what: what.to_owned(), why },
        (None, alloy::contract::Error::TransportError(t)) if t.as_error_resp().is_none() => {
            ChainError::Unreachable { url: url.to_owned(), why: format!("{what}: {t}") }
        }
        (None, other) => ChainError::Refused { what: what.to_owned(), why: other.to_string() },
    }
}

fn decode(t: &RpcError<TransportErrorKind>) -> Option<String> {
    let payload = t.as_error_resp()?;
    let data = payload.as_revert_data()?;
    DciRegistryErrors::abi_decode(&data).ok().map(|d| describe(&d))
}

impl EvmLedger {
    /// The signing domain of this deployment's registry (`None` when it
    /// was deployed without one).
    pub fn registry_domain(&self) -> Option<RegistryDomain> {
        let d = self.deployment();
        d.registry.map(|r| RegistryDomain { chain_id: d.chain_id, registry: r.into_array() })
    }

    /// What the registry would answer `record` now, without sending
    /// anything: the signature is verified for this deployment's registry,
    /// then the call is simulated (a refusal is decoded and costs nothing).
    pub fn check_endpoint(&self, record: &EndpointRecord, signature: &[u8]) -> Result<(), ChainError> {
        let domain = self.endpoint_domain()?;
        record.verify(&domain, signature).map_err(|e| ChainError::Input(e.to_string()))?;
        let c = self.client();
        let sim = DciRegistry::new(Address::from(domain.registry), &c.provider);
        let what = format!("registering node {}'s {} endpoint", record.node.short(), record.role.as_str());
        let dry = if record.is_withdrawal() {
            c.block_on(
                sim.withdraw(FixedBytes(record.node.0), record.seq, Bytes::copy_from_slice(signature))
                    .from(c.from)
                    .call(),
            )
            .map(|_| ())
        } else {
            c.block_on(sim.register(endpoint_of(record, signature)).from(c.from).call()).map(|_| ())
        };
        dry.map_err(|e| refused(&c.url, &what, e))
    }

    fn endpoint_domain(&self) -> Result<RegistryDomain, ChainError> {
        self.registry_domain().ok_or_else(|| {
            ChainError::Deployment(
                "this deployment has no endpoint registry (deployed before it existed): deploy one over the ledger with `dci chain deploy-registry`"
                    .into(),
            )
        })
    }

    /// Publishes `record` with its node's `signature` in the registry (a
    /// withdrawal, an empty address, takes the node's record off the list),
    /// sent with the settler key, in order with the ledger's own
    /// transactions, once [`EvmLedger::check_endpoint`] passed.
    pub fn register_endpoint(&self, record: &EndpointRecord, signature: &[u8]) -> Result<B256, ChainError> {
        self.check_endpoint(record, signature)?;
        let domain = self.endpoint_domain()?;
        let c = self.client();
        let registry = DciRegistry::new(Address::from(domain.registry), &c.provider);
        let what = format!("registering node {}'s {} endpoint", record.node.short(), record.role.as_str());
        let call = if record.is_withdrawal() {
            registry
                .withdraw(FixedBytes(record.node.0), record.seq, Bytes::copy_from_slice(signature))
                .into_transaction_request()
        } else {
            registry.register(endpoint_of(record, signature)).into_transaction_request()
        };
        let tx = call.with_from(c.from);
        // The nonce as the chain counts it (as the ledger's batches take it),
        // not a cached one: the settler key sends from one thread at a time.
        let nonce = c
            .block_on(c.provider.get_transaction_count(c.from).pending())
            .map_err(|e| c.rpc_error("eth_getTransactionCount", e))?;
        let receipt = c.send(tx.with_nonce(nonce), &what)?;
        tracing::info!(node = %record.node.short(), role = record.role.as_str(), seq = record.seq, addr = %record.addr, "endpoint registered on chain");
        Ok(receipt.transaction_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dci_model::AccountId;
    use dci_proto::Identity;

    const DOMAIN: RegistryDomain = RegistryDomain { chain_id: 31_337, registry: [7; 20] };

    fn row(r: &EndpointRecord, sig: &[u8], stake: Amount) -> DciRegistry::Row {
        DciRegistry::Row { endpoint: endpoint_of(r, sig), stake: amount_u256(stake) }
    }

    /// The registry checks the stake of the account the ledger uses for
    /// `node:<id>`: contracts/test/DciRegistry.t.sol asserts this value.
    #[test]
    fn the_registry_computes_the_ledgers_account_address() {
        let a = crate::account_address(&AccountId::for_node(&NodeId([0xab; 32])));
        assert_eq!(format!("{a:?}"), "0x4cd6af7e71715a7111cd8fe4bfdeb042f1f08007");
    }

    /// What readers take: a verified record with enough stake; what they
    /// leave: a bad signature, a record for another registry, a stake below
    /// the minimum, a withdrawal, an unknown role.
    #[test]
    fn readers_take_only_verified_and_staked_records() {
        let mins = RegistryMinimums::default();
        let (ix, ck, other) =
            (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]), Identity::from_secret([3; 32]));
        let rec = EndpointRecord::indexer(ix.id(), 5, "10.0.0.2:7100");
        let checker = EndpointRecord {
            node: ck.id(),
            role: EndpointRole::Checker,
            seq: 6,
            addr: "10.0.0.3:7200".into(),
            vrf_public: [3; 32],
            chain_signer: [4; 20],
        };
        let mut m = Members::default();
        judge(&row(&rec, &rec.sign(&ix, &DOMAIN), Amount::ath(100)), &DOMAIN, &mins, &mut m).unwrap();
        judge(&row(&checker, &checker.sign(&ck, &DOMAIN), Amount::ath(1_000)), &DOMAIN, &mins, &mut m).unwrap();
        assert_eq!(m.indexers, vec![Peer { id: ix.id(), addr: "10.0.0.2:7100".into() }]);
        assert_eq!(m.checkers[0].chain_signer, [4; 20]);
        let why = |r: DciRegistry::Row| judge(&r, &DOMAIN, &mins, &mut Members::default()).unwrap_err().why;
        // Signed by someone else (the settler forging, or a stranger's copy).
        assert!(why(row(&rec, &rec.sign(&other, &DOMAIN), Amount::ath(100))).contains("signature: expected node"));
        // Signed for another registry: not a record of this one.
        let elsewhere = RegistryDomain { registry: [8; 20], ..DOMAIN };
        assert!(why(row(&rec, &rec.sign(&ix, &elsewhere), Amount::ath(100))).contains("signature"));
        // The address changed after signing.
        let mut moved = row(&rec, &rec.sign(&ix, &DOMAIN), Amount::ath(100));
        moved.endpoint.addr = "6.6.6.6:7100".into();
        assert!(why(moved).contains("signature"));
        // Stake below the role's minimum.
        let low = why(row(&rec, &rec.sign(&ix, &DOMAIN), Amount::ath(99)));
        assert!(low.contains("expected at least 100 ATH bonded as indexer, found 99 ATH"), "{low}");
        let low = why(row(&checker, &checker.sign(&ck, &DOMAIN), Amount::ath(999)));
        assert!(low.contains("bonded as checker"), "{low}");
        let mut bad_role = row(&rec, &rec.sign(&ix, &DOMAIN), Amount::ath(100));
        bad_role.endpoint.role = 0;
        assert!(why(bad_role).contains("role: expected 1 (checker) or 2 (indexer), found 0"));
    }
}
