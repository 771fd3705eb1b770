//! The probe report: what the host has, how it prints, what it offers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use dci_model::{ContainerSpec, GeoPoint, GpuSpec, SpecError};
use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};

use crate::gpu::{GpuProbe, GpuReport};

/// Everything hardware discovery found on a host (R-AG1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Host name and operating system.
    pub host: HostInfo,
    /// The processor.
    pub cpu: CpuInfo,
    /// Main memory.
    pub memory: MemoryInfo,
    /// Mounted file systems.
    pub disks: Vec<DiskInfo>,
    /// Network interfaces.
    pub networks: Vec<NetworkInterface>,
    /// GPUs, or why there are none.
    pub gpu: GpuReport,
}

/// Host name and operating system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: Option<String>,
    /// Operating system, e.g. `Linux (Debian 12)`.
    pub os: Option<String>,
    /// Kernel version.
    pub kernel: Option<String>,
    /// CPU architecture, e.g. `x86_64`.
    pub arch: String,
}

/// The processor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// Brand string, e.g. `AMD EPYC 7B13 64-Core Processor`.
    pub model: String,
    /// Logical cores (hardware threads) this process may use.
    pub logical_cores: u32,
    /// Physical cores, when known.
    pub physical_cores: Option<u32>,
}

/// Main memory, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    /// Installed.
    pub total_bytes: u64,
    /// Available to new processes now.
    pub available_bytes: u64,
}

/// A mounted file system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// File system type, e.g. `ext4`.
    pub file_system: String,
    /// Size, bytes.
    pub total_bytes: u64,
    /// Free for unprivileged use, bytes.
    pub available_bytes: u64,
    /// Removable medium.
    pub removable: bool,
}

/// A network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Hardware address.
    pub mac: String,
    /// Addresses in CIDR form, e.g. `10.0.0.2/24`.
    pub addresses: Vec<String>,
    /// MTU, bytes.
    pub mtu: u64,
    /// Link speed in Mbit/s when the kernel knows it (`/sys/class/net/<if>/speed`).
    pub speed_mbps: Option<u32>,
}

impl Probe {
    /// Probes this host: CPU, memory, disks and network through `sysinfo`,
    /// GPUs through `gpu`. Takes a few milliseconds; never fails (what cannot
    /// be read is left out or `None`).
    pub fn collect(gpu: &dyn GpuProbe) -> Probe {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let logical = std::thread::available_parallelism().map_or(sys.cpus().len(), usize::from);
        let cpu = CpuInfo {
            model: sys
                .cpus()
                .first()
                .map(|c| c.brand().trim().to_owned())
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            logical_cores: u32::try_from(logical).unwrap_or(u32::MAX),
            physical_cores: System::physical_core_count().and_then(|n| u32::try_from(n).ok()),
        };
        let host = HostInfo {
            hostname: System::host_name(),
            os: System::long_os_version(),
            kernel: System::kernel_version(),
            arch: System::cpu_arch(),
        };
        let memory = MemoryInfo { total_bytes: sys.total_memory(), available_bytes: sys.available_memory() };
        let mut disks: Vec<DiskInfo> = Disks::new_with_refreshed_list()
            .list()
            .iter()
            .map(|d| DiskInfo {
                mount_point: d.mount_point().to_path_buf(),
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
                removable: d.is_removable(),
            })
            .collect();
        disks.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        let networks: BTreeMap<String, NetworkInterface> = Networks::new_with_refreshed_list()
            .list()
            .iter()
            .map(|(name, data)| {
                let iface = NetworkInterface {
                    name: name.clone(),
                    mac: data.mac_address().to_string(),
                    addresses: data.ip_networks().iter().map(|n| format!("{}/{}", n.addr, n.prefix)).collect(),
                    mtu: data.mtu(),
                    speed_mbps: link_speed(name),
                };
                (name.clone(), iface)
            })
            .collect();
        Probe { host, cpu, memory, disks, networks: networks.into_values().collect(), gpu: gpu.probe() }
    }

