//! The HTTP server: routes, authentication, JSON errors, `/openapi.json`,
//! `/metrics`, the render viewer; the OpenAI relay's route (its rules are in
//! [`crate::relay`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use dci_model::{AccountId, SessionId};
use utoipa::OpenApi;

use crate::api::{
    ApiError, BalanceInfo, CandidateInfo, CommitteeInfo, ContainerInfo, DeployRequest, ErrorBody, NodeRegisterInfo,
    NodeRegisterRequest, NodeStakeRequest, OfferInfo, PenaltyInfo, RewardsInfo, SegmentInfo, SessionInfo,
    SessionStatus, StakeRequest, TransferRequest, TransitionInfo, UnbondingInfo, VerdictInfo,
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
    /// Bonds container stake from a node's own account, on the node's
    /// signature (not an API key); returns the node account's balance.
    fn node_stake(&self, req: NodeStakeRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>>;
    /// Publishes a node-signed endpoint record in the chain's registry
    /// (verified first); on a backend without one, an error saying where
    /// membership comes from.
    fn node_register(&self, req: NodeRegisterRequest) -> BoxFuture<'_, Result<NodeRegisterInfo, ApiError>>;
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
    /// The service of one of the account's running model sessions, to relay
    /// an OpenAI-style request to.
    fn relay_target(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>>;
    /// Meters one relayed request. Called exactly once per answer the relay
    /// passed on (2xx, 4xx or 5xx; a redirect is not passed on), when its
    /// stream ended: completed, capped, broken, or dropped by the consumer;
    /// possibly after the session stopped. `relayed.tokens` is 0 unless the
    /// answer was a 2xx. The tokens are the service's claim: bill at most
    /// what the bytes allow.
    fn meter(&self, account: AccountId, id: SessionId, relayed: Relayed) -> BoxFuture<'_, Result<(), ApiError>>;
    /// The service of a running render session, for its viewer page.
    /// The session id is the capability: whoever has it may watch (the
    /// stream itself is open to whoever knows the endpoint, as the page is).
    fn view_target(&self, id: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>>;
}

/// Where the relay (and the viewer) reach a session's service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayTarget {
    /// `http://<host>:<port>` of the session's service: the host is the
    /// container's registered address, the port the one its service
    /// reported; the role, not the HTTP layer, composes it. Anything else
    /// (another scheme, credentials, a path, a query) is refused.
    pub base: String,
}

/// What one relayed request moved, as the gateway counted it, and the tokens
/// the service's answer claimed; the role bills at most what the bytes allow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Bytes of the request body sent to the service.
    pub request_bytes: u64,
    /// Bytes of the answer's body passed on to the consumer (at most
    /// [`crate::relay::MAX_RELAY_RESPONSE_BYTES`]).
    pub response_bytes: u64,
    /// Tokens the answer's last `usage` object claimed
    /// ([`crate::relay::usage_tokens`]); 0 for an unsuccessful answer.
    pub tokens: u64,
}

/// Renders the Prometheus text exposition of the process's metrics.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) api: Arc<dyn ConsumerApi>,
    metrics: MetricsRender,
    /// Relays requests to the sessions' services ([`crate::relay::client`]).
    pub(crate) http: reqwest::Client,
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
        node_stake,
        node_register,
        withdraw,
        rewards,
        crate::relay::relay,
        view
    ),
    components(schemas(
        DeployRequest,
        SessionInfo,
        SegmentInfo,
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
        NodeStakeRequest,
        NodeRegisterRequest,
        NodeRegisterInfo,
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
        .route("/v1/node-stake", post(node_stake))
        .route("/v1/node-register", post(node_register))
        .route("/v1/withdraw", post(withdraw))
        .route("/v1/rewards", get(rewards))
        .route(
            "/openai/{id}/v1/{*rest}",
            any(crate::relay::relay).layer(DefaultBodyLimit::max(crate::relay::MAX_RELAY_REQUEST_BYTES)),
        )
        .route("/view/{id}", get(view))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics_text))
        .route("/health", get(|| async { Json(serde_json::json!({ "ok": true })) }))
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .with_state(AppState { api, metrics, http: crate::relay::client() })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ApiDoc::openapi().to_pretty_json().unwrap_or_default())
        .into_response()
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (s.metrics)()).into_response()
}

