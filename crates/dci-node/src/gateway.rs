//! The gateway role's driver: feeds the sans-IO core
//! ([`dci_gateway_core::Gateway`]) the time, node messages, the ledger's
//! answers, consumers' commands and ticks, and carries out its outputs:
//! messages go to the transport, ledger calls to one ledger thread (in the
//! order asked), records to `gateway.db` (before any later ledger call),
//! replies to the HTTP call that waits for them. Nothing here decides
//! anything the core could decide.
//!
//! [`GatewayNode`] is what the HTTP layer and the devnet hold: it implements
//! [`ConsumerApi`]; commands that touch sessions go through the core, reads
//! of the books and one-op ledger commands (balance, transfer, stake) go to
//! the ledger directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dci_gateway::api::{
    ApiError, BalanceInfo, CommitteeInfo, ContainerInfo, DeployRequest, NodeRegisterInfo, NodeRegisterRequest,
    NodeStakeRequest, OFFERS_WINDOW, OfferInfo, Page, RewardsInfo, SessionInfo, StakeRequest, TransferRequest,
    UnbondingInfo, ath,
};
use dci_gateway::server::{BoxFuture, ConsumerApi, RelayTarget, Relayed as HttpRelayed};
use dci_gateway_core::{
    CallId, Command, Config, Gateway, GatewayError, Input, LedgerCall, LedgerReply, ModelTerms, Output, Relayed, Reply,
    SessionRecord, Ticket,
};
use dci_ledger::{LedgerError, Settlement, StakeRole};
use dci_model::{AccountId, Amount, NodeId, ServiceName, SessionId};
use dci_proto::{ContainerView, Identity};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::roles::{Bound, RoleHandle};
use crate::settlement::{EMBEDDED_MEMBERSHIP, NodeLedger, RegistryAt, blocking};
use crate::store::RecordStore;

pub use dci_gateway_core::token_charge;

/// What a model session pays per 1,000 tokens relayed through the gateway,
/// besides its seconds: 0.0001 ATH (10^14 base units), charged from the
/// placement's escrow when it is settled and split like any fee.
pub const PRICE_PER_1K_TOKENS: Amount = Amount(100_000_000_000_000);

/// The catalogue's models as the gateway core places and bills them (by
/// name and by each alias).
pub fn catalogue_terms(catalogue: &dci_models::Catalogue) -> BTreeMap<ServiceName, ModelTerms> {
    let terms = |m: &dci_models::catalogue::ModelEntry| ModelTerms {
        memory_mib: m.memory_mib,
        price_per_1k_tokens: PRICE_PER_1K_TOKENS,
    };
    catalogue
        .models()
        .iter()
        .flat_map(|m| {
            let names = std::iter::once(m.name.clone())
                .chain(m.aliases.iter().filter_map(|a| ServiceName::new(a.clone()).ok()));
            names.map(move |n| (n, terms(m)))
        })
        .collect()
}

/// A penalty vote's chain signer (the EVM's recovery, for the gateway core).
pub fn chain_vote_signer(
    domain: &dci_proto::ChainDomain,
    report: &dci_ledger::SlashReport,
    signature: &[u8],
) -> Option<[u8; 20]> {
    dci_chain::slash_signer_at(domain.chain_id, dci_chain::Address::from(domain.ledger), report, signature)
        .map(|a| a.into_array())
}

/// A committee signature's chain signer (the EVM's recovery, for the gateway core).
pub fn chain_committee_signer(
    domain: &dci_proto::ChainDomain,
    epoch: u64,
    members: &[[u8; 20]],
    signature: &[u8],
) -> Option<[u8; 20]> {
    let members: Vec<dci_chain::Address> = members.iter().map(|m| dci_chain::Address::from(*m)).collect();
    dci_chain::committee_signer_at(domain.chain_id, dci_chain::Address::from(domain.ledger), epoch, &members, signature)
        .map(|a| a.into_array())
}

