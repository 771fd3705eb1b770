//! The epoch: rewards count only what the gateway itself observed.

use std::time::Duration;

use dci_ledger::{IndexerWork, LedgerOp};
use dci_model::AccountId;
use dci_proto::Message;

use crate::world::{Host, World, config, identity};

fn epoch_world() -> World {
    let mut c = config();
    c.epoch = Some(Duration::from_secs(10));
    World::with_config(c)
}

/// The input of the last epoch distributed.
fn last_distribution(w: &World) -> Option<(u64, dci_ledger::EpochInput)> {
    w.applied.iter().rev().flatten().find_map(|op| match op {
        LedgerOp::DistributeEpoch { epoch, input } => Some((*epoch, input.clone())),
        _ => None,
    })
}

#[test]
fn only_matches_the_indexer_answered_to_this_gateway_earn_the_indexer_share() {
    let mut w = epoch_world();
    let host = Host::new(10, "1");
    let mallory = identity(66);
    w.running_on(&host, "render", 1);
    let (request_id, _) = w.last_match();
    for i in 0..3_000u64 {
        w.from(&mallory, Message::Matched { request_id: request_id.wrapping_add(i), offer: host.offer() });
    }
    // The indexer replaying its own answer does not count twice either.
    let indexer = w.indexer.clone();
    w.from(&indexer, Message::Matched { request_id, offer: host.offer() });
    w.run_for(Duration::from_secs(16), Duration::from_millis(250));
    let (epoch, input) = last_distribution(&w).expect("the epoch was distributed");
    assert_eq!(epoch, 0);
    assert_eq!(
        input.indexers,
        vec![IndexerWork { account: AccountId::for_node(&indexer.id()), served_matches: 1 }],
        "mallory earns nothing and the indexer's count is exact"
    );
}

#[test]
fn a_sample_answered_by_another_node_is_refused() {
    let mut w = epoch_world();
    w.run_for(Duration::from_secs(1), Duration::from_millis(250));
    let request_id = match w.sent_of("list_containers").last() {
        Some((_, Message::ListContainers { request_id, .. })) => *request_id,
        _ => panic!("the epoch clock samples the network"),
    };
    let before = w.rejected.len();
    let mallory = identity(66);
    w.from(&mallory, Message::Containers { request_id, containers: vec![], next: None });
    assert_eq!(w.rejected.len(), before + 1);
}

#[test]
fn epochs_follow_each_other() {
    let mut w = epoch_world();
    w.run_for(Duration::from_secs(32), Duration::from_millis(250));
    let epochs: Vec<u64> = w
        .applied
        .iter()
        .flatten()
        .filter_map(|op| match op {
            LedgerOp::DistributeEpoch { epoch, .. } => Some(*epoch),
            _ => None,
        })
        .collect();
    assert_eq!(epochs, vec![0, 1]);
}

/// A container as the indexer shows it: Healthy, fresh, claiming `gpu`,
/// with what its latest proof verified.
fn view(
    n: u8,
    gpu: Option<(u32, u32, bool)>,
    verified: Option<dci_proto::VerifiedCapacity>,
) -> dci_proto::ContainerView {
    let host = Host::new(n, "1");
    let offer = host.offer();
    let mut spec = offer.spec;
    spec.gpu =
        gpu.map(|(count, vram_gib, simulated)| dci_model::GpuSpec { model: "H100".into(), count, vram_gib, simulated });
    dci_proto::ContainerView {
        id: host.id(),
        addr: host.addr.clone(),
        state: dci_model::State::Healthy,
        spec,
        services: vec![],
        warm: vec![],
        price: host.price,
        slots: 1,
        reserved: 0,
        reputation: 500,
        last_heartbeat_ago_ms: Some(100),
        transitions: vec![],
        verdicts: vec![],
        verified,
        payout: host.payout(),
    }
}

fn cpu_proof(simulated: bool) -> Option<dci_proto::VerifiedCapacity> {
    Some(dci_proto::VerifiedCapacity { class: "cpu".into(), devices: 1, n: 256, units: 1, simulated })
}

/// Answers every sample of the network with `views` for one epoch; the
/// containers' reward lines.
fn container_work(
    dev: bool,
    views: Vec<dci_proto::ContainerView>,
    bonded: &[&dci_proto::ContainerView],
) -> Vec<dci_ledger::ContainerWork> {
    paged_container_work(dev, views, bonded, usize::MAX).0
}

