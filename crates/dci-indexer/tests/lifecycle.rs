//! Lifecycle flows driven through messages: each flow is a script of inputs
//! with the expected outputs and the container's state after each step.

mod common;

use common::*;
use dci_indexer::{Indexer, Input, Output, REPUTATION_FAIL, REPUTATION_PASS, REPUTATION_START, Rejection};
use dci_model::{Actor, MatchRequest, State, Timestamp};
use dci_proto::{InspectionKind, InspectionRequest, Message, Net};

const C: u8 = 1;
const T0: u64 = 1_700_000_000_000;
/// What a first registration produces.
const NEW: &[&str] = &["persist", "send:inspection_request", "reply:state_changed"];

struct Step {
    /// Milliseconds after T0.
    at: u64,
    input: Input,
    outputs: &'static [&'static str],
    /// Container C's state afterwards (`None`: unknown to the indexer).
    state: Option<State>,
}

fn step(at: u64, input: Input, outputs: &'static [&'static str], state: Option<State>) -> Step {
    Step { at, input, outputs, state }
}

fn run(name: &str, steps: Vec<Step>) -> Indexer {
    let mut ix = Indexer::new(config());
    for (i, s) in steps.into_iter().enumerate() {
        let outs = ix.feed(Timestamp(T0 + s.at), s.input);
        assert_eq!(summary(&outs), s.outputs, "{name}: step {i}: {outs:#?}");
        assert_eq!(ix.container(&node(C)).map(|c| c.record.state), s.state, "{name}: step {i}");
        assert_eq!(ix.check_invariants(), Ok(()), "{name}: step {i}");
    }
    ix
}

fn reg() -> dci_proto::Registration {
    registration(big_spec(), &["llm", "render"], milli_ath(2000), 2)
}

fn llm() -> MatchRequest {
    MatchRequest::for_service(svc("llm"))
}

use State::*;

#[test]
fn happy_path_register_inspect_heartbeat_match_release() {
    let c = node(C);
    let ix = run(
        "happy path",
        vec![
            step(0, register(c, reg()), NEW, Some(AwaitingInspection)),
            step(10, match_req(GATEWAY, session(1), llm()), &["reply:no_match"], Some(AwaitingInspection)),
            step(100, verdict(CHECKER, c, true), &["persist", "send:state_changed"], Some(Ready)),
            step(200, heartbeat(c, 0), &["persist", "reply:state_changed"], Some(Healthy)),
            step(1200, heartbeat(c, 0), &[], Some(Healthy)),
            step(1300, match_req(GATEWAY, session(1), llm()), &["reply:matched"], Some(Healthy)),
            // Idempotent: the same session gets the same reservation, no second slot.
            step(1310, match_req(GATEWAY, session(1), llm()), &["reply:matched"], Some(Healthy)),
            step(1320, match_req(GATEWAY, session(2), llm()), &["reply:matched"], Some(Healthy)),
            // Two slots, both reserved.
            step(1330, match_req(GATEWAY, session(3), llm()), &["reply:no_match"], Some(Healthy)),
            step(1340, release(GATEWAY, session(1)), &[], Some(Healthy)),
            step(1350, release(GATEWAY, session(1)), &[], Some(Healthy)),
            step(1360, match_req(GATEWAY, session(3), llm()), &["reply:matched"], Some(Healthy)),
            step(1370, Input::Tick, &[], Some(Healthy)),
        ],
    );
    let c = ix.container(&node(C)).unwrap();
    assert_eq!(c.reserved, 2);
    assert_eq!(c.record.reputation, REPUTATION_START + REPUTATION_PASS);
    let actors: Vec<_> = c.record.transitions.iter().map(|t| (t.to, t.actor, t.reason.as_str())).collect();
    assert_eq!(
        actors,
        [
            (AwaitingInspection, Actor::Container, "registered"),
            (Ready, Actor::Checker, "capacity proof ok"),
            (Healthy, Actor::Indexer, "heartbeat"),
        ]
    );
    assert_eq!(ix.reservation(&session(2)), Some(node(C)));
    assert_eq!(ix.reservation(&session(1)), None);
}

