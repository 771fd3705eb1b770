//! The typed HTTP client of the public API (used by the `dci` CLI).

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;

use crate::api::{
    ApiError, BalanceInfo, CommitteeInfo, ContainerInfo, DeployRequest, ErrorBody, NodeRegisterInfo,
    NodeRegisterRequest, NodeStakeRequest, OfferInfo, RewardsInfo, SessionInfo, StakeRequest, TransferRequest,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway could not be reached.
    #[error("cannot reach the gateway at {url}: {detail} (is `dci devnet` running?)")]
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
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8700`).
    pub fn new(base: impl Into<String>, api_key: Option<String>) -> Self {
        Client { base: base.into().trim_end_matches('/').to_owned(), api_key, http: reqwest::Client::new() }
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
        let resp = r.send().await.map_err(|e| ClientError::Unreachable { url: url.clone(), detail: e.to_string() })?;
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

    /// `GET /v1/offers?filter=…&sort=…&limit=…`.
    pub async fn offers(&self, filter: &str, sort: &str, limit: u32) -> Result<Vec<OfferInfo>, ClientError> {
        let r = self.request(Method::GET, "/v1/offers").query(&[
            ("filter", filter.to_owned()),
            ("sort", sort.to_owned()),
            ("limit", limit.to_string()),
        ]);
        self.send("/v1/offers", r).await
    }

    /// `GET /v1/containers`.
    pub async fn containers(&self) -> Result<Vec<ContainerInfo>, ClientError> {
        self.send("/v1/containers", self.request(Method::GET, "/v1/containers")).await
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
