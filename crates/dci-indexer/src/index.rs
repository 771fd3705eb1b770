//! The match index: exact best-container search without a full scan
//! (R-IX1, R-PF1).
//!
//! [`crate::scan::match_scan`] is the oracle; for every request, session,
//! time and fleet the index returns exactly the container (and RTT) the scan
//! would return, and when nothing matches, exactly its elimination counts.
//!
//! **What is indexed.** A container is a *member* while it is schedulable
//! (`Ready`/`Healthy`), has a free slot and offers a service. State changes,
//! reservations, releases and heartbeats that change the reported load move
//! it in or out. Heartbeat *freshness* is not indexed (it changes every
//! second for everyone): it is checked on the candidates a search looks at,
//! so a heartbeat costs a hash lookup and a few stores, no allocation, and no
//! index work unless the load crosses "full". Each container also has a
//! compact record (`Hot`: price, place, load, resources, reputation, model,
//! services as a bit set) so that checking a candidate touches two cache
//! lines, not the whole record. Slots are never reused: a pruned container
//! leaves a tombstone (in no tree, never counted). Service ids are u32,
//! dense and distinct.
//!
//! **Trees.** Members are bucketed by what is selective and fixed between
//! registrations: a *bucket tree* per (service, exact GPU model, GPU count,
//! VRAM), and a *class tree* per (service, host class: CPU-only, VRAM below
//! 16, 32, 64 GiB, or more). A request selects the bucket trees of its
//! service whose model contains its GPU substring and whose count and VRAM
//! suffice: exactly its candidates. Walks (below) merge all of them; a
//! spatial search over many buckets (more than [`MAX_BUCKETS`], or
//! [`MAX_BUCKETS_UX`] when ordered by distance) uses the few class trees that
//! hold them instead and checks model, count and VRAM per candidate.
//!
//! **Geography.** Each tree is a grid hierarchy: the world, then cells of
//! 30°, 6° and 1.5° (the leaves, about 170 km) of latitude and longitude.
//! For a consumer location a node gives conservative RTT bounds
//! `lo ≤ rtt ≤ hi` for all its members in two ways: from its grid cell alone
//! (the haversine bounded term by term over the cell's box; the lower bound
//! without trigonometry) and from a centre and a radius covering its members
//! (grown on insert, reset when empty). Both use the scan's estimate
//! (100 km of great-circle distance per millisecond, rounded up) with a
//! margin far above floating-point error (the property tests check them). A
//! node wholly beyond the latency bound is never opened; one wholly within
//! needs no per-member latency check.
//!
//! **Summaries.** Every node carries a summary of its members, copied into
//! its parent's contiguous child array (the search decides about a child
//! without visiting it; the first cache line holds what most decisions
//! need): a count, the cheapest and dearest price, and the start of the
//! Pareto frontier of (reputation, cheapest price) with a bound `hidden` on
//! the reputations it leaves out (see `Summary`). Leaves are exact. Elsewhere
//! a summary only has to stay *valid*: every member covered, prices within
//! its bounds, "empty" only if empty. A departure therefore touches only its
//! leaf (and the root orders below); an arrival updates the path to the root
//! only where it is not covered yet. Each [`crate::Input::Tick`] tightens the
//! summaries that departures loosened (`Index::repair`).
//!
//! **Orders.** Leaves, and the roots of bucket trees, keep their members by
//! price and by (reputation descending, price) in B-trees. Root orders answer
//! what does not depend on geography in one walk; leaf orders the rest.
//!
//! **Search.** Best-first branch and bound: a priority queue ordered by a
//! bound of the policy's key that no member of a node can beat; pruning only
//! on strictly worse bounds; candidates ranked with
//! [`crate::scan::compare`] itself, so the order, including the final
//! `blake3(session ‖ id)` tie-break, is the scan's by construction. An
//! opened node's children are sorted by their cell's bound and handed out
//! one at a time by a single queue entry; a child's summary is read when its
//! turn comes (most never are).
//!
//! - `cheapest`: walk the roots' price orders, merged across the bucket
//!   trees; equal prices are all compared (RTT, reputation, hash) and the
//!   walk stops at the first higher price. Under a latency bound the walk
//!   checks each candidate's RTT and, after [`PATIENCE`] candidates out of
//!   reach, gives way to the spatial search (nodes by cheapest price);
//! - `best-ux`: with a location, nodes by (`lo`, best reputation, its
//!   cheapest price), leaves walked by (reputation, price); without one, RTT
//!   is "unknown" for everybody and the roots' (reputation, price) walk
//!   answers;
//! - `balanced`: the scales (`scan::Scales`) come from the request, except
//!   the price scale of a request without a budget: the dearest survivor (a
//!   walk down the roots' prices, spatial under a narrow bound). Then the
//!   lowest score, with the bound `400·price/P + 300·lo/R +
//!   300·(1000 − rep)/1000` taken on the summaries' frontiers (the price term
//!   in floating point, lowered by 10⁻⁶ before rounding down, so it never
//!   exceeds the exact integer term).
//!
//! **No match.** When nothing survives, the eliminations (R-IX4) are counted
//! by a pass over the compact records with the scan's criterion order: an
//! empty answer costs milliseconds at a million containers, a match tens of
//! microseconds.

use crate::container::Container;
use crate::scan::{self, Candidate, Choice};
use dci_model::{Amount, Criterion, Eliminations, GeoPoint, MatchRequest, Policy, PricePerHour, SessionId};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::ops::Bound;

/// Cell sizes in degrees of the grid levels below the world root.
const LEVELS: [f64; 3] = [30.0, 6.0, 1.5];
/// The level of the leaves (the root is level 0).
const LEAF: u8 = LEVELS.len() as u8;
/// Safety margin (km) on every distance bound, far above floating-point error.
const EPS_KM: f64 = 0.1;
/// Kilometres per degree of latitude (a lower bound: the mean radius).
const EARTH_RADIUS_KM: f64 = dci_model::geo::EARTH_RADIUS_KM;
/// A price-driven spatial search (`cheapest`, `balanced`) over more bucket
/// trees than this searches the class trees that hold them instead.
pub const MAX_BUCKETS: usize = 12;
/// The same for searches ordered by distance (`best-ux`): their order does
/// not follow the GPU model, so a class tree costs few extra candidates and
/// saves opening several trees.
pub const MAX_BUCKETS_UX: usize = 3;
/// A walk of the roots' orders under a latency bound gives up for the
/// spatial search after this many candidates out of reach (before finding
/// any survivor).
const PATIENCE: u32 = 384;
/// "No node" / "unknown".
const NONE: u32 = u32::MAX;

/// What the search needs of a container, kept compact and next to its
/// neighbours. `repr(C)`: the first cache line has everything a heartbeat
/// writes and the eligibility test reads; price and place follow.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Hot {
    last_seen: u64,
    /// Bit `i`: offers interned service `i` (for `i < 64`).
    services: u64,
    slots: u32,
    reserved: u32,
    reported: u32,
    gpu_count: u32,
    vram: u32,
    cpu: u32,
    ram: u32,
    disk: u32,
    up: u32,
    down: u32,
    reputation: u32,
    model: u32,
    price: u128,
    location: GeoPoint,
    /// `location` as a unit vector in single precision, for [`fast_rtt`].
    xyz: [f32; 3],
    schedulable: bool,
    /// In state `Ready` (its first heartbeat makes it `Healthy`).
    ready: bool,
    /// A tombstone: the container was removed ([`Index::tombstone`]).
    removed: bool,
}

impl Hot {
    fn of(c: &Container, model: u32, services: &[u32]) -> Hot {
        let reg = &c.record.registration;
        let spec = &reg.spec;
        let (gpu_count, vram) = spec.gpu.as_ref().map_or((0, 0), |g| (g.count, g.vram_gib));
        Hot {
            price: reg.price.0.0,
            location: spec.location,
            xyz: unit(trig(&spec.location)).map(|x| x as f32),
            last_seen: c.last_seen.0,
            services: services.iter().filter(|&&s| s < 64).fold(0, |m, &s| m | 1 << s),
            slots: reg.slots,
            reserved: c.reserved,
            reported: c.reported_sessions,
            gpu_count,
            vram,
            cpu: spec.cpu_cores,
            ram: spec.ram_gib,
            disk: spec.disk_gib,
            up: spec.bandwidth_up_mbps,
            down: spec.bandwidth_down_mbps,
            reputation: c.record.reputation,
            model,
            schedulable: c.record.state.is_schedulable(),
            ready: c.record.state == dci_model::State::Ready,
            removed: false,
        }
    }

    /// [`Container::free_slots`] > 0.
    fn has_free_slot(&self) -> bool {
        self.slots > self.reserved.max(self.reported)
    }

    /// Same place in every tree?
    fn same_keys(&self, o: &Hot) -> bool {
        self.price == o.price
            && self.reputation == o.reputation
            && self.location == o.location
            && self.model == o.model
            && self.gpu_count == o.gpu_count
            && self.vram == o.vram
    }
}

/// A container's index membership.
#[derive(Clone, Debug, Default)]
struct Member {
    /// Interned services, sorted, without duplicates.
    services: Vec<u32>,
    /// The leaves it is in, one per tree (empty: not a member).
    leaves: Vec<u32>,
    /// Price and reputation it was inserted with.
    price: u128,
    reputation: u32,
}

/// Per reputation value: how many members, their cheapest and dearest price.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Group {
    reputation: u32,
    count: u32,
    min: u128,
    max: u128,
    /// `min` as a float, for bounds.
    min_f: f64,
}

#[derive(Debug, Default)]
struct Sets {
    by_price: BTreeSet<(u128, u32)>,
    /// `(NONE − reputation, price, slot)`: best reputation first.
    by_rep: BTreeSet<(u32, u128, u32)>,
}

/// Frontier points kept per summary.
const FRONT: usize = 4;

/// What the searches know about a node's members without visiting them.
///
/// The count is exact. Everything else is a *bound*, exact right after the
/// node is (re)computed and still valid after members leave (a leaving member
/// cannot invalidate "every member is at least…"); internal nodes are
/// recomputed lazily ([`Index::repair`]), leaves always:
///
/// - every member costs at least `min` and at most `max`;
/// - every member is *covered*: some point `(r, p)` of `front` has `r ≥` its
///   reputation and `p ≤` its price, or `hidden` is `Some(h)` and its
///   reputation is at most `h` (its price is at least `min` anyway).
///
/// `front` is the start (best reputations) of the Pareto frontier of
/// (reputation, cheapest price), so any bound that grows with price and falls
/// with reputation is smallest on it or at `(min, hidden)`
/// ([`Summary::lowest`]). `hidden` comes from points that did not fit, here
/// or in a child, so it may exceed the reputation of some points of `front`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Summary {
    count: u32,
    front_len: u8,
    hidden: Option<u32>,
    /// Best reputation first.
    front: [(u32, u128); FRONT],
    min: u128,
    max: u128,
}

impl Summary {
    const EMPTY: Summary =
        Summary { count: 0, front_len: 0, hidden: None, front: [(0, u128::MAX); FRONT], min: u128::MAX, max: 0 };

    fn front(&self) -> &[(u32, u128)] {
        &self.front[..usize::from(self.front_len)]
    }

    /// Adds a member.
    fn insert(&mut self, reputation: u32, price: u128) {
        self.count += 1;
        self.min = self.min.min(price);
        self.max = self.max.max(price);
        self.cover(reputation, price);
    }

    /// Makes `front`/`hidden` cover a point: keeps the Pareto points with the
    /// best reputations, and a point that does not fit raises `hidden`.
    fn cover(&mut self, reputation: u32, price: u128) {
        if self.front().iter().any(|&(r, p)| r >= reputation && p <= price) {
            return; // already covered
        }
        let mut next = [(0, u128::MAX); FRONT + 1];
        let mut len = 0;
        let mut placed = false;
        for &(r, p) in self.front() {
            if r <= reputation && p >= price {
                continue; // dominated by the new point
            }
            if !placed && r < reputation {
                next[len] = (reputation, price);
                len += 1;
                placed = true;
            }
            next[len] = (r, p);
            len += 1;
        }
        if !placed {
            next[len] = (reputation, price);
            len += 1;
        }
        if len > FRONT {
            // The worst reputation does not fit: `hidden` covers what it covered.
            let dropped = next[FRONT].0;
            self.hidden = Some(self.hidden.map_or(dropped, |h| h.max(dropped)));
            len = FRONT;
        }
        self.front[..len].copy_from_slice(&next[..len]);
        self.front[len..].fill((0, u128::MAX));
        self.front_len = len as u8;
    }