pub(crate) async fn account(s: &AppState, headers: &HeaderMap) -> Result<AccountId, ApiError> {
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

pub(crate) fn session_id(raw: &str) -> Result<SessionId, ApiError> {
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

/// A node bonds container stake from its own account (`node:<id>`), signed
/// with its node key: no API key. The signature covers the node, the amount
/// and the time; a request older or newer than 60 s, or seen before, is refused.
#[utoipa::path(post, path = "/v1/node-stake", request_body = NodeStakeRequest,
    responses((status = 200, body = BalanceInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 402, body = ErrorBody)))]
async fn node_stake(
    State(s): State<AppState>,
    body: Result<Json<NodeStakeRequest>, JsonRejection>,
) -> Result<Json<BalanceInfo>, ApiError> {
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("expected a NodeStakeRequest JSON body: {}", e.body_text())))?;
    s.api.node_stake(req).await.map(Json)
}

/// A checker or indexer publishes its endpoint in the chain's registry: a
/// record signed with its node key for this chain and registry, verified
/// here before the gateway pays the gas; the chain checks the node's stake
/// and that the sequence is newer than its last. On the embedded backend
/// there is no registry: membership comes from the network file (409).
#[utoipa::path(post, path = "/v1/node-register", request_body = NodeRegisterRequest,
    responses((status = 200, body = NodeRegisterInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn node_register(
    State(s): State<AppState>,
    body: Result<Json<NodeRegisterRequest>, JsonRejection>,
) -> Result<Json<NodeRegisterInfo>, ApiError> {
    let Json(req) = body
        .map_err(|e| ApiError::bad_request(format!("expected a NodeRegisterRequest JSON body: {}", e.body_text())))?;
    s.api.node_register(req).await.map(Json)
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

/// The WebSocket stream URL of a render service
/// (`http://host:port` → `ws://host:port/stream`), with `query` passed on.
/// Only the target's host and port are used.
pub fn stream_url(target: &RelayTarget, query: Option<&str>) -> Result<String, ApiError> {
    let base = crate::relay::base_url(target)?;
    let host = base.host_str().unwrap_or_default();
    let port = base.port_or_known_default().unwrap_or(80);
    let ws = format!("ws://{host}:{port}/stream");
    Ok(match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{ws}?{q}"),
        None => ws,
    })
}

/// The browser viewer of a running render session. Without `ws` in the
/// query it redirects to itself pointed at the container's stream (other
/// query parameters, e.g. `width`, `height`, `fps`, go to the stream); with
/// it, it serves the page, which then streams straight from the container.
#[utoipa::path(get, path = "/view/{id}", params(("id" = String, Path, description = "session id")),
    responses((status = 200, description = "the viewer page (HTML)"), (status = 303, description = "to the page pointed at the stream"),
        (status = 404, body = ErrorBody)))]
async fn view(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let sid = session_id(&id)?;
    let target = s.api.view_target(sid).await?;
    let query = query.unwrap_or_default();
    if query.split('&').any(|p| p.starts_with("ws=")) {
        return Ok(Html(dci_services::render::CLIENT_PAGE).into_response());
    }
    let ws = stream_url(&target, Some(&query))?;
    Ok(Redirect::to(&format!("/view/{id}?{}", dci_services::render::client_query(&ws))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_follow_the_target() {
        let check = |base: &str, query: Option<&str>, expect: &str| {
            assert_eq!(stream_url(&RelayTarget { base: base.into() }, query).unwrap(), expect);
        };
        check("http://127.0.0.1:9000", None, "ws://127.0.0.1:9000/stream");
        check("http://127.0.0.1:9000/", Some(""), "ws://127.0.0.1:9000/stream");
        check("http://h:1", Some("fps=10&width=96"), "ws://h:1/stream?fps=10&width=96");
        check("http://[::1]:1", None, "ws://[::1]:1/stream");
        check("http://h", None, "ws://h:80/stream");
        for base in ["ftp://h", "https://h:1", "http://h:1/elsewhere", "http://u@h:1"] {
            assert!(stream_url(&RelayTarget { base: base.into() }, None).is_err(), "{base}");
        }
    }

    #[test]
    fn the_openapi_document_states_the_relays_errors() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let responses = &doc["paths"]["/openai/{id}/v1/{rest}"]["post"]["responses"];
        for status in ["200", "401", "404", "413", "502", "503"] {
            assert!(responses.get(status).is_some(), "{status}: {responses}");
        }
    }
}
