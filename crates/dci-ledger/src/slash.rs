//! Slashing (R-LG4, R-CK6): penalties only from a report signed by at least
//! two thirds of the epoch's checker committee.
//!
//! A [`SlashReport`] names the offender's account, the role it is punished
//! in, the epoch, the hash of the evidence and the penalty. Committee members
//! sign [`SlashReport::signing_bytes`] (domain-separated, see
//! [`SLASH_DOMAIN`]) with their node key. The ledger applies a report only if
//! valid signatures from at least `ceil(2n/3)` distinct members of the
//! committee it is given (n members) verify; signatures from outside the
//! committee, invalid ones and repeats count for nothing.
//!
//! **Rewards before stake.** The penalty is taken, in this order
//! ([`crate::rules::slash`], the one rule of every backend):
//! 1. from the offender's pending rewards (all of them if needed);
//! 2. then from its bonded stake in the role, and then from its unbonding
//!    stake in the role (latest release first; of entries released at the
//!    same time, the smallest first) — together at most
//!    `slash.<role>_bps` ([`crate::SlashFractions`]) of the bonded
//!    (staked + unbonding) amount at the time of the report.
//!
//! What cannot be taken is recorded as `uncollected`. Slashed funds go to
//! `pool:slashed` (governance decides their use); nothing is destroyed, so the
//! supply is conserved. **A piece of evidence causes at most one slash**: the
//! ledger records each applied report's evidence hash and refuses any later
//! report with the same one, whatever its epoch, offender, role or amount (a
//! committee of a later epoch re-signing old evidence cannot punish twice).
//! A report against an account with nothing to take is refused.

use dci_model::{AccountId, Amount, NodeId};
use dci_proto::Identity;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::{LedgerError, StakeRole};

/// Domain separation of slash report signatures.
pub const SLASH_DOMAIN: &[u8] = b"dci/slash-report/v1\0";

/// A committee's penalty decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashReport {
    /// Who is punished (its node account, [`AccountId::for_node`]).
    pub offender: AccountId,
    /// In which role.
    pub role: StakeRole,
    /// The epoch of the offence.
    pub epoch: u64,
    /// blake3 hash of the evidence (the signed verdicts).
    #[serde(with = "hex32")]
    pub evidence_hash: [u8; 32],
    /// The penalty.
    pub amount: Amount,
    /// Committee members' signatures over [`SlashReport::signing_bytes`].
    pub signatures: Vec<(NodeId, Vec<u8>)>,
}

/// What a slash took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slashed {
    /// Order of application.
    pub seq: u64,
    /// Who was punished.
    pub offender: AccountId,
    /// In which role.
    pub role: StakeRole,
    /// The epoch of the offence.
    pub epoch: u64,
    /// The evidence.
    #[serde(with = "hex32")]
    pub evidence_hash: [u8; 32],
    /// The penalty asked.
    pub amount: Amount,
    /// Taken from pending rewards.
    pub from_rewards: Amount,
    /// Taken from bonded stake.
    pub from_stake: Amount,
    /// Taken from unbonding stake.
    pub from_unbonding: Amount,
    /// `amount − taken`.
    pub uncollected: Amount,
    /// Valid committee signatures.
    pub signers: u64,
    /// Where the funds went (`pool:slashed`).
    pub to: AccountId,
}

impl Slashed {
    /// Everything taken.
    pub fn taken(&self) -> Amount {
        Amount(self.from_rewards.0 + self.from_stake.0 + self.from_unbonding.0)
    }
}

impl SlashReport {
    /// An unsigned report.
    pub fn new(offender: AccountId, role: StakeRole, epoch: u64, evidence_hash: [u8; 32], amount: Amount) -> Self {
        SlashReport { offender, role, epoch, evidence_hash, amount, signatures: Vec::new() }
    }

