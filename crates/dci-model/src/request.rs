//! What a consumer asks for, and why a request matched nothing (R-IX1, R-IX4).

use crate::geo::GeoPoint;
use crate::money::PricePerHour;
use crate::spec::ServiceName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How to choose among the containers that satisfy every hard criterion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Lowest price per hour.
    Cheapest,
    /// Lowest estimated latency, then highest reputation.
    BestUx,
    /// A weighted score of price, latency and checker reputation.
    #[default]
    Balanced,
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cheapest" => Ok(Policy::Cheapest),
            "best-ux" => Ok(Policy::BestUx),
            "balanced" => Ok(Policy::Balanced),
            _ => Err(format!("expected a policy: cheapest, best-ux or balanced; found {s:?}")),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Cheapest => "cheapest",
            Policy::BestUx => "best-ux",
            Policy::Balanced => "balanced",
        })
    }
}

/// A consumer's request for one container slot. `None`/zero means "any".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatchRequest {
    /// The pre-installed service to run.
    pub service: ServiceName,
    /// GPU model, matched case-insensitively as a substring (`h100`, `4090`).
    pub gpu_model: Option<String>,
    /// Minimum number of GPUs (0: a CPU-only host is fine).
    pub gpu_count: u32,
    /// Minimum memory per GPU, GiB.
    pub min_vram_gib: u32,
    /// Minimum CPU cores.
    pub min_cpu_cores: u32,
    /// Minimum RAM, GiB.
    pub min_ram_gib: u32,
    /// Minimum disk, GiB.
    pub min_disk_gib: u32,
    /// Minimum upload bandwidth, Mbit/s.
    pub min_bandwidth_up_mbps: u32,
    /// Minimum download bandwidth, Mbit/s.
    pub min_bandwidth_down_mbps: u32,
    /// Where the consumer is (for latency).
    pub near: Option<GeoPoint>,
    /// Largest acceptable estimated round trip, ms (needs `near`).
    pub max_latency_ms: Option<u32>,
    /// Highest acceptable price.
    pub max_price: Option<PricePerHour>,
    /// How to pick among the candidates.
    pub policy: Policy,
}

impl MatchRequest {
    /// A request for `service` with no other constraint.
    pub fn for_service(service: ServiceName) -> Self {
        MatchRequest {
            service,
            gpu_model: None,
            gpu_count: 0,
            min_vram_gib: 0,
            min_cpu_cores: 0,
            min_ram_gib: 0,
            min_disk_gib: 0,
            min_bandwidth_up_mbps: 0,
            min_bandwidth_down_mbps: 0,
            near: None,
            max_latency_ms: None,
            max_price: None,
            policy: Policy::default(),
        }
    }
}

/// A matching criterion, in the order of strictness of R-IX1. A container is
/// counted against the first criterion it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// Not in a schedulable state.
    State,
    /// Heartbeat not fresh.
    Heartbeat,
    /// No free slot.
    Capacity,
    /// Service not pre-installed.
    Service,
    /// GPU model or class.
    GpuModel,
    /// Too few GPUs.
    GpuCount,
    /// Too little VRAM per GPU.
    Vram,
    /// Too few CPU cores.
    Cpu,
    /// Too little RAM.
    Ram,
    /// Too little disk.
    Disk,
    /// Too little bandwidth.
    Bandwidth,
    /// Beyond the latency bound.
    Latency,
    /// Above the budget.
    Price,
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Criterion::State => "state (not ready/healthy)",
            Criterion::Heartbeat => "heartbeat (missed)",
            Criterion::Capacity => "capacity (no free slot)",
            Criterion::Service => "service (not pre-installed)",
            Criterion::GpuModel => "gpu model",
            Criterion::GpuCount => "gpu count",
            Criterion::Vram => "vram",
            Criterion::Cpu => "cpu cores",
            Criterion::Ram => "ram",
            Criterion::Disk => "disk",
            Criterion::Bandwidth => "bandwidth",
            Criterion::Latency => "latency",
            Criterion::Price => "price",
        })
    }
}

/// How many containers each criterion eliminated (R-IX4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eliminations {
    /// Containers considered.
    pub considered: u64,
    /// Per criterion: containers eliminated by it (first failing criterion).
    pub by_criterion: BTreeMap<Criterion, u64>,
}

impl Eliminations {
    /// Counts one container eliminated by `c`.
    pub fn add(&mut self, c: Criterion) {
        *self.by_criterion.entry(c).or_default() += 1;
    }
}

impl fmt::Display for Eliminations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no container matched ({} considered", self.considered)?;
        for (c, n) in &self.by_criterion {
            write!(f, "; {n} eliminated by {c}")?;
        }
        f.write_str(")")
    }
}