    /// The disk holding `path`: the mounted file system with the longest
    /// mount point that is a prefix of it.
    pub fn disk_for(&self, path: &Path) -> Option<&DiskInfo> {
        self.disks.iter().filter(|d| path.starts_with(&d.mount_point)).max_by_key(|d| d.mount_point.as_os_str().len())
    }

    /// The container spec this host can offer, after keeping `options`'
    /// reserves for the host itself. GPUs come from the probe's report (a
    /// simulated report gives `simulated: true`); a host with several GPU
    /// models must name the one to offer (one container per model).
    pub fn container_spec(&self, options: &SpecOptions) -> Result<ContainerSpec, OfferError> {
        let gpu = self.gpu_spec(options.gpu_model.as_deref())?;
        let disk = self.disk_for(&options.disk_path).ok_or_else(|| OfferError::NoDisk(options.disk_path.clone()))?;
        // What is left after the reserve: cores and RAM must stay above
        // zero, disk may run down to zero (a host without free disk still
        // offers compute).
        let offer = |what: &'static str, have: u64, reserve: u32, min: u32| {
            let have = u32::try_from(have).unwrap_or(u32::MAX);
            let left = have.saturating_sub(reserve);
            if left >= min { Ok(left) } else { Err(OfferError::Reserve { what, have, reserve }) }
        };
        let spec = ContainerSpec {
            gpu,
            cpu_cores: offer("cpu_cores", u64::from(self.cpu.logical_cores), options.reserve_cpu_cores, 1)?,
            ram_gib: offer("ram_gib", self.memory.total_bytes >> 30, options.reserve_ram_gib, 1)?,
            disk_gib: offer("disk_gib", disk.available_bytes >> 30, options.reserve_disk_gib, 0)?,
            bandwidth_up_mbps: options.bandwidth_up_mbps,
            bandwidth_down_mbps: options.bandwidth_down_mbps,
            location: options.location,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The GPUs of one model as a [`GpuSpec`] (VRAM of the smallest card).
    fn gpu_spec(&self, wanted: Option<&str>) -> Result<Option<GpuSpec>, OfferError> {
        let devices = self.gpu.devices();
        if devices.is_empty() {
            return match wanted {
                Some(w) => Err(OfferError::UnknownGpuModel { wanted: w.to_owned(), found: Vec::new() }),
                None => Ok(None),
            };
        }
        let mut models: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for d in devices {
            models.entry(d.model.as_str()).or_default().push(d.vram_gib());
        }
        let names = || models.keys().map(|m| (*m).to_owned()).collect::<Vec<_>>();
        let (model, vram) = match wanted {
            Some(w) => models
                .get_key_value(w)
                .ok_or_else(|| OfferError::UnknownGpuModel { wanted: w.to_owned(), found: names() })?,
            None if models.len() == 1 => models.iter().next().expect("one model"),
            None => return Err(OfferError::MixedGpuModels(names())),
        };
        Ok(Some(GpuSpec {
            model: (*model).to_owned(),
            count: u32::try_from(vram.len()).unwrap_or(u32::MAX),
            vram_gib: vram.iter().copied().min().unwrap_or(0),
            simulated: self.gpu.is_simulated(),
        }))
    }
}

/// What the operator declares on top of the probe, and what to keep back.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecOptions {
    /// Where the host is.
    pub location: GeoPoint,
    /// Upload bandwidth offered, Mbit/s (measured by checkers, not probed).
    pub bandwidth_up_mbps: u32,
    /// Download bandwidth offered, Mbit/s.
    pub bandwidth_down_mbps: u32,
    /// A path on the disk that holds workloads' data; its free space is offered.
    pub disk_path: PathBuf,
    /// Logical cores kept for the host.
    pub reserve_cpu_cores: u32,
    /// GiB of RAM kept for the host.
    pub reserve_ram_gib: u32,
    /// GiB of disk kept free.
    pub reserve_disk_gib: u32,
    /// The GPU model to offer when the host has several.
    pub gpu_model: Option<String>,
}