    /// The bytes committee members sign: the domain, then the offender
    /// (length-prefixed), the role (0 container, 1 checker), the epoch (u64
    /// big-endian), the evidence hash and the amount (u128 big-endian).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let o = self.offender.as_str().as_bytes();
        let mut b = Vec::with_capacity(SLASH_DOMAIN.len() + 2 + o.len() + 1 + 8 + 32 + 16);
        b.extend_from_slice(SLASH_DOMAIN);
        b.extend_from_slice(&(o.len() as u16).to_be_bytes());
        b.extend_from_slice(o);
        b.push(self.role.code());
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&self.evidence_hash);
        b.extend_from_slice(&self.amount.0.to_be_bytes());
        b
    }

    /// `by`'s signature over the report.
    pub fn signature(&self, by: &Identity) -> (NodeId, Vec<u8>) {
        let key = SigningKey::from_bytes(&by.secret_bytes());
        (by.id(), key.sign(&self.signing_bytes()).to_bytes().to_vec())
    }

    /// Adds `by`'s signature.
    pub fn sign(&mut self, by: &Identity) {
        let s = self.signature(by);
        self.signatures.push(s);
    }

    /// Does `sig` by `signer` verify over this report?
    pub fn verifies(&self, signer: &NodeId, sig: &[u8]) -> bool {
        check_sig(&self.signing_bytes(), signer, sig)
    }

    /// Counts the distinct committee members whose signature verifies and
    /// checks it reaches `ceil(2n/3)`. Returns the count.
    pub fn verify_quorum(&self, committee: &[NodeId]) -> Result<u64, LedgerError> {
        let members: BTreeSet<&NodeId> = committee.iter().collect();
        if members.is_empty() {
            return Err(LedgerError::SlashQuorum {
                offender: self.offender.clone(),
                valid: 0,
                needed: 1,
                committee: 0,
            });
        }
        let bytes = self.signing_bytes();
        let mut valid: BTreeSet<&NodeId> = BTreeSet::new();
        for (signer, sig) in &self.signatures {
            if !members.contains(signer) || valid.contains(signer) {
                continue;
            }
            if check_sig(&bytes, signer, sig) {
                valid.insert(signer);
            }
        }
        let n = members.len() as u64;
        let needed = (2 * n).div_ceil(3);
        let valid = valid.len() as u64;
        if valid < needed {
            return Err(LedgerError::SlashQuorum { offender: self.offender.clone(), valid, needed, committee: n });
        }
        Ok(valid)
    }
}

fn check_sig(bytes: &[u8], signer: &NodeId, sig: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&signer.0) else { return false };
    let Ok(sig) = <[u8; 64]>::try_from(sig) else { return false };
    key.verify_strict(bytes, &Signature::from_bytes(&sig)).is_ok()
}

/// `[u8; 32]` as 64 hex digits.
pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| serde::de::Error::custom(format!("expected 64 hex digits, found {s:?}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committee(n: u8) -> Vec<Identity> {
        (0..n).map(|i| Identity::from_secret([i + 10; 32])).collect()
    }

    fn report() -> SlashReport {
        SlashReport::new(AccountId::new("node:x").unwrap(), StakeRole::Container, 4, [7; 32], Amount::ath(5))
    }

    /// (committee size, how many members sign) -> accepted?
    #[test]
    fn two_thirds_of_the_committee_must_sign() {
        for (n, signing, ok) in [(3, 2, true), (3, 1, false), (4, 3, true), (4, 2, false), (6, 4, true), (1, 1, true)] {
            let members = committee(n);
            let ids: Vec<NodeId> = members.iter().map(Identity::id).collect();
            let mut r = report();
            for m in &members[..signing] {
                r.sign(m);
            }
            let got = r.verify_quorum(&ids);
            assert_eq!(got.is_ok(), ok, "n={n} signing={signing}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains(&format!("expected at least {}", (2 * n as u64).div_ceil(3))), "{e}");
            }
        }
    }

    #[test]
    fn repeats_outsiders_and_forgeries_do_not_count() {
        let members = committee(3);
        let ids: Vec<NodeId> = members.iter().map(Identity::id).collect();
        let outsider = Identity::from_secret([99; 32]);
        let mut r = report();
        r.sign(&members[0]);
        r.sign(&members[0]);
        r.sign(&outsider);
        assert!(r.verify_quorum(&ids).is_err(), "one member signing twice is one signature");
        // A signature over other bytes (another amount) does not count.
        let mut other = report();
        other.amount = Amount::ath(6);
        let (id, sig) = other.signature(&members[1]);
        r.signatures.push((id, sig));
        r.signatures.push((members[2].id(), vec![0; 64]));
        r.signatures.push((members[2].id(), vec![1; 3]));
        assert!(r.verify_quorum(&ids).is_err());
        // Duplicated committee entries are one member.
        let dup = vec![ids[0], ids[0], ids[0]];
        assert_eq!(r.verify_quorum(&dup).unwrap(), 1);
        assert!(r.verify_quorum(&[]).is_err());
        r.sign(&members[2]);
        assert_eq!(r.verify_quorum(&ids).unwrap(), 2);
    }

    #[test]
    fn every_field_is_signed() {
        let base = report();
        let mut variants = vec![base.clone(); 5];
        variants[0].offender = AccountId::new("node:y").unwrap();
        variants[1].role = StakeRole::Checker;
        variants[2].epoch = 5;
        variants[3].evidence_hash[0] = 0;
        variants[4].amount = Amount(1);
        for v in variants {
            assert_ne!(v.signing_bytes(), base.signing_bytes());
        }
    }
}
