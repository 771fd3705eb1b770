//! The naive matcher: a full scan over every container (R-IX1, R-IX4).
//!
//! This is the oracle. Any faster index must give the same answer as
//! [`match_scan`] for the same containers, request, session and time.
//!
//! A container is eliminated by the first [`Criterion`] it fails, in the
//! order of [`Criterion`]'s declaration:
//!
//! | criterion | passes when |
//! |---|---|
//! | `State` | `Ready` or `Healthy` |
//! | `Heartbeat` | last seen at most `missed_heartbeats × heartbeat_interval` ago |
//! | `Capacity` | [`Container::free_slots`] > 0 |
//! | `Service` | the requested service is pre-installed |
//! | `GpuModel` | no model asked, or the container has GPUs whose model contains it (ASCII case-insensitive) |
//! | `GpuCount` | GPU count (0 for CPU-only) ≥ asked |
//! | `Vram` | VRAM per GPU (0 for CPU-only) ≥ asked |
//! | `Cpu`, `Ram`, `Disk` | ≥ asked |
//! | `Bandwidth` | upload and download ≥ asked |
//! | `Latency` | no `near` or no bound, or `near.estimated_rtt_ms(location)` ≤ bound |
//! | `Price` | no budget, or price ≤ budget |
//!
//! Among the survivors the request's [`Policy`] picks one ([`choose`]):
//!
//! - `cheapest`: lowest price, then lowest RTT, then highest reputation;
//! - `best-ux`: lowest RTT, then highest reputation, then lowest price;
//! - `balanced`: lowest score, then lowest price, lowest RTT, highest
//!   reputation, where (integer arithmetic, rounded down)
//!   `score = 400·price/P + 300·rtt/R + 300·(1000 − reputation)/1000`
//!   (a term with a zero scale is 0; see [`Scales`]):
//!   - `P` is the consumer's budget, or without one the highest price among
//!     the survivors: a container at the budget pays the whole price weight;
//!   - `R` is the consumer's latency bound, or without one [`MAX_RTT_MS`]
//!     (the farthest two points on Earth can be).
//!
//!   The latency scale is the consumer's, not the survivors': were it the
//!   farthest survivor, one far-away container (which a provider can place)
//!   would shrink every other container's latency term and shift the ranking
//!   of all the others; and the search would need a pass to find it.
//!
//! An unknown RTT (no `near` in the request) ranks as the worst RTT; it is
//! unknown for every survivor at once, so it never decides alone.
//!
//! The last tie-break is `blake3(session ‖ container id)`, then the id. A
//! container chooses its own id (it is its key), so ranking by id would let it
//! grind keys to win ties; the session-salted hash is unpredictable for a
//! container, so a container's ranking depends only on its verified specs,
//! its price and the checkers' reputation (R-IX3).

use crate::config::Config;
use crate::container::Container;
use dci_model::{Criterion, Eliminations, MatchRequest, NodeId, Policy, PricePerHour, SessionId, Timestamp};
use std::cmp::Ordering;

/// The container a request matched, and the RTT estimate used to rank it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The chosen container.
    pub container: NodeId,
    /// Estimated round trip from the consumer (`None`: no location given).
    pub estimated_rtt_ms: Option<u32>,
}

/// A container that passed every criterion, with what ranking needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The container.
    pub id: NodeId,
    /// Its price.
    pub price: PricePerHour,
    /// Estimated round trip from the consumer, if known.
    pub rtt_ms: Option<u32>,
    /// Its checker reputation.
    pub reputation: u32,
}

/// Finds the best container for `request` by checking every container.
///
/// `Err` says how many containers were considered and which criterion
/// eliminated how many of them (each counted once, against the first
/// criterion it failed).
pub fn match_scan<'a>(
    containers: impl IntoIterator<Item = &'a Container>,
    request: &MatchRequest,
    session: SessionId,
    now: Timestamp,
    config: &Config,
) -> Result<Choice, Eliminations> {
    let mut elim = Eliminations::default();
    let mut candidates = Vec::new();
    for c in containers {
        elim.considered += 1;
        match first_failure(c, request, now, config) {
            Some(criterion) => elim.add(criterion),
            None => candidates.push(candidate(c, request)),
        }
    }
    match choose(request, session, &candidates) {
        Some(best) => Ok(Choice { container: best.id, estimated_rtt_ms: best.rtt_ms }),
        None => Err(elim),
    }
}

