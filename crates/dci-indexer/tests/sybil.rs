//! Issue 14, "Sybil cost": a registration needs a container stake bonded
//! (asked of the stake oracle, answers only from it for a query in flight,
//! pending registrations bounded), hosts that never pass are pruned, lists
//! are bounded and service ids never collide.

mod common;

use common::*;
use dci_indexer::filter::Filter;
use dci_indexer::{
    Config, ContainerRecord, Indexer, Input, MAX_PENDING, Output, Rejection, STAKE_QUERY_TIMEOUT, SortKey,
};
use dci_model::{Amount, MatchRequest, NodeId, State, Timestamp};
use dci_proto::{ConnId, Heartbeat, MAX_SERVICES, Message, Net, Registration};

const T0: u64 = 1_700_000_000_000;
const ORACLE: NodeId = NodeId([0x5e; 32]);
const ORACLE_ADDR: &str = "gateway.test:7300";
const MINIMUM: Amount = Amount::ath(100);

fn staked_config() -> Config {
    Config { stake_oracle: Some((ORACLE, ORACLE_ADDR.into())), ..config() }
}

fn reg() -> Registration {
    registration(big_spec(), &["llm", "render"], milli_ath(2000), 2)
}

fn at(ms: u64) -> Timestamp {
    Timestamp(T0 + ms)
}

/// The stake query a registration sent: its request id, checking that it
/// went to the oracle and names `node`.
fn query_of(outs: &[Output], node: NodeId) -> u64 {
    match outs {
        [Output::Net(Net::Send { addr, msg: Message::StakeQuery { request_id, node: n } })] => {
            assert_eq!((addr.as_str(), *n), (ORACLE_ADDR, node));
            *request_id
        }
        other => panic!("expected one stake query, found {other:?}"),
    }
}

fn stake_of(from: NodeId, request_id: u64, node: NodeId, bonded: Amount) -> Input {
    net(from, Message::StakeOf { request_id, node, bonded, minimum: MINIMUM })
}

fn rejections(outs: &[Output]) -> Vec<Rejection> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_unstaked_registration_is_refused_and_leaves_no_record() {
    let c = node(1);
    let mut ix = Indexer::new(staked_config());
    let outs = ix.feed(at(0), register(c, reg()));
    let id = query_of(&outs, c);
    assert!(ix.is_pending(&c));
    assert_eq!((ix.len(), ix.containers(at(0)).len()), (0, 0), "nothing enters the registry before the answer");

    let outs = ix.feed(at(10), stake_of(ORACLE, id, c, Amount::ZERO));
    let expected = format!(
        "registration refused: expected a container stake of at least 100 ATH bonded by node:{c}, found 0 ATH; \
         fund that account and bond 100 ATH more with `dci container stake 100` on the host"
    );
    assert_eq!(summary(&outs), ["reply:refused", "rejected"]);
    // On the registration's own connection: its registered address may be someone else's.
    let Output::Net(Net::Reply { msg: Message::Refused { reason }, .. }) = &outs[0] else { unreachable!() };
    assert_eq!(reason.as_str(), expected.as_str());
    assert_eq!(rejections(&outs)[0].to_string(), expected);
    assert!(!outs.iter().any(|o| matches!(o, Output::Persist(_))), "no record is written");
    assert!(!ix.is_pending(&c));
    assert_eq!((ix.len(), ix.pending_registrations()), (0, 0));
    assert!(ix.offers(at(10), &Filter::parse("state=any").unwrap(), SortKey::Price, 10).is_empty());
    // It is unknown: its heartbeats are refused.
    assert_eq!(rejections(&ix.feed(at(20), heartbeat(c, 0))), [Rejection::UnknownContainer(c)]);

    // A partial bond is reported with what is missing.
    let outs = ix.feed(at(30), register(c, reg()));
    let id = query_of(&outs, c);
    let outs = ix.feed(at(40), stake_of(ORACLE, id, c, Amount::ath(60)));
    let Output::Net(Net::Reply { msg: Message::Refused { reason }, .. }) = &outs[0] else { panic!("{outs:?}") };
    assert!(
        reason.contains("found 60 ATH; fund that account and bond 40 ATH more with `dci container stake 40`"),
        "{reason}"
    );
    assert_eq!(ix.check_invariants(), Ok(()));
}

