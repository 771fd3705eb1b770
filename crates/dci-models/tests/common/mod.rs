//! Test helpers: the real model through the store, and the Python reference.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, bail};
use dci_models::{Catalogue, DeviceChoice, Encoder, ModelEntry, Store};

pub const MODEL: &str = "all-minilm-l6-v2";

/// The test-only Python packages the reference script needs (small wheels, no torch).
const REFERENCE_PACKAGES: [&str; 3] = ["numpy==2.4.6", "safetensors==0.8.0", "tokenizers==0.23.3"];

/// The default store ($DCI_MODEL_STORE or ~/.cache/dci/models): weights are fetched once and reused.
pub fn store() -> Store {
    Store::open_default().expect("open the default model store")
}

pub fn entry() -> ModelEntry {
    Catalogue::builtin().get(MODEL).expect("built-in model").clone()
}

/// The model's folder, fetched through `Store::ensure` if needed.
pub fn model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| store().ensure(&entry()).expect("fetch all-MiniLM-L6-v2 into the model store")).clone()
}

/// The model loaded once per test binary.
pub fn encoder() -> Arc<Encoder> {
    static ENCODER: OnceLock<Arc<Encoder>> = OnceLock::new();
    ENCODER
        .get_or_init(|| Arc::new(Encoder::load(&model_dir(), &entry(), DeviceChoice::Cpu).expect("load the model")))
        .clone()
}

/// What `scripts/reference.py` computed.
pub struct Reference {
    pub ids: Vec<Vec<u32>>,
    pub embeddings: Vec<Vec<f64>>,
}

/// Runs the independent numpy implementation on `sentences`.
pub fn reference(sentences: &[&str]) -> Result<Reference> {
    let deps = reference_python_deps()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(model_dir())
        .arg(entry().max_tokens.to_string())
        .env("PYTHONPATH", &deps)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run python3 (the reference needs python3)")?;
    child.stdin.take().context("stdin")?.write_all(serde_json::to_string(sentences)?.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("reference.py failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("reference.py output")?;
    Ok(Reference {
        ids: serde_json::from_value(v["ids"].clone())?,
        embeddings: serde_json::from_value(v["embeddings"].clone())?,
    })
}

/// Installs the reference's Python packages once under the store
/// (`<store>/.reference-python/<pins>`), atomically, and returns that folder.
fn reference_python_deps() -> Result<PathBuf> {
    // One installer per test process; other processes are handled by the rename below.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = store().dir().join(".reference-python");
    let target = root.join(REFERENCE_PACKAGES.join("_").replace("==", "-"));
    if target.join(".complete").exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(&root)?;
    let staging = root.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:"])
        .arg("--target")
        .arg(&staging)
        .args(REFERENCE_PACKAGES)
        .stdin(Stdio::null())
        .output()
        .context("run python3 -m pip (the reference needs python3 with pip)")?;
    if !out.status.success() {
        bail!("pip install {:?} failed: {}", REFERENCE_PACKAGES, String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(staging.join(".complete"), "")?;
    if std::fs::rename(&staging, &target).is_err() {
        // Another test process installed it first.
        let _ = std::fs::remove_dir_all(&staging);
        if !target.join(".complete").exists() {
            bail!("could not install the reference packages into {}", target.display());
        }
    }
    Ok(target)
}

pub fn cosine(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "vector lengths");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn cosine32(a: &[f32], b: &[f32]) -> f64 {
    cosine(a, &b.iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
}
