//! The committee duties of the gateway that holds the ledger (R-CK6, R-CK7):
//! each epoch it freezes the checkers' stakes, asks every checker for its
//! VRF proof, selects the committee and announces it to the indexer (which
//! recomputes it before routing inspections); and it collects penalty votes:
//! evidence of a failed, container-signed capacity transcript goes to every
//! member, each re-verifies it and signs the ledger's slash report, and the
//! ledger applies the report only with signatures of at least two thirds of
//! the committee.
//!
//! On a chain ledger each vote also carries the member's chain signature of
//! the same report, checked here against the member's registered signer (by
//! the [`ChainVerifier`] the node hands in, so this crate knows no EVM).
//!
//! Decisions stay where they belong: selection and assignment in
//! `dci-committee`, the re-verification in each checker, the quorum check in
//! the ledger. This module keeps the bookkeeping between them. A piece of
//! evidence is proposed at most once for as long as this gateway runs; the
//! ledger refuses a second slash of the same evidence ever.

use std::collections::{HashMap, HashSet, VecDeque};

use dci_committee::{Committee, EpochCoordinator, Registered, SortitionError};
use dci_ledger::{SlashReport, StakeRole};
use dci_model::{AccountId, Amount, NodeId, Timestamp};
use dci_proto::{ChainDomain, CommitteeAnnouncement, Evidence, Message, SortitionProof};
use serde::{Deserialize, Serialize};

use crate::config::CommitteeConfig;

/// Recovers the chain address that signed `report` for the ledger of
/// `domain` (65-byte r ‖ s ‖ v signature); `None` if it does not recover.
pub type ChainVerifier = fn(&ChainDomain, &SlashReport, &[u8]) -> Option<[u8; 20]>;

/// Recovers the chain address that signed "the committee of `epoch` is
/// `members`" for the ledger of `domain`; `None` if it does not recover.
pub type CommitteeVerifier = fn(&ChainDomain, u64, &[[u8; 20]], &[u8]) -> Option<[u8; 20]>;

/// What the duties need of a chain ledger: its domain, and how to recover
/// the EVM's signatures (handed in, so this crate knows no EVM).
#[derive(Clone, Copy, Debug)]
pub struct ChainHooks {
    /// The ledger contract.
    pub domain: ChainDomain,
    /// Recovers a penalty vote's chain signer.
    pub vote_signer: ChainVerifier,
    /// Recovers a committee signature's signer.
    pub committee_signer: CommitteeVerifier,
}

/// An epoch's committee being signed for the chain: its members' chain
/// signers and the signatures collected so far.
#[derive(Clone, Debug)]
pub struct Signing {
    /// The epoch.
    pub epoch: u64,
    /// Members' chain signers, in committee order.
    pub members: Vec<[u8; 20]>,
    /// Valid signatures so far, by checker.
    pub signatures: std::collections::BTreeMap<NodeId, Vec<u8>>,
    /// When the checkers were asked.
    pub asked_at: Timestamp,
}

/// A checker that offers itself for the committee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerSeat {
    /// Its node id.
    pub id: NodeId,
    /// Where it receives node messages.
    pub addr: String,
    /// Its VRF public key.
    pub vrf_public: [u8; 32],
    /// The address of its chain signing key, which a chain ledger's
    /// committee lists.
    pub chain_signer: [u8; 20],
}

/// What happened to one piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyRecord {
    /// When it was decided (or proposed, while pending).
    pub at: Timestamp,
    /// The container.
    pub container: NodeId,
    /// The epoch whose committee voted.
    pub epoch: u64,
    /// The evidence's hash.
    pub evidence_hash: [u8; 32],
    /// The checker that reported it.
    pub reporter: NodeId,
    /// Members whose signature was counted.
    pub signers: Vec<NodeId>,
    /// Signatures needed.
    pub quorum: usize,
    /// The penalty asked.
    pub asked: Amount,
    /// What the ledger took (zero while pending or if refused).
    pub taken: Amount,
    /// `slashed`, `pending` or why nothing was taken.
    pub outcome: String,
}

