//! The penalty quorum (R-CK6): at least two thirds of the epoch's committee
//! must sign the same evidence.
//!
//! Signatures are ed25519 under the members' node identities (the keys of
//! `dci-proto`'s `Identity`/`NodeId`), checked with `verify_strict`. Only
//! distinct members count; signatures from non-members, invalid ones and
//! repeats count for nothing. This is the same rule as `dci-ledger`'s
//! `SlashReport::verify_quorum`, which checks the ledger's own signed bytes;
//! [`check_quorum`] takes any signed message, and
//! [`check_evidence_quorum`] the committee's evidence vote
//! ([`evidence_message`]).

use dci_model::NodeId;
use dci_proto::Identity;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::collections::BTreeSet;

use crate::select::Committee;

/// Domain separation of evidence votes.
pub const EVIDENCE_DOMAIN: &[u8] = b"dci/committee-evidence/v1\0";

/// Signatures needed in a committee of `n`: `ceil(2n/3)`, and at least 1
/// (an empty committee can never reach quorum).
pub fn quorum(n: usize) -> usize {
    (2 * n).div_ceil(3).max(1)
}

/// The quorum was not reached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected valid signatures from at least {needed} of the {committee} committee members, found {valid}")]
pub struct QuorumError {
    /// Distinct members whose signature verified.
    pub valid: usize,
    /// Signatures needed.
    pub needed: usize,
    /// Committee size.
    pub committee: usize,
}

/// The bytes a member signs to vote for evidence in an epoch:
/// [`EVIDENCE_DOMAIN`] ‖ epoch (u64 big-endian) ‖ evidence hash.
pub fn evidence_message(epoch: u64, evidence_hash: &[u8; 32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(EVIDENCE_DOMAIN.len() + 8 + 32);
    b.extend_from_slice(EVIDENCE_DOMAIN);
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(evidence_hash);
    b
}

/// `by`'s vote for `evidence_hash` in `epoch`.
pub fn sign_evidence(by: &Identity, epoch: u64, evidence_hash: &[u8; 32]) -> (NodeId, Vec<u8>) {
    let key = SigningKey::from_bytes(&by.secret_bytes());
    (by.id(), key.sign(&evidence_message(epoch, evidence_hash)).to_bytes().to_vec())
}

/// Counts the distinct members whose signature over `message` verifies and
/// checks the count reaches [`quorum`] of the committee. Returns the count.
pub fn check_quorum(
    committee: &Committee,
    message: &[u8],
    signatures: &[(NodeId, Vec<u8>)],
) -> Result<usize, QuorumError> {
    let members: BTreeSet<NodeId> = committee.members.iter().map(|m| m.id).collect();
    let mut valid: BTreeSet<NodeId> = BTreeSet::new();
    for (signer, sig) in signatures {
        if !members.contains(signer) || valid.contains(signer) {
            continue;
        }
        if verifies(message, signer, sig) {
            valid.insert(*signer);
        }
    }
    let needed = quorum(members.len());
    if valid.len() < needed {
        return Err(QuorumError { valid: valid.len(), needed, committee: members.len() });
    }
    Ok(valid.len())
}

/// [`check_quorum`] over the committee's evidence vote for `evidence_hash`.
pub fn check_evidence_quorum(
    committee: &Committee,
    evidence_hash: &[u8; 32],
    signatures: &[(NodeId, Vec<u8>)],
) -> Result<usize, QuorumError> {
    check_quorum(committee, &evidence_message(committee.epoch, evidence_hash), signatures)
}

fn verifies(message: &[u8], signer: &NodeId, sig: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&signer.0) else { return false };
    let Ok(sig) = <[u8; 64]>::try_from(sig) else { return false };
    key.verify_strict(message, &Signature::from_bytes(&sig)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_table() {
        for (n, q) in
            [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 4), (7, 5), (9, 6), (10, 7), (100, 67), (1000, 667)]
        {
            assert_eq!(quorum(n), q, "n={n}");
            if n > 0 {
                assert!(3 * q >= 2 * n && 3 * (q - 1) < 2 * n, "n={n}: ceil(2n/3)");
            }
        }
    }
}
