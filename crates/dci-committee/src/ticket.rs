//! Sortition tickets: `key = −ln(u) / w` in exact integer arithmetic, and the
//! one selection function that both the real sortition and the fairness
//! simulation use.
//!
//! `−ln(u)` is computed in fixed point with integers only (a 256-entry table
//! built at compile time plus a five-term series), so every machine derives
//! bit-identical tickets: no platform `libm` is involved in anything that
//! decides committee membership. Keys are compared by cross-multiplication
//! (`e_a · w_b` against `e_b · w_a` in `u128`), which is exact.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Fractional bits of [`Ticket::exp`]: `exp = −ln(u) · 2^58`.
pub const EXP_FRAC_BITS: u32 = 58;

const Q: u32 = 62;
const ONE_Q62: u128 = 1 << Q;
/// `ln 2 · 2^62`, rounded to nearest.
const LN2_Q62: u128 = 3_196_577_161_300_663_915;

/// `log2(x)` for `x ∈ [1, 2)` in Q62, by repeated squaring (one result bit
/// per step). Exact to about 2^-56; used only to build the table and in tests.
const fn log2_q62(mut x: u128) -> u128 {
    let mut r: u128 = 0;
    let mut b = Q;
    while b > 0 {
        b -= 1;
        x = (x * x) >> Q;
        if x >= 2 * ONE_Q62 {
            x >>= 1;
            r |= 1 << b;
        }
    }
    r
}

/// `INV[i] = round(2^62 · 256 / (256 + i))`.
const INV: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let d = 256 + i as u128;
        t[i] = (((1u128 << 70) + d / 2) / d) as u64;
        i += 1;
    }
    t
};

/// `LN_BASE[i] = ln(2^62 / INV[i])` in Q62.
const LN_BASE: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let y = (1u128 << (2 * Q)) / INV[i] as u128;
        t[i] = ((log2_q62(y) * LN2_Q62) >> Q) as u64;
        i += 1;
    }
    t
};

/// `−ln(u) · 2^58` where `u = (x | 1) / 2^64` is the uniform drawn from the
/// 64-bit value `x`. Integer-only and therefore bit-identical everywhere;
/// absolute error below 10^-15.
pub fn neg_ln_q58(x: u64) -> u64 {
    let y = x | 1;
    let lz = y.leading_zeros();
    let mn = y << lz;
    let i = ((mn >> 55) & 0xff) as usize;
    let m = (mn >> 1) as u128;
    // m · INV[i] = 1 + r with |r| < 2^-8; ln(1 + r) by its series to r^5.
    let r = ((m * INV[i] as u128) >> Q) as i128 - ONE_Q62 as i128;
    let r2 = (r * r) >> Q;
    let r3 = (r2 * r) >> Q;
    let r4 = (r3 * r) >> Q;
    let r5 = (r4 * r) >> Q;
    let ln1p = r - r2 / 2 + r3 / 3 - r4 / 4 + r5 / 5;
    // y = 2^(63 − lz) · mantissa with mantissa ∈ [1, 2), so
    // −ln u = 64 ln 2 − ln y = (lz + 1) ln 2 − ln(mantissa), and
    // ln(mantissa) = LN_BASE[i] + ln(1 + r).
    let e = (lz as i128 + 1) * LN2_Q62 as i128 - LN_BASE[i] as i128 - ln1p;
    (e.max(0) >> (Q - EXP_FRAC_BITS)) as u64
}

/// A node's sortition ticket: its sortition key is `exp / weight`
/// (`exp = −ln u` in Q58). Smaller keys win.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ticket {
    /// `−ln(u) · 2^58`, an exponential variate of rate 1.
    pub exp: u64,
    /// The node's sortition weight (stake × history factor), > 0.
    pub weight: u64,
}

impl Ticket {
    /// The ticket of a node of weight `weight` whose uniform 64-bit draw is `uniform`.
    pub fn new(uniform: u64, weight: u64) -> Ticket {
        Ticket { exp: neg_ln_q58(uniform), weight }
    }

    /// Exact comparison of the keys `exp / weight` (a weight of 0 is an
    /// infinite key).
    pub fn cmp_key(&self, o: &Ticket) -> Ordering {
        match (self.weight, o.weight) {
            (0, 0) => Ordering::Equal,
            (0, _) => Ordering::Greater,
            (_, 0) => Ordering::Less,
            _ => (self.exp as u128 * o.weight as u128).cmp(&(o.exp as u128 * self.weight as u128)),
        }
    }

