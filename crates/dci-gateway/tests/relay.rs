//! The OpenAI relay and the viewer against hostile services: a real `router`
//! over an in-memory role, served on loopback, called with reqwest; each
//! "service" is a real axum server on loopback that misbehaves. Every test is
//! an attack that must fail.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use dci_gateway::api::{
    ApiError, BalanceInfo, CommitteeInfo, ContainerInfo, DeployRequest, ErrorBody, OfferInfo, RewardsInfo, SessionInfo,
    StakeRequest, TransferRequest,
};
use dci_gateway::relay::{MAX_RELAY_REQUEST_BYTES, MAX_RELAY_RESPONSE_BYTES};
use dci_gateway::server::{BoxFuture, ConsumerApi, RelayTarget, Relayed, router};
use dci_model::{AccountId, SessionId};
use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

const KEY: &str = "alice-key";
const SESSION: SessionId = SessionId([7; 16]);
/// Bound on every wait, so that a relay that buffers or hangs fails the test
/// instead of stalling it.
const PATIENCE: Duration = Duration::from_secs(20);

/// The gateway role, in memory: one account, one model session whose service
/// is at `base`; every meter call is recorded.
struct Role {
    base: String,
    meters: mpsc::UnboundedSender<(AccountId, SessionId, Relayed)>,
}

fn alice() -> AccountId {
    AccountId::new("consumer:alice").expect("valid account")
}

fn not_here<T>() -> BoxFuture<'static, Result<T, ApiError>> {
    Box::pin(async { Err(ApiError::not_found("not served by this test")) })
}

impl ConsumerApi for Role {
    fn authenticate<'a>(&'a self, api_key: &'a str) -> BoxFuture<'a, Result<AccountId, ApiError>> {
        Box::pin(
            async move { if api_key == KEY { Ok(alice()) } else { Err(ApiError::unauthorized("unknown api key")) } },
        )
    }
    fn relay_target(&self, account: AccountId, id: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
        Box::pin(async move {
            if account == alice() && id == SESSION {
                Ok(RelayTarget { base: self.base.clone() })
            } else {
                Err(ApiError::not_found(format!("no running model session {id} of {account}")))
            }
        })
    }
    fn meter(&self, account: AccountId, id: SessionId, relayed: Relayed) -> BoxFuture<'_, Result<(), ApiError>> {
        let _ = self.meters.send((account, id, relayed));
        Box::pin(async { Ok(()) })
    }
    fn view_target(&self, id: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
        Box::pin(async move {
            if id == SESSION { Ok(RelayTarget { base: self.base.clone() }) } else { Err(ApiError::not_found("no")) }
        })
    }
    fn deploy(&self, _: AccountId, _: DeployRequest) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        not_here()
    }
    fn sessions(&self, _: AccountId) -> BoxFuture<'_, Result<Vec<SessionInfo>, ApiError>> {
        not_here()
    }
    fn session(&self, _: AccountId, _: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        not_here()
    }
    fn stop(&self, _: AccountId, _: SessionId) -> BoxFuture<'_, Result<SessionInfo, ApiError>> {
        not_here()
    }
    fn offers(
        &self,
        _: String,
        _: String,
        _: dci_gateway::api::Page,
    ) -> BoxFuture<'_, Result<Vec<OfferInfo>, ApiError>> {
        not_here()
    }
    fn containers(&self, _: dci_gateway::api::Page) -> BoxFuture<'_, Result<Vec<ContainerInfo>, ApiError>> {
        not_here()
    }
    fn committee(&self) -> BoxFuture<'_, Result<CommitteeInfo, ApiError>> {
        not_here()
    }
    fn transfer(&self, _: AccountId, _: TransferRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
    }
    fn stake(&self, _: AccountId, _: StakeRequest, _: bool) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
    }
    fn withdraw(&self, _: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
    }
    fn node_stake(&self, _: dci_gateway::api::NodeStakeRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
    }
    fn node_register(
        &self,
        _: dci_gateway::api::NodeRegisterRequest,
    ) -> BoxFuture<'_, Result<dci_gateway::api::NodeRegisterInfo, ApiError>> {
        not_here()
    }
    fn rewards(&self, _: AccountId, _: Option<u64>) -> BoxFuture<'_, Result<RewardsInfo, ApiError>> {
        not_here()
    }
    fn balance(&self, _: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
    }
}

