//! Every role as its own process (R-SC1), as operators on separate machines
//! run them, here on loopback (`common::cluster`): gateways, indexers,
//! checkers and container hosts, each with its own data directory and node
//! config, and one network file assembled from what `dci <role> id` prints.
//! The hosts bond their stake with `dci container stake`, the checkers with
//! `dci checker stake` (and then sit on the epoch committee).
//!
//! - One indexer that moves to another port: every role follows the edited
//!   network file.
//! - Two indexers (issue 15): the hosts register and heartbeat with both,
//!   deploys go through either, one SIGKILLed does not stop deploys, and
//!   restarted without its registry it rebuilds its view from heartbeats.
//!
//! At the end each process stops cleanly on SIGTERM and the ledger's supply
//! is conserved.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, HostSpec, Layout, Place, Proc, run, unix_ms, wait_for, write};
use dci_gateway::api::{SessionInfo, SessionStatus};

/// Deploys render, uses it for a moment, stops it: the bill is settled.
fn session(c: &Cluster) -> SessionInfo {
    let s: SessionInfo = c.gateway_json(&["deploy", "render"]);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(2200) {
        let png = reqwest::blocking::get(format!("{}/frame?width=64&height=48", s.endpoint)).unwrap();
        assert_eq!(png.status(), 200);
        assert!(png.bytes().unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    }
    let stopped: SessionInfo = c.gateway_json(&["stop", &s.id]);
    assert_eq!(stopped.status, SessionStatus::Stopped);
    assert!(stopped.billed_seconds.unwrap() >= 2, "{stopped:?}");
    stopped
}

fn loopback(indexers: usize, checkers: usize, hosts: usize) -> Layout {
    Layout {
        gateway: Place::loopback(),
        relay: false,
        indexers: vec![Place::loopback(); indexers],
        checkers: vec![Place::loopback(); checkers],
        hosts: (0..hosts).map(|i| HostSpec::render(Place::loopback(), &format!("0.{}", i + 5))).collect(),
        committee: checkers,
        epoch_secs: 4,
    }
}

#[test]
fn every_role_runs_as_its_own_process_and_follows_the_network_file() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::write(tmp.path(), loopback(1, 2, 2));
    let parsed = c.parsed();
    assert_eq!((parsed.gateways.len(), parsed.indexers.len(), parsed.checkers.len()), (1, 1, 2));

    // A config with a typo is refused, saying what was expected and found.
    let bad = tmp.path().join("bad");
    write(
        &bad.join("node.toml"),
        &format!("listen = \"127.0.0.1:1\"\nnetwork = {:?}\ninspect_evry_secs = 600\n", c.network),
    );
    let (ok, _, err) = run(&Place::loopback(), &bad, &["indexer", "run"]);
    assert!(!ok && err.contains("unknown field `inspect_evry_secs`") && err.contains("expected one of"), "{err}");
    let (ok, out, _) = run(&Place::loopback(), &bad, &["indexer", "run", "--print-example"]);
    assert!(ok && out.contains("inspect_every_secs = 3600"), "{out}");

    let (mut indexers, checkers, gateway) = c.start_roles();
    assert_eq!(gateway.id, parsed.gateways[0].id.to_string());
    // On the embedded ledger there is no endpoint registry: a node-signed
    // registration is answered with where membership comes from.
    let body = serde_json::json!({
        "node": parsed.indexers[0].id.to_string(), "role": "indexer", "seq": 1,
        "addr": parsed.indexers[0].addr, "signature": "00",
    });
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/node-register", parsed.gateways[0].api))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let text = r.text().unwrap();
    assert!(text.contains("no_registry") && text.contains("membership comes from the network file"), "{text}");
    assert_eq!(indexers[0].id, parsed.indexers[0].id.to_string());
    c.bond_hosts();
    let hosts = c.start_hosts();
    c.bond_checkers();
    wait_for(Duration::from_secs(90), "both hosts inspected and schedulable", || c.all_schedulable(2).then_some(()));

    let first = session(&c);
    assert!(hosts.iter().any(|h| h.id == first.container), "{first:?}");

    // The indexer moves to another port: its operator restarts it there and
    // edits the network file; every role re-reads it and follows.
    indexers.pop().unwrap().stop();
    let moved = Place::loopback().addr();
    let config = std::fs::read_to_string(c.indexers[0].join("node.toml")).unwrap();
    let old = config.lines().find(|l| l.starts_with("listen")).unwrap().to_owned();
    write(&c.indexers[0].join("node.toml"), &config.replace(&old, &format!("listen = \"{moved}\"")));
    let old_addr = parsed.indexers[0].addr.clone();
    write(&c.network, &std::fs::read_to_string(&c.network).unwrap().replace(&old_addr, &moved));
    let indexer = Proc::start("indexer", &c.indexers[0], &Place::loopback());
    wait_for(Duration::from_secs(60), "the hosts heartbeating to the moved indexer", || {
        c.all_schedulable(2).then_some(())
    });
    let second = session(&c);

    // Everyone stops cleanly; the gateway settles first.
    for h in hosts {
        h.stop();
    }
    gateway.stop();
    for x in checkers {
        x.stop();
    }
    indexer.stop();
    c.check_ledger(&[first, second]);
}

#[test]
fn two_indexers_share_the_deploys_and_one_killed_does_not_stop_them() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::write(tmp.path(), loopback(2, 1, 2));
    let (mut indexers, checkers, gateway) = c.start_roles();
    c.bond_hosts();
    let hosts = c.start_hosts();
    c.bond_checkers();
    wait_for(Duration::from_secs(90), "both hosts schedulable at both indexers", || {
        c.every_indexer_schedules_every_host().then_some(())
    });

    // Both indexers match: the gateway asks the one the seed names.
    let ids: Vec<String> = indexers.iter().map(|i| i.id.clone()).collect();
    let before = c.deploy_through(&[&ids[0], &ids[1]], 2);
    c.print_deploys_by_indexer(&ids, &before);
    let mut sessions: Vec<SessionInfo> = before.into_iter().map(|(s, _)| s).collect();

    // SIGKILL the first indexer: deploys go on through the other. A
    // request the seed gives to the dead one finds it unreachable and goes
    // to the other at once (the dead one is then left out for 10 s).
    sessions.extend(c.deploys_after_killing(indexers.remove(0), &ids[1]));

    // Restarted on its address without its registry, the indexer hears
    // heartbeats from containers it does not know, says so, and they
    // register again: its view is rebuilt (inspections included) from them.
    std::fs::remove_file(c.indexers[0].join("indexer.db")).unwrap();
    let since = unix_ms();
    let back = Proc::start("indexer", &c.indexers[0], &c.layout.indexers[0]);
    let took = c.wait_reinspected(since);
    println!("the restarted indexer rebuilt its view of 2 hosts in {} ms", took.as_millis());
    sessions.extend(c.deploy_through(&[&ids[0]], 1).into_iter().map(|(s, _)| s));

    for h in hosts {
        h.stop();
    }
    gateway.stop();
    for x in checkers {
        x.stop();
    }
    back.stop();
    for i in indexers {
        i.stop();
    }
    c.check_ledger(&sessions);
}
