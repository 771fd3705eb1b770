//! A session's life as a consumer sees it: deploy, serve, meter, stop.

use std::time::Duration;

use dci_gateway_core::{Command, GatewayError, Reply, Status, token_charge};
use dci_model::{Amount, SessionId};
use dci_proto::Message;

use crate::world::{FUNDS, Host, INDEXER_ADDR, World, consumer, identity};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn deploy_escrows_starts_and_stop_settles_the_final_receipt() {
    let mut w = World::new();
    let host = Host::new(10, "3.6");
    let call = w.deploy("render", 2);
    // The indexer is asked; nothing is locked before it answers.
    let (_, placement) = w.last_match();
    assert_eq!(w.sent.last().unwrap().0, INDEXER_ADDR);
    assert_eq!(w.escrowed(&consumer()), Amount::ZERO);
    w.indexer_matches(&host);
    // price × hours locked, then the container asked to start.
    let escrow = host.price.cost_for_secs(2 * 3600).unwrap();
    assert_eq!(w.escrowed(&consumer()), escrow);
    assert_eq!(w.start_asked(&host), placement);
    assert!(w.reply(call).is_none(), "the deploy answers once the service runs");
    w.host_started(&host, "http://127.0.0.1:9000");
    let s = w.session_of(call);
    assert_eq!(s.status, Status::Running);
    assert_eq!(s.budget, escrow);
    // The consumer reaches the registered host, on the port the service reported.
    assert_eq!(s.endpoint().as_deref(), Some("http://10.0.1.10:9000"));

    let started = w.now;
    for t in 1..=10 {
        w.advance(SECOND);
        w.from(&host.identity, Message::Usage { receipt: host.receipt(placement, "render", started, t) });
    }
    let stop = w.call(Command::Stop { account: consumer(), session: s.id });
    assert!(w.sent_of("stop_session").iter().any(|(a, _)| a == &host.addr));
    w.from(&host.identity, Message::SessionStopped { receipt: host.receipt(placement, "render", started, 10) });
    let done = w.session_of(stop);
    let cost = host.price.cost_for_secs(10).unwrap();
    assert_eq!((done.status, done.billed_seconds, done.charged), (Status::Stopped, Some(10), Some(cost)));
    assert_eq!(done.refunded(), Some(Amount(escrow.0 - cost.0)));
    assert_eq!(w.balance(&consumer()), Amount(FUNDS.0 - cost.0));
    assert!(w.sent_of("release").iter().any(|(_, m)| m == &Message::Release { session: placement }));
    assert_eq!(w.gw.live_sessions(), 0);
    assert_eq!(w.gw.in_flight().1, 0);
    w.settled_cleanly();
}

#[test]
fn nothing_matched_is_answered_with_the_eliminations_and_costs_nothing() {
    let mut w = World::new();
    let call = w.deploy("render", 1);
    let (request_id, _) = w.last_match();
    let mut eliminations = dci_model::Eliminations { considered: 4, ..Default::default() };
    eliminations.add(dci_model::Criterion::Price);
    let indexer = w.indexer.clone();
    w.from(&indexer, Message::NoMatch { request_id, eliminations: eliminations.clone() });
    assert_eq!(w.reply(call), Some(&Err(GatewayError::NoMatch(eliminations))));
    assert!(w.store.is_empty(), "a deploy that escrowed nothing leaves no record");
    assert_eq!(w.gw.live_sessions(), 0);
    w.settled_cleanly();
}

#[test]
fn a_consumer_who_cannot_pay_the_escrow_is_refused_and_the_slot_released() {
    let mut w = World::new();
    let host = Host::new(10, "2000"); // 2,000 ATH/h, more than the consumer has
    let call = w.deploy("render", 1);
    w.indexer_matches(&host);
    assert!(matches!(w.reply(call), Some(Err(GatewayError::Ledger(_)))), "{:?}", w.reply(call));
    let (_, placement) = w.last_match();
    assert!(w.sent_of("release").iter().any(|(_, m)| m == &Message::Release { session: placement }));
    assert!(w.sent_of("start_session").is_empty());
    assert!(w.store.is_empty());
    assert_eq!(w.balance(&consumer()), FUNDS);
    w.settled_cleanly();
}

