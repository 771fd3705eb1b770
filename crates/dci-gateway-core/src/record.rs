//! A session as the gateway records it: persisted at every change that
//! matters for money or for the consumer, and read back by
//! [`crate::Gateway::restore`] after a restart.

use dci_ledger::LedgerOp;
use dci_model::{AccountId, Amount, MatchRequest, NodeId, PricePerHour, ServiceName, SessionId, Timestamp};
use dci_proto::SignedReceipt;
use serde::{Deserialize, Serialize};

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Matched and escrowed; the container is starting the service.
    Starting,
    /// Serving.
    Running,
    /// Its container failed (or ended it): the time delivered is settled and
    /// the session is being placed on another container.
    Recovering,
    /// Stopped (by the consumer, or because its escrow ran out) and settled.
    Stopped,
    /// Ended by a failure or a restart; settled for the time delivered.
    Interrupted,
}

impl Status {
    /// Stopped or interrupted: nothing more will happen to it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Stopped | Status::Interrupted)
    }
}

/// The container a placement runs on, as the indexer offered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// The container.
    pub container: NodeId,
    /// Its registered node address (`host:port`): the only host the relay
    /// and the viewer ever reach for this placement.
    pub addr: String,
    /// Who receives the provider's share.
    pub payout: AccountId,
    /// The agreed price.
    pub price: PricePerHour,
    /// The estimated round trip from the consumer, if a location was given.
    pub estimated_rtt_ms: Option<u32>,
    /// The indexer that matched it (and holds its reservation).
    #[serde(default)]
    pub indexer: Option<NodeId>,
}

impl Host {
    /// The host part of the registered address (`[::1]` kept bracketed).
    pub fn hostname(&self) -> &str {
        match self.addr.rsplit_once(':') {
            Some((h, _)) if !h.is_empty() => h,
            _ => &self.addr,
        }
    }
}

/// One placement of a session: the escrow that pays it and the container
/// that serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The id the ledger's escrow and the container know it by: the
    /// session's own id for the first placement, a derived one after each
    /// failover ([`placement_id`]).
    pub id: SessionId,
    /// What is locked for it (zero until the ledger locked it).
    pub escrow: Amount,
    /// The container, once matched.
    pub host: Option<Host>,
    /// When the gateway asked the container to start.
    pub asked_at: Option<Timestamp>,
    /// When the container said the service runs.
    pub serving_since: Option<Timestamp>,
    /// The port the service listens on (the host is [`Host::addr`]'s).
    pub port: Option<u16>,
    /// The latest usage receipt acknowledged, as last persisted.
    pub usage: Option<SignedReceipt>,
    /// Tokens relayed while it served, billed when it is settled.
    pub tokens: u64,
}

impl Placement {
    /// A placement with `escrow` locked and no container yet.
    pub fn new(id: SessionId, escrow: Amount) -> Placement {
        Placement { id, escrow, host: None, asked_at: None, serving_since: None, port: None, usage: None, tokens: 0 }
    }

    /// `http://<registered host>:<port>`, once the service runs.
    pub fn endpoint(&self) -> Option<String> {
        Some(format!("http://{}:{}", self.host.as_ref()?.hostname(), self.port?))
    }
}

/// An earlier placement the session moved away from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The container.
    pub container: NodeId,
    /// When it started serving (when the gateway asked, if it never did).
    pub started_at: Timestamp,
    /// The end of the usage it was paid for.
    pub ended_at: Timestamp,
    /// Seconds paid.
    pub billed_seconds: u64,
    /// Tokens paid.
    pub tokens: u64,
    /// What it cost the consumer.
    pub charged: Amount,
    /// Why the session left it.
    pub reason: String,
}

/// A ledger call that moves this session's money, recorded before it is
/// made. After a crash, [`crate::Gateway::restore`] completes a `Close` (its
/// batch is atomic and each op is at most once, so applying it again either
/// applies it or finds it applied) and reverses a `Lock` (refunds the
/// escrow, if it was locked: the container was never asked to start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    /// Lock the first placement's escrow.
    Lock {
        /// The batch.
        ops: Vec<LedgerOp>,
    },
    /// Settle or refund a placement (and, for a failover, lock the next
    /// placement's escrow in the same batch).
    Close {
        /// The batch.
        ops: Vec<LedgerOp>,
    },
}

impl Intent {
    /// The ledger batch.
    pub fn ops(&self) -> &[LedgerOp] {
        match self {
            Intent::Lock { ops } | Intent::Close { ops } => ops,
        }
    }
}

