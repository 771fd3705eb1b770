use dci_ledger::{
    CheckerWork, ContainerWork, EpochInput, IndexerWork, LedgerError, Params, RewardBasis, RewardRole, accounts,
    rewards::PPM,
};
use dci_model::{AccountId, Amount};

use crate::{Signers, acc, funded, sid, snapshot};

const POOL: Amount = Amount::ath(21_000_000_000);

fn input() -> EpochInput {
    EpochInput {
        containers: vec![
            ContainerWork { account: acc("node:p"), capacity_units: 8, uptime_ppm: PPM },
            ContainerWork { account: acc("node:q"), capacity_units: 2, uptime_ppm: PPM / 2 },
        ],
        checkers: vec![CheckerWork { account: acc("node:q"), correct_inspections: 3 }],
        indexers: vec![IndexerWork { account: acc("node:indexer"), served_matches: 40 }],
    }
}

/// One epoch, computed by hand with the documented rule, against the ledger;
/// then the explanation shows the same numbers.
#[test]
fn an_epoch_pays_by_the_documented_rule_and_explains_itself() {
    let s = Signers::default();
    let mut l = funded();
    let alice = acc("consumer:alice");
    // A settled session fills the fee pools: 5% to checkers, 2% to indexers.
    l.lock_escrow(sid(1), &alice, Amount::ath(10)).unwrap();
    l.settle(&s.receipt(sid(1), &alice, 3600, "10"), &s.gateway.id(), &acc("node:p")).unwrap();
    let checker_fees = l.balance(&accounts::checker_fees()).unwrap();
    assert_eq!(checker_fees, "0.5".parse().unwrap());

    let emission = Params::default().emission(POOL, 0).unwrap().amount;
    assert_eq!(l.emission(0).unwrap().amount, emission);
    let (p, q, ix) = (acc("node:p"), acc("node:q"), acc("node:indexer"));
    let balances_before: Vec<Amount> = [&p, &q].iter().map(|a| l.balance(a).unwrap()).collect();
    let summary = l.distribute_epoch(0, &input()).unwrap();

    // Oracle: plain u128 arithmetic.
    let e = emission.0;
    let containers = e * 7_000 / 10_000;
    let (wp, wq) = (8 * u128::from(PPM), 2 * u128::from(PPM / 2));
    let p_reward = containers * wp / (wp + wq);
    let q_container = containers * wq / (wp + wq);
    let q_checker = e * 2_000 / 10_000;
    let ix_reward = e * 1_000 / 10_000;
    let paid = p_reward + q_container + q_checker + ix_reward;
    assert_eq!((summary.emitted, summary.paid, summary.kept), (emission, Amount(paid), Amount(e - paid)));
    assert_eq!(l.pending_rewards(&p).unwrap(), Amount(p_reward));
    assert_eq!(l.pending_rewards(&q).unwrap(), Amount(q_container + q_checker + checker_fees.0));
    assert_eq!(l.pending_rewards(&ix).unwrap(), Amount(ix_reward + "0.2".parse::<Amount>().unwrap().0));
    assert_eq!(l.balance(&accounts::checker_fees()).unwrap(), Amount::ZERO);
    assert_eq!(l.balance(&accounts::mining_pool()).unwrap(), Amount(POOL.0 - paid), "the remainder stays");
    // Balances do not move until rewards are claimed.
    let balances_after: Vec<Amount> = [&p, &q].iter().map(|a| l.balance(a).unwrap()).collect();
    assert_eq!(balances_after, balances_before);
    assert_eq!(l.account(&ix).unwrap().rewards, l.pending_rewards(&ix).unwrap(), "the indexer account exists now");
    l.check_invariant().unwrap();

    // The explanation carries every number of the computation.
    let x = l.reward_breakdown(0, &q).unwrap();
    assert_eq!(x.summary, summary);
    assert_eq!(x.lines.len(), 2);
    assert_eq!(x.lines[0].role, RewardRole::Container);
    assert_eq!(x.lines[0].basis, RewardBasis::Capacity { capacity_units: 2, uptime_ppm: PPM / 2 });
    assert_eq!((x.lines[0].weight, x.lines[0].mining), (wq, Amount(q_container)));
    assert_eq!((x.lines[1].role, x.lines[1].weight, x.lines[1].fees), (RewardRole::Checker, 3, checker_fees));
    assert_eq!(x.total, l.pending_rewards(&q).unwrap());
    let container = x.role(RewardRole::Container).unwrap();
    assert_eq!((container.share_bps, container.budget.0, container.total_weight), (7_000, containers, wp + wq));
    let text = x.to_string();
    for needle in [
        "epoch 0: year 0 of the emission schedule (35040 epochs a year".to_owned(),
        format!("epoch emission {emission} ATH"),
        format!("capacity 2 units × uptime 500000 ppm = {wq}"),
        format!("mining reward = floor({containers} × {wq} / {}) base units = {} ATH", wp + wq, Amount(q_container)),
        "3 correct inspections".to_owned(),
        format!("stay in {}", accounts::MINING_POOL),
    ] {
        assert!(text.contains(&needle), "expected {needle:?} in\n{text}");
    }
    let json = serde_json::to_value(&x).unwrap();
    assert_eq!(json["lines"][0]["weight"], serde_json::json!(wq.to_string()), "weights are decimal strings");

    // Not in the input: an explanation with no lines.
    let none = l.reward_breakdown(0, &acc("consumer:alice")).unwrap();
    assert!(none.lines.is_empty() && none.total.is_zero());
    assert!(none.to_string().contains("was not in the epoch's input"));
    assert_eq!(l.reward_breakdown(1, &q).unwrap_err(), LedgerError::EpochNotDistributed(1));

    // Claiming moves pending rewards to the balance, once.
    let pending = l.pending_rewards(&p).unwrap();
    assert_eq!(l.claim_rewards(&p).unwrap(), pending);
    assert_eq!(l.balance(&p).unwrap(), Amount(balances_before[0].0 + pending.0));
    assert_eq!(l.claim_rewards(&p).unwrap_err(), LedgerError::NoPendingRewards(p.clone()));
    let history = l.reward_history(&q, 10).unwrap();
    assert_eq!(
        history.iter().map(|h| (h.epoch, h.line.role)).collect::<Vec<_>>(),
        [(0, RewardRole::Checker), (0, RewardRole::Container)]
    );
    assert_eq!(l.last_epoch().unwrap(), Some(0));
    l.check_invariant().unwrap();
}

