//! The public candidate registry: who may be selected, with which VRF key,
//! stake and history, and the epoch-to-epoch bookkeeping of the history term.

use dci_model::{Amount, NodeId};
use serde::{Deserialize, Serialize};

use crate::history::{History, HistoryRule, accrual, units};
use crate::par::map_chunks;
use crate::select::{Committee, SortitionError};
use crate::ticket::Ticket;
use crate::vrf::{Proof, uniform_of};

/// A node that may be selected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The node (its ed25519 public key).
    pub id: NodeId,
    /// Its registered VRF public key ([`crate::CommitteeKey::public`]).
    #[serde(with = "crate::hexser")]
    pub vrf_public: [u8; 32],
    /// Its bonded checker stake.
    pub stake: Amount,
    /// Its public selection history.
    pub history: History,
}

/// The advisory publish threshold of an epoch: a node publishes its proof if
/// its key `−ln(u) / w` is below `tau`. Chosen so that at least `target`
/// nodes are expected to publish. Floats are fine here: the threshold only
/// decides who speaks, never who is selected (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Threshold {
    /// The key bound (`f64::INFINITY`: everybody publishes).
    pub tau: f64,
    /// The expected number of publishers it aims at: `size · (1 + margin)`.
    pub target: f64,
}

impl Threshold {
    /// Should a node holding `ticket` publish?
    pub fn admits(&self, ticket: &Ticket) -> bool {
        ticket.weight > 0 && ticket.key() < self.tau
    }
}

/// The candidates of an epoch, sorted by id, with the history accumulator.
///
/// Besides the candidates it keeps compact arrays of each one's id prefix
/// (for look-ups that stay in cache), stake units and history offset (so the
/// pass over all weights reads 24 bytes per candidate).
#[derive(Clone, Debug)]
pub struct CandidateSet {
    candidates: Vec<Candidate>,
    prefixes: Vec<u64>,
    units: Vec<u64>,
    offsets: Vec<i128>,
    rule: HistoryRule,
    accumulator: u128,
    total_units: u128,
    recorded: Option<u64>,
}

impl CandidateSet {
    /// A registry at its start (accumulator 0, no epoch recorded).
    pub fn new(candidates: Vec<Candidate>, rule: HistoryRule) -> Result<CandidateSet, SortitionError> {
        CandidateSet::restore(candidates, rule, 0, None)
    }

    /// A registry from a snapshot: the candidates (any order, with their
    /// histories), the rule, the accumulator and the last recorded epoch.
    pub fn restore(
        mut candidates: Vec<Candidate>,
        rule: HistoryRule,
        accumulator: u128,
        recorded: Option<u64>,
    ) -> Result<CandidateSet, SortitionError> {
        rule.validate().map_err(SortitionError::InvalidRule)?;
        candidates.sort_unstable_by_key(|a| a.id);
        if let Some(w) = candidates.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(SortitionError::DuplicateCandidate { node: w[0].id });
        }
        let prefixes = candidates.iter().map(|c| prefix(&c.id)).collect();
        let units: Vec<u64> = candidates.iter().map(|c| units(c.stake)).collect();
        let offsets = candidates.iter().map(|c| c.history.offset).collect();
        let total_units = units.iter().map(|&u| u as u128).sum();
        Ok(CandidateSet { candidates, prefixes, units, offsets, rule, accumulator, total_units, recorded })
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    /// No candidates?
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// The candidates in id order.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The history rule.
    pub fn rule(&self) -> HistoryRule {
        self.rule
    }

    /// The accumulator (expected seats per stake unit so far, Q64).
    pub fn accumulator(&self) -> u128 {
        self.accumulator
    }

    /// The last epoch whose committee was recorded.
    pub fn recorded_epoch(&self) -> Option<u64> {
        self.recorded
    }

    /// Total stake in sortition units (whole ATH).
    pub fn total_units(&self) -> u128 {
        self.total_units
    }

