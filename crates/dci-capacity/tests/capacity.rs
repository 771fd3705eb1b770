//! Proof of capacity end to end: honest results verify whatever FP32 order
//! produced them; wrong, replayed, mis-committed, missing or duplicated rows
//! never do.

use dci_capacity::{
    Backend, CapacityError, CpuBackend, MAX_N, MerkleTree, Solution, a_row, cost, depth, leaf_hash, matrices,
    pick_rows, solve, verify_opening, verify_rows,
};
use dci_model::NodeId;
use dci_proto::{ChallengeParams, RowOpening};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn params(seed: u8, n: u32) -> ChallengeParams {
    ChallengeParams { id: 1, seed: [seed; 32], n, container: NodeId([0; 32]), deadline_ms: 0 }
}

fn all_rows(n: u32) -> Vec<u32> {
    (0..n).collect()
}

/// Opens `rows` of `solution` and verifies them against its own root.
fn check(p: &ChallengeParams, solution: &Solution, rows: &[u32]) -> Result<(), CapacityError> {
    verify_rows(p, &solution.root(), &solution.open(rows).unwrap(), rows)
}

/// Commits to a result computed outside `solve` (another order, a cheat).
fn commit(n: usize, c: Vec<f32>) -> Solution {
    Solution::from_result(n, c).unwrap()
}

#[test]
fn the_derivation_of_matrices_and_roots_is_pinned() {
    // Container and checker may run different builds: the matrices and the
    // commitment format must never drift.
    let (a, b) = matrices(&[7; 32], 2);
    assert_eq!(a, [-0.058044434, -0.4846599, 0.4561144, -0.121286035]);
    assert_eq!(b, [-0.9261632, 0.87029195, -0.590508, 0.29643393]);
    let root = solve(&params(1, 5)).unwrap().root();
    let hex: String = root.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "31003bb1806be2dc93a3ac704eedff3a686a60b5ee115aa8b846f351e52b7325");
}

#[test]
fn rows_of_a_derive_alone_and_entries_stay_in_range() {
    for n in [1usize, 3, 17, 64] {
        let (a, b) = matrices(&[n as u8; 32], n);
        for i in 0..n {
            assert_eq!(a_row(&[n as u8; 32], n, i), a[i * n..(i + 1) * n], "n={n} row {i}");
        }
        assert!(a.iter().chain(&b).all(|v| (-1.0..1.0).contains(v)));
        assert_ne!(a, b, "A and B come from different streams");
    }
}

#[test]
fn honest_solutions_verify() {
    for (n, rows) in [
        (1, vec![0]),
        (2, vec![0, 1]),
        (3, vec![2]),
        (5, vec![0, 4]),
        (16, vec![3, 8, 15]),
        (17, vec![16]),
        (64, all_rows(64)),
        (100, vec![0, 31, 63, 64, 99]),
    ] {
        let p = params(n as u8, n);
        let solution = solve(&p).unwrap();
        assert_eq!(check(&p, &solution, &rows), Ok(()), "n={n} rows={rows:?}");
    }
}

/// The bound is rigorous: any standard FP32 product passes, whatever order.
#[test]
fn results_from_any_fp32_summation_order_verify() {
    let n = 64usize;
    let p = params(9, n as u32);
    let (a, b) = matrices(&p.seed, n);
    let dot = |i: usize, j: usize, order: &mut dyn Iterator<Item = usize>| -> f32 {
        order.fold(0.0f32, |acc, k| acc + a[i * n + k] * b[k * n + j])
    };
    let forward: Vec<f32> = (0..n * n).map(|e| dot(e / n, e % n, &mut (0..n))).collect();
    let backward: Vec<f32> = (0..n * n).map(|e| dot(e / n, e % n, &mut (0..n).rev())).collect();
    let fused: Vec<f32> =
        (0..n * n).map(|e| (0..n).fold(0.0f32, |acc, k| a[(e / n) * n + k].mul_add(b[k * n + e % n], acc))).collect();
    let wide: Vec<f32> = (0..n * n)
        .map(|e| (0..n).map(|k| f64::from(a[(e / n) * n + k]) * f64::from(b[k * n + e % n])).sum::<f64>() as f32)
        .collect();
    for (name, c) in [("forward", forward), ("backward", backward), ("fma", fused), ("f64 accumulation", wide)] {
        assert_eq!(check(&p, &commit(n, c), &all_rows(n as u32)), Ok(()), "{name}");
    }
}

