//! Freivalds' check with row openings: the round after the commitment.
//!
//! 1. The container has committed to the Merkle root over the rows of its
//!    result `Ĉ` ([`crate::Solution::root`]).
//! 2. The checker reveals ([`Reveal::draw`]) a fresh 32-byte seed, from which
//!    `k` vectors `r_j ∈ {-1, +1}^n` derive ([`Reveal::vectors`]), and `s`
//!    rows to open, all chosen only now.
//! 3. The container answers ([`respond`]) with `y_j = Ĉ · r_j` for every
//!    round (accumulated in f64, sent as f32) and the opened rows with their
//!    Merkle paths.
//! 4. The checker ([`verify`]) checks, cheapest first: the shape of the
//!    answer; each opened row's path to the root; each opened row against
//!    `y` (`ĉ_i · r_j ≈ y_j[i]`, [`consistency_tolerance`]); then, in one
//!    streaming pass over A and B (never holding either whole), sampled
//!    elements of each opened row against `a_i · B` (the columns derive from
//!    the reveal's seed, [`Reveal::checked_columns`]; bound
//!    [`crate::tolerance`], as in [`crate::verify_rows`]) and every entry of
//!    every `y_j` against `A · (B · r_j)` ([`product_tolerance`]).
//!
//! Why sampled columns and not whole rows: a row's elements are checked one
//! by one against the product, and the cheat's best pattern is whole wrong
//! rows, which one checked element per opened row already catches; checking
//! `c` elements per row instead of `n` cuts the checker's cost from
//! `O(s·n²)` to `O(s·c·n)` with the same bound (see [`mod@crate::soundness`]).
//!
//! Why `±1` vectors: multiplying by `±1` is exact in every float format, so
//! all the error comes from the container's product, whose worst case is
//! known; `B · r_j` is even exact in f64 (the entries of B are multiples of
//! `2^-23` below 1 in magnitude, so every partial sum of `n <= 2^14` of them
//! is a multiple of `2^-23` below `2^14`). And the anti-concentration is
//! clean: if a committed row is off by `d` and some `|d_l|` exceeds the
//! total tolerance `T`, flipping `r_l` moves `d · r` by `2|d_l| > 2T`, so at
//! most one of the two signs lands inside `[-T, T]`: a round misses it with
//! probability at most 1/2. What a cheater can do with the tolerance is the
//! subject of [`mod@crate::soundness`].

use std::collections::BTreeSet;

use dci_proto::{ChallengeParams, Response, Reveal, RowOpening};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::CapacityError;
use crate::chacha::Stream;
use crate::gemm::skinny;
use crate::matrix::{Which, check_dimension, rows_into};
use crate::merkle::verify_opening;
use crate::solve::Solution;
use crate::verify::{F32_UNIT_ROUNDOFF, pick_rows, tolerance};

/// Unit roundoff of FP64: `2^-53`.
pub const F64_UNIT_ROUNDOFF: f64 = 1.0 / 9_007_199_254_740_992.0;

/// The most Freivalds rounds a reveal may ask for.
pub const MAX_ROUNDS: u32 = 64;

/// The most rows a reveal may open.
pub const MAX_ROWS: u32 = 1024;

/// An honest container is rejected by Freivalds' tolerance with probability
/// at most `2^-FALSE_REJECT_BITS` per inspection (see [`product_tolerance`]);
/// every other check never rejects an honest container.
pub const FALSE_REJECT_BITS: f64 = 64.0;

/// How many rounds and rows the checker asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Freivalds rounds `k`: vectors `r_j` revealed.
    pub rounds: u32,
    /// Rows `s` opened against the commitment.
    pub rows: u32,
    /// Columns of each opened row checked against `a_i · B` (all of them
    /// when at least `n`).
    pub columns: u32,
}

impl Params {
    /// The defaults: [`crate::DEFAULT_ROUNDS`] rounds, [`crate::DEFAULT_ROWS`]
    /// rows, [`crate::DEFAULT_COLUMNS`] columns per row — at least 40 bits
    /// against a container that leaves half the product wrong (see
    /// [`crate::soundness_bits`]).
    pub const DEFAULT: Params =
        Params { rounds: crate::DEFAULT_ROUNDS, rows: crate::DEFAULT_ROWS, columns: crate::DEFAULT_COLUMNS };

