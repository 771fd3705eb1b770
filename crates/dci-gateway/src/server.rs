//! The HTTP server: routes, authentication, rate limits ([`crate::limits`]),
//! JSON errors for every failure (unknown routes and methods, oversized
//! bodies, refused requests), `/openapi.json`, `/metrics`, the render
//! viewer; the OpenAI relay's route (its rules are in [`crate::relay`]);
//! and [`serve`], plain http or https from a certificate ([`TlsFiles`]).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, any, get, post};
use axum::{Json, Router};
use dci_model::{AccountId, SessionId};
use utoipa::OpenApi;

use crate::api::{
    ApiError, BalanceInfo, CandidateInfo, CommitteeInfo, ContainerInfo, DeployRequest, ErrorBody, NodeRegisterInfo,
    NodeRegisterRequest, NodeStakeRequest, OfferInfo, PenaltyInfo, RewardsInfo, SegmentInfo, SessionInfo,
    SessionStatus, StakeRequest, TransferRequest, TransitionInfo, UnbondingInfo, VerdictInfo,
};
use crate::api::{MAX_CONTAINERS_PAGE, MAX_OFFERS_PAGE, OFFERS_WINDOW, Page};
use crate::limits::{LimitsConfig, RateLimits};

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
    /// One page of the offers passing `filter` (the offers language),
    /// sorted by `sort`. Cheap: from a cached view, never a scan per call.
    fn offers(&self, filter: String, sort: String, page: Page) -> BoxFuture<'_, Result<Vec<OfferInfo>, ApiError>>;
    /// One page of the known containers, by id. Cheap: from a cached view.
    fn containers(&self, page: Page) -> BoxFuture<'_, Result<Vec<ContainerInfo>, ApiError>>;
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

/// Largest JSON body of an API request (64 KiB); a larger one gets a 413.
/// (The relay's own limit is [`crate::relay::MAX_RELAY_REQUEST_BYTES`].)
pub const MAX_API_BODY_BYTES: usize = 64 << 10;

/// How the server is set up (beyond the role behind it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// The rate limits.
    pub limits: LimitsConfig,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) api: Arc<dyn ConsumerApi>,
    metrics: MetricsRender,
    /// Relays requests to the sessions' services ([`crate::relay::client`]).
    pub(crate) http: reqwest::Client,
    pub(crate) limits: Arc<RateLimits>,
    /// When the limiters were last pruned, ms since the server started.
    pruned_at: Arc<AtomicU64>,
    started: std::time::Instant,
}

/// How often the rate limiters forget full buckets.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| self.body.details.as_ref()?.get("retry_after_secs")?.as_u64())
            .flatten();
        let mut response = (status, Json(self.body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "DCI gateway API",
        description = "Deploy services on DCI containers, follow sessions and balances. \
        Authenticated endpoints take `Authorization: Bearer <api key>`. Errors are JSON `ErrorBody`s with a stable code \
        (unknown routes 404 `not_found`, wrong methods 405 `method_not_allowed`, oversized bodies 413 \
        `payload_too_large`). Requests are rate-limited per client address, per API key, and failed authentications \
        separately: a refused request gets 429 `rate_limited` with `Retry-After` (seconds)."
    ),
    modifiers(&BearerAuth),
    paths(
        deploy,
        list_sessions,
        get_session,
        stop_session,
        list_offers,
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
        view,
        openapi,
        metrics_text,
        health
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

/// The `bearer` security scheme (an API key as `Authorization: Bearer <key>`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        let scheme = Http::builder()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("an API key bound to a ledger account: `Authorization: Bearer <api key>`"))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        let too_many = utoipa::openapi::ResponseBuilder::new()
            .description("rate limited: `Retry-After` says when to try again")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in doc.paths.paths.values_mut() {
            for op in
                [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten()
            {
                if op.responses.responses.contains_key("401") {
                    let bearer = utoipa::openapi::security::SecurityRequirement::new::<_, _, String>("bearer", []);
                    op.security.get_or_insert_with(Vec::new).push(bearer);
                }
                op.responses.responses.insert("429".into(), too_many.clone().into());
            }
        }
    }
}

/// Every route of the API: its path and its methods. [`router`] is built
/// from this list, and a test checks each against `/openapi.json`.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/v1/sessions", get(list_sessions).post(deploy)),
        ("/v1/sessions/{id}", get(get_session).delete(stop_session)),
        ("/v1/containers", get(list_containers)),
        ("/v1/committee", get(committee)),
        ("/v1/offers", get(list_offers)),
        ("/v1/balance", get(balance)),
        ("/v1/transfers", post(transfer)),
        ("/v1/stake", post(stake)),
        ("/v1/unstake", post(unstake)),
        ("/v1/node-stake", post(node_stake)),
        ("/v1/node-register", post(node_register)),
        ("/v1/withdraw", post(withdraw)),
        ("/v1/rewards", get(rewards)),
        (
            "/openai/{id}/v1/{*rest}",
            any(crate::relay::relay).layer(DefaultBodyLimit::max(crate::relay::MAX_RELAY_REQUEST_BYTES)),
        ),
        ("/view/{id}", get(view)),
        ("/openapi.json", get(openapi)),
        ("/metrics", get(metrics_text)),
        ("/health", get(health)),
    ]
}

