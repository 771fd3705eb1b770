//! Requests a node signs with its own key to act on its own ledger account
//! through a gateway's public API (a container host or a checker bonding
//! its stake): the node key is the account's credential, as an API key is
//! a consumer's.
//!
//! The signature covers a domain tag, the node, what is asked and when
//! (`at`): a gateway takes it only within a freshness window of its own
//! clock, and only once (it remembers the signatures it took within the
//! window), so a copy can be neither replayed nor sent to another account.

use dci_model::{Amount, NodeId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::envelope::{Identity, verify_domain};

const NODE_STAKE_DOMAIN: &[u8] = b"dci/node-stake/v1\0";

/// The role a node bonds stake for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StakeAs {
    /// A container host (the minimum bond the indexer asks at registration).
    #[default]
    Container,
    /// A checker (its weight in the epoch committee's sortition).
    Checker,
    /// An indexer (its place in the chain's endpoint registry).
    Indexer,
}

/// "Bond `amount` of my account's balance as `role` stake", from the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStake {
    /// The node (its account is `AccountId::for_node(node)`).
    pub node: NodeId,
    /// The role it bonds for.
    pub role: StakeAs,
    /// How much to bond.
    pub amount: Amount,
    /// When it was signed (the node's clock).
    pub at: Timestamp,
}

impl NodeStake {
    fn bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a node stake always serializes")
    }

    /// Signs it with the node's key (`identity` must be `self.node`'s).
    pub fn sign(&self, identity: &Identity) -> Vec<u8> {
        identity.sign_domain(NODE_STAKE_DOMAIN, &self.bytes()).to_vec()
    }

    /// True when `signature` is the node's over this request.
    pub fn verifies(&self, signature: &[u8]) -> bool {
        verify_domain(&self.node, NODE_STAKE_DOMAIN, &self.bytes(), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nodes_own_signature_over_the_same_request_verifies() {
        let (me, other) = (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]));
        let req = NodeStake { node: me.id(), role: StakeAs::Container, amount: Amount::ath(100), at: Timestamp(5) };
        let sig = req.sign(&me);
        assert!(req.verifies(&sig));
        assert!(!req.verifies(&req.sign(&other)), "another key");
        assert!(!NodeStake { amount: Amount::ath(101), ..req.clone() }.verifies(&sig), "another amount");
        assert!(!NodeStake { role: StakeAs::Checker, ..req.clone() }.verifies(&sig), "another role");
        assert!(!NodeStake { at: Timestamp(6), ..req.clone() }.verifies(&sig), "another time");
        assert!(!NodeStake { node: other.id(), ..req.clone() }.verifies(&sig), "another account");
        assert!(!req.verifies(&sig[..63]), "truncated");
    }
}
