//! Users' kernels on the native worker: a prepared module fetched once from
//! the coordinator (`GET /api/modules/sha256:<hex>`, checked against its
//! digest), compiled once with wasmtime ([`grid_wasm_runtime`]) and shared
//! by the compute threads, then run once per task with the task's stdin,
//! the job's argv and limits, and the task's `random_get` seed.
//!
//! Threads that need the same module wait for the first one to fetch and
//! compile it; a module that cannot be had is remembered as an error, so its
//! tasks fail fast with the reason instead of each fetching it again.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use bytes::Bytes;
use grid_kernels::wasm::{WasmOutcome, WasmParams};
use grid_kernels::{ContentDigest, TaskOutput};
use grid_protocol::TaskInput;
use grid_protocol::worker::TaskRef;
use grid_wasi::{DataFile, TaskConfig};

use crate::blobs::{Blobs, CacheOptions};
use grid_wasm_runtime::{Engine, Kernel};
use parking_lot::Mutex;

/// Compiled kernels kept at once; the oldest go first past it.
const CACHED_KERNELS: usize = 16;

type Slot = Arc<OnceLock<Result<Kernel, String>>>;

/// The worker's compiled kernels, by prepared module.
pub(crate) struct WasmKernels {
    /// The coordinator's HTTP base, `http://host:port`.
    base: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    engine: OnceLock<Result<Engine, String>>,
    kernels: Mutex<(HashMap<ContentDigest, Slot>, Vec<ContentDigest>)>,
    /// The jobs' files and large inputs.
    pub(crate) blobs: Blobs,
}

impl WasmKernels {
    pub(crate) fn new(
        base: String,
        tls: &Arc<rustls::ClientConfig>,
        runtime: tokio::runtime::Handle,
        cache: &CacheOptions,
    ) -> anyhow::Result<WasmKernels> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((**tls).clone())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .context("cannot build an HTTP client")?;
        let blobs = Blobs::open(cache, base.clone(), http.clone(), runtime.clone())?;
        Ok(WasmKernels {
            blobs,
            base,
            http,
            runtime,
            engine: OnceLock::new(),
            kernels: Mutex::new((HashMap::new(), Vec::new())),
        })
    }

    /// Runs one task of a wasm job: its outcome, or why it could not run
    /// here (the module could not be had, or the engine failed outside the
    /// kernel), which the worker reports as the task's failure.
    pub(crate) fn run(&self, params: &WasmParams, task: &TaskRef) -> Result<TaskOutput, String> {
        let kernel = self.kernel(&params.module)?;
        let capability = task.capability.as_deref();
        let input = match &task.input {
            TaskInput::Inline(bytes) => bytes.clone(),
            TaskInput::Blob { blob, size } => self.blobs.get_uncached(blob, *size, capability)?,
        };
        let mut config = TaskConfig::of_task(params, task.index, input.to_vec());
        config.files = params
            .files
            .iter()
            .map(|file| {
                Ok(DataFile {
                    name: file.name.clone(),
                    bytes: self.blobs.get(&file.blob, file.size, capability)?,
                })
            })
            .collect::<Result<_, String>>()?;
        let outcome: WasmOutcome = kernel
            .run(config, &params.limits())
            .map_err(|e| e.to_string())?;
        Ok(TaskOutput::Wasm(outcome))
    }

    fn kernel(&self, module: &ContentDigest) -> Result<Kernel, String> {
        let slot = {
            let mut guard = self.kernels.lock();
            let (slots, order) = &mut *guard;
            if let Some(slot) = slots.get(module) {
                slot.clone()
            } else {
                if order.len() >= CACHED_KERNELS {
                    let oldest = order.remove(0);
                    slots.remove(&oldest);
                }
                order.push(*module);
                slots.entry(*module).or_default().clone()
            }
        };
        slot.get_or_init(|| self.load(module)).clone()
    }

    fn load(&self, module: &ContentDigest) -> Result<Kernel, String> {
        let engine = self
            .engine
            .get_or_init(|| Engine::new().map_err(|e| e.to_string()))
            .clone()?;
        let bytes = self
            .runtime
            .block_on(self.fetch(module))
            .map_err(|e| format!("cannot fetch the module {module}: {e:#}"))?;
        let kernel = engine.compile(&bytes).map_err(|e| e.to_string())?;
        tracing::info!(%module, bytes = bytes.len(), "kernel compiled");
        Ok(kernel)
    }

    async fn fetch(&self, module: &ContentDigest) -> anyhow::Result<Bytes> {
        let url = format!("{}/api/modules/{module}", self.base);
        let response = self.http.get(&url).send().await?.error_for_status()?;
        let bytes = response.bytes().await?;
        let got = ContentDigest::of(&bytes);
        anyhow::ensure!(got == *module, "the coordinator sent {got} instead");
        Ok(bytes)
    }
}