    /// Checks the counts: `1..=MAX_ROUNDS` rounds, `1..=MAX_ROWS` rows, at
    /// least one column.
    pub fn validate(&self) -> Result<(), CapacityError> {
        if self.rounds == 0 || self.rounds > MAX_ROUNDS {
            return Err(CapacityError::Rounds { max: MAX_ROUNDS, found: self.rounds });
        }
        if self.rows == 0 || self.rows > MAX_ROWS {
            return Err(CapacityError::RowCount { max: MAX_ROWS, found: self.rows });
        }
        if self.columns == 0 {
            return Err(CapacityError::ColumnCount { found: 0 });
        }
        Ok(())
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::DEFAULT
    }
}

/// What the checker does with a [`Reveal`] (the type is part of the wire
/// format, in `dci-proto`; its meaning is defined here).
pub trait RevealExt: Sized {
    /// Draws a fresh reveal from the checker's RNG. Call it only after the
    /// commitment arrived: vectors and rows must be unknown to the container
    /// when it commits. Rows are capped at `n`.
    fn draw<R: Rng + ?Sized>(rng: &mut R, challenge: &ChallengeParams, params: Params) -> Self;

    /// Checks the reveal against a dimension `n`: rounds in
    /// `1..=MAX_ROUNDS`, at most `MAX_ROWS` rows, all distinct and below
    /// `n`, at least one column.
    fn validate(&self, n: u32) -> Result<(), CapacityError>;

    /// The vectors as an `n x k` row-major matrix `R` (`R[l][j] = r_j[l]`,
    /// each `±1`): bit `l mod 32` of keystream word `j·⌈n/32⌉ + ⌊l/32⌋`,
    /// set meaning `+1`.
    fn vectors(&self, n: usize) -> Vec<f64>;

    /// The columns checked in the `t`-th opened row: all of `0..n` when
    /// `columns >= n`, else `columns` indices drawn uniformly with
    /// replacement from ChaCha20 stream 1 of the seed (word `t·columns + c`
    /// mapped to `⌊w·n / 2^32⌋`).
    fn checked_columns(&self, n: usize, t: usize) -> Vec<u32>;
}

impl RevealExt for Reveal {
    fn draw<R: Rng + ?Sized>(rng: &mut R, challenge: &ChallengeParams, params: Params) -> Reveal {
        let seed: [u8; 32] = rng.random();
        let rows = pick_rows(rng, challenge.n, params.rows);
        Reveal { challenge: challenge.id, seed, rounds: params.rounds, rows, columns: params.columns }
    }

    fn validate(&self, n: u32) -> Result<(), CapacityError> {
        if self.rounds == 0 || self.rounds > MAX_ROUNDS {
            return Err(CapacityError::Rounds { max: MAX_ROUNDS, found: self.rounds });
        }
        if self.columns == 0 {
            return Err(CapacityError::ColumnCount { found: 0 });
        }
        if self.rows.len() > MAX_ROWS as usize {
            return Err(CapacityError::RowCount {
                max: MAX_ROWS,
                found: u32::try_from(self.rows.len()).unwrap_or(u32::MAX),
            });
        }
        let mut seen = BTreeSet::new();
        for &row in &self.rows {
            if row >= n {
                return Err(CapacityError::RowOutOfRange { row, n });
            }
            if !seen.insert(row) {
                return Err(CapacityError::DuplicateExpectedRow { row });
            }
        }
        Ok(())
    }

    fn vectors(&self, n: usize) -> Vec<f64> {
        let k = self.rounds as usize;
        let words_per_vector = n.div_ceil(32);
        let mut words = vec![0u32; words_per_vector * k];
        Stream::new(&self.seed, 0).fill_with(0, &mut words, |w| w);
        let mut r = vec![0.0f64; n * k];
        for (l, row) in r.chunks_exact_mut(k.max(1)).enumerate().take(n) {
            for (j, v) in row.iter_mut().enumerate() {
                let word = words[j * words_per_vector + l / 32];
                *v = if (word >> (l % 32)) & 1 == 1 { 1.0 } else { -1.0 };
            }
        }
        r
    }

