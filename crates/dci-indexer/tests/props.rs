//! Property tests: random fleets and random interleavings of registrations,
//! heartbeats, verdicts, matches, renewals, releases, ticks and time.
//!
//! Checked after every step: the indexer's own invariants, no slot is given
//! twice (against an independent model of the bookings), every new match
//! satisfies each criterion (each checked here independently of the
//! matcher), every "no match" is explained by exactly the right counts, and
//! `cheapest`/`best-ux` never skip a strictly better candidate. A container
//! the timer declares lost loses its sessions; a reservation expires at the
//! first tick a ttl after its match or last renewal (the model keeps each
//! expiry), and a renewal from a non-gateway changes nothing. Newcomers
//! register too; a tick removes exactly the containers that never passed an
//! inspection (the model notes every passing verdict the indexer persists)
//! and were silent for `prune_after`, and nothing else.

mod common;

use common::*;
use dci_indexer::{Container, Indexer, Input, Output};
use dci_model::{
    Actor, Amount, ContainerSpec, Criterion, Eliminations, MatchRequest, NodeId, Policy, PricePerHour, SessionId,
    State, Timestamp,
};
use dci_proto::{Message, Net, Registration};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::collections::BTreeSet;

const CITIES: [&str; 4] = ["lisbon", "frankfurt", "virginia", "tokyo"];
const MODELS: [&str; 3] = ["NVIDIA H100", "A100-SXM4", "GeForce RTX 4090"];
const SERVICES: [&str; 2] = ["llm", "render"];
const FLEET: u8 = 5;
/// Ids that start unregistered (they may register, fail, be pruned, come back).
const NEWCOMERS: u8 = 2;
const SESSIONS: u8 = 8;
const PRUNE_AFTER_MS: u64 = 20_000;

#[derive(Clone, Debug)]
enum Op {
    Register(u8, Registration),
    Heartbeat(u8, u32),
    /// Every container heartbeats, reporting no session.
    Pulse,
    Verdict {
        container: u8,
        passed: bool,
        trusted: bool,
    },
    Match(u8, MatchRequest),
    Renew {
        sessions: Vec<u8>,
        trusted: bool,
    },
    Release(u8),
    Tick,
    Advance(u64),
}

fn price() -> impl Strategy<Value = PricePerHour> {
    (1u64..=5).prop_map(|n| PricePerHour(Amount::ath(n)))
}

fn spec() -> impl Strategy<Value = ContainerSpec> {
    let gpu = prop_oneof![
        Just(None),
        (0..MODELS.len(), 1u32..=4, prop::sample::select(vec![24u32, 40, 80]))
            .prop_map(|(m, count, vram)| gpu(MODELS[m], count, vram)),
    ];
    (
        gpu,
        prop::sample::select(vec![4u32, 16, 64]),
        prop::sample::select(vec![16u32, 64, 256]),
        prop::sample::select(vec![100u32, 1000]),
        prop::sample::select(vec![100u32, 1000]),
        prop::sample::select(vec![100u32, 1000]),
        0..CITIES.len(),
    )
        .prop_map(|(gpu, cpu_cores, ram_gib, disk_gib, up, down, place)| ContainerSpec {
            gpu,
            cpu_cores,
            ram_gib,
            disk_gib,
            bandwidth_up_mbps: up,
            bandwidth_down_mbps: down,
            location: city(CITIES[place]),
        })
}

/// Mostly valid registrations; about one in ten has no slot or no service.
fn reg() -> impl Strategy<Value = Registration> {
    let services = prop_oneof![
        1 => Just(vec![]),
        9 => prop::sample::subsequence(SERVICES.to_vec(), 1..=2),
    ];
    let slots = prop_oneof![1 => Just(0u32), 9 => 1u32..=3];
    (spec(), services, price(), slots)
        .prop_map(|(spec, services, price, slots)| registration(spec, &services, price, slots))
}

