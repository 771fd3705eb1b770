//! The model server: an OpenAI-compatible HTTP API over one [`Encoder`].
//!
//! Routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/embeddings`,
//! `GET /metrics` (Prometheus text), `GET /health`. Errors use OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}` so existing clients show
//! them. Every successful embeddings response carries `usage` (and the headers
//! `x-dci-prompt-tokens`, `x-dci-truncated-inputs`) and is reported to the
//! optional [`Meter`]; the gateway meters from either.
//!
//! Inference runs on `workers` dedicated threads (default one; candle itself
//! uses `CANDLE_NUM_THREADS` cores for each pass); requests that wait at the
//! same time are merged into one pass of up to 64 inputs and split again, so
//! concurrency raises batch size instead of oversubscribing the CPU. A request is answered after all requests
//! queued before it: the gateway's rate limits bound how long that queue gets.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::catalogue::{Catalogue, CatalogueError, ModelEntry};
use crate::encoder::{DeviceChoice, Embedded, Encoder, EncoderError};
use crate::store::{Store, StoreError};

/// What one successful embeddings request used; given to the [`Meter`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestUsage {
    /// Catalogue name of the model.
    pub model: String,
    /// Number of inputs embedded.
    pub inputs: u32,
    /// Tokens the model read (special tokens included, after truncation).
    pub prompt_tokens: u64,
    /// How many inputs were truncated to `max_tokens`.
    pub truncated_inputs: u32,
}

/// Sees every successful embeddings request, once, before its response is sent.
///
/// Contract: `record` is called from a request task, must not block for long
/// (hand work to a channel if it is slow) and must not panic. Failed requests
/// are not recorded (they count in `/metrics` as errors).
pub trait Meter: Send + Sync + 'static {
    /// Records one request's usage.
    fn record(&self, usage: &RequestUsage);
}

