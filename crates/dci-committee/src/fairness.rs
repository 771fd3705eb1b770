//! Fairness of the sortition over many simulated epochs (R-PF4).
//!
//! Running the VRF 10^8 times is out of reach, so each node's uniform draw
//! comes from a fast keyed mix of `(seed, epoch, node)` (SplitMix64
//! finalizers) instead of its VRF output. The VRF output is, by design,
//! indistinguishable from a uniform hash, so the draws have the same
//! distribution; everything after the draw is the real code path: the same
//! [`HistoryRule::weight`], [`Ticket::new`], [`select`] and accumulator
//! bookkeeping as [`crate::verify_and_select`] and
//! [`crate::CandidateSet::record`].
//!
//! Two runs share the draws (common random numbers): stake weighting alone
//! ([`HistoryRule::STAKE_ONLY`]) and stake with the history term (`rule`).

use serde::{Deserialize, Serialize};

use crate::history::{History, HistoryRule, accrual};
use crate::ticket::{Ticket, select};

/// The simulated population.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairnessConfig {
    /// Epochs to simulate.
    pub epochs: u64,
    /// Candidates.
    pub candidates: usize,
    /// Committee seats per epoch.
    pub committee: usize,
    /// Stake tiers in whole ATH; candidate `i` has `tiers[i % tiers.len()]`.
    pub tiers: Vec<u64>,
    /// The history rule under test.
    pub rule: HistoryRule,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for FairnessConfig {
    /// R-PF4's workload: 100,000 epochs, 1,000 candidates in four stake tiers
    /// (1, 2, 5, 10 thousand ATH), committee of 100.
    fn default() -> Self {
        FairnessConfig {
            epochs: 100_000,
            candidates: 1_000,
            committee: 100,
            tiers: vec![1_000, 2_000, 5_000, 10_000],
            rule: HistoryRule::default(),
            seed: 1,
        }
    }
}

/// Selection counts of one stake tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierStats {
    /// Stake of each node in the tier (whole ATH).
    pub stake_ath: u64,
    /// Nodes in the tier.
    pub nodes: usize,
    /// Seats per node at exactly stake-proportional rates.
    pub proportional: f64,
    /// Mean seats per node, with the history term.
    pub mean: f64,
    /// Worst `|count − mean| / mean` in the tier, with the history term.
    pub max_deviation: f64,
    /// Standard deviation of the counts, with the history term.
    pub std: f64,
    /// Mean seats per node, stake weighting alone.
    pub mean_stake_only: f64,
    /// Worst relative deviation, stake weighting alone.
    pub max_deviation_stake_only: f64,
    /// Standard deviation, stake weighting alone.
    pub std_stake_only: f64,
}

/// The outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    /// Epochs simulated.
    pub epochs: u64,
    /// Candidates.
    pub candidates: usize,
    /// Seats per epoch.
    pub committee: usize,
    /// Worst relative deviation of a node's count from its tier's mean, with
    /// the history term (R-PF4: ≤ 0.05).
    pub max_rate_deviation: f64,
    /// The same with stake weighting alone.
    pub max_rate_deviation_stake_only: f64,
    /// Pooled within-tier standard deviation of counts, history term.
    pub spread: f64,
    /// Pooled within-tier standard deviation, stake weighting alone.
    pub spread_stake_only: f64,
    /// `spread_stake_only / spread` (> 1: the history term evens selection out).
    pub history_spread_ratio: f64,
    /// Per tier.
    pub tiers: Vec<TierStats>,
}

