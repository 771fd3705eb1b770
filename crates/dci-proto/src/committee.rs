//! Wire types of the epoch committee (R-CK6, R-CK7) and of capacity
//! evidence: what travels between the epoch coordinator, the checkers and
//! the indexers. Their meaning (sortition, quorum) is `dci-committee`'s;
//! their bytes are defined here, like every other message.

use dci_model::{Amount, NodeId};
use serde::{Deserialize, Serialize};

use crate::envelope::{Identity, verify_domain};
use crate::messages::{ChallengeParams, Response, Reveal};

/// Domain separation of a container's signature over a capacity transcript.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"dci/capacity-transcript/v1\0";

/// A checker that may sit on a committee, as the epoch coordinator froze it
/// before the epoch's seed was known: its VRF key, its bonded stake and its
/// public selection history (`dci_committee::History`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeCandidate {
    /// The checker.
    pub id: NodeId,
    /// Where it receives node messages (`host:port`).
    pub addr: String,
    /// Its registered VRF public key.
    pub vrf_public: [u8; 32],
    /// Its bonded checker stake.
    pub stake: Amount,
    /// Committees it sat on.
    pub selected: u64,
    /// Its history offset (Q64 seats, see `dci_committee::History`).
    pub offset: i128,
}

/// A ledger contract on an EVM chain: what a committee member's chain
/// signature of a slash report is bound to (its digest covers both, see
/// `dci_chain::slash_digest_at`), so it counts on that ledger only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainDomain {
    /// The chain id.
    pub chain_id: u64,
    /// The ledger contract's address.
    pub ledger: [u8; 20],
}

/// A checker's VRF proof for an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortitionProof {
    /// The prover.
    pub node: NodeId,
    /// The VRF pre-output (compressed Ristretto point).
    pub output: [u8; 32],
    /// The batchable DLEQ proof, 96 bytes.
    pub proof: Vec<u8>,
}

/// Everything anyone needs to recompute an epoch's committee: the frozen
/// candidate set, the seed and the published proofs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeAnnouncement {
    /// The epoch.
    pub epoch: u64,
    /// Its seed.
    pub seed: [u8; 32],
    /// Seats.
    pub size: u32,
    /// The history accumulator (Q64 seats per stake unit).
    pub accumulator: u128,
    /// The last epoch recorded into the histories.
    pub recorded: Option<u64>,
    /// The candidates.
    pub candidates: Vec<CommitteeCandidate>,
    /// The proofs published for this epoch.
    pub proofs: Vec<SortitionProof>,
}

/// A capacity challenge as it happened, signed by the container: the
/// transferable evidence a committee re-verifies before it signs a penalty.
/// The checker chose `params` and `reveal`, the container computed `root`
/// and `response` and signed all four, so nobody can make an honest
/// container's transcript fail, and a failing one cannot be denied.
/// `params.container` must be `container`: a container signs only the
/// challenges that name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The container.
    pub container: NodeId,
    /// The challenge.
    pub params: ChallengeParams,
    /// The container's commitment.
    pub root: [u8; 32],
    /// What the checker revealed after the commitment.
    pub reveal: Reveal,
    /// The container's answer.
    pub response: Response,
    /// The container's signature over [`transcript_bytes`].
    pub signature: Vec<u8>,
}

/// The bytes a container signs when it answers a reveal.
pub fn transcript_bytes(params: &ChallengeParams, root: &[u8; 32], reveal: &Reveal, response: &Response) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    // Encoding plain data into a Vec does not fail.
    h.update(&postcard::to_stdvec(&(params, root, reveal, response)).unwrap_or_default());
    h.finalize().as_bytes().to_vec()
}

/// The container's signature over a transcript.
pub fn sign_transcript(
    container: &Identity,
    params: &ChallengeParams,
    root: &[u8; 32],
    reveal: &Reveal,
    response: &Response,
) -> Vec<u8> {
    container.sign_domain(TRANSCRIPT_DOMAIN, &transcript_bytes(params, root, reveal, response)).to_vec()
}

impl Evidence {
    /// Does the container's signature cover this transcript?
    pub fn signed_by_container(&self) -> bool {
        let msg = transcript_bytes(&self.params, &self.root, &self.reveal, &self.response);
        verify_domain(&self.container, TRANSCRIPT_DOMAIN, &msg, &self.signature)
    }

    /// The hash committee members sign penalties over.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("dci evidence v1");
        h.update(self.container.0.as_slice());
        h.update(&transcript_bytes(&self.params, &self.root, &self.reveal, &self.response));
        h.update(&self.signature);
        *h.finalize().as_bytes()
    }
}
