//! The gateway's committee duties (R-CK6, R-CK7): it runs the epoch
//! coordinator — each epoch it freezes the checkers' stakes from the ledger,
//! asks every checker for its VRF proof, selects the committee and announces
//! it to the indexer (which recomputes it before routing inspections) — and
//! it collects penalty votes: evidence of a failed, container-signed
//! capacity transcript goes to every member, each re-verifies it and signs
//! the ledger's slash report, and the ledger applies the report only with
//! signatures of at least two thirds of the committee.
//!
//! On a chain ledger each vote also carries the member's chain signature
//! (ECDSA, `dci_chain::node_signer`) of the same report, checked here
//! against the member's registered signer; the ledger publishes the epoch's
//! committee on chain with the first slash of that epoch.
//!
//! Decisions stay where they belong: selection and assignment in
//! `dci-committee`, the re-verification in each checker, the quorum check in
//! the ledger. This module keeps the bookkeeping between them.

use std::collections::HashMap;

use dci_committee::{Committee, EpochCoordinator, Registered, SortitionError};
use dci_ledger::{SlashReport, StakeRole};
use dci_model::{AccountId, Amount, NodeId, Timestamp};
use dci_proto::{ChainDomain, CommitteeAnnouncement, Evidence, Message, SortitionProof};
use serde::{Deserialize, Serialize};

/// A checker that offers itself for the committee.
#[derive(Clone, Debug)]
pub struct CheckerSeat {
    /// Its node id.
    pub id: NodeId,
    /// Where it receives node messages.
    pub addr: String,
    /// Its VRF public key.
    pub vrf_public: [u8; 32],
    /// The address of its chain signing key (`dci_chain::node_signer`),
    /// which a chain ledger's committee lists.
    pub chain_signer: [u8; 20],
}

/// What happened to one piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyRecord {
    /// When it was decided.
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

struct Proposal {
    report: SlashReport,
    committee: Vec<NodeId>,
    record: PenaltyRecord,
}

/// What the gateway must do after an event: messages to send.
pub type Sends = Vec<(String, Message)>;

/// The committee state the gateway keeps. See the module docs.
pub struct Duties {
    coordinator: EpochCoordinator,
    checkers: Vec<CheckerSeat>,
    /// Evidence that arrived before any committee existed.
    waiting: Vec<(NodeId, Evidence)>,
    proposals: HashMap<[u8; 32], Proposal>,
    decided: Vec<PenaltyRecord>,
    /// The chain ledger votes must also sign for, if the ledger is one.
    chain: Option<ChainDomain>,
}

/// Penalty records kept for the API.
const KEEP_DECIDED: usize = 100;

impl Duties {
    /// Duties for `checkers` with committees of `size` on network `network`.
    pub fn new(network: &str, size: usize, checkers: Vec<CheckerSeat>) -> Result<Duties, SortitionError> {
        Ok(Duties {
            coordinator: EpochCoordinator::new(network, size)?,
            checkers,
            waiting: Vec::new(),
            proposals: HashMap::new(),
            decided: Vec::new(),
            chain: None,
        })
    }

    /// Votes must carry a chain signature for `chain` too (the ledger is
    /// on a chain whose contract counts those); `None`: ed25519 only.
    pub fn with_chain(mut self, chain: Option<ChainDomain>) -> Duties {
        self.chain = chain;
        self
    }

