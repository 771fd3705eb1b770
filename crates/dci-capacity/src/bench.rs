//! The checker-cost bench behind `dci bench checker --json` (R-PF3): wall
//! clock of the container's work against the checker's verification, for
//! the challenge sizes the network hands out, with the soundness figures.
//!
//! Workload: one inspection per size — derive A and B, multiply, commit
//! (container) and [`crate::verify`] with the default rounds and rows
//! (checker) — both single-threaded on this machine, so the ratio compares
//! work, not core counts. Each time is the fastest of 3 runs.
//!
//! The container's solve is timed for real up to
//! [`BenchConfig::container_max_n`]; above it (a 16384 product takes minutes
//! on one CPU core) its time is modelled from the rates measured at that
//! size (SGEMM GFLOPS, ChaCha20 words/s, blake3 bytes/s), which scale
//! exactly with the work counts of [`crate::freivalds_cost`]. The checker is
//! always timed for real, on an answer that passes every check: above
//! `container_max_n` that answer is built from the checker's own pass
//! (correct opened rows, `y` from `A·(B·r)`, a Merkle tree whose other
//! leaves are placeholders) — the checker does exactly the work it does on
//! an honest answer, which it cannot tell apart.

use std::time::Instant;

use dci_proto::{ChallengeParams, RowOpening};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::CapacityError;
use crate::backend::{Backend, CpuBackend};
use crate::cost::freivalds_cost;
use crate::freivalds::{Params, Pass, RevealExt, respond, verify};
use crate::gemm::{Shape, sgemm};
use crate::matrix::{MAX_N, Which, check_dimension, matrices, rows_into};
use crate::merkle::{MerkleTree, leaf_hash};
use crate::soundness::{MODEL_SKIPPED_FRACTION, soundness};
use crate::timing::{TimingClass, size_for};
use dci_proto::{Response, Reveal};

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Challenge sizes to report (each in `1..=MAX_N`).
    pub sizes: Vec<u32>,
    /// The largest size at which the container's solve runs for real.
    pub container_max_n: u32,
    /// Rounds and rows per inspection.
    pub params: Params,
    /// Seed of the challenges and reveals (the bench is deterministic apart
    /// from the clock).
    pub seed: u64,
}

impl BenchConfig {
    /// The size used: what [`size_for`] gives every host with at least
    /// 6 GiB (CPU or GPU), [`MAX_N`]; the container measured at 2048. About
    /// 15 s in release on one core.
    pub fn standard() -> Self {
        let n = size_for(80 << 30, TimingClass::H100);
        BenchConfig { sizes: vec![n], container_max_n: 2048, params: Params::DEFAULT, seed: 1 }
    }

    /// Small sizes, for tests of the bench itself.
    pub fn quick() -> Self {
        BenchConfig { sizes: vec![64, 256], container_max_n: 128, params: Params::DEFAULT, seed: 1 }
    }
}

/// Rates measured on this machine while solving at `at_n`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rates {
    /// The size they were measured at.
    pub at_n: u32,
    /// SGEMM throughput of the CPU backend, GFLOPS.
    pub sgemm_gflops: f64,
    /// ChaCha20 matrix words derived per second.
    pub words_per_s: f64,
    /// Bytes hashed into the Merkle tree per second.
    pub hash_bytes_per_s: f64,
}

/// One challenge size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SizeBench {
    /// Matrix dimension.
    pub n: u32,
    /// Container: derive, multiply, commit, ms.
    pub container_ms: f64,
    /// True when `container_ms` was timed, false when modelled from [`Rates`].
    pub container_measured: bool,
    /// Checker: verify the answer, ms.
    pub checker_ms: f64,
    /// `checker_ms / container_ms`.
    pub verify_cost_ratio: f64,
    /// Checker flops / container flops, from the work counts.
    pub flop_fraction: f64,
    /// [`crate::soundness_bits`] at this size.
    pub soundness_bits: f64,
}

/// The bench's report (serialized for `dci bench checker --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityBench {
    /// What the bench mimics.
    pub workload: &'static str,
    /// Freivalds rounds per inspection.
    pub rounds: u32,
    /// Rows opened per inspection.
    pub rows: u32,
    /// The fraction of wrong rows the soundness figure assumes.
    pub skipped_fraction: f64,
    /// The smallest soundness over the sizes, bits (target >= 40).
    pub soundness_bits: f64,
    /// Bits against a consistently wrong row (one per round).
    pub freivalds_bits: f64,
    /// The largest measured ratio over the sizes (target <= 0.01).
    pub verify_cost_ratio: f64,
    /// Rates the modelled container times use.
    pub rates: Rates,
    /// Per size.
    pub sizes: Vec<SizeBench>,
    /// Per class of host, at the challenge size it is given.
    pub classes: Vec<ClassBench>,
}