/// One candidate of the committee in force, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateView {
    /// Checker id.
    pub id: NodeId,
    /// Bonded checker stake.
    pub stake: Amount,
    /// Committees it sat on before.
    pub selected_before: u64,
    /// Selected this epoch?
    pub member: bool,
    /// Its sortition weight, when a member.
    pub weight: Option<u64>,
}

/// The committee in force and the penalties, as the API shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitteeView {
    /// The epoch.
    pub epoch: u64,
    /// Its seed.
    pub seed: [u8; 32],
    /// Seats asked for.
    pub size: usize,
    /// Signatures a penalty needs.
    pub quorum: usize,
    /// Members, best ticket first.
    pub members: Vec<NodeId>,
    /// Every candidate.
    pub candidates: Vec<CandidateView>,
    /// The announcement (postcard): anyone recomputes the committee from it.
    pub announcement: Vec<u8>,
    /// Decided penalties, oldest first, then the pending ones.
    pub penalties: Vec<PenaltyRecord>,
}

struct Proposal {
    report: SlashReport,
    committee: Vec<NodeId>,
    record: PenaltyRecord,
    /// The quorum was reached and the report went to the ledger.
    submitted: bool,
}

/// Messages to send: (address, message).
pub type Sends = Vec<(String, Message)>;

/// Penalty records kept for the API (the hashes of decided evidence are
/// all kept: a proposal is never made twice).
const KEEP_DECIDED: usize = 100;

/// The committee state the gateway keeps. See the module docs.
pub struct Duties {
    coordinator: EpochCoordinator,
    checkers: Vec<CheckerSeat>,
    /// Evidence that arrived before any committee existed.
    waiting: Vec<(NodeId, Evidence)>,
    /// Evidence whose container's stake is being read.
    asking: HashSet<[u8; 32]>,
    proposals: HashMap<[u8; 32], Proposal>,
    decided: VecDeque<PenaltyRecord>,
    decided_hashes: HashSet<[u8; 32]>,
    chain: Option<ChainHooks>,
    /// The committee being signed for the chain, if any.
    signing: Option<Signing>,
    /// The latest epoch whose committee is on chain (the genesis committee
    /// serves epoch 0).
    published: Option<u64>,
    /// Slashes that reached their quorum before their epoch's committee was
    /// on chain, by epoch.
    held: std::collections::BTreeMap<u64, Vec<(SlashReport, Vec<NodeId>)>>,
}

impl std::fmt::Debug for Duties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Duties")
            .field("checkers", &self.checkers.len())
            .field("pending", &self.proposals.len())
            .finish()
    }
}

impl Duties {
    /// Duties as `config` describes them.
    pub fn new(config: &CommitteeConfig) -> Result<Duties, SortitionError> {
        Ok(Duties {
            coordinator: EpochCoordinator::new(&config.network, config.size.max(1))?,
            checkers: config.checkers.clone(),
            waiting: Vec::new(),
            asking: HashSet::new(),
            proposals: HashMap::new(),
            decided: VecDeque::new(),
            decided_hashes: HashSet::new(),
            chain: config.chain,
            signing: None,
            published: config.chain.map(|_| 0),
            held: std::collections::BTreeMap::new(),
        })
    }

    /// The checkers that may sit on the committee from now on (the
    /// network changed): their stakes are read at the next epoch's opening.
    pub fn set_checkers(&mut self, checkers: Vec<CheckerSeat>) {
        self.checkers = checkers;
    }

    /// The checkers whose stakes an epoch's opening needs, in order.
    pub fn seats(&self) -> Vec<NodeId> {
        self.checkers.iter().map(|c| c.id).collect()
    }

