//! Sizing a challenge to the claimed hardware and judging how long the
//! container took to commit.
//!
//! Each [`TimingClass`] has a vendor peak FP32 (non-tensor) figure, an
//! efficiency (the share of peak an honest FP32 SGEMM is assumed to reach —
//! deliberately low, so that an honest device is never late), and the host
//! work around the product: deriving A and B (`2n²` ChaCha20 words),
//! hashing C (`4n²` bytes) and, for GPUs, moving `12n²` bytes over the bus.
//! The expected time is the sum; the deadline is [`MARGIN`] times that plus
//! [`SLACK_MS`] for the network and scheduling. A class's figure is that of
//! its *slowest* common member, so every member is judged fairly.
//!
//! What timing can and cannot tell (stated, not hidden): at n = 16384 the
//! product takes a few hundred ms on a datacenter GPU while the host work
//! takes seconds, so the commit time separates a CPU from a GPU and a slow
//! GPU from a fast one only when their FP32 throughput differs by more than
//! the margin on top of the host work. Moving the derivation and hashing
//! onto the GPU, or a two-step challenge (send the seed, then a second
//! nonce that permutes the inner dimension once the container says it is
//! ready) would leave only the product on the clock; both are possible
//! extensions, not done here.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::matrix::MAX_N;

/// The deadline is `MARGIN` times the expected time, plus [`SLACK_MS`].
pub const MARGIN: f64 = 3.0;

/// Added to every deadline for the network round trip and scheduling.
pub const SLACK_MS: u64 = 1_000;

/// The smallest challenge size [`size_for`] hands out.
pub const MIN_N: u32 = 1_024;

/// Host-side rate assumed for the container's answer after the reveal
/// (`2·k·n²` f64 multiply-adds for `y`, scalar code).
pub const RESPONSE_FLOPS: f64 = 5.0e8;

/// A class of hardware with one timing figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimingClass {
    /// Hosts without a GPU: the product runs on the CPU.
    Cpu,
    /// GeForce RTX 30 series and RTX A-series workstation cards (Ampere).
    ConsumerAmpere,
    /// GeForce RTX 40 series and RTX Ada workstation cards.
    ConsumerAda,
    /// NVIDIA A10 / A10G and L4.
    A10L4,
    /// NVIDIA L40 and L40S.
    L40s,
    /// NVIDIA A100 (and A800).
    A100,
    /// NVIDIA H100.
    H100,
    /// NVIDIA H200 and GH200.
    H200,
    /// AMD Instinct MI300X.
    Mi300x,
}

/// The timing figures of one class.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ClassSpec {
    /// Peak FP32 throughput of the class's slowest common member, GFLOPS.
    pub peak_gflops: f64,
    /// Share of the peak an honest SGEMM is assumed to reach at least.
    pub efficiency: f64,
    /// ChaCha20 words per second the host derives A and B at.
    pub host_words_per_s: f64,
    /// Bytes per second the host hashes C at.
    pub host_hash_bytes_per_s: f64,
    /// Bytes per second between host and device (`None`: no device).
    pub link_bytes_per_s: Option<f64>,
}

// Host figures: this crate's own container code runs single-threaded; these
// are well below what it measures on one x86-64 core (~600 M words/s,
// ~1.4 GB/s blake3) so that older hosts are not late.
const GPU_HOST_WORDS: f64 = 3.0e8;
const GPU_HOST_HASH: f64 = 1.0e9;
// PCIe 3.0 x16 moves ~12 GB/s in practice; half that.
const GPU_LINK: f64 = 6.0e9;

impl TimingClass {
    /// Every class, slowest first.
    pub const ALL: [TimingClass; 9] = [
        TimingClass::Cpu,
        TimingClass::ConsumerAmpere,
        TimingClass::ConsumerAda,
        TimingClass::A100,
        TimingClass::A10L4,
        TimingClass::H100,
        TimingClass::H200,
        TimingClass::L40s,
        TimingClass::Mi300x,
    ];

