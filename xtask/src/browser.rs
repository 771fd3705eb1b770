//! Installs what the browser tests need (idempotently): Debian's `chromium`,
//! which `crates/dci-services/tests/browser.rs` (and tests that include its
//! driver, `tests/common/browser.rs`) run headless.

use std::process::Command;

/// Makes sure `chromium` runs, installing the Debian package with apt when it does not.
pub fn ensure() -> Result<(), String> {
    if works() {
        return Ok(());
    }
    crate::apt::install(&["chromium"], "the browser tests run headless chromium")?;
    if works() { Ok(()) } else { Err("chromium --version still fails after installing chromium".into()) }
}

/// Whether `chromium --version` succeeds.
fn works() -> bool {
    Command::new("chromium").arg("--version").output().is_ok_and(|o| o.status.success())
}