/// The router with the production rate limits ([`LimitsConfig::default`]).
pub fn router(api: Arc<dyn ConsumerApi>, metrics: MetricsRender) -> Router {
    router_with(api, metrics, ServerOptions::default())
        .expect("the default limits are valid (checked by the limits tests)")
}

/// The router: every public route of the gateway, behind the rate limits
/// and the JSON error mapping. Serve it with [`serve`] (or with
/// `into_make_service_with_connect_info::<SocketAddr>`: without the
/// client's address every client shares one address budget).
pub fn router_with(
    api: Arc<dyn ConsumerApi>,
    metrics: MetricsRender,
    options: ServerOptions,
) -> Result<Router, String> {
    let limits = Arc::new(RateLimits::new(&options.limits)?);
    let state = AppState {
        api,
        metrics,
        http: crate::relay::client(),
        limits,
        pruned_at: Arc::default(),
        started: std::time::Instant::now(),
    };
    let mut router = Router::new();
    for (path, methods) in routes() {
        router = router.route(path, methods);
    }
    Ok(router
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::method_not_allowed(format!("{method} is not served here; see /openapi.json"))
        })
        .layer(DefaultBodyLimit::max(MAX_API_BODY_BYTES))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit_requests))
        .with_state(state))
}

/// The address a request came from (the TCP peer), put in the request's
/// extensions by [`limit_requests`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Every request first draws from its address's budget.
async fn limit_requests(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
    let now = s.started.elapsed().as_millis() as u64;
    let last = s.pruned_at.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= PRUNE_EVERY.as_millis() as u64
        && s.pruned_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        s.limits.prune();
    }
    if let Err(e) = s.limits.request(addr) {
        metrics::counter!("dci_gateway_api_refused_total", "limit" => limit_of(&e)).increment(1);
        return e.into_response();
    }
    req.extensions_mut().insert(ClientAddr(addr));
    next.run(req).await
}

fn limit_of(e: &ApiError) -> &'static str {
    match e.body.details.as_ref().and_then(|d| d.get("limit")).and_then(|l| l.as_str()) {
        Some("per_key") => "per_key",
        Some("failed_auth") => "failed_auth",
        _ => "per_address",
    }
}

/// Every error answer is a JSON [`ErrorBody`]: what axum answers by itself
/// (a body over the limit, a path or query it cannot read) is rewritten.
/// The relay's answers are the service's and pass as they are.
async fn json_errors(req: Request, next: Next) -> Response {
    let relayed = req.uri().path().starts_with("/openai/");
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if relayed || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!("expected a request body of at most {MAX_API_BODY_BYTES} bytes"),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_lowercase(),
        _ => text,
    };
    let mut out = ApiError::new(status.as_u16(), code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// Serves `router` on `listener` until `shutdown`: plain http, or https
/// with `tls`. Each request knows its client's address (for the limits).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            let acceptor =
                axum_server::tls_rustls::RustlsAcceptor::new(config).handshake_timeout(TLS_HANDSHAKE_TIMEOUT);
            axum_server::Server::<SocketAddr>::from_listener(listener)
                .acceptor(acceptor)
                .handle(handle)
                .serve(app)
                .await
        }
    }
}