    fn checked_columns(&self, n: usize, t: usize) -> Vec<u32> {
        let c = self.columns as usize;
        if c >= n {
            return (0..n as u32).collect();
        }
        let mut cols = vec![0u32; c];
        let n = n as u64;
        Stream::new(&self.seed, 1)
            .fill_with((t as u128) * (c as u128), &mut cols, |w| ((u64::from(w) * n) >> 32) as u32);
        cols
    }
}

/// The container's side: `y_j = Ĉ · r_j` from the committed result (each
/// sum accumulated in f64, any order, then rounded to f32) and the requested
/// rows opened. A reveal that does not fit the solution is an error.
pub fn respond(solution: &Solution, reveal: &Reveal) -> Result<Response, CapacityError> {
    let n = solution.n;
    reveal.validate(u32::try_from(n).unwrap_or(u32::MAX))?;
    let r = reveal.vectors(n);
    Ok(Response {
        challenge: reveal.challenge,
        products: products(n, &solution.c, &r, reveal.rounds as usize),
        rows: solution.open(&reveal.rows)?,
    })
}

/// `y_j = C · r_j` for a row-major `n x n` result `c` and the `n x k`
/// vector matrix `r`, each entry accumulated in f64 and rounded to f32.
pub(crate) fn products(n: usize, c: &[f32], r: &[f64], k: usize) -> Vec<Vec<f32>> {
    let mut y = vec![vec![0.0f32; n]; k];
    let mut acc = vec![0.0f64; k];
    for (i, row) in c.chunks_exact(n.max(1)).enumerate().take(n) {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (&v, signs) in row.iter().zip(r.chunks_exact(k.max(1))) {
            let v = f64::from(v);
            for (a, s) in acc.iter_mut().zip(signs) {
                *a += v * s;
            }
        }
        for (yj, a) in y.iter_mut().zip(&acc) {
            yj[i] = *a as f32;
        }
    }
    y
}

/// What failed in a container's answer, or why the checker's own input
/// could not be checked ([`Violation::Setup`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Violation {
    /// The challenge or the reveal is invalid: the checker's fault, not the
    /// container's.
    #[error("the checker's challenge or reveal is invalid: {0}")]
    Setup(CapacityError),
    /// The answer is for another challenge.
    #[error("expected an answer to challenge {expected}, found one to challenge {found}")]
    WrongChallenge {
        /// The challenge asked.
        expected: u64,
        /// The challenge answered.
        found: u64,
    },
    /// Not one product vector per round.
    #[error("expected {expected} product vectors (one per round), found {found}")]
    ProductCount {
        /// Rounds.
        expected: usize,
        /// Vectors sent.
        found: usize,
    },
    /// A product vector has the wrong length.
    #[error("expected product vector {round} to hold {expected} values, found {found}")]
    ProductLength {
        /// The round.
        round: u32,
        /// `n`.
        expected: usize,
        /// Values sent.
        found: usize,
    },
    /// A product value is NaN or infinite.
    #[error("expected finite values, found {value} in product vector {round} at index {index}")]
    ProductNotFinite {
        /// The round.
        round: u32,
        /// The index in the vector.
        index: u32,
        /// The value.
        value: f32,
    },
    /// A row was opened that was not requested.
    #[error("expected only the requested rows, found an opening of row {row}")]
    UnexpectedRow {
        /// The row.
        row: u32,
    },
    /// A row was opened twice.
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
    /// An opened row has the wrong length.
    #[error("expected {expected} values in row {row}, found {found}")]
    RowLength {
        /// The row.
        row: u32,
        /// `n`.
        expected: usize,
        /// Values opened.
        found: usize,
    },
    /// An opened value is NaN or infinite.
    #[error("expected finite values, found {value} in row {row} column {col}")]
    RowNotFinite {
        /// The row.
        row: u32,
        /// The column.
        col: u32,
        /// The value.
        value: f32,
    },
    /// An opened row's Merkle path does not lead to the committed root.
    #[error("expected row {row}'s merkle path to lead to the committed root, found it does not")]
    BadPath {
        /// The row.
        row: u32,
    },
    /// An opened row does not give the product the container sent for it.
    #[error(
        "row {row} round {round}: expected the product {dot} of the opened row within {tolerance:e}, found {found}"
    )]
    Inconsistent {
        /// The row.
        row: u32,
        /// The round.
        round: u32,
        /// `ĉ_i · r_j` from the opened row.
        dot: f64,
        /// `y_j[i]` as sent.
        found: f32,
        /// The accepted difference.
        tolerance: f64,
    },
    /// An opened value is not `(a_i · B)_col` within the FP32 bound.
    #[error("row {row} column {col}: expected {expected} within {tolerance:e}, found {found}")]
    RowMismatch {
        /// The row.
        row: u32,
        /// The column.
        col: u32,
        /// The product, computed in f64.
        expected: f64,
        /// The opened value.
        found: f32,
        /// The accepted difference.
        tolerance: f64,
    },
    /// A product entry is not `(A · B · r_j)[i]` within the bound.
    #[error("product vector {round} index {index}: expected {expected} within {tolerance:e}, found {found}")]
    ProductMismatch {
        /// The round.
        round: u32,
        /// The index.
        index: u32,
        /// `(A · (B · r_j))[i]` in f64.
        expected: f64,
        /// `y_j[i]` as sent.
        found: f32,
        /// The accepted difference.
        tolerance: f64,
    },
}