#[test]
fn a_container_that_cannot_start_refunds_the_escrow_and_says_why() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let call = w.deploy("render", 1);
    w.indexer_matches(&host);
    let placement = w.start_asked(&host);
    w.from(&host.identity, Message::SessionFailed { session: placement, reason: "out of memory".into() });
    match w.reply(call) {
        Some(Err(GatewayError::Unavailable(why))) => assert!(why.contains("out of memory"), "{why}"),
        other => panic!("expected unavailable, found {other:?}"),
    }
    let r = w.store.values().next().unwrap().clone();
    assert_eq!((r.status, r.charged), (Status::Interrupted, Some(Amount::ZERO)));
    assert_eq!(w.balance(&consumer()), FUNDS);
    w.settled_cleanly();
}

#[test]
fn a_match_that_times_out_releases_its_reservation() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let call = w.deploy("render", 1);
    let (request_id, placement) = w.last_match();
    w.run_for(Duration::from_secs(5), Duration::from_millis(250));
    assert!(matches!(w.reply(call), Some(Err(GatewayError::Unavailable(_)))));
    assert!(
        w.sent_of("release").iter().any(|(_, m)| m == &Message::Release { session: placement }),
        "the indexer may have reserved a slot we never heard of"
    );
    // A late answer is refused and reserves nothing here.
    let before = w.rejected.len();
    let indexer = w.indexer.clone();
    w.from(&indexer, Message::Matched { request_id, offer: host.offer() });
    assert_eq!(w.rejected_since(before).len(), 1);
    assert_eq!(w.escrowed(&consumer()), Amount::ZERO);
    w.settled_cleanly();
}

#[test]
fn live_placements_are_renewed_at_the_indexer() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let s = w.running_on(&host, "render", 1);
    let started = w.now;
    let renewals = |w: &World| {
        w.sent_of("renew")
            .into_iter()
            .filter(|(_, m)| matches!(m, Message::Renew { sessions } if sessions.contains(&s.placement.id)))
            .count()
    };
    for t in 1..=21 {
        w.advance(Duration::from_secs(1));
        w.from(&host.identity, Message::Usage { receipt: host.receipt(s.placement.id, "render", started, t) });
    }
    assert!(renewals(&w) >= 2, "a running placement's reservation is renewed every 10 s");
}

#[test]
fn the_relay_reaches_only_the_registered_host() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let call = w.deploy("all-minilm-l6-v2", 1);
    w.indexer_matches(&host);
    // The host reports another machine (here a cloud metadata address): only its port is used.
    w.host_started(&host, "http://169.254.169.254:8545/");
    let s = w.session_of(call);
    let target = w.call(Command::RelayTarget { account: consumer(), session: s.id });
    assert_eq!(w.reply(target), Some(&Ok(Reply::Target("http://10.0.1.10:8545".into()))));
    // Not the caller's session: as if it did not exist.
    let other = dci_model::AccountId::new("consumer:mallory").unwrap();
    let stolen = w.call(Command::RelayTarget { account: other, session: s.id });
    assert_eq!(w.reply(stolen), Some(&Err(GatewayError::NoSession(s.id))));
    // The viewer is for render sessions only.
    let view = w.call(Command::ViewTarget { session: s.id });
    assert!(matches!(w.reply(view), Some(Err(GatewayError::NotFound(_)))));
}

#[test]
fn an_endpoint_without_a_port_fails_the_start() {
    for endpoint in ["https://10.0.1.10:9000", "http://10.0.1.10", "http://10.0.1.10:0", "ftp://x:1", "garbage"] {
        let mut w = World::new();
        let host = Host::new(10, "1");
        let call = w.deploy("render", 1);
        w.indexer_matches(&host);
        w.host_started(&host, endpoint);
        assert!(matches!(w.reply(call), Some(Err(GatewayError::Unavailable(_)))), "{endpoint}: {:?}", w.reply(call));
        assert_eq!(w.balance(&consumer()), FUNDS, "{endpoint}");
        w.settled_cleanly();
    }
}

