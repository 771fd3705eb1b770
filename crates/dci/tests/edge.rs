//! The public edge end to end (issue 16): `dci devnet` serving its API over
//! https from a certificate made here, the `dci` CLI reaching it with the
//! test CA trusted through `SSL_CERT_FILE` (and failing clearly without),
//! key guessing against the real gateway refused after its budget; and, in
//! process with every log line captured, a deploy, a viewer visit and a
//! stop that leave neither the session id (the viewer's capability) nor the
//! API key in any log line.
//! Figures: `cargo test -p dci --test edge -- --nocapture`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{DCI, Devnet, free_port};

/// A CA, and a certificate for 127.0.0.1 it signed; PEM files in `dir`.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "DCI edge test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// `dci <args> --data-dir <dir>` with `SSL_CERT_FILE` set to `ca` (or unset).
fn dci(dir: &Path, ca: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(DCI);
    c.args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("DCI_LOG", "warn")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("DCI_API")
        .env_remove("DCI_API_KEY");
    if let Some(ca) = ca {
        c.env("SSL_CERT_FILE", ca);
    }
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_cli_speaks_https_to_a_gateway_with_a_certificate_it_trusts_and_guessing_keys_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(tmp.path());
    let dir = tmp.path().join("devnet");
    let port = free_port();
    let net = Devnet::start_expecting(
        &dir,
        port,
        1,
        &[
            "--checkers",
            "1",
            "--committee-size",
            "1",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        "1/1",
    );
    let https = format!("https://127.0.0.1:{port}");
    assert!(net.banner.iter().any(|l| l.contains(&https)), "the banner names the https API: {:?}", net.banner);

    // Trusting the test CA through SSL_CERT_FILE: served.
    let (ok, out, err) = dci(&dir, Some(&ca), &["--api", &https, "balance", "--json"]);
    assert!(ok, "dci --api {https} balance failed: {err}");
    let b: serde_json::Value = serde_json::from_str(&out).unwrap();
    println!("dci --api {https} balance (SSL_CERT_FILE = the test CA): {}", b["balance_ath"]);
    assert_eq!(b["account"], "consumer:devnet");
    // client.json names the https API too, so plain `dci balance` works as well.
    let (ok, _, err) = dci(&dir, Some(&ca), &["balance"]);
    assert!(ok, "{err}");
    // Without trusting it: refused, saying why and what to do.
    let (ok, _, err) = dci(&dir, None, &["--api", &https, "balance"]);
    println!("without the CA: {}", err.trim());
    assert!(!ok);
    assert!(err.contains("certificate") && err.contains("SSL_CERT_FILE"), "{err}");
    // Plain http to the https port gets no answer.
    let (ok, _, err) = dci(&dir, Some(&ca), &["--api", &format!("http://127.0.0.1:{port}"), "balance"]);
    assert!(!ok, "{err}");

    // Guessing keys against the real gateway (its failed-authentication
    // budget is the production default: 20, then 10 a minute).
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let http = reqwest::blocking::Client::builder().no_proxy().tls_certs_only([root]).build().unwrap();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..500 {
        let r = http.get(format!("{https}/v1/balance")).bearer_auth(format!("guess-{i}")).send().unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            assert!(r.headers().get("retry-after").is_some());
            let body: serde_json::Value = r.json().unwrap();
            assert_eq!(body["code"], "rate_limited");
        }
        *statuses.entry(status).or_default() += 1;
    }
    println!("500 wrong keys over https against the devnet's gateway: {statuses:?}");
    let refused = statuses.get(&429).copied().unwrap_or(0);
    let unauthorized = statuses.get(&401).copied().unwrap_or(0);
    assert_eq!(refused + unauthorized, 500, "{statuses:?}");
    assert!((20..=40).contains(&unauthorized), "{statuses:?}");
    // The right key from the same address is refused too, for now.
    let (ok, _, err) = dci(&dir, Some(&ca), &["--api", &https, "balance"]);
    assert!(!ok && err.contains("rate_limited"), "{err}");
    net.signal("-TERM");
}

/// The chain client speaks https: `dci chain deploy` against a JSON-RPC
/// stub served over https gets past `eth_chainId` when `SSL_CERT_FILE`
/// trusts the stub's CA, and says the certificate is not trusted when not.
#[test]
fn the_chain_client_reaches_an_https_rpc() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(tmp.path());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let chain_ids = Arc::new(AtomicUsize::new(0));
    let seen = chain_ids.clone();
    // eth_chainId answers Arbitrum One's id; every other method is unknown.
    let rpc = axum::Router::new().route(
        "/",
        axum::routing::post(move |axum::Json(req): axum::Json<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                let id = req["id"].clone();
                axum::Json(if req["method"] == "eth_chainId" {
                    seen.fetch_add(1, Ordering::Relaxed);
                    serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": "0xa4b1" })
                } else {
                    serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "method not found" } })
                })
            }
        }),
    );
    let files = dci_gateway::server::TlsFiles { cert, key };
    let port = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = files.load().unwrap();
        tokio::spawn(dci_gateway::server::serve(listener, rpc, Some(tls), std::future::pending()));
        port
    });
    let url = format!("https://127.0.0.1:{port}");
    let gw = tmp.path().join("gateway");
    let deploy = |ca: Option<&Path>| {
        dci(
            &gw,
            ca,
            &["chain", "deploy", "--rpc-url", &url, "--committee", "0x0000000000000000000000000000000000000001"],
        )
    };
    let (ok, _, err) = deploy(None);
    println!("dci chain deploy --rpc-url {url}, the CA not trusted: {}", err.trim());
    assert!(!ok && err.contains("UnknownIssuer") && err.contains("SSL_CERT_FILE"), "{err}");
    assert_eq!(chain_ids.load(Ordering::Relaxed), 0);
    let (ok, _, err) = deploy(Some(&ca));
    println!(
        "the same with SSL_CERT_FILE = the CA: {} (eth_chainId answered {} times)",
        err.trim(),
        chain_ids.load(Ordering::Relaxed)
    );
    assert!(!ok, "the stub is no chain");
    assert!(chain_ids.load(Ordering::Relaxed) >= 1, "eth_chainId must reach the stub over https: {err}");
    assert!(!err.contains("unreachable"), "{err}");
}

