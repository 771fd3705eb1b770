//! The Freivalds round end to end: honest answers verify whatever FP32
//! order produced them; every dishonest behaviour is caught; malformed
//! answers are errors, never panics; no honest container is penalized over
//! 10,000 simulated inspections with realistic timing noise.

use dci_capacity::{
    Attempt, Behaviour, CapacityError, MAX_N, MAX_ROUNDS, Params, Response, Reveal, RevealExt, Solution, Timing,
    TimingClass, TimingNoise, Violation, deadline_ms, judge, judge_silence, matrices, respond, response_deadline_ms,
    solve, verify,
};
use dci_model::NodeId;
use dci_proto::ChallengeParams;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn params(seed: u8, n: u32) -> ChallengeParams {
    ChallengeParams { id: 9, seed: [seed; 32], n, container: NodeId([0; 32]), deadline_ms: 0 }
}

fn small(rounds: u32, rows: u32, columns: u32) -> Params {
    Params { rounds, rows, columns }
}

/// Draws a reveal with a fixed checker RNG.
fn reveal(p: &ChallengeParams, q: Params, rng_seed: u64) -> Reveal {
    Reveal::draw(&mut ChaCha20Rng::seed_from_u64(rng_seed), p, q)
}

/// Commits and answers honestly, returns the verdict.
fn honest(p: &ChallengeParams, q: Params, rng_seed: u64) -> Result<(), Violation> {
    let s = solve(p).unwrap();
    let r = reveal(p, q, rng_seed);
    verify(p, &s.root(), &r, &respond(&s, &r).unwrap())
}

#[test]
fn honest_answers_verify_at_every_size_and_parameter_set() {
    for (n, q) in [
        (1, small(1, 1, 1)),
        (2, small(2, 2, 1)),
        (5, small(3, 5, 5)),
        (16, Params::DEFAULT),
        (33, small(7, 3, 100)),
        (64, small(MAX_ROUNDS, 64, 8)),
        (100, small(4, 40, 32)),
        (300, Params::DEFAULT),
    ] {
        for rng_seed in 0..3 {
            assert_eq!(honest(&params(n as u8, n), q, rng_seed), Ok(()), "n={n} {q:?} rng {rng_seed}");
        }
    }
}