/// The stated failover bound, for services that start within 5 s: from the
/// failed container's last receipt until the session serves elsewhere
/// (with the default timing: 3 s of silence + 0.25 s to notice + 1 s to match
/// and escrow + 5 s to start = 9.25 s).
pub fn stated_failover_bound() -> Duration {
    dci_gateway_core::Timing::default().failover_bound(Duration::from_secs(5))
}

/// The table of `gateway.db` that holds session records.
pub const SESSIONS_TABLE: &str = "gateway_sessions";

const TICK: Duration = Duration::from_millis(250);

/// How far from the gateway's clock a node-signed request may be signed.
pub const NODE_REQUEST_WINDOW: Duration = Duration::from_secs(60);

/// A node's endpoint registrations are relayed to the chain at most once
/// per this interval (each costs the gateway gas); a refused one does not
/// count, and a withdrawal is not limited (it needs a listed record).
pub const NODE_REGISTER_EVERY: Duration = Duration::from_secs(30);

/// How long a consumer's call may wait for the core (the longest flow, a
/// start or stop, is bounded by the container timeout well within this).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

type Waiters = Mutex<HashMap<CallId, oneshot::Sender<Result<Reply, GatewayError>>>>;

/// A running gateway, as the HTTP layer and the devnet see it.
pub struct GatewayNode {
    id: NodeId,
    addr: String,
    inputs: mpsc::Sender<Input>,
    waiters: Arc<Waiters>,
    next_call: AtomicU64,
    ledger: Arc<Mutex<NodeLedger>>,
    sessions: Arc<RecordStore>,
    /// Node-signed requests taken recently (signature → when): each once.
    node_requests: Mutex<HashMap<Vec<u8>, dci_model::Timestamp>>,
    /// The public reads' cached view of the network.
    view: NetworkView,
    /// Endpoint registrations relayed recently (node → when).
    node_registers: Mutex<HashMap<NodeId, dci_model::Timestamp>>,
}

/// What `GET /v1/containers` and `GET /v1/offers` are served from: the
/// indexer's answers, each asked at most once per `refresh` however many
/// consumers ask (one asks, the others wait for its answer), so an
/// unauthenticated flood of reads costs the indexer one listing (paged,
/// each page within a frame) or one offers query per interval.
struct NetworkView {
    refresh: Duration,
    containers: tokio::sync::Mutex<Option<Fetched<ContainerInfo>>>,
    /// Offers per (filter, sort): the best [`OFFERS_WINDOW`] rows.
    offers: tokio::sync::Mutex<HashMap<(String, String), Fetched<OfferInfo>>>,
}

/// Rows as fetched, and when.
type Fetched<T> = (std::time::Instant, Arc<Vec<T>>);

/// Most distinct offers queries cached at once; beyond it the stale ones
/// go first, then the oldest.
const MAX_CACHED_QUERIES: usize = 256;

/// How often the public reads' cached view may be refreshed by default.
pub const DEFAULT_VIEW_REFRESH: Duration = Duration::from_millis(500);

