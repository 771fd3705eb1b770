//! Several indexers: each request goes to the one the epoch seed names
//! among the live ones (anyone can check the choice), a dead one costs a
//! deploy one timeout and is then left out, and a reservation's releases
//! and renewals go to the indexer that holds it.

use std::time::Duration;

use dci_gateway_core::{Command, Peer, Status};
use dci_model::NodeId;
use dci_proto::{Identity, Message};

use crate::world::{Host, World, config, consumer, identity};

const INDEXERS: [u8; 3] = [1, 4, 5];

fn addr(n: u8) -> String {
    format!("10.0.0.{n}:7000")
}

fn three_indexers() -> World {
    let mut c = config();
    c.indexers = INDEXERS.iter().map(|&n| Peer { id: identity(n).id(), addr: addr(n) }).collect();
    World::with_config(c)
}

/// The latest Match: (request id, placement, the indexer it went to).
fn last_match(w: &World) -> (u64, dci_model::SessionId, Identity) {
    let (to, msg) = w.sent.iter().rev().find(|(_, m)| m.kind() == "match").cloned().expect("a match");
    let n = INDEXERS.into_iter().find(|&n| addr(n) == to).expect("sent to an indexer");
    match msg {
        Message::Match { request_id, session, .. } => (request_id, session, identity(n)),
        _ => unreachable!(),
    }
}

/// Deploys until one asks `indexer` first, and returns that deploy (the
/// others are answered "no match" by every indexer in turn).
fn first_asking(w: &mut World, indexer: NodeId) -> dci_gateway_core::CallId {
    loop {
        let call = w.deploy("render", 1);
        if last_match(w).2.id() == indexer {
            return call;
        }
        while w.reply(call).is_none() {
            let (request_id, _, asked) = last_match(w);
            w.from(&asked, Message::NoMatch { request_id, eliminations: Default::default() });
        }
    }
}

fn ids() -> Vec<NodeId> {
    INDEXERS.iter().map(|&n| identity(n).id()).collect()
}

#[test]
fn each_request_goes_to_the_indexer_the_seed_names_and_anyone_can_check_it() {
    let mut w = three_indexers();
    let host = Host::new(10, "1");
    let mut served = std::collections::BTreeMap::<NodeId, u32>::new();
    for _ in 0..30 {
        let call = w.deploy("render", 1);
        let (request_id, placement, indexer) = last_match(&w);
        // Recomputed here from the public inputs: the same choice.
        assert_eq!(dci_indexer::serving_indexer(&placement.0, &[0; 32], &ids()), Some(indexer.id()));
        *served.entry(indexer.id()).or_default() += 1;
        // Another indexer cannot answer for it.
        let other = INDEXERS.iter().map(|&n| identity(n)).find(|i| i.id() != indexer.id()).unwrap();
        let before = w.rejected.len();
        w.from(&other, Message::Matched { request_id, offer: host.offer() });
        assert_eq!(w.rejected.len(), before + 1);
        w.from(&indexer, Message::Matched { request_id, offer: host.offer() });
        w.host_started(&host, "http://127.0.0.1:9000");
        let s = w.session_of(call);
        let stop = w.call(Command::Stop { account: consumer(), session: s.id });
        let started = w.now;
        w.from(&host.identity, Message::SessionStopped { receipt: host.receipt(s.placement.id, "render", started, 0) });
        assert_eq!(w.session_of(stop).status, Status::Stopped);
        // Released at the indexer that holds the reservation, and only there.
        let (to, _) = w.sent.iter().rev().find(|(_, m)| m.kind() == "release").unwrap();
        assert_eq!(to, &addr(INDEXERS.into_iter().find(|&n| identity(n).id() == indexer.id()).unwrap()));
    }
    assert_eq!(served.len(), 3, "every indexer serves some: {served:?}");
}

#[test]
fn a_dead_indexer_costs_one_timeout_and_is_then_left_out() {
    let mut w = three_indexers();
    let host = Host::new(10, "1");
    // A deploy that asks the dead indexer first.
    let dead = identity(INDEXERS[0]).id();
    let call = first_asking(&mut w, dead);
    // It never answers: after the timeout the same deploy asks another one.
    w.run_for(Duration::from_secs(5), Duration::from_millis(250));
    let (request_id, _, second) = last_match(&w);
    assert_ne!(second.id(), dead);
    assert!(w.reply(call).is_none(), "the deploy still waits, on another indexer");
    w.from(&second, Message::Matched { request_id, offer: host.offer() });
    w.host_started(&host, "http://127.0.0.1:9000");
    assert_eq!(w.session_of(call).status, Status::Running);
    // For a while no request goes to the dead one.
    for _ in 0..20 {
        let call = w.deploy("render", 1);
        while w.reply(call).is_none() {
            let (request_id, _, indexer) = last_match(&w);
            assert_ne!(indexer.id(), dead, "left out while it is down");
            w.from(&indexer, Message::NoMatch { request_id, eliminations: Default::default() });
        }
    }
}

