//! Room on disk for the build. A full disk fails a run half-way with
//! linker crashes and "No space left on device"; this check fails it first,
//! with a clear message, after freeing what is safe to free: the build
//! cache's incremental state, then the whole cache (a cold build still passes).

use std::path::PathBuf;
use std::process::Command;

/// Free space a cold build of the workspace and its tests needs, with margin.
const NEEDED_GIB: u64 = 20;

/// The target directory cargo will use: `$CARGO_TARGET_DIR` or `./target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"))
}

/// Free GiB on the file system holding `path` (or its nearest existing parent), read from `df -Pk`.
fn free_gib(path: &std::path::Path) -> Result<u64, String> {
    let mut at = path.to_path_buf();
    while !at.exists() {
        if !at.pop() {
            at = PathBuf::from(".");
            break;
        }
    }
    let out = Command::new("df").arg("-Pk").arg(&at).output().map_err(|e| format!("cannot run df: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // POSIX format: a header line, then `fs blocks used available capacity mount`.
    let avail = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|kb| kb.parse::<u64>().ok())
        .ok_or_else(|| format!("expected `df -Pk {}` to print available kilobytes, got: {text}", at.display()))?;
    Ok(avail / (1024 * 1024))
}

/// Makes sure the build has [`NEEDED_GIB`] free, removing the target
/// directory's incremental state and then the target directory itself if needed.
pub fn ensure_room() -> Result<(), String> {
    let target = target_dir();
    let mut free = free_gib(&target)?;
    if free >= NEEDED_GIB {
        return Ok(());
    }
    for (what, dir) in
        [("incremental build state", target.join("debug").join("incremental")), ("build cache", target.clone())]
    {
        if dir.exists() {
            eprintln!("==> disk: {free} GiB free, {NEEDED_GIB} GiB needed: removing the {what} {}", dir.display());
            std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
            free = free_gib(&target)?;
            if free >= NEEDED_GIB {
                return Ok(());
            }
        }
    }
    Err(format!(
        "expected at least {NEEDED_GIB} GiB free for the build at {}, found {free} GiB: free some disk space",
        target.display()
    ))
}
