//! NVIDIA GPUs: discovered through NVML, or a simulated profile for development.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;
use serde::{Deserialize, Serialize};

/// The library NVML is loaded from when no other path is given.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Discovers the GPUs of the host.
///
/// Contract: `probe` never panics and returns quickly; a report of source
/// [`GpuReport::Nvml`] or [`GpuReport::Simulated`] lists at least one device;
/// a host without usable GPUs is [`GpuReport::Absent`] with the reason. Only
/// the real implementation ([`NvmlProbe`]) may report `Nvml`; the in-memory
/// one ([`SimulatedGpus`]) always reports `Simulated`, so a simulated profile
/// can never pass for real hardware (R-AG1).
pub trait GpuProbe {
    /// What the host has.
    fn probe(&self) -> GpuReport;
}

/// Where the GPU facts come from, and the facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum GpuReport {
    /// Read from the NVIDIA driver through NVML.
    Nvml {
        /// Driver version, e.g. `550.54.14`.
        driver_version: String,
        /// Highest CUDA version the driver supports, e.g. `12.4`.
        cuda_version: Option<String>,
        /// The devices, at least one.
        devices: Vec<GpuDevice>,
    },
    /// A simulated profile (development and tests only; never real hardware).
    Simulated {
        /// The simulated devices, at least one.
        devices: Vec<GpuDevice>,
    },
    /// No usable GPU.
    Absent {
        /// Why.
        reason: NoGpu,
    },
}

impl GpuReport {
    /// The devices (empty when absent).
    pub fn devices(&self) -> &[GpuDevice] {
        match self {
            GpuReport::Nvml { devices, .. } | GpuReport::Simulated { devices } => devices,
            GpuReport::Absent { .. } => &[],
        }
    }

    /// True for a simulated profile.
    pub fn is_simulated(&self) -> bool {
        matches!(self, GpuReport::Simulated { .. })
    }
}

/// One GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// NVML index.
    pub index: u32,
    /// Model name as the driver reports it, e.g. `NVIDIA H100 80GB HBM3`.
    pub model: String,
    /// Device UUID (`GPU-…`), when known.
    pub uuid: Option<String>,
    /// Total memory, bytes.
    pub vram_bytes: u64,
    /// CUDA compute capability, when known.
    pub compute_capability: Option<ComputeCapability>,
}

impl GpuDevice {
    /// Memory in GiB rounded to the nearest GiB: drivers report a little
    /// less than the marketed size (a 24 GB card shows 23.99 GiB).
    pub fn vram_gib(&self) -> u32 {
        u32::try_from((self.vram_bytes + (1 << 29)) >> 30).unwrap_or(u32::MAX)
    }
}

/// CUDA compute capability, e.g. 8.9.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ComputeCapability {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a host has no usable GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoGpu {
    /// The NVML library could not be loaded: no NVIDIA driver is installed.
    #[error("no NVIDIA driver found ({library} not loadable): {detail}")]
    NoDriver {
        /// The library that was tried.
        library: String,
        /// The loader's message.
        detail: String,
    },
    /// The driver answered but lists no device.
    #[error("NVIDIA driver {driver_version} present but no device")]
    NoDevice {
        /// The driver's version.
        driver_version: String,
    },
    /// The library loaded but the kernel driver is not running.
    #[error("NVIDIA driver library loaded but the kernel driver is not running")]
    DriverNotLoaded,
    /// NVML may not talk to the driver.
    #[error("no permission to talk to the NVIDIA driver")]
    NoPermission,
    /// Any other NVML failure.
    #[error("NVML failed while {action}: {detail}")]
    Nvml {
        /// What was being asked.
        action: String,
        /// NVML's message.
        detail: String,
    },
}

/// Maps an NVML error met while `action` to the reason a host has no GPU.
pub fn classify(error: &NvmlError, library: &str, action: &str) -> NoGpu {
    match error {
        NvmlError::LibloadingError(e) => NoGpu::NoDriver { library: library.to_owned(), detail: e.to_string() },
        NvmlError::LibraryNotFound => NoGpu::NoDriver { library: library.to_owned(), detail: error.to_string() },
        NvmlError::FailedToLoadSymbol(s) => {
            NoGpu::NoDriver { library: library.to_owned(), detail: format!("it lacks the symbol {s}") }
        }
        NvmlError::DriverNotLoaded => NoGpu::DriverNotLoaded,
        NvmlError::NoPermission => NoGpu::NoPermission,
        other => NoGpu::Nvml { action: action.to_owned(), detail: other.to_string() },
    }
}

