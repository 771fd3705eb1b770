//! Verifying published proofs and determining the committee.

use dci_model::{Amount, NodeId};
use serde::{Deserialize, Serialize};

use crate::candidates::CandidateSet;
use crate::par::map_chunks;
use crate::quorum::quorum;
use crate::ticket::{Ticket, select};
use crate::vrf::{EpochSeed, Proof, ProofFault, decode, input_point, uniform_of, verify_many, verify_one};

/// Why proofs or a committee are refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SortitionError {
    /// A committee must have at least one seat.
    #[error("expected a committee size of at least 1, found 0")]
    ZeroSize,
    /// Nobody published.
    #[error("expected at least one published proof, found none")]
    NoProofs,
    /// A proof for another epoch.
    #[error("expected proofs for epoch {expected}, found one for epoch {found} from node {node}")]
    WrongEpoch {
        /// Who published it.
        node: NodeId,
        /// The epoch being selected.
        expected: u64,
        /// The epoch the proof names.
        found: u64,
    },
    /// A proof from a node that is not a candidate.
    #[error("expected proofs from registered candidates, found one from unknown node {node}")]
    UnknownNode {
        /// The unknown node.
        node: NodeId,
    },
    /// Two proofs from one node.
    #[error("expected one proof per node, found two from node {node}")]
    DuplicateProof {
        /// The node.
        node: NodeId,
    },
    /// A proof from a candidate without sortition weight.
    #[error("expected a candidate with at least 1 ATH of stake, found node {node} with {stake} ATH")]
    NoStake {
        /// The node.
        node: NodeId,
        /// Its stake.
        stake: Amount,
    },
    /// A proof that does not verify.
    #[error("expected a valid vrf proof from node {node}, found {fault}")]
    BadProof {
        /// Who published it.
        node: NodeId,
        /// What is wrong.
        fault: ProofFault,
    },
    /// The candidate list names a node twice.
    #[error("expected candidates with distinct ids, found node {node} twice")]
    DuplicateCandidate {
        /// The node.
        node: NodeId,
    },
    /// The history rule is out of bounds.
    #[error("invalid history rule: {0}")]
    InvalidRule(String),
    /// Recording an epoch again or out of order.
    #[error("expected a committee for an epoch after {last}, found epoch {found}")]
    AlreadyRecorded {
        /// The last recorded epoch.
        last: u64,
        /// The committee's epoch.
        found: u64,
    },
}

/// A committee member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node.
    pub id: NodeId,
    /// Its sortition weight this epoch.
    pub weight: u64,
    /// Its VRF public key.
    #[serde(with = "crate::hexser")]
    pub vrf_public: [u8; 32],
    /// Its verified VRF output.
    #[serde(with = "crate::hexser")]
    pub output: [u8; 32],
    /// Its ticket (the key `exp / weight` ranks members).
    pub ticket: Ticket,
}

/// An epoch's committee, members best ticket first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committee {
    /// The epoch.
    pub epoch: u64,
    /// The epoch's seed.
    pub seed: EpochSeed,
    /// The seats asked for; fewer members means fewer valid proofs were published.
    pub target_size: usize,
    /// The members.
    pub members: Vec<Member>,
}

impl Committee {
    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// No members?
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Were all seats filled?
    pub fn is_full(&self) -> bool {
        self.members.len() >= self.target_size
    }

    /// The member `id`.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == *id)
    }

    /// Is `id` a member?
    pub fn contains(&self, id: &NodeId) -> bool {
        self.member(id).is_some()
    }

    /// Member ids, best ticket first (what `dci-ledger`'s slash check takes).
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// Signatures needed for a penalty: `ceil(2n/3)` of the actual members.
    pub fn quorum(&self) -> usize {
        quorum(self.members.len())
    }
}

/// Checks one proof on its own (for a node accepting proofs from the
/// network before it gossips them) and returns its verified ticket.
pub fn verify_proof(set: &CandidateSet, seed: &EpochSeed, epoch: u64, proof: &Proof) -> Result<Ticket, SortitionError> {
    if proof.epoch != epoch {
        return Err(SortitionError::WrongEpoch { node: proof.node, expected: epoch, found: proof.epoch });
    }
    let c = set.get(&proof.node).ok_or(SortitionError::UnknownNode { node: proof.node })?;
    let weight = set.weight(c);
    if weight == 0 {
        return Err(SortitionError::NoStake { node: c.id, stake: c.stake });
    }
    let bad = |fault| SortitionError::BadProof { node: proof.node, fault };
    let d = decode(&input_point(seed, epoch), &c.vrf_public, proof).map_err(bad)?;
    verify_one(&d).map_err(bad)?;
    Ok(Ticket::new(uniform_of(&c.vrf_public, &proof.output), weight))
}

