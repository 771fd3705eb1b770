//! `dci bench ledger` (R-PF5): durable transfer throughput of the embedded
//! ledger and the cost of a full supply-invariant check.
//!
//! Workload: a payment hub. A ledger file (WAL, `synchronous=FULL`: every
//! commit is fsynced, as in production) holds the genesis accounts plus
//! `check_accounts` funded accounts (default 1,000,000) — a network-sized
//! ledger. Then `transfers` (default 1,000,000) random transfers of random
//! small amounts among `accounts` (default 10,000) active accounts are
//! applied in batches of `batch` (default 10,000) transfers, one transaction
//! and one fsync per batch (`transfers_per_s` counts only the time inside
//! [`crate::EmbeddedLedger::transfer_batch`], commit included). Finally the
//! whole invariant — every balance, escrow, stake, unbonding entry and
//! pending reward — is recomputed (`check_ms_1m_accounts`).
//!
//! Timings use the wall clock; nothing here is asserted by tests.

use dci_model::{AccountId, Amount};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

use crate::{EmbeddedLedger, Genesis, LedgerError, Transfer, accounts};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Directory for the ledger file (a fresh subdirectory of the system
    /// temp dir when `None`); the file is removed afterwards.
    pub dir: Option<PathBuf>,
    /// Active accounts the transfers move between.
    pub accounts: u64,
    /// Transfers to apply.
    pub transfers: u64,
    /// Transfers per transaction.
    pub batch: usize,
    /// Extra funded accounts in the ledger (the invariant check covers them).
    pub check_accounts: u64,
    /// Seed of the transfer stream.
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            dir: None,
            accounts: 10_000,
            transfers: 1_000_000,
            batch: 10_000,
            check_accounts: 1_000_000,
            seed: 42,
        }
    }
}

/// The figures (printed as JSON by `dci bench ledger --json`).
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// What was measured.
    pub workload: String,
    /// SQLite durability setting of the run.
    pub synchronous: String,
    /// Transfers applied.
    pub transfers: u64,
    /// Transfers per transaction.
    pub batch: u64,
    /// Active accounts.
    pub accounts: u64,
    /// Durable transfers per second (R-PF5 target ≥ 100,000).
    pub transfers_per_s: f64,
    /// Seconds spent applying the transfers.
    pub transfer_secs: f64,
    /// Accounts in the ledger when the invariant was checked.
    pub checked_accounts: u64,
    /// Milliseconds to create the extra accounts (one transaction).
    pub setup_ms: f64,
    /// Milliseconds of one full invariant check over the ledger.
    pub check_ms_1m_accounts: f64,
    /// Whether the invariant held at the end.
    pub invariant_ok: bool,
}

/// A small deterministic generator (splitmix64): the workload must not
/// depend on an RNG crate's version.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct TempDir(PathBuf, bool);

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn io(what: &str, e: std::io::Error) -> LedgerError {
    LedgerError::Storage(format!("bench: cannot {what}: {e}"))
}

/// Runs the benchmark described in the module docs.
pub fn run(config: &BenchConfig) -> Result<BenchReport, LedgerError> {
    if config.accounts < 2 || config.batch == 0 {
        return Err(LedgerError::InvalidInput(format!(
            "expected at least 2 accounts and a batch of at least 1, found {} accounts and batch {}",
            config.accounts, config.batch
        )));
    }
    let dir = match &config.dir {
        Some(d) => TempDir(d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let d = std::env::temp_dir().join(format!("dci-ledger-bench-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&d).map_err(|e| io("create a temp dir", e))?;
            TempDir(d, true)
        }
    };
    let path = dir.0.join("bench-ledger.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let mut ledger = EmbeddedLedger::open(&path, &Genesis::default())?;
    let liquidity = accounts::liquidity();

    let t = Instant::now();
    ledger.bulk_accounts(&liquidity, "bench:idle-", config.check_accounts, Amount(1))?;
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;

    let active: Vec<AccountId> = (0..config.accounts)
        .map(|i| AccountId::new(format!("bench:active-{i:07}")))
        .collect::<Result<_, _>>()
        .map_err(|e| LedgerError::InvalidInput(e.to_string()))?;
    let funding: Vec<Transfer> = active
        .iter()
        .map(|a| Transfer { from: liquidity.clone(), to: a.clone(), amount: Amount::ath(1_000) })
        .collect();
    for chunk in funding.chunks(config.batch) {
        ledger.transfer_batch(chunk)?;
    }

    let mut rng = SplitMix(config.seed);
    let mut done = 0u64;
    let mut elapsed = std::time::Duration::ZERO;
    let n = config.accounts;
    while done < config.transfers {
        let size = (config.transfers - done).min(config.batch as u64);
        let batch: Vec<Transfer> = (0..size)
            .map(|_| {
                let from = rng.below(n);
                let to = (from + 1 + rng.below(n - 1)) % n;
                Transfer {
                    from: active[from as usize].clone(),
                    to: active[to as usize].clone(),
                    amount: Amount(u128::from(1 + rng.below(1_000_000))),
                }
            })
            .collect();
        let t = Instant::now();
        ledger.transfer_batch(&batch)?;
        elapsed += t.elapsed();
        done += size;
    }
    let secs = elapsed.as_secs_f64();

    let t = Instant::now();
    let check = ledger.check_invariant();
    let check_ms = t.elapsed().as_secs_f64() * 1e3;
    let checked_accounts = match &check {
        Ok(r) => r.accounts,
        Err(_) => 0,
    };
    drop(ledger);
    Ok(BenchReport {
        workload: format!(
            "{} random transfers among {} accounts in batches of {}, then a full invariant check; ledger of {} accounts",
            config.transfers, config.accounts, config.batch, checked_accounts
        ),
        synchronous: "FULL (WAL; every commit fsynced)".to_owned(),
        transfers: config.transfers,
        batch: config.batch as u64,
        accounts: config.accounts,
        transfers_per_s: if secs > 0.0 { config.transfers as f64 / secs } else { 0.0 },
        transfer_secs: secs,
        checked_accounts,
        setup_ms,
        check_ms_1m_accounts: check_ms,
        invariant_ok: check.is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench runs end to end on a small configuration (no timing is
    /// asserted).
    #[test]
    fn a_small_run_keeps_the_invariant() {
        let dir = tempfile::tempdir().unwrap();
        let config = BenchConfig {
            dir: Some(dir.path().to_path_buf()),
            accounts: 50,
            transfers: 2_000,
            batch: 500,
            check_accounts: 1_000,
            seed: 1,
        };
        let r = run(&config).unwrap();
        assert!(r.invariant_ok);
        assert_eq!((r.transfers, r.checked_accounts), (2_000, 5 + 1_000 + 50));
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("transfers_per_s").is_some() && json.get("check_ms_1m_accounts").is_some());
        assert!(run(&BenchConfig { accounts: 1, ..config }).is_err());
    }
}