impl Violation {
    /// A short stable name for logs, metrics and verdict reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::Setup(_) => "setup",
            Violation::WrongChallenge { .. } => "wrong_challenge",
            Violation::ProductCount { .. } => "product_count",
            Violation::ProductLength { .. } => "product_length",
            Violation::ProductNotFinite { .. } => "product_not_finite",
            Violation::UnexpectedRow { .. } => "unexpected_row",
            Violation::DuplicateRow { .. } => "duplicate_row",
            Violation::MissingRow { .. } => "missing_row",
            Violation::RowLength { .. } => "row_length",
            Violation::RowNotFinite { .. } => "row_not_finite",
            Violation::BadPath { .. } => "bad_path",
            Violation::Inconsistent { .. } => "inconsistent",
            Violation::RowMismatch { .. } => "row_mismatch",
            Violation::ProductMismatch { .. } => "product_mismatch",
        }
    }

    /// True when the container is at fault (everything but [`Violation::Setup`]).
    pub fn is_container_fault(&self) -> bool {
        !matches!(self, Violation::Setup(_))
    }
}

/// `γ_m = m·u / (1 - m·u)` for unit roundoff `u`: the relative error bound of
/// a sum of `m` products in that precision, any order (Higham §3.1).
pub fn gamma(m: usize, unit: f64) -> f64 {
    let mu = m as f64 * unit;
    mu / (1.0 - mu)
}

/// Slack for rounding the tolerance itself.
const SLACK: f64 = 1.0 + 1.0 / (1u64 << 30) as f64;

/// Accepted `|y_j[i] - d|` where `d = Σ_l ĉ_il · r_jl` is the checker's f64
/// sum over the opened row and `abs_row = Σ_l |ĉ_il|`.
///
/// The container's f64 sum and the checker's are each within
/// `γ⁽⁶⁴⁾_n · abs_row` of the exact sum (products by `±1` are exact), and
/// rounding to f32 adds at most `u·|ỹ|`: so
/// `u·|d| + 3·γ⁽⁶⁴⁾_n·abs_row` bounds the difference. It is tight — about
/// `2^-24` of the value — so `y` is bound to the committed rows.
pub fn consistency_tolerance(n: usize, dot: f64, abs_row: f64) -> f64 {
    (F32_UNIT_ROUNDOFF * dot.abs() + 3.0 * gamma(n, F64_UNIT_ROUNDOFF) * abs_row) * SLACK
}

