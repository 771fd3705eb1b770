//! DCI's node runtime: the IO edge around the sans-IO role cores.
//!
//! - [`transport`]: Noise-encrypted connections bound to node ids, with
//!   limits and deadlines; every inbound frame is authenticated and checked
//!   (network, recipient, connection) before a core sees it. [`bench`]:
//!   `dci bench transport`.
//! - [`roles`]: tokio drivers for the indexer, checker and container cores.
//! - [`runtime`]: the workload runtime chosen at start-up (process or docker).
//! - [`gateway`]: the driver of the gateway core (`dci-gateway-core`), and
//!   the [`gateway::GatewayNode`] the HTTP API of `dci-gateway` calls.
//! - [`store`], [`keys`], [`clock`], [`metrics`]: durable records, keys at rest,
//!   the wall clock, the Prometheus recorder.
//! - [`settlement`]: the ledger backend a node settles on (embedded or evm,
//!   one config line) and the gateway's [`settlement::NodeLedger`].
//! - [`config`], [`network`]: a role's node config (`node.toml`) and the
//!   network file every role takes its peers from; [`membership`]: that
//!   file merged with the chain's endpoint registry (`[chain]`), followed.
//! - [`node`]: each role built from its own data directory (`dci gateway|
//!   indexer|checker run`, and the devnet).
//! - [`devnet`]: the whole network on loopback in one call.
//! - [`host`]: one container host as its own process (`dci container run`)
//!   and its operator's control socket; [`reach`]: how others reach its
//!   services (directly, or through the gateway's relay when it is behind NAT).
//! - [`relay`]: the gateway's relay for hosts behind NAT, admitting only
//!   hosts with container stake bonded on the gateway's ledger.
//!
//! Decisions belong to the cores; this crate only moves bytes, reads clocks,
//! spawns processes and writes files.

pub mod bench;
pub mod clock;
pub mod config;
pub mod devnet;
pub mod gateway;
pub mod host;
pub mod keys;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod reach;
pub mod relay;
pub mod roles;
pub mod runtime;
pub mod settlement;
pub mod store;
pub mod transport;
