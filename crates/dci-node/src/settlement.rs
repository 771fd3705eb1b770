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
//! On `evm`, session settlement is batched (R-PF6): a receipt's batch is
//! checked against the chain after what is already queued, answered at
//! once, and queued (in `ledger.db`, table `settlement_queue`, with the id
//! and nonce of the batch carrying it once it is sent); [`NodeLedger::flush`]
//! sends the queue as ONE transaction (the epoch clock at each epoch's end,
//! the devnet at shutdown, the queue itself at `max_queue` ops). A queue
//! left by a stopped process is resolved and sent at start. Reads overlay
//! the queue, so `dci balance` shows what the consumer will have once it is
//! on chain. Other ops go on chain at once (with the queue when they need it).
//!
//! The choice is one line of `<data-dir>/settlement.toml` (`backend =
//! "embedded"` or `backend = "evm"`), or `dci devnet --settlement …`;
//! `dci chain deploy` writes the `[evm]` section. Users keep the same CLI.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use dci_chain::{Deployment, EvmLedger};
use dci_ledger::{
    AccountView, EmbeddedLedger, LedgerError, LedgerOp, OpOutcome, Params, RewardExplanation, Settlement, StakeRole,
    SupplyReport, UnbondingEntry, accounts,
};
use dci_model::{AccountId, Amount};
use dci_proto::{ChainDomain, EndpointRecord, RegistryDomain};
use serde::{Deserialize, Serialize};

use crate::store::RecordStore;

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

/// When the `evm` backend sends queued session settlement to the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flush {
    /// At the end of each epoch (before its rewards), at shutdown, and
    /// whenever `max_queue` ops wait: one transaction for all of them.
    #[default]
    Epoch,
    /// As each session stops: one transaction per receipt (tests, debugging).
    Immediate,
}

/// Settlement ops queued at most before a flush (`max_queue`'s default).
pub const DEFAULT_MAX_QUEUE: usize = 500;

fn default_max_queue() -> usize {
    DEFAULT_MAX_QUEUE
}

/// `<data-dir>/settlement.toml` (0600: it holds the settler's key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// `embedded` or `evm`: the one line that switches backends.
    pub backend: Backend,
    /// On `evm`: `epoch` (queue session settlement, send it as one batch
    /// per epoch) or `immediate` (one transaction per session stop).
    #[serde(default)]
    pub flush: Flush,
    /// On `evm`: send the queue as soon as this many ops wait (at least 1).
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
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

impl Default for SettlementConfig {
    fn default() -> SettlementConfig {
        SettlementConfig { backend: Backend::Embedded, flush: Flush::Epoch, max_queue: DEFAULT_MAX_QUEUE, evm: None }
    }
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
        crate::keys::write_private(&SettlementConfig::path(data_dir), &text)
    }

    /// An `evm` backend needs its `[evm]` section, unless a devnet fills it in.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_queue >= 1, "max_queue: expected at least 1 op, found 0");
        if let Some(e) = &self.evm {
            anyhow::ensure!(
                e.anvil || !e.rpc_url.is_empty(),
                "evm.rpc_url: expected a JSON-RPC URL (or anvil = true), found nothing"
            );
        }
        Ok(())
    }
}

/// The books' file in a gateway's data directory.
pub const LEDGER_FILE: &str = "ledger.db";