/// Starts the gateway core on `bound`: restores what the last run left in
/// `sessions` (settling it), then serves until `shutdown`.
pub fn spawn_gateway(
    bound: Bound,
    config: Config,
    view_refresh: Duration,
    identity: Identity,
    ledger: NodeLedger,
    sessions: RecordStore,
    shutdown: CancellationToken,
) -> anyhow::Result<(RoleHandle, Arc<GatewayNode>)> {
    let (addr, id) = (bound.addr(), bound.id());
    let Bound { transport, mut inbox } = bound;
    let ledger = Arc::new(Mutex::new(ledger));
    let sessions = Arc::new(sessions);
    let mut core = Gateway::new(config, identity, rand::random()).context("gateway configuration")?;
    let (records, unreadable) = sessions.list_readable::<SessionRecord>(None)?;
    for (id, why) in unreadable {
        let record = id.parse::<SessionId>().map_or_else(|_| "?".to_owned(), |s| s.short());
        tracing::error!(%record, %why, "a session record this version cannot read was left as it is");
    }
    let records: Vec<SessionRecord> =
        records.into_iter().filter(|r| !r.status.is_terminal() || r.intent.is_some()).collect();
    let last_epoch = blocking(|| ledger.lock().expect("ledger lock").last_epoch())?;
    let (inputs, mut rx) = mpsc::channel::<Input>(4096);
    let calls = ledger_thread(ledger.clone(), inputs.clone())?;
    let waiters: Arc<Waiters> = Arc::default();
    let node = Arc::new(GatewayNode {
        id,
        addr: addr.clone(),
        inputs,
        waiters: waiters.clone(),
        next_call: AtomicU64::new(1),
        ledger,
        sessions: sessions.clone(),
        node_requests: Mutex::default(),
        view: NetworkView { refresh: view_refresh, containers: Default::default(), offers: Default::default() },
        node_registers: Mutex::default(),
    });
    let mut pending = core.restore(clock::now(), records, last_epoch);
    // An indexer that cannot be reached is left out at once.
    let (unreachable_tx, mut unreachable) = mpsc::unbounded_channel();
    transport.report_unreachable(unreachable_tx);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            for out in pending.drain(..) {
                match out {
                    Output::Net(net) => transport.dispatch(net).await,
                    Output::Ledger { ticket, call } => {
                        let _ = calls.send((ticket, call));
                    }
                    Output::Persist(r) => {
                        if let Err(e) = sessions.put(&r.id.to_string(), r.account.as_str(), r.created_at.0, &r) {
                            tracing::error!(session = %r.id.short(), error = %e, "cannot record the session");
                        }
                    }
                    Output::Forget(id) => {
                        if let Err(e) = sessions.delete(&id.to_string()) {
                            tracing::error!(session = %id.short(), error = %e, "cannot delete the session record");
                        }
                    }
                    Output::Reply { call, result } => {
                        if let Some(tx) = waiters.lock().expect("waiters lock").remove(&call) {
                            let _ = tx.send(result);
                        }
                    }
                    Output::Rejected { from, kind, reason } => {
                        metrics::counter!("dci_gateway_rejected_total", "kind" => kind).increment(1);
                        tracing::warn!(from = %from.short(), kind, %reason, "gateway refused a message");
                    }
                    Output::Event(e) => crate::metrics::gateway_event(&e),
                }
            }
            let input = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(inbound) = inbox.recv() => Input::Net(inbound),
                Some(input) = rx.recv() => input,
                Some(addr) = unreachable.recv() => Input::Unreachable { addr },
                _ = tick.tick() => Input::Tick,
            };
            pending = core.handle(clock::now(), input);
        }
    });
    Ok((RoleHandle { addr, id, task }, node))
}

/// The ledger's own thread: makes the core's ledger calls one at a time,
/// in the order asked, and hands each answer back as an input.
fn ledger_thread(
    ledger: Arc<Mutex<NodeLedger>>,
    inputs: mpsc::Sender<Input>,
) -> anyhow::Result<std::sync::mpsc::Sender<(Ticket, LedgerCall)>> {
    let (tx, rx) = std::sync::mpsc::channel::<(Ticket, LedgerCall)>();
    std::thread::Builder::new().name("dci-gateway-ledger".into()).spawn(move || {
        for (ticket, call) in rx {
            let reply = {
                let mut l = ledger.lock().expect("ledger lock");
                match call {
                    LedgerCall::Apply(ops) => LedgerReply::Applied(l.apply(&ops)),
                    LedgerCall::Stakes { role, nodes } => LedgerReply::Stakes(
                        nodes.iter().map(|n| l.staked(&AccountId::for_node(n), role).unwrap_or(Amount::ZERO)).collect(),
                    ),
                    LedgerCall::Flush => LedgerReply::Flushed(l.flush()),
                }
            };
            if inputs.blocking_send(Input::Ledger { ticket, reply }).is_err() {
                break;
            }
        }
    })?;
    Ok(tx)
}