/// The `λ` of [`product_tolerance`] for `n` and `k` rounds: per entry, an
/// honest value falls outside the band with probability at most
/// `ε = 2^-FALSE_REJECT_BITS / (n·k)`, so `λ = sqrt(2·ln(2/ε))`.
pub fn freivalds_lambda(n: usize, rounds: usize) -> f64 {
    let ln_inv_eps = FALSE_REJECT_BITS * std::f64::consts::LN_2 + ((n.max(1) * rounds.max(1)) as f64).ln();
    (2.0 * (std::f64::consts::LN_2 + ln_inv_eps)).sqrt()
}

/// Accepted `|y_j[i] - z_ij|` where `z_ij` is the checker's f64 value of
/// `(A · (B · r_j))[i]`, given `abs_a = Σ_k |a_ik|` and
/// `x_max = max_k |(B · r_j)[k]|`.
///
/// Derivation. Write `Ĉ = AB + E`. The container's FP32 product has
/// `|E_il| <= γ_n·M_il` with `M = |A||B|`, and `M_il <= abs_a` (entries of B
/// are below 1). Then `y_j[i] - (AB r_j)[i]` is `Σ_l E_il·r_jl` plus the
/// f64 accumulation and f32 rounding of `y` (below
/// `(u + 2γ⁽⁶⁴⁾_n)·n·abs_a·(1 + γ_n)`, since `Σ_l |ĉ_il| <= n·abs_a·(1+γ_n)`).
/// The worst case of `Σ_l E_il·r_jl` is `γ_n·n·abs_a`, far above the value
/// itself for large n; but `E` was fixed when the container committed, before
/// `r_j` was drawn, so by Hoeffding's inequality over the checker's own
/// signs, `P(|Σ_l E_il·r_jl| >= t) <= 2·exp(-t² / (2·Σ_l E_il²))` with
/// `Σ_l E_il² <= n·(γ_n·abs_a)²`. With `t = λ·γ_n·sqrt(n)·abs_a` and `λ`
/// from [`freivalds_lambda`], the union over all `n·k` entries fails an
/// honest answer with probability at most `2^-FALSE_REJECT_BITS`. The
/// checker's own error is tiny: `B·r_j` is exact in f64 and `A·(B·r_j)` in
/// f64 is within `γ⁽⁶⁴⁾_n·abs_a·x_max`.
///
/// Scale: `abs_a ≈ n/2`, so the band is about `λ·n^2.5·2^-25`: about 1.5 at
/// n = 1024 against values of size ~`n/3`; at n = 16384 it is ~11,000
/// against values of ~5,500 — Freivalds alone then only catches gross
/// errors, and the element-wise check of the opened rows
/// ([`crate::tolerance`], ~0.2σ of an entry at n = 16384) carries the
/// soundness (see [`mod@crate::soundness`]).
pub fn product_tolerance(n: usize, rounds: usize, abs_a: f64, x_max: f64) -> f64 {
    let g = gamma(n, F32_UNIT_ROUNDOFF);
    let g64 = gamma(n, F64_UNIT_ROUNDOFF);
    let hoeffding = freivalds_lambda(n, rounds) * g * (n as f64).sqrt() * abs_a;
    let rounding = (F32_UNIT_ROUNDOFF + 2.0 * g64) * n as f64 * abs_a * (1.0 + g);
    let checker = g64 * abs_a * x_max;
    (hoeffding + rounding + checker) * SLACK
}

