//! Genesis: how the fixed total supply is split among the first accounts (R-LG1).
//!
//! Shares are exact decimal percentages (`"15"`, `"17.5"`), held as integer
//! millionths of a percent; floats are refused even where TOML would allow
//! them. A genesis whose shares do not sum to exactly 100% cannot be built.

use dci_model::{AccountId, Amount, money::TOTAL_SUPPLY};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::LedgerError;
use crate::accounts;

/// Fractional digits of a percentage that a [`Share`] can hold.
pub const SHARE_DECIMALS: u32 = 6;
const PER_PERCENT: u64 = 10u64.pow(SHARE_DECIMALS);
const WHOLE: u64 = 100 * PER_PERCENT;

/// A share of the total supply, in millionths of a percent (100% = 10^8).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Share(u64);

impl Share {
    /// All of it.
    pub const ALL: Share = Share(WHOLE);

    /// `n` whole percent. More than 100% is representable here but no
    /// [`Genesis`] accepts it.
    pub const fn percent(n: u64) -> Share {
        Share(n.saturating_mul(PER_PERCENT))
    }

    /// Millionths of a percent.
    pub fn micro_percent(self) -> u64 {
        self.0
    }

    /// This share of `total`, rounded down.
    pub fn of(self, total: Amount) -> Result<Amount, LedgerError> {
        Ok(total.mul_div(self.0 as u128, WHOLE as u128)?)
    }
}

/// Prints millionths of a percent as an exact decimal percentage without unit.
fn percent_text(micro: u64) -> String {
    let whole = micro / PER_PERCENT;
    let frac = micro % PER_PERCENT;
    if frac == 0 {
        whole.to_string()
    } else {
        let digits = format!("{frac:0width$}", width = SHARE_DECIMALS as usize);
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", percent_text(self.0))
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Share {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            LedgerError::InvalidGenesis(format!(
                "expected a share as a percentage from 0 to 100 with at most {SHARE_DECIMALS} decimals, like \"17.5\", found {s:?}"
            ))
        };
        let t = s.trim();
        let t = t.strip_suffix('%').map(str::trim_end).unwrap_or(t);
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 3
            || !digits(whole)
            || !digits(frac)
            || frac.len() > SHARE_DECIMALS as usize
            || (t.contains('.') && frac.is_empty())
        {
            return Err(err());
        }
        let w: u64 = whole.parse().map_err(|_| err())?;
        let f: u64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| err())? };
        let micro = w * PER_PERCENT + f * 10u64.pow(SHARE_DECIMALS - frac.len() as u32);
        if micro > WHOLE {
            return Err(err());
        }
        Ok(Share(micro))
    }
}

impl Serialize for Share {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&percent_text(self.0))
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Share;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage as a string like \"17.5\" or a whole number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Share, E> {
                v.parse().map_err(|e: LedgerError| E::custom(e))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Share, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Share, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Share, E> {
                Err(E::custom(format!(
                    "expected a share as an exact decimal string like \"{v}\", found the float {v} (floats are not accepted in money)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// One genesis allocation: `share` of the total supply goes to `account`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// Who receives it.
    pub account: AccountId,
    /// How much of the total supply.
    pub share: Share,
}

/// The genesis configuration: allocations whose shares sum to exactly 100%.
///
/// In TOML:
///
/// ```toml
/// [[allocations]]
/// account = "genesis:team"
/// share = "15"
///
/// [[allocations]]
/// account = "pool:mining"
/// share = "85"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GenesisFile", into = "GenesisFile")]
pub struct Genesis {
    allocations: Vec<Allocation>,
    network: NetworkKind,
}

/// What kind of network a genesis starts: a production network, or a dev
/// network (`dci devnet`), where hosts with simulated GPU profiles may earn
/// (weighted by what their CPU proved). The network declares it once, at
/// genesis, for every node; no host can claim it for itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// Simulated GPUs earn nothing.
    #[default]
    Production,
    /// A development network.
    Dev,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    allocations: Vec<Allocation>,
    #[serde(default)]
    network: NetworkKind,
}

impl TryFrom<GenesisFile> for Genesis {
    type Error = LedgerError;
    fn try_from(f: GenesisFile) -> Result<Self, Self::Error> {
        Ok(Genesis::new(f.allocations)?.with_network(f.network))
    }
}

impl From<Genesis> for GenesisFile {
    fn from(g: Genesis) -> Self {
        GenesisFile { allocations: g.allocations, network: g.network }
    }
}

impl Genesis {
    /// Validates allocations: at least one, no account twice, no zero share,
    /// shares summing to exactly 100%.
    pub fn new(allocations: Vec<Allocation>) -> Result<Genesis, LedgerError> {
        if allocations.is_empty() {
            return Err(LedgerError::InvalidGenesis("expected at least one allocation, found none".into()));
        }
        let mut sum = 0u64;
        for (i, a) in allocations.iter().enumerate() {
            if a.share.0 == 0 {
                return Err(LedgerError::InvalidGenesis(format!(
                    "expected a positive share for {}, found 0%",
                    a.account
                )));
            }
            if allocations[..i].iter().any(|b| b.account == a.account) {
                return Err(LedgerError::InvalidGenesis(format!(
                    "expected each account once, found {} twice",
                    a.account
                )));
            }
            sum += a.share.0;
        }
        if sum != WHOLE {
            return Err(LedgerError::InvalidGenesis(format!(
                "shares must sum to exactly 100%, found {}%",
                percent_text(sum)
            )));
        }
        Ok(Genesis { allocations, network: NetworkKind::Production })
    }

    /// The same allocations for a network of `kind`.
    pub fn with_network(mut self, kind: NetworkKind) -> Genesis {
        self.network = kind;
        self
    }

    /// The default allocation, for a dev network (what `dci devnet` starts).
    pub fn devnet() -> Genesis {
        Genesis::default().with_network(NetworkKind::Dev)
    }

    /// The kind of network it starts.
    pub fn network(&self) -> NetworkKind {
        self.network
    }

    /// Parses and validates a genesis from TOML text.
    pub fn from_toml(text: &str) -> Result<Genesis, LedgerError> {
        toml::from_str(text).map_err(|e| {
            let m = e.message().trim();
            let m = m.strip_prefix("invalid genesis: ").unwrap_or(m);
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    LedgerError::InvalidGenesis(format!("{m} (line {line})"))
                }
                None => LedgerError::InvalidGenesis(m.to_owned()),
            }
        })
    }

    /// The genesis as TOML text (parses back to an equal genesis).
    pub fn to_toml(&self) -> Result<String, LedgerError> {
        toml::to_string(self).map_err(|e| LedgerError::InvalidGenesis(e.to_string()))
    }

    /// The allocations, in order.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }

    /// What each account receives: its share of [`TOTAL_SUPPLY`] rounded
    /// down, with the rounding remainder added to the first allocation, so the
    /// amounts sum to exactly the total supply.
    pub fn amounts(&self) -> Result<Vec<(AccountId, Amount)>, LedgerError> {
        let mut out = Vec::with_capacity(self.allocations.len());
        let mut sum = Amount::ZERO;
        for a in &self.allocations {
            let amt = a.share.of(TOTAL_SUPPLY)?;
            sum = sum.checked_add(amt)?;
            out.push((a.account.clone(), amt));
        }
        let remainder = TOTAL_SUPPLY.checked_sub(sum)?;
        if let Some(first) = out.first_mut() {
            first.1 = first.1.checked_add(remainder)?;
        }
        Ok(out)
    }
}

