//! Issue 14 end to end: registrations that name another container's address
//! cannot take it out of the market. A real `dci devnet` runs. An attacker
//! with a fresh key and no bond registers naming a victim container's
//! address: the indexer refuses it on its own connection (a registration
//! needs a bond), and nothing reaches the victim. Then, with two bonded
//! fresh keys, it registers twice (and once more after failing) over the
//! real transport, each time naming the victim's address. The checkers
//! challenge that address for the registrants; the victim refuses at once
//! (the challenges name other containers), each bogus registration fails as
//! `wrong_node`, and the victim stays schedulable and keeps passing its own
//! inspections. A registration naming a black hole (an address that never
//! answers a connection) fails after the checker's connect deadline while
//! the other containers' inspections go on.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dci_gateway::api::ContainerInfo;
use dci_model::{AccountId, ContainerSpec, GeoPoint, NodeId, ServiceName};
use dci_proto::{Identity, Message, Registration};

mod common;

use common::{Devnet, blackhole, cli_json, free_port};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The first container of the devnet's banner: its short id and its node address.
fn victim(net: &Devnet) -> (String, String) {
    net.banner
        .iter()
        .find_map(|l| {
            let l = l.trim();
            if !l.contains("(simulated)") {
                return None;
            }
            let short = l.split_whitespace().next()?.to_owned();
            let addr = l.rsplit(" at ").next()?.split_whitespace().next()?.to_owned();
            Some((short, addr))
        })
        .unwrap_or_else(|| panic!("the banner lists containers with their addresses: {:?}", net.banner))
}

fn registration(key: &Identity, addr: &str) -> Registration {
    Registration {
        addr: addr.to_owned(),
        spec: ContainerSpec {
            gpu: None,
            cpu_cores: 2,
            ram_gib: 4,
            disk_gib: 10,
            bandwidth_up_mbps: 100,
            bandwidth_down_mbps: 100,
            location: GeoPoint::new(0.0, 0.0).unwrap(),
        },
        services: vec![ServiceName::new("render").unwrap()],
        price: "0.5".parse().unwrap(),
        slots: 1,
        payout: AccountId::for_node(&key.id()),
    }
}

/// Bonds the minimum container stake for `key`'s node account, straight in
/// the devnet's ledger (as a faucet would).
fn bond(dir: &std::path::Path, key: &Identity) {
    use dci_ledger::{EmbeddedLedger, Genesis, LedgerOp, StakeRole, Transfer};
    let mut ledger = EmbeddedLedger::open(dir.join("gateway").join("ledger.db"), &Genesis::devnet()).unwrap();
    let account = AccountId::for_node(&key.id());
    let stake = dci_ledger::params::DEFAULT_MIN_CONTAINER_STAKE;
    let fund = Transfer { from: dci_ledger::accounts::liquidity(), to: account.clone(), amount: stake };
    ledger
        .apply(&[LedgerOp::Transfer(fund), LedgerOp::Stake { account, role: StakeRole::Container, amount: stake }])
        .unwrap();
}

