//! The gateway role: the consumer's entry point. It authenticates API keys,
//! asks the indexer to match and reserve, locks escrow in the ledger, asks the
//! container to start the service, and at stop settles the container's signed
//! usage receipt after acknowledging it for the consumer (R-AG4).
//!
//! Every step that can fail is undone in reverse: no escrow stays locked and
//! no slot stays reserved for a session that did not start. A session whose
//! container cannot produce a receipt is refunded in full: no receipt, no pay.
//!
//! While a session runs, its container signs its usage so far once a second
//! (`Message::Usage`); the gateway acknowledges and keeps the latest. When
//! the receipts stop ([`failover`]: the container died or went dark), or the
//! container ends the session itself (`Message::SessionEnded`: its service
//! exited, or its operator locked it for maintenance), the gateway settles
//! the time delivered, re-matches the session and starts it on another
//! container: same session id, new endpoint, and the gap is never billed.

pub mod failover;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dci_gateway::api::{
    ApiError, BalanceInfo, CandidateInfo, CommitteeInfo, ContainerInfo, DeployRequest, OfferInfo, PenaltyInfo,
    RewardsInfo, SegmentInfo, SessionInfo, SessionStatus, StakeRequest, TransferRequest, TransitionInfo, UnbondingInfo,
    VerdictInfo, ath,
};
use dci_gateway::server::{BoxFuture, ConsumerApi, RelayTarget, Relayed};
use dci_ledger::{LedgerError, LedgerOp, OpOutcome, Settlement, StakeRole};
use dci_model::{AccountId, Amount, MatchRequest, NodeId, PricePerHour, ServiceName, SessionId, Timestamp};
use dci_proto::{ContainerView, Identity, Inbound, Message, OfferView, SignedReceipt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::committee::Duties;
use crate::settlement::{NodeLedger, blocking};
use crate::store::RecordStore;
use crate::transport::Transport;

/// How long the gateway waits for the indexer.
const INDEXER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the gateway waits for a container to start or stop a service.
const CONTAINER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a model session pays per 1,000 tokens relayed through the gateway,
/// besides its seconds: 0.0001 ATH (10^14 base units). The charge is
/// `floor(tokens × price / 1000)` base units, settled with the session's
/// receipt in one ledger batch and split like any fee.
pub const PRICE_PER_1K_TOKENS: Amount = Amount(100_000_000_000_000);

/// The token charge for `tokens` at `per_1k` per 1,000 tokens, rounded down.
pub fn token_charge(tokens: u64, per_1k: Amount) -> Amount {
    Amount(per_1k.0.saturating_mul(u128::from(tokens)) / 1000)
}

/// A session as the gateway stores it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    id: SessionId,
    account: AccountId,
    service: ServiceName,
    container: NodeId,
    container_addr: String,
    payout: AccountId,
    endpoint: String,
    price: PricePerHour,
    estimated_rtt_ms: Option<u32>,
    status: SessionStatus,
    started_at: Timestamp,
    ended_at: Option<Timestamp>,
    escrow: Amount,
    billed_seconds: Option<u64>,
    charged: Option<Amount>,
    refunded: Option<Amount>,
    /// Requests relayed through the gateway.
    #[serde(default)]
    requests: u64,
    /// Tokens those requests used.
    #[serde(default)]
    tokens: u64,
    /// Set for model sessions: what 1,000 tokens cost.
    #[serde(default)]
    token_price: Option<Amount>,
    /// What the tokens were charged at stop.
    #[serde(default)]
    token_charged: Option<Amount>,
    /// The id the container and the ledger know the current placement by:
    /// the session's own id at first, a derived one after each failover.
    #[serde(default)]
    placement: Option<SessionId>,
    /// When the current placement started serving (`started_at` if never moved).
    #[serde(default)]
    placed_at: Option<Timestamp>,
    /// Hours of escrow asked for at deploy; each placement escrows them anew.
    #[serde(default = "one_hour")]
    hours: u32,
    /// What was matched, to match again after a failure.
    #[serde(default)]
    request: Option<MatchRequest>,
    /// Earlier placements, oldest first.
    #[serde(default)]
    segments: Vec<Segment>,
    /// The latest usage receipt acknowledged for the current placement, as
    /// persisted (every few seconds): what a restarted gateway settles.
    #[serde(default)]
    usage: Option<SignedReceipt>,
}

fn one_hour() -> u32 {
    1
}

/// One earlier placement of a session: what it delivered and cost.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Segment {
    container: NodeId,
    started_at: Timestamp,
    ended_at: Timestamp,
    billed_seconds: u64,
    charged: Amount,
    refunded: Amount,
    reason: String,
}