/// The ranking data of a container for a request.
pub fn candidate(c: &Container, request: &MatchRequest) -> Candidate {
    Candidate {
        id: c.record.id,
        price: c.record.registration.price,
        rtt_ms: request.near.map(|near| near.estimated_rtt_ms(&c.record.registration.spec.location)),
        reputation: c.record.reputation,
    }
}

/// The first criterion `c` fails for `request` at `now`, or `None` if it
/// satisfies all of them.
pub fn first_failure(c: &Container, request: &MatchRequest, now: Timestamp, config: &Config) -> Option<Criterion> {
    let rec = &c.record;
    let reg = &rec.registration;
    let spec = &reg.spec;
    let (gpu_count, vram) = spec.gpu.as_ref().map_or((0, 0), |g| (g.count, g.vram_gib));
    let checks = [
        (Criterion::State, rec.state.is_schedulable()),
        (Criterion::Heartbeat, now.since(c.last_seen) <= config.fresh_window()),
        (Criterion::Capacity, c.free_slots() > 0),
        (Criterion::Service, reg.services.contains(&request.service)),
        (Criterion::GpuModel, gpu_model_ok(c, request.gpu_model.as_deref())),
        (Criterion::GpuCount, gpu_count >= request.gpu_count),
        (Criterion::Vram, vram >= request.min_vram_gib),
        (Criterion::Cpu, spec.cpu_cores >= request.min_cpu_cores),
        (Criterion::Ram, spec.ram_gib >= request.min_ram_gib),
        (Criterion::Disk, spec.disk_gib >= request.min_disk_gib),
        (
            Criterion::Bandwidth,
            spec.bandwidth_up_mbps >= request.min_bandwidth_up_mbps
                && spec.bandwidth_down_mbps >= request.min_bandwidth_down_mbps,
        ),
        (
            Criterion::Latency,
            match (request.near, request.max_latency_ms) {
                (Some(near), Some(max)) => near.estimated_rtt_ms(&spec.location) <= max,
                _ => true,
            },
        ),
        (Criterion::Price, request.max_price.is_none_or(|max| reg.price <= max)),
    ];
    checks.into_iter().find(|(_, ok)| !ok).map(|(criterion, _)| criterion)
}

fn gpu_model_ok(c: &Container, wanted: Option<&str>) -> bool {
    let Some(wanted) = wanted else { return true };
    let Some(gpu) = &c.record.registration.spec.gpu else { return false };
    gpu.model.to_ascii_lowercase().contains(&wanted.to_ascii_lowercase())
}

/// The largest RTT estimate between two points on Earth, ms: half the
/// circumference at [`dci_model::geo::KM_PER_RTT_MS`], rounded up.
pub const MAX_RTT_MS: u32 = 201;

/// The scales of the `balanced` score for one request (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scales {
    /// `P`, base units.
    pub price: u128,
    /// `R`, ms.
    pub rtt: u32,
}

impl Scales {
    /// The latency scale of a request.
    pub fn rtt_of(request: &MatchRequest) -> u32 {
        request.near.and(request.max_latency_ms).unwrap_or(MAX_RTT_MS)
    }

    /// The scales of a request whose survivors are `candidates`.
    pub fn of(request: &MatchRequest, candidates: &[Candidate]) -> Scales {
        let price = match request.max_price {
            Some(budget) => budget.0.0,
            None => candidates.iter().map(|c| c.price.0.0).max().unwrap_or(0),
        };
        Scales { price, rtt: Scales::rtt_of(request) }
    }
}

/// Picks the best candidate for `request` (see the module docs), or `None`
/// if there is none.
pub fn choose<'c>(request: &MatchRequest, session: SessionId, candidates: &'c [Candidate]) -> Option<&'c Candidate> {
    let scales = Scales::of(request, candidates);
    candidates.iter().min_by(|a, b| compare(request.policy, session, scales.price, scales.rtt, a, b))
}