    /// A stable lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            TimingClass::Cpu => "cpu",
            TimingClass::ConsumerAmpere => "consumer-ampere",
            TimingClass::ConsumerAda => "consumer-ada",
            TimingClass::A10L4 => "a10-l4",
            TimingClass::L40s => "l40s",
            TimingClass::A100 => "a100",
            TimingClass::H100 => "h100",
            TimingClass::H200 => "h200",
            TimingClass::Mi300x => "mi300x",
        }
    }

    /// The class's figures. Peak FP32 (non-tensor) TFLOPS from the vendors'
    /// datasheets and architecture whitepapers.
    pub fn spec(&self) -> ClassSpec {
        let gpu = |tflops: f64| ClassSpec {
            peak_gflops: tflops * 1e3,
            // cuBLAS SGEMM sustains 70-90% of FP32 peak at n >= 4096 on
            // datacenter parts; consumer boost clocks are rarely held.
            efficiency: 0.5,
            host_words_per_s: GPU_HOST_WORDS,
            host_hash_bytes_per_s: GPU_HOST_HASH,
            link_bytes_per_s: Some(GPU_LINK),
        };
        match self {
            // A conservative sustained figure, not a peak: one AVX2 core
            // without FMA; this crate's CPU backend measures ~65 GFLOPS on
            // one AVX-512 core.
            TimingClass::Cpu => ClassSpec {
                peak_gflops: 20.0,
                efficiency: 1.0,
                host_words_per_s: 1.5e8,
                host_hash_bytes_per_s: 5.0e8,
                link_bytes_per_s: None,
            },
            // GeForce RTX 3060: 12.7 TFLOPS (NVIDIA Ampere GA102/GA106 specs).
            TimingClass::ConsumerAmpere => gpu(12.7),
            // GeForce RTX 4060: 15.1 TFLOPS (NVIDIA Ada Lovelace specs).
            TimingClass::ConsumerAda => gpu(15.1),
            // L4: 30.3 TFLOPS (L4 datasheet); A10: 31.2 (A10 datasheet).
            TimingClass::A10L4 => gpu(30.3),
            // L40: 90.5 TFLOPS; L40S: 91.6 (L40/L40S datasheets).
            TimingClass::L40s => gpu(90.5),
            // A100: 19.5 TFLOPS FP32 (A100 datasheet; TF32 is not FP32).
            TimingClass::A100 => gpu(19.5),
            // H100 PCIe: 51 TFLOPS; SXM: 67 (H100 datasheet).
            TimingClass::H100 => gpu(51.0),
            // H200 NVL: 60 TFLOPS; SXM: 67 (H200 datasheet).
            TimingClass::H200 => gpu(60.0),
            // MI300X: 163.4 TFLOPS FP32 vector (AMD Instinct MI300X datasheet).
            TimingClass::Mi300x => gpu(163.4),
        }
    }
}

impl TimingClass {
    /// The most memory one device of the class has, GiB (0 for the CPU
    /// class): the largest member's datasheet figure. A claim of more per
    /// device than its class has is credited no more than this.
    pub fn max_vram_gib(&self) -> u32 {
        match self {
            TimingClass::Cpu => 0,
            // RTX A6000 and RTX 6000 Ada: 48 GB.
            TimingClass::ConsumerAmpere | TimingClass::ConsumerAda => 48,
            // A10, A10G and L4: 24 GB.
            TimingClass::A10L4 => 24,
            // L40 and L40S: 48 GB.
            TimingClass::L40s => 48,
            // A100 80GB.
            TimingClass::A100 => 80,
            // H100 NVL: 94 GB.
            TimingClass::H100 => 94,
            // H200: 141 GB.
            TimingClass::H200 => 141,
            // MI300X: 192 GB.
            TimingClass::Mi300x => 192,
        }
    }
}

/// What a passed proof on a CPU is worth: CPU-only hosts, and every host
/// whose GPU is simulated (its product runs on the CPU).
pub const CPU_UNITS: u64 = 1;