/// Opens the ledger of the gateway whose data directory is `dir`, as its
/// `settlement.toml` says: the embedded books (`ledger.db`, created with
/// `genesis` if new; an existing one must have been created with it), and
/// on `evm` the deployed contracts next to them. Blocking: the chain
/// backend connects here.
pub fn open(dir: &Path, genesis: &dci_ledger::Genesis) -> anyhow::Result<NodeLedger> {
    let settings = SettlementConfig::load(dir)?;
    let path = dir.join(LEDGER_FILE);
    let books = match EmbeddedLedger::open(&path, genesis) {
        Ok(b) => b,
        Err(LedgerError::GenesisMismatch { stored, given }) => anyhow::bail!(
            "the ledger {} was created with another genesis: expected {given} (dev_network as node.toml says), found {stored}",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("opening the ledger {}", path.display())),
    };
    match settings.backend {
        Backend::Embedded => Ok(NodeLedger::embedded(books)),
        Backend::Evm => {
            let file = SettlementConfig::path(dir);
            let evm = settings.evm.clone().with_context(|| {
                format!(
                    "{}: backend evm: expected an [evm] section (`dci chain deploy` writes it), found none",
                    file.display()
                )
            })?;
            let dep = evm.deployment.clone().with_context(|| {
                format!("{}: evm.deployment: expected the contracts' addresses (`dci chain deploy` writes them), found none", file.display())
            })?;
            let queue = RecordStore::open(&path, QUEUE_TABLE)?;
            let (url, key) = (evm.rpc_url.clone(), evm.settler_key.clone());
            let chain = OnThread::spawn("dci-chain", move || Ok(EvmLedger::connect(&url, &key, &dep)?))
                .with_context(|| format!("connecting to the dci ledger at {}", evm.rpc_url))?;
            Ok(NodeLedger::on_chain(books, chain, queue, &settings)?)
        }
    }
}

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// A value (a [`Settlement`] backend) that lives on its own OS thread,
/// built there and dropped there: every call is sent to the thread and
/// waited for. For backends whose API blocks on a runtime of their own
/// (`dci_chain::EvmLedger`).
pub struct OnThread<S> {
    jobs: Option<mpsc::Sender<Job<S>>>,
    thread: Option<JoinHandle<()>>,
}

impl<S> std::fmt::Debug for OnThread<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnThread").finish_non_exhaustive()
    }
}

fn gone() -> LedgerError {
    LedgerError::Storage("the settlement backend's thread has stopped".into())
}

impl<S: 'static> OnThread<S> {
    /// Starts a thread named `name` that builds the backend with `make`;
    /// returns once it is built (or `make`'s error).
    pub fn spawn(
        name: &str,
        make: impl FnOnce() -> Result<S, LedgerError> + Send + 'static,
    ) -> Result<OnThread<S>, LedgerError> {
        let (jobs, rx) = mpsc::channel::<Job<S>>();
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

    /// Runs `f` on the backend's thread and waits for its answer.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job<S> = Box::new(move |s: &mut S| {
            let _ = tx.send(f(s));
        });
        self.jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

impl<S> Drop for OnThread<S> {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<S: Settlement + 'static> Settlement for OnThread<S> {
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

/// Why an embedded gateway has no endpoint registry.
pub const EMBEDDED_MEMBERSHIP: &str = "this gateway's ledger is embedded, which has no endpoint registry: membership \
     comes from the network file; add the node's entry (`dci indexer id`, `dci checker id`) to every node's network.toml";

/// Where a gateway's ledger takes endpoint registrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryAt {
    /// The embedded backend: none ([`EMBEDDED_MEMBERSHIP`]).
    Embedded,
    /// A chain deployment made before the registry existed.
    NotDeployed,
    /// The registry of the chain ledger.
    Chain(RegistryDomain),
}

/// The gateway's ledger: the embedded one, or the chain backend next to
/// the embedded books that keep the API keys. On the chain, session
/// settlement is queued and sent in batches (see the module docs).
pub struct NodeLedger {
    books: EmbeddedLedger,
    chain: Option<Chain>,
}

/// The chain backend and its settlement queue.
struct Chain {
    evm: OnThread<EvmLedger>,
    /// The latest distributed epoch (found on chain at start, then tracked).
    last_epoch: Option<u64>,
    queue: Queue,
    store: RecordStore,
    flush: Flush,
    max_queue: usize,
}

/// Settlement accepted and not yet on chain, as persisted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Queue {
    /// The ops, in arrival order, with the outcomes they were accepted with.
    ops: Vec<Queued>,
    /// The batch carrying them, from just before it is sent until it is
    /// known to have landed or not.
    in_flight: Option<InFlight>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Queued {
    op: LedgerOp,
    outcome: OpOutcome,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct InFlight {
    #[serde(with = "hex_bytes")]
    id: [u8; 32],
    nonce: u64,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let v = hex::decode(&text).map_err(serde::de::Error::custom)?;
        v.try_into().map_err(|_| serde::de::Error::custom("expected 32 bytes of hex"))
    }
}

