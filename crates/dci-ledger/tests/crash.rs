//! Crash test (R-LG5): a worker process applies a deterministic stream of
//! ledger batches to a ledger file and prints `ack <n>` after batch `n`
//! commits; it is killed with SIGKILL at random points, 25 times. After each
//! kill the file is reopened and must (1) pass the supply invariant, (2)
//! contain every acknowledged batch, and (3) be exactly the state a clean
//! replay of the same batches produces (so no batch is half-applied).
//!
//! Progress is recorded inside every batch: its last op moves 1 base unit
//! from `genesis:liquidity` to `crash:progress`, so the balance of
//! `crash:progress` is the number of batches committed, atomically with them.
//!
//! This binary is its own worker: with `DCI_LEDGER_CRASH_WORKER=<path>` set it
//! runs the stream instead of the test (`harness = false`).

use dci_ledger::{
    CheckerWork, ContainerWork, EmbeddedLedger, EpochInput, Genesis, IndexerWork, LedgerOp, Params, SlashReport,
    StakeRole, Transfer, accounts,
};
use dci_model::{AccountId, Amount, PricePerHour, ServiceName, SessionId, Timestamp};
use dci_proto::{Identity, UsageReceipt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const WORKER_ENV: &str = "DCI_LEDGER_CRASH_WORKER";
const KILLS: usize = 25;
const USERS: [&str; 4] = ["consumer:a", "consumer:b", "consumer:c", "consumer:d"];
const NODES: [&str; 2] = ["node:p", "node:q"];

fn acc(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

fn progress() -> AccountId {
    acc("crash:progress")
}

fn container() -> Identity {
    Identity::from_secret([1; 32])
}

fn gateway() -> Identity {
    Identity::from_secret([2; 32])
}

fn committee() -> Vec<Identity> {
    (0..3).map(|i| Identity::from_secret([50 + i; 32])).collect()
}

/// Batch `n` of the stream (without the progress marker). Deterministic in
/// `n`; most batches are valid, a few are refused by the ledger.
fn batch(n: u64) -> Vec<LedgerOp> {
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let now = Timestamp(n * 3_600_000);
    let liq = accounts::liquidity();
    let node = acc(NODES[rng.random_range(0..NODES.len())]);
    let user = acc(USERS[rng.random_range(0..USERS.len())]);
    let session = SessionId((n as u128).to_be_bytes());
    let mut ops = Vec::new();
    if n == 0 {
        // Short unbonding so that withdrawals happen within the stream.
        ops.push(LedgerOp::SetParams { params: Params { unbonding_secs: 3 * 3_600, ..Params::default() }, now });
    }
    match n % 7 {
        0 | 1 => {
            for _ in 0..rng.random_range(1..40) {
                let (from, to) = if rng.random_bool(0.3) {
                    (liq.clone(), acc(USERS[rng.random_range(0..USERS.len())]))
                } else {
                    (acc(USERS[rng.random_range(0..USERS.len())]), acc(USERS[rng.random_range(0..USERS.len())]))
                };
                if from != to {
                    let amount = Amount(rng.random_range(1..=1_000_000_000_000_000_000u128));
                    ops.push(LedgerOp::Transfer(Transfer { from, to, amount }));
                }
            }
        }
        2 => {
            let amount = Amount::ath(rng.random_range(1..100));
            let role = if rng.random_bool(0.5) { StakeRole::Container } else { StakeRole::Checker };
            ops.push(LedgerOp::Transfer(Transfer { from: liq, to: node.clone(), amount }));
            ops.push(LedgerOp::Stake { account: node.clone(), role, amount });
            ops.push(LedgerOp::Unstake { account: node, role, amount: Amount(amount.0 / 2), now });
        }
        3 => ops.push(LedgerOp::WithdrawUnbonded { account: node, now }),
        4 => {
            let secs = rng.random_range(0..7_200);
            let price: PricePerHour = "3.6".parse().unwrap();
            let receipt = UsageReceipt {
                session,
                container: container().id(),
                consumer: user.clone(),
                service: ServiceName::new("llm-chat").unwrap(),
                started_at: now,
                ended_at: Timestamp(now.0 + secs * 1000),
                seconds: secs,
                price,
                amount: price.cost_for_secs(secs).unwrap(),
            };
            let mut receipt = receipt.sign(&container());
            receipt.acknowledge(&gateway());
            ops.push(LedgerOp::Transfer(Transfer { from: liq, to: user.clone(), amount: Amount::ath(10) }));
            ops.push(LedgerOp::LockEscrow { session, consumer: user, amount: Amount::ath(5) });
            let extra = if rng.random_bool(0.5) { Amount(rng.random_range(0..Amount::ath(3).0)) } else { Amount::ZERO };
            ops.push(LedgerOp::Settle { receipt, acker: gateway().id(), payout: node, extra });
            if rng.random_bool(0.5) {
                ops.push(LedgerOp::RefundUndelivered { session, seconds: 1 + secs / 2 });
            }
        }
        5 => {
            let input = EpochInput {
                containers: NODES
                    .iter()
                    .map(|a| ContainerWork {
                        account: acc(a),
                        capacity_units: rng.random_range(0..16),
                        uptime_ppm: rng.random_range(0..=1_000_000),
                    })
                    .collect(),
                checkers: vec![CheckerWork { account: acc(NODES[1]), correct_inspections: rng.random_range(0..9) }],
                indexers: vec![IndexerWork { account: acc("node:indexer"), served_matches: rng.random_range(1..99) }],
            };
            ops.push(LedgerOp::DistributeEpoch { epoch: n, input });
            if rng.random_bool(0.5) {
                ops.push(LedgerOp::ClaimRewards { account: node });
            }
        }
        _ => {
            let members = committee();
            let mut report = SlashReport::new(
                node,
                StakeRole::Container,
                n,
                *blake3::hash(&n.to_be_bytes()).as_bytes(),
                Amount::ath(rng.random_range(1..50)),
            );
            for m in &members[..rng.random_range(1..=3)] {
                report.sign(m);
            }
            ops.push(LedgerOp::Slash { report, committee: members.iter().map(Identity::id).collect() });
        }
    }
    ops
}

/// Applies batch `n` with its progress marker; a batch the ledger refuses is
/// replaced by the marker alone (the refusal is deterministic too).
fn step(l: &mut EmbeddedLedger, n: u64) {
    let marker = LedgerOp::Transfer(Transfer { from: accounts::liquidity(), to: progress(), amount: Amount(1) });
    let mut ops = batch(n);
    ops.push(marker.clone());
    if l.apply(&ops).is_err() {
        l.apply(&[marker]).expect("the progress marker alone always applies");
    }
}

fn committed(l: &EmbeddedLedger) -> u64 {
    l.balance(&progress()).unwrap().0 as u64
}

fn worker(path: &str) {
    let mut l = EmbeddedLedger::open(path, &Genesis::default()).expect("worker opens the ledger");
    let mut out = std::io::stdout().lock();
    for n in committed(&l)..1_000_000 {
        step(&mut l, n);
        writeln!(out, "ack {n}").and_then(|()| out.flush()).expect("parent reads acks");
    }
}

fn main() {
    if let Ok(path) = std::env::var(WORKER_ENV) {
        worker(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut replay = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
    let mut replayed = 0u64;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut killed_running = 0;
    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(WORKER_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = rng.random_range(1..=8);
        let mut acked: Option<u64> = None;
        let parse = |line: String| -> u64 { line.strip_prefix("ack ").and_then(|n| n.parse().ok()).unwrap() };
        for _ in 0..kill_after {
            let line = lines.next().expect("worker exited early").unwrap();
            acked = Some(parse(line));
        }
        // SIGKILL while the worker is busy with later batches.
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Acks printed before the kill are still in the pipe.
        for line in lines {
            acked = Some(parse(line.unwrap()));
        }
        let acked = acked.unwrap() + 1;

        let l = EmbeddedLedger::open(&path, &Genesis::default()).expect("the ledger reopens after SIGKILL");
        l.check_invariant().expect("the supply invariant holds after SIGKILL");
        let k = committed(&l);
        assert!(k >= acked, "round {round}: {acked} batches acknowledged but only {k} present");
        assert!(k <= acked + 1, "round {round}: {k} batches present but only {acked} acknowledged");
        while replayed < k {
            step(&mut replay, replayed);
            replayed += 1;
        }
        assert_eq!(l.snapshot().unwrap(), replay.snapshot().unwrap(), "round {round}: state after {k} batches");
    }
    assert_eq!(killed_running, KILLS, "every kill hit a running worker");
    let s = replay.snapshot().unwrap();
    println!(
        "crash test: {KILLS} SIGKILLs, {replayed} batches, {} settlements, {} epochs, {} slashes, {} unbonding entries: ok",
        s.settlements,
        s.epochs.len(),
        s.slashes,
        s.unbonding.len()
    );
}