/// The capacity units a passed proof vouches for: the reward weight of a
/// container before uptime (see ARCHITECTURE.md, "verified capacity").
/// A proof of class `proven` on `devices` devices is worth `devices ×
/// min(vram_gib, proven's largest device)` GiB of GPU memory; a proof on a
/// CPU is worth [`CPU_UNITS`], whatever the host claims.
pub fn verified_units(proven: TimingClass, devices: u32, vram_gib: u32) -> u64 {
    match proven {
        TimingClass::Cpu => CPU_UNITS,
        class => u64::from(devices) * u64::from(vram_gib.min(class.max_vram_gib())),
    }
}

/// The class of a GPU model string as reported by the driver, e.g.
/// `"NVIDIA H100 80GB HBM3"` -> `H100`. `None` for models not in the table
/// (the caller then judges the host as [`TimingClass::Cpu`] or refuses it).
pub fn class_of_model(model: &str) -> Option<TimingClass> {
    let upper = model.to_ascii_uppercase();
    let tokens: Vec<&str> = upper.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| !t.is_empty()).collect();
    let has = |t: &str| tokens.contains(&t);
    let has_prefix = |p: &str| tokens.iter().any(|t| t.starts_with(p));
    if has_prefix("MI300") {
        return Some(TimingClass::Mi300x);
    }
    if has("H200") || has("GH200") {
        return Some(TimingClass::H200);
    }
    if has("H100") {
        return Some(TimingClass::H100);
    }
    if has("A100") || has("A800") {
        return Some(TimingClass::A100);
    }
    if has("L40") || has("L40S") {
        return Some(TimingClass::L40s);
    }
    if has("A10") || has("A10G") || has("L4") {
        return Some(TimingClass::A10L4);
    }
    let rtx = has("RTX") || has("GEFORCE");
    if rtx && has("ADA") {
        return Some(TimingClass::ConsumerAda);
    }
    for t in &tokens {
        let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        if rtx && digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit()) {
            match &digits[..2] {
                "30" => return Some(TimingClass::ConsumerAmpere),
                "40" => return Some(TimingClass::ConsumerAda),
                _ => {}
            }
        }
        if rtx && matches!(*t, "A2000" | "A4000" | "A4500" | "A5000" | "A5500" | "A6000") {
            return Some(TimingClass::ConsumerAmpere);
        }
    }
    None
}

/// The challenge dimension for a host of `memory_bytes` (GPU memory, or RAM
/// for [`TimingClass::Cpu`]): the largest multiple of 1024 whose working set
/// (A, B and C in f32: `12n²` bytes) fits in half the memory, between
/// [`MIN_N`] and [`MAX_N`] — so every host with at least 6 GiB gets
/// `MAX_N`.
///
/// CPU hosts are not given a smaller challenge, although their product is
/// slow (a minute and a half on one AVX-512 core, longer at the table's
/// conservative 20 GFLOPS — the CPU class's deadline allows for it): the
/// checker must derive all `2n²` entries of A and B, which alone costs
/// about `90/n` of the product's work on the same core, so below
/// n ≈ 14,000 verification would exceed the 1% target of R-PF3 (measured by
/// [`crate::bench`]: ~1.1-1.3% at 12288, ~1.7% at 8192). The class only changes
/// the deadline.
pub fn size_for(memory_bytes: u64, class: TimingClass) -> u32 {
    let _ = class;
    let fit = ((memory_bytes / 2 / 12) as f64).sqrt() as u64;
    (fit / 1024 * 1024).clamp(u64::from(MIN_N), u64::from(MAX_N)) as u32
}

/// Expected time (ms) for an honest member of `class` from receiving the
/// challenge to sending its commitment at dimension `n`.
pub fn expected_ms(class: TimingClass, n: u32) -> u64 {
    let s = class.spec();
    let n = f64::from(n);
    let compute = 2.0 * n * n * n / (s.peak_gflops * 1e9 * s.efficiency);
    let derive = 2.0 * n * n / s.host_words_per_s;
    let hash = 4.0 * n * n / s.host_hash_bytes_per_s;
    let link = s.link_bytes_per_s.map_or(0.0, |rate| 12.0 * n * n / rate);
    ((compute + derive + hash + link) * 1e3).ceil() as u64
}

/// The commitment deadline (ms after the challenge was sent).
pub fn deadline_ms(class: TimingClass, n: u32) -> u64 {
    (expected_ms(class, n) as f64 * MARGIN).ceil() as u64 + SLACK_MS
}

