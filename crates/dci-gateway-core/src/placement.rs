//! One state machine places a session on a container, for a deploy and for
//! every failover, and ends it.
//!
//! ```text
//!            deploy                                   failover (same budget)
//!              │                                              │
//!   Matching ──┴─ Matched ─▶ Locking ─▶ Starting ─▶ Running ─┬─▶ Closing(Move) ─▶ Matching ─▶ Starting ─▶ Running
//!      │  (NoMatch: 409)      (escrow)   (start)     │  ▲     │      settle the old placement and lock the
//!      │                                             │  │     │      rest of the budget for the next, in ONE batch
//!      └─ (deploy fails: nothing locked)             │  └─ receipts (checked, acknowledged)
//!                                        Stopping ◀──┘ consumer stop / escrow used up / shutdown
//!                                            │
//!                                        Closing(End) ─▶ Stopped / Interrupted
//! ```
//!
//! A deploy escrows `price × hours` after the match (the price is the
//! matched container's). A placement ends when its container ends it
//! (`SessionEnded`, a signed final receipt with a reason) or falls silent
//! for [`crate::Timing::silence`]; the session then moves, at most
//! [`crate::Config::max_failovers`] times, and the next placement is paid
//! from what is left of the budget: the batch that settles the failed
//! placement locks exactly its refund for the next one, so the consumer's
//! money never sits unescrowed in between and nothing new is asked of them.
//! A failover that finds no container retries every
//! [`crate::Timing::retry`] until [`crate::Timing::give_up`]; then the rest
//! is refunded and the session is interrupted.

use dci_ledger::{LedgerError, LedgerOp};
use dci_model::{AccountId, Amount, Eliminations, MatchRequest, NodeId, SessionId, Timestamp};
use dci_proto::{Message, Net, Offer, SignedReceipt};

use crate::gateway::{Asking, Gateway, Waiting, already_applied, reject};
use crate::io::{CallId, Event, LedgerCall, Output, Relayed, Reply, Ticket};
use crate::receipts::{self, Expect};
use crate::record::{Host, Intent, Placement, Segment, SessionRecord, Status, placement_id, token_charge};
use crate::{GatewayError, ModelTerms};

/// Why a running session is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The consumer asked.
    Consumer,
    /// Its escrow is used up.
    Exhausted,
    /// The gateway shuts down.
    Shutdown,
}

/// What follows a close batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// The session ends.
    End { status: Status, reason: Option<String> },
    /// The session moves to the placement the batch locked.
    Move { next: SessionId, reason: String },
    /// (Recovery) the batch locked a next placement that will not run:
    /// refund it, then end interrupted.
    RefundNext { next: SessionId, reason: String },
    /// (Recovery) a deploy's lock is being reversed: end interrupted, or
    /// forget the session if nothing had been locked.
    Reverse { reason: String },
}

/// Where a live session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The indexer is matching the current placement (request `request`).
    Matching { request: u64 },
    /// A failover waits before matching again.
    Pausing { until: Timestamp },
    /// The ledger locks a deploy's escrow.
    Locking { ticket: Ticket },
    /// The container was asked to start the service.
    Starting { deadline: Timestamp },
    /// The service runs.
    Running,
    /// The container was asked to stop; its final receipt is awaited.
    Stopping { deadline: Timestamp, ending: Ending },
    /// A batch closing the placement is at the ledger.
    Closing { ticket: Ticket, fallback: Option<Vec<LedgerOp>>, then: Then },
}

/// A session the gateway still works on.
#[derive(Clone, Debug)]
pub(crate) struct Live {
    pub record: SessionRecord,
    pub phase: Phase,
    /// The consumer's call waiting on this session (deploy, stop).
    pub call: Option<CallId>,
    /// When the current placement's container was last heard from.
    pub heard: Timestamp,
    /// When the record was last persisted for a receipt.
    pub persisted: Timestamp,
    /// The latest receipt acknowledged for the current placement.
    pub receipt: Option<SignedReceipt>,
    /// Containers this failover does not take again.
    pub avoid: Vec<NodeId>,
    /// When the current failover began.
    pub moving_since: Option<Timestamp>,
    /// When the container was asked to stop (billing ends there).
    pub stop_asked: Option<Timestamp>,
    /// The indexer asked to match the current placement (it holds the
    /// reservation: releases and renewals go to it).
    pub indexer: Option<NodeId>,
    /// Indexers that did not answer this placement's match in time.
    pub tried: Vec<NodeId>,
}

impl Live {
    fn new(record: SessionRecord, phase: Phase, now: Timestamp) -> Live {
        Live {
            record,
            phase,
            call: None,
            heard: now,
            persisted: now,
            receipt: None,
            avoid: Vec::new(),
            moving_since: None,
            stop_asked: None,
            indexer: None,
            tried: Vec::new(),
        }
    }

    /// Checks a receipt from `from` against this session's record and the
    /// gateway's clock ([`receipts::check`]).
    fn check(
        &self,
        from: NodeId,
        receipt: &SignedReceipt,
        now: Timestamp,
        skew: std::time::Duration,
    ) -> Result<(), String> {
        let expect = Expect {
            record: &self.record,
            placement: &self.record.placement,
            previous: self.receipt.as_ref(),
            now,
            stop_asked: self.stop_asked,
            skew,
        };
        receipts::check(from, receipt, &expect)
    }

    /// Still on its first placement, never served: a deploy in progress.
    fn deploying(&self) -> bool {
        self.record.segments.is_empty() && self.record.started_at.is_none() && self.moving_since.is_none()
    }
}