#[test]
fn a_staked_registration_proceeds_as_without_the_check() {
    let c = node(1);
    let mut plain = Indexer::new(config());
    let want = plain.feed(at(0), register(c, reg()));

    let mut ix = Indexer::new(staked_config());
    let id = query_of(&ix.feed(at(0), register(c, reg())), c);
    let outs = ix.feed(at(0), stake_of(ORACLE, id, c, MINIMUM));
    assert_eq!(summary(&outs), ["persist", "send:inspection_request", "reply:state_changed"]);
    // The reply goes back on the registration's connection.
    let Output::Net(Net::Reply { conn, .. }) = &outs[2] else { unreachable!() };
    assert_eq!(*conn, ConnId(1));
    // The same outputs as a registration without the check, but for the
    // inspection's random id.
    let strip = |outs: Vec<Output>| -> Vec<Output> {
        outs.into_iter()
            .map(|o| match o {
                Output::Net(Net::Send { addr, msg: Message::InspectionRequest(mut r) }) => {
                    r.id = 0;
                    Output::Net(Net::Send { addr, msg: Message::InspectionRequest(r) })
                }
                o => o,
            })
            .collect()
    };
    assert_eq!(strip(outs), strip(want));
    assert_eq!(ix.container(&c).map(|c| c.record.state), Some(State::AwaitingInspection));
    assert!(!ix.is_pending(&c));

    // Known now: a re-registration is not asked about again.
    let outs = ix.feed(at(100), register(c, reg()));
    assert_eq!(summary(&outs), ["send:inspection_request"]);
    // It passes and serves as any container.
    ix.feed(at(200), verdict(CHECKER, c, true));
    ix.feed(at(300), heartbeat(c, 0));
    assert_eq!(
        summary(&ix.feed(at(400), match_req(GATEWAY, session(1), MatchRequest::for_service(svc("llm"))))),
        ["reply:matched"]
    );
    assert_eq!(ix.check_invariants(), Ok(()));
}

#[test]
fn stake_answers_are_taken_only_from_the_oracle_for_a_query_in_flight() {
    let c = node(1);
    let mut ix = Indexer::new(staked_config());
    let id = query_of(&ix.feed(at(0), register(c, reg())), c);
    // A repeat while pending replaces the registration and asks nothing more.
    let mut cheaper = reg();
    cheaper.price = milli_ath(1000);
    assert!(ix.feed(at(1), register(c, cheaper.clone())).is_empty());

    let refused: [(&str, Input, Rejection); 5] = [
        ("another node", stake_of(GATEWAY, id, c, MINIMUM), Rejection::Untrusted { expected: "stake oracle" }),
        ("the container itself", stake_of(c, id, c, MINIMUM), Rejection::Untrusted { expected: "stake oracle" }),
        (
            "another request",
            stake_of(ORACLE, id.wrapping_add(1), c, MINIMUM),
            Rejection::StaleStake { node: c, request_id: id.wrapping_add(1) },
        ),
        (
            "a node never asked about",
            stake_of(ORACLE, id, node(2), MINIMUM),
            Rejection::StaleStake { node: node(2), request_id: id },
        ),
        (
            "a node never asked about, any id",
            stake_of(ORACLE, 7, node(3), MINIMUM),
            Rejection::StaleStake { node: node(3), request_id: 7 },
        ),
    ];
    for (name, input, want) in refused {
        let outs = ix.feed(at(10), input);
        assert_eq!(rejections(&outs), [want], "{name}");
        assert_eq!(outs.len(), 1, "{name}: {outs:?}");
        assert!(ix.is_pending(&c) && ix.is_empty(), "{name}");
        assert!(!ix.is_pending(&node(2)) && ix.container(&node(2)).is_none(), "{name}");
    }
    // The right answer admits the latest registration, once.
    assert_eq!(summary(&ix.feed(at(20), stake_of(ORACLE, id, c, MINIMUM))).len(), 3);
    assert_eq!(ix.container(&c).map(|c| c.record.registration.clone()), Some(cheaper));
    let outs = ix.feed(at(30), stake_of(ORACLE, id, c, MINIMUM));
    assert_eq!(rejections(&outs), [Rejection::StaleStake { node: c, request_id: id }]);

    // Without an oracle, nobody's stake answer is taken.
    let mut plain = Indexer::new(config());
    let outs = plain.feed(at(0), stake_of(ORACLE, 1, c, MINIMUM));
    assert_eq!(rejections(&outs), [Rejection::Untrusted { expected: "stake oracle" }]);
    assert_eq!(ix.check_invariants(), Ok(()));
}

