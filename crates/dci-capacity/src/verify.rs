//! The checker's side: which rows to open, and whether the openings prove
//! the committed result is `A · B`.

use std::collections::BTreeSet;

use dci_proto::{ChallengeParams, RowOpening};
use rand::Rng;

use crate::CapacityError;
use crate::matrix::{a_row, b_matrix, check_dimension};
use crate::merkle::verify_opening;

/// Unit roundoff of FP32: `2^-24`.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// The accepted error of one result element, given `magnitude` =
/// `Σ_k |a[i][k]| · |b[k][j]|` of that element.
///
/// The bound: any standard FP32 matrix product (FP32 inputs, FP32 or wider
/// accumulation, any summation order or blocking, with or without FMA)
/// satisfies `|ĉ - c| <= γ_n · Σ_k |a_ik · b_kj|`, where
/// `γ_n = n·u / (1 - n·u)` and `u = 2^-24` (Higham, *Accuracy and Stability of
/// Numerical Algorithms*, §3.1 and §3.5). The checker computes `c` and the
/// magnitude in f64, where every product of two f32 is exact and the sum's
/// own error is below `2^-29` of the FP32 bound; accepting `2·γ_n·magnitude`
/// therefore never fails an honest result, whatever hardware produced it.
///
/// Scale: the entries are uniform in `[-1, 1)`, so the magnitude is about
/// `n/4` and the bound about `n²·2^-24/2`: ~2e-3 at n = 256, while honest
/// errors are ~1e-5. Products of BF16-rounded inputs (errors ~1e-2 at
/// n = 256) fail. The bound grows as `n²`, so at large `n` it no longer
/// separates TF32 from FP32 inputs: Freivalds' check and timing against the
/// claimed GPU class (a later issue) are what judge the hardware then.
pub fn tolerance(n: usize, magnitude: f64) -> f64 {
    let nu = n as f64 * F32_UNIT_ROUNDOFF;
    let gamma = nu / (1.0 - nu);
    2.0 * gamma * magnitude
}

/// Picks `k` distinct rows of `0..n` (all of them when `k >= n`), ascending.
/// Call it only after the commitment is received: the rows must be unknown
/// to the container when it commits.
pub fn pick_rows<R: Rng + ?Sized>(rng: &mut R, n: u32, k: u32) -> Vec<u32> {
    let amount = k.min(n) as usize;
    let mut rows: Vec<u32> = rand::seq::index::sample(rng, n as usize, amount).into_iter().map(|i| i as u32).collect();
    rows.sort_unstable();
    rows
}

/// Verifies the container's openings against its commitment `root`:
/// every row in `expected_rows` is opened exactly once and no other row is,
/// every Merkle path leads to `root`, and every value is within
/// [`tolerance`] of the true product row. Cheap structural checks run before
/// the O(n²) recomputation. The first failure found is returned.
pub fn verify_rows(
    params: &ChallengeParams,
    root: &[u8; 32],
    openings: &[RowOpening],
    expected_rows: &[u32],
) -> Result<(), CapacityError> {
    let n = check_dimension(params.n)?;

    let mut expected = BTreeSet::new();
    for &row in expected_rows {
        if row >= params.n {
            return Err(CapacityError::RowOutOfRange { row, n: params.n });
        }
        if !expected.insert(row) {
            return Err(CapacityError::DuplicateExpectedRow { row });
        }
    }

    let mut seen = BTreeSet::new();
    for opening in openings {
        let row = opening.index;
        if !expected.contains(&row) {
            return Err(CapacityError::UnexpectedRow { row });
        }
        if !seen.insert(row) {
            return Err(CapacityError::DuplicateRow { row });
        }
        if opening.values.len() != n {
            return Err(CapacityError::RowLength { row, expected: n, found: opening.values.len() });
        }
        if !verify_opening(root, n, opening) {
            return Err(CapacityError::BadProof { row });
        }
    }
    if let Some(&row) = expected.difference(&seen).next() {
        return Err(CapacityError::MissingRow { row });
    }

    if openings.is_empty() {
        return Ok(());
    }
    let b = b_matrix(&params.seed, n);
    for opening in openings {
        let a = a_row(&params.seed, n, opening.index as usize);
        check_row(n, &a, &b, &opening.values).map_err(|m| CapacityError::Value {
            row: opening.index,
            col: m.col,
            expected: m.expected,
            found: m.found,
            tolerance: m.tolerance,
        })?;
    }
    Ok(())
}

/// The first element of a claimed row that is not within tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Mismatch {
    pub col: u32,
    pub expected: f64,
    pub found: f32,
    pub tolerance: f64,
}

/// Recomputes the row `a · B` in f64 (with the per-element magnitude for the
/// bound) and compares it with `claimed`. NaN and infinities never match.
pub(crate) fn check_row(n: usize, a: &[f32], b: &[f32], claimed: &[f32]) -> Result<(), Mismatch> {
    let mut exact = vec![0.0f64; n];
    let mut magnitude = vec![0.0f64; n];
    for (&aik, b_row) in a.iter().zip(b.chunks_exact(n)) {
        let aik = f64::from(aik);
        for ((e, m), &bkj) in exact.iter_mut().zip(magnitude.iter_mut()).zip(b_row) {
            let p = aik * f64::from(bkj);
            *e += p;
            *m += p.abs();
        }
    }
    for (col, ((&found, &expected), &mag)) in claimed.iter().zip(&exact).zip(&magnitude).enumerate() {
        let tol = tolerance(n, mag);
        let within = (f64::from(found) - expected).abs() <= tol;
        if !within {
            return Err(Mismatch { col: col as u32, expected, found, tolerance: tol });
        }
    }
    Ok(())
}
