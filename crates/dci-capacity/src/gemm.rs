//! Safe wrappers over `matrixmultiply`'s GEMM kernels (blocked, SIMD chosen
//! at run time) for row-major operands given as slices with a row stride.
//! Every call checks that each operand fits in its slice, so a caller's
//! mistake is a panic-free `false`, never an out-of-bounds access.

/// A row-major `rows x cols` view of a slice whose rows are `stride` apart.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl Shape {
    pub(crate) fn dense(rows: usize, cols: usize) -> Self {
        Shape { rows, cols, stride: cols }
    }

    /// True when the view lies inside a slice of `len` values.
    fn fits(&self, len: usize) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let Some(last_row) = (self.rows - 1).checked_mul(self.stride) else { return false };
        self.cols <= self.stride && last_row.checked_add(self.cols).is_some_and(|end| end <= len)
    }
}

macro_rules! gemm {
    ($name:ident, $t:ty, $kernel:path) => {
        /// `c = a · b + beta · c` for row-major views; false (and `c`
        /// untouched) when the shapes do not chain or do not fit their slices.
        pub(crate) fn $name(a: &[$t], sa: Shape, b: &[$t], sb: Shape, beta: $t, c: &mut [$t], sc: Shape) -> bool {
            let chained = sa.cols == sb.rows && sa.rows == sc.rows && sb.cols == sc.cols;
            if !chained || !sa.fits(a.len()) || !sb.fits(b.len()) || !sc.fits(c.len()) {
                return false;
            }
            if sc.rows == 0 || sc.cols == 0 {
                return true;
            }
            // SAFETY: every view was checked above to lie inside its slice
            // (last row start + cols <= len, cols <= stride); `c` is a unique
            // borrow, so it aliases neither input. A zero inner dimension is
            // allowed by the kernel (it scales c by beta).
            #[allow(unsafe_code)]
            unsafe {
                $kernel(
                    sc.rows,
                    sa.cols,
                    sc.cols,
                    1.0,
                    a.as_ptr(),
                    sa.stride as isize,
                    1,
                    b.as_ptr(),
                    sb.stride as isize,
                    1,
                    beta,
                    c.as_mut_ptr(),
                    sc.stride as isize,
                    1,
                );
            }
            true
        }
    };
}

gemm!(sgemm, f32, matrixmultiply::sgemm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_products_match_the_triple_loop_and_bad_shapes_are_refused() {
        // a: 2x3 inside a stride-4 buffer; b: 3x2 dense.
        let a32 = [1.0f32, 2.0, 3.0, 99.0, 4.0, 5.0, 6.0];
        let b32 = [1.0f32, 0.5, -1.0, 2.0, 0.0, 1.0];
        let mut c = [10.0f32; 4];
        assert!(sgemm(
            &a32,
            Shape { rows: 2, cols: 3, stride: 4 },
            &b32,
            Shape::dense(3, 2),
            1.0,
            &mut c,
            Shape::dense(2, 2)
        ));
        assert_eq!(c, [10.0 + 1.0 - 2.0, 10.0 + 0.5 + 4.0 + 3.0, 10.0 + 4.0 - 5.0, 10.0 + 2.0 + 10.0 + 6.0]);
        let mut c32 = [0.0f32; 4];
        assert!(!sgemm(
            &a32,
            Shape { rows: 2, cols: 3, stride: 5 },
            &b32,
            Shape::dense(3, 2),
            0.0,
            &mut c32,
            Shape::dense(2, 2)
        ));
        assert!(!sgemm(&a32, Shape::dense(2, 3), &b32, Shape::dense(2, 3), 0.0, &mut c32, Shape::dense(2, 2)));
        assert!(!sgemm(
            &a32,
            Shape { rows: 2, cols: 3, stride: 2 },
            &b32,
            Shape::dense(3, 2),
            0.0,
            &mut c32,
            Shape::dense(2, 2)
        ));
        assert_eq!(c32, [0.0; 4]);
    }
}