    /// The exact summary of a leaf's groups.
    fn of_groups(groups: &[Group]) -> Summary {
        let mut s = Summary::EMPTY;
        for g in groups {
            s.count += g.count;
            s.min = s.min.min(g.min);
            s.max = s.max.max(g.max);
            s.cover(g.reputation, g.min);
        }
        s
    }

    /// The summary of a node from its children's.
    fn merge(children: &[Child]) -> Summary {
        let mut s = Summary::EMPTY;
        for c in children.iter().filter(|c| c.s.count > 0) {
            s.count += c.s.count;
            s.min = s.min.min(c.s.min);
            s.max = s.max.max(c.s.max);
            if let Some(h) = c.s.hidden {
                s.hidden = Some(s.hidden.map_or(h, |x| x.max(h)));
            }
        }
        for c in children {
            for &(r, p) in c.s.front() {
                s.cover(r, p);
            }
        }
        s
    }

    /// The smallest of `f(price, reputation)` over the members, for `f`
    /// growing with price and falling with reputation (a lower bound).
    fn lowest(&self, f: impl Fn(u128, u32) -> u128) -> u128 {
        let low = self.front().iter().map(|&(rep, min)| f(min, rep)).min().unwrap_or(u128::MAX);
        match self.hidden {
            Some(h) => low.min(f(self.min, h)),
            None => low,
        }
    }

    /// A lower bound of `(NONE − reputation, price)` over the members
    /// within `budget` (`None`: there is none): the first frontier point
    /// within budget, or what `hidden` allows, whichever is lower.
    fn best_within(&self, budget: Option<u128>) -> Option<(u32, u128)> {
        let point = self.front().iter().find(|&&(_, min)| budget.is_none_or(|b| min <= b)).map(|&(r, m)| (NONE - r, m));
        let hidden = self.hidden.filter(|_| budget.is_none_or(|b| self.min <= b)).map(|h| (NONE - h, self.min));
        point.into_iter().chain(hidden).min()
    }

    /// Does the summary hold for a member? (For the invariant check.)
    fn covers(&self, reputation: u32, price: u128) -> bool {
        self.min <= price
            && price <= self.max
            && (self.front().iter().any(|&(r, p)| r >= reputation && p <= price)
                || self.hidden.is_some_and(|h| reputation <= h))
    }
}

/// A node. Fields a search reads when it opens a node come first (one
/// cache line); `repr(C)` keeps them there.
#[derive(Debug)]
#[repr(C)]
struct Node {
    /// Leaves and the roots of bucket trees.
    sets: Option<Box<Sets>>,
    /// Summaries of the next level's nodes; empty for leaves.
    children: Vec<Child>,
    /// The cells of `children`, in the same order (a compact list to find a
    /// child by its cell).
    cells: Vec<u32>,
    level: u8,
    parent: u32,
    /// Index of this node's summary in its parent's `children` (for a root:
    /// its tree).
    pos: u32,
    /// Queued for [`Index::repair`].
    dirty: bool,
    center: GeoPoint,
    /// Centre latitude and longitude in radians, cosine of the latitude.
    trig: (f64, f64, f64),
    /// The cell's latitude range, degrees: every member lies within it.
    lat_lo: f64,
    lat_hi: f64,
    /// Covers every member: distance(center, member) + EPS_KM ≤ radius.
    radius: f64,
    s: Summary,
    /// Leaves: the exact groups, by reputation, best first.
    groups: Vec<Group>,
}

impl Node {
    fn new(parent: u32, level: u8, cell: u32, orders: bool) -> Node {
        let (center, lat_lo, lat_hi) =
            if level == 0 { (point(0.0, 0.0), -90.0, 90.0) } else { cell_geometry(level, cell) };
        // A hair wider than the cell, against rounding at its edges.
        let (lat_lo, lat_hi) = (lat_lo - 1e-6, lat_hi + 1e-6);
        let lat = center.lat().to_radians();
        Node {
            parent,
            level,
            pos: 0,
            dirty: false,
            center,
            trig: (lat, center.lon().to_radians(), lat.cos()),
            lat_lo,
            lat_hi,
            radius: 0.0,
            s: Summary::EMPTY,
            groups: Vec::new(),
            children: Vec::new(),
            cells: Vec::new(),
            sets: orders.then(Box::default),
        }
    }

    fn group(&self, reputation: u32) -> Result<usize, usize> {
        self.groups.binary_search_by(|g| reputation.cmp(&g.reputation))
    }
}

/// What a search needs to decide about a node without visiting it, kept in
/// its parent's contiguous `children` array (updated whenever the node
/// changes): `hot` fits one cache line and answers the common questions,
/// `s` has the rest.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Child {
    hot: ChildHot,
    s: Summary,
    cell: u32,
}

/// The part of a child summary most searches need: its cheapest price, its
/// best reputation and that reputation's cheapest price, and its geometry in
/// single precision, rounded so that the bounds stay conservative (the
/// radius is rounded up and padded for the rounded centre).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
struct ChildHot {
    min: u128,
    /// `front[0]`: best reputation and its cheapest price (`u128::MAX` when empty).
    top: u128,
    node: u32,
    count: u32,
    top_rep: u32,
    /// The centre as a unit vector, and its latitude in radians.
    xyz: [f32; 3],
    lat: f32,
    radius: f32,
}

impl Child {
    fn node_id(&self) -> u32 {
        self.hot.node
    }

    fn of(n: u32, cell: u32, node: &Node) -> Child {
        let (top_rep, top) = node.s.front().first().copied().unwrap_or((0, u128::MAX));
        // 10 m for the centre's single-precision rounding, then round up.
        let radius = ((node.radius + 0.01) * (1.0 + 1e-6)) as f32;
        Child {
            hot: ChildHot {
                min: node.s.min,
                top,
                node: n,
                count: node.s.count,
                top_rep,
                xyz: unit(node.trig).map(|x| x as f32),
                lat: node.trig.0 as f32,
                radius,
            },
            s: node.s,
            cell,
        }
    }
}

/// What selects a tree (compact: a request reads those of its service).
#[derive(Clone, Copy, Debug)]
struct Tree {
    root: u32,
    model: u32,
    gpu_count: u32,
    vram: u32,
}

/// The trees of one service.
#[derive(Clone, Debug)]
struct ServiceTrees {
    /// One per host class (see [`class_of`]).
    classes: [u32; CLASSES],
    buckets: Vec<u32>,
}

/// Host classes of the class trees: CPU-only, then GPUs with less than 16,
/// 32, 64 GiB of VRAM, then more.
const CLASSES: usize = 5;

fn class_of(model: u32, vram: u32) -> usize {
    match (model, vram) {
        (0, _) => 0,
        (_, 0..16) => 1,
        (_, 16..32) => 2,
        (_, 32..64) => 3,
        _ => 4,
    }
}

/// Work done by one search, for benchmarks and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Trees searched.
    pub trees: u32,
    /// Index nodes put on the search frontier.
    pub nodes: u32,
    /// Containers looked at.
    pub examined: u32,
    /// Walks of the roots' orders abandoned for the spatial search.
    pub fallbacks: u32,
}

/// Sizes of the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexStats {
    /// Containers that are members (schedulable, with a free slot).
    pub members: u64,
    /// Trees (bucket and service trees).
    pub trees: u64,
    /// Nodes of all trees.
    pub nodes: u64,
    /// Leaf entries (each member is in two trees per service).
    pub entries: u64,
}

/// The index. Slots are the positions of containers in the indexer's
/// container table; the indexer tells the index about every change.
#[derive(Debug, Default)]
pub(crate) struct Index {
    hot: Vec<Hot>,
    members: Vec<Member>,
    nodes: Vec<Node>,
    trees: Vec<Tree>,
    /// Per tree, its root's summary (roots have no parent to hold it).
    roots: Vec<Child>,
    /// Service name → id: ids are dense and distinct (`services[id]`), u32 so
    /// they never wrap (each service costs five trees: memory runs out long
    /// before 2³² of them).
    service_ids: HashMap<dci_model::ServiceName, u32>,
    services: Vec<ServiceTrees>,
    /// Model 0 is "no GPU".
    model_ids: HashMap<String, u32>,
    models: Vec<Option<String>>,
    buckets: HashMap<(u32, u32, u32, u32), u32>,
    /// Cell bounds of the request being searched.
    spans: SpanMemo,
    /// While loading in bulk: the order entries to add, (node, price, slot,
    /// reputation).
    bulk: Option<Vec<(u32, u128, u32, u32)>>,
    /// Internal nodes whose summary may be looser than exact.
    dirty: Vec<u32>,
    /// Slots that are tombstones.
    removed: usize,
}

impl Index {
    pub(crate) fn new() -> Index {
        Index { models: vec![None], ..Default::default() }
    }

    /// Adds or updates the container at `slot` (slots are dense: a new slot
    /// is the next one).
    pub(crate) fn upsert(&mut self, slot: u32, c: &Container) {
        let model = self.intern_model(c);
        let mut services: Vec<u32> = c.record.registration.services.iter().map(|s| self.intern_service(s)).collect();
        services.sort_unstable();
        services.dedup();
        let hot = Hot::of(c, model, &services);
        let s = slot as usize;
        if s == self.hot.len() {
            self.hot.push(hot);
            self.members.push(Member { services, ..Default::default() });
        } else {
            let member = &self.members[s];
            if !member.leaves.is_empty() && (!self.hot[s].same_keys(&hot) || member.services != services) {
                self.unindex(slot);
            }
            self.hot[s] = hot;
            self.members[s].services = services;
        }
        self.sync(slot);
    }

    /// Removes the container at `slot` for good. Slots are never reused:
    /// the slot stays as a tombstone that is in no tree, is never a
    /// candidate and is not counted among the containers considered. The
    /// indexer never touches it again.
    pub(crate) fn tombstone(&mut self, slot: u32) {
        let s = slot as usize;
        if self.hot[s].removed {
            return;
        }
        self.unindex(slot);
        self.members[s] = Member::default();
        let h = &mut self.hot[s];
        h.removed = true;
        h.schedulable = false;
        h.ready = false;
        h.services = 0;
        self.removed += 1;
    }

    /// A heartbeat: O(1) unless the container becomes full or gets free.
    /// Returns whether the container is `Ready` (about to become `Healthy`).
    pub(crate) fn heartbeat(&mut self, slot: u32, last_seen: u64, reported: u32) -> bool {
        let h = &mut self.hot[slot as usize];
        h.last_seen = last_seen;
        let ready = h.ready;
        if h.reported != reported {
            h.reported = reported;
            self.sync(slot);
        }
        ready
    }

    /// A reservation count changed.
    pub(crate) fn set_reserved(&mut self, slot: u32, reserved: u32) {
        self.hot[slot as usize].reserved = reserved;
        self.sync(slot);
    }

    /// Moves the container in or out of the trees after a change of state or load.
    fn sync(&mut self, slot: u32) {
        let s = slot as usize;
        let h = &self.hot[s];
        let want = h.schedulable && h.has_free_slot() && !self.members[s].services.is_empty();
        match (want, self.members[s].leaves.is_empty()) {
            (true, true) => self.index(slot),
            (false, false) => self.unindex(slot),
            _ => {}
        }
    }

    fn intern_model(&mut self, c: &Container) -> u32 {
        let Some(gpu) = &c.record.registration.spec.gpu else { return 0 };
        if let Some(&id) = self.model_ids.get(&gpu.model) {
            return id;
        }
        let id = self.models.len() as u32;
        self.models.push(Some(gpu.model.clone()));
        self.model_ids.insert(gpu.model.clone(), id);
        id
    }

