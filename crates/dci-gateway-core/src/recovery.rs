//! After a restart: every session a previous run left unfinished is
//! settled, and every ledger call it recorded but may not have made is
//! completed or reversed.
//!
//! A session's live state (its container's latest receipts, the consumer's
//! call) died with the process, so a recovered session is not resumed: its
//! container is told to stop serving it, and
//!
//! - a recorded `Close` batch is applied again: the batch is atomic and a
//!   settle or refund is at most once per placement, so it either applies
//!   now or is found applied (then what it locked for a next placement, if
//!   it was a failover, is refunded);
//! - a recorded `Lock` is reversed: the placement's escrow is refunded if
//!   it was locked (the container was never asked to start), and a session
//!   whose lock never happened is forgotten as a deploy that failed;
//! - a session with nothing in flight is settled for the last usage receipt
//!   it persisted (refunded in full without one).
//!
//! Either way it ends `Interrupted`, and no escrow of it stays locked.

use dci_ledger::LedgerOp;
use dci_model::{Amount, Timestamp};
use dci_proto::{Message, Net};

use crate::gateway::Gateway;
use crate::io::Output;
use crate::placement::{Live, Phase, Then, close_ops};
use crate::record::{Intent, SessionRecord, Status, token_charge};

impl Gateway {
    /// Takes back what a previous run left unfinished and starts the epoch
    /// clock. `records`: the persisted sessions that are not ended or still
    /// record an intent (others may be given; they are ignored);
    /// `last_epoch`: the last epoch the ledger distributed.
    pub fn restore(&mut self, now: Timestamp, records: Vec<SessionRecord>, last_epoch: Option<u64>) -> Vec<Output> {
        let mut out = Vec::new();
        for r in records {
            self.recover(now, r, &mut out);
        }
        self.begin_epoch(now, last_epoch.map_or(0, |e| e + 1), &mut out);
        out
    }

    fn recover(&mut self, now: Timestamp, r: SessionRecord, out: &mut Vec<Output>) {
        if r.status.is_terminal() && r.intent.is_none() {
            return;
        }
        let (id, placement) = (r.id, r.placement.id);
        let restarted = "the gateway restarted".to_owned();
        if !r.status.is_terminal()
            && let Some(host) = &r.placement.host
        {
            out.push(Output::Net(Net::Send {
                addr: host.addr.clone(),
                msg: Message::StopSession { session: placement },
            }));
        }
        let extra = r.token_price.map_or(Amount::ZERO, |per_1k| token_charge(r.placement.tokens, per_1k));
        let (ops, fallback, then) = match r.intent.clone() {
            Some(Intent::Lock { .. }) => {
                let reason = format!("{restarted} before the session started");
                (vec![LedgerOp::Refund { session: placement }], None, Then::Reverse { reason })
            }
            Some(Intent::Close { ops }) => {
                let next = ops.iter().find_map(|op| match op {
                    LedgerOp::LockEscrow { session, .. } if *session != placement => Some(*session),
                    _ => None,
                });
                let mut fallback: Vec<LedgerOp> = vec![LedgerOp::Refund { session: placement }];
                fallback.extend(ops.iter().filter(|op| matches!(op, LedgerOp::LockEscrow { .. })).map(|op| match op {
                    LedgerOp::LockEscrow { session, consumer, .. } => LedgerOp::LockEscrow {
                        session: *session,
                        consumer: consumer.clone(),
                        amount: r.placement.escrow,
                    },
                    other => other.clone(),
                }));
                let settles = ops.iter().any(|op| matches!(op, LedgerOp::Settle { .. }));
                let then = match next {
                    Some(next) => Then::RefundNext { next, reason: restarted.clone() },
                    None if r.status.is_terminal() => Then::End { status: r.status, reason: r.end_reason.clone() },
                    None => Then::End { status: Status::Interrupted, reason: Some(restarted.clone()) },
                };
                (ops, settles.then_some(fallback), then)
            }
            None if r.placement.escrow.is_zero() => {
                // Nothing was ever locked for it.
                out.push(Output::Forget(id));
                return;
            }
            None => {
                let receipt = r.placement.usage.clone();
                let ops = close_ops(&self.identity.id(), &r, receipt.as_ref(), extra);
                let fallback = receipt.map(|_| vec![LedgerOp::Refund { session: placement }]);
                let reason = format!("{restarted}; settled for the last usage receipt it had recorded");
                (ops, fallback, Then::End { status: Status::Interrupted, reason: Some(reason) })
            }
        };
        self.sessions.insert(id, Live::recovered(r, now));
        self.placements.insert(placement, id);
        self.close(id, ops, fallback, then, out);
    }
}

impl Live {
    fn recovered(record: SessionRecord, now: Timestamp) -> Live {
        Live {
            record,
            phase: Phase::Pausing { until: now },
            call: None,
            heard: now,
            persisted: now,
            receipt: None,
            avoid: Vec::new(),
            moving_since: Some(now),
            stop_asked: None,
            indexer: None,
            tried: Vec::new(),
        }
    }
}