/// Mostly "any", so that matches happen; each constraint is set about one
/// time in four.
fn request() -> impl Strategy<Value = MatchRequest> {
    fn some<T: Clone + std::fmt::Debug + 'static>(values: Vec<T>) -> impl Strategy<Value = Option<T>> {
        prop::option::weighted(0.25, prop::sample::select(values))
    }
    let policy = prop::sample::select(vec![Policy::Cheapest, Policy::BestUx, Policy::Balanced]);
    (
        (prop::bool::weighted(0.8), some(vec!["h100", "A100", "4090", "rtx", "nvidia"]), some(vec![1u32, 2, 3])),
        (some(vec![24u32, 80]), some(vec![16u32]), some(vec![64u32]), some(vec![500u32])),
        (some(vec![500u32]), some(vec![500u32])),
        (prop::option::of(0..CITIES.len()), some(vec![5u32, 20, 80]), some(vec![1u64, 2, 3, 4]), policy),
    )
        .prop_map(
            |((llm, gpu_model, gpu_count), (vram, cpu, ram, disk), (up, down), (near, lat, max_price, policy))| {
                let mut r = MatchRequest::for_service(svc(if llm { "llm" } else { "render" }));
                r.gpu_model = gpu_model.map(str::to_owned);
                r.gpu_count = gpu_count.unwrap_or(0);
                r.min_vram_gib = vram.unwrap_or(0);
                r.min_cpu_cores = cpu.unwrap_or(0);
                r.min_ram_gib = ram.unwrap_or(0);
                r.min_disk_gib = disk.unwrap_or(0);
                r.min_bandwidth_up_mbps = up.unwrap_or(0);
                r.min_bandwidth_down_mbps = down.unwrap_or(0);
                r.near = near.map(|i| city(CITIES[i]));
                r.max_latency_ms = lat;
                r.max_price = max_price.map(|n| PricePerHour(Amount::ath(n)));
                r.policy = policy;
                r
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let ids = FLEET + NEWCOMERS;
    prop_oneof![
        2 => (0..ids, reg()).prop_map(|(c, r)| Op::Register(c, r)),
        3 => (0..ids, 0u32..=2).prop_map(|(c, s)| Op::Heartbeat(c, s)),
        3 => Just(Op::Pulse),
        3 => (0..ids, prop::bool::weighted(0.7), prop::bool::weighted(0.9))
            .prop_map(|(container, passed, trusted)| Op::Verdict { container, passed, trusted }),
        6 => (0..SESSIONS, request()).prop_map(|(s, r)| Op::Match(s, r)),
        2 => (0..SESSIONS).prop_map(Op::Release),
        2 => (prop::collection::vec(0..SESSIONS, 0..=4), prop::bool::weighted(0.9))
            .prop_map(|(sessions, trusted)| Op::Renew { sessions, trusted }),
        1 => Just(Op::Tick),
        3 => prop::sample::select(vec![300u64, 1000, 2999, 3001]).prop_map(Op::Advance),
        1 => prop::sample::select(vec![12_000u64, 29_999, 31_000]).prop_map(Op::Advance),
    ]
}

fn id(n: u8) -> NodeId {
    node(n + 1)
}

fn inputs(op: &Op) -> Vec<Input> {
    vec![match op.clone() {
        Op::Register(c, r) => register(id(c), r),
        Op::Heartbeat(c, s) => heartbeat(id(c), s),
        Op::Pulse => return (0..FLEET).map(|c| heartbeat(id(c), 0)).collect(),
        Op::Verdict { container, passed, trusted } => {
            verdict(if trusted { CHECKER } else { id(container) }, id(container), passed)
        }
        Op::Match(s, r) => match_req(GATEWAY, session(s), r),
        Op::Renew { sessions, trusted } => net(
            if trusted { GATEWAY } else { CHECKER },
            Message::Renew { sessions: sessions.into_iter().map(session).collect() },
        ),
        Op::Release(s) => release(GATEWAY, session(s)),
        Op::Tick => Input::Tick,
        Op::Advance(_) => return vec![],
    }]
}

/// Each criterion written out again, independently of the matcher, in
/// R-IX1 order. `true` means the container passes.
fn criteria(c: &Container, r: &MatchRequest, now: Timestamp) -> [(Criterion, bool); 13] {
    let reg = &c.record.registration;
    let s = &reg.spec;
    let fresh_ms = 3 * 1000; // config(): 3 missed heartbeats of 1 s
    let busy = c.reserved.max(c.reported_sessions);
    let gpu_model = match (&r.gpu_model, &s.gpu) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(m), Some(g)) => g.model.to_lowercase().contains(&m.to_lowercase()),
    };
    let count = s.gpu.as_ref().map_or(0, |g| g.count);
    let vram = s.gpu.as_ref().map_or(0, |g| g.vram_gib);
    let latency = match (r.near, r.max_latency_ms) {
        (Some(p), Some(max)) => p.estimated_rtt_ms(&s.location) <= max,
        _ => true,
    };
    [
        (Criterion::State, matches!(c.record.state, State::Ready | State::Healthy)),
        (Criterion::Heartbeat, now.0 - c.last_seen.0 <= fresh_ms),
        (Criterion::Capacity, busy < reg.slots),
        (Criterion::Service, reg.services.contains(&r.service)),
        (Criterion::GpuModel, gpu_model),
        (Criterion::GpuCount, count >= r.gpu_count),
        (Criterion::Vram, vram >= r.min_vram_gib),
        (Criterion::Cpu, s.cpu_cores >= r.min_cpu_cores),
        (Criterion::Ram, s.ram_gib >= r.min_ram_gib),
        (Criterion::Disk, s.disk_gib >= r.min_disk_gib),
        (
            Criterion::Bandwidth,
            s.bandwidth_up_mbps >= r.min_bandwidth_up_mbps && s.bandwidth_down_mbps >= r.min_bandwidth_down_mbps,
        ),
        (Criterion::Latency, latency),
        (Criterion::Price, r.max_price.is_none_or(|m| reg.price <= m)),
    ]
}

