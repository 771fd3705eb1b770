//! DCI's built-in services: the programs a container runs for consumers (SPEC §6).
//!
//! Today there is one, `render`: cloud rendering of a 3D scene by a small CPU
//! ray tracer, as still PNG frames and as a live JPEG stream over WebSocket that
//! reacts to the viewer's input, with a browser viewer page, Prometheus metrics
//! and a scripted simulated user that measures a stream ([`render::simulate_user`],
//! used by the checker and the benchmarks). [`catalog()`] lists the
//! built-in services by [`dci_model::ServiceName`]; each service is one module
//! ([`render`]) with a pure core and an HTTP front; [`serve`] and [`run`] serve
//! any of them by name (the `dci service <name>` subcommand calls [`run`]).
//!
//! This crate is not the container agent (which decides what to run and meters
//! it), not the gateway (the public API), and not a GPU runtime: rendering runs
//! on the CPU. Model-as-a-service lives in `dci-models`.
//!
//! Unlike the rest of DCI, where HTTP is the gateway's business, this crate
//! speaks HTTP itself (axum): a service is a standalone server process that
//! consumers reach directly or through a relay, so its protocol is part of it.

pub mod catalog;
pub mod render;
mod server;

pub use catalog::{Builtin, catalog, is_builtin};
pub use server::{ServeError, UNSENT_LIMIT, announce, router, run, serve};