    fn intern_service(&mut self, s: &dci_model::ServiceName) -> u32 {
        if let Some(&id) = self.service_ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.services.len()).expect("fewer than 2^32 services: each costs five trees");
        let classes = std::array::from_fn(|_| self.new_tree(0, 0, 0, false));
        self.services.push(ServiceTrees { classes, buckets: Vec::new() });
        self.service_ids.insert(s.clone(), id);
        id
    }

    /// A new tree; `orders`: its root keeps the price and reputation orders
    /// (bucket trees, for walks).
    fn new_tree(&mut self, model: u32, gpu_count: u32, vram: u32, orders: bool) -> u32 {
        let root = self.nodes.len() as u32;
        let tree = self.trees.len() as u32;
        let mut node = Node::new(NONE, 0, 0, orders);
        node.pos = tree;
        self.roots.push(Child::of(root, 0, &node));
        self.nodes.push(node);
        self.trees.push(Tree { root, model, gpu_count, vram });
        tree
    }

    fn bucket(&mut self, service: u32, h: &Hot) -> u32 {
        let key = (service, h.model, h.gpu_count, h.vram);
        if let Some(&t) = self.buckets.get(&key) {
            return t;
        }
        let t = self.new_tree(h.model, h.gpu_count, h.vram, true);
        self.services[service as usize].buckets.push(t);
        self.buckets.insert(key, t);
        t
    }

    fn index(&mut self, slot: u32) {
        let s = slot as usize;
        let h = self.hot[s];
        let services = std::mem::take(&mut self.members[s].services);
        let mut leaves = Vec::with_capacity(services.len() * 2);
        for &service in &services {
            let bucket = self.bucket(service, &h);
            let class = self.services[service as usize].classes[class_of(h.model, h.vram)];
            for tree in [bucket, class] {
                leaves.push(self.insert(tree, slot, &h));
            }
        }
        let m = &mut self.members[s];
        m.services = services;
        m.leaves = leaves;
        m.price = h.price;
        m.reputation = h.reputation;
    }

    fn unindex(&mut self, slot: u32) {
        let m = &mut self.members[slot as usize];
        let leaves = std::mem::take(&mut m.leaves);
        let (price, reputation) = (m.price, m.reputation);
        for leaf in leaves {
            self.remove(leaf, slot, price, reputation);
        }
    }

    fn insert(&mut self, tree: u32, slot: u32, h: &Hot) -> u32 {
        let mut n = self.trees[tree as usize].root;
        self.add_to_node(n, slot, h);
        for level in 1..=LEAF {
            let cell = cell_of(level, &h.location);
            let parent = &self.nodes[n as usize];
            let child = match parent.cells.iter().position(|&c| c == cell) {
                Some(i) => parent.children[i].hot.node,
                None => {
                    let child = self.nodes.len() as u32;
                    let mut node = Node::new(n, level, cell, level == LEAF);
                    let parent = &mut self.nodes[n as usize];
                    node.pos = parent.children.len() as u32;
                    parent.children.push(Child::of(child, cell, &node));
                    parent.cells.push(cell);
                    self.nodes.push(node);
                    child
                }
            };
            n = child;
            self.add_to_node(n, slot, h);
        }
        n
    }

    fn add_to_node(&mut self, n: u32, slot: u32, h: &Hot) {
        let node = &mut self.nodes[n as usize];
        let reach = node.center.distance_km(&h.location) + EPS_KM;
        let grew = reach > node.radius;
        node.radius = node.radius.max(reach);
        if node.level == LEAF {
            match node.group(h.reputation) {
                Ok(i) => {
                    let g = &mut node.groups[i];
                    g.count += 1;
                    if h.price < g.min {
                        g.min = h.price;
                        g.min_f = h.price as f64;
                    }
                    g.max = g.max.max(h.price);
                }
                Err(i) => node.groups.insert(
                    i,
                    Group { reputation: h.reputation, count: 1, min: h.price, max: h.price, min_f: h.price as f64 },
                ),
            }
        }
        match &mut self.bulk {
            // Orders and summaries are completed by `end_bulk`.
            Some(pending) => {
                if node.sets.is_some() {
                    pending.push((n, h.price, slot, h.reputation));
                }
            }
            None => {
                if let Some(sets) = &mut node.sets {
                    sets.by_price.insert((h.price, slot));
                    sets.by_rep.insert((NONE - h.reputation, h.price, slot));
                }
                if node.level == LEAF {
                    node.s = Summary::of_groups(&node.groups);
                } else if node.s.count == 0 {
                    node.s = Summary::EMPTY;
                    node.s.insert(h.reputation, h.price);
                } else {
                    // Internal counts are only "empty or not" between repairs.
                    node.s.min = node.s.min.min(h.price);
                    node.s.max = node.s.max.max(h.price);
                    node.s.cover(h.reputation, h.price);
                }
                // The parent's copy must cover the newcomer; publish if not.
                let covered =
                    !grew && self.published(n).s.count > 0 && self.published(n).s.covers(h.reputation, h.price);
                if !covered {
                    self.publish(n);
                }
            }
        }
    }

    /// The copy of a node's summary its parent holds (its tree, for a root).
    fn published(&self, n: u32) -> &Child {
        let node = &self.nodes[n as usize];
        if node.parent == NONE {
            &self.roots[node.pos as usize]
        } else {
            &self.nodes[node.parent as usize].children[node.pos as usize]
        }
    }

    /// Starts loading many containers: order entries are collected and
    /// added sorted by [`Index::end_bulk`] (random-order inserts into large
    /// B-trees miss the cache at every level), summaries computed then.
    /// Only additions may happen until then.
    pub(crate) fn begin_bulk(&mut self) {
        self.bulk.get_or_insert_with(Vec::new);
    }

    /// Adds the collected order entries and computes every summary exactly,
    /// leaves first.
    pub(crate) fn end_bulk(&mut self) {
        let Some(mut pending) = self.bulk.take() else { return };
        pending.sort_unstable();
        for chunk in pending.chunk_by(|a, b| a.0 == b.0) {
            let Some(sets) = &mut self.nodes[chunk[0].0 as usize].sets else { continue };
            let mut by_price: BTreeSet<(u128, u32)> = chunk.iter().map(|e| (e.1, e.2)).collect();
            sets.by_price.append(&mut by_price);
            let mut by_rep: BTreeSet<(u32, u128, u32)> = chunk.iter().map(|e| (NONE - e.3, e.1, e.2)).collect();
            sets.by_rep.append(&mut by_rep);
        }
        let mut order: Vec<u32> = (0..self.nodes.len() as u32).collect();
        order.sort_by_key(|&n| Reverse(self.nodes[n as usize].level));
        for n in order {
            self.recompute(n);
            self.publish(n);
        }
    }

    /// Computes a node's summary exactly: from its groups (leaves) or its
    /// children's summaries.
    fn recompute(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        node.s = if node.level == LEAF { Summary::of_groups(&node.groups) } else { Summary::merge(&node.children) };
    }

    /// Copies a node's summary into its parent (or its tree, for a root).
    fn publish(&mut self, n: u32) {
        let node = &self.nodes[n as usize];
        if node.parent == NONE {
            self.roots[node.pos as usize] = Child::of(n, 0, node);
            return;
        }
        let (parent, pos) = (node.parent as usize, node.pos as usize);
        let cell = self.nodes[parent].children[pos].cell;
        let summary = Child::of(n, cell, node);
        self.nodes[parent].children[pos] = summary;
    }

    /// Removes a member from a leaf (which stays exact) and from the root's
    /// orders. Nothing else changes: every summary and every published copy
    /// still covers the remaining members, and a count above zero only means
    /// "maybe not empty". The leaf is queued so that [`Index::repair`]
    /// tightens it and its ancestors.
    fn remove(&mut self, leaf: u32, slot: u32, price: u128, reputation: u32) {
        let node = &mut self.nodes[leaf as usize];
        if let Some(sets) = &mut node.sets {
            sets.by_price.remove(&(price, slot));
            sets.by_rep.remove(&(NONE - reputation, price, slot));
        }
        if let Ok(i) = node.group(reputation) {
            let g = node.groups[i];
            if g.count == 1 {
                node.groups.remove(i);
            } else {
                let (min, max) = if price == g.min || price == g.max {
                    leaf_group_extremes(node, reputation)
                } else {
                    (g.min, g.max)
                };
                let g = &mut node.groups[i];
                g.count -= 1;
                g.min = min;
                g.min_f = min as f64;
                g.max = max;
            }
        }
        node.s = Summary::of_groups(&node.groups);
        if node.s.count == 0 {
            node.radius = 0.0;
        }
        if !node.dirty {
            node.dirty = true;
            self.dirty.push(leaf);
        }
        // The root's orders are exact (walks read them).
        let mut n = node.parent;
        while n != NONE {
            let node = &mut self.nodes[n as usize];
            if node.parent == NONE
                && let Some(sets) = &mut node.sets
            {
                sets.by_price.remove(&(price, slot));
                sets.by_rep.remove(&(NONE - reputation, price, slot));
            }
            n = node.parent;
        }
    }

    /// Summaries waiting for [`Index::repair`].
    pub(crate) fn repair_pending(&self) -> usize {
        self.dirty.len()
    }

    /// Tightens up to `limit` queued summaries, deepest level first: a
    /// queued leaf publishes its exact summary, an internal node recomputes
    /// its own from its children's copies and publishes it; if the published
    /// copy changed, the parent is queued in turn. Returns how many are still
    /// queued.
    pub(crate) fn repair(&mut self, limit: usize) -> usize {
        let mut done = 0;
        while done < limit {
            let Some(deepest) = self.dirty.iter().map(|&n| self.nodes[n as usize].level).max() else { break };
            let (batch, rest): (Vec<u32>, Vec<u32>) =
                self.dirty.iter().partition(|&&n| self.nodes[n as usize].level == deepest);
            self.dirty = rest;
            for n in batch {
                if done == limit {
                    self.dirty.push(n);
                    continue;
                }
                done += 1;
                self.nodes[n as usize].dirty = false;
                self.recompute(n);
                let node = &mut self.nodes[n as usize];
                if node.s.count == 0 {
                    node.radius = 0.0;
                }
                let cell = self.published(n).cell;
                if *self.published(n) == Child::of(n, cell, &self.nodes[n as usize]) {
                    continue; // nothing above changes
                }
                self.publish(n);
                let parent = self.nodes[n as usize].parent;
                if parent != NONE && !self.nodes[parent as usize].dirty {
                    self.nodes[parent as usize].dirty = true;
                    self.dirty.push(parent);
                }
            }
        }
        self.dirty.len()
    }

    /// Sizes.
    pub(crate) fn stats(&self) -> IndexStats {
        IndexStats {
            members: self.members.iter().filter(|m| !m.leaves.is_empty()).count() as u64,
            trees: self.trees.len() as u64,
            nodes: self.nodes.len() as u64,
            entries: self.members.iter().map(|m| m.leaves.len() as u64).sum(),
        }
    }

    /// Prepares a request: which trees, which lazy checks.
    pub(crate) fn prepare<'r>(&'r self, request: &'r MatchRequest, now: u64, fresh_ms: u64) -> Prepared<'r> {
        let wanted = request.gpu_model.as_deref();
        let model_ok: Vec<bool> = self.models.iter().map(|m| gpu_model_ok(m.as_deref(), wanted)).collect();
        let service = self.service_ids.get(&request.service).copied();
        let (walk_trees, spatial_trees, distance_trees) = match service {
            None => (Vec::new(), Vec::new(), Vec::new()),
            Some(s) => {
                let st = &self.services[s as usize];
                let matching: Vec<u32> = st
                    .buckets
                    .iter()
                    .copied()
                    .filter(|&t| {
                        let tree = &self.trees[t as usize];
                        model_ok[tree.model as usize]
                            && tree.gpu_count >= request.gpu_count
                            && tree.vram >= request.min_vram_gib
                    })
                    .collect();
                // The class trees that hold the matching buckets.
                let mut classes = [false; CLASSES];
                for &t in &matching {
                    let tree = &self.trees[t as usize];
                    classes[class_of(tree.model, tree.vram)] = true;
                }
                let class_trees: Vec<u32> = (0..CLASSES).filter(|&c| classes[c]).map(|c| st.classes[c]).collect();
                let spatial = if matching.len() <= MAX_BUCKETS { matching.clone() } else { class_trees.clone() };
                let ux = if matching.len() <= MAX_BUCKETS_UX { matching.clone() } else { class_trees };
                (matching, spatial, ux)
            }
        };
        let bound = request.near.and(request.max_latency_ms);
        let geo = request.near.map(|q| {
            let lat = q.lat().to_radians();
            (lat, q.lon().to_radians(), lat.cos())
        });
        Prepared {
            request,
            service,
            walk_trees,
            spatial_trees,
            distance_trees,
            model_ok,
            near: request.near,
            geo,
            xyz: geo.map_or([0.0; 3], unit),
            spans: &self.spans,
            generation: self.spans.next_generation(),
            bound,
            budget: request.max_price.map(|p| p.0.0),
            now,
            fresh_ms,
        }
    }

    /// The container the scan would choose, or `None` if no container
    /// satisfies every criterion.
    pub(crate) fn best(
        &self,
        p: &Prepared<'_>,
        session: SessionId,
        containers: &[Container],
        stats: &mut SearchStats,
    ) -> Option<Choice> {
        stats.trees = p.walk_trees.len() as u32;
        if p.walk_trees.is_empty() {
            return None;
        }
        let mut best = Best { policy: p.request.policy, session, containers, max_price: 0, max_rtt: 0, cur: None };
        match p.request.policy {
            Policy::Cheapest => {
                let walk = p.bound.is_none();
                if !self.cheapest(p, &mut best, stats, true, !walk) {
                    stats.fallbacks += 1;
                    self.cheapest(p, &mut best, stats, false, false);
                }
            }
            Policy::BestUx => self.best_ux(p, &mut best, stats),
            Policy::Balanced => {
                // The price scale is the budget, or the dearest survivor's
                // price (then a search of its own); the RTT scale is the
                // request's (see `scan::Scales`).
                best.max_price = match p.budget {
                    Some(budget) => budget,
                    None => match self.max_price(p, stats, true, p.bound.is_some()) {
                        Some(found) => found,
                        None => {
                            stats.fallbacks += 1;
                            self.max_price(p, stats, false, false).flatten()
                        }
                    }?,
                };
                best.max_rtt = scan::Scales::rtt_of(p.request);
                self.balanced(p, &mut best, stats);
            }
        }
        best.cur.map(|(f, _)| Choice { container: containers[f.slot as usize].id(), estimated_rtt_ms: f.rtt })
    }

    /// R-IX4 counts, with the scan's criterion order, from the compact records.
    pub(crate) fn eliminations(&self, p: &Prepared<'_>) -> Eliminations {
        let r = p.request;
        let (bit, list) = match p.service {
            Some(s) if s < 64 => (1u64 << s, None),
            Some(s) => (0, Some(s)),
            None => (0, None),
        };
        let mut counts = [0u64; 13];
        for (i, h) in self.hot.iter().enumerate() {
            if h.removed {
                continue;
            }
            let failed = if !h.schedulable {
                Criterion::State
            } else if p.now.saturating_sub(h.last_seen) > p.fresh_ms {
                Criterion::Heartbeat
            } else if !h.has_free_slot() {
                Criterion::Capacity
            } else if h.services & bit == 0 && list.is_none_or(|s| self.members[i].services.binary_search(&s).is_err())
            {
                Criterion::Service
            } else if !p.model_ok[h.model as usize] {
                Criterion::GpuModel
            } else if h.gpu_count < r.gpu_count {
                Criterion::GpuCount
            } else if h.vram < r.min_vram_gib {
                Criterion::Vram
            } else if h.cpu < r.min_cpu_cores {
                Criterion::Cpu
            } else if h.ram < r.min_ram_gib {
                Criterion::Ram
            } else if h.disk < r.min_disk_gib {
                Criterion::Disk
            } else if h.up < r.min_bandwidth_up_mbps || h.down < r.min_bandwidth_down_mbps {
                Criterion::Bandwidth
            } else if p.near.zip(p.bound).is_some_and(|(q, max)| q.estimated_rtt_ms(&h.location) > max) {
                Criterion::Latency
            } else if p.budget.is_some_and(|b| h.price > b) {
                Criterion::Price
            } else {
                // A survivor the search missed: never happens (the property
                // tests compare with the scan).
                debug_assert!(false, "eliminations called although a container survives");
                continue;
            };
            counts[failed as usize] += 1;
        }
        let mut e = Eliminations { considered: (self.hot.len() - self.removed) as u64, ..Default::default() };
        for (c, n) in CRITERIA.iter().zip(counts) {
            if n > 0 {
                e.by_criterion.insert(*c, n);
            }
        }
        e
    }

    // --- searches -------------------------------------------------------

    /// Whether a node can hold a survivor, its RTT span `lo..=hi` and
    /// whether it lies wholly within the latency bound. `cap`: survivors cost
    /// at most this; `within`: only RTTs up to this matter (besides the
    /// bound); `cell`: bounds already known from the node's grid cell.
    fn classify(
        &self,
        p: &Prepared<'_>,
        c: &ChildHot,
        cap: Option<u128>,
        need_span: bool,
        within: u32,
        cell: (u32, u32),
    ) -> Option<(u32, u32, bool)> {
        if c.count == 0 || cap.is_some_and(|cap| c.min > cap) {
            return None;
        }
        let Some(q) = p.geo else { return Some((NONE, NONE, true)) };
        if !need_span && p.bound.is_none() {
            return Some((NONE, NONE, true));
        }
        let radius = f64::from(c.radius);
        let limit = p.bound.unwrap_or(NONE).min(within);
        if limit != NONE {
            // Members lie within `radius` of the centre, so their latitude is
            // within radius/R of its: farther north or south than the bound
            // reaches?
            let reach = (f64::from(limit) * dci_model::geo::KM_PER_RTT_MS + 1.0 + radius) / EARTH_RADIUS_KM;
            if (q.0 - f64::from(c.lat)).abs() > reach {
                return None;
            }
        }
        let d = chord_km(p.xyz, c.xyz);
        let lo = rtt_of((d - radius - EPS_KM).max(0.0)).max(cell.0);
        if lo > limit {
            return None;
        }
        let hi = rtt_of(d + radius + EPS_KM).min(cell.1);
        Some((lo, hi, p.bound.is_none_or(|b| hi <= b)))
    }

    /// The children of `n` worth a look: their positions and the RTT bounds
    /// of their grid cells (computed from the cells alone, without touching
    /// the children; the upper bound only for the top cells, where it is
    /// worth its trigonometry, else `NONE`). Children whose cell lies wholly
    /// beyond `limit` are left out.
    fn open<'s>(&'s self, p: &'s Prepared<'_>, n: u32, limit: u32) -> impl Iterator<Item = (u32, u32, u32)> + 's {
        let node = &self.nodes[n as usize];
        let level = node.level + 1;
        node.cells.iter().enumerate().filter_map(move |(pos, &cell)| {
            let Some(q) = p.geo else { return Some((pos as u32, NONE, NONE)) };
            // The trees share their grid: each cell's bounds are computed
            // once per request.
            let (lo, hi) = p.spans.get(p.generation, level, cell, || cell_span(q, level, cell, level == 1));
            (lo <= limit).then_some((pos as u32, lo, hi))
        })
    }

    /// [`Index::open`], sorted into `arena` (nearest cells first) and closed
    /// by a `NONE` entry: the children an opened node will hand out one at a
    /// time, so that the queue holds one cursor per opened node instead of
    /// one entry per child. Returns where the list starts (`None`: no child
    /// is worth a look).
    fn open_sorted(&self, p: &Prepared<'_>, n: u32, limit: u32, arena: &mut Vec<(u32, u32, u32)>) -> Option<u32> {
        let start = arena.len();
        arena.extend(self.open(p, n, limit).map(|(pos, lo, hi)| (lo, hi, pos)));
        if arena.len() == start {
            return None;
        }
        arena[start..].sort_unstable_by_key(|&(lo, _, _)| lo);
        arena.push((NONE, NONE, NONE));
        Some(start as u32)
    }

    /// Whether a container is a survivor, given that its node is (not)
    /// wholly within the latency bound.
    fn candidate(&self, p: &Prepared<'_>, h: &Hot, inside: bool) -> Check {
        if !p.eligible(h) {
            return Check::Fails;
        }
        let rtt = p.near.map(|q| fast_rtt(p.xyz, h.xyz).unwrap_or_else(|| q.estimated_rtt_ms(&h.location)));
        if !inside && rtt.zip(p.bound).is_some_and(|(r, b)| r > b) {
            return Check::TooFar;
        }
        Check::Survives(rtt)
    }

    /// Does the search iterate this node's own orders, or open its children?
    fn iterate(node: &Node, walk: bool) -> bool {
        node.sets.is_some() && (walk || node.level == LEAF)
    }

    /// `cheapest`. `walk`: iterate the roots' price orders; `patient`: under
    /// a latency bound, give up (returning false) after [`PATIENCE`]
    /// candidates out of reach before any survivor.
    fn cheapest(
        &self,
        p: &Prepared<'_>,
        best: &mut Best<'_>,
        stats: &mut SearchStats,
        walk: bool,
        patient: bool,
    ) -> bool {
        // Min-heap on (price, node, inside, resume-at).
        type E = Reverse<(u128, u32, bool, Option<(u128, u32)>)>;
        let mut heap: BinaryHeap<E> = BinaryHeap::with_capacity(64);
        let push =
            |heap: &mut BinaryHeap<E>, stats: &mut SearchStats, c: &ChildHot, parent_inside: bool, cell: (u32, u32)| {
                let cls = if parent_inside && p.bound.is_some() {
                    (c.count > 0 && p.budget.is_none_or(|b| c.min <= b)).then_some((NONE, NONE, true))
                } else {
                    self.classify(p, c, p.budget, false, NONE, cell)
                };
                if let Some((_, _, inside)) = cls {
                    stats.nodes += 1;
                    heap.push(Reverse((c.min, c.node, inside, None)));
                }
            };
        for &t in if walk { &p.walk_trees } else { &p.spatial_trees } {
            push(&mut heap, stats, &self.roots[t as usize].hot, false, (0, NONE));
        }
        let mut too_far = 0;
        while let Some(Reverse((key, n, inside, from))) = heap.pop() {
            if best.price().is_some_and(|b| key > b) {
                break;
            }
            let node = &self.nodes[n as usize];
            if !Self::iterate(node, walk) {
                if inside || p.bound.is_none() {
                    for c in &node.children {
                        if best.price().is_none_or(|b| c.hot.min <= b) {
                            push(&mut heap, stats, &c.hot, inside, (0, NONE));
                        }
                    }
                } else {
                    for (pos, lo, hi) in self.open(p, n, p.bound.unwrap_or(NONE)) {
                        let c = &node.children[pos as usize].hot;
                        if best.price().is_none_or(|b| c.min <= b) {
                            push(&mut heap, stats, c, false, (lo, hi));
                        }
                    }
                }
                continue;
            }
            let Some(sets) = &node.sets else { continue };
            let start = from.map_or(Bound::Unbounded, Bound::Included);
            for &(price, slot) in sets.by_price.range((start, Bound::Unbounded)) {
                if best.price().is_some_and(|b| price > b) || p.budget.is_some_and(|b| price > b) {
                    break;
                }
                if heap.peek().is_some_and(|Reverse(top)| price > top.0) {
                    heap.push(Reverse((price, n, inside, Some((price, slot)))));
                    break;
                }
                stats.examined += 1;
                let h = &self.hot[slot as usize];
                match self.candidate(p, h, inside) {
                    Check::Survives(rtt) => best.offer(slot, h, rtt),
                    Check::TooFar if patient && best.cur.is_none() => {
                        too_far += 1;
                        if too_far > PATIENCE {
                            return false;
                        }
                    }
                    _ => {}
                }
            }
        }
        true
    }

    fn best_ux(&self, p: &Prepared<'_>, best: &mut Best<'_>, stats: &mut SearchStats) {
        // Without a location every RTT is unknown: the roots' orders answer.
        let walk = p.near.is_none();
        // Lower bound key: (lo, NONE − reputation, price). Entries are nodes
        // (`pos` NONE), or children not looked at yet (`n` their parent,
        // `pos` their index, the key from their cell and their parent).
        type K = (u32, u32, u128);
        type E = Reverse<(K, u32, u32, (u32, u32), bool, Option<(u32, u128, u32)>)>;
        let mut heap: BinaryHeap<E> = BinaryHeap::with_capacity(64);
        let push = |heap: &mut BinaryHeap<E>, stats: &mut SearchStats, c: &Child, best: Option<K>, cell: (u32, u32)| {
            let within = best.map_or(NONE, |b| b.0);
            let Some((lo, hi, inside)) = self.classify(p, &c.hot, p.budget, true, within, cell) else { return };
            // The best reputation a member within budget may have, and the
            // cheapest price it may have then. The best reputation of all is
            // `top` (`hidden` is always below it); otherwise the first
            // frontier point within budget, or what `hidden` allows.
            let (inv, min) = if p.budget.is_none_or(|b| c.hot.top <= b) {
                (NONE - c.hot.top_rep, c.hot.top)
            } else {
                let Some(k) = c.s.best_within(p.budget) else { return };
                k
            };
            let key = (lo, inv, min);
            if best.is_some_and(|b| key > b) {
                return;
            }
            stats.nodes += 1;
            heap.push(Reverse((key, c.hot.node, NONE, (lo, hi), inside, None)));
        };
        for &t in if walk { &p.walk_trees } else { &p.distance_trees } {
            push(&mut heap, stats, &self.roots[t as usize], None, (0, NONE));
        }
        // Sorted children of opened nodes; an entry with `pos` != NONE is a
        // cursor into it: the next child of node `n`.
        let mut arena: Vec<(u32, u32, u32)> = Vec::with_capacity(256);
        while let Some(Reverse((key, n, pos, span, inside, from))) = heap.pop() {
            if best.ux_key().is_some_and(|b| key > b) {
                break;
            }
            if pos != NONE {
                let (lo, hi, child) = arena[pos as usize];
                let c = &self.nodes[n as usize].children[child as usize];
                push(&mut heap, stats, c, best.ux_key(), (lo, hi));
                let (next, _, _) = arena[pos as usize + 1];
                if next != NONE {
                    heap.push(Reverse(((next.max(key.0), key.1, key.2), n, pos + 1, span, false, None)));
                }
                continue;
            }
            let node = &self.nodes[n as usize];
            if !Self::iterate(node, walk) {
                let within = best.ux_key().map_or(NONE, |b| b.0);
                let limit = p.bound.unwrap_or(NONE).min(within);
                if let Some(start) = self.open_sorted(p, n, limit, &mut arena) {
                    // A child's key is at least its cell's `lo` with this node's key.
                    let lo = arena[start as usize].0.max(key.0);
                    heap.push(Reverse(((lo, key.1, key.2), n, start, span, false, None)));
                }
                continue;
            }
            let Some(sets) = &node.sets else { continue };
            let lo = key.0;
            let mut start = from.map_or(Bound::Unbounded, Bound::Included);
            'groups: loop {
                for &(inv, price, slot) in sets.by_rep.range((start, Bound::Unbounded)) {
                    let k = (lo, inv, price);
                    if best.ux_key().is_some_and(|b| k > b) {
                        break 'groups;
                    }
                    if heap.peek().is_some_and(|Reverse(top)| k > top.0) {
                        heap.push(Reverse((k, n, NONE, span, inside, Some((inv, price, slot)))));
                        break 'groups;
                    }
                    if p.budget.is_some_and(|b| price > b) {
                        // The rest of this reputation group is dearer still.
                        start = Bound::Excluded((inv, u128::MAX, NONE));
                        continue 'groups;
                    }
                    stats.examined += 1;
                    let h = &self.hot[slot as usize];
                    if let Check::Survives(rtt) = self.candidate(p, h, inside) {
                        best.offer(slot, h, rtt);
                    }
                }
                break;
            }
        }
    }

    /// The highest price among the survivors: `Some(None)` when there is
    /// none, `None` when a patient walk gave up.
    fn max_price(&self, p: &Prepared<'_>, stats: &mut SearchStats, walk: bool, patient: bool) -> Option<Option<u128>> {
        type E = (u128, u32, bool, Option<(u128, u32)>);
        let cap = p.budget.unwrap_or(u128::MAX);
        let mut heap: BinaryHeap<E> = BinaryHeap::with_capacity(64);
        let push = |heap: &mut BinaryHeap<E>, stats: &mut SearchStats, c: &Child, level: u8, cell: (u32, u32)| {
            let Some((_, _, inside)) = self.classify(p, &c.hot, p.budget, false, NONE, cell) else { return };
            // A node with orders knows its dearest member within budget exactly.
            let key = if c.s.max > cap && (level == LEAF || walk) {
                let node = &self.nodes[c.hot.node as usize];
                match node.sets.as_ref().and_then(|sets| sets.by_price.range(..=(cap, NONE)).next_back()) {
                    Some(&(price, _)) => price,
                    None => return,
                }
            } else {
                c.s.max.min(cap)
            };
            stats.nodes += 1;
            heap.push((key, c.hot.node, inside, None));
        };
        for &t in if walk { &p.walk_trees } else { &p.spatial_trees } {
            push(&mut heap, stats, &self.roots[t as usize], 0, (0, NONE));
        }
        let mut too_far = 0;
        while let Some((_, n, inside, from)) = heap.pop() {
            let node = &self.nodes[n as usize];
            if !Self::iterate(node, walk) {
                for (pos, lo, hi) in self.open(p, n, p.bound.unwrap_or(NONE)) {
                    push(&mut heap, stats, &node.children[pos as usize], node.level + 1, (lo, hi));
                }
                continue;
            }
            let Some(sets) = &node.sets else { continue };
            let end = from.unwrap_or((cap, NONE));
            for &(price, slot) in sets.by_price.range(..=end).rev() {
                if heap.peek().is_some_and(|top| price < top.0) {
                    heap.push((price, n, inside, Some((price, slot))));
                    break;
                }
                stats.examined += 1;
                match self.candidate(p, &self.hot[slot as usize], inside) {
                    Check::Survives(_) => return Some(Some(price)),
                    Check::TooFar if patient => {
                        too_far += 1;
                        if too_far > PATIENCE {
                            return None;
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(None)
    }

    fn balanced(&self, p: &Prepared<'_>, best: &mut Best<'_>, stats: &mut SearchStats) {
        let walk = p.near.is_none();
        let (max_price, max_rtt) = (best.max_price, best.max_rtt);
        let cap = p.budget.map_or(max_price, |b| b.min(max_price));
        let terms = Terms::new(max_price, max_rtt, p.near.is_some());
        // Min-heap on (score bound, lo, node's cheapest price): among equal
        // bounds, nearer nodes first (they tend to hold the better scores).
        // Entries are nodes (`pos` NONE) with the price and reputation part
        // of their bound, or children not looked at yet (`n` their parent,
        // `pos` their index, bounded by their cell and their parent).
        type E = Reverse<((u128, u32, u128), u32, u32, u128, bool)>;
        let mut heap: BinaryHeap<E> = BinaryHeap::with_capacity(64);
        let push = |heap: &mut BinaryHeap<E>,
                    stats: &mut SearchStats,
                    c: &Child,
                    best: Option<(u128, u128)>,
                    cell: (u32, u32)| {
            // Nodes farther than every survivor cannot hold one.
            let Some((lo, _, inside)) = self.classify(p, &c.hot, Some(cap), true, NONE, cell) else { return };
            let rtt = terms.rtt(lo);
            // Quick test on the first cache line: cheapest price, best reputation.
            let quick = rtt + terms.price_lb(c.hot.min) + scan::reputation_term(c.hot.top_rep);
            if best.is_some_and(|b| (quick, c.hot.min) > b) {
                return;
            }
            // Groups dearer than `cap` only lower this bound: still a bound.
            let part = c.s.lowest(|price, rep| terms.price_lb(price) + scan::reputation_term(rep));
            if best.is_some_and(|b| (rtt + part, c.hot.min) > b) {
                return;
            }
            stats.nodes += 1;
            heap.push(Reverse(((rtt + part, lo, c.hot.min), c.hot.node, NONE, part, inside)));
        };
        for &t in if walk { &p.walk_trees } else { &p.spatial_trees } {
            push(&mut heap, stats, &self.roots[t as usize], None, (0, NONE));
        }
        // Sorted children of opened nodes; an entry with `pos` != NONE is a
        // cursor into it: the next child of node `n`.
        let mut arena: Vec<(u32, u32, u32)> = Vec::with_capacity(256);
        while let Some(Reverse(((bound, lo, min), n, pos, part, inside))) = heap.pop() {
            if let Some(b) = best.balanced_key() {
                if bound > b.0 {
                    break;
                }
                if (bound, min) > b && pos == NONE {
                    continue;
                }
            }
            if pos != NONE {
                let (cell_lo, _, child) = arena[pos as usize];
                let c = &self.nodes[n as usize].children[child as usize];
                push(&mut heap, stats, c, best.balanced_key(), (cell_lo.max(lo), NONE));
                let (next, _, _) = arena[pos as usize + 1];
                if next != NONE {
                    // A child's bound is at least its cell's RTT term plus
                    // this node's price and reputation part.
                    let lo = next.max(lo);
                    heap.push(Reverse(((terms.rtt(lo) + part, lo, min), n, pos + 1, part, false)));
                }
                continue;
            }
            let node = &self.nodes[n as usize];
            if !Self::iterate(node, walk) {
                if let Some(start) = self.open_sorted(p, n, p.bound.unwrap_or(NONE), &mut arena) {
                    let lo = arena[start as usize].0.max(lo);
                    heap.push(Reverse(((terms.rtt(lo) + part, lo, min), n, start, part, false)));
                }
                continue;
            }
            let Some(sets) = &node.sets else { continue };
            let rtt_bound = terms.rtt(lo);
            // Reputation groups, best first; within one, cheapest first.
            // Leaves know their groups (and skip hopeless ones without a
            // look at their orders); roots find them in their orders.
            let scan_group = |inv: u32, cheapest: u128, best: &mut Best<'_>, stats: &mut SearchStats| {
                let base = rtt_bound + scan::reputation_term(NONE - inv);
                if cheapest > cap
                    || best.balanced_key().is_some_and(|b| (base + terms.price_lb(cheapest), cheapest) > b)
                {
                    return;
                }
                for &(_, price, slot) in sets.by_rep.range((inv, cheapest, 0)..=(inv, cap, NONE)) {
                    if best.balanced_key().is_some_and(|b| (base + terms.price_lb(price), price) > b) {
                        break;
                    }
                    stats.examined += 1;
                    let h = &self.hot[slot as usize];
                    if let Check::Survives(rtt) = self.candidate(p, h, inside) {
                        best.offer(slot, h, rtt);
                    }
                }
            };
            // Worse reputations only add to the bound: stop when even the
            // cheapest price cannot help.
            let hopeless = |inv: u32, best: &Best<'_>| {
                best.balanced_key()
                    .is_some_and(|b| rtt_bound + scan::reputation_term(NONE - inv) + terms.price_lb(node.s.min) > b.0)
            };
            if node.level == LEAF {
                for g in &node.groups {
                    let inv = NONE - g.reputation;
                    if hopeless(inv, best) {
                        break;
                    }
                    scan_group(inv, g.min, best, stats);
                }
            } else {
                let mut start = Bound::Unbounded;
                while let Some(&(inv, cheapest, _)) = sets.by_rep.range((start, Bound::Unbounded)).next() {
                    start = Bound::Excluded((inv, u128::MAX, NONE));
                    if hopeless(inv, best) {
                        break;
                    }
                    scan_group(inv, cheapest, best, stats);
                }
            }
        }
    }

    // --- checks ---------------------------------------------------------

    /// Checks that the index mirrors `containers` (`removed[slot]`: a
    /// tombstone) and that every tree is consistent: memberships, orders,
    /// exact leaves, valid summaries, geometry, distinct service ids. For
    /// tests and debug builds. On error: the slot or node concerned, and
    /// what is wrong.
    pub(crate) fn check(&self, containers: &[Container], removed: &[bool]) -> Result<(), (usize, String)> {
        if self.hot.len() != containers.len()
            || self.members.len() != containers.len()
            || removed.len() != containers.len()
        {
            return Err((0, format!("{} records for {} containers", self.hot.len(), containers.len())));
        }
        if self.bulk.is_some() {
            return Err((0, "a bulk load is not finished".into()));
        }
        // Two names never share an id: ids are exactly 0..services.len().
        let mut ids: Vec<u32> = self.service_ids.values().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.service_ids.len()
            || ids.len() != self.services.len()
            || ids.last().is_some_and(|&l| l as usize + 1 != ids.len())
        {
            let (names, n) = (self.service_ids.len(), self.services.len());
            return Err((
                0,
                format!(
                    "expected {n} service names with the ids 0..{n} once each, found {names} names sharing {} ids",
                    ids.len()
                ),
            ));
        }
        let tombstones = removed.iter().filter(|&&r| r).count();
        if tombstones != self.removed {
            return Err((0, format!("{} tombstones counted, {tombstones} expected", self.removed)));
        }
        let mut entries = 0u64;
        // Members below each node, counted from the memberships.
        let mut below = vec![0u32; self.nodes.len()];
        for (s, c) in containers.iter().enumerate() {
            let h = &self.hot[s];
            let m = &self.members[s];
            if h.removed != removed[s] {
                return Err((s, format!("tombstone is {}, expected {}", h.removed, removed[s])));
            }
            if h.removed {
                if !m.leaves.is_empty() || !m.services.is_empty() || h.schedulable || h.services != 0 {
                    return Err((s, "a tombstone is still indexed".into()));
                }
                continue;
            }
            let model =
                c.record.registration.spec.gpu.as_ref().map_or(Some(0), |g| self.model_ids.get(&g.model).copied());
            let mut services: Vec<u32> = Vec::new();
            for name in &c.record.registration.services {
                services.push(*self.service_ids.get(name).ok_or((s, "service not interned".to_owned()))?);
            }
            services.sort_unstable();
            services.dedup();
            if services != m.services {
                return Err((s, "services differ".into()));
            }
            if model != Some(h.model) || Hot::of(c, h.model, &services) != *h {
                return Err((s, "compact record differs from the container".into()));
            }
            let want = h.schedulable && h.has_free_slot() && !m.services.is_empty();
            if want == m.leaves.is_empty() || (want && m.leaves.len() != 2 * m.services.len()) {
                return Err((s, format!("membership is {}, expected {want}", !m.leaves.is_empty())));
            }
            if want && (m.price != h.price || m.reputation != h.reputation) {
                return Err((s, "indexed with stale keys".into()));
            }
            for &leaf in &m.leaves {
                let mut n = leaf;
                while n != NONE {
                    let node = &self.nodes[n as usize];
                    if let Some(sets) = &node.sets
                        && (!sets.by_price.contains(&(h.price, s as u32))
                            || !sets.by_rep.contains(&(NONE - h.reputation, h.price, s as u32)))
                    {
                        return Err((s, format!("missing from the orders of node {n}")));
                    }
                    let copy = self.published(n);
                    if node.s.count == 0
                        || !node.s.covers(h.reputation, h.price)
                        || copy.s.count == 0
                        || !copy.s.covers(h.reputation, h.price)
                        || copy.hot.count == 0
                        || copy.hot.min > h.price
                        || copy.hot.top_rep < h.reputation && copy.s.hidden.is_none_or(|x| x < h.reputation)
                        || f64::from(copy.hot.radius) < node.radius
                    {
                        return Err((s, format!("not covered by the summaries of node {n}: {:?} {copy:?}", node.s)));
                    }
                    if node.center.distance_km(&h.location) + EPS_KM > node.radius + 1e-9
                        || h.location.lat() < node.lat_lo
                        || h.location.lat() > node.lat_hi
                    {
                        return Err((s, format!("lies outside node {n}")));
                    }
                    below[n as usize] += 1;
                    n = node.parent;
                }
            }
            entries += m.leaves.len() as u64;
        }
        let mut in_leaves = 0u64;
        let mut dirty = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.level != 0 && (node.level == LEAF) != node.sets.is_some() {
                return Err((i, "orders on the wrong level".into()));
            }
            if let Some(sets) = &node.sets
                && (sets.by_price.len() != sets.by_rep.len() || sets.by_price.len() != below[i] as usize)
            {
                return Err((i, "orders disagree with the members".into()));
            }
            if (node.level == LEAF && node.s.count != below[i]) || (node.s.count == 0 && below[i] > 0) {
                return Err((i, "count disagrees with the members".into()));
            }
            if let (Some(h), Some(&(top, _))) = (node.s.hidden, node.s.front().first())
                && h >= top
            {
                return Err((i, "hidden reputation not below the best one".into()));
            }
            if node.dirty {
                dirty += 1;
                if !self.dirty.contains(&(i as u32)) {
                    return Err((i, "marked for repair but not queued".into()));
                }
            }
            if node.level == LEAF {
                let sets = node.sets.as_ref().ok_or((i, "a leaf without orders".to_owned()))?;
                in_leaves += sets.by_price.len() as u64;
                let groups = groups_of(sets);
                if groups != node.groups || node.s != Summary::of_groups(&groups) {
                    return Err((i, format!("leaf groups {:?}, expected {groups:?}", node.groups)));
                }
                continue;
            }
            if node.cells.len() != node.children.len() {
                return Err((i, "cell list disagrees with the children".into()));
            }
            for (pos, summary) in node.children.iter().enumerate() {
                let c = &self.nodes[summary.hot.node as usize];
                if node.cells[pos] != summary.cell {
                    return Err((i, "cell list disagrees with the children".into()));
                }
                if c.parent as usize != i || c.level != node.level + 1 || c.pos as usize != pos {
                    return Err((i, "child with another parent, level or position".into()));
                }
                if summary.hot.node != summary.node_id() || (c.s.count > 0 && summary.s.count == 0) {
                    return Err((summary.hot.node as usize, "a copy says empty, the node is not".into()));
                }
            }
            if node.s.count == 0 && node.children.iter().any(|c| c.s.count > 0) {
                return Err((i, "empty while a child is not".into()));
            }
            // Validity (every member covered) is checked per member above;
            // exactness is not an invariant (inserts extend the summary).
        }
        if dirty != self.dirty.len() {
            return Err((0, "repair queue disagrees with the marks".into()));
        }
        for (t, tree) in self.trees.iter().enumerate() {
            let root = &self.nodes[tree.root as usize];
            if root.pos as usize != t || self.roots[t] != Child::of(tree.root, 0, root) {
                return Err((tree.root as usize, "stale tree summary".into()));
            }
        }
        if entries != in_leaves {
            return Err((0, format!("{entries} memberships but {in_leaves} leaf entries")));
        }
        Ok(())
    }
}

/// The exact groups of a leaf's orders.
fn groups_of(sets: &Sets) -> Vec<Group> {
    let mut g: Vec<Group> = Vec::new();
    for &(inv, price, _) in &sets.by_rep {
        let rep = NONE - inv;
        match g.last_mut() {
            Some(last) if last.reputation == rep => {
                last.count += 1;
                last.max = price;
            }
            _ => g.push(Group { reputation: rep, count: 1, min: price, max: price, min_f: price as f64 }),
        }
    }
    g
}

/// The cheapest and dearest price of a leaf's members with `reputation`.
fn leaf_group_extremes(node: &Node, reputation: u32) -> (u128, u128) {
    let Some(sets) = &node.sets else { return (0, 0) };
    let key = NONE - reputation;
    let mut range = sets.by_rep.range((key, 0, 0)..=(key, u128::MAX, NONE));
    let min = range.next().map_or(0, |e| e.1);
    let max = range.next_back().map_or(min, |e| e.1);
    (min, max)
}

const CRITERIA: [Criterion; 13] = [
    Criterion::State,
    Criterion::Heartbeat,
    Criterion::Capacity,
    Criterion::Service,
    Criterion::GpuModel,
    Criterion::GpuCount,
    Criterion::Vram,
    Criterion::Cpu,
    Criterion::Ram,
    Criterion::Disk,
    Criterion::Bandwidth,
    Criterion::Latency,
    Criterion::Price,
];

/// The outcome of checking one candidate.
enum Check {
    /// A survivor, with its RTT.
    Survives(Option<u32>),
    /// Fails a criterion other than latency.
    Fails,
    /// Beyond the latency bound.
    TooFar,
}

/// A request, prepared for one search.
#[derive(Debug)]
pub(crate) struct Prepared<'r> {
    request: &'r MatchRequest,
    service: Option<u32>,
    /// The bucket trees that hold exactly the containers with the service,
    /// GPU model, count and VRAM asked for. Walks of the roots' orders merge
    /// them all.
    walk_trees: Vec<u32>,
    /// Trees for spatial searches ordered by price: the bucket trees, or, if
    /// there are more than [`MAX_BUCKETS`] of them, the class trees that hold
    /// them (then model, count and VRAM are checked per candidate).
    spatial_trees: Vec<u32>,
    /// The same for searches ordered by distance (`best-ux`), with
    /// [`MAX_BUCKETS_UX`].
    distance_trees: Vec<u32>,
    /// Per interned model: does it satisfy the GPU model criterion?
    model_ok: Vec<bool>,
    near: Option<GeoPoint>,
    /// `near` in radians, and the cosine of its latitude.
    geo: Option<(f64, f64, f64)>,
    /// `near` as a unit vector.
    xyz: [f64; 3],
    /// RTT bounds of grid cells seen from `near`, filled on first use.
    spans: &'r SpanMemo,
    /// This request's generation in `spans`.
    generation: u32,
    bound: Option<u32>,
    budget: Option<u128>,
    now: u64,
    fresh_ms: u64,
}

