//! Target assignment and the penalty quorum.

use dci_committee::*;
use dci_model::{Amount, NodeId};
use dci_proto::Identity;
use std::collections::{BTreeMap, BTreeSet};

fn identity(i: u64) -> Identity {
    Identity::from_secret(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

fn committee(n: u64) -> (Vec<Identity>, Committee, EpochSeed) {
    let ids: Vec<Identity> = (0..n).map(identity).collect();
    let keys: Vec<CommitteeKey> = ids.iter().map(CommitteeKey::from_identity).collect();
    let candidates = keys
        .iter()
        .map(|k| Candidate { id: k.node(), vrf_public: k.public(), stake: Amount::ath(1), history: History::default() })
        .collect();
    let set = CandidateSet::new(candidates, HistoryRule::default()).unwrap();
    let seed = EpochSeed::genesis("duties");
    let proofs: Vec<Proof> = keys.iter().map(|k| prove(k, &seed, 3)).collect();
    let c = verify_and_select(&set, &seed, 3, &proofs, n as usize).unwrap();
    (ids, c, seed)
}

fn targets(n: u64) -> Vec<NodeId> {
    (0..n).map(|i| NodeId(*blake3::hash(&(1000 + i).to_le_bytes()).as_bytes())).collect()
}

#[test]
fn assignment_is_balanced_distinct_and_reproducible() {
    let (_, c, seed) = committee(7);
    for (t, replicas) in [(1, 1), (20, 1), (20, 3), (50, 7), (5, 10)] {
        let ts = targets(t);
        let a = assign_targets(&c, &seed, &ts, replicas);
        let r = replicas.min(c.len());
        assert_eq!(a.len(), ts.len() * r, "t={t} r={replicas}");
        let mut per_target: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
        let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
        for x in &a {
            assert!(c.contains(&x.member));
            per_target.entry(x.target).or_default().insert(x.member);
            *load.entry(x.member).or_default() += 1;
        }
        assert!(per_target.values().all(|m| m.len() == r), "replicas go to distinct members");
        let (lo, hi) = (load.values().min().unwrap(), load.values().max().unwrap());
        assert!(hi - lo <= 1 || a.len() < c.len(), "balanced: {load:?}");
        // Anyone recomputes it, whatever order the targets come in.
        let mut rev = ts.clone();
        rev.reverse();
        rev.push(ts[0]);
        assert_eq!(assign_targets(&c, &seed, &rev, replicas), a);
    }
    let other = assign_targets(&c, &EpochSeed::genesis("another"), &targets(20), 1);
    assert_ne!(other, assign_targets(&c, &seed, &targets(20), 1), "the seed decides");
    assert!(assign_targets(&c, &seed, &[], 2).is_empty());
}

#[test]
fn a_member_never_inspects_itself() {
    let (_, c, seed) = committee(4);
    let a = assign_targets(&c, &seed, &c.ids(), 3);
    assert_eq!(a.len(), 4 * 3);
    assert!(a.iter().all(|x| x.member != x.target));
}

#[test]
fn penalties_need_two_thirds_of_the_committee() {
    let (ids, c, _) = committee(10);
    let evidence = *blake3::hash(b"verdicts").as_bytes();
    let sig = |i: usize| sign_evidence(&ids[i], c.epoch, &evidence);
    let all: Vec<(NodeId, Vec<u8>)> = (0..10).map(sig).collect();
    assert_eq!(check_evidence_quorum(&c, &evidence, &all), Ok(10));
    assert_eq!(check_evidence_quorum(&c, &evidence, &all[..7]), Ok(7));
    let six = &all[..6];
    assert_eq!(check_evidence_quorum(&c, &evidence, six), Err(QuorumError { valid: 6, needed: 7, committee: 10 }));
    // Repeats, outsiders, wrong evidence and garbage count for nothing.
    let mut padded = six.to_vec();
    padded.push(all[0].clone());
    padded.push(sign_evidence(&identity(77), c.epoch, &evidence));
    padded.push(sign_evidence(&ids[7], c.epoch, blake3::hash(b"other").as_bytes()));
    padded.push(sign_evidence(&ids[8], c.epoch + 1, &evidence));
    padded.push((ids[9].id(), vec![0; 64]));
    padded.push((ids[9].id(), vec![1, 2, 3]));
    let err = check_evidence_quorum(&c, &evidence, &padded).unwrap_err();
    assert_eq!(err.valid, 6);
    assert!(err.to_string().contains("expected valid signatures from at least 7 of the 10"), "{err}");
    // The generic check takes any signed message.
    let msg = evidence_message(c.epoch, &evidence);
    assert_eq!(check_quorum(&c, &msg, &all[..7]), Ok(7));
}
