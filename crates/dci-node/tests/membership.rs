//! A running node follows the chain's endpoint registry (issue 15), on
//! anvil: `membership::load` and `membership::follow` (what every role
//! runs with `[chain]`) merge the registry's verified members into the
//! network file; an indexer that registers is added, one that moves is
//! followed, and one whose stake falls below the minimum drops out of the
//! active set without anyone touching the registry (no prune, no
//! withdrawal), while the file's own indexer stays.

use std::time::Duration;

use dci_chain::{Anvil, AnvilOptions, DEV_KEYS, EvmLedger};
use dci_ledger::{Genesis, LedgerOp, Params, Settlement, StakeRole, Transfer, accounts};
use dci_model::{AccountId, Amount, Timestamp};
use dci_node::membership::{ChainSection, follow, load};
use dci_node::network::{IndexerEntry, NETWORK_FILE, Network};
use dci_proto::{EndpointRecord, Identity};
use tokio_util::sync::CancellationToken;

fn indexers(n: &Network) -> Vec<(dci_model::NodeId, String)> {
    n.indexers.iter().map(|x| (x.id, x.addr.clone())).collect()
}

#[test]
fn a_node_follows_the_registry_and_drops_an_indexer_whose_stake_fell() {
    let anvil = Anvil::start_with(&AnvilOptions::default()).expect("anvil (run `cargo xtask deps` if it is missing)");
    let url = anvil.url();
    let checker = Identity::from_secret([70; 32]);
    let dep = dci_chain::deploy(
        &url,
        DEV_KEYS[0],
        &Genesis::default(),
        &Params::default(),
        &[dci_chain::node_signer(&checker).address()],
    )
    .unwrap();
    let mut ledger = EvmLedger::connect(&url, DEV_KEYS[0], &dep).unwrap();
    let domain = ledger.registry_domain().unwrap();
    let chain = ChainSection { rpc_url: url.clone(), registry: format!("{:?}", dep.registry.unwrap()), poll_secs: 1 };

    // The file lists indexer A; indexer B is staked and on chain only.
    let (a, b) = (Identity::from_secret([71; 32]), Identity::from_secret([72; 32]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NETWORK_FILE);
    let file = Network {
        name: "t".into(),
        gateways: vec![],
        indexers: vec![IndexerEntry { id: a.id(), addr: "127.0.0.1:7100".into() }],
        checkers: vec![],
    };
    file.save(&path).unwrap();
    let account = AccountId::for_node(&b.id());
    ledger
        .apply(&[
            LedgerOp::Transfer(Transfer { from: accounts::liquidity(), to: account.clone(), amount: Amount::ath(100) }),
            LedgerOp::Stake { account: account.clone(), role: StakeRole::Indexer, amount: Amount::ath(100) },
        ])
        .unwrap();
    let register = |seq: u64, addr: &str| {
        let r = EndpointRecord::indexer(b.id(), seq, addr);
        ledger.register_endpoint(&r, &r.sign(&b, &domain)).unwrap();
    };
    register(1, "127.0.0.1:7200");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let start = rt.block_on(load(&path, Some(&chain))).unwrap();
    assert_eq!(
        indexers(&start.network()),
        vec![(a.id(), "127.0.0.1:7100".into()), (b.id(), "127.0.0.1:7200".into())],
        "at start: the file's indexer and the chain's"
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let stop = CancellationToken::new();
    rt.block_on(async {
        follow(path.clone(), Some(chain.clone()), start, stop.clone(), move |n| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(n).await;
            }
        })
    });
    let mut next = || {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), rx.recv()).await })
            .expect("a membership change within 15 s")
            .unwrap()
    };

    // B moves: a newer record; every follower takes the new address.
    register(2, "127.0.0.1:7299");
    assert_eq!(indexers(&next()), vec![(a.id(), "127.0.0.1:7100".into()), (b.id(), "127.0.0.1:7299".into())]);

    // B's stake falls below the minimum (100 ATH): its record is still on
    // chain, but no reader takes it any more.
    ledger
        .apply(&[LedgerOp::Unstake {
            account,
            role: StakeRole::Indexer,
            amount: Amount::ath(1),
            now: Timestamp(dci_node::clock::now().0),
        }])
        .unwrap();
    assert_eq!(indexers(&next()), vec![(a.id(), "127.0.0.1:7100".into())], "B dropped, A (from the file) kept");
    stop.cancel();
    drop(rt);
    drop(ledger);
}
