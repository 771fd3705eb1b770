//! Reservations expire unless a gateway renews them (R-IX2): scripts of
//! matches, renewals, releases and ticks in virtual time, with the
//! reservations (and their expiry) expected after each step.
//!
//! The container heartbeats and the node ticks once a second in between, as
//! the node's drivers do; the ttl is the default, 30 s.

mod common;

use common::*;
use dci_indexer::{Indexer, Input, Output, Rejection};
use dci_model::{MatchRequest, NodeId, Policy, SessionId, Timestamp};
use dci_proto::{MAX_RENEW, Message};

const T0: u64 = 1_700_000_000_000;
const C: u8 = 1;

enum Act {
    Match(u8),
    Renew(NodeId, Vec<SessionId>),
    Release(u8),
    Tick,
}

use Act::*;

struct Step {
    /// Milliseconds after T0.
    at: u64,
    act: Act,
    outputs: &'static [&'static str],
    /// Sessions holding a reservation afterwards, with when each expires
    /// (ms after T0).
    held: &'static [(u8, u64)],
}

fn step(at: u64, act: Act, outputs: &'static [&'static str], held: &'static [(u8, u64)]) -> Step {
    Step { at, act, outputs, held }
}

fn ids(sessions: &[u8]) -> Vec<SessionId> {
    sessions.iter().map(|&s| session(s)).collect()
}

/// `n` sessions: session 1 and `n - 1` the indexer never saw.
fn many(n: usize) -> Vec<SessionId> {
    let unknown = (1..n as u64).map(|i| {
        let mut id = [0xab; 16];
        id[..8].copy_from_slice(&i.to_le_bytes());
        SessionId(id)
    });
    std::iter::once(session(1)).chain(unknown).collect()
}

/// A healthy container with `slots` slots, registered and inspected at T0.
fn world(slots: u32) -> Indexer {
    let mut ix = Indexer::new(config());
    let c = node(C);
    let t = Timestamp(T0);
    ix.feed(t, register(c, registration(big_spec(), &["llm"], milli_ath(2000), slots)));
    ix.feed(t, verdict(CHECKER, c, true));
    ix.feed(t, heartbeat(c, 0));
    ix
}

fn run(name: &str, slots: u32, steps: Vec<Step>) -> Indexer {
    let mut ix = world(slots);
    let mut driven = 0u64;
    for (i, s) in steps.into_iter().enumerate() {
        // Whole seconds before the step: a heartbeat and a tick each.
        let mut t = (driven / 1000 + 1) * 1000;
        while t < s.at {
            ix.feed(Timestamp(T0 + t), heartbeat(node(C), 0));
            ix.feed(Timestamp(T0 + t), Input::Tick);
            assert_eq!(ix.check_invariants(), Ok(()), "{name}: before step {i}, at {t}");
            driven = t;
            t += 1000;
        }
        let input = match s.act {
            Match(n) => match_req(GATEWAY, session(n), MatchRequest::for_service(svc("llm"))),
            Renew(from, sessions) => net(from, Message::Renew { sessions }),
            Release(n) => release(GATEWAY, session(n)),
            Tick => Input::Tick,
        };
        let outs = ix.feed(Timestamp(T0 + s.at), input);
        assert_eq!(summary(&outs), s.outputs, "{name}: step {i}: {outs:#?}");
        assert_eq!(ix.check_invariants(), Ok(()), "{name}: step {i}");
        let held: Vec<(u8, u64)> =
            (0..=255u8).filter_map(|n| ix.reservation_expires(&session(n)).map(|e| (n, e.0 - T0))).collect();
        assert_eq!(held, s.held, "{name}: step {i}");
        assert_eq!(ix.reservations(), s.held.len(), "{name}: step {i}");
        assert_eq!(ix.container(&node(C)).unwrap().reserved as usize, s.held.len(), "{name}: step {i}");
    }
    ix
}