#[test]
fn an_unanswered_stake_query_is_dropped_after_the_timeout() {
    let c = node(1);
    let mut ix = Indexer::new(staked_config());
    let id = query_of(&ix.feed(at(0), register(c, reg())), c);
    let timeout = STAKE_QUERY_TIMEOUT.as_millis() as u64;
    assert!(ix.feed(at(timeout - 1), Input::Tick).is_empty());
    assert!(ix.is_pending(&c));
    let outs = ix.feed(at(timeout), Input::Tick);
    assert_eq!(rejections(&outs), [Rejection::StakeUnanswered { oracle: ORACLE }]);
    assert!(!ix.is_pending(&c) && ix.is_empty());
    // A late answer is not taken; registering again asks again.
    let outs = ix.feed(at(timeout + 1), stake_of(ORACLE, id, c, MINIMUM));
    assert_eq!(rejections(&outs), [Rejection::StaleStake { node: c, request_id: id }]);
    let again = query_of(&ix.feed(at(timeout + 2), register(c, reg())), c);
    assert_ne!(again, id);
    assert_eq!(ix.check_invariants(), Ok(()));
}

#[test]
fn a_flood_of_fresh_registrations_keeps_at_most_the_pending_bound() {
    let mut ix = Indexer::new(staked_config());
    let fresh = |i: u32| {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_le_bytes());
        id[31] = 0xf1;
        NodeId(id)
    };
    let flood = MAX_PENDING as u32 + 1500;
    let mut queries = Vec::with_capacity(flood as usize);
    for i in 0..flood {
        let outs = ix.handle(at(u64::from(i) / 10), register(fresh(i), reg()));
        queries.push(query_of(&outs, fresh(i)));
        assert!(ix.pending_registrations() <= MAX_PENDING);
    }
    assert_eq!((ix.pending_registrations(), ix.len()), (MAX_PENDING, 0));
    // The oldest were dropped first.
    let dropped = (flood as usize) - MAX_PENDING;
    assert!(!ix.is_pending(&fresh(0)) && !ix.is_pending(&fresh(dropped as u32 - 1)));
    assert!(ix.is_pending(&fresh(dropped as u32)) && ix.is_pending(&fresh(flood - 1)));
    // A dropped one's answer is not taken; a pending one's is.
    let outs = ix.handle(at(200_000), stake_of(ORACLE, queries[0], fresh(0), MINIMUM));
    assert_eq!(rejections(&outs), [Rejection::StaleStake { node: fresh(0), request_id: queries[0] }]);
    let last = flood - 1;
    ix.handle(at(200_000), stake_of(ORACLE, queries[last as usize], fresh(last), MINIMUM));
    assert_eq!((ix.pending_registrations(), ix.len()), (MAX_PENDING - 1, 1));
    assert_eq!(ix.check_invariants(), Ok(()));
    // Unanswered, they all time out.
    let outs = ix.handle(at(200_000 + STAKE_QUERY_TIMEOUT.as_millis() as u64), Input::Tick);
    assert_eq!(rejections(&outs).len(), MAX_PENDING - 1);
    assert_eq!((ix.pending_registrations(), ix.len()), (0, 1));
    assert_eq!(ix.check_invariants(), Ok(()));
}