    /// Opens `epoch` with `stakes` (one per [`Duties::seats`]); returns the
    /// `EpochOpen` messages to send.
    pub fn open(&mut self, epoch: u64, stakes: &[Amount]) -> Result<Sends, SortitionError> {
        let registered: Vec<Registered> = self
            .checkers
            .iter()
            .zip(stakes.iter().copied().chain(std::iter::repeat(Amount::ZERO)))
            .map(|(c, stake)| Registered { id: c.id, addr: c.addr.clone(), vrf_public: c.vrf_public, stake })
            .collect();
        let seed = self.coordinator.open(epoch, &registered)?;
        let (_, asked) = self.coordinator.asked().unwrap_or_default();
        Ok(asked.into_iter().map(|(_, addr)| (addr, Message::EpochOpen { epoch, seed: seed.0 })).collect())
    }

    /// A checker's proof.
    pub fn proof(&mut self, from: NodeId, epoch: u64, proof: &SortitionProof) -> Result<(), SortitionError> {
        self.coordinator.proof(from, epoch, proof).map(|_| ())
    }

    /// Closes the open epoch; returns the announcement (for the indexers)
    /// and the evidence that waited for a committee (to propose now).
    pub fn close(&mut self) -> Result<(CommitteeAnnouncement, Vec<(NodeId, Evidence)>), SortitionError> {
        let (announcement, _) = self.coordinator.close()?;
        Ok((announcement, std::mem::take(&mut self.waiting)))
    }

    /// Evidence from `reporter`. `Ok(Some(container))`: propose it once the
    /// container's stake is known ([`Duties::propose`]); `Ok(None)`: it
    /// waits for a committee, or was already proposed; `Err`: refused.
    pub fn evidence(&mut self, reporter: NodeId, evidence: &Evidence) -> Result<Option<NodeId>, String> {
        if !self.checkers.iter().any(|c| c.id == reporter) {
            return Err(format!("evidence from {}, which is not a checker of this network", reporter.short()));
        }
        let hash = evidence.hash();
        if self.asking.contains(&hash) || self.proposals.contains_key(&hash) || self.decided_hashes.contains(&hash) {
            return Ok(None);
        }
        if self.coordinator.current().is_none() {
            if !self.waiting.iter().any(|(_, e)| e.hash() == hash) {
                self.waiting.push((reporter, evidence.clone()));
            }
            return Ok(None);
        }
        self.asking.insert(hash);
        Ok(Some(evidence.container))
    }

    /// Proposes a penalty of `stake` for `evidence` to every member of the
    /// committee in force; a container with no stake is recorded as not
    /// proposed.
    pub fn propose(&mut self, now: Timestamp, reporter: NodeId, evidence: Evidence, stake: Amount) -> Sends {
        let hash = evidence.hash();
        self.asking.remove(&hash);
        let Some((announcement, committee)) = self.coordinator.current() else {
            self.waiting.push((reporter, evidence));
            return Vec::new();
        };
        let epoch = committee.epoch;
        let members = committee.ids();
        let mut record = PenaltyRecord {
            at: now,
            container: evidence.container,
            epoch,
            evidence_hash: hash,
            reporter,
            signers: Vec::new(),
            quorum: committee.quorum(),
            asked: stake,
            taken: Amount::ZERO,
            outcome: "pending".into(),
        };
        if stake.is_zero() {
            record.outcome = "not proposed: the container has no stake".into();
            self.decide(record);
            return Vec::new();
        }
        let addr_of: HashMap<NodeId, String> = announcement.candidates.iter().map(|c| (c.id, c.addr.clone())).collect();
        let chain = self.chain.map(|h| h.domain);
        let sends = members
            .iter()
            .filter_map(|m| addr_of.get(m))
            .map(|addr| {
                let msg = Message::PenaltyProposal { epoch, amount: stake, evidence: evidence.clone(), chain };
                (addr.clone(), msg)
            })
            .collect();
        let report = SlashReport {
            offender: AccountId::for_node(&evidence.container),
            role: StakeRole::Container,
            epoch,
            evidence_hash: hash,
            amount: stake,
            signatures: Vec::new(),
        };
        self.proposals.insert(hash, Proposal { report, committee: members, record, submitted: false });
        sends
    }