#[test]
fn tokens_are_bounded_by_the_bytes_relayed_and_paid_from_the_escrow() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let s = w.running_on(&host, "all-minilm-l6-v2", 1);
    let started = w.now;
    // A service claiming a trillion tokens for 300 bytes is billed 300.
    let call = w.relayed(s.id, 100, 200, 1_000_000_000_000);
    assert_eq!(w.reply(call), Some(&Ok(Reply::Done)));
    let call = w.relayed(s.id, 50, 50, 40);
    assert_eq!(w.reply(call), Some(&Ok(Reply::Done)));
    let live = w.gw.session(&s.id).unwrap().clone();
    assert_eq!((live.requests, live.tokens), (2, 340));
    for t in 1..=5 {
        w.advance(SECOND);
        w.from(
            &host.identity,
            Message::Usage { receipt: host.receipt(s.placement.id, "all-minilm-l6-v2", started, t) },
        );
    }
    let stop = w.call(Command::Stop { account: consumer(), session: s.id });
    w.from(
        &host.identity,
        Message::SessionStopped { receipt: host.receipt(s.placement.id, "all-minilm-l6-v2", started, 5) },
    );
    let done = w.session_of(stop);
    let tokens = token_charge(340, Amount::ath(1));
    let seconds = host.price.cost_for_secs(5).unwrap();
    assert_eq!(done.token_charged, Some(tokens));
    assert_eq!(done.charged, Some(Amount(seconds.0 + tokens.0)));
    // Paid from the escrow: one settlement, no separate transfer.
    assert!(w.applied.iter().flatten().all(|op| !matches!(op, dci_ledger::LedgerOp::Transfer(_))));
    assert_eq!(w.balance(&consumer()), Amount(FUNDS.0 - seconds.0 - tokens.0));
    w.settled_cleanly();
}

#[test]
fn relaying_for_a_session_that_is_not_billed_per_token_is_refused() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let s = w.running_on(&host, "render", 1);
    let call = w.relayed(s.id, 10, 10, 5);
    assert!(matches!(w.reply(call), Some(Err(GatewayError::NotOffered(_)))));
    let call = w.call(Command::RelayTarget { account: consumer(), session: s.id });
    assert!(matches!(w.reply(call), Some(Err(GatewayError::NotOffered(_)))));
}

#[test]
fn a_session_whose_escrow_runs_out_is_stopped_and_settled_and_says_why() {
    let mut w = World::new();
    let host = Host::new(10, "3.6"); // 0.001 ATH a second
    let s = w.running_on(&host, "render", 1);
    let started = w.now;
    let escrow = s.budget;
    // Most of the hour passes; the receipts keep coming (the test sends
    // the latest only: they are cumulative).
    w.now = w.now.plus(Duration::from_secs(3590));
    w.from(&host.identity, Message::Usage { receipt: host.receipt(s.placement.id, "render", started, 3590) });
    assert!(w.sent_of("stop_session").is_empty(), "ten seconds of escrow are left");
    w.now = w.now.plus(Duration::from_secs(8));
    w.from(&host.identity, Message::Usage { receipt: host.receipt(s.placement.id, "render", started, 3598) });
    assert_eq!(w.sent_of("stop_session").len(), 1, "stopped before the host works unpaid");
    w.advance(Duration::from_millis(300));
    w.from(&host.identity, Message::SessionStopped { receipt: host.receipt(s.placement.id, "render", started, 3598) });
    let r = w.record(s.id);
    assert_eq!(r.status, Status::Stopped);
    assert!(r.end_reason.as_deref().is_some_and(|why| why.contains("escrow")), "{:?}", r.end_reason);
    assert!(r.charged.unwrap() <= escrow);
    w.settled_cleanly();
}

#[test]
fn the_clock_alone_stops_a_session_whose_receipts_lag() {
    // The gateway does not wait for the host's receipts to notice the
    // escrow is spent: its own clock counts.
    let mut w = World::new();
    let host = Host::new(10, "3.6");
    let s = w.running_on(&host, "render", 1);
    let started = w.now;
    w.now = w.now.plus(Duration::from_secs(3599));
    w.from(&host.identity, Message::Usage { receipt: host.receipt(s.placement.id, "render", started, 1) });
    assert_eq!(w.sent_of("stop_session").len(), 1);
}