/// The checker's side: verifies `response` against the commitment `root`
/// for the challenge `params` and the checker's own `reveal`. Cheap checks
/// run first (shape, finiteness, Merkle paths, consistency of the opened
/// rows with `y`), then one streaming pass over A and B computes
/// `A · (B · R)` and the opened rows' products. The first failure is
/// returned. Bad input is an error value, never a panic; memory stays
/// `O((s + k)·n + block)`, never `n²`.
pub fn verify(
    params: &ChallengeParams,
    root: &[u8; 32],
    reveal: &Reveal,
    response: &Response,
) -> Result<(), Violation> {
    let n = check_dimension(params.n).map_err(Violation::Setup)?;
    reveal.validate(params.n).map_err(Violation::Setup)?;
    if reveal.challenge != params.id {
        return Err(Violation::Setup(CapacityError::WrongChallenge { expected: params.id, found: reveal.challenge }));
    }
    if response.challenge != params.id {
        return Err(Violation::WrongChallenge { expected: params.id, found: response.challenge });
    }
    let k = reveal.rounds as usize;
    check_products(n, k, &response.products)?;
    check_openings(n, root, &reveal.rows, &response.rows)?;

    let r = reveal.vectors(n);
    for opening in &response.rows {
        check_consistency(n, k, &r, opening, &response.products)?;
    }

    let opened: Vec<u32> = response.rows.iter().map(|o| o.index).collect();
    let columns: Vec<Vec<u32>> = (0..opened.len()).map(|t| reveal.checked_columns(n, t)).collect();
    let pass = Pass::run(&params.seed, n, k, &r, &opened, &columns).map_err(Violation::Setup)?;
    for (t, opening) in response.rows.iter().enumerate() {
        for (c, &col) in columns[t].iter().enumerate() {
            let found = opening.values[col as usize];
            let (expected, magnitude) = pass.checked[t][c];
            let tolerance = tolerance(n, magnitude) * SLACK;
            if (f64::from(found) - expected).abs() > tolerance {
                return Err(Violation::RowMismatch { row: opening.index, col, expected, found, tolerance });
            }
        }
    }
    for i in 0..n {
        for (j, y) in response.products.iter().enumerate() {
            let expected = pass.z[i * k + j];
            let tolerance = product_tolerance(n, k, pass.abs_a[i], pass.x_max[j]);
            if (f64::from(y[i]) - expected).abs() > tolerance {
                return Err(Violation::ProductMismatch {
                    round: j as u32,
                    index: i as u32,
                    expected,
                    found: y[i],
                    tolerance,
                });
            }
        }
    }
    Ok(())
}

fn check_products(n: usize, k: usize, products: &[Vec<f32>]) -> Result<(), Violation> {
    if products.len() != k {
        return Err(Violation::ProductCount { expected: k, found: products.len() });
    }
    for (j, y) in products.iter().enumerate() {
        if y.len() != n {
            return Err(Violation::ProductLength { round: j as u32, expected: n, found: y.len() });
        }
        if let Some((index, &value)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Violation::ProductNotFinite { round: j as u32, index: index as u32, value });
        }
    }
    Ok(())
}

fn check_openings(n: usize, root: &[u8; 32], rows: &[u32], openings: &[RowOpening]) -> Result<(), Violation> {
    let expected: BTreeSet<u32> = rows.iter().copied().collect();
    let mut seen = BTreeSet::new();
    for opening in openings {
        let row = opening.index;
        if !expected.contains(&row) {
            return Err(Violation::UnexpectedRow { row });
        }
        if !seen.insert(row) {
            return Err(Violation::DuplicateRow { row });
        }
        if opening.values.len() != n {
            return Err(Violation::RowLength { row, expected: n, found: opening.values.len() });
        }
        if let Some((col, &value)) = opening.values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Violation::RowNotFinite { row, col: col as u32, value });
        }
        if !verify_opening(root, n, opening) {
            return Err(Violation::BadPath { row });
        }
    }
    if let Some(&row) = expected.difference(&seen).next() {
        return Err(Violation::MissingRow { row });
    }
    Ok(())
}

fn check_consistency(
    n: usize,
    k: usize,
    r: &[f64],
    opening: &RowOpening,
    products: &[Vec<f32>],
) -> Result<(), Violation> {
    let mut dots = vec![0.0f64; k];
    let mut abs_row = 0.0f64;
    for (&v, signs) in opening.values.iter().zip(r.chunks_exact(k)) {
        let v = f64::from(v);
        abs_row += v.abs();
        for (d, s) in dots.iter_mut().zip(signs) {
            *d += v * s;
        }
    }
    let i = opening.index as usize;
    for (j, (&dot, y)) in dots.iter().zip(products).enumerate() {
        let tolerance = consistency_tolerance(n, dot, abs_row);
        if (f64::from(y[i]) - dot).abs() > tolerance {
            return Err(Violation::Inconsistent { row: opening.index, round: j as u32, dot, found: y[i], tolerance });
        }
    }
    Ok(())
}

