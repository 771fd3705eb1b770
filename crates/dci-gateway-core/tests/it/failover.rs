//! Failover: a placement that falls silent or is ended by its container
//! moves, within bounds, paid from what is left of the session's escrow.

use std::time::Duration;

use dci_gateway_core::{Command, Status};
use dci_ledger::LedgerOp;
use dci_model::{Amount, Eliminations};
use dci_proto::Message;

use crate::world::{FUNDS, Host, World, consumer};

const TICK: Duration = Duration::from_millis(250);

#[test]
fn silence_moves_the_session_and_the_next_placement_is_paid_from_the_rest_of_the_escrow() {
    let mut w = World::new();
    let (a, b) = (Host::new(10, "3.6"), Host::new(11, "7.2"));
    let s = w.running_on(&a, "render", 1);
    let budget = s.budget;
    let started = w.now;
    for t in 1..=5 {
        w.advance(Duration::from_secs(1));
        w.from(&a.identity, Message::Usage { receipt: a.receipt(s.placement.id, "render", started, t) });
    }
    let balance_before = w.balance(&consumer());
    // a dies: three silent seconds later the session moves.
    w.run_for(Duration::from_secs(3), TICK);
    assert!(w.sent_of("stop_session").iter().any(|(addr, _)| addr == &a.addr), "a cut-off host is told to stop");
    let close = w.applied.last().unwrap().clone();
    let paid_a = a.price.cost_for_secs(5).unwrap();
    let left = Amount(budget.0 - paid_a.0);
    assert!(matches!(close[0], LedgerOp::Settle { .. }));
    assert!(matches!(close[1], LedgerOp::LockEscrow { amount, .. } if amount == left), "{close:?}");
    assert_eq!(w.gw.session(&s.id).unwrap().status, Status::Recovering);
    // The rest of the budget is locked for the next placement: the consumer
    // is asked nothing more, and nothing sits unescrowed in between.
    assert_eq!(w.escrowed(&consumer()), left);
    assert_eq!(w.balance(&consumer()), balance_before);
    w.indexer_matches(&b);
    let moved_at = w.now;
    let placement = w.host_started(&b, "http://127.0.0.1:9100");
    assert_ne!(placement, s.placement.id);
    let r = w.gw.session(&s.id).unwrap().clone();
    assert_eq!((r.status, r.segments.len(), r.placement.escrow), (Status::Running, 1, left));
    assert_eq!(r.segments[0].billed_seconds, 5);
    assert_eq!(r.endpoint().as_deref(), Some("http://10.0.1.11:9100"));
    // Stop on b: the totals cover both placements, the gap unbilled.
    w.advance(Duration::from_secs(2));
    let stop = w.call(Command::Stop { account: consumer(), session: s.id });
    w.from(&b.identity, Message::SessionStopped { receipt: b.receipt(placement, "render", moved_at, 2) });
    let done = w.session_of(stop);
    let paid_b = b.price.cost_for_secs(2).unwrap();
    assert_eq!(done.billed_seconds, Some(7));
    assert_eq!(done.charged, Some(Amount(paid_a.0 + paid_b.0)));
    assert_eq!(w.balance(&consumer()), Amount(FUNDS.0 - paid_a.0 - paid_b.0));
    w.settled_cleanly();
}

#[test]
fn a_signed_end_moves_the_session() {
    let mut w = World::new();
    let (a, b) = (Host::new(10, "3.6"), Host::new(11, "3.6"));
    let s = w.running_on(&a, "render", 1);
    let started = w.now;
    for t in 1..=4 {
        w.advance(Duration::from_secs(1));
        w.from(&a.identity, Message::Usage { receipt: a.receipt(s.placement.id, "render", started, t) });
    }
    let final_receipt = a.receipt(s.placement.id, "render", started, 4);
    w.from(&a.identity, Message::SessionEnded { receipt: final_receipt, reason: "maintenance lock".into() });
    assert_eq!(w.gw.session(&s.id).unwrap().status, Status::Recovering);
    assert!(w.sent_of("stop_session").is_empty(), "it ended the session itself");
    w.indexer_matches(&b);
    w.host_started(&b, "http://127.0.0.1:9100");
    let r = w.gw.session(&s.id).unwrap().clone();
    assert!(r.segments[0].reason.contains("maintenance"), "{:?}", r.segments);
    assert_eq!(r.segments[0].billed_seconds, 4);
}

#[test]
fn a_session_ended_by_a_container_that_does_not_serve_it_is_refused() {
    let mut w = World::new();
    let (a, b) = (Host::new(10, "1"), Host::new(11, "1"));
    let s = w.running_on(&a, "render", 1);
    let started = w.now;
    w.advance(Duration::from_secs(1));
    let before = w.rejected.len();
    let forged = b.receipt(s.placement.id, "render", started, 1);
    w.from(&b.identity, Message::SessionEnded { receipt: forged, reason: "evicted".into() });
    assert_eq!(w.rejected.len(), before + 1);
    assert_eq!(w.gw.session(&s.id).unwrap().status, Status::Running);
}

