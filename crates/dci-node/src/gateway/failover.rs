//! Metering receipts and failover (R-AG4, SPEC §5).
//!
//! Every running placement is watched: its container signs the usage so far
//! once a second, and the gateway acknowledges and keeps the latest
//! ([`Gateway::usage`]). A placement ends here in one of two ways besides a
//! consumer's stop:
//!
//! - the container ends it itself (`SessionEnded`, with its final receipt):
//!   the service exited, or the operator locked the container for maintenance;
//! - the receipts stop for [`SILENCE`] (the container died, or went dark):
//!   [`watch`] notices within [`SILENCE`] + [`WATCH_EVERY`].
//!
//! Either way [`Gateway::failover`] settles the placement for the time its
//! last receipt covers (no receipt: refunded), matches the session again with
//! the same request and starts it on another container under a new
//! placement id (same session id for the consumer, new endpoint); the time in
//! between is never billed. The bound, from the failed container's last
//! receipt to the session serving again: [`SILENCE`] + [`WATCH_EVERY`] to
//! notice, then a match (milliseconds; retried every [`RETRY`] while the
//! indexer still lists the failed container, which it stops doing after three
//! missed heartbeats, i.e. by the time the silence is noticed), then the new
//! container's service start (the render service: well under a second here).
//! For a service that starts within 5 s that is under [`STATED_BOUND`]. The
//! gateway gives up after [`GIVE_UP`]: the session is then interrupted, with
//! every placement settled.
//!
//! The failed container's own state moves on without the gateway: the
//! indexer makes it unschedulable after three missed heartbeats and requires
//! a fresh inspection after thirty.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dci_gateway::api::{ApiError, SessionStatus};
use dci_ledger::Settlement as _;
use dci_model::{MatchRequest, NodeId, SessionId};
use dci_proto::{Message, SignedReceipt};
use tokio_util::sync::CancellationToken;

use super::{CONTAINER_TIMEOUT, Gateway, INDEXER_TIMEOUT, Live, Segment, SessionRecord, Waiting};
use crate::clock;

/// A placement with no usage receipt for this long has failed.
pub const SILENCE: Duration = Duration::from_secs(3);
/// How often placements are checked for silence.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);
/// Pause between match attempts while no other container is available.
pub const RETRY: Duration = Duration::from_millis(500);
/// After this long without a new placement the session is interrupted.
pub const GIVE_UP: Duration = Duration::from_secs(60);
/// The stated failover bound for services that start within 5 s: from the
/// failed container's last receipt to the session serving elsewhere.
pub const STATED_BOUND: Duration = Duration::from_secs(10);
/// A receipt is persisted to the session record at most this often (and at
/// every failover and stop); a restarted gateway settles the persisted one.
const PERSIST_EVERY: Duration = Duration::from_secs(5);

/// The placement id of a session's `n`-th failover, `attempt`-th container
/// tried: derived, and distinct from every random session id with
/// overwhelming probability. A container that fails to start it has its
/// escrow refunded, which closes that id in the ledger for good: the next
/// attempt needs a new one.
fn placement_id(session: SessionId, n: usize, attempt: u32) -> SessionId {
    let mut h = blake3::Hasher::new_derive_key("dci failover placement v1");
    h.update(&session.0);
    h.update(&(n as u64).to_be_bytes());
    h.update(&attempt.to_be_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    SessionId(id)
}

/// A claim on a session: stop and failover never run on it at once.
pub(super) struct Claim<'a> {
    gateway: &'a Gateway,
    id: SessionId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.gateway.busy.lock().expect("busy lock").remove(&self.id);
    }
}

/// Checks every placement for silence until `shutdown`.
pub(super) async fn watch(gateway: Weak<Gateway>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let Some(gw) = gateway.upgrade() else { return };
        let silent: Vec<SessionId> = {
            let mut live = gw.live.lock().expect("live lock");
            live.iter_mut()
                .filter(|(_, l)| !l.moving && l.heard.elapsed() >= SILENCE)
                .map(|(placement, l)| {
                    l.moving = true;
                    *placement
                })
                .collect()
        };
        for placement in silent {
            let reason = format!("no usage receipt for {} s", SILENCE.as_secs());
            tokio::spawn(gw.clone().failover(placement, None, reason));
        }
    }
}

