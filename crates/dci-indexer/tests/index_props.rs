//! The index against the scan oracle: for random fleets, random requests and
//! random interleavings of registrations, heartbeats, verdicts, matches
//! (reservations), renewals, releases, ticks (expiring reservations and
//! pruning newcomers that never passed, whose ids may then register again)
//! and time, the index answers exactly what
//! [`dci_indexer::scan::match_scan`] answers (the container, its RTT, and the
//! elimination counts when nothing matches), and the index's own invariants
//! hold after every step.

mod common;

use common::*;
use dci_indexer::{ContainerRecord, Indexer, Input, Output, REPUTATION_MAX};
use dci_model::{Amount, ContainerSpec, GeoPoint, MatchRequest, Policy, PricePerHour, SessionId, State, Timestamp};
use dci_proto::{Message, Net, Registration};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;
/// Places that stress the grid: cities, both poles, both sides of the
/// antimeridian, the equator.
const ANCHORS: [(f64, f64); 10] = [
    (38.72, -9.14),
    (50.11, 8.68),
    (35.68, 139.69),
    (-33.87, 151.21),
    (39.04, -77.49),
    (89.9, 10.0),
    (-89.9, -170.0),
    (0.5, 179.95),
    (-0.5, -179.95),
    (0.0, 0.0),
];
const MODELS: [(&str, u32); 6] = [
    ("NVIDIA H100 80GB", 80),
    ("NVIDIA A100-SXM4-40GB", 40),
    ("NVIDIA A100-SXM4-80GB", 80),
    ("GeForce RTX 4090", 24),
    ("GeForce RTX 3060", 12),
    ("AMD MI300X", 192),
];
const SERVICES: [&str; 3] = ["llm", "render", "embeddings"];

fn location() -> impl Strategy<Value = GeoPoint> {
    prop_oneof![
        4 => (0..ANCHORS.len(), -3.0f64..3.0, -3.0f64..3.0).prop_map(|(a, dlat, dlon)| {
            let (lat, lon) = ANCHORS[a];
            let lon = lon + dlon;
            let lon = if lon > 180.0 { lon - 360.0 } else if lon < -180.0 { lon + 360.0 } else { lon };
            GeoPoint::new((lat + dlat).clamp(-90.0, 90.0), lon).unwrap()
        }),
        1 => (-90.0f64..=90.0, -180.0f64..=180.0).prop_map(|(lat, lon)| GeoPoint::new(lat, lon).unwrap()),
    ]
}

/// Prices from a small set (ties) or anywhere, in thousandths of an ATH.
fn price() -> impl Strategy<Value = PricePerHour> {
    prop_oneof![
        3 => prop::sample::select(vec![500u64, 1000, 1500, 2500]).prop_map(milli_ath),
        1 => (1u64..5000).prop_map(milli_ath),
    ]
}

fn spec() -> impl Strategy<Value = ContainerSpec> {
    let gpu = prop_oneof![
        1 => Just(None),
        5 => (0..MODELS.len(), prop::sample::select(vec![1u32, 2, 4, 8]))
            .prop_map(|(m, count)| gpu(MODELS[m].0, count, MODELS[m].1)),
    ];
    (gpu, prop::sample::select(vec![4u32, 16, 64]), prop::sample::select(vec![16u32, 64, 256]), location()).prop_map(
        |(gpu, cpu_cores, ram_gib, location)| ContainerSpec {
            gpu,
            cpu_cores,
            ram_gib,
            disk_gib: 1000,
            bandwidth_up_mbps: 1000,
            bandwidth_down_mbps: 1000,
            location,
        },
    )
}

fn reg() -> impl Strategy<Value = Registration> {
    (spec(), prop::sample::subsequence(SERVICES.to_vec(), 1..=3), price(), 1u32..=3)
        .prop_map(|(spec, services, price, slots)| registration(spec, &services, price, slots))
}

fn reputation() -> impl Strategy<Value = u32> {
    prop_oneof![3 => (0u32..=20).prop_map(|k| k * 50), 1 => 0u32..=REPUTATION_MAX]
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        8 => Just(State::Healthy),
        2 => Just(State::Ready),
        1 => Just(State::ReinspectionRequired),
        1 => Just(State::MaintenanceLock),
    ]
}

/// A container as a restarted indexer would load it, silent since `age_ms`.
#[derive(Clone, Debug)]
struct Seed {
    reg: Registration,
    state: State,
    reputation: u32,
    age_ms: u64,
    reported: u32,
}

fn seed() -> impl Strategy<Value = Seed> {
    (reg(), state(), reputation(), prop::sample::select(vec![0u64, 1000, 2999, 3001, 9000]), 0u32..=2)
        .prop_map(|(reg, state, reputation, age_ms, reported)| Seed { reg, state, reputation, age_ms, reported })
}