/// Serves `app` on a fresh loopback port.
async fn serve(app: Router) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A gateway whose one session's service is at `service`, and its consumer.
struct Gateway {
    addr: SocketAddr,
    http: reqwest::Client,
    meters: mpsc::UnboundedReceiver<(AccountId, SessionId, Relayed)>,
}

impl Gateway {
    async fn start(service: SocketAddr) -> Result<Self> {
        let (tx, meters) = mpsc::unbounded_channel();
        let role = Arc::new(Role { base: format!("http://{service}"), meters: tx });
        let addr = serve(router(role, Arc::new(String::new))).await?;
        let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build()?;
        Ok(Gateway { addr, http, meters })
    }

    /// A request to the relay, with the consumer's API key.
    fn openai(&self, rest: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("http://{}/openai/{SESSION}/v1/{rest}", self.addr)).bearer_auth(KEY)
    }

    /// The next meter call, which must be for alice's session.
    async fn metered(&mut self) -> Result<Relayed> {
        let (account, id, relayed) =
            tokio::time::timeout(PATIENCE, self.meters.recv()).await?.context("the role was dropped")?;
        ensure!(account == alice() && id == SESSION, "metered {account} {id}");
        Ok(relayed)
    }

    /// No meter call is pending.
    fn no_more_meters(&mut self) -> Result<()> {
        match self.meters.try_recv() {
            Ok(extra) => anyhow::bail!("metered again: {extra:?}"),
            Err(_) => Ok(()),
        }
    }
}

/// The error body of a JSON error answer, checked to be `status`.
async fn error(response: reqwest::Response, status: u16) -> Result<ErrorBody> {
    ensure!(response.status().as_u16() == status, "expected {status}, found {}", response.status());
    ensure!(response.headers()[header::CONTENT_TYPE] == "application/json");
    Ok(response.json().await?)
}

/// A service that answers every request with `answer` and counts requests.
fn counting(hits: Arc<AtomicUsize>, answer: fn() -> Response) -> Router {
    Router::new().fallback(any(move || {
        hits.fetch_add(1, Ordering::SeqCst);
        async move { answer() }
    }))
}

