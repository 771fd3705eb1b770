//! Hardware discovery: the real probe on this host, the NVML failure
//! reasons, the text rendering and the spec a probe offers.

use std::path::PathBuf;

use dci_model::{ContainerSpec, GeoPoint, GpuSpec};
use dci_probe::{
    ComputeCapability, CpuInfo, DiskInfo, GpuDevice, GpuProbe, GpuReport, HostInfo, MemoryInfo, NetworkInterface,
    NoGpu, NvmlProbe, OfferError, Probe, SimulatedGpus, SimulatedProfile, SpecOptions, classify,
};
use nvml_wrapper::error::NvmlError;

const GIB: u64 = 1 << 30;

#[test]
fn the_real_probe_describes_this_host() {
    let probe = Probe::collect(&NvmlProbe::new());
    assert!(probe.cpu.logical_cores >= 1, "{probe:?}");
    assert!(!probe.cpu.model.is_empty());
    assert!(probe.memory.total_bytes > 0 && probe.memory.available_bytes <= probe.memory.total_bytes);
    assert!(probe.disk_for(&std::env::temp_dir()).is_some(), "some disk holds the temp dir: {:?}", probe.disks);
    match &probe.gpu {
        GpuReport::Nvml { devices, .. } => assert!(!devices.is_empty()),
        GpuReport::Absent { reason } => {
            // Without the driver's library on the machine, the reason must say so.
            let library_present = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
                .iter()
                .any(|d| PathBuf::from(d).join("libnvidia-ml.so.1").exists());
            if !library_present {
                assert!(matches!(reason, NoGpu::NoDriver { .. }), "{reason:?}");
                assert!(
                    reason.to_string().starts_with("no NVIDIA driver found (libnvidia-ml.so.1 not loadable)"),
                    "{reason}"
                );
            }
        }
        GpuReport::Simulated { .. } => panic!("the real probe reported a simulated profile"),
    }
    let text = probe.to_string();
    eprintln!("{text}");
    for word in ["host ", "cpu ", "memory ", "disk ", "gpu "] {
        assert!(text.contains(word), "{word:?} missing from:\n{text}");
    }
    let json = serde_json::to_string(&probe).unwrap();
    assert_eq!(serde_json::from_str::<Probe>(&json).unwrap(), probe);
}

#[test]
fn an_unloadable_nvml_library_means_no_driver() {
    let dir = std::env::temp_dir();
    let not_a_library = dir.join(format!("dci-probe-not-a-library-{}.so", std::process::id()));
    std::fs::write(&not_a_library, b"this is not an ELF file").unwrap();
    let missing = dir.join("dci-probe-missing").join("libnvidia-ml.so.1");
    for library in [&missing, &not_a_library] {
        let report = NvmlProbe::with_library(library).probe();
        let GpuReport::Absent { reason: reason @ NoGpu::NoDriver { .. } } = &report else {
            panic!("{library:?}: expected no driver, found {report:?}")
        };
        let expect = format!("no NVIDIA driver found ({} not loadable): ", library.display());
        assert!(reason.to_string().starts_with(&expect), "{reason}");
    }
    std::fs::remove_file(&not_a_library).unwrap();
}

#[test]
fn nvml_errors_map_to_reasons() {
    let no_driver = |detail: &str| NoGpu::NoDriver { library: "lib.so".into(), detail: detail.into() };
    let table = [
        (NvmlError::DriverNotLoaded, NoGpu::DriverNotLoaded),
        (NvmlError::NoPermission, NoGpu::NoPermission),
        (NvmlError::LibraryNotFound, no_driver(&NvmlError::LibraryNotFound.to_string())),
        (NvmlError::FailedToLoadSymbol("nvmlInit_v2".into()), no_driver("it lacks the symbol nvmlInit_v2")),
        (NvmlError::GpuLost, NoGpu::Nvml { action: "counting".into(), detail: NvmlError::GpuLost.to_string() }),
    ];
    for (error, expect) in table {
        assert_eq!(classify(&error, "lib.so", "counting"), expect, "{error:?}");
    }
    assert_eq!(
        NoGpu::NoDevice { driver_version: "550.54".into() }.to_string(),
        "NVIDIA driver 550.54 present but no device"
    );
}

fn device(index: u32, model: &str, vram_bytes: u64) -> GpuDevice {
    GpuDevice {
        index,
        model: model.into(),
        uuid: Some(format!("GPU-{index}")),
        vram_bytes,
        compute_capability: Some(ComputeCapability { major: 8, minor: 9 }),
    }
}

fn host(gpu: GpuReport) -> Probe {
    Probe {
        host: HostInfo {
            hostname: Some("h1".into()),
            os: Some("Linux (Debian 12)".into()),
            kernel: Some("6.1".into()),
            arch: "x86_64".into(),
        },
        cpu: CpuInfo { model: "Test CPU".into(), logical_cores: 16, physical_cores: Some(8) },
        memory: MemoryInfo { total_bytes: 64 * GIB + GIB / 2, available_bytes: 60 * GIB },
        disks: vec![
            DiskInfo {
                mount_point: "/".into(),
                file_system: "ext4".into(),
                total_bytes: 100 * GIB,
                available_bytes: 40 * GIB,
                removable: false,
            },
            DiskInfo {
                mount_point: "/data".into(),
                file_system: "xfs".into(),
                total_bytes: 2000 * GIB,
                available_bytes: 1500 * GIB,
                removable: false,
            },
        ],
        networks: vec![NetworkInterface {
            name: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
            addresses: vec!["10.0.0.2/24".into()],
            mtu: 1500,
            speed_mbps: Some(10_000),
        }],
        gpu,
    }
}