/// An in-process devnet of one container (plain http).
async fn small_devnet(dir: &Path) -> dci_node::devnet::Devnet {
    let config = dci_node::devnet::DevnetConfig {
        data_dir: dir.to_path_buf(),
        containers: 1,
        api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
        service_program: PathBuf::from(DCI),
        challenge_n: 64,
        epoch: Duration::from_secs(60),
        dishonest: None,
        checkers: 1,
        committee_size: 1,
        inspect_every: Duration::from_secs(3600),
        runtime: dci_node::runtime::RuntimeKind::Process,
        tls: None,
        settlement: None,
    };
    let net = dci_node::devnet::Devnet::start(config).await.unwrap();
    let (ready, total) = net.wait_ready(Duration::from_secs(60)).await;
    assert_eq!(ready, total, "the container must be schedulable");
    net
}

/// The value of counter `name{labels}` in a Prometheus text exposition.
fn counter(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}{{{labels}}} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn a_flood_of_public_reads_reaches_the_indexer_once_per_refresh_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let net = small_devnet(tmp.path()).await;
        let http = reqwest::Client::new();
        let url = net.api_url.clone();
        let metrics = || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap() }
        };
        let before = metrics().await;
        let t0 = std::time::Instant::now();
        let mut served = 0;
        for i in 0..1000 {
            let path = if i % 2 == 0 { "/v1/offers?filter=state%3Dany" } else { "/v1/containers" };
            let r = http.get(format!("{url}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            served += 1;
        }
        let elapsed = t0.elapsed();
        let after = metrics().await;
        let asked = |what: &str| {
            let label = format!("what=\"{what}\"");
            counter(&after, "dci_gateway_view_refreshed_total", &label)
                - counter(&before, "dci_gateway_view_refreshed_total", &label)
        };
        let (offers, containers) = (asked("offers"), asked("containers"));
        let refresh = dci_node::gateway::DEFAULT_VIEW_REFRESH;
        let bound = (elapsed.as_millis() / refresh.as_millis()) as u64 + 1;
        println!(
            "{served} unauthenticated reads (offers and containers alternately) in {} ms: the indexer was asked \
             {offers} offers queries and {containers} container listings (refresh interval {} ms)",
            elapsed.as_millis(),
            refresh.as_millis()
        );
        assert!((1..=bound).contains(&offers), "offers asked {offers} times, at most {bound} expected");
        assert!((1..=bound).contains(&containers), "containers listed {containers} times, at most {bound} expected");
        net.shutdown().await;
    });
}

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_session_id_nor_api_key_reaches_a_log_line() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt().with_env_filter("debug").with_ansi(false).with_writer(move || writer.clone()).init();
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (session, key, lines) = rt.block_on(async {
        let net = small_devnet(tmp.path()).await;
        let key = net.client.api_key.clone();
        let client = dci_gateway::client::Client::new(net.api_url.clone(), Some(key.clone()));
        let req = dci_gateway::api::DeployRequest { service: "render".into(), ..Default::default() };
        let session = client.deploy(&req).await.unwrap();
        // The viewer, a wrong key, a missing session and another's: every
        // path that handles the capability or a key.
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let view = http.get(format!("{}/view/{}", net.api_url, session.id)).send().await.unwrap();
        assert_eq!(view.status(), 303);
        let wrong = dci_gateway::client::Client::new(net.api_url.clone(), Some(format!("{key}x")));
        assert!(wrong.balance().await.is_err());
        assert!(wrong.stop(&session.id).await.is_err());
        let stopped = client.stop(&session.id).await.unwrap();
        assert_eq!(stopped.status, dci_gateway::api::SessionStatus::Stopped);
        assert!(client.stop(&session.id).await.is_err(), "a second stop is refused");
        net.shutdown().await;
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        (session.id, key, text)
    });
    let count = lines.lines().count();
    let short = session.parse::<dci_model::SessionId>().unwrap().short();
    println!("{count} log lines captured through deploy, view, stop and shutdown; the session appears as {short}");
    assert!(count > 20, "the capture must have seen the run: {lines}");
    assert!(lines.contains(&short), "the redacted tag names the session in the logs");
    for (what, secret) in
        [("session id", session.as_str()), ("session id's first 8 digits", &session[..8]), ("API key", key.as_str())]
    {
        let hits: Vec<&str> = lines.lines().filter(|l| l.contains(secret)).collect();
        assert!(hits.is_empty(), "the {what} is in {} log lines, e.g. {:?}", hits.len(), hits.first());
    }
}
