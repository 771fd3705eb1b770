//! `cargo run --release -p dci-indexer --example indexer_bench -- [CONTAINERS] [MATCHES] [HEARTBEATS_PER_MATCH] [NAIVE]`
//!
//! Runs [`dci_indexer::bench::run`] and prints the report as JSON (what
//! `dci bench indexer --json` prints).

fn main() {
    let mut args = std::env::args().skip(1);
    let containers = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut cfg = dci_indexer::bench::BenchConfig::new(containers);
    if let Some(m) = args.next().and_then(|a| a.parse().ok()) {
        cfg.matches = m;
    }
    if let Some(h) = args.next().and_then(|a| a.parse().ok()) {
        cfg.heartbeats_per_match = h;
    }
    if let Some(n) = args.next().and_then(|a| a.parse().ok()) {
        cfg.naive_matches = n;
    }
    let report = dci_indexer::bench::run(&cfg);
    match serde_json::to_string_pretty(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("cannot print the report: {e}"),
    }
}
