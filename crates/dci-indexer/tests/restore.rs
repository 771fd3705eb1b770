//! Persist, restart, restore: containers come back as they were.

mod common;

use common::*;
use dci_indexer::{ContainerRecord, Indexer, Input, Output};
use dci_model::{MatchRequest, NodeId, State, Timestamp};
use dci_proto::{ContainerView, Message, Net};
use std::collections::BTreeMap;

const T0: u64 = 1_700_000_000_000;

/// Drives a fleet into varied states and returns the indexer and the last
/// record persisted per container.
fn fleet() -> (Indexer, BTreeMap<NodeId, ContainerRecord>) {
    let mut ix = Indexer::new(config());
    let mut store = BTreeMap::new();
    let mut t = T0;
    let mut feed = |ix: &mut Indexer, input: Input| {
        t += 10;
        for o in ix.feed(Timestamp(t), input) {
            if let Output::Persist(r) = o {
                store.insert(r.id, r);
            }
        }
    };
    let reg = || registration(big_spec(), &["llm"], milli_ath(1000), 2);
    for n in 1..=4 {
        feed(&mut ix, register(node(n), reg()));
    }
    // 1: Healthy with a reservation; 2: Ready; 3: failed inspection; 4: still awaiting.
    feed(&mut ix, verdict(CHECKER, node(1), true));
    feed(&mut ix, heartbeat(node(1), 0));
    feed(&mut ix, match_req(GATEWAY, session(1), MatchRequest::for_service(svc("llm"))));
    feed(&mut ix, verdict(CHECKER, node(2), true));
    feed(&mut ix, verdict(CHECKER, node(3), false));
    (ix, store)
}

/// The view as a restarted indexer should show it: no reservations, no heartbeat yet.
fn restarted(mut v: ContainerView) -> ContainerView {
    v.reserved = 0;
    v.last_heartbeat_ago_ms = None;
    v
}

#[test]
fn restore_round_trip() {
    let (ix, store) = fleet();
    let live: Vec<ContainerRecord> = ix.iter().map(|c| c.record.clone()).collect();
    let persisted: Vec<ContainerRecord> = store.into_values().collect();
    assert_eq!(persisted, live, "the persisted records are the live records");
    let states: Vec<State> = live.iter().map(|r| r.state).collect();
    assert_eq!(states, [State::Healthy, State::Ready, State::ReinspectionRequired, State::AwaitingInspection]);

    // Through a real serialization, as the node would store them.
    let json = serde_json::to_string(&persisted).unwrap();
    let records: Vec<ContainerRecord> = serde_json::from_str(&json).unwrap();
    assert_eq!(records, persisted);

    let later = Timestamp(T0 + 3_600_000);
    let mut back = Indexer::new(config());
    let outs = back.restore(records, later);
    assert_eq!(back.check_invariants(), Ok(()));
    let requests: Vec<_> = outs
        .iter()
        .map(|o| match o {
            Output::Net(Net::Send { addr, msg: Message::InspectionRequest(r) }) if addr == CHECKER_ADDR => {
                (r.container, r.reason.as_str())
            }
            other => panic!("unexpected output {other:?}"),
        })
        .collect();
    assert_eq!(requests, [(node(3), "indexer restart"), (node(4), "indexer restart")]);

    let want: Vec<_> = ix.containers(later).into_iter().map(restarted).collect();
    assert_eq!(back.containers(later), want);
}

#[test]
fn restored_containers_get_a_grace_period() {
    let (_, store) = fleet();
    let later = Timestamp(T0 + 3_600_000);
    let mut back = Indexer::new(config());
    back.restore(store.into_values().collect(), later);
    let llm = || MatchRequest::for_service(svc("llm"));
    // Schedulable right away although the last heartbeat was an hour ago...
    let outs = back.feed(Timestamp(later.0 + 3000), match_req(GATEWAY, session(2), llm()));
    assert_eq!(summary(&outs), ["reply:matched"]);
    // ...not once the grace window has passed without a heartbeat...
    let outs = back.feed(Timestamp(later.0 + 3001), match_req(GATEWAY, session(3), llm()));
    assert_eq!(summary(&outs), ["reply:no_match"]);
    // ...and re-inspection is required after the long window.
    assert!(back.feed(Timestamp(later.0 + 30_000), Input::Tick).is_empty());
    let outs = back.feed(Timestamp(later.0 + 30_001), Input::Tick);
    assert_eq!(summary(&outs), ["persist", "send:state_changed", "persist", "send:state_changed"]);
}

#[test]
fn reported_sessions_protect_slots_after_restart() {
    let (_, store) = fleet();
    let now = Timestamp(T0 + 1000);
    let mut back = Indexer::new(config());
    back.restore(store.into_values().collect(), now);
    // Container 1 is still serving two sessions the new indexer never reserved.
    back.feed(now, heartbeat(node(1), 2));
    let mut req = MatchRequest::for_service(svc("llm"));
    req.policy = dci_model::Policy::Cheapest;
    for s in 10..12 {
        let outs = back.feed(now, match_req(GATEWAY, session(s), req.clone()));
        let [Output::Net(Net::Reply { msg: Message::Matched { offer, .. }, .. })] = outs.as_slice() else {
            panic!("{outs:?}")
        };
        assert_eq!(offer.container, node(2), "container 1 is full");
    }
}

#[test]
fn restore_keeps_live_state_and_sanitizes_records() {
    let (mut ix, store) = fleet();
    let mut stale = store[&node(1)].clone();
    stale.state = State::QualityControl;
    let mut odd = store[&node(2)].clone();
    odd.id = node(9);
    odd.reputation = 5000;
    let t = odd.transitions[0].clone();
    odd.transitions = vec![t; 25];
    odd.transitions.last_mut().unwrap().to = odd.state;
    let outs = ix.restore(vec![stale, odd], Timestamp(T0 + 5000));
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(ix.container(&node(1)).unwrap().record.state, State::Healthy, "live state wins");
    assert_eq!(ix.container(&node(1)).unwrap().reserved, 1);
    let rec = &ix.container(&node(9)).unwrap().record;
    assert_eq!((rec.transitions.len(), rec.reputation), (20, 1000));
    // A history that contradicts the state is dropped; the state stays.
    let mut contradicted = store[&node(3)].clone();
    contradicted.id = node(10);
    contradicted.state = State::Ready;
    ix.restore(vec![contradicted], Timestamp(T0 + 5000));
    let rec = &ix.container(&node(10)).unwrap().record;
    assert_eq!((rec.state, rec.transitions.len()), (State::Ready, 0));
    assert_eq!(ix.check_invariants(), Ok(()));
}
