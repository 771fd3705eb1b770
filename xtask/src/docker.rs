//! Installs what the docker runtime's tests need (idempotently): Debian's
//! `docker.io` (dockerd, containerd, runc) and `ldd` for packing images.
//!
//! The daemon is not started here: `dci-docker`'s tests start a private one
//! themselves (`dci_docker::LocalDaemon::ensure`, files under
//! `~/.cache/dci-docker`, its own process group, a lock file so parallel test
//! binaries start it once) and leave it running for the next run; a dead
//! daemon's pid file and socket are cleaned up on the next start. Set
//! `DCI_DOCKER_HOST=unix:///…` to test against another engine instead.

use std::process::Command;

/// The programs the tests run, and the Debian package that provides each.
const TOOLS: [(&str, &str, &str); 4] = [
    ("dockerd", "--version", "docker.io"),
    ("containerd", "--version", "docker.io"),
    ("runc", "--version", "docker.io"),
    ("ldd", "--version", "libc-bin"),
];

fn works(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok_and(|o| o.status.success())
}

fn missing() -> Vec<(&'static str, &'static str)> {
    TOOLS.iter().filter(|(p, a, _)| !works(p, a)).map(|(p, _, pkg)| (*p, *pkg)).collect()
}

/// Makes sure the docker engine's programs are installed, installing
/// `docker.io` with apt-get (as root) when one is missing.
pub fn ensure() -> Result<(), String> {
    let absent = missing();
    if absent.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = absent.iter().map(|(_, pkg)| *pkg).collect();
    packages.dedup();
    let names: Vec<&str> = absent.iter().map(|(p, _)| *p).collect();
    eprintln!("==> deps: {} missing", names.join(", "));
    crate::apt::install(&packages, "the docker runtime tests start dockerd")?;
    let still: Vec<&str> = missing().into_iter().map(|(p, _)| p).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "expected {} to run after installing {}, found them still missing",
            still.join(", "),
            packages.join(" ")
        ))
    }
}
