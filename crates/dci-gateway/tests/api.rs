//! The public API under abuse, over real sockets: the real `router_with`
//! over an in-memory role, served by `serve` on loopback (plain and https),
//! called with reqwest from distinct loopback source addresses (127.0.0.1,
//! 127.0.0.2, …: Linux routes all of 127/8 to lo). Every test is an attack
//! or a misuse that must be refused the way the API promises; the figures
//! are printed (`cargo test -p dci-gateway --test api -- --nocapture`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use axum::http::header;
use dci_gateway::api::{
    ApiError, BalanceInfo, CommitteeInfo, ContainerInfo, DeployRequest, ErrorBody, NodeRegisterInfo,
    NodeRegisterRequest, NodeStakeRequest, OfferInfo, Page, RewardsInfo, SessionInfo, StakeRequest, TransferRequest,
};
use dci_gateway::client::Client;
use dci_gateway::limits::{Budget, LimitsConfig};
use dci_gateway::server::{BoxFuture, ConsumerApi, RelayTarget, Relayed, ServerOptions, TlsFiles, router_with, serve};
use dci_model::{AccountId, SessionId};

/// Two consumers: alice and bob, each with their key.
const ALICE: &str = "alice-key";
const BOB: &str = "bob-key";

/// Rows the in-memory network lists.
const CONTAINERS: usize = 1234;
const OFFERS: usize = 250;

/// The gateway role in memory: two accounts with a balance, a network of
/// [`CONTAINERS`] containers and [`OFFERS`] offers; it counts its calls.
#[derive(Default)]
struct Role {
    authentications: AtomicUsize,
}

fn account(name: &str) -> AccountId {
    AccountId::new(format!("consumer:{name}")).expect("valid account")
}

fn not_here<T>() -> BoxFuture<'static, Result<T, ApiError>> {
    Box::pin(async { Err(ApiError::not_found("not served by this test")) })
}

fn container(i: usize) -> ContainerInfo {
    ContainerInfo {
        id: format!("{i:064x}"),
        state: "Healthy".into(),
        gpu_model: None,
        gpu_count: 0,
        vram_gib: 0,
        gpu_simulated: false,
        cpu_cores: 4,
        ram_gib: 8,
        disk_gib: 100,
        location: (0.0, 0.0),
        services: vec!["render".into()],
        warm: vec![],
        price_ath_per_hour: "1".into(),
        slots: 1,
        reserved: 0,
        reputation: 500,
        last_heartbeat_ago_ms: Some(10),
        transitions: vec![],
        verified_class: None,
        verified_units: None,
        verdicts: vec![],
    }
}

fn offer(i: usize) -> OfferInfo {
    OfferInfo {
        id: format!("{i:064x}"),
        state: "Healthy".into(),
        gpu_model: None,
        gpu_count: 0,
        vram_gib: 0,
        gpu_simulated: false,
        cpu_cores: 4,
        ram_gib: 8,
        location: (0.0, 0.0),
        services: vec!["render".into()],
        price_ath_per_hour: format!("{}", i + 1),
        free_slots: 1,
        slots: 1,
        reputation: 500,
        estimated_rtt_ms: None,
    }
}

impl ConsumerApi for Role {
    fn authenticate<'a>(&'a self, api_key: &'a str) -> BoxFuture<'a, Result<AccountId, ApiError>> {
        self.authentications.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            match api_key {
                ALICE => Ok(account("alice")),
                BOB => Ok(account("bob")),
                _ => Err(ApiError::unauthorized("unknown API key")),
            }
        })
    }
    fn balance(&self, who: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        Box::pin(async move {
            Ok(BalanceInfo {
                account: who.to_string(),
                balance_ath: "100".into(),
                escrowed_ath: "0".into(),
                staked_ath: "0".into(),
                unbonding_ath: "0".into(),
                rewards_ath: "0".into(),
                unbonding: vec![],
            })
        })
    }
    fn offers(&self, _: String, _: String, page: Page) -> BoxFuture<'_, Result<Vec<OfferInfo>, ApiError>> {
        let rows: Vec<OfferInfo> = (0..OFFERS).map(offer).collect();
        Box::pin(async move { Ok(page.of(&rows).to_vec()) })
    }
    fn containers(&self, page: Page) -> BoxFuture<'_, Result<Vec<ContainerInfo>, ApiError>> {
        let rows: Vec<ContainerInfo> = (0..CONTAINERS).map(container).collect();
        Box::pin(async move { Ok(page.of(&rows).to_vec()) })
    }
    fn transfer(&self, _: AccountId, _: TransferRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
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
    fn committee(&self) -> BoxFuture<'_, Result<CommitteeInfo, ApiError>> {
        not_here()
    }
    fn node_stake(&self, _: NodeStakeRequest) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
    }
    fn node_register(&self, _: NodeRegisterRequest) -> BoxFuture<'_, Result<NodeRegisterInfo, ApiError>> {
        not_here()
    }
    fn stake(&self, _: AccountId, _: StakeRequest, _: bool) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
    }
    fn withdraw(&self, _: AccountId) -> BoxFuture<'_, Result<BalanceInfo, ApiError>> {
        not_here()
    }
    fn rewards(&self, _: AccountId, _: Option<u64>) -> BoxFuture<'_, Result<RewardsInfo, ApiError>> {
        not_here()
    }
    fn relay_target(&self, _: AccountId, _: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
        not_here()
    }
    fn meter(&self, _: AccountId, _: SessionId, _: Relayed) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }
    fn view_target(&self, _: SessionId) -> BoxFuture<'_, Result<RelayTarget, ApiError>> {
        not_here()
    }
}