/// The bound is tight enough that narrower inputs are caught at this size.
#[test]
fn products_of_bf16_or_tf32_inputs_fail_every_row() {
    let n = 64usize;
    let p = params(3, n as u32);
    let (a, b) = matrices(&p.seed, n);
    for (name, mask) in [("bf16", 0xffff_0000u32), ("tf32", 0xffff_e000)] {
        let narrow = |m: &[f32]| m.iter().map(|v| f32::from_bits(v.to_bits() & mask)).collect::<Vec<_>>();
        let mut c = vec![0.0; n * n];
        CpuBackend.matmul(n, &narrow(&a), &narrow(&b), &mut c).unwrap();
        let cheat = commit(n, c);
        for row in 0..n as u32 {
            assert!(matches!(check(&p, &cheat, &[row]), Err(CapacityError::Value { .. })), "{name} row {row}");
        }
    }
}

#[test]
fn a_wrong_value_in_an_opened_row_fails() {
    let n = 24usize;
    let p = params(4, n as u32);
    let honest = solve(&p).unwrap();
    let row = 7u32;
    type Tamper = fn(f32) -> f32;
    let cases: [(&str, Tamper); 5] = [
        ("off by 0.01", |v| v + 0.01),
        ("negated", |v| -v),
        ("zero", |_| 0.0),
        ("nan", |_| f32::NAN),
        ("infinite", |_| f32::INFINITY),
    ];
    for (name, tamper) in cases {
        // The cheat committed to the wrong value: the path is fine, the value is not.
        let mut c = honest.c.clone();
        let e = row as usize * n + 5;
        c[e] = tamper(c[e]);
        let cheat = commit(n, c);
        assert!(
            matches!(check(&p, &cheat, &[row]), Err(CapacityError::Value { row: 7, col: 5, .. })),
            "committed {name}"
        );
        // Changed after committing: the path no longer leads to the root.
        let mut openings = honest.open(&[row]).unwrap();
        openings[0].values[5] = tamper(openings[0].values[5]);
        assert_eq!(verify_rows(&p, &honest.root(), &openings, &[row]), Err(CapacityError::BadProof { row }), "{name}");
        // Rows the cheat did not touch still verify: detection is by sampling.
        assert_eq!(check(&p, &cheat, &[row + 1]), Ok(()), "{name}");
    }
}

#[test]
fn a_row_opened_against_a_different_root_fails() {
    let p = params(5, 20);
    let honest = solve(&p).unwrap();
    let other = solve(&params(6, 20)).unwrap();
    let openings = honest.open(&[3, 11]).unwrap();
    assert_eq!(verify_rows(&p, &other.root(), &openings, &[3, 11]), Err(CapacityError::BadProof { row: 3 }));
    assert!(!verify_opening(&[0; 32], 20, &openings[0]));
}

#[test]
fn a_solution_replayed_from_another_seed_fails() {
    for n in [1u32, 8, 33] {
        let fresh = params(10, n);
        let old = solve(&params(11, n)).unwrap();
        let rows = [n - 1];
        assert!(matches!(check(&fresh, &old, &rows), Err(CapacityError::Value { .. })), "n={n}");
    }
}

#[test]
fn rows_must_be_exactly_the_requested_ones() {
    let p = params(12, 10);
    let s = solve(&p).unwrap();
    let open = |rows: &[u32]| s.open(rows).unwrap();
    let cases: Vec<(&str, Vec<RowOpening>, Vec<u32>, CapacityError)> = vec![
        ("missing", open(&[1]), vec![1, 4], CapacityError::MissingRow { row: 4 }),
        ("none", vec![], vec![2], CapacityError::MissingRow { row: 2 }),
        ("duplicate", open(&[1, 4, 4]), vec![1, 4], CapacityError::DuplicateRow { row: 4 }),
        ("unexpected", open(&[1, 5]), vec![1, 4], CapacityError::UnexpectedRow { row: 5 }),
        ("expected twice", open(&[1]), vec![1, 1], CapacityError::DuplicateExpectedRow { row: 1 }),
        ("expected out of range", open(&[1]), vec![10], CapacityError::RowOutOfRange { row: 10, n: 10 }),
    ];
    for (name, openings, expected, error) in cases {
        assert_eq!(verify_rows(&p, &s.root(), &openings, &expected), Err(error), "{name}");
    }
    // An opening with a value missing is a length error, not a panic.
    let mut short = open(&[2]);
    short[0].values.pop();
    assert_eq!(
        verify_rows(&p, &s.root(), &short, &[2]),
        Err(CapacityError::RowLength { row: 2, expected: 10, found: 9 })
    );
}