/// What settling `receipt_amount` plus `extra` charges of `escrow` (the
/// ledger's own rule; an overflow charges the whole escrow).
pub(crate) fn settle_charge(receipt_amount: Amount, extra: Amount, escrow: Amount) -> dci_ledger::rules::Charge {
    dci_ledger::rules::charge(receipt_amount, extra, escrow).unwrap_or(dci_ledger::rules::Charge {
        charged: escrow,
        extra_charged: Amount::ZERO,
        refunded: Amount::ZERO,
        shortfall: Amount::ZERO,
    })
}

impl Gateway {
    // ---- deploy and stop -------------------------------------------------

    pub(crate) fn deploy(
        &mut self,
        now: Timestamp,
        call: CallId,
        account: AccountId,
        mut request: MatchRequest,
        hours: u32,
        out: &mut Vec<Output>,
    ) {
        if hours == 0 {
            let e = GatewayError::BadRequest("hours: expected at least 1, found 0".into());
            return out.push(Output::Reply { call, result: Err(e) });
        }
        // A catalogue model needs a container with the memory to serve it,
        // and is billed per token as well as per second.
        let model: Option<ModelTerms> = self.config.models.get(&request.service).copied();
        if let Some(m) = model {
            let gib = u32::try_from(m.memory_mib.div_ceil(1024)).unwrap_or(u32::MAX);
            request.min_ram_gib = request.min_ram_gib.max(gib);
        }
        let id = self.session_id();
        let record = SessionRecord {
            id,
            account,
            service: request.service.clone(),
            request,
            hours,
            budget: Amount::ZERO,
            token_price: model.map(|m| m.price_per_1k_tokens),
            status: Status::Starting,
            created_at: now,
            started_at: None,
            ended_at: None,
            end_reason: None,
            placement: Placement::new(id, Amount::ZERO),
            segments: Vec::new(),
            requests: 0,
            tokens: 0,
            billed_seconds: None,
            charged: None,
            token_charged: None,
            intent: None,
        };
        let mut live = Live::new(record, Phase::Pausing { until: now }, now);
        live.call = Some(call);
        self.sessions.insert(id, live);
        self.placements.insert(id, id);
        self.ask_match(now, id, out);
    }

    pub(crate) fn stop(
        &mut self,
        now: Timestamp,
        call: CallId,
        account: &AccountId,
        session: SessionId,
        out: &mut Vec<Output>,
    ) {
        let Some(live) = self.sessions.get(&session).filter(|l| &l.record.account == account) else {
            return out.push(Output::Reply { call, result: Err(GatewayError::NoSession(session)) });
        };
        let refused = match &live.phase {
            Phase::Running => None,
            Phase::Stopping { .. } => Some(GatewayError::Stopping(session)),
            Phase::Closing { then: Then::End { .. } | Then::RefundNext { .. } | Then::Reverse { .. }, .. } => {
                Some(GatewayError::Stopping(session))
            }
            _ if live.deploying() => Some(GatewayError::NotRunning { session, status: live.record.status }),
            _ => Some(GatewayError::Recovering(session)),
        };
        if let Some(e) = refused {
            return out.push(Output::Reply { call, result: Err(e) });
        }
        self.ask_stop(now, session, Ending::Consumer, out);
        if let Some(l) = self.sessions.get_mut(&session) {
            l.call = Some(call);
        }
    }

