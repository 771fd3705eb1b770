//! The HTTP server: routes, authentication, JSON errors, `/openapi.json`, `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dci_model::{AccountId, SessionId};
use utoipa::OpenApi;

use crate::api::{
    ApiError, BalanceInfo, CandidateInfo, CommitteeInfo, ContainerInfo, DeployRequest, ErrorBody, OfferInfo,
    PenaltyInfo, RewardsInfo, SessionInfo, SessionStatus, StakeRequest, TransferRequest, TransitionInfo, UnbondingInfo,
    VerdictInfo,
};

/// A boxed future, so that [`ConsumerApi`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the HTTP layer needs from the gateway role.
///
/// Contract: every method either does all of its work or none of it (a failed
/// deploy leaves no escrow locked and no slot reserved); a method called with
/// an account only ever sees that account's sessions and money (R-SEC2);
/// errors are [`ApiError`]s with a stable code.
pub trait ConsumerApi: Send + Sync + 'static {
    /// The account an API key belongs to.
    fn authenticate<'a>(&'a self, api_key: &'a str) -> BoxFuture<'a, Result<AccountId, ApiError>>;
    /// Matches, reserves, escrows and starts a session.
    fn deploy(&self, account: AccountId, req: DeployRequest) -> BoxFuture<'_, Result<SessionInfo, ApiError>>;
    /// The account's sessions, newest first.
    fn sessions(&self, account: AccountId) -> BoxFuture<'_, Result<Vec<SessionInfo>, ApiError>>;
    /// One of the account's sessions.
    fn session(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>>;
    /// Stops and settles one of the account's sessions.
    fn stop(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>>;
    /// Offers passing `filter` (the offers language), sorted by `sort`.
    fn offers(&self, filter: String, sort: String, limit: u32) -> BoxFuture<'_, Result<Vec<OfferInfo>, ApiError>>;
    /// Every known container.
    fn containers(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, ApiError>>;
    /// The epoch committee in force and its penalties.
    fn committee(&self) -> BoxFuture<'_, Result<CommitteeInfo, ApiError>>;
    /// Moves ATH from the account to another; returns the new balance.
    fn transfer(&self, account: AccountId, req: TransferRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>>;
    /// Bonds (`unstake == false`) or starts unbonding stake for a role.
    fn stake(
        &self,
        account: AccountId,
        req: StakeRequest,
        unstake: bool,
    ) -> BoxFuture<'_, Result<BalanceInfo, ApiError>>;
    /// Withdraws unbonded stake that is due and claims pending rewards.
    fn withdraw(&self, account: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>>;
    /// How the account's reward for `epoch` (default: the latest) was computed.
    fn rewards(&self, account: AccountId, epoch: Option<u64>) -> BoxFuture<'_, Result<RewardsInfo, ApiError>>;
    /// The account's balance.
    fn balance(&self, account: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>>;
}

/// Renders the Prometheus text exposition of the process's metrics.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AppState {
    api: Arc<dyn ConsumerApi>,
    metrics: MetricsRender,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "DCI gateway API",
        description = "Deploy services on DCI containers, follow sessions and balances. \
        Authenticated endpoints take `Authorization: Bearer <api key>`. Errors are JSON `ErrorBody`s with a stable code."
    ),
    paths(
        deploy,
        list_sessions,
        get_session,
        stop_session,
        list_containers,
        committee,
        balance,
        transfer,
        stake,
        unstake,
        withdraw,
        rewards
    ),
    components(schemas(
        DeployRequest,
        SessionInfo,
        SessionStatus,
        BalanceInfo,
        ContainerInfo,
        TransitionInfo,
        VerdictInfo,
        CommitteeInfo,
        CandidateInfo,
        PenaltyInfo,
        OfferInfo,
        TransferRequest,
        StakeRequest,
        UnbondingInfo,
        RewardsInfo,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// The router: every public route of the gateway.
pub fn router(api: Arc<dyn ConsumerApi>, metrics: MetricsRender) -> Router {
    Router::new()
        .route("/v1/sessions", get(list_sessions).post(deploy))
        .route("/v1/sessions/{id}", get(get_session).delete(stop_session))
        .route("/v1/containers", get(list_containers))
        .route("/v1/committee", get(committee))
        .route("/v1/offers", get(list_offers))
        .route("/v1/balance", get(balance))
        .route("/v1/transfers", post(transfer))
        .route("/v1/stake", post(stake))
        .route("/v1/unstake", post(unstake))
        .route("/v1/withdraw", post(withdraw))
        .route("/v1/rewards", get(rewards))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics_text))
        .route("/health", get(|| async { Json(serde_json::json!({ "ok": true })) }))
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .with_state(AppState { api, metrics })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ApiDoc::openapi().to_pretty_json().unwrap_or_default())
        .into_response()
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (s.metrics)()).into_response()
}

async fn account(s: &AppState, headers: &HeaderMap) -> Result<AccountId, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("expected an `Authorization: Bearer <api key>` header"))?;
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected the Authorization header to be `Bearer <api key>`"))?;
    s.api.authenticate(key).await
}

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    raw.parse().map_err(|e: dci_model::id::IdError| ApiError::bad_request(e.to_string()))
}

/// Deploy a service: match, reserve, escrow, start.
#[utoipa::path(post, path = "/v1/sessions", request_body = DeployRequest,
    responses((status = 200, body = SessionInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 402, body = ErrorBody), (status = 409, description = "no container matched; details count eliminations per criterion", body = ErrorBody)))]
async fn deploy(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<DeployRequest>, JsonRejection>,
) -> Result<Json<SessionInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("expected a DeployRequest JSON body: {}", e.body_text())))?;
    s.api.deploy(who, req).await.map(Json)
}