#[test]
fn failovers_are_bounded_per_session() {
    let mut w = World::new();
    let max = w.config.max_failovers;
    let hosts: Vec<Host> = (0..=max as u8 + 1).map(|i| Host::new(10 + i, "3.6")).collect();
    let s = w.running_on(&hosts[0], "render", 1);
    let budget = s.budget;
    for (n, host) in hosts.iter().enumerate() {
        let placement = w.start_asked(host);
        let started = w.now;
        w.advance(Duration::from_secs(1));
        let end = host.receipt(placement, "render", started, 1);
        w.from(&host.identity, Message::SessionEnded { receipt: end, reason: "the service exited".into() });
        let status = w.record(s.id).status;
        if n as u32 == max {
            assert_eq!(status, Status::Interrupted, "after {max} moves the session ends");
            break;
        }
        assert_eq!(status, Status::Recovering);
        assert!(w.escrowed(&consumer()) <= budget, "a failover never escrows more than the budget");
        w.indexer_matches(&hosts[n + 1]);
        w.host_started(&hosts[n + 1], "http://127.0.0.1:9000");
    }
    let r = w.record(s.id);
    assert_eq!(r.segments.len() as u32, max);
    assert!(r.end_reason.as_deref().unwrap().contains("moved"), "{:?}", r.end_reason);
    assert_eq!(r.billed_seconds, Some(u64::from(max) + 1));
    w.settled_cleanly();
}

#[test]
fn a_failover_that_finds_no_container_gives_up_and_refunds_the_rest() {
    let mut w = World::new();
    let a = Host::new(10, "3.6");
    let s = w.running_on(&a, "render", 1);
    let started = w.now;
    w.advance(Duration::from_secs(2));
    w.from(&a.identity, Message::Usage { receipt: a.receipt(s.placement.id, "render", started, 2) });
    w.run_for(Duration::from_secs(3), TICK);
    assert_eq!(w.gw.session(&s.id).unwrap().status, Status::Recovering);
    // Nothing matches for a minute; every attempt is answered.
    let indexer = w.indexer.clone();
    let end = w.now.plus(Duration::from_secs(61));
    while w.now < end {
        if let Some((request_id, _)) = w.sent_of("match").last().map(|(_, m)| match m {
            Message::Match { request_id, session, .. } => (*request_id, *session),
            _ => unreachable!(),
        }) {
            w.from(&indexer, Message::NoMatch { request_id, eliminations: Eliminations::default() });
        }
        w.advance(TICK);
    }
    let r = w.record(s.id);
    assert_eq!(r.status, Status::Interrupted);
    assert!(r.end_reason.as_deref().unwrap().contains("no container"), "{:?}", r.end_reason);
    assert_eq!(w.balance(&consumer()), Amount(FUNDS.0 - a.price.cost_for_secs(2).unwrap().0));
    w.settled_cleanly();
}

#[test]
fn the_failed_container_is_not_taken_again() {
    let mut w = World::new();
    let (a, b) = (Host::new(10, "1"), Host::new(11, "1"));
    let s = w.running_on(&a, "render", 1);
    w.run_for(Duration::from_secs(3), TICK);
    assert_eq!(w.gw.session(&s.id).unwrap().status, Status::Recovering);
    // The indexer has not noticed yet and offers a again: released, retried.
    let (_, placement) = w.last_match();
    w.indexer_matches(&a);
    assert!(w.sent_of("release").iter().any(|(_, m)| m == &Message::Release { session: placement }));
    let starts_on_a = w.sent_of("start_session").iter().filter(|(addr, _)| addr == &a.addr).count();
    assert_eq!(starts_on_a, 1, "only the first placement ever started on a");
    w.advance(Duration::from_millis(600));
    w.indexer_matches(&b);
    w.host_started(&b, "http://127.0.0.1:9000");
    assert_eq!(w.gw.session(&s.id).unwrap().status, Status::Running);
}

#[test]
fn a_consumer_cannot_stop_a_moving_session_but_can_once_it_runs() {
    let mut w = World::new();
    let (a, b) = (Host::new(10, "1"), Host::new(11, "1"));
    let s = w.running_on(&a, "render", 1);
    w.run_for(Duration::from_secs(3), TICK);
    let stop = w.call(Command::Stop { account: consumer(), session: s.id });
    assert_eq!(w.reply(stop), Some(&Err(dci_gateway_core::GatewayError::Recovering(s.id))));
    w.indexer_matches(&b);
    let placement = w.host_started(&b, "http://127.0.0.1:9000");
    let started = w.now;
    let stop = w.call(Command::Stop { account: consumer(), session: s.id });
    w.from(&b.identity, Message::SessionStopped { receipt: b.receipt(placement, "render", started, 0) });
    assert_eq!(w.session_of(stop).status, Status::Stopped);
    w.settled_cleanly();
}
