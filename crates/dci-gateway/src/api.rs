//! Request and response bodies of the public API.
//!
//! Amounts are exact decimal strings of ATH (`"2.5"`), never JSON numbers, so
//! no client loses precision.

use dci_model::{AccountId, Amount, GeoPoint, MatchRequest, Policy, PricePerHour, ServiceName};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Ask for a container running `service`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Service to run, e.g. `render`.
    pub service: String,
    /// GPU model (case-insensitive substring), e.g. `4090`, `H100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Minimum number of GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    /// Minimum memory per GPU, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_gib: Option<u32>,
    /// Minimum CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    /// Minimum RAM, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_gib: Option<u32>,
    /// Minimum disk, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u32>,
    /// Consumer location as `LAT,LON`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<String>,
    /// Largest acceptable estimated round trip, ms (needs `near`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u32>,
    /// Highest acceptable price, ATH per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<String>,
    /// `cheapest`, `best-ux` or `balanced` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Hours of use to hold in escrow (default 1, at most 720).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u32>,
}

/// Longest escrow a deploy may ask for, in hours.
pub const MAX_HOURS: u32 = 720;

impl DeployRequest {
    /// Validates the request into a match request and the hours to escrow.
    pub fn to_match(&self) -> Result<(MatchRequest, u32), ApiError> {
        let bad = |field: &str, e: String| ApiError::bad_request(format!("{field}: {e}"));
        let service = ServiceName::new(self.service.clone()).map_err(|e| bad("service", e.to_string()))?;
        let mut m = MatchRequest::for_service(service);
        m.gpu_model = match &self.gpu {
            Some(g) if g.trim().is_empty() || g.len() > 64 => {
                return Err(bad("gpu", format!("expected a GPU model of 1 to 64 characters, found {g:?}")));
            }
            g => g.clone(),
        };
        m.gpu_count = self.gpu_count.unwrap_or(if m.gpu_model.is_some() { 1 } else { 0 });
        m.min_vram_gib = self.vram_gib.unwrap_or(0);
        m.min_cpu_cores = self.cpu_cores.unwrap_or(0);
        m.min_ram_gib = self.ram_gib.unwrap_or(0);
        m.min_disk_gib = self.disk_gib.unwrap_or(0);
        m.near = match &self.near {
            Some(s) => Some(s.parse::<GeoPoint>().map_err(|e| bad("near", e.to_string()))?),
            None => None,
        };
        if self.max_latency_ms.is_some() && m.near.is_none() {
            return Err(bad("max_latency_ms", "expected `near` (LAT,LON) to be given as well".into()));
        }
        m.max_latency_ms = self.max_latency_ms;
        m.max_price = match &self.max_price {
            Some(p) => Some(p.parse::<PricePerHour>().map_err(|e| bad("max_price", e.to_string()))?),
            None => None,
        };
        m.policy = match &self.policy {
            Some(p) => p.parse::<Policy>().map_err(|e| bad("policy", e))?,
            None => Policy::default(),
        };
        let hours = self.hours.unwrap_or(1);
        if !(1..=MAX_HOURS).contains(&hours) {
            return Err(bad("hours", format!("expected 1..={MAX_HOURS}, found {hours}")));
        }
        Ok((m, hours))
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Reserved and escrowed; the container is starting the service.
    Starting,
    /// Running; the endpoint answers.
    Running,
    /// Its container failed (or was locked for maintenance): the time it
    /// delivered is settled and the session is being placed on another
    /// container; `endpoint` changes when it runs again.
    Recovering,
    /// Stopped and settled.
    Stopped,
    /// Ended by a failure or a restart; settled for the time delivered.
    Interrupted,
}

/// One session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// Session id (32 hex digits).
    pub id: String,
    /// Service.
    pub service: String,
    /// Container id (64 hex digits).
    pub container: String,
    /// Where to call the service.
    pub endpoint: String,
    /// Price, ATH per hour.
    pub price_ath_per_hour: String,
    /// Estimated round trip from the consumer, ms.
    pub estimated_rtt_ms: Option<u32>,
    /// The indexer that matched the current placement (64 hex digits):
    /// the one the epoch seed names among the indexers live at the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexer: Option<String>,
    /// Status.
    pub status: SessionStatus,
    /// Start, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// End, ms since the Unix epoch.
    pub ended_at_ms: Option<u64>,
    /// ATH held in escrow at start.
    pub escrow_ath: String,
    /// Seconds billed (after stop).
    pub billed_seconds: Option<u64>,
    /// ATH charged (after stop).
    pub charged_ath: Option<String>,
    /// ATH returned to the consumer (after stop).
    pub refunded_ath: Option<String>,
    /// Requests relayed to the service through the gateway's OpenAI-compatible relay.
    #[serde(default)]
    pub requests: u64,
    /// Tokens those requests used, from the `usage` the model server returned.
    #[serde(default)]
    pub tokens: u64,
    /// Model sessions: price per 1,000 tokens, ATH (billed at stop, besides the seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_price_ath_per_1k: Option<String>,
    /// Model sessions: ATH charged for the tokens (after stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_charged_ath: Option<String>,
    /// Model sessions: the OpenAI-compatible base path on the gateway,
    /// `/openai/<session>/v1` (give `<gateway URL>` + this to an OpenAI client
    /// as `base_url`, with your API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openai_path: Option<String>,
    /// Render sessions: the viewer page on the gateway, `/view/<session>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_path: Option<String>,
    /// When the current placement started serving, ms since the Unix epoch
    /// (later than `started_at_ms` after a failover).
    #[serde(default)]
    pub placed_at_ms: u64,
    /// Why the session ended, when it did not end by the consumer's stop:
    /// its escrow was used up, no container could take it, the gateway
    /// restarted, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_because: Option<String>,
    /// Earlier placements of this session, oldest first: each container it
    /// ran on before a failover, what it delivered and what that cost. The
    /// totals above (billed seconds, charged, refunded) include them; the
    /// time between two placements is never billed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentInfo>,
}