fn options(disk: &str, gpu_model: Option<&str>) -> SpecOptions {
    SpecOptions {
        location: GeoPoint::new(38.7, -9.1).unwrap(),
        bandwidth_up_mbps: 1000,
        bandwidth_down_mbps: 2000,
        disk_path: disk.into(),
        reserve_cpu_cores: 2,
        reserve_ram_gib: 4,
        reserve_disk_gib: 100,
        gpu_model: gpu_model.map(String::from),
    }
}

fn spec(gpu: Option<GpuSpec>, disk_gib: u32) -> ContainerSpec {
    ContainerSpec {
        gpu,
        cpu_cores: 14,
        ram_gib: 60,
        disk_gib,
        bandwidth_up_mbps: 1000,
        bandwidth_down_mbps: 2000,
        location: GeoPoint::new(38.7, -9.1).unwrap(),
    }
}

#[test]
fn a_probe_becomes_the_spec_the_host_offers() {
    let nvml =
        |devices| GpuReport::Nvml { driver_version: "550.54".into(), cuda_version: Some("12.4".into()), devices };
    let rtx = |i| device(i, "RTX 4090", 24_564 << 20); // 23.99 GiB as the driver reports it
    let gpu =
        |model: &str, count, vram_gib, simulated| Some(GpuSpec { model: model.into(), count, vram_gib, simulated });
    let absent = GpuReport::Absent { reason: NoGpu::DriverNotLoaded };
    let table: Vec<(GpuReport, SpecOptions, Result<ContainerSpec, OfferError>)> = vec![
        (absent.clone(), options("/srv/dci", None), Ok(spec(None, 0))),
        (
            absent,
            options("/data/dci", Some("H100")),
            Err(OfferError::UnknownGpuModel { wanted: "H100".into(), found: vec![] }),
        ),
        (nvml(vec![rtx(0), rtx(1)]), options("/data/dci", None), Ok(spec(gpu("RTX 4090", 2, 24, false), 1400))),
        (
            SimulatedGpus::profile("H100", 8, 80).probe(),
            options("/data", None),
            Ok(spec(gpu("H100", 8, 80, true), 1400)),
        ),
        (
            nvml(vec![rtx(0), device(1, "A100", 80 * GIB)]),
            options("/", None),
            Err(OfferError::MixedGpuModels(vec!["A100".into(), "RTX 4090".into()])),
        ),
        (
            nvml(vec![rtx(0), device(1, "A100", 80 * GIB)]),
            options("/", Some("A100")),
            Ok(spec(gpu("A100", 1, 80, false), 0)),
        ),
        (
            nvml(vec![rtx(0)]),
            options("/", Some("H100")),
            Err(OfferError::UnknownGpuModel { wanted: "H100".into(), found: vec!["RTX 4090".into()] }),
        ),
        (nvml(vec![rtx(0)]), options("relative/path", None), Err(OfferError::NoDisk("relative/path".into()))),
        (
            nvml(vec![rtx(0)]),
            SpecOptions { reserve_cpu_cores: 16, ..options("/", None) },
            Err(OfferError::Reserve { what: "cpu_cores", have: 16, reserve: 16 }),
        ),
    ];
    for (gpu, options, expect) in table {
        let probe = host(gpu);
        assert_eq!(probe.container_spec(&options), expect, "{:?} with {options:?}", probe.gpu);
    }
}

#[test]
fn simulated_profiles_are_always_marked() {
    let profile: SimulatedProfile = serde_json::from_str(r#"{"model":"H100","count":2,"vram_gib":80}"#).unwrap();
    let sim = host(SimulatedGpus::from(&profile).probe());
    assert!(sim.gpu.is_simulated());
    let text = sim.to_string();
    assert!(text.contains("SIMULATED"), "{text}");
    assert_eq!(text.matches("[simulated]").count(), 2, "{text}");
    let json = serde_json::to_value(&sim).unwrap();
    assert_eq!(json["gpu"]["source"], "simulated");
    let spec = sim.container_spec(&options("/", None)).unwrap();
    assert!(spec.gpu.unwrap().simulated);
    // An empty profile is no GPU, not a simulated one.
    assert!(matches!(SimulatedGpus::devices(vec![]).probe(), GpuReport::Absent { .. }));
}

#[test]
fn the_text_report_lists_every_fact() {
    let probe = host(GpuReport::Nvml {
        driver_version: "550.54".into(),
        cuda_version: Some("12.4".into()),
        devices: vec![device(0, "RTX 4090", 24_564 << 20)],
    });
    let expect = "\
host     h1 (Linux (Debian 12), kernel 6.1, x86_64)
cpu      Test CPU: 16 logical cores, 8 physical
memory   64.5 GiB total, 60.0 GiB available
disk     / (ext4): 100.0 GiB total, 40.0 GiB available
disk     /data (xfs): 2000.0 GiB total, 1500.0 GiB available
network  eth0 (02:00:00:00:00:01, mtu 1500, 10000 Mbit/s): 10.0.0.2/24
gpu      1 device(s), NVIDIA driver 550.54, CUDA 12.4
gpu 0    RTX 4090: 24.0 GiB VRAM, compute capability 8.9, GPU-0
";
    assert_eq!(probe.to_string(), expect);
    let none = host(GpuReport::Absent {
        reason: NoGpu::NoDriver {
            library: "libnvidia-ml.so.1".into(),
            detail: "cannot open shared object file".into(),
        },
    });
    assert!(
        none.to_string().contains(
            "gpu      none: no NVIDIA driver found (libnvidia-ml.so.1 not loadable): cannot open shared object file"
        ),
        "{none}"
    );
}
