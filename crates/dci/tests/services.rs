//! `dci service <model>` runs a model of the catalogue as a container would
//! start it: it fetches the files into the model store if needed, prints
//! `listening on <url>`, and answers OpenAI-style embedding requests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const DCI: &str = env!("CARGO_BIN_EXE_dci");

#[test]
fn a_catalogue_model_serves_embeddings() {
    let mut child = Command::new(DCI)
        .args(["service", "all-minilm-l6-v2", "--listen", "127.0.0.1:0"])
        .env("DCI_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning dci service");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the service exited before listening").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.trim().to_owned();
        }
    };
    let http = reqwest::blocking::Client::new();
    let models: serde_json::Value = http.get(format!("{url}/v1/models")).send().unwrap().json().unwrap();
    assert_eq!(models["data"][0]["id"], "all-minilm-l6-v2", "{models}");
    let body = serde_json::json!({
        "model": "all-minilm-l6-v2",
        "input": ["A GPU cloud rents idle graphics cards.", "Idle GPUs are rented out in a cloud.", "The cat sat on the mat."],
    });
    let res = http.post(format!("{url}/v1/embeddings")).json(&body).send().unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let v: serde_json::Value = res.json().unwrap();
    let vectors: Vec<Vec<f64>> = (0..3)
        .map(|i| v["data"][i]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    for e in &vectors {
        assert_eq!(e.len(), 384);
        assert!((dot(e, e) - 1.0).abs() < 1e-4, "not unit length");
    }
    // The two sentences that say the same thing are closer than the third.
    assert!(dot(&vectors[0], &vectors[1]) > dot(&vectors[0], &vectors[2]) + 0.2, "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().is_some_and(|t| t > 10), "{v}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A service started by a container's runtime ends with it: when its
/// standard input closes (the agent died, even by SIGKILL), it exits.
#[test]
fn a_service_exits_when_its_starter_goes_away() {
    let mut child = Command::new(DCI)
        .args(["service", "render", "--listen", "127.0.0.1:0", "--exit-with-stdin"])
        .env("DCI_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning dci service");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("the service exited before listening").unwrap();
    assert!(line.starts_with("listening on "), "{line}");
    assert!(child.try_wait().unwrap().is_none(), "the service stopped while its input was open");
    drop(child.stdin.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the service outlived its closed input");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// `dci bench services --quick --json` runs both workloads and reports every
/// headline figure as a finite number (no timing is asserted).
#[test]
fn bench_services_reports_its_figures() {
    let out = Command::new(DCI)
        .args(["bench", "services", "--quick", "--json"])
        .env("DCI_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .expect("running dci bench services");
    assert!(out.status.success(), "{:?}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for field in [
        "embeddings_per_s",
        "embed_p50_ms",
        "embed_p99_ms",
        "render_fps",
        "render_input_to_frame_p50_ms",
        "render_input_to_frame_p99_ms",
    ] {
        let x = v[field].as_f64();
        assert!(x.is_some_and(|x| x.is_finite() && x > 0.0), "{field}: {:?} in {v}", v[field]);
    }
    assert!(v["workload"].as_str().is_some_and(|w| w.contains("render")), "{v}");
    assert_eq!(v["model"]["errors"], 0, "{v}");
    assert_eq!(v["render"]["inputs_answered"], v["render"]["inputs"], "{v}");
}
