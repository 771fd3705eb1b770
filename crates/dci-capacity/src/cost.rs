//! Work counts of both sides, so a bench can report the checker's cost as a
//! fraction of the container's (R-CK5, R-PF3). Counts, not timings: they
//! follow from the algorithms in this crate and are exact for them.

use crate::merkle::depth;

/// Work of one side of one challenge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Floating-point operations (a multiply-add counts as two).
    pub flops: u64,
    /// Matrix entries derived from the seed (one ChaCha20 word each).
    pub random_values: u64,
    /// Bytes fed to blake3.
    pub hashed_bytes: u64,
}

/// Work of both sides of a challenge of dimension `n` with `rows` opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// The container: derive A and B, multiply, hash every row and node.
    pub container: Work,
    /// The checker: derive B and the opened rows of A, recompute those rows
    /// (value and magnitude: two multiply-adds per entry), hash the paths.
    pub checker: Work,
}

impl Cost {
    /// Checker flops as a fraction of container flops (`2·rows / n`).
    pub fn flop_fraction(&self) -> f64 {
        if self.container.flops == 0 { 0.0 } else { self.checker.flops as f64 / self.container.flops as f64 }
    }
}

const TAG: u64 = 20;

/// The work counts for dimension `n` and `rows` opened rows (capped at `n`).
pub fn cost(n: u32, rows: u32) -> Cost {
    let n64 = u64::from(n);
    let k = u64::from(rows.min(n));
    let leaf = TAG + 4 + 4 * n64;
    let node = TAG + 64;
    let mut inner_nodes = 0u64;
    let mut level = n64;
    while level > 1 {
        level = level.div_ceil(2);
        inner_nodes += level;
    }
    let depth = depth(n as usize) as u64;
    Cost {
        container: Work {
            flops: 2 * n64 * n64 * n64,
            random_values: 2 * n64 * n64,
            hashed_bytes: n64 * leaf + inner_nodes * node,
        },
        checker: Work {
            flops: 4 * k * n64 * n64,
            random_values: n64 * n64 + k * n64,
            hashed_bytes: k * (leaf + depth * node),
        },
    }
}

/// The work counts of the Freivalds protocol ([`crate::verify`]) for
/// dimension `n`, `rounds` vectors and `rows` opened rows (capped at `n`).
///
/// Container: derive A and B (`2n²` words), multiply (`2n³`), hash every
/// row and node, then `y_j = C·r_j` (`2kn²`). Checker: derive all of A and
/// B (`2n²` words: Freivalds needs both whole, streamed), `B·R` and
/// `A·(B·R)` (`2·2kn²`), the opened rows' products (`2sn²`), their
/// consistency with `y` (`2skn`), the vectors' bits and the opened paths.
pub fn freivalds_cost(n: u32, rounds: u32, rows: u32) -> Cost {
    let n64 = u64::from(n);
    let k = u64::from(rounds);
    let s = u64::from(rows.min(n));
    let base = cost(n, rows);
    Cost {
        container: Work {
            flops: 2 * n64 * n64 * n64 + 2 * k * n64 * n64,
            random_values: 2 * n64 * n64,
            hashed_bytes: base.container.hashed_bytes,
        },
        checker: Work {
            flops: 4 * k * n64 * n64 + 2 * s * n64 * n64 + 2 * s * k * n64,
            random_values: 2 * n64 * n64 + s * n64 + k * n64.div_ceil(32),
            hashed_bytes: base.checker.hashed_bytes,
        },
    }
}