/// The record id of the queue in its store.
const QUEUE_ID: &str = "queue";
/// The table that holds the settlement queue (in `ledger.db`).
pub const QUEUE_TABLE: &str = "settlement_queue";

/// Is `ops` a session's settlement (a receipt, with its token charge),
/// which the chain backend queues?
fn is_settlement(ops: &[LedgerOp]) -> bool {
    ops.iter().any(|op| matches!(op, LedgerOp::Settle { .. }))
        && ops.iter().all(|op| matches!(op, LedgerOp::Settle { .. } | LedgerOp::Transfer(_)))
}

/// An error of a batch that followed `queued` queued ops, as if the batch
/// had been checked alone.
fn relative(e: LedgerError, queued: usize) -> LedgerError {
    match e {
        LedgerError::Batch { op, index, source } if index >= queued => {
            LedgerError::Batch { op, index: index - queued, source }
        }
        LedgerError::Batch { op, index, source } => LedgerError::Storage(format!(
            "queued settlement op {index} ({op}) no longer applies on chain, so nothing new is accepted until it is resolved: {source}"
        )),
        other => other,
    }
}

fn store_error(e: anyhow::Error) -> LedgerError {
    LedgerError::Storage(format!("the settlement queue: {e:#}"))
}

impl Chain {
    fn save(&self) -> Result<(), LedgerError> {
        self.store.put(QUEUE_ID, "node", self.queue.ops.len() as u64, &self.queue).map_err(store_error)
    }

    /// Finds out whether the batch in flight (sent by this process or a
    /// previous one) landed: if it did, the queue is done; if not, it is
    /// still to send (and that batch can never land any more).
    fn resolve_in_flight(&mut self) -> Result<(), LedgerError> {
        let Some(f) = self.queue.in_flight else { return Ok(()) };
        let landed = self.evm.call(move |l| Ok(l.resolve_batch(f.id.into(), f.nonce)?))?;
        if landed {
            tracing::info!(ops = self.queue.ops.len(), "the settlement batch in flight did land");
            self.queue = Queue::default();
        } else {
            tracing::warn!(ops = self.queue.ops.len(), "the settlement batch in flight did not land; it stays queued");
            self.queue.in_flight = None;
        }
        self.save()
    }

    /// The queued ops as they are sent: every settle before every
    /// transfer, so one netted call settles them all (settles only credit
    /// balances, so a transfer valid after them in arrival order still is).
    fn queued_ops(&self) -> Vec<LedgerOp> {
        let (settles, rest): (Vec<&Queued>, Vec<&Queued>) =
            self.queue.ops.iter().partition(|q| matches!(q.op, LedgerOp::Settle { .. }));
        settles.into_iter().chain(rest).map(|q| q.op.clone()).collect()
    }

    /// Checks a settlement batch after the queue, queues it, and flushes
    /// when the queue is full.
    fn enqueue(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        let n = self.queue.ops.len();
        let mut all: Vec<LedgerOp> = self.queue.ops.iter().map(|q| q.op.clone()).collect();
        all.extend_from_slice(ops);
        let outcomes = self.evm.call(move |l| l.check(&all)).map_err(|e| relative(e, n))?;
        let new = outcomes.get(n..).map(<[OpOutcome]>::to_vec).unwrap_or_default();
        self.queue.ops.extend(ops.iter().zip(&new).map(|(op, o)| Queued { op: op.clone(), outcome: o.clone() }));
        if let Err(e) = self.save() {
            self.queue.ops.truncate(n);
            return Err(e);
        }
        if self.queue.ops.len() >= self.max_queue
            && let Err(e) = self.send(&[])
        {
            tracing::warn!(error = %e, queued = self.queue.ops.len(), "the settlement queue is full and could not be sent; it stays queued");
        }
        Ok(new)
    }