    pub(crate) fn stop_everything(&mut self, now: Timestamp, call: CallId, out: &mut Vec<Output>) {
        let running: Vec<SessionId> =
            self.sessions.iter().filter(|(_, l)| l.phase == Phase::Running).map(|(id, _)| *id).collect();
        let mut waiting: std::collections::HashSet<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, l)| matches!(l.phase, Phase::Stopping { .. } | Phase::Closing { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in running {
            self.ask_stop(now, id, Ending::Shutdown, out);
            waiting.insert(id);
        }
        self.stop_all = Some((call, waiting));
        self.check_stop_all(out);
    }

    pub(crate) fn check_stop_all(&mut self, out: &mut Vec<Output>) {
        let Some((call, waiting)) = self.stop_all.as_mut() else { return };
        waiting.retain(|id| self.sessions.contains_key(id));
        if waiting.is_empty() {
            let call = *call;
            self.stop_all = None;
            out.push(Output::Reply { call, result: Ok(Reply::Done) });
        }
    }

    fn ask_stop(&mut self, now: Timestamp, session: SessionId, ending: Ending, out: &mut Vec<Output>) {
        let deadline = now.plus(self.config.timing.container_timeout);
        let Some(live) = self.sessions.get_mut(&session) else { return };
        let Some(host) = live.record.placement.host.as_ref() else { return };
        let msg = Message::StopSession { session: live.record.placement.id };
        out.push(Output::Net(Net::Send { addr: host.addr.clone(), msg }));
        live.phase = Phase::Stopping { deadline, ending };
        live.stop_asked = Some(now);
    }

    // ---- matching ----------------------------------------------------------

    pub(crate) fn ask_match(&mut self, now: Timestamp, session: SessionId, out: &mut Vec<Output>) {
        let Some(live) = self.sessions.get(&session) else { return };
        let placement = live.record.placement.id;
        let request = live.record.request.clone();
        let tried = live.tried.clone();
        let msg = |request_id| Message::Match { request_id, session: placement, request };
        let asked = self.ask_indexer(now, &placement.0, &tried, Asking::Match { session, placement }, msg, out);
        let Some(live) = self.sessions.get_mut(&session) else { return };
        match asked {
            Some((request_id, indexer)) => {
                live.phase = Phase::Matching { request: request_id };
                live.indexer = Some(indexer);
            }
            // Every indexer was tried: as if nothing matched.
            None => {
                live.tried.clear();
                live.phase = Phase::Matching { request: u64::MAX };
                let why = "no indexer answered".to_owned();
                self.match_failed(now, session, u64::MAX, why, out);
            }
        }
    }

    /// The indexer asked did not answer in time: try the next one at once
    /// (a deploy too), or, when every indexer was tried, fail as
    /// [`Gateway::match_failed`] does.
    pub(crate) fn match_timed_out(
        &mut self,
        now: Timestamp,
        session: SessionId,
        request_id: u64,
        indexer: NodeId,
        why: String,
        out: &mut Vec<Output>,
    ) {
        let n = self.config.indexers.len();
        let Some(live) = self.sessions.get_mut(&session) else { return };
        if live.phase != (Phase::Matching { request: request_id }) {
            return;
        }
        live.tried.push(indexer);
        if live.tried.len() < n {
            return self.ask_match(now, session, out);
        }
        live.tried.clear();
        self.match_failed(now, session, request_id, why, out);
    }

    /// Frees the current placement's reservation at the indexer that holds it.
    fn release(&self, session: SessionId, placement: SessionId, out: &mut Vec<Output>) {
        let indexer = self.sessions.get(&session).and_then(|l| l.indexer);
        self.send_to_indexer(indexer, Message::Release { session: placement }, out);
    }

    /// The indexer's answer to a placement's match.
    pub(crate) fn matched(
        &mut self,
        now: Timestamp,
        session: SessionId,
        placement: SessionId,
        request_id: u64,
        result: Result<Offer, Eliminations>,
        out: &mut Vec<Output>,
    ) {
        let current = self
            .sessions
            .get(&session)
            .filter(|l| l.phase == Phase::Matching { request: request_id } && l.record.placement.id == placement);
        let Some(live) = current else {
            // Nobody waits for this slot any more.
            if result.is_ok() {
                self.release(session, placement, out);
            }
            return;
        };
        let offer = match result {
            Ok(offer) if live.avoid.contains(&offer.container) => {
                // The indexer does not know yet that it failed.
                self.release(session, placement, out);
                let why = format!("only container {} matched, which just failed", offer.container.short());
                return self.match_failed(now, session, request_id, why, out);
            }
            Ok(offer) => offer,
            Err(eliminations) => {
                // Another indexer may see a container this one does not
                // (one restarted and still rebuilding its view, or one that
                // says no to everything): each live one is asked once
                // before the consumer hears "no match".
                let live = self.sessions.get_mut(&session).expect("checked");
                if let Some(asked) = live.indexer {
                    live.tried.push(asked);
                }
                let tried = live.tried.clone();
                if self.any_up(now, &tried) {
                    return self.ask_match(now, session, out);
                }
                let live = self.sessions.get_mut(&session).expect("checked");
                live.tried.clear();
                if live.deploying() {
                    let live = self.forget_live(session);
                    if let Some(call) = live.and_then(|l| l.call) {
                        out.push(Output::Reply { call, result: Err(GatewayError::NoMatch(eliminations)) });
                    }
                    return;
                }
                return self.match_failed(now, session, request_id, eliminations.to_string(), out);
            }
        };
        let host = Host {
            container: offer.container,
            addr: offer.addr,
            payout: offer.payout,
            price: offer.price,
            estimated_rtt_ms: offer.estimated_rtt_ms,
            indexer: live.indexer,
        };
        let live = self.sessions.get_mut(&session).expect("checked");
        live.tried.clear();
        if !live.record.placement.escrow.is_zero() {
            // A failover: the rest of the budget is already locked for it.
            live.record.placement.host = Some(host);
            return self.ask_start(now, session, out);
        }
        let escrow = match host.price.cost_for_secs(u64::from(live.record.hours) * 3600) {
            Ok(a) => a,
            Err(e) => {
                self.release(session, placement, out);
                let call = self.forget_live(session).and_then(|l| l.call);
                if let Some(call) = call {
                    let e = GatewayError::BadRequest(format!("hours: {e}"));
                    out.push(Output::Reply { call, result: Err(e) });
                }
                return;
            }
        };
        let live = self.sessions.get_mut(&session).expect("checked");
        live.record.budget = escrow;
        live.record.placement.escrow = escrow;
        live.record.placement.host = Some(host);
        let ops =
            vec![LedgerOp::LockEscrow { session: placement, consumer: live.record.account.clone(), amount: escrow }];
        live.record.intent = Some(Intent::Lock { ops: ops.clone() });
        out.push(Output::Persist(live.record.clone()));
        let ticket = self.call_ledger(LedgerCall::Apply(ops), Waiting::Session(session), out);
        if let Some(live) = self.sessions.get_mut(&session) {
            live.phase = Phase::Locking { ticket };
        }
    }

    /// A match attempt failed: a deploy fails, a failover tries again.
    pub(crate) fn match_failed(
        &mut self,
        now: Timestamp,
        session: SessionId,
        request_id: u64,
        why: String,
        out: &mut Vec<Output>,
    ) {
        let Some(live) = self.sessions.get(&session) else { return };
        if live.phase != (Phase::Matching { request: request_id }) {
            return;
        }
        if live.deploying() {
            let call = self.forget_live(session).and_then(|l| l.call);
            if let Some(call) = call {
                out.push(Output::Reply { call, result: Err(GatewayError::Unavailable(why)) });
            }
            return;
        }
        self.pause_or_give_up(now, session, why, out);
    }

    fn pause_or_give_up(&mut self, now: Timestamp, session: SessionId, why: String, out: &mut Vec<Output>) {
        let (retry, give_up) = (self.config.timing.retry, self.config.timing.give_up);
        let Some(live) = self.sessions.get_mut(&session) else { return };
        let since = *live.moving_since.get_or_insert(now);
        if now.since(since) >= give_up {
            let reason = format!("no container took the session within {} s: {why}", give_up.as_secs());
            let ops = vec![LedgerOp::Refund { session: live.record.placement.id }];
            let then = Then::End { status: Status::Interrupted, reason: Some(reason) };
            return self.close(session, ops, None, then, out);
        }
        live.phase = Phase::Pausing { until: now.plus(retry) };
    }

    // ---- starting ------------------------------------------------------

    fn ask_start(&mut self, now: Timestamp, session: SessionId, out: &mut Vec<Output>) {
        let deadline = now.plus(self.config.timing.container_timeout);
        let Some(live) = self.sessions.get_mut(&session) else { return };
        let r = &mut live.record;
        let Some(host) = r.placement.host.clone() else { return };
        r.placement.asked_at = Some(now);
        // A deploy keeps its `Lock` intent until the service runs: a crash in
        // between reverses the lock and stops the container, which is what
        // a restart must do then anyway (one write less on the deploy path).
        // A failover's placement is recorded with its container first.
        if !matches!(r.intent, Some(Intent::Lock { .. })) {
            out.push(Output::Persist(r.clone()));
        }
        let msg = Message::StartSession {
            session: r.placement.id,
            service: r.service.clone(),
            consumer: r.account.clone(),
            price: host.price,
        };
        out.push(Output::Net(Net::Send { addr: host.addr, msg }));
        live.phase = Phase::Starting { deadline };
    }

    /// `SessionStarted` (Ok: the endpoint) or `SessionFailed` (Err: why).
    pub(crate) fn started(
        &mut self,
        now: Timestamp,
        from: NodeId,
        placement: SessionId,
        result: Result<String, String>,
        out: &mut Vec<Output>,
    ) {
        let kind = if result.is_ok() { "session_started" } else { "session_failed" };
        let Some(&session) = self.placements.get(&placement) else {
            return reject(out, from, kind, format!("no placement {} is starting", placement.short()));
        };
        let live = self.sessions.get_mut(&session).expect("placements index live sessions");
        let container = live.record.placement.host.as_ref().map(|h| h.container);
        if !matches!(live.phase, Phase::Starting { .. }) || container != Some(from) {
            return reject(
                out,
                from,
                kind,
                format!("expected no start answer for {} from {}", placement.short(), from.short()),
            );
        }
        let port = match result.and_then(|endpoint| service_port(&endpoint)) {
            Ok(port) => port,
            Err(why) => return self.start_failed(now, session, why, out),
        };
        live.record.placement.port = Some(port);
        live.record.placement.serving_since = Some(now);
        live.record.intent = None;
        live.record.status = Status::Running;
        live.record.started_at.get_or_insert(now);
        live.phase = Phase::Running;
        live.heard = now;
        live.persisted = now;
        live.receipt = None;
        live.avoid.clear();
        live.moving_since = None;
        out.push(Output::Persist(live.record.clone()));
        let failovers = live.record.failovers();
        out.push(Output::Event(Event::Placed { session, container: from, failovers }));
        if let Some(call) = live.call.take() {
            out.push(Output::Reply { call, result: Ok(Reply::Session(live.record.clone())) });
        }
    }

    /// The container could not start the placement (or did not answer).
    fn start_failed(&mut self, now: Timestamp, session: SessionId, why: String, out: &mut Vec<Output>) {
        let Some(live) = self.sessions.get_mut(&session) else { return };
        let placement = live.record.placement.id;
        if let Some(host) = live.record.placement.host.take() {
            // In case it started after all: it must not keep serving.
            out.push(Output::Net(Net::Send {
                addr: host.addr.clone(),
                msg: Message::StopSession { session: placement },
            }));
            live.avoid.push(host.container);
        }
        live.record.placement.asked_at = None;
        self.release(session, placement, out);
        let live = self.sessions.get(&session).expect("present");
        if live.deploying() {
            let reason = format!("the container could not start the session: {why}");
            let ops = vec![LedgerOp::Refund { session: placement }];
            let then = Then::End { status: Status::Interrupted, reason: Some(reason) };
            return self.close(session, ops, None, then, out);
        }
        let _ = now;
        self.pause_or_give_up(now, session, why, out);
        // Another container may be free right now: try at once.
        if let Some(Phase::Pausing { .. }) = self.sessions.get(&session).map(|l| &l.phase) {
            self.ask_match(now, session, out);
        }
    }

    // ---- metering --------------------------------------------------------

    /// A per-second usage receipt.
    pub(crate) fn usage(&mut self, now: Timestamp, from: NodeId, receipt: SignedReceipt, out: &mut Vec<Output>) {
        let skew = self.config.timing.receipt_skew;
        let Some(&session) = self.placements.get(&receipt.receipt.session) else {
            return reject(out, from, "usage", format!("no placement {} is running", receipt.receipt.session.short()));
        };
        let live = self.sessions.get_mut(&session).expect("placements index live sessions");
        if !matches!(live.phase, Phase::Running | Phase::Stopping { .. }) {
            return reject(out, from, "usage", format!("placement {} is not serving", receipt.receipt.session.short()));
        }
        if let Err(reason) = live.check(from, &receipt, now, skew) {
            return reject(out, from, "usage", reason);
        }
        let mut receipt = receipt;
        receipt.acknowledge(&self.identity);
        live.heard = now;
        live.receipt = Some(receipt.clone());
        if now.since(live.persisted) >= self.config.timing.persist_every {
            live.persisted = now;
            live.record.placement.usage = Some(receipt);
            out.push(Output::Persist(live.record.clone()));
        }
        self.check_exhausted(now, session, out);
    }

    /// A final receipt: `SessionStopped` (`ended` None) or `SessionEnded`.
    pub(crate) fn final_receipt(
        &mut self,
        now: Timestamp,
        from: NodeId,
        receipt: SignedReceipt,
        ended: Option<String>,
        out: &mut Vec<Output>,
    ) {
        let kind = if ended.is_some() { "session_ended" } else { "session_stopped" };
        let Some(&session) = self.placements.get(&receipt.receipt.session) else {
            return reject(out, from, kind, format!("no placement {} is running", receipt.receipt.session.short()));
        };
        let skew = self.config.timing.receipt_skew;
        let live = self.sessions.get_mut(&session).expect("placements index live sessions");
        let ending = match (&live.phase, &ended) {
            (Phase::Stopping { ending, .. }, _) => Some(*ending),
            (Phase::Running, Some(_)) => None,
            _ => {
                return reject(
                    out,
                    from,
                    kind,
                    format!("placement {} is not being stopped", receipt.receipt.session.short()),
                );
            }
        };
        if let Err(reason) = live.check(from, &receipt, now, skew) {
            return reject(out, from, kind, reason);
        }
        let mut receipt = receipt;
        receipt.acknowledge(&self.identity);
        live.receipt = Some(receipt.clone());
        match (ending, ended) {
            (Some(ending), _) => self.settle_and_end(session, Some(receipt), ending, out),
            (None, Some(reason)) => self.failover(now, session, Some(receipt), reason, out),
            (None, None) => {}
        }
    }

    /// One relayed request of a model session: bill its tokens, at most one
    /// per byte the gateway itself relayed.
    pub(crate) fn relayed(
        &mut self,
        now: Timestamp,
        account: &AccountId,
        session: SessionId,
        relayed: Relayed,
        out: &mut Vec<Output>,
    ) -> Result<(), GatewayError> {
        let live = self
            .sessions
            .get_mut(&session)
            .filter(|l| &l.record.account == account)
            .ok_or(GatewayError::NoSession(session))?;
        if live.record.token_price.is_none() {
            return Err(GatewayError::NotOffered(format!("session {session} is not billed per token")));
        }
        if !matches!(live.phase, Phase::Running | Phase::Stopping { .. }) {
            return Err(GatewayError::NotRunning { session, status: live.record.status });
        }
        let bound = relayed.request_bytes.saturating_add(relayed.response_bytes);
        let tokens = relayed.tokens.min(bound);
        let r = &mut live.record;
        r.requests += 1;
        r.tokens = r.tokens.saturating_add(tokens);
        r.placement.tokens = r.placement.tokens.saturating_add(tokens);
        out.push(Output::Persist(r.clone()));
        self.check_exhausted(now, session, out);
        Ok(())
    }

    /// Stops a running session whose escrow would not cover
    /// [`crate::Timing::exhaust_margin`] more of its price (seconds billed
    /// by the latest receipt, or by the gateway's clock if that is more,
    /// plus its tokens).
    fn check_exhausted(&mut self, now: Timestamp, session: SessionId, out: &mut Vec<Output>) {
        let margin = self.config.timing.exhaust_margin;
        let Some(live) = self.sessions.get(&session).filter(|l| l.phase == Phase::Running) else { return };
        let p = &live.record.placement;
        let (Some(host), Some(since)) = (p.host.as_ref(), p.asked_at) else { return };
        let by_clock = host.price.cost_for_secs(now.since(since).as_secs()).unwrap_or(Amount(u128::MAX));
        let by_receipt = live.receipt.as_ref().map_or(Amount::ZERO, |r| r.receipt.amount);
        let tokens = live.record.token_price.map_or(Amount::ZERO, |per_1k| token_charge(p.tokens, per_1k));
        let ahead = host.price.cost_for_secs(margin.as_secs().max(1)).unwrap_or(Amount(u128::MAX));
        let due = by_clock.0.max(by_receipt.0).saturating_add(tokens.0).saturating_add(ahead.0);
        if due >= p.escrow.0 {
            out.push(Output::Event(Event::Exhausted { session }));
            self.ask_stop(now, session, Ending::Exhausted, out);
        }
    }

    // ---- relay and viewer targets ------------------------------------------

    pub(crate) fn relay_target(&self, account: &AccountId, session: SessionId) -> Result<String, GatewayError> {
        let live = self
            .sessions
            .get(&session)
            .filter(|l| &l.record.account == account)
            .ok_or(GatewayError::NoSession(session))?;
        if live.record.token_price.is_none() {
            return Err(GatewayError::NotOffered(format!(
                "session {session} runs {}, not a catalogue model: it has no OpenAI-compatible API",
                live.record.service
            )));
        }
        serving_endpoint(live, session)
    }

    pub(crate) fn view_target(&self, session: SessionId) -> Result<String, GatewayError> {
        let live = self
            .sessions
            .get(&session)
            .filter(|l| l.record.service.as_str() == "render")
            .ok_or_else(|| GatewayError::NotFound(format!("no running render session {session}")))?;
        serving_endpoint(live, session)
    }

    // ---- failover --------------------------------------------------------

    /// The current placement ended (its container ended it with `last`, or
    /// fell silent): settle it and move the session, within the limits.
    fn failover(
        &mut self,
        now: Timestamp,
        session: SessionId,
        last: Option<SignedReceipt>,
        reason: String,
        out: &mut Vec<Output>,
    ) {
        let (max, margin, acker) = (self.config.max_failovers, self.config.timing.exhaust_margin, self.identity.id());
        let Some(live) = self.sessions.get(&session) else { return };
        let ended_itself = last.is_some();
        let receipt = last.or_else(|| live.receipt.clone());
        let r = &live.record;
        let p = &r.placement;
        let Some(host) = p.host.clone() else { return };
        let (old, escrow, account, failovers) = (p.id, p.escrow, r.account.clone(), r.failovers());
        let extra = r.token_price.map_or(Amount::ZERO, |per_1k| token_charge(p.tokens, per_1k));
        let left = receipt.as_ref().map_or(escrow, |x| settle_charge(x.receipt.amount, extra, escrow).refunded);
        let mut ops = close_ops(&acker, r, receipt.as_ref(), extra);
        if !ended_itself {
            // It may be alive but cut off: it must stop serving.
            out.push(Output::Net(Net::Send { addr: host.addr.clone(), msg: Message::StopSession { session: old } }));
        }
        out.push(Output::Event(Event::Moving { session, container: host.container, reason: reason.clone() }));
        let enough = host.price.cost_for_secs(margin.as_secs().max(1) + 1).is_ok_and(|a| left.0 > a.0);
        if failovers >= max || !enough {
            let reason = if enough {
                format!("{reason}; the session already moved {max} times")
            } else {
                format!("{reason}; the escrow left ({left}) does not pay another placement")
            };
            let fallback = receipt.as_ref().map(|_| vec![LedgerOp::Refund { session: old }]);
            let then = Then::End { status: Status::Interrupted, reason: Some(reason) };
            return self.close(session, ops, fallback, then, out);
        }
        let next = placement_id(session, failovers + 1);
        let lock = |amount| LedgerOp::LockEscrow { session: next, consumer: account.clone(), amount };
        ops.push(lock(left));
        let fallback = receipt.as_ref().map(|_| vec![LedgerOp::Refund { session: old }, lock(escrow)]);
        if let Some(live) = self.sessions.get_mut(&session) {
            live.moving_since = Some(now);
            live.record.status = Status::Recovering;
        }
        self.close(session, ops, fallback, Then::Move { next, reason }, out);
    }

    // ---- closing ---------------------------------------------------------

    /// Settles a stopped placement with its final receipt (or, without one,
    /// the latest per-second receipt; without any, refunds it) and ends the
    /// session.
    fn settle_and_end(
        &mut self,
        session: SessionId,
        receipt: Option<SignedReceipt>,
        ending: Ending,
        out: &mut Vec<Output>,
    ) {
        let Some(live) = self.sessions.get(&session) else { return };
        let r = &live.record;
        let extra = r.token_price.map_or(Amount::ZERO, |per_1k| token_charge(r.placement.tokens, per_1k));
        let final_receipt = receipt.is_some();
        let receipt = receipt.or_else(|| live.receipt.clone()).or_else(|| r.placement.usage.clone());
        let ops = close_ops(&self.identity.id(), r, receipt.as_ref(), extra);
        let fallback = receipt.as_ref().map(|_| vec![LedgerOp::Refund { session: r.placement.id }]);
        let (status, reason) = match (ending, final_receipt) {
            (Ending::Consumer, true) => (Status::Stopped, None),
            (Ending::Exhausted, true) => (Status::Stopped, Some(exhausted_reason(r))),
            (Ending::Shutdown, true) => (Status::Stopped, Some("the gateway shut down".to_owned())),
            (Ending::Exhausted, false) => (Status::Interrupted, Some(exhausted_reason(r))),
            (_, false) => (
                Status::Interrupted,
                Some("the container did not confirm the stop: settled for its last usage receipt".to_owned()),
            ),
        };
        self.close(session, ops, fallback, Then::End { status, reason }, out);
    }

    /// Records `ops` as the session's intent, then asks the ledger to apply them.
    pub(crate) fn close(
        &mut self,
        session: SessionId,
        ops: Vec<LedgerOp>,
        fallback: Option<Vec<LedgerOp>>,
        then: Then,
        out: &mut Vec<Output>,
    ) {
        let Some(live) = self.sessions.get_mut(&session) else { return };
        live.record.intent = Some(Intent::Close { ops: ops.clone() });
        out.push(Output::Persist(live.record.clone()));
        let ticket = self.call_ledger(LedgerCall::Apply(ops), Waiting::Session(session), out);
        if let Some(live) = self.sessions.get_mut(&session) {
            live.phase = Phase::Closing { ticket, fallback, then };
        }
    }

    /// The ledger's answer to a session's lock or close batch.
    pub(crate) fn session_ledger(
        &mut self,
        now: Timestamp,
        session: SessionId,
        ticket: Ticket,
        result: Result<Vec<dci_ledger::OpOutcome>, LedgerError>,
        out: &mut Vec<Output>,
    ) {
        let Some(live) = self.sessions.get_mut(&session) else { return };
        match live.phase.clone() {
            Phase::Locking { ticket: t } if t == ticket => match result {
                Ok(_) => self.ask_start(now, session, out),
                Err(e) => {
                    let placement = live.record.placement.id;
                    self.release(session, placement, out);
                    out.push(Output::Forget(session));
                    if let Some(call) = self.forget_live(session).and_then(|l| l.call) {
                        out.push(Output::Reply { call, result: Err(GatewayError::Ledger(e.unbatch())) });
                    }
                }
            },
            Phase::Closing { ticket: t, fallback, then } if t == ticket => match result {
                Ok(_) => self.closed(now, session, then, out),
                Err(e) if already_applied(&e) => self.closed(now, session, then, out),
                Err(e) if matches!(then, Then::Reverse { .. }) && no_escrow(&e) => {
                    // The lock never happened: nothing to reverse, nothing to show.
                    out.push(Output::Forget(session));
                    self.forget_live(session);
                }
                Err(e) => match fallback {
                    Some(ops) => {
                        out.push(Output::Event(Event::LedgerFailed {
                            what: format!(
                                "closing placement {} of session {}",
                                live.record.placement.id.short(),
                                session.short()
                            ),
                            error: format!("{e}; refunding it instead"),
                        }));
                        self.close(session, ops, None, then, out);
                    }
                    None => self.ledger_gave_up(now, session, e, out),
                },
            },
            _ => {}
        }
    }

    /// A close batch is applied: file the placement and end or move the session.
    fn closed(&mut self, now: Timestamp, session: SessionId, then: Then, out: &mut Vec<Output>) {
        let Some(live) = self.sessions.get_mut(&session) else { return };
        let ops = match live.record.intent.take() {
            Some(Intent::Close { ops }) => ops,
            _ => Vec::new(),
        };
        let c = account_closed(&mut live.record, &ops, now);
        let old_id = live.record.placement.id;
        let indexer = live.indexer;
        match then {
            Then::End { status, reason } => {
                let r = &mut live.record;
                r.status = status;
                r.ended_at = Some(now);
                r.end_reason = reason;
                r.billed_seconds = Some(r.segments.iter().map(|s| s.billed_seconds).sum::<u64>() + c.seconds);
                out.push(Output::Persist(r.clone()));
                let record = r.clone();
                let call = live.call.take();
                self.forget_live(session);
                self.send_to_indexer(indexer, Message::Release { session: old_id }, out);
                if let Some(call) = call {
                    let result = if record.started_at.is_none() && status != Status::Stopped {
                        Err(GatewayError::Unavailable(record.end_reason.clone().unwrap_or_default()))
                    } else {
                        Ok(Reply::Session(record.clone()))
                    };
                    out.push(Output::Reply { call, result });
                }
                out.push(Output::Event(Event::Ended { record: Box::new(record) }));
                self.check_stop_all(out);
            }
            Then::Move { next, reason } => {
                let escrow = locked_for(&ops, next);
                let r = &mut live.record;
                let old = std::mem::replace(&mut r.placement, Placement::new(next, escrow));
                r.segments.push(segment(&old, &c, &reason));
                r.status = Status::Recovering;
                live.receipt = None;
                live.stop_asked = None;
                live.avoid = old.host.iter().map(|h| h.container).collect();
                live.tried.clear();
                live.moving_since.get_or_insert(now);
                out.push(Output::Persist(r.clone()));
                self.placements.remove(&old.id);
                self.placements.insert(next, session);
                self.send_to_indexer(indexer, Message::Release { session: old_id }, out);
                self.ask_match(now, session, out);
            }
            Then::RefundNext { next, reason } => {
                let escrow = locked_for(&ops, next);
                let r = &mut live.record;
                let old = std::mem::replace(&mut r.placement, Placement::new(next, escrow));
                r.segments.push(segment(&old, &c, &reason));
                self.placements.remove(&old.id);
                self.placements.insert(next, session);
                self.send_to_indexer(indexer, Message::Release { session: old_id }, out);
                let then = Then::End { status: Status::Interrupted, reason: Some(reason) };
                self.close(session, vec![LedgerOp::Refund { session: next }], None, then, out);
            }
            Then::Reverse { reason } => {
                let r = &mut live.record;
                r.status = Status::Interrupted;
                r.ended_at = Some(now);
                r.end_reason = Some(reason);
                r.billed_seconds = Some(0);
                out.push(Output::Persist(r.clone()));
                self.forget_live(session);
                self.send_to_indexer(indexer, Message::Release { session: old_id }, out);
            }
        }
    }

    /// The ledger refused even the fallback: keep the intent (a restart
    /// tries again), end the session here, and tell whoever waits.
    fn ledger_gave_up(&mut self, now: Timestamp, session: SessionId, e: LedgerError, out: &mut Vec<Output>) {
        let Some(mut live) = self.forget_live(session) else { return };
        out.push(Output::Event(Event::LedgerFailed {
            what: format!("closing placement {} of session {}", live.record.placement.id.short(), session.short()),
            error: e.to_string(),
        }));
        let r = &mut live.record;
        r.status = Status::Interrupted;
        r.ended_at = Some(now);
        r.end_reason = Some(format!("the ledger refused to settle it ({e}); a restart of the gateway retries"));
        out.push(Output::Persist(r.clone()));
        if let Some(call) = live.call {
            out.push(Output::Reply { call, result: Err(GatewayError::Ledger(e.unbatch())) });
        }
        self.check_stop_all(out);
    }

    /// Removes a session from the live set.
    pub(crate) fn forget_live(&mut self, session: SessionId) -> Option<Live> {
        let live = self.sessions.remove(&session)?;
        self.placements.retain(|_, s| *s != session);
        Some(live)
    }

    // ---- the clock -------------------------------------------------------

    /// Timeouts, silence and escrow of every live session.
    pub(crate) fn tick_sessions(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let silence = self.config.timing.silence;
        let due: Vec<(SessionId, Phase, Timestamp)> =
            self.sessions.iter().map(|(id, l)| (*id, l.phase.clone(), l.heard)).collect();
        for (id, phase, heard) in due {
            match phase {
                Phase::Starting { deadline } if now >= deadline => {
                    let why = format!(
                        "no answer from the container within {} s",
                        self.config.timing.container_timeout.as_secs()
                    );
                    self.start_failed(now, id, why, out);
                }
                Phase::Running if now.since(heard) >= silence => {
                    let reason = format!("no usage receipt for {} s", silence.as_secs());
                    self.failover(now, id, None, reason, out);
                }
                Phase::Running => self.check_exhausted(now, id, out),
                Phase::Stopping { deadline, ending } if now >= deadline => self.settle_and_end(id, None, ending, out),
                Phase::Pausing { until } if now >= until => self.ask_match(now, id, out),
                _ => {}
            }
        }
    }

    /// Renews the indexer's reservations of live placements.
    pub(crate) fn renew(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        if self.last_renew.is_some_and(|t| now.since(t) < self.config.timing.renew_every) {
            return;
        }
        self.last_renew = Some(now);
        // Each reservation is renewed at the indexer that holds it.
        let mut held: std::collections::BTreeMap<Option<NodeId>, Vec<SessionId>> = Default::default();
        for l in self.sessions.values().filter(|l| {
            matches!(l.phase, Phase::Locking { .. } | Phase::Starting { .. } | Phase::Running | Phase::Stopping { .. })
        }) {
            held.entry(l.indexer).or_default().push(l.record.placement.id);
        }
        for (indexer, sessions) in held {
            for chunk in sessions.chunks(dci_proto::MAX_RENEW) {
                self.send_to_indexer(indexer, Message::Renew { sessions: chunk.to_vec() }, out);
            }
        }
    }
}

/// The ops that close `r`'s current placement: settle `receipt` (with the
/// placement's token charge from the same escrow), or refund it without one.
pub(crate) fn close_ops(
    acker: &NodeId,
    r: &SessionRecord,
    receipt: Option<&SignedReceipt>,
    extra: Amount,
) -> Vec<LedgerOp> {
    let p = &r.placement;
    match (receipt, p.host.as_ref()) {
        (Some(receipt), Some(host)) => {
            vec![LedgerOp::Settle { receipt: receipt.clone(), acker: *acker, payout: host.payout.clone(), extra }]
        }
        _ => vec![LedgerOp::Refund { session: p.id }],
    }
}

/// What closing one placement cost.
pub(crate) struct Closed {
    /// Charged to the consumer (seconds and tokens).
    pub charged: Amount,
    /// Seconds paid.
    pub seconds: u64,
    /// The end of the usage paid.
    pub ended: Timestamp,
}

/// Adds to `r`'s totals what closing its current placement with `ops` cost
/// (from the ops themselves: the same whether this process applied them or
/// a crashed one did), and returns it.
pub(crate) fn account_closed(r: &mut SessionRecord, ops: &[LedgerOp], now: Timestamp) -> Closed {
    let p = &mut r.placement;
    let settled = ops.iter().find_map(|op| match op {
        LedgerOp::Settle { receipt, extra, .. } if receipt.receipt.session == p.id => Some((receipt, *extra)),
        _ => None,
    });
    let (closed, tokens) = match settled {
        Some((receipt, extra)) => {
            let charge = settle_charge(receipt.receipt.amount, extra, p.escrow);
            let c =
                Closed { charged: charge.charged, seconds: receipt.receipt.seconds, ended: receipt.receipt.ended_at };
            (c, charge.extra_charged)
        }
        None => (Closed { charged: Amount::ZERO, seconds: 0, ended: p.serving_since.unwrap_or(now) }, Amount::ZERO),
    };
    p.usage = None;
    r.charged = Some(Amount(r.charged.unwrap_or(Amount::ZERO).0 + closed.charged.0));
    r.token_charged = r.token_price.map(|_| Amount(r.token_charged.unwrap_or(Amount::ZERO).0 + tokens.0));
    closed
}

/// The escrow `ops` lock for placement `next`.
fn locked_for(ops: &[LedgerOp], next: SessionId) -> Amount {
    ops.iter()
        .find_map(|op| match op {
            LedgerOp::LockEscrow { session, amount, .. } if *session == next => Some(*amount),
            _ => None,
        })
        .unwrap_or(Amount::ZERO)
}

fn segment(old: &Placement, c: &Closed, reason: &str) -> Segment {
    let started_at = old.serving_since.or(old.asked_at).unwrap_or_default();
    Segment {
        container: old.host.as_ref().map_or(NodeId([0; 32]), |h| h.container),
        started_at,
        ended_at: c.ended.max(started_at),
        billed_seconds: c.seconds,
        tokens: old.tokens,
        charged: c.charged,
        reason: reason.to_owned(),
    }
}

fn exhausted_reason(r: &SessionRecord) -> String {
    format!("its escrow ({}) was used up", r.placement.escrow)
}

fn no_escrow(e: &LedgerError) -> bool {
    matches!(e.clone().unbatch(), LedgerError::NoEscrow(_))
}

fn serving_endpoint(live: &Live, session: SessionId) -> Result<String, GatewayError> {
    match live.phase {
        Phase::Running => {
            live.record.endpoint().ok_or(GatewayError::NotRunning { session, status: live.record.status })
        }
        _ if live.record.status == Status::Recovering => Err(GatewayError::Recovering(session)),
        _ => Err(GatewayError::NotRunning { session, status: live.record.status }),
    }
}

/// The port of an endpoint a container reported (`http://host:port[/]`).
/// Only the port is used: the host the gateway reaches is the container's
/// registered one.
pub fn service_port(endpoint: &str) -> Result<u16, String> {
    let expected = || format!("expected an endpoint like http://host:port, found {endpoint:?}");
    let rest = endpoint.strip_prefix("http://").ok_or_else(expected)?;
    let authority = rest.split('/').next().unwrap_or("");
    let (_, port) = authority.rsplit_once(':').ok_or_else(expected)?;
    port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(expected)
}
