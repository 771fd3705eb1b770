//! End to end on the evm settlement backend (R-LG6), as a user would: start
//! `dci devnet --settlement evm` (it starts its own anvil on a free port and
//! deploys the contracts), deploy the render service with the same CLI as on
//! the embedded ledger, use it, stop it, and check that `dci balance` agrees
//! with what a standard Ethereum tool (foundry's `cast`) reads from the ATH
//! token, before and after settlement and across a clean restart; that
//! several sessions settle in ONE transaction (R-PF6), counted from the
//! ledger's `BatchSettled` events; and that a dishonest container's stake is
//! slashed on chain with the committee's ECDSA signatures.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dci_gateway::api::{BalanceInfo, SessionInfo, SessionStatus};
use dci_ledger::SupplyReport;
use dci_model::{AccountId, Amount, NodeId};
use dci_node::devnet::CONSUMER_FUNDS;
use dci_node::settlement::{Backend, EvmConfig, SettlementConfig};

mod common;

use common::{Devnet, cli, cli_json, free_port};

/// Starts a devnet on the evm backend (settlement.toml or `extra` says so)
/// with `containers` containers and `checkers` checkers, all of them on the
/// committee, and a long epoch unless `extra` sets one; waits for `ready`
/// (e.g. "2/2") containers schedulable.
fn evm_devnet(dir: &Path, port: u16, containers: u16, checkers: u16, ready: &str, extra: &[&str]) -> Devnet {
    let n = checkers.to_string();
    let mut args = vec!["--checkers", n.as_str(), "--committee-size", n.as_str()];
    if !extra.contains(&"--epoch-secs") {
        args.extend(["--epoch-secs", "600"]);
    }
    args.extend(extra);
    let net = Devnet::start_expecting(dir, port, containers, &args, ready);
    assert!(net.banner.iter().any(|l| l.contains("ledger     evm on http://127.0.0.1:")), "{:?}", net.banner);
    assert!(net.banner.iter().any(|l| l.contains("registry   0x")), "the endpoint registry: {:?}", net.banner);
    // Every role follows it: [chain] in its config.
    for config in ["gateway/node.toml", "indexer/node.toml", "checker-0/node.toml", "container-0/container.toml"] {
        let text = std::fs::read_to_string(dir.join(config)).unwrap();
        assert!(text.contains("[chain]") && text.contains("registry = \"0x"), "{config}: {text}");
    }
    net
}