impl SessionRecord {
    fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id.to_string(),
            service: self.service.to_string(),
            container: self.container.to_string(),
            endpoint: self.endpoint.clone(),
            price_ath_per_hour: ath(self.price.0),
            estimated_rtt_ms: self.estimated_rtt_ms,
            status: self.status,
            started_at_ms: self.started_at.0,
            ended_at_ms: self.ended_at.map(|t| t.0),
            escrow_ath: ath(self.escrow),
            billed_seconds: self.billed_seconds,
            charged_ath: self.charged.map(ath),
            refunded_ath: self.refunded.map(ath),
            requests: self.requests,
            tokens: self.tokens,
            token_price_ath_per_1k: self.token_price.map(ath),
            token_charged_ath: self.token_charged.map(ath),
            openai_path: self.token_price.map(|_| format!("/openai/{}/v1", self.id)),
            view_path: (self.service.as_str() == "render").then(|| format!("/view/{}", self.id)),
            placed_at_ms: self.placed_at.unwrap_or(self.started_at).0,
            segments: self
                .segments
                .iter()
                .map(|g| SegmentInfo {
                    container: g.container.to_string(),
                    started_at_ms: g.started_at.0,
                    ended_at_ms: g.ended_at.0,
                    billed_seconds: g.billed_seconds,
                    charged_ath: ath(g.charged),
                    ended_because: g.reason.clone(),
                })
                .collect(),
        }
    }

    /// The id of the current placement (see `placement`).
    fn placement(&self) -> SessionId {
        self.placement.unwrap_or(self.id)
    }

    /// Sets the session's totals: the earlier placements plus the last one's
    /// `seconds`, `charged` and `refunded`.
    fn total(&mut self, seconds: u64, charged: Amount, refunded: Amount) {
        let sum = |f: fn(&Segment) -> u128| self.segments.iter().map(f).sum::<u128>();
        let earlier_seconds: u64 = self.segments.iter().map(|g| g.billed_seconds).sum();
        self.billed_seconds = Some(earlier_seconds + seconds);
        self.charged = Some(Amount(sum(|g| g.charged.0) + charged.0));
        self.refunded = Some(Amount(sum(|g| g.refunded.0) + refunded.0));
    }
}

/// A running placement as the gateway watches it.
struct Live {
    /// The consumer's session id.
    session: SessionId,
    /// The container serving it.
    container: NodeId,
    /// When the container was last heard from (start, or a receipt).
    heard: Instant,
    /// The latest usage receipt, acknowledged.
    receipt: Option<SignedReceipt>,
    /// When a receipt was last persisted to the session record.
    persisted: Instant,
    /// A failover is under way.
    moving: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Waiting {
    Request(u64),
    Start(SessionId),
    Stop(SessionId),
}

/// A reply someone waits for: the node expected to send it (if known) and
/// where to deliver it.
type Waiter = (Option<NodeId>, oneshot::Sender<Message>);

/// The gateway role. Implements [`ConsumerApi`] for the HTTP layer.
pub struct Gateway {
    transport: Arc<Transport>,
    identity: Identity,
    indexer_addr: String,
    ledger: Mutex<NodeLedger>,
    sessions: RecordStore,
    waiting: Mutex<HashMap<Waiting, Waiter>>,
    next_request: AtomicU64,
    /// Matches served per indexer since the last epoch (for indexer rewards).
    served: Mutex<HashMap<NodeId, u64>>,
    /// The epoch committee and penalty votes, when this gateway coordinates them.
    duties: Mutex<Option<Duties>>,
    /// Serializes the read-modify-write of a session's meter and its settlement.
    metering: Mutex<()>,
    /// Running placements by placement id, with their latest usage receipts.
    live: Mutex<HashMap<SessionId, Live>>,
    /// Sessions being stopped or moved: one of the two at a time.
    busy: Mutex<HashSet<SessionId>>,
}

impl Gateway {
    /// Starts the gateway's node endpoint on `listen`.
    pub async fn start(
        identity: Identity,
        listen: &str,
        indexer_addr: String,
        ledger: NodeLedger,
        sessions: RecordStore,
        duties: Option<Duties>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Gateway>> {
        let (tx, mut inbox) = mpsc::channel::<Inbound>(1024);
        let transport = Transport::bind(identity.clone(), listen, tx).await?;
        let gw = Arc::new(Gateway {
            transport,
            identity,
            indexer_addr,
            ledger: Mutex::new(ledger),
            sessions,
            waiting: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(rand::random::<u32>() as u64),
            served: Mutex::new(HashMap::new()),
            duties: Mutex::new(duties),
            metering: Mutex::new(()),
            live: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
        });
        tokio::spawn(failover::watch(Arc::downgrade(&gw), shutdown.clone()));
        let weak = Arc::downgrade(&gw);
        tokio::spawn(async move {
            loop {
                let inbound = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(i) = inbox.recv() => i,
                };
                let Some(gw) = weak.upgrade() else { break };
                gw.deliver(inbound);
            }
        });
        Ok(gw)
    }

    /// This gateway's node id (it acknowledges receipts with it).
    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    /// Where it receives node messages.
    pub fn addr(&self) -> String {
        self.transport.local_addr().to_string()
    }

