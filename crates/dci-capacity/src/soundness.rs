//! How likely a cheating container is to pass one inspection.
//!
//! # The model
//!
//! The container's only way to save work is to leave part of the product
//! uncomputed: each element `c_ij` costs `2n` flops, and an element it did
//! not compute is *wrong* — off by more than the element-wise FP32 bound
//! ([`crate::tolerance`]; what the bound leaves a cheat is discussed below).
//! It must commit to every row before it learns which rows are opened,
//! which of their elements are checked and which vectors are used; after
//! that it may answer however it likes (*adaptively*), e.g. compute
//! `y_j = A·(B·r_j)` exactly in O(n²) without knowing `C`. Then:
//!
//! * Each opened row has `c` elements (uniform, independent, chosen from the
//!   reveal's seed) recomputed and compared one by one. If a fraction `f` of
//!   all elements is wrong and row `i` holds `w_i` of them, row `i` survives
//!   with probability `x_i = (1 - w_i/n)^c <= 1 - w_i/n`, and the mean of
//!   the `x_i` is at most `1 - f`. The `s` opened rows are a uniform
//!   `s`-subset, so the cheat passes with probability `e_s(x)/C(n, s)` (the
//!   elementary symmetric mean), which by Maclaurin's inequality is at most
//!   `(mean x)^s <= (1 - f)^s`, whatever the placement of the wrong
//!   elements — whole rows (its best choice), columns, or scattered. That is
//!   [`soundness_bits`]: `-s·log2(1 - f)`. Freivalds' rounds add nothing
//!   against an adaptive cheat (its `y` is right; its rows are not).
//! * Freivalds' rounds catch *consistent* errors — a faulty GPU, a wrong
//!   kernel, a cheat that answers `y` from its own committed rows — in every
//!   row, opened or not: a wrong row whose deviation exceeds the band of
//!   [`crate::product_tolerance`] in some element survives a round with
//!   probability at most 1/2 (see [`crate::verify`]), so `k` rounds miss
//!   it with probability at most `2^-k` ([`Soundness::freivalds_bits`]).
//!   The band grows like `n^2.5·2^-25`, so at large `n` only gross errors
//!   exceed it.
//!
//! Which fraction must a cheat leave wrong? A container that claims a class
//! `q` times faster than its hardware and has a deadline `m` times its
//! claimed class's expected time ([`crate::MARGIN`]) must skip a fraction
//! `1 - m/q` of the work to answer in time. The reported figure uses
//! [`MODEL_SKIPPED_FRACTION`] = 1/2 (a claim at least `2m` times too fast);
//! with the default [`DEFAULT_ROWS`] = 40 rows that is 40 bits at every
//! `n`. Smaller lies are caught less often per inspection (a quarter of the
//! work skipped: 16.6 bits with 40 rows), which repeated standby
//! inspections compound.
//!
//! What the tolerance leaves a cheat: an element computed from only a
//! fraction `1 - φ` of its `n` products is off by about `sqrt(φ)·σ`
//! (`σ ≈ sqrt(n)/3` for entries uniform in `[-1, 1)`), while the bound is
//! about `n²·2^-25`, i.e. `0.02σ` at n = 4096 and `0.2σ` at n = 16384: a
//! cheat that trims every element by `φ` stays under the bound for most
//! elements only with `φ` below a few percent at n = 16384 (well below 1%
//! at n <= 8192). Products of narrower inputs (BF16, TF32) are a different
//! matter: the rigorous FP32 bound grows like `n²` and separates them from
//! FP32 only up to n ≈ 512, so at the sizes used a container that computes
//! in BF16 on tensor cores passes the math — only the timing table, which
//! assumes FP32 throughput, constrains it. Stated as a limitation, not
//! hidden.

use serde::Serialize;

/// Freivalds rounds `k` per inspection by default.
pub const DEFAULT_ROUNDS: u32 = 4;

/// Rows `s` opened per inspection by default.
pub const DEFAULT_ROWS: u32 = 40;

/// Elements of each opened row checked against the product by default.
pub const DEFAULT_COLUMNS: u32 = 32;

/// The fraction of the product's elements a cheat is assumed to leave wrong
/// in the reported figure (see the module doc).
pub const MODEL_SKIPPED_FRACTION: f64 = 0.5;

/// Reported instead of infinity when a cheat cannot pass at all (it left
/// every element wrong).
pub const CERTAIN_BITS: f64 = 256.0;

/// Both figures of the model for one parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Soundness {
    /// `-log2 P(pass)` for an adaptive cheat with the given fraction of
    /// wrong elements: `-s·log2(1 - f)`.
    pub sampling_bits: f64,
    /// `-log2 P(miss)` for one consistently wrong row whose error exceeds
    /// the Freivalds band: one bit per round.
    pub freivalds_bits: f64,
}

/// Both figures for dimension `n`, `rounds` Freivalds vectors, `rows`
/// opened rows (capped at `n`) and a cheat that leaves `skipped_fraction`
/// of the elements wrong (clamped to `[0, 1]`; NaN counts as 0).
pub fn soundness(n: u32, rounds: u32, rows: u32, skipped_fraction: f64) -> Soundness {
    let fraction = if skipped_fraction.is_nan() { 0.0 } else { skipped_fraction.clamp(0.0, 1.0) };
    let opened = f64::from(rows.min(n));
    let bits = if fraction >= 1.0 && opened > 0.0 { CERTAIN_BITS } else { -opened * (1.0 - fraction).log2() };
    Soundness { sampling_bits: bits.clamp(0.0, CERTAIN_BITS), freivalds_bits: f64::from(rounds) }
}

/// The soundness figure this crate reports: `-log2` of the largest
/// probability that a cheat leaving `skipped_fraction` of the product's
/// elements wrong passes one inspection with `rows` opened rows:
/// `-rows·log2(1 - skipped_fraction)` (see the module doc). `rounds` does
/// not raise it against an adaptive cheat; it is taken for symmetry with
/// [`soundness`], whose `freivalds_bits` it sets.
pub fn soundness_bits(n: u32, rounds: u32, rows: u32, skipped_fraction: f64) -> f64 {
    soundness(n, rounds, rows, skipped_fraction).sampling_bits
}
