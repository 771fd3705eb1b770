//! Prints the settlement bench's JSON report (what `dci bench settlement
//! --json` prints): `cargo run --release -p dci-chain --example settlement_bench`.

fn main() -> anyhow::Result<()> {
    let report = dci_chain::bench::run(&dci_chain::bench::BenchOptions::default())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
