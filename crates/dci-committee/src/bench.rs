//! `dci bench checker` figures for the committee (R-PF4).
//!
//! **Sortition** mimics one epoch of a network with `candidates` stake-weighted
//! checkers and a committee of `committee`: `committee · (1 + margin)` nodes
//! publish proofs. Setup (not timed): the candidate registry (ids, stakes in
//! four tiers, histories with deficits of a few seats), and real VRF keys and
//! proofs for the publishers, placed among the candidates at random. Only
//! the publishers need real keys: a verifier's work depends on the registry
//! and the published proofs alone, and in a real epoch the others stay
//! silent.
//!
//! Timed, per run: `sortition_ms_1m` is [`verify_and_select`] — what any node
//! does to determine and verify the committee from the seed and the
//! published proofs (per-proof checks and registry look-ups, ranking, batch
//! VRF verification of the best `committee` proofs on all cores). The
//! verifier needs no O(candidates) pass: it does not enforce the publish
//! threshold. The threshold is the publishers' one pass over every weight,
//! timed separately (`publish_threshold_ms`) and added in
//! `sortition_with_threshold_ms`. Medians over `runs`.
//!
//! **Fairness** is [`fairness`] with R-PF4's workload.

use serde::{Deserialize, Serialize};
use std::time::Instant;

use dci_model::{Amount, NodeId};

use crate::candidates::{Candidate, CandidateSet};
use crate::fairness::{FairnessConfig, TierStats, fairness};
use crate::history::{History, HistoryRule};
use crate::par::map_chunks;
use crate::select::verify_and_select;
use crate::vrf::{CommitteeKey, EpochSeed, Proof, prove};

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchConfig {
    /// Registered candidates.
    pub candidates: usize,
    /// Committee seats.
    pub committee: usize,
    /// Extra publishers in percent of the seats.
    pub margin_pct: u32,
    /// Timed runs (the median is reported).
    pub runs: usize,
    /// Seed of the synthetic registry.
    pub seed: u64,
    /// The fairness simulation.
    pub fairness: FairnessConfig,
}

impl Default for BenchConfig {
    /// R-PF4: 1,000 of 1,000,000, 25% publish margin, 5 runs, and the default fairness workload.
    fn default() -> Self {
        BenchConfig {
            candidates: 1_000_000,
            committee: 1_000,
            margin_pct: 25,
            runs: 5,
            seed: 7,
            fairness: FairnessConfig::default(),
        }
    }
}

/// The figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitteeBench {
    /// Median ms to determine and verify the committee from the seed and the
    /// published proofs (`verify_and_select`; R-PF4: ≤ 50).
    pub sortition_ms_1m: f64,
    /// Fastest run of the same, ms.
    pub sortition_ms_min: f64,
    /// Median ms of the publish-threshold pass over all candidates.
    pub publish_threshold_ms: f64,
    /// Median ms of threshold and selection together.
    pub sortition_with_threshold_ms: f64,
    /// Candidates registered.
    pub candidates: usize,
    /// Seats.
    pub committee_size: usize,
    /// Members selected (equals the seats).
    pub committee_selected: usize,
    /// Proofs published.
    pub proofs_published: usize,
    /// Proofs verified cryptographically (the best `committee_size`).
    pub proofs_verified: usize,
    /// Threads available to the verifier.
    pub threads: usize,
    /// Fairness: worst relative deviation from the tier mean, history term (≤ 0.05).
    pub max_rate_deviation: f64,
    /// The same with stake weighting alone.
    pub max_rate_deviation_stake_only: f64,
    /// Spread with stake alone / spread with the history term (> 1).
    pub history_spread_ratio: f64,
    /// Epochs simulated.
    pub epochs_simulated: u64,
    /// Candidates in the simulation.
    pub fairness_candidates: usize,
    /// Seats in the simulation.
    pub fairness_committee: usize,
    /// Wall time of the simulation, ms.
    pub fairness_ms: f64,
    /// Per-tier counts.
    pub tiers: Vec<TierStats>,
}