#[test]
fn an_epoch_is_distributed_once() {
    let mut l = funded();
    l.distribute_epoch(5, &input()).unwrap();
    let before = snapshot(&l, &[]);
    assert_eq!(l.distribute_epoch(5, &input()).unwrap_err(), LedgerError::EpochAlreadyDistributed(5));
    assert_eq!(l.distribute_epoch(5, &EpochInput::default()).unwrap_err(), LedgerError::EpochAlreadyDistributed(5));
    assert_eq!(snapshot(&l, &[]), before);
    // Other epochs, in any order.
    l.distribute_epoch(2, &input()).unwrap();
    assert_eq!(l.snapshot().unwrap().epochs, vec![2, 5]);
}

/// Nobody to pay: the emission stays in the pool. After the schedule: nothing.
#[test]
fn unpaid_emission_stays_in_the_pool() {
    let mut l = funded();
    let s = l.distribute_epoch(0, &EpochInput::default()).unwrap();
    assert_eq!((s.paid, s.kept), (Amount::ZERO, s.emitted));
    assert_eq!(l.balance(&accounts::mining_pool()).unwrap(), POOL);
    // Zero weights are recorded but paid nothing.
    let zero = EpochInput {
        containers: vec![ContainerWork { account: acc("node:p"), capacity_units: 0, uptime_ppm: PPM }],
        ..EpochInput::default()
    };
    let s = l.distribute_epoch(1, &zero).unwrap();
    assert_eq!(s.paid, Amount::ZERO);
    assert_eq!(l.reward_breakdown(1, &acc("node:p")).unwrap().lines.len(), 1);
    let after = 10 * 35_040;
    let s = l.distribute_epoch(after, &input()).unwrap();
    assert_eq!((s.emitted, s.paid), (Amount::ZERO, Amount::ZERO));
    l.check_invariant().unwrap();
}

#[test]
fn bad_epoch_inputs_are_refused_and_change_nothing() {
    let mut l = funded();
    let c = |a: &str, u: u32| ContainerWork { account: acc(a), capacity_units: 1, uptime_ppm: u };
    let cases: Vec<(u64, EpochInput, &str)> = vec![
        (0, EpochInput { containers: vec![c("node:p", PPM + 1)], ..Default::default() }, "at most 1000000 ppm"),
        (
            0,
            EpochInput { containers: vec![c("node:p", 1), c("node:q", 1), c("node:p", 2)], ..Default::default() },
            "expected each container once in the epoch input, found node:p twice",
        ),
        (
            0,
            EpochInput {
                indexers: vec![
                    IndexerWork { account: acc("node:i"), served_matches: 1 },
                    IndexerWork { account: acc("node:i"), served_matches: 1 },
                ],
                ..Default::default()
            },
            "found node:i twice",
        ),
        (u64::MAX, input(), "expected an epoch number up to"),
    ];
    for (epoch, input, needle) in cases {
        let before = snapshot(&l, &[]);
        let e = l.distribute_epoch(epoch, &input).unwrap_err();
        assert!(e.to_string().contains(needle), "expected {needle:?} in {e}");
        assert_eq!(snapshot(&l, &[]), before);
    }
    assert!(l.account(&AccountId::new("node:i").unwrap()).is_err(), "no account was created");
}