/// Longest a client may take over its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate and key the API serves https with (`[tls]` of a
/// gateway's node.toml): PEM files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, PEM (the server's certificate first).
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl TlsFiles {
    /// The server's TLS config from the files (TLS 1.2 and 1.3, HTTP/1.1).
    pub fn load(&self) -> Result<axum_server::tls_rustls::RustlsConfig, TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| TlsError(format!("tls.cert: expected PEM certificates in {}: {e}", self.cert.display())))?;
        if certs.is_empty() {
            return Err(TlsError(format!(
                "tls.cert: expected PEM certificates in {}, found none",
                self.cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError(format!("tls.key: expected a PEM private key in {}: {e}", self.key.display())))?;
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError(format!("tls: {e}")))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| {
                    TlsError(format!(
                        "tls: the key {} does not fit the certificate {}: {e}",
                        self.key.display(),
                        self.cert.display()
                    ))
                })?;
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)))
    }
}

/// The API's own description.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "this document (OpenAPI 3.1, JSON)")))]
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ApiDoc::openapi().to_pretty_json().unwrap_or_default())
        .into_response()
}

/// Prometheus metrics of the gateway's process.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
async fn metrics_text(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (s.metrics)()).into_response()
}

/// Liveness: `{"ok": true}` while the API serves.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "`{\"ok\": true}`")))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true }))
}

/// The caller's account, from its API key, under the rate limits: an
/// unknown or missing key draws from the address's failed-authentication
/// budget (429 once it is spent), a known one from the key's budget.
pub(crate) async fn account(s: &AppState, headers: &HeaderMap, addr: ClientAddr) -> Result<AccountId, ApiError> {
    let result = match bearer(headers) {
        Ok(key) => s.api.authenticate(key).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(account) => {
            s.limits.authenticated(account.as_str()).inspect_err(|e| {
                metrics::counter!("dci_gateway_api_refused_total", "limit" => limit_of(e)).increment(1);
            })?;
            Ok(account)
        }
        Err(e) if e.status == 401 => {
            metrics::counter!("dci_gateway_api_auth_failed_total").increment(1);
            s.limits.failed(addr.0).inspect_err(|e| {
                metrics::counter!("dci_gateway_api_refused_total", "limit" => limit_of(e)).increment(1);
            })?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("expected an `Authorization: Bearer <api key>` header"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected the Authorization header to be `Bearer <api key>`"))
}

/// The authenticated caller of a handler (see [`account`]).
pub(crate) struct Caller(pub(crate) AccountId);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let addr = client_addr(parts);
        account(s, &parts.headers, addr).await.map(Caller)
    }
}

pub(crate) fn client_addr(parts: &Parts) -> ClientAddr {
    parts.extensions.get::<ClientAddr>().copied().unwrap_or(ClientAddr(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
}

/// A JSON body, or the error that says what was expected (413 when it is
/// over [`MAX_API_BODY_BYTES`]).
fn json_body<T>(body: Result<Json<T>, JsonRejection>, what: &str) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(format!("expected a {what} JSON body of at most {MAX_API_BODY_BYTES} bytes"))
        } else {
            ApiError::bad_request(format!("expected a {what} JSON body: {}", e.body_text()))
        }
    })
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
    Caller(who): Caller,
    body: Result<Json<DeployRequest>, JsonRejection>,
) -> Result<Json<SessionInfo>, ApiError> {
    let req = json_body(body, "DeployRequest")?;
    s.api.deploy(who, req).await.map(Json)
}

/// The caller's sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", responses((status = 200, body = Vec<SessionInfo>), (status = 401, body = ErrorBody)))]
async fn list_sessions(State(s): State<AppState>, Caller(who): Caller) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    s.api.sessions(who).await.map(Json)
}

/// One of the caller's sessions.
#[utoipa::path(get, path = "/v1/sessions/{id}", params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionInfo), (status = 404, body = ErrorBody)))]
async fn get_session(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    s.api.session(who, session_id(&id)?).await.map(Json)
}

/// Stop a session and settle its bill.
#[utoipa::path(delete, path = "/v1/sessions/{id}", params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn stop_session(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    s.api.stop(who, session_id(&id)?).await.map(Json)
}

/// Query of `/v1/containers`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainersQuery {
    offset: Option<u32>,
    limit: Option<u32>,
}

/// The containers the network knows, by id, with state and recent
/// transitions: one page of the gateway's cached view of the network
/// (refreshed at most every few hundred ms). Page on with `offset` until a
/// page has fewer than `limit` rows.
#[utoipa::path(get, path = "/v1/containers", params(
    ("offset" = Option<u32>, Query, description = "rows to skip (default 0)"),
    ("limit" = Option<u32>, Query, description = "most rows, 1..=500 (default 100)")),
    responses((status = 200, body = Vec<ContainerInfo>), (status = 400, body = ErrorBody)))]