#[test]
fn merkle_proofs_hold_for_every_row_of_any_size() {
    for n in 1..=40usize {
        let c: Vec<f32> = (0..n * n).map(|v| v as f32).collect();
        let tree = MerkleTree::from_rows(n, &c).unwrap();
        let root = tree.root();
        for i in 0..n as u32 {
            let opening = RowOpening {
                index: i,
                values: c[i as usize * n..(i as usize + 1) * n].to_vec(),
                proof: tree.proof(i).unwrap(),
            };
            assert_eq!(opening.proof.len(), depth(n), "n={n}");
            assert!(verify_opening(&root, n, &opening), "n={n} row {i}");
            let mut moved = opening.clone();
            moved.index = (i + 1) % n as u32;
            assert!(n == 1 || !verify_opening(&root, n, &moved), "n={n} row {i} claimed as another row");
            for s in 0..opening.proof.len() {
                let mut bent = opening.clone();
                bent.proof[s][0] ^= 1;
                assert!(!verify_opening(&root, n, &bent), "n={n} row {i} sibling {s} flipped");
            }
            let mut long = opening.clone();
            long.proof.push([0; 32]);
            assert!(!verify_opening(&root, n, &long), "n={n} row {i} proof too long");
            let mut short = opening;
            if short.proof.pop().is_some() {
                assert!(!verify_opening(&root, n, &short), "n={n} row {i} proof too short");
            }
        }
        assert!(tree.proof(n as u32).is_err());
    }
    // Leaves bind their index: the same values at another index hash differently.
    assert_ne!(leaf_hash(0, &[1.0]), leaf_hash(1, &[1.0]));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    for n in [0, MAX_N + 1, u32::MAX] {
        assert_eq!(solve(&params(1, n)).err(), Some(CapacityError::Dimension { max: MAX_N, found: n }));
        assert!(matches!(verify_rows(&params(1, n), &[0; 32], &[], &[]), Err(CapacityError::Dimension { .. })));
    }
    let s = solve(&params(1, 4)).unwrap();
    assert_eq!(s.open(&[4]), Err(CapacityError::RowOutOfRange { row: 4, n: 4 }));
    assert!(Solution::from_result(3, vec![0.0; 8]).is_err());
    assert!(CpuBackend.matmul(3, &[0.0; 9], &[0.0; 8], &mut [0.0; 9]).is_err());
}

#[test]
fn verification_costs_a_small_fraction_of_the_work() {
    for (n, k, fraction) in [(256u32, 8u32, 2.0 * 8.0 / 256.0), (4096, 8, 2.0 * 8.0 / 4096.0), (4, 8, 2.0 * 4.0 / 4.0)]
    {
        assert_eq!(cost(n, k).flop_fraction(), fraction, "n={n} k={k}");
    }
    let c = cost(16_384, 64);
    assert!(c.flop_fraction() <= 0.01, "{c:?}");
    assert!(c.checker.random_values < c.container.random_values);
    assert!(c.checker.hashed_bytes < c.container.hashed_bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn picked_rows_are_distinct_sorted_and_in_range(seed: [u8; 32], n in 0u32..300, k in 0u32..40) {
        let rows = pick_rows(&mut ChaCha20Rng::from_seed(seed), n, k);
        prop_assert_eq!(rows.len() as u32, k.min(n));
        prop_assert!(rows.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(rows.iter().all(|&r| r < n));
    }

    #[test]
    fn honest_passes_and_any_committed_error_in_an_opened_row_fails(
        seed: [u8; 32],
        n in 1u32..24,
        pick_seed: [u8; 32],
        k in 1u32..6,
        target in any::<prop::sample::Index>(),
        delta in prop_oneof![Just(-1.0f32), Just(0.5), Just(1e-2), Just(3.0)],
    ) {
        let p = ChallengeParams { id: 7, seed, n, container: NodeId([0; 32]), deadline_ms: 0 };
        let honest = solve(&p).unwrap();
        let rows = pick_rows(&mut ChaCha20Rng::from_seed(pick_seed), n, k);
        prop_assert_eq!(check(&p, &honest, &rows), Ok(()));

        // Corrupt one element of one of the opened rows and commit to it.
        let row = rows[target.index(rows.len())] as usize;
        let col = target.index(n as usize);
        let mut c = honest.c.clone();
        c[row * n as usize + col] += delta;
        let cheat = commit(n as usize, c);
        let is_value_error = matches!(check(&p, &cheat, &rows), Err(CapacityError::Value { .. }));
        prop_assert!(is_value_error);
    }
}