impl GatewayNode {
    /// This gateway's node id (it acknowledges receipts with it).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where it receives node messages.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Hands the core the network's peers (the network file changed).
    pub async fn peers(&self, indexers: Vec<dci_gateway_core::Peer>, checkers: Vec<dci_gateway_core::CheckerSeat>) {
        let _ = self.inputs.send(Input::Peers { indexers, checkers }).await;
    }

    /// Sends `cmd` to the core and waits for its reply.
    async fn call(&self, cmd: Command) -> Result<Reply, GatewayError> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(call, tx);
        let gone = || GatewayError::Unavailable("the gateway is shutting down".into());
        if self.inputs.send(Input::Api { call, cmd }).await.is_err() {
            self.waiters.lock().expect("waiters lock").remove(&call);
            return Err(gone());
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(gone()),
            Err(_) => {
                self.waiters.lock().expect("waiters lock").remove(&call);
                Err(GatewayError::Unavailable(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))
            }
        }
    }

    /// Direct access to the ledger (devnet set-up, `dci` ledger commands,
    /// the API's reads). A chain backend may block on the network: its
    /// calls leave the async worker first ([`blocking`]).
    pub fn with_ledger<T>(&self, f: impl FnOnce(&mut NodeLedger) -> T) -> T {
        let mut l = self.ledger.lock().expect("ledger lock");
        match l.backend() {
            // SQLite answers in microseconds: in place.
            crate::settlement::Backend::Embedded => f(&mut l),
            crate::settlement::Backend::Evm => blocking(|| f(&mut l)),
        }
    }

    fn ledger<T>(&self, f: impl FnOnce(&mut NodeLedger) -> Result<T, LedgerError>) -> Result<T, ApiError> {
        self.with_ledger(f).map_err(ApiError::from)
    }

    /// The indexer's view of every container, page after page.
    pub async fn container_views(&self) -> Result<Vec<ContainerView>, ApiError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            match self.call(Command::Containers { after }).await? {
                Reply::Containers { views, next } => {
                    all.extend(views);
                    match next {
                        // A page that does not move on would loop forever.
                        Some(n) if after.is_none_or(|a| n > a) => after = Some(n),
                        _ => return Ok(all),
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// The cached containers, refreshed when older than the interval.
    async fn cached_containers(&self) -> Result<Fetched<ContainerInfo>, ApiError> {
        let mut cached = self.view.containers.lock().await;
        if let Some(fetched) = cached.as_ref().filter(|(at, _)| at.elapsed() < self.view.refresh) {
            return Ok(fetched.clone());
        }
        let rows: Arc<Vec<ContainerInfo>> =
            Arc::new(self.container_views().await?.into_iter().map(ContainerInfo::from).collect());
        metrics::counter!("dci_gateway_view_refreshed_total", "what" => "containers").increment(1);
        let fetched = (std::time::Instant::now(), rows);
        *cached = Some(fetched.clone());
        Ok(fetched)
    }

    /// The cached best offers of a query, refreshed when older than the interval.
    async fn cached_offers(&self, filter: String, sort: String) -> Result<Arc<Vec<OfferInfo>>, ApiError> {
        let mut cached = self.view.offers.lock().await;
        let key = (filter, sort);
        if let Some((_, rows)) = cached.get(&key).filter(|(at, _)| at.elapsed() < self.view.refresh) {
            return Ok(rows.clone());
        }
        let (filter, sort) = key.clone();
        let rows = match self.call(Command::Offers { filter, sort, limit: OFFERS_WINDOW }).await? {
            Reply::Offers(rows) => Arc::new(rows.iter().map(OfferInfo::from).collect::<Vec<_>>()),
            other => return Err(unexpected(other)),
        };
        metrics::counter!("dci_gateway_view_refreshed_total", "what" => "offers").increment(1);
        if cached.len() >= MAX_CACHED_QUERIES {
            let refresh = self.view.refresh;
            cached.retain(|_, (at, _)| at.elapsed() < refresh);
            while cached.len() >= MAX_CACHED_QUERIES {
                let Some(oldest) = cached.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone()) else { break };
                cached.remove(&oldest);
            }
        }
        cached.insert(key, (std::time::Instant::now(), rows.clone()));
        Ok(rows)
    }

    /// Stops and settles every running session (graceful shutdown).
    pub async fn stop_all(&self) {
        if let Err(e) = self.call(Command::StopAll).await {
            tracing::warn!(error = %e, "not every session was settled at shutdown; the next start settles them");
        }
    }

    /// The core knows live sessions only: one it does not know may have
    /// ended (then it is `NotRunning`, with its status), or not be this
    /// account's (then it stays `NoSession`, like a missing one).
    fn ended_if_not_live(
        &self,
        account: &AccountId,
        id: SessionId,
        r: Result<Reply, GatewayError>,
    ) -> Result<Reply, GatewayError> {
        match r {
            Err(GatewayError::NoSession(_)) => match self.owned(account, id) {
                Ok(rec) => Err(GatewayError::NotRunning { session: id, status: rec.status }),
                Err(_) => Err(GatewayError::NoSession(id)),
            },
            other => other,
        }
    }

    fn owned(&self, account: &AccountId, id: SessionId) -> Result<SessionRecord, ApiError> {
        let r: Option<SessionRecord> =
            self.sessions.get(&id.to_string()).map_err(|e| ApiError::internal(e.to_string()))?;
        // Another account's session is reported exactly like a missing one (R-SEC2).
        r.filter(|r| &r.account == account).ok_or_else(|| GatewayError::NoSession(id).into())
    }
}

fn unexpected(r: Reply) -> ApiError {
    ApiError::internal(format!("the gateway core answered {r:?}"))
}

fn session_reply(r: Result<Reply, GatewayError>) -> Result<SessionInfo, ApiError> {
    match r? {
        Reply::Session(r) => Ok(SessionInfo::from(&r)),
        other => Err(unexpected(other)),
    }
}

fn target_reply(r: Result<Reply, GatewayError>) -> Result<RelayTarget, ApiError> {
    match r? {
        Reply::Target(base) => Ok(RelayTarget { base }),
        other => Err(unexpected(other)),
    }
}

impl ConsumerApi for GatewayNode {
    fn authenticate<'a>(&'a self, api_key: &'a str) -> BoxFuture<'a, Result<AccountId, ApiError>> {
        Box::pin(async move {
            let found = self.ledger(|l| l.account_for_api_key(api_key))?;
            found.ok_or_else(|| ApiError::unauthorized("unknown API key"))
        })
    }

    fn deploy(&self, account: AccountId, req: DeployRequest) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        Box::pin(async move {
            let (request, hours) = req.to_match()?;
            session_reply(self.call(Command::Deploy { account, request, hours }).await)
        })
    }

    fn sessions(&self, account: AccountId) -> BoxFuture<'_, Result<Vec<SessionInfo>, ApiError>> {
        Box::pin(async move {
            let (records, _) = self
                .sessions
                .list_readable::<SessionRecord>(Some(account.as_str()))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(records.iter().map(SessionInfo::from).collect())
        })
    }

    fn session(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        Box::pin(async move { self.owned(&account, id).map(|r| SessionInfo::from(&r)) })
    }

    fn stop(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        Box::pin(async move {
            let r = self.call(Command::Stop { account: account.clone(), session: id }).await;
            session_reply(self.ended_if_not_live(&account, id, r))
        })
    }

    fn offers(&self, filter: String, sort: String, page: Page) -> BoxFuture<'_, Result<Vec<OfferInfo>, ApiError>> {
        Box::pin(async move {
            // Refuse a bad filter here, with the parser's pointer to the bad token.
            dci_indexer::filter::Filter::parse(&filter).map_err(|e| ApiError::bad_request(format!("filter {e}")))?;
            sort.parse::<dci_indexer::SortKey>().map_err(|e| ApiError::bad_request(format!("sort: {e}")))?;
            let rows = self.cached_offers(filter.trim().to_owned(), sort).await?;
            Ok(page.of(&rows).to_vec())
        })
    }

    fn committee(&self) -> BoxFuture<'_, Result<CommitteeInfo, ApiError>> {
        Box::pin(async move {
            match self.call(Command::Committee).await? {
                Reply::Committee(c) => Ok(c.into()),
                other => Err(unexpected(other)),
            }
        })
    }

    fn containers(&self, page: Page) -> BoxFuture<'_, Result<Vec<ContainerInfo>, ApiError>> {
        Box::pin(async move {
            let (at, rows) = self.cached_containers().await?;
            // "Ago" as of now, not as of the fetch.
            let age = at.elapsed().as_millis() as u64;
            Ok(page
                .of(&rows)
                .iter()
                .map(|c| ContainerInfo {
                    last_heartbeat_ago_ms: c.last_heartbeat_ago_ms.map(|ms| ms.saturating_add(age)),
                    ..c.clone()
                })
                .collect())
        })
    }

    fn transfer(&self, account: AccountId, req: TransferRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        Box::pin(async move {
            let (to, amount) = req.parse()?;
            if to == account {
                return Err(ApiError::bad_request("to: expected another account than your own"));
            }
            self.ledger(|l| l.transfer(&account, &to, amount))?;
            tracing::info!(from = %account, %to, %amount, "transfer");
            self.balance(account).await
        })
    }

    fn stake(
        &self,
        account: AccountId,
        req: StakeRequest,
        unstake: bool,
    ) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        Box::pin(async move {
            let role = match req.role.as_str() {
                "container" => StakeRole::Container,
                "checker" => StakeRole::Checker,
                other => {
                    return Err(ApiError::bad_request(format!("role: expected container or checker, found {other:?}")));
                }
            };
            let amount = dci_ledger::parse_amount(&req.amount_ath)
                .map_err(|e| ApiError::bad_request(format!("amount_ath: {e}")))?;
            if unstake {
                self.ledger(|l| l.unstake(&account, role, amount, clock::now()))?;
            } else {
                self.ledger(|l| l.stake(&account, role, amount))?;
            }
            self.balance(account).await
        })
    }

    fn node_stake(&self, req: NodeStakeRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        Box::pin(async move {
            let node: NodeId = req.node.parse().map_err(|e| ApiError::bad_request(format!("node: {e}")))?;
            let amount = dci_ledger::parse_amount(&req.amount_ath)
                .map_err(|e| ApiError::bad_request(format!("amount_ath: {e}")))?;
            let signature = hex::decode(&req.signature)
                .map_err(|_| ApiError::bad_request("signature: expected hex (the node's ed25519 signature)"))?;
            let (role, stake_role) = match req.role.as_deref() {
                None | Some("container") => (dci_proto::StakeAs::Container, StakeRole::Container),
                Some("checker") => (dci_proto::StakeAs::Checker, StakeRole::Checker),
                Some("indexer") => (dci_proto::StakeAs::Indexer, StakeRole::Indexer),
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "role: expected container, checker or indexer, found {other:?}"
                    )));
                }
            };
            let stake = dci_proto::NodeStake { node, role, amount, at: dci_model::Timestamp(req.at_ms) };
            if !stake.verifies(&signature) {
                return Err(ApiError::unauthorized("signature: expected the node's own signature of this request"));
            }
            let now = clock::now();
            let skew = now.0.abs_diff(req.at_ms);
            if skew > NODE_REQUEST_WINDOW.as_millis() as u64 {
                return Err(ApiError::unauthorized(format!(
                    "at_ms: expected a request signed within {} s of the gateway's clock, found one {skew} ms away",
                    NODE_REQUEST_WINDOW.as_secs()
                )));
            }
            {
                // Each signature is taken once: a copy is refused.
                let mut seen = self.node_requests.lock().expect("node requests lock");
                seen.retain(|_, at| now.since(*at) <= NODE_REQUEST_WINDOW * 2);
                if seen.insert(signature.clone(), now).is_some() {
                    return Err(ApiError::new(409, "replayed", "this signed request was already taken"));
                }
            }
            let account = AccountId::for_node(&node);
            self.ledger(|l| l.stake(&account, stake_role, amount))?;
            tracing::info!(node = %node.short(), %amount, role = %stake_role, "a node bonded stake");
            self.balance(account).await
        })
    }

    fn node_register(&self, req: NodeRegisterRequest) -> BoxFuture<'_, Result<NodeRegisterInfo, ApiError>> {
        Box::pin(async move {
            let domain = match self.ledger(|l| l.registry())? {
                RegistryAt::Chain(d) => d,
                RegistryAt::Embedded => return Err(ApiError::new(409, "no_registry", EMBEDDED_MEMBERSHIP)),
                RegistryAt::NotDeployed => {
                    return Err(ApiError::new(
                        409,
                        "no_registry",
                        "this gateway's chain deployment has no endpoint registry (deployed before it existed): \
                         deploy one over its ledger with `dci chain deploy-registry`",
                    ));
                }
            };
            let (record, signature) = endpoint_record(&req)?;
            record.verify(&domain, &signature).map_err(|e| match e {
                dci_proto::EndpointError::BadSignature { .. } => ApiError::unauthorized(e.to_string()),
                dci_proto::EndpointError::Invalid(m) => ApiError::bad_request(m),
            })?;
            let (node, role, seq, addr) = (record.node, record.role, record.seq, record.addr.clone());
            let chain_error = |e: dci_chain::ChainError| match e {
                dci_chain::ChainError::Refused { why, .. } => ApiError::new(409, "refused", why),
                dci_chain::ChainError::Unreachable { .. } => ApiError::unavailable(e.to_string()),
                dci_chain::ChainError::Input(m) => ApiError::bad_request(m),
                other => ApiError::internal(other.to_string()),
            };
            // What the chain would refuse costs nothing; a registration it
            // would take is relayed at most once per NODE_REGISTER_EVERY per
            // node (a withdrawal needs a listed record, so it follows one).
            let (r, s) = (record.clone(), signature.clone());
            self.ledger(move |l| l.check_endpoint(r, s))?.map_err(chain_error)?;
            if !record.is_withdrawal() {
                let now = clock::now();
                let mut recent = self.node_registers.lock().expect("node registers lock");
                recent.retain(|_, at| now.since(*at) < NODE_REGISTER_EVERY);
                if let Some(at) = recent.get(&node) {
                    let wait = NODE_REGISTER_EVERY.saturating_sub(now.since(*at));
                    return Err(ApiError::new(
                        429,
                        "too_many_requests",
                        format!(
                            "expected at most one registration of node {node} per {} s (each costs gas); try again in {} s",
                            NODE_REGISTER_EVERY.as_secs(),
                            wait.as_secs() + 1
                        ),
                    ));
                }
                recent.insert(node, now);
            }
            let tx = self.ledger(move |l| l.register_endpoint(record, signature))?.map_err(chain_error)?;
            tracing::info!(node = %node.short(), role = role.as_str(), seq, %addr, "a node registered its endpoint on chain");
            Ok(NodeRegisterInfo {
                node: node.to_string(),
                role: role.as_str().into(),
                seq,
                addr,
                chain_id: domain.chain_id,
                registry: format!("0x{}", hex::encode(domain.registry)),
                transaction: format!("0x{}", hex::encode(tx)),
            })
        })
    }

    fn withdraw(&self, account: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        Box::pin(async move {
            let pending = self.ledger(|l| l.account(&account))?.rewards;
            let withdrawn = match self.ledger(|l| l.withdraw_unbonded(&account, clock::now())) {
                Ok(a) => a,
                Err(e) if e.body.code == "nothing_to_withdraw" => Amount::ZERO,
                Err(e) => return Err(e),
            };
            if !pending.is_zero() {
                self.ledger(|l| l.claim_rewards(&account))?;
            }
            if withdrawn.is_zero() && pending.is_zero() {
                return Err(ApiError::new(
                    409,
                    "nothing_to_withdraw",
                    "no unbonded stake is due and no rewards are pending",
                ));
            }
            self.balance(account).await
        })
    }

    fn rewards(&self, account: AccountId, epoch: Option<u64>) -> BoxFuture<'_, Result<RewardsInfo, ApiError>> {
        Box::pin(async move {
            let epoch = match epoch {
                Some(e) => e,
                None => self
                    .ledger(|l| l.last_epoch())?
                    .ok_or_else(|| ApiError::not_found("no epoch has been distributed yet"))?,
            };
            let explanation = self.ledger(|l| l.reward_breakdown(epoch, &account))?;
            Ok(RewardsInfo {
                epoch,
                explanation: explanation.to_string(),
                details: serde_json::to_value(&explanation).map_err(|e| ApiError::internal(e.to_string()))?,
            })
        })
    }

    fn relay_target(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
        Box::pin(async move {
            let r = self.call(Command::RelayTarget { account: account.clone(), session: id }).await;
            target_reply(self.ended_if_not_live(&account, id, r))
        })
    }

    fn meter(&self, account: AccountId, id: SessionId, relayed: HttpRelayed) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async move {
            let HttpRelayed { request_bytes, response_bytes, tokens } = relayed;
            let relayed = Relayed { request_bytes, response_bytes, tokens };
            self.call(Command::Relayed { account, session: id, relayed }).await?;
            metrics::counter!("dci_gateway_relayed_requests_total").increment(1);
            Ok(())
        })
    }

    fn view_target(&self, id: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
        Box::pin(async move { target_reply(self.call(Command::ViewTarget { session: id }).await) })
    }

    fn balance(&self, account: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        Box::pin(async move {
            let view = self.ledger(|l| l.account(&account))?;
            let unbonding = self.ledger(|l| l.unbonding(&account))?;
            Ok(BalanceInfo {
                account: account.to_string(),
                balance_ath: ath(view.balance),
                escrowed_ath: ath(view.escrowed),
                staked_ath: ath(view.staked),
                unbonding_ath: ath(view.unbonding),
                rewards_ath: ath(view.rewards),
                unbonding: unbonding
                    .into_iter()
                    .map(|u| UnbondingInfo {
                        role: u.role.to_string(),
                        amount_ath: ath(u.amount),
                        release_at_ms: u.release_at.0,
                    })
                    .collect(),
            })
        })
    }
}

