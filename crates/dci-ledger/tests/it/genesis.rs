use dci_ledger::{Allocation, EmbeddedLedger, Genesis, LedgerError, Share};
use dci_model::{Amount, money::TOTAL_SUPPLY};

use crate::acc;

const SEED_TOML: &str = r#"
# The seed's figures, verbatim: they sum to 101.5%.
[[allocations]]
account = "genesis:team"
share = "15"
[[allocations]]
account = "genesis:private-sale"
share = "15"
[[allocations]]
account = "pool:mining"
share = "50"
[[allocations]]
account = "dao:foundation"
share = "17.5"
[[allocations]]
account = "genesis:liquidity"
share = "4"
"#;

#[test]
fn default_genesis_allocates_the_whole_supply() {
    let g = Genesis::default();
    let amounts = g.amounts().unwrap();
    let sum = amounts.iter().fold(Amount::ZERO, |s, (_, a)| s.checked_add(*a).unwrap());
    assert_eq!(sum, TOTAL_SUPPLY);
    let expect = [
        ("genesis:team", 6_300_000_000),
        ("genesis:private-sale", 6_300_000_000),
        ("pool:mining", 21_000_000_000),
        ("dao:foundation", 6_720_000_000),
        ("genesis:liquidity", 1_680_000_000),
    ];
    for ((account, amount), (name, ath)) in amounts.iter().zip(expect) {
        assert_eq!((account.as_str(), *amount), (name, Amount::ath(ath)));
    }
    let l = EmbeddedLedger::open_in_memory(&g).unwrap();
    for (name, ath) in expect {
        assert_eq!(l.balance(&acc(name)).unwrap(), Amount::ath(ath), "{name}");
    }
    assert_eq!(l.check_invariant().unwrap().found(), TOTAL_SUPPLY);
}

#[test]
fn genesis_configs_that_do_not_sum_to_100_are_refused() {
    // (toml, text the error must contain)
    let cases: &[(&str, &str)] = &[
        (SEED_TOML, "found 101.5%"),
        ("[[allocations]]\naccount = \"a\"\nshare = \"99.999999\"\n", "found 99.999999%"),
        ("allocations = []\n", "at least one allocation"),
        ("[[allocations]]\naccount = \"a\"\nshare = \"100\"\nextra = 1\n", "unknown field `extra`"),
        ("allocations = []\nfee = 1\n", "unknown field `fee`"),
        (
            "[[allocations]]\naccount = \"a\"\nshare = \"50\"\n[[allocations]]\naccount = \"a\"\nshare = \"50\"\n",
            "a twice",
        ),
        (
            "[[allocations]]\naccount = \"a\"\nshare = \"0\"\n[[allocations]]\naccount = \"b\"\nshare = \"100\"\n",
            "positive share",
        ),
        ("[[allocations]]\naccount = \"a\"\nshare = \"1e2\"\n", "percentage"),
        ("[[allocations]]\naccount = \"a\"\nshare = 100.0\n", "float"),
        ("[[allocations]]\naccount = \"Not Valid\"\nshare = \"100\"\n", "account id"),
    ];
    for (text, needle) in cases {
        let e = Genesis::from_toml(text).unwrap_err();
        assert!(matches!(e, LedgerError::InvalidGenesis(_)), "{text}: {e:?}");
        assert!(e.to_string().contains(needle), "{text}: expected {needle:?} in {e}");
    }
    // The same rule through the constructor.
    let seed = |account: &str, share: &str| Allocation { account: acc(account), share: share.parse().unwrap() };
    let e = Genesis::new(vec![
        seed("genesis:team", "15"),
        seed("genesis:private-sale", "15"),
        seed("pool:mining", "50"),
        seed("dao:foundation", "17.5"),
        seed("genesis:liquidity", "4"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("101.5"), "{e}");
}

#[test]
fn the_seed_with_the_documented_fix_is_the_default() {
    let fixed = SEED_TOML.replace("\"17.5\"", "\"16\"");
    assert_eq!(Genesis::from_toml(&fixed).unwrap(), Genesis::default());
    let g = Genesis::default();
    let dao = &g.allocations()[3];
    assert_eq!((dao.account.as_str(), dao.share), ("dao:foundation", Share::percent(16)));
}

#[test]
fn reopening_does_not_reapply_genesis_and_refuses_another_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let g = Genesis::default();
    let mut l = EmbeddedLedger::open(&path, &g).unwrap();
    l.transfer(&acc("genesis:liquidity"), &acc("consumer:alice"), Amount::ath(1_000)).unwrap();
    drop(l);
    let l = EmbeddedLedger::open(&path, &g).unwrap();
    assert_eq!(l.balance(&acc("genesis:liquidity")).unwrap(), Amount::ath(1_680_000_000 - 1_000));
    assert_eq!(l.balance(&acc("consumer:alice")).unwrap(), Amount::ath(1_000));
    assert_eq!(l.check_invariant().unwrap().found(), TOTAL_SUPPLY);
    drop(l);

    let other = Genesis::from_toml("[[allocations]]\naccount = \"pool:mining\"\nshare = \"100\"\n").unwrap();
    let e = EmbeddedLedger::open(&path, &other).unwrap_err();
    assert!(matches!(e, LedgerError::GenesisMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("dao:foundation 16%") && e.to_string().contains("pool:mining 100%"), "{e}");
    // The refusal did not touch the file.
    let l = EmbeddedLedger::open(&path, &g).unwrap();
    assert_eq!(l.balance(&acc("consumer:alice")).unwrap(), Amount::ath(1_000));
}