/// How the server behaves beyond the model itself.
#[derive(Clone)]
pub struct ServeOptions {
    /// When set, `/v1/*` requires `Authorization: Bearer <api_key>` (the gateway's key).
    pub api_key: Option<String>,
    /// Most inputs accepted in one request (OpenAI allows 2048).
    pub max_inputs: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Device to load the model onto (used by [`serve`] and [`run`]).
    pub device: DeviceChoice,
    /// Inference threads. Each pass already uses `CANDLE_NUM_THREADS` cores
    /// (default: all), which pays off only for big batches; for many small
    /// requests run the server with `CANDLE_NUM_THREADS=1` and one worker per core.
    pub workers: usize,
    /// Extra usage sink, e.g. the gateway's meter when run in-process.
    pub meter: Option<Arc<dyn Meter>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            api_key: None,
            max_inputs: 2048,
            max_body_bytes: 16 << 20,
            device: DeviceChoice::Cpu,
            workers: 1,
            meter: None,
        }
    }
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("max_inputs", &self.max_inputs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("device", &self.device)
            .field("workers", &self.workers)
            .field("meter", &self.meter.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Why the model server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model is not in the catalogue.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// The model could not be fetched into the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model could not be loaded.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The listening socket could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Announcing or serving failed.
    #[error("serve: {0}")]
    Io(#[from] io::Error),
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    inputs: AtomicU64,
    tokens: AtomicU64,
    truncated: AtomicU64,
}

struct App {
    encoder: Arc<Encoder>,
    options: ServeOptions,
    counters: Counters,
    jobs: mpsc::Sender<Job>,
}

/// Requests waiting at the same time are embedded in one pass, up to this many inputs.
const MERGE_INPUTS: usize = 64;

/// One request's inputs on their way to the inference thread.
struct Job {
    inputs: Vec<String>,
    reply: oneshot::Sender<Result<Embedded, String>>,
}

/// Starts `workers` inference threads: each takes one job, adds whatever other
/// jobs are already waiting (up to [`MERGE_INPUTS`] inputs), embeds them in one
/// pass and splits the result. A fixed number of passes at a time keeps the CPU
/// from being oversubscribed by concurrent requests, and merging gives the
/// matrix products more rows. The threads end when the router (holding the
/// only sender) is dropped.
fn spawn_inference(encoder: Arc<Encoder>, workers: usize) -> io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for n in 0..workers.max(1) {
        let (encoder, rx) = (Arc::clone(&encoder), Arc::clone(&rx));
        std::thread::Builder::new().name(format!("dci-infer-{n}")).spawn(move || inference_loop(&encoder, &rx))?;
    }
    Ok(tx)
}

fn inference_loop(encoder: &Encoder, rx: &std::sync::Mutex<mpsc::Receiver<Job>>) {
    loop {
        // Hold the queue only while collecting a pass; a poisoned lock means a sibling died: stop too.
        let jobs = {
            let Ok(queue) = rx.lock() else { return };
            let Ok(first) = queue.recv() else { return };
            let mut total = first.inputs.len();
            let mut jobs = vec![first];
            while total < MERGE_INPUTS {
                let Ok(job) = queue.try_recv() else { break };
                total += job.inputs.len();
                jobs.push(job);
            }
            jobs
        };
        let all: Vec<&str> = jobs.iter().flat_map(|j| j.inputs.iter().map(String::as_str)).collect();
        match encoder.encode(&all) {
            Ok(merged) => split(merged, jobs),
            // Keep one bad request from failing its neighbours: retry each alone.
            Err(_) if jobs.len() > 1 => {
                for job in jobs {
                    let _ = job.reply.send(encoder.encode(&job.inputs).map_err(|e| e.to_string()));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Hands each job its slice of a merged result.
fn split(merged: Embedded, jobs: Vec<Job>) {
    let mut vectors = merged.vectors.into_iter();
    let mut tokens = merged.tokens.into_iter();
    let mut start = 0;
    for job in jobs {
        let n = job.inputs.len();
        let truncated =
            merged.truncated.iter().filter(|&&i| (start..start + n).contains(&i)).map(|&i| i - start).collect();
        let part = Embedded {
            vectors: vectors.by_ref().take(n).collect(),
            tokens: tokens.by_ref().take(n).collect(),
            truncated,
        };
        let _ = job.reply.send(Ok(part));
        start += n;
    }
}

/// The routes of a model server for `encoder`. Starts the server's inference
/// thread, which ends when the router is dropped; fails only if the OS refuses a thread.
pub fn router(encoder: Arc<Encoder>, options: ServeOptions) -> io::Result<Router> {
    let limit = options.max_body_bytes;
    let jobs = spawn_inference(Arc::clone(&encoder), options.workers)?;
    let app = Arc::new(App { encoder, options, counters: Counters::default(), jobs });
    Ok(Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/embeddings", post(embeddings))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app))
}

/// Loads `entry` from `model_dir`, binds `listen`, prints `listening on
/// http://<addr>` on stdout (flushed; the actual port when `listen` has port 0),
/// then serves until the process ends.
pub async fn serve(
    model_dir: &std::path::Path,
    entry: &ModelEntry,
    listen: SocketAddr,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let (dir, e, device) = (model_dir.to_path_buf(), entry.clone(), options.device);
    let encoder = tokio::task::spawn_blocking(move || Encoder::load(&dir, &e, device))
        .await
        .map_err(|e| io::Error::other(e.to_string()))??;
    let listener = TcpListener::bind(listen).await.map_err(|source| ServeError::Bind { addr: listen, source })?;
    let addr = listener.local_addr()?;
    announce(&mut io::stdout(), addr)?;
    tracing::info!(model = entry.name.as_str(), %addr, "serving model");
    let app = router(Arc::new(encoder), options)?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// One step from a name to a running server: looks `name` up in `catalogue`,
/// fetches it into `store` if needed, then [`serve`]s it.
pub async fn run(
    store: &Store,
    catalogue: &Catalogue,
    name: &str,
    listen: SocketAddr,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let entry = catalogue.get(name)?.clone();
    let (s, e) = (store.clone(), entry.clone());
    let dir =
        tokio::task::spawn_blocking(move || s.ensure(&e)).await.map_err(|e| io::Error::other(e.to_string()))??;
    serve(&dir, &entry, listen, options).await
}

/// Writes the line a parent process waits for, and flushes it.
pub fn announce(out: &mut impl Write, addr: SocketAddr) -> io::Result<()> {
    writeln!(out, "listening on http://{addr}")?;
    out.flush()
}

/// An error in OpenAI's shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    param: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn invalid(code: &'static str, param: Option<&'static str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code,
            param,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } });
        (self.status, axum::Json(body)).into_response()
    }
}

fn check_key(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &app.options.api_key else { return Ok(()) };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: "invalid_api_key",
            param: None,
            message: "expected a valid API key in Authorization: Bearer <key>, found an unknown key".to_string(),
        }),
        None => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: "missing_api_key",
            param: None,
            message: "expected an API key in Authorization: Bearer <key>, found none".to_string(),
        }),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn model_object(entry: &ModelEntry) -> Value {
    json!({
        "id": entry.name.as_str(),
        "object": "model",
        "created": 0,
        "owned_by": "dci",
        "task": entry.task,
        "dimensions": entry.dims,
        "max_input_tokens": entry.max_tokens,
        "aliases": entry.aliases,
    })
}