/// A configuration the simulation cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid fairness config: {0}")]
pub struct FairnessConfigError(pub String);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Runs the simulation.
pub fn fairness(cfg: &FairnessConfig) -> Result<Fairness, FairnessConfigError> {
    let n = cfg.candidates;
    if n == 0 || n > u32::MAX as usize {
        return Err(FairnessConfigError(format!("expected 1 to 2^32 - 1 candidates, found {n}")));
    }
    if cfg.committee == 0 || cfg.committee > n {
        return Err(FairnessConfigError(format!("expected a committee of 1 to {n}, found {}", cfg.committee)));
    }
    if cfg.tiers.is_empty() || cfg.tiers.contains(&0) || cfg.tiers.len() > n {
        return Err(FairnessConfigError(format!(
            "expected 1 to {n} stake tiers of at least 1 ATH, found {:?}",
            cfg.tiers
        )));
    }
    cfg.rule.validate().map_err(FairnessConfigError)?;

    let units: Vec<u64> = (0..n).map(|i| cfg.tiers[i % cfg.tiers.len()]).collect();
    let total: u128 = units.iter().map(|&u| u as u128).sum();
    let step = accrual(cfg.committee, total);
    let stake_only = HistoryRule::STAKE_ONLY;
    let mut hist = vec![History::default(); n];
    let mut hist_s = vec![History::default(); n];
    let mut items: Vec<(Ticket, u32)> = Vec::with_capacity(n);
    let mut items_s: Vec<(Ticket, u32)> = Vec::with_capacity(n);
    let mut acc: u128 = 0;
    for epoch in 0..cfg.epochs {
        let base = mix(cfg.seed ^ mix(epoch.wrapping_add(GOLDEN)));
        items.clear();
        items_s.clear();
        for i in 0..n {
            let x = mix(base.wrapping_add((i as u64 + 1).wrapping_mul(GOLDEN)));
            let t = Ticket::new(x, cfg.rule.weight(units[i], hist[i].offset, acc));
            items.push((t, i as u32));
            items_s.push((Ticket { weight: stake_only.weight(units[i], hist_s[i].offset, acc), ..t }, i as u32));
        }
        for &(_, i) in select(&mut items, cfg.committee).iter() {
            hist[i as usize].won();
        }
        for &(_, i) in select(&mut items_s, cfg.committee).iter() {
            hist_s[i as usize].won();
        }
        acc += step;
    }

    let mut tiers = Vec::with_capacity(cfg.tiers.len());
    let (mut ss, mut ss_s) = (0f64, 0f64);
    for (t, &stake) in cfg.tiers.iter().enumerate() {
        let pick =
            |h: &[History]| -> Vec<f64> { (t..n).step_by(cfg.tiers.len()).map(|i| h[i].selected as f64).collect() };
        let (a, b) = (pick(&hist), pick(&hist_s));
        let (mean, dev, sq) = stats(&a);
        let (mean_s, dev_s, sq_s) = stats(&b);
        ss += sq;
        ss_s += sq_s;
        tiers.push(TierStats {
            stake_ath: stake,
            nodes: a.len(),
            proportional: cfg.epochs as f64 * cfg.committee as f64 * stake as f64 / total as f64,
            mean,
            max_deviation: dev,
            std: (sq / a.len() as f64).sqrt(),
            mean_stake_only: mean_s,
            max_deviation_stake_only: dev_s,
            std_stake_only: (sq_s / b.len() as f64).sqrt(),
        });
    }
    let spread = (ss / n as f64).sqrt();
    let spread_stake_only = (ss_s / n as f64).sqrt();
    let worst = |f: fn(&TierStats) -> f64| tiers.iter().map(f).fold(0.0, f64::max);
    Ok(Fairness {
        epochs: cfg.epochs,
        candidates: n,
        committee: cfg.committee,
        max_rate_deviation: worst(|t| t.max_deviation),
        max_rate_deviation_stake_only: worst(|t| t.max_deviation_stake_only),
        spread,
        spread_stake_only,
        history_spread_ratio: if spread > 0.0 { spread_stake_only / spread } else { f64::INFINITY },
        tiers,
    })
}

/// (mean, worst |x − mean| / mean, Σ (x − mean)²).
fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let worst = xs.iter().map(|x| (x - mean).abs()).fold(0.0, f64::max);
    let sq = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    (mean, if mean > 0.0 { worst / mean } else { 0.0 }, sq)
}
