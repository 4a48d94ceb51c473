//! The coordinator's own runs of sampled tasks (`verify_rate`): a built-in
//! kernel through `TaskRunner`, a wasm task through the same prepared module
//! and runtime as the native worker (`grid-wasm-runtime`, compiled once per
//! module and kept), on a thread with the stack wasmtime wants. A task whose
//! own run is not an outcome (an engine fault) is not judged: only a
//! difference between two outcomes condemns a worker.
//!
//! Sampled wasm tasks cost the coordinator what they cost a worker, up to
//! the job's fuel limit each; that is the price of `--verify-rate` on wasm
//! jobs, which is off by default.

use std::sync::Mutex;

use bytes::Bytes;
use grid_kernels::wasm::WasmParams;
use grid_kernels::{ContentDigest, KernelSpec, TaskOutput, TaskRunner};
use grid_protocol::TaskInput;
use grid_wasi::{DataFile, TaskConfig};
use grid_wasm_runtime::{Engine, Kernel, THREAD_STACK};

use crate::blobs::BlobStore;

/// Compiled kernels kept for verification at once.
const KEPT: usize = 8;

/// One sampled task: its index, its input (a wasm task's stdin) and the
/// output bytes the worker sent.
#[derive(Debug)]
pub struct Sample {
    pub task: u32,
    pub input: TaskInput,
    pub output: Bytes,
}

/// The coordinator's means of re-running tasks.
pub struct Verifier {
    /// The prepared modules.
    modules: BlobStore,
    /// The uploads: a job's files and large inputs.
    blobs: BlobStore,
    engine: Mutex<Option<Engine>>,
    kernels: Mutex<Vec<(ContentDigest, Kernel)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("modules", &self.modules.dir())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(modules: BlobStore, blobs: BlobStore) -> Verifier {
        Verifier {
            modules,
            blobs,
            engine: Mutex::new(None),
            kernels: Mutex::new(Vec::new()),
        }
    }

    /// Re-runs every sample of a job with `spec` and `tasks` tasks: the first
    /// task whose output differs from the worker's, if any. Blocking.
    pub fn first_wrong(
        &self,
        spec: &KernelSpec,
        tasks: u32,
        samples: Vec<Sample>,
    ) -> Result<Option<u32>, String> {
        match spec {
            KernelSpec::Wasm(params) => {
                let kernel = self.kernel(&params.module)?;
                let params = params.clone();
                let files = self.files(&params)?;
                let blobs = self.blobs.clone();
                // wasmtime wants a deep stack: a thread of its own has one.
                std::thread::Builder::new()
                    .name("grid-verify".into())
                    .stack_size(THREAD_STACK)
                    .spawn(move || {
                        for sample in samples {
                            let input = match sample.input {
                                TaskInput::Inline(bytes) => bytes.to_vec(),
                                TaskInput::Blob { blob, .. } => {
                                    match std::fs::read(blobs.path(&blob)) {
                                        Ok(bytes) => bytes,
                                        Err(_) => continue,
                                    }
                                }
                            };
                            let mut config = TaskConfig::of_task(&params, sample.task, input);
                            config.files = files.clone();
                            let Ok(outcome) = kernel.run(config, &params.limits()) else {
                                continue;
                            };
                            if TaskOutput::Wasm(outcome).to_bytes() != sample.output {
                                return Some(sample.task);
                            }
                        }
                        None
                    })
                    .map_err(|e| format!("cannot start a verification thread: {e}"))?
                    .join()
                    .map_err(|_| "a verification run panicked".to_string())
            }
            spec => {
                let mut runner = TaskRunner::new();
                for sample in samples {
                    let Ok(own) = runner.run(spec, tasks, sample.task) else {
                        continue;
                    };
                    if own.to_bytes() != sample.output {
                        return Ok(Some(sample.task));
                    }
                }
                Ok(None)
            }
        }
    }

    /// A job's files, read from the store (a file missing there is an
    /// error: the job cannot be judged).
    fn files(&self, params: &WasmParams) -> Result<Vec<DataFile>, String> {
        params
            .files
            .iter()
            .map(|file| {
                std::fs::read(self.blobs.path(&file.blob))
                    .map(|bytes| DataFile {
                        name: file.name.clone(),
                        bytes: Bytes::from(bytes),
                    })
                    .map_err(|e| format!("cannot read the file {}: {e}", file.blob))
            })
            .collect()
    }

    /// A prepared module, compiled once and kept.
    fn kernel(&self, module: &ContentDigest) -> Result<Kernel, String> {
        if let Some((_, kernel)) = crate::sync::lock(&self.kernels, "verifier kernels")
            .iter()
            .find(|(d, _)| d == module)
        {
            return Ok(kernel.clone());
        }
        let engine = {
            let mut engine = crate::sync::lock(&self.engine, "verifier engine");
            match &*engine {
                Some(engine) => engine.clone(),
                None => {
                    let made = Engine::new().map_err(|e| e.to_string())?;
                    *engine = Some(made.clone());
                    made
                }
            }
        };
        let path = self.modules.path(module);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read the prepared module {module}: {e}"))?;
        let kernel = engine.compile(&bytes).map_err(|e| e.to_string())?;
        let mut kernels = crate::sync::lock(&self.kernels, "verifier kernels");
        if kernels.len() >= KEPT {
            kernels.remove(0);
        }
        kernels.push((*module, kernel.clone()));
        Ok(kernel)
    }
}
