//! Runs the ledger benchmark ([`dci_ledger::bench`]) and prints its report as
//! JSON: `cargo run --release -p dci-ledger --example ledger_bench [-- --transfers N
//! --accounts N --batch N --check-accounts N]`.

use dci_ledger::bench::{BenchConfig, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = BenchConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> Result<u64, Box<dyn std::error::Error>> {
            let v = args.next().ok_or_else(|| format!("expected a number after {flag}"))?;
            Ok(v.parse().map_err(|_| format!("expected a number after {flag}, found {v:?}"))?)
        };
        match flag.as_str() {
            "--transfers" => config.transfers = value()?,
            "--accounts" => config.accounts = value()?,
            "--batch" => config.batch = usize::try_from(value()?)?,
            "--check-accounts" => config.check_accounts = value()?,
            "--json" => {}
            other => return Err(format!("unknown flag {other:?}").into()),
        }
    }
    let report = run(&config)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
