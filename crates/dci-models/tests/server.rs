//! The OpenAI-compatible server over real HTTP on loopback.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use dci_models::{BenchConfig, Meter, RequestUsage, ServeOptions, announce, bench, bench_local, router};
use serde_json::{Value, json};

/// Starts a server on 127.0.0.1:0 in this runtime and returns its base URL.
async fn start(options: ServeOptions) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(common::encoder(), options).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn post(base: &str, body: &str, key: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/embeddings"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap())
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[tokio::test]
async fn embeddings_in_openai_shape_equal_the_encoder_output() {
    let base = start(ServeOptions::default()).await;
    let inputs = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France."];
    let direct = common::encoder().encode(&inputs).unwrap();

    let (status, headers, body) =
        post(&base, &json!({"model": "all-MiniLM-L6-v2", "input": inputs}).to_string(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "all-minilm-l6-v2");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, d) in data.iter().enumerate() {
        assert_eq!((d["object"].as_str(), d["index"].as_u64()), (Some("embedding"), Some(i as u64)));
        assert_eq!(floats(&d["embedding"]), direct.vectors[i], "input {i}");
    }
    let tokens = direct.total_tokens();
    assert_eq!(body["usage"], json!({"prompt_tokens": tokens, "total_tokens": tokens}));
    assert_eq!(headers["x-dci-prompt-tokens"], tokens.to_string().as_str());
    assert_eq!(headers["x-dci-truncated-inputs"], "0");
    assert!(body.get("truncated_inputs").is_none());

    // A single string, and base64 (little-endian f32) decoding to the same floats.
    let (status, _, body) = post(
        &base,
        &json!({"model": "all-minilm-l6-v2", "input": inputs[1], "encoding_format": "base64", "dimensions": 384})
            .to_string(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(body["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(decoded, direct.vectors[1]);
}

#[tokio::test]
async fn bad_requests_get_openai_errors_with_clear_messages() {
    let base = start(ServeOptions { max_inputs: 4, ..ServeOptions::default() }).await;
    let m = "all-minilm-l6-v2";
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            json!({"model": "gpt-4", "input": "hi"}).to_string(),
            404,
            "model_not_found",
            "model: expected \"all-minilm-l6-v2\" (this server's model), found \"gpt-4\"",
        ),
        (json!({"input": "hi"}).to_string(), 400, "missing_model", "model: expected a model name"),
        (
            json!({"model": 7, "input": "hi"}).to_string(),
            400,
            "invalid_model",
            "model: expected a string, found a number",
        ),
        (
            json!({"model": m}).to_string(),
            400,
            "missing_input",
            "input: expected a string or an array of strings, found none",
        ),
        (
            json!({"model": m, "input": ""}).to_string(),
            400,
            "empty_input",
            "input: expected a non-empty string, found \"\"",
        ),
        (
            json!({"model": m, "input": []}).to_string(),
            400,
            "empty_input",
            "input: expected at least one string, found an empty array",
        ),
        (
            json!({"model": m, "input": ["a", ""]}).to_string(),
            400,
            "empty_input",
            "input[1]: expected a non-empty string",
        ),
        (
            json!({"model": m, "input": ["a", "b", "c", "d", "e"]}).to_string(),
            400,
            "too_many_inputs",
            "input: expected at most 4 strings per request, found 5",
        ),
        (
            json!({"model": m, "input": [1, 2, 3]}).to_string(),
            400,
            "unsupported_input",
            "token-id input is not supported",
        ),
        (
            json!({"model": m, "input": [[1, 2]]}).to_string(),
            400,
            "unsupported_input",
            "input[0]: expected a string, found an array",
        ),
        (json!({"model": m, "input": {"text": "a"}}).to_string(), 400, "invalid_input", "found an object"),
        (
            json!({"model": m, "input": "a", "encoding_format": "int8"}).to_string(),
            400,
            "invalid_encoding_format",
            "expected \"float\" or \"base64\"",
        ),
        (
            json!({"model": m, "input": "a", "dimensions": 128}).to_string(),
            400,
            "invalid_dimensions",
            "dimensions: expected 384",
        ),
        ("{not json".to_string(), 400, "invalid_json", "expected a JSON request body, found invalid JSON"),
        ("[1]".to_string(), 400, "invalid_json", "expected a JSON object, found an array"),
    ];
    for (body, status, code, message) in cases {
        let (got, _, resp) = post(&base, &body, None).await;
        assert_eq!(got, status, "{body}: {resp}");
        assert_eq!(resp["error"]["code"], code, "{body}: {resp}");
        assert_eq!(resp["error"]["type"], "invalid_request_error", "{body}");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(message), "{body}: expected {message:?} in {msg:?}");
    }
    let (status, text) = get(&base, "/v2/nothing").await;
    assert_eq!(status, 404);
    assert!(text.contains("unknown_url"), "{text}");
}

#[tokio::test]
async fn long_inputs_are_truncated_and_the_response_says_so() {
    let base = start(ServeOptions::default()).await;
    let long = "tokens ".repeat(600);
    let (status, headers, body) =
        post(&base, &json!({"model": "all-minilm-l6-v2", "input": ["short", long]}).to_string(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncated_inputs"], json!([1]));
    assert_eq!(headers["x-dci-truncated-inputs"], "1");
    assert_eq!(body["usage"]["prompt_tokens"], 3 + 256);
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_answer() {
    let base = start(ServeOptions::default()).await;
    let long = "words ".repeat(300);
    let requests: Vec<Vec<String>> = (0..6)
        .map(|r| {
            (0..=r % 3)
                .map(|i| if (r + i) % 4 == 0 { format!("{long} {r}") } else { format!("request {r} input {i}") })
                .collect()
        })
        .collect();
    let tasks: Vec<_> = requests
        .iter()
        .map(|input| {
            let (base, body) = (base.clone(), json!({"model": "all-minilm-l6-v2", "input": input}).to_string());
            tokio::spawn(async move { post(&base, &body, None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let enc = common::encoder();
    for (input, (status, _, body)) in requests.iter().zip(answers) {
        assert_eq!(status, 200, "{body}");
        let direct = enc.encode(input).unwrap();
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), input.len());
        for (i, d) in data.iter().enumerate() {
            let cos = common::cosine32(&floats(&d["embedding"]), &direct.vectors[i]);
            assert!(cos > 0.99999, "{input:?}[{i}]: cosine {cos}");
        }
        assert_eq!(body["usage"]["prompt_tokens"], direct.total_tokens());
        let truncated = body.get("truncated_inputs").cloned().unwrap_or(json!([]));
        assert_eq!(truncated, json!(direct.truncated), "{input:?}");
    }
}

#[tokio::test]
async fn an_api_key_guards_the_v1_routes() {
    let base = start(ServeOptions { api_key: Some("sk-test-123".into()), ..ServeOptions::default() }).await;
    let body = json!({"model": "all-minilm-l6-v2", "input": "hello"}).to_string();
    for (key, status, code) in [
        (None, 401, Some("missing_api_key")),
        (Some("sk-wrong"), 401, Some("invalid_api_key")),
        (Some("sk-test-123"), 200, None),
    ] {
        let (got, _, resp) = post(&base, &body, key).await;
        assert_eq!(got, status, "{key:?}: {resp}");
        assert_eq!(resp["error"]["code"].as_str(), code, "{key:?}");
    }
    let client = reqwest::Client::new();
    let resp = client.get(format!("{base}/v1/models")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client.get(format!("{base}/v1/models")).bearer_auth("sk-test-123").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(get(&base, "/health").await.0, 200, "health stays open for the agent's probe");
}

#[tokio::test]
async fn models_are_listed_and_described() {
    let base = start(ServeOptions::default()).await;
    let (status, text) = get(&base, "/v1/models").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "all-minilm-l6-v2");
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["dimensions"], 384);
    assert_eq!(v["data"][0]["max_input_tokens"], 256);
    for id in ["all-minilm-l6-v2", "sentence-transformers%2Fall-MiniLM-L6-v2"] {
        let (status, text) = get(&base, &format!("/v1/models/{id}")).await;
        assert_eq!(status, 200, "{id}: {text}");
    }
    let (status, text) = get(&base, "/v1/models/gpt-4").await;
    assert_eq!(status, 404);
    assert!(text.contains("model_not_found"));
}

struct Recorder(Mutex<Vec<RequestUsage>>);

impl Meter for Recorder {
    fn record(&self, usage: &RequestUsage) {
        self.0.lock().unwrap().push(usage.clone());
    }
}

#[tokio::test]
async fn every_successful_request_is_metered_and_counted() {
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let base = start(ServeOptions { meter: Some(recorder.clone()), ..ServeOptions::default() }).await;
    let sent = [vec!["one"], vec!["two words", "three words here"], vec![""]];
    for input in &sent {
        post(&base, &json!({"model": "all-minilm-l6-v2", "input": input}).to_string(), None).await;
    }
    let enc = common::encoder();
    let expect: Vec<RequestUsage> = sent[..2]
        .iter()
        .map(|input| RequestUsage {
            model: "all-minilm-l6-v2".into(),
            inputs: input.len() as u32,
            prompt_tokens: enc.encode(input).unwrap().total_tokens(),
            truncated_inputs: 0,
        })
        .collect();
    assert_eq!(*recorder.0.lock().unwrap(), expect, "the failed third request is not metered");

    let (status, text) = get(&base, "/metrics").await;
    assert_eq!(status, 200);
    let tokens: u64 = expect.iter().map(|u| u.prompt_tokens).sum();
    for line in [
        "dci_model_requests_total{model=\"all-minilm-l6-v2\"} 3".to_string(),
        "dci_model_request_errors_total{model=\"all-minilm-l6-v2\"} 1".to_string(),
        "dci_model_inputs_total{model=\"all-minilm-l6-v2\"} 3".to_string(),
        format!("dci_model_prompt_tokens_total{{model=\"all-minilm-l6-v2\"}} {tokens}"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
}

#[tokio::test]
async fn the_bench_measures_real_requests() {
    let config = BenchConfig { requests: 6, inputs_per_request: 3, concurrency: 2, warmup: 1 };
    let options = ServeOptions { workers: 2, api_key: Some("local".into()), ..ServeOptions::default() };
    let report = bench_local(common::encoder(), options, &config).await.unwrap();
    assert_eq!((report.ok_requests, report.errors, report.embeddings), (6, 0, 18), "{report:?}");
    assert_eq!(report.model, "all-minilm-l6-v2");
    assert!(
        report.prompt_tokens > 18 && report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms,
        "{report:?}"
    );
    let json = serde_json::to_value(&report).unwrap();
    for field in ["embeddings_per_s", "p50_ms", "p99_ms", "workload"] {
        assert!(json.get(field).is_some(), "{field}");
    }

    // Against a server with a key: the bench passes it; a wrong one fails the warm-up clearly.
    let base = start(ServeOptions { api_key: Some("k".into()), ..ServeOptions::default() }).await;
    let one = BenchConfig { requests: 1, inputs_per_request: 1, concurrency: 1, warmup: 0 };
    assert_eq!(bench(&base, "all-minilm-l6-v2", Some("k"), &one).await.unwrap().ok_requests, 1);
    let err = bench(&base, "all-minilm-l6-v2", Some("bad"), &one).await.unwrap_err().to_string();
    assert!(err.contains("401 Unauthorized: expected a valid API key"), "{err}");
    let zero = BenchConfig { concurrency: 0, ..one };
    assert_eq!(
        bench(&base, "m", None, &zero).await.unwrap_err().to_string(),
        "bench: concurrency: expected at least 1, found 0"
    );
}

#[test]
fn the_ready_line_names_the_bound_address() {
    let mut out = Vec::new();
    announce(&mut out, SocketAddr::from(([127, 0, 0, 1], 40123))).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "listening on http://127.0.0.1:40123\n");
}