/// `out[i][j] = Σ_l m[i][l] · vt[j][l]` for the rows of `m` (`n` values
/// each) against `k` vectors given transposed (`vt` is `k x n`), and, when
/// `abs` is given, `abs[i] = Σ_l |m[i][l]|`: the skinny product of the
/// Freivalds pass, without the packing a general GEMM does. f64, any
/// summation order. False (nothing written) when the lengths do not fit.
pub(crate) fn skinny(m: &[f64], n: usize, vt: &[f64], k: usize, out: &mut [f64], abs: Option<&mut [f64]>) -> bool {
    let rows = m.len().checked_div(n).unwrap_or(0);
    let fits = n > 0
        && m.len() == rows * n
        && vt.len() == k * n
        && out.len() == rows * k
        && abs.as_ref().is_none_or(|a| a.len() == rows);
    if !fits {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            #[allow(unsafe_code)]
            unsafe {
                skinny_avx512(m, n, vt, k, out, abs)
            };
            return true;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            #[allow(unsafe_code)]
            unsafe {
                skinny_avx2(m, n, vt, k, out, abs)
            };
            return true;
        }
    }
    skinny_body::<false>(m, n, vt, k, out, abs);
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn skinny_avx512(m: &[f64], n: usize, vt: &[f64], k: usize, out: &mut [f64], abs: Option<&mut [f64]>) {
    skinny_body::<true>(m, n, vt, k, out, abs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn skinny_avx2(m: &[f64], n: usize, vt: &[f64], k: usize, out: &mut [f64], abs: Option<&mut [f64]>) {
    skinny_body::<true>(m, n, vt, k, out, abs)
}

/// Lanes per accumulator: wide enough for the compiler to fill AVX-512
/// registers from independent sums.
const LANE: usize = 16;

/// The portable body; the wrappers above compile it with wider vectors.
/// Rows go four at a time against four vectors at a time (16 sums sharing
/// 8 loads), the remainders one by one.
#[inline(always)]
fn skinny_body<const FMA: bool>(
    m: &[f64],
    n: usize,
    vt: &[f64],
    k: usize,
    out: &mut [f64],
    mut abs: Option<&mut [f64]>,
) {
    let rows = m.len() / n;
    let v = |j: usize| &vt[j * n..(j + 1) * n];
    let mut i = 0;
    while i < rows {
        let group = if i + 4 <= rows { 4 } else { 1 };
        let mut j = 0;
        while j + 4 <= k {
            if group == 4 {
                let x = |t: usize| &m[(i + t) * n..(i + t + 1) * n];
                let sums = dot4x4::<FMA>([x(0), x(1), x(2), x(3)], [v(j), v(j + 1), v(j + 2), v(j + 3)]);
                for (t, row_sums) in sums.iter().enumerate() {
                    out[(i + t) * k + j..(i + t) * k + j + 4].copy_from_slice(row_sums);
                }
            } else {
                let sums = dot4::<FMA>(&m[i * n..(i + 1) * n], [v(j), v(j + 1), v(j + 2), v(j + 3)]);
                out[i * k + j..i * k + j + 4].copy_from_slice(&sums);
            }
            j += 4;
        }
        for jj in j..k {
            for t in 0..group {
                out[(i + t) * k + jj] = dot::<FMA>(&m[(i + t) * n..(i + t + 1) * n], v(jj));
            }
        }
        if let Some(abs) = abs.as_deref_mut() {
            for t in 0..group {
                abs[i + t] = abs_sum(&m[(i + t) * n..(i + t + 1) * n]);
            }
        }
        i += group;
    }
}

/// `acc + a·b`, fused where the caller was compiled with FMA (the portable
/// path must not call `mul_add`, which is a slow library call without it).
#[inline(always)]
fn madd<const FMA: bool>(acc: f64, a: f64, b: f64) -> f64 {
    if FMA { a.mul_add(b, acc) } else { acc + a * b }
}

/// Lanes per accumulator of [`dot4x4`]: 16 accumulators of 8 f64 fill half
/// the AVX-512 register file.
const LANE4: usize = 8;

/// The 4 x 4 dot products of four rows against four vectors, in named
/// accumulators (an indexed array of them is not kept in registers).
#[inline(always)]
fn dot4x4<const FMA: bool>(x: [&[f64]; 4], v: [&[f64]; 4]) -> [[f64; 4]; 4] {
    let whole = x[0].len() / LANE4 * LANE4;
    let [x0, x1, x2, x3] = x.map(|r| r[..whole].as_chunks::<LANE4>().0);
    let [y0, y1, y2, y3] = v.map(|r| r[..whole].as_chunks::<LANE4>().0);
    let (mut a00, mut a01, mut a02, mut a03) = ([0.0f64; LANE4], [0.0f64; LANE4], [0.0f64; LANE4], [0.0f64; LANE4]);
    let (mut a10, mut a11, mut a12, mut a13) = ([0.0f64; LANE4], [0.0f64; LANE4], [0.0f64; LANE4], [0.0f64; LANE4]);
    let (mut a20, mut a21, mut a22, mut a23) = ([0.0f64; LANE4], [0.0f64; LANE4], [0.0f64; LANE4], [0.0f64; LANE4]);
    let (mut a30, mut a31, mut a32, mut a33) = ([0.0f64; LANE4], [0.0f64; LANE4], [0.0f64; LANE4], [0.0f64; LANE4]);
    let rows = x0.iter().zip(x1).zip(x2).zip(x3);
    let vectors = y0.iter().zip(y1).zip(y2).zip(y3);
    for ((((c0, c1), c2), c3), (((d0, d1), d2), d3)) in rows.zip(vectors) {
        for l in 0..LANE4 {
            let (p0, p1, p2, p3) = (c0[l], c1[l], c2[l], c3[l]);
            let (q0, q1, q2, q3) = (d0[l], d1[l], d2[l], d3[l]);
            a00[l] = madd::<FMA>(a00[l], p0, q0);
            a01[l] = madd::<FMA>(a01[l], p0, q1);
            a02[l] = madd::<FMA>(a02[l], p0, q2);
            a03[l] = madd::<FMA>(a03[l], p0, q3);
            a10[l] = madd::<FMA>(a10[l], p1, q0);
            a11[l] = madd::<FMA>(a11[l], p1, q1);
            a12[l] = madd::<FMA>(a12[l], p1, q2);
            a13[l] = madd::<FMA>(a13[l], p1, q3);
            a20[l] = madd::<FMA>(a20[l], p2, q0);
            a21[l] = madd::<FMA>(a21[l], p2, q1);
            a22[l] = madd::<FMA>(a22[l], p2, q2);
            a23[l] = madd::<FMA>(a23[l], p2, q3);
            a30[l] = madd::<FMA>(a30[l], p3, q0);
            a31[l] = madd::<FMA>(a31[l], p3, q1);
            a32[l] = madd::<FMA>(a32[l], p3, q2);
            a33[l] = madd::<FMA>(a33[l], p3, q3);
        }
    }
    let acc = [[a00, a01, a02, a03], [a10, a11, a12, a13], [a20, a21, a22, a23], [a30, a31, a32, a33]];
    let mut sums = [[0.0f64; 4]; 4];
    for (t, (sum_row, acc_row)) in sums.iter_mut().zip(&acc).enumerate() {
        for (j, (s, a)) in sum_row.iter_mut().zip(acc_row).enumerate() {
            let tail: f64 = x[t][whole..].iter().zip(&v[j][whole..]).map(|(p, q)| p * q).sum();
            *s = a.iter().sum::<f64>() + tail;
        }
    }
    sums
}

/// `Σ |x|`, vectorizable.
#[inline(always)]
fn abs_sum(x: &[f64]) -> f64 {
    let (chunks, tail) = x.as_chunks::<LANE>();
    let mut acc = [0.0f64; LANE];
    for xs in chunks {
        for t in 0..LANE {
            acc[t] += xs[t].abs();
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|p| p.abs()).sum::<f64>()
}

/// Four dot products of `x` sharing its loads; `LANE` independent partial
/// sums each, in named accumulators, so the compiler keeps them in vector
/// registers.
#[inline(always)]
fn dot4<const FMA: bool>(x: &[f64], v: [&[f64]; 4]) -> [f64; 4] {
    let (xc, xt) = x.as_chunks::<LANE>();
    let (c0, t0) = v[0].as_chunks::<LANE>();
    let (c1, t1) = v[1].as_chunks::<LANE>();
    let (c2, t2) = v[2].as_chunks::<LANE>();
    let (c3, t3) = v[3].as_chunks::<LANE>();
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f64; LANE], [0.0f64; LANE], [0.0f64; LANE], [0.0f64; LANE]);
    for ((((xs, y0), y1), y2), y3) in xc.iter().zip(c0).zip(c1).zip(c2).zip(c3) {
        for t in 0..LANE {
            a0[t] = madd::<FMA>(a0[t], xs[t], y0[t]);
            a1[t] = madd::<FMA>(a1[t], xs[t], y1[t]);
            a2[t] = madd::<FMA>(a2[t], xs[t], y2[t]);
            a3[t] = madd::<FMA>(a3[t], xs[t], y3[t]);
        }
    }
    let tail = |y: &[f64]| xt.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
    [
        a0.iter().sum::<f64>() + tail(t0),
        a1.iter().sum::<f64>() + tail(t1),
        a2.iter().sum::<f64>() + tail(t2),
        a3.iter().sum::<f64>() + tail(t3),
    ]
}

/// One dot product, vectorizable like [`dot4`].
#[inline(always)]
fn dot<const FMA: bool>(x: &[f64], y: &[f64]) -> f64 {
    let (xc, xt) = x.as_chunks::<LANE>();
    let (yc, yt) = y.as_chunks::<LANE>();
    let mut acc = [0.0f64; LANE];
    for (xs, ys) in xc.iter().zip(yc) {
        for t in 0..LANE {
            acc[t] = madd::<FMA>(acc[t], xs[t], ys[t]);
        }
    }
    acc.iter().sum::<f64>() + xt.iter().zip(yt).map(|(p, q)| p * q).sum::<f64>()
}

#[cfg(test)]
mod skinny_tests {
    use super::*;

    #[test]
    fn the_skinny_product_is_the_plain_sum_for_every_shape() {
        for (rows, n, k) in [(1, 1, 1), (3, 5, 2), (2, 16, 4), (4, 37, 5), (3, 64, 9), (2, 100, 0)] {
            let m: Vec<f64> = (0..rows * n).map(|v| ((v * 7 % 13) as f64 - 6.0) / 8.0).collect();
            let vt: Vec<f64> = (0..k * n).map(|v| if v % 3 == 0 { 1.0 } else { -1.0 }).collect();
            let mut out = vec![0.0; rows * k];
            let mut abs = vec![0.0; rows];
            assert!(skinny(&m, n, &vt, k, &mut out, Some(&mut abs)));
            for i in 0..rows {
                for j in 0..k {
                    let expect: f64 = (0..n).map(|l| m[i * n + l] * vt[j * n + l]).sum();
                    assert_eq!(out[i * k + j], expect, "rows {rows} n {n} k {k} at ({i}, {j})");
                }
                assert_eq!(abs[i], (0..n).map(|l| m[i * n + l].abs()).sum::<f64>());
            }
        }
        assert!(!skinny(&[1.0; 5], 2, &[1.0; 2], 1, &mut [0.0; 2], None));
        assert!(!skinny(&[1.0; 4], 2, &[1.0; 2], 1, &mut [0.0; 3], None));
    }
}
