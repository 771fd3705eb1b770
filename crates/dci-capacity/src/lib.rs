//! Proof of compute capacity (R-CK5): the math the container and the checker
//! share, and the tables and models around it.
//!
//! A challenge ([`dci_proto::ChallengeParams`]) is a fresh 32-byte seed and a
//! dimension `n`, sized to the claimed hardware ([`size_for`]). Both sides
//! derive the same `n x n` matrices A and B from the seed ([`matrices`]). The
//! container computes `C = A · B` with FP32 accumulation on a [`Backend`]
//! ([`solve`]; [`CpuBackend`], or `CudaBackend` behind the `cuda` feature)
//! and commits to the Merkle root over C's rows ([`MerkleTree`]). Only then
//! does the checker reveal ([`Reveal`]) a fresh seed for `k` Freivalds
//! vectors and the rows to open; the container answers `y_j = C · r_j` and
//! the opened rows ([`respond`]); the checker verifies the paths, the
//! opened rows against `y` and, at sampled elements, against `a_i · B`, and
//! every `y_j` against `A · (B · r_j)`, all within rigorous FP32 error
//! bounds ([`verify`], [`Violation`]), in one streaming pass over A and B. [`soundness_bits`] states what a cheat gets
//! away with and [`freivalds_cost`] / [`mod@bench`] what verification costs
//! against the container's work. The commit time is judged against a
//! per-class table ([`TimingClass`], [`judge`], [`judge_silence`]).
//! [`Behaviour`] plays dishonest containers for tests and the simulator.
//!
//! The older row-only check ([`pick_rows`], [`verify_rows`]) remains for
//! callers that open rows without Freivalds' round.
//!
//! This crate is pure computation: no IO, no clock (except inside
//! [`bench::run`]), and no randomness except the RNGs callers pass in. It is
//! not the checker's state machine (that is `dci-checker`), not the
//! container's agent, and it defines no wire messages: [`Reveal`] and
//! [`Response`] are serde types for `dci-proto` to carry.

mod backend;
mod behaviour;
pub mod bench;
mod chacha;
mod cost;
#[cfg(feature = "cuda")]
mod cuda;
mod freivalds;
mod gemm;
mod matrix;
mod merkle;
mod solve;
pub mod soundness;
mod timing;
mod verify;

pub use backend::{Backend, CpuBackend};
pub use behaviour::{Attempt, Behaviour};
pub use cost::{Cost, Work, cost, freivalds_cost};
#[cfg(feature = "cuda")]
pub use cuda::CudaBackend;
pub use dci_proto::{Response, Reveal};
pub use freivalds::{
    F64_UNIT_ROUNDOFF, FALSE_REJECT_BITS, MAX_ROUNDS, MAX_ROWS, Params, RevealExt, Violation, consistency_tolerance,
    freivalds_lambda, gamma, product_tolerance, respond, verify,
};
pub use matrix::{MAX_N, a_row, b_matrix, check_dimension, matrices};
pub use merkle::{MerkleTree, depth, leaf_hash, verify_opening};
pub use solve::{Solution, solve, solve_with};
pub use soundness::{
    CERTAIN_BITS, DEFAULT_COLUMNS, DEFAULT_ROUNDS, DEFAULT_ROWS, MODEL_SKIPPED_FRACTION, Soundness, soundness,
    soundness_bits,
};
pub use timing::{
    CPU_UNITS, ClassSpec, MARGIN, MIN_N, RESPONSE_FLOPS, SLACK_MS, Timing, TimingClass, TimingNoise, class_of_model,
    deadline_ms, expected_ms, judge, judge_silence, response_deadline_ms, size_for, verified_units,
};
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
    /// A reveal or parameter set asks for no rounds or too many.
    #[error("expected 1..={max} freivalds rounds, found {found}")]
    Rounds {
        /// The most accepted.
        max: u32,
        /// The number asked for.
        found: u32,
    },
    /// A reveal or parameter set opens no rows or too many.
    #[error("expected 1..={max} rows to open, found {found}")]
    RowCount {
        /// The most accepted.
        max: u32,
        /// The number asked for.
        found: u32,
    },
    /// A reveal or parameter set checks no column of the opened rows.
    #[error("expected at least 1 column checked per opened row, found {found}")]
    ColumnCount {
        /// The number asked for.
        found: u32,
    },
    /// A reveal belongs to another challenge.
    #[error("expected a reveal for challenge {expected}, found one for challenge {found}")]
    WrongChallenge {
        /// The challenge being verified.
        expected: u64,
        /// The reveal's challenge.
        found: u64,
    },
    /// The GPU backend cannot run here.
    #[error("expected a usable CUDA GPU, found none: {why}")]
    NoGpu {
        /// What is missing (driver library, cuBLAS, device) or failed.
        why: String,
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