impl Prepared<'_> {
    /// Every criterion but state and service (guaranteed by membership) and
    /// latency (checked by the caller where needed).
    fn eligible(&self, h: &Hot) -> bool {
        let r = self.request;
        self.now.saturating_sub(h.last_seen) <= self.fresh_ms
            && h.has_free_slot()
            && self.model_ok[h.model as usize]
            && h.gpu_count >= r.gpu_count
            && h.vram >= r.min_vram_gib
            && h.cpu >= r.min_cpu_cores
            && h.ram >= r.min_ram_gib
            && h.disk >= r.min_disk_gib
            && h.up >= r.min_bandwidth_up_mbps
            && h.down >= r.min_bandwidth_down_mbps
            && self.budget.is_none_or(|b| h.price <= b)
    }
}

/// The best candidate so far, ranked with the scan's comparator.
struct Best<'a> {
    policy: Policy,
    session: SessionId,
    containers: &'a [Container],
    max_price: u128,
    max_rtt: u32,
    /// The candidate and its ranking data.
    cur: Option<(Found, Candidate)>,
}

#[derive(Clone, Copy, Debug)]
struct Found {
    slot: u32,
    rtt: Option<u32>,
    price: u128,
    reputation: u32,
    /// The `balanced` score (0 for other policies).
    score: u128,
}

