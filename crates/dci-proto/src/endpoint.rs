//! Endpoint records (issue 15): where a staked checker or indexer is
//! reached, signed by the node itself, published in the chain's endpoint
//! registry (`contracts/src/DciRegistry.sol`) and read back by every node.
//!
//! The registry does not verify ed25519 (the EVM cannot, cheaply): every
//! reader verifies each record with [`EndpointRecord::verify`] and ignores
//! one that does not verify. The signature is bound to one registry on one
//! chain ([`RegistryDomain`]), so a record cannot be replayed into another
//! registry or onto another chain; within the registry, sequence numbers
//! only grow (checked on chain), so an older record cannot come back.
//!
//! Signed bytes: the domain tag `dci/endpoint/v1\0`, then the chain id (8
//! bytes big-endian), the registry's address (20), the node id (32), the
//! role (1: checker, 2: indexer), the sequence (8, big-endian), the VRF
//! public key (32) and the chain signer (20) — zero for an indexer — and
//! the address's length (2, big-endian) and bytes. A record with an empty
//! address is a withdrawal.

use dci_model::NodeId;
use serde::{Deserialize, Serialize};

use crate::envelope::{Identity, verify_domain};

const ENDPOINT_DOMAIN: &[u8] = b"dci/endpoint/v1\0";

/// The longest address a record may carry (the registry's `MAX_ADDR_BYTES`).
pub const MAX_ENDPOINT_ADDR: usize = 128;

/// Which registry a record is for: a chain and the registry's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegistryDomain {
    /// The chain's id (31337 on anvil, 42161 on Arbitrum One).
    pub chain_id: u64,
    /// The registry contract's address.
    pub registry: [u8; 20],
}

/// The roles a node registers its endpoint for (their stake roles' numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndpointRole {
    /// A checker: its record names its VRF key and chain signer.
    Checker,
    /// An indexer.
    Indexer,
}

impl EndpointRole {
    /// The role's number in the registry (the ledger's stake role).
    pub fn code(self) -> u8 {
        match self {
            EndpointRole::Checker => 1,
            EndpointRole::Indexer => 2,
        }
    }

    /// The role of number `code`.
    pub fn from_code(code: u8) -> Result<EndpointRole, EndpointError> {
        match code {
            1 => Ok(EndpointRole::Checker),
            2 => Ok(EndpointRole::Indexer),
            other => Err(EndpointError::Invalid(format!("role: expected 1 (checker) or 2 (indexer), found {other}"))),
        }
    }

    /// `checker` or `indexer`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointRole::Checker => "checker",
            EndpointRole::Indexer => "indexer",
        }
    }
}

impl std::str::FromStr for EndpointRole {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<EndpointRole, EndpointError> {
        match s {
            "checker" => Ok(EndpointRole::Checker),
            "indexer" => Ok(EndpointRole::Indexer),
            other => Err(EndpointError::Invalid(format!("role: expected checker or indexer, found {other:?}"))),
        }
    }
}

/// Why a record is not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// A field is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The signature is not the node's over this record for this registry.
    #[error(
        "signature: expected node {node}'s ed25519 signature over this record for chain {chain_id} registry 0x{registry}"
    )]
    BadSignature {
        /// The node the record names.
        node: NodeId,
        /// The chain id checked against.
        chain_id: u64,
        /// The registry checked against (hex).
        registry: String,
    },
}

/// "Node `node` is a `role`, reached at `addr`", as of its sequence `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The node id (its ed25519 public key).
    pub node: NodeId,
    /// Checker or indexer.
    pub role: EndpointRole,
    /// The node's sequence (its clock in ms): a newer record replaces an older one.
    pub seq: u64,
    /// Where it receives node messages (`host:port`); empty: a withdrawal.
    pub addr: String,
    /// A checker's committee VRF public key; zero for an indexer.
    pub vrf_public: [u8; 32],
    /// A checker's chain signing address; zero for an indexer.
    pub chain_signer: [u8; 20],
}

impl EndpointRecord {
    /// An indexer's record.
    pub fn indexer(node: NodeId, seq: u64, addr: impl Into<String>) -> EndpointRecord {
        EndpointRecord {
            node,
            role: EndpointRole::Indexer,
            seq,
            addr: addr.into(),
            vrf_public: [0; 32],
            chain_signer: [0; 20],
        }
    }

    /// True for a withdrawal (an empty address).
    pub fn is_withdrawal(&self) -> bool {
        self.addr.is_empty()
    }

