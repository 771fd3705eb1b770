//! Hardware discovery for the container host agent (SPEC R-AG1).
//!
//! [`Probe::collect`] reads the host's CPU, memory, disks and network
//! interfaces (through `sysinfo`) and its NVIDIA GPUs through a [`GpuProbe`]:
//! [`NvmlProbe`] loads the driver's NVML library at run time (model, count,
//! VRAM, driver and CUDA version, compute capability) and turns a missing
//! driver or device into a typed [`NoGpu`] reason; [`SimulatedGpus`] is the
//! in-memory profile for development hosts and tests, always reported as
//! simulated. A [`Probe`] prints as the text of `dci container probe`,
//! serialises with serde, and becomes the [`dci_model::ContainerSpec`] the
//! host offers ([`Probe::container_spec`]).
//!
//! This crate is the only one that knows NVML (STYLE rule 4). It does not
//! verify claims (checkers do) and does not measure bandwidth.

mod gpu;
mod report;

pub use gpu::{
    ComputeCapability, GpuDevice, GpuProbe, GpuReport, NVML_LIBRARY, NoGpu, NvmlProbe, SimulatedGpus, SimulatedProfile,
    classify,
};
pub use report::{CpuInfo, DiskInfo, HostInfo, MemoryInfo, NetworkInterface, OfferError, Probe, SpecOptions};
