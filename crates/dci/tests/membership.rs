//! Membership on the chain (issue 15), end to end on anvil with every role
//! its own `dci <role> run` process (`common::cluster`): the contracts are
//! deployed with `dci chain deploy` (the ledger and its endpoint registry),
//! every node's config gets a `[chain]` table, and the network file lists
//! the gateway, one indexer (A) and the checker, but NOT the second
//! indexer (B). B bonds indexer stake with its node key (`dci indexer
//! stake`) and publishes its endpoint (`dci indexer register`): the gateway
//! verifies the record and puts it on chain; every node reads the registry,
//! verifies it, and takes B as a peer without a restart. The host registers
//! with B, the checker inspects it for B, and deploys go through B. Then B
//! withdraws its record (`--withdraw`) and drops out: the host drops it,
//! and deploys go on through A. On the way: a tampered registration is
//! refused by the gateway before any gas is paid, an older record replayed
//! is refused by the chain, and the checker registers with its keys. At the end each process stops cleanly and `dci ledger check` holds
//! on chain.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, HostSpec, Layout, Place, run, wait_for};
use dci_chain::{Anvil, AnvilOptions};
use dci_node::settlement::SettlementConfig;

/// Appends `[chain]` to the config file at `path`.
fn add_chain(path: &std::path::Path, rpc_url: &str, registry: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let table = format!("\n[chain]\nrpc_url = \"{rpc_url}\"\nregistry = \"{registry}\"\npoll_secs = 1\n");
    std::fs::write(path, text + &table).unwrap();
}

/// The indexers host `i` works with, as its status says: (id, state).
fn host_indexers(c: &Cluster, i: usize) -> Vec<(String, Option<String>)> {
    c.host_status(i).map(|s| s.indexers.into_iter().map(|x| (x.id, x.state)).collect()).unwrap_or_default()
}