#[tokio::test]
async fn a_redirect_to_another_local_server_is_not_followed() -> Result<()> {
    let internal_hits = Arc::new(AtomicUsize::new(0));
    let internal = serve(counting(internal_hits.clone(), || "chain rpc secrets".into_response())).await?;
    let service = serve(Router::new().fallback(any(move || async move {
        (StatusCode::FOUND, [(header::LOCATION, format!("http://{internal}/"))], "moved")
    })))
    .await?;
    let mut gateway = Gateway::start(service).await?;

    for path in ["embeddings", "models"] {
        let answer = gateway.openai(path).body("{}").send().await?;
        ensure!(answer.headers().get(header::LOCATION).is_none(), "the redirect's Location was passed on");
        let body = error(answer, 502).await?;
        ensure!(body.code == "bad_gateway", "{body:?}");
    }
    ensure!(internal_hits.load(Ordering::SeqCst) == 0, "the internal server was reached");
    gateway.no_more_meters()
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap_and_metered() -> Result<()> {
    const MIB: usize = 1 << 20;
    let chunks = (MAX_RELAY_RESPONSE_BYTES as usize / MIB) + 8;
    let service = serve(Router::new().fallback(any(move || async move {
        let body = stream::iter((0..chunks).map(|_| Ok::<_, Infallible>(Bytes::from(vec![b'x'; MIB]))));
        Body::from_stream(body)
    })))
    .await?;
    let mut gateway = Gateway::start(service).await?;

    let request = r#"{"input":"hi"}"#;
    let mut answer = gateway.openai("embeddings").body(request).send().await?;
    ensure!(answer.status() == 200);
    let mut received = 0u64;
    let ended = loop {
        match tokio::time::timeout(PATIENCE, answer.chunk()).await? {
            Ok(Some(chunk)) => received += chunk.len() as u64,
            Ok(None) => break "complete",
            Err(_) => break "broken",
        }
    };
    ensure!(ended == "broken", "a capped answer must not look complete");
    ensure!(received <= MAX_RELAY_RESPONSE_BYTES, "received {received} bytes");
    let relayed = gateway.metered().await?;
    ensure!(
        relayed == Relayed { request_bytes: request.len() as u64, response_bytes: MAX_RELAY_RESPONSE_BYTES, tokens: 0 },
        "{relayed:?}"
    );
    gateway.no_more_meters()
}

/// What the echoing service received: header name → values.
type Received = BTreeMap<String, Vec<String>>;

fn received(headers: &HeaderMap) -> Received {
    let mut out = Received::new();
    for (name, value) in headers {
        out.entry(name.to_string()).or_default().push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

#[tokio::test]
async fn the_consumers_credentials_and_hop_by_hop_headers_stay_at_the_gateway() -> Result<()> {
    let service =
        serve(Router::new().fallback(any(|headers: HeaderMap| async move { axum::Json(received(&headers)) }))).await?;
    let gateway = Gateway::start(service).await?;

    let answer = gateway
        .openai("chat/completions")
        .header(header::COOKIE, "session=consumer-cookie")
        .header(header::PROXY_AUTHORIZATION, "Basic cHJveHk6c2VjcmV0")
        .header("proxy-connection", "keep-alive")
        .header(header::CONNECTION, "keep-alive, x-secret")
        .header("keep-alive", "timeout=5")
        .header(header::TE, "trailers")
        .header(header::TRAILER, "x-secret")
        .header(header::UPGRADE, "websocket")
        .header(header::HOST, "gateway.example")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-secret", "consumer-secret")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body("{}")
        .send()
        .await?;
    ensure!(answer.status() == 200, "{}", answer.status());
    let seen: Received = answer.json().await?;

    let names: Vec<&str> = seen.keys().map(String::as_str).collect();
    for name in &names {
        ensure!(
            ["accept", "content-length", "content-type", "host"].contains(name),
            "{name} reached the service: {seen:?}"
        );
    }
    ensure!(seen["content-type"] == ["application/json"] && seen["accept"] == ["application/json"], "{seen:?}");
    ensure!(seen["host"] == [service.to_string()], "the consumer's Host reached the service: {seen:?}");
    let values = seen.values().flatten().cloned().collect::<Vec<_>>().join(" ");
    for secret in [KEY, "consumer-cookie", "cHJveHk6c2VjcmV0", "consumer-secret", "10.0.0.1"] {
        ensure!(!values.contains(secret), "{secret} reached the service: {seen:?}");
    }
    Ok(())
}

#[tokio::test]
async fn the_services_cookies_locations_and_hop_by_hop_headers_stay_at_the_gateway() -> Result<()> {
    let service = serve(Router::new().fallback(any(|| async {
        (
            [
                (header::SET_COOKIE, "gateway_session=stolen; Path=/"),
                (header::LOCATION, "http://127.0.0.1:8545/"),
                (header::CONNECTION, "keep-alive"),
                (header::HeaderName::from_static("keep-alive"), "timeout=600"),
                (header::HeaderName::from_static("x-internal"), "10.0.0.9"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::CONTENT_TYPE, "application/json"),
            ],
            r#"{"data":[]}"#,
        )
    })))
    .await?;
    let mut gateway = Gateway::start(service).await?;

    let answer = gateway.openai("models").send().await?;
    ensure!(answer.status() == 200);
    let names: Vec<String> = answer.headers().keys().map(|n| n.to_string()).collect();
    for name in &names {
        ensure!(
            ["content-type", "x-content-type-options", "date", "transfer-encoding", "content-length"]
                .contains(&name.as_str()),
            "{name} reached the consumer: {names:?}"
        );
    }
    ensure!(answer.headers()[header::CONTENT_TYPE] == "application/json");
    ensure!(answer.text().await? == r#"{"data":[]}"#);
    gateway.metered().await?;
    Ok(())
}

#[tokio::test]
async fn a_huge_request_body_gets_413_and_never_reaches_the_service() -> Result<()> {
    let hits = Arc::new(AtomicUsize::new(0));
    let service = serve(counting(hits.clone(), || "ok".into_response())).await?;
    let mut gateway = Gateway::start(service).await?;
    let huge = vec![b' '; MAX_RELAY_REQUEST_BYTES + (1 << 20)];

    // Declared by Content-Length.
    let body = error(gateway.openai("embeddings").body(huge.clone()).send().await?, 413).await?;
    ensure!(
        body.code == "payload_too_large" && body.message.contains(&MAX_RELAY_REQUEST_BYTES.to_string()),
        "{body:?}"
    );

    // Undeclared (chunked): cut while reading.
    let chunks = huge.chunks(1 << 16).map(|c| Ok::<_, Infallible>(Bytes::copy_from_slice(c))).collect::<Vec<_>>();
    let answer = gateway.openai("embeddings").body(reqwest::Body::wrap_stream(stream::iter(chunks))).send().await?;
    let body = error(answer, 413).await?;
    ensure!(body.code == "payload_too_large", "{body:?}");

    ensure!(hits.load(Ordering::SeqCst) == 0, "the service saw a request");
    gateway.no_more_meters()?;

    // A body far over the API's own 64 KiB limit but within the relay's is relayed.
    let large = vec![b' '; 4 << 20];
    let answer = gateway.openai("embeddings").body(large).send().await?;
    ensure!(answer.status() == 200, "a 4 MiB request got {}", answer.status());
    answer.bytes().await?;
    ensure!(gateway.metered().await?.request_bytes == 4 << 20);
    ensure!(hits.load(Ordering::SeqCst) == 1, "the service saw it once");
    Ok(())
}

#[tokio::test]
async fn a_huge_usage_claim_is_metered_as_claimed_with_exact_byte_counts() -> Result<()> {
    const ANSWER: &str = r#"{"object":"list","data":[],"usage":{"prompt_tokens":3,"total_tokens":1000000000000}}"#;
    let service =
        serve(Router::new().fallback(any(|| async { ([(header::CONTENT_TYPE, "application/json")], ANSWER) }))).await?;
    let mut gateway = Gateway::start(service).await?;

    let request = r#"{"model":"all-minilm-l6-v2","input":["one small sentence"]}"#;
    let answer =
        gateway.openai("embeddings").header(header::CONTENT_TYPE, "application/json").body(request).send().await?;
    ensure!(answer.status() == 200);
    ensure!(answer.text().await? == ANSWER, "the answer was changed");
    let relayed = gateway.metered().await?;
    ensure!(
        relayed
            == Relayed {
                request_bytes: request.len() as u64,
                response_bytes: ANSWER.len() as u64,
                tokens: 1_000_000_000_000
            },
        "{relayed:?}"
    );
    gateway.no_more_meters()
}

#[tokio::test]
async fn an_event_stream_is_metered_from_its_last_usage() -> Result<()> {
    const EVENTS: [&str; 4] = [
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n",
        "data: [DONE]\n\n",
    ];
    let service = serve(Router::new().fallback(any(|| async {
        let events = stream::iter(EVENTS.map(|e| Ok::<_, Infallible>(Bytes::from_static(e.as_bytes()))));
        ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(events))
    })))
    .await?;
    let mut gateway = Gateway::start(service).await?;

    let request = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let answer = gateway.openai("chat/completions").body(request).send().await?;
    ensure!(answer.headers()[header::CONTENT_TYPE] == "text/event-stream");
    ensure!(answer.text().await? == EVENTS.concat());
    let relayed = gateway.metered().await?;
    let expect =
        Relayed { request_bytes: request.len() as u64, response_bytes: EVENTS.concat().len() as u64, tokens: 12 };
    ensure!(relayed == expect, "{relayed:?}");
    gateway.no_more_meters()
}

/// A service that sends `FIRST`, then waits for the test's signal, then sends `SECOND`.
fn two_part_service(signal: oneshot::Receiver<()>) -> Router {
    let signal = Arc::new(Mutex::new(Some(signal)));
    Router::new().fallback(any(move || {
        let mut signal = signal.lock().expect("signal").take();
        async move {
            let parts = stream::unfold(0, move |step| {
                let signal = if step == 1 { signal.take() } else { None };
                async move {
                    match step {
                        0 => Some((Ok::<_, Infallible>(Bytes::from_static(FIRST)), 1)),
                        1 => {
                            // Ends the answer here without the signal (a second request).
                            signal?.await.ok()?;
                            Some((Ok(Bytes::from_static(SECOND)), 2))
                        }
                        _ => None,
                    }
                }
            });
            Body::from_stream(parts)
        }
    }))
}

const FIRST: &[u8] = b"{\"partial\":";
const SECOND: &[u8] = b"true,\"usage\":{\"total_tokens\":2}}";

#[tokio::test]
async fn an_answer_is_streamed_not_buffered() -> Result<()> {
    let (go, signal) = oneshot::channel();
    let mut gateway = Gateway::start(serve(two_part_service(signal)).await?).await?;

    let mut answer = tokio::time::timeout(PATIENCE, gateway.openai("completions").body("{}").send()).await??;
    let first = tokio::time::timeout(PATIENCE, answer.chunk())
        .await
        .context("the first chunk did not arrive before the service finished: the relay buffers")??;
    ensure!(first.as_deref() == Some(FIRST), "{first:?}");
    go.send(()).map_err(|()| anyhow::anyhow!("the service stopped waiting"))?;
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(PATIENCE, answer.chunk()).await?? {
        rest.extend_from_slice(&chunk);
    }
    ensure!(rest == SECOND, "{rest:?}");
    let relayed = gateway.metered().await?;
    let expect = Relayed { request_bytes: 2, response_bytes: (FIRST.len() + SECOND.len()) as u64, tokens: 2 };
    ensure!(relayed == expect, "{relayed:?}");
    gateway.no_more_meters()
}

#[tokio::test]
async fn an_answer_dropped_by_the_consumer_is_metered_once() -> Result<()> {
    let (_never, signal) = oneshot::channel();
    let mut gateway = Gateway::start(serve(two_part_service(signal)).await?).await?;

    let mut answer = gateway.openai("completions").body("{}").send().await?;
    let first = tokio::time::timeout(PATIENCE, answer.chunk()).await??;
    ensure!(first.as_deref() == Some(FIRST), "{first:?}");
    drop(answer);
    let relayed = gateway.metered().await?;
    ensure!(relayed == Relayed { request_bytes: 2, response_bytes: FIRST.len() as u64, tokens: 0 }, "{relayed:?}");
    gateway.no_more_meters()
}

#[tokio::test]
async fn an_unreachable_service_gets_503() -> Result<()> {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        listener.local_addr()?
    };
    let mut gateway = Gateway::start(closed).await?;
    let body = error(gateway.openai("embeddings").body("{}").send().await?, 503).await?;
    ensure!(body.code == "unavailable", "{body:?}");
    gateway.no_more_meters()
}

#[tokio::test]
async fn only_the_owner_reaches_the_relay() -> Result<()> {
    let hits = Arc::new(AtomicUsize::new(0));
    let service = serve(counting(hits.clone(), || "ok".into_response())).await?;
    let gateway = Gateway::start(service).await?;
    let url = format!("http://{}/openai/{SESSION}/v1/models", gateway.addr);
    error(gateway.http.get(&url).send().await?, 401).await?;
    error(gateway.http.get(&url).bearer_auth("someone-else").send().await?, 401).await?;
    let other = format!("http://{}/openai/{}/v1/models", gateway.addr, SessionId([8; 16]));
    error(gateway.http.get(&other).bearer_auth(KEY).send().await?, 404).await?;
    // `..` escaping `/v1/`, sent raw (an HTTP client would resolve it itself).
    let mut raw = tokio::net::TcpStream::connect(gateway.addr).await?;
    let request = format!(
        "GET /openai/{SESSION}/v1/models/%2e%2e/%2e%2e/admin HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {KEY}\r\nconnection: close\r\n\r\n"
    );
    raw.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, raw.read_to_string(&mut answer)).await??;
    ensure!(answer.starts_with("HTTP/1.1 400") && answer.contains("bad_request"), "{answer}");
    ensure!(hits.load(Ordering::SeqCst) == 0, "the service saw a request");
    Ok(())
}

#[tokio::test]
async fn the_viewer_points_at_the_targets_stream_only() -> Result<()> {
    let service: SocketAddr = "127.0.0.1:9".parse()?;
    let gateway = Gateway::start(service).await?;
    let answer = gateway.http.get(format!("http://{}/view/{SESSION}?fps=10", gateway.addr)).send().await?;
    ensure!(answer.status() == 303, "{}", answer.status());
    let location = answer.headers()[header::LOCATION].to_str()?;
    let expect = dci_services::render::client_query("ws://127.0.0.1:9/stream?fps=10");
    ensure!(location == format!("/view/{SESSION}?{expect}"), "{location}");
    Ok(())
}