#[test]
fn an_unrenewed_reservation_expires_after_the_ttl_and_its_slot_is_matchable_again() {
    run(
        "expiry",
        1,
        vec![
            step(1000, Match(1), &["reply:matched"], &[(1, 31_000)]),
            step(1500, Match(2), &["reply:no_match"], &[(1, 31_000)]),
            // Ticks every second until then: still held just before the ttl.
            step(30_999, Tick, &[], &[(1, 31_000)]),
            step(30_999, Match(2), &["reply:no_match"], &[(1, 31_000)]),
            step(31_000, Tick, &[], &[]),
            step(31_001, Match(2), &["reply:matched"], &[(2, 61_001)]),
            // The gateway's late release of the expired session is a no-op.
            step(31_002, Release(1), &[], &[(2, 61_001)]),
            step(61_001, Tick, &[], &[]),
        ],
    );
}

#[test]
fn renewed_reservations_survive_several_ttls() {
    let ix = run(
        "renewal",
        1,
        vec![
            step(1000, Match(1), &["reply:matched"], &[(1, 31_000)]),
            step(20_000, Renew(GATEWAY, ids(&[1])), &[], &[(1, 50_000)]),
            // The first deadline passes; the entry is re-armed, not released.
            step(31_000, Tick, &[], &[(1, 50_000)]),
            // Unknown sessions are ignored.
            step(45_000, Renew(GATEWAY, ids(&[7, 1, 8])), &[], &[(1, 75_000)]),
            step(70_000, Renew(GATEWAY, ids(&[1])), &[], &[(1, 100_000)]),
            // Matching the session again answers the same offer and renews it.
            step(95_000, Match(1), &["reply:matched"], &[(1, 125_000)]),
            step(95_001, Match(2), &["reply:no_match"], &[(1, 125_000)]),
            step(124_999, Tick, &[], &[(1, 125_000)]),
            // No renewal for a ttl: freed.
            step(125_000, Tick, &[], &[]),
            step(125_001, Match(2), &["reply:matched"], &[(2, 155_001)]),
        ],
    );
    assert_eq!(ix.reservation(&session(2)), Some(node(C)));
}

#[test]
fn renew_from_a_non_gateway_is_rejected_and_changes_nothing() {
    let stranger = node(77);
    run(
        "untrusted renew",
        2,
        vec![
            step(1000, Match(1), &["reply:matched"], &[(1, 31_000)]),
            // The container itself, a checker, a stranger.
            step(20_000, Renew(node(C), ids(&[1])), &["rejected"], &[(1, 31_000)]),
            step(20_001, Renew(CHECKER, ids(&[1])), &["rejected"], &[(1, 31_000)]),
            step(20_002, Renew(stranger, ids(&[1])), &["rejected"], &[(1, 31_000)]),
            step(31_000, Tick, &[], &[]),
        ],
    );
    let mut ix = world(2);
    ix.feed(Timestamp(T0 + 1000), match_req(GATEWAY, session(1), MatchRequest::for_service(svc("llm"))));
    let before: Vec<_> = ix.iter().cloned().collect();
    let outs = ix.feed(Timestamp(T0 + 2000), net(stranger, Message::Renew { sessions: ids(&[1]) }));
    assert_eq!(outs, [Output::Rejected { from: stranger, reason: Rejection::Untrusted { expected: "gateway" } }]);
    let after: Vec<_> = ix.iter().cloned().collect();
    assert_eq!(before, after);
    assert_eq!(ix.reservation_expires(&session(1)), Some(Timestamp(T0 + 31_000)));
}

