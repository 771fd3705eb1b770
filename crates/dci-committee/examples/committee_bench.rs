//! Prints the committee figures of `dci bench checker --json`:
//! `cargo run -p dci-committee --release --example committee_bench [-- quick|sortition]`
//! (`quick`: 100,000 candidates and 10,000 epochs; `sortition`: skip the
//! 100,000-epoch fairness simulation).

use dci_committee::bench::{BenchConfig, run};
use dci_committee::fairness::FairnessConfig;

fn main() -> anyhow::Result<()> {
    let cfg = match std::env::args().nth(1).as_deref() {
        Some("quick") => BenchConfig {
            candidates: 100_000,
            committee: 200,
            fairness: FairnessConfig { epochs: 10_000, ..FairnessConfig::default() },
            ..BenchConfig::default()
        },
        Some("sortition") => BenchConfig {
            runs: 11,
            fairness: FairnessConfig { epochs: 1, ..FairnessConfig::default() },
            ..BenchConfig::default()
        },
        _ => BenchConfig::default(),
    };
    println!("{}", serde_json::to_string_pretty(&run(&cfg)?)?);
    Ok(())
}