impl Best<'_> {
    fn price(&self) -> Option<u128> {
        self.cur.as_ref().map(|(f, _)| f.price)
    }

    fn ux_key(&self) -> Option<(u32, u32, u128)> {
        self.cur.as_ref().map(|(f, _)| (f.rtt.unwrap_or(NONE), NONE - f.reputation, f.price))
    }

    fn balanced_key(&self) -> Option<(u128, u128)> {
        self.cur.as_ref().map(|(f, _)| (f.score, f.price))
    }

    fn offer(&mut self, slot: u32, h: &Hot, rtt: Option<u32>) {
        let cand = Candidate {
            id: dci_model::NodeId([0; 32]),
            price: PricePerHour(Amount(h.price)),
            rtt_ms: rtt,
            reputation: h.reputation,
        };
        let better = match &self.cur {
            None => true,
            Some((f, cur)) => match scan::primary(self.policy, self.max_price, self.max_rtt, &cand, cur) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => {
                    let a = self.containers[slot as usize].id();
                    let b = self.containers[f.slot as usize].id();
                    scan::tie_break(self.session, a, b) == Ordering::Less
                }
            },
        };
        if better {
            let score = match self.policy {
                Policy::Balanced => scan::balanced_score(&cand, self.max_price, self.max_rtt),
                _ => 0,
            };
            self.cur = Some((Found { slot, rtt, price: h.price, reputation: h.reputation, score }, cand));
        }
    }
}