    /// A member's vote. `Ok(Some(..))` when the votes reach the quorum: the
    /// report to apply with the committee it is checked against. On a
    /// chain ledger a vote counts only with a chain signature by the
    /// member's registered chain signer; both signatures go into the report.
    pub fn vote(
        &mut self,
        from: NodeId,
        evidence_hash: [u8; 32],
        signature: Vec<u8>,
        chain_signature: Option<Vec<u8>>,
    ) -> Result<Option<(SlashReport, Vec<NodeId>)>, String> {
        let chain = self.chain;
        let signer = self.checkers.iter().find(|c| c.id == from).map(|c| c.chain_signer);
        let p = self.proposals.get_mut(&evidence_hash).ok_or("a vote for no pending proposal")?;
        if p.submitted {
            // Late votes are normal: the quorum needs only ⌈2n/3⌉ of n.
            return Ok(None);
        }
        if !p.committee.contains(&from) {
            return Err(format!("a vote from {}, which is not on the committee", from.short()));
        }
        if p.record.signers.contains(&from) {
            return Err(format!("a second vote from {}", from.short()));
        }
        if !p.report.verifies(&from, &signature) {
            return Err("a vote whose signature does not verify".into());
        }
        if let Some(h) = chain {
            let by = chain_signature.as_deref().and_then(|sig| (h.vote_signer)(&h.domain, &p.report, sig));
            match (by, signer) {
                (Some(by), Some(registered)) if by == registered => {}
                _ => return Err("a vote without a valid chain signature of the member's registered signer".into()),
            }
        }
        p.report.signatures.push((from, signature));
        if let Some(sig) = chain_signature.filter(|_| chain.is_some()) {
            p.report.signatures.push((from, sig));
        }
        p.record.signers.push(from);
        p.submitted = p.record.signers.len() >= p.record.quorum;
        Ok(p.submitted.then(|| (p.report.clone(), p.committee.clone())))
    }

    /// After a committee is selected, on a chain ledger: asks every checker
    /// to sign it (the ledger accepts it with two thirds of the committee
    /// before it); returns the requests.
    pub fn ask_signatures(&mut self, now: Timestamp, announcement: &CommitteeAnnouncement) -> Sends {
        let Some(h) = self.chain else { return Vec::new() };
        let Some((_, committee)) = self.coordinator.current() else { return Vec::new() };
        if self.published.is_some_and(|p| p >= committee.epoch) {
            return Vec::new();
        }
        let signer_of: HashMap<NodeId, [u8; 20]> = self.checkers.iter().map(|c| (c.id, c.chain_signer)).collect();
        let Some(members) = committee.members.iter().map(|m| signer_of.get(&m.id).copied()).collect() else {
            return Vec::new();
        };
        self.signing = Some(Signing { epoch: committee.epoch, members, signatures: Default::default(), asked_at: now });
        let msg = Message::CommitteeSign { announcement: announcement.clone(), chain: h.domain };
        self.checkers.iter().map(|c| (c.addr.clone(), msg.clone())).collect()
    }

    /// A checker's signature of the committee being signed. `Ok(true)` when
    /// every checker has answered (time to publish).
    pub fn committee_signed(&mut self, from: NodeId, epoch: u64, signature: Vec<u8>) -> Result<bool, String> {
        let h = self.chain.ok_or("the ledger is not a chain: no committee is signed")?;
        let registered = self.checkers.iter().find(|c| c.id == from).map(|c| c.chain_signer);
        let registered = registered.ok_or_else(|| format!("{} is not a checker of this network", from.short()))?;
        let s =
            self.signing.as_mut().filter(|s| s.epoch == epoch).ok_or("no committee of that epoch is being signed")?;
        if (h.committee_signer)(&h.domain, epoch, &s.members, &signature) != Some(registered) {
            return Err("a committee signature that does not recover to the checker's registered signer".into());
        }
        s.signatures.insert(from, signature);
        Ok(s.signatures.len() == self.checkers.len())
    }

