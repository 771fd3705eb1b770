//! ATH amounts in integer base units (1 ATH = 10^18 base units) and hourly prices.
//!
//! There is no floating point anywhere in money. Text forms are exact decimals
//! (`"2.5"` ATH), parsed and printed without rounding.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Decimal places of ATH.
pub const DECIMALS: u32 = 18;
/// Base units in one ATH.
pub const ONE_ATH: u128 = 10u128.pow(DECIMALS);
/// Total supply: 42,000,000,000 ATH (R-LG1).
pub const TOTAL_SUPPLY: Amount = Amount(42_000_000_000 * ONE_ATH);

/// An amount of ATH in base units.
///
/// Serialized as a decimal string of base units in JSON-like formats, so that
/// values above 2^53 survive JavaScript clients.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(pub u128);

/// Why a text or an operation does not give a valid amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The text is not a non-negative decimal with at most 18 fractional digits.
    #[error("expected a non-negative ATH amount like 12 or 0.5 (at most 18 decimals), found {0:?}")]
    Parse(String),
    /// The result does not fit.
    #[error("amount overflow")]
    Overflow,
    /// The result would be negative.
    #[error("amount underflow: {have} is less than {need}")]
    Underflow {
        /// What there is.
        have: Amount,
        /// What was asked for.
        need: Amount,
    },
}

impl Amount {
    /// Zero ATH.
    pub const ZERO: Amount = Amount(0);

    /// `n` whole ATH.
    pub const fn ath(n: u64) -> Amount {
        Amount(n as u128 * ONE_ATH)
    }

    /// Checked addition.
    pub fn checked_add(self, o: Amount) -> Result<Amount, AmountError> {
        self.0.checked_add(o.0).map(Amount).ok_or(AmountError::Overflow)
    }

    /// Checked subtraction.
    pub fn checked_sub(self, o: Amount) -> Result<Amount, AmountError> {
        self.0.checked_sub(o.0).map(Amount).ok_or(AmountError::Underflow { have: self, need: o })
    }

    /// `self * num / den`, rounded down, without intermediate overflow for
    /// realistic values (checked).
    pub fn mul_div(self, num: u128, den: u128) -> Result<Amount, AmountError> {
        if den == 0 {
            return Err(AmountError::Overflow);
        }
        // Split to keep the intermediate product small: a*n/d = (a/d)*n + (a%d)*n/d.
        let q = self.0 / den;
        let r = self.0 % den;
        let hi = q.checked_mul(num).ok_or(AmountError::Overflow)?;
        let lo = r.checked_mul(num).ok_or(AmountError::Overflow)? / den;
        hi.checked_add(lo).map(Amount).ok_or(AmountError::Overflow)
    }

    /// Is this zero?
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / ONE_ATH;
        let frac = self.0 % ONE_ATH;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:018}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self} ATH")
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AmountError::Parse(s.to_owned());
        let t = s.trim();
        let t = t.strip_suffix("ATH").map(str::trim_end).unwrap_or(t);
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty()
            || !digits(whole)
            || !digits(frac)
            || frac.len() > DECIMALS as usize
            || (t.contains('.') && frac.is_empty())
        {
            return Err(err());
        }
        let w: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| err())? };
        let mut f: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| err())? };
        f *= 10u128.pow(DECIMALS - frac.len() as u32);
        w.checked_mul(ONE_ATH).and_then(|x| x.checked_add(f)).map(Amount).ok_or(AmountError::Overflow)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&self.0.to_string()) } else { s.serialize_u128(self.0) }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse::<u128>().map(Amount).map_err(|_| {
                serde::de::Error::custom(format!("expected an amount in base units as a decimal string, found {s:?}"))
            })
        } else {
            u128::deserialize(d).map(Amount)
        }
    }
}

/// A price per hour of use. Metering charges per second: `price * secs / 3600`,
/// rounded down.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PricePerHour(pub Amount);

impl PricePerHour {
    /// The charge for `secs` seconds of use.
    pub fn cost_for_secs(self, secs: u64) -> Result<Amount, AmountError> {
        self.0.mul_div(secs as u128, 3600)
    }
}

impl fmt::Display for PricePerHour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ATH/h", self.0)
    }
}

impl fmt::Debug for PricePerHour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PricePerHour {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_suffix("/h").unwrap_or(t);
        t.parse().map(PricePerHour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_print() {
        let check = |s: &str, base: u128, shown: &str| {
            let a: Amount = s.parse().unwrap();
            assert_eq!(a.0, base, "{s}");
            assert_eq!(a.to_string(), shown);
        };
        check("1", ONE_ATH, "1");
        check("0.5", ONE_ATH / 2, "0.5");
        check(".25", ONE_ATH / 4, "0.25");
        check("2.5 ATH", 5 * ONE_ATH / 2, "2.5");
        check("0.000000000000000001", 1, "0.000000000000000001");
        for bad in ["", "-1", "1.", "1e3", "0.0000000000000000001", "abc", "1.2.3", "."] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} should not parse");
        }
        assert_eq!(TOTAL_SUPPLY.to_string(), "42000000000");
    }

    #[test]
    fn per_second_metering_rounds_down() {
        let p: PricePerHour = "3.6".parse().unwrap();
        assert_eq!(p.cost_for_secs(1).unwrap(), "0.001".parse().unwrap());
        assert_eq!(p.cost_for_secs(3600).unwrap(), p.0);
        assert_eq!(PricePerHour(Amount(1)).cost_for_secs(1).unwrap(), Amount::ZERO);
    }

    #[test]
    fn json_is_a_string_of_base_units() {
        let a = Amount::ath(3);
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, "\"3000000000000000000\"");
        assert_eq!(serde_json::from_str::<Amount>(&j).unwrap(), a);
        assert!(serde_json::from_str::<Amount>("\"-1\"").is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(x in any::<u128>()) {
            let a = Amount(x % (TOTAL_SUPPLY.0 * 1000));
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        }

        #[test]
        fn mul_div_matches_wide_arithmetic(a in 0u128..TOTAL_SUPPLY.0, n in 0u128..1_000_000, d in 1u128..1_000_000) {
            // Reference: exact big-number arithmetic through two u128 limbs is
            // overkill here; the values are chosen so a*n fits in u128.
            prop_assume!(a.checked_mul(n).is_some());
            prop_assert_eq!(Amount(a).mul_div(n, d).unwrap().0, a * n / d);
        }
    }
}