    /// Routes a reply to whoever waits for it, committee traffic to the
    /// duties; anything else is refused.
    fn deliver(self: &Arc<Self>, Inbound { from, msg, .. }: Inbound) {
        let msg = match msg {
            Message::Usage { receipt } => {
                self.usage(from, receipt, None);
                return;
            }
            Message::SessionEnded { receipt, reason } => {
                self.usage(from, receipt, Some(reason));
                return;
            }
            Message::EpochProof { epoch, proof } => {
                if let Some(d) = self.duties.lock().expect("duties lock").as_mut()
                    && let Err(e) = d.proof(from, epoch, &proof)
                {
                    tracing::warn!(from = %from.short(), error = %e, "sortition proof refused");
                }
                return;
            }
            Message::Evidence(evidence) => {
                let stake_of = |id: &NodeId| self.staked(id, StakeRole::Container);
                let sends = match self.duties.lock().expect("duties lock").as_mut() {
                    Some(d) => d.evidence(clock::now(), from, evidence, &stake_of),
                    None => Vec::new(),
                };
                self.send_all(sends);
                return;
            }
            Message::PenaltyVote { evidence_hash, signature, chain_signature } => {
                let ready = self
                    .duties
                    .lock()
                    .expect("duties lock")
                    .as_mut()
                    .and_then(|d| d.vote(from, evidence_hash, signature, chain_signature));
                if let Some((report, committee)) = ready {
                    let result = self
                        .with_ledger(|l| l.slash(&report, &committee))
                        .map(|s| Amount(s.from_rewards.0 + s.from_stake.0 + s.from_unbonding.0))
                        .map_err(|e| e.to_string());
                    if let Some(d) = self.duties.lock().expect("duties lock").as_mut() {
                        d.applied(evidence_hash, result);
                    }
                }
                return;
            }
            other => other,
        };
        if matches!(msg, Message::Matched { .. }) {
            *self.served.lock().expect("served lock").entry(from).or_default() += 1;
        }
        let key = match &msg {
            Message::Matched { request_id, .. }
            | Message::NoMatch { request_id, .. }
            | Message::Containers { request_id, .. }
            | Message::OfferList { request_id, .. } => Waiting::Request(*request_id),
            Message::SessionStarted { session, .. } | Message::SessionFailed { session, .. } => {
                Waiting::Start(*session)
            }
            Message::SessionStopped { receipt } => Waiting::Stop(receipt.receipt.session),
            other => {
                tracing::warn!(from = %from.short(), kind = other.kind(), "gateway refused an unexpected message");
                return;
            }
        };
        let mut waiting = self.waiting.lock().expect("waiting lock");
        match waiting.get(&key) {
            Some((Some(expected), _)) if *expected != from => {
                tracing::warn!(from = %from.short(), ?key, "gateway refused a reply from the wrong node");
            }
            Some(_) => {
                let (_, tx) = waiting.remove(&key).expect("present");
                let _ = tx.send(msg);
            }
            None => tracing::warn!(from = %from.short(), ?key, "gateway got a reply nobody waits for"),
        }
    }

