//! Installs what the evm tests need (idempotently). Filled in with its tests.

/// Makes sure the evm tools are installed.
pub fn ensure() -> Result<(), String> {
    Ok(())
}
