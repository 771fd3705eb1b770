//! A BERT sentence encoder on candle: tokens → 6 (or N) transformer layers →
//! pooled, normalised sentence vectors, as sentence-transformers computes them.
//!
//! The forward pass is written here against `candle-nn` layers (rather than
//! pulling `candle-transformers`, whose hundreds of models triple the build
//! time) and follows Hugging Face's `BertModel` in eval mode: word + position +
//! token-type embeddings, LayerNorm, then per layer multi-head self-attention
//! with an additive padding mask, residual + LayerNorm, a GELU (erf) MLP,
//! residual + LayerNorm.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::catalogue::{Family, ModelEntry, Pooling};

/// Inputs are run through the network this many at a time, sorted by length so
/// that little padding is computed.
const BATCH: usize = 32;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The requested compute device does not exist in this build or on this host.
    #[error("device {device}: expected an available device (cpu), found it unavailable: {message}")]
    Device {
        /// The device asked for.
        device: DeviceChoice,
        /// Why it is unavailable.
        message: String,
    },
    /// A device string did not parse.
    #[error("device: expected cpu, cuda or cuda:<ordinal>, found {0:?}")]
    DeviceName(String),
    /// A model file could not be read or parsed.
    #[error("model file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `config.json` and the catalogue entry disagree, or describe something unsupported.
    #[error("model {model}: {field}: expected {expected}, found {found}")]
    Config {
        /// The model.
        model: String,
        /// The field.
        field: &'static str,
        /// What is supported / what the catalogue says.
        expected: String,
        /// What the model files say.
        found: String,
    },
    /// The tokenizer rejected an input.
    #[error("tokenize: {0}")]
    Tokenize(String),
    /// The tensor computation failed.
    #[error("inference: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Where the network runs. Only the CPU exists in this build; asking for a GPU
/// fails with [`EncoderError::Device`] instead of silently using the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The host CPU (all cores, through candle's thread pool).
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal.
    Cuda(usize),
}

impl DeviceChoice {
    fn open(self) -> Result<Device, EncoderError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(i) => {
                Device::new_cuda(i).map_err(|e| EncoderError::Device { device: self, message: e.to_string() })
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = EncoderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| EncoderError::DeviceName(s.to_string())),
        }
    }
}

/// The result of encoding a batch of inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// One vector of `dims` floats per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model read per input (special tokens included, after truncation).
    pub tokens: Vec<u32>,
    /// Indices of the inputs that were cut to `max_tokens`.
    pub truncated: Vec<usize>,
}

impl Embedded {
    /// Total tokens over all inputs (what `usage.prompt_tokens` reports).
    pub fn total_tokens(&self) -> u64 {
        self.tokens.iter().map(|&t| u64::from(t)).sum()
    }
}

/// The subset of Hugging Face's `config.json` a BERT encoder needs.
#[derive(Debug, Clone, Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: String,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    #[serde(default = "absolute")]
    position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".to_string()
}

struct Attention {
    /// Query, key and value projections fused into one (hidden → 3·hidden) matmul.
    qkv: Linear,
    output: Linear,
    norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(c: &BertConfig, vb: VarBuilder<'_>) -> candle_core::Result<Attention> {
        let h = c.hidden_size;
        let s = vb.pp("self");
        let parts = ["query", "key", "value"].map(|p| candle_nn::linear(h, h, s.pp(p)));
        let [q, k, v] = parts;
        let (q, k, v) = (q?, k?, v?);
        let weight = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
        let bias =
            [q.bias(), k.bias(), v.bias()].map(|b| b.cloned().ok_or_else(|| candle_core::Error::Msg("bias".into())));
        let [qb, kb, vb_] = bias;
        let bias = Tensor::cat(&[qb?, kb?, vb_?], 0)?;
        Ok(Attention {
            qkv: Linear::new(weight, Some(bias)),
            output: candle_nn::linear(h, h, vb.pp("output").pp("dense"))?,
            norm: candle_nn::layer_norm(h, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: c.num_attention_heads,
            head_dim: h / c.num_attention_heads,
        })
    }

    /// `x`: (batch, seq, hidden); `mask`: additive, (batch, 1, 1, seq).
    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, hidden) = x.dims3()?;
        // (b, t, 3·hidden) → (3, b, heads, t, head_dim) in one copy.
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, t, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, hidden))?;
        self.norm.forward(&(self.output.forward(&context)? + x)?)
    }
}

struct Layer {
    attention: Attention,
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
}

impl Layer {
    fn load(c: &BertConfig, vb: VarBuilder<'_>) -> candle_core::Result<Layer> {
        Ok(Layer {
            attention: Attention::load(c, vb.pp("attention"))?,
            intermediate: candle_nn::linear(c.hidden_size, c.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: candle_nn::linear(c.intermediate_size, c.hidden_size, vb.pp("output").pp("dense"))?,
            norm: candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let attended = self.attention.forward(x, mask)?;
        let inner = self.intermediate.forward(&attended)?.gelu_erf()?;
        self.norm.forward(&(self.output.forward(&inner)? + attended)?)
    }
}

struct Bert {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    fn load(c: &BertConfig, vb: VarBuilder<'_>) -> candle_core::Result<Bert> {
        // Checkpoints saved from `BertModel` have no prefix; from `BertFor…` they have `bert.`.
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let e = vb.pp("embeddings");
        Ok(Bert {
            words: candle_nn::embedding(c.vocab_size, c.hidden_size, e.pp("word_embeddings"))?,
            positions: candle_nn::embedding(c.max_position_embeddings, c.hidden_size, e.pp("position_embeddings"))?,
            token_types: candle_nn::embedding(c.type_vocab_size, c.hidden_size, e.pp("token_type_embeddings"))?,
            norm: candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, e.pp("LayerNorm"))?,
            layers: (0..c.num_hidden_layers)
                .map(|i| Layer::load(c, vb.pp("encoder").pp("layer").pp(i)))
                .collect::<candle_core::Result<_>>()?,
        })
    }

    /// `ids`, `mask`: (batch, seq) u32 → hidden states (batch, seq, hidden).
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let positions = Tensor::arange(0u32, t as u32, ids.device())?.unsqueeze(0)?.broadcast_as((b, t))?;
        let types = ids.zeros_like()?;
        let x = (self.words.forward(ids)? + self.positions.forward(&positions.contiguous()?)?)?;
        let mut x = self.norm.forward(&(x + self.token_types.forward(&types)?)?)?;
        // 0 where attended, a large negative number on padding (as Hugging Face does).
        let additive = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?;
        for layer in &self.layers {
            x = layer.forward(&x, &additive)?;
        }
        Ok(x)
    }
}

/// A loaded sentence encoder: tokenizer + network + pooling of one catalogue entry.
pub struct Encoder {
    entry: ModelEntry,
    tokenizer: Tokenizer,
    bert: Bert,
    device: Device,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder").field("model", &self.entry.name.as_str()).field("device", &self.device).finish()
    }
}

