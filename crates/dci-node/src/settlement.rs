//! Which ledger a node settles on (R-LG6), and the one value the gateway
//! holds for it, whatever the backend: [`NodeLedger`].
//!
//! - `embedded`: the SQLite ledger in `<data-dir>/ledger.db` holds the money
//!   and the off-chain books (API keys).
//! - `evm`: the DCI contracts on an EVM chain hold the money
//!   (`dci_chain::EvmLedger`); `ledger.db` still keeps what the chain has no
//!   place for — API keys bound to accounts — and nothing else is read from
//!   it. The chain backend lives on its own OS thread ([`OnThread`]): its
//!   API blocks on its own tokio runtime, which must neither run nor be
//!   dropped inside an async task.
//!
//! The choice is one line of `<data-dir>/settlement.toml` (`backend =
//! "embedded"` or `backend = "evm"`), or `dci devnet --settlement …`;
//! `dci chain deploy` writes the `[evm]` section. Users keep the same CLI.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use dci_chain::Deployment;
use dci_ledger::{
    AccountView, EmbeddedLedger, LedgerError, LedgerOp, OpOutcome, Params, RewardExplanation, Settlement, StakeRole,
    SupplyReport, UnbondingEntry, accounts,
};
use dci_model::{AccountId, Amount};
use serde::{Deserialize, Serialize};

/// Name of the settlement config in the data directory.
pub const SETTLEMENT_FILE: &str = "settlement.toml";
/// Where a devnet's own anvil keeps its chain between runs.
pub const ANVIL_STATE_FILE: &str = "anvil-state.json";

/// The ledger backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite, single node (the default).
    #[default]
    Embedded,
    /// The DCI contracts on an EVM chain.
    Evm,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "embedded" => Ok(Backend::Embedded),
            "evm" => Ok(Backend::Evm),
            other => Err(format!("expected embedded or evm, found {other:?}")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Embedded => "embedded",
            Backend::Evm => "evm",
        })
    }
}

/// `<data-dir>/settlement.toml` (0600: it holds the settler's key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// `embedded` or `evm`: the one line that switches backends.
    pub backend: Backend,
    /// The chain, for `backend = "evm"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm: Option<EvmConfig>,
}

/// Where the `evm` backend's chain and contracts are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmConfig {
    /// The chain's JSON-RPC endpoint. With `anvil = true` the devnet
    /// rewrites it at each start (its anvil listens on a free port).
    pub rpc_url: String,
    /// `dci devnet` starts and stops its own anvil, whose chain is kept in
    /// `<data-dir>/anvil-state.json` between clean stops.
    #[serde(default)]
    pub anvil: bool,
    /// The settler's private key (hex): the only key allowed to submit
    /// batches to the ledger contract.
    pub settler_key: String,
    /// The deployed contracts (`dci chain deploy` writes them); absent: the
    /// devnet deploys them on its anvil at the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
}

impl EvmConfig {
    /// A devnet's own anvil, settled by anvil's first dev key (public
    /// knowledge: never use it on a real chain).
    pub fn devnet_anvil() -> EvmConfig {
        EvmConfig {
            rpc_url: String::new(),
            anvil: true,
            settler_key: dci_chain::DEV_KEYS[0].to_owned(),
            deployment: None,
        }
    }
}

impl SettlementConfig {
    /// The config file of `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(SETTLEMENT_FILE)
    }

    /// Reads `data_dir`'s config; the default (embedded) if there is none.
    pub fn load(data_dir: &Path) -> anyhow::Result<SettlementConfig> {
        let path = SettlementConfig::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let c: SettlementConfig =
                    toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
                c.validate().with_context(|| format!("checking {}", path.display()))?;
                Ok(c)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SettlementConfig::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes it to `data_dir` (0600).
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let text = format!(
            "# The ledger backend of this node: \"embedded\" (SQLite, ledger.db) or \"evm\" (contracts on a chain).\n{}",
            toml::to_string(self)?
        );
        crate::devnet::write_private(&SettlementConfig::path(data_dir), &text)
    }

    /// An `evm` backend needs its `[evm]` section, unless a devnet fills it in.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(e) = &self.evm {
            anyhow::ensure!(
                e.anvil || !e.rpc_url.is_empty(),
                "evm.rpc_url: expected a JSON-RPC URL (or anvil = true), found nothing"
            );
        }
        Ok(())
    }
}

type Job = Box<dyn FnOnce(&mut dyn Settlement) + Send>;

/// A [`Settlement`] that lives on its own OS thread, built there and dropped
/// there: every call is sent to the thread and waited for. For backends
/// whose API blocks on a runtime of their own (`dci_chain::EvmLedger`).
pub struct OnThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OnThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnThread").finish_non_exhaustive()
    }
}