/// The answer deadline (ms after the reveal was sent): `y` for `rounds`
/// vectors and the openings, with the same margin and slack.
pub fn response_deadline_ms(n: u32, rounds: u32) -> u64 {
    let n = f64::from(n);
    let work_ms = 2.0 * f64::from(rounds) * n * n / RESPONSE_FLOPS * 1e3;
    (work_ms * MARGIN).ceil() as u64 + SLACK_MS
}

/// The timing verdict on one step of an inspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Timing {
    /// Answered within the deadline.
    OnTime {
        /// Expected time of the class, ms.
        expected_ms: u64,
        /// The deadline, ms.
        deadline_ms: u64,
        /// What it took, ms.
        took_ms: u64,
    },
    /// Answered, but after the deadline: slower than the class it claims.
    Slow {
        /// Expected time of the class, ms.
        expected_ms: u64,
        /// The deadline, ms.
        deadline_ms: u64,
        /// What it took, ms.
        took_ms: u64,
    },
    /// No answer by the deadline.
    Dark {
        /// The deadline, ms.
        deadline_ms: u64,
        /// How long the checker waited, ms.
        waited_ms: u64,
    },
}

impl Timing {
    /// True only for [`Timing::OnTime`].
    pub fn passed(&self) -> bool {
        matches!(self, Timing::OnTime { .. })
    }
}

/// Judges a commitment that arrived `took_ms` after the challenge, against
/// the class the container claims.
pub fn judge(claimed: TimingClass, n: u32, took_ms: u64) -> Timing {
    let expected_ms = expected_ms(claimed, n);
    let deadline_ms = deadline_ms(claimed, n);
    if took_ms <= deadline_ms {
        Timing::OnTime { expected_ms, deadline_ms, took_ms }
    } else {
        Timing::Slow { expected_ms, deadline_ms, took_ms }
    }
}

/// The checker's timeout: `Some(Dark)` once it has waited past `deadline_ms`
/// without an answer, `None` while the container is still in time.
pub fn judge_silence(deadline_ms: u64, waited_ms: u64) -> Option<Timing> {
    (waited_ms > deadline_ms).then_some(Timing::Dark { deadline_ms, waited_ms })
}

/// A model of the real time an honest device takes, for tests and the
/// simulator: `expected × F + rtt`, where `F` is log-normal (most devices
/// beat the conservative expected time), with occasional stalls (another
/// tenant, thermal throttling) that stretch it, and `rtt` is the network
/// round trip.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimingNoise {
    /// Median of `F`.
    pub median_factor: f64,
    /// Standard deviation of `ln F`.
    pub sigma: f64,
    /// Probability of a stall.
    pub stall_probability: f64,
    /// A stall multiplies the time by `1 + U(0, stall_max)`.
    pub stall_max: f64,
    /// Round trip, uniform in `rtt_ms.0 ..= rtt_ms.1`.
    pub rtt_ms: (u64, u64),
}

impl TimingNoise {
    /// Devices at 60% of the conservative expected time in the median, a
    /// 20% spread, one stall in 50 of up to +50%, 1–300 ms round trips.
    pub const REALISTIC: TimingNoise =
        TimingNoise { median_factor: 0.6, sigma: 0.2, stall_probability: 0.02, stall_max: 0.5, rtt_ms: (1, 300) };

    /// One sample of the elapsed time (ms) of a device of `class` at `n`.
    pub fn sample_ms<R: Rng + ?Sized>(&self, class: TimingClass, n: u32, rng: &mut R) -> u64 {
        let base = expected_ms(class, n) as f64;
        // Box-Muller: one standard normal from two uniforms in (0, 1].
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let mut factor = self.median_factor * (self.sigma * z).exp();
        if rng.random::<f64>() < self.stall_probability {
            factor *= 1.0 + rng.random::<f64>() * self.stall_max;
        }
        let (lo, hi) = self.rtt_ms;
        let rtt = if hi > lo { rng.random_range(lo..=hi) } else { lo };
        (base * factor).ceil() as u64 + rtt
    }
}
