//! The tables and models around the protocol: GPU classes, challenge sizes,
//! deadlines, the soundness bound (checked against brute force), the work
//! counts, and the bench's report.

use dci_capacity::bench::{BenchConfig, run};
use dci_capacity::{
    CERTAIN_BITS, CapacityError, MAX_N, MIN_N, Params, SLACK_MS, Timing, TimingClass, class_of_model, deadline_ms,
    expected_ms, freivalds_cost, judge, judge_silence, size_for, soundness, soundness_bits,
};

#[test]
fn gpu_models_map_to_their_classes() {
    use TimingClass::*;
    for (model, class) in [
        ("NVIDIA H100 80GB HBM3", Some(H100)),
        ("NVIDIA H100 PCIe", Some(H100)),
        ("NVIDIA H200", Some(H200)),
        ("NVIDIA GH200 480GB", Some(H200)),
        ("NVIDIA A100-SXM4-40GB", Some(A100)),
        ("NVIDIA A100 80GB PCIe", Some(A100)),
        ("NVIDIA A10", Some(A10L4)),
        ("NVIDIA A10G", Some(A10L4)),
        ("NVIDIA L4", Some(A10L4)),
        ("NVIDIA L40S", Some(L40s)),
        ("NVIDIA L40", Some(L40s)),
        ("NVIDIA GeForce RTX 4090", Some(ConsumerAda)),
        ("NVIDIA GeForce RTX 4060 Ti", Some(ConsumerAda)),
        ("NVIDIA RTX 6000 Ada Generation", Some(ConsumerAda)),
        ("NVIDIA GeForce RTX 3090", Some(ConsumerAmpere)),
        ("NVIDIA GeForce RTX 3060 Laptop GPU", Some(ConsumerAmpere)),
        ("NVIDIA RTX A6000", Some(ConsumerAmpere)),
        ("AMD Instinct MI300X", Some(Mi300x)),
        ("nvidia h100", Some(H100)),
        ("NVIDIA GeForce GTX 1080", None),
        ("NVIDIA Tesla T4", None),
        ("", None),
        ("Simulated GPU", None),
    ] {
        assert_eq!(class_of_model(model), class, "{model}");
    }
}

#[test]
fn challenges_are_sized_to_the_claimed_memory() {
    use TimingClass::*;
    const GIB: u64 = 1 << 30;
    for (memory, class, n) in [
        (80 * GIB, H100, MAX_N),
        (24 * GIB, ConsumerAda, MAX_N),
        (6 * GIB, ConsumerAmpere, 16_384), // 12·16384² = 3 GiB = half of 6 GiB
        (4 * GIB, ConsumerAmpere, 13_312),
        (GIB, A10L4, 6_144),
        (0, A10L4, MIN_N),
        (512 * GIB, Cpu, MAX_N),
        (2 * GIB, Cpu, 9_216),
        (u64::MAX, Mi300x, MAX_N),
    ] {
        let got = size_for(memory, class);
        assert_eq!(got, n, "{memory} bytes, {class:?}");
        assert!(12 * u64::from(got) * u64::from(got) <= memory / 2 || got == MIN_N);
    }
}

#[test]
fn the_timing_table_is_ordered_and_deadlines_have_margin() {
    for n in [MIN_N, 4096, 12_288, MAX_N] {
        let mut previous = u64::MAX;
        // ALL lists classes slowest first (by FP32 peak).
        for class in TimingClass::ALL {
            let expected = expected_ms(class, n);
            assert!(expected <= previous, "{class:?} at {n}: {expected} after {previous}");
            assert!(expected > 0);
            assert_eq!(deadline_ms(class, n), (expected as f64 * dci_capacity::MARGIN).ceil() as u64 + SLACK_MS);
            previous = expected;
            assert!(!class.name().is_empty());
        }
    }
    // The CPU class is slower than every GPU by far more than the margin.
    let n = MAX_N;
    for gpu in TimingClass::ALL.into_iter().skip(1) {
        assert!(expected_ms(TimingClass::Cpu, n) > 10 * deadline_ms(gpu, n), "{gpu:?}");
    }
}

#[test]
fn judging_is_exact_at_the_deadline() {
    let (class, n) = (TimingClass::H100, MAX_N);
    let deadline = deadline_ms(class, n);
    let expected = expected_ms(class, n);
    assert_eq!(
        judge(class, n, deadline),
        Timing::OnTime { expected_ms: expected, deadline_ms: deadline, took_ms: deadline }
    );
    assert_eq!(
        judge(class, n, deadline + 1),
        Timing::Slow { expected_ms: expected, deadline_ms: deadline, took_ms: deadline + 1 }
    );
    assert!(judge(class, n, 0).passed());
    assert_eq!(judge_silence(deadline, 0), None);
    assert!(matches!(judge_silence(deadline, u64::MAX), Some(Timing::Dark { .. })));
}