impl Default for Genesis {
    /// The seed's allocation with the DAO foundation at 16% instead of 17.5%:
    /// the seed's figures (15 + 15 + 50 + 17.5 + 4) sum to 101.5%, which no
    /// ledger can honour. SPEC R-LG1 keeps the 50% mining pool and the other
    /// seed shares, and gives the DAO foundation the remaining 16%.
    fn default() -> Self {
        let a =
            |account: &'static str, pct| Allocation { account: accounts::named(account), share: Share::percent(pct) };
        Genesis {
            allocations: vec![
                a(accounts::TEAM, 15),
                a(accounts::PRIVATE_SALE, 15),
                a(accounts::MINING_POOL, 50),
                a(accounts::DAO_FOUNDATION, 16),
                a(accounts::LIQUIDITY, 4),
            ],
            network: NetworkKind::Production,
        }
    }
}

impl fmt::Display for Genesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.allocations.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", a.account, a.share)?;
        }
        if self.network == NetworkKind::Dev {
            f.write_str(" (a dev network)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_genesis_declares_its_network_kind() {
        let text = Genesis::default().to_toml().unwrap();
        assert_eq!(Genesis::from_toml(&text).unwrap().network(), NetworkKind::Production);
        let dev = Genesis::devnet();
        assert_eq!(Genesis::from_toml(&dev.to_toml().unwrap()).unwrap(), dev);
        assert!(dev.to_string().ends_with("(a dev network)"), "{dev}");
        assert!(text.contains("network = \"production\""), "{text}");
        let bad = text.replace("network = \"production\"", "network = \"testnet\"");
        let e = Genesis::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("production") && e.contains("dev"), "{e}");
    }

    #[test]
    fn shares_parse_exactly() {
        let check = |s: &str, micro: u64, shown: &str| {
            let sh: Share = s.parse().unwrap();
            assert_eq!(sh.micro_percent(), micro, "{s}");
            assert_eq!(sh.to_string(), shown);
        };
        check("15", 15_000_000, "15%");
        check("17.5", 17_500_000, "17.5%");
        check("0.000001", 1, "0.000001%");
        check("100", 100_000_000, "100%");
        check(" 4 % ", 4_000_000, "4%");
        for bad in ["", "-1", "1.", ".5", "1e2", "100.000001", "101", "0.0000001", "abc", "1.2.3", "0x10"] {
            assert!(bad.parse::<Share>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn genesis_toml_round_trips() {
        let g = Genesis::default();
        assert_eq!(Genesis::from_toml(&g.to_toml().unwrap()).unwrap(), g);
    }

    #[test]
    fn float_shares_are_refused() {
        let e = Genesis::from_toml("[[allocations]]\naccount = \"a\"\nshare = 100.0\n").unwrap_err();
        assert!(e.to_string().contains("float"), "{e}");
        let ok = Genesis::from_toml("[[allocations]]\naccount = \"a\"\nshare = 100\n").unwrap();
        assert_eq!(ok.allocations()[0].share, Share::ALL);
    }

    #[test]
    fn rounding_remainder_goes_to_the_first_allocation() {
        let third =
            |acc: &str, s: &str| Allocation { account: AccountId::new(acc).unwrap(), share: s.parse().unwrap() };
        let g = Genesis::new(vec![third("a", "33.333334"), third("b", "33.333333"), third("c", "33.333333")]).unwrap();
        let amounts = g.amounts().unwrap();
        let sum = amounts.iter().fold(Amount::ZERO, |s, (_, a)| s.checked_add(*a).unwrap());
        assert_eq!(sum, TOTAL_SUPPLY);
        assert_eq!(amounts[1].1, Share("33.333333".parse::<Share>().unwrap().0).of(TOTAL_SUPPLY).unwrap());
        assert!(amounts[0].1 > amounts[1].1);
    }
}
