//! The network model: how long a message takes from one place to another.
//!
//! The round trip is the one the indexer estimates from great-circle
//! distance (`GeoPoint::estimated_rtt_ms`, ~100 km of distance per ms of
//! round trip in fibre), times the scenario's fibre factor (real routes are
//! longer than great circles); a message takes half of it, plus a fixed
//! cost per hop and a uniform jitter drawn from the simulation's one RNG.
//! Each link delivers in order (as the nodes' TCP connections do): a
//! message never overtakes an earlier one on the same link.

use std::collections::BTreeMap;

use dci_model::GeoPoint;
use rand::Rng;

use crate::scenario::NetworkModel;

/// Link latencies and the in-order delivery of each link.
pub struct Network {
    model: NetworkModel,
    /// The earliest time the next message on a link may arrive.
    link_free: BTreeMap<(usize, usize), u64>,
}

impl Network {
    /// A network following `model`.
    pub fn new(model: NetworkModel) -> Network {
        Network { model, link_free: BTreeMap::new() }
    }

    /// One-way base latency between two points, ms (no jitter).
    pub fn base_ms(&self, a: &GeoPoint, b: &GeoPoint) -> u64 {
        let rtt = f64::from(a.estimated_rtt_ms(b)) * self.model.fibre_factor;
        (rtt / 2.0).ceil() as u64 + self.model.hop_ms
    }

    /// When a message sent at `now` from node `from` (at `a`) reaches node
    /// `to` (at `b`).
    pub fn arrival<R: Rng + ?Sized>(
        &mut self,
        now: u64,
        (from, a): (usize, &GeoPoint),
        (to, b): (usize, &GeoPoint),
        rng: &mut R,
    ) -> u64 {
        let jitter = if self.model.jitter_ms == 0 { 0 } else { rng.random_range(0..=self.model.jitter_ms) };
        let at = now + self.base_ms(a, b) + jitter;
        let free = self.link_free.entry((from, to)).or_insert(0);
        let at = at.max(*free);
        *free = at;
        at
    }
}