/// The record and signature a [`NodeRegisterRequest`] carries; a malformed
/// field is a 400 naming it.
fn endpoint_record(req: &NodeRegisterRequest) -> Result<(dci_proto::EndpointRecord, Vec<u8>), ApiError> {
    let node: NodeId = req.node.parse().map_err(|e| ApiError::bad_request(format!("node: {e}")))?;
    let role: dci_proto::EndpointRole =
        req.role.parse().map_err(|e: dci_proto::EndpointError| ApiError::bad_request(e.to_string()))?;
    fn hex_field<const N: usize>(field: &str, v: Option<&String>) -> Result<[u8; N], ApiError> {
        let Some(v) = v else { return Ok([0; N]) };
        let mut out = [0u8; N];
        hex::decode_to_slice(v.strip_prefix("0x").unwrap_or(v), &mut out)
            .map_err(|_| ApiError::bad_request(format!("{field}: expected {} hex digits, found {v:?}", 2 * N)))?;
        Ok(out)
    }
    let vrf_public = hex_field::<32>("vrf_public", req.vrf_public.as_ref())?;
    let chain_signer = hex_field::<20>("chain_signer", req.chain_signer.as_ref())?;
    let signature = hex::decode(&req.signature)
        .map_err(|_| ApiError::bad_request("signature: expected hex (the node's ed25519 signature)"))?;
    let record =
        dci_proto::EndpointRecord { node, role, seq: req.seq, addr: req.addr.clone(), vrf_public, chain_signer };
    Ok((record, signature))
}
