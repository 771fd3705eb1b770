//! Which indexer serves a request (R-IX3): verifiable random choice.
//!
//! Rendezvous (highest random weight) hashing: every active indexer `i` gets
//! the score
//!
//! ```text
//! score(i) = blake3("dci/indexer/serve/v1\0" ‖ epoch_seed (32 bytes) ‖ i (32 bytes) ‖ request_id)
//! ```
//!
//! read as a 256-bit big-endian number, and the indexer with the highest
//! score serves (the lower id if two scores were ever equal). The fixed-size
//! fields come first, so the encoding is unambiguous.
//!
//! Properties:
//! - anyone who knows the epoch's public seed, the request id and the active
//!   set recomputes the choice (it is a pure function) and can check that the
//!   indexer that answered was the one chosen;
//! - every indexer is equally likely for random request ids, and neither the
//!   consumer nor a container can steer the choice without knowing the seed
//!   in advance: the seed is fixed per epoch and published at its start, so
//!   choosing a favourable request id means grinding ids *after* the seed is
//!   known, at a cost of about one try per active indexer. Gateways should
//!   therefore derive the request id from something the consumer does not
//!   choose freely (e.g. the hash of the signed request and the gateway's
//!   session id), which makes such grinding visible;
//! - when an indexer leaves the active set, only the requests it served move
//!   (to their second choice); the others keep their indexer.

use dci_model::NodeId;

const DOMAIN: &[u8] = b"dci/indexer/serve/v1\0";

/// The score of `indexer` for a request (higher wins); see the module docs.
pub fn serving_score(request_id: &[u8], epoch_seed: &[u8; 32], indexer: &NodeId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(epoch_seed);
    h.update(&indexer.0);
    h.update(request_id);
    *h.finalize().as_bytes()
}

/// The indexer of `active` that serves the request, or `None` if none is
/// active. Duplicates in `active` do not matter.
pub fn serving_indexer(request_id: &[u8], epoch_seed: &[u8; 32], active: &[NodeId]) -> Option<NodeId> {
    active
        .iter()
        .map(|id| (serving_score(request_id, epoch_seed, id), std::cmp::Reverse(*id)))
        .max()
        .map(|(_, std::cmp::Reverse(id))| id)
}
