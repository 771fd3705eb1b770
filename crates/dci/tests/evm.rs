//! End to end on the evm settlement backend (R-LG6), as a user would: start
//! `dci devnet --settlement evm` (it starts its own anvil on a free port and
//! deploys the contracts), deploy the render service with the same CLI as on
//! the embedded ledger, use it, stop it, and check that `dci balance` agrees
//! with what a standard Ethereum tool (foundry's `cast`) reads from the ATH
//! token, before and after settlement and across a clean restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dci_gateway::api::{BalanceInfo, SessionInfo, SessionStatus};
use dci_ledger::SupplyReport;
use dci_model::{AccountId, Amount, NodeId};
use dci_node::devnet::CONSUMER_FUNDS;
use dci_node::settlement::{Backend, EvmConfig, SettlementConfig};

const DCI: &str = env!("CARGO_BIN_EXE_dci");

struct Devnet {
    child: Child,
}

impl Devnet {
    /// Starts a devnet and returns once it says every container is schedulable.
    fn start(dir: &Path, port: u16, extra: &[&str]) -> Devnet {
        let mut child = Command::new(DCI)
            .args(["devnet", "--containers", "2", "--checkers", "2", "--committee-size", "2"])
            .args(["--api-port", &port.to_string(), "--challenge-n", "64", "--epoch-secs", "2"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .env("DCI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning dci devnet");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let mut seen = Vec::new();
        loop {
            let line = lines.next().unwrap_or_else(|| panic!("devnet exited before it was ready: {seen:?}")).unwrap();
            if let Some(rest) = line.strip_prefix("ready: ") {
                assert!(rest.starts_with("2/2"), "expected 2/2 containers schedulable: {line}");
                break;
            }
            seen.push(line);
        }
        assert!(seen.iter().any(|l| l.contains("ledger     evm on http://127.0.0.1:")), "{seen:?}");
        std::thread::spawn(move || for _ in lines {});
        Devnet { child }
    }

    /// SIGTERM, and a clean exit (sessions settled, anvil stopped).
    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "devnet did not stop cleanly: {exit:?}");
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(DCI).args(args).arg("--data-dir").arg(dir).env("DCI_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn cli_json<T: serde::de::DeserializeOwned>(dir: &Path, args: &[&str]) -> T {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = cli(dir, &a);
    assert!(ok, "dci {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("dci {args:?} printed non-JSON ({e}): {out}"))
}

fn ath(s: &str) -> Amount {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The chain the devnet wrote to its settlement.toml.
fn chain(dir: &Path) -> EvmConfig {
    let c = SettlementConfig::load(dir).unwrap();
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

#[test]
fn a_devnet_session_settles_on_anvil_and_cast_reads_the_same_balances() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let net = Devnet::start(dir, port, &["--settlement", "evm"]);
    let evm = chain(dir);
    let consumer = AccountId::new(dci_node::devnet::CONSUMER).unwrap();

    // The funded consumer, seen both ways.
    let b: BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(ath(&b.balance_ath), CONSUMER_FUNDS);
    assert_eq!(on_chain(&evm, &consumer), CONSUMER_FUNDS);

    // Deploy: the escrow is locked on chain.
    let s: SessionInfo = cli_json(dir, &["deploy", "render"]);
    let escrow = ath(&s.escrow_ath);
    let b: BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(ath(&b.escrowed_ath), escrow);
    assert_eq!(ath(&b.balance_ath), CONSUMER_FUNDS.checked_sub(escrow).unwrap());
    assert_eq!(on_chain(&evm, &consumer), ath(&b.balance_ath));

    // Use the service for a while, so there is time to bill.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        let png = reqwest::blocking::get(format!("{}/frame?width=64&height=48", s.endpoint)).unwrap();
        assert_eq!(png.status(), 200);
    }

    // Stop: settled on chain; `dci balance` and the token agree.
    let stopped: SessionInfo = cli_json(dir, &["stop", &s.id]);
    assert_eq!(stopped.status, SessionStatus::Stopped);
    let charged = ath(stopped.charged_ath.as_deref().unwrap());
    assert!(charged.0 > 0 && stopped.billed_seconds.unwrap() >= 1, "{stopped:?}");
    assert_eq!(charged.checked_add(ath(stopped.refunded_ath.as_deref().unwrap())).unwrap(), escrow);
    let b: BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(ath(&b.escrowed_ath), Amount::ZERO);
    assert_eq!(ath(&b.balance_ath), CONSUMER_FUNDS.checked_sub(charged).unwrap());
    assert_eq!(on_chain(&evm, &consumer), ath(&b.balance_ath));
    // The provider's share reached the container's payout address.
    let provider = AccountId::for_node(&stopped.container.parse::<NodeId>().unwrap());
    let paid = on_chain(&evm, &provider);
    assert!(paid.0 > 0 && paid < charged, "provider got {paid} of {charged}");

    // The supply invariant, recomputed from the chain.
    let report: SupplyReport = cli_json(dir, &["ledger", "check"]);
    report.check().unwrap();

    // A clean stop settles and stops anvil (its state is kept) ...
    net.stop();
    assert!(cast(&["block-number", "--rpc-url", &evm.rpc_url]).is_err(), "anvil still answers after the stop");

    // ... and the next start (no flag: settlement.toml says evm) resumes the
    // same chain on a new port, with the same balances.
    let net = Devnet::start(dir, port, &[]);
    let evm2 = chain(dir);
    assert_eq!(evm2.deployment, evm.deployment);
    let b: BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(ath(&b.balance_ath), CONSUMER_FUNDS.checked_sub(charged).unwrap());
    assert_eq!(on_chain(&evm2, &consumer), ath(&b.balance_ath));
    assert_eq!(on_chain(&evm2, &provider), paid);
    let sessions: Vec<SessionInfo> = cli_json(dir, &["sessions"]);
    assert_eq!(sessions.len(), 1);
    net.stop();
}
