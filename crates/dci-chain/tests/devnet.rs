//! A devnet session on anvil — genesis allocation, stake, escrow, batched
//! settlement, epoch rewards, claims, unbonding, a committee slash — applied
//! to the EVM ledger and to the embedded ledger (the oracle) op for op: the
//! outcomes, every balance (read three ways: `Settlement::balance`, the
//! ERC-20 `balanceOf`, and once the `cast` binary) and the supply agree.
//! Then the rules that trust no single key (issue 14): the committee chain,
//! epochs paid only once ended, bounded unbonding — what the simulation
//! refuses, the contract refuses too (asked directly with `eth_call`).

mod common;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol;
use alloy::sol_types::{SolCall, SolInterface};
use common::*;
use dci_chain::{
    CAST_ENV, Deployment, account_address, chain_slash_signature, committee_digest_at, slash_digest_at, tool_path,
};
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

sol! {
    /// The ledger's calls and errors these tests ask the contract directly.
    #[sol(all_derives)]
    interface ILedger {
        function setCommittee(uint64 epoch, address[] members, bytes[] signatures) external;
        function slash(address offender, uint8 role, uint64 epoch, bytes32 evidence, uint256 amount, bytes[] signatures) external;
        function distributeEpoch(uint64 epoch, uint256 mining, uint256 checkerFees, uint256 indexerFees, address[] accounts, uint256[] amounts) external;
        function unstake(address account, uint8 role, uint256 amount, uint64 nowMs) external;
        function committeeDigest(uint64 epoch, address[] members) external view returns (bytes32);
        function slashDigest(address offender, uint8 role, uint64 epoch, bytes32 evidence, uint256 amount) external view returns (bytes32);
        function latestCommitteeEpoch() external view returns (uint64);
        function epochEnd(uint64 epoch) external view returns (uint256);
        error CommitteeQuorum(uint256 valid, uint256 needed, uint256 committee);
        error CommitteeEpochNotNewer(uint64 epoch, uint64 latest);
        error NoCommittee(uint64 epoch);
        error EpochNotEnded(uint64 epoch, uint256 endsAt, uint256 chainTime);
        error TooManyUnbonding(address account, uint8 role, uint256 max);
    }
}

/// What the contract answers `call` from the settler (`eth_call`): `None`
/// if it would succeed, else its decoded error.
fn contract_says(url: &str, dep: &Deployment, call: impl SolCall) -> Option<ILedger::ILedgerErrors> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let p = ProviderBuilder::new().connect_http(url.parse().unwrap());
        let tx = TransactionRequest::default().from(dep.settler).to(dep.ledger).input(call.abi_encode().into());
        match p.call(tx).await {
            Ok(_) => None,
            Err(e) => {
                let data = e.as_error_resp().and_then(|r| r.as_revert_data()).unwrap_or_else(|| panic!("{e}"));
                Some(ILedger::ILedgerErrors::abi_decode(&data).unwrap_or_else(|_| panic!("undecoded revert {data}")))
            }
        }
    })
}

/// A view of the contract.
fn view<C: SolCall>(url: &str, dep: &Deployment, call: C) -> C::Return {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let p = ProviderBuilder::new().connect_http(url.parse().unwrap());
        let tx = TransactionRequest::default().to(dep.ledger).input(call.abi_encode().into());
        C::abi_decode_returns(&p.call(tx).await.unwrap()).unwrap()
    })
}

