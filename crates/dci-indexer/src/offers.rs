//! Listing offers with a [`Filter`] (R-IX5): `dci offers` and the API.

use crate::container::Container;
use crate::filter::{Filter, StateFilter};
use crate::indexer::Indexer;
use dci_model::Timestamp;
use dci_proto::OfferView;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::str::FromStr;

/// How to order offers. Ties go to the lower price, then the lower id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SortKey {
    /// Lowest price first.
    #[default]
    Price,
    /// Lowest estimated RTT first (unknown last; needs `near=` in the filter).
    Rtt,
    /// Most VRAM per GPU first, then most GPUs.
    Vram,
    /// Best checker reputation first.
    Reputation,
    /// Most free slots first.
    Free,
}

/// A sort key that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a sort key: price, rtt, vram, reputation or free; found {0:?}")]
pub struct SortKeyError(pub String);

impl FromStr for SortKey {
    type Err = SortKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "price" => Ok(SortKey::Price),
            "rtt" => Ok(SortKey::Rtt),
            "vram" => Ok(SortKey::Vram),
            "reputation" | "rep" => Ok(SortKey::Reputation),
            "free" => Ok(SortKey::Free),
            _ => Err(SortKeyError(s.to_owned())),
        }
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SortKey::Price => "price",
            SortKey::Rtt => "rtt",
            SortKey::Vram => "vram",
            SortKey::Reputation => "reputation",
            SortKey::Free => "free",
        })
    }
}

impl Indexer {
    /// The best `limit` offers that pass `filter`, ordered by `sort`
    /// (read-only: nothing is reserved), as the wire's rows (the node sends
    /// them to the gateway as they are).
    ///
    /// A pass over all containers keeping the best `limit` (O(n log limit)):
    /// tens of milliseconds at a million containers, meant for people and
    /// dashboards; consumers' matches go through [`Indexer::handle`].
    pub fn offers(&self, now: Timestamp, filter: &Filter, sort: SortKey, limit: usize) -> Vec<OfferView> {
        let fresh_ms = u64::try_from(self.config().fresh_window().as_millis()).unwrap_or(u64::MAX);
        let mut heap: BinaryHeap<Ranked<'_>> = BinaryHeap::new();
        if limit == 0 {
            return Vec::new();
        }
        for c in self.iter_unordered() {
            let Some(rtt) = passes(filter, c, now, fresh_ms) else { continue };
            let r = Ranked { c, rtt, sort };
            if heap.len() < limit {
                heap.push(r);
            } else if heap.peek().is_some_and(|worst| r < *worst) {
                heap.pop();
                heap.push(r);
            }
        }
        heap.into_sorted_vec().into_iter().map(|r| row(r.c, r.rtt, now)).collect()
    }
}

/// `Some(rtt)` when `c` passes the filter.
fn passes(f: &Filter, c: &Container, now: Timestamp, fresh_ms: u64) -> Option<Option<u32>> {
    let state_ok = match f.state {
        StateFilter::Any => true,
        StateFilter::Is(s) => c.record.state == s,
        StateFilter::Available => {
            c.record.state.is_schedulable() && now.0.saturating_sub(c.last_seen.0) <= fresh_ms && c.free_slots() > 0
        }
    };
    if !state_ok || !f.resources_ok(c) {
        return None;
    }
    let rtt = f.near.map(|q| q.estimated_rtt_ms(&c.record.registration.spec.location));
    if !f.rtt_ms.is_any() && !rtt.is_some_and(|r| f.rtt_ms.contains(r)) {
        return None;
    }
    Some(rtt)
}

fn row(c: &Container, rtt: Option<u32>, now: Timestamp) -> OfferView {
    let r = &c.record.registration;
    OfferView {
        id: c.id(),
        state: c.record.state,
        spec: r.spec.clone(),
        services: r.services.clone(),
        price: r.price,
        slots: r.slots,
        free_slots: c.free_slots(),
        reputation: c.record.reputation,
        estimated_rtt_ms: rtt,
        last_heartbeat_ago_ms: c.last_heartbeat.map(|t| now.0.saturating_sub(t.0)),
    }
}

/// A container in sort order (`Less` = listed first).
struct Ranked<'a> {
    c: &'a Container,
    rtt: Option<u32>,
    sort: SortKey,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, o: &Self) -> Ordering {
        let (a, b) = (self.c, o.c);
        let gpu = |c: &Container| c.record.registration.spec.gpu.as_ref().map_or((0, 0), |g| (g.vram_gib, g.count));
        let first = match self.sort {
            SortKey::Price => Ordering::Equal,
            SortKey::Rtt => self.rtt.unwrap_or(u32::MAX).cmp(&o.rtt.unwrap_or(u32::MAX)),
            SortKey::Vram => gpu(b).cmp(&gpu(a)),
            SortKey::Reputation => b.record.reputation.cmp(&a.record.reputation),
            SortKey::Free => b.free_slots().cmp(&a.free_slots()),
        };
        first.then(a.record.registration.price.cmp(&o.c.record.registration.price)).then(a.record.id.cmp(&b.record.id))
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}
