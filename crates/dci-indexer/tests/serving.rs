//! R-IX3: the serving indexer is a verifiable random choice.

use dci_indexer::{serving_indexer, serving_score};
use dci_model::NodeId;
use std::collections::BTreeMap;

fn indexers(n: u8) -> Vec<NodeId> {
    (1..=n).map(|i| NodeId([i; 32])).collect()
}

/// Anyone recomputes the choice from the published construction alone.
#[test]
fn anyone_can_recompute_the_choice() {
    let seed = [7u8; 32];
    let active = indexers(5);
    for request in 0u32..200 {
        let request = request.to_be_bytes();
        let mut best: Option<([u8; 32], NodeId)> = None;
        for id in &active {
            let mut h = blake3::Hasher::new();
            h.update(b"dci/indexer/serve/v1\0");
            h.update(&seed);
            h.update(&id.0);
            h.update(&request);
            let score = *h.finalize().as_bytes();
            assert_eq!(score, serving_score(&request, &seed, id));
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, *id));
            }
        }
        assert_eq!(serving_indexer(&request, &seed, &active), best.map(|b| b.1));
        // The order of the active set does not matter, nor do duplicates.
        let mut shuffled: Vec<NodeId> = active.iter().rev().copied().collect();
        shuffled.push(active[0]);
        assert_eq!(serving_indexer(&request, &seed, &shuffled), best.map(|b| b.1));
    }
    assert_eq!(serving_indexer(b"r", &seed, &[]), None);
}

/// Every indexer serves about the same share, and the seed changes the choice.
#[test]
fn the_choice_is_uniform_and_seeded() {
    let active = indexers(4);
    let mut served: BTreeMap<NodeId, u32> = BTreeMap::new();
    let mut moved = 0;
    for request in 0u32..40_000 {
        let r = request.to_le_bytes();
        let a = serving_indexer(&r, &[1; 32], &active).unwrap();
        *served.entry(a).or_default() += 1;
        if serving_indexer(&r, &[2; 32], &active) != Some(a) {
            moved += 1;
        }
    }
    for (id, n) in &served {
        assert!((9_500..=10_500).contains(n), "{id:?} served {n} of 40000");
    }
    // With another seed about three in four requests change indexer.
    assert!((29_000..=31_000).contains(&moved), "{moved}");
}

/// Rendezvous hashing: when an indexer leaves, only its requests move.
#[test]
fn a_leaving_indexer_moves_only_its_requests() {
    let seed = [3u8; 32];
    let all = indexers(6);
    let fewer: Vec<NodeId> = all.iter().copied().filter(|id| *id != all[2]).collect();
    for request in 0u32..5_000 {
        let r = request.to_le_bytes();
        let before = serving_indexer(&r, &seed, &all).unwrap();
        let after = serving_indexer(&r, &seed, &fewer).unwrap();
        if before != all[2] {
            assert_eq!(before, after, "request {request} moved although its indexer stayed");
        }
    }
}