/// The ranking of the module docs: `Less` when `a` is the better choice.
///
/// `max_price` (base units) and `max_rtt` are the [`Scales`]; only
/// `balanced` uses them. This is the one definition of the order; the index
/// ([`crate::Indexer`]) ranks with it too.
pub fn compare(
    policy: Policy,
    session: SessionId,
    max_price: u128,
    max_rtt: u32,
    a: &Candidate,
    b: &Candidate,
) -> Ordering {
    primary(policy, max_price, max_rtt, a, b).then_with(|| tie_break(session, a.id, b.id))
}

/// [`compare`] without the final tie-break (ids are not looked at).
pub(crate) fn primary(policy: Policy, max_price: u128, max_rtt: u32, a: &Candidate, b: &Candidate) -> Ordering {
    let score = |c: &Candidate| balanced_score(c, max_price, max_rtt);
    // Lower is better for every key below; `rtt` ranks unknown as worst.
    let rtt = |c: &Candidate| c.rtt_ms.unwrap_or(u32::MAX);
    let rep = |c: &Candidate| std::cmp::Reverse(c.reputation);
    let price = |c: &Candidate| c.price;
    match policy {
        Policy::Cheapest => (price(a), rtt(a), rep(a)).cmp(&(price(b), rtt(b), rep(b))),
        Policy::BestUx => (rtt(a), rep(a), price(a)).cmp(&(rtt(b), rep(b), price(b))),
        Policy::Balanced => (score(a), price(a), rtt(a), rep(a)).cmp(&(score(b), price(b), rtt(b), rep(b))),
    }
}

/// The `balanced` score of a candidate (lower is better), given the
/// [`Scales`] of price (base units) and RTT.
pub fn balanced_score(c: &Candidate, max_price: u128, max_rtt: u32) -> u128 {
    let price_term = scaled(c.price.0.0, max_price, 400);
    // Unknown RTT is the worst RTT.
    let rtt_term = c.rtt_ms.map_or(300, |r| scaled(u128::from(r), u128::from(max_rtt), 300));
    price_term + rtt_term + reputation_term(c.reputation)
}

/// The reputation term of the `balanced` score: `300·(1000 − reputation)/1000`.
pub(crate) fn reputation_term(reputation: u32) -> u128 {
    // In 32 bits (it fits): a 128-bit division is a library call.
    u128::from(300 * (1000 - reputation.min(1000)) / 1000)
}

/// `weight · x / max`, rounded down, for `x ≤ max`; 0 when `max` is 0.
/// Never overflows: huge values are shifted down first (losing only
/// precision far below one base unit of the result).
pub(crate) fn scaled(mut x: u128, mut max: u128, weight: u128) -> u128 {
    if max == 0 {
        return 0;
    }
    while max > u128::MAX / weight {
        x >>= 1;
        max >>= 1;
    }
    x.min(max) * weight / max
}

pub(crate) fn tie_break(session: SessionId, a: NodeId, b: NodeId) -> Ordering {
    tie_key(session, a).cmp(&tie_key(session, b)).then(a.cmp(&b))
}

fn tie_key(session: SessionId, id: NodeId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"dci/indexer/tie/v1\0");
    h.update(&session.0);
    h.update(&id.0);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dci_model::Amount;

    #[test]
    fn scaled_is_total() {
        let cases = [
            (0, 0, 400, 0),
            (5, 10, 400, 200),
            (10, 10, 300, 300),
            (1, 3, 300, 100),
            (u128::MAX, u128::MAX, 400, 400),
            (u128::MAX / 2, u128::MAX, 400, 199),
        ];
        for (x, max, w, want) in cases {
            assert_eq!(scaled(x, max, w), want, "{x} {max} {w}");
        }
    }

    #[test]
    fn balanced_score_terms() {
        let c = |price: u64, rtt, reputation| Candidate {
            id: NodeId([0; 32]),
            price: PricePerHour(Amount::ath(price)),
            rtt_ms: rtt,
            reputation,
        };
        let max_price = Amount::ath(4).0;
        // 400·1/4 + 300·10/20 + 300·500/1000
        assert_eq!(balanced_score(&c(1, Some(10), 500), max_price, 20), 100 + 150 + 150);
        assert_eq!(balanced_score(&c(4, Some(20), 0), max_price, 20), 400 + 300 + 300);
        assert_eq!(balanced_score(&c(0, None, 1000), max_price, 0), 300);
    }
}