#[test]
fn untrusted_senders_are_rejected_without_change() {
    let c = node(C);
    let stranger = node(77);
    run(
        "untrusted",
        vec![
            step(0, register(c, reg()), NEW, Some(AwaitingInspection)),
            // A container cannot pass itself, nor can a gateway or a stranger.
            step(1, verdict(c, c, true), &["rejected"], Some(AwaitingInspection)),
            step(2, verdict(GATEWAY, c, true), &["rejected"], Some(AwaitingInspection)),
            step(3, verdict(stranger, c, false), &["rejected"], Some(AwaitingInspection)),
            // Only gateways match, release and list.
            step(4, match_req(c, session(1), llm()), &["rejected"], Some(AwaitingInspection)),
            step(5, release(CHECKER, session(1)), &["rejected"], Some(AwaitingInspection)),
            step(
                6,
                net(stranger, Message::ListContainers { request_id: 1, after: None }),
                &["rejected"],
                Some(AwaitingInspection),
            ),
            step(
                7,
                net(GATEWAY, Message::ListContainers { request_id: 1, after: None }),
                &["reply:containers"],
                Some(AwaitingInspection),
            ),
            // Heartbeats from strangers, verdicts about strangers, foreign messages.
            step(8, heartbeat(stranger, 0), &["reply:unregistered", "rejected"], Some(AwaitingInspection)),
            step(9, verdict(CHECKER, stranger, true), &["rejected"], Some(AwaitingInspection)),
            step(10, net(c, Message::StopSession { session: session(1) }), &["rejected"], Some(AwaitingInspection)),
        ],
    );
}

#[test]
fn missed_heartbeats_make_unschedulable_then_require_reinspection() {
    let c = node(C);
    // Heartbeat at 1000; window 3 s for matching, 30 s for re-inspection.
    let ix = run(
        "heartbeat timeout",
        vec![
            step(0, register(c, reg()), NEW, Some(AwaitingInspection)),
            step(500, verdict(CHECKER, c, true), &["persist", "send:state_changed"], Some(Ready)),
            step(1000, heartbeat(c, 0), &["persist", "reply:state_changed"], Some(Healthy)),
            step(4000, match_req(GATEWAY, session(1), llm()), &["reply:matched"], Some(Healthy)),
            step(4001, match_req(GATEWAY, session(2), llm()), &["reply:no_match"], Some(Healthy)),
            step(31_000, Input::Tick, &[], Some(Healthy)),
            step(31_001, Input::Tick, &["persist", "send:state_changed"], Some(ReinspectionRequired)),
            step(31_002, Input::Tick, &[], Some(ReinspectionRequired)),
            // Back alive: heartbeats alone do not make it schedulable again.
            step(32_000, heartbeat(c, 1), &[], Some(ReinspectionRequired)),
            step(32_001, match_req(GATEWAY, session(3), llm()), &["reply:no_match"], Some(ReinspectionRequired)),
            // Re-registering (unchanged) asks for the inspection again.
            step(32_002, register(c, reg()), &["send:inspection_request"], Some(ReinspectionRequired)),
            step(33_000, verdict(CHECKER, c, true), &["persist", "send:state_changed"], Some(Ready)),
            step(33_100, heartbeat(c, 1), &["persist", "reply:state_changed"], Some(Healthy)),
            // Session 1 was never released: one of two slots is still reserved.
            step(33_200, match_req(GATEWAY, session(3), llm()), &["reply:matched"], Some(Healthy)),
        ],
    );
    let t = &ix.container(&node(C)).unwrap().record.transitions;
    let timer = t.iter().find(|t| t.actor == Actor::Timer).unwrap();
    assert_eq!((timer.from, timer.to, timer.reason.as_str()), (Healthy, ReinspectionRequired, "missed 30 heartbeats"));
}