async fn list_containers(
    State(s): State<AppState>,
    query: Result<Query<ContainersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<ContainerInfo>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("expected ?offset=&limit=: {}", e.body_text())))?;
    let page = Page::checked(q.offset, q.limit, 100, MAX_CONTAINERS_PAGE, u32::MAX)?;
    s.api.containers(page).await.map(Json)
}

/// The epoch committee in force, its announcement and the penalties it voted.
#[utoipa::path(get, path = "/v1/committee", responses((status = 200, body = CommitteeInfo), (status = 404, body = ErrorBody)))]
async fn committee(State(s): State<AppState>) -> Result<Json<CommitteeInfo>, ApiError> {
    s.api.committee().await.map(Json)
}

/// The caller's balance and escrow.
#[utoipa::path(get, path = "/v1/balance", responses((status = 200, body = BalanceInfo), (status = 401, body = ErrorBody)))]
async fn balance(State(s): State<AppState>, Caller(who): Caller) -> Result<Json<BalanceInfo>, ApiError> {
    s.api.balance(who).await.map(Json)
}

/// Transfer ATH from the caller's account.
#[utoipa::path(post, path = "/v1/transfers", request_body = TransferRequest,
    responses((status = 200, body = BalanceInfo), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody)))]
async fn transfer(
    State(s): State<AppState>,
    Caller(who): Caller,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Json<BalanceInfo>, ApiError> {
    let req = json_body(body, "TransferRequest")?;
    s.api.transfer(who, req).await.map(Json)
}

fn stake_body(body: Result<Json<StakeRequest>, JsonRejection>) -> Result<StakeRequest, ApiError> {
    json_body(body, "StakeRequest")
}

/// Bond stake for a role (`container` or `checker`).
#[utoipa::path(post, path = "/v1/stake", request_body = StakeRequest,
    responses((status = 200, body = BalanceInfo), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody)))]
async fn stake(
    State(s): State<AppState>,
    Caller(who): Caller,
    body: Result<Json<StakeRequest>, JsonRejection>,
) -> Result<Json<BalanceInfo>, ApiError> {
    s.api.stake(who, stake_body(body)?, false).await.map(Json)
}

/// Start unbonding stake; it can be withdrawn after the unbonding period.
#[utoipa::path(post, path = "/v1/unstake", request_body = StakeRequest,
    responses((status = 200, body = BalanceInfo), (status = 400, body = ErrorBody)))]
async fn unstake(
    State(s): State<AppState>,
    Caller(who): Caller,
    body: Result<Json<StakeRequest>, JsonRejection>,
) -> Result<Json<BalanceInfo>, ApiError> {
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
    let req = json_body(body, "NodeStakeRequest")?;
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
async fn withdraw(State(s): State<AppState>, Caller(who): Caller) -> Result<Json<BalanceInfo>, ApiError> {
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
    Caller(who): Caller,
    query: Result<Query<RewardsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RewardsInfo>, ApiError> {
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
    offset: Option<u32>,
    limit: Option<u32>,
}

/// Offers passing a filter, e.g. `gpu=H100 vram>=80 rtt<30 near=38.7,-9.1 price<=2.5 service=render`,
/// from the gateway's cached answers (a query is asked of the indexer at
/// most once per refresh interval). A bad filter gets a 400 whose message
/// points at the bad token.
#[utoipa::path(get, path = "/v1/offers", params(
    ("filter" = Option<String>, Query, description = "filter in the offers language (empty: every container)"),
    ("sort" = Option<String>, Query, description = "price (default), rtt, vram, reputation or free"),
    ("offset" = Option<u32>, Query, description = "rows to skip (default 0); offset + limit at most 1000"),
    ("limit" = Option<u32>, Query, description = "most rows, 1..=100 (default 20)")),
    responses((status = 200, body = Vec<OfferInfo>), (status = 400, body = ErrorBody)))]