/// A session as the gateway records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The consumer's session id.
    pub id: SessionId,
    /// Who pays.
    pub account: AccountId,
    /// The service.
    pub service: ServiceName,
    /// What was matched (matched again after a failure).
    pub request: MatchRequest,
    /// Hours of use asked for at deploy.
    pub hours: u32,
    /// What the session may spend in all: the first placement's escrow
    /// (`price × hours`). Each failover moves what is left of it.
    pub budget: Amount,
    /// Model sessions: what 1,000 relayed tokens cost.
    pub token_price: Option<Amount>,
    /// Where it is in its life.
    pub status: Status,
    /// When the consumer asked for it.
    pub created_at: Timestamp,
    /// When it first served.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Why it ended, in words (escrow used up, no container, a restart…).
    pub end_reason: Option<String>,
    /// The current placement (the last one, once ended).
    pub placement: Placement,
    /// Earlier placements, oldest first.
    pub segments: Vec<Segment>,
    /// Requests relayed through the gateway.
    pub requests: u64,
    /// Tokens billed for them (all placements).
    pub tokens: u64,
    /// Seconds paid, all placements (set at the end).
    pub billed_seconds: Option<u64>,
    /// What the consumer paid in all (set at the end).
    pub charged: Option<Amount>,
    /// What the tokens cost of that (set at the end).
    pub token_charged: Option<Amount>,
    /// A ledger call in flight (see [`Intent`]).
    pub intent: Option<Intent>,
}

impl SessionRecord {
    /// How many times the session moved.
    pub fn failovers(&self) -> u32 {
        self.segments.len() as u32
    }

    /// What earlier placements cost.
    pub fn spent(&self) -> Amount {
        Amount(self.segments.iter().map(|s| s.charged.0).sum())
    }

    /// What the consumer got back of the budget (once ended).
    pub fn refunded(&self) -> Option<Amount> {
        self.charged.map(|c| Amount(self.budget.0.saturating_sub(c.0)))
    }

    /// The endpoint the consumer calls (the current placement's).
    pub fn endpoint(&self) -> Option<String> {
        self.placement.endpoint()
    }
}

/// The token charge for `tokens` at `per_1k` per 1,000 tokens, rounded down.
pub fn token_charge(tokens: u64, per_1k: Amount) -> Amount {
    Amount(per_1k.0.saturating_mul(u128::from(tokens)) / 1000)
}

/// The placement id of a session's `n`-th failover: derived, and distinct
/// from every random session id with overwhelming probability.
pub fn placement_id(session: SessionId, n: u32) -> SessionId {
    let mut h = blake3::Hasher::new_derive_key("dci failover placement v2");
    h.update(&session.0);
    h.update(&n.to_be_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    SessionId(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_ids_are_stable_and_distinct() {
        let s = SessionId([7; 16]);
        assert_eq!(placement_id(s, 1), placement_id(s, 1));
        assert_ne!(placement_id(s, 1), placement_id(s, 2));
        assert_ne!(placement_id(s, 1), s);
        assert_ne!(placement_id(SessionId([8; 16]), 1), placement_id(s, 1));
    }

    #[test]
    fn the_relay_host_is_the_registered_one() {
        let host = |addr: &str| Host {
            container: NodeId([1; 32]),
            addr: addr.into(),
            payout: AccountId::new("node:x").unwrap(),
            price: PricePerHour(Amount::ath(1)),
            estimated_rtt_ms: None,
            indexer: None,
        };
        assert_eq!(host("10.0.0.7:7000").hostname(), "10.0.0.7");
        assert_eq!(host("[::1]:7000").hostname(), "[::1]");
        assert_eq!(host("gpu.example:7000").hostname(), "gpu.example");
        let mut p = Placement::new(SessionId([1; 16]), Amount::ZERO);
        assert_eq!(p.endpoint(), None);
        p.host = Some(host("10.0.0.7:7000"));
        p.port = Some(9000);
        assert_eq!(p.endpoint().as_deref(), Some("http://10.0.0.7:9000"));
    }

    #[test]
    fn tokens_are_charged_per_thousand_rounded_down() {
        assert_eq!(token_charge(1999, Amount(1000)), Amount(1999));
        assert_eq!(token_charge(1, Amount(999)), Amount(0));
        assert_eq!(token_charge(0, Amount::ath(1)), Amount::ZERO);
    }
}