    /// Position of `id` in id order.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        let p = prefix(id);
        let mut k = self.prefixes.partition_point(|&x| x < p);
        while k < self.prefixes.len() && self.prefixes[k] == p {
            if self.candidates[k].id == *id {
                return Some(k);
            }
            k += 1;
        }
        None
    }

    /// The candidate `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Candidate> {
        self.index_of(id).map(|i| &self.candidates[i])
    }

    /// A candidate's sortition weight now.
    pub fn weight(&self, c: &Candidate) -> u64 {
        self.rule.weight(units(c.stake), c.history.offset, self.accumulator)
    }

    /// The sortition weight of the candidate at `index` (in id order).
    pub(crate) fn weight_at(&self, index: usize) -> u64 {
        self.rule.weight(self.units[index], self.offsets[index], self.accumulator)
    }

    /// The unverified ticket a proof claims (for a node deciding whether to
    /// publish its own proof; verification happens in
    /// [`crate::verify_and_select`] / [`crate::verify_proof`]).
    pub fn ticket(&self, proof: &Proof) -> Result<Ticket, SortitionError> {
        let c = self.get(&proof.node).ok_or(SortitionError::UnknownNode { node: proof.node })?;
        Ok(Ticket::new(uniform_of(&c.vrf_public, &proof.output), self.weight(c)))
    }

    /// The publish threshold for a committee of `size` with `margin_pct`
    /// percent more publishers expected than seats. One pass over all
    /// weights (both cores); see the crate docs for the math.
    pub fn publish_threshold(&self, size: usize, margin_pct: u32) -> Threshold {
        let target = size as f64 * (100.0 + margin_pct as f64) / 100.0;
        let sums = map_chunks(&self.units, 1 << 16, |off, us| {
            let (mut n, mut w1, mut w2) = (0usize, 0f64, 0f64);
            for (&u, &o) in us.iter().zip(&self.offsets[off..off + us.len()]) {
                let w = self.rule.weight(u, o, self.accumulator);
                if w > 0 {
                    // Weights stay below 2^61: the signed conversion is exact enough and cheap.
                    let w = w as i64 as f64;
                    n += 1;
                    w1 += w;
                    w2 += w * w;
                }
            }
            (n, w1, w2)
        });
        let (n, w1, w2) = sums.iter().fold((0, 0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1, a.2 + s.2));
        if target >= n as f64 || w1 <= 0.0 {
            return Threshold { tau: f64::INFINITY, target };
        }
        // Σ(1 − e^{−w τ}) ≥ Σ(w τ − (w τ)²/2) = τ W − τ² Q / 2; solve = target.
        let disc = w1 * w1 - 2.0 * w2 * target;
        if disc >= 0.0 {
            return Threshold { tau: 2.0 * target / (w1 + disc.sqrt()), target };
        }
        // A few nodes hold most of the weight: solve Σ(1 − e^{−w τ}) = target exactly.
        let expected = |tau: f64| -> f64 {
            (0..self.len()).map(|i| self.weight_at(i) as f64).filter(|&w| w > 0.0).map(|w| -(-w * tau).exp_m1()).sum()
        };
        let mut lo = target / w1;
        let mut hi = 2.0 * lo;
        while expected(hi) < target && hi.is_finite() {
            lo = hi;
            hi *= 2.0;
        }
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if expected(mid) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Threshold { tau: hi, target }
    }

    /// Records an epoch's committee into the history: every member's count
    /// goes up by one and every candidate's expected seats by its share of the
    /// committee's seats. Epochs must be recorded in increasing order.
    pub fn record(&mut self, committee: &Committee) -> Result<(), SortitionError> {
        if let Some(last) = self.recorded
            && committee.epoch <= last
        {
            return Err(SortitionError::AlreadyRecorded { last, found: committee.epoch });
        }
        let mut idx = Vec::with_capacity(committee.members.len());
        for m in &committee.members {
            idx.push(self.index_of(&m.id).ok_or(SortitionError::UnknownNode { node: m.id })?);
        }
        for i in idx {
            self.candidates[i].history.won();
            self.offsets[i] = self.candidates[i].history.offset;
        }
        self.accumulator = self.accumulator.saturating_add(accrual(committee.members.len(), self.total_units));
        self.recorded = Some(committee.epoch);
        Ok(())
    }

    /// Changes a candidate's stake, first folding the seats it was expected
    /// at its old stake into its history.
    pub fn set_stake(&mut self, id: &NodeId, stake: Amount) -> Result<(), SortitionError> {
        let i = self.index_of(id).ok_or(SortitionError::UnknownNode { node: *id })?;
        let (old, new) = (self.units[i], units(stake));
        let c = &mut self.candidates[i];
        c.history.restake(old, new, self.accumulator);
        c.stake = stake;
        self.offsets[i] = c.history.offset;
        self.units[i] = new;
        self.total_units = self.total_units - old as u128 + new as u128;
        Ok(())
    }

    /// Adds a candidate with a fresh history (it starts even).
    pub fn insert(&mut self, id: NodeId, vrf_public: [u8; 32], stake: Amount) -> Result<(), SortitionError> {
        match self.candidates.binary_search_by(|c| c.id.cmp(&id)) {
            Ok(_) => Err(SortitionError::DuplicateCandidate { node: id }),
            Err(pos) => {
                let u = units(stake);
                let history = History::starting_at(u, self.accumulator);
                self.candidates.insert(pos, Candidate { id, vrf_public, stake, history });
                self.prefixes.insert(pos, prefix(&id));
                self.units.insert(pos, u);
                self.offsets.insert(pos, history.offset);
                self.total_units += u as u128;
                Ok(())
            }
        }
    }

    /// Removes a candidate.
    pub fn remove(&mut self, id: &NodeId) -> Result<Candidate, SortitionError> {
        let i = self.index_of(id).ok_or(SortitionError::UnknownNode { node: *id })?;
        let c = self.candidates.remove(i);
        self.prefixes.remove(i);
        self.offsets.remove(i);
        self.total_units -= self.units.remove(i) as u128;
        Ok(c)
    }
}