#[test]
fn an_indexer_listed_only_on_chain_is_found_used_and_dropped_when_it_withdraws() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout {
        gateway: Place::loopback(),
        relay: false,
        indexers: vec![Place::loopback(); 2],
        checkers: vec![Place::loopback()],
        hosts: vec![HostSpec::render(Place::loopback(), "0.5")],
        committee: 1,
        epoch_secs: 600,
    };
    let c = Cluster::write(tmp.path(), layout);
    // Indexer B is not in the network file: only the chain will list it.
    let mut file = c.parsed();
    let b = file.indexers.pop().unwrap();
    let a = file.indexers[0].clone();
    file.save(&c.network).unwrap();
    assert_eq!(c.parsed().indexers.len(), 1);

    // Without [chain], registering says what is missing.
    let (ok, _, err) = run(&Place::loopback(), &c.indexers[1], &["indexer", "register"]);
    assert!(!ok && err.contains("expected a [chain] table (rpc_url, registry)"), "{err}");

    // The chain: anvil, then the ledger and its registry (`dci chain deploy`).
    let anvil = Anvil::start_with(&AnvilOptions::default()).expect("anvil (run `cargo xtask deps` if it is missing)");
    let (ok, out, err) = c.at_gateway(&["chain", "deploy", "--rpc-url", &anvil.url()]);
    assert!(ok, "dci chain deploy: {out}{err}");
    assert!(out.contains("registry 0x") && out.contains("[chain]"), "{out}");
    let dep = SettlementConfig::load(&c.gateway).unwrap().evm.unwrap().deployment.unwrap();
    let registry = format!("{:?}", dep.registry.expect("the registry is deployed with the ledger"));
    for dir in [&c.gateway, &c.indexers[0], &c.indexers[1], &c.checkers[0]] {
        add_chain(&dir.join("node.toml"), &anvil.url(), &registry);
    }
    add_chain(&c.hosts[0].join("container.toml"), &anvil.url(), &registry);

    let (indexers, checkers, gateway) = c.start_roles();
    c.bond_hosts();
    let hosts = c.start_hosts();
    wait_for(Duration::from_secs(90), "the host schedulable at indexer A", || {
        let xs = host_indexers(&c, 0);
        (xs.len() == 1 && xs[0].0 == a.id.to_string() && matches!(xs[0].1.as_deref(), Some("healthy" | "ready")))
            .then_some(())
    });

    // B registers before bonding: the chain refuses it, saying why.
    let (ok, out, err) = run(&Place::loopback(), &c.indexers[1], &["indexer", "register"]);
    assert!(
        !ok && err.contains("expected at least 100 ATH bonded by node:") && err.contains("dci indexer stake"),
        "{out}{err}"
    );
    // Funded, B bonds with its node key and registers; nobody edits a file.
    let account = format!("node:{}", b.id);
    let (ok, _, err) = c.at_gateway(&["transfer", &account, "100"]);
    assert!(ok, "funding {account}: {err}");
    let (ok, out, err) = run(&Place::loopback(), &c.indexers[1], &["indexer", "stake", "100"]);
    assert!(ok && out.contains("staked 100 ATH"), "dci indexer stake: {out}{err}");
    // The gateway's relay checks the node's signature before it pays gas: a
    // request signed by B, then tampered with (another address), is refused
    // as unauthorized. (The genuine one is kept to be replayed later.)
    let api = file.gateways[0].api.clone();
    let key = dci_node::keys::load_or_create(&c.indexers[1].join("node.key")).unwrap();
    let chain = dci_node::membership::ChainSection { rpc_url: anvil.url(), registry: registry.clone(), poll_secs: 1 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let req = rt
        .block_on(dci_node::node::register_request(&key, dci_proto::EndpointRole::Indexer, b.addr.clone(), &chain))
        .unwrap();
    let post = |body: &dci_gateway::api::NodeRegisterRequest| {
        let r = reqwest::blocking::Client::new().post(format!("{api}/v1/node-register")).json(body).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let tampered = dci_gateway::api::NodeRegisterRequest { addr: "127.0.0.1:1".into(), ..req.clone() };
    let (status, text) = post(&tampered);
    assert!(status == 401 && text.contains("signature: expected node"), "{status} {text}");
    let registered_at = Instant::now();
    let (ok, out, err) = run(&Place::loopback(), &c.indexers[1], &["indexer", "register"]);
    assert!(ok && out.contains(&format!("at {}", b.addr)), "dci indexer register: {out}{err}");
    // The host (whose network file does not list B) finds B on chain,
    // registers there and is inspected for it.
    wait_for(Duration::from_secs(90), "the host schedulable at both indexers", || {
        let xs = host_indexers(&c, 0);
        (xs.len() == 2 && xs.iter().all(|(_, s)| matches!(s.as_deref(), Some("healthy" | "ready")))).then_some(())
    });
    println!(
        "indexer B listed only on chain: the host schedulable there {} ms after `dci indexer register`",
        registered_at.elapsed().as_millis()
    );
    // Each registration costs the gateway gas: a second one within 30 s is
    // refused before anything is sent.
    let (ok, out, err) = run(&Place::loopback(), &c.indexers[1], &["indexer", "register"]);
    assert!(!ok && err.contains("expected at most one registration of node") && err.contains("per 30 s"), "{out}{err}");
    // The older record B signed before registering, replayed now: the
    // chain refuses it (sequences only grow), so B's address stays.
    let (status, text) = post(&req);
    assert!(status == 409 && text.contains("expected a sequence newer than"), "{status} {text}");
    // The checker (listed in the file) registers on chain too, with its
    // VRF key and chain signer: the chain entry replaces the file's.
    let checker = &file.checkers[0];
    let account = format!("node:{}", checker.id);
    let (ok, _, err) = c.at_gateway(&["transfer", &account, "1000"]);
    assert!(ok, "funding {account}: {err}");
    let (ok, out, err) = run(&Place::loopback(), &c.checkers[0], &["checker", "stake", "1000"]);
    assert!(ok && out.contains("staked 1000 ATH"), "dci checker stake: {out}{err}");
    let (ok, out, err) = run(&Place::loopback(), &c.checkers[0], &["checker", "register", "--json"]);
    assert!(ok, "dci checker register: {out}{err}");
    let info: dci_gateway::api::NodeRegisterInfo = serde_json::from_str(&out).unwrap();
    assert_eq!((info.role.as_str(), info.addr.as_str()), ("checker", checker.addr.as_str()));
    let members = rt.block_on(chain.read()).unwrap();
    assert_eq!(members.indexers.iter().map(|p| p.id).collect::<Vec<_>>(), vec![b.id]);
    assert_eq!(members.checkers.len(), 1);
    assert_eq!(
        (members.checkers[0].vrf_public, members.checkers[0].chain_signer),
        (checker.vrf_public, checker.chain_signer),
        "the keys the checker signed are the ones its file entry lists"
    );

    // The gateway found it too: deploys go through B.
    let b_id = b.id.to_string();
    let through_b = c.deploy_through(&[&b_id], 1);
    assert!(through_b.iter().any(|(s, _)| s.indexer.as_deref() == Some(b_id.as_str())));
    c.print_deploys_by_indexer(&[a.id.to_string(), b_id.clone()], &through_b);

    // B withdraws its record: every node drops it (the file never listed it).
    let (ok, out, err) = run(&Place::loopback(), &c.indexers[1], &["indexer", "register", "--withdraw"]);
    assert!(ok && out.contains("withdrew indexer"), "{out}{err}");
    let withdrawn_at = Instant::now();
    wait_for(Duration::from_secs(30), "the host to drop indexer B", || {
        let xs = host_indexers(&c, 0);
        (xs.len() == 1 && xs[0].0 == a.id.to_string()).then_some(())
    });
    println!("after the withdrawal: the host dropped indexer B in {} ms", withdrawn_at.elapsed().as_millis());
    // Deploys go on, through A: once B's view of the host is stale (the
    // host no longer heartbeats there), four deploys in a row through A.
    let a_id = a.id.to_string();
    wait_for(Duration::from_secs(30), "four deploys in a row through indexer A", || {
        (0..4).all(|_| c.quick_session(&["render"]).0.indexer.as_deref() == Some(a_id.as_str())).then_some(())
    });

    for h in hosts {
        h.stop();
    }
    gateway.stop();
    for x in checkers.into_iter().chain(indexers) {
        x.stop();
    }
    let report: serde_json::Value = c.gateway_json(&["ledger", "check"]);
    let part = |k: &str| report[k].as_str().unwrap().parse::<u128>().unwrap();
    let sum: u128 = ["balances", "escrowed", "staked", "unbonding", "rewards"].iter().map(|k| part(k)).sum();
    assert_eq!(sum, part("expected"), "{report}");
    assert_eq!(part("escrowed"), 0, "every session settled on chain: {report}");
}

/// A ledger deployed before the registry existed gets one over it (`dci
/// chain deploy-registry`): recorded in settlement.toml, readable, and only
/// once.
#[test]
fn an_older_deployment_gets_its_registry_over_the_same_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let anvil = Anvil::start_with(&AnvilOptions::default()).expect("anvil (run `cargo xtask deps` if it is missing)");
    let signer = dci_chain::node_signer(&dci_proto::Identity::from_secret([9; 32])).address();
    let (ok, out, err) = run(
        &Place::loopback(),
        dir,
        &["chain", "deploy", "--rpc-url", &anvil.url(), "--committee", &format!("{signer:?}")],
    );
    assert!(ok, "{out}{err}");
    // As an older deployment: no registry recorded.
    let mut config = SettlementConfig::load(dir).unwrap();
    let ledger = config.evm.as_ref().unwrap().deployment.as_ref().unwrap().ledger;
    config.evm.as_mut().unwrap().deployment.as_mut().unwrap().registry = None;
    config.save(dir).unwrap();

    let (ok, out, err) = run(&Place::loopback(), dir, &["chain", "deploy-registry"]);
    assert!(ok && out.contains(&format!("over ledger {ledger}")) && out.contains("[chain]"), "{out}{err}");
    let dep = SettlementConfig::load(dir).unwrap().evm.unwrap().deployment.unwrap();
    assert_eq!(dep.ledger, ledger, "the same ledger");
    let registry = dep.registry.expect("recorded");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let members = rt.block_on(dci_chain::read_members(&anvil.url(), registry)).unwrap();
    assert_eq!(members, dci_chain::Members::default(), "a working, empty registry");
    let (ok, _, err) = run(&Place::loopback(), dir, &["chain", "deploy-registry"]);
    assert!(!ok && err.contains("already has its endpoint registry"), "{err}");
}
