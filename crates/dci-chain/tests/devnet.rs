//! A devnet session on anvil — genesis allocation, stake, escrow, batched
//! settlement, epoch rewards, claims, unbonding, a committee slash — applied
//! to the EVM ledger and to the embedded ledger (the oracle) op for op: the
//! outcomes, every balance (read three ways: `Settlement::balance`, the
//! ERC-20 `balanceOf`, and once the `cast` binary) and the supply agree.

mod common;

use alloy::primitives::Address;
use alloy::providers::ProviderBuilder;
use alloy::sol;
use common::*;
use dci_chain::{CAST_ENV, account_address, chain_slash_signature, node_signer, tool_path};
use dci_ledger::{
    CheckerWork, ContainerWork, EmbeddedLedger, EpochInput, Genesis, IndexerWork, LedgerError, LedgerOp, OpOutcome,
    Settlement, SlashReport, StakeRole, accounts,
};
use dci_model::{AccountId, Amount, Timestamp};

sol! {
    #[sol(rpc)]
    interface IERC20 {
        function balanceOf(address account) external view returns (uint256);
    }
}

/// Applies `ops` to both ledgers; their outcomes must agree.
fn both(emb: &mut EmbeddedLedger, evm: &mut dci_chain::EvmLedger, ops: &[LedgerOp]) -> Vec<OpOutcome> {
    let want = Settlement::apply(emb, ops).unwrap();
    let got = evm.apply(ops).unwrap();
    // The embedded ledger numbers slashes; the chain does not.
    let norm = |v: Vec<OpOutcome>| {
        v.into_iter()
            .map(|o| match o {
                OpOutcome::Slashed(mut s) => {
                    s.seq = 0;
                    OpOutcome::Slashed(s)
                }
                other => other,
            })
            .collect::<Vec<_>>()
    };
    let got = norm(got);
    assert_eq!(got, norm(want.clone()), "outcomes of {:?}", ops.iter().map(LedgerOp::name).collect::<Vec<_>>());
    got
}

fn erc20_balance(url: &str, token: Address, who: &AccountId) -> Amount {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let v = rt.block_on(async {
        let p = ProviderBuilder::new().connect_http(url.parse().unwrap());
        IERC20::new(token, &p).balanceOf(account_address(who)).call().await.unwrap()
    });
    Amount(u128::try_from(v).unwrap())
}