/// The first 8 bytes of an id as a number: ordered like the ids.
fn prefix(id: &NodeId) -> u64 {
    u64::from_be_bytes(id.0[..8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: u8, rest: u8) -> NodeId {
        let mut b = [prefix; 32];
        b[31] = rest;
        NodeId(b)
    }

    #[test]
    fn look_ups_find_ids_that_share_a_prefix() {
        let ids = [id(1, 0), id(7, 3), id(7, 1), id(7, 2), id(9, 0), id(255, 255)];
        let cs = ids
            .iter()
            .map(|&id| Candidate { id, vrf_public: [0; 32], stake: Amount::ath(1), history: History::default() })
            .collect();
        let mut set = CandidateSet::new(cs, HistoryRule::default()).unwrap();
        for x in ids {
            assert_eq!(set.get(&x).map(|c| c.id), Some(x));
        }
        for missing in [id(0, 0), id(7, 0), id(7, 4), id(8, 0), id(255, 254)] {
            assert!(set.get(&missing).is_none(), "{missing:?}");
        }
        set.insert(id(7, 0), [0; 32], Amount::ath(2)).unwrap();
        set.remove(&id(7, 2)).unwrap();
        assert_eq!(set.get(&id(7, 0)).map(|c| c.stake), Some(Amount::ath(2)));
        assert!(set.get(&id(7, 2)).is_none());
        assert_eq!(set.get(&id(7, 3)).map(|c| c.id), Some(id(7, 3)));
        let order: Vec<NodeId> = set.candidates().iter().map(|c| c.id).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "kept in id order");
    }
}
