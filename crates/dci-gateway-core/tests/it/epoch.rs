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
        Some((_, Message::ListContainers { request_id })) => *request_id,
        _ => panic!("the epoch clock samples the network"),
    };
    let before = w.rejected.len();
    let mallory = identity(66);
    w.from(&mallory, Message::Containers { request_id, containers: vec![] });
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
