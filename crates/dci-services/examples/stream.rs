//! Measures a live render stream with the simulated user and prints its report as JSON.
//!
//! `cargo run --release -p dci-services --example stream -- [QUERY|ws://URL] [INPUTS]`
//!
//! With a query such as `width=320&height=180&fps=30` (the default) it serves
//! the render service in this process on loopback and measures that; with a
//! `ws://` URL it measures a running service. INPUTS (default 100) is the
//! length of the standard input script.

use dci_model::ServiceName;
use dci_services::render::{UserScript, simulate_user};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "width=320&height=180&fps=30".to_string());
    let inputs: usize = args.next().map_or(Ok(100), |n| n.parse())?;
    let url = if target.starts_with("ws://") || target.starts_with("wss://") {
        target
    } else {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let name = ServiceName::new("render")?;
        tokio::spawn(async move { dci_services::serve(&name, listener).await });
        format!("ws://{addr}/stream?{target}")
    };
    let report = simulate_user(&url, &UserScript::standard(inputs)).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
