//! What a container offers: GPUs, CPU, memory, disk, bandwidth, location, services.

use crate::geo::GeoPoint;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The GPUs of a host: all of one model (a host with mixed cards registers
/// one container per model).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuSpec {
    /// Marketing model name as reported by the driver, e.g. `H100`, `RTX 4090`.
    pub model: String,
    /// Number of GPUs.
    pub count: u32,
    /// Memory per GPU in GiB.
    pub vram_gib: u32,
    /// True when this profile is simulated (development hosts without a GPU).
    /// Always shown to operators and consumers (R-AG1).
    pub simulated: bool,
}

/// A container's declared resources. Checkers verify them (R-CK1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// GPUs, or `None` for a CPU-only host.
    pub gpu: Option<GpuSpec>,
    /// Logical CPU cores offered.
    pub cpu_cores: u32,
    /// RAM offered, GiB.
    pub ram_gib: u32,
    /// Disk offered, GiB.
    pub disk_gib: u32,
    /// Upload bandwidth, Mbit/s.
    pub bandwidth_up_mbps: u32,
    /// Download bandwidth, Mbit/s.
    pub bandwidth_down_mbps: u32,
    /// Where the host is.
    pub location: GeoPoint,
}

/// Why a spec is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field is out of its allowed range.
    #[error("{field}: expected {expected}, found {found}")]
    Range {
        /// The field.
        field: &'static str,
        /// What is allowed.
        expected: &'static str,
        /// What was given.
        found: String,
    },
    /// A service name is malformed.
    #[error("expected a service name of 1 to 48 characters from a-z 0-9 - _ ., found {0:?}")]
    ServiceName(String),
}

impl ContainerSpec {
    /// Checks that every field is in a plausible range.
    pub fn validate(&self) -> Result<(), SpecError> {
        let range = |field, expected, ok: bool, found: String| {
            if ok { Ok(()) } else { Err(SpecError::Range { field, expected, found }) }
        };
        if let Some(g) = &self.gpu {
            range(
                "gpu.model",
                "1 to 64 printable characters",
                !g.model.is_empty() && g.model.len() <= 64 && g.model.chars().all(|c| !c.is_control()),
                g.model.clone(),
            )?;
            range("gpu.count", "1 to 64", (1..=64).contains(&g.count), g.count.to_string())?;
            range("gpu.vram_gib", "1 to 1024", (1..=1024).contains(&g.vram_gib), g.vram_gib.to_string())?;
        }
        range("cpu_cores", "1 to 4096", (1..=4096).contains(&self.cpu_cores), self.cpu_cores.to_string())?;
        range("ram_gib", "1 to 65536", (1..=65536).contains(&self.ram_gib), self.ram_gib.to_string())?;
        range("disk_gib", "at most 10^7", self.disk_gib <= 10_000_000, self.disk_gib.to_string())?;
        Ok(())
    }

    /// Total GPU memory in GiB (0 for CPU-only hosts).
    pub fn total_vram_gib(&self) -> u64 {
        self.gpu.as_ref().map_or(0, |g| g.count as u64 * g.vram_gib as u64)
    }
}

/// The name of a service a container can run, e.g. `render`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

impl ServiceName {
    /// Validates a service name.
    pub fn new(s: impl Into<String>) -> Result<Self, SpecError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 48
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
        if ok { Ok(ServiceName(s)) } else { Err(SpecError::ServiceName(s)) }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceName {
    type Error = SpecError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ServiceName::new(s)
    }
}

impl From<ServiceName> for String {
    fn from(s: ServiceName) -> String {
        s.0
    }
}

impl FromStr for ServiceName {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceName::new(s)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceName({})", self.0)
    }
}
