//! Node keys at rest: 32 secret bytes, hex, in a file readable only by its
//! owner (0600, R-SEC3). Never logged. Also [`write_private`], how every
//! file that holds a secret or a node's trust (client.json, network.toml,
//! settlement.toml) is written.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use dci_proto::Identity;

/// Loads the identity stored at `path`, creating a fresh one if there is none.
pub fn load_or_create(path: &Path) -> anyhow::Result<Identity> {
    if path.exists() {
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!("key file {} has permissions {mode:o}: expected 600 (readable only by its owner)", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut secret)
            .map_err(|_| anyhow::anyhow!("key file {}: expected 64 hex digits", path.display()))?;
        return Ok(Identity::from_secret(secret));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let identity = Identity::from_secret(rand::random());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating key file {}", path.display()))?;
    f.write_all(hex::encode(identity.secret_bytes()).as_bytes())?;
    f.sync_all()?;
    Ok(identity)
}

/// Writes `text` to `path` atomically, readable by the owner only.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
