//! Debian packages, installed with apt-get (as root) when a test needs them.

use std::process::Command;

/// Runs `apt-get update` then `apt-get install -y` of `packages`; `why` says
/// in the error what the packages are for.
pub fn install(packages: &[&str], why: &str) -> Result<(), String> {
    eprintln!("==> deps: installing {} with apt-get ({why})", packages.join(" "));
    let mut install = vec!["install", "-y", "-q"];
    install.extend(packages);
    for args in [vec!["update", "-q"], install] {
        let ok = Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("apt-get {} failed: install {} (as root); {why}", args.join(" "), packages.join(" ")));
        }
    }
    Ok(())
}