/// A gateway API on a fresh loopback port with `limits` (https with `tls`).
async fn gateway(limits: LimitsConfig, tls: Option<&TlsFiles>) -> Result<(SocketAddr, Arc<Role>)> {
    let role = Arc::new(Role::default());
    let router =
        router_with(role.clone(), Arc::new(String::new), ServerOptions { limits }).map_err(|e| anyhow::anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let tls = tls.map(TlsFiles::load).transpose()?;
    tokio::spawn(serve(listener, router, tls, std::future::pending()));
    Ok((addr, role))
}

/// A plain client whose connections come from `source` (a loopback address).
fn client_from(source: &str) -> Result<reqwest::Client> {
    let source: IpAddr = source.parse()?;
    Ok(reqwest::Client::builder().no_proxy().local_address(source).build()?)
}

/// Limits with wide budgets except those given.
fn limits(per_address: (u32, u32), per_key: (u32, u32), failed_auth: (u32, u32)) -> LimitsConfig {
    let b = |(per_minute, burst): (u32, u32)| Budget { per_minute, burst };
    LimitsConfig { per_address: b(per_address), per_key: b(per_key), failed_auth: b(failed_auth), max_clients: 1000 }
}

/// Counts of answers by status, and every 429 checked: JSON
/// `rate_limited` with a `Retry-After` of at least one second.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    unauthorized: usize,
    limited: usize,
    other: Vec<u16>,
    first_limited_at: Option<usize>,
    max_retry_after: u64,
}

impl Tally {
    async fn take(&mut self, i: usize, r: reqwest::Response, expect_limit: &str) -> Result<()> {
        match r.status().as_u16() {
            200 => self.ok += 1,
            401 => self.unauthorized += 1,
            429 => {
                let retry: u64 =
                    r.headers().get(header::RETRY_AFTER).context("a 429 without Retry-After")?.to_str()?.parse()?;
                ensure!(retry >= 1, "Retry-After {retry}");
                self.max_retry_after = self.max_retry_after.max(retry);
                ensure!(r.headers()[header::CONTENT_TYPE] == "application/json");
                let body: ErrorBody = r.json().await?;
                ensure!(body.code == "rate_limited", "{body:?}");
                let details = body.details.context("a 429 without details")?;
                ensure!(details["limit"] == expect_limit, "expected the {expect_limit} limit, found {details}");
                self.limited += 1;
                self.first_limited_at.get_or_insert(i);
            }
            other => self.other.push(other),
        }
        Ok(())
    }
}

/// Sends `n` requests one after the other (as fast as answers come) and tallies them.
async fn flood(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    n: usize,
    expect_limit: &str,
) -> Result<(Tally, Duration)> {
    let mut tally = Tally::default();
    let t0 = Instant::now();
    for i in 0..n {
        let mut r = http.get(url);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        tally.take(i, r.send().await?, expect_limit).await?;
    }
    Ok((tally, t0.elapsed()))
}

/// The most a bucket can serve in `elapsed`: its burst plus what refilled.
fn bucket_bound(b: Budget, elapsed: Duration) -> usize {
    b.burst as usize + (elapsed.as_secs_f64() * f64::from(b.per_minute) / 60.0).ceil() as usize + 1
}