fn first_failure(c: &Container, r: &MatchRequest, now: Timestamp) -> Option<Criterion> {
    criteria(c, r, now).into_iter().find(|(_, ok)| !ok).map(|(k, _)| k)
}

fn rtt(c: &Container, r: &MatchRequest) -> u32 {
    r.near.map_or(u32::MAX, |p| p.estimated_rtt_ms(&c.record.registration.spec.location))
}

/// Checks one match reply against the fleet as it was before the match.
fn check_match(
    before: &[Container],
    r: &MatchRequest,
    s: SessionId,
    now: Timestamp,
    reply: &Message,
    booked: &mut BTreeMap<SessionId, NodeId>,
) -> Result<(), TestCaseError> {
    match reply {
        Message::Matched { offer, .. } => {
            if let Some(prev) = booked.get(&s) {
                prop_assert_eq!(*prev, offer.container, "a repeated session keeps its container");
                return Ok(());
            }
            let chosen = before.iter().find(|c| c.id() == offer.container);
            prop_assert!(chosen.is_some(), "the offer names an unknown container");
            let chosen = chosen.unwrap();
            for (criterion, ok) in criteria(chosen, r, now) {
                prop_assert!(ok, "matched container fails {:?}", criterion);
            }
            let survivors: Vec<_> = before.iter().filter(|c| first_failure(c, r, now).is_none()).collect();
            match r.policy {
                Policy::Cheapest => {
                    let best = survivors.iter().map(|c| c.record.registration.price).min();
                    prop_assert_eq!(Some(chosen.record.registration.price), best);
                }
                Policy::BestUx => {
                    let best = survivors.iter().map(|c| rtt(c, r)).min();
                    prop_assert_eq!(Some(rtt(chosen, r)), best);
                }
                Policy::Balanced => {}
            }
            booked.insert(s, offer.container);
        }
        Message::NoMatch { eliminations, .. } => {
            prop_assert!(!booked.contains_key(&s), "a booked session must get its booking back");
            let mut want = Eliminations { considered: before.len() as u64, ..Default::default() };
            for c in before {
                let why = first_failure(c, r, now);
                prop_assert!(why.is_some(), "no match although {:?} satisfies every criterion", c.id());
                want.add(why.unwrap());
            }
            prop_assert_eq!(eliminations, &want);
        }
        other => prop_assert!(false, "unexpected reply {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_double_booking_and_every_match_satisfies_every_criterion(
        fleet in prop::collection::vec(reg(), FLEET as usize),
        random in prop::collection::vec(op(), 1..80),
    ) {
        // Start from a registered, inspected, heartbeating fleet, then anything goes.
        let warm_up = fleet.into_iter().zip(0..).flat_map(|(r, c)| {
            [Op::Register(c, r), Op::Verdict { container: c, passed: true, trusted: true }, Op::Heartbeat(c, 0)]
        });
        let ops: Vec<Op> = warm_up.chain(random).collect();
        let cfg = dci_indexer::Config { prune_after: std::time::Duration::from_millis(PRUNE_AFTER_MS), ..config() };
        let mut ix = Indexer::new(cfg);
        let mut now = Timestamp(1_700_000_000_000);
        let mut booked: BTreeMap<SessionId, NodeId> = BTreeMap::new();
        // Containers the indexer recorded a passing verdict for, ever.
        let mut passed: BTreeSet<NodeId> = BTreeSet::new();
        // When each booking expires (ms), unless renewed.
        let mut expires: BTreeMap<SessionId, u64> = BTreeMap::new();
        let ttl = config().reservation_ttl.as_millis() as u64;
        for op in &ops {
            if let Op::Advance(ms) = op {
                now = Timestamp(now.0 + ms);
            }
            let before: Vec<Container> = ix.iter().cloned().collect();
            let mut outs = Vec::new();
            for input in inputs(op) {
                outs.extend(ix.feed(now, input));
                prop_assert_eq!(ix.check_invariants(), Ok(()));
            }
            for o in &outs {
                if let Output::Persist(r) = o
                    && r.verdicts.iter().any(|v| v.passed)
                {
                    passed.insert(r.id);
                }
            }
            match op {
                Op::Match(s, r) => {
                    let [Output::Net(Net::Reply { msg, .. })] = outs.as_slice() else {
                        return Err(TestCaseError::fail(format!("{outs:?}")));
                    };
                    check_match(&before, r, session(*s), now, msg, &mut booked)?;
                    if booked.contains_key(&session(*s)) {
                        let e = expires.entry(session(*s)).or_insert(0);
                        *e = (*e).max(now.0 + ttl);
                    }
                }
                Op::Renew { sessions, trusted: true } => {
                    prop_assert!(outs.is_empty(), "{:?}", outs);
                    for s in sessions {
                        if let Some(e) = expires.get_mut(&session(*s)) {
                            *e = (*e).max(now.0 + ttl);
                        }
                    }
                }
                Op::Renew { trusted: false, .. } => {
                    prop_assert_eq!(summary(&outs), ["rejected"]);
                    let after: Vec<Container> = ix.iter().cloned().collect();
                    prop_assert_eq!(before, after, "an untrusted renewal changed state");
                }
                Op::Release(s) => {
                    booked.remove(&session(*s));
                    expires.remove(&session(*s));
                }
                Op::Tick => {
                    // Exactly the never-passed containers silent for prune_after go.
                    let forgotten: BTreeSet<NodeId> = outs
                        .iter()
                        .filter_map(|o| if let Output::Forget(id) = o { Some(*id) } else { None })
                        .collect();
                    let silent: BTreeSet<NodeId> = before
                        .iter()
                        .filter(|c| !passed.contains(&c.id()) && now.0 - c.last_seen.0 >= PRUNE_AFTER_MS)
                        .map(Container::id)
                        .collect();
                    prop_assert_eq!(&forgotten, &silent);
                    let left: BTreeSet<NodeId> = ix.iter().map(Container::id).collect();
                    let expected: BTreeSet<NodeId> =
                        before.iter().map(Container::id).filter(|id| !silent.contains(id)).collect();
                    prop_assert_eq!(left, expected);
                    // Expired reservations are released.
                    expires.retain(|_, e| *e > now.0);
                    booked.retain(|s, _| expires.contains_key(s));
                    // A container lost to the timer loses its sessions.
                    for o in &outs {
                        if let Output::Persist(r) = o
                            && r.transitions.last().is_some_and(|t| t.actor == Actor::Timer)
                        {
                            booked.retain(|_, c| *c != r.id);
                            expires.retain(|s, _| booked.contains_key(s));
                        }
                    }
                }
                Op::Verdict { trusted: false, .. } => {
                    let after: Vec<Container> = ix.iter().cloned().collect();
                    prop_assert_eq!(before, after, "an untrusted verdict changed state");
                }
                _ => {}
            }
            // The indexer's bookings are exactly the model's, within capacity.
            for c in ix.iter() {
                let n = booked.values().filter(|b| **b == c.id()).count() as u32;
                prop_assert_eq!(c.reserved, n);
                prop_assert!(n <= c.record.registration.slots);
            }
            for (s, c) in &booked {
                prop_assert_eq!(ix.reservation(s), Some(*c));
                prop_assert_eq!(ix.reservation_expires(s), expires.get(s).map(|&e| Timestamp(e)));
            }
            prop_assert_eq!(ix.reservations(), booked.len());
        }
    }
}
