//! The simulation end to end, on the shipped `small` scenario (with a
//! 2-minute epoch, so that a short run sees epochs close and pay).

use dci_sim::{Report, Scenario, run};

/// Six simulated minutes of the `small` network.
fn small(seed: u64) -> Report {
    let mut s = Scenario::named("small").unwrap();
    s.epoch_minutes = 2;
    run(s, seed, 0.1).unwrap()
}

#[test]
fn the_same_seed_gives_the_same_report_byte_for_byte_and_the_network_works() {
    let t = std::time::Instant::now();
    let a = small(7);
    let elapsed = t.elapsed();
    let json = serde_json::to_string_pretty(&a).unwrap();
    println!("{json}");
    println!(
        "{} events in {:.2} s: {:.0} events/s",
        a.events,
        elapsed.as_secs_f64(),
        a.events as f64 / elapsed.as_secs_f64()
    );
    let b = serde_json::to_string_pretty(&small(7)).unwrap();
    assert!(json == b, "two runs of seed 7 differ");

    // The network did its work, decided by the cores alone.
    assert!(a.sessions.deployed > 0 && a.sessions.deployed == a.sessions.asked, "{:?}", a.sessions);
    assert!(a.sessions.ended > 0, "users stopped sessions and the gateway settled them: {:?}", a.sessions);
    assert!(a.match_latency_ms.count > 0 && a.match_latency_ms.p50 > Some(0));
    assert!(a.epochs_distributed >= 2, "epochs closed: {}", a.epochs_distributed);
    assert!(a.inspections.passed >= 20, "every honest host passed its registration: {:?}", a.inspections);
    // Every host whose answer is provably wrong was slashed by the
    // committee; the dark one is out of the market; no honest host was hurt.
    for cheat in ["wrong-product", "replay", "change-rows-after-commit"] {
        let o = &a.fraud.by_behaviour[cheat];
        assert_eq!((o.slashed, o.out_of_market), (o.hosts, o.hosts), "{cheat}: {o:?}");
    }
    assert_eq!(a.fraud.by_behaviour["dark"].out_of_market, 1);
    assert_eq!(a.fraud.caught, a.fraud.dishonest_hosts);
    assert!(a.fraud.penalties["slashed"] >= 3 && a.fraud.penalty_violations.is_empty(), "{:?}", a.fraud);
    assert_eq!((a.fraud.false_slashes, a.fraud.honest_out_of_market, a.fraud.honest_failed_verdicts), (0, 0, 0));
    assert!(a.supply.violations.is_empty() && a.supply.checks > 10, "{:?}", a.supply);
    assert!(a.index_violations.is_empty(), "{:?}", a.index_violations);
}

#[test]
fn another_seed_gives_another_run() {
    let a = serde_json::to_string(&small(7)).unwrap();
    let b = serde_json::to_string(&small(8)).unwrap();
    assert_ne!(a, b);
}

#[test]
fn a_scenario_refuses_unknown_keys_and_unknown_behaviours() {
    let text = dci_sim::scenario::BUILTIN[0].1;
    Scenario::from_toml(text).unwrap();
    let e = Scenario::from_toml(&format!("bogus = 1\n{text}")).unwrap_err().to_string();
    assert!(e.contains("unknown field `bogus`"), "{e}");
    let e =
        Scenario::from_toml(&text.replace("behaviour = \"dark\"", "behaviour = \"sneaky\"")).unwrap_err().to_string();
    assert!(e.contains("behaviour: expected honest or a known cheat, found sneaky"), "{e}");
    let e = Scenario::named("nope").unwrap_err().to_string();
    assert!(e.contains("expected one of small, indexer-outage"), "{e}");
}

#[test]
fn outages_an_indexer_crash_dark_hosts_and_a_checker_crash_cost_no_deploy_and_no_honest_host() {
    let mut s = Scenario::named("indexer-outage").unwrap();
    s.epoch_minutes = 2;
    let r = run(s.clone(), 3, 0.2).unwrap();
    let again = run(s, 3, 0.2).unwrap();
    assert!(serde_json::to_string(&r).unwrap() == serde_json::to_string(&again).unwrap(), "two runs of seed 3 differ");
    assert_eq!(r.outages, 5, "an indexer, three hosts and a checker went out");
    assert!(r.dropped_messages > 0);
    // Deploys went on through the other indexer; sessions on the dark
    // hosts moved elsewhere.
    assert!(r.sessions.deployed > 0 && r.sessions.failed.is_empty(), "{:?}", r.sessions);
    assert!(r.sessions.failovers >= 1, "{:?}", r.sessions);
    // The dark hosts came back, were inspected again and are schedulable;
    // nobody honest was slashed or failed an inspection.
    assert_eq!((r.fraud.false_slashes, r.fraud.honest_out_of_market, r.fraud.honest_failed_verdicts), (0, 0, 0));
    assert_eq!(r.fraud.caught, r.fraud.dishonest_hosts);
    assert!(r.fraud.penalty_violations.is_empty(), "{:?}", r.fraud);
    assert!(r.supply.violations.is_empty(), "{:?}", r.supply);
    assert!(r.index_violations.is_empty(), "{:?}", r.index_violations);
}

#[test]
fn earnings_spread_is_the_gini_of_what_each_node_got() {
    use dci_sim::report::Earnings;
    // Equal earnings: no spread; one node with everything of four: 750 ‰.
    assert_eq!(Earnings::of(vec![5, 5, 5, 5]).gini_permille, 0);
    assert_eq!(Earnings::of(vec![0, 0, 0, 8]).gini_permille, 750);
    // A slashed node counts as zero; the figures keep its loss.
    let e = Earnings::of(vec![-3, 0, 0, 8]);
    assert_eq!((e.gini_permille, e.min.as_str(), e.total.as_str()), (750, "-3", "5"));
}

#[test]
fn churn_hosts_that_join_late_and_a_maintenance_lock() {
    use dci_sim::scenario::{Outage, OutageKind};
    let mut s = Scenario::named("small").unwrap();
    s.epoch_minutes = 2;
    // The São Paulo hosts join at minute 2; the six Frankfurt H100 hosts
    // are locked for maintenance from minute 3 to 5 (sessions move elsewhere).
    s.users.deploys_per_hour = 600.0;
    s.hosts.iter_mut().find(|h| h.name == "sao-paulo-cpu").unwrap().join_minutes = 2.0;
    s.outages.push(Outage {
        node: "frankfurt-h100".into(),
        count: 6,
        kind: OutageKind::Maintenance,
        from_minutes: 3.0,
        minutes: 2.0,
    });
    let r = run(s, 11, 0.12).unwrap();
    assert_eq!(r.outages, 6);
    assert!(r.sessions.failovers >= 1, "sessions on the locked hosts moved: {:?}", r.sessions);
    // The late hosts registered, passed and are in the market; the locked
    // ones are back in it; no honest host was hurt.
    assert_eq!((r.fraud.false_slashes, r.fraud.honest_out_of_market, r.fraud.honest_failed_verdicts), (0, 0, 0));
    // Demand beyond the slots left during the lock is refused as such.
    assert!(r.sessions.failed.keys().all(|k| k == "no container matched"), "{:?}", r.sessions);
    assert!(r.supply.violations.is_empty() && r.index_violations.is_empty());
}
