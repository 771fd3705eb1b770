//! The EVM toolchain of the `evm` settlement backend (`contracts/`, crate
//! `dci-chain`), installed from npm so it works without other registries:
//! anvil, forge and cast (`@foundry-rs/*-linux-amd64`), solc-js (used by forge
//! through `contracts/tools/solc.js`) and OpenZeppelin.
//!
//! [`ensure`] runs `npm ci` when `contracts/node_modules` is missing or older
//! than `package-lock.json`, then `forge build`, which writes the artifacts
//! (`contracts/out/*.sol/*.json`) that `dci-chain` deploys. Both steps are
//! skipped when already done, so a second run costs milliseconds.
//! [`test`] runs the contracts' own tests (`forge test`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

/// The binaries the tests and `dci-chain` use, in `contracts/node_modules/.bin`.
const TOOLS: [&str; 3] = ["anvil", "forge", "cast"];
/// The artifacts `dci-chain` deploys.
const ARTIFACTS: [&str; 3] =
    ["out/AthToken.sol/AthToken.json", "out/DciLedger.sol/DciLedger.json", "out/DciRegistry.sol/DciRegistry.json"];

fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("contracts")
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Runs `program args` in `dir`, echoing the step and its duration.
fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("==> evm: {program} {} (in {})", args.join(" "), dir.display());
    let t0 = Instant::now();
    let status = Command::new(program).args(args).current_dir(dir).status().map_err(|e| {
        format!("cannot run {program}: {e}; the evm backend needs Node.js 18+ with npm (apt-get install nodejs npm)")
    })?;
    eprintln!("==> evm: {} in {:.1} s", if status.success() { "ok" } else { "FAILED" }, t0.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed in {} ({status})", args.join(" "), dir.display()))
    }
}

/// Do the artifacts exist, and is every source older than forge's last
/// build (forge rewrites `cache/solidity-files-cache.json` on each build)?
fn artifacts_fresh(dir: &Path) -> bool {
    if !ARTIFACTS.iter().all(|a| dir.join(a).is_file()) {
        return false;
    }
    let Some(built) = modified(&dir.join("cache").join("solidity-files-cache.json")) else { return false };
    let Ok(entries) = std::fs::read_dir(dir.join("src")) else { return false };
    entries.flatten().all(|e| modified(&e.path()).is_some_and(|m| m <= built))
        && ["foundry.toml", "package-lock.json"].iter().all(|f| modified(&dir.join(f)).is_some_and(|m| m <= built))
}

/// Makes sure anvil, forge and cast are installed under
/// `contracts/node_modules/.bin` and the contract artifacts are built.
pub fn ensure() -> Result<(), String> {
    let dir = contracts_dir();
    let bin = dir.join("node_modules").join(".bin");
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules").join(".package-lock.json");
    let tools_there = TOOLS.iter().all(|t| bin.join(t).is_file());
    let up_to_date = match (modified(&installed), modified(&lock)) {
        (Some(i), Some(l)) => i >= l,
        _ => false,
    };
    if !tools_there || !up_to_date {
        let args: &[&str] =
            if lock.is_file() { &["ci", "--no-audit", "--no-fund"] } else { &["install", "--no-audit", "--no-fund"] };
        run(&dir, "npm", args)?;
        if let Some(missing) = TOOLS.iter().find(|t| !bin.join(t).is_file()) {
            return Err(format!(
                "npm finished but {} is missing: expected the @foundry-rs/{missing}-linux-amd64 package to install it (only linux x86-64 is supported)",
                bin.join(missing).display()
            ));
        }
    }
    if !artifacts_fresh(&dir) {
        run(&dir, &bin.join("forge").to_string_lossy(), &["build"])?;
        if let Some(a) = ARTIFACTS.iter().find(|a| !dir.join(a).is_file()) {
            return Err(format!("forge build finished but {} is missing", dir.join(a).display()));
        }
    }
    Ok(())
}

/// Runs the contracts' tests (`forge test`), installing the tools first.
pub fn test() -> Result<(), String> {
    ensure()?;
    let dir = contracts_dir();
    let forge = dir.join("node_modules").join(".bin").join("forge");
    run(&dir, &forge.to_string_lossy(), &["test"])
}