    /// Applies ops that are not queued. With settlement queued, they are
    /// checked after it (what the user sees); they go alone if the queue
    /// still applies after them, or else in one batch with it (they need
    /// what it pays).
    fn apply_now(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        let apply = |c: &Chain, ops: Vec<LedgerOp>| c.evm.call(move |l| l.apply(&ops));
        if self.queue.ops.is_empty() {
            return apply(self, ops.to_vec());
        }
        let queued = self.queued_ops();
        let n = queued.len();
        let after: Vec<LedgerOp> = queued.iter().chain(ops).cloned().collect();
        self.evm.call(move |l| l.check(&after)).map_err(|e| relative(e, n))?;
        let before: Vec<LedgerOp> = ops.iter().chain(&queued).cloned().collect();
        if self.evm.call(move |l| l.check(&before)).is_ok() {
            return apply(self, ops.to_vec());
        }
        let out = self.send(ops)?;
        Ok(out.get(n..).map(<[OpOutcome]>::to_vec).unwrap_or_default())
    }

    /// Sends the queue, then `extra`, as ONE batch; returns its outcomes.
    fn send(&mut self, extra: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        let mut ops = self.queued_ops();
        ops.extend_from_slice(extra);
        let prepared = self.evm.call(move |l| l.prepare(&ops))?;
        self.queue.in_flight = Some(InFlight { id: prepared.id().0, nonce: prepared.nonce() });
        if let Err(e) = self.save() {
            self.queue.in_flight = None;
            return Err(e);
        }
        let n = self.queue.ops.len();
        let outcomes = self.evm.call(move |l| l.submit_prepared(prepared))?;
        tracing::info!(queued = n, extra = extra.len(), "settlement sent on chain in one batch");
        self.queue = Queue::default();
        if let Err(e) = self.save() {
            // The batch landed: the next start finds it applied and clears the queue.
            tracing::error!(error = %e, "the settlement queue could not be cleared after its batch landed");
        }
        Ok(outcomes)
    }

    /// What the queue will add to (first) and take from (second) `account`'s
    /// balance, and release from its escrow (third).
    fn pending_for(&self, account: &AccountId) -> Result<(Amount, Amount, Amount), LedgerError> {
        let (mut plus, mut minus, mut released) = (Amount::ZERO, Amount::ZERO, Amount::ZERO);
        for q in &self.queue.ops {
            match (&q.op, &q.outcome) {
                (LedgerOp::Settle { receipt, payout, .. }, OpOutcome::Settled(s)) => {
                    if &receipt.receipt.consumer == account {
                        released = released.checked_add(s.charged.checked_add(s.refunded)?)?;
                        plus = plus.checked_add(s.refunded)?;
                    }
                    let shares = [
                        (payout.clone(), s.provider),
                        (accounts::checker_fees(), s.checkers),
                        (accounts::indexer_fees(), s.indexers),
                        (accounts::treasury(), s.treasury),
                    ];
                    for (to, a) in shares {
                        if &to == account {
                            plus = plus.checked_add(a)?;
                        }
                    }
                }
                (LedgerOp::Transfer(t), _) => {
                    if &t.from == account {
                        minus = minus.checked_add(t.amount)?;
                    }
                    if &t.to == account {
                        plus = plus.checked_add(t.amount)?;
                    }
                }
                _ => {}
            }
        }
        Ok((plus, minus, released))
    }
}

/// `base + plus − minus`.
fn overlay(base: Amount, plus: Amount, minus: Amount) -> Result<Amount, LedgerError> {
    Ok(base.checked_add(plus)?.checked_sub(minus)?)
}

impl NodeLedger {
    /// Everything in the embedded ledger.
    pub fn embedded(ledger: EmbeddedLedger) -> NodeLedger {
        NodeLedger { books: ledger, chain: None }
    }

