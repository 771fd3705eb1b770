//! `dci bench services` for models: embeddings/s and request latency, measured
//! with real HTTP requests against a model server (over loopback for
//! [`bench_local`]).
//!
//! Workload: a search or RAG service embedding short user texts in small
//! batches — `requests` POSTs of `inputs_per_request` sentences (8 by
//! default, 6–25 tokens each, rotating through a fixed set so runs repeat),
//! `concurrency` clients at once, after a few unrecorded warm-up requests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::encoder::Encoder;
use crate::server::{ServeOptions, router};

/// The shape of a benchmark run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BenchConfig {
    /// Measured requests.
    pub requests: usize,
    /// Sentences per request.
    pub inputs_per_request: usize,
    /// Clients sending at once.
    pub concurrency: usize,
    /// Unmeasured requests sent first.
    pub warmup: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig { requests: 200, inputs_per_request: 8, concurrency: 2, warmup: 4 }
    }
}

/// What a run measured (`--json` output of `dci bench services`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelBench {
    /// What the workload mimics.
    pub workload: String,
    /// The model's catalogue name as the server reports it.
    pub model: String,
    /// The run's shape.
    pub config: BenchConfig,
    /// Requests answered with 200 and well-formed embeddings.
    pub ok_requests: usize,
    /// Requests that failed (HTTP error, bad shape).
    pub errors: usize,
    /// Embeddings returned by successful requests.
    pub embeddings: usize,
    /// `usage.prompt_tokens` summed over successful requests.
    pub prompt_tokens: u64,
    /// Wall time of the measured part.
    pub elapsed_s: f64,
    /// Embeddings per second of wall time.
    pub embeddings_per_s: f64,
    /// Tokens per second of wall time.
    pub tokens_per_s: f64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Median request latency.
    pub p50_ms: f64,
    /// 99th percentile request latency.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// Why a benchmark could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The configuration cannot describe a run.
    #[error("bench: {field}: expected at least 1, found 0")]
    Config {
        /// The zero field.
        field: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("bench: http client: {0}")]
    Client(String),
    /// The local server could not be started.
    #[error("bench: local server: {0}")]
    Server(std::io::Error),
    /// The warm-up requests failed, so nothing would be measured.
    #[error("bench: warm-up request to {url}: {message}")]
    Warmup {
        /// The endpoint.
        url: String,
        /// What went wrong.
        message: String,
    },
}

const SENTENCES: [&str; 16] = [
    "A decentralized GPU cloud matches each request to the best available host.",
    "The quick brown fox jumps over the lazy dog.",
    "Checkers verify that every container really delivers the compute it claims.",
    "How do I rent an H100 for two hours at the lowest price?",
    "Embeddings map sentences to vectors so that similar meanings lie close together.",
    "Rendering frames in the cloud lets a game run on a thin client.",
    "Payments are settled per epoch from signed usage receipts.",
    "What is the latency from São Paulo to the nearest container?",
    "Model-as-a-service starts an open model and returns an endpoint in one step.",
    "Idle mining rigs can earn rewards by serving inference workloads.",
    "The indexer explains which criterion eliminated how many containers.",
    "Tokenizers split text into word pieces before the transformer reads it.",
    "Stake is slashed only with a report signed by a quorum of the committee.",
    "Paris is the capital of France.",
    "Vector search finds the documents nearest to a query embedding.",
    "A heartbeat every few seconds tells the network a container is alive.",
];