    async fn ask(
        &self,
        addr: &str,
        key: Waiting,
        from: Option<NodeId>,
        msg: Message,
        wait: Duration,
    ) -> Result<Message, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("waiting lock").insert(key, (from, tx));
        let sent = self.transport.send(addr, &msg).await;
        let result = match sent {
            Err(e) => Err(ApiError::unavailable(e.to_string())),
            Ok(_) => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(m)) => Ok(m),
                _ => Err(ApiError::unavailable(format!("no answer from {addr} within {} s", wait.as_secs()))),
            },
        };
        self.waiting.lock().expect("waiting lock").remove(&key);
        result
    }

    fn request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    fn release(&self, session: SessionId) {
        let (t, addr) = (self.transport.clone(), self.indexer_addr.clone());
        tokio::spawn(async move { t.dispatch(dci_proto::Net::Send { addr, msg: Message::Release { session } }).await });
    }

    fn save(&self, r: &SessionRecord) -> Result<(), ApiError> {
        self.sessions
            .put(&r.id.to_string(), r.account.as_str(), r.started_at.0, r)
            .map_err(|e| ApiError::internal(format!("cannot record the session: {e}")))
    }

    fn ledger<T>(&self, f: impl FnOnce(&mut NodeLedger) -> Result<T, LedgerError>) -> Result<T, ApiError> {
        self.with_ledger(f).map_err(|e| match e {
            LedgerError::InsufficientFunds { .. } | LedgerError::InsufficientStake { .. } => {
                ApiError::insufficient_funds(e.to_string())
            }
            LedgerError::NothingToWithdraw { .. } | LedgerError::NoPendingRewards(_) => {
                ApiError::new(409, "nothing_to_withdraw", e.to_string())
            }
            LedgerError::InvalidAmount { .. } | LedgerError::InvalidInput(_) => ApiError::bad_request(e.to_string()),
            LedgerError::UnknownAccount(_) | LedgerError::EpochNotDistributed(_) => ApiError::not_found(e.to_string()),
            LedgerError::ZeroAmount | LedgerError::SameAccount(_) | LedgerError::Amount(_) => {
                ApiError::bad_request(e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        })
    }

    /// Direct access to the ledger (devnet set-up and `dci` ledger commands).
    /// A chain backend may block on the network: its calls leave the async
    /// worker first ([`blocking`]); the embedded one is called in place.
    pub fn with_ledger<T>(&self, f: impl FnOnce(&mut NodeLedger) -> T) -> T {
        let mut l = self.ledger.lock().expect("ledger lock");
        match l.backend() {
            crate::settlement::Backend::Embedded => f(&mut l),
            crate::settlement::Backend::Evm => blocking(|| f(&mut l)),
        }
    }

    async fn do_deploy(&self, account: AccountId, req: DeployRequest) -> Result<SessionInfo, ApiError> {
        let (mut request, hours) = req.to_match()?;
        // A catalogue model needs a container with the memory to serve it,
        // and is billed per token as well as per second.
        let catalogue = dci_models::Catalogue::builtin();
        let model = catalogue.get(request.service.as_str()).ok();
        if let Some(m) = model {
            let gib = u32::try_from(m.memory_mib.div_ceil(1024)).unwrap_or(u32::MAX);
            request.min_ram_gib = request.min_ram_gib.max(gib);
        }
        let token_price = model.map(|_| PRICE_PER_1K_TOKENS);
        let session = SessionId(rand::random());
        let request_id = self.request_id();
        let service = request.service.clone();
        let reply = self
            .ask(
                &self.indexer_addr,
                Waiting::Request(request_id),
                None,
                Message::Match { request_id, session, request: request.clone() },
                INDEXER_TIMEOUT,
            )
            .await?;
        let offer = match reply {
            Message::Matched { offer, .. } => offer,
            Message::NoMatch { eliminations, .. } => {
                metrics::counter!("dci_gateway_no_match_total").increment(1);
                let details = serde_json::json!({
                    "considered": eliminations.considered,
                    "eliminated_by": eliminations.by_criterion.iter().map(|(c, n)| (format!("{c:?}").to_lowercase(), *n)).collect::<HashMap<_, _>>(),
                });
                return Err(ApiError::new(409, "no_match", eliminations.to_string()).with_details(details));
            }
            other => return Err(ApiError::internal(format!("indexer answered {}", other.kind()))),
        };
        let escrow =
            offer.price.cost_for_secs(hours as u64 * 3600).map_err(|e| ApiError::bad_request(format!("hours: {e}")))?;
        if let Err(e) = self.ledger(|l| l.lock_escrow(session, &account, escrow)) {
            self.release(session);
            return Err(e);
        }
        let mut record = SessionRecord {
            id: session,
            account: account.clone(),
            service: service.clone(),
            container: offer.container,
            container_addr: offer.addr.clone(),
            payout: offer.payout.clone(),
            endpoint: String::new(),
            price: offer.price,
            estimated_rtt_ms: offer.estimated_rtt_ms,
            status: SessionStatus::Starting,
            started_at: clock::now(),
            ended_at: None,
            escrow,
            billed_seconds: None,
            charged: None,
            refunded: None,
            requests: 0,
            tokens: 0,
            token_price,
            token_charged: None,
            placement: None,
            placed_at: None,
            hours,
            request: Some(request),
            segments: Vec::new(),
            usage: None,
        };
        self.save(&record)?;
        let start = Message::StartSession { session, service, consumer: account, price: offer.price };
        let started =
            self.ask(&offer.addr, Waiting::Start(session), Some(offer.container), start, CONTAINER_TIMEOUT).await;
        match started {
            Ok(Message::SessionStarted { endpoint, .. }) => {
                record.endpoint = endpoint;
                record.status = SessionStatus::Running;
                record.started_at = clock::now();
                self.save(&record)?;
                self.watch(&record);
                metrics::counter!("dci_gateway_sessions_started_total").increment(1);
                tracing::info!(session = %session, container = %offer.container.short(), endpoint = %record.endpoint, "session started");
                Ok(record.info())
            }
            other => {
                let reason = match other {
                    Ok(Message::SessionFailed { reason, .. }) => reason,
                    Ok(m) => format!("container answered {}", m.kind()),
                    Err(e) => e.body.message,
                };
                let refunded = self.ledger(|l| l.refund(session)).unwrap_or_default();
                self.release(session);
                record.status = SessionStatus::Interrupted;
                record.ended_at = Some(clock::now());
                record.billed_seconds = Some(0);
                record.charged = Some(Amount::ZERO);
                record.refunded = Some(refunded);
                self.save(&record)?;
                Err(ApiError::unavailable(format!("the container could not start the session: {reason}")))
            }
        }
    }

    fn owned(&self, account: &AccountId, id: SessionId) -> Result<SessionRecord, ApiError> {
        let r: Option<SessionRecord> =
            self.sessions.get(&id.to_string()).map_err(|e| ApiError::internal(e.to_string()))?;
        // Another account's session is reported exactly like a missing one (R-SEC2).
        r.filter(|r| &r.account == account)
            .ok_or_else(|| ApiError::not_found(format!("no session {id} for this account")))
    }

    async fn do_stop(&self, account: AccountId, id: SessionId) -> Result<SessionInfo, ApiError> {
        let _claim = self.claim(id).ok_or_else(|| {
            ApiError::new(
                409,
                "recovering",
                format!("session {id} is moving to another container; stop it again in a few seconds"),
            )
        })?;
        let mut record = self.owned(&account, id)?;
        if record.status != SessionStatus::Running {
            return Err(ApiError::new(409, "not_running", format!("session {id} is {:?}, not running", record.status)));
        }
        self.stop_record(&mut record).await?;
        Ok(record.info())
    }

    /// Stops one running session and settles it: with the container's final
    /// receipt, or when the container does not answer, with the latest
    /// per-second receipt it signed (the time it delivered); with no receipt
    /// at all the escrow is refunded in full.
    async fn stop_record(&self, record: &mut SessionRecord) -> Result<(), ApiError> {
        let placement = record.placement();
        let reply = self
            .ask(
                &record.container_addr,
                Waiting::Stop(placement),
                Some(record.container),
                Message::StopSession { session: placement },
                CONTAINER_TIMEOUT,
            )
            .await;
        let latest = self.unwatch(placement).or_else(|| record.usage.clone());
        let (receipt, status) = match reply {
            Ok(Message::SessionStopped { receipt }) => (Some(receipt), SessionStatus::Stopped),
            other => {
                let why = match other {
                    Ok(m) => format!("container answered {}", m.kind()),
                    Err(e) => e.body.message,
                };
                tracing::warn!(session = %record.id, %why, delivered = latest.as_ref().map(|r| r.receipt.seconds), "no final receipt; settling the last usage receipt");
                (latest, SessionStatus::Interrupted)
            }
        };
        self.finish(record, receipt, status)?;
        self.release(placement);
        self.save(record)
    }

    /// Settles the current placement with `receipt` (tokens included) and
    /// ends the session as `status`; without a receipt, or if the ledger
    /// refuses it, the placement's escrow is refunded and the session is
    /// interrupted.
    fn finish(
        &self,
        record: &mut SessionRecord,
        receipt: Option<SignedReceipt>,
        status: SessionStatus,
    ) -> Result<(), ApiError> {
        let settled = receipt.and_then(|mut r| {
            r.acknowledge(&self.identity);
            match self.settle(record, &r, true) {
                Ok(s) => Some((r, s)),
                Err(e) => {
                    // A receipt the ledger refuses pays nothing: refund the consumer.
                    tracing::warn!(session = %record.id, error = %e, "receipt refused; refunding the escrow");
                    None
                }
            }
        });
        match settled {
            Some((r, s)) => {
                record.status = status;
                record.ended_at = Some(r.receipt.ended_at);
                record.total(r.receipt.seconds, s.charged, s.refunded);
                metrics::counter!("dci_gateway_sessions_settled_total").increment(1);
                tracing::info!(session = %record.id, seconds = r.receipt.seconds, charged = %s.charged, "session settled");
            }
            None => {
                let refunded = self.ledger(|l| l.refund(record.placement()))?;
                record.status = SessionStatus::Interrupted;
                record.ended_at = Some(clock::now());
                record.total(0, Amount::ZERO, refunded);
            }
        }
        record.usage = None;
        Ok(())
    }

    /// Settles `record`'s receipt and, for a model session, its tokens, in
    /// one ledger batch: the receipt pays the seconds from the escrow (the
    /// rest returns to the consumer), then the token charge moves from the
    /// consumer's balance, split by the fee split like the seconds. If the
    /// consumer cannot pay the tokens, the seconds are settled alone and the
    /// tokens recorded as unpaid (`token_charged` 0, with a warning).
    /// `with_tokens`: false when an earlier placement is settled after a
    /// failover (the tokens are charged once, at the end).
    fn settle(
        &self,
        record: &mut SessionRecord,
        receipt: &dci_proto::SignedReceipt,
        with_tokens: bool,
    ) -> Result<dci_ledger::Settled, ApiError> {
        let _meter = self.metering.lock().expect("metering lock");
        // Requests metered while the stop was under way count too.
        if let Ok(Some(latest)) = self.sessions.get::<SessionRecord>(&record.id.to_string()) {
            record.requests = latest.requests;
            record.tokens = latest.tokens;
        }
        let due = match record.token_price {
            Some(p) if with_tokens => token_charge(record.tokens, p),
            _ => Amount::ZERO,
        };
        let settle_op = LedgerOp::Settle {
            receipt: receipt.clone(),
            acker: self.identity.id(),
            payout: record.payout.clone(),
            extra: Amount::ZERO,
        };
        let mut ops = vec![settle_op.clone()];
        if !due.is_zero() {
            let split = self.ledger(|l| l.params())?.fees.split(due).map_err(|e| ApiError::internal(e.to_string()))?;
            let shares = [
                (record.payout.clone(), split.provider),
                (dci_ledger::accounts::checker_fees(), split.checkers),
                (dci_ledger::accounts::indexer_fees(), split.indexers),
                (dci_ledger::accounts::treasury(), split.treasury),
            ];
            ops.extend(shares.into_iter().filter(|(_, a)| !a.is_zero()).map(|(to, amount)| {
                LedgerOp::Transfer(dci_ledger::Transfer { from: record.account.clone(), to, amount })
            }));
        }
        let (outcomes, charged) = match self.ledger(|l| l.apply(&ops)) {
            Ok(o) => (o, due),
            Err(e) if ops.len() > 1 && e.body.code == "insufficient_funds" => {
                tracing::warn!(session = %record.id, tokens = record.tokens, due = %due, "the consumer cannot pay its tokens; settling the seconds alone");
                (self.ledger(|l| l.apply(&[settle_op]))?, Amount::ZERO)
            }
            Err(e) => return Err(e),
        };
        if with_tokens {
            record.token_charged = record.token_price.map(|_| charged);
        }
        match outcomes.into_iter().next() {
            Some(OpOutcome::Settled(s)) => Ok(s),
            other => Err(ApiError::internal(format!("the ledger settled with {other:?}"))),
        }
    }

    /// One of the account's running sessions.
    fn running(&self, account: &AccountId, id: SessionId) -> Result<SessionRecord, ApiError> {
        let r = self.owned(account, id)?;
        if r.status != SessionStatus::Running {
            return Err(ApiError::new(409, "not_running", format!("session {id} is {:?}, not running", r.status)));
        }
        Ok(r)
    }

    /// Stops and settles every running session (graceful shutdown).
    pub async fn stop_all(&self) {
        let records: Vec<SessionRecord> = self.sessions.list(None).unwrap_or_default();
        for id in records.into_iter().filter(|r| r.status == SessionStatus::Running).map(|r| r.id) {
            // A failover under way keeps its session (a restart settles it).
            let Some(_claim) = self.claim(id) else { continue };
            let Ok(Some(mut r)) = self.sessions.get::<SessionRecord>(&id.to_string()) else { continue };
            if r.status != SessionStatus::Running {
                continue;
            }
            if let Err(e) = self.stop_record(&mut r).await {
                tracing::warn!(session = %r.id, error = %e, "could not settle at shutdown");
            }
        }
    }

    /// After a restart of the gateway its sessions' state is lost: settle
    /// every session still marked as starting, running or recovering for
    /// the last usage receipt persisted (refunded in full without one), and
    /// tell its container to stop serving it (a host that kept running,
    /// `dci container run`, would otherwise keep the slot busy).
    pub fn recover_interrupted(&self) -> anyhow::Result<usize> {
        let records: Vec<SessionRecord> = self.sessions.list(None)?;
        let mut n = 0;
        for mut r in records.into_iter().filter(|r| {
            matches!(r.status, SessionStatus::Running | SessionStatus::Starting | SessionStatus::Recovering)
        }) {
            self.send_all(vec![(r.container_addr.clone(), Message::StopSession { session: r.placement() })]);
            let usage = r.usage.clone();
            self.finish(&mut r, usage, SessionStatus::Interrupted).map_err(|e| anyhow::anyhow!("{e}"))?;
            self.save(&r).map_err(|e| anyhow::anyhow!("{e}"))?;
            n += 1;
        }
        Ok(n)
    }

    /// The stake `node`'s account holds in `role` (zero if unknown).
    fn staked(&self, node: &NodeId, role: StakeRole) -> Amount {
        self.with_ledger(|l| l.staked(&AccountId::for_node(node), role)).unwrap_or(Amount::ZERO)
    }

    fn send_all(&self, sends: Vec<(String, Message)>) {
        for (addr, msg) in sends {
            let t = self.transport.clone();
            tokio::spawn(async move { t.dispatch(dci_proto::Net::Send { addr, msg }).await });
        }
    }

    /// The epoch whose rewards come next (the committee serves the same epoch).
    pub fn next_epoch(&self) -> u64 {
        self.with_ledger(|l| l.last_epoch()).ok().flatten().map_or(0, |e| e + 1)
    }

    /// Opens `epoch`'s committee sortition: asks every staked checker for its proof.
    pub fn open_committee(&self, epoch: u64) {
        let stake_of = |id: &NodeId| self.staked(id, StakeRole::Checker);
        let sends = match self.duties.lock().expect("duties lock").as_mut() {
            Some(d) => d.open(epoch, stake_of),
            None => return,
        };
        match sends {
            Ok(sends) => self.send_all(sends),
            Err(e) => tracing::warn!(epoch, error = %e, "committee sortition not opened"),
        }
    }

    /// Closes the open sortition: announces the committee to the indexer
    /// and proposes the penalties that waited for it.
    pub fn close_committee(&self) {
        let stake_of = |id: &NodeId| self.staked(id, StakeRole::Container);
        let closed = match self.duties.lock().expect("duties lock").as_mut() {
            Some(d) => d.close(clock::now(), stake_of),
            None => return,
        };
        match closed {
            Ok((announcement, sends)) => {
                let members = dci_committee::recompute(&announcement).map(|c| c.len()).unwrap_or(0);
                tracing::info!(
                    epoch = announcement.epoch,
                    members,
                    candidates = announcement.candidates.len(),
                    "committee selected"
                );
                let mut all = vec![(self.indexer_addr.clone(), Message::Committee(announcement))];
                all.extend(sends);
                self.send_all(all);
            }
            Err(e) => tracing::warn!(error = %e, "no committee this epoch"),
        }
    }

    /// The committee in force and the penalties, for the API.
    pub fn committee_info(&self) -> Result<CommitteeInfo, ApiError> {
        let duties = self.duties.lock().expect("duties lock");
        let d = duties.as_ref().ok_or_else(|| ApiError::not_found("this gateway coordinates no committee"))?;
        let (a, c) = d.current().ok_or_else(|| ApiError::not_found("no committee has been selected yet"))?;
        let candidates = a
            .candidates
            .iter()
            .map(|x| CandidateInfo {
                id: x.id.to_string(),
                stake: ath(x.stake),
                selected_before: x.selected,
                member: c.contains(&x.id),
                weight: c.member(&x.id).map(|m| m.weight),
            })
            .collect();
        let penalties = d
            .penalties()
            .into_iter()
            .map(|p| PenaltyInfo {
                at_ms: p.at.0,
                container: p.container.to_string(),
                epoch: p.epoch,
                evidence_hash: hex::encode(p.evidence_hash),
                reporter: p.reporter.to_string(),
                signers: p.signers.iter().map(|s| s.to_string()).collect(),
                quorum: p.quorum as u32,
                asked: ath(p.asked),
                taken: ath(p.taken),
                outcome: p.outcome,
            })
            .collect();
        Ok(CommitteeInfo {
            epoch: c.epoch,
            seed: hex::encode(c.seed.0),
            size: a.size,
            quorum: c.quorum() as u32,
            members: c.members.iter().map(|m| m.id.to_string()).collect(),
            candidates,
            announcement: hex::encode(postcard::to_stdvec(a).map_err(|e| ApiError::internal(e.to_string()))?),
            penalties,
        })
    }

    /// Releases the next epoch's rewards for `input`; returns (epoch, paid).
    pub fn distribute_next_epoch(&self, input: &dci_ledger::EpochInput) -> Result<(u64, Amount), ApiError> {
        self.ledger(|l| {
            let epoch = l.last_epoch()?.map_or(0, |e| e + 1);
            l.distribute_epoch(epoch, input).map(|s| (epoch, s.paid))
        })
    }

    /// Matches served per indexer since the last call (and resets the counts).
    pub fn take_served_matches(&self) -> HashMap<NodeId, u64> {
        std::mem::take(&mut *self.served.lock().expect("served lock"))
    }

    /// The indexer's view of every container.
    pub async fn container_views(&self) -> Result<Vec<ContainerView>, ApiError> {
        let request_id = self.request_id();
        match self
            .ask(
                &self.indexer_addr,
                Waiting::Request(request_id),
                None,
                Message::ListContainers { request_id },
                INDEXER_TIMEOUT,
            )
            .await?
        {
            Message::Containers { containers, .. } => Ok(containers),
            other => Err(ApiError::internal(format!("indexer answered {}", other.kind()))),
        }
    }
}

fn offer_info(o: OfferView) -> OfferInfo {
    let gpu = o.spec.gpu.as_ref();
    OfferInfo {
        id: o.id.to_string(),
        state: o.state.to_string(),
        gpu_model: gpu.map(|g| g.model.clone()),
        gpu_count: gpu.map_or(0, |g| g.count),
        vram_gib: gpu.map_or(0, |g| g.vram_gib),
        gpu_simulated: gpu.is_some_and(|g| g.simulated),
        cpu_cores: o.spec.cpu_cores,
        ram_gib: o.spec.ram_gib,
        location: (o.spec.location.lat(), o.spec.location.lon()),
        services: o.services.iter().map(|s| s.to_string()).collect(),
        price_ath_per_hour: ath(o.price.0),
        free_slots: o.free_slots,
        slots: o.slots,
        reputation: o.reputation,
        estimated_rtt_ms: o.estimated_rtt_ms,
    }
}

fn container_info(v: ContainerView) -> ContainerInfo {
    let gpu = v.spec.gpu.as_ref();
    ContainerInfo {
        id: v.id.to_string(),
        state: v.state.to_string(),
        gpu_model: gpu.map(|g| g.model.clone()),
        gpu_count: gpu.map_or(0, |g| g.count),
        vram_gib: gpu.map_or(0, |g| g.vram_gib),
        gpu_simulated: gpu.is_some_and(|g| g.simulated),
        cpu_cores: v.spec.cpu_cores,
        ram_gib: v.spec.ram_gib,
        disk_gib: v.spec.disk_gib,
        location: (v.spec.location.lat(), v.spec.location.lon()),
        services: v.services.iter().map(|s| s.to_string()).collect(),
        warm: v.warm.iter().map(|s| s.to_string()).collect(),
        price_ath_per_hour: ath(v.price.0),
        slots: v.slots,
        reserved: v.reserved,
        reputation: v.reputation,
        last_heartbeat_ago_ms: v.last_heartbeat_ago_ms,
        transitions: v
            .transitions
            .into_iter()
            .map(|t| TransitionInfo {
                from: t.from.to_string(),
                to: t.to.to_string(),
                actor: format!("{:?}", t.actor).to_lowercase(),
                reason: t.reason,
                at_ms: t.at.0,
            })
            .collect(),
        verdicts: v
            .verdicts
            .into_iter()
            .map(|r| VerdictInfo {
                at_ms: r.at.0,
                checker: r.checker.to_string(),
                kind: r.kind.as_str().to_owned(),
                passed: r.passed,
                reason: r.reason,
                compute_ms: r.compute_ms,
            })
            .collect(),
    }
}

impl ConsumerApi for Gateway {
    fn authenticate<'a>(&'a self, api_key: &'a str) -> BoxFuture<'a, Result<AccountId, ApiError>> {
        Box::pin(async move {
            let found = self.ledger(|l| l.account_for_api_key(api_key))?;
            found.ok_or_else(|| ApiError::unauthorized("unknown API key"))
        })
    }

    fn deploy(&self, account: AccountId, req: DeployRequest) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        Box::pin(self.do_deploy(account, req))
    }

    fn sessions(&self, account: AccountId) -> BoxFuture<'_, Result<Vec<SessionInfo>, ApiError>> {
        Box::pin(async move {
            let records: Vec<SessionRecord> =
                self.sessions.list(Some(account.as_str())).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(records.iter().map(SessionRecord::info).collect())
        })
    }

    fn session(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        Box::pin(async move { self.owned(&account, id).map(|r| r.info()) })
    }

    fn stop(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        Box::pin(self.do_stop(account, id))
    }

    fn offers(&self, filter: String, sort: String, limit: u32) -> BoxFuture<'_, Result<Vec<OfferInfo>, ApiError>> {
        Box::pin(async move {
            // Refuse a bad filter here, with the parser's pointer to the bad token.
            dci_indexer::filter::Filter::parse(&filter).map_err(|e| ApiError::bad_request(format!("filter {e}")))?;
            sort.parse::<dci_indexer::SortKey>().map_err(|e| ApiError::bad_request(format!("sort: {e}")))?;
            let request_id = self.request_id();
            let msg = Message::Offers { request_id, filter, sort, limit };
            match self.ask(&self.indexer_addr, Waiting::Request(request_id), None, msg, INDEXER_TIMEOUT).await? {
                Message::OfferList { result: Ok(rows), .. } => Ok(rows.into_iter().map(offer_info).collect()),
                Message::OfferList { result: Err(e), .. } => Err(ApiError::bad_request(e)),
                other => Err(ApiError::internal(format!("indexer answered {}", other.kind()))),
            }
        })
    }

    fn committee(&self) -> BoxFuture<'_, Result<CommitteeInfo, ApiError>> {
        Box::pin(async move { self.committee_info() })
    }

    fn containers(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, ApiError>> {
        Box::pin(async move { Ok(self.container_views().await?.into_iter().map(container_info).collect()) })
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
            let r = self.running(&account, id)?;
            if r.token_price.is_none() {
                return Err(ApiError::not_found(format!(
                    "session {id} runs {}, not a catalogue model: it has no OpenAI-compatible API",
                    r.service
                )));
            }
            Ok(RelayTarget { base: r.endpoint })
        })
    }

    fn meter(&self, account: AccountId, id: SessionId, relayed: Relayed) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async move {
            let tokens = relayed.tokens;
            let _meter = self.metering.lock().expect("metering lock");
            let mut r = self.running(&account, id)?;
            r.requests += 1;
            r.tokens = r.tokens.saturating_add(tokens);
            self.save(&r)?;
            metrics::counter!("dci_gateway_relayed_requests_total").increment(1);
            metrics::counter!("dci_gateway_relayed_tokens_total").increment(tokens);
            Ok(())
        })
    }

    fn view_target(&self, id: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
        Box::pin(async move {
            let r: Option<SessionRecord> =
                self.sessions.get(&id.to_string()).map_err(|e| ApiError::internal(e.to_string()))?;
            r.filter(|r| r.status == SessionStatus::Running && r.service.as_str() == "render")
                .map(|r| RelayTarget { base: r.endpoint })
                .ok_or_else(|| ApiError::not_found(format!("no running render session {id}")))
        })
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
