//! What a usage receipt must agree with before the gateway acknowledges it
//! for the consumer (R-AG4, R-SEC4).
//!
//! A container signs a cumulative receipt of its session's usage once a
//! second. The signature only proves who claims; the gateway also checks
//! the claim against its own record and clock:
//!
//! - it comes from the placement's container, names that container, the
//!   placement's id, the session's consumer and service, and the price the
//!   indexer offered;
//! - it starts no earlier than the gateway asked the container to start
//!   (less the stated skew) and ends no later than now (plus the skew);
//! - it bills no more seconds than the wall time since the gateway asked
//!   (plus the skew), nor past the moment a stop was asked for;
//! - it is cumulative and monotone: the same start as the last one
//!   acknowledged, and no fewer seconds.
//!
//! A refused receipt is not acknowledged and changes nothing: the placement
//! is still silent, and silence moves the session elsewhere.

use std::time::Duration;

use dci_model::{NodeId, Timestamp};
use dci_proto::SignedReceipt;

use crate::record::{Placement, SessionRecord};

/// The gateway's side of the check.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// The session.
    pub record: &'a SessionRecord,
    /// The placement the receipt must be for.
    pub placement: &'a Placement,
    /// The latest receipt acknowledged for it.
    pub previous: Option<&'a SignedReceipt>,
    /// The gateway's clock.
    pub now: Timestamp,
    /// When the gateway asked the container to stop (billing ends there).
    pub stop_asked: Option<Timestamp>,
    /// The stated clock skew.
    pub skew: Duration,
}

/// Checks `receipt`, sent by `from`, against `e`; the error says what was
/// expected and what was found.
pub fn check(from: NodeId, receipt: &SignedReceipt, e: &Expect<'_>) -> Result<(), String> {
    let r = &receipt.receipt;
    let p = e.placement;
    let host = p.host.as_ref().ok_or("a receipt for a placement with no container")?;
    if from != host.container {
        return Err(format!(
            "expected a receipt from container {}, the placement's, found one from {}",
            host.container.short(),
            from.short()
        ));
    }
    if r.container != from {
        return Err(format!("expected a receipt naming its sender {}, found {}", from.short(), r.container.short()));
    }
    if r.session != p.id {
        return Err(format!("expected a receipt for placement {}, found {}", p.id.short(), r.session.short()));
    }
    if r.consumer != e.record.account {
        return Err(format!("expected consumer {}, found {}", e.record.account, r.consumer));
    }
    if r.service != e.record.service {
        return Err(format!("expected service {}, found {}", e.record.service, r.service));
    }
    if r.price != host.price {
        return Err(format!("expected the offered price {}, found {}", host.price, r.price));
    }
    receipt.verify_container().map_err(|err| err.to_string())?;
    let asked = p.asked_at.ok_or("a receipt before the container was asked to start")?;
    let earliest = Timestamp(asked.0.saturating_sub(e.skew.as_millis() as u64));
    if r.started_at < earliest {
        return Err(format!(
            "expected a start at or after {earliest} (asked at {asked}, less {} ms of skew), found {}",
            e.skew.as_millis(),
            r.started_at
        ));
    }
    let latest = e.now.plus(e.skew);
    if r.ended_at > latest {
        return Err(format!("expected an end at or before {latest} (now plus the skew), found {}", r.ended_at));
    }
    let end = e.stop_asked.map_or(e.now, |s| s.min(e.now));
    let wall = end.since(asked) + e.skew;
    if Duration::from_secs(r.seconds) > wall {
        return Err(format!(
            "expected at most {} s (the wall time since the start was asked, plus the skew), found {} s",
            wall.as_secs(),
            r.seconds
        ));
    }
    if let Some(prev) = e.previous.map(|p| &p.receipt) {
        if r.started_at != prev.started_at {
            return Err(format!(
                "expected a cumulative receipt from the same start {}, found {}",
                prev.started_at, r.started_at
            ));
        }
        if r.seconds < prev.seconds {
            return Err(format!(
                "expected at least the {} s already acknowledged, found {} s",
                prev.seconds, r.seconds
            ));
        }
    }
    Ok(())
}