#[test]
fn spec_changes_and_failed_verdicts() {
    let c = node(C);
    let mut smaller = big_spec();
    smaller.ram_gib = 256;
    let cheaper = registration(smaller.clone(), &["llm"], milli_ath(1500), 3);
    let ix = run(
        "spec change",
        vec![
            step(0, register(c, reg()), NEW, Some(AwaitingInspection)),
            // A failed registration validation; the agent registers again
            // and gets a new inspection.
            step(1, verdict(CHECKER, c, false), &["persist", "send:state_changed"], Some(ReinspectionRequired)),
            step(2, register(c, reg()), &["send:inspection_request"], Some(ReinspectionRequired)),
            step(3, verdict(CHECKER, c, true), &["persist", "send:state_changed"], Some(Ready)),
            step(4, heartbeat(c, 0), &["persist", "reply:state_changed"], Some(Healthy)),
            // Price or services change: no re-inspection.
            step(5, register(c, registration(big_spec(), &["llm"], milli_ath(2500), 2)), &["persist"], Some(Healthy)),
            // Same registration again: nothing at all.
            step(6, register(c, registration(big_spec(), &["llm"], milli_ath(2500), 2)), &[], Some(Healthy)),
            // Less RAM: must be re-inspected.
            step(
                7,
                register(c, registration(smaller.clone(), &["llm"], milli_ath(2500), 2)),
                &["persist", "send:inspection_request", "reply:state_changed"],
                Some(ReinspectionRequired),
            ),
            step(8, register(c, cheaper.clone()), &["persist", "send:inspection_request"], Some(ReinspectionRequired)),
            // Failing again: it cannot back its claim (quality control).
            step(9, verdict(CHECKER, c, false), &["persist", "send:state_changed"], Some(QualityControl)),
            // Nothing in flight: a verdict now is refused.
            step(10, verdict(CHECKER, c, true), &["rejected"], Some(QualityControl)),
            // Registering again gets it a fresh inspection, which clears it.
            step(11, register(c, cheaper.clone()), &["send:inspection_request"], Some(QualityControl)),
            step(12, verdict(CHECKER, c, true), &["persist", "send:state_changed"], Some(Ready)),
        ],
    );
    let rec = &ix.container(&node(C)).unwrap().record;
    assert_eq!(rec.registration, cheaper);
    assert_eq!(rec.reputation, REPUTATION_START + 2 * REPUTATION_PASS - 2 * REPUTATION_FAIL);
    let spec = rec.transitions.iter().find(|t| t.reason == "spec changed").unwrap();
    assert_eq!((spec.from, spec.actor), (Healthy, Actor::Container));
}

#[test]
fn invalid_registrations_are_rejected_without_change() {
    let c = node(C);
    let mut bad_spec = big_spec();
    bad_spec.cpu_cores = 0;
    let mut no_addr = reg();
    no_addr.addr = String::new();
    let mut spaced_addr = reg();
    spaced_addr.addr = "host 1:7500".into();
    let cases = [
        (registration(big_spec(), &["llm"], milli_ath(1), 0), Rejection::NoSlots),
        (registration(big_spec(), &[], milli_ath(1), 1), Rejection::NoServices),
        (no_addr, Rejection::BadAddr(String::new())),
        (spaced_addr, Rejection::BadAddr("host 1:7500".into())),
    ];
    for (r, want) in cases {
        let mut ix = Indexer::new(config());
        let outs = ix.feed(Timestamp(T0), register(c, r));
        assert_eq!(outs, vec![Output::Rejected { from: c, reason: want }]);
        assert!(ix.is_empty());
    }
    let mut ix = Indexer::new(config());
    let outs = ix.feed(Timestamp(T0), register(c, registration(bad_spec, &["llm"], milli_ath(1), 1)));
    let [Output::Rejected { reason: Rejection::Spec(e), .. }] = outs.as_slice() else { panic!("{outs:?}") };
    assert!(e.to_string().contains("cpu_cores"), "{e}");
    assert!(ix.is_empty());
}

#[test]
fn reregistration_cannot_drop_reserved_slots() {
    let c = node(C);
    let one_slot = registration(big_spec(), &["llm", "render"], milli_ath(2000), 1);
    let mut ix = run(
        "slots below reserved",
        vec![
            step(0, register(c, reg()), NEW, Some(AwaitingInspection)),
            step(1, verdict(CHECKER, c, true), &["persist", "send:state_changed"], Some(Ready)),
            step(2, heartbeat(c, 0), &["persist", "reply:state_changed"], Some(Healthy)),
            step(3, match_req(GATEWAY, session(1), llm()), &["reply:matched"], Some(Healthy)),
            step(4, match_req(GATEWAY, session(2), llm()), &["reply:matched"], Some(Healthy)),
            step(5, register(c, one_slot.clone()), &["rejected"], Some(Healthy)),
            step(6, release(GATEWAY, session(2)), &[], Some(Healthy)),
            step(7, register(c, one_slot.clone()), &["persist"], Some(Healthy)),
        ],
    );
    assert_eq!(ix.container(&c).unwrap().record.registration.slots, 1);
    let outs = ix.feed(Timestamp(T0 + 8), register(c, registration(big_spec(), &["llm"], milli_ath(1), 0)));
    assert_eq!(summary(&outs), ["rejected"]);
}