#[tokio::test]
async fn a_flood_from_one_client_is_refused_after_its_limit_while_another_is_served() -> Result<()> {
    // The address budget binds first: 100 at once, then 1 per 10 s.
    let l = limits((6, 100), (6000, 1000), (10, 20));
    let (addr, _) = gateway(l, None).await?;
    let url = format!("http://{addr}/v1/balance");
    // Alice floods from 127.0.0.1 while Bob (another key, another address)
    // goes on with his requests, one every 5 ms, at the same time.
    let (alice, bob) = (client_from("127.0.0.1")?, client_from("127.0.0.2")?);
    let steady = async {
        let mut t = Tally::default();
        let t0 = Instant::now();
        for i in 0..50 {
            t.take(i, bob.get(&url).bearer_auth(BOB).send().await?, "none").await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok::<_, anyhow::Error>((t, t0.elapsed()))
    };
    let (flooded, steady) = tokio::join!(flood(&alice, &url, Some(ALICE), 2000, "per_address"), steady);
    let ((tally, elapsed), (other, other_elapsed)) = (flooded?, steady?);
    println!(
        "flood of 2000 GET /v1/balance from 127.0.0.1 (alice's key) in {:.0} ms: {} served, {} refused with 429 \
         (first refusal at request {}; Retry-After up to {} s)",
        elapsed.as_secs_f64() * 1e3,
        tally.ok,
        tally.limited,
        tally.first_limited_at.map_or(-1, |i| i as i64),
        tally.max_retry_after,
    );
    ensure!(tally.other.is_empty() && tally.unauthorized == 0, "{tally:?}");
    ensure!(tally.ok + tally.limited == 2000);
    ensure!(tally.ok >= l.per_address.burst as usize, "the stated burst must be served: {tally:?}");
    ensure!(tally.ok <= bucket_bound(l.per_address, elapsed), "served beyond the limit: {tally:?}");
    ensure!(tally.first_limited_at == Some(l.per_address.burst as usize), "{tally:?}");
    println!(
        "meanwhile 50 GET /v1/balance from 127.0.0.2 (bob's key) over {:.0} ms: {} served",
        other_elapsed.as_secs_f64() * 1e3,
        other.ok
    );
    ensure!(other.ok == 50, "{other:?}");

    // The attack as it was: 2000 unauthenticated GET /v1/offers from one address.
    let offers = format!("http://{addr}/v1/offers");
    let (reads, elapsed) = flood(&client_from("127.0.0.4")?, &offers, None, 2000, "per_address").await?;
    println!(
        "flood of 2000 GET /v1/offers (no key) from 127.0.0.4 in {:.0} ms: {} served, {} refused with 429",
        elapsed.as_secs_f64() * 1e3,
        reads.ok,
        reads.limited
    );
    ensure!(reads.ok >= l.per_address.burst as usize && reads.ok <= bucket_bound(l.per_address, elapsed), "{reads:?}");
    ensure!(reads.ok + reads.limited == 2000 && reads.other.is_empty(), "{reads:?}");

    // Unauthenticated reads draw from the same address budget as alice's flood.
    let (refused, _) = flood(&client_from("127.0.0.1")?, &offers, None, 5, "per_address").await?;
    ensure!(refused.limited == 5, "{refused:?}");
    Ok(())
}

#[tokio::test]
async fn one_key_is_limited_from_every_address() -> Result<()> {
    let l = limits((6000, 1000), (6, 30), (10, 20));
    let (addr, _) = gateway(l, None).await?;
    let url = format!("http://{addr}/v1/balance");
    let (a, elapsed) = flood(&client_from("127.0.0.1")?, &url, Some(ALICE), 300, "per_key").await?;
    println!("300 GET /v1/balance with alice's key from 127.0.0.1: {} served, {} refused (per key)", a.ok, a.limited);
    ensure!(a.ok >= 30 && a.ok <= bucket_bound(l.per_key, elapsed) && a.ok + a.limited == 300, "{a:?}");
    // The same key from another address: still refused.
    let (moved, _) = flood(&client_from("127.0.0.3")?, &url, Some(ALICE), 5, "per_key").await?;
    ensure!(moved.limited == 5, "{moved:?}");
    // Another key from the first address: served.
    let (bob, _) = flood(&client_from("127.0.0.1")?, &url, Some(BOB), 20, "none").await?;
    ensure!(bob.ok == 20, "{bob:?}");
    Ok(())
}

#[tokio::test]
async fn guessing_keys_is_slowed_then_refused_even_for_a_right_guess() -> Result<()> {
    let l = limits((60_000, 10_000), (60_000, 10_000), (10, 20));
    let (addr, role) = gateway(l, None).await?;
    let url = format!("http://{addr}/v1/balance");
    let guesser = client_from("127.0.0.1")?;
    let mut tally = Tally::default();
    let t0 = Instant::now();
    for i in 0..500 {
        let r = guesser.get(&url).bearer_auth(format!("guess-{i}")).send().await?;
        tally.take(i, r, "failed_auth").await?;
    }
    let checked = role.authentications.load(Ordering::Relaxed);
    println!(
        "500 wrong keys from 127.0.0.1 in {:.0} ms: {} answered 401, {} refused with 429 (Retry-After up to {} s); \
         keys looked up: {checked}",
        t0.elapsed().as_secs_f64() * 1e3,
        tally.unauthorized,
        tally.limited,
        tally.max_retry_after
    );
    ensure!(tally.other.is_empty() && tally.ok == 0, "{tally:?}");
    ensure!(tally.unauthorized >= 20 && tally.unauthorized <= bucket_bound(l.failed_auth, t0.elapsed()), "{tally:?}");
    ensure!(tally.unauthorized + tally.limited == 500);
    // Once refused, the address's keys are not even looked up.
    ensure!(checked <= tally.unauthorized + 1, "{checked} lookups for {} 401s", tally.unauthorized);
    // A right key from the guessing address is refused too, until the bucket refills…
    let r = guesser.get(&url).bearer_auth(ALICE).send().await?;
    ensure!(r.status() == 429, "a right guess got {}", r.status());
    // …while the owner, elsewhere, is served.
    let r = client_from("127.0.0.2")?.get(&url).bearer_auth(ALICE).send().await?;
    ensure!(r.status() == 200, "{}", r.status());
    // A missing header counts as a failed authentication too.
    let r = client_from("127.0.0.1")?.get(&url).send().await?;
    ensure!(r.status() == 429, "{}", r.status());
    Ok(())
}

/// The JSON error body of `r`, checked to be `status` with `code`.
async fn json_error(r: reqwest::Response, status: u16, code: &str) -> Result<ErrorBody> {
    ensure!(r.status().as_u16() == status, "expected {status}, found {}", r.status());
    let ct = r.headers().get(header::CONTENT_TYPE).context("no content type")?.to_str()?.to_owned();
    ensure!(ct.starts_with("application/json"), "content type {ct}");
    let body: ErrorBody = r.json().await?;
    ensure!(body.code == code && !body.message.is_empty(), "{body:?}");
    Ok(body)
}

#[tokio::test]
async fn every_error_is_json_unknown_routes_methods_and_oversized_bodies_included() -> Result<()> {
    let (addr, _) = gateway(LimitsConfig::default(), None).await?;
    let http = client_from("127.0.0.1")?;
    let url = |p: &str| format!("http://{addr}{p}");

    let body = json_error(http.get(url("/v1/nothing-here")).send().await?, 404, "not_found").await?;
    println!("GET /v1/nothing-here: 404 {}", body.message);
    json_error(http.get(url("/")).send().await?, 404, "not_found").await?;
    for (method, path) in [
        (reqwest::Method::PUT, "/v1/balance"),
        (reqwest::Method::DELETE, "/v1/offers"),
        (reqwest::Method::POST, "/health"),
        (reqwest::Method::PATCH, "/v1/sessions"),
        (reqwest::Method::GET, "/v1/transfers"),
    ] {
        let r = http.request(method.clone(), url(path)).bearer_auth(ALICE).send().await?;
        let allow = r.headers().get(header::ALLOW).map(|v| v.to_str().unwrap_or("").to_owned());
        let body = json_error(r, 405, "method_not_allowed").await?;
        println!("{method} {path}: 405 {} (Allow: {})", body.message, allow.as_deref().unwrap_or("-"));
        ensure!(body.message.contains(method.as_str()), "{body:?}");
    }

    // A JSON body over 64 KiB: 413 before it is parsed.
    let big = format!("{{\"to\":\"consumer:bob\",\"amount_ath\":\"{}\"}}", "1".repeat(100 << 10));
    let r = http
        .post(url("/v1/transfers"))
        .bearer_auth(ALICE)
        .header(header::CONTENT_TYPE, "application/json")
        .body(big)
        .send()
        .await?;
    let body = json_error(r, 413, "payload_too_large").await?;
    println!("POST /v1/transfers with 100 KiB: 413 {}", body.message);
    // Declared larger than it is, or streamed without a length: the same.
    let r = http
        .post(url("/v1/sessions"))
        .bearer_auth(ALICE)
        .header(header::CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 4096])),
        )))
        .send()
        .await?;
    json_error(r, 413, "payload_too_large").await?;
    // A body that is not JSON, a query that does not parse: 400 JSON.
    let r = http
        .post(url("/v1/transfers"))
        .bearer_auth(ALICE)
        .header(header::CONTENT_TYPE, "application/json")
        .body("{")
        .send()
        .await?;
    json_error(r, 400, "bad_request").await?;
    let r = http.get(url("/v1/offers?limit=lots")).send().await?;
    json_error(r, 400, "bad_request").await?;
    let r = http.get(url("/v1/offers?colour=red")).send().await?;
    json_error(r, 400, "bad_request").await?;
    Ok(())
}