#[test]
fn stopping_what_is_not_running_is_refused_with_what_it_is() {
    let mut w = World::new();
    let host = Host::new(10, "1");
    let call = w.deploy("render", 1);
    let pending = match w.sent_of("match").last() {
        Some((_, Message::Match { session, .. })) => *session,
        _ => unreachable!(),
    };
    let stop = w.call(Command::Stop { account: consumer(), session: pending });
    assert!(matches!(w.reply(stop), Some(Err(GatewayError::NotRunning { status: Status::Starting, .. }))));
    w.indexer_matches(&host);
    w.host_started(&host, "http://127.0.0.1:9000");
    let s = w.session_of(call);
    let first = w.call(Command::Stop { account: consumer(), session: s.id });
    let second = w.call(Command::Stop { account: consumer(), session: s.id });
    assert!(w.reply(first).is_none());
    assert_eq!(w.reply(second), Some(&Err(GatewayError::Stopping(s.id))));
    let unknown = w.call(Command::Stop { account: consumer(), session: SessionId([9; 16]) });
    assert_eq!(w.reply(unknown), Some(&Err(GatewayError::NoSession(SessionId([9; 16])))));
}

#[test]
fn a_stop_the_container_never_confirms_settles_the_last_receipt() {
    let mut w = World::new();
    let host = Host::new(10, "3.6");
    let s = w.running_on(&host, "render", 1);
    let started = w.now;
    for t in 1..=4 {
        w.advance(SECOND);
        w.from(&host.identity, Message::Usage { receipt: host.receipt(s.placement.id, "render", started, t) });
    }
    let stop = w.call(Command::Stop { account: consumer(), session: s.id });
    w.run_for(Duration::from_secs(31), Duration::from_secs(1));
    let r = w.session_of(stop);
    assert_eq!((r.status, r.billed_seconds), (Status::Interrupted, Some(4)));
    assert_eq!(r.charged, Some(host.price.cost_for_secs(4).unwrap()));
    w.settled_cleanly();
}

#[test]
fn stop_all_settles_every_running_session() {
    let mut w = World::new();
    let (a, b) = (Host::new(10, "1"), Host::new(11, "2"));
    let sa = w.running_on(&a, "render", 1);
    let sb = w.running_on(&b, "render", 1);
    let started = w.now;
    for t in 1..=3 {
        w.advance(SECOND);
        w.from(&a.identity, Message::Usage { receipt: a.receipt(sa.placement.id, "render", started, t) });
        w.from(&b.identity, Message::Usage { receipt: b.receipt(sb.placement.id, "render", started, t) });
    }
    let all = w.call(Command::StopAll);
    assert!(w.reply(all).is_none());
    w.from(&a.identity, Message::SessionStopped { receipt: a.receipt(sa.placement.id, "render", started, 3) });
    assert!(w.reply(all).is_none());
    w.from(&b.identity, Message::SessionStopped { receipt: b.receipt(sb.placement.id, "render", started, 3) });
    assert_eq!(w.reply(all), Some(&Ok(Reply::Done)));
    assert_eq!(w.record(sa.id).status, Status::Stopped);
    w.settled_cleanly();
}

/// The network file changed: the indexer moved (a new node at a new
/// address). Matches go to it from then on, and the old indexer's answers
/// are refused.
#[test]
fn a_moved_indexer_is_asked_and_the_old_one_is_no_longer_trusted() {
    let mut w = World::new();
    let new = identity(40);
    let peer = dci_gateway_core::Peer { id: new.id(), addr: "10.9.9.9:7100".into() };
    w.input(dci_gateway_core::Input::Peers { indexers: vec![peer], checkers: vec![] });
    w.deploy("render", 1);
    let (addr, msg) = w.sent_of("match").last().cloned().expect("a match was asked");
    assert_eq!(addr, "10.9.9.9:7100");
    let request_id = match msg {
        Message::Match { request_id, .. } => request_id,
        other => panic!("{other:?}"),
    };
    let (old, host) = (w.indexer.clone(), Host::new(10, "1"));
    let before = w.rejected.len();
    w.from(&old, Message::Matched { request_id, offer: host.offer() });
    assert_eq!(w.rejected.len(), before + 1, "the old indexer's answer is refused");
    w.from(&new, Message::Matched { request_id, offer: host.offer() });
    assert!(w.try_start_asked(&host).is_some(), "the moved indexer's answer places the session");
}
