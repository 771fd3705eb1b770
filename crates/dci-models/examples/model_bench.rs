//! Fetches all-MiniLM-L6-v2 into the default store if needed, serves it on an
//! ephemeral loopback port and prints the `ModelBench` JSON of the default
//! workload (what `dci bench services --json` reports for the model).
//!
//! `cargo run -p dci-models --example model_bench [requests inputs_per_request concurrency workers]`
//! (with `CANDLE_NUM_THREADS=1` in the environment, one worker per core is the fast setting).

use std::sync::Arc;

use dci_models::{BenchConfig, Catalogue, DeviceChoice, Encoder, ServeOptions, Store, bench_local};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let mut config = BenchConfig::default();
    let mut options = ServeOptions::default();
    if let [requests, inputs, concurrency, workers] = args[..] {
        config = BenchConfig { requests, inputs_per_request: inputs, concurrency, ..config };
        options.workers = workers;
    }
    let entry = Catalogue::builtin().get("all-minilm-l6-v2")?.clone();
    let dir = Store::open_default()?.ensure(&entry)?;
    let encoder = Arc::new(Encoder::load(&dir, &entry, DeviceChoice::Cpu)?);
    let report = bench_local(encoder, options, &config).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
