//! The committee of a running network, epoch after epoch (R-CK7), on the
//! wire types of `dci-proto`.
//!
//! [`EpochCoordinator`] is the sans-IO state machine an epoch clock drives:
//! [`EpochCoordinator::open`] freezes the candidates (stakes read from the
//! ledger) and names the seed; checkers answer with proofs
//! ([`EpochCoordinator::proof`], each verified on arrival);
//! [`EpochCoordinator::close`] selects, records the history and derives the
//! next seed, returning a [`CommitteeAnnouncement`]. Anyone holding the
//! announcement gets the same committee from [`recompute`]: the indexers
//! route inspections with it, the CLI re-derives it to show it was not
//! made up.
//!
//! [`assign_one`] gives one target to one member by rendezvous hashing over
//! the seed: random, recomputable, and independent of which other targets
//! exist (containers register mid-epoch; [`crate::assign_targets`] balances
//! a known list exactly).

use std::collections::BTreeMap;

use dci_model::{Amount, NodeId};
use dci_proto::{CommitteeAnnouncement, CommitteeCandidate, SortitionProof};

use crate::candidates::{Candidate, CandidateSet};
use crate::history::{History, HistoryRule};
use crate::select::{Committee, SortitionError, verify_and_select, verify_proof};
use crate::vrf::{EpochSeed, Proof};

/// A checker offering itself for the committee: the registry entry the
/// coordinator reads at each epoch start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The checker.
    pub id: NodeId,
    /// Where it receives node messages.
    pub addr: String,
    /// Its VRF public key.
    pub vrf_public: [u8; 32],
    /// Its bonded checker stake now.
    pub stake: Amount,
}

struct Open {
    epoch: u64,
    frozen: CandidateSet,
    addrs: BTreeMap<NodeId, String>,
    proofs: BTreeMap<NodeId, Proof>,
}

/// The epoch clock's committee state. See the module docs.
pub struct EpochCoordinator {
    set: CandidateSet,
    seed: EpochSeed,
    size: usize,
    open: Option<Open>,
    current: Option<(CommitteeAnnouncement, Committee)>,
}

impl EpochCoordinator {
    /// A coordinator at genesis of `network` with `size` seats.
    pub fn new(network: &str, size: usize) -> Result<EpochCoordinator, SortitionError> {
        if size == 0 {
            return Err(SortitionError::ZeroSize);
        }
        let set = CandidateSet::new(Vec::new(), HistoryRule::default())?;
        Ok(EpochCoordinator { set, seed: EpochSeed::genesis(network), size, open: None, current: None })
    }

    /// Opens `epoch` with the checkers registered now (candidates with less
    /// than 1 ATH of stake cannot be selected and are left out). Returns the
    /// seed to send them. An epoch still open is abandoned.
    pub fn open(&mut self, epoch: u64, registered: &[Registered]) -> Result<EpochSeed, SortitionError> {
        let mut addrs = BTreeMap::new();
        for r in registered.iter().filter(|r| crate::history::units(r.stake) > 0) {
            match self.set.get(&r.id) {
                Some(c) if c.stake != r.stake => self.set.set_stake(&r.id, r.stake)?,
                Some(_) => {}
                None => self.set.insert(r.id, r.vrf_public, r.stake)?,
            }
            addrs.insert(r.id, r.addr.clone());
        }
        let gone: Vec<NodeId> =
            self.set.candidates().iter().map(|c| c.id).filter(|id| !addrs.contains_key(id)).collect();
        for id in gone {
            self.set.remove(&id)?;
        }
        self.open = Some(Open { epoch, frozen: self.set.clone(), addrs, proofs: BTreeMap::new() });
        Ok(self.seed)
    }

    /// The open epoch and the checkers asked to prove, with their addresses.
    pub fn asked(&self) -> Option<(u64, Vec<(NodeId, String)>)> {
        self.open.as_ref().map(|o| (o.epoch, o.addrs.iter().map(|(id, a)| (*id, a.clone())).collect()))
    }

