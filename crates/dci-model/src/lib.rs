//! The shared vocabulary of DCI.
//!
//! Everything that more than one role talks about lives here: node and session
//! identifiers, container specifications, ATH amounts and hourly prices (integer
//! base units, never floats), geographic points and round-trip estimates, the
//! seven-state container lifecycle with its closed transition table, match
//! requests and the reasons a request matched nothing.
//!
//! This crate is pure data and pure functions: no IO, no clock, no randomness,
//! no wire format (that is `dci-proto`'s job).

pub mod geo;
pub mod id;
pub mod lifecycle;
pub mod money;
pub mod request;
pub mod spec;
pub mod time;

pub use geo::GeoPoint;
pub use id::{AccountId, NodeId, SessionId};
pub use lifecycle::{Activity, Actor, LifecycleError, State, Transition};
pub use money::{Amount, AmountError, PricePerHour};
pub use request::{Criterion, Eliminations, MatchRequest, Policy};
pub use spec::{ContainerSpec, GpuSpec, ServiceName, SpecError};
pub use time::Timestamp;