/// The `setCommittee` call a `SetCommittee` op stands for.
fn set_committee_call(op: &LedgerOp) -> ILedger::setCommitteeCall {
    let LedgerOp::SetCommittee { epoch, members, signatures } = op else { panic!("{op:?}") };
    ILedger::setCommitteeCall {
        epoch: *epoch,
        members: members.iter().map(|m| Address::from(*m)).collect(),
        signatures: signatures.iter().map(|s| Bytes::copy_from_slice(s)).collect(),
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
    // Not before epoch 0 has ended on the chain's clock (15 minutes).
    let distribute = [LedgerOp::DistributeEpoch { epoch: 0, input: input.clone() }];
    assert!(matches!(ledger.apply(&distribute).unwrap_err().unbatch(), LedgerError::EpochNotEnded { epoch: 0, .. }));
    advance(&url, 900);
    both(&mut emb, &mut ledger, &distribute);
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

    // A slash signed by two of a committee of three, ed25519 and on-chain
    // keys; the committee of epoch 9 (the genesis members again) is put on
    // chain by two of the genesis committee.
    let committee = genesis_committee();
    let ids: Vec<_> = committee.iter().map(|m| m.id()).collect();
    both(&mut emb, &mut ledger, &[publish(&deployment, 9, &committee, &committee[..2])]);
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

    let committee = checkers(60, 3);
    let ids: Vec<_> = committee.iter().map(|m| m.id()).collect();
    let genesis = genesis_committee();
    both(&mut emb, &mut ledger, &[publish(&deployment, 9, &committee, &genesis[1..])]);
    both(&mut emb, &mut ledger, &[publish(&deployment, 10, &committee, &committee[..2])]);
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

/// The committee chain on anvil: the digests are the contract's; genesis
/// (fixed at deployment) -> epoch 1 -> epoch 2, each signed by two thirds
/// of the one before, the second in the same batch as a slash of its
/// epoch; and every attack the simulation refuses, the contract refuses
/// with the same numbers: the settler's own keys, one member (or its
/// signature repeated), an old epoch, an older committee's signatures, a
/// slash of an epoch without a committee.
#[test]
fn the_committee_chain_on_chain_agrees_with_the_simulation() {
    let Chain { anvil, deployment: dep, mut ledger } = chain();
    let url = anvil.url();
    let mut emb = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
    let c = Cast::new();
    let genesis = genesis_committee();
    assert_eq!(ledger.latest_committee().unwrap(), (0, signers(&genesis)), "the genesis committee");

    // The digests the helpers compute are the contract's.
    for (epoch, members) in [(0, vec![]), (1, signers(&genesis[..1])), (7, signers(&checkers(90, 5)))] {
        let got = view(&url, &dep, ILedger::committeeDigestCall { epoch, members: members.clone() });
        assert_eq!(committee_digest_at(dep.chain_id, dep.ledger, epoch, &members), got, "epoch {epoch}");
    }
    let report = SlashReport::new(c.checker_account(), StakeRole::Checker, 3, [5; 32], Amount::ath(2));
    let call = ILedger::slashDigestCall {
        offender: account_address(&report.offender),
        role: 1,
        epoch: 3,
        evidence: B256::from([5; 32]),
        amount: U256::from(Amount::ath(2).0),
    };
    assert_eq!(slash_digest_at(dep.chain_id, dep.ledger, &report), view(&url, &dep, call));

    both(&mut emb, &mut ledger, &c.funding());
    let stake = LedgerOp::Stake { account: c.checker_account(), role: StakeRole::Checker, amount: Amount::ath(30) };
    both(&mut emb, &mut ledger, &[stake]);

    // Refused by the simulation and by the contract alike.
    let own = checkers(90, 3);
    let one = &genesis[..1];
    let repeated = match publish(&dep, 1, &checkers(60, 4), one) {
        LedgerOp::SetCommittee { epoch, members, signatures } => {
            LedgerOp::SetCommittee { epoch, members, signatures: vec![signatures[0].clone(); 3] }
        }
        other => other,
    };
    let quorum = |valid: u64, needed: u64, n: u64| ILedger::CommitteeQuorum {
        valid: U256::from(valid),
        needed: U256::from(needed),
        committee: U256::from(n),
    };
    type Case = (&'static str, LedgerOp, LedgerError, ILedger::ILedgerErrors);
    let cases: Vec<Case> = vec![
        (
            "the settler's own keys",
            publish(&dep, 1, &own, &own),
            LedgerError::CommitteeQuorum { epoch: 1, latest: 0, valid: 0, needed: 2, committee: 3 },
            ILedger::ILedgerErrors::CommitteeQuorum(quorum(0, 2, 3)),
        ),
        (
            "one member",
            publish(&dep, 1, &checkers(60, 4), one),
            LedgerError::CommitteeQuorum { epoch: 1, latest: 0, valid: 1, needed: 2, committee: 3 },
            ILedger::ILedgerErrors::CommitteeQuorum(quorum(1, 2, 3)),
        ),
        (
            "one member's signature three times",
            repeated,
            LedgerError::CommitteeQuorum { epoch: 1, latest: 0, valid: 1, needed: 2, committee: 3 },
            ILedger::ILedgerErrors::CommitteeQuorum(quorum(1, 2, 3)),
        ),
        (
            "the genesis epoch again",
            publish(&dep, 0, &checkers(60, 4), &genesis),
            LedgerError::CommitteeEpochNotNewer { epoch: 0, latest: 0 },
            ILedger::ILedgerErrors::CommitteeEpochNotNewer(ILedger::CommitteeEpochNotNewer { epoch: 0, latest: 0 }),
        ),
    ];
    let refuse = |ledger: &mut dci_chain::EvmLedger, name: &str, op: &LedgerOp, sim: &LedgerError, chain| {
        assert_eq!(&ledger.apply(std::slice::from_ref(op)).unwrap_err().unbatch(), sim, "{name}: the simulation");
        assert_eq!(contract_says(&url, &dep, set_committee_call(op)), Some(chain), "{name}: the contract");
    };
    for (name, op, sim, chain) in cases {
        refuse(&mut ledger, name, &op, &sim, chain);
    }

    // Epoch 1: four members, signed by two of the three genesis members.
    let first = checkers(60, 4);
    both(&mut emb, &mut ledger, &[publish(&dep, 1, &first, &genesis[1..])]);
    assert_eq!(view(&url, &dep, ILedger::latestCommitteeEpochCall {}), 1);
    // The genesis committee no longer vouches for anything.
    let second = checkers(70, 3);
    refuse(
        &mut ledger,
        "the genesis committee after epoch 1",
        &publish(&dep, 2, &second, &genesis),
        &LedgerError::CommitteeQuorum { epoch: 2, latest: 1, valid: 0, needed: 3, committee: 4 },
        ILedger::ILedgerErrors::CommitteeQuorum(quorum(0, 3, 4)),
    );
    // Epoch 2, by three of epoch 1's four, and a slash of epoch 2 signed by
    // two of its three, in ONE batch.
    let mut report = SlashReport::new(c.checker_account(), StakeRole::Checker, 2, [2; 32], Amount::ath(1));
    for m in &second[1..] {
        report.sign(m);
        let sig = chain_slash_signature(&dep, &report, m);
        report.signatures.push(sig);
    }
    let ids: Vec<_> = second.iter().map(|m| m.id()).collect();
    let batch = [publish(&dep, 2, &second, &first[1..]), LedgerOp::Slash { report, committee: ids.clone() }];
    let out = both(&mut emb, &mut ledger, &batch);
    assert!(matches!(&out[1], OpOutcome::Slashed(s) if s.signers == 2), "{out:?}");
    assert_eq!(ledger.committee(2).unwrap(), signers(&second));
    refuse(
        &mut ledger,
        "epoch 1 again",
        &publish(&dep, 1, &checkers(80, 3), &second),
        &LedgerError::CommitteeEpochNotNewer { epoch: 1, latest: 2 },
        ILedger::ILedgerErrors::CommitteeEpochNotNewer(ILedger::CommitteeEpochNotNewer { epoch: 1, latest: 2 }),
    );

    // A slash of an epoch without a committee on chain.
    let mut report = SlashReport::new(c.checker_account(), StakeRole::Checker, 3, [3; 32], Amount::ath(1));
    for m in &second {
        report.sign(m);
        let sig = chain_slash_signature(&dep, &report, m);
        report.signatures.push(sig);
    }
    let slash = LedgerOp::Slash { report: report.clone(), committee: ids };
    assert_eq!(ledger.apply(&[slash]).unwrap_err().unbatch(), LedgerError::NoCommittee(3));
    let call = ILedger::slashCall {
        offender: account_address(&report.offender),
        role: 1,
        epoch: 3,
        evidence: B256::from([3; 32]),
        amount: U256::from(Amount::ath(1).0),
        signatures: report.signatures.iter().filter(|(_, s)| s.len() == 65).map(|(_, s)| s.clone().into()).collect(),
    };
    assert_eq!(
        contract_says(&url, &dep, call),
        Some(ILedger::ILedgerErrors::NoCommittee(ILedger::NoCommittee { epoch: 3 }))
    );
    let (got, want) = (ledger.check_invariant().unwrap(), emb.check_invariant().unwrap());
    assert_eq!((got.balances, got.staked), (want.balances, want.staked));
}

/// Epoch e is paid only once genesisTime + (e + 1) × epochSecs has passed
/// on the chain's clock: refused before by the simulation and the
/// contract, accepted after.
#[test]
fn an_epoch_is_distributed_only_once_it_has_ended_on_the_chains_clock() {
    let Chain { anvil, deployment: dep, mut ledger } = chain();
    let url = anvil.url();
    let end = |e: u64| view(&url, &dep, ILedger::epochEndCall { epoch: e });
    assert_eq!(end(0), U256::from(ledger.epoch_end(0)));
    assert_eq!(end(1) - end(0), U256::from(900u64), "the deployed epoch length");
    let op = |epoch: u64| LedgerOp::DistributeEpoch { epoch, input: dci_ledger::EpochInput::default() };
    let call = |epoch: u64| ILedger::distributeEpochCall {
        epoch,
        mining: U256::ZERO,
        checkerFees: U256::ZERO,
        indexerFees: U256::ZERO,
        accounts: vec![],
        amounts: vec![],
    };
    for epoch in [0, 1, 35_039] {
        let e = ledger.apply(&[op(epoch)]).unwrap_err().unbatch();
        assert!(matches!(e, LedgerError::EpochNotEnded { epoch: x, .. } if x == epoch), "{e}");
        let chain = contract_says(&url, &dep, call(epoch));
        assert!(matches!(chain, Some(ILedger::ILedgerErrors::EpochNotEnded(ref n)) if n.epoch == epoch), "{chain:?}");
    }
    advance(&url, 900);
    assert_eq!(contract_says(&url, &dep, call(0)), None, "the contract would pay epoch 0 now");
    ledger.apply(&[op(0)]).unwrap();
    assert!(matches!(ledger.apply(&[op(1)]).unwrap_err().unbatch(), LedgerError::EpochNotEnded { epoch: 1, .. }));
    advance(&url, 900);
    ledger.apply(&[op(1)]).unwrap();
}

/// At most 16 unbonding entries per account and role: the 17th unstake is
/// refused by the simulation, the embedded ledger and the contract.
#[test]
fn unstaking_beyond_the_bound_is_refused_everywhere() {
    let Chain { anvil, deployment: dep, mut ledger } = chain();
    let url = anvil.url();
    let mut emb = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
    let c = Cast::new();
    let who = c.container_account();
    both(&mut emb, &mut ledger, &c.funding());
    both(
        &mut emb,
        &mut ledger,
        &[LedgerOp::Stake { account: who.clone(), role: StakeRole::Container, amount: Amount::ath(20) }],
    );
    let now = ledger.chain_time().unwrap();
    let unstake = |role| LedgerOp::Unstake { account: who.clone(), role, amount: Amount::ath(1), now };
    both(&mut emb, &mut ledger, &vec![unstake(StakeRole::Container); dci_ledger::rules::MAX_UNBONDING]);
    let want = LedgerError::TooManyUnbonding { account: who.clone(), role: StakeRole::Container, max: 16 };
    assert_eq!(ledger.apply(&[unstake(StakeRole::Container)]).unwrap_err().unbatch(), want);
    assert_eq!(Settlement::apply(&mut emb, &[unstake(StakeRole::Container)]).unwrap_err().unbatch(), want);
    let call = ILedger::unstakeCall {
        account: account_address(&who),
        role: 0,
        amount: U256::from(Amount::ath(1).0),
        nowMs: now.0,
    };
    assert_eq!(
        contract_says(&url, &dep, call),
        Some(ILedger::ILedgerErrors::TooManyUnbonding(ILedger::TooManyUnbonding {
            account: account_address(&who),
            role: 0,
            max: U256::from(16u8),
        }))
    );
    assert_eq!(ledger.unbonding(&who).unwrap(), Settlement::unbonding(&emb, &who).unwrap());
}