/// The bounds are rigorous: a product accumulated in any FP32 order passes
/// both the element check and Freivalds' band.
#[test]
fn results_from_any_fp32_summation_order_verify() {
    let n = 96usize;
    let p = params(21, n as u32);
    let (a, b) = matrices(&p.seed, n);
    let at = |i: usize, k: usize| a[i * n + k];
    let bt = |k: usize, j: usize| b[k * n + j];
    type Dot<'a> = Box<dyn Fn(usize, usize) -> f32 + 'a>;
    let orders: [(&str, Dot<'_>); 4] = [
        ("forward", Box::new(|i, j| (0..n).fold(0.0f32, |s, k| s + at(i, k) * bt(k, j)))),
        ("backward", Box::new(|i, j| (0..n).rev().fold(0.0f32, |s, k| s + at(i, k) * bt(k, j)))),
        ("fma", Box::new(|i, j| (0..n).fold(0.0f32, |s, k| at(i, k).mul_add(bt(k, j), s)))),
        (
            "pairwise blocks of 8",
            Box::new(|i, j| {
                (0..n / 8).map(|blk| (0..8).fold(0.0f32, |s, t| s + at(i, blk * 8 + t) * bt(blk * 8 + t, j))).sum()
            }),
        ),
    ];
    for (name, dot) in orders {
        let c: Vec<f32> = (0..n * n).map(|e| dot(e / n, e % n)).collect();
        let s = Solution::from_result(n, c).unwrap();
        for rng_seed in 0..4 {
            let r = reveal(&p, small(8, 16, n as u32), rng_seed);
            assert_eq!(verify(&p, &s.root(), &r, &respond(&s, &r).unwrap()), Ok(()), "{name} rng {rng_seed}");
        }
    }
}

/// Plays one inspection of `behaviour` (math only) and returns the verdict.
fn play(behaviour: Behaviour, p: &ChallengeParams, q: Params, earlier: Option<&Solution>, rng_seed: u64) -> Verdict {
    let attempt: Attempt = behaviour.commit(p, earlier).unwrap();
    let r = reveal(p, q, rng_seed);
    match attempt.respond(&r).unwrap() {
        None => Verdict::NoAnswer,
        Some(answer) => Verdict::Checked(verify(p, &attempt.root(), &r, &answer)),
    }
}

#[derive(Debug, PartialEq)]
enum Verdict {
    NoAnswer,
    Checked(Result<(), Violation>),
}

#[test]
fn every_dishonest_behaviour_is_caught_and_the_honest_ones_are_not() {
    let n = 48;
    let q = small(4, 16, 8);
    for rng_seed in 0..5 {
        let p = params(30 + rng_seed as u8, n);
        let earlier = solve(&params(99, n)).unwrap();
        let kind = |b: Behaviour| match play(b, &p, q, Some(&earlier), rng_seed) {
            Verdict::NoAnswer => "no answer",
            Verdict::Checked(Ok(())) => "passed",
            Verdict::Checked(Err(v)) => v.kind(),
        };
        assert_eq!(kind(Behaviour::Honest), "passed");
        // Honest math; caught by the clock (below).
        assert_eq!(kind(Behaviour::SlowerClass { real: TimingClass::Cpu }), "passed");
        assert_eq!(kind(Behaviour::WrongProduct), "row_mismatch", "opened odd rows are checked first");
        assert_eq!(kind(Behaviour::Replay), "row_mismatch");
        assert_eq!(kind(Behaviour::ChangeRowsAfterCommit), "bad_path");
        assert_eq!(kind(Behaviour::Dark), "no answer");
    }
    // Replay without an earlier solution replays a neighbouring seed's.
    assert!(matches!(
        play(Behaviour::Replay, &params(40, n), q, None, 1),
        Verdict::Checked(Err(Violation::RowMismatch { .. }))
    ));
}

#[test]
fn the_clock_catches_a_slower_class_and_a_dark_container() {
    let noise = TimingNoise::REALISTIC;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let n = 16_384;
    for claimed in TimingClass::ALL.into_iter().filter(|c| *c != TimingClass::Cpu) {
        for _ in 0..50 {
            let slow = Behaviour::SlowerClass { real: TimingClass::Cpu }.commit_ms(claimed, n, &noise, &mut rng);
            assert!(matches!(judge(claimed, n, slow), Timing::Slow { .. }), "a CPU claiming {claimed:?}");
            let ok = Behaviour::Honest.commit_ms(claimed, n, &noise, &mut rng);
            assert!(judge(claimed, n, ok).passed(), "an honest {claimed:?}");
        }
    }
    // Dark: silence is judged against the deadline of the step it skipped.
    let deadline = response_deadline_ms(n, 4);
    assert_eq!(judge_silence(deadline, deadline), None);
    assert_eq!(
        judge_silence(deadline, deadline + 1),
        Some(Timing::Dark { deadline_ms: deadline, waited_ms: deadline + 1 })
    );
    let commit_deadline = deadline_ms(TimingClass::H100, n);
    assert!(judge_silence(commit_deadline, commit_deadline + 1).is_some_and(|t| !t.passed()));
}

/// The acceptance test: over 10,000 simulated inspections — every class,
/// sizes and checker randomness varying, realistic timing noise — no honest
/// container fails either the math or the clock.
#[test]
fn no_honest_container_is_penalized_over_10_000_inspections() {
    let noise = TimingNoise::REALISTIC;
    let mut rng = ChaCha20Rng::seed_from_u64(2024);
    let q = small(4, 6, 4);
    let mut inspections = 0;
    for i in 0..10_000u64 {
        // The math at small n (it is the same code at any n) ...
        let n = 2 + (i % 11) as u32;
        let p =
            ChallengeParams { id: i, seed: rand::Rng::random(&mut rng), n, container: NodeId([0; 32]), deadline_ms: 0 };
        let attempt = Behaviour::Honest.commit(&p, None).unwrap();
        let r = Reveal::draw(&mut rng, &p, q);
        let answer = attempt.respond(&r).unwrap().unwrap();
        assert_eq!(verify(&p, &attempt.root(), &r, &answer), Ok(()), "inspection {i}");
        // ... and the clock at the sizes the network hands out.
        let claimed = TimingClass::ALL[(i % 9) as usize];
        let production_n =
            dci_capacity::size_for(if claimed == TimingClass::Cpu { 64 << 30 } else { 24 << 30 }, claimed);
        let took = Behaviour::Honest.commit_ms(claimed, production_n, &noise, &mut rng);
        assert!(judge(claimed, production_n, took).passed(), "inspection {i}: {claimed:?} took {took} ms");
        inspections += 1;
    }
    assert_eq!(inspections, 10_000);
}

#[test]
fn y_is_bound_to_the_committed_rows() {
    // A container that commits to wrong rows but sends the right products
    // (computed as A·(B·r) without C) is caught on the opened rows by the
    // consistency check before any product is recomputed.
    let n = 20usize;
    let p = params(50, n as u32);
    let honest = solve(&p).unwrap();
    let mut wrong = honest.c.clone();
    for v in &mut wrong[..] {
        *v += 0.5;
    }
    let cheat = Solution::from_result(n, wrong).unwrap();
    let r = reveal(&p, small(2, 3, 4), 7);
    let mut answer = respond(&cheat, &r).unwrap();
    answer.products = respond(&honest, &r).unwrap().products;
    assert!(matches!(verify(&p, &cheat.root(), &r, &answer), Err(Violation::Inconsistent { .. })));
}

#[test]
fn a_consistently_wrong_unopened_row_is_caught_by_freivalds() {
    // Row 0 is wrong and never opened: only Freivalds' rounds can see it.
    let n = 32usize;
    let p = params(51, n as u32);
    let mut c = solve(&p).unwrap().c;
    for v in &mut c[..n] {
        *v = 0.0;
    }
    let faulty = Solution::from_result(n, c).unwrap();
    let mut r = reveal(&p, small(16, 4, 4), 3);
    r.rows = vec![5, 9, 20, 31];
    let answer = respond(&faulty, &r).unwrap();
    assert!(matches!(verify(&p, &faulty.root(), &r, &answer), Err(Violation::ProductMismatch { index: 0, .. })));
}

#[test]
fn malformed_answers_are_violations_not_panics() {
    let n = 12usize;
    let p = params(60, n as u32);
    let s = solve(&p).unwrap();
    let r = reveal(&p, small(3, 4, 5), 1);
    let good = respond(&s, &r).unwrap();
    type Edit = fn(&mut Response, &Reveal);
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("other challenge", |a, _| a.challenge += 1, "wrong_challenge"),
        (
            "a product vector missing",
            |a, _| {
                a.products.pop();
            },
            "product_count",
        ),
        (
            "a product too short",
            |a, _| {
                a.products[2].pop();
            },
            "product_length",
        ),
        ("a NaN product", |a, _| a.products[0][3] = f32::NAN, "product_not_finite"),
        ("an infinite product", |a, _| a.products[1][0] = f32::INFINITY, "product_not_finite"),
        (
            "a row missing",
            |a, _| {
                a.rows.pop();
            },
            "missing_row",
        ),
        ("a row twice", |a, _| a.rows.push(a.rows[0].clone()), "duplicate_row"),
        (
            "an unrequested row",
            |a, r| a.rows[0].index = (0..12).find(|i| !r.rows.contains(i)).unwrap(),
            "unexpected_row",
        ),
        (
            "a row too short",
            |a, _| {
                a.rows[1].values.pop();
            },
            "row_length",
        ),
        ("a NaN in a row", |a, _| a.rows[1].values[4] = f32::NAN, "row_not_finite"),
        ("a row changed after commit", |a, _| a.rows[1].values[4] += 1.0, "bad_path"),
        ("a product off", |a, r| a.products[0][r.rows[1] as usize] += 1.0, "inconsistent"),
    ];
    for (name, edit, kind) in cases {
        let mut answer = good.clone();
        edit(&mut answer, &r);
        let got = verify(&p, &s.root(), &r, &answer);
        assert_eq!(got.as_ref().map_err(Violation::kind), Err(kind), "{name}: {got:?}");
        assert!(got.unwrap_err().is_container_fault(), "{name}");
    }
    assert_eq!(verify(&p, &s.root(), &r, &good), Ok(()));
}

