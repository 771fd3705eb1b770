//! The render service's HTTP routes: `GET /` (usage) and `GET /frame` (PNG).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::camera::{Camera, PARAMS, Range};
use super::encode::encode_png;
use super::scene::Scene;
use super::tracer::render;
use crate::catalog::Builtin;
use crate::server::ApiError;

/// Frames rendered at once; each frame already uses every core, so more would
/// only add memory and latency. Further requests wait their turn.
const CONCURRENT_FRAMES: usize = 2;

#[derive(Clone)]
struct RenderState {
    scene: Arc<Scene>,
    frames: Arc<Semaphore>,
}

/// The routes of the render service (without the shared `/health`).
pub(crate) fn router() -> Router {
    let state = RenderState { scene: Arc::new(Scene::demo()), frames: Arc::new(Semaphore::new(CONCURRENT_FRAMES)) };
    Router::new().route("/", get(index)).route("/frame", get(frame)).with_state(state)
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
            { "method": "GET", "path": "/", "returns": "application/json", "description": "this document" },
            { "method": "GET", "path": "/health", "returns": "application/json", "description": "liveness: {\"ok\":true}" },
            {
                "method": "GET",
                "path": "/frame",
                "returns": "image/png",
                "description": "renders one frame for the camera given by the query parameters (all optional); \
                    the x-render-ms header carries the render time in milliseconds; bad parameters give \
                    400 {\"code\":\"bad_request\",\"message\":...}",
            },
        ],
        "params": params,
        "example": format!("/frame?{example}"),
    })
}

async fn index() -> Json<Value> {
    Json(usage())
}

async fn frame(
    State(state): State<RenderState>,
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