fn ath(s: &str) -> Amount {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The chain the devnet wrote to its gateway's settlement.toml.
fn chain(dir: &Path) -> EvmConfig {
    let c = SettlementConfig::load(&dir.join("gateway")).unwrap();
    assert_eq!(c.backend, Backend::Evm);
    let evm = c.evm.expect("an [evm] section");
    assert!(evm.anvil && evm.deployment.is_some(), "{evm:?}");
    evm
}

/// `cast`'s answer, or its error.
fn cast(args: &[&str]) -> Result<String, String> {
    let bin = dci_chain::tool_path("cast", dci_chain::CAST_ENV).unwrap();
    let out = Command::new(bin).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `account`'s ATH as the token contract reports it to `cast call`.
fn on_chain(evm: &EvmConfig, account: &AccountId) -> Amount {
    let token = evm.deployment.as_ref().unwrap().token.to_string();
    let address = dci_chain::account_address(account).to_string();
    let out = cast(&["call", &token, "balanceOf(address)(uint256)", &address, "--rpc-url", &evm.rpc_url]).unwrap();
    // e.g. "10000000000000000000000 [1e22]"
    Amount(out.split_whitespace().next().unwrap().parse().unwrap_or_else(|e| panic!("{out:?}: {e}")))
}

/// The `BatchSettled` events of the devnet's ledger: (transaction, sessions closed).
fn batches_settled(evm: &EvmConfig) -> Vec<(String, u64)> {
    let ledger = evm.deployment.as_ref().unwrap().ledger.to_string();
    let sig = "BatchSettled(bytes32,uint256,uint256,uint256)";
    let out = cast(&["logs", "--json", "--from-block", "0", "--address", &ledger, sig, "--rpc-url", &evm.rpc_url])
        .unwrap_or_else(|e| panic!("cast logs: {e}"));
    let logs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    logs.iter()
        .map(|l| {
            let data = l["data"].as_str().unwrap().trim_start_matches("0x");
            // recordsHash, then the number of sessions closed.
            let sessions = u64::from_str_radix(data[64..128].trim_start_matches('0'), 16).unwrap_or(0);
            (l["transactionHash"].as_str().unwrap().to_owned(), sessions)
        })
        .collect()
}

/// Gas used by transaction `tx` (printed, never asserted).
fn gas_used(evm: &EvmConfig, tx: &str) -> String {
    cast(&["receipt", tx, "gasUsed", "--rpc-url", &evm.rpc_url]).unwrap_or_else(|e| e)
}

/// Uses a render session's endpoint for a moment, so there is time to bill.
fn use_for(s: &SessionInfo, d: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < d {
        let png = reqwest::blocking::get(format!("{}/frame?width=64&height=48", s.endpoint)).unwrap();
        assert_eq!(png.status(), 200);
    }
}

#[test]
fn sessions_settle_in_one_batch_on_anvil_and_cast_reads_the_same_balances() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Settlement is queued and sent when 3 ops wait (the epoch, 600 s here,
    // would flush it too).
    std::fs::create_dir_all(dir.join("gateway")).unwrap();
    std::fs::write(
        SettlementConfig::path(&dir.join("gateway")),
        "backend = \"evm\"\nflush = \"epoch\"\nmax_queue = 3\n",
    )
    .unwrap();
    let port = free_port();
    let net = evm_devnet(dir, port, 2, 2, "2/2", &[]);
    let evm = chain(dir);
    let consumer = AccountId::new(dci_node::devnet::CONSUMER).unwrap();

    // The funded consumer, seen both ways.
    let b: BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(ath(&b.balance_ath), CONSUMER_FUNDS);
    assert_eq!(on_chain(&evm, &consumer), CONSUMER_FUNDS);

    // Three sessions: their escrows are locked on chain.
    let sessions: Vec<SessionInfo> = (0..3).map(|_| cli_json(dir, &["deploy", "render"])).collect();
    let escrows: Vec<Amount> = sessions.iter().map(|s| ath(&s.escrow_ath)).collect();
    let locked = escrows.iter().fold(Amount::ZERO, |a, e| a.checked_add(*e).unwrap());
    let b: BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(ath(&b.escrowed_ath), locked);
    assert_eq!(ath(&b.balance_ath), CONSUMER_FUNDS.checked_sub(locked).unwrap());
    assert_eq!(on_chain(&evm, &consumer), ath(&b.balance_ath));
    for s in &sessions {
        use_for(s, Duration::from_millis(600));
    }

    // Two stops: settled for the consumer (`dci balance` includes what is
    // queued), not yet on chain.
    let mut charged = Amount::ZERO;
    for (k, s) in sessions.iter().enumerate() {
        let stopped: SessionInfo = cli_json(dir, &["stop", &s.id]);
        assert_eq!(stopped.status, SessionStatus::Stopped);
        let c = ath(stopped.charged_ath.as_deref().unwrap());
        assert!(c.0 > 0 && stopped.billed_seconds.unwrap() >= 1, "{stopped:?}");
        assert_eq!(c.checked_add(ath(stopped.refunded_ath.as_deref().unwrap())).unwrap(), escrows[k]);
        charged = charged.checked_add(c).unwrap();
        let b: BalanceInfo = cli_json(dir, &["balance"]);
        assert_eq!(
            ath(&b.balance_ath),
            CONSUMER_FUNDS
                .checked_sub(charged)
                .unwrap()
                .checked_sub(escrows[k + 1..].iter().fold(Amount::ZERO, |a, e| a.checked_add(*e).unwrap()))
                .unwrap()
        );
        if k < 2 {
            assert_eq!(
                on_chain(&evm, &consumer),
                CONSUMER_FUNDS.checked_sub(locked).unwrap(),
                "settled before the flush"
            );
            assert!(batches_settled(&evm).is_empty(), "a receipt went on chain alone");
        }
    }

    // The third filled the queue: ONE transaction settled all three, and
    // the chain agrees with `dci balance`.
    let batches = batches_settled(&evm);
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert_eq!(batches[0].1, 3, "{batches:?}");
    eprintln!("3 sessions settled in 1 transaction {}: gas used {}", batches[0].0, gas_used(&evm, &batches[0].0));
    let b: BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(ath(&b.escrowed_ath), Amount::ZERO);
    assert_eq!(ath(&b.balance_ath), CONSUMER_FUNDS.checked_sub(charged).unwrap());
    assert_eq!(on_chain(&evm, &consumer), ath(&b.balance_ath));
    // The providers' shares reached their payout addresses.
    let providers: std::collections::BTreeSet<String> = sessions.iter().map(|s| s.container.clone()).collect();
    let paid = providers
        .iter()
        .map(|c| on_chain(&evm, &AccountId::for_node(&c.parse::<NodeId>().unwrap())))
        .fold(Amount::ZERO, |a, p| a.checked_add(p).unwrap());
    assert!(paid.0 > 0 && paid < charged, "providers got {paid} of {charged}");

    // The supply invariant, recomputed from the chain.
    let report: SupplyReport = cli_json(dir, &["ledger", "check"]);
    report.check().unwrap();

    // One more session, stopped and still queued when the devnet stops: a
    // clean stop sends it (or the next start does), nothing is lost.
    let s: SessionInfo = cli_json(dir, &["deploy", "render"]);
    use_for(&s, Duration::from_millis(1200));
    let stopped: SessionInfo = cli_json(dir, &["stop", &s.id]);
    charged = charged.checked_add(ath(stopped.charged_ath.as_deref().unwrap())).unwrap();
    assert_eq!(batches_settled(&evm).len(), 1, "the fourth session is queued");
    net.signal("-TERM");
    assert!(cast(&["block-number", "--rpc-url", &evm.rpc_url]).is_err(), "anvil still answers after the stop");

    // The next start (no flag: settlement.toml says evm) resumes the same
    // chain on a new port, with the same balances, all of them on chain.
    let net = evm_devnet(dir, port, 2, 2, "2/2", &[]);
    let evm2 = chain(dir);
    assert_eq!(evm2.deployment, evm.deployment);
    let b: BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(ath(&b.escrowed_ath), Amount::ZERO);
    assert_eq!(ath(&b.balance_ath), CONSUMER_FUNDS.checked_sub(charged).unwrap());
    assert_eq!(on_chain(&evm2, &consumer), ath(&b.balance_ath));
    let listed: Vec<SessionInfo> = cli_json(dir, &["sessions"]);
    assert_eq!(listed.len(), 4);
    net.signal("-TERM");
}

/// `--dishonest wrong-product` on the chain: the committee re-verifies the
/// signed evidence, each member signs the slash for the chain too, and the
/// ledger contract takes the container's stake only with ⌈2n/3⌉ valid
/// ECDSA signatures of the committee it publishes for the epoch.
#[test]
fn a_dishonest_containers_stake_is_slashed_on_chain_by_the_committee() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = evm_devnet(
        dir,
        free_port(),
        3,
        3,
        "2/3",
        &["--settlement", "evm", "--dishonest", "wrong-product", "--epoch-secs", "4"],
    );
    let evm = chain(dir);
    let ledger = evm.deployment.as_ref().unwrap().ledger.to_string();
    let t0 = Instant::now();
    let (info, penalty) = loop {
        let (ok, out, err) = cli(dir, &["committee", "--json"]);
        if ok {
            let info: dci_gateway::api::CommitteeInfo = serde_json::from_str(&out).unwrap();
            if let Some(p) = info.penalties.iter().find(|p| p.outcome != "pending").cloned() {
                break (info, p);
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "no penalty decided within 90 s: {err}{out}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(penalty.outcome, "slashed", "{penalty:#?}");
    assert_eq!(info.members.len(), 3, "{info:#?}");
    assert!(penalty.signers.len() as u32 >= penalty.quorum && penalty.quorum == 2, "{penalty:#?}");
    let taken: Amount = ath(&penalty.taken);
    assert!(taken.0 > 0 && taken <= dci_node::devnet::CONTAINER_STAKE, "{penalty:#?}");

    // The chain: the penalty's Slashed event took what the committee
    // reports, counting at least ceil(2n/3) valid signatures ...
    let sig = "Slashed(address,uint8,uint64,bytes32,uint256,uint256,uint256,uint256)";
    let out =
        cast(&["logs", "--json", "--from-block", "0", "--address", &ledger, sig, "--rpc-url", &evm.rpc_url]).unwrap();
    let logs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let word = |data: &str, i: usize| data[64 * i..64 * (i + 1)].to_owned();
    let number = |w: String| u128::from_str_radix(&w[32..], 16).unwrap();
    let evidence = penalty.evidence_hash.trim_start_matches("0x").to_lowercase();
    let event = logs
        .iter()
        .map(|l| l["data"].as_str().unwrap().trim_start_matches("0x").to_owned())
        .find(|d| word(d, 2) == evidence)
        .unwrap_or_else(|| panic!("no Slashed event for evidence {evidence}: {out}"));
    // role, epoch, evidence, fromRewards, fromStake, fromUnbonding, signers
    let on_chain_taken = number(word(&event, 3)) + number(word(&event, 4)) + number(word(&event, 5));
    assert_eq!(Amount(on_chain_taken), taken, "{event}");
    assert_eq!(number(word(&event, 1)), u128::from(penalty.epoch), "{event}");
    let valid = number(word(&event, 6));
    assert!((2..=3).contains(&valid), "valid signatures on chain: {valid} ({event})");
    // ... the committee of the penalty's epoch is on chain (n = 3) ...
    let members =
        cast(&["call", &ledger, "committee(uint64)(address[])", &penalty.epoch.to_string(), "--rpc-url", &evm.rpc_url])
            .unwrap();
    assert_eq!(members.matches("0x").count(), 3, "{members}");
    // ... and the container's stake on chain is lower by at least that (the
    // cheat keeps failing its inspections: later reports may take more).
    let offender = dci_chain::account_address(&AccountId::for_node(&penalty.container.parse::<NodeId>().unwrap()));
    let stake = cast(&[
        "call",
        &ledger,
        "staked(address,uint256)(uint256)",
        &offender.to_string(),
        "0",
        "--rpc-url",
        &evm.rpc_url,
    ])
    .unwrap();
    let stake = Amount(stake.split_whitespace().next().unwrap().parse().unwrap());
    assert!(stake <= dci_node::devnet::CONTAINER_STAKE.checked_sub(taken).unwrap(), "stake {stake}, taken {taken}");
    // Every epoch's committee goes on chain, signed by the checkers: the
    // chain accepts each only with two thirds of the one before it (from
    // the genesis committee of the deployment), so the chain of committees
    // grows epoch after epoch.
    let t0 = Instant::now();
    let latest = || {
        let out = cast(&["call", &ledger, "latestCommitteeEpoch()(uint64)", "--rpc-url", &evm.rpc_url]).unwrap();
        out.split_whitespace().next().unwrap().parse::<u64>().unwrap()
    };
    while latest() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no committee past epoch 1 on chain within 60 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("committees on chain through epoch {}", latest());
    net.signal("-TERM");
}
