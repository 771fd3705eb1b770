//! The endpoint registry on anvil (issue 15), as readers and writers see
//! it: a node-signed record relayed by the settler is read back as a
//! member; a newer record moves it; and the attacks: a record whose
//! signature is not its node's is ignored by readers even when it is on
//! chain, an older (replayed) record is refused on chain, a stranger
//! cannot write, and an indexer whose stake falls below the minimum
//! disappears from the active set (and anyone may prune it).

mod common;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, FixedBytes};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{SolCall, SolInterface};
use common::*;
use dci_chain::{ChainError, DEV_KEYS, Members, read_members};
use dci_ledger::{LedgerOp, Settlement, StakeRole, Transfer, accounts};
use dci_model::{AccountId, Amount, Timestamp};
use dci_proto::{EndpointRecord, EndpointRole, Identity, Peer, RegistryDomain};
use std::str::FromStr;

sol! {
    #[sol(all_derives)]
    interface IRegistry {
        struct Endpoint {
            bytes32 node;
            uint8 role;
            uint64 seq;
            bytes32 vrfPublic;
            address chainSigner;
            string addr;
            bytes signature;
        }
        function register(Endpoint e) external;
        function prune(bytes32 node) external;
        function count() external view returns (uint256);
        error NotSettler(address caller);
        error StillStaked(bytes32 node, uint256 have, uint256 need);
    }
}

fn read(url: &str, registry: Address) -> Members {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(read_members(url, registry)).unwrap()
}

/// Sends `call` to `to` from the holder of `key`; `Err` with the
/// contract's decoded error when it reverts.
fn send_as(url: &str, key: &str, to: Address, call: impl SolCall) -> Result<(), IRegistry::IRegistryErrors> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let signer: PrivateKeySigner = key.parse().unwrap();
        let from = signer.address();
        let p = ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(url.parse().unwrap());
        let tx = TransactionRequest::default().with_from(from).with_to(to).with_input(call.abi_encode());
        if let Err(e) = p.call(tx.clone()).await {
            let data = e.as_error_resp().and_then(|r| r.as_revert_data()).unwrap_or_else(|| panic!("{e}"));
            return Err(IRegistry::IRegistryErrors::abi_decode(&data).unwrap_or_else(|_| panic!("undecoded {data}")));
        }
        match p.send_transaction(tx).await {
            Ok(pending) => {
                let r = pending.get_receipt().await.unwrap();
                assert!(r.status(), "reverted after a successful call");
                Ok(())
            }
            Err(e) => panic!("{e}"),
        }
    })
}

fn raw(r: &EndpointRecord, signature: &[u8]) -> IRegistry::Endpoint {
    IRegistry::Endpoint {
        node: FixedBytes(r.node.0),
        role: r.role.code(),
        seq: r.seq,
        vrfPublic: FixedBytes(r.vrf_public),
        chainSigner: Address::from(r.chain_signer),
        addr: r.addr.clone(),
        signature: Bytes::copy_from_slice(signature),
    }
}

/// Funds `node`'s account and bonds `ath` in `role`.
fn bond(ledger: &mut dci_chain::EvmLedger, node: &Identity, role: StakeRole, ath: u64) {
    let account = AccountId::for_node(&node.id());
    ledger
        .apply(&[
            LedgerOp::Transfer(Transfer { from: accounts::liquidity(), to: account.clone(), amount: Amount::ath(ath) }),
            LedgerOp::Stake { account, role, amount: Amount::ath(ath) },
        ])
        .unwrap();
}

