//! Crash consistency: a crash injected after every single output of every
//! flow (deploy, stop, failover, a failed start, tokens) — the ledger and
//! the records as the crash left them, then a restarted core — leaves no
//! escrow locked, every session ended and settled, and the books balanced.

use std::time::Duration;

use dci_gateway_core::{Command, Status};
use dci_model::Amount;
use dci_proto::Message;

use crate::world::{FUNDS, Host, World, consumer};

type Script = fn(&mut World) -> Option<()>;

/// Deploys `service`, the indexer matches `host`, and it starts: the
/// placement and when it started serving (`None` once the world crashed).
fn started(w: &mut World, host: &Host, service: &str) -> Option<(dci_model::SessionId, dci_model::Timestamp)> {
    w.deploy(service, 1);
    let (request_id, _) = w.try_last_match()?;
    let indexer = w.indexer.clone();
    w.from(&indexer, Message::Matched { request_id, offer: host.offer() });
    let placement = w.try_start_asked(host)?;
    w.from(&host.identity, Message::SessionStarted { session: placement, endpoint: "http://127.0.0.1:9000".into() });
    Some((placement, w.now))
}

/// Deploy, three receipts, stop.
fn deploy_and_stop(w: &mut World) -> Option<()> {
    let a = Host::new(10, "3.6");
    let (placement, started) = started(w, &a, "render")?;
    for t in 1..=6 {
        w.advance(Duration::from_secs(1));
        w.from(&a.identity, Message::Usage { receipt: a.receipt(placement, "render", started, t) });
    }
    let session = w.store.values().next()?.id;
    w.call(Command::Stop { account: consumer(), session });
    w.from(&a.identity, Message::SessionStopped { receipt: a.receipt(placement, "render", started, 6) });
    Some(())
}

/// Deploy, the container ends it, it moves to another, stop.
fn failover_and_stop(w: &mut World) -> Option<()> {
    let (a, b) = (Host::new(10, "3.6"), Host::new(11, "7.2"));
    let indexer = w.indexer.clone();
    let (placement, started) = started(w, &a, "render")?;
    for t in 1..=6 {
        w.advance(Duration::from_secs(1));
        w.from(&a.identity, Message::Usage { receipt: a.receipt(placement, "render", started, t) });
    }
    let end = a.receipt(placement, "render", started, 6);
    w.from(&a.identity, Message::SessionEnded { receipt: end, reason: "the service exited".into() });
    let (request_id, _) = w.try_last_match()?;
    w.from(&indexer, Message::Matched { request_id, offer: b.offer() });
    let second = w.try_start_asked(&b)?;
    w.from(&b.identity, Message::SessionStarted { session: second, endpoint: "http://127.0.0.1:9100".into() });
    let moved = w.now;
    w.advance(Duration::from_secs(2));
    let session = w.store.values().next()?.id;
    w.call(Command::Stop { account: consumer(), session });
    w.from(&b.identity, Message::SessionStopped { receipt: b.receipt(second, "render", moved, 2) });
    Some(())
}

/// The container cannot start the session.
fn failed_start(w: &mut World) -> Option<()> {
    let a = Host::new(10, "3.6");
    w.deploy("render", 1);
    let (request_id, _) = w.try_last_match()?;
    let indexer = w.indexer.clone();
    w.from(&indexer, Message::Matched { request_id, offer: a.offer() });
    let placement = w.try_start_asked(&a)?;
    w.from(&a.identity, Message::SessionFailed { session: placement, reason: "no memory".into() });
    Some(())
}

/// A model session relays tokens, then stops.
fn tokens_and_stop(w: &mut World) -> Option<()> {
    let a = Host::new(10, "3.6");
    let (placement, started) = started(w, &a, "all-minilm-l6-v2")?;
    let session = w.store.values().next()?.id;
    w.relayed(session, 2_000, 3_000, 400);
    for t in 1..=6 {
        w.advance(Duration::from_secs(1));
        w.from(&a.identity, Message::Usage { receipt: a.receipt(placement, "all-minilm-l6-v2", started, t) });
    }
    w.call(Command::Stop { account: consumer(), session });
    w.from(&a.identity, Message::SessionStopped { receipt: a.receipt(placement, "all-minilm-l6-v2", started, 6) });
    Some(())
}

fn crash_everywhere(name: &str, script: Script) {
    let mut clean = World::new();
    let before = clean.steps;
    script(&mut clean);
    clean.settled_cleanly();
    let steps = clean.steps - before;
    assert!(steps > 10, "{name}: {steps} steps");
    for k in 0..steps {
        let mut w = World::new();
        w.crash_at = Some(w.steps + k);
        script(&mut w);
        assert!(w.crashed, "{name}: no crash after step {k}");
        w.advance(Duration::from_secs(1));
        w.restart();
        assert_eq!(w.gw.live_sessions(), 0, "{name}, crash after step {k}: a session is still live");
        assert_eq!(w.gw.in_flight().1, 0, "{name}, crash after step {k}: ledger calls in flight");
        w.settled_cleanly();
        // What the consumer lost is exactly what its sessions were charged.
        let charged: u128 = w.store.values().map(|r| r.charged.unwrap_or(Amount::ZERO).0).sum();
        assert_eq!(w.balance(&consumer()).0 + charged, FUNDS.0, "{name}, crash after step {k}");
        for r in w.store.values() {
            assert!(matches!(r.status, Status::Stopped | Status::Interrupted), "{name} {k}: {:?}", r.status);
        }
    }
}

#[test]
fn a_crash_during_deploy_and_stop_leaves_nothing_locked() {
    crash_everywhere("deploy and stop", deploy_and_stop);
}

#[test]
fn a_crash_during_a_failover_leaves_nothing_locked() {
    crash_everywhere("failover", failover_and_stop);
}

#[test]
fn a_crash_during_a_failed_start_leaves_nothing_locked() {
    crash_everywhere("failed start", failed_start);
}

#[test]
fn a_crash_during_a_metered_model_session_leaves_nothing_locked() {
    crash_everywhere("tokens", tokens_and_stop);
}