/// Why a probe cannot become a container spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OfferError {
    /// Several GPU models and none chosen.
    #[error("expected GPUs of one model or a chosen gpu_model, found models {0:?}")]
    MixedGpuModels(Vec<String>),
    /// The chosen model is not installed.
    #[error("expected a GPU of model {wanted:?}, found {found:?}")]
    UnknownGpuModel {
        /// The chosen model.
        wanted: String,
        /// The models present.
        found: Vec<String>,
    },
    /// No mounted file system holds the data path.
    #[error("expected a mounted file system holding {0}, found none")]
    NoDisk(PathBuf),
    /// A reserve leaves nothing to offer.
    #[error("{what}: expected a reserve that leaves something of the {have} the host has, found {reserve}")]
    Reserve {
        /// The resource.
        what: &'static str,
        /// What the host has.
        have: u32,
        /// What the operator keeps back.
        reserve: u32,
    },
    /// The resulting spec is out of range.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// Link speed from `/sys/class/net/<if>/speed`; absent for virtual links
/// (which report -1 or nothing).
fn link_speed(interface: &str) -> Option<u32> {
    let text = std::fs::read_to_string(Path::new("/sys/class/net").join(interface).join("speed")).ok()?;
    text.trim().parse::<i64>().ok().and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0)
}

/// Bytes as GiB with one decimal, in integer arithmetic.
struct Gib(u64);

impl fmt::Display for Gib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (u128::from(self.0) * 10 + (1 << 29)) >> 30;
        write!(f, "{}.{} GiB", tenths / 10, tenths % 10)
    }
}

/// The text `dci container probe` prints: one aligned line per fact.
impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.host;
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "unknown".into());
        writeln!(f, "host     {} ({}, kernel {}, {})", opt(&h.hostname), opt(&h.os), opt(&h.kernel), h.arch)?;
        let physical = self.cpu.physical_cores.map_or(String::new(), |p| format!(", {p} physical"));
        writeln!(f, "cpu      {}: {} logical cores{physical}", self.cpu.model, self.cpu.logical_cores)?;
        writeln!(f, "memory   {} total, {} available", Gib(self.memory.total_bytes), Gib(self.memory.available_bytes))?;
        for d in &self.disks {
            let removable = if d.removable { ", removable" } else { "" };
            writeln!(
                f,
                "disk     {} ({}{removable}): {} total, {} available",
                d.mount_point.display(),
                d.file_system,
                Gib(d.total_bytes),
                Gib(d.available_bytes)
            )?;
        }
        for n in &self.networks {
            let speed = n.speed_mbps.map_or(String::new(), |s| format!(", {s} Mbit/s"));
            let addrs = if n.addresses.is_empty() { "no address".to_owned() } else { n.addresses.join(" ") };
            writeln!(f, "network  {} ({}, mtu {}{speed}): {addrs}", n.name, n.mac, n.mtu)?;
        }
        match &self.gpu {
            GpuReport::Absent { reason } => writeln!(f, "gpu      none: {reason}")?,
            GpuReport::Nvml { driver_version, cuda_version, devices } => {
                let cuda = cuda_version.as_ref().map_or(String::new(), |c| format!(", CUDA {c}"));
                writeln!(f, "gpu      {} device(s), NVIDIA driver {driver_version}{cuda}", devices.len())?;
            }
            GpuReport::Simulated { devices } => {
                writeln!(
                    f,
                    "gpu      {} device(s), SIMULATED (development profile, not real hardware)",
                    devices.len()
                )?;
            }
        }
        for d in self.gpu.devices() {
            let cc = d.compute_capability.map_or(String::new(), |c| format!(", compute capability {c}"));
            let uuid = d.uuid.as_ref().map_or(String::new(), |u| format!(", {u}"));
            let sim = if self.gpu.is_simulated() { " [simulated]" } else { "" };
            writeln!(f, "gpu {:<4} {}{sim}: {} VRAM{cc}{uuid}", d.index, d.model, Gib(d.vram_bytes))?;
        }
        Ok(())
    }
}
