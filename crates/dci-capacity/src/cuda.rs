//! The GPU backend (cargo feature `cuda`): cuBLAS SGEMM through `cudarc`.
//!
//! Builds without a CUDA toolkit: `cudarc` is compiled with
//! `dynamic-loading`, so `libcuda` (the driver) and `libcublas` are opened
//! at run time. On a machine without them, or without a device,
//! [`CudaBackend::new`] returns [`CapacityError::NoGpu`] saying what is
//! missing; nothing panics (the libraries are probed before `cudarc` would
//! load them, and any panic inside `cudarc` while opening the device is
//! caught and reported the same way). `cudarc` looks for the unversioned
//! names (`libcuda.so`, `libcublas.so`): on a host with only the runtime
//! packages, link `libcublas.so -> libcublas.so.12` on the loader path.
//!
//! The product is `cublasSgemm` in the default math mode, which keeps FP32
//! inputs and FP32 accumulation (it never drops to TF32 unless a caller
//! opts in with `CUBLAS_TF32_TENSOR_OP_MATH`, which this backend does not):
//! exactly the [`Backend`] contract, so every result lies within the bound
//! [`crate::tolerance`] states. Row-major `C = A·B` is computed as the
//! column-major `Cᵀ = Bᵀ·Aᵀ`, i.e. `sgemm(N, N, n, n, n, B, A)`.
//!
//! # How to validate it on a GPU host
//!
//! No GPU is available where this crate is developed, so this backend is
//! compiled and clippy-checked here but not run. On a host with an NVIDIA
//! GPU and driver (and cuBLAS 12):
//!
//! 1. `cargo test -p dci-capacity --features cuda --release -- --ignored cuda`
//!    runs `cuda_matches_the_cpu_backend` (in this module): for n in
//!    {1, 7, 64, 1000, 4096} the GPU result must verify with
//!    [`crate::verify_rows`] on every row against the seed, and agree with
//!    [`crate::CpuBackend`] element-wise within [`crate::tolerance`].
//! 2. The same run checks that the full protocol ([`crate::respond`] and
//!    [`crate::verify`]) accepts a GPU-computed solution at n = 4096.
//! 3. Time `solve_with(&CudaBackend::new(0)?, &params)` at n = 16384 and
//!    compare with [`crate::expected_ms`] of the card's class: it must be
//!    well inside [`crate::deadline_ms`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaStream};

use crate::CapacityError;
use crate::backend::Backend;

/// cuBLAS SGEMM on one CUDA device.
pub struct CudaBackend {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    device: String,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend").field("device", &self.device).finish_non_exhaustive()
    }
}

fn no_gpu(why: impl Into<String>) -> CapacityError {
    CapacityError::NoGpu { why: why.into() }
}

fn failed(reason: impl std::fmt::Display) -> CapacityError {
    CapacityError::Backend { backend: "cuda", reason: reason.to_string() }
}

impl CudaBackend {
    /// Opens device `ordinal`. Without the driver library, cuBLAS or the
    /// device, this is [`CapacityError::NoGpu`] naming what is missing.
    pub fn new(ordinal: usize) -> Result<Self, CapacityError> {
        // SAFETY: these only try to dlopen the libraries by name and close
        // them again; no symbol is called.
        #[allow(unsafe_code)]
        let (driver, cublas) =
            unsafe { (cudarc::driver::sys::is_culib_present(), cudarc::cublas::sys::is_culib_present()) };
        if !driver {
            return Err(no_gpu("the NVIDIA driver library (libcuda) is not installed or not on the loader path"));
        }
        if !cublas {
            return Err(no_gpu("cuBLAS (libcublas) is not installed or not on the loader path"));
        }
        let opened = catch_unwind(AssertUnwindSafe(|| -> Result<Self, CapacityError> {
            let ctx =
                CudaContext::new(ordinal).map_err(|e| no_gpu(format!("cannot open CUDA device {ordinal}: {e}")))?;
            let device = ctx.name().unwrap_or_else(|_| format!("CUDA device {ordinal}"));
            let stream = ctx.default_stream();
            let blas = CudaBlas::new(stream.clone()).map_err(|e| no_gpu(format!("cannot start cuBLAS: {e}")))?;
            Ok(CudaBackend { stream, blas, device })
        }));
        opened.unwrap_or_else(|_| Err(no_gpu("the CUDA libraries failed to load (see the message above)")))
    }