    /// Money on the chain `evm`, API keys in `books`, the settlement queue
    /// in `store` (flushed as `config` says). A queue left by an earlier
    /// process is resolved and sent now.
    pub fn on_chain(
        books: EmbeddedLedger,
        evm: OnThread<EvmLedger>,
        store: RecordStore,
        config: &SettlementConfig,
    ) -> Result<NodeLedger, LedgerError> {
        let last_epoch = last_distributed(&evm)?;
        let queue: Queue = store.get(QUEUE_ID).map_err(store_error)?.unwrap_or_default();
        let mut chain =
            Chain { evm, last_epoch, queue, store, flush: config.flush, max_queue: config.max_queue.max(1) };
        chain.resolve_in_flight()?;
        if !chain.queue.ops.is_empty() {
            tracing::info!(ops = chain.queue.ops.len(), "sending the settlement queued by the previous run");
            chain.send(&[])?;
        }
        Ok(NodeLedger { books, chain: Some(chain) })
    }

    /// Which backend holds the money.
    pub fn backend(&self) -> Backend {
        if self.chain.is_some() { Backend::Evm } else { Backend::Embedded }
    }

    /// Sends the queued settlement to the chain as one batch (nothing to do
    /// on the embedded ledger, which applies everything at once). Returns
    /// the number of ops sent.
    pub fn flush(&mut self) -> Result<usize, LedgerError> {
        let Some(c) = &mut self.chain else { return Ok(0) };
        c.resolve_in_flight()?;
        let n = c.queue.ops.len();
        if n > 0 {
            c.send(&[])?;
        }
        Ok(n)
    }

    /// Settlement ops accepted and not yet on chain.
    pub fn queued(&self) -> usize {
        self.chain.as_ref().map_or(0, |c| c.queue.ops.len())
    }

    /// The ledger contract a committee member's chain signature is for (on
    /// the chain backend).
    pub fn chain_domain(&self) -> Result<Option<ChainDomain>, LedgerError> {
        let Some(c) = &self.chain else { return Ok(None) };
        let dep = c.evm.call(|l| Ok(l.deployment().clone()))?;
        Ok(Some(ChainDomain { chain_id: dep.chain_id, ledger: dep.ledger.into_array() }))
    }

    /// Where nodes register their endpoints (issue 15): nowhere on the
    /// embedded backend (membership is the network file), else the chain
    /// deployment's registry, if it has one.
    pub fn registry(&self) -> Result<RegistryAt, LedgerError> {
        let Some(c) = &self.chain else { return Ok(RegistryAt::Embedded) };
        let domain = c.evm.call(|l| Ok(l.registry_domain()))?;
        Ok(domain.map_or(RegistryAt::NotDeployed, RegistryAt::Chain))
    }

    /// What the chain's registry would answer a node-signed endpoint record
    /// now (verified and simulated, nothing sent); the errors as
    /// [`NodeLedger::register_endpoint`]'s.
    pub fn check_endpoint(
        &self,
        record: EndpointRecord,
        signature: Vec<u8>,
    ) -> Result<Result<(), dci_chain::ChainError>, LedgerError> {
        let Some(c) = &self.chain else {
            return Ok(Err(dci_chain::ChainError::Input(EMBEDDED_MEMBERSHIP.into())));
        };
        c.evm.call(move |l| Ok(l.check_endpoint(&record, &signature)))
    }