    /// The bytes the node signs for `domain` (see the module docs).
    pub fn signed_bytes(&self, domain: &RegistryDomain) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 20 + 32 + 1 + 8 + 32 + 20 + 2 + self.addr.len());
        b.extend_from_slice(&domain.chain_id.to_be_bytes());
        b.extend_from_slice(&domain.registry);
        b.extend_from_slice(&self.node.0);
        b.push(self.role.code());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.vrf_public);
        b.extend_from_slice(&self.chain_signer);
        let addr = self.addr.as_bytes();
        b.extend_from_slice(&(addr.len().min(u16::MAX as usize) as u16).to_be_bytes());
        b.extend_from_slice(addr);
        b
    }

    /// Signs it for `domain` with the node's key (`identity` must be `self.node`'s).
    pub fn sign(&self, identity: &Identity, domain: &RegistryDomain) -> [u8; 64] {
        identity.sign_domain(ENDPOINT_DOMAIN, &self.signed_bytes(domain))
    }

    /// Checks the fields: an address `host:port` of at most
    /// [`MAX_ENDPOINT_ADDR`] bytes with a non-zero port (or empty, a
    /// withdrawal), a checker's VRF key and chain signer present, an
    /// indexer's absent.
    pub fn validate(&self) -> Result<(), EndpointError> {
        let bad = |m: String| Err(EndpointError::Invalid(m));
        if self.addr.len() > MAX_ENDPOINT_ADDR {
            return bad(format!("addr: expected at most {MAX_ENDPOINT_ADDR} bytes, found {}", self.addr.len()));
        }
        if !self.is_withdrawal() {
            let ok = self.addr.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) && !host.chars().any(char::is_whitespace)
            });
            if !ok {
                return bad(format!("addr: expected host:port with a fixed port, found {:?}", self.addr));
            }
            match self.role {
                EndpointRole::Checker if self.vrf_public == [0; 32] || self.chain_signer == [0; 20] => {
                    return bad("a checker's record: expected its vrf_public and chain_signer, found zero".into());
                }
                EndpointRole::Indexer if self.vrf_public != [0; 32] || self.chain_signer != [0; 20] => {
                    return bad("an indexer's record: expected no vrf_public and no chain_signer, found some".into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Takes the record only if it is well formed and `signature` is the
    /// node's over it for `domain`.
    pub fn verify(&self, domain: &RegistryDomain, signature: &[u8]) -> Result<(), EndpointError> {
        self.validate()?;
        if !verify_domain(&self.node, ENDPOINT_DOMAIN, &self.signed_bytes(domain), signature) {
            return Err(EndpointError::BadSignature {
                node: self.node,
                chain_id: domain.chain_id,
                registry: hex::encode(domain.registry),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: RegistryDomain = RegistryDomain { chain_id: 31_337, registry: [7; 20] };

    fn checker(id: &Identity) -> EndpointRecord {
        EndpointRecord {
            node: id.id(),
            role: EndpointRole::Checker,
            seq: 1_700_000_000_000,
            addr: "10.0.0.3:7200".into(),
            vrf_public: [3; 32],
            chain_signer: [4; 20],
        }
    }

    #[test]
    fn a_record_verifies_only_as_signed_by_its_node_for_its_registry() {
        let (me, other) = (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]));
        let r = checker(&me);
        let sig = r.sign(&me, &DOMAIN);
        r.verify(&DOMAIN, &sig).unwrap();
        let bad_sig = |r: &EndpointRecord, d: &RegistryDomain, s: &[u8]| {
            matches!(r.verify(d, s), Err(EndpointError::BadSignature { .. }))
        };
        // Each field tampered with.
        assert!(bad_sig(&EndpointRecord { addr: "6.6.6.6:7200".into(), ..r.clone() }, &DOMAIN, &sig), "address");
        assert!(bad_sig(&EndpointRecord { seq: r.seq + 1, ..r.clone() }, &DOMAIN, &sig), "sequence");
        assert!(bad_sig(&EndpointRecord { vrf_public: [9; 32], ..r.clone() }, &DOMAIN, &sig), "vrf key");
        assert!(bad_sig(&EndpointRecord { chain_signer: [9; 20], ..r.clone() }, &DOMAIN, &sig), "chain signer");
        let as_indexer =
            EndpointRecord { role: EndpointRole::Indexer, vrf_public: [0; 32], chain_signer: [0; 20], ..r.clone() };
        assert!(bad_sig(&as_indexer, &DOMAIN, &sig), "role");
        assert!(bad_sig(&EndpointRecord { node: other.id(), ..r.clone() }, &DOMAIN, &sig), "another node's id");
        // Another chain, another registry.
        assert!(bad_sig(&r, &RegistryDomain { chain_id: 42_161, ..DOMAIN }, &sig), "wrong chain id");
        assert!(bad_sig(&r, &RegistryDomain { registry: [8; 20], ..DOMAIN }, &sig), "wrong registry");
        // Another key, a truncated or flipped signature.
        assert!(bad_sig(&r, &DOMAIN, &r.sign(&other, &DOMAIN)), "another key");
        assert!(bad_sig(&r, &DOMAIN, &sig[..63]), "truncated");
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert!(bad_sig(&r, &DOMAIN, &flipped), "flipped bit");
        let e = r.verify(&RegistryDomain { chain_id: 1, ..DOMAIN }, &sig).unwrap_err().to_string();
        assert!(e.contains("for chain 1 registry 0x0707"), "{e}");
    }

    #[test]
    fn malformed_records_say_what_was_expected() {
        let me = Identity::from_secret([1; 32]);
        let cases = [
            (EndpointRecord { addr: "10.0.0.3".into(), ..checker(&me) }, "addr: expected host:port"),
            (EndpointRecord { addr: "10.0.0.3:0".into(), ..checker(&me) }, "with a fixed port"),
            (EndpointRecord { addr: format!("{}:1", "a".repeat(127)), ..checker(&me) }, "at most 128 bytes, found 129"),
            (EndpointRecord { vrf_public: [0; 32], ..checker(&me) }, "a checker's record: expected its vrf_public"),
            (
                EndpointRecord { role: EndpointRole::Indexer, ..checker(&me) },
                "an indexer's record: expected no vrf_public",
            ),
        ];
        for (r, want) in cases {
            let sig = r.sign(&me, &DOMAIN);
            let e = r.verify(&DOMAIN, &sig).unwrap_err().to_string();
            assert!(e.contains(want), "expected {want:?} in {e}");
        }
        let w = EndpointRecord { addr: String::new(), ..EndpointRecord::indexer(me.id(), 5, "") };
        assert!(w.is_withdrawal());
        w.verify(&DOMAIN, &w.sign(&me, &DOMAIN)).unwrap();
        assert_eq!(EndpointRole::from_code(2).unwrap(), EndpointRole::Indexer);
        assert!(EndpointRole::from_code(0).unwrap_err().to_string().contains("found 0"));
        assert!("gateway".parse::<EndpointRole>().unwrap_err().to_string().contains("expected checker or indexer"));
    }
}