    /// The device's name as the driver reports it (for
    /// [`crate::class_of_model`]).
    pub fn device_name(&self) -> &str {
        &self.device
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn matmul(&self, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<(), CapacityError> {
        if crate::backend::check_operands(n, a, b, c)? {
            return Ok(());
        }
        let dim = i32::try_from(n).map_err(|_| failed(format!("dimension {n} does not fit cuBLAS's int")))?;
        let da = self.stream.clone_htod(a).map_err(failed)?;
        let db = self.stream.clone_htod(b).map_err(failed)?;
        let mut dc = self.stream.alloc_zeros::<f32>(n * n).map_err(failed)?;
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: dim,
            n: dim,
            k: dim,
            alpha: 1.0f32,
            lda: dim,
            ldb: dim,
            beta: 0.0f32,
            ldc: dim,
        };
        // SAFETY: all three device buffers hold n*n f32 (checked and
        // allocated above) and the leading dimensions are n: the column-major
        // n x n operands cuBLAS reads and writes lie inside them.
        #[allow(unsafe_code)]
        unsafe { self.blas.gemm(cfg, &db, &da, &mut dc) }.map_err(failed)?;
        self.stream.memcpy_dtoh(&dc, c).map_err(failed)?;
        self.stream.synchronize().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use dci_proto::ChallengeParams;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::{CpuBackend, Params, Reveal, RevealExt, matrices, respond, solve_with, tolerance, verify, verify_rows};

    #[test]
    fn without_a_gpu_new_is_an_error_not_a_panic() {
        match CudaBackend::new(0) {
            Ok(gpu) => println!("a GPU is present: {}", gpu.device_name()),
            Err(e) => assert!(matches!(e, CapacityError::NoGpu { .. }), "{e}"),
        }
        assert!(matches!(CudaBackend::new(1 << 20), Err(CapacityError::NoGpu { .. })));
    }

    /// Needs a GPU: run with `--features cuda -- --ignored cuda`.
    #[test]
    #[ignore]
    fn cuda_matches_the_cpu_backend() {
        let gpu = CudaBackend::new(0).expect("a CUDA device");
        for n in [1usize, 7, 64, 1000, 4096] {
            let params = ChallengeParams {
                id: n as u64,
                seed: [n as u8; 32],
                n: n as u32,
                container: dci_model::NodeId([0; 32]),
                deadline_ms: 0,
            };
            let (a, b) = matrices(&params.seed, n);
            let mut on_gpu = vec![0.0f32; n * n];
            let mut on_cpu = vec![0.0f32; n * n];
            gpu.matmul(n, &a, &b, &mut on_gpu).unwrap();
            CpuBackend.matmul(n, &a, &b, &mut on_cpu).unwrap();
            for (g, c) in on_gpu.iter().zip(&on_cpu) {
                // Both are within tolerance of the exact value; n is a bound on the magnitude.
                assert!((f64::from(*g) - f64::from(*c)).abs() <= tolerance(n, n as f64), "n={n}");
            }
            let solution = solve_with(&gpu, &params).unwrap();
            let rows: Vec<u32> = (0..n as u32).step_by((n / 64).max(1)).collect();
            assert_eq!(verify_rows(&params, &solution.root(), &solution.open(&rows).unwrap(), &rows), Ok(()));
            let reveal = Reveal::draw(&mut ChaCha20Rng::seed_from_u64(n as u64), &params, Params::DEFAULT);
            assert_eq!(verify(&params, &solution.root(), &reveal, &respond(&solution, &reveal).unwrap()), Ok(()));
        }
    }
}
