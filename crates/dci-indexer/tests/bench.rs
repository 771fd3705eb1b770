//! The benchmark runs end to end on a small world and reports what the
//! issue asks for. (No timing is asserted: figures come from
//! `dci bench indexer`, never from tests.)

use dci_indexer::bench::{BenchConfig, run};

#[test]
fn a_small_benchmark_agrees_with_the_scan() {
    let cfg = BenchConfig {
        containers: 1500,
        seed: 7,
        matches: 400,
        naive_matches: 20,
        heartbeats: 3000,
        heartbeats_per_match: 5,
        session_window: 100,
        tick_every: 100,
    };
    let r = run(&cfg);
    assert!(r.same_answers, "{r:#?}");
    assert_eq!((r.compared, r.mismatches, r.matches, r.ticks), (20, 0, 400, 4));
    assert_eq!(r.heartbeats_during_matches, 2000);
    assert!(r.containers > 1400 && r.no_matches < 400, "{r:#?}");
    let json = serde_json::to_value(&r).unwrap();
    for field in [
        "containers",
        "matches_per_s",
        "p50_us",
        "p99_us",
        "naive_matches_per_s",
        "speedup_vs_naive",
        "heartbeats_per_s",
        "same_answers",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
}