/// What the clock can tell apart at the GPU size: a class whose typical
/// honest time (60% of its conservative expected time) exceeds another
/// class's deadline is caught claiming it. Between GPUs the host work
/// dominates at this size, so only gross misclaims are caught — stated in
/// the `timing` module's doc.
#[test]
fn which_misclaims_the_clock_catches() {
    use TimingClass::*;
    let n = MAX_N;
    let caught =
        |claimed: TimingClass, real: TimingClass| 0.6 * expected_ms(real, n) as f64 > deadline_ms(claimed, n) as f64;
    for gpu in [ConsumerAmpere, ConsumerAda, A100, A10L4, H100, H200, L40s, Mi300x] {
        assert!(caught(gpu, Cpu), "a CPU claiming {gpu:?}");
        assert!(!caught(gpu, gpu), "an honest {gpu:?}");
    }
    assert!(!caught(L40s, ConsumerAmpere), "host work dominates: not separable at this size");
    assert!(!caught(Mi300x, A100));
}

#[test]
fn soundness_is_the_stated_bound() {
    for (n, rows, f, bits) in [
        (16_384, 40, 0.5, 40.0),
        (12_288, 40, 0.5, 40.0),
        (16_384, 40, 0.25, 40.0 * -(0.75f64).log2()),
        (16_384, 80, 0.25, 80.0 * -(0.75f64).log2()),
        (16, 40, 0.5, 16.0), // rows capped at n
        (16_384, 40, 0.0, 0.0),
        (16_384, 40, 1.0, CERTAIN_BITS),
        (16_384, 40, f64::NAN, 0.0),
        (16_384, 40, -3.0, 0.0),
    ] {
        let got = soundness_bits(n, 4, rows, f);
        assert!((got - bits).abs() < 1e-9, "n={n} rows={rows} f={f}: {got} != {bits}");
    }
    let defaults = Params::DEFAULT;
    let s = soundness(MAX_N, defaults.rounds, defaults.rows, dci_capacity::MODEL_SKIPPED_FRACTION);
    assert!(s.sampling_bits >= 40.0, "{s:?}");
    assert_eq!(s.freivalds_bits, f64::from(defaults.rounds));
}

/// Oracle for the bound: over every `s`-subset of `n` rows, the mean
/// probability that all opened rows survive (`Π x_i`) never exceeds
/// `(mean x)^s` (Maclaurin's inequality), for rows with random survival
/// probabilities — so `(1 - f)^s` bounds every placement of wrong elements.
#[test]
fn maclaurins_inequality_holds_by_brute_force() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
    for trial in 0..200 {
        let n = 2 + trial % 9;
        let s = 1 + trial % n;
        let x: Vec<f64> = (0..n).map(|_| if rng.random::<f64>() < 0.3 { 1.0 } else { rng.random::<f64>() }).collect();
        let mean = x.iter().sum::<f64>() / n as f64;
        let (mut total, mut count) = (0.0f64, 0u64);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize == s {
                total += (0..n).filter(|i| mask & (1 << i) != 0).map(|i| x[i]).product::<f64>();
                count += 1;
            }
        }
        let pass = total / count as f64;
        assert!(pass <= mean.powi(s as i32) + 1e-12, "n={n} s={s}: {pass} > {}", mean.powi(s as i32));
    }
}

#[test]
fn verification_work_is_a_small_fraction_at_the_sizes_used() {
    let q = Params::DEFAULT;
    let mut previous = f64::INFINITY;
    for n in [1024, 2048, 4096, 8192, 12_288, MAX_N] {
        let c = freivalds_cost(n, q.rounds, q.rows);
        let fraction = c.flop_fraction();
        assert!(fraction < previous, "n={n}");
        previous = fraction;
        assert_eq!(
            c.checker.random_values,
            2 * u64::from(n) * u64::from(n) + 40 * u64::from(n) + 4 * u64::from(n).div_ceil(32)
        );
    }
    // Flops alone: about (2k + s)/n, well under 1% at the sizes used.
    assert!(freivalds_cost(MAX_N, q.rounds, q.rows).flop_fraction() < 0.01);
}

#[test]
fn the_bench_reports_what_dci_bench_checker_needs() {
    let report = run(&BenchConfig::quick()).unwrap();
    assert_eq!(report.sizes.len(), 2);
    assert!(report.sizes[0].container_measured && !report.sizes[1].container_measured);
    assert!(report.sizes.iter().all(|s| s.checker_ms > 0.0 && s.container_ms > 0.0));
    assert!(report.soundness_bits >= 40.0);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    for key in ["soundness_bits", "verify_cost_ratio", "freivalds_bits", "rates", "sizes", "workload"] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    let bad = BenchConfig { sizes: vec![0], ..BenchConfig::quick() };
    assert_eq!(run(&bad).err(), Some(CapacityError::Dimension { max: MAX_N, found: 0 }));
    let standard = BenchConfig::standard();
    assert_eq!(standard.sizes, vec![MAX_N]);
}
