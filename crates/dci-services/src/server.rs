//! Serving built-in services over HTTP: dispatch by name, shared routes
//! (`/health`, JSON errors, 404s) and the process entry point [`run`].

use std::io::{self, Write};
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use dci_model::ServiceName;
use serde_json::json;
use tokio::net::TcpListener;

use crate::catalog::Builtin;

/// Why a service could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The name is not a built-in service.
    #[error("service: expected one of {expected}, found {found:?}")]
    UnknownService {
        /// The built-in names, comma-separated.
        expected: String,
        /// The name asked for.
        found: String,
    },
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

/// The HTTP routes of a built-in service, including `GET /health`.
pub fn router(service: &ServiceName) -> Result<Router, ServeError> {
    let builtin = Builtin::from_name(service).ok_or_else(|| ServeError::UnknownService {
        expected: Builtin::ALL.map(Builtin::as_str).join(", "),
        found: service.as_str().to_string(),
    })?;
    let routes = match builtin {
        Builtin::Render => crate::render::http::router(),
    };
    Ok(routes.route("/health", get(health)).fallback(not_found))
}

/// Serves `service` on an already bound listener until the process ends.
pub async fn serve(service: &ServiceName, listener: TcpListener) -> Result<(), ServeError> {
    let app = router(service)?;
    axum::serve(listener.tap_io(tune), app).await?;
    Ok(())
}

/// Binds `listen`, prints `listening on http://<addr>` as the first line on
/// stdout (flushed, with the actual port when `listen` asks for port 0), then
/// serves `service` until the process ends. An unknown service fails before binding.
pub async fn run(service: &ServiceName, listen: SocketAddr) -> Result<(), ServeError> {
    let app = router(service)?;
    let listener = TcpListener::bind(listen).await.map_err(|source| ServeError::Bind { addr: listen, source })?;
    announce(&mut io::stdout(), listener.local_addr()?)?;
    tracing::info!(%service, addr = %listener.local_addr()?, "serving");
    axum::serve(listener.tap_io(tune), app).await?;
    Ok(())
}

/// Unsent bytes the kernel may hold for one connection before writes wait.
///
/// Without a limit the kernel's send buffer grows to megabytes, and a slow
/// viewer of a live stream would receive frames seconds old; with it, writes
/// wait early, so the stream's one-frame slot drops stale frames instead.
pub const UNSENT_LIMIT: u32 = 16 * 1024;

/// Tunes an accepted connection for interactive use: no Nagle delay, and at
/// most [`UNSENT_LIMIT`] unsent bytes queued in the kernel (Linux).
fn tune(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(&*tcp).set_tcp_notsent_lowat(UNSENT_LIMIT) {
        tracing::debug!(error = %e, "cannot set TCP_NOTSENT_LOWAT");
    }
}

/// Writes the line a parent process waits for, and flushes it.
pub fn announce(out: &mut impl Write, addr: SocketAddr) -> io::Result<()> {
    writeln!(out, "listening on http://{addr}")?;
    out.flush()
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "expected one of the paths listed at GET /, found another")
}

/// An error response: `{"code": ..., "message": ...}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "code": self.code, "message": self.message }))).into_response()
    }
}
