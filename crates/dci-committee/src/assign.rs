//! Assigning inspection targets to committee members (R-CK7): random, but
//! anyone can recompute it from the committee, the seed and the target list.
//!
//! Targets (sorted and deduplicated, so their order does not matter) and
//! members (in id order) are shuffled by Fisher–Yates with a stream from
//! `blake3::derive_key("dci-committee assign v1", seed ‖ epoch)`. The j-th
//! shuffled target goes to `replicas` consecutive members starting at
//! `j · replicas` (mod n), skipping a member that is the target itself, so
//! loads differ by at most one assignment per member (before skips) and the
//! replicas of one target are distinct members.

use dci_model::NodeId;
use serde::{Deserialize, Serialize};

use crate::select::Committee;
use crate::vrf::EpochSeed;

/// One member inspects one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Assignment {
    /// The committee member.
    pub member: NodeId,
    /// The container it inspects.
    pub target: NodeId,
}

/// Assigns every target to `replicas` distinct members (fewer if the
/// committee is smaller). Empty if the committee or the targets are.
pub fn assign_targets(committee: &Committee, seed: &EpochSeed, targets: &[NodeId], replicas: usize) -> Vec<Assignment> {
    let mut targets = targets.to_vec();
    targets.sort_unstable();
    targets.dedup();
    let mut members = committee.ids();
    members.sort_unstable();
    let n = members.len();
    if n == 0 || targets.is_empty() || replicas == 0 {
        return Vec::new();
    }
    let mut h = blake3::Hasher::new_derive_key("dci-committee assign v1");
    h.update(&seed.0);
    h.update(&committee.epoch.to_be_bytes());
    let mut stream = Stream(h.finalize_xof());
    stream.shuffle(&mut targets);
    stream.shuffle(&mut members);
    let r = replicas.min(n);
    let mut out = Vec::with_capacity(targets.len() * r);
    for (j, t) in targets.iter().enumerate() {
        let start = (j * r) % n;
        let chosen = (0..n).map(|k| members[(start + k) % n]).filter(|m| m != t).take(r);
        out.extend(chosen.map(|member| Assignment { member, target: *t }));
    }
    out
}

struct Stream(blake3::OutputReader);

impl Stream {
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// Uniform in `0..n` (`n > 0`), by rejection.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}