#[test]
fn the_registry_lists_only_signed_staked_endpoints_and_refuses_replays_and_strangers() {
    let Chain { anvil, deployment, mut ledger } = chain();
    let url = anvil.url();
    let registry = deployment.registry.expect("the registry is deployed with the ledger");
    let domain = ledger.registry_domain().unwrap();
    assert_eq!(domain, RegistryDomain { chain_id: 31_337, registry: registry.into_array() });
    let indexer = Identity::from_secret([61; 32]);
    let checker = Identity::from_secret([62; 32]);
    let forger = Identity::from_secret([63; 32]);
    assert_eq!(read(&url, registry), Members::default(), "empty at deployment");

    // An unstaked indexer cannot register: the chain checks its stake.
    let first = EndpointRecord::indexer(indexer.id(), 1_000, "127.0.0.1:7100");
    let e = ledger.register_endpoint(&first, &first.sign(&indexer, &domain)).unwrap_err();
    assert!(
        matches!(&e, ChainError::Refused { why, .. } if why.contains("expected at least 100 ATH bonded by node:") && why.contains("found 0 ATH")),
        "{e}"
    );

    // Staked, it registers and every reader sees it; so does a checker.
    bond(&mut ledger, &indexer, StakeRole::Indexer, 100);
    bond(&mut ledger, &checker, StakeRole::Checker, 1_000);
    let tx = ledger.register_endpoint(&first, &first.sign(&indexer, &domain)).unwrap();
    let gas = |tx: alloy::primitives::B256| {
        let r = rpc(&url, "eth_getTransactionReceipt", serde_json::json!([tx]));
        u64::from_str_radix(r["gasUsed"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    println!("gas of a transaction: an indexer's first registration {}", gas(tx));
    let c = EndpointRecord {
        node: checker.id(),
        role: EndpointRole::Checker,
        seq: 7,
        addr: "127.0.0.1:7200".into(),
        vrf_public: dci_committee_key(&checker),
        chain_signer: dci_chain::node_signer(&checker).address().into_array(),
    };
    let tx = ledger.register_endpoint(&c, &c.sign(&checker, &domain)).unwrap();
    println!("gas of a transaction: a checker's first registration {}", gas(tx));
    let m = read(&url, registry);
    assert_eq!(m.indexers, vec![Peer { id: indexer.id(), addr: "127.0.0.1:7100".into() }]);
    assert_eq!(m.checkers.len(), 1);
    assert_eq!(m.checkers[0].chain_signer, c.chain_signer);
    assert!(m.ignored.is_empty(), "{:?}", m.ignored);

    // It moved: a newer record replaces it.
    let moved = EndpointRecord::indexer(indexer.id(), 2_000, "127.0.0.1:7199");
    let tx = ledger.register_endpoint(&moved, &moved.sign(&indexer, &domain)).unwrap();
    println!("gas of a transaction: a newer record replacing an indexer's (it moved) {}", gas(tx));
    assert_eq!(read(&url, registry).indexers, vec![Peer { id: indexer.id(), addr: "127.0.0.1:7199".into() }]);

    // Replaying the older record (validly signed) is refused on chain.
    let e = ledger.register_endpoint(&first, &first.sign(&indexer, &domain)).unwrap_err();
    assert!(
        matches!(&e, ChainError::Refused { why, .. } if why.contains("expected a sequence newer than 2000") && why.contains("found 1000")),
        "{e}"
    );
    // A sequence far ahead of the chain's clock is refused: nobody can use
    // up a node's sequence numbers for long.
    let ahead = EndpointRecord::indexer(indexer.id(), u64::MAX, "127.0.0.1:7199");
    let e = ledger.register_endpoint(&ahead, &ahead.sign(&indexer, &domain)).unwrap_err();
    assert!(matches!(&e, ChainError::Refused { why, .. } if why.contains("clock ahead?")), "{e}");
    // A record signed for another registry is refused before any gas is paid.
    let elsewhere = RegistryDomain { registry: [9; 20], ..domain };
    let newer = EndpointRecord::indexer(indexer.id(), 3_000, "6.6.6.6:7100");
    let e = ledger.register_endpoint(&newer, &newer.sign(&indexer, &elsewhere)).unwrap_err();
    assert!(matches!(&e, ChainError::Input(m) if m.contains("signature: expected node")), "{e}");
    assert_eq!(read(&url, registry).indexers[0].addr, "127.0.0.1:7199");

    // The settler itself puts a record the node never signed on chain
    // (here: the indexer's id, an attacker's address, signed by another
    // key): the chain takes it (it cannot check ed25519), readers ignore it.
    let forged = EndpointRecord::indexer(indexer.id(), 4_000, "6.6.6.6:7100");
    send_as(&url, DEV_KEYS[0], registry, IRegistry::registerCall { e: raw(&forged, &forged.sign(&forger, &domain)) })
        .unwrap();
    let m = read(&url, registry);
    assert!(m.indexers.is_empty(), "the forged record is not a member: {:?}", m.indexers);
    assert_eq!(m.ignored.len(), 1);
    assert!(m.ignored[0].why.contains("signature: expected node"), "{:?}", m.ignored);
    // The node takes its place back with a newer record of its own.
    let back = EndpointRecord::indexer(indexer.id(), 5_000, "127.0.0.1:7199");
    ledger.register_endpoint(&back, &back.sign(&indexer, &domain)).unwrap();
    assert_eq!(read(&url, registry).indexers.len(), 1);

    // A stranger cannot write, even a record the node signed.
    let newest = EndpointRecord::indexer(indexer.id(), 6_000, "127.0.0.1:7100");
    let e = send_as(
        &url,
        DEV_KEYS[1],
        registry,
        IRegistry::registerCall { e: raw(&newest, &newest.sign(&indexer, &domain)) },
    )
    .unwrap_err();
    let stranger = PrivateKeySigner::from_str(DEV_KEYS[1]).unwrap().address();
    assert!(matches!(e, IRegistry::IRegistryErrors::NotSettler(ref n) if n.caller == stranger), "{e:?}");
    assert_eq!(read(&url, registry).indexers[0].addr, "127.0.0.1:7199", "unchanged");

    // The indexer unstakes below the minimum: it drops out of the active
    // set at once for every reader, and anyone may prune its record.
    ledger
        .apply(&[LedgerOp::Unstake {
            account: AccountId::for_node(&indexer.id()),
            role: StakeRole::Indexer,
            amount: Amount::ath(1),
            now: Timestamp(now_ms()),
        }])
        .unwrap();
    let m = read(&url, registry);
    assert!(m.indexers.is_empty(), "below the minimum: {:?}", m.indexers);
    assert!(m.ignored[0].why.contains("expected at least 100 ATH bonded as indexer, found 99 ATH"), "{:?}", m.ignored);
    assert_eq!(m.checkers.len(), 1, "the checker stays");
    send_as(&url, DEV_KEYS[1], registry, IRegistry::pruneCall { node: FixedBytes(indexer.id().0) }).unwrap();
    let m = read(&url, registry);
    assert!(m.ignored.is_empty() && m.indexers.is_empty(), "pruned: {m:?}");
    // The checker is still staked: nobody may prune it.
    let e =
        send_as(&url, DEV_KEYS[1], registry, IRegistry::pruneCall { node: FixedBytes(checker.id().0) }).unwrap_err();
    assert!(matches!(e, IRegistry::IRegistryErrors::StillStaked(_)), "{e:?}");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A checker's committee VRF key stands in here as any non-zero 32 bytes
/// (dci-chain does not depend on dci-committee).
fn dci_committee_key(id: &Identity) -> [u8; 32] {
    let mut k = id.id().0;
    k[0] ^= 0xff;
    k
}

/// More records than one page: the reader pages through all of them
/// (`page(start, 100)` until the count), each verified.
#[test]
fn the_reader_pages_through_every_record() {
    let Chain { anvil, deployment, mut ledger } = chain();
    let url = anvil.url();
    let domain = ledger.registry_domain().unwrap();
    let n = dci_chain::PAGE as usize + 5;
    let nodes: Vec<Identity> = (0..n)
        .map(|i| {
            let mut secret = [0xa0; 32];
            secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Identity::from_secret(secret)
        })
        .collect();
    let mut ops = Vec::new();
    for node in &nodes {
        let account = AccountId::for_node(&node.id());
        ops.push(LedgerOp::Transfer(Transfer {
            from: accounts::liquidity(),
            to: account.clone(),
            amount: Amount::ath(100),
        }));
        ops.push(LedgerOp::Stake { account, role: StakeRole::Indexer, amount: Amount::ath(100) });
    }
    ledger.apply(&ops).unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let r = EndpointRecord::indexer(node.id(), 1, format!("127.0.0.1:{}", 10_000 + i));
        ledger.register_endpoint(&r, &r.sign(node, &domain)).unwrap();
    }
    let m = read(&url, deployment.registry.unwrap());
    assert_eq!(m.indexers.len(), n, "every record over two pages");
    let mut ids: Vec<_> = m.indexers.iter().map(|p| p.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "none twice");
}
