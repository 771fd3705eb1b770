//! The typed HTTP client of the public API (used by the `dci` CLI): plain
//! http, or https verified against the system's trust store
//! ([`trust_store`]: the platform's certificates, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` when set).

use std::sync::Arc;

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;

use crate::api::{
    ApiError, BalanceInfo, CommitteeInfo, ContainerInfo, DeployRequest, ErrorBody, MAX_CONTAINERS_PAGE,
    MAX_OFFERS_PAGE, NodeRegisterInfo, NodeRegisterRequest, NodeStakeRequest, OFFERS_WINDOW, OfferInfo, RewardsInfo,
    SessionInfo, StakeRequest, TransferRequest,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway could not be reached.
    #[error("cannot reach the gateway at {url}: {detail}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The gateway answered with an error.
    #[error("{0}")]
    Api(ApiError),
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

/// A client bound to one gateway and, optionally, one API key.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8700`,
    /// or `https://gateway.example:8700`, verified against [`trust_store`]).
    pub fn new(base: impl Into<String>, api_key: Option<String>) -> Self {
        let tls = tls_config();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            // A preconfigured rustls config leaves nothing to fail; the
            // default client verifies against the platform's store too.
            .unwrap_or_default();
        Client { base: base.into().trim_end_matches('/').to_owned(), api_key, http }
    }

    /// The gateway's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn send<T: DeserializeOwned>(&self, path: &str, r: RequestBuilder) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = r.send().await.map_err(|e| ClientError::Unreachable { url: url.clone(), detail: why(&e) })?;
        let status = resp.status();
        let bytes =
            resp.bytes().await.map_err(|e| ClientError::Unreachable { url: url.clone(), detail: e.to_string() })?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol { url, detail: e.to_string() })
        } else {
            let body: ErrorBody = serde_json::from_slice(&bytes).map_err(|_| ClientError::Protocol {
                url,
                detail: format!("status {status} with body {:?}", String::from_utf8_lossy(&bytes)),
            })?;
            Err(ClientError::Api(ApiError { status: status.as_u16(), body }))
        }
    }

    /// `POST /v1/sessions`.
    pub async fn deploy(&self, req: &DeployRequest) -> Result<SessionInfo, ClientError> {
        self.send("/v1/sessions", self.request(Method::POST, "/v1/sessions").json(req)).await
    }

    /// `GET /v1/sessions`.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, ClientError> {
        self.send("/v1/sessions", self.request(Method::GET, "/v1/sessions")).await
    }

    /// `DELETE /v1/sessions/{id}`.
    pub async fn stop(&self, id: &str) -> Result<SessionInfo, ClientError> {
        let path = format!("/v1/sessions/{id}");
        self.send(&path, self.request(Method::DELETE, &path)).await
    }

    /// The first `limit` offers: `GET /v1/offers?filter=…&sort=…&offset=…&limit=…`,
    /// page after page (at most [`MAX_OFFERS_PAGE`] rows each).
    /// At most [`OFFERS_WINDOW`] rows are reachable: a larger `limit` gets those.
    pub async fn offers(&self, filter: &str, sort: &str, limit: u32) -> Result<Vec<OfferInfo>, ClientError> {
        let limit = limit.min(OFFERS_WINDOW);
        let mut rows = Vec::new();
        while (rows.len() as u32) < limit {
            let page = (limit - rows.len() as u32).min(MAX_OFFERS_PAGE);
            let r = self.request(Method::GET, "/v1/offers").query(&[
                ("filter", filter.to_owned()),
                ("sort", sort.to_owned()),
                ("offset", rows.len().to_string()),
                ("limit", page.to_string()),
            ]);
            let got: Vec<OfferInfo> = self.send("/v1/offers", r).await?;
            let last = (got.len() as u32) < page;
            rows.extend(got);
            if last {
                break;
            }
        }
        Ok(rows)
    }

    /// Every container: `GET /v1/containers?offset=…&limit=…`, page after page.
    pub async fn containers(&self) -> Result<Vec<ContainerInfo>, ClientError> {
        let mut rows = Vec::new();
        loop {
            let path = format!("/v1/containers?offset={}&limit={MAX_CONTAINERS_PAGE}", rows.len());
            let got: Vec<ContainerInfo> = self.send(&path, self.request(Method::GET, &path)).await?;
            let last = (got.len() as u32) < MAX_CONTAINERS_PAGE;
            rows.extend(got);
            if last {
                return Ok(rows);
            }
        }
    }

    /// `GET /v1/committee`.
    pub async fn committee(&self) -> Result<CommitteeInfo, ClientError> {
        self.send("/v1/committee", self.request(Method::GET, "/v1/committee")).await
    }

    /// `POST /v1/transfers`.
    pub async fn transfer(&self, req: &TransferRequest) -> Result<BalanceInfo, ClientError> {
        self.send("/v1/transfers", self.request(Method::POST, "/v1/transfers").json(req)).await
    }

    /// `POST /v1/stake` or `POST /v1/unstake`.
    pub async fn stake(&self, req: &StakeRequest, unstake: bool) -> Result<BalanceInfo, ClientError> {
        let path = if unstake { "/v1/unstake" } else { "/v1/stake" };
        self.send(path, self.request(Method::POST, path).json(req)).await
    }

    /// `POST /v1/node-register`: a node publishes its signed endpoint record on chain.
    pub async fn node_register(&self, req: &NodeRegisterRequest) -> Result<NodeRegisterInfo, ClientError> {
        self.send("/v1/node-register", self.request(Method::POST, "/v1/node-register").json(req)).await
    }

    /// `POST /v1/node-stake`: a node bonds from its own account (signed, no API key).
    pub async fn node_stake(&self, req: &NodeStakeRequest) -> Result<BalanceInfo, ClientError> {
        self.send("/v1/node-stake", self.request(Method::POST, "/v1/node-stake").json(req)).await
    }

    /// `POST /v1/withdraw`.
    pub async fn withdraw(&self) -> Result<BalanceInfo, ClientError> {
        self.send("/v1/withdraw", self.request(Method::POST, "/v1/withdraw")).await
    }

    /// `GET /v1/rewards[?epoch=N][&account=A]`.
    pub async fn rewards(&self, epoch: Option<u64>, account: Option<&str>) -> Result<RewardsInfo, ClientError> {
        let mut query = Vec::new();
        if let Some(e) = epoch {
            query.push(format!("epoch={e}"));
        }
        if let Some(a) = account {
            query.push(format!("account={a}"));
        }
        let path = if query.is_empty() { "/v1/rewards".to_owned() } else { format!("/v1/rewards?{}", query.join("&")) };
        self.send(&path, self.request(Method::GET, &path)).await
    }

    /// `GET /v1/balance`.
    pub async fn balance(&self) -> Result<BalanceInfo, ClientError> {
        self.send("/v1/balance", self.request(Method::GET, "/v1/balance")).await
    }
}

/// The certificates https answers are verified against: the system's trust
/// store (`rustls-native-certs`: the platform's certificate files, or those
/// named by `SSL_CERT_FILE` / `SSL_CERT_DIR` when set). Certificates that do
/// not parse are skipped; the count of those that did is returned with it.
pub fn trust_store() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "a certificate of the trust store was not read");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "trust store loaded");
    roots
}

/// The TLS config of the client: TLS 1.2 and 1.3 over aws-lc-rs, verified
/// against [`trust_store`].
fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions");
    builder.with_root_certificates(trust_store()).with_no_client_auth()
}

/// A transport error in words, with its causes (reqwest's own message is
/// only "error sending request"), and what to do about an untrusted
/// certificate.
fn why(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        text.push_str(
            " (the gateway's TLS certificate is not trusted here: its issuer must be in the system's trust store, \
             or in a PEM file named by SSL_CERT_FILE)",
        );
    } else if e.is_connect() {
        text.push_str(" (is the gateway, or `dci devnet`, running there?)");
    }
    text
}
