//! `a × b / c` on u128 with a 256-bit intermediate product, rounded down.
//!
//! Reward shares multiply an amount (up to ~4.2 × 10^28 base units) by a
//! weight (capacity × uptime, up to 2^96) before dividing by the total
//! weight; the product does not fit in u128, the quotient always does.

/// `(hi, lo)` of the 256-bit product `a × b`.
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & MASK);
    let (b1, b0) = (b >> 64, b & MASK);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & MASK) + (p10 & MASK);
    let lo = (p00 & MASK) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

/// `floor(a × b / c)`; `None` if `c` is zero or the quotient exceeds u128.
pub(crate) fn mul_div_floor(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    let (hi, lo) = mul_wide(a, b);
    if hi == 0 {
        return Some(lo / c);
    }
    if hi >= c {
        return None;
    }
    // Binary long division of the 256-bit (hi, lo) by c; `rem < c` throughout.
    let mut rem = hi;
    let mut q = 0u128;
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((lo >> i) & 1);
        q <<= 1;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            q |= 1;
        }
    }
    Some(q)
}

/// Serializes a u128 as a decimal string (JSON numbers above 2^53 are lossy
/// in many clients).
pub(crate) mod u128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| serde::de::Error::custom(format!("expected a decimal integer string, found {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edge_cases() {
        assert_eq!(mul_div_floor(5, 7, 0), None);
        assert_eq!(mul_div_floor(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
        assert_eq!(mul_div_floor(u128::MAX, 2, 2), Some(u128::MAX));
        assert_eq!(mul_div_floor(u128::MAX, 2, 1), None);
        assert_eq!(mul_div_floor(1 << 100, 1 << 100, 1 << 120), Some(1 << 80));
        assert_eq!(mul_div_floor(10, 10, 3), Some(33));
    }

    proptest! {
        #[test]
        fn matches_narrow_arithmetic_where_it_fits(a in any::<u64>(), b in any::<u64>(), c in 1u128..) {
            let (a, b) = (u128::from(a), u128::from(b));
            prop_assert_eq!(mul_div_floor(a, b, c), Some(a * b / c));
        }

        #[test]
        fn quotient_and_remainder_rebuild_the_product(a in any::<u128>(), b in any::<u128>(), c in 1u128..) {
            // q = floor(a*b/c) iff q*c <= a*b < (q+1)*c, checked in 256 bits.
            if let Some(q) = mul_div_floor(a, b, c) {
                let le = |x: (u128, u128), y: (u128, u128)| x.0 < y.0 || (x.0 == y.0 && x.1 <= y.1);
                let ab = mul_wide(a, b);
                let qc = mul_wide(q, c);
                prop_assert!(le(qc, ab));
                let (h, l) = qc;
                let (l2, carry) = l.overflowing_add(c);
                if let Some(h2) = h.checked_add(u128::from(carry)) {
                    prop_assert!(!le((h2, l2), ab));
                }
            } else {
                prop_assert!(mul_wide(a, b).0 >= c);
            }
        }
    }
}