/// The caller's sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", responses((status = 200, body = Vec<SessionInfo>), (status = 401, body = ErrorBody)))]
async fn list_sessions(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    let who = account(&s, &headers).await?;
    s.api.sessions(who).await.map(Json)
}

/// One of the caller's sessions.
#[utoipa::path(get, path = "/v1/sessions/{id}", params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionInfo), (status = 404, body = ErrorBody)))]
async fn get_session(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    s.api.session(who, session_id(&id)?).await.map(Json)
}

/// Stop a session and settle its bill.
#[utoipa::path(delete, path = "/v1/sessions/{id}", params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn stop_session(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    s.api.stop(who, session_id(&id)?).await.map(Json)
}

/// Every container the network knows, with state and recent transitions.
#[utoipa::path(get, path = "/v1/containers", responses((status = 200, body = Vec<ContainerInfo>)))]
async fn list_containers(State(s): State<AppState>) -> Result<Json<Vec<ContainerInfo>>, ApiError> {
    s.api.containers().await.map(Json)
}

/// The epoch committee in force, its announcement and the penalties it voted.
#[utoipa::path(get, path = "/v1/committee", responses((status = 200, body = CommitteeInfo), (status = 404, body = ErrorBody)))]
async fn committee(State(s): State<AppState>) -> Result<Json<CommitteeInfo>, ApiError> {
    s.api.committee().await.map(Json)
}

/// The caller's balance and escrow.
#[utoipa::path(get, path = "/v1/balance", responses((status = 200, body = BalanceInfo), (status = 401, body = ErrorBody)))]
async fn balance(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<BalanceInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    s.api.balance(who).await.map(Json)
}

/// Transfer ATH from the caller's account.
#[utoipa::path(post, path = "/v1/transfers", request_body = TransferRequest,
    responses((status = 200, body = BalanceInfo), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody)))]
async fn transfer(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Json<BalanceInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("expected a TransferRequest JSON body: {}", e.body_text())))?;
    s.api.transfer(who, req).await.map(Json)
}

fn stake_body(body: Result<Json<StakeRequest>, JsonRejection>) -> Result<StakeRequest, ApiError> {
    body.map(|Json(r)| r)
        .map_err(|e| ApiError::bad_request(format!("expected a StakeRequest JSON body: {}", e.body_text())))
}

/// Bond stake for a role (`container` or `checker`).
#[utoipa::path(post, path = "/v1/stake", request_body = StakeRequest,
    responses((status = 200, body = BalanceInfo), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody)))]
async fn stake(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<StakeRequest>, JsonRejection>,
) -> Result<Json<BalanceInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    s.api.stake(who, stake_body(body)?, false).await.map(Json)
}

/// Start unbonding stake; it can be withdrawn after the unbonding period.
#[utoipa::path(post, path = "/v1/unstake", request_body = StakeRequest,
    responses((status = 200, body = BalanceInfo), (status = 400, body = ErrorBody)))]
async fn unstake(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<StakeRequest>, JsonRejection>,
) -> Result<Json<BalanceInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    s.api.stake(who, stake_body(body)?, true).await.map(Json)
}

/// Withdraw unbonded stake that is due and claim pending epoch rewards.
#[utoipa::path(post, path = "/v1/withdraw", responses((status = 200, body = BalanceInfo)))]
async fn withdraw(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<BalanceInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    s.api.withdraw(who).await.map(Json)
}

/// Query of `/v1/rewards`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RewardsQuery {
    epoch: Option<u64>,
    account: Option<String>,
}

/// How an account's reward for an epoch (default: the latest) was computed.
/// Rewards are public, as they would be on chain: any account may be asked
/// for (default: the caller's).
#[utoipa::path(get, path = "/v1/rewards", params(("epoch" = Option<u64>, Query, description = "epoch number"),
    ("account" = Option<String>, Query, description = "account, e.g. node:<id> (default: yours)")),
    responses((status = 200, body = RewardsInfo), (status = 404, body = ErrorBody)))]
async fn rewards(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<RewardsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RewardsInfo>, ApiError> {
    let who = account(&s, &headers).await?;
    let Query(q) = query
        .map_err(|e| ApiError::bad_request(format!("expected ?epoch=<number>&account=<id>: {}", e.body_text())))?;
    let whose = match q.account {
        Some(a) => AccountId::new(a).map_err(|e| ApiError::bad_request(format!("account: {e}")))?,
        None => who,
    };
    s.api.rewards(whose, q.epoch).await.map(Json)
}

/// Query of `/v1/offers`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OffersQuery {
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
}

/// Offers passing a filter, e.g. `gpu=H100 vram>=80 rtt<30 near=38.7,-9.1 price<=2.5 service=render`.
/// A bad filter gets a 400 whose message points at the bad token.
#[utoipa::path(get, path = "/v1/offers", params(
    ("filter" = Option<String>, Query, description = "filter in the offers language (empty: every container)"),
    ("sort" = Option<String>, Query, description = "price (default), rtt, vram, reputation or free"),
    ("limit" = Option<u32>, Query, description = "most rows, 1..=1000 (default 20)")),
    responses((status = 200, body = Vec<OfferInfo>), (status = 400, body = ErrorBody)))]
async fn list_offers(
    State(s): State<AppState>,
    query: Result<Query<OffersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<OfferInfo>>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("expected ?filter=&sort=&limit=: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit: expected 1..=1000, found {limit}")));
    }
    s.api.offers(q.filter.unwrap_or_default(), q.sort.unwrap_or_else(|| "price".into()), limit).await.map(Json)
}
