//! Installs what the browser tests need (idempotently): Debian's `chromium`,
//! which `crates/dci-services/tests/browser.rs` (and tests that include its
//! driver, `tests/common/browser.rs`) run headless.

use std::process::Command;

/// Makes sure `chromium` runs, installing the Debian package with apt when it does not.
pub fn ensure() -> Result<(), String> {
    if works() {
        return Ok(());
    }
    eprintln!("==> deps: installing chromium with apt-get");
    for args in [vec!["update", "-q"], vec!["install", "-y", "-q", "chromium"]] {
        let ok = Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("apt-get {} failed: install chromium (as root)", args.join(" ")));
        }
    }
    if works() { Ok(()) } else { Err("chromium --version still fails after installing chromium".into()) }
}

/// Whether `chromium --version` succeeds.
fn works() -> bool {
    Command::new("chromium").arg("--version").output().is_ok_and(|o| o.status.success())
}
