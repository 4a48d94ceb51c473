//! Wasm jobs at submission: the request's limits checked first, then the
//! user's module read from the blob store and prepared once (on a blocking
//! thread: it is CPU work proportional to the module), the prepared bytes
//! stored where every worker fetches them (`GET /api/modules/...`), and the
//! inputs split into tasks. Also the inputs of a wasm job being resumed.
//! Nothing is stored until all of it has succeeded, so a refused module or
//! a missing input changes nothing.

use super::*;
use crate::inputs::TaskInputs;
use grid_kernels::wasm::{MountedFile, WasmInputs, WasmLimits, WasmParams};
use grid_protocol::api::WasmRequest;

/// A wasm request made into a job's kernel spec and tasks.
pub(super) struct PreparedJob {
    pub spec: KernelSpec,
    pub inputs: Option<WasmInputs>,
    pub tasks: TaskInputs,
}

impl Grid {
    pub(super) async fn prepare_wasm(
        &self,
        caller: &crate::users::Caller,
        request: WasmRequest,
        tasks: Option<u32>,
    ) -> Result<PreparedJob, ApiError> {
        let bad = |e: &dyn std::fmt::Display| ApiError::BadRequest(e.to_string());
        // What the caller may not use (another user's upload) is treated
        // exactly as what is not stored, so nothing tells the two apart.
        let named = std::iter::once(request.module)
            .chain(request.files.values().copied())
            .chain(request.inputs.iter().flat_map(WasmInputs::blobs));
        let hidden: std::collections::HashSet<ContentDigest> =
            named.filter(|d| !self.blob_readable(caller, d)).collect();
        let hidden = Arc::new(hidden);
        let defaults = WasmLimits::DEFAULT;
        // The source digest stands in for the prepared one until there is one.
        let mut params = WasmParams {
            module: request.module,
            source: request.module,
            name: request.name.unwrap_or_else(|| "kernel.wasm".into()),
            args: request.args,
            fuel: request.fuel.unwrap_or(defaults.fuel),
            memory_mib: request.memory_mib.unwrap_or(defaults.memory_mib),
            stdout_bytes: request.stdout_bytes.unwrap_or(defaults.stdout_bytes),
            stderr_bytes: request.stderr_bytes.unwrap_or(defaults.stderr_bytes),
            seed: request.seed.unwrap_or(0),
            description: request.description,
            files: Vec::new(),
        };
        // The files: each must be stored; workers learn its size up front.
        for (name, blob) in &request.files {
            let size = self
                .blobs
                .len(blob)
                .filter(|_| !hidden.contains(blob))
                .ok_or_else(|| {
                    bad(&format!(
                        "no blob {blob} for the file {name:?}: upload it first with \
                     PUT /api/blobs/{blob} (grid submit wasm --file does this for you)"
                    ))
                })?;
            params.files.push(MountedFile {
                name: name.clone(),
                blob: *blob,
                size,
            });
        }
        KernelSpec::Wasm(params.clone())
            .validate(1)
            .map_err(|e| bad(&e))?;

        // The inputs first: they are cheap to check and the likelier mistake.
        let inputs = request.inputs;
        let blobs = self.blobs.clone();
        let wanted = inputs.clone();
        let unseen = hidden.clone();
        let task_inputs = tokio::task::spawn_blocking(move || match &wanted {
            Some(inputs) => TaskInputs::load(
                inputs,
                tasks,
                |d| blobs.len(d).filter(|_| !unseen.contains(d)),
                |d| read_blob(&blobs, d),
            ),
            None => TaskInputs::empty(tasks.unwrap_or(1)),
        })
        .await
        .map_err(|e| ApiError::Internal(format!("loading inputs: {e}")))?
        .map_err(|e| bad(&e))?;

        let source = match self.blobs.read(&params.source).await {
            Ok(Some(_)) if hidden.contains(&params.source) => None,
            other => Some(other),
        };
        let source = match source.unwrap_or(Ok(None)) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(bad(&format!(
                    "no module {0}: upload it first with PUT /api/blobs/{0} \
                     (grid submit wasm does this for you)",
                    params.source
                )));
            }
            Err(e) => return Err(ApiError::Internal(format!("reading the module: {e}"))),
        };
        let limits = params.limits();
        let prepared = tokio::task::spawn_blocking(move || {
            grid_wasm_prep::prepare(&source, &limits, &grid_wasm_prep::Options::DEFAULT)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("preparing the module: {e}")))?
        .map_err(|e| bad(&format!("the module cannot run on the grid: {e}")))?;
        params.module = self
            .modules
            .put_bytes(&prepared.bytes)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(
            source = %params.source,
            prepared = %params.module,
            bytes = prepared.bytes.len(),
            tasks = task_inputs.len(),
            "module prepared"
        );
        Ok(PreparedJob {
            spec: KernelSpec::Wasm(params),
            inputs,
            tasks: task_inputs,
        })
    }
}

