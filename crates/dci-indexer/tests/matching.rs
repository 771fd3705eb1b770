//! The full-scan matcher on hand-built fleets: criteria, eliminations, policies.

mod common;

use common::*;
use dci_indexer::Container;
use dci_indexer::scan::{Choice, match_scan};
use dci_model::{Criterion, Eliminations, GeoPoint, MatchRequest, NodeId, Policy, State, Timestamp};
use std::collections::BTreeMap;

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// A fleet where each llm container differs from [`big_spec`] in one way, and
/// the cheaper one always fails the next constraint of the chain below. The
/// cheapest containers of all fail the early criteria.
fn fleet() -> Vec<Container> {
    let with = |id, price, edit: fn(&mut dci_model::ContainerSpec)| {
        let mut spec = big_spec();
        edit(&mut spec);
        container(id, spec, &["llm"], milli_ath(price), NOW)
    };
    let mut v = vec![
        with(1, 1000, |s| s.gpu = None),
        with(2, 1500, |s| s.gpu = gpu("RTX 4090", 4, 24)),
        with(3, 2000, |s| s.gpu = gpu("NVIDIA H100", 1, 94)),
        with(4, 3000, |s| s.gpu = gpu("NVIDIA H100", 4, 80)),
        with(5, 4000, |s| s.cpu_cores = 16),
        with(6, 5000, |s| s.ram_gib = 128),
        with(7, 6000, |s| s.disk_gib = 100),
        with(8, 7000, |s| s.bandwidth_up_mbps = 100),
        with(9, 8000, |s| s.bandwidth_down_mbps = 100),
        with(10, 9000, |s| s.location = city("virginia")),
        with(11, 10_000, |_| {}),
    ];
    // Perfect hosts at half an ATH, each out for an early reason.
    let mut b = container(20, big_spec(), &["render"], milli_ath(500), NOW);
    let mut e = container(21, big_spec(), &["llm"], milli_ath(500), NOW);
    e.record.state = State::AwaitingInspection;
    let mut f = container(22, big_spec(), &["llm"], milli_ath(500), NOW);
    f.last_seen = Timestamp(NOW.0 - 3001);
    let mut g = container(23, big_spec(), &["llm"], milli_ath(500), NOW);
    g.record.registration.slots = 1;
    g.reserved = 1;
    let mut h = container(24, big_spec(), &["llm"], milli_ath(500), NOW);
    h.record.registration.slots = 2;
    h.reported_sessions = 2;
    // Stale *and* not schedulable: counted once, against the state.
    let mut q = container(25, big_spec(), &["llm"], milli_ath(500), NOW);
    q.record.state = State::QualityControl;
    q.last_seen = Timestamp(0);
    b.record.state = State::Ready;
    v.extend([b, e, f, g, h, q]);
    v
}

fn elims(pairs: &[(Criterion, u64)]) -> Eliminations {
    let by_criterion: BTreeMap<_, _> = pairs.iter().copied().collect();
    Eliminations { considered: 17, by_criterion }
}

#[test]
fn each_constraint_eliminates_the_next_cheapest() {
    type Edit = fn(&mut MatchRequest);
    let rows: [(&str, Edit, Result<u8, Eliminations>); 12] = [
        ("service", |_| {}, Ok(1)),
        ("gpu model (case-insensitive substring)", |r| r.gpu_model = Some("h100".into()), Ok(3)),
        ("gpu count", |r| r.gpu_count = 4, Ok(4)),
        ("vram per gpu", |r| r.min_vram_gib = 90, Ok(5)),
        ("cpu", |r| r.min_cpu_cores = 32, Ok(6)),
        ("ram", |r| r.min_ram_gib = 256, Ok(7)),
        ("disk", |r| r.min_disk_gib = 1000, Ok(8)),
        ("bandwidth up", |r| r.min_bandwidth_up_mbps = 1000, Ok(9)),
        ("bandwidth down", |r| r.min_bandwidth_down_mbps = 1000, Ok(10)),
        ("location alone bounds nothing", |r| r.near = Some(city("frankfurt")), Ok(10)),
        ("latency", |r| r.max_latency_ms = Some(30), Ok(11)),
        (
            "price",
            |r| r.max_price = Some(milli_ath(9999)),
            Err(elims(&[
                (Criterion::State, 2),
                (Criterion::Heartbeat, 1),
                (Criterion::Capacity, 2),
                (Criterion::Service, 1),
                (Criterion::GpuModel, 2),
                (Criterion::GpuCount, 1),
                (Criterion::Vram, 1),
                (Criterion::Cpu, 1),
                (Criterion::Ram, 1),
                (Criterion::Disk, 1),
                (Criterion::Bandwidth, 2),
                (Criterion::Latency, 1),
                (Criterion::Price, 1),
            ])),
        ),
    ];
    let fleet = fleet();
    let mut request = MatchRequest::for_service(svc("llm"));
    request.policy = Policy::Cheapest;
    for (name, edit, want) in rows {
        edit(&mut request);
        let got = match_scan(&fleet, &request, session(1), NOW, &config()).map(|c| c.container);
        assert_eq!(got, want.map(node), "{name}");
    }
}

