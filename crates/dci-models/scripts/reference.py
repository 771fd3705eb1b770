#!/usr/bin/env python3
"""Reference embeddings for dci-models' correctness test (test-only).

Computes sentence-transformers style embeddings of BERT models (all-MiniLM-L6-v2)
independently of the Rust code: the forward pass is written here in numpy, in
float64, straight from the safetensors weights; only tokenization uses the Python
`tokenizers` package on the same tokenizer.json.

Usage: reference.py MODEL_DIR MAX_TOKENS < sentences.json > out.json
  stdin:  a JSON array of strings
  stdout: {"ids": [[int, ...], ...], "embeddings": [[float, ...], ...]}
Needs numpy, safetensors and tokenizers on PYTHONPATH (no torch).
"""

import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

ERF = np.vectorize(math.erf, otypes=[np.float64])


def layer_norm(x, w, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)))


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def embed(weights, config, ids):
    """One sentence, no padding: token ids -> normalised mean-pooled vector."""
    w = lambda name: weights[name].astype(np.float64)
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    dh = hidden // heads
    t = len(ids)
    x = w("embeddings.word_embeddings.weight")[ids]
    x = x + w("embeddings.position_embeddings.weight")[:t]
    x = x + w("embeddings.token_type_embeddings.weight")[np.zeros(t, dtype=np.int64)]
    x = layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda h, name: h @ w(p + name + ".weight").T + w(p + name + ".bias")
        q = lin(x, "attention.self.query").reshape(t, heads, dh).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(t, heads, dh).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(t, heads, dh).transpose(1, 0, 2)
        probs = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(dh))
        ctx = (probs @ v).transpose(1, 0, 2).reshape(t, hidden)
        x = layer_norm(
            lin(ctx, "attention.output.dense") + x,
            w(p + "attention.output.LayerNorm.weight"),
            w(p + "attention.output.LayerNorm.bias"),
            eps,
        )
        h = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(
            lin(h, "output.dense") + x, w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias"), eps
        )
    pooled = x.mean(axis=0)
    return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    model_dir, max_tokens = sys.argv[1], int(sys.argv[2])
    sentences = json.load(sys.stdin)
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    weights = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in weights.items()}
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    ids = [tok.encode(s).ids for s in sentences]
    out = {"ids": ids, "embeddings": [embed(weights, config, i).tolist() for i in ids]}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