#[test]
fn a_never_passing_container_is_pruned_after_prune_after_and_a_passing_one_never() {
    let prune_ms = config().prune_after.as_millis() as u64;
    assert_eq!(prune_ms, 24 * 3600 * 1000, "the default");
    let (failed, passed, waiting, beating) = (node(1), node(2), node(3), node(4));
    let mut ix = Indexer::new(config());
    for c in [failed, passed, waiting, beating] {
        ix.feed(at(0), register(c, reg()));
    }
    ix.feed(at(10), verdict(CHECKER, failed, false));
    ix.feed(at(10), verdict(CHECKER, passed, true));
    ix.feed(at(20), heartbeat(passed, 0));
    // `waiting` keeps its inspection in flight; `beating` heartbeats.
    ix.feed(at(prune_ms - 1), heartbeat(beating, 0));
    let any = Filter::parse("state=any").unwrap();
    let llm = MatchRequest::for_service(svc("llm"));
    let considered = |ix: &Indexer, t| ix.evaluate(t, &llm, session(9)).err().map(|e| e.considered);
    assert_eq!(considered(&ix, at(prune_ms - 1)), Some(4));

    assert!(ix.feed(at(prune_ms - 1), Input::Tick).iter().all(|o| !matches!(o, Output::Forget(_))));
    assert_eq!(ix.len(), 4);
    // Silent for prune_after: gone, in id order, and nothing else.
    let outs = ix.feed(at(prune_ms + 20), Input::Tick);
    let forgotten: Vec<NodeId> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Forget(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(forgotten, [failed, waiting]);
    let listed: Vec<NodeId> = ix.containers(at(prune_ms + 20)).iter().map(|v| v.id).collect();
    assert_eq!(listed, [passed, beating]);
    let offered: Vec<NodeId> = ix.offers(at(prune_ms + 20), &any, SortKey::Price, 10).iter().map(|o| o.id).collect();
    assert_eq!(offered, [passed, beating]);
    assert_eq!(considered(&ix, at(prune_ms + 20)), Some(2), "no longer considered by a match");
    assert_eq!(ix.evaluate_scan(at(prune_ms + 20), &llm, session(9)).err().map(|e| e.considered), Some(2));
    assert!(ix.container(&failed).is_none() && ix.inspection(&waiting).is_none());
    assert_eq!(ix.check_invariants(), Ok(()));
    // A late verdict, a heartbeat: unknown.
    let outs = ix.feed(at(prune_ms + 30), verdict(CHECKER, waiting, true));
    assert_eq!(rejections(&outs), [Rejection::UnknownContainer(waiting)]);
    assert_eq!(rejections(&ix.feed(at(prune_ms + 30), heartbeat(failed, 0))), [Rejection::UnknownContainer(failed)]);

    // The heartbeating one goes once it falls silent too; the one that
    // passed never does, however long it is silent.
    let outs = ix.feed(at(2 * prune_ms), Input::Tick);
    assert!(outs.contains(&Output::Forget(beating)), "{outs:?}");
    let outs = ix.feed(at(10 * prune_ms), Input::Tick);
    assert!(!outs.iter().any(|o| matches!(o, Output::Forget(_))), "{outs:?}");
    assert_eq!(ix.containers(at(10 * prune_ms)).iter().map(|v| v.id).collect::<Vec<_>>(), [passed]);
    assert_eq!(ix.check_invariants(), Ok(()));

    // A pruned container registering again is a new registration.
    let outs = ix.feed(at(10 * prune_ms + 1), register(failed, reg()));
    assert_eq!(summary(&outs), ["persist", "send:inspection_request", "reply:state_changed"]);
    assert_eq!(ix.len(), 2);
    assert_eq!(ix.check_invariants(), Ok(()));
}

#[test]
fn restored_records_are_pruned_only_if_they_show_no_pass() {
    let prune_ms = config().prune_after.as_millis() as u64;
    let record = |id: u8, state: State, passed_verdict: bool| {
        let mut r = ContainerRecord {
            id: node(id),
            registration: reg(),
            state,
            reputation: 500,
            transitions: Vec::new(),
            verdicts: Vec::new(),
            verified: None,
            ever_passed: false,
        };
        if passed_verdict {
            r.verdicts.push(dci_proto::VerdictRecord {
                at: at(0),
                checker: CHECKER,
                kind: dci_proto::InspectionKind::Registration,
                passed: true,
                reason: "ok".into(),
                compute_ms: 1,
                capacity: None,
            });
        }
        r
    };
    let mut ix = Indexer::new(config());
    ix.restore(
        vec![
            record(1, State::AwaitingInspection, false),
            record(2, State::ReinspectionRequired, true),
            record(3, State::Healthy, false),
        ],
        at(0),
    );
    let outs = ix.feed(at(prune_ms), Input::Tick);
    assert!(outs.contains(&Output::Forget(node(1))), "{outs:?}");
    assert_eq!(
        ix.iter().map(|c| (c.id(), c.record.ever_passed)).collect::<Vec<_>>(),
        [(node(2), true), (node(3), true)]
    );
    assert_eq!(ix.check_invariants(), Ok(()));
}

#[test]
fn oversized_lists_are_refused_and_change_nothing() {
    let names: Vec<String> = (0..=MAX_SERVICES).map(|i| format!("svc-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let c = node(1);
    // Refused before the stake oracle is even asked.
    let mut ix = Indexer::new(staked_config());
    let too_many = registration(big_spec(), &names, milli_ath(1000), 1);
    let outs = ix.feed(at(0), register(c, too_many.clone()));
    assert_eq!(rejections(&outs), [Rejection::TooManyServices { max: 64, found: 65 }]);
    assert_eq!(outs.len(), 1);
    assert_eq!(rejections(&outs)[0].to_string(), "invalid registration: expected at most 64 services, found 65");
    assert!(!ix.is_pending(&c));

    let mut ix = Indexer::new(config());
    assert_eq!(rejections(&ix.feed(at(0), register(c, too_many))).len(), 1);
    assert!(ix.is_empty());
    // Exactly the bound is fine.
    let full = registration(big_spec(), &names[..MAX_SERVICES], milli_ath(1000), 1);
    assert_eq!(
        summary(&ix.feed(at(0), register(c, full))),
        ["persist", "send:inspection_request", "reply:state_changed"]
    );
    ix.feed(at(1), verdict(CHECKER, c, true));
    let warm = |names: &[&str]| {
        net(c, Message::Heartbeat(Heartbeat { seq: 1, sessions: 0, warm: names.iter().map(|s| svc(s)).collect() }))
    };
    assert!(rejections(&ix.feed(at(2), warm(&names[..3]))).is_empty());
    let before = ix.container(&c).cloned();

    let mut unregistered = names[..3].to_vec();
    unregistered.push("mining");
    let cases: [(&[&str], Rejection, &str); 2] = [
        (
            &names,
            Rejection::TooManyWarm { max: 64, found: 65 },
            "invalid heartbeat: expected at most 64 warm services, found 65",
        ),
        (
            &unregistered,
            Rejection::WarmNotRegistered(svc("mining")),
            "invalid heartbeat: expected warm services among those the container registered, found mining, which it did not register",
        ),
    ];
    for (list, want, text) in cases {
        let outs = ix.feed(at(500), warm(list));
        assert_eq!(want.to_string(), text);
        assert_eq!(rejections(&outs), [want]);
        assert_eq!(outs.len(), 1);
        assert_eq!(ix.container(&c).cloned(), before, "a refused heartbeat changed the container");
    }
    // A re-registration dropping a warm service drops it from `warm`.
    let fewer = registration(big_spec(), &names[1..3], milli_ath(1000), 1);
    ix.feed(at(600), register(c, fewer));
    assert_eq!(ix.container(&c).unwrap().warm, [svc(names[1]), svc(names[2])]);
    assert_eq!(ix.check_invariants(), Ok(()));
}

/// Service ids were u16: the 65,537th distinct name got the first one's id
/// and its containers were matched for the first service. 1,024 registered
/// containers with 64 names each intern 65,536 names; one more container
/// offers only the 65,537th.
#[test]
fn distinct_service_names_never_share_an_id() {
    let record = |i: u32, services: &[String], state: State| {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_le_bytes());
        let names: Vec<&str> = services.iter().map(String::as_str).collect();
        ContainerRecord {
            id: NodeId(id),
            registration: registration(big_spec(), &names, milli_ath(1000), 1),
            state,
            reputation: 500,
            transitions: Vec::new(),
            verdicts: Vec::new(),
            verified: None,
            ever_passed: true,
        }
    };
    let name = |k: u32| format!("s{k}");
    let mut records: Vec<ContainerRecord> = (0..1024u32)
        .map(|i| {
            let services: Vec<String> = (0..64).map(|j| name(i * 64 + j)).collect();
            record(i, &services, State::AwaitingInspection)
        })
        .collect();
    let odd_one = record(5000, &[name(65_536)], State::Healthy);
    let odd_id = odd_one.id;
    records.push(odd_one);
    let mut ix = Indexer::new(config());
    ix.restore(records, at(0));
    for k in [0, 1, 65_535] {
        let r = MatchRequest::for_service(svc(&name(k)));
        let got = ix.evaluate(at(1), &r, session(1));
        assert_eq!(got, ix.evaluate_scan(at(1), &r, session(1)), "{}", name(k));
        assert!(got.is_err(), "{}: {got:?}", name(k));
    }
    let r = MatchRequest::for_service(svc(&name(65_536)));
    assert_eq!(ix.evaluate(at(1), &r, session(1)).map(|c| c.container), Ok(odd_id));
    // The index's own check: 65,537 names, 65,537 distinct ids.
    assert_eq!(ix.check_invariants(), Ok(()));
}