    /// Accepts one proof for the open epoch after verifying it alone.
    /// Returns how many candidates have not answered yet.
    pub fn proof(&mut self, from: NodeId, epoch: u64, wire: &SortitionProof) -> Result<usize, SortitionError> {
        let open = self.open.as_mut().ok_or(SortitionError::NoProofs)?;
        let proof = from_wire(wire, epoch)?;
        if proof.node != from {
            return Err(SortitionError::UnknownNode { node: from });
        }
        if epoch != open.epoch {
            return Err(SortitionError::WrongEpoch { node: from, expected: open.epoch, found: epoch });
        }
        verify_proof(&open.frozen, &self.seed, epoch, &proof)?;
        if open.proofs.insert(from, proof).is_some() {
            return Err(SortitionError::DuplicateProof { node: from });
        }
        Ok(open.frozen.len().saturating_sub(open.proofs.len()))
    }

    /// Closes the open epoch: selects its committee from the proofs
    /// received, records it into the history and moves to the next seed.
    pub fn close(&mut self) -> Result<(CommitteeAnnouncement, Committee), SortitionError> {
        let open = self.open.take().ok_or(SortitionError::NoProofs)?;
        let proofs: Vec<Proof> = open.proofs.into_values().collect();
        let committee = verify_and_select(&open.frozen, &self.seed, open.epoch, &proofs, self.size)?;
        let announcement = announce(&open.frozen, &open.addrs, &self.seed, open.epoch, self.size, &proofs);
        self.set.record(&committee)?;
        self.seed = EpochSeed::next(&committee);
        self.current = Some((announcement.clone(), committee.clone()));
        Ok((announcement, committee))
    }

    /// The last committee formed, with its announcement.
    pub fn current(&self) -> Option<&(CommitteeAnnouncement, Committee)> {
        self.current.as_ref()
    }
}

fn announce(
    set: &CandidateSet,
    addrs: &BTreeMap<NodeId, String>,
    seed: &EpochSeed,
    epoch: u64,
    size: usize,
    proofs: &[Proof],
) -> CommitteeAnnouncement {
    CommitteeAnnouncement {
        epoch,
        seed: seed.0,
        size: u32::try_from(size).unwrap_or(u32::MAX),
        accumulator: set.accumulator(),
        recorded: set.recorded_epoch(),
        candidates: set
            .candidates()
            .iter()
            .map(|c| CommitteeCandidate {
                id: c.id,
                addr: addrs.get(&c.id).cloned().unwrap_or_default(),
                vrf_public: c.vrf_public,
                stake: c.stake,
                selected: c.history.selected,
                offset: c.history.offset,
            })
            .collect(),
        proofs: proofs
            .iter()
            .map(|p| SortitionProof { node: p.node, output: p.output, proof: p.proof.to_vec() })
            .collect(),
    }
}

fn from_wire(wire: &SortitionProof, epoch: u64) -> Result<Proof, SortitionError> {
    let proof: [u8; 96] = wire
        .proof
        .as_slice()
        .try_into()
        .map_err(|_| SortitionError::BadProof { node: wire.node, fault: crate::vrf::ProofFault::InvalidEncoding })?;
    Ok(Proof { node: wire.node, epoch, output: wire.output, proof })
}

/// The committee an announcement determines, recomputed from scratch with
/// the default history rule: every proof is verified again.
pub fn recompute(a: &CommitteeAnnouncement) -> Result<Committee, SortitionError> {
    let candidates = a
        .candidates
        .iter()
        .map(|c| Candidate {
            id: c.id,
            vrf_public: c.vrf_public,
            stake: c.stake,
            history: History { selected: c.selected, offset: c.offset },
        })
        .collect();
    let set = CandidateSet::restore(candidates, HistoryRule::default(), a.accumulator, a.recorded)?;
    let proofs = a.proofs.iter().map(|p| from_wire(p, a.epoch)).collect::<Result<Vec<_>, _>>()?;
    verify_and_select(&set, &EpochSeed(a.seed), a.epoch, &proofs, a.size as usize)
}

/// The member that inspects `target` this epoch: the highest
/// `blake3(seed ‖ epoch ‖ target ‖ member)`, skipping the target itself.
/// `None` for an empty committee.
pub fn assign_one(committee: &Committee, target: &NodeId) -> Option<NodeId> {
    committee.members.iter().map(|m| m.id).filter(|m| m != target).max_by_key(|m| {
        let mut h = blake3::Hasher::new_derive_key("dci-committee assign-one v1");
        h.update(&committee.seed.0);
        h.update(&committee.epoch.to_be_bytes());
        h.update(&target.0);
        h.update(&m.0);
        *h.finalize().as_bytes()
    })
}
