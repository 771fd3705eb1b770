//! The HTTP server: routes, authentication, JSON errors, `/openapi.json`, `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use dci_model::{AccountId, SessionId};
use utoipa::OpenApi;

use crate::api::{
    ApiError, BalanceInfo, CandidateInfo, CommitteeInfo, ContainerInfo, DeployRequest, ErrorBody, OfferInfo,
    PenaltyInfo, RewardsInfo, SegmentInfo, SessionInfo, SessionStatus, StakeRequest, TransferRequest, TransitionInfo,
    UnbondingInfo, VerdictInfo,
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
    /// The service endpoint (`http://host:port`) to relay an OpenAI-style
    /// request of one of the account's running model sessions to.
    fn relay_target(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<String, ApiError>>;
    /// Meters one relayed request that used `tokens` (from the answer's `usage`).
    fn meter(&self, account: AccountId, id: SessionId, tokens: u64) -> BoxFuture<'_, Result<(), ApiError>>;
    /// The service endpoint of a running render session, for its viewer page.
    /// The session id is the capability: whoever has it may watch (the
    /// stream itself is open to whoever knows the endpoint, as the page is).
    fn view_target(&self, id: SessionId) -> BoxFuture<'_, Result<String, ApiError>>;
}

/// Renders the Prometheus text exposition of the process's metrics.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AppState {
    api: Arc<dyn ConsumerApi>,
    metrics: MetricsRender,
    /// Relays requests to the sessions' services.
    http: reqwest::Client,
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
        rewards,
        relay,
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
        .route("/openai/{id}/v1/{*rest}", any(relay))
        .route("/view/{id}", get(view))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics_text))
        .route("/health", get(|| async { Json(serde_json::json!({ "ok": true })) }))
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .with_state(AppState { api, metrics, http: relay_client() })
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

/// The client the relay forwards with: no proxy from the environment, a
/// bound on how long a service may take.
fn relay_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(RELAY_TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new())
}

/// Longest a relayed request may take, answer included.
pub const RELAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The tokens an OpenAI-style answer says it used: `usage.total_tokens`,
/// else `usage.prompt_tokens`, else the model server's `x-dci-prompt-tokens`
/// header, else 0.
pub fn usage_tokens(headers: &reqwest::header::HeaderMap, body: &[u8]) -> u64 {
    let usage = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| {
        let u = v.get("usage")?;
        u.get("total_tokens").and_then(|t| t.as_u64()).or_else(|| u.get("prompt_tokens").and_then(|t| t.as_u64()))
    });
    usage
        .or_else(|| headers.get("x-dci-prompt-tokens").and_then(|h| h.to_str().ok()).and_then(|h| h.parse().ok()))
        .unwrap_or(0)
}

/// The OpenAI-compatible relay of a model session: authenticates the
/// caller's API key (as OpenAI clients send it), checks the session is the
/// caller's and running, forwards the request to the container's model
/// server, meters the tokens of a successful answer, and returns the answer
/// unchanged. Point an OpenAI client's `base_url` at `<gateway>/openai/<id>/v1`.
#[utoipa::path(post, path = "/openai/{id}/v1/{rest}",
    request_body(content = String, content_type = "application/json", description = "the OpenAI request, forwarded unchanged"),
    params(("id" = String, Path, description = "session id"),
    ("rest" = String, Path, description = "the OpenAI API path, e.g. `embeddings` or `models`")),
    responses((status = 200, description = "the model server's answer, unchanged"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn relay(
    State(s): State<AppState>,
    Path((id, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = account(&s, &headers).await?;
    let id = session_id(&id)?;
    let endpoint = s.api.relay_target(who.clone(), id).await?;
    let mut url = format!("{}/v1/{rest}", endpoint.trim_end_matches('/'));
    if let Some(q) = query {
        url.push('?');
        url.push_str(&q);
    }
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
        .map_err(|e| ApiError::bad_request(format!("method: {e}")))?;
    let mut forward = s.http.request(method, url).body(body);
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        forward = forward.header(reqwest::header::CONTENT_TYPE, ct);
    }
    let unavailable = |e: reqwest::Error| ApiError::unavailable(format!("the session's service did not answer: {e}"));
    let answer = forward.send().await.map_err(unavailable)?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let answer_headers = answer.headers().clone();
    let bytes = answer.bytes().await.map_err(unavailable)?;
    if status.is_success() {
        s.api.meter(who, id, usage_tokens(&answer_headers, &bytes)).await?;
    }
    let mut response = (status, bytes).into_response();
    let content_type = answer_headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

/// The WebSocket stream URL of a render service at `endpoint`
/// (`http://host:port` → `ws://host:port/stream`), with `query` passed on.
pub fn stream_url(endpoint: &str, query: Option<&str>) -> Result<String, ApiError> {
    let endpoint = endpoint.trim_end_matches('/');
    let ws = if let Some(rest) = endpoint.strip_prefix("http://") {
        format!("ws://{rest}/stream")
    } else if let Some(rest) = endpoint.strip_prefix("https://") {
        format!("wss://{rest}/stream")
    } else {
        return Err(ApiError::internal(format!("expected an http(s) endpoint, found {endpoint:?}")));
    };
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
    let endpoint = s.api.view_target(sid).await?;
    let query = query.unwrap_or_default();
    if query.split('&').any(|p| p.starts_with("ws=")) {
        return Ok(Html(dci_services::render::CLIENT_PAGE).into_response());
    }
    let ws = stream_url(&endpoint, Some(&query))?;
    Ok(Redirect::to(&format!("/view/{id}?{}", dci_services::render::client_query(&ws))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_follow_the_endpoint() {
        let check = |endpoint: &str, query: Option<&str>, expect: &str| {
            assert_eq!(stream_url(endpoint, query).unwrap(), expect);
        };
        check("http://127.0.0.1:9000", None, "ws://127.0.0.1:9000/stream");
        check("http://127.0.0.1:9000/", Some(""), "ws://127.0.0.1:9000/stream");
        check("https://h:1", Some("fps=10&width=96"), "wss://h:1/stream?fps=10&width=96");
        assert!(stream_url("ftp://h", None).is_err());
    }

    #[test]
    fn usage_tokens_prefers_the_body() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(usage_tokens(&h, br#"{"usage":{"prompt_tokens":7,"total_tokens":9}}"#), 9);
        assert_eq!(usage_tokens(&h, br#"{"usage":{"prompt_tokens":7}}"#), 7);
        assert_eq!(usage_tokens(&h, b"not json"), 0);
        h.insert("x-dci-prompt-tokens", reqwest::header::HeaderValue::from_static("5"));
        assert_eq!(usage_tokens(&h, b"{}"), 5);
    }
}