/// Lower bounds of the `balanced` score's terms for one search.
struct Terms {
    /// 400 / max_price (0 when the maximum is 0).
    price_scale: f64,
    max_rtt: u32,
    near: bool,
}

impl Terms {
    fn new(max_price: u128, max_rtt: u32, near: bool) -> Terms {
        let price_scale = if max_price == 0 { 0.0 } else { 400.0 / to_f64(max_price) };
        Terms { price_scale, max_rtt, near }
    }

    /// At most the exact price term `⌊400·price/max_price⌋` for prices up
    /// to `max_price`, and growing with the price: the float error is below
    /// 10⁻¹², the margin 10⁻⁶ (in 64 bits: a 128-bit conversion is a library
    /// call, and saturating keeps it a growing lower bound).
    fn price_lb(&self, price: u128) -> u128 {
        let v = to_f64(price) * self.price_scale - 1e-6;
        if v <= 0.0 { 0 } else { u128::from(v.floor() as u64) }
    }

    /// The exact RTT term for an RTT of at least `lo`.
    fn rtt(&self, lo: u32) -> u128 {
        if !self.near {
            return 300; // unknown RTT is the worst
        }
        // `scan::scaled` in 64 bits (it fits; see `rtt_term_is_the_scans`).
        match self.max_rtt {
            0 => 0,
            max => u128::from(u64::from(lo.min(max)) * 300 / u64::from(max)),
        }
    }
}

