//! Where the container's matrix product runs.

use crate::CapacityError;

/// A matrix-multiplication engine for the container's side of a challenge.
///
/// Contract: `matmul(n, a, b, c)` with `a`, `b`, `c` each of length `n * n`,
/// row-major, overwrites `c` with `a · b` computed by the standard algorithm
/// (every `c[i][j]` is a sum of the `n` products `a[i][k] * b[k][j]`) with
/// FP32 inputs and FP32 (or wider) accumulation, in any summation order.
/// Every such result lies within the bound [`crate::tolerance`] documents.
/// Fast algorithms with a different error behaviour (Strassen, Winograd)
/// and narrower inputs (TF32, BF16, FP16) do not meet the contract.
/// Wrong lengths are an error, never a panic.
///
/// [`CpuBackend`] is the reference; a GPU backend comes behind a cargo feature.
pub trait Backend {
    /// A short name for logs and benches, e.g. `cpu`.
    fn name(&self) -> &'static str;

    /// `c = a · b` as stated in the trait's contract.
    fn matmul(&self, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<(), CapacityError>;
}

/// Checks that `a`, `b` and `c` each hold `n·n` values; `true` when there
/// is nothing to multiply (`n` = 0).
pub(crate) fn check_operands(n: usize, a: &[f32], b: &[f32], c: &[f32]) -> Result<bool, CapacityError> {
    let expected = n.checked_mul(n).ok_or(CapacityError::ResultLength { expected: usize::MAX, found: 0 })?;
    for len in [a.len(), b.len(), c.len()] {
        if len != expected {
            return Err(CapacityError::ResultLength { expected, found: len });
        }
    }
    Ok(n == 0)
}

/// The CPU backend: `matrixmultiply::sgemm` (blocked, SIMD, one thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn matmul(&self, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<(), CapacityError> {
        if crate::backend::check_operands(n, a, b, c)? {
            return Ok(());
        }
        let stride = n as isize;
        // SAFETY: a, b and c are each exactly n*n long (checked above), and the
        // strides (row n, column 1) describe row-major n x n matrices inside
        // them; `c` is a unique borrow, so it aliases neither input.
        #[allow(unsafe_code)]
        unsafe {
            matrixmultiply::sgemm(
                n,
                n,
                n,
                1.0,
                a.as_ptr(),
                stride,
                1,
                b.as_ptr(),
                stride,
                1,
                0.0,
                c.as_mut_ptr(),
                stride,
                1,
            );
        }
        Ok(())
    }
}
