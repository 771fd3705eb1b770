//! The OpenAI-compatible relay, `/openai/<session>/v1/…`: the one place where
//! the gateway sends a consumer's request to a service that a container host
//! runs. The host is not trusted, so the relay must not become a proxy into
//! the gateway's own network, nor a way to make the gateway hold or bill
//! whatever the service likes. Its rules:
//!
//! - the service is `RelayTarget::base` (`http://<host>:<port>`, composed by
//!   the role) plus `/v1/<rest>`; `.` and `..` segments are refused;
//! - redirects are never followed: a 1xx or 3xx answer becomes a 502
//!   `bad_gateway` (its `Location` is not passed on);
//! - request bodies are read whole up to [`MAX_RELAY_REQUEST_BYTES`] (413
//!   beyond it, before anything is sent); answers are streamed, never
//!   buffered, and end with an error after [`MAX_RELAY_RESPONSE_BYTES`];
//! - only `content-type` and `accept` are forwarded, only `content-type` is
//!   returned (and only when it is JSON, an event stream or plain text);
//! - the relay counts the bytes itself and reads the answer's `usage` from its
//!   last [`USAGE_TAIL_BYTES`]; each relayed answer is metered exactly once,
//!   when its stream ends (complete, capped, broken or dropped by the consumer);
//! - [`RELAY_CONNECT_TIMEOUT`] and [`RELAY_TIMEOUT`] bound the service; one
//!   that cannot be reached gets a 503 `unavailable`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use dci_model::{AccountId, SessionId};
use futures_core::Stream;

use crate::api::ApiError;
use crate::server::{AppState, ClientAddr, ConsumerApi, RelayTarget, Relayed, account, session_id};

/// Largest request body the relay forwards (8 MiB); a larger one gets a 413.
pub const MAX_RELAY_REQUEST_BYTES: usize = 8 << 20;

/// Most bytes of one answer the relay returns (64 MiB); the stream ends with
/// an error there, and what was relayed is metered.
pub const MAX_RELAY_RESPONSE_BYTES: u64 = 64 << 20;

/// How much of the end of an answer the relay keeps to read its `usage` (64 KiB).
pub const USAGE_TAIL_BYTES: usize = 64 << 10;

/// Longest the relay waits for a connection to the service.
pub const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a relayed request may take, answer included.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(120);

/// The request headers passed to the service; every other one (the API key's
/// `Authorization`, cookies, `Host`, hop-by-hop headers, …) stays here.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 2] = [header::CONTENT_TYPE, header::ACCEPT];

/// The content types an answer may keep; any other becomes
/// `application/octet-stream`, so a service cannot serve a page from the
/// gateway's origin.
const RETURNED_CONTENT_TYPES: [&str; 3] = ["application/json", "text/event-stream", "text/plain"];

/// The client the relay forwards with: no proxy from the environment, no
/// redirects followed, bounded connect and total time.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(RELAY_CONNECT_TIMEOUT)
        .timeout(RELAY_TIMEOUT)
        .build()
        // Without TLS backends nothing here can fail; a fallback client
        // would silently follow redirects.
        .expect("the relay's HTTP client (no TLS, no system configuration) builds")
}

/// `http://<host>:<port>/` of a target, checked: an http URL with a host and
/// nothing else (no credentials, path, query or fragment).
pub(crate) fn base_url(target: &RelayTarget) -> Result<reqwest::Url, ApiError> {
    let bad = || {
        ApiError::internal(format!("expected the session's service at http://<host>:<port>, found {:?}", target.base))
    };
    let url = reqwest::Url::parse(&target.base).map_err(|_| bad())?;
    let plain = url.scheme() == "http"
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if plain { Ok(url) } else { Err(bad()) }
}

/// The service's URL for the consumer's `/v1/<rest>?<query>`.
fn service_url(target: &RelayTarget, rest: &str, query: Option<&str>) -> Result<reqwest::Url, ApiError> {
    if rest.split('/').any(|s| s == "." || s == "..") {
        return Err(ApiError::bad_request(format!(
            "expected an API path without `.` or `..` segments, found {rest:?}"
        )));
    }
    let mut url = base_url(target)?;
    url.path_segments_mut()
        .map_err(|()| ApiError::internal(format!("{:?} cannot take a path", target.base)))?
        .clear()
        .push("v1")
        .extend(rest.split('/'));
    url.set_query(query.filter(|q| !q.is_empty()));
    Ok(url)
}