fn request() -> impl Strategy<Value = MatchRequest> {
    fn some<T: Clone + std::fmt::Debug + 'static>(p: f64, values: Vec<T>) -> impl Strategy<Value = Option<T>> {
        prop::option::weighted(p, prop::sample::select(values))
    }
    let policy = prop::sample::select(vec![Policy::Cheapest, Policy::BestUx, Policy::Balanced]);
    (
        (
            prop::sample::select(vec!["llm", "render", "embeddings", "unknown"]),
            some(0.5, vec!["h100", "A100", "rtx", "4090", "nvidia", "", "mi300x", "x"]),
            some(0.3, vec![1u32, 2, 4, 8]),
            some(0.3, vec![24u32, 40, 80]),
            some(0.1, vec![16u32, 64]),
        ),
        (prop::option::weighted(0.8, location()), some(0.6, vec![1u32, 2, 5, 10, 20, 50, 100, 200])),
        (some(0.4, vec![500u64, 1000, 1500, 2500, 4000]), policy),
    )
        .prop_map(|((service, model, count, vram, cpu), (near, latency), (budget, policy))| {
            let mut r = MatchRequest::for_service(svc(service));
            r.gpu_model = model.map(str::to_owned);
            r.gpu_count = count.unwrap_or(0);
            r.min_vram_gib = vram.unwrap_or(0);
            r.min_cpu_cores = cpu.unwrap_or(0);
            r.near = near;
            r.max_latency_ms = latency;
            r.max_price = budget.map(milli_ath);
            r.policy = policy;
            r
        })
}

/// An indexer loaded with `seeds` (ids 1..), as after a restart, with the
/// reported sessions applied.
fn load(seeds: &[Seed], now: u64) -> Indexer {
    let mut ix = Indexer::new(config());
    for (i, s) in seeds.iter().enumerate() {
        let record = ContainerRecord {
            id: node(i as u8 + 1),
            registration: s.reg.clone(),
            state: s.state,
            reputation: s.reputation,
            transitions: Vec::new(),
            verdicts: Vec::new(),
            verified: None,
            ever_passed: false,
        };
        ix.restore(vec![record], Timestamp(now - s.age_ms));
    }
    for (i, s) in seeds.iter().enumerate() {
        if s.reported > 0 && s.age_ms == 0 {
            ix.feed(Timestamp(now), heartbeat(node(i as u8 + 1), s.reported));
        }
    }
    ix
}

fn agree(ix: &Indexer, now: Timestamp, r: &MatchRequest, s: SessionId) -> Result<(), TestCaseError> {
    let want = ix.evaluate_scan(now, r, s);
    let got = ix.evaluate(now, r, s);
    prop_assert_eq!(got, want, "request {:?}", r);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Many requests against one random fleet, with reservations in between
    /// (full containers leave the index) and a tick (summaries tightened).
    #[test]
    fn index_answers_like_the_scan(
        seeds in prop::collection::vec(seed(), 1..60),
        requests in prop::collection::vec((request(), any::<[u8; 16]>(), any::<bool>()), 1..40),
    ) {
        let now = T0 + 5000;
        let mut ix = load(&seeds, now);
        prop_assert_eq!(ix.check_invariants(), Ok(()));
        for (i, (r, session, reserve)) in requests.iter().enumerate() {
            let session = SessionId(*session);
            agree(&ix, Timestamp(now), r, session)?;
            if *reserve {
                ix.feed(Timestamp(now), match_req(GATEWAY, session, r.clone()));
            }
            if i % 10 == 9 {
                ix.feed(Timestamp(now), Input::Tick);
            }
        }
        prop_assert_eq!(ix.check_invariants(), Ok(()));
    }
}

#[derive(Clone, Debug)]
enum Op {
    Register(u8, Registration),
    Heartbeat(u8, u32),
    Verdict(u8, bool),
    Match(u8, MatchRequest),
    Renew(Vec<u8>),
    Release(u8),
    Tick,
    Advance(u64),
}

const FLEET: u8 = 12;
/// Ids that start unregistered: they register, may fail or never get a
/// verdict, and are pruned when silent for `PRUNE_AFTER_MS`.
const NEWCOMERS: u8 = 4;
const PRUNE_AFTER_MS: u64 = 20_000;