/// A job's inputs as its definition names them, read from `blobs`.
pub(super) fn load_inputs(
    blobs: &BlobStore,
    definition: &JobDefinition,
) -> Result<Option<TaskInputs>, crate::inputs::InputError> {
    definition
        .inputs
        .as_ref()
        .map(|inputs| {
            TaskInputs::load(
                inputs,
                Some(definition.tasks),
                |d| blobs.len(d),
                |d| read_blob(blobs, d),
            )
        })
        .transpose()
}

fn read_blob(blobs: &BlobStore, digest: &ContentDigest) -> std::io::Result<Option<Bytes>> {
    match std::fs::read(blobs.path(digest)) {
        Ok(bytes) => Ok(Some(Bytes::from(bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::testing::{join, native_hello, next_batch, open_grid};
    use grid_kernels::KernelKind;
    use grid_kernels::wasm::InputFile;
    use grid_protocol::TaskInput;
    use grid_protocol::messages::INLINE_INPUT_BYTES;

    /// Echoes stdin to stdout: a WASI command in miniature.
    const ECHO: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_read"
        (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write"
        (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 1024))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

    async fn upload(grid: &Grid, bytes: &[u8]) -> ContentDigest {
        grid.blobs().put_bytes(bytes).await.unwrap()
    }

    fn wasm_worker(grid: &Grid) -> mpsc::Receiver<Outbound> {
        let (outbox, queue) = mpsc::channel(64);
        let hello = Hello {
            kernels: Some(vec![KernelKind::Wasm]),
            ..native_hello(2, None)
        };
        grid.register_worker(hello, None, outbox).unwrap();
        grid.dispatch();
        queue
    }

    #[tokio::test]
    async fn a_module_is_prepared_once_and_its_tasks_carry_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let module = upload(&grid, &wat::parse_str(ECHO).unwrap()).await;
        let lines = upload(&grid, b"one\ntwo\nthree\n").await;
        let mut request = WasmRequest::new(module);
        request.inputs = Some(WasmInputs::Lines(lines));
        request.args = vec!["--fast".into()];
        let status = grid
            .submit(&grid.first_admin(), JobRequest::new(request))
            .await
            .unwrap();
        assert_eq!(status.tasks.total, 3);
        let KernelSpec::Wasm(params) = &status.spec else {
            panic!("{status:?}")
        };
        assert_eq!(params.source, module);
        assert_ne!(params.module, module, "the prepared module is another");
        assert!(grid.modules.contains(&params.module));
        assert_eq!(params.argv(), [b"kernel.wasm".to_vec(), b"--fast".to_vec()]);

        // A worker that runs only the built-in kernels is not sent the job.
        let (_plain, mut plain_queue) = join(&grid, 4);
        let mut queue = wasm_worker(&grid);
        let batch = next_batch(&mut queue).await;
        let inputs: Vec<&[u8]> = batch
            .inputs
            .iter()
            .map(|i| match i {
                TaskInput::Inline(bytes) => &bytes[..],
                TaskInput::Blob { .. } => panic!("small inputs travel inline"),
            })
            .collect();
        let expected: Vec<&[u8]> = batch
            .tasks
            .iter()
            .map(|t| [&b"one"[..], b"two", b"three"][t as usize])
            .collect();
        assert_eq!(inputs, expected);
        assert!(
            plain_queue.try_recv().is_err(),
            "no batch for a plain worker"
        );

        // The job comes back with its inputs after a restart.
        drop(grid);
        let grid = open_grid(dir.path()).await;
        let job = grid.job(status.id).unwrap();
        assert_eq!(
            job.inputs.as_ref().unwrap().input(2),
            TaskInput::Inline(Bytes::from_static(b"three"))
        );
    }

    /// With `verify_rate` 1, the coordinator re-runs every wasm task through
    /// the prepared module: a wrong stdout is caught, the right one passes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sampled_wasm_results_are_re_run_by_the_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        let grid = crate::grid::testing::open_grid_with(dir.path(), |c| c.verify_rate = 1.0).await;
        let module = upload(&grid, &wat::parse_str(ECHO).unwrap()).await;
        let lines = upload(&grid, b"right\n").await;
        let status = grid
            .submit(
                &grid.first_admin(),
                JobRequest::new(WasmRequest {
                    inputs: Some(WasmInputs::Lines(lines)),
                    ..WasmRequest::new(module)
                }),
            )
            .await
            .unwrap();
        let KernelSpec::Wasm(params) = status.spec else {
            panic!()
        };
        let (outbox, mut queue) = mpsc::channel(64);
        let worker = grid
            .register_worker(
                Hello {
                    kernels: Some(vec![KernelKind::Wasm]),
                    ..native_hello(1, None)
                },
                None,
                outbox,
            )
            .unwrap();
        grid.dispatch();
        let batch = next_batch(&mut queue).await;

        // The honest outcome, from the reference runtime.
        let prepared = std::fs::read(grid.modules.path(&params.module)).unwrap();
        let honest = std::thread::Builder::new()
            .stack_size(grid_wasm_runtime::THREAD_STACK)
            .spawn(move || {
                let kernel = grid_wasm_runtime::Engine::new()
                    .unwrap()
                    .compile(&prepared)
                    .unwrap();
                let config = grid_wasi::TaskConfig::of_task(&params, 0, b"right".to_vec());
                kernel.run(config, &params.limits()).unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(honest.stdout, b"right");
        let frame = |outcome: &grid_kernels::wasm::WasmOutcome| grid_protocol::ResultsFrame {
            batch: batch.batch,
            results: vec![grid_protocol::TaskResult {
                uploaded: None,
                digest_only: None,
                task: 0,
                output: Bytes::from(TaskOutput::Wasm(outcome.clone()).to_bytes()),
            }],
        };
        let lie = grid_kernels::wasm::WasmOutcome {
            stdout: b"wrong".to_vec(),
            ..honest.clone()
        };
        let resolved = grid.resolve_frame(&worker, &frame(&honest)).unwrap();
        let checked = grid
            .check_frame(&worker, &resolved, frame(&honest))
            .await
            .expect("the honest outcome passes");
        assert_eq!(checked.len(), 1);
        let counted = |grid: &Grid| grid.counters.results_verified_wrong.load(Ordering::Relaxed);
        assert_eq!(counted(&grid), 0);

        let resolved = grid.resolve_frame(&worker, &frame(&lie)).unwrap();
        let verdict = grid.check_frame(&worker, &resolved, frame(&lie)).await;
        assert!(verdict.is_err(), "the lie is refused");
        assert_eq!(counted(&grid), 1, "by the coordinator's own run");
        assert!(grid.scheduler().standing(worker.donor).quarantined);
        // The audit trail keeps the evidence.
        let trail = grid
            .audit_trail(&grid.first_admin(), 0, None)
            .await
            .unwrap();
        let entry = trail
            .iter()
            .find(|e| e.action == grid_protocol::api::AuditAction::DonorQuarantined)
            .expect("a quarantine entry");
        assert_eq!(entry.actor, "coordinator");
        assert_eq!(entry.subject, format!("donor {}", worker.donor));
        assert!(
            entry.detail.contains("task 0 of job")
                && entry.detail.contains("own computation differs"),
            "{entry:?}"
        );
    }

    #[tokio::test]
    async fn refused_modules_and_missing_inputs_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let submit = |request: WasmRequest| grid.submit(&admin, JobRequest::new(request));

        let absent = ContentDigest::of(b"absent");
        let err = submit(WasmRequest::new(absent)).await.unwrap_err();
        assert!(err.to_string().contains("no module sha256:"), "{err}");

        let sockets = wat::parse_str(
            r#"(module (import "wasi_snapshot_preview1" "sock_accept"
                 (func (param i32 i32 i32) (result i32)))
               (memory (export "memory") 1) (func (export "_start")))"#,
        )
        .unwrap();
        let module = upload(&grid, &sockets).await;
        let err = submit(WasmRequest::new(module)).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("the module cannot run on the grid")
                && err.to_string().contains("sock_accept"),
            "{err}"
        );

        let echo = upload(&grid, &wat::parse_str(ECHO).unwrap()).await;
        let mut request = WasmRequest::new(echo);
        request.inputs = Some(WasmInputs::Files(vec![InputFile {
            name: "a.txt".into(),
            blob: absent,
        }]));
        let err = submit(request).await.unwrap_err();
        assert!(err.to_string().contains("no blob sha256:"), "{err}");

        let mut request = WasmRequest::new(echo);
        request.memory_mib = Some(0);
        let err = submit(request).await.unwrap_err();
        assert!(err.to_string().contains("memory_mib"), "{err}");

        let err = grid
            .submit(
                &grid.first_admin(),
                JobRequest {
                    tasks: Some(3),
                    ..JobRequest::new(WasmRequest {
                        inputs: Some(WasmInputs::Lines(upload(&grid, b"1\n2\n").await)),
                        ..WasmRequest::new(echo)
                    })
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("make 2 tasks"), "{err}");
        assert!(grid.list_jobs(&grid.first_admin()).is_empty());
        assert!(
            std::fs::read_dir(grid.modules.dir()).unwrap().all(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                == "tmp"),
            "nothing prepared was stored"
        );
    }

    #[tokio::test]
    async fn without_inputs_a_wasm_job_has_its_task_count_and_batches_carry_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let echo = upload(&grid, &wat::parse_str(ECHO).unwrap()).await;
        let status = grid
            .submit(
                &grid.first_admin(),
                JobRequest {
                    tasks: Some(5),
                    ..JobRequest::new(WasmRequest::new(echo))
                },
            )
            .await
            .unwrap();
        assert_eq!(status.tasks.total, 5);
        let mut queue = wasm_worker(&grid);
        assert!(next_batch(&mut queue).await.inputs.is_empty());
    }

    #[tokio::test]
    async fn files_are_mounted_by_size_and_workers_holding_them_are_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let module = upload(&grid, &wat::parse_str(ECHO).unwrap()).await;
        let scene = upload(&grid, &[7u8; 1000]).await;
        let table = upload(&grid, b"a,b\n1,2\n").await;
        let large = vec![b'x'; INLINE_INPUT_BYTES as usize + 1];
        let large_input = upload(&grid, &large).await;
        let small_input = upload(&grid, b"small").await;

        // A file that was never uploaded is refused by name.
        let mut request = WasmRequest::new(module);
        request.files = [("scene.bin".to_string(), ContentDigest::of(b"absent"))].into();
        let refused = grid
            .submit(&grid.first_admin(), JobRequest::new(request))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("\"scene.bin\""), "{refused}");
        let mut request = WasmRequest::new(module);
        request.files = [("../etc".to_string(), scene)].into();
        assert!(
            grid.submit(&grid.first_admin(), JobRequest::new(request))
                .await
                .is_err()
        );

        // Job 1 reads the table, job 2 the scene (and its inputs are files).
        let mut first = WasmRequest::new(module);
        first.files = [("table.csv".to_string(), table)].into();
        let first = grid
            .submit(&grid.first_admin(), JobRequest::new(first))
            .await
            .unwrap();
        let mut second = WasmRequest::new(module);
        second.files = [("scene.bin".to_string(), scene)].into();
        second.inputs = Some(WasmInputs::Files(vec![
            InputFile {
                name: "large".into(),
                blob: large_input,
            },
            InputFile {
                name: "small".into(),
                blob: small_input,
            },
        ]));
        let second = grid
            .submit(&grid.first_admin(), JobRequest::new(second))
            .await
            .unwrap();
        let KernelSpec::Wasm(params) = &second.spec else {
            panic!("{second:?}")
        };
        assert_eq!(
            params.files,
            [MountedFile {
                name: "scene.bin".into(),
                blob: scene,
                size: 1000
            }]
        );

        // A worker that holds the scene is sent job 2 first, though it is younger.
        let (outbox, mut queue) = mpsc::channel(64);
        let hello = Hello {
            kernels: Some(vec![KernelKind::Wasm]),
            holds: vec![scene],
            ..native_hello(1, None)
        };
        grid.register_worker(hello, None, outbox).unwrap();
        grid.dispatch();
        let batch = next_batch(&mut queue).await;
        assert_eq!(batch.job, second.id);
        let capability = batch.capability.clone().expect("a capability");
        assert!(grid.capability_allows(&capability, &scene));
        assert!(grid.capability_allows(&capability, &large_input));
        assert!(!grid.capability_allows(&capability, &table), "job 1's file");
        assert!(!grid.capability_allows(&capability, &module), "the source");
        let expected: Vec<TaskInput> = batch
            .tasks
            .iter()
            .map(|t| match t {
                0 => TaskInput::Blob {
                    blob: large_input,
                    size: large.len() as u64,
                },
                _ => TaskInput::Inline(Bytes::from_static(b"small")),
            })
            .collect();
        assert_eq!(batch.inputs, expected);
        assert!(
            grid.counters.blob_cache_hits.load(Ordering::Relaxed) >= 1,
            "the batch went to a worker holding its file"
        );
        // Its capability closes with the batch.
        grid.on_return(&grid.workers.get(&1).unwrap(), batch.batch, &batch.tasks);
        assert!(!grid.capability_allows(&capability, &scene));
        assert_ne!(first.id, second.id);
    }

    /// An output over the frame threshold is stored under the batch's
    /// capability and named by its results frame: the coordinator reads it
    /// back, stores it as the task's output, and deletes the blob. A frame
    /// naming a blob its batch did not store condemns itself; a job whose
    /// outputs always fit in a frame gets no capability to store any.
    #[tokio::test]
    async fn outputs_too_large_for_a_frame_are_stored_named_read_and_released() {
        use grid_protocol::frame::DigestOnly;
        use grid_protocol::worker::OUTPUT_BLOB_BYTES;
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let module = upload(&grid, &wat::parse_str(ECHO).unwrap()).await;
        let (outbox, mut queue) = mpsc::channel(64);
        let hello = Hello {
            kernels: Some(vec![KernelKind::Wasm]),
            ..native_hello(1, None)
        };
        let worker = grid.register_worker(hello, None, outbox).unwrap();

        let small = grid
            .submit(
                &grid.first_admin(),
                JobRequest::new(WasmRequest {
                    stdout_bytes: Some(4096),
                    ..WasmRequest::new(module)
                }),
            )
            .await
            .unwrap();
        let batch = next_batch(&mut queue).await;
        assert_eq!(batch.job, small.id);
        assert_eq!(batch.capability, None, "its outputs always fit in a frame");
        grid.cancel(&grid.first_admin(), small.id).await.unwrap();

        let job = grid
            .submit(
                &grid.first_admin(),
                JobRequest::new(WasmRequest::new(module)),
            )
            .await
            .unwrap();
        let batch = next_batch(&mut queue).await;
        assert_eq!(batch.job, job.id);
        let capability = batch
            .capability
            .clone()
            .expect("a capability to store outputs");
        let outcome = |stdout: Vec<u8>| {
            TaskOutput::Wasm(grid_kernels::wasm::WasmOutcome {
                trap: None,
                exit_code: 0,
                fuel_used: 11,
                stdout,
                stderr: Vec::new(),
            })
        };
        let large = outcome(vec![b'x'; OUTPUT_BLOB_BYTES + 1]);
        let bytes = large.to_bytes();
        let sent = DigestOnly::of(&large, &bytes);
        let digest = ContentDigest(sent.digest);
        let body = |b: &[u8]| {
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(b))])
        };

        // A forged capability stores nothing.
        let forged = format!("{}.{}", batch.batch, "0".repeat(32));
        let refused = grid.put_output_blob(&forged, digest, body(&bytes)).await;
        assert!(
            matches!(refused, Err(ApiError::Forbidden(_))),
            "{refused:?}"
        );
        assert!(!grid.blobs().contains(&digest));

        // A frame naming a blob its batch did not store is refused whole.
        let frame = |entries: Vec<grid_protocol::TaskResult>| grid_protocol::ResultsFrame {
            batch: batch.batch,
            results: entries,
        };
        let uploaded = |task: u32, sent: DigestOnly| grid_protocol::TaskResult {
            task,
            output: Bytes::new(),
            digest_only: None,
            uploaded: Some(sent),
        };
        let (stored, created) = grid
            .put_output_blob(&capability, digest, body(&bytes))
            .await
            .unwrap();
        assert!(created);
        assert_eq!(stored.size, bytes.len() as u64);
        assert!(grid.blobs().contains(&digest));
        let entries = vec![uploaded(0, sent)];
        let resolved = grid
            .resolve_frame(&worker, &frame(entries.clone()))
            .unwrap();
        let checked = grid
            .check_frame(&worker, &resolved, frame(entries))
            .await
            .expect("the stored output is read back as the task's");
        let outcome = grid
            .record_frame(&worker, batch.batch, resolved, checked)
            .await
            .unwrap();
        assert_eq!(outcome.accepted, 1);
        assert_eq!(
            grid.task_output(&grid.first_admin(), job.id, 0)
                .await
                .unwrap()
                .len(),
            OUTPUT_BLOB_BYTES + 1,
            "the output as it was uploaded"
        );
        assert!(!grid.blobs().contains(&digest), "the blob goes once read");
        assert_eq!(
            grid.counters.output_blob_bytes.load(Ordering::Relaxed),
            bytes.len() as u64
        );
        assert_eq!(
            grid.job_status(&grid.first_admin(), job.id).unwrap().state,
            JobState::Done
        );

        let last = grid
            .submit(
                &grid.first_admin(),
                JobRequest::new(WasmRequest::new(module)),
            )
            .await
            .unwrap();
        let batch = next_batch(&mut queue).await;
        assert_eq!(batch.job, last.id);
        let never = grid_protocol::ResultsFrame {
            batch: batch.batch,
            results: vec![uploaded(0, sent)],
        };
        let resolved = grid.resolve_frame(&worker, &never).unwrap();
        let refused = grid.check_frame(&worker, &resolved, never).await;
        assert!(refused.is_err(), "a blob its batch never stored");
        assert!(grid.scheduler().standing(worker.donor).quarantined);
    }
}