/// Why the bench could not run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BenchError {
    /// The configuration is unusable.
    #[error("invalid bench config: {0}")]
    Config(String),
    /// The sortition refused the synthetic epoch (a bug).
    #[error(transparent)]
    Sortition(#[from] crate::SortitionError),
    /// The fairness simulation refused its config.
    #[error(transparent)]
    Fairness(#[from] crate::fairness::FairnessConfigError),
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn id_of(seed: u64, i: u64) -> NodeId {
    let mut b = [0u8; 32];
    for (k, chunk) in b.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(seed ^ mix(i.wrapping_mul(4) + k as u64)).to_le_bytes());
    }
    NodeId(b)
}

/// Runs both measurements.
pub fn run(cfg: &BenchConfig) -> Result<CommitteeBench, BenchError> {
    let n = cfg.candidates;
    let publishers = (cfg.committee * (100 + cfg.margin_pct as usize)).div_ceil(100).min(n);
    if cfg.committee == 0 || cfg.committee > n || cfg.runs == 0 {
        return Err(BenchError::Config(format!(
            "expected 1 <= committee <= candidates and runs >= 1, found committee {}, candidates {n}, runs {}",
            cfg.committee, cfg.runs
        )));
    }
    let tiers = [1_000u64, 2_000, 5_000, 10_000];
    let seat = 1i128 << 64;
    let history = |i: u64| {
        let r = mix(cfg.seed ^ i ^ 0x5151);
        // Deficits within ±2 seats (the accumulator starts at 0).
        History { selected: r % 50, offset: ((r >> 32) % 4001) as i128 * seat / 1000 - 2 * seat }
    };
    // Publishers at evenly spread positions; their ids sort them anywhere.
    let stride = (n / publishers).max(1);
    let keys: Vec<CommitteeKey> = (0..publishers)
        .map(|p| {
            let i = (p * stride) as u64;
            CommitteeKey::from_seed(id_of(cfg.seed, i), *blake3::hash(&i.to_le_bytes()).as_bytes())
        })
        .collect();
    let mut candidates: Vec<Candidate> = (0..n as u64)
        .map(|i| Candidate {
            id: id_of(cfg.seed, i),
            vrf_public: *blake3::hash(&i.to_be_bytes()).as_bytes(),
            stake: Amount::ath(tiers[(mix(i ^ cfg.seed) % 4) as usize]),
            history: history(i),
        })
        .collect();
    for (p, k) in keys.iter().enumerate() {
        candidates[p * stride].vrf_public = k.public();
    }
    let set = CandidateSet::new(candidates, HistoryRule::default())?;
    let seed = EpochSeed::genesis("bench");
    let epoch = 1;
    let proofs: Vec<Proof> =
        map_chunks(&keys, 16, |_, ks| ks.iter().map(|k| prove(k, &seed, epoch)).collect::<Vec<_>>())
            .into_iter()
            .flatten()
            .collect();

    let mut totals = Vec::with_capacity(cfg.runs);
    let mut thresholds = Vec::with_capacity(cfg.runs);
    let mut selects = Vec::with_capacity(cfg.runs);
    let mut selected = 0;
    for _ in 0..cfg.runs {
        let t0 = Instant::now();
        let th = set.publish_threshold(cfg.committee, cfg.margin_pct);
        let t1 = Instant::now();
        let committee = verify_and_select(&set, &seed, epoch, &proofs, cfg.committee)?;
        let t2 = Instant::now();
        std::hint::black_box(th);
        selected = committee.len();
        thresholds.push(ms(t1 - t0));
        selects.push(ms(t2 - t1));
        totals.push(ms(t2 - t0));
    }

    let t0 = Instant::now();
    let f = fairness(&cfg.fairness)?;
    let fairness_ms = ms(t0.elapsed());
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    Ok(CommitteeBench {
        sortition_ms_min: selects.iter().copied().fold(f64::INFINITY, f64::min),
        sortition_ms_1m: median(&mut selects),
        publish_threshold_ms: median(&mut thresholds),
        sortition_with_threshold_ms: median(&mut totals),
        candidates: n,
        committee_size: cfg.committee,
        committee_selected: selected,
        proofs_published: proofs.len(),
        proofs_verified: selected,
        threads,
        max_rate_deviation: f.max_rate_deviation,
        max_rate_deviation_stake_only: f.max_rate_deviation_stake_only,
        history_spread_ratio: f.history_spread_ratio,
        epochs_simulated: f.epochs,
        fairness_candidates: f.candidates,
        fairness_committee: f.committee,
        fairness_ms,
        tiers: f.tiers,
    })
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