#[test]
fn renewals_go_to_the_indexer_that_holds_each_reservation() {
    let mut w = three_indexers();
    let host = Host::new(10, "1");
    let mut holders = Vec::new();
    for _ in 0..6 {
        let call = w.deploy("render", 1);
        let (request_id, _, indexer) = last_match(&w);
        w.from(&indexer, Message::Matched { request_id, offer: host.offer() });
        w.host_started(&host, "http://127.0.0.1:9000");
        holders.push((w.session_of(call).placement.id, indexer.id()));
    }
    let started = w.now;
    for t in 1..=11 {
        w.advance(Duration::from_secs(1));
        for (placement, _) in &holders {
            w.from(&host.identity, Message::Usage { receipt: host.receipt(*placement, "render", started, t) });
        }
    }
    for (placement, holder) in holders {
        let renewed_at: Vec<String> = w
            .sent_of("renew")
            .into_iter()
            .filter(|(_, m)| matches!(m, Message::Renew { sessions } if sessions.contains(&placement)))
            .map(|(a, _)| a)
            .collect();
        let expected = addr(INDEXERS.into_iter().find(|&n| identity(n).id() == holder).unwrap());
        assert!(!renewed_at.is_empty() && renewed_at.iter().all(|a| a == &expected), "{renewed_at:?} vs {expected}");
    }
}

/// The driver could not connect to an indexer (its process is gone): the
/// deploy waiting on it goes to the next one at once, not after the
/// timeout, and the unreachable one is left out. A report naming an
/// address that is no indexer changes nothing.
#[test]
fn an_unreachable_indexer_is_left_out_at_once() {
    let mut w = three_indexers();
    let host = Host::new(10, "1");
    let dead = identity(INDEXERS[0]).id();
    let call = first_asking(&mut w, dead);
    let sent = w.sent.len();
    w.input(dci_gateway_core::Input::Unreachable { addr: "10.9.9.9:7000".into() });
    assert_eq!(w.sent.len(), sent, "not an indexer's address: nothing happens");
    w.input(dci_gateway_core::Input::Unreachable { addr: addr(INDEXERS[0]) });
    let (request_id, _, second) = last_match(&w);
    assert_ne!(second.id(), dead, "asked elsewhere at once");
    w.from(&second, Message::Matched { request_id, offer: host.offer() });
    w.host_started(&host, "http://127.0.0.1:9000");
    assert_eq!(w.session_of(call).status, Status::Running);
    for _ in 0..20 {
        let call = w.deploy("render", 1);
        while w.reply(call).is_none() {
            let (request_id, _, indexer) = last_match(&w);
            assert_ne!(indexer.id(), dead, "left out while it is down");
            w.from(&indexer, Message::NoMatch { request_id, eliminations: Default::default() });
        }
    }
}

/// An indexer that matches nothing (restarted and still rebuilding its
/// view, or one that refuses everyone) does not decide a deploy alone: the
/// next one is asked, and the consumer hears "no match" only once every
/// indexer said so, each asked once.
#[test]
fn a_no_match_is_asked_of_every_indexer_before_the_consumer_hears_it() {
    let mut w = three_indexers();
    let host = Host::new(10, "1");
    let call = w.deploy("render", 1);
    let (request_id, _, first) = last_match(&w);
    w.from(&first, Message::NoMatch { request_id, eliminations: Default::default() });
    let (request_id, _, second) = last_match(&w);
    assert_ne!(second.id(), first.id());
    w.from(&second, Message::Matched { request_id, offer: host.offer() });
    w.host_started(&host, "http://127.0.0.1:9000");
    let s = w.session_of(call);
    assert_eq!((s.status, s.placement.host.unwrap().indexer), (Status::Running, Some(second.id())));

    let call = w.deploy("render", 1);
    let mut asked = Vec::new();
    for _ in 0..3 {
        let (request_id, _, indexer) = last_match(&w);
        asked.push(indexer.id());
        w.from(&indexer, Message::NoMatch { request_id, eliminations: Default::default() });
    }
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), 3, "each indexer asked once");
    assert!(matches!(w.reply(call), Some(Err(dci_gateway_core::GatewayError::NoMatch(_)))), "{:?}", w.reply(call));
}