/// One placement of a session on one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SegmentInfo {
    /// Container id (64 hex digits).
    pub container: String,
    /// When the container started serving, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// The end of the last usage the container signed for, ms since the Unix epoch.
    pub ended_at_ms: u64,
    /// Seconds billed: those the container's last signed receipt covers.
    pub billed_seconds: u64,
    /// ATH charged for them.
    pub charged_ath: String,
    /// Why the session left this container.
    pub ended_because: String,
}

/// Move ATH from the caller's account to another account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Destination account, e.g. `consumer:bob` or `node:<64 hex>`.
    pub to: String,
    /// Exact decimal ATH, e.g. `"12.5"`.
    pub amount_ath: String,
}

impl TransferRequest {
    /// Validates the destination and the amount.
    pub fn parse(&self) -> Result<(AccountId, Amount), ApiError> {
        let to = AccountId::new(self.to.clone()).map_err(|e| ApiError::bad_request(format!("to: {e}")))?;
        let amount: Amount = self.amount_ath.parse().map_err(|e| ApiError::bad_request(format!("amount_ath: {e}")))?;
        if amount.is_zero() {
            return Err(ApiError::bad_request("amount_ath: expected a positive amount, found 0"));
        }
        Ok((to, amount))
    }
}

/// An account's money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BalanceInfo {
    /// Ledger account.
    pub account: String,
    /// Spendable ATH.
    pub balance_ath: String,
    /// ATH locked in escrow for running sessions.
    pub escrowed_ath: String,
    /// ATH staked (all roles).
    pub staked_ath: String,
    /// ATH unbonding (all roles); see `unbonding`.
    pub unbonding_ath: String,
    /// Epoch rewards credited and not claimed yet.
    pub rewards_ath: String,
    /// Stake on its way out: role, amount and when it can be withdrawn.
    pub unbonding: Vec<UnbondingInfo>,
}