/// Benchmarks the server at `base_url` (e.g. `http://127.0.0.1:8080`) serving `model`.
pub async fn bench(
    base_url: &str,
    model: &str,
    api_key: Option<&str>,
    config: &BenchConfig,
) -> Result<ModelBench, BenchError> {
    for (field, v) in [
        ("requests", config.requests),
        ("inputs_per_request", config.inputs_per_request),
        ("concurrency", config.concurrency),
    ] {
        if v == 0 {
            return Err(BenchError::Config { field });
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| BenchError::Client(e.to_string()))?;
    let target = Arc::new(Target {
        client,
        url: format!("{}/v1/embeddings", base_url.trim_end_matches('/')),
        model: model.to_string(),
        api_key: api_key.map(str::to_string),
        inputs: config.inputs_per_request,
    });
    let mut served_model = model.to_string();
    for i in 0..config.warmup.max(1) {
        let out = target.send(i).await.map_err(|message| BenchError::Warmup { url: target.url.clone(), message })?;
        served_model = out.model;
    }

    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..config.concurrency)
        .map(|_| {
            let (target, next, total) = (Arc::clone(&target), Arc::clone(&next), config.requests);
            tokio::spawn(async move {
                let mut results = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let sent = Instant::now();
                    let out = target.send(i).await;
                    results.push((sent.elapsed(), out));
                }
                results
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(config.requests);
    let (mut ok, mut errors, mut embeddings, mut tokens, mut first_error) = (0, 0, 0, 0u64, None);
    for w in workers {
        let results = w.await.unwrap_or_default();
        for (latency, out) in results {
            match out {
                Ok(o) => {
                    ok += 1;
                    embeddings += o.embeddings;
                    tokens += o.prompt_tokens;
                    latencies.push(latency);
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    latencies.sort();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Ok(ModelBench {
        workload: format!(
            "search/RAG query embedding: {} requests of {} short sentences, {} concurrent clients, over HTTP",
            config.requests, config.inputs_per_request, config.concurrency
        ),
        model: served_model,
        config: config.clone(),
        ok_requests: ok,
        errors,
        embeddings,
        prompt_tokens: tokens,
        elapsed_s: elapsed,
        embeddings_per_s: embeddings as f64 / elapsed,
        tokens_per_s: tokens as f64 / elapsed,
        requests_per_s: ok as f64 / elapsed,
        p50_ms: ms(percentile(&latencies, 50)),
        p99_ms: ms(percentile(&latencies, 99)),
        max_ms: ms(latencies.last()),
        first_error,
    })
}

/// Starts a server for `encoder` with `options` on an ephemeral loopback port in
/// this process, benchmarks it with [`bench`], and stops it.
pub async fn bench_local(
    encoder: Arc<Encoder>,
    options: ServeOptions,
    config: &BenchConfig,
) -> Result<ModelBench, BenchError> {
    let model = encoder.entry().name.as_str().to_string();
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.map_err(BenchError::Server)?;
    let addr = listener.local_addr().map_err(BenchError::Server)?;
    let key = options.api_key.clone();
    let app = router(encoder, options).map_err(BenchError::Server)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let result = bench(&format!("http://{addr}"), &model, key.as_deref(), config).await;
    let _ = stop.send(());
    let _ = server.await;
    result
}

/// Nearest-rank percentile of sorted values.
fn percentile<T>(sorted: &[T], p: usize) -> Option<&T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted.get(rank - 1)
}

struct Target {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    inputs: usize,
}

struct Outcome {
    model: String,
    embeddings: usize,
    prompt_tokens: u64,
}

impl Target {
    /// Sends request number `i` and checks the answer's shape.
    async fn send(&self, i: usize) -> Result<Outcome, String> {
        let input: Vec<&str> = (0..self.inputs).map(|k| SENTENCES[(i * self.inputs + k) % SENTENCES.len()]).collect();
        let mut req = self.client.post(&self.url).json(&json!({ "model": self.model, "input": input }));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| format!("{status}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{status}: {}", body["error"]["message"].as_str().unwrap_or("no message")));
        }
        let data = body["data"].as_array().ok_or("response: expected data[], found none")?;
        let dims = data.first().and_then(|d| d["embedding"].as_array()).map_or(0, Vec::len);
        if data.len() != self.inputs
            || dims == 0
            || data.iter().any(|d| d["embedding"].as_array().map(Vec::len) != Some(dims))
        {
            return Err(format!("response: expected {} embeddings of equal length, found {}", self.inputs, data.len()));
        }
        Ok(Outcome {
            model: body["model"].as_str().unwrap_or_default().to_string(),
            embeddings: data.len(),
            prompt_tokens: body["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        for (p, expect) in [(50, 50), (99, 99), (100, 100), (1, 1), (0, 1)] {
            assert_eq!(percentile(&v, p), Some(&expect), "p{p}");
        }
        assert_eq!(percentile(&[7u32], 99), Some(&7));
        assert_eq!(percentile::<u32>(&[], 50), None);
    }
}
