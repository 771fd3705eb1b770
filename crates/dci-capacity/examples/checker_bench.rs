//! Prints the checker-cost bench as JSON (what `dci bench checker --json`
//! reports): `cargo run --release -p dci-capacity --example checker_bench
//! [n ...]`. Without arguments, the sizes the network hands out.

use dci_capacity::bench::{BenchConfig, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = BenchConfig::standard();
    let sizes = std::env::args().skip(1).map(|a| a.parse::<u32>()).collect::<Result<Vec<_>, _>>()?;
    if !sizes.is_empty() {
        config.sizes = sizes;
    }
    println!("{}", serde_json::to_string_pretty(&run(&config)?)?);
    Ok(())
}
