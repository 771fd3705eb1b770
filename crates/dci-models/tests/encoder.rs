//! The encoder against an independent numpy implementation, and its invariants.

mod common;

use common::{cosine, cosine32, encoder};
use dci_models::{DeviceChoice, Encoder, EncoderError};

/// Sentences of different lengths, scripts and punctuation.
const SENTENCES: [&str; 8] = [
    "The quick brown fox jumps over the lazy dog.",
    "A decentralized GPU cloud matches each request to the best available host.",
    "Hello!",
    "How do I rent an H100 for two hours at the lowest price?",
    "Café, naïve façade — accents are stripped by the BERT normalizer.",
    "東京 is the capital of Japan; 北京 is the capital of China.",
    "Checkers verify containers with Freivalds' algorithm over random vectors, committing to result rows first.",
    "x",
];

#[test]
fn embeddings_match_the_numpy_reference() {
    let reference = common::reference(&SENTENCES).expect("reference embeddings");
    let enc = encoder();
    let got = enc.encode(&SENTENCES).expect("encode");
    let mut worst = f64::INFINITY;
    for (i, s) in SENTENCES.iter().enumerate() {
        assert_eq!(enc.token_ids(s).unwrap(), reference.ids[i], "token ids of {s:?}");
        assert_eq!(got.tokens[i] as usize, reference.ids[i].len(), "token count of {s:?}");
        let cos = cosine(&got.vectors[i], &reference.embeddings[i]);
        assert!(cos >= 0.999, "cosine {cos} < 0.999 for {s:?}");
        worst = worst.min(cos);
    }
    eprintln!(
        "numpy reference, {} sentences: lowest cosine {worst:.9} (1 - cos = {:.1e})",
        SENTENCES.len(),
        1.0 - worst
    );
    assert!(got.truncated.is_empty());
}

#[test]
fn long_inputs_are_truncated_to_max_tokens_like_the_reference() {
    let long = "model serving on idle gpus ".repeat(80); // ≈ 400 word pieces
    let reference = common::reference(&[&long]).expect("reference embeddings");
    let got = encoder().encode(&[long.as_str(), "short"]).unwrap();
    assert_eq!(got.tokens[0], 256);
    assert_eq!(got.truncated, vec![0]);
    assert_eq!(reference.ids[0].len(), 256);
    assert!(cosine(&got.vectors[0], &reference.embeddings[0]) >= 0.999);
}

#[test]
fn vectors_are_unit_length_with_the_catalogue_dims() {
    let got = encoder().encode(&SENTENCES).unwrap();
    assert_eq!(got.vectors.len(), SENTENCES.len());
    for v in &got.vectors {
        assert_eq!(v.len(), 384);
        let norm: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[test]
fn batching_and_padding_do_not_change_a_vector() {
    let enc = encoder();
    // 40 inputs: more than one internal batch, very different lengths, duplicates.
    let inputs: Vec<&str> = SENTENCES.iter().cycle().take(40).copied().collect();
    let batched = enc.encode(&inputs).unwrap();
    for (i, s) in inputs.iter().enumerate() {
        let alone = enc.encode(&[*s]).unwrap();
        let cos = cosine32(&batched.vectors[i], &alone.vectors[0]);
        assert!(cos > 0.99999, "input {i} {s:?}: cosine {cos} between batched and alone");
    }
}

#[test]
fn similar_sentences_are_closer_than_unrelated_ones() {
    let got = encoder()
        .encode(&["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."])
        .unwrap();
    let near = cosine32(&got.vectors[0], &got.vectors[1]);
    let far = cosine32(&got.vectors[0], &got.vectors[2]);
    assert!(near > far + 0.3, "near {near}, far {far}");
}

#[test]
fn device_choice_parses_and_a_missing_gpu_fails_cleanly() {
    for (text, expect) in [
        ("cpu", Some(DeviceChoice::Cpu)),
        ("cuda", Some(DeviceChoice::Cuda(0))),
        ("cuda:2", Some(DeviceChoice::Cuda(2))),
        ("gpu", None),
        ("cuda:x", None),
    ] {
        assert_eq!(text.parse::<DeviceChoice>().ok(), expect, "{text}");
    }
    let err = Encoder::load(&common::model_dir(), &common::entry(), DeviceChoice::Cuda(0)).unwrap_err();
    assert!(matches!(err, EncoderError::Device { device: DeviceChoice::Cuda(0), .. }), "{err}");
    assert!(err.to_string().starts_with("device cuda:0: expected an available device"), "{err}");
}

#[test]
fn a_model_dir_that_disagrees_with_the_catalogue_is_refused() {
    let mut entry = common::entry();
    entry.dims = 768;
    let err = Encoder::load(&common::model_dir(), &entry, DeviceChoice::Cpu).unwrap_err();
    assert_eq!(err.to_string(), "model all-minilm-l6-v2: hidden_size: expected 768 (catalogue dims), found 384");
    let mut entry = common::entry();
    entry.max_tokens = 1024;
    let err = Encoder::load(&common::model_dir(), &entry, DeviceChoice::Cpu).unwrap_err();
    assert!(err.to_string().contains("max_position_embeddings: expected at least 1024"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = Encoder::load(empty.path(), &common::entry(), DeviceChoice::Cpu).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}
