//! Hostile peers: each test is an attack that must be refused with a clear
//! reason and change nothing — no money, no state, no reward.

use std::time::Duration;

use dci_gateway_core::{Command, Status};
use dci_model::{AccountId, Amount, Eliminations, ServiceName, SessionId, Timestamp};
use dci_proto::{Message, SignedReceipt};

use crate::world::{FUNDS, Host, World, consumer, identity};

#[test]
fn forged_matched_messages_from_an_unknown_key_are_refused_and_never_counted() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let mallory = identity(66);
    let call = w.deploy("render", 1);
    let (request_id, _) = w.last_match();
    let before = w.rejected.len();
    // 3,000 forged answers: to the request in flight and to guessed ids.
    for i in 0..3_000u64 {
        let id = if i % 2 == 0 { request_id } else { request_id.wrapping_add(i) };
        w.from(&mallory, Message::Matched { request_id: id, offer: host.offer() });
    }
    assert_eq!(w.rejected_since(before).len(), 3_000);
    assert!(w.rejected_since(before).iter().all(|(from, kind, _)| *from == mallory.id() && *kind == "matched"));
    assert!(w.reply(call).is_none() && w.escrowed(&consumer()) == Amount::ZERO, "nothing happened");
    // The real indexer's answer still places the session.
    w.indexer_matches(&host);
    assert_eq!(w.escrowed(&consumer()), host.price.cost_for_secs(3600).unwrap());
}

#[test]
fn an_answer_from_a_node_that_was_not_asked_is_refused() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let call = w.deploy("render", 1);
    let (request_id, _) = w.last_match();
    let before = w.rejected.len();
    // The container itself answers for the indexer.
    w.from(&host.identity, Message::Matched { request_id, offer: host.offer() });
    w.from(&host.identity, Message::NoMatch { request_id, eliminations: Eliminations::default() });
    let refused = w.rejected_since(before);
    assert_eq!(refused.len(), 2);
    assert!(refused[0].2.contains("the node asked"), "{}", refused[0].2);
    assert!(w.reply(call).is_none());
    w.indexer_matches(&host);
    assert!(w.sent_of("start_session").len() == 1);
}

#[test]
fn an_answer_to_a_request_not_in_flight_is_refused() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let indexer = w.indexer.clone();
    let before = w.rejected.len();
    w.from(&indexer, Message::OfferList { request_id: 42, result: Ok(vec![]) });
    w.from(&indexer, Message::Containers { request_id: 43, containers: vec![], next: None });
    w.from(&indexer, Message::Matched { request_id: 44, offer: host.offer() });
    assert_eq!(w.rejected_since(before).len(), 3);
    assert!(w.rejected_since(before).iter().all(|r| r.2.contains("not in flight")));
}

#[test]
fn a_replayed_matched_is_refused_and_counted_once() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    w.deploy("render", 1);
    let (request_id, _) = w.last_match();
    w.indexer_matches(&host);
    let before = w.rejected.len();
    let indexer = w.indexer.clone();
    w.from(&indexer, Message::Matched { request_id, offer: Host::new(11, "1").offer() });
    assert_eq!(w.rejected_since(before).len(), 1);
    assert_eq!(w.sent_of("start_session").len(), 1, "the second answer started nothing");
}

#[test]
fn an_answer_of_the_wrong_kind_is_refused() {
    let mut w = World::new();
    w.deploy("render", 1);
    let (request_id, _) = w.last_match();
    let before = w.rejected.len();
    let indexer = w.indexer.clone();
    w.from(&indexer, Message::OfferList { request_id, result: Ok(vec![]) });
    assert_eq!(w.rejected_since(before).len(), 1);
    assert!(w.rejected_since(before)[0].2.contains("match"));
}

/// A running session on `host` whose first receipt (1 s) was acknowledged.
fn serving(w: &mut World, host: &Host) -> (dci_gateway_core::SessionRecord, Timestamp) {
    let s = w.running_on(host, "render", 1);
    let started = w.now;
    w.advance(Duration::from_secs(1));
    w.from(&host.identity, Message::Usage { receipt: host.receipt(s.placement.id, "render", started, 1) });
    (s, started)
}