#[test]
fn a_devnet_session_settles_on_chain_like_the_embedded_ledger() {
    let Chain { anvil, deployment, mut ledger } = chain();
    let url = anvil.url();
    let mut emb = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
    let c = Cast::new();

    // Genesis, funding and stakes.
    both(&mut emb, &mut ledger, &c.funding());
    let stakes = [
        LedgerOp::Stake { account: c.container_account(), role: StakeRole::Container, amount: Amount::ath(20) },
        LedgerOp::Stake { account: c.checker_account(), role: StakeRole::Checker, amount: Amount::ath(30) },
    ];
    both(&mut emb, &mut ledger, &stakes);

    // Three sessions: two settled in one netted batch, one refunded.
    both(&mut emb, &mut ledger, &[c.lock(session(1), 2), c.lock(session(2), 1), c.lock(session(3), 5)]);
    let batch = [c.settle(session(1), 1_200), c.settle(session(2), 3_600), LedgerOp::Refund { session: session(3) }];
    let out = both(&mut emb, &mut ledger, &batch);
    let OpOutcome::Settled(s2) = &out[1] else { panic!("{out:?}") };
    assert_eq!(
        (s2.charged, s2.shortfall),
        (Amount::ath(1), Amount(36 * dci_model::money::ONE_ATH / 10 - Amount::ath(1).0))
    );
    // A second is paid at most once, on chain too.
    let again = ledger.apply(&[c.settle(session(1), 1_200)]).unwrap_err();
    assert_eq!(again.unbatch(), LedgerError::AlreadySettled(session(1)));

    // Epoch rewards, then claims.
    let input = EpochInput {
        containers: vec![ContainerWork { account: c.container_account(), capacity_units: 8, uptime_ppm: 990_000 }],
        checkers: vec![CheckerWork { account: c.checker_account(), correct_inspections: 12 }],
        indexers: vec![IndexerWork { account: c.indexer_account(), served_matches: 40 }],
    };
    both(&mut emb, &mut ledger, &[LedgerOp::DistributeEpoch { epoch: 0, input: input.clone() }]);
    assert_eq!(
        ledger.reward_breakdown(0, &c.container_account()).unwrap(),
        emb.reward_breakdown(0, &c.container_account()).unwrap()
    );
    both(&mut emb, &mut ledger, &[LedgerOp::ClaimRewards { account: c.container_account() }]);

    // Unbonding against the chain's clock.
    let now = ledger.chain_time().unwrap();
    let unstake =
        LedgerOp::Unstake { account: c.container_account(), role: StakeRole::Container, amount: Amount::ath(5), now };
    both(&mut emb, &mut ledger, &[unstake]);
    advance(&url, 7 * 86_400 + 1);
    let later = ledger.chain_time().unwrap();
    both(&mut emb, &mut ledger, &[LedgerOp::WithdrawUnbonded { account: c.container_account(), now: later }]);

    // A slash signed by two of a committee of three, ed25519 and on-chain keys.
    let committee: Vec<dci_proto::Identity> = (0..3).map(|i| dci_proto::Identity::from_secret([50 + i; 32])).collect();
    let ids: Vec<_> = committee.iter().map(|m| m.id()).collect();
    let signers: Vec<Address> = committee.iter().map(|m| node_signer(m).address()).collect();
    ledger.set_committee(9, &signers).unwrap();
    let mut report = SlashReport::new(c.checker_account(), StakeRole::Checker, 9, [7; 32], Amount::ath(1_000_000));
    for m in &committee[..2] {
        report.sign(m);
        let sig = chain_slash_signature(&deployment, &report, m);
        report.signatures.push(sig);
    }
    let out = both(&mut emb, &mut ledger, &[LedgerOp::Slash { report: report.clone(), committee: ids.clone() }]);
    let OpOutcome::Slashed(s) = &out[0] else { panic!("{out:?}") };
    assert!(
        !s.from_rewards.is_zero() && s.from_stake == Amount::ath(3) && !s.uncollected.is_zero(),
        "rewards first, then 10% of the stake: {s:?}"
    );
    // One signature is not a quorum, on either side of the chain.
    let mut weak = SlashReport::new(c.checker_account(), StakeRole::Checker, 9, [8; 32], Amount::ath(1));
    weak.sign(&committee[0]);
    let sig = chain_slash_signature(&deployment, &weak, &committee[0]);
    weak.signatures.push(sig);
    let e = ledger.apply(&[LedgerOp::Slash { report: weak, committee: ids }]).unwrap_err();
    assert!(matches!(e.clone().unbatch(), LedgerError::SlashQuorum { valid: 1, needed: 2, .. }), "{e}");

    // Every balance agrees: Settlement::balance, ERC-20 balanceOf, embedded.
    let everyone = [
        c.consumer.clone(),
        c.container_account(),
        c.checker_account(),
        c.indexer_account(),
        accounts::liquidity(),
        accounts::mining_pool(),
        accounts::checker_fees(),
        accounts::indexer_fees(),
        accounts::treasury(),
        accounts::slashed(),
    ];
    for who in &everyone {
        let want = emb.balance(who).unwrap();
        assert_eq!(ledger.balance(who).unwrap(), want, "balance of {who}");
        assert_eq!(erc20_balance(&url, deployment.token, who), want, "balanceOf {who}");
        assert_eq!(Settlement::account(&ledger, who).ok(), Settlement::account(&emb, who).ok(), "holdings of {who}");
    }
    assert_eq!(
        ledger.unbonding(&c.checker_account()).unwrap(),
        Settlement::unbonding(&emb, &c.checker_account()).unwrap()
    );

    // And once with cast, the tool an operator would use.
    let cast = tool_path("cast", CAST_ENV).unwrap();
    let out = std::process::Command::new(cast)
        .args(["call", &deployment.token.to_string(), "balanceOf(address)(uint256)"])
        .arg(account_address(&c.container_account()).to_string())
        .args(["--rpc-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.split_whitespace().next().unwrap_or_default();
    assert_eq!(first, emb.balance(&c.container_account()).unwrap().0.to_string(), "cast says {text}");

    // The supply adds up on chain as in the embedded ledger.
    let (got, want) = (ledger.check_invariant().unwrap(), emb.check_invariant().unwrap());
    assert_eq!(
        (got.balances, got.escrowed, got.staked, got.unbonding, got.rewards, got.open_escrows),
        (want.balances, want.escrowed, want.staked, want.unbonding, want.rewards, want.open_escrows)
    );

    // A second connection (a restarted node) reads the same state back.
    let again = dci_chain::EvmLedger::connect(&url, dci_chain::DEV_KEYS[0], &deployment).unwrap();
    let e = Settlement::apply(&mut { again }, &[c.settle(session(2), 10)]).unwrap_err();
    assert_eq!(e.unbatch(), LedgerError::AlreadySettled(session(2)));
}

/// Settles carrying an extra charge (model tokens the gateway metered),
/// netted in one batch: within the escrow, beyond it (capped, shortfall),
/// and with no escrow left for it; then evidence slashed once is refused
/// when re-signed for a later epoch, read back from the contract's
/// `slashApplied(evidence)`. Outcomes and balances agree with the embedded
/// ledger.
#[test]
fn extra_charges_and_evidence_slashed_once_on_chain_like_the_embedded_ledger() {
    let Chain { anvil, deployment, mut ledger } = chain();
    let url = anvil.url();
    let mut emb = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
    let c = Cast::new();
    both(&mut emb, &mut ledger, &c.funding());
    let stake = LedgerOp::Stake { account: c.checker_account(), role: StakeRole::Checker, amount: Amount::ath(30) };
    both(&mut emb, &mut ledger, &[stake]);
    both(&mut emb, &mut ledger, &[c.lock(session(1), 2), c.lock(session(2), 2), c.lock(session(3), 1)]);
    let tenths = |n: u128| Amount(n * dci_model::money::ONE_ATH / 10);
    let with_extra = |session, seconds, extra| match c.settle(session, seconds) {
        LedgerOp::Settle { receipt, acker, payout, .. } => LedgerOp::Settle { receipt, acker, payout, extra },
        other => other,
    };
    // 0.6 ATH of time each, then 0.5, 1.8 and 0.3 ATH of tokens.
    let batch = [
        with_extra(session(1), 600, tenths(5)),
        with_extra(session(2), 600, tenths(18)),
        with_extra(session(3), 1_000, tenths(3)),
    ];
    let out = both(&mut emb, &mut ledger, &batch);
    let got: Vec<(Amount, Amount, Amount, Amount)> = out
        .iter()
        .map(|o| match o {
            OpOutcome::Settled(s) => (s.charged, s.extra_charged, s.refunded, s.shortfall),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (tenths(11), tenths(5), tenths(9), Amount::ZERO),
            (tenths(20), tenths(14), Amount::ZERO, tenths(4)),
            (tenths(10), Amount::ZERO, Amount::ZERO, tenths(3)),
        ]
    );

    let committee: Vec<dci_proto::Identity> = (0..3).map(|i| dci_proto::Identity::from_secret([60 + i; 32])).collect();
    let ids: Vec<_> = committee.iter().map(|m| m.id()).collect();
    let signers: Vec<Address> = committee.iter().map(|m| node_signer(m).address()).collect();
    ledger.set_committee(9, &signers).unwrap();
    ledger.set_committee(10, &signers).unwrap();
    let report = |epoch: u64| {
        let mut r = SlashReport::new(c.checker_account(), StakeRole::Checker, epoch, [7; 32], Amount::ath(1));
        for m in &committee[..2] {
            r.sign(m);
            let sig = chain_slash_signature(&deployment, &r, m);
            r.signatures.push(sig);
        }
        r
    };
    both(&mut emb, &mut ledger, &[LedgerOp::Slash { report: report(9), committee: ids.clone() }]);
    let again = [LedgerOp::Slash { report: report(10), committee: ids }];
    let refused = LedgerError::SlashAlreadyApplied { evidence: [7; 32] };
    assert_eq!(ledger.apply(&again).unwrap_err().unbatch(), refused);
    assert_eq!(Settlement::apply(&mut emb, &again).unwrap_err().unbatch(), refused);

    for who in [
        c.consumer.clone(),
        c.container_account(),
        c.checker_account(),
        accounts::checker_fees(),
        accounts::indexer_fees(),
        accounts::treasury(),
        accounts::slashed(),
    ] {
        let want = emb.balance(&who).unwrap();
        assert_eq!(ledger.balance(&who).unwrap(), want, "balance of {who}");
        assert_eq!(erc20_balance(&url, deployment.token, &who), want, "balanceOf {who}");
    }
    let (got, want) = (ledger.check_invariant().unwrap(), emb.check_invariant().unwrap());
    assert_eq!((got.balances, got.escrowed, got.staked), (want.balances, want.escrowed, want.staked));
}

#[test]
fn ops_the_chain_cannot_do_are_refused_clearly_and_change_nothing() {
    let Chain { anvil: _anvil, mut ledger, .. } = chain();
    let c = Cast::new();
    ledger.apply(&c.funding()).unwrap();
    let before = ledger.balance(&c.consumer).unwrap();
    let cases: Vec<(LedgerOp, &str)> = vec![
        (LedgerOp::RefundUndelivered { session: session(1), seconds: 5 }, "refund_undelivered is not supported"),
        (
            LedgerOp::SetParams { params: dci_ledger::Params::default(), now: Timestamp(0) },
            "set_params is not supported",
        ),
    ];
    for (op, needle) in cases {
        // Behind a transfer that would succeed: the whole batch is refused.
        let ops = [
            LedgerOp::Transfer(dci_ledger::Transfer {
                from: c.consumer.clone(),
                to: c.container_account(),
                amount: Amount::ath(1),
            }),
            op,
        ];
        let e = ledger.apply(&ops).unwrap_err();
        assert!(matches!(e, LedgerError::Batch { index: 1, .. }), "{e}");
        assert!(e.to_string().contains(needle) && e.to_string().contains("evm settlement backend"), "{e}");
    }
    // The rules refuse what the embedded ledger refuses, naming the op.
    let e = ledger.apply(&[c.lock(session(1), 1_000)]).unwrap_err();
    assert!(matches!(e.clone().unbatch(), LedgerError::InsufficientFunds { .. }), "{e}");
    let e = ledger.apply(&[c.settle(session(4), 10)]).unwrap_err();
    assert_eq!(e.unbatch(), LedgerError::NoEscrow(session(4)));
    assert_eq!(ledger.balance(&c.consumer).unwrap(), before);
    ledger.check_invariant().unwrap();
}

#[test]
fn escrows_locked_together_keep_their_sessions_apart() {
    let Chain { anvil, deployment, mut ledger } = chain();
    let c = Cast::new();
    let bob = Cast { consumer: acc("consumer:bob"), ..Cast::new() };
    ledger.apply(&c.funding()).unwrap();
    ledger.apply(&bob.funding()[..1]).unwrap();
    // Interleaved consumers in one lock batch (the chain groups them).
    ledger.apply(&[c.lock(session(1), 1), bob.lock(session(2), 2), c.lock(session(3), 3)]).unwrap();
    // A node that restarts reads the sessions back from the chain's events
    // and settles Bob's; the first node settles Alice's: no session is
    // mistaken for another.
    let mut other = dci_chain::EvmLedger::connect(&anvil.url(), dci_chain::DEV_KEYS[0], &deployment).unwrap();
    other.apply(&[bob.settle(session(2), 600)]).unwrap();
    ledger.apply(&[c.settle(session(1), 600), c.settle(session(3), 600)]).unwrap();
    for (who, escrow, s) in [(&c.consumer, 4, 2), (&bob.consumer, 2, 1)] {
        // Each consumer paid 0.6 ATH per session and got the rest back.
        let paid = Amount(s * 6 * dci_model::money::ONE_ATH / 10);
        let funded = Amount::ath(100);
        assert_eq!(ledger.balance(who).unwrap(), funded.checked_sub(paid).unwrap(), "{who} (escrow {escrow} ATH)");
    }
    ledger.check_invariant().unwrap();
}
