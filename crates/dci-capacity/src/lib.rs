//! Proof of compute capacity (R-CK5): the math the container and the checker
//! share.
//!
//! A challenge ([`dci_proto::ChallengeParams`]) is a fresh 32-byte seed and a
//! dimension `n`. Both sides derive the same `n x n` matrices A and B from the
//! seed ([`matrices`]). The container computes `C = A · B` with FP32
//! accumulation on a [`Backend`] ([`solve`]) and commits to the Merkle root
//! over C's rows ([`MerkleTree`]). Only then does the checker pick random rows
//! ([`pick_rows`]); the container opens them ([`Solution::open`]) and the
//! checker verifies each path against the root and recomputes each row from
//! A's row and all of B, within a rigorous FP32 error bound ([`verify_rows`],
//! [`tolerance`]). The checker's work is O(k·n²) against the container's
//! O(n³) ([`cost`]).
//!
//! This crate is pure computation: no IO, no clock, and no randomness except
//! the RNG the caller passes to [`pick_rows`]. It is not the checker's state
//! machine (that is `dci-checker`) and not the container's agent. Only the
//! CPU backend exists today; Freivalds' check and a GPU backend (behind a
//! cargo feature) are to come and fit in beside [`verify_rows`] and
//! [`CpuBackend`].

mod backend;
mod cost;
mod matrix;
mod merkle;
mod solve;
mod verify;

pub use backend::{Backend, CpuBackend};
pub use cost::{Cost, Work, cost};
pub use matrix::{MAX_N, a_row, b_matrix, check_dimension, matrices};
pub use merkle::{MerkleTree, depth, leaf_hash, verify_opening};
pub use solve::{Solution, solve, solve_with};
pub use verify::{F32_UNIT_ROUNDOFF, pick_rows, tolerance, verify_rows};

/// Why a challenge could not be solved, or its openings do not verify.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CapacityError {
    /// The challenge dimension is outside `1..=MAX_N`.
    #[error("expected a matrix dimension in 1..={max}, found {found}")]
    Dimension {
        /// The largest accepted dimension.
        max: u32,
        /// The dimension given.
        found: u32,
    },
    /// A matrix buffer has the wrong number of values.
    #[error("expected a matrix of {expected} values, found {found}")]
    ResultLength {
        /// `n * n`.
        expected: usize,
        /// What was given.
        found: usize,
    },
    /// A requested row does not exist.
    #[error("expected a row index below {n}, found {row}")]
    RowOutOfRange {
        /// The requested row.
        row: u32,
        /// The dimension.
        n: u32,
    },
    /// The checker's own list of rows to open names a row twice.
    #[error("expected distinct rows to open, found row {row} twice")]
    DuplicateExpectedRow {
        /// The repeated row.
        row: u32,
    },
    /// A row was opened that the checker did not ask for.
    #[error("expected only the requested rows, found an opening of row {row}")]
    UnexpectedRow {
        /// The row.
        row: u32,
    },
    /// A row was opened more than once.
    #[error("expected each requested row opened once, found row {row} opened twice")]
    DuplicateRow {
        /// The row.
        row: u32,
    },
    /// A requested row was not opened.
    #[error("expected an opening of row {row}, found none")]
    MissingRow {
        /// The row.
        row: u32,
    },
    /// An opened row has the wrong number of values.
    #[error("expected {expected} values in row {row}, found {found}")]
    RowLength {
        /// The row.
        row: u32,
        /// `n`.
        expected: usize,
        /// What was opened.
        found: usize,
    },
    /// An opened row's Merkle path does not lead to the committed root.
    #[error("expected row {row}'s merkle path to lead to the committed root, found it does not")]
    BadProof {
        /// The row.
        row: u32,
    },
    /// An opened value is not the product within the FP32 bound.
    #[error("row {row} column {col}: expected {expected} within {tolerance:e}, found {found}")]
    Value {
        /// The row.
        row: u32,
        /// The column.
        col: u32,
        /// The exact product (f64).
        expected: f64,
        /// The opened value.
        found: f32,
        /// The accepted error for this element.
        tolerance: f64,
    },
    /// A backend failed to compute the product.
    #[error("matrix backend {backend} failed: {reason}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// What went wrong.
        reason: String,
    },
}