async fn list_offers(
    State(s): State<AppState>,
    query: Result<Query<OffersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<OfferInfo>>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::bad_request(format!("expected ?filter=&sort=&offset=&limit=: {}", e.body_text())))?;
    let page = Page::checked(q.offset, q.limit, 20, MAX_OFFERS_PAGE, OFFERS_WINDOW)?;
    s.api.offers(q.filter.unwrap_or_default(), q.sort.unwrap_or_else(|| "price".into()), page).await.map(Json)
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

    /// A role that answers every call with a 404 `not_found` of its own
    /// (not the router's "no such route").
    struct Nothing;

    fn none<T>() -> BoxFuture<'static, Result<T, ApiError>> {
        Box::pin(async { Err(ApiError::not_found("nothing here (the role)")) })
    }

    impl ConsumerApi for Nothing {
        fn authenticate<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<AccountId, ApiError>> {
            Box::pin(async { Ok(AccountId::new("consumer:t").expect("valid")) })
        }
        fn deploy(&self, _: AccountId, _: DeployRequest) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
            none()
        }
        fn sessions(&self, _: AccountId) -> BoxFuture<'_, Result<Vec<SessionInfo>, ApiError>> {
            none()
        }
        fn session(&self, _: AccountId, _: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
            none()
        }
        fn stop(&self, _: AccountId, _: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
            none()
        }
        fn offers(&self, _: String, _: String, _: Page) -> BoxFuture<'_, Result<Vec<OfferInfo>, ApiError>> {
            none()
        }
        fn containers(&self, _: Page) -> BoxFuture<'_, Result<Vec<ContainerInfo>, ApiError>> {
            none()
        }
        fn committee(&self) -> BoxFuture<'_, Result<CommitteeInfo, ApiError>> {
            none()
        }
        fn transfer(&self, _: AccountId, _: TransferRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
            none()
        }
        fn node_stake(&self, _: NodeStakeRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
            none()
        }
        fn node_register(&self, _: NodeRegisterRequest) -> BoxFuture<'_, Result<NodeRegisterInfo, ApiError>> {
            none()
        }
        fn stake(&self, _: AccountId, _: StakeRequest, _: bool) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
            none()
        }
        fn withdraw(&self, _: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
            none()
        }
        fn rewards(&self, _: AccountId, _: Option<u64>) -> BoxFuture<'_, Result<RewardsInfo, ApiError>> {
            none()
        }
        fn balance(&self, _: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
            none()
        }
        fn relay_target(&self, _: AccountId, _: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
            none()
        }
        fn meter(&self, _: AccountId, _: SessionId, _: Relayed) -> BoxFuture<'_, Result<(), ApiError>> {
            Box::pin(async { Ok(()) })
        }
        fn view_target(&self, _: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
            none()
        }
    }

    /// Every route the router serves, with every method it answers, is in
    /// `/openapi.json` (as served), and everything the document lists is
    /// served: the router's methods are found by asking it.
    #[tokio::test]
    async fn every_route_and_method_is_in_the_openapi_document() {
        let app = router(Arc::new(Nothing), Arc::new(String::new));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, app, None, std::future::pending()));
        let http = reqwest::Client::new();
        let doc: serde_json::Value =
            http.get(format!("http://{addr}/openapi.json")).send().await.unwrap().json().await.unwrap();
        let documented = |path: &str, method: &str| doc["paths"][path].get(method).is_some();
        let methods = ["get", "post", "put", "delete", "patch"];
        let mut served = Vec::new();
        for (route, _) in routes() {
            // The document's spelling of the path, and a concrete one to ask.
            let path = route.replace("{*rest}", "{rest}");
            let concrete = path.replace("{id}", &"7".repeat(32)).replace("{rest}", "models");
            assert!(doc["paths"].get(&path).is_some(), "{path} is served but not in /openapi.json");
            for method in methods {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let r = http.request(m, format!("http://{addr}{concrete}")).bearer_auth("k").send().await.unwrap();
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                let routed = status != 405 && !body.contains("no such route");
                if routed {
                    served.push(format!("{method} {path}"));
                }
                assert_eq!(routed, documented(&path, method), "{method} {path}: answered {status} {body}");
            }
        }
        // And the document lists nothing the router does not serve.
        let listed: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, item)| methods.iter().filter(|m| item.get(**m).is_some()).map(move |m| format!("{m} {p}")))
            .collect();
        for op in &listed {
            assert!(served.contains(op), "{op} is in /openapi.json but not served");
        }
        // The bearer scheme, required where a 401 is possible; 429 everywhere.
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert_eq!(doc["paths"]["/v1/balance"]["get"]["security"][0]["bearer"], serde_json::json!([]));
        assert!(doc["paths"]["/v1/offers"]["get"].get("security").is_none());
        for op in &listed {
            let (m, p) = op.split_once(' ').unwrap();
            assert!(doc["paths"][p][m]["responses"].get("429").is_some(), "{op}: no 429");
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