/// One class of host at its real challenge size: what the challenge costs
/// the host (modelled from the class table: the time an honest member takes
/// and its deadline) and the checker (measured here), and the ratio of
/// their work on the same hardware (R-PF3's measure: the checker's
/// verification against the host's product, both single-threaded on this
/// machine).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassBench {
    /// The class (`TimingClass::name`).
    pub class: &'static str,
    /// The memory of the host this row assumes, GiB (a typical member).
    pub memory_gib: u32,
    /// The challenge's dimension ([`size_for`]).
    pub n: u32,
    /// The product's work, GFLOP (`2n³`).
    pub host_gflop: f64,
    /// An honest member's time to its commitment, ms (the class table).
    pub host_expected_ms: u64,
    /// The commitment deadline, ms.
    pub deadline_ms: u64,
    /// The checker's verification, measured, ms.
    pub checker_ms: f64,
    /// Checker time / host time on the same hardware (target <= 0.01).
    pub verify_cost_ratio: f64,
    /// Checker flops / host flops.
    pub flop_fraction: f64,
}

/// The classes reported, with a typical member's memory (GiB): an H100 and
/// an A100 with 80 GB, an RTX 4090 with 24 GB, a CPU host with 64 GB of RAM.
pub const CLASS_ROWS: [(TimingClass, u32); 4] =
    [(TimingClass::H100, 80), (TimingClass::A100, 80), (TimingClass::ConsumerAda, 24), (TimingClass::Cpu, 64)];

/// Runs the bench. Sizes outside `1..=MAX_N` are an error, not a panic.
pub fn run(config: &BenchConfig) -> Result<CapacityBench, CapacityError> {
    config.params.validate()?;
    for &n in &config.sizes {
        check_dimension(n)?;
    }
    let at_n = config.container_max_n.clamp(1, MAX_N);
    let rates = measure_rates(at_n, config.seed)?;
    let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
    let mut sizes = Vec::new();
    for (id, &n) in config.sizes.iter().enumerate() {
        // The bench plays both sides: no container is named, no deadline kept.
        let params = ChallengeParams {
            id: id as u64,
            seed: seed_bytes(config.seed, n),
            n,
            container: dci_model::NodeId([0; 32]),
            deadline_ms: 0,
        };
        let reveal = Reveal::draw(&mut rng, &params, config.params);
        let (container_ms, container_measured, root, response) = if n <= at_n {
            let mut container_ms = f64::INFINITY;
            let mut solution = crate::solve(&params)?;
            for _ in 0..REPEATS {
                let start = Instant::now();
                solution = crate::solve(&params)?;
                container_ms = container_ms.min(ms(start));
            }
            (container_ms, true, solution.root(), respond(&solution, &reveal)?)
        } else {
            let (root, response) = prepared_answer(&params, &reveal)?;
            (modelled_container_ms(&rates, n), false, root, response)
        };
        let mut checker_ms = f64::INFINITY;
        for _ in 0..REPEATS {
            let start = Instant::now();
            let verdict = verify(&params, &root, &reveal, &response);
            checker_ms = checker_ms.min(ms(start));
            if let Err(violation) = verdict {
                let reason = format!("an honest answer failed: {violation}");
                return Err(CapacityError::Backend { backend: "bench", reason });
            }
        }
        let p = config.params;
        sizes.push(SizeBench {
            n,
            container_ms,
            container_measured,
            checker_ms,
            verify_cost_ratio: checker_ms / container_ms,
            flop_fraction: freivalds_cost(n, p.rounds, p.rows).flop_fraction(),
            soundness_bits: soundness(n, p.rounds, p.rows, MODEL_SKIPPED_FRACTION).sampling_bits,
        });
    }
    let classes = CLASS_ROWS
        .iter()
        .filter_map(|&(class, memory_gib)| {
            let n = size_for(u64::from(memory_gib) << 30, class);
            let s = sizes.iter().find(|s| s.n == n)?;
            Some(ClassBench {
                class: class.name(),
                memory_gib,
                n,
                host_gflop: 2.0 * f64::from(n).powi(3) / 1e9,
                host_expected_ms: crate::timing::expected_ms(class, n),
                deadline_ms: crate::timing::deadline_ms(class, n),
                checker_ms: s.checker_ms,
                verify_cost_ratio: s.verify_cost_ratio,
                flop_fraction: s.flop_fraction,
            })
        })
        .collect();
    Ok(CapacityBench {
        workload: "one proof-of-capacity inspection per size: container derives, multiplies and commits; checker verifies k Freivalds rounds and s opened rows; single-threaded",
        rounds: config.params.rounds,
        rows: config.params.rows,
        skipped_fraction: MODEL_SKIPPED_FRACTION,
        soundness_bits: sizes.iter().map(|s| s.soundness_bits).fold(f64::INFINITY, f64::min).min(crate::CERTAIN_BITS),
        freivalds_bits: f64::from(config.params.rounds),
        verify_cost_ratio: sizes.iter().map(|s| s.verify_cost_ratio).fold(0.0, f64::max),
        rates,
        sizes,
        classes,
    })
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn seed_bytes(seed: u64, n: u32) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..12].copy_from_slice(&n.to_le_bytes());
    bytes
}