#[test]
fn receipts_that_disagree_with_the_session_are_refused() {
    type Forge = fn(&Host, &Host, SessionId, Timestamp, Timestamp) -> (bool, SignedReceipt);
    // (name, forge: returns whether the honest host sends it, and the receipt)
    let cases: Vec<(&str, &str, Forge)> = vec![
        ("another container sends it", "expected a receipt from container", |_, other, p, st, _| {
            (false, other.receipt(p, "render", st, 1))
        }),
        ("it names another container", "naming its sender", |host, other, p, st, _| {
            let mut r = other.receipt(p, "render", st, 1).receipt;
            r.container = other.id();
            let _ = host;
            (true, r.sign(&other.identity))
        }),
        ("another placement", "no placement", |host, _, _, st, _| {
            (true, host.receipt(SessionId([3; 16]), "render", st, 1))
        }),
        ("another consumer", "expected consumer", |host, _, p, st, _| {
            let mut r = host.receipt(p, "render", st, 1).receipt;
            r.consumer = AccountId::new("consumer:mallory").unwrap();
            (true, r.sign(&host.identity))
        }),
        ("another service", "expected service", |host, _, p, st, _| (true, host.receipt(p, "all-minilm-l6-v2", st, 1))),
        ("a higher price", "expected the offered price", |host, _, p, st, _| {
            let mut r = host.receipt(p, "render", st, 1).receipt;
            r.price = "99".parse().unwrap();
            r.amount = r.price.cost_for_secs(1).unwrap();
            (true, r.sign(&host.identity))
        }),
        ("a bad signature", "signature", |host, _, p, st, _| {
            let mut s = host.receipt(p, "render", st, 1);
            s.container_sig[0] ^= 1;
            (true, s)
        }),
        ("an amount that is not price × seconds", "amount", |host, _, p, st, _| {
            let mut r = host.receipt(p, "render", st, 1).receipt;
            r.amount = Amount::ath(500);
            (true, r.sign(&host.identity))
        }),
        ("a start before the gateway asked", "expected a start at or after", |host, _, p, st, _| {
            (true, host.receipt(p, "render", Timestamp(st.0 - 60_000), 2))
        }),
        ("an end in the future", "expected an end at or before", |host, _, p, st, _| {
            let mut r = host.receipt(p, "render", st, 1).receipt;
            r.ended_at = Timestamp(r.ended_at.0 + 600_000);
            (true, r.sign(&host.identity))
        }),
        ("the whole escrow after one second", "expected an end at or before", |host, _, p, st, _| {
            (true, host.receipt(p, "render", st, 3600))
        }),
        ("more seconds than the wall time allows", "wall time", |host, _, p, st, now| {
            // Start and end each stretched by the skew: only the wall time catches it.
            let mut r = host.receipt(p, "render", Timestamp(st.0 - 2_000), 5).receipt;
            r.ended_at = Timestamp(now.0 + 2_000);
            (true, r.sign(&host.identity))
        }),
        ("fewer seconds than already acknowledged", "already acknowledged", |host, _, p, st, _| {
            (true, host.receipt(p, "render", st, 0))
        }),
        ("another start than the cumulative one", "same start", |host, _, p, st, _| {
            (true, host.receipt(p, "render", Timestamp(st.0 + 500), 1))
        }),
    ];
    for (name, expect, forge) in cases {
        let mut w = World::new();
        let (host, other) = (Host::new(10, "3.6"), Host::new(11, "3.6"));
        let (s, started) = serving(&mut w, &host);
        let before = w.rejected.len();
        let (from_host, receipt) = forge(&host, &other, s.placement.id, started, w.now);
        let sender = if from_host { host.identity.clone() } else { other.identity.clone() };
        w.from(&sender, Message::Usage { receipt: receipt.clone() });
        let refused = w.rejected_since(before);
        assert_eq!(refused.len(), 1, "{name}: expected a refusal");
        assert!(refused[0].2.contains(expect), "{name}: the reason says {:?}", refused[0].2);
        // The same forgery as the final receipt of a stop is refused too, and
        // the stop settles the last receipt acknowledged (1 s).
        let stop = w.call(Command::Stop { account: consumer(), session: s.id });
        w.from(&sender, Message::SessionStopped { receipt });
        assert_eq!(w.rejected.len(), before + 2, "{name}: the final receipt is refused too");
        w.run_for(Duration::from_secs(31), Duration::from_secs(1));
        let r = w.session_of(stop);
        assert_eq!(r.billed_seconds, Some(1), "{name}");
        assert_eq!(w.balance(&consumer()), Amount(FUNDS.0 - host.price.cost_for_secs(1).unwrap().0), "{name}");
        w.settled_cleanly();
    }
}