/// Determines and verifies the committee of `epoch`: the `size` published
/// proofs with the smallest keys, each verified.
///
/// Every proof is checked for its epoch, a registered node with stake and
/// uniqueness; the proofs are then ranked by the tickets their outputs claim,
/// and the best `size` are verified cryptographically (in one batch per core).
/// Proofs ranked below them cannot change the committee and are not
/// verified. Any failure refuses the whole set, naming the best-ranked
/// offending node (the same on every machine); a network node filters
/// proofs one by one with [`verify_proof`] before they enter the set it
/// selects from.
///
/// Fewer than `size` proofs give a smaller committee ([`Committee::is_full`]
/// is false) whose quorum is two thirds of its actual members.
pub fn verify_and_select(
    set: &CandidateSet,
    seed: &EpochSeed,
    epoch: u64,
    proofs: &[Proof],
    size: usize,
) -> Result<Committee, SortitionError> {
    if size == 0 {
        return Err(SortitionError::ZeroSize);
    }
    if proofs.is_empty() {
        return Err(SortitionError::NoProofs);
    }
    let candidates = set.candidates();
    // Per proof (both cores): (ticket, candidate index, proof position), or
    // the first refusal in proof order.
    let ranked = map_chunks(proofs, 256, |offset, chunk| {
        let mut out = Vec::with_capacity(chunk.len());
        for (k, p) in chunk.iter().enumerate() {
            if p.epoch != epoch {
                return Err(SortitionError::WrongEpoch { node: p.node, expected: epoch, found: p.epoch });
            }
            let i = set.index_of(&p.node).ok_or(SortitionError::UnknownNode { node: p.node })?;
            let c = &candidates[i];
            let weight = set.weight_at(i);
            if weight == 0 {
                return Err(SortitionError::NoStake { node: c.id, stake: c.stake });
            }
            out.push((Ticket::new(uniform_of(&c.vrf_public, &p.output), weight), i as u32, (offset + k) as u32));
        }
        Ok(out)
    });
    let mut items: Vec<(Ticket, u32)> = Vec::with_capacity(proofs.len());
    let mut position: Vec<(u32, u32)> = Vec::with_capacity(proofs.len());
    for chunk in ranked {
        for (ticket, i, pos) in chunk? {
            items.push((ticket, i));
            position.push((i, pos));
        }
    }
    position.sort_unstable();
    if let Some(w) = position.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(SortitionError::DuplicateProof { node: candidates[w[0].0 as usize].id });
    }
    let proof_of = |i: u32| -> &Proof {
        let k = position.binary_search_by(|(c, _)| c.cmp(&i)).unwrap_or_else(|_| unreachable!("indexed above"));
        &proofs[position[k].1 as usize]
    };

    let winners: Vec<(Ticket, u32)> = select(&mut items, size).to_vec();
    let input = input_point(seed, epoch);
    let outcomes = map_chunks(&winners, 64, |offset, chunk| {
        // The first proof of the chunk that fails on its own, whether it does
        // not decode or does not verify: independent of the chunking.
        let mut decoded = Vec::with_capacity(chunk.len());
        let mut undecodable = None;
        for (k, &(_, i)) in chunk.iter().enumerate() {
            match decode(&input, &candidates[i as usize].vrf_public, proof_of(i)) {
                Ok(d) => decoded.push(d),
                Err(f) => {
                    undecodable = Some((k, f));
                    break;
                }
            }
        }
        verify_many(&decoded).and(undecodable.map_or(Ok(()), Err)).map_err(|(k, f)| (offset + k, f))
    });
    if let Some((rank, fault)) = outcomes.into_iter().filter_map(Result::err).min_by_key(|e| e.0) {
        return Err(SortitionError::BadProof { node: candidates[winners[rank].1 as usize].id, fault });
    }

    let members = winners
        .iter()
        .map(|&(ticket, i)| {
            let c = &candidates[i as usize];
            Member { id: c.id, weight: ticket.weight, vrf_public: c.vrf_public, output: proof_of(i).output, ticket }
        })
        .collect();
    Ok(Committee { epoch, seed: *seed, target_size: size, members })
}
