//! Installs what the docker tests need (idempotently). Filled in with its tests.

/// Makes sure the docker tools are installed.
pub fn ensure() -> Result<(), String> {
    Ok(())
}