/// What the checker computes in its one pass over A and B.
pub(crate) struct Pass {
    /// `A · (B · R)`, `n x k` row-major, f64.
    pub z: Vec<f64>,
    /// `Σ_k |a_ik|` for every row `i` (exact in f64).
    pub abs_a: Vec<f64>,
    /// `max_k |(B · r_j)[k]|` per round.
    pub x_max: Vec<f64>,
    /// For each opened row and each of its checked columns: the product
    /// `Σ_k a_ik·b_k,col` and its magnitude `Σ_k |a_ik·b_k,col|`, in f64.
    pub checked: Vec<Vec<(f64, f64)>>,
}

/// Rows of A or B generated per step: about 2^17 values, so the buffers stay
/// in the low megabytes (and mostly in cache) whatever `n` is.
fn block_rows(n: usize) -> usize {
    ((1usize << 17) / n).clamp(1, n)
}

impl Pass {
    /// The pass for challenge `seed` at dimension `n` (checked), the `n x k`
    /// vector matrix `r`, the opened `rows` (each below `n`) and, for each,
    /// the columns to recompute (each below `n`).
    pub(crate) fn run(
        seed: &[u8; 32],
        n: usize,
        k: usize,
        r: &[f64],
        rows: &[u32],
        columns: &[Vec<u32>],
    ) -> Result<Pass, CapacityError> {
        let shape_failed =
            || CapacityError::Backend { backend: "checker", reason: "inconsistent product shapes".into() };
        let mut a_opened = vec![0.0f64; rows.len() * n];
        for (dst, &row) in a_opened.chunks_exact_mut(n).zip(rows) {
            rows_into(seed, Which::A, n, row as usize, dst);
        }
        let mut checked: Vec<Vec<(f64, f64)>> = columns.iter().map(|cols| vec![(0.0, 0.0); cols.len()]).collect();
        let rt = transpose(r, n, k);
        let mut x = vec![0.0f64; n * k];

        let bb = block_rows(n);
        let mut block = vec![0.0f64; bb * n];
        let mut first = 0;
        while first < n {
            let here = bb.min(n - first);
            let b = &mut block[..here * n];
            rows_into(seed, Which::B, n, first, b);
            // X[first..first+here] = B_blk · R, exact in f64.
            if !skinny(b, n, &rt, k, &mut x[first * k..(first + here) * k], None) {
                return Err(shape_failed());
            }
            // The opened rows' checked columns: a_ik · b_k,col for k in this block.
            for ((cols, sums), a_row) in columns.iter().zip(&mut checked).zip(a_opened.chunks_exact(n)) {
                for (&aik, b_row) in a_row[first..first + here].iter().zip(b.chunks_exact(n)) {
                    for (acc, &col) in sums.iter_mut().zip(cols) {
                        let p = aik * b_row[col as usize];
                        acc.0 += p;
                        acc.1 += p.abs();
                    }
                }
            }
            first += here;
        }
        let mut x_max = vec![0.0f64; k];
        for row in x.chunks_exact(k) {
            for (m, v) in x_max.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }

        let xt = transpose(&x, n, k);
        let mut z = vec![0.0f64; n * k];
        let mut abs_a = vec![0.0f64; n];
        let mut first = 0;
        while first < n {
            let here = bb.min(n - first);
            let a = &mut block[..here * n];
            rows_into(seed, Which::A, n, first, a);
            let z_blk = &mut z[first * k..(first + here) * k];
            if !skinny(a, n, &xt, k, z_blk, Some(&mut abs_a[first..first + here])) {
                return Err(shape_failed());
            }
            first += here;
        }
        Ok(Pass { z, abs_a, x_max, checked })
    }
}

/// The transpose of a row-major `rows x cols` matrix.
fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0f64; m.len()];
    for (i, row) in m.chunks_exact(cols.max(1)).enumerate().take(rows) {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
}