    /// Opens `epoch` with the stakes `stake_of` reads; returns the
    /// `EpochOpen` messages to send.
    pub fn open(&mut self, epoch: u64, stake_of: impl Fn(&NodeId) -> Amount) -> Result<Sends, SortitionError> {
        let registered: Vec<Registered> = self
            .checkers
            .iter()
            .map(|c| Registered { id: c.id, addr: c.addr.clone(), vrf_public: c.vrf_public, stake: stake_of(&c.id) })
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
    /// and the proposals for evidence that waited for a committee.
    pub fn close(
        &mut self,
        now: Timestamp,
        stake_of: impl Fn(&NodeId) -> Amount,
    ) -> Result<(CommitteeAnnouncement, Sends), SortitionError> {
        let (announcement, _) = self.coordinator.close()?;
        let mut sends = Vec::new();
        for (reporter, evidence) in std::mem::take(&mut self.waiting) {
            sends.extend(self.evidence(now, reporter, evidence, &stake_of));
        }
        Ok((announcement, sends))
    }

    /// The committee in force, with its announcement.
    pub fn current(&self) -> Option<&(CommitteeAnnouncement, Committee)> {
        self.coordinator.current()
    }

    /// Evidence from a checker: propose a penalty to every member of the
    /// committee in force. Ignored from non-checkers and when already
    /// proposed; recorded as refused when the container has no stake.
    pub fn evidence(
        &mut self,
        now: Timestamp,
        reporter: NodeId,
        evidence: Evidence,
        stake_of: &impl Fn(&NodeId) -> Amount,
    ) -> Sends {
        if !self.checkers.iter().any(|c| c.id == reporter) {
            tracing::warn!(from = %reporter.short(), "evidence from a node that is not a checker was ignored");
            return Vec::new();
        }
        let Some((announcement, committee)) = self.coordinator.current() else {
            self.waiting.push((reporter, evidence));
            return Vec::new();
        };
        let hash = evidence.hash();
        if self.proposals.contains_key(&hash) || self.decided.iter().any(|d| d.evidence_hash == hash) {
            return Vec::new();
        }
        let epoch = committee.epoch;
        let members = committee.ids();
        let amount = stake_of(&evidence.container);
        let mut record = PenaltyRecord {
            at: now,
            container: evidence.container,
            epoch,
            evidence_hash: hash,
            reporter,
            signers: Vec::new(),
            quorum: committee.quorum(),
            asked: amount,
            taken: Amount::ZERO,
            outcome: "pending".into(),
        };
        if amount == Amount::ZERO {
            record.outcome = "not proposed: the container has no stake".into();
            self.decide(record);
            return Vec::new();
        }
        let addr_of: HashMap<NodeId, String> = announcement.candidates.iter().map(|c| (c.id, c.addr.clone())).collect();
        let sends = members
            .iter()
            .filter_map(|m| addr_of.get(m))
            .map(|addr| {
                let msg = Message::PenaltyProposal { epoch, amount, evidence: evidence.clone(), chain: self.chain };
                (addr.clone(), msg)
            })
            .collect();
        let report = SlashReport {
            offender: AccountId::for_node(&evidence.container),
            role: StakeRole::Container,
            epoch,
            evidence_hash: hash,
            amount,
            signatures: Vec::new(),
        };
        self.proposals.insert(hash, Proposal { report, committee: members, record });
        sends
    }

    /// A member's vote. When the votes reach the quorum, returns the report
    /// to apply with the committee it is checked against. On a chain
    /// ledger a vote counts only with a chain signature by the member's
    /// registered chain signer; both signatures go into the report.
    pub fn vote(
        &mut self,
        from: NodeId,
        evidence_hash: [u8; 32],
        signature: Vec<u8>,
        chain_signature: Option<Vec<u8>>,
    ) -> Option<(SlashReport, Vec<NodeId>)> {
        let chain = self.chain;
        let signer = self.checkers.iter().find(|c| c.id == from).map(|c| c.chain_signer);
        let p = self.proposals.get_mut(&evidence_hash)?;
        if !p.committee.contains(&from) || p.record.signers.contains(&from) || !p.report.verifies(&from, &signature) {
            tracing::warn!(from = %from.short(), "a penalty vote that does not count was ignored");
            return None;
        }
        if let Some(d) = chain {
            let ledger = dci_chain::Address::from(d.ledger);
            let by = chain_signature
                .as_deref()
                .and_then(|sig| dci_chain::slash_signer_at(d.chain_id, ledger, &p.report, sig));
            match (by, signer) {
                (Some(by), Some(registered)) if by.into_array() == registered => {}
                _ => {
                    tracing::warn!(from = %from.short(), "a penalty vote without a valid chain signature was ignored");
                    return None;
                }
            }
        }
        p.report.signatures.push((from, signature));
        if let Some(sig) = chain_signature.filter(|_| chain.is_some()) {
            p.report.signatures.push((from, sig));
        }
        p.record.signers.push(from);
        (p.record.signers.len() >= p.record.quorum).then(|| (p.report.clone(), p.committee.clone()))
    }

    /// Records what the ledger did with a report that reached its quorum.
    pub fn applied(&mut self, evidence_hash: [u8; 32], result: Result<Amount, String>) {
        if let Some(mut p) = self.proposals.remove(&evidence_hash) {
            match result {
                Ok(taken) => {
                    p.record.taken = taken;
                    p.record.outcome = "slashed".into();
                }
                Err(why) => p.record.outcome = format!("refused by the ledger: {why}"),
            }
            self.decide(p.record);
        }
    }

    fn decide(&mut self, record: PenaltyRecord) {
        tracing::info!(container = %record.container.short(), outcome = %record.outcome, taken = %record.taken, "penalty decided");
        self.decided.push(record);
        if self.decided.len() > KEEP_DECIDED {
            self.decided.remove(0);
        }
    }

    /// Decided penalties, oldest first, then the pending ones.
    pub fn penalties(&self) -> Vec<PenaltyRecord> {
        let mut all = self.decided.clone();
        let mut pending: Vec<PenaltyRecord> = self.proposals.values().map(|p| p.record.clone()).collect();
        pending.sort_by_key(|r| r.at);
        all.extend(pending);
        all
    }
}