#[test]
fn messages_carry_the_right_content() {
    let c = node(C);
    let mut ix = Indexer::new(config());
    let outs = ix.feed(Timestamp(T0), register(c, reg()));
    let (id, kind) = ix.inspection(&c).expect("an inspection in flight");
    assert_eq!(kind, InspectionKind::Registration);
    let want_request = Message::InspectionRequest(InspectionRequest {
        id,
        kind,
        container: c,
        addr: reg().addr,
        spec: reg().spec,
        reason: "registration".into(),
        service: None,
    });
    assert!(outs.contains(&Output::Net(Net::Send { addr: CHECKER_ADDR.into(), msg: want_request })), "{outs:#?}");
    let Some(Output::Persist(rec)) = outs.first() else { panic!("{outs:?}") };
    assert_eq!((rec.id, rec.state, rec.reputation), (c, AwaitingInspection, REPUTATION_START));

    let outs = ix.feed(Timestamp(T0 + 5), verdict(CHECKER, c, true));
    let Some(Output::Net(Net::Send { addr, msg: Message::StateChanged { container, transition } })) = outs.get(1)
    else {
        panic!("{outs:?}")
    };
    assert_eq!((addr, *container), (&reg().addr, c), "sent to the address, naming the container");
    assert_eq!((transition.from, transition.to, transition.at), (AwaitingInspection, Ready, Timestamp(T0 + 5)));

    ix.feed(Timestamp(T0 + 6), heartbeat(c, 0));
    let mut req = llm();
    req.near = Some(city("lisbon"));
    let outs = ix.feed(Timestamp(T0 + 7), match_req(GATEWAY, session(9), req));
    let [Output::Net(Net::Reply { msg: Message::Matched { request_id: 7, offer }, .. })] = outs.as_slice() else {
        panic!("{outs:?}")
    };
    assert_eq!((offer.container, offer.price, offer.estimated_rtt_ms), (c, milli_ath(2000), Some(19)));
    assert_eq!(offer.payout, reg().payout);

    let outs = ix.feed(Timestamp(T0 + 8), net(GATEWAY, Message::ListContainers { request_id: 3, after: None }));
    let [Output::Net(Net::Reply { msg: Message::Containers { request_id: 3, containers, next: None }, .. })] =
        outs.as_slice()
    else {
        panic!("{outs:?}")
    };
    assert_eq!(containers.len(), 1);
    let v = &containers[0];
    assert_eq!((v.id, v.state, v.slots, v.reserved, v.last_heartbeat_ago_ms), (c, Healthy, 2, 1, Some(2)));
    assert_eq!(v.transitions.len(), 3);
}

#[test]
fn history_keeps_the_last_twenty_transitions() {
    let c = node(C);
    let mut ix = Indexer::new(config());
    let mut t = T0;
    let mut tick = || {
        t += 1;
        Timestamp(t)
    };
    ix.feed(tick(), register(c, reg()));
    for i in 0..15u32 {
        ix.feed(tick(), verdict(CHECKER, c, true));
        ix.feed(tick(), heartbeat(c, 0));
        let mut spec = big_spec();
        spec.disk_gib = 1000 + i;
        ix.feed(tick(), register(c, registration(spec, &["llm"], milli_ath(1), 2)));
    }
    let rec = &ix.container(&c).unwrap().record;
    assert_eq!(rec.transitions.len(), dci_indexer::HISTORY_LEN);
    assert_eq!(rec.transitions.last().unwrap().reason, "spec changed");
    assert_eq!(rec.state, ReinspectionRequired);
    // Reputation is capped.
    assert_eq!(rec.reputation, dci_indexer::REPUTATION_MAX);
}

