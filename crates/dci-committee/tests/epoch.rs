//! The committee of a running network: the coordinator's epochs, their
//! recomputation by anyone from the announcement, and per-target assignment.

use dci_committee::*;
use dci_model::{Amount, NodeId};
use dci_proto::{Identity, SortitionProof};
use std::collections::BTreeMap;

fn identity(i: u64) -> Identity {
    Identity::from_secret(*blake3::hash(&(7000 + i).to_le_bytes()).as_bytes())
}

fn registered(keys: &[CommitteeKey], stakes: &[u64]) -> Vec<Registered> {
    keys.iter()
        .zip(stakes)
        .enumerate()
        .map(|(i, (k, s))| Registered {
            id: k.node(),
            addr: format!("127.0.0.1:{}", 9000 + i),
            vrf_public: k.public(),
            stake: Amount::ath(*s),
        })
        .collect()
}

fn wire(p: &Proof) -> SortitionProof {
    SortitionProof { node: p.node, output: p.output, proof: p.proof.to_vec() }
}

/// Runs one epoch in which every key proves; returns the announcement and committee.
fn epoch(
    c: &mut EpochCoordinator,
    keys: &[CommitteeKey],
    reg: &[Registered],
    e: u64,
) -> (dci_proto::CommitteeAnnouncement, Committee) {
    let seed = c.open(e, reg).unwrap();
    let (asked_epoch, asked) = c.asked().unwrap();
    assert_eq!(asked_epoch, e);
    assert_eq!(asked.len(), reg.iter().filter(|r| r.stake >= Amount::ath(1)).count());
    for k in keys.iter().filter(|k| asked.iter().any(|(id, _)| *id == k.node())) {
        c.proof(k.node(), e, &wire(&prove(k, &seed, e))).unwrap();
    }
    c.close().unwrap()
}

#[test]
fn every_epoch_is_recomputed_identically_from_its_announcement() {
    let keys: Vec<CommitteeKey> = (0..9).map(|i| CommitteeKey::from_identity(&identity(i))).collect();
    let stakes = [100, 100, 100, 200, 200, 400, 400, 800, 0];
    let reg = registered(&keys, &stakes);
    let mut c = EpochCoordinator::new("epoch-test", 4).unwrap();
    let mut seeds = Vec::new();
    let mut seats: BTreeMap<NodeId, u64> = BTreeMap::new();
    for e in 1..=30 {
        let (a, committee) = epoch(&mut c, &keys, &reg, e);
        assert_eq!(committee.len(), 4);
        assert_eq!(recompute(&a).unwrap(), committee, "epoch {e}");
        assert!(!a.candidates.iter().any(|x| x.stake == Amount::ZERO), "no stake, no candidacy");
        assert!(a.candidates.iter().all(|x| x.addr.starts_with("127.0.0.1:")));
        seeds.push(a.seed);
        for m in &committee.members {
            *seats.entry(m.id).or_default() += 1;
        }
    }
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), 30, "every epoch has a fresh seed");
    // The history is carried: the last announcement's counts are the seats won before it.
    let mut c2 = EpochCoordinator::new("epoch-test", 4).unwrap();
    for e in 1..=30 {
        epoch(&mut c2, &keys, &reg, e);
    }
    let (a, _) = epoch(&mut c2, &keys, &reg, 31);
    for cand in &a.candidates {
        assert_eq!(cand.selected, seats.get(&cand.id).copied().unwrap_or(0));
    }
}

#[test]
fn a_tampered_announcement_does_not_recompute_to_the_same_committee() {
    let keys: Vec<CommitteeKey> = (0..6).map(|i| CommitteeKey::from_identity(&identity(i))).collect();
    let reg = registered(&keys, &[10, 20, 30, 40, 50, 60]);
    let mut c = EpochCoordinator::new("tamper", 3).unwrap();
    let (a, committee) = epoch(&mut c, &keys, &reg, 1);

    let mut bad = a.clone();
    bad.seed[0] ^= 1;
    assert!(recompute(&bad).is_err(), "proofs do not verify under another seed");

    let mut bad = a.clone();
    bad.proofs[0].output[3] ^= 1;
    assert!(recompute(&bad).map(|x| x != committee).unwrap_or(true));

    let mut bad = a.clone();
    bad.proofs[0].proof.pop();
    assert!(recompute(&bad).is_err(), "a short proof is refused");
}

#[test]
fn proofs_are_checked_on_arrival() {
    let keys: Vec<CommitteeKey> = (0..4).map(|i| CommitteeKey::from_identity(&identity(i))).collect();
    let reg = registered(&keys, &[10, 10, 10, 10]);
    let mut c = EpochCoordinator::new("arrival", 3).unwrap();
    assert!(c.proof(keys[0].node(), 1, &wire(&prove(&keys[0], &EpochSeed::genesis("x"), 1))).is_err(), "nothing open");
    let seed = c.open(1, &reg).unwrap();
    let good = wire(&prove(&keys[0], &seed, 1));
    // Someone else's proof, another epoch's, a wrong seed's, then a duplicate.
    assert!(c.proof(keys[1].node(), 1, &good).is_err());
    assert!(c.proof(keys[0].node(), 2, &wire(&prove(&keys[0], &seed, 2))).is_err());
    assert!(c.proof(keys[0].node(), 1, &wire(&prove(&keys[0], &EpochSeed::genesis("other"), 1))).is_err());
    assert_eq!(c.proof(keys[0].node(), 1, &good).unwrap(), 3);
    assert!(c.proof(keys[0].node(), 1, &good).is_err());
    let outsider = CommitteeKey::from_identity(&identity(99));
    assert!(c.proof(outsider.node(), 1, &wire(&prove(&outsider, &seed, 1))).is_err());
    // One proof is enough for a (small) committee.
    let (_, committee) = c.close().unwrap();
    assert_eq!(committee.ids(), vec![keys[0].node()]);
    assert!(!committee.is_full());
}

#[test]
fn assign_one_is_random_recomputable_and_never_self() {
    let keys: Vec<CommitteeKey> = (0..5).map(|i| CommitteeKey::from_identity(&identity(i))).collect();
    let reg = registered(&keys, &[10, 10, 10, 10, 10]);
    let mut c = EpochCoordinator::new("assign", 5).unwrap();
    let (_, committee) = epoch(&mut c, &keys, &reg, 1);
    let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
    for i in 0..5000u64 {
        let t = NodeId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let m = assign_one(&committee, &t).unwrap();
        assert_eq!(assign_one(&committee, &t), Some(m));
        *load.entry(m).or_default() += 1;
    }
    assert_eq!(load.len(), 5);
    // Each member's share of 5000 is 1000 ± 5 sigma (sigma = 28).
    assert!(load.values().all(|&n| (860..=1140).contains(&n)), "{load:?}");
    let member = committee.members[0].id;
    assert_ne!(assign_one(&committee, &member), Some(member));
    let (_, next) = epoch(&mut c, &keys, &reg, 2);
    let t = NodeId([7; 32]);
    let moved = (0..200u8).filter(|b| {
        let t = NodeId([*b; 32]);
        assign_one(&committee, &t) != assign_one(&next, &t)
    });
    assert!(moved.count() > 100, "a new epoch reshuffles targets");
    assert!(assign_one(&next, &t).is_some());
}