async fn list_models(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_key(&app, &headers)?;
    Ok(axum::Json(json!({ "object": "list", "data": [model_object(app.encoder.entry())] })).into_response())
}

async fn get_model(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    check_key(&app, &headers)?;
    let entry = app.encoder.entry();
    if !entry.matches(&id) {
        return Err(unknown_model(entry, &id));
    }
    Ok(axum::Json(model_object(entry)).into_response())
}

fn unknown_model(entry: &ModelEntry, found: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: "model_not_found",
        param: Some("model"),
        message: format!("model: expected {:?} (this server's model), found {found:?}", entry.name.as_str()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

/// A request after validation: what to embed and how to answer.
struct Request {
    inputs: Vec<String>,
    encoding: Encoding,
}

fn parse_request(app: &App, body: &[u8]) -> Result<Request, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid("invalid_json", None, format!("expected a JSON request body, found invalid JSON: {e}"))
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid("invalid_json", None, format!("expected a JSON object, found {}", kind(&value))));
    };
    let entry = app.encoder.entry();
    match obj.get("model") {
        Some(Value::String(m)) if entry.matches(m) => {}
        Some(Value::String(m)) => return Err(unknown_model(entry, m)),
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_model",
                Some("model"),
                format!("model: expected a string, found {}", kind(other)),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                "missing_model",
                Some("model"),
                format!("model: expected a model name such as {:?}, found none", entry.name.as_str()),
            ));
        }
    }
    let encoding = match obj.get("encoding_format") {
        None | Some(Value::Null) => Encoding::Float,
        Some(Value::String(s)) if s == "float" => Encoding::Float,
        Some(Value::String(s)) if s == "base64" => Encoding::Base64,
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_encoding_format",
                Some("encoding_format"),
                format!("encoding_format: expected \"float\" or \"base64\", found {other}"),
            ));
        }
    };
    match obj.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(entry.dims)) => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_dimensions",
                Some("dimensions"),
                format!("dimensions: expected {} (this model cannot shorten its vectors), found {other}", entry.dims),
            ));
        }
    }
    let input_err = |code, message: String| ApiError::invalid(code, Some("input"), message);
    let inputs = match obj.get("input") {
        None | Some(Value::Null) => {
            return Err(input_err(
                "missing_input",
                "input: expected a string or an array of strings, found none".into(),
            ));
        }
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(input_err(
                    "empty_input",
                    "input: expected at least one string, found an empty array".into(),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(_) | Value::Array(_) => {
                        return Err(input_err(
                            "unsupported_input",
                            format!(
                                "input[{i}]: expected a string, found {} (token-id input is not supported: \
                                 send text; this model uses its own word-piece tokenizer)",
                                kind(item)
                            ),
                        ));
                    }
                    other => {
                        return Err(input_err(
                            "invalid_input",
                            format!("input[{i}]: expected a string, found {}", kind(other)),
                        ));
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(input_err(
                "invalid_input",
                format!("input: expected a string or an array of strings, found {}", kind(other)),
            ));
        }
    };
    if inputs.len() > app.options.max_inputs {
        return Err(input_err(
            "too_many_inputs",
            format!("input: expected at most {} strings per request, found {}", app.options.max_inputs, inputs.len()),
        ));
    }
    if let Some(i) = inputs.iter().position(String::is_empty) {
        let at = if inputs.len() == 1 { "input".to_string() } else { format!("input[{i}]") };
        return Err(input_err("empty_input", format!("{at}: expected a non-empty string, found \"\"")));
    }
    Ok(Request { inputs, encoding })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn embeddings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    let result = embed(&app, &headers, body).await;
    if result.is_err() {
        app.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    result
}

async fn embed(app: &Arc<App>, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    check_key(app, headers)?;
    let body = body.map_err(|e| ApiError {
        status: e.status(),
        kind: "invalid_request_error",
        code: "invalid_body",
        param: None,
        message: format!("expected a request body of at most {} bytes: {e}", app.options.max_body_bytes),
    })?;
    let request = parse_request(app, &body)?;
    let (reply, answer) = oneshot::channel();
    let job = Job { inputs: request.inputs, reply };
    app.jobs.send(job).map_err(|_| internal("inference thread stopped".into()))?;
    let embedded = answer.await.map_err(|_| internal("inference thread stopped".into()))?.map_err(internal)?;

    let entry = app.encoder.entry();
    let usage = RequestUsage {
        model: entry.name.as_str().to_string(),
        inputs: embedded.vectors.len() as u32,
        prompt_tokens: embedded.total_tokens(),
        truncated_inputs: embedded.truncated.len() as u32,
    };
    let c = &app.counters;
    c.inputs.fetch_add(u64::from(usage.inputs), Ordering::Relaxed);
    c.tokens.fetch_add(usage.prompt_tokens, Ordering::Relaxed);
    c.truncated.fetch_add(u64::from(usage.truncated_inputs), Ordering::Relaxed);
    if let Some(meter) = &app.options.meter {
        meter.record(&usage);
    }

    let data: Vec<Value> = embedded
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = match request.encoding {
                Encoding::Float => json!(v),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let mut body = json!({
        "object": "list",
        "data": data,
        "model": usage.model,
        "usage": { "prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens },
    });
    if !embedded.truncated.is_empty() {
        // Not in OpenAI's schema; clients ignore unknown fields. Says which inputs were cut.
        body["truncated_inputs"] = json!(embedded.truncated);
    }
    let mut response = axum::Json(body).into_response();
    let h = response.headers_mut();
    h.insert("x-dci-prompt-tokens", HeaderValue::from(usage.prompt_tokens));
    h.insert("x-dci-truncated-inputs", HeaderValue::from(usage.truncated_inputs));
    Ok(response)
}

fn internal(message: String) -> ApiError {
    tracing::error!(%message, "embedding failed");
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "server_error",
        code: "internal",
        param: None,
        message: format!("embedding failed: {message}"),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let c = &app.counters;
    let model = app.encoder.entry().name.as_str();
    let mut out = String::new();
    for (name, help, value) in [
        ("dci_model_requests_total", "Embeddings requests received.", &c.requests),
        ("dci_model_request_errors_total", "Embeddings requests answered with an error.", &c.errors),
        ("dci_model_inputs_total", "Inputs embedded.", &c.inputs),
        ("dci_model_prompt_tokens_total", "Tokens read by the model.", &c.tokens),
        ("dci_model_truncated_inputs_total", "Inputs truncated to the model's max tokens.", &c.truncated),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{model=\"{model}\"}} {}\n",
            value.load(Ordering::Relaxed)
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    axum::Json(json!({ "ok": true, "model": app.encoder.entry().name.as_str() })).into_response()
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: "unknown_url",
        param: None,
        message: "expected one of /v1/models, /v1/embeddings, /metrics, /health, found another path".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Embedded, Job, split};
    use tokio::sync::oneshot;

    #[test]
    fn a_merged_pass_is_split_back_per_request() {
        // Three requests of 2, 1 and 3 inputs; inputs 1, 3 and 5 of the merged pass were truncated.
        let sizes = [2usize, 1, 3];
        let mut answers = Vec::new();
        let jobs: Vec<Job> = sizes
            .iter()
            .map(|&n| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Job { inputs: vec![String::new(); n], reply }
            })
            .collect();
        let merged = Embedded {
            vectors: (0..6).map(|i| vec![i as f32]).collect(),
            tokens: (10..16).collect(),
            truncated: vec![1, 3, 5],
        };
        split(merged, jobs);
        let got: Vec<Embedded> = answers.into_iter().map(|mut a| a.try_recv().unwrap().unwrap()).collect();
        let expect = [
            Embedded { vectors: vec![vec![0.0], vec![1.0]], tokens: vec![10, 11], truncated: vec![1] },
            Embedded { vectors: vec![vec![2.0]], tokens: vec![12], truncated: vec![] },
            Embedded {
                vectors: vec![vec![3.0], vec![4.0], vec![5.0]],
                tokens: vec![13, 14, 15],
                truncated: vec![0, 2],
            },
        ];
        assert_eq!(got, expect);
    }
}
