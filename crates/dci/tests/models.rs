//! Model-as-a-service end to end (R-SV2): start `dci devnet`, run
//! `dci deploy model all-minilm-l6-v2`, then call the endpoint it returns with
//! the official `openai` Python package, unchanged, its `base_url` pointed at
//! the gateway. The embeddings must equal the container's own; the gateway
//! must meter the tokens, refuse a wrong key, and bill the tokens at stop.
//!
//! Needs python3 with pip: the test installs a pinned `openai` (and its
//! dependencies) once under the model store, as the encoder tests install
//! their reference packages.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Devnet, cli, cli_json, free_port};
use dci_gateway::api::SessionInfo;

/// The OpenAI client the test uses, pinned so runs repeat.
const OPENAI: &str = "openai==3.54.0";

const MODEL: &str = "all-minilm-l6-v2";

/// What the Python client does: embed two sentences through the gateway,
/// then try a wrong key. Prints one JSON object.
const CLIENT: &str = r#"
import json, sys
import openai
base_url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
models = [m.id for m in client.models.list()]
r = client.embeddings.create(model="all-minilm-l6-v2", input=[
    "A GPU cloud rents idle graphics cards.",
    "Idle GPUs are rented out in a cloud.",
])
wrong = None
try:
    openai.OpenAI(base_url=base_url, api_key="not-a-key", max_retries=0).embeddings.create(
        model="all-minilm-l6-v2", input=["x"])
except openai.AuthenticationError as e:
    wrong = e.status_code
print(json.dumps({
    "version": openai.__version__,
    "models": models,
    "embeddings": [d.embedding for d in r.data],
    "prompt_tokens": r.usage.prompt_tokens,
    "wrong_key_status": wrong,
}))
"#;

#[test]
fn deploy_model_and_embed_with_the_official_openai_client() {
    let site = openai_python().expect("install the openai package");
    // Fetch the weights first: a container's runtime gives a service 20 s to
    // start, less than a first download may take.
    let entry = dci_models::Catalogue::builtin().get(MODEL).unwrap().clone();
    dci_models::Store::open_default().unwrap().ensure(&entry).expect("fetch the model into the store");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let _net = Devnet::start(dir, port, 2);
    let api = format!("http://127.0.0.1:{port}");

    // One step: match a container with the model's memory, start it, get the endpoint.
    let session: SessionInfo = cli_json(dir, &["deploy", "model", MODEL]);
    assert_eq!(session.service, MODEL);
    let path = session.openai_path.clone().expect("a model session has an OpenAI path");
    assert_eq!(path, format!("/openai/{}/v1", session.id));
    let base_url = format!("{api}{path}");
    let (ok, out, err) = cli(dir, &["deploy", "model", MODEL]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("openai     {api}/openai/")), "{out}");

    // The official client, unchanged, through the gateway.
    let key = common::api_key(dir);
    let out = Command::new("python3")
        .args(["-c", CLIENT, &base_url, &key])
        .env("PYTHONPATH", &site)
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(out.status.success(), "the openai client failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the client printed JSON");
    assert_eq!(got["version"], "3.54.0");
    assert_eq!(got["models"], serde_json::json!([MODEL]));
    assert_eq!(got["wrong_key_status"], 401, "{got}");
    let through_gateway: Vec<Vec<f64>> = serde_json::from_value(got["embeddings"].clone()).unwrap();
    assert_eq!(through_gateway.len(), 2);
    for e in &through_gateway {
        assert_eq!(e.len(), 384);
    }

    // The same texts sent straight to the container's model server.
    let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let direct: serde_json::Value = http
        .post(format!("{}/v1/embeddings", session.endpoint))
        .json(&serde_json::json!({
            "model": MODEL,
            "input": ["A GPU cloud rents idle graphics cards.", "Idle GPUs are rented out in a cloud."],
        }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for (i, e) in through_gateway.iter().enumerate() {
        let d: Vec<f64> = serde_json::from_value(direct["data"][i]["embedding"].clone()).unwrap();
        let cos = cosine(e, &d);
        assert!(cos > 0.9999, "input {i}: cosine {cos} between the gateway's and the container's answer");
    }
    assert!(cosine(&through_gateway[0], &through_gateway[1]) > 0.5, "paraphrases should be close");
    let prompt_tokens = got["prompt_tokens"].as_u64().unwrap();
    assert_eq!(prompt_tokens, direct["usage"]["prompt_tokens"].as_u64().unwrap());

    // A wrong key and a missing key get 401 from the gateway itself.
    let body = serde_json::json!({ "model": MODEL, "input": ["x"] });
    let wrong = http.post(format!("{base_url}/embeddings")).bearer_auth("nope").json(&body).send().unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let missing = http.post(format!("{base_url}/embeddings")).json(&body).send().unwrap();
    assert_eq!(missing.status().as_u16(), 401);

    // Metering: two relayed requests (models, embeddings); the failed ones do not count.
    let sessions: Vec<SessionInfo> = cli_json(dir, &["sessions"]);
    let s = sessions.iter().find(|s| s.id == session.id).unwrap();
    assert_eq!(s.requests, 2, "{s:?}");
    assert_eq!(s.tokens, prompt_tokens, "{s:?}");
    assert_eq!(s.token_price_ath_per_1k.as_deref(), Some("0.0001"));

    // Stop: the seconds and the tokens are settled together.
    let stopped: SessionInfo = cli_json(dir, &["stop", &session.id]);
    let expected = dci_node::gateway::token_charge(prompt_tokens, dci_node::gateway::PRICE_PER_1K_TOKENS);
    assert!(!expected.is_zero());
    assert_eq!(stopped.token_charged_ath.as_deref(), Some(dci_gateway::api::ath(expected).as_str()), "{stopped:?}");
    let after = http.post(format!("{base_url}/embeddings")).bearer_auth(&key).json(&body).send().unwrap();
    assert_eq!(after.status().as_u16(), 409, "a stopped session relays nothing");
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

/// Installs [`OPENAI`] with pip once, under the model store
/// (`<store>/.openai-python/<pin>`, atomically), and returns that folder.
fn openai_python() -> anyhow::Result<PathBuf> {
    let store = dci_models::Store::open_default()?;
    let root = store.dir().join(".openai-python");
    let target = root.join(OPENAI.replace("==", "-"));
    if target.join(".complete").exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(&root)?;
    let staging = root.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:", "--target"])
        .arg(&staging)
        .arg(OPENAI)
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(out.status.success(), "pip install {OPENAI} failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(staging.join(".complete"), "")?;
    if std::fs::rename(&staging, &target).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        anyhow::ensure!(target.join(".complete").exists(), "could not install {OPENAI} into {}", target.display());
    }
    Ok(target)
}