/// Stake that is unbonding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnbondingInfo {
    /// `container` or `checker`.
    pub role: String,
    /// ATH.
    pub amount_ath: String,
    /// When it can be withdrawn, ms since the Unix epoch.
    pub release_at_ms: u64,
}

/// Bond or unbond stake for a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StakeRequest {
    /// `container` or `checker`.
    pub role: String,
    /// Exact decimal ATH.
    pub amount_ath: String,
}

/// A node bonds stake from its own account (`node:<id>`), signed with its
/// node key instead of an API key: what `dci container stake` and `dci
/// checker stake` send. Fund the account first (e.g. `dci transfer
/// node:<id> 100`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeStakeRequest {
    /// The node id (64 hex digits).
    pub node: String,
    /// Exact decimal ATH to bond.
    pub amount_ath: String,
    /// The role: `container` (the default), `checker` or `indexer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// When the node signed it, ms since the Unix epoch (taken within 60 s of the gateway's clock).
    pub at_ms: u64,
    /// The node's ed25519 signature of the request (`dci_proto::NodeStake`), hex.
    pub signature: String,
}

/// A checker or indexer publishes where it is reached in the chain's
/// endpoint registry (evm backend only): a record it signed with its node
/// key (`dci_proto::EndpointRecord`, bound to the chain and the registry),
/// which the gateway verifies before it pays the gas to submit it. What
/// `dci indexer register` and `dci checker register` send. The node needs
/// its role's minimum stake bonded first (`dci indexer stake`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRegisterRequest {
    /// The node id (64 hex digits).
    pub node: String,
    /// `checker` or `indexer`.
    pub role: String,
    /// The record's sequence (the node's clock in ms): it must be newer
    /// than the node's last one on chain.
    pub seq: u64,
    /// Where it receives node messages (`host:port`); empty withdraws the
    /// node's record.
    pub addr: String,
    /// A checker's committee VRF public key (64 hex digits); absent for an indexer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf_public: Option<String>,
    /// A checker's chain signer (0x and 40 hex digits); absent for an indexer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_signer: Option<String>,
    /// The node's ed25519 signature of the record, hex.
    pub signature: String,
}

/// A registration on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRegisterInfo {
    /// The node id.
    pub node: String,
    /// `checker` or `indexer`.
    pub role: String,
    /// The record's sequence.
    pub seq: u64,
    /// The address registered (empty: withdrawn).
    pub addr: String,
    /// The chain id.
    pub chain_id: u64,
    /// The registry's address.
    pub registry: String,
    /// The transaction that carried it.
    pub transaction: String,
}

/// How an account's reward for one epoch was computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RewardsInfo {
    /// The epoch.
    pub epoch: u64,
    /// The computation, step by step, in words and numbers.
    pub explanation: String,
    /// The same, as structured data.
    pub details: serde_json::Value,
}

/// A lifecycle transition, as shown to operators and consumers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransitionInfo {
    /// Previous state.
    pub from: String,
    /// New state.
    pub to: String,
    /// Who caused it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// The epoch committee in force (R-CK7) and the penalties it voted (R-CK6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitteeInfo {
    /// The epoch.
    pub epoch: u64,
    /// The epoch's seed, hex.
    pub seed: String,
    /// Seats asked for.
    pub size: u32,
    /// Signatures a penalty needs.
    pub quorum: u32,
    /// Members, best ticket first.
    pub members: Vec<String>,
    /// Every candidate of the epoch.
    pub candidates: Vec<CandidateInfo>,
    /// The announcement (postcard, hex): anyone recomputes the committee from
    /// it with `dci_committee::recompute` (`dci committee` does).
    pub announcement: String,
    /// Penalties decided or pending, oldest first.
    pub penalties: Vec<PenaltyInfo>,
}