/// The same, answering in pages of `page` views (by id, as the indexer
/// does); also how many requests asked for a page after the first.
fn paged_container_work(
    dev: bool,
    mut views: Vec<dci_proto::ContainerView>,
    bonded: &[&dci_proto::ContainerView],
    page: usize,
) -> (Vec<dci_ledger::ContainerWork>, usize) {
    views.sort_by_key(|v| v.id);
    let mut c = config();
    c.epoch = Some(Duration::from_secs(10));
    c.dev_network = dev;
    let mut w = World::with_config(c);
    for v in bonded {
        let stake = dci_ledger::params::DEFAULT_MIN_CONTAINER_STAKE;
        let fund =
            dci_ledger::Transfer { from: dci_ledger::accounts::liquidity(), to: v.payout.clone(), amount: stake };
        let bond = dci_ledger::LedgerOp::Stake {
            account: v.payout.clone(),
            role: dci_ledger::StakeRole::Container,
            amount: stake,
        };
        w.ledger.apply(&[dci_ledger::LedgerOp::Transfer(fund), bond]).unwrap();
    }
    let indexer = w.indexer.clone();
    let (mut answered, mut continued) = (0, 0);
    while last_distribution(&w).is_none() {
        w.advance(Duration::from_millis(250));
        loop {
            let asked: Vec<(u64, Option<dci_model::NodeId>)> = w
                .sent_of("list_containers")
                .iter()
                .filter_map(|(_, m)| match m {
                    Message::ListContainers { request_id, after } => Some((*request_id, *after)),
                    _ => None,
                })
                .collect();
            if asked.len() == answered {
                break;
            }
            for (request_id, after) in asked.into_iter().skip(answered) {
                continued += usize::from(after.is_some());
                let rest: Vec<_> = views.iter().filter(|v| after.is_none_or(|a| v.id > a)).cloned().collect();
                let containers: Vec<_> = rest.iter().take(page).cloned().collect();
                let next = (rest.len() > page).then(|| containers.last().expect("a page").id);
                w.from(&indexer, Message::Containers { request_id, containers, next });
                answered += 1;
            }
        }
    }
    (last_distribution(&w).unwrap().1.containers, continued)
}

#[test]
fn a_sample_spans_the_indexers_pages_and_counts_once() {
    let views: Vec<_> = (30..35).map(|i| view(i, Some((1, 80, false)), cpu_proof(false))).collect();
    let bonded: Vec<_> = views.iter().collect();
    let whole = paged_container_work(false, views.clone(), &bonded, usize::MAX);
    let paged = paged_container_work(false, views.clone(), &bonded, 2);
    assert_eq!(whole.1, 0);
    // 5 views in pages of 2: two more pages per sample, 20 samples.
    assert_eq!(paged.1, 2 * 20, "every sample asks for its later pages");
    assert_eq!(paged.0, whole.0, "the same rewards, page by page");
    assert_eq!(paged.0.len(), 5);
    assert!(paged.0.iter().all(|c| c.uptime_ppm == 1_000_000), "{:?}", paged.0);
}

#[test]
fn containers_earn_by_what_their_proofs_verified_never_their_claim() {
    let liar = view(20, Some((64, 1024, true)), cpu_proof(true));
    let honest = view(21, Some((8, 80, true)), cpu_proof(true));
    let unproven = view(22, Some((8, 80, false)), None);
    let h100 = view(
        23,
        Some((1, 80, false)),
        Some(dci_proto::VerifiedCapacity { class: "h100".into(), devices: 1, n: 16384, units: 80, simulated: false }),
    );
    let unbonded = view(
        24,
        Some((1, 80, false)),
        Some(dci_proto::VerifiedCapacity { class: "h100".into(), devices: 1, n: 16384, units: 80, simulated: false }),
    );
    let all = vec![liar.clone(), honest.clone(), unproven.clone(), h100.clone(), unbonded.clone()];
    let bonded = [&liar, &honest, &unproven, &h100];
    let units = |work: &[dci_ledger::ContainerWork], v: &dci_proto::ContainerView| {
        work.iter().find(|c| c.account == v.payout).map(|c| c.capacity_units)
    };
    // On a dev network simulated profiles earn what their CPU proved: the
    // liar's 64 × 1024 GiB claim weighs what the honest devnet host's does.
    let work = container_work(true, all.clone(), &bonded);
    assert_eq!(units(&work, &liar), Some(1));
    assert_eq!(units(&work, &honest), Some(1));
    assert_eq!(units(&work, &h100), Some(80));
    assert_eq!(work.len(), 3, "no passed proof, or no bond: nothing earned: {work:?}");
    assert_eq!(units(&work, &unbonded), None, "a container without its bond earns nothing");
    // Elsewhere a simulated profile earns nothing.
    let work = container_work(false, all, &bonded);
    assert_eq!(units(&work, &liar), None);
    assert_eq!(units(&work, &h100), Some(80));
}