/// `x as f64` (the same value), without the library call a 128-bit
/// conversion costs when the value fits 64 bits (every realistic price).
fn to_f64(x: u128) -> f64 {
    match u64::try_from(x) {
        Ok(small) => small as f64,
        Err(_) => x as f64,
    }
}

/// A point (latitude, longitude in radians, cosine of the latitude) as a
/// unit vector.
fn unit(t: (f64, f64, f64)) -> [f64; 3] {
    let (lat, lon, cos_lat) = t;
    [cos_lat * lon.cos(), cos_lat * lon.sin(), lat.sin()]
}

/// A point's latitude and longitude in radians and the cosine of its latitude.
fn trig(p: &GeoPoint) -> (f64, f64, f64) {
    let lat = p.lat().to_radians();
    (lat, p.lon().to_radians(), lat.cos())
}

/// The largest RTT estimate (ms) of any two points: half the circumference.
const MAX_RTT: usize = (std::f64::consts::PI * EARTH_RADIUS_KM / dci_model::geo::KM_PER_RTT_MS) as usize + 1;

/// Per RTT estimate `t`, the chord (between unit vectors) of a great-circle
/// distance of exactly `t` RTT-milliseconds; past half the circumference, 2
/// and more.
fn chord_table() -> &'static [f64; MAX_RTT + 1] {
    static TABLE: std::sync::OnceLock<[f64; MAX_RTT + 1]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|t| {
            let half_angle = t as f64 * dci_model::geo::KM_PER_RTT_MS / (2.0 * EARTH_RADIUS_KM);
            if half_angle >= std::f64::consts::FRAC_PI_2 { 2.0 + t as f64 } else { 2.0 * half_angle.sin() }
        })
    })
}

/// [`GeoPoint::estimated_rtt_ms`] between a point given exactly as a unit
/// vector and one rounded to single precision, without trigonometry: the
/// smallest `t ≥ 1` whose distance's chord is at least theirs. The chord is
/// within 10⁻⁶ of the exact one (single-precision rounding of the vector,
/// about 10⁻⁷, with room to spare), and a step of the table is about 0.016,
/// so the answer is exact unless the chord lies within 10⁻⁶ of a step:
/// `None` then, and the caller computes it the model's way.
fn fast_rtt(q: [f64; 3], m: [f32; 3]) -> Option<u32> {
    const MARGIN: f64 = 1e-6;
    let d = [q[0] - f64::from(m[0]), q[1] - f64::from(m[1]), q[2] - f64::from(m[2])];
    let chord = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    let table = chord_table();
    let t = table.partition_point(|&c| c < chord);
    let near_step = (t < table.len() && table[t] - chord < MARGIN) || (t > 0 && chord - table[t - 1] < MARGIN);
    (!near_step && t < table.len()).then_some((t as u32).max(1))
}

/// Great-circle distance between two points given as unit vectors, from the
/// chord (or, beyond a quarter turn, from the chord to the antipode, where
/// `asin` is well conditioned); the centre in single precision, within a few
/// metres (the callers' margins cover it).
fn chord_km(a: [f64; 3], b: [f32; 3]) -> f64 {
    let b = b.map(f64::from);
    let sq = |x: [f64; 3]| x[0] * x[0] + x[1] * x[1] + x[2] * x[2];
    let near = sq([a[0] - b[0], a[1] - b[1], a[2] - b[2]]);
    if near <= 2.0 {
        2.0 * EARTH_RADIUS_KM * (near.sqrt() / 2.0).min(1.0).asin()
    } else {
        let far = sq([a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
        EARTH_RADIUS_KM * (std::f64::consts::PI - 2.0 * (far.sqrt() / 2.0).min(1.0).asin())
    }
}

/// Per grid level, the cosine of each row's southern edge (the last entry:
/// the north pole).
fn row_cosines() -> &'static [Vec<f64>; LEAF as usize] {
    static TABLE: std::sync::OnceLock<[Vec<f64>; LEAF as usize]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|l| {
            let (size, nlat, _) = grid(l as u8 + 1);
            let step = size.to_radians();
            (0..=nlat).map(|i| (f64::from(i) * step - std::f64::consts::FRAC_PI_2).cos().max(0.0)).collect()
        })
    })
}

/// RTT bounds of anything in a grid cell as seen from `q` (latitude,
/// longitude in radians, cosine of the latitude), from the cell's box alone.
/// `hi` is computed only if `want_hi` (else `NONE`).
///
/// The haversine term `sin²(Δφ/2) + cos φq · cos φ · sin²(Δλ/2)` is bounded
/// term by term over the box: the smallest and largest latitude and
/// longitude gaps, and the smallest and largest cosine of its latitudes
/// (the lower bound without trigonometry, see below).
fn cell_span(q: (f64, f64, f64), level: u8, cell: u32, want_hi: bool) -> (u32, u32) {
    use std::f64::consts::{FRAC_PI_2, PI, TAU};
    let step = STEP_RAD[level as usize - 1];
    let (i, j) = (cell >> 16, cell & 0xffff);
    // A hair wider than the cell, against rounding at its edges.
    let lat_lo = f64::from(i) * step - FRAC_PI_2 - 1e-9;
    let lat_hi = lat_lo + step + 2e-9;
    let lon_lo = f64::from(j) * step - PI - 1e-9;
    let lon_hi = lon_lo + step + 2e-9;
    let (phi, lam, cos_q) = q;
    // Longitudes and edges lie within [-π, π] (give or take the margin).
    let gap = |a: f64, b: f64| {
        let d = (a - b).abs();
        d.min(TAU - d).max(0.0)
    };
    // The margins above do not matter for the cosines: a smaller cosine
    // only lowers the lower bound; the upper bound takes the larger.
    let rows = &row_cosines()[level as usize - 1];
    let (c_lo, c_hi) = (rows[i as usize], rows[i as usize + 1]);
    // For the lower bound, no trigonometry: sin y ≥ y − y³/6 (y ≥ 0, and
    // positive up to π/2), so sin²(x/2) ≥ ((x/2)(1 − x²/24))² for x in
    // [0, π]; and asin z ≥ z. Nearly exact for nearby cells.
    let low_hav = |x: f64| {
        let y = x / 2.0 * (1.0 - x * x / 24.0);
        y * y
    };
    let dphi_min = (lat_lo - phi).max(phi - lat_hi).max(0.0);
    let dlam_min = if (lon_lo..=lon_hi).contains(&lam) { 0.0 } else { gap(lam, lon_lo).min(gap(lam, lon_hi)) };
    let a_min = low_hav(dphi_min) + cos_q * c_lo.min(c_hi) * low_hav(dlam_min);
    let lo = rtt_of((2.0 * EARTH_RADIUS_KM * a_min.sqrt() - EPS_KM).max(0.0));
    if !want_hi {
        return (lo, NONE);
    }
    let hav = |x: f64| (x / 2.0).sin().powi(2);
    let dphi_max = (phi - lat_lo).abs().max((phi - lat_hi).abs());
    let anti = if lam > 0.0 { lam - PI } else { lam + PI };
    let dlam_max = if (lon_lo..=lon_hi).contains(&anti) { PI } else { gap(lam, lon_lo).max(gap(lam, lon_hi)) };
    let cos_max = if lat_lo <= 0.0 && lat_hi >= 0.0 { 1.0 } else { c_lo.max(c_hi) };
    let a_max = hav(dphi_max) + cos_q * cos_max * hav(dlam_max);
    (lo, rtt_of(2.0 * EARTH_RADIUS_KM * a_max.clamp(0.0, 1.0).sqrt().asin() + EPS_KM))
}

/// The RTT estimate of [`GeoPoint::estimated_rtt_ms`] for a distance.
fn rtt_of(km: f64) -> u32 {
    ((km / dci_model::geo::KM_PER_RTT_MS).ceil() as u32).max(1)
}

/// The RTT bounds of grid cells as seen from one request's location
/// ([`cell_span`]), remembered for the length of the request: every tree has
/// the same grid, and a search opens the same cells in each of its trees.
/// Entries carry the generation (request) that wrote them, so a new request
/// starts with a clean memo without clearing it.
#[derive(Debug, Default)]
struct SpanMemo {
    generation: std::cell::Cell<u32>,
    /// Per grid level, per cell (row-major): (generation, lo, hi).
    /// Allocated on first use.
    cells: std::cell::OnceCell<MemoLevels>,
}

/// Per grid level, per cell: (generation, lo, hi).
type MemoLevels = [Vec<std::cell::Cell<(u32, u32, u32)>>; LEAF as usize];

impl SpanMemo {
    /// A generation for a new request.
    fn next_generation(&self) -> u32 {
        let g = self.generation.get().wrapping_add(1);
        if g == 0 {
            // After 2³² requests: forget everything once.
            if let Some(levels) = self.cells.get() {
                levels.iter().flatten().for_each(|c| c.set((0, 0, 0)));
            }
            self.generation.set(1);
            return 1;
        }
        self.generation.set(g);
        g
    }

    /// The bounds of `cell` at `level` for this generation, computed with
    /// `span` unless remembered.
    fn get(&self, generation: u32, level: u8, cell: u32, span: impl FnOnce() -> (u32, u32)) -> (u32, u32) {
        let levels = self.cells.get_or_init(|| {
            std::array::from_fn(|l| {
                let (_, rows, cols) = grid(l as u8 + 1);
                vec![std::cell::Cell::new((0, 0, 0)); (rows * cols) as usize]
            })
        });
        let (_, _, cols) = grid(level);
        let k = ((cell >> 16) * cols + (cell & 0xffff)) as usize;
        let entry = &levels[level as usize - 1][k];
        let (g, lo, hi) = entry.get();
        if g == generation {
            return (lo, hi);
        }
        let (lo, hi) = span();
        entry.set((generation, lo, hi));
        (lo, hi)
    }
}

/// Per grid level: cell size in radians.
const STEP_RAD: [f64; LEAF as usize] = {
    let mut steps = [0.0; LEAF as usize];
    let mut l = 0;
    while l < LEAF as usize {
        steps[l] = LEVELS[l] * (std::f64::consts::PI / 180.0);
        l += 1;
    }
    steps
};