#[test]
fn a_host_cannot_bill_the_whole_escrow_after_one_second() {
    let mut w = World::new();
    let host = Host::new(10, "3.6");
    let s = w.running_on(&host, "render", 1);
    let started = w.now;
    w.advance(Duration::from_secs(1));
    let before = w.rejected.len();
    let greedy = host.receipt(s.placement.id, "render", Timestamp(started.0 - 3_599_000), 3600);
    w.from(&host.identity, Message::Usage { receipt: greedy.clone() });
    let stop = w.call(Command::Stop { account: consumer(), session: s.id });
    w.from(&host.identity, Message::SessionStopped { receipt: greedy });
    assert_eq!(w.rejected.len(), before + 2);
    // The honest final receipt is still taken.
    w.from(&host.identity, Message::SessionStopped { receipt: host.receipt(s.placement.id, "render", started, 1) });
    let r = w.session_of(stop);
    assert_eq!((r.status, r.billed_seconds), (Status::Stopped, Some(1)));
    assert_eq!(w.balance(&consumer()), Amount(FUNDS.0 - host.price.cost_for_secs(1).unwrap().0));
    w.settled_cleanly();
}

#[test]
fn a_stop_receipt_nobody_asked_for_is_refused() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let (s, started) = serving(&mut w, &host);
    let before = w.rejected.len();
    w.from(&host.identity, Message::SessionStopped { receipt: host.receipt(s.placement.id, "render", started, 1) });
    assert_eq!(w.rejected.len(), before + 1);
    assert_eq!(w.gw.session(&s.id).unwrap().status, Status::Running);
}

#[test]
fn a_start_answer_from_another_container_is_refused() {
    let mut w = World::new();
    let (host, other) = (Host::new(10, "1"), Host::new(11, "1"));
    let call = w.deploy("render", 1);
    w.indexer_matches(&host);
    let placement = w.start_asked(&host);
    let before = w.rejected.len();
    w.from(&other.identity, Message::SessionStarted { session: placement, endpoint: "http://10.9.9.9:1".into() });
    w.from(&other.identity, Message::SessionFailed { session: placement, reason: "sabotage".into() });
    assert_eq!(w.rejected.len(), before + 2);
    assert!(w.reply(call).is_none());
    w.host_started(&host, "http://127.0.0.1:9000");
    assert_eq!(w.session_of(call).status, Status::Running);
}

#[test]
fn messages_the_gateway_never_expects_are_refused() {
    let mut w = World::new();
    let mallory = identity(66);
    let before = w.rejected.len();
    w.from(&mallory, Message::Release { session: SessionId([1; 16]) });
    w.from(
        &mallory,
        Message::StartSession {
            session: SessionId([1; 16]),
            service: ServiceName::new("render").unwrap(),
            consumer: consumer(),
            price: "1".parse().unwrap(),
        },
    );
    assert_eq!(w.rejected.len(), before + 2);
}

#[test]
fn only_the_indexer_may_ask_what_a_registrant_bonded() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let stake = Amount::ath(250);
    let fund = dci_ledger::Transfer { from: dci_ledger::accounts::liquidity(), to: host.payout(), amount: stake };
    let bond =
        dci_ledger::LedgerOp::Stake { account: host.payout(), role: dci_ledger::StakeRole::Container, amount: stake };
    w.ledger.apply(&[dci_ledger::LedgerOp::Transfer(fund), bond]).unwrap();
    let before = w.rejected.len();
    w.from(&identity(66), Message::StakeQuery { request_id: 5, node: host.id() });
    assert_eq!(w.rejected.len(), before + 1);
    assert!(w.sent_of("stake_of").is_empty());
    let indexer = w.indexer.clone();
    w.from(&indexer, Message::StakeQuery { request_id: 6, node: host.id() });
    let minimum = w.config.min_container_stake;
    assert_eq!(
        w.sent_of("stake_of").last().map(|(_, m)| m.clone()),
        Some(Message::StakeOf { request_id: 6, node: host.id(), bonded: stake, minimum })
    );
    w.from(&indexer, Message::StakeQuery { request_id: 7, node: identity(77).id() });
    assert!(matches!(w.sent_of("stake_of").last(), Some((_, Message::StakeOf { bonded, .. })) if bonded.is_zero()));
}