/// Polls `dci containers` until `done` holds (a minute at most).
fn until(dir: &std::path::Path, what: &str, done: impl Fn(&[ContainerInfo]) -> bool) -> Vec<ContainerInfo> {
    let t0 = Instant::now();
    loop {
        let list: Vec<ContainerInfo> = cli_json(dir, &["containers"]);
        if done(&list) {
            return list;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{what}: not within 60 s: {list:#?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn registrations_naming_a_victims_address_fail_as_wrong_node_and_the_victim_keeps_passing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = Devnet::start_expecting(dir, free_port(), 2, &["--inspect-every-secs", "2"], "2/2");
    let indexer = dci_node::network::Network::load(&dir.join("network.toml")).unwrap().indexers[0].clone();
    let (victim_short, victim_addr) = victim(&net);
    let find = |list: &[ContainerInfo], id: &str| list.iter().find(|c| c.id.starts_with(id)).cloned();
    let before = find(&cli_json::<Vec<ContainerInfo>>(dir, &["containers"]), &victim_short).expect("the victim");
    let victim_id: NodeId = before.id.parse().unwrap();
    assert!(before.state == "healthy" || before.state == "ready", "{before:#?}");

    let attack_at = now_ms();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    // Without a bond: refused on the registrant's own connection, with how much is needed.
    let unbonded = Identity::from_secret([0x5a; 32]);
    let network = dci_proto::NetworkId::of(&dci_node::network::Network::load(&dir.join("network.toml")).unwrap().name);
    let (tx, mut inbox) = tokio::sync::mpsc::channel(64);
    let t = rt.block_on(dci_node::transport::Transport::bind(unbonded.clone(), network, "127.0.0.1:0", tx)).unwrap();
    rt.block_on(t.send(&indexer.addr, &Message::Register(registration(&unbonded, &victim_addr)))).unwrap();
    let refused =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), inbox.recv()).await }).unwrap().unwrap();
    match refused.msg {
        Message::Refused { reason } => {
            assert!(reason.contains("expected a container stake of at least 100 ATH"), "{reason}")
        }
        other => panic!("expected a refusal, found {other:?}"),
    }
    let list: Vec<ContainerInfo> = cli_json(dir, &["containers"]);
    assert!(find(&list, &unbonded.id().to_string()).is_none(), "an unbonded registration leaves no record");

    // The attack, over the real transport, from two fresh keys that bonded.
    let attackers = [Identity::from_secret([0x5b; 32]), Identity::from_secret([0x5c; 32])];
    for key in &attackers {
        bond(dir, key);
    }
    let mut transports = Vec::new();
    for key in &attackers {
        // Kept open (the indexer answers on the connection) until the test ends.
        let (tx, inbox) = tokio::sync::mpsc::channel(64);
        let t = rt.block_on(dci_node::transport::Transport::bind(key.clone(), network, "127.0.0.1:0", tx)).unwrap();
        rt.block_on(t.send(&indexer.addr, &Message::Register(registration(key, &victim_addr)))).unwrap();
        transports.push((t, inbox));
    }

    // Each bogus registration fails at once as the wrong node, naming both keys.
    let wrong_node = |key: &Identity| {
        format!("failed: wrong_node: the address answers with key {victim_id}, not the registrant's {}", key.id())
    };
    let failures = |list: &[ContainerInfo], key: &Identity| {
        find(list, &key.id().to_string())
            .map_or(0, |c| c.verdicts.iter().filter(|v| !v.passed && v.reason == wrong_node(key)).count())
    };
    let list =
        until(dir, "both bogus registrations fail as wrong_node", |l| attackers.iter().all(|k| failures(l, k) == 1));
    for key in &attackers {
        let bogus = find(&list, &key.id().to_string()).unwrap();
        assert!(bogus.state == "reinspection-required" || bogus.state == "quality-control", "{bogus:#?}");
        assert!(bogus.verdicts.iter().all(|v| !v.passed), "{bogus:#?}");
    }

    // Again: a registrant that failed may register again and fails again.
    for (key, (t, _)) in attackers.iter().zip(&transports) {
        rt.block_on(t.send(&indexer.addr, &Message::Register(registration(key, &victim_addr)))).unwrap();
    }
    until(dir, "both fail again", |l| attackers.iter().all(|k| failures(l, k) == 2));

    // A registration naming a black hole (an address whose connection
    // attempts hang until the checker's 5 s connect deadline): the
    // inspections of everyone else go on at their pace meanwhile.
    let (_hole, _filler, hole_addr) = rt.block_on(blackhole());
    let diver = Identity::from_secret([0x5d; 32]);
    bond(dir, &diver);
    let (tx, diver_inbox) = tokio::sync::mpsc::channel(64);
    let t = rt.block_on(dci_node::transport::Transport::bind(diver.clone(), network, "127.0.0.1:0", tx)).unwrap();
    let hole_at = now_ms();
    rt.block_on(t.send(&indexer.addr, &Message::Register(registration(&diver, &hole_addr)))).unwrap();
    let list = until(dir, "the black-hole registration fails", |l| {
        find(l, &diver.id().to_string()).is_some_and(|c| c.verdicts.iter().any(|v| !v.passed))
    });
    let failed_at = find(&list, &diver.id().to_string()).unwrap().verdicts.iter().find(|v| !v.passed).unwrap().at_ms;
    let others: Vec<u64> = list
        .iter()
        .filter(|c| c.id != diver.id().to_string() && !attackers.iter().any(|k| c.id == k.id().to_string()))
        .flat_map(|c| c.verdicts.iter().filter(|v| v.at_ms >= hole_at && v.at_ms <= failed_at).map(|v| v.at_ms))
        .collect();
    println!(
        "a registration naming a black hole failed {} ms after it; meanwhile {} inspections of the other containers \
         passed (every 2 s each)",
        failed_at - hole_at,
        others.len()
    );
    assert!(failed_at - hole_at >= 4_000, "the black hole answered? failed after {} ms", failed_at - hole_at);
    assert!(!others.is_empty(), "no other container was inspected while the checker waited on the black hole");
    transports.push((t, diver_inbox));

    // The victim stays schedulable and keeps being inspected as usual:
    // passed standby inspections after the attack, and nothing failed.
    let after = |c: &ContainerInfo| c.verdicts.iter().filter(|v| v.at_ms > attack_at).cloned().collect::<Vec<_>>();
    let list = until(dir, "the victim passes three inspections after the attack", |l| {
        let v = find(l, &victim_short).unwrap();
        assert!(v.state == "healthy" || v.state == "ready", "the victim left the market: {v:#?}");
        assert!(after(&v).iter().all(|x| x.passed), "the victim failed an inspection: {v:#?}");
        after(&v).len() >= 3
    });
    let v = find(&list, &victim_short).unwrap();
    for x in after(&v) {
        println!("victim after the attack: {} {} {}", x.kind, x.passed, x.reason);
    }
    assert_eq!(v.state, "healthy", "{v:#?}");
    assert!(v.reputation >= before.reputation, "the victim lost reputation: {} -> {}", before.reputation, v.reputation);
    assert!(
        v.transitions.iter().all(|t| t.at_ms <= attack_at || t.to == "healthy" || t.to == "ready"),
        "no state change of the victim: {v:#?}"
    );
    drop(transports);
    net.signal("-TERM");
}
