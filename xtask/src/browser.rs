//! Installs what the browser tests need (idempotently). Filled in with its tests.

/// Makes sure the browser tools are installed.
pub fn ensure() -> Result<(), String> {
    Ok(())
}
