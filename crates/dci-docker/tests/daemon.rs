//! The private engine: started when needed, recovers from a crashed one's
//! leftovers, found again instead of started twice, stopped on request.

use std::time::Duration;

use anyhow::{Context, Result};
use dci_docker::LocalDaemon;

const WAIT: Duration = Duration::from_secs(60);

/// Stops the test's daemon even when an assertion fails.
struct StopOnDrop(LocalDaemon);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.stop(WAIT);
    }
}

#[test]
fn a_private_daemon_starts_over_stale_leftovers_and_is_reused() -> Result<()> {
    // Next to the shared test daemon's directory (same file system, which
    // overlay2 is known to work on) with a short name: unix socket paths are
    // limited to 108 bytes.
    let parent = LocalDaemon::default_dir().parent().context("the default dir has a parent")?.to_path_buf();
    std::fs::create_dir_all(&parent)?;
    let dir = tempfile::Builder::new().prefix("dcid").tempdir_in(&parent)?;
    // What a daemon killed with SIGKILL leaves (its pid can be reused: here
    // by this test): a pid file naming a process that is not dockerd and a
    // socket nobody listens on.
    std::fs::write(dir.path().join("dockerd.pid"), std::process::id().to_string())?;
    std::fs::write(dir.path().join("docker.sock"), b"")?;
    // And its containerd's pid file, which dockerd would otherwise trust.
    let containerd = dir.path().join("exec").join("containerd");
    std::fs::create_dir_all(&containerd)?;
    std::fs::write(containerd.join("containerd.pid"), std::process::id().to_string())?;

    let daemon = StopOnDrop(LocalDaemon::ensure(dir.path(), WAIT)?);
    let daemon = &daemon.0;
    assert!(daemon.answers());
    let pid = daemon.pid().context("a running daemon has a pid")?;
    assert_eq!(daemon.host(), format!("unix://{}", dir.path().join("docker.sock").display()));

    let again = LocalDaemon::ensure(dir.path(), WAIT)?;
    assert_eq!(again.pid(), Some(pid), "a running daemon is reused, not started twice");

    assert!(daemon.stop(WAIT)?);
    assert!(!daemon.answers());
    assert_eq!(daemon.pid(), None);
    assert!(!daemon.stop(WAIT)?, "stopping a stopped daemon is a no-op");
    Ok(())
}