#[test]
fn the_checkers_own_bad_input_is_a_setup_error() {
    let p = params(61, 10);
    let s = solve(&p).unwrap();
    let r = reveal(&p, small(2, 3, 2), 1);
    let answer = respond(&s, &r).unwrap();
    let setup = |p: &ChallengeParams, r: &Reveal| match verify(p, &s.root(), r, &answer) {
        Err(Violation::Setup(e)) => Some(e),
        _ => None,
    };
    for n in [0, MAX_N + 1, u32::MAX] {
        assert_eq!(setup(&params(61, n), &r), Some(CapacityError::Dimension { max: MAX_N, found: n }));
    }
    let with = |f: fn(&mut Reveal)| {
        let mut bad = r.clone();
        f(&mut bad);
        bad
    };
    assert_eq!(setup(&p, &with(|r| r.rounds = 0)), Some(CapacityError::Rounds { max: MAX_ROUNDS, found: 0 }));
    assert_eq!(setup(&p, &with(|r| r.rounds = 65)), Some(CapacityError::Rounds { max: MAX_ROUNDS, found: 65 }));
    assert_eq!(setup(&p, &with(|r| r.columns = 0)), Some(CapacityError::ColumnCount { found: 0 }));
    assert_eq!(setup(&p, &with(|r| r.rows.push(10))), Some(CapacityError::RowOutOfRange { row: 10, n: 10 }));
    assert_eq!(
        setup(&p, &with(|r| r.rows.push(r.rows[0]))),
        Some(CapacityError::DuplicateExpectedRow { row: r.rows[0] })
    );
    assert_eq!(setup(&p, &with(|r| r.challenge += 1)), Some(CapacityError::WrongChallenge { expected: 9, found: 10 }));
    // The container side refuses a reveal that does not fit its solution.
    assert_eq!(respond(&s, &with(|r| r.rows = vec![11])), Err(CapacityError::RowOutOfRange { row: 11, n: 10 }));
    assert!(Params { rounds: 1, rows: 0, columns: 1 }.validate().is_err());
}