fn op() -> impl Strategy<Value = Op> {
    let ids = FLEET + NEWCOMERS;
    prop_oneof![
        2 => (0..ids, reg()).prop_map(|(c, r)| Op::Register(c, r)),
        4 => (0..ids, 0u32..=3).prop_map(|(c, s)| Op::Heartbeat(c, s)),
        3 => (0..ids, prop::bool::weighted(0.7)).prop_map(|(c, p)| Op::Verdict(c, p)),
        6 => (0..16u8, request()).prop_map(|(s, r)| Op::Match(s, r)),
        2 => (0..16u8).prop_map(Op::Release),
        2 => prop::collection::vec(0..16u8, 0..=6).prop_map(Op::Renew),
        1 => Just(Op::Tick),
        2 => prop::sample::select(vec![500u64, 1500, 3001, 12_000, 31_000]).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random interleavings: before every match the index and the scan agree,
    /// and the reply is the scan's answer; a few fixed requests agree after
    /// every step.
    #[test]
    fn index_follows_every_change(
        fleet in prop::collection::vec(reg(), FLEET as usize),
        ops in prop::collection::vec(op(), 1..70),
        probes in prop::collection::vec(request(), 3),
    ) {
        let cfg = dci_indexer::Config { prune_after: std::time::Duration::from_millis(PRUNE_AFTER_MS), ..config() };
        let mut ix = Indexer::new(cfg);
        let mut now = T0;
        // Start from a registered, inspected, heartbeating fleet.
        for (c, r) in fleet.into_iter().enumerate() {
            let id = node(c as u8 + 1);
            ix.feed(Timestamp(now), register(id, r));
            ix.feed(Timestamp(now), verdict(CHECKER, id, true));
            ix.feed(Timestamp(now), heartbeat(id, 0));
        }
        for op in ops {
            let t = Timestamp(now);
            match op {
                Op::Register(c, r) => drop(ix.feed(t, register(node(c + 1), r))),
                Op::Heartbeat(c, s) => drop(ix.feed(t, heartbeat(node(c + 1), s))),
                Op::Verdict(c, passed) => drop(ix.feed(t, verdict(CHECKER, node(c + 1), passed))),
                Op::Match(s, r) => {
                    let s = session(s);
                    let fresh = ix.reservation(&s).is_none();
                    let want = ix.evaluate_scan(t, &r, s);
                    prop_assert_eq!(ix.evaluate(t, &r, s), want.clone(), "request {:?}", r);
                    let outs = ix.feed(t, match_req(GATEWAY, s, r));
                    let [Output::Net(Net::Reply { msg, .. })] = outs.as_slice() else {
                        return Err(TestCaseError::fail(format!("{outs:?}")));
                    };
                    if fresh {
                        let got = match msg {
                            Message::Matched { offer, .. } => Ok((offer.container, offer.estimated_rtt_ms)),
                            Message::NoMatch { eliminations, .. } => Err(eliminations.clone()),
                            other => return Err(TestCaseError::fail(format!("{other:?}"))),
                        };
                        prop_assert_eq!(got, want.map(|c| (c.container, c.estimated_rtt_ms)));
                    }
                }
                Op::Renew(sessions) => {
                    let sessions = sessions.into_iter().map(session).collect();
                    drop(ix.feed(t, net(GATEWAY, Message::Renew { sessions })));
                }
                Op::Release(s) => drop(ix.feed(t, release(GATEWAY, session(s)))),
                Op::Tick => drop(ix.feed(t, Input::Tick)),
                Op::Advance(ms) => now += ms,
            }
            prop_assert_eq!(ix.check_invariants(), Ok(()));
            for (i, r) in probes.iter().enumerate() {
                agree(&ix, Timestamp(now), r, session(200 + i as u8))?;
            }
        }
    }
}

#[test]
fn synthetic_world_agrees_with_the_scan() {
    for seed in 1..=2 {
        let (n, failures) = dci_indexer::bench::agreement(1500, 250, seed);
        assert_eq!(n, 0, "seed {seed}: {:#?}", &failures[..failures.len().min(3)]);
    }
}

/// Prices far beyond any budget, and reputations at the extremes.
#[test]
fn extreme_prices_and_reputations() {
    let now = T0 + 1000;
    let huge = PricePerHour(Amount(u128::MAX / 3));
    let seeds: Vec<Seed> = [(huge, 0), (PricePerHour(Amount(u128::MAX)), REPUTATION_MAX), (milli_ath(1), 1000)]
        .into_iter()
        .map(|(price, reputation)| Seed {
            reg: registration(big_spec(), &["llm"], price, 1),
            state: State::Healthy,
            reputation,
            age_ms: 0,
            reported: 0,
        })
        .collect();
    let ix = load(&seeds, now);
    for policy in [Policy::Cheapest, Policy::BestUx, Policy::Balanced] {
        for near in [None, Some(city("lisbon"))] {
            let mut r = MatchRequest::for_service(svc("llm"));
            r.policy = policy;
            r.near = near;
            assert_eq!(ix.evaluate(Timestamp(now), &r, session(1)), ix.evaluate_scan(Timestamp(now), &r, session(1)));
        }
    }
}
