//! The render service's HTTP routes: `GET /` (usage as JSON, or the viewer
//! page for browsers), `GET /client` (the viewer page), `GET /frame` (one PNG),
//! `GET /stream` (the live WebSocket stream) and `GET /metrics` (Prometheus).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::camera::{Camera, PARAMS, Range};
use super::client::CLIENT_PAGE;
use super::encode::encode_png;
use super::live::{MAX_INPUT_BYTES, MAX_SESSIONS, Shared, session};
use super::metrics::RenderMetrics;
use super::scene::Scene;
use super::stream::StreamParams;
use super::tracer::render;
use crate::catalog::Builtin;
use crate::server::ApiError;

/// Frames rendered at once; each frame already uses every core, so more would
/// only add memory and latency. Further requests wait their turn.
const CONCURRENT_FRAMES: usize = 2;

/// The routes of the render service (without the shared `/health`).
pub(crate) fn router() -> Router {
    let state = Shared {
        scene: Arc::new(Scene::demo()),
        frames: Arc::new(Semaphore::new(CONCURRENT_FRAMES)),
        sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
        metrics: Arc::new(RenderMetrics::default()),
    };
    Router::new()
        .route("/", get(index))
        .route("/client", get(client))
        .route("/frame", get(frame))
        .route("/stream", get(stream))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The usage document served at `GET /`.
pub fn usage() -> Value {
    let params: serde_json::Map<String, Value> = PARAMS
        .iter()
        .map(|p| {
            let (kind, default) = match p.range {
                Range::Integer { .. } => ("integer", json!(p.default as u64)),
                Range::AnyFinite | Range::Number { .. } => ("number", json!(p.default)),
            };
            let doc = json!({
                "type": kind,
                "default": default,
                "expected": p.range.expected(),
                "unit": p.unit,
                "description": p.description,
            });
            (p.name.to_string(), doc)
        })
        .collect();
    let example = PARAMS.iter().map(|p| format!("{}={}", p.name, p.default)).collect::<Vec<_>>().join("&");
    json!({
        "service": Builtin::Render.as_str(),
        "description": Builtin::Render.description(),
        "endpoints": [
            {
                "method": "GET",
                "path": "/",
                "returns": "application/json",
                "description": "this document; browsers (Accept: text/html) get the viewer page of /client",
            },
            {
                "method": "GET",
                "path": "/client",
                "returns": "text/html",
                "description": "the viewer page: shows the live stream, sends mouse drags, wheel and keys; \
                    ?ws=ws://host:port/stream?... points it at another service's stream",
            },
            { "method": "GET", "path": "/health", "returns": "application/json", "description": "liveness: {\"ok\":true}" },
            {
                "method": "GET",
                "path": "/frame",
                "returns": "image/png",
                "description": "renders one frame for the camera given by the query parameters (all optional); \
                    the x-render-ms header carries the render time in milliseconds; bad parameters give \
                    400 {\"code\":\"bad_request\",\"message\":...}",
            },
            {
                "method": "GET",
                "path": "/stream",
                "returns": "websocket",
                "description": "live stream: binary messages are frames (32-byte header DCIF, frame u64, input_seq u64, \
                    render_us u32, encode_us u32, width u16, height u16, little-endian, then a JPEG); text messages \
                    from the client are inputs {\"seq\":n,\"type\":\"orbit\",\"dx\":..,\"dy\":..} | \
                    {\"seq\":n,\"type\":\"zoom\",\"delta\":..} | {\"seq\":n,\"type\":\"key\",\"key\":\"ArrowLeft\"} | \
                    {\"seq\":n,\"type\":\"reset\"}; the query takes the camera params plus fps (1..=60, default 30) \
                    and quality (1..=100, default 75); the size defaults to 320x180",
            },
            {
                "method": "GET",
                "path": "/metrics",
                "returns": "text/plain",
                "description": "Prometheus metrics: frame time, input-to-frame latency, frames, inputs, sessions",
            },
        ],
        "params": params,
        "example": format!("/frame?{example}"),
    })
}

/// JSON for programs; the viewer page for browsers, which ask for HTML first.
async fn index(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/html")));
    let body = if wants_html { client().await.into_response() } else { Json(usage()).into_response() };
    ([(header::VARY, "accept")], body).into_response()
}

async fn client() -> Html<&'static str> {
    Html(CLIENT_PAGE)
}

async fn metrics(State(state): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.prometheus()).into_response()
}

async fn stream(
    State(state): State<Shared>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let params = StreamParams::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!("expected a websocket upgrade request, found a plain request: {}", e.body_text()))
    })?;
    let Ok(permit) = state.sessions.clone().try_acquire_owned() else {
        state.metrics.sessions_refused.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("sessions: expected fewer than {MAX_SESSIONS} open streams, found {MAX_SESSIONS}; retry later"),
        ));
    };
    let upgrade = upgrade.max_message_size(MAX_INPUT_BYTES).max_frame_size(MAX_INPUT_BYTES);
    Ok(upgrade.on_upgrade(move |socket| session(socket, params, state, permit)))
}

async fn frame(
    State(state): State<Shared>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let cam = Camera::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let permit = state.frames.clone().acquire_owned().await.map_err(|e| ApiError::internal(e.to_string()))?;
    let scene = state.scene.clone();
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let start = Instant::now();
        let image = render(&scene, &cam).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let took = start.elapsed();
        let png = encode_png(&image).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok::<_, ApiError>((png, took))
    });
    let (png, took) = job.await.map_err(|e| ApiError::internal(format!("render task failed: {e}")))??;
    state.metrics.stills.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(width = cam.width, height = cam.height, ms = millis(took), "frame");
    let headers = [
        (header::CONTENT_TYPE, "image/png".to_string()),
        (header::CACHE_CONTROL, "no-store".to_string()),
        (header::HeaderName::from_static("x-render-ms"), format!("{:.3}", millis(took))),
    ];
    Ok((headers, png).into_response())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