#[test]
fn nothing_to_consider() {
    let got = match_scan(&[], &MatchRequest::for_service(svc("llm")), session(1), NOW, &config());
    assert_eq!(got, Err(Eliminations::default()));
}

#[test]
fn gpu_requirements_on_cpu_only_hosts() {
    let mut cpu_only = big_spec();
    cpu_only.gpu = None;
    let fleet = [container(1, cpu_only, &["llm"], milli_ath(1), NOW)];
    let check = |edit: fn(&mut MatchRequest), want: Option<Criterion>| {
        let mut r = MatchRequest::for_service(svc("llm"));
        edit(&mut r);
        let got = match_scan(&fleet, &r, session(1), NOW, &config());
        match want {
            None => assert!(got.is_ok(), "{got:?}"),
            Some(c) => assert_eq!(got.unwrap_err().by_criterion, BTreeMap::from([(c, 1)])),
        }
    };
    check(|_| {}, None);
    check(|r| r.gpu_model = Some(String::new()), Some(Criterion::GpuModel));
    check(|r| r.gpu_count = 1, Some(Criterion::GpuCount));
    check(|r| r.min_vram_gib = 1, Some(Criterion::Vram));
    check(|r| r.max_latency_ms = Some(1), None); // a bound without `near` bounds nothing
}

/// Three survivors for a consumer in Lisbon: a cheap far one, an expensive
/// near one with the best reputation, and a middle one.
fn trio() -> Vec<Container> {
    let at = |id, price, place, reputation| {
        let mut spec = big_spec();
        spec.location = city(place);
        let mut c = container(id, spec, &["llm"], milli_ath(price), NOW);
        c.record.reputation = reputation;
        c
    };
    vec![at(1, 1000, "virginia", 500), at(2, 4000, "lisbon", 1000), at(3, 2000, "frankfurt", 700)]
}

fn pick(fleet: &[Container], policy: Policy, near: Option<GeoPoint>) -> Choice {
    let mut r = MatchRequest::for_service(svc("llm"));
    r.policy = policy;
    r.near = near;
    match_scan(fleet, &r, session(1), NOW, &config()).unwrap()
}

#[test]
fn each_policy_picks_its_container() {
    let lisbon = Some(city("lisbon"));
    let fleet = trio();
    // virginia: rtt 58; frankfurt: 19; lisbon: 1.
    // balanced: 1: 100 + 300 + 150 = 550; 2: 400 + 5 + 0 = 405; 3: 200 + 98 + 90 = 388.
    let rows = [(Policy::Cheapest, 1, Some(58)), (Policy::BestUx, 2, Some(1)), (Policy::Balanced, 3, Some(19))];
    for (policy, want, rtt) in rows {
        assert_eq!(pick(&fleet, policy, lisbon), Choice { container: node(want), estimated_rtt_ms: rtt }, "{policy}");
    }
    // Without a location the latency term is equal for all: price and reputation decide.
    // balanced: 1: 100 + 300 + 150 = 550; 2: 400 + 300 + 0 = 700; 3: 200 + 300 + 90 = 590.
    assert_eq!(pick(&fleet, Policy::Balanced, None).container, node(1));
    assert_eq!(pick(&fleet, Policy::BestUx, None).container, node(2)); // best reputation
}

#[test]
fn tie_breaks() {
    let lisbon = Some(city("lisbon"));
    let mut fleet = trio();
    // Cheapest: equal prices, the nearer wins.
    fleet[1].record.registration.price = milli_ath(1000);
    assert_eq!(pick(&fleet, Policy::Cheapest, lisbon).container, node(2));
    // ...at equal distance, the better reputation wins.
    fleet[1].record.registration.spec.location = city("virginia");
    assert_eq!(pick(&fleet, Policy::Cheapest, lisbon).container, node(2));
    fleet[1].record.reputation = 400;
    assert_eq!(pick(&fleet, Policy::Cheapest, lisbon).container, node(1));
    // Best UX: equal distance and reputation, the cheaper wins.
    let mut fleet = trio();
    for c in &mut fleet {
        c.record.registration.spec.location = city("frankfurt");
        c.record.reputation = 800;
    }
    assert_eq!(pick(&fleet, Policy::BestUx, lisbon).container, node(1));
}

/// R-IX3: identical containers are not ranked by their (self-chosen) ids;
/// which one wins a full tie depends on the session, deterministically.
#[test]
fn full_ties_do_not_favour_any_id() {
    let fleet: Vec<_> = [0x01, 0xfe].map(|id| container(id, big_spec(), &["llm"], milli_ath(1000), NOW)).into();
    let r = MatchRequest::for_service(svc("llm"));
    let mut wins: BTreeMap<NodeId, u32> = BTreeMap::new();
    for s in 0..64u8 {
        let a = match_scan(&fleet, &r, session(s), NOW, &config()).unwrap();
        let b = match_scan(fleet.iter().rev(), &r, session(s), NOW, &config()).unwrap();
        assert_eq!(a, b, "order of the fleet must not matter");
        *wins.entry(a.container).or_default() += 1;
    }
    assert_eq!(wins.len(), 2, "{wins:?}");
    assert!(wins.values().all(|&n| n >= 16), "{wins:?}");
}