/// R-IX2: a container lost to the timer (silent beyond the re-inspection
/// window) loses its reservations; a later release of those sessions is a
/// no-op, and the slots are free once it is back.
#[test]
fn a_lost_container_releases_its_sessions() {
    let c = node(C);
    let mut ix = run(
        "container loss",
        vec![
            step(0, register(c, reg()), NEW, Some(AwaitingInspection)),
            step(1, verdict(CHECKER, c, true), &["persist", "send:state_changed"], Some(Ready)),
            step(2, heartbeat(c, 0), &["persist", "reply:state_changed"], Some(Healthy)),
            step(3, match_req(GATEWAY, session(1), llm()), &["reply:matched"], Some(Healthy)),
            step(4, match_req(GATEWAY, session(2), llm()), &["reply:matched"], Some(Healthy)),
            step(30_002, Input::Tick, &[], Some(Healthy)),
            step(30_003, Input::Tick, &["persist", "send:state_changed"], Some(ReinspectionRequired)),
        ],
    );
    assert_eq!(ix.container(&c).unwrap().reserved, 0);
    assert_eq!((ix.reservation(&session(1)), ix.reservation(&session(2))), (None, None));
    let t = Timestamp(T0 + 30_004);
    assert!(ix.feed(t, release(GATEWAY, session(1))).is_empty());
    ix.feed(t, register(c, reg()));
    ix.feed(t, verdict(CHECKER, c, true));
    ix.feed(t, heartbeat(c, 0));
    for s in [3, 4] {
        assert_eq!(summary(&ix.feed(t, match_req(GATEWAY, session(s), llm()))), ["reply:matched"]);
    }
    assert_eq!(ix.check_invariants(), Ok(()));
}

#[test]
fn only_the_inspection_in_flight_is_answered() {
    let c = node(C);
    let mut ix = Indexer::new(config());
    ix.feed(Timestamp(T0), register(c, reg()));
    let (first, kind) = ix.inspection(&c).unwrap();
    // Registering again while waiting asks for a new inspection: the first
    // one's verdict is now stale.
    ix.feed(Timestamp(T0 + 1), register(c, reg()));
    let (second, _) = ix.inspection(&c).unwrap();
    assert_ne!(first, second);
    let cases = [
        (verdict_for(CHECKER, c, first, kind, true), "inspection"),
        (verdict_for(CHECKER, c, second, InspectionKind::Standby, true), "inspection"),
        (verdict_for(CHECKER, c, second.wrapping_add(1), kind, true), "inspection"),
    ];
    for (input, word) in cases {
        let outs = ix.feed(Timestamp(T0 + 2), input);
        let [Output::Rejected { reason, .. }] = outs.as_slice() else { panic!("{outs:?}") };
        assert!(reason.to_string().contains(word), "{reason}");
        assert_eq!(ix.container(&c).unwrap().record.state, AwaitingInspection);
    }
    let outs = ix.feed(Timestamp(T0 + 3), verdict_for(CHECKER, c, second, kind, true));
    assert_eq!(summary(&outs), ["persist", "send:state_changed"]);
    // Answered: the same verdict again is stale.
    let outs = ix.feed(Timestamp(T0 + 4), verdict_for(CHECKER, c, second, kind, true));
    assert_eq!(summary(&outs), ["rejected"]);
    let rec = &ix.container(&c).unwrap().record;
    assert_eq!(rec.verdicts.len(), 1);
    assert_eq!((rec.verdicts[0].checker, rec.verdicts[0].kind, rec.verdicts[0].passed), (CHECKER, kind, true));
}