/// A committee candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CandidateInfo {
    /// Checker id.
    pub id: String,
    /// Bonded checker stake, ATH.
    pub stake: String,
    /// Committees it sat on before this epoch.
    pub selected_before: u64,
    /// Selected this epoch?
    pub member: bool,
    /// Its sortition weight, when a member.
    pub weight: Option<u64>,
}

/// A penalty proposed to the committee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PenaltyInfo {
    /// When it was decided or proposed, ms since the epoch.
    pub at_ms: u64,
    /// The container.
    pub container: String,
    /// The committee's epoch.
    pub epoch: u64,
    /// Hash of the signed transcript, hex.
    pub evidence_hash: String,
    /// The checker that reported it.
    pub reporter: String,
    /// Members whose signatures were counted.
    pub signers: Vec<String>,
    /// Signatures needed.
    pub quorum: u32,
    /// Penalty asked, ATH.
    pub asked: String,
    /// What the ledger took, ATH.
    pub taken: String,
    /// `slashed`, `pending`, or why nothing was taken.
    pub outcome: String,
}

/// A checker verdict on a container, as the indexer recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerdictInfo {
    /// When the indexer accepted it, ms since the Unix epoch.
    pub at_ms: u64,
    /// The checker that signed it.
    pub checker: String,
    /// `registration`, `standby` or `in-service`.
    pub kind: String,
    /// Passed or failed.
    pub passed: bool,
    /// The checker's reason.
    pub reason: String,
    /// Time from challenge to commitment, ms.
    pub compute_ms: u64,
}

/// One container as the network sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContainerInfo {
    /// Container id.
    pub id: String,
    /// Lifecycle state.
    pub state: String,
    /// GPU model, if any.
    pub gpu_model: Option<String>,
    /// Number of GPUs.
    pub gpu_count: u32,
    /// GiB per GPU.
    pub vram_gib: u32,
    /// True when the GPU profile is simulated (development hosts).
    pub gpu_simulated: bool,
    /// CPU cores.
    pub cpu_cores: u32,
    /// RAM, GiB.
    pub ram_gib: u32,
    /// Disk, GiB.
    pub disk_gib: u32,
    /// Latitude, longitude.
    pub location: (f64, f64),
    /// Pre-installed services.
    pub services: Vec<String>,
    /// Those with an instance started and waiting for the next session
    /// (as of the last heartbeat).
    #[serde(default)]
    pub warm: Vec<String>,
    /// Price, ATH per hour.
    pub price_ath_per_hour: String,
    /// Total slots.
    pub slots: u32,
    /// Slots reserved by sessions.
    pub reserved: u32,
    /// Checker reputation, 0..=1000.
    pub reputation: u32,
    /// Milliseconds since the last heartbeat.
    pub last_heartbeat_ago_ms: Option<u64>,
    /// Recent lifecycle transitions, newest last.
    pub transitions: Vec<TransitionInfo>,
    /// The capacity its latest passed proof verified (its reward weight,
    /// before uptime): the class proven and the units vouched for. `None`
    /// until an inspection passed (and after a spec change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_class: Option<String>,
    /// Capacity units vouched for (`dci_capacity::verified_units`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_units: Option<u64>,
    /// Recent checker verdicts, newest last.
    #[serde(default)]
    pub verdicts: Vec<VerdictInfo>,
}

