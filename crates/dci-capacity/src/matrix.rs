//! The challenge matrices: derived from a 32-byte seed, identical on every
//! machine and every version of this crate (the golden test pins them).
//!
//! A is ChaCha20 stream 0 of the seed, B is stream 1, both row-major. Each
//! entry is one 32-bit word `w`: its top 24 bits `m` give `(m - 2^23) / 2^23`,
//! a uniform value in `[-1, 1)` that an `f32` holds exactly. Each entry costs
//! one word, so row `i` starts at word `i * n` of its stream: the checker can
//! derive any row of A alone, in O(n), without generating the rest.

use crate::CapacityError;
use crate::chacha::{Entry, Stream};

/// The largest accepted matrix dimension: one 16384 x 16384 `f32` matrix is
/// 1 GiB, and the bound keeps the FP32 error bound (`n * 2^-24 < 1`) valid.
pub const MAX_N: u32 = 16_384;

const STREAM_A: u64 = 0;
const STREAM_B: u64 = 1;

/// Checks that `n` is a dimension a challenge may use (`1..=MAX_N`).
pub fn check_dimension(n: u32) -> Result<usize, CapacityError> {
    if n == 0 || n > MAX_N {
        return Err(CapacityError::Dimension { max: MAX_N, found: n });
    }
    Ok(n as usize)
}

/// Both challenge matrices (A, B), row-major, `n * n` entries each.
///
/// Callers pass a dimension checked with [`check_dimension`]; this function
/// allocates `8 * n^2` bytes.
pub fn matrices(seed: &[u8; 32], n: usize) -> (Vec<f32>, Vec<f32>) {
    (fill(seed, STREAM_A, 0, n * n), b_matrix(seed, n))
}

/// Matrix B alone (what the checker needs in full), row-major.
pub fn b_matrix(seed: &[u8; 32], n: usize) -> Vec<f32> {
    fill(seed, STREAM_B, 0, n * n)
}

/// Row `i` of matrix A, derived without generating the rows before it.
pub fn a_row(seed: &[u8; 32], n: usize, i: usize) -> Vec<f32> {
    fill(seed, STREAM_A, (i as u128) * (n as u128), n)
}

fn fill(seed: &[u8; 32], stream: u64, word_pos: u128, len: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; len];
    Stream::new(seed, stream).fill_entries(word_pos, &mut out);
    out
}

/// Rows `first .. first + out.len() / n` of A (`Which::A`) or B, written
/// into `out` (whose length is a multiple of `n`): the streaming form the
/// checker uses so that it never holds a whole matrix.
pub(crate) fn rows_into<T: Entry>(seed: &[u8; 32], which: Which, n: usize, first: usize, out: &mut [T]) {
    let stream = match which {
        Which::A => STREAM_A,
        Which::B => STREAM_B,
    };
    Stream::new(seed, stream).fill_entries((first as u128) * (n as u128), out);
}

/// One of the two challenge matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    /// The left factor.
    A,
    /// The right factor.
    B,
}