fn gone() -> LedgerError {
    LedgerError::Storage("the settlement backend's thread has stopped".into())
}

impl OnThread {
    /// Starts a thread named `name` that builds the backend with `make`;
    /// returns once it is built (or `make`'s error).
    pub fn spawn<S: Settlement + 'static>(
        name: &str,
        make: impl FnOnce() -> Result<S, LedgerError> + Send + 'static,
    ) -> Result<OnThread, LedgerError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut backend = match make() {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                for job in rx {
                    job(&mut backend);
                }
            })
            .map_err(|e| LedgerError::Storage(format!("cannot start the {name} thread: {e}")))?;
        ready.recv().map_err(|_| gone())??;
        Ok(OnThread { jobs: Some(jobs), thread: Some(thread) })
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Settlement) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |s: &mut dyn Settlement| {
            let _ = tx.send(f(s));
        });
        self.jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

impl Drop for OnThread {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Settlement for OnThread {
    fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        let a = account.clone();
        self.call(move |s| s.balance(&a))
    }
    fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError> {
        let a = account.clone();
        self.call(move |s| s.account(&a))
    }
    fn staked(&self, account: &AccountId, role: StakeRole) -> Result<Amount, LedgerError> {
        let a = account.clone();
        self.call(move |s| s.staked(&a, role))
    }
    fn unbonding(&self, account: &AccountId) -> Result<Vec<UnbondingEntry>, LedgerError> {
        let a = account.clone();
        self.call(move |s| s.unbonding(&a))
    }
    fn params(&self) -> Result<Params, LedgerError> {
        self.call(|s| s.params())
    }
    fn reward_breakdown(&self, epoch: u64, account: &AccountId) -> Result<RewardExplanation, LedgerError> {
        let a = account.clone();
        self.call(move |s| s.reward_breakdown(epoch, &a))
    }
    fn check_invariant(&self) -> Result<SupplyReport, LedgerError> {
        self.call(|s| s.check_invariant())
    }
    fn apply(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        let ops = ops.to_vec();
        self.call(move |s| s.apply(&ops))
    }
}

/// The gateway's ledger: the embedded one, or a chain backend next to the
/// embedded books that keep the API keys.
pub struct NodeLedger {
    books: EmbeddedLedger,
    chain: Option<Chain>,
}

struct Chain {
    settlement: Box<dyn Settlement>,
    /// The latest distributed epoch (found on chain at start, then tracked).
    last_epoch: Option<u64>,
}

impl NodeLedger {
    /// Everything in the embedded ledger.
    pub fn embedded(ledger: EmbeddedLedger) -> NodeLedger {
        NodeLedger { books: ledger, chain: None }
    }

    /// Money on `chain`, API keys in `books`.
    pub fn on_chain(books: EmbeddedLedger, chain: Box<dyn Settlement>) -> Result<NodeLedger, LedgerError> {
        let last_epoch = last_distributed(chain.as_ref())?;
        Ok(NodeLedger { books, chain: Some(Chain { settlement: chain, last_epoch }) })
    }

    /// Which backend holds the money.
    pub fn backend(&self) -> Backend {
        if self.chain.is_some() { Backend::Evm } else { Backend::Embedded }
    }

    /// Creates an API key for `account` (kept in the embedded books).
    pub fn create_api_key(&mut self, account: &AccountId, rng_bytes: [u8; 32]) -> Result<String, LedgerError> {
        self.books.create_api_key(account, rng_bytes)
    }

    /// The account an API key is bound to.
    pub fn account_for_api_key(&self, key: &str) -> Result<Option<AccountId>, LedgerError> {
        self.books.account_for_api_key(key)
    }

    /// The latest distributed epoch, if any.
    pub fn last_epoch(&self) -> Result<Option<u64>, LedgerError> {
        match &self.chain {
            Some(c) => Ok(c.last_epoch),
            None => self.books.last_epoch(),
        }
    }

    fn money(&self) -> &dyn Settlement {
        match &self.chain {
            Some(c) => c.settlement.as_ref(),
            None => &self.books,
        }
    }
}