/// One offer (R-IX5): a container that passes a filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OfferInfo {
    /// Container id.
    pub id: String,
    /// Lifecycle state.
    pub state: String,
    /// GPU model, if any.
    pub gpu_model: Option<String>,
    /// Number of GPUs.
    pub gpu_count: u32,
    /// GiB per GPU.
    pub vram_gib: u32,
    /// True when the GPU profile is simulated.
    pub gpu_simulated: bool,
    /// CPU cores.
    pub cpu_cores: u32,
    /// RAM, GiB.
    pub ram_gib: u32,
    /// Latitude, longitude.
    pub location: (f64, f64),
    /// Pre-installed services.
    pub services: Vec<String>,
    /// Price, ATH per hour.
    pub price_ath_per_hour: String,
    /// Slots free now / total.
    pub free_slots: u32,
    /// Total slots.
    pub slots: u32,
    /// Checker reputation, 0..=1000.
    pub reputation: u32,
    /// Estimated round trip from the filter's `near`.
    pub estimated_rtt_ms: Option<u32>,
}

/// One page of a list: `limit` rows from row `offset` of the gateway's
/// cached view (a snapshot refreshed at most every few hundred ms; pages of
/// one snapshot never overlap nor skip, pages across a refresh may).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Rows skipped.
    pub offset: u32,
    /// Most rows returned.
    pub limit: u32,
}

/// Most offers in one page of `GET /v1/offers`.
pub const MAX_OFFERS_PAGE: u32 = 100;
/// Offers reachable by paging (`offset + limit`): the best this many of a
/// filter; a search beyond it should narrow its filter.
pub const OFFERS_WINDOW: u32 = 1000;
/// Most containers in one page of `GET /v1/containers`.
pub const MAX_CONTAINERS_PAGE: u32 = 500;

impl Page {
    /// A checked page: `limit` in `1..=max`, default `default`; `offset`
    /// default 0, and `offset + limit` at most `window`.
    pub fn checked(
        offset: Option<u32>,
        limit: Option<u32>,
        default: u32,
        max: u32,
        window: u32,
    ) -> Result<Page, ApiError> {
        let limit = limit.unwrap_or(default);
        if !(1..=max).contains(&limit) {
            return Err(ApiError::bad_request(format!("limit: expected 1..={max}, found {limit}")));
        }
        let offset = offset.unwrap_or(0);
        if u64::from(offset) + u64::from(limit) > u64::from(window) {
            return Err(ApiError::bad_request(format!(
                "offset: expected offset + limit at most {window}, found {offset} + {limit} (narrow the filter instead)"
            )));
        }
        Ok(Page { offset, limit })
    }

    /// The page's rows of `rows`.
    pub fn of<'a, T>(&self, rows: &'a [T]) -> &'a [T] {
        let from = (self.offset as usize).min(rows.len());
        let to = from.saturating_add(self.limit as usize).min(rows.len());
        &rows[from..to]
    }
}

/// The JSON body of every error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `no_match`, `bad_request`,
    /// `unauthorized`, `not_found`, `method_not_allowed`,
    /// `payload_too_large`, `rate_limited`.
    pub code: String,
    /// What went wrong and what was expected.
    pub message: String,
    /// Structured details (for `no_match`: containers eliminated per criterion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// An API error: an HTTP status and a JSON body.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{} ({}): {}", body.code, status, body.message)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, body: ErrorBody { code: code.into(), message: message.into(), details: None } }
    }
    /// 400 bad_request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "bad_request", message)
    }
    /// 401 unauthorized.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(401, "unauthorized", message)
    }
    /// 404 not_found.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, "not_found", message)
    }
    /// 402 insufficient_funds.
    pub fn insufficient_funds(message: impl Into<String>) -> Self {
        ApiError::new(402, "insufficient_funds", message)
    }
    /// 405 method_not_allowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "method_not_allowed", message)
    }
    /// 413 payload_too_large.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        ApiError::new(413, "payload_too_large", message)
    }
    /// 502 bad_gateway: an upstream answered with something not passed on.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        ApiError::new(502, "bad_gateway", message)
    }
    /// 503 unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "unavailable", message)
    }
    /// 500 internal.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "internal", message)
    }
    /// Adds structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.body.details = Some(details);
        self
    }
}

/// Formats an amount as an exact decimal ATH string.
pub fn ath(a: Amount) -> String {
    a.to_string()
}