    /// The key `−ln(u) / weight` as a float, for display and for the
    /// advisory publish threshold only (never for deciding membership).
    pub fn key(&self) -> f64 {
        if self.weight == 0 {
            return f64::INFINITY;
        }
        self.exp as f64 / (1u64 << EXP_FRAC_BITS) as f64 / self.weight as f64
    }
}

/// Moves the `size` smallest `(ticket, tie)` pairs to the front of `items`,
/// sorted best first, and returns them. Equal keys are ordered by `tie`
/// (the candidate's index in id order, so by node id).
///
/// This is the selection step of the real sortition and of the fairness
/// simulation alike.
pub fn select(items: &mut [(Ticket, u32)], size: usize) -> &mut [(Ticket, u32)] {
    let size = size.min(items.len());
    if size == 0 {
        return &mut items[..0];
    }
    let cmp = |a: &(Ticket, u32), b: &(Ticket, u32)| a.0.cmp_key(&b.0).then(a.1.cmp(&b.1));
    if size < items.len() {
        items.select_nth_unstable_by(size - 1, cmp);
    }
    let best = &mut items[..size];
    best.sort_unstable_by(cmp);
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn float_neg_ln(x: u64) -> f64 {
        -(((x | 1) as f64) / 18_446_744_073_709_551_616.0).ln()
    }

    fn q58(e: u64) -> f64 {
        e as f64 / (1u64 << EXP_FRAC_BITS) as f64
    }

    #[test]
    fn neg_ln_matches_float_at_the_edges() {
        for x in [0, 1, 2, 3, 255, 1 << 20, 1 << 55, (1 << 63) - 1, 1 << 63, u64::MAX - 1, u64::MAX] {
            let got = q58(neg_ln_q58(x));
            let want = float_neg_ln(x);
            assert!((got - want).abs() < 1e-12, "x={x}: {got} vs {want}");
        }
        // The smallest uniform gives the largest exponential: 64 ln 2.
        assert!((q58(neg_ln_q58(0)) - 64.0 * std::f64::consts::LN_2).abs() < 1e-12);
    }

    #[test]
    fn the_table_agrees_with_float_logs() {
        for (i, (&inv, &base)) in INV.iter().zip(LN_BASE.iter()).enumerate() {
            let want = ((256 + i) as f64 / 256.0).ln();
            let got = base as f64 / ONE_Q62 as f64;
            assert!((got - want).abs() < 1e-14, "i={i}");
            assert!(inv <= 1 << 62);
        }
    }

    proptest! {
        #[test]
        fn neg_ln_is_accurate(x in any::<u64>()) {
            let got = q58(neg_ln_q58(x));
            let want = float_neg_ln(x);
            prop_assert!((got - want).abs() <= 1e-12 * want.max(1.0), "x={} {} vs {}", x, got, want);
        }

        #[test]
        fn cross_multiplication_orders_like_the_real_keys(a in any::<u64>(), b in any::<u64>(), wa in 1u64..1 << 40, wb in 1u64..1 << 40) {
            let (ta, tb) = (Ticket::new(a, wa), Ticket::new(b, wb));
            let (ka, kb) = (float_neg_ln(a) / wa as f64, float_neg_ln(b) / wb as f64);
            if (ka - kb).abs() > 1e-9 * ka.max(kb) {
                prop_assert_eq!(ta.cmp_key(&tb), ka.partial_cmp(&kb).unwrap());
            }
        }

        #[test]
        fn select_agrees_with_a_full_sort(xs in proptest::collection::vec((any::<u64>(), 0u64..50), 0..200), size in 0usize..60) {
            let mut items: Vec<(Ticket, u32)> = xs.iter().enumerate().map(|(i, &(x, w))| (Ticket::new(x, w), i as u32)).collect();
            let mut oracle = items.clone();
            oracle.sort_by(|a, b| a.0.cmp_key(&b.0).then(a.1.cmp(&b.1)));
            oracle.truncate(size);
            let got = select(&mut items, size).to_vec();
            prop_assert_eq!(got, oracle);
        }
    }
}