#[test]
fn an_oversized_renew_is_rejected_whole_and_changes_nothing() {
    let mut ix = run(
        "oversized renew",
        1,
        vec![
            step(1000, Match(1), &["reply:matched"], &[(1, 31_000)]),
            step(20_000, Renew(GATEWAY, many(MAX_RENEW + 1)), &["rejected"], &[(1, 31_000)]),
            // At the bound it is accepted: session 1 is renewed, the rest ignored.
            step(20_001, Renew(GATEWAY, many(MAX_RENEW)), &[], &[(1, 50_001)]),
        ],
    );
    let outs = ix.feed(Timestamp(T0 + 20_002), net(GATEWAY, Message::Renew { sessions: many(MAX_RENEW + 1) }));
    let want = Rejection::RenewTooLong { max: MAX_RENEW, found: MAX_RENEW + 1 };
    assert_eq!(outs, [Output::Rejected { from: GATEWAY, reason: want.clone() }]);
    assert_eq!(want.to_string(), "expected a renew of at most 10000 sessions, found 10001");
    assert_eq!(ix.reservation_expires(&session(1)), Some(Timestamp(T0 + 50_001)));
}

/// A released session's queue entry stays behind until due; it must not
/// expire a later reservation of the same session.
#[test]
fn release_frees_at_once_and_leaves_no_early_expiry_behind() {
    run(
        "release",
        1,
        vec![
            step(1000, Match(1), &["reply:matched"], &[(1, 31_000)]),
            step(5000, Release(1), &[], &[]),
            step(5001, Match(2), &["reply:matched"], &[(2, 35_001)]),
            step(6000, Release(2), &[], &[]),
            step(10_000, Match(1), &["reply:matched"], &[(1, 40_000)]),
            // Session 1's first deadline: stale, skipped.
            step(31_000, Tick, &[], &[(1, 40_000)]),
            step(39_999, Tick, &[], &[(1, 40_000)]),
            step(40_000, Tick, &[], &[]),
        ],
    );
}

/// Several reservations expiring at once, on several containers: each is
/// released as `Release` would, the index follows (the slots match again)
/// and nothing else is touched.
#[test]
fn expiries_in_one_tick_release_exactly_the_expired() {
    let mut ix = Indexer::new(config());
    let t = |ms: u64| Timestamp(T0 + ms);
    for c in [1u8, 2, 3] {
        ix.feed(t(0), register(node(c), registration(big_spec(), &["llm"], milli_ath(1000 * u64::from(c)), 2)));
        ix.feed(t(0), verdict(CHECKER, node(c), true));
        ix.feed(t(0), heartbeat(node(c), 0));
    }
    let llm = || MatchRequest { policy: Policy::Cheapest, ..MatchRequest::for_service(svc("llm")) };
    // Cheapest first: sessions 1, 2 on container 1; 3, 4 on container 2; 5 on 3.
    for (s, at) in [(1u8, 0u64), (2, 0), (3, 100), (4, 200), (5, 300)] {
        assert_eq!(summary(&ix.feed(t(at), match_req(GATEWAY, session(s), llm()))), ["reply:matched"]);
    }
    ix.feed(t(10_000), net(GATEWAY, Message::Renew { sessions: ids(&[2, 4]) }));
    for c in [1u8, 2, 3] {
        ix.feed(t(29_000), heartbeat(node(c), 0));
    }
    assert!(ix.feed(t(30_200), Input::Tick).is_empty());
    assert_eq!(ix.check_invariants(), Ok(()));
    let held: Vec<_> = (1..=5).map(|s| ix.reservation(&session(s)).map(|c| c.0[0])).collect();
    assert_eq!(held, [None, Some(1), None, Some(2), Some(3)]);
    let reserved: Vec<_> = [1u8, 2, 3].iter().map(|&c| ix.container(&node(c)).unwrap().reserved).collect();
    assert_eq!(reserved, [1, 1, 1]);
    // The freed slot on the cheapest container is matched again.
    let outs = ix.feed(t(30_201), match_req(GATEWAY, session(6), llm()));
    assert_eq!(summary(&outs), ["reply:matched"]);
    assert_eq!(ix.reservation(&session(6)), Some(node(1)));
    assert_eq!(ix.check_invariants(), Ok(()));
}