#[test]
fn vectors_and_checked_columns_derive_from_the_reveal_seed_alone() {
    let p = params(62, 70);
    let r = reveal(&p, small(5, 4, 9), 11);
    let v = r.vectors(70);
    assert_eq!(v.len(), 70 * 5);
    assert!(v.iter().all(|&x| x == 1.0 || x == -1.0));
    let plus = v.iter().filter(|&&x| x == 1.0).count();
    assert!((100..250).contains(&plus), "roughly balanced signs: {plus} of 350");
    assert_eq!(r.vectors(70), v, "deterministic");
    let mut other = r.clone();
    other.seed[0] ^= 1;
    assert_ne!(other.vectors(70), v);
    for t in 0..4 {
        let cols = r.checked_columns(70, t);
        assert_eq!(cols.len(), 9);
        assert!(cols.iter().all(|&c| c < 70));
    }
    assert_ne!(r.checked_columns(70, 0), r.checked_columns(70, 1));
    assert_eq!(r.checked_columns(8, 0), (0..8).collect::<Vec<u32>>(), "all columns when c >= n");
}

#[test]
fn reveal_and_response_round_trip_through_serde() {
    let p = params(63, 6);
    let s = solve(&p).unwrap();
    let r = reveal(&p, small(2, 2, 3), 2);
    let answer = respond(&s, &r).unwrap();
    let r2: Reveal = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    let a2: Response = serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap();
    assert_eq!((r2, a2), (r, answer));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any single committed element off by more than the row bound, in an
    /// opened row, at a checked column, is caught; honest always passes.
    #[test]
    fn a_committed_error_at_a_checked_element_is_caught(
        seed: [u8; 32],
        n in 2u32..40,
        rng_seed: u64,
        pick in any::<prop::sample::Index>(),
        delta in prop_oneof![Just(-1.0f32), Just(0.25), Just(4.0)],
    ) {
        let p = ChallengeParams { id: 3, seed, n, container: NodeId([0; 32]), deadline_ms: 0 };
        let q = Params { rounds: 3, rows: 4, columns: 3 };
        let honest = solve(&p).unwrap();
        let r = Reveal::draw(&mut ChaCha20Rng::seed_from_u64(rng_seed), &p, q);
        prop_assert_eq!(verify(&p, &honest.root(), &r, &respond(&honest, &r).unwrap()), Ok(()));

        let t = pick.index(r.rows.len());
        let row = r.rows[t] as usize;
        let col = r.checked_columns(n as usize, t)[0] as usize;
        let mut c = honest.c.clone();
        c[row * n as usize + col] += delta;
        let cheat = Solution::from_result(n as usize, c).unwrap();
        let verdict = verify(&p, &cheat.root(), &r, &respond(&cheat, &r).unwrap());
        prop_assert!(matches!(verdict, Err(Violation::RowMismatch { .. })), "{:?}", verdict);
    }
}