/// The consumer's headers that go to the service.
fn forwarded_headers(from: &HeaderMap) -> HeaderMap {
    let mut to = HeaderMap::new();
    for name in FORWARDED_REQUEST_HEADERS {
        for value in from.get_all(&name) {
            to.append(name.clone(), value.clone());
        }
    }
    to
}

/// The service's headers that go to the consumer.
fn returned_headers(from: &HeaderMap) -> HeaderMap {
    let allowed = |v: &&HeaderValue| {
        let essence = v.to_str().ok().and_then(|v| v.split(';').next()).map(|e| e.trim().to_ascii_lowercase());
        essence.is_some_and(|e| RETURNED_CONTENT_TYPES.contains(&e.as_str()))
    };
    let content_type = from
        .get(header::CONTENT_TYPE)
        .filter(allowed)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut to = HeaderMap::new();
    to.insert(header::CONTENT_TYPE, content_type);
    to.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    to
}

/// The request body, at most [`MAX_RELAY_REQUEST_BYTES`] (the route sets the
/// same limit for axum, which stops reading there).
async fn request_body(req: Request) -> Result<Bytes, ApiError> {
    let too_large = |found: String| {
        ApiError::payload_too_large(format!(
            "expected a request body of at most {MAX_RELAY_REQUEST_BYTES} bytes, found {found}"
        ))
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > MAX_RELAY_REQUEST_BYTES as u64) {
        return Err(too_large(format!("{n}")));
    }
    Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large("more than that".into())
        } else {
            ApiError::bad_request(format!("expected a readable request body: {}", e.body_text()))
        }
    })
}

/// The OpenAI-compatible relay of a model session: authenticates the
/// caller's API key (as OpenAI clients send it), asks the role for the
/// session's service (the caller's, running, a model), forwards the request
/// under the rules of this module, streams the answer back and meters it.
/// Point an OpenAI client's `base_url` at `<gateway>/openai/<id>/v1`.
#[utoipa::path(method(get, post, put, delete, patch), path = "/openai/{id}/v1/{rest}",
    request_body(content = String, content_type = "application/json", description = "the OpenAI request (at most 8 MiB), forwarded with its content-type and accept headers only"),
    params(("id" = String, Path, description = "session id"),
    ("rest" = String, Path, description = "the OpenAI API path, e.g. `embeddings` or `models`")),
    responses((status = 200, description = "the model server's answer, streamed (at most 64 MiB; only content-type kept)"),
        (status = 400, body = crate::api::ErrorBody), (status = 401, body = crate::api::ErrorBody),
        (status = 404, body = crate::api::ErrorBody), (status = 409, body = crate::api::ErrorBody),
        (status = 413, body = crate::api::ErrorBody),
        (status = 502, description = "the service answered a redirect", body = crate::api::ErrorBody),
        (status = 503, body = crate::api::ErrorBody)))]
pub(crate) async fn relay(
    State(s): State<AppState>,
    Path((id, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    req: Request,
) -> Result<Response, ApiError> {
    let addr =
        req.extensions().get::<ClientAddr>().copied().unwrap_or(ClientAddr(std::net::Ipv4Addr::UNSPECIFIED.into()));
    let who = account(&s, req.headers(), addr).await?;
    let id = session_id(&id)?;
    let target = s.api.relay_target(who.clone(), id).await?;
    let url = service_url(&target, &rest, query.as_deref())?;
    let headers = forwarded_headers(req.headers());
    let body = request_body(req).await?;
    let request_bytes = body.len() as u64;
    let answer = s
        .http
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("the session's service did not answer: {e}")))?;
    let status = answer.status();
    if !(status.is_success() || status.is_client_error() || status.is_server_error()) {
        return Err(ApiError::bad_gateway(format!(
            "expected an answer from the session's service, found status {status} (the relay follows no redirects)"
        )));
    }
    let headers = returned_headers(answer.headers());
    let meter = Meter { api: s.api.clone(), account: who, id, request_bytes, claims_count: status.is_success() };
    let mut response = Response::new(Body::from_stream(Metered::new(answer.bytes_stream(), meter)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Why a relayed answer's stream ended early.
#[derive(Debug, thiserror::Error)]
enum RelayBodyError {
    #[error("the service's answer exceeded {MAX_RELAY_RESPONSE_BYTES} bytes")]
    TooLong,
    #[error("the service's answer broke off: {0}")]
    Service(reqwest::Error),
}

/// The meter call owed for one relayed answer.
struct Meter {
    api: Arc<dyn ConsumerApi>,
    account: AccountId,
    id: SessionId,
    request_bytes: u64,
    /// Whether the answer's `usage` counts (a successful answer).
    claims_count: bool,
}

/// The last bytes of a stream: at most `2 × USAGE_TAIL_BYTES` kept, the last
/// [`USAGE_TAIL_BYTES`] read.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(&bytes[bytes.len().saturating_sub(USAGE_TAIL_BYTES)..]);
        if self.buf.len() > 2 * USAGE_TAIL_BYTES {
            self.buf.drain(..self.buf.len() - USAGE_TAIL_BYTES);
        }
    }

    fn last(&self) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(USAGE_TAIL_BYTES)..]
    }
}

type ServiceStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A service's answer on its way to the consumer: counted, capped, its tail
/// kept, and metered once when it ends or is dropped.
struct Metered {
    /// `None` once the stream ended (the connection to the service is let go).
    inner: Option<ServiceStream>,
    relayed: u64,
    tail: Tail,
    /// Set when the cap cut a chunk: the next poll ends the stream with an error.
    capped: bool,
    meter: Option<Meter>,
}

impl Metered {
    fn new(inner: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static, meter: Meter) -> Self {
        Metered { inner: Some(Box::pin(inner)), relayed: 0, tail: Tail::default(), capped: false, meter: Some(meter) }
    }

    /// Ends the stream and meters what it relayed, once.
    fn finish(&mut self) {
        self.inner = None;
        let Some(m) = self.meter.take() else { return };
        let relayed = Relayed {
            request_bytes: m.request_bytes,
            response_bytes: self.relayed,
            tokens: if m.claims_count { usage_tokens(self.tail.last()) } else { 0 },
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(session = %m.id.redacted(), ?relayed, "relayed request not metered: no runtime");
            return;
        };
        runtime.spawn(async move {
            if let Err(e) = m.api.meter(m.account, m.id, relayed).await {
                tracing::warn!(session = %m.id.redacted(), "relayed request not metered: {e}");
            }
        });
    }
}