    /// Publishes a node-signed endpoint record in the chain's registry, on
    /// the ledger's thread (the settler key sends one transaction at a
    /// time, in order with the settlement batches). The outer error: the
    /// ledger thread is gone; the inner one: the chain's answer.
    pub fn register_endpoint(
        &mut self,
        record: EndpointRecord,
        signature: Vec<u8>,
    ) -> Result<Result<[u8; 32], dci_chain::ChainError>, LedgerError> {
        let Some(c) = &self.chain else {
            return Ok(Err(dci_chain::ChainError::Input(EMBEDDED_MEMBERSHIP.into())));
        };
        c.evm.call(move |l| Ok(l.register_endpoint(&record, &signature).map(|h| h.0)))
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
            Some(c) => &c.evm,
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

/// Reads on the chain backend show the books as they will be once the
/// queued settlement is on chain: balances and escrows include it.
impl Settlement for NodeLedger {
    fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        let base = self.money().balance(account)?;
        match &self.chain {
            Some(c) => {
                let (plus, minus, _) = c.pending_for(account)?;
                overlay(base, plus, minus)
            }
            None => Ok(base),
        }
    }
    fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError> {
        let mut view = self.money().account(account);
        if let Some(c) = &self.chain {
            let (plus, minus, released) = c.pending_for(account)?;
            if plus.is_zero() && minus.is_zero() && released.is_zero() {
                return view;
            }
            // An account first paid by the queue is known already.
            if let Err(LedgerError::UnknownAccount(_)) = view {
                view = Ok(AccountView::default());
            }
            let mut v = view?;
            v.balance = overlay(v.balance, plus, minus)?;
            v.escrowed = v.escrowed.checked_sub(released)?;
            return Ok(v);
        }
        view
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
        let Some(c) = &mut self.chain else { return self.books.apply(ops) };
        c.resolve_in_flight()?;
        let out = if c.flush == Flush::Epoch && is_settlement(ops) { c.enqueue(ops)? } else { c.apply_now(ops)? };
        for op in ops {
            if let LedgerOp::DistributeEpoch { epoch, .. } = op {
                c.last_epoch = c.last_epoch.max(Some(*epoch));
            }
        }
        Ok(out)
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
    /// last distributed epoch is found on it.
    #[test]
    fn a_backend_on_a_thread_answers_as_itself() {
        let mut l = OnThread::spawn("test-ledger", || EmbeddedLedger::open_in_memory(&Genesis::default())).unwrap();
        assert_eq!(last_distributed(&l).unwrap(), None);
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
        assert_eq!(last_distributed(&l).unwrap(), Some(4));
        l.check_invariant().unwrap();
        // A backend-specific call runs on the thread too.
        let key = l.call(move |b| b.create_api_key(&bob, [7; 32])).unwrap();
        assert!(l.call(move |b| b.account_for_api_key(&key)).unwrap().is_some());
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
        let c = SettlementConfig {
            backend: Backend::Evm,
            evm: Some(EvmConfig::devnet_anvil()),
            ..SettlementConfig::default()
        };
        c.save(dir.path()).unwrap();
        assert_eq!(SettlementConfig::load(dir.path()).unwrap(), c);
        let path = SettlementConfig::path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap().replace("backend = \"evm\"", "backend = \"embedded\"");
        std::fs::write(&path, text).unwrap();
        assert_eq!(SettlementConfig::load(dir.path()).unwrap().backend, Backend::Embedded);
        std::fs::write(&path, "backend = \"evm\"\nspeed = 3\n").unwrap();
        let e = format!("{:#}", SettlementConfig::load(dir.path()).unwrap_err());
        assert!(e.contains("speed"), "{e}");
        // The flush cadence: epoch by default, immediate on request, and a
        // queue bound of at least one op.
        std::fs::write(&path, "backend = \"evm\"\n").unwrap();
        let c = SettlementConfig::load(dir.path()).unwrap();
        assert_eq!((c.flush, c.max_queue), (Flush::Epoch, DEFAULT_MAX_QUEUE));
        std::fs::write(&path, "backend = \"evm\"\nflush = \"immediate\"\nmax_queue = 7\n").unwrap();
        let c = SettlementConfig::load(dir.path()).unwrap();
        assert_eq!((c.flush, c.max_queue), (Flush::Immediate, 7));
        for (text, expect) in [("max_queue = 0\n", "max_queue"), ("flush = \"hourly\"\n", "flush")] {
            std::fs::write(&path, format!("backend = \"evm\"\n{text}")).unwrap();
            let e = format!("{:#}", SettlementConfig::load(dir.path()).unwrap_err());
            assert!(e.contains(expect), "{text}: {e}");
        }
    }

    /// Only a session's settlement (a receipt, with its token charge) is
    /// queued; everything else goes on chain at once.
    #[test]
    fn only_session_settlement_is_queued() {
        let (bob, carol) = (account("consumer:bob"), account("consumer:carol"));
        let t = LedgerOp::Transfer(Transfer { from: bob.clone(), to: carol, amount: Amount::ath(1) });
        let id = dci_proto::Identity::from_secret([3; 32]);
        let receipt = dci_proto::UsageReceipt {
            session: dci_model::SessionId([1; 16]),
            container: id.id(),
            consumer: bob.clone(),
            service: dci_model::ServiceName::new("render").unwrap(),
            started_at: dci_model::Timestamp(0),
            ended_at: dci_model::Timestamp(1000),
            seconds: 1,
            price: "1".parse().unwrap(),
            amount: Amount(1),
        }
        .sign(&id);
        let settle = LedgerOp::Settle { receipt, acker: id.id(), payout: bob.clone(), extra: Amount::ZERO };
        let lock = LedgerOp::LockEscrow { session: dci_model::SessionId([2; 16]), consumer: bob, amount: Amount(5) };
        let cases: [(&[LedgerOp], bool); 6] = [
            (&[], false),
            (std::slice::from_ref(&settle), true),
            (&[settle.clone(), t.clone(), t.clone()], true),
            (std::slice::from_ref(&t), false),
            (&[settle.clone(), lock.clone()], false),
            (&[LedgerOp::Refund { session: dci_model::SessionId([1; 16]) }], false),
        ];
        for (ops, queued) in cases {
            assert_eq!(is_settlement(ops), queued, "{ops:?}");
        }
    }

    /// An error of ops checked after the queue names them as if alone; one
    /// in the queue itself says so.
    #[test]
    fn errors_after_the_queue_name_the_callers_op() {
        let inner = || Box::new(LedgerError::ZeroAmount);
        match relative(LedgerError::Batch { op: "transfer", index: 4, source: inner() }, 3) {
            LedgerError::Batch { op: "transfer", index: 1, .. } => {}
            other => panic!("{other:?}"),
        }
        let e = relative(LedgerError::Batch { op: "settle", index: 1, source: inner() }, 3);
        assert!(matches!(&e, LedgerError::Storage(m) if m.contains("queued settlement op 1")), "{e:?}");
        assert!(matches!(relative(LedgerError::ZeroAmount, 3), LedgerError::ZeroAmount));
    }

    /// The queue and its batch in flight survive a restart of the node.
    #[test]
    fn the_queue_is_kept_in_its_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let t = Transfer { from: account("consumer:bob"), to: account("consumer:carol"), amount: Amount::ath(2) };
        let q = Queue {
            ops: vec![Queued { op: LedgerOp::Transfer(t), outcome: OpOutcome::Done }],
            in_flight: Some(InFlight { id: [9; 32], nonce: 41 }),
        };
        RecordStore::open(&path, QUEUE_TABLE).unwrap().put(QUEUE_ID, "node", 1, &q).unwrap();
        let back: Queue = RecordStore::open(&path, QUEUE_TABLE).unwrap().get(QUEUE_ID).unwrap().unwrap();
        assert_eq!(back.ops.len(), 1);
        assert_eq!(back.ops[0].op, q.ops[0].op);
        let f = back.in_flight.unwrap();
        assert_eq!((f.id, f.nonce), ([9; 32], 41));
    }

    #[test]
    fn a_gateway_opens_its_books_only_with_the_genesis_they_were_created_with() {
        let dir = tempfile::tempdir().unwrap();
        let books = open(dir.path(), &Genesis::devnet()).unwrap();
        assert_eq!(books.backend(), Backend::Embedded);
        drop(books);
        let e = open(dir.path(), &Genesis::default()).err().unwrap().to_string();
        assert!(e.contains("was created with another genesis") && e.contains("dev_network"), "{e}");
        std::fs::write(SettlementConfig::path(dir.path()), "backend = \"evm\"\n").unwrap();
        let e = format!("{:#}", open(dir.path(), &Genesis::devnet()).err().unwrap());
        assert!(e.contains("backend evm: expected an [evm] section"), "{e}");
    }
}
