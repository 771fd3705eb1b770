//! The container's side: compute `C = A · B` and commit to its rows.

use dci_proto::{ChallengeParams, RowOpening};

use crate::CapacityError;
use crate::backend::{Backend, CpuBackend};
use crate::matrix::{check_dimension, matrices};
use crate::merkle::MerkleTree;

/// A computed challenge result and its commitment.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    /// Matrix dimension.
    pub n: usize,
    /// `A · B`, row-major, `n * n` values.
    pub c: Vec<f32>,
    /// Merkle tree over the rows of `c`.
    pub tree: MerkleTree,
}

impl Solution {
    /// Commits to an already computed result (e.g. from another backend).
    pub fn from_result(n: usize, c: Vec<f32>) -> Result<Self, CapacityError> {
        let tree = MerkleTree::from_rows(n, &c)?;
        Ok(Solution { n, c, tree })
    }

    /// The commitment sent to the checker.
    pub fn root(&self) -> [u8; 32] {
        self.tree.root()
    }

    /// Row `i` of the result.
    pub fn row(&self, i: u32) -> Option<&[f32]> {
        let i = i as usize;
        (i < self.n).then(|| &self.c[i * self.n..(i + 1) * self.n])
    }

    /// Opens the requested rows (values and Merkle path), in request order.
    /// A row out of range is an error: the request comes from the network.
    pub fn open(&self, rows: &[u32]) -> Result<Vec<RowOpening>, CapacityError> {
        rows.iter()
            .map(|&index| {
                let values = self.row(index).ok_or(CapacityError::RowOutOfRange { row: index, n: self.n as u32 })?;
                Ok(RowOpening { index, values: values.to_vec(), proof: self.tree.proof(index)? })
            })
            .collect()
    }
}

/// Solves a challenge on the CPU backend.
pub fn solve(params: &ChallengeParams) -> Result<Solution, CapacityError> {
    solve_with(&CpuBackend, params)
}

/// Solves a challenge on the given backend: derive A and B from the seed,
/// multiply, build the Merkle tree. A dimension outside `1..=MAX_N` is an
/// error (checked before anything is allocated).
pub fn solve_with(backend: &dyn Backend, params: &ChallengeParams) -> Result<Solution, CapacityError> {
    let n = check_dimension(params.n)?;
    let (a, b) = matrices(&params.seed, n);
    let mut c = vec![0.0f32; n * n];
    backend.matmul(n, &a, &b, &mut c)?;
    Solution::from_result(n, c)
}