    /// The committee to publish now: everyone answered (`all`), or the
    /// checkers were asked at least `wait` ago; the ledger op, once.
    pub fn publication(
        &mut self,
        now: Timestamp,
        all: bool,
        wait: std::time::Duration,
    ) -> Option<dci_ledger::LedgerOp> {
        let s = self.signing.as_ref()?;
        if !all && now.since(s.asked_at) < wait {
            return None;
        }
        let s = self.signing.take()?;
        Some(dci_ledger::LedgerOp::SetCommittee {
            epoch: s.epoch,
            members: s.members,
            signatures: s.signatures.into_values().collect(),
        })
    }

    /// The ledger published `epoch`'s committee (or already had it):
    /// returns the slashes that waited for it.
    pub fn published(&mut self, epoch: u64) -> Vec<(SlashReport, Vec<NodeId>)> {
        self.published = Some(self.published.map_or(epoch, |p| p.max(epoch)));
        let later = self.held.split_off(&(epoch + 1));
        let ready = std::mem::replace(&mut self.held, later);
        ready.into_values().flatten().collect()
    }

    /// A slash that reached its quorum: `Some` to apply it now, `None` when
    /// it waits for its epoch's committee to be on chain.
    pub fn ready_to_slash(
        &mut self,
        report: SlashReport,
        committee: Vec<NodeId>,
    ) -> Option<(SlashReport, Vec<NodeId>)> {
        if self.chain.is_none() || self.published.is_some_and(|p| p >= report.epoch) {
            return Some((report, committee));
        }
        self.held.entry(report.epoch).or_default().push((report, committee));
        None
    }

    /// Records what the ledger did with a report that reached its quorum.
    pub fn applied(&mut self, evidence_hash: [u8; 32], result: Result<Amount, String>) -> Option<PenaltyRecord> {
        let mut p = self.proposals.remove(&evidence_hash)?;
        match result {
            Ok(taken) => {
                p.record.taken = taken;
                p.record.outcome = "slashed".into();
            }
            Err(why) => p.record.outcome = format!("refused by the ledger: {why}"),
        }
        let record = p.record.clone();
        self.decide(p.record);
        Some(record)
    }

    fn decide(&mut self, record: PenaltyRecord) {
        self.decided_hashes.insert(record.evidence_hash);
        self.decided.push_back(record);
        if self.decided.len() > KEEP_DECIDED {
            self.decided.pop_front();
        }
    }

    /// The committee in force, with its announcement.
    pub fn current(&self) -> Option<&(CommitteeAnnouncement, Committee)> {
        self.coordinator.current()
    }

    /// The committee in force and the penalties; `None` before the first committee.
    pub fn view(&self) -> Option<CommitteeView> {
        let (a, c) = self.coordinator.current()?;
        let candidates = a
            .candidates
            .iter()
            .map(|x| CandidateView {
                id: x.id,
                stake: x.stake,
                selected_before: x.selected,
                member: c.contains(&x.id),
                weight: c.member(&x.id).map(|m| m.weight),
            })
            .collect();
        let mut penalties: Vec<PenaltyRecord> = self.decided.iter().cloned().collect();
        let mut pending: Vec<PenaltyRecord> = self.proposals.values().map(|p| p.record.clone()).collect();
        pending.sort_by_key(|r| r.at);
        penalties.extend(pending);
        Some(CommitteeView {
            epoch: c.epoch,
            seed: c.seed.0,
            size: a.size as usize,
            quorum: c.quorum(),
            members: c.members.iter().map(|m| m.id).collect(),
            candidates,
            announcement: postcard::to_stdvec(a).unwrap_or_default(),
            penalties,
        })
    }
}