impl Encoder {
    /// Loads `entry` from `model_dir` (a folder [`crate::Store::ensure`] returned) onto `device`.
    pub fn load(model_dir: &Path, entry: &ModelEntry, device: DeviceChoice) -> Result<Encoder, EncoderError> {
        let model = entry.name.as_str();
        let Family::Bert = entry.family;
        let device = device.open()?;
        let config_path = model_dir.join("config.json");
        let config: BertConfig = read(&config_path)
            .and_then(|text| serde_json::from_slice(&text).map_err(|e| e.to_string()))
            .map_err(|message| EncoderError::File { path: config_path.clone(), message })?;
        let mismatch = |field, expected: String, found: String| EncoderError::Config {
            model: model.to_string(),
            field,
            expected,
            found,
        };
        if config.hidden_size != entry.dims as usize {
            return Err(mismatch(
                "hidden_size",
                format!("{} (catalogue dims)", entry.dims),
                config.hidden_size.to_string(),
            ));
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(mismatch(
                "num_attention_heads",
                format!("a divisor of hidden_size {}", config.hidden_size),
                config.num_attention_heads.to_string(),
            ));
        }
        if entry.max_tokens as usize > config.max_position_embeddings {
            return Err(mismatch(
                "max_position_embeddings",
                format!("at least {} (catalogue max_tokens)", entry.max_tokens),
                config.max_position_embeddings.to_string(),
            ));
        }
        if config.hidden_act != "gelu" {
            return Err(mismatch("hidden_act", "gelu".to_string(), format!("{:?}", config.hidden_act)));
        }
        if config.position_embedding_type != "absolute" {
            return Err(mismatch(
                "position_embedding_type",
                "absolute".to_string(),
                format!("{:?}", config.position_embedding_type),
            ));
        }

        let weights_path = model_dir.join("model.safetensors");
        let weights =
            read(&weights_path).map_err(|message| EncoderError::File { path: weights_path.clone(), message })?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| EncoderError::File { path: weights_path.clone(), message: e.to_string() })?;
        let bert = Bert::load(&config, vb)
            .map_err(|e| EncoderError::File { path: weights_path.clone(), message: e.to_string() })?;

        let tokenizer_path = model_dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| EncoderError::File { path: tokenizer_path.clone(), message: e.to_string() })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: entry.max_tokens as usize,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| EncoderError::File { path: tokenizer_path.clone(), message: e.to_string() })?;
        Ok(Encoder { entry: entry.clone(), tokenizer, bert, device })
    }

    /// The catalogue entry this encoder serves.
    pub fn entry(&self) -> &ModelEntry {
        &self.entry
    }

    /// The token ids the model reads for `input` (with `[CLS]`/`[SEP]`, truncated).
    pub fn token_ids(&self, input: &str) -> Result<Vec<u32>, EncoderError> {
        let enc = self.tokenizer.encode(input, true).map_err(|e| EncoderError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Embeds every input. Blocking and CPU-heavy: call it from a blocking thread.
    pub fn encode<S: AsRef<str>>(&self, inputs: &[S]) -> Result<Embedded, EncoderError> {
        let texts: Vec<&str> = inputs.iter().map(AsRef::as_ref).collect();
        let encodings = self.tokenizer.encode_batch(texts, true).map_err(|e| EncoderError::Tokenize(e.to_string()))?;
        let tokens: Vec<u32> = encodings.iter().map(|e| e.get_ids().len() as u32).collect();
        let truncated =
            encodings.iter().enumerate().filter(|(_, e)| !e.get_overflowing().is_empty()).map(|(i, _)| i).collect();

        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| tokens[i]);
        let mut vectors = vec![Vec::new(); encodings.len()];
        for chunk in order.chunks(BATCH) {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| encodings[i].get_ids()).collect();
            for (&i, v) in chunk.iter().zip(self.run(&ids)?) {
                vectors[i] = v;
            }
        }
        Ok(Embedded { vectors, tokens, truncated })
    }

    /// Runs one padded batch and pools it.
    fn run(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let longest = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for row in batch {
            ids.extend_from_slice(row);
            ids.resize(ids.len() + longest - row.len(), 0);
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.resize(mask.len() + longest - row.len(), 0);
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let hidden = self.bert.forward(&ids, &mask)?;
        let pooled = match self.entry.pooling {
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        };
        let pooled = if self.entry.normalize {
            let norms = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            pooled.broadcast_div(&norms)?
        } else {
            pooled
        };
        Ok(pooled.to_vec2::<f32>()?)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| e.to_string())
}