#[test]
fn idle_containers_get_standby_inspections_and_serving_ones_in_service_evaluations_at_the_configured_rate() {
    let mut cfg = config();
    cfg.standby_every = Some(std::time::Duration::from_secs(50));
    cfg.reinspect_after_missed = 1_000_000;
    let mut ix = Indexer::new(cfg);
    let n = 20u8;
    for i in 1..=n {
        let c = node(i);
        ix.feed(Timestamp(T0), register(c, reg()));
        ix.feed(Timestamp(T0), verdict(CHECKER, c, true));
        ix.feed(Timestamp(T0), heartbeat(c, u32::from(i % 5 == 0))); // every fifth is serving
    }
    let mut per_container = std::collections::BTreeMap::new();
    let mut evaluations = std::collections::BTreeMap::new();
    // 1,000 s of one-second ticks: each container expects 20 inspections.
    for s in 0..1_000u64 {
        let now = Timestamp(T0 + s * 1000);
        if s % 2 == 0 {
            for i in 1..=n {
                ix.feed(now, heartbeat(node(i), u32::from(i % 5 == 0)));
            }
        }
        for out in ix.feed(now, Input::Tick) {
            if let Output::Net(Net::Send { msg: Message::InspectionRequest(r), .. }) = out {
                let serving = r.container.0[0] % 5 == 0;
                if serving {
                    assert_eq!(
                        (r.kind, r.service.as_ref().map(|s| s.as_str())),
                        (InspectionKind::InService, Some("render"))
                    );
                    *evaluations.entry(r.container).or_insert(0u32) += 1;
                } else {
                    assert_eq!((r.kind, r.service.as_ref()), (InspectionKind::Standby, None));
                    *per_container.entry(r.container).or_insert(0u32) += 1;
                }
                // The checker answers at once; a pass changes no state.
                let outs = ix.feed(now, verdict_for(CHECKER, r.container, r.id, r.kind, true));
                assert_eq!(summary(&outs), ["persist"], "{outs:?}");
            }
        }
    }
    let serving: Vec<_> = (1..=n).filter(|i| i % 5 == 0).map(node).collect();
    assert!(serving.iter().all(|c| !per_container.contains_key(c)), "a serving container got a standby inspection");
    assert_eq!(evaluations.len(), serving.len(), "every serving container was evaluated: {evaluations:?}");
    // 4 serving containers x 20 expected = 80; Poisson spread about 9.
    let evaluated: u32 = evaluations.values().sum();
    assert!((45..=115).contains(&evaluated), "{evaluated} in-service evaluations");
    let total: u32 = per_container.values().sum();
    // 16 idle containers x 20 expected = 320; Poisson spread is about 18.
    assert!((240..=400).contains(&total), "{total} standby inspections");
    assert_eq!(per_container.len(), 16, "every idle container was inspected");
    assert!(per_container.values().all(|&k| k <= 60), "{per_container:?}");
}

#[test]
fn the_operator_locks_for_maintenance_and_unlocking_needs_a_fresh_inspection() {
    let c = node(C);
    let stranger = node(77);
    let lock = |from, on| net(from, Message::Maintenance { on });
    let ix = run(
        "maintenance",
        vec![
            step(0, register(c, reg()), NEW, Some(AwaitingInspection)),
            step(100, verdict(CHECKER, c, true), &["persist", "send:state_changed"], Some(Ready)),
            step(200, heartbeat(c, 0), &["persist", "reply:state_changed"], Some(Healthy)),
            // Unlocking what is not locked: refused, nothing changes.
            step(300, lock(c, false), &["rejected"], Some(Healthy)),
            // Only the container's own key locks it.
            step(310, lock(stranger, true), &["rejected"], Some(Healthy)),
            step(400, lock(c, true), &["persist", "reply:state_changed"], Some(MaintenanceLock)),
            // Locked: heartbeats keep it alive but never schedulable.
            step(1400, heartbeat(c, 0), &[], Some(MaintenanceLock)),
            step(1500, match_req(GATEWAY, session(1), llm()), &["reply:no_match"], Some(MaintenanceLock)),
            step(1600, lock(c, true), &["rejected"], Some(MaintenanceLock)),
            step(1700, lock(c, false), &["persist", "reply:state_changed"], Some(ReinspectionRequired)),
            step(1800, match_req(GATEWAY, session(1), llm()), &["reply:no_match"], Some(ReinspectionRequired)),
        ],
    );
    let t: Vec<_> = ix.container(&node(C)).unwrap().record.transitions.iter().map(|t| (t.to, t.actor)).collect();
    assert_eq!(&t[t.len() - 2..], [(MaintenanceLock, Actor::Operator), (ReinspectionRequired, Actor::Operator)]);
}