/// Timed runs per measurement; the fastest counts (the machine is shared,
/// and interference only ever adds time).
const REPEATS: usize = 3;

/// Times the three parts of a solve at `n` (fastest of [`REPEATS`] each).
fn measure_rates(n: u32, seed: u64) -> Result<Rates, CapacityError> {
    let size = check_dimension(n)?;
    let (mut derive_s, mut multiply_s, mut hash_s) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..REPEATS {
        let start = Instant::now();
        let (a, b) = matrices(&seed_bytes(seed, n), size);
        derive_s = derive_s.min(start.elapsed().as_secs_f64());
        let mut c = vec![0.0f32; size * size];
        let start = Instant::now();
        CpuBackend.matmul(size, &a, &b, &mut c)?;
        multiply_s = multiply_s.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let tree = MerkleTree::from_rows(size, &c)?;
        hash_s = hash_s.min(start.elapsed().as_secs_f64());
        std::hint::black_box(tree.root());
    }
    let n = f64::from(n);
    let floor = 1e-9;
    Ok(Rates {
        at_n: n as u32,
        sgemm_gflops: 2.0 * n * n * n / multiply_s.max(floor) / 1e9,
        words_per_s: 2.0 * n * n / derive_s.max(floor),
        hash_bytes_per_s: 4.0 * n * n / hash_s.max(floor),
    })
}

/// The container's time at `n` from the measured rates: derive `2n²`
/// words, multiply `2n³` flops, hash `4n²` bytes.
fn modelled_container_ms(rates: &Rates, n: u32) -> f64 {
    let n = f64::from(n);
    let seconds = 2.0 * n * n / rates.words_per_s
        + 2.0 * n * n * n / (rates.sgemm_gflops * 1e9)
        + 4.0 * n * n / rates.hash_bytes_per_s;
    seconds * 1e3
}

/// An answer that passes every check without the full product: the opened
/// rows are FP32 products `a_i · B` computed here, `y` is `A·(B·r)` (and the
/// opened rows' own dot products where opened), and the Merkle tree holds
/// the opened rows among placeholder leaves. Only possible because the rows
/// are known before committing — which is why a real container never
/// learns them in time.
fn prepared_answer(params: &ChallengeParams, reveal: &Reveal) -> Result<([u8; 32], Response), CapacityError> {
    let n = check_dimension(params.n)?;
    let k = reveal.rounds as usize;
    let r = reveal.vectors(n);
    let pass = Pass::run(&params.seed, n, k, &r, &[], &[])?;
    let opened = opened_rows(&params.seed, n, &reveal.rows)?;
    let mut leaves: Vec<[u8; 32]> = (0..n as u32).map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes()).collect();
    let mut products: Vec<Vec<f32>> = (0..k).map(|j| (0..n).map(|i| pass.z[i * k + j] as f32).collect()).collect();
    for (&row, values) in reveal.rows.iter().zip(opened.chunks_exact(n)) {
        leaves[row as usize] = leaf_hash(row, values);
        for (j, y) in products.iter_mut().enumerate() {
            let dot: f64 = values.iter().zip(r.chunks_exact(k)).map(|(&v, s)| f64::from(v) * s[j]).sum();
            y[row as usize] = dot as f32;
        }
    }
    let tree = MerkleTree::from_leaves(leaves)?;
    let rows = reveal
        .rows
        .iter()
        .zip(opened.chunks_exact(n))
        .map(|(&index, values)| Ok(RowOpening { index, values: values.to_vec(), proof: tree.proof(index)? }))
        .collect::<Result<Vec<_>, CapacityError>>()?;
    Ok((tree.root(), Response { challenge: params.id, products, rows }))
}

/// Rows `rows` of `A · B` in FP32, streaming B in blocks.
fn opened_rows(seed: &[u8; 32], n: usize, rows: &[u32]) -> Result<Vec<f32>, CapacityError> {
    let s = rows.len();
    let mut a = vec![0.0f32; s * n];
    for (dst, &row) in a.chunks_exact_mut(n).zip(rows) {
        rows_into(seed, Which::A, n, row as usize, dst);
    }
    let mut c = vec![0.0f32; s * n];
    let bb = ((1usize << 18) / n).clamp(1, n);
    let mut block = vec![0.0f32; bb * n];
    let mut first = 0;
    while first < n {
        let here = bb.min(n - first);
        let b = &mut block[..here * n];
        rows_into(seed, Which::B, n, first, b);
        let a_cols = Shape { rows: s, cols: here, stride: n };
        if s > 0 && !sgemm(&a[first..], a_cols, b, Shape::dense(here, n), 1.0, &mut c, Shape::dense(s, n)) {
            return Err(CapacityError::Backend { backend: "bench", reason: "inconsistent gemm shapes".into() });
        }
        first += here;
    }
    Ok(c)
}