#[tokio::test]
async fn reads_are_paged_with_bounds_and_the_client_pages_through() -> Result<()> {
    let (addr, _) = gateway(LimitsConfig::default(), None).await?;
    let http = client_from("127.0.0.1")?;
    let get = |p: String| {
        let http = http.clone();
        async move { http.get(format!("http://{addr}{p}")).send().await }
    };
    // Offers: 20 by default, at most 100 a page, offset + limit within the window.
    let first: Vec<OfferInfo> = get("/v1/offers".into()).await?.json().await?;
    ensure!(first.len() == 20 && first[0] == offer(0));
    let page: Vec<OfferInfo> = get("/v1/offers?offset=200&limit=100".into()).await?.json().await?;
    ensure!(page.len() == 50 && page[0] == offer(200), "{}", page.len());
    json_error(get("/v1/offers?limit=101".into()).await?, 400, "bad_request").await?;
    let e = json_error(get("/v1/offers?offset=950&limit=100".into()).await?, 400, "bad_request").await?;
    ensure!(e.message.contains("offset + limit at most 1000"), "{e:?}");
    json_error(get("/v1/offers?limit=0".into()).await?, 400, "bad_request").await?;
    // Containers: 100 by default, at most 500 a page.
    let rows: Vec<ContainerInfo> = get("/v1/containers".into()).await?.json().await?;
    ensure!(rows.len() == 100);
    let rows: Vec<ContainerInfo> = get("/v1/containers?offset=1000&limit=500".into()).await?.json().await?;
    ensure!(rows.len() == CONTAINERS - 1000 && rows[0] == container(1000));
    json_error(get("/v1/containers?limit=501".into()).await?, 400, "bad_request").await?;
    // The CLI's client pages through both.
    let client = Client::new(format!("http://{addr}"), None);
    let all = client.containers().await?;
    ensure!(all.len() == CONTAINERS && all.iter().enumerate().all(|(i, c)| *c == container(i)));
    let offers = client.offers("", "price", 230).await?;
    ensure!(offers.len() == 230 && offers.iter().enumerate().all(|(i, o)| *o == offer(i)));
    let offers = client.offers("", "price", 5000).await?;
    ensure!(offers.len() == OFFERS);
    println!("paged: {} containers in pages of 500, {} offers in pages of 100", all.len(), offers.len());
    Ok(())
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files.
struct TestPki {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    files: TlsFiles,
}

fn test_pki() -> Result<TestPki> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "DCI test CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_cert.pem())?;
    let files = TlsFiles { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") };
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok(TestPki { _dir: dir, ca, files })
}

#[tokio::test]
async fn https_serves_with_the_configured_certificate() -> Result<()> {
    let pki = test_pki()?;
    let (addr, _) = gateway(LimitsConfig::default(), Some(&pki.files)).await?;
    // A client that trusts the test CA is served; one that does not is refused.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca)?)?;
    let trusting = reqwest::Client::builder().no_proxy().tls_certs_only([ca]).build()?;
    let r = trusting.get(format!("https://{addr}/v1/balance")).bearer_auth(ALICE).send().await?;
    ensure!(r.status() == 200, "{}", r.status());
    let b: BalanceInfo = r.json().await?;
    ensure!(b.account == "consumer:alice");
    // The gateway client uses the system's store, which does not hold the test CA.
    let e = Client::new(format!("https://{addr}"), Some(ALICE.into())).balance().await.unwrap_err().to_string();
    println!("an untrusted certificate: {e}");
    ensure!(e.contains("certificate") && e.contains("SSL_CERT_FILE"), "{e}");
    // Plain http to the https port gets nowhere.
    ensure!(reqwest::get(format!("http://{addr}/health")).await.is_err());
    // Files that are not a certificate and a key are refused with the file named.
    let bad = TlsFiles { cert: pki.files.key.clone(), key: pki.files.key.clone() };
    let e = bad.load().unwrap_err().to_string();
    ensure!(e.contains("tls.cert: expected PEM certificates") && e.contains("key.pem"), "{e}");
    let bad = TlsFiles { cert: pki.files.cert.clone(), key: pki.ca.clone() };
    let e = bad.load().unwrap_err().to_string();
    ensure!(e.contains("tls.key: expected a PEM private key"), "{e}");
    Ok(())
}
