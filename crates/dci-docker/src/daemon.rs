//! A private Docker engine for development hosts and tests.
//!
//! [`LocalDaemon::ensure`] makes sure a `dockerd` answers on
//! `<dir>/docker.sock`, starting one when nothing answers. Everything the
//! daemon writes lives under `dir` (data root, exec root, pid file, log), it
//! does not touch the host's firewall (`--iptables=false`) and creates no
//! bridge (`--bridge=none`): containers use host networking or none.
//!
//! Several processes may call `ensure` at once (parallel test binaries): an
//! exclusive lock on `<dir>/ensure.lock` lets one of them start the daemon
//! while the others wait for it. The daemon outlives the process that started
//! it (it runs in its own process group), so the next call finds it running;
//! when it died, the next call starts a new one on the same data root.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a local daemon could not be made to answer.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A file or directory under the daemon's directory could not be used.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `dockerd` could not be run.
    #[error("cannot run dockerd (expected it on PATH; install Debian's docker.io): {0}")]
    Spawn(std::io::Error),
    /// `dockerd` exited before it answered.
    #[error("dockerd exited with {status} before answering on {socket}; end of its log:\n{log_tail}")]
    Exited {
        /// Its exit status.
        status: String,
        /// The socket it should have answered on.
        socket: PathBuf,
        /// The last lines of `<dir>/dockerd.log`.
        log_tail: String,
    },
    /// The daemon could not be stopped.
    #[error("cannot stop dockerd (pid {pid}): {detail}")]
    Signal {
        /// Its pid.
        pid: u32,
        /// What happened.
        detail: String,
    },
    /// `dockerd` did not answer in time.
    #[error("dockerd did not answer on {socket} within {secs} s; end of its log:\n{log_tail}")]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// Wait limit.
        secs: u64,
        /// The last lines of `<dir>/dockerd.log`.
        log_tail: String,
    },
}

/// A Docker engine whose files all live under one directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalDaemon {
    dir: PathBuf,
}

impl LocalDaemon {
    /// The default directory: `$HOME/.cache/dci-docker` (or `/tmp/dci-docker`
    /// without a home).
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".cache").join("dci-docker"),
            None => PathBuf::from("/tmp/dci-docker"),
        }
    }

    /// Makes sure a daemon answers on `<dir>/docker.sock`, starting one if
    /// needed and waiting at most `wait` for it. Blocking.
    pub fn ensure(dir: &Path, wait: Duration) -> Result<LocalDaemon, DaemonError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DaemonError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let daemon = LocalDaemon { dir: dir.to_path_buf() };
        let lock_path = dir.join("ensure.lock");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        // Held until `lock` is dropped at the end of this function.
        lock.lock().map_err(io(&lock_path))?;
        if daemon.answers() {
            return Ok(daemon);
        }
        let log_path = dir.join("dockerd.log");
        let pid_path = dir.join("dockerd.pid");
        let mut child = match read_pid(&pid_path).filter(|pid| is_live_dockerd(*pid)) {
            // A daemon of ours is running but not answering yet (still
            // starting, or restarted by someone else): wait for it.
            Some(_) => None,
            None => {
                // Leftovers of a daemon that died; dockerd refuses to start
                // while its pid file names a live process, and a stale socket
                // would make it fail to listen.
                let _ = fs::remove_file(&pid_path);
                let _ = fs::remove_file(daemon.socket());
                // The same for the containerd dockerd manages: dockerd would
                // wait for a dead (zombie) containerd named by its pid file.
                let containerd = dir.join("exec").join("containerd");
                if read_pid(&containerd.join("containerd.pid")).is_none_or(|pid| !is_live(pid, "containerd")) {
                    let _ = fs::remove_file(containerd.join("containerd.pid"));
                    let _ = fs::remove_file(containerd.join("containerd.sock"));
                }
                Some(daemon.spawn(&log_path)?)
            }
        };
        let started = Instant::now();
        loop {
            if daemon.answers() {
                return Ok(daemon);
            }
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(DaemonError::Exited {
                    status: status.to_string(),
                    socket: daemon.socket(),
                    log_tail: tail(&log_path, 20),
                });
            }
            if started.elapsed() > wait {
                return Err(DaemonError::Timeout {
                    socket: daemon.socket(),
                    secs: wait.as_secs(),
                    log_tail: tail(&log_path, 20),
                });
            }
            // Waiting for an external daemon to come up: there is no event to
            // wait on but its socket answering.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// The engine address for [`crate::DockerConfig::host`]: `unix://<socket>`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The pid of the running daemon, if its pid file names a live process.
    pub fn pid(&self) -> Option<u32> {
        read_pid(&self.dir.join("dockerd.pid")).filter(|pid| is_live_dockerd(*pid))
    }

    /// Stops the daemon (SIGTERM, then waits at most `wait` for it to exit).
    /// Returns false when no daemon was running. Containers it runs stop
    /// with it.
    pub fn stop(&self, wait: Duration) -> Result<bool, DaemonError> {
        let Some(pid) = self.pid() else { return Ok(false) };
        let pid_i32 = i32::try_from(pid).unwrap_or(i32::MAX);
        if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid_i32), nix::sys::signal::Signal::SIGTERM) {
            return Err(DaemonError::Signal { pid, detail: e.to_string() });
        }
        let started = Instant::now();
        while is_live_dockerd(pid) {
            if started.elapsed() > wait {
                return Err(DaemonError::Signal {
                    pid,
                    detail: format!("still running {} s after SIGTERM", wait.as_secs()),
                });
            }
            // No event tells when another process exits; poll its /proc entry.
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(true)
    }

    /// True when the daemon answers `GET /_ping` with `OK`.
    pub fn answers(&self) -> bool {
        ping(&self.socket())
    }

    fn spawn(&self, log_path: &Path) -> Result<std::process::Child, DaemonError> {
        let d = &self.dir;
        // A fresh log per daemon: its tail explains this start, not an old one.
        let log = File::create(log_path).map_err(|source| DaemonError::Io { path: log_path.to_path_buf(), source })?;
        let log2 = log.try_clone().map_err(|source| DaemonError::Io { path: log_path.to_path_buf(), source })?;
        Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(self.host())
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-masq=false",
                "--storage-driver=overlay2",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C aimed at the test run does not
            // take the shared daemon down half-way.
            .process_group(0)
            .spawn()
            .map_err(DaemonError::Spawn)
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// True when `pid` is a running (not zombie) `dockerd`.
fn is_live_dockerd(pid: u32) -> bool {
    is_live(pid, "dockerd")
}

/// True when `pid` is a running (not zombie) process named `name`: a pid
/// file can outlive its process, and the pid can be reused.
fn is_live(pid: u32, name: &str) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (comm) state …`; comm may contain spaces and parentheses.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { return false };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
    comm == name && !matches!(state, "Z" | "X")
}

/// `GET /_ping` over the unix socket, with short timeouts.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
}

/// The last `n` lines of a file (empty when it cannot be read).
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
