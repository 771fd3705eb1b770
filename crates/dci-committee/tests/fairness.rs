//! Fairness of the sortition (R-PF4) on small, fixed-seed simulations, and
//! the full workload as an ignored (release) test.

use dci_committee::{FairnessConfig, HistoryRule, fairness};

fn small(tiers: Vec<u64>) -> FairnessConfig {
    FairnessConfig { epochs: 2_000, candidates: 200, committee: 20, tiers, rule: HistoryRule::default(), seed: 11 }
}

#[test]
fn selection_grows_with_stake() {
    let f = fairness(&small(vec![1, 4])).unwrap();
    let (lo, hi) = (&f.tiers[0], &f.tiers[1]);
    // History term: rates close to exact stake proportionality.
    let ratio = hi.mean / lo.mean;
    assert!((3.8..4.2).contains(&ratio), "history ratio {ratio}");
    assert!((lo.mean / lo.proportional - 1.0).abs() < 0.03, "{lo:?}");
    // Stake alone: more stake, more seats, but sampling without replacement is sublinear.
    let ratio_s = hi.mean_stake_only / lo.mean_stake_only;
    assert!((2.5..4.0).contains(&ratio_s), "stake-only ratio {ratio_s}");
    // Every seat is filled every epoch in both variants.
    let seats =
        |m: fn(&dci_committee::fairness::TierStats) -> f64| f.tiers.iter().map(|t| m(t) * t.nodes as f64).sum::<f64>();
    assert!((seats(|t| t.mean) - 40_000.0).abs() < 1e-6);
    assert!((seats(|t| t.mean_stake_only) - 40_000.0).abs() < 1e-6);
}

#[test]
fn the_history_term_evens_out_equal_stakes() {
    let f = fairness(&small(vec![1, 2, 5, 10])).unwrap();
    assert!(f.history_spread_ratio > 3.0, "{f:?}");
    assert!(f.max_rate_deviation < f.max_rate_deviation_stake_only);
    // With the history term switched off both variants coincide.
    let off = fairness(&FairnessConfig { rule: HistoryRule::STAKE_ONLY, ..small(vec![1, 2]) }).unwrap();
    assert!((off.history_spread_ratio - 1.0).abs() < 1e-12);
}

#[test]
fn bad_configs_are_refused() {
    for (cfg, needle) in [
        (FairnessConfig { candidates: 0, ..small(vec![1]) }, "candidates"),
        (FairnessConfig { committee: 201, ..small(vec![1]) }, "committee"),
        (small(vec![]), "tiers"),
        (small(vec![1, 0]), "tiers"),
        (FairnessConfig { rule: HistoryRule { min_factor_q16: 0, ..HistoryRule::default() }, ..small(vec![1]) }, "min"),
    ] {
        let e = fairness(&cfg).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}

/// R-PF4's workload: `cargo test -p dci-committee --release -- --ignored`.
#[test]
#[ignore = "100,000 epochs: run in release"]
fn rpf4_fairness_targets_hold() {
    let f = fairness(&FairnessConfig::default()).unwrap();
    println!("{}", serde_json::to_string_pretty(&f).unwrap());
    assert!(f.max_rate_deviation <= 0.05, "{}", f.max_rate_deviation);
    assert!(f.history_spread_ratio > 1.0, "{}", f.history_spread_ratio);
}

/// Prints the `dci bench checker` committee figures (no timing assertions).
#[test]
#[ignore = "1,000,000 candidates: run in release"]
fn bench_figures() {
    let b = dci_committee::bench::run(&dci_committee::bench::BenchConfig::default()).unwrap();
    println!("{}", serde_json::to_string_pretty(&b).unwrap());
    assert_eq!(b.committee_selected, b.committee_size);
}