impl Gateway {
    /// Claims session `id` for a stop or a failover; `None` if one runs.
    pub(super) fn claim(&self, id: SessionId) -> Option<Claim<'_>> {
        self.busy.lock().expect("busy lock").insert(id).then_some(Claim { gateway: self, id })
    }

    /// Starts watching `record`'s current placement.
    pub(super) fn watch(&self, record: &SessionRecord) {
        let now = Instant::now();
        let live = Live {
            session: record.id,
            container: record.container,
            heard: now,
            receipt: None,
            persisted: now,
            moving: false,
        };
        self.live.lock().expect("live lock").insert(record.placement(), live);
    }

    /// Stops watching `placement`; returns its latest receipt.
    pub(super) fn unwatch(&self, placement: SessionId) -> Option<SignedReceipt> {
        self.live.lock().expect("live lock").remove(&placement).and_then(|l| l.receipt)
    }

    /// A usage receipt from `from` (`ended`: its final one, with the reason
    /// the container ended the session). Acknowledged and kept if it is the
    /// serving container's, correctly signed, and not older than the last.
    pub(super) fn usage(self: &Arc<Self>, from: NodeId, mut receipt: SignedReceipt, ended: Option<String>) {
        let placement = receipt.receipt.session;
        if receipt.receipt.container != from {
            tracing::warn!(from = %from.short(), "usage receipt signed for another container; refused");
            return;
        }
        if let Err(e) = receipt.verify_container() {
            tracing::warn!(from = %from.short(), error = %e, "usage receipt refused");
            return;
        }
        receipt.acknowledge(&self.identity);
        let persist = {
            let mut live = self.live.lock().expect("live lock");
            let Some(l) = live.get_mut(&placement).filter(|l| l.container == from) else {
                tracing::debug!(from = %from.short(), session = %placement, "usage receipt for no running placement");
                return;
            };
            if l.receipt.as_ref().is_some_and(|r| r.receipt.seconds > receipt.receipt.seconds) {
                return;
            }
            l.heard = Instant::now();
            l.receipt = Some(receipt.clone());
            if let Some(reason) = ended {
                if l.moving {
                    return;
                }
                l.moving = true;
                tokio::spawn(self.clone().failover(placement, Some(receipt), reason));
                return;
            }
            let due = l.persisted.elapsed() >= PERSIST_EVERY;
            if due {
                l.persisted = Instant::now();
            }
            due.then_some(l.session)
        };
        if let Some(session) = persist {
            let _meter = self.metering.lock().expect("metering lock");
            if let Ok(Some(mut r)) = self.sessions.get::<SessionRecord>(&session.to_string())
                && r.placement() == placement
                && r.status == SessionStatus::Running
            {
                r.usage = Some(receipt);
                let _ = self.save(&r);
            }
        }
    }

    /// Applies `f` to the stored record of `id` under the metering lock (the
    /// relay's meter writes the same record) and returns the result.
    fn update(&self, id: SessionId, f: impl FnOnce(&mut SessionRecord)) -> Result<SessionRecord, ApiError> {
        let _meter = self.metering.lock().expect("metering lock");
        let mut r: SessionRecord = self
            .sessions
            .get(&id.to_string())
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
        f(&mut r);
        self.save(&r)?;
        Ok(r)
    }

    /// Moves the session of `placement` to another container (see the module docs).
    pub(super) async fn failover(self: Arc<Self>, placement: SessionId, last: Option<SignedReceipt>, reason: String) {
        let t0 = Instant::now();
        let (session, container, latest) = {
            let live = self.live.lock().expect("live lock");
            let Some(l) = live.get(&placement) else { return };
            (l.session, l.container, l.receipt.clone())
        };
        let Some(_claim) = self.claim(session) else {
            // A stop is under way; it settles this placement.
            return;
        };
        self.unwatch(placement);
        let ended_itself = last.is_some();
        let receipt = last.or(latest);
        let record = match self.update(session, |r| {
            if r.status == SessionStatus::Running && r.placement() == placement {
                r.status = SessionStatus::Recovering;
            }
        }) {
            Ok(r) if r.status == SessionStatus::Recovering => r,
            _ => return,
        };
        tracing::warn!(session = %session, container = %container.short(), %reason, delivered = receipt.as_ref().map(|r| r.receipt.seconds), "placement ended; moving the session to another container");
        metrics::counter!("dci_gateway_failovers_total").increment(1);
        if !ended_itself {
            // It may be alive but cut off: tell it to stop serving.
            self.send_all(vec![(record.container_addr.clone(), Message::StopSession { session: placement })]);
        }
        let mut record = record;
        if let Err(e) = self.close_placement(&mut record, receipt, &reason) {
            tracing::error!(session = %session, error = %e, "could not settle the failed placement");
        }
        self.release(placement);
        let placed = self.place_again(&mut record, container).await;
        let outcome = match placed {
            Ok(()) => {
                record.status = SessionStatus::Running;
                tracing::info!(session = %session, container = %record.container.short(), endpoint = %record.endpoint, took_ms = t0.elapsed().as_millis() as u64, "session moved");
                None
            }
            Err(why) => {
                tracing::warn!(session = %session, %why, "session could not be moved; interrupted");
                record.status = SessionStatus::Interrupted;
                record.ended_at = Some(clock::now());
                record.total(0, dci_model::Amount::ZERO, dci_model::Amount::ZERO);
                Some(why)
            }
        };
        let moved = record.clone();
        let saved = self.update(session, move |r| {
            let (requests, tokens) = (r.requests, r.tokens);
            *r = moved;
            r.requests = requests;
            r.tokens = tokens;
        });
        match saved {
            Ok(r) if outcome.is_none() => self.watch(&r),
            Ok(_) => {}
            Err(e) => tracing::error!(session = %session, error = %e, "could not record the moved session"),
        }
    }

    /// Settles the current placement for `receipt` (tokens are charged at
    /// the session's end, not here) or refunds it, and files it as a segment.
    fn close_placement(
        &self,
        record: &mut SessionRecord,
        receipt: Option<SignedReceipt>,
        reason: &str,
    ) -> Result<(), ApiError> {
        let started_at = record.placed_at.unwrap_or(record.started_at);
        let settled = receipt.and_then(|mut r| {
            r.acknowledge(&self.identity);
            match self.settle(record, &r, false) {
                Ok(s) => Some((r, s)),
                Err(e) => {
                    tracing::warn!(session = %record.id, error = %e, "receipt refused; refunding the placement");
                    None
                }
            }
        });
        let segment = match settled {
            Some((r, s)) => Segment {
                container: record.container,
                started_at,
                ended_at: r.receipt.ended_at,
                billed_seconds: r.receipt.seconds,
                charged: s.charged,
                refunded: s.refunded,
                reason: reason.to_owned(),
            },
            None => {
                let refunded = self.ledger(|l| l.refund(record.placement()))?;
                Segment {
                    container: record.container,
                    started_at,
                    ended_at: started_at,
                    billed_seconds: 0,
                    charged: dci_model::Amount::ZERO,
                    refunded,
                    reason: reason.to_owned(),
                }
            }
        };
        record.segments.push(segment);
        record.usage = None;
        Ok(())
    }

    /// Matches the session again (never on `failed`), escrows its hours at
    /// the new price and starts it; retries until [`GIVE_UP`].
    async fn place_again(&self, record: &mut SessionRecord, failed: NodeId) -> Result<(), String> {
        let deadline = Instant::now() + GIVE_UP;
        let mut avoid = vec![failed];
        let request = record.request.clone().unwrap_or_else(|| MatchRequest::for_service(record.service.clone()));
        let mut last_error = String::from("no attempt");
        let mut attempt = 0;
        while Instant::now() < deadline {
            let next = placement_id(record.id, record.segments.len(), attempt);
            let request_id = self.request_id();
            let asked = self
                .ask(
                    &self.indexer_addr,
                    Waiting::Request(request_id),
                    None,
                    Message::Match { request_id, session: next, request: request.clone() },
                    INDEXER_TIMEOUT,
                )
                .await;
            let offer = match asked {
                Ok(Message::Matched { offer, .. }) if avoid.contains(&offer.container) => {
                    // The indexer does not know yet: wait for it to notice.
                    self.release(next);
                    last_error = format!("only container {} matched", offer.container.short());
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Ok(Message::Matched { offer, .. }) => offer,
                Ok(Message::NoMatch { eliminations, .. }) => {
                    last_error = eliminations.to_string();
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Ok(other) => {
                    last_error = format!("indexer answered {}", other.kind());
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Err(e) => {
                    last_error = e.body.message;
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let escrow = match offer.price.cost_for_secs(u64::from(record.hours) * 3600) {
                Ok(a) => a,
                Err(e) => {
                    self.release(next);
                    return Err(format!("escrow at the new price: {e}"));
                }
            };
            if let Err(e) = self.ledger(|l| l.lock_escrow(next, &record.account, escrow)) {
                self.release(next);
                return Err(format!("cannot escrow the new placement: {}", e.body.message));
            }
            let start = Message::StartSession {
                session: next,
                service: record.service.clone(),
                consumer: record.account.clone(),
                price: offer.price,
            };
            let left = deadline.saturating_duration_since(Instant::now()).min(CONTAINER_TIMEOUT);
            match self.ask(&offer.addr, Waiting::Start(next), Some(offer.container), start, left).await {
                Ok(Message::SessionStarted { endpoint, .. }) => {
                    record.placement = Some(next);
                    record.placed_at = Some(clock::now());
                    record.container = offer.container;
                    record.container_addr = offer.addr;
                    record.payout = offer.payout;
                    record.endpoint = endpoint;
                    record.price = offer.price;
                    record.estimated_rtt_ms = offer.estimated_rtt_ms;
                    record.escrow = escrow;
                    return Ok(());
                }
                other => {
                    last_error = match other {
                        Ok(Message::SessionFailed { reason, .. }) => reason,
                        Ok(m) => format!("container answered {}", m.kind()),
                        Err(e) => e.body.message,
                    };
                    let _ = self.ledger(|l| l.refund(next));
                    self.release(next);
                    avoid.push(offer.container);
                    attempt += 1;
                }
            }
        }
        Err(format!("no container took the session within {} s: {last_error}", GIVE_UP.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_ids_are_stable_and_distinct() {
        let s = SessionId([7; 16]);
        assert_eq!(placement_id(s, 1, 0), placement_id(s, 1, 0));
        assert_ne!(placement_id(s, 1, 0), placement_id(s, 2, 0));
        assert_ne!(placement_id(s, 1, 0), placement_id(s, 1, 1));
        assert_ne!(placement_id(s, 1, 0), s);
        assert_ne!(placement_id(SessionId([8; 16]), 1, 0), placement_id(s, 1, 0));
    }
}
