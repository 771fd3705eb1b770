//! DCI's public HTTP/JSON API (R-UX3, R-SEC2): the only crate that knows HTTP
//! for the consumer-facing side.
//!
//! - [`api`]: the request and response bodies (the stable public contract,
//!   with their OpenAPI schemas) and [`api::ApiError`], the JSON error with a
//!   stable code and a human message.
//! - [`server`]: the axum router over any [`server::ConsumerApi`]
//!   implementation; it authenticates API keys, rate-limits ([`limits`]:
//!   per address, per key, failed authentications), validates input,
//!   answers every error as JSON, serves `/openapi.json` and `/metrics`,
//!   over plain http or https ([`server::serve`], [`server::TlsFiles`]). The gateway role's logic (match, escrow,
//!   start, settle) lives behind that trait: the gateway core (`dci-gateway-core`),
//!   driven by `dci-node`.
//! - [`relay`]: the OpenAI-compatible relay, `/openai/<session>/v1/…`, which
//!   forwards a model session's requests to its container's service (the
//!   caller's API key, the session's owner) under rules that keep a hostile
//!   host from using the gateway as a proxy: no redirects, allowlisted
//!   headers, capped and streamed bodies, bytes counted and metered once.
//! - [`client`]: the typed HTTP client used by the `dci` CLI (https with
//!   the system's trust store).
//! - [`convert`]: the gateway core's records and domain errors as the API's
//!   JSON bodies and status codes.
//!
//! `/view/<session>` serves the render viewer page
//! (`dci_services::render::CLIENT_PAGE`) pointed at the session's stream.
//!
//! Not here: matching, billing, or anything about node-to-node messages.

pub mod api;
pub mod client;
pub mod convert;
pub mod limits;
pub mod relay;
pub mod server;
