//! The commitment: a binary Merkle tree over the rows of the result.
//!
//! - leaf `i` = blake3(`LEAF_TAG` || `i` as u32 LE || row values as f32 LE);
//! - inner node = blake3(`NODE_TAG` || left || right);
//! - a level of odd length is padded on the right with [`pad`], a constant,
//!   so a tree over `n` rows has depth `ceil(log2 n)` and every proof has
//!   exactly that many siblings (a single row: depth 0, root = leaf).
//!
//! Both tags are 20 bytes, so a leaf can never be read as an inner node.

use dci_proto::RowOpening;

use crate::CapacityError;

const LEAF_TAG: &[u8; 20] = b"dci/capacity/leaf/v1";
const NODE_TAG: &[u8; 20] = b"dci/capacity/node/v1";
const PAD_TAG: &[u8; 20] = b"dci/capacity/pad//v1";

/// Hash of one result row.
pub fn leaf_hash(index: u32, values: &[f32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(LEAF_TAG);
    h.update(&index.to_le_bytes());
    // One contiguous update: blake3 hashes its 1 KiB chunks in parallel
    // lanes only when it is given many of them at once.
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    h.update(&bytes);
    *h.finalize().as_bytes()
}

/// Hash of an inner node.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(NODE_TAG);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// The right sibling given to the last node of an odd-length level.
pub fn pad() -> [u8; 32] {
    *blake3::hash(PAD_TAG).as_bytes()
}

/// Number of siblings in a proof for a tree over `n` rows: `ceil(log2 n)`.
pub fn depth(n: usize) -> usize {
    if n <= 1 { 0 } else { (usize::BITS - (n - 1).leading_zeros()) as usize }
}

/// A Merkle tree over result rows, all levels kept so any row can be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` are the leaves, the last level is the root alone.
    levels: Vec<Vec<[u8; 32]>>,
}

impl MerkleTree {
    /// Builds the tree from the leaf hashes (at least one).
    pub fn from_leaves(leaves: Vec<[u8; 32]>) -> Result<Self, CapacityError> {
        if leaves.is_empty() {
            return Err(CapacityError::Dimension { max: crate::MAX_N, found: 0 });
        }
        let pad = pad();
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level.chunks(2).map(|pair| node_hash(&pair[0], pair.get(1).unwrap_or(&pad))).collect::<Vec<_>>();
            levels.push(next);
        }
        Ok(MerkleTree { levels })
    }

    /// Builds the tree over the rows of a row-major `n x n` matrix.
    pub fn from_rows(n: usize, c: &[f32]) -> Result<Self, CapacityError> {
        if n == 0 || c.len() != n * n {
            return Err(CapacityError::ResultLength { expected: n * n, found: c.len() });
        }
        Self::from_leaves(c.chunks(n).enumerate().map(|(i, row)| leaf_hash(i as u32, row)).collect())
    }

    /// Number of leaves (rows).
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Always false: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The root: what the container commits to.
    pub fn root(&self) -> [u8; 32] {
        self.levels.last().map(|l| l[0]).unwrap_or_default()
    }

    /// Sibling hashes from leaf `index` up to the root.
    pub fn proof(&self, index: u32) -> Result<Vec<[u8; 32]>, CapacityError> {
        let len = self.len();
        if index as usize >= len {
            return Err(CapacityError::RowOutOfRange { row: index, n: len as u32 });
        }
        let pad = pad();
        let mut i = index as usize;
        let mut proof = Vec::with_capacity(self.levels.len() - 1);
        for level in &self.levels[..self.levels.len() - 1] {
            proof.push(level.get(i ^ 1).copied().unwrap_or(pad));
            i /= 2;
        }
        Ok(proof)
    }
}

/// True when `opening` is row `opening.index` of a tree over `n` rows with
/// this root: index in range, exactly `n` values, exactly `depth(n)` siblings,
/// the pad sibling wherever the tree has one, and the path hashes to `root`.
/// Says nothing about whether the values are the right product.
pub fn verify_opening(root: &[u8; 32], n: usize, opening: &RowOpening) -> bool {
    let index = opening.index as usize;
    if index >= n || opening.values.len() != n || opening.proof.len() != depth(n) {
        return false;
    }
    let pad = pad();
    let mut hash = leaf_hash(opening.index, &opening.values);
    let mut i = index;
    let mut level_len = n;
    for sibling in &opening.proof {
        let sibling_is_pad = i ^ 1 >= level_len;
        if sibling_is_pad && *sibling != pad {
            return false;
        }
        hash = if i.is_multiple_of(2) { node_hash(&hash, sibling) } else { node_hash(sibling, &hash) };
        i /= 2;
        level_len = level_len.div_ceil(2);
    }
    hash == *root
}
