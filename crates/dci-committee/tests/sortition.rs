//! The committee, end to end: keys, proofs, selection, history, seeds.

use dci_committee::*;
use dci_model::{Amount, NodeId};
use dci_proto::Identity;

struct Net {
    keys: Vec<CommitteeKey>,
    set: CandidateSet,
}

fn identity(i: u64) -> Identity {
    Identity::from_secret(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// `n` nodes; node `i` stakes `stakes[i % stakes.len()]` ATH.
fn net(n: u64, stakes: &[u64]) -> Net {
    let keys: Vec<CommitteeKey> = (0..n).map(|i| CommitteeKey::from_identity(&identity(i))).collect();
    let candidates = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Candidate {
            id: k.node(),
            vrf_public: k.public(),
            stake: Amount::ath(stakes[i % stakes.len()]),
            history: History::default(),
        })
        .collect();
    Net { keys, set: CandidateSet::new(candidates, HistoryRule::default()).unwrap() }
}

fn all_proofs(net: &Net, seed: &EpochSeed, epoch: u64) -> Vec<Proof> {
    net.keys.iter().map(|k| prove(k, seed, epoch)).collect()
}

/// Brute-force oracle: every candidate's ticket, sorted, best `size`.
fn oracle(net: &Net, proofs: &[Proof], size: usize) -> Vec<NodeId> {
    let mut t: Vec<(Ticket, NodeId)> = proofs.iter().map(|p| (net.set.ticket(p).unwrap(), p.node)).collect();
    t.sort_by(|a, b| a.0.cmp_key(&b.0).then(a.1.cmp(&b.1)));
    t.into_iter().take(size).map(|x| x.1).collect()
}

#[test]
fn everyone_computes_the_same_committee_as_the_oracle() {
    let a = net(60, &[1, 2, 5, 10]);
    let seed = EpochSeed::genesis("test");
    let proofs = all_proofs(&a, &seed, 7);
    let committee = verify_and_select(&a.set, &seed, 7, &proofs, 12).unwrap();
    assert_eq!(committee.ids(), oracle(&a, &proofs, 12));
    assert!(committee.is_full());
    assert_eq!(committee.quorum(), 8);

    // Another node: candidates in another order, proofs over the wire in another order.
    let json = serde_json::to_string(a.set.candidates()).unwrap();
    let mut candidates: Vec<Candidate> = serde_json::from_str(&json).unwrap();
    candidates.reverse();
    let other = CandidateSet::new(candidates, HistoryRule::default()).unwrap();
    let json = serde_json::to_string(&proofs).unwrap();
    let mut received: Vec<Proof> = serde_json::from_str(&json).unwrap();
    received.rotate_left(17);
    assert_eq!(verify_and_select(&other, &seed, 7, &received, 12).unwrap(), committee);

    // The committee itself survives serialization.
    let back: Committee = serde_json::from_str(&serde_json::to_string(&committee).unwrap()).unwrap();
    assert_eq!(back, committee);
}

#[test]
fn proving_is_deterministic_and_every_single_proof_verifies() {
    let a = net(8, &[3]);
    let seed = EpochSeed::genesis("det");
    for k in &a.keys {
        let p = prove(k, &seed, 1);
        assert_eq!(p, prove(k, &seed, 1));
        assert_ne!(p.output, prove(k, &seed, 2).output, "a new epoch gives a new output");
        assert_eq!(verify_proof(&a.set, &seed, 1, &p).unwrap(), a.set.ticket(&p).unwrap());
    }
}

#[test]
fn tampered_proofs_are_rejected_with_a_reason() {
    let a = net(10, &[1]);
    let seed = EpochSeed::genesis("tamper");
    let good = all_proofs(&a, &seed, 4);
    let other_seed = prove(&a.keys[3], &EpochSeed::genesis("elsewhere"), 4);
    let other_epoch = Proof { epoch: 4, ..prove(&a.keys[3], &seed, 5) };
    let impostor = Proof { node: a.keys[3].node(), ..prove(&a.keys[4], &seed, 4) };
    let flip = |f: &dyn Fn(&mut Proof)| {
        let mut p = good[3].clone();
        f(&mut p);
        p
    };
    let cases: Vec<(&str, Proof, ProofFault)> = vec![
        ("output byte", flip(&|p| p.output[5] ^= 1), ProofFault::InvalidOutput),
        ("identity output", flip(&|p| p.output = [0; 32]), ProofFault::InvalidOutput),
        ("R byte", flip(&|p| p.proof[3] ^= 4), ProofFault::InvalidEncoding),
        ("Hr byte", flip(&|p| p.proof[40] ^= 4), ProofFault::InvalidEncoding),
        ("s byte", flip(&|p| p.proof[70] ^= 1), ProofFault::Equation),
        ("non-canonical s", flip(&|p| p.proof[95] = 0xff), ProofFault::InvalidEncoding),
        ("other seed", other_seed, ProofFault::Equation),
        ("other epoch", other_epoch, ProofFault::Equation),
        ("another node's proof", impostor, ProofFault::Equation),
    ];
    let node = a.keys[3].node();
    for (what, bad, fault) in cases {
        let mut proofs = good.clone();
        proofs[3] = bad.clone();
        let want = SortitionError::BadProof { node, fault };
        // A flipped point byte may still decode to some other point; then the equation fails.
        let got = verify_and_select(&a.set, &seed, 4, &proofs, 10).unwrap_err();
        let single = verify_proof(&a.set, &seed, 4, &bad).unwrap_err();
        assert_eq!(got, single, "{what}");
        let equation = SortitionError::BadProof { node, fault: ProofFault::Equation };
        assert!(got == want || got == equation, "{what}: {got}");
        assert!(got.to_string().contains("expected a valid vrf proof"), "{what}");
    }
}

#[test]
fn malformed_sets_are_refused_with_named_reasons() {
    let a = net(6, &[1, 0]);
    let seed = EpochSeed::genesis("refuse");
    let proofs = all_proofs(&a, &seed, 2);
    let staked: Vec<Proof> = proofs.iter().step_by(2).cloned().collect();
    let stranger = CommitteeKey::from_identity(&identity(99));
    let check = |ps: &[Proof], size: usize, want: SortitionError| {
        assert_eq!(verify_and_select(&a.set, &seed, 2, ps, size).unwrap_err(), want);
    };
    check(&staked, 0, SortitionError::ZeroSize);
    check(&[], 3, SortitionError::NoProofs);
    let wrong = vec![staked[0].clone(), Proof { epoch: 1, ..staked[1].clone() }];
    check(&wrong, 3, SortitionError::WrongEpoch { node: staked[1].node, expected: 2, found: 1 });
    let unknown = vec![staked[0].clone(), prove(&stranger, &seed, 2)];
    check(&unknown, 3, SortitionError::UnknownNode { node: stranger.node() });
    let twice = vec![staked[0].clone(), staked[1].clone(), staked[0].clone()];
    check(&twice, 3, SortitionError::DuplicateProof { node: staked[0].node });
    let broke = vec![staked[0].clone(), proofs[1].clone()];
    check(&broke, 3, SortitionError::NoStake { node: proofs[1].node, stake: Amount::ZERO });
    // Fewer proofs than seats: a smaller committee, quorum of its real size.
    let small = verify_and_select(&a.set, &seed, 2, &staked, 5).unwrap();
    assert_eq!((small.len(), small.is_full(), small.quorum()), (3, false, 2));
}

#[test]
fn withholding_a_winning_proof_only_removes_the_withholder() {
    let a = net(40, &[1, 3]);
    let seed = EpochSeed::genesis("withhold");
    let proofs = all_proofs(&a, &seed, 9);
    let ranking = oracle(&a, &proofs, 40);
    let full = verify_and_select(&a.set, &seed, 9, &proofs, 10).unwrap();
    for withheld in [ranking[0], ranking[4], ranking[9]] {
        let rest: Vec<Proof> = proofs.iter().filter(|p| p.node != withheld).cloned().collect();
        let c = verify_and_select(&a.set, &seed, 9, &rest, 10).unwrap();
        let mut want: Vec<NodeId> = full.ids().into_iter().filter(|id| *id != withheld).collect();
        want.push(ranking[10]);
        assert_eq!(c.ids(), want, "the 11th best takes the seat, nobody else moves");
    }
    // Withholding a losing proof changes nothing.
    let rest: Vec<Proof> = proofs.iter().filter(|p| p.node != ranking[30]).cloned().collect();
    assert_eq!(verify_and_select(&a.set, &seed, 9, &rest, 10).unwrap(), full);
}

#[test]
fn the_publish_threshold_lets_enough_nodes_speak() {
    let a = net(300, &[1, 2, 5, 10]);
    let mut seed = EpochSeed::genesis("threshold");
    for epoch in 1..=4 {
        let proofs = all_proofs(&a, &seed, epoch);
        // Small committees need a wide margin: 40 expected, std about 6.
        let th = a.set.publish_threshold(20, 100);
        let published: Vec<Proof> = proofs.iter().filter(|p| th.admits(&a.set.ticket(p).unwrap())).cloned().collect();
        assert!((20..=70).contains(&published.len()), "epoch {epoch}: {} published", published.len());
        // With enough publishers, the committee is the one over all candidates.
        let c = verify_and_select(&a.set, &seed, epoch, &published, 20).unwrap();
        assert_eq!(c, verify_and_select(&a.set, &seed, epoch, &proofs, 20).unwrap());
        seed = EpochSeed::next(&c);
    }
    // Everybody publishes when the seats (with margin) exceed the candidates.
    assert_eq!(a.set.publish_threshold(290, 25).tau, f64::INFINITY);
}

#[test]
fn the_threshold_targets_the_expected_number_of_publishers() {
    // 20,000 candidates with skewed stakes; tickets from uniform hashes.
    let candidates: Vec<Candidate> = (0..20_000u64)
        .map(|i| Candidate {
            id: NodeId(*blake3::hash(&i.to_be_bytes()).as_bytes()),
            vrf_public: [0; 32],
            stake: Amount::ath([1, 10, 100, 1000][(i % 4) as usize]),
            history: History::default(),
        })
        .collect();
    let set = CandidateSet::new(candidates, HistoryRule::default()).unwrap();
    let th = set.publish_threshold(500, 25);
    let mut admitted = 0;
    for (k, c) in set.candidates().iter().enumerate() {
        let u = u64::from_le_bytes(blake3::hash(&(k as u64).to_le_bytes()).as_bytes()[..8].try_into().unwrap());
        admitted += th.admits(&Ticket::new(u, set.weight(c))) as usize;
    }
    // Expected at least 625 (the bound is a lower bound), std about 25.
    assert!((560..=760).contains(&admitted), "{admitted}");
}

#[test]
fn recorded_history_shifts_weight_to_those_selected_less() {
    let mut a = net(30, &[4]);
    let seed = EpochSeed::genesis("history");
    let proofs = all_proofs(&a, &seed, 1);
    let c = verify_and_select(&a.set, &seed, 1, &proofs, 10).unwrap();
    let before = a.set.weight(a.set.get(&c.members[0].id).unwrap());
    a.set.record(&c).unwrap();
    assert_eq!(a.set.recorded_epoch(), Some(1));
    let member = a.set.get(&c.members[0].id).unwrap();
    assert_eq!(member.history.selected, 1);
    let outsider = a.set.candidates().iter().find(|x| !c.contains(&x.id)).unwrap();
    assert!(a.set.weight(member) < before, "a member weighs less after its seat");
    assert!(a.set.weight(outsider) > before, "an outsider weighs more after missing out");
    let id = outsider.id;
    assert_eq!(a.set.record(&c).unwrap_err(), SortitionError::AlreadyRecorded { last: 1, found: 1 });
    // A snapshot (JSON) restores the same weights.
    let snapshot: Vec<Candidate> = serde_json::from_str(&serde_json::to_string(a.set.candidates()).unwrap()).unwrap();
    let restored = CandidateSet::restore(snapshot, a.set.rule(), a.set.accumulator(), a.set.recorded_epoch()).unwrap();
    for x in a.set.candidates() {
        assert_eq!(restored.weight(restored.get(&x.id).unwrap()), a.set.weight(x));
    }

    // A stake change keeps the deficit; a newcomer starts even; removal works.
    let deficit = |s: &CandidateSet| {
        let c = s.get(&id).unwrap();
        c.history.deficit_q64(history::units(c.stake), s.accumulator())
    };
    let d = deficit(&a.set);
    a.set.set_stake(&id, Amount::ath(40)).unwrap();
    assert_eq!(deficit(&a.set), d);
    let fresh = CommitteeKey::from_identity(&identity(1000));
    a.set.insert(fresh.node(), fresh.public(), Amount::ath(4)).unwrap();
    let f = a.set.get(&fresh.node()).unwrap();
    assert_eq!(f.history.deficit_q64(4, a.set.accumulator()), 0);
    assert_eq!(a.set.weight(f), 4 << 16);
    assert_eq!(
        a.set.insert(fresh.node(), fresh.public(), Amount::ath(4)).unwrap_err(),
        SortitionError::DuplicateCandidate { node: fresh.node() }
    );
    assert_eq!(a.set.total_units(), 29 * 4 + 40 + 4);
    a.set.remove(&fresh.node()).unwrap();
    assert_eq!(a.set.total_units(), 29 * 4 + 40);
    assert!(a.set.get(&fresh.node()).is_none());
}

#[test]
fn seeds_chain_through_committee_outputs() {
    let a = net(20, &[1]);
    let s0 = EpochSeed::genesis("chain");
    assert_ne!(s0, EpochSeed::genesis("other"));
    let proofs = all_proofs(&a, &s0, 1);
    let c = verify_and_select(&a.set, &s0, 1, &proofs, 5).unwrap();
    let s1 = EpochSeed::next(&c);
    assert_ne!(s1, s0);
    let mut shuffled = c.clone();
    shuffled.members.reverse();
    assert_eq!(EpochSeed::next(&shuffled), s1, "member order does not matter");
    let mut fewer = c.clone();
    fewer.members.pop();
    assert_ne!(EpochSeed::next(&fewer), s1, "every output counts");
    // The next epoch's committee is a fresh draw.
    let c2 = verify_and_select(&a.set, &s1, 2, &all_proofs(&a, &s1, 2), 5).unwrap();
    assert_ne!(c2.ids(), c.ids());
}

#[test]
fn the_best_ranked_bad_proof_is_named_however_the_work_is_split() {
    // 150 proofs: verified in several batches on a multi-core machine.
    let a = net(150, &[1, 2]);
    let seed = EpochSeed::genesis("culprit");
    let proofs = all_proofs(&a, &seed, 1);
    let ranking = oracle(&a, &proofs, 150);
    let forge = |p: &mut Proof| p.proof[64] ^= 1;
    for (bad, named) in [(vec![140usize, 20], 20usize), (vec![3, 149], 3), (vec![75], 75)] {
        let mut ps = proofs.clone();
        for &r in &bad {
            let pos = ps.iter().position(|p| p.node == ranking[r]).unwrap();
            forge(&mut ps[pos]);
        }
        let err = verify_and_select(&a.set, &seed, 1, &ps, 150).unwrap_err();
        assert_eq!(err, SortitionError::BadProof { node: ranking[named], fault: ProofFault::Equation });
        // A forged proof ranked below the seats cannot matter and is not checked.
        if bad == [75] {
            assert_eq!(verify_and_select(&a.set, &seed, 1, &ps, 50).unwrap().len(), 50);
        }
    }
}
