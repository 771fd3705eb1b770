//! A local anvil process for tests, benches and `dci devnet --settlement
//! evm`: started on a free port of 127.0.0.1, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::ChainError;

/// Overrides where anvil is found.
pub const ANVIL_ENV: &str = "DCI_ANVIL";
/// Overrides where cast is found.
pub const CAST_ENV: &str = "DCI_CAST";

/// The private keys of anvil's first dev accounts (public knowledge: never
/// use them on a real chain). Key 0 is the devnet deployer and settler.
pub const DEV_KEYS: [&str; 3] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1d1706367c2e68ca870fc3a0e1e3c3b1aeb8f",
];

/// `contracts/` of the workspace this crate was built in.
pub fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("contracts")
}

/// Where a tool installed by `cargo xtask deps` lives, or `env` overrides it.
pub fn tool_path(name: &str, env: &str) -> Result<PathBuf, ChainError> {
    let path = match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => contracts_dir().join("node_modules").join(".bin").join(name),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(ChainError::Missing {
            what: name.to_owned(),
            path: path.display().to_string(),
            hint: format!(", or set {env} to the {name} binary"),
        })
    }
}

/// How to start anvil.
#[derive(Clone, Debug, Default)]
pub struct AnvilOptions {
    /// `--state FILE`: load the chain from FILE if it exists and write it
    /// back on a clean stop ([`Anvil::stop`]).
    pub state: Option<PathBuf>,
    /// Mine only when asked (`evm_mine`), not on every transaction.
    pub no_mining: bool,
    /// Block gas limit (anvil's default is 30,000,000).
    pub gas_limit: Option<u64>,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
    /// Start anvil in a process group of its own, so a Ctrl-C at the
    /// terminal reaches only the parent, which then stops anvil itself
    /// (after settling what it must settle on it). The parent must stop it:
    /// if the parent is killed, anvil keeps running.
    pub own_process_group: bool,
}

/// A running anvil; killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Option<Child>,
    port: u16,
}

impl Anvil {
    /// Starts anvil with default options.
    pub fn start() -> Result<Anvil, ChainError> {
        Anvil::start_with(&AnvilOptions::default())
    }

    /// Starts anvil and waits until it listens.
    pub fn start_with(opts: &AnvilOptions) -> Result<Anvil, ChainError> {
        let bin = tool_path("anvil", ANVIL_ENV)?;
        let mut cmd = Command::new(&bin);
        let port = opts.port.unwrap_or(0).to_string();
        cmd.args(["--host", "127.0.0.1", "--port", &port, "--chain-id", "31337"]);
        if let Some(s) = &opts.state {
            cmd.arg("--state").arg(s);
        }
        if opts.own_process_group {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        if opts.no_mining {
            cmd.arg("--no-mining");
        }
        if let Some(g) = opts.gas_limit {
            cmd.args(["--gas-limit", &g.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ChainError::Process(format!("cannot start {}: {e}", bin.display())))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(ChainError::Process("anvil started without a stdout pipe".into()));
        };
        // A thread reads anvil's output for its whole life (a full pipe would
        // block anvil) and reports the port it listens on.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.trim().strip_prefix("Listening on ")
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(rest.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok()));
                }
            }
        });
        let mut anvil = Anvil { child: Some(child), port: 0 };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => {
                anvil.port = port;
                Ok(anvil)
            }
            Ok(None) => Err(ChainError::Process("anvil printed `Listening on` without a port".into())),
            Err(_) => Err(ChainError::Process(format!(
                "anvil ({}) exited or did not print `Listening on HOST:PORT` within 30 s",
                bin.display()
            ))),
        }
    }

    /// The HTTP RPC endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// anvil's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops anvil cleanly (SIGTERM, so `--state` is written) and waits.
    pub fn stop(mut self) -> Result<(), ChainError> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        if !sent {
            let _ = child.kill();
        }
        child.wait().map_err(|e| ChainError::Process(format!("waiting for anvil {pid}: {e}")))?;
        Ok(())
    }

    /// Kills anvil at once (SIGKILL: no state is written), like a crash.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