/// The real probe: loads NVML at run time (the driver's `libnvidia-ml.so.1`,
/// or another path) and lists the devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NvmlProbe {
    library: Option<PathBuf>,
}

impl NvmlProbe {
    /// Loads NVML from the driver's default library.
    pub fn new() -> Self {
        NvmlProbe::default()
    }

    /// Loads NVML from `library` (a path or a file name the loader resolves).
    pub fn with_library(library: impl Into<PathBuf>) -> Self {
        NvmlProbe { library: Some(library.into()) }
    }

    fn library(&self) -> String {
        self.library.as_ref().map_or_else(|| NVML_LIBRARY.to_owned(), |p| p.display().to_string())
    }

    fn try_probe(&self) -> Result<GpuReport, NoGpu> {
        let library = self.library();
        let fail = |action: &str| {
            let library = library.clone();
            let action = action.to_owned();
            move |e: NvmlError| classify(&e, &library, &action)
        };
        let nvml = match &self.library {
            None => Nvml::init(),
            Some(path) => Nvml::builder().lib_path(OsStr::new(path.as_os_str())).init(),
        }
        .map_err(fail("initialising NVML"))?;
        let driver_version = nvml.sys_driver_version().map_err(fail("reading the driver version"))?;
        let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
            format!("{}.{}", nvml_wrapper::cuda_driver_version_major(v), nvml_wrapper::cuda_driver_version_minor(v))
        });
        let count = nvml.device_count().map_err(fail("counting devices"))?;
        if count == 0 {
            return Err(NoGpu::NoDevice { driver_version });
        }
        let mut devices = Vec::new();
        for index in 0..count {
            let action = format!("reading device {index}");
            let device = nvml.device_by_index(index).map_err(fail(&action))?;
            devices.push(GpuDevice {
                index,
                model: device.name().map_err(fail(&action))?,
                uuid: device.uuid().ok(),
                vram_bytes: device.memory_info().map_err(fail(&action))?.total,
                compute_capability: device.cuda_compute_capability().ok().and_then(|c| {
                    Some(ComputeCapability { major: u32::try_from(c.major).ok()?, minor: u32::try_from(c.minor).ok()? })
                }),
            });
        }
        Ok(GpuReport::Nvml { driver_version, cuda_version, devices })
    }
}

impl GpuProbe for NvmlProbe {
    fn probe(&self) -> GpuReport {
        self.try_probe().unwrap_or_else(|reason| GpuReport::Absent { reason })
    }
}

/// The in-memory probe: a simulated GPU profile for development hosts and
/// tests. Its report is always [`GpuReport::Simulated`] (or `Absent` when it
/// has no device), and specs made from it carry `simulated: true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulatedGpus {
    devices: Vec<GpuDevice>,
}

impl SimulatedGpus {
    /// `count` simulated GPUs of `model` with `vram_gib` GiB each.
    pub fn profile(model: &str, count: u32, vram_gib: u32) -> Self {
        let devices = (0..count)
            .map(|index| GpuDevice {
                index,
                model: model.to_owned(),
                uuid: None,
                vram_bytes: u64::from(vram_gib) << 30,
                compute_capability: None,
            })
            .collect();
        SimulatedGpus { devices }
    }

    /// Simulated devices given one by one.
    pub fn devices(devices: Vec<GpuDevice>) -> Self {
        SimulatedGpus { devices }
    }
}

/// A simulated GPU profile as an operator writes it in a development
/// host's config: `simulated_gpu = { model = "H100", count = 8, vram_gib = 80 }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedProfile {
    /// Model name to report.
    pub model: String,
    /// Number of GPUs.
    pub count: u32,
    /// Memory per GPU, GiB.
    pub vram_gib: u32,
}

impl From<&SimulatedProfile> for SimulatedGpus {
    fn from(p: &SimulatedProfile) -> Self {
        SimulatedGpus::profile(&p.model, p.count, p.vram_gib)
    }
}

impl GpuProbe for SimulatedGpus {
    fn probe(&self) -> GpuReport {
        if self.devices.is_empty() {
            GpuReport::Absent {
                reason: NoGpu::Nvml {
                    action: "simulating".into(),
                    detail: "the simulated profile has no device".into(),
                },
            }
        } else {
            GpuReport::Simulated { devices: self.devices.clone() }
        }
    }
}