/// Cell size in degrees, rows and columns of a grid level.
fn grid(level: u8) -> (f64, u32, u32) {
    let size = LEVELS[level as usize - 1];
    (size, (180.0 / size) as u32, (360.0 / size) as u32)
}

/// The finest grid cell of a point: an order that keeps neighbours together.
pub(crate) fn leaf_cell(p: &GeoPoint) -> u32 {
    cell_of(LEAF, p)
}

/// A point's cell: its row (from the south pole) in the high half, its
/// column (from the antimeridian) in the low half.
fn cell_of(level: u8, p: &GeoPoint) -> u32 {
    let (size, nlat, nlon) = grid(level);
    let i = (((p.lat() + 90.0) / size) as u32).min(nlat - 1);
    let j = (((p.lon() + 180.0) / size) as u32).min(nlon - 1);
    (i << 16) | j
}

/// A cell's centre and latitude range (degrees).
fn cell_geometry(level: u8, cell: u32) -> (GeoPoint, f64, f64) {
    let (size, nlat, _) = grid(level);
    let (i, j) = (cell >> 16, cell & 0xffff);
    let lat_lo = f64::from(i) * size - 90.0;
    // The last row also holds the pole itself.
    let lat_hi = if i + 1 == nlat { 90.0 } else { lat_lo + size };
    let lat = (lat_lo + size / 2.0).clamp(-90.0, 90.0);
    let lon = ((f64::from(j) + 0.5) * size - 180.0).clamp(-180.0, 180.0);
    (point(lat, lon), lat_lo, lat_hi)
}

/// A point from coordinates known to be in range.
fn point(lat: f64, lon: f64) -> GeoPoint {
    GeoPoint::new(lat, lon).expect("clamped coordinates are valid")
}

/// The GPU model criterion of [`crate::scan`]: ASCII case-insensitive substring.
pub(crate) fn gpu_model_ok(model: Option<&str>, wanted: Option<&str>) -> bool {
    match (wanted, model) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(w), Some(m)) => contains_ignore_ascii_case(m, w),
    }
}

/// `hay.to_ascii_lowercase().contains(&needle.to_ascii_lowercase())` without allocating.
pub(crate) fn contains_ignore_ascii_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_hold_their_points() {
        // (Cells are packed as row << 16 | column.)
        let points = [(-90.0, -180.0), (90.0, 180.0), (0.0, 0.0), (89.99, -179.99), (-45.5, 170.2), (38.72, -9.14)];
        for (lat, lon) in points {
            let p = GeoPoint::new(lat, lon).unwrap();
            for level in 1..=LEAF {
                let (c, lo, hi) = cell_geometry(level, cell_of(level, &p));
                let size = LEVELS[level as usize - 1];
                assert!(lo <= lat && lat <= hi, "{lat},{lon} level {level}: {lo}..{hi}");
                assert!((c.lat() - lat).abs() <= size && (c.lon() - lon).abs() <= size, "{lat},{lon} level {level}");
            }
        }
    }

    #[test]
    fn fast_distance_agrees_with_the_model() {
        let pts = [(38.72, -9.14), (50.11, 8.68), (-33.87, 151.21), (0.0, 0.0), (89.9, 10.0), (-0.1, -179.9)];
        for a in pts {
            for b in pts {
                let (pa, pb) = (GeoPoint::new(a.0, a.1).unwrap(), GeoPoint::new(b.0, b.1).unwrap());
                let trig = |p: GeoPoint| (p.lat().to_radians(), p.lon().to_radians(), p.lat().to_radians().cos());
                let d = chord_km(unit(trig(pa)), unit(trig(pb)).map(|x| x as f32));
                // Single precision for the centre: within the 10 m the summaries add.
                assert!((d - pa.distance_km(&pb)).abs() < 0.01, "{a:?} {b:?}: {d}");
            }
        }
    }

    use proptest::prelude::*;

    /// Members as (reputation, price).
    fn members() -> impl Strategy<Value = Vec<(u32, u128)>> {
        prop::collection::vec(((0u32..=20).prop_map(|k| k * 50), 1u128..40), 1..40)
    }

    fn groups(ms: &[(u32, u128)]) -> Vec<Group> {
        let mut g: Vec<Group> = Vec::new();
        let mut sorted = ms.to_vec();
        sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (rep, price) in sorted {
            match g.last_mut() {
                Some(last) if last.reputation == rep => {
                    last.count += 1;
                    last.max = price;
                }
                _ => g.push(Group { reputation: rep, count: 1, min: price, max: price, min_f: price as f64 }),
            }
        }
        g
    }

    fn child(s: Summary) -> Child {
        let node = Node { s, ..Node::new(0, LEAF, 0, false) };
        Child::of(1, 0, &node)
    }

    proptest! {
        /// Summaries built every way (exact from groups, by inserts, merged
        /// from children, with truncated frontiers), then with members
        /// leaving, still bound what is left: `covers`, `lowest` and
        /// `best_within` against brute force.
        #[test]
        fn summaries_bound_their_members(
            parts in prop::collection::vec((members(), any::<bool>()), 1..6),
            leaving in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            budgets in prop::collection::vec(1u128..45, 1..8),
        ) {
            let mut children = Vec::new();
            let mut all: Vec<(u32, u128)> = Vec::new();
            for (ms, by_insert) in &parts {
                let s = if *by_insert {
                    let mut s = Summary::EMPTY;
                    for &(r, p) in ms {
                        s.insert(r, p);
                    }
                    s
                } else {
                    Summary::of_groups(&groups(ms))
                };
                children.push(child(s));
                all.extend(ms);
            }
            let merged = Summary::merge(&children);
            for i in leaving {
                if all.len() > 1 {
                    all.remove(i.index(all.len()));
                }
            }
            if let (Some(h), Some(&(top, _))) = (merged.hidden, merged.front().first()) {
                prop_assert!(h < top, "hidden {} not below the best reputation {}", h, top);
            }
            for &(r, p) in &all {
                prop_assert!(merged.covers(r, p), "{:?} does not cover {:?}", merged, (r, p));
            }
            let f = |p: u128, r: u32| p * 10 + u128::from(1000 - r);
            let low = all.iter().map(|&(r, p)| f(p, r)).min().unwrap();
            prop_assert!(merged.lowest(f) <= low);
            for b in budgets.into_iter().map(Some).chain([None]) {
                let truth = all.iter().filter(|m| b.is_none_or(|b| m.1 <= b)).map(|&(r, p)| (NONE - r, p)).min();
                match (merged.best_within(b), truth) {
                    (_, None) => {}
                    (None, Some(t)) => prop_assert!(false, "budget {:?}: no bound, but {:?} is within", b, t),
                    (Some(k), Some(t)) => prop_assert!(k <= t, "budget {:?}: bound {:?} above {:?}", b, k, t),
                }
            }
        }

        /// The table-driven RTT is the model's, or declines.
        #[test]
        fn fast_rtt_is_the_models(
            q in (-90.0f64..=90.0, -180.0f64..=180.0),
            m in (-90.0f64..=90.0, -180.0f64..=180.0),
            near in prop::option::of((-2.0f64..2.0, -2.0f64..2.0)),
        ) {
            let q = GeoPoint::new(q.0, q.1).unwrap();
            // Often close by, where most candidates are.
            let m = match near {
                Some((dlat, dlon)) => GeoPoint::new((q.lat() + dlat).clamp(-90.0, 90.0), (q.lon() + dlon).clamp(-180.0, 180.0)).unwrap(),
                None => GeoPoint::new(m.0, m.1).unwrap(),
            };
            let fast = fast_rtt(unit(trig(&q)), unit(trig(&m)).map(|x| x as f32));
            prop_assert!(fast.is_none_or(|t| t == q.estimated_rtt_ms(&m)), "{fast:?} for {q} and {m}");
        }

        /// Cell bounds hold for points of the cell, seen from anywhere.
        #[test]
        fn cell_bounds_hold(
            q in (-90.0f64..=90.0, -180.0f64..=180.0),
            m in (-90.0f64..=90.0, -180.0f64..=180.0),
            level in 1..=LEAF,
        ) {
            let (q, m) = (GeoPoint::new(q.0, q.1).unwrap(), GeoPoint::new(m.0, m.1).unwrap());
            let lat = q.lat().to_radians();
            let (lo, hi) = cell_span((lat, q.lon().to_radians(), lat.cos()), level, cell_of(level, &m), true);
            let rtt = q.estimated_rtt_ms(&m);
            prop_assert!(lo <= rtt && rtt <= hi, "{lo} <= {rtt} <= {hi} for {q} and {m} at level {level}");
        }

        /// Node bounds from centre and radius hold too (single-precision
        /// centre, padded radius).
        #[test]
        fn node_bounds_hold(
            q in (-90.0f64..=90.0, -180.0f64..=180.0),
            m in (-90.0f64..=90.0, -180.0f64..=180.0),
            level in 0..=LEAF,
        ) {
            let (q, m) = (GeoPoint::new(q.0, q.1).unwrap(), GeoPoint::new(m.0, m.1).unwrap());
            let mut node = Node::new(0, level, if level == 0 { 0 } else { cell_of(level, &m) }, false);
            node.radius = node.center.distance_km(&m) + EPS_KM;
            node.s.insert(500, 1);
            let c = Child::of(1, 0, &node);
            let mut index = Index::new();
            index.models.push(None);
            let mut r = MatchRequest::for_service(dci_model::ServiceName::new("x").unwrap());
            r.near = Some(q);
            let p = index.prepare(&r, 0, 0);
            let (lo, hi, _) = index.classify(&p, &c.hot, None, true, NONE, (0, NONE)).unwrap();
            let rtt = q.estimated_rtt_ms(&m);
            prop_assert!(lo <= rtt && rtt <= hi, "{lo} <= {rtt} <= {hi} for {q} and {m} at level {level}");
        }
    }

    #[test]
    fn rtt_term_is_the_scans() {
        for max in [0u32, 1, 7, 150, 201, u32::MAX] {
            let t = Terms::new(1, max, true);
            for lo in [0u32, 1, 2, 75, 149, 150, 151, 201, u32::MAX - 1, u32::MAX] {
                let want = scan::scaled(u128::from(lo.min(max)), u128::from(max), 300);
                assert_eq!(t.rtt(lo), want, "{lo} of {max}");
            }
        }
    }

    #[test]
    fn fast_rtt_declines_only_near_a_step() {
        let origin = GeoPoint::new(0.0, 0.0).unwrap();
        let mut declined = 0;
        for k in 0..20_000 {
            let m = GeoPoint::new(0.0, -180.0 + f64::from(k) * 0.018).unwrap();
            match fast_rtt(unit(trig(&origin)), unit(trig(&m)).map(|x| x as f32)) {
                Some(t) => assert_eq!(t, origin.estimated_rtt_ms(&m), "{m}"),
                None => declined += 1,
            }
        }
        // The origin itself (distance 0) and a few points right on a step.
        assert!((1..20).contains(&declined), "{declined} declined");
    }

    #[test]
    fn price_bound_never_exceeds_the_exact_term() {
        let maxima = [1u128, 3, 7, 10u128.pow(18), 25 * 10u128.pow(17), u128::MAX / 3, u128::MAX];
        for max in maxima {
            let t = Terms::new(max, 10, true);
            for k in 0..=64u128 {
                let price = (max / 64).saturating_mul(k).min(max);
                for p in [price, price.saturating_sub(1), (price + 1).min(max)] {
                    assert!(t.price_lb(p) <= scan::scaled(p, max, 400), "{p} of {max}");
                }
            }
        }
    }

    #[test]
    fn substring_matches_like_lowercasing() {
        for (hay, needle) in [("NVIDIA H100", "h100"), ("RTX 4090", "rtx 40"), ("A100", ""), ("A10", "a100"), ("", "x")]
        {
            let want = hay.to_ascii_lowercase().contains(&needle.to_ascii_lowercase());
            assert_eq!(contains_ignore_ascii_case(hay, needle), want, "{hay} {needle}");
        }
    }
}