/// Epochs are distributed in order from 0, so the first one not distributed
/// is found with O(log n) questions.
fn last_distributed(s: &dyn Settlement) -> Result<Option<u64>, LedgerError> {
    let done = |e: u64| match s.reward_breakdown(e, &accounts::treasury()) {
        Ok(_) => Ok(true),
        Err(LedgerError::EpochNotDistributed(_)) => Ok(false),
        // Distributed by an earlier process: the chain keeps no breakdown.
        Err(LedgerError::InvalidInput(_)) => Ok(true),
        Err(e) => Err(e),
    };
    if !done(0)? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (0u64, 1u64);
    while done(hi)? {
        lo = hi;
        hi = hi.saturating_mul(2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if done(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Some(lo))
}

impl Settlement for NodeLedger {
    fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        self.money().balance(account)
    }
    fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError> {
        self.money().account(account)
    }
    fn staked(&self, account: &AccountId, role: StakeRole) -> Result<Amount, LedgerError> {
        self.money().staked(account, role)
    }
    fn unbonding(&self, account: &AccountId) -> Result<Vec<UnbondingEntry>, LedgerError> {
        self.money().unbonding(account)
    }
    fn params(&self) -> Result<Params, LedgerError> {
        self.money().params()
    }
    fn reward_breakdown(&self, epoch: u64, account: &AccountId) -> Result<RewardExplanation, LedgerError> {
        self.money().reward_breakdown(epoch, account)
    }
    fn check_invariant(&self) -> Result<SupplyReport, LedgerError> {
        self.money().check_invariant()
    }
    fn apply(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        match &mut self.chain {
            None => self.books.apply(ops),
            Some(c) => {
                let out = c.settlement.apply(ops)?;
                for op in ops {
                    if let LedgerOp::DistributeEpoch { epoch, .. } = op {
                        c.last_epoch = c.last_epoch.max(Some(*epoch));
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Runs `f`, which may block on the chain, without stalling the async
/// workers: on a multi-threaded runtime the worker hands its other tasks
/// over first (`block_in_place`).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dci_ledger::{EpochInput, Genesis, Transfer};

    fn account(s: &str) -> AccountId {
        AccountId::new(s).unwrap()
    }

    /// A backend on its own thread behaves as the backend itself, and the
    /// node ledger finds the last distributed epoch on it.
    #[test]
    fn a_backend_on_a_thread_answers_as_itself() {
        let chain = OnThread::spawn("test-ledger", || EmbeddedLedger::open_in_memory(&Genesis::default())).unwrap();
        let mut l = NodeLedger::on_chain(EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap(), Box::new(chain))
            .unwrap();
        assert_eq!(l.backend(), Backend::Evm);
        assert_eq!(l.last_epoch().unwrap(), None);
        let bob = account("consumer:bob");
        l.transfer(&accounts::liquidity(), &bob, Amount::ath(5)).unwrap();
        assert_eq!(l.balance(&bob).unwrap(), Amount::ath(5));
        let e = l.transfer(&bob, &accounts::liquidity(), Amount::ath(6)).unwrap_err();
        assert!(matches!(e, LedgerError::InsufficientFunds { .. }), "{e:?}");
        let t = Transfer { from: bob.clone(), to: account("consumer:carol"), amount: Amount::ath(9) };
        assert!(l.apply(&[LedgerOp::Transfer(t)]).is_err());
        for epoch in 0..5 {
            l.distribute_epoch(epoch, &EpochInput::default()).unwrap();
        }
        assert_eq!(l.last_epoch().unwrap(), Some(4));
        l.check_invariant().unwrap();
        // The API keys stay in the books.
        let key = l.create_api_key(&bob, [7; 32]).unwrap();
        assert_eq!(l.account_for_api_key(&key).unwrap(), Some(bob));
    }

    #[test]
    fn the_last_epoch_is_found_by_bisection() {
        for n in [0u64, 1, 2, 3, 7, 8, 9, 33] {
            let mut chain = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
            for e in 0..n {
                chain.distribute_epoch(e, &EpochInput::default()).unwrap();
            }
            assert_eq!(last_distributed(&chain).unwrap(), n.checked_sub(1), "{n} epochs");
        }
    }

    #[test]
    fn the_config_switches_backends_with_one_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SettlementConfig::load(dir.path()).unwrap().backend, Backend::Embedded);
        let c = SettlementConfig { backend: Backend::Evm, evm: Some(EvmConfig::devnet_anvil()) };
        c.save(dir.path()).unwrap();
        assert_eq!(SettlementConfig::load(dir.path()).unwrap(), c);
        let path = SettlementConfig::path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap().replace("backend = \"evm\"", "backend = \"embedded\"");
        std::fs::write(&path, text).unwrap();
        assert_eq!(SettlementConfig::load(dir.path()).unwrap().backend, Backend::Embedded);
        std::fs::write(&path, "backend = \"evm\"\nspeed = 3\n").unwrap();
        let e = format!("{:#}", SettlementConfig::load(dir.path()).unwrap_err());
        assert!(e.contains("speed"), "{e}");
    }
}