impl Stream for Metered {
    type Item = Result<Bytes, RelayBodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.capped {
            this.capped = false;
            this.finish();
            tracing::debug!(relayed = this.relayed, "relayed answer capped");
            return Poll::Ready(Some(Err(RelayBodyError::TooLong)));
        }
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(RelayBodyError::Service(e))))
            }
            Poll::Ready(Some(Ok(mut chunk))) => {
                let room = MAX_RELAY_RESPONSE_BYTES - this.relayed;
                if chunk.len() as u64 > room {
                    chunk.truncate(room as usize);
                    this.capped = true;
                    if chunk.is_empty() {
                        return self.poll_next(cx);
                    }
                }
                this.relayed += chunk.len() as u64;
                this.tail.push(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The tokens an OpenAI-style answer claims, read from its last bytes: the
/// last `"usage": {…}` object that carries `total_tokens` or `prompt_tokens`
/// (`total_tokens` preferred), else 0. It works for a whole JSON answer and
/// for a server-sent-event stream whose final chunk carries the usage (the
/// earlier chunks' `"usage": null` are skipped). A claim, not a measure: the
/// role bounds what it bills by the bytes.
pub fn usage_tokens(tail: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"usage\"";
    let trim = |b: &[u8]| -> usize { b.iter().take_while(|c| c.is_ascii_whitespace()).count() };
    let mut end = tail.len();
    while let Some(at) = tail[..end].windows(KEY.len()).rposition(|w| w == KEY) {
        end = at;
        if at > 0 && tail[at - 1] == b'\\' {
            continue; // inside a string
        }
        let mut rest = &tail[at + KEY.len()..];
        rest = &rest[trim(rest)..];
        let Some(after) = rest.strip_prefix(b":") else { continue };
        let object = &after[trim(after)..];
        if !object.starts_with(b"{") {
            continue;
        }
        let Some(Ok(usage)) = serde_json::Deserializer::from_slice(object)
            .into_iter::<serde_json::Map<String, serde_json::Value>>()
            .next()
        else {
            continue; // cut off, or not JSON
        };
        let field = |name: &str| usage.get(name).and_then(serde_json::Value::as_u64);
        if let Some(tokens) = field("total_tokens").or_else(|| field("prompt_tokens")) {
            return tokens;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_tokens_reads_the_last_usage_object() {
        let check = |body: &str, expect: u64| assert_eq!(usage_tokens(body.as_bytes()), expect, "{body}");
        check(r#"{"usage":{"prompt_tokens":7,"total_tokens":9}}"#, 9);
        check(r#"{"data":[], "usage" : { "prompt_tokens": 7 } }"#, 7);
        check("not json", 0);
        check("{}", 0);
        check(r#"{"usage":null}"#, 0);
        check(r#"{"usage":{"completion_tokens":3}}"#, 0);
        // A server-sent-event chat stream: the final chunk carries the usage.
        check(
            concat!(
                "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n",
                "data: [DONE]\n\n"
            ),
            12,
        );
        // The last object counts; an earlier one is the fallback when the last is cut off.
        check(r#"{"usage":{"total_tokens":1}} {"usage":{"total_tokens":2}}"#, 2);
        check(r#"{"usage":{"total_tokens":1}} {"usage":{"total_tok"#, 1);
        // A key inside a string is not the answer's usage.
        check(r#"{"text":"say \"usage\": {\"total_tokens\": 99}","usage":{"total_tokens":4}}"#, 4);
        check(r#"{"text":"\"usage\":{\"total_tokens\":99}"}"#, 0);
        // Huge claims are read as claimed (the role bounds them).
        check(r#"{"usage":{"total_tokens":1000000000000}}"#, 1_000_000_000_000);
    }

    #[test]
    fn the_tail_keeps_the_last_bytes_across_chunks() {
        let mut tail = Tail::default();
        let total = 5 * USAGE_TAIL_BYTES + 17;
        let stream: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        for chunk in stream.chunks(1000) {
            tail.push(chunk);
            assert!(tail.buf.len() <= 2 * USAGE_TAIL_BYTES);
        }
        assert_eq!(tail.last(), &stream[total - USAGE_TAIL_BYTES..]);
        let mut one = Tail::default();
        one.push(&stream);
        assert_eq!(one.last(), &stream[total - USAGE_TAIL_BYTES..]);
        let mut short = Tail::default();
        short.push(b"abc");
        short.push(b"def");
        assert_eq!(short.last(), b"abcdef");
    }

    #[test]
    fn service_urls_stay_on_the_target() {
        let target = |base: &str| RelayTarget { base: base.into() };
        let check = |rest: &str, query: Option<&str>, expect: &str| {
            assert_eq!(service_url(&target("http://10.0.0.7:9000"), rest, query).unwrap().as_str(), expect);
        };
        check("embeddings", None, "http://10.0.0.7:9000/v1/embeddings");
        check("models/a b", Some("x=1"), "http://10.0.0.7:9000/v1/models/a%20b?x=1");
        check("a%2F@evil:1/b", Some(""), "http://10.0.0.7:9000/v1/a%252F@evil:1/b");
        check("chat#x?y", None, "http://10.0.0.7:9000/v1/chat%23x%3Fy");
        assert_eq!(service_url(&target("http://[::1]:9/"), "m", None).unwrap().as_str(), "http://[::1]:9/v1/m");
        for rest in ["..", "../admin", "a/./b", "a/.."] {
            assert_eq!(service_url(&target("http://h:1"), rest, None).unwrap_err().status, 400, "{rest}");
        }
        for base in ["https://h:1", "http://u:p@h:1", "http://h:1/x", "http://h:1?q", "ws://h:1", "h:1", ""] {
            assert_eq!(service_url(&target(base), "m", None).unwrap_err().status, 500, "{base}");
        }
    }

    #[test]
    fn only_allowlisted_headers_pass() {
        let mut consumer = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer secret"),
            ("cookie", "a=b"),
            ("host", "gateway"),
            ("connection", "keep-alive"),
            ("proxy-authorization", "x"),
            ("te", "trailers"),
            ("x-forwarded-for", "1.2.3.4"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
        ] {
            consumer.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let forwarded = forwarded_headers(&consumer);
        let names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "accept"]);

        let returned = |ct: Option<&'static str>| {
            let mut service = HeaderMap::new();
            service.insert(header::SET_COOKIE, HeaderValue::from_static("s=1"));
            service.insert(header::LOCATION, HeaderValue::from_static("http://127.0.0.1:1/"));
            if let Some(ct) = ct {
                service.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            let h = returned_headers(&service);
            assert_eq!(h.len(), 2);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            h[header::CONTENT_TYPE].to_str().unwrap().to_owned()
        };
        assert_eq!(returned(Some("application/json")), "application/json");
        assert_eq!(returned(Some("Text/Event-Stream; charset=utf-8")), "Text/Event-Stream; charset=utf-8");
        assert_eq!(returned(Some("text/html")), "application/octet-stream");
        assert_eq!(returned(None), "application/octet-stream");
    }
}
