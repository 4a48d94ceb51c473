//! What each command does: `serve` and `worker` run the coordinator and the
//! native worker in this process; the client commands talk to a coordinator
//! over HTTP and print what it answers.
//!
//! Exit codes: 0 success; 1 an error (unreachable coordinator, refused token,
//! invalid request), with a one-line reason on stderr; 2 a malformed command
//! line; 3 the job failed or was cancelled (`--wait`, `watch`); 4 `results`
//! of a job being rechecked, without `--allow-partial`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use grid_coordinator::config::DEFAULT_DATA_DIR;
use grid_coordinator::store::Durability;
use grid_coordinator::{ServerConfig, auth};
use grid_kernels::wasm::{InputFile, WasmInputs, WasmLimits, WasmOutcome, WasmParams};
use grid_kernels::{ContentDigest, JobResult, KernelKind, KernelSpec};
use grid_protocol::api::{
    ExportFormat, JobRequest, JobState, JobStatus, UserLimits, UserRequest, WasmRequest,
};
use grid_worker_native::{self as worker, WorkerOptions};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use crate::args::{
    BlobCommand, Cli, Command, KernelArgs, RunArgs, ServeArgs, SubmitArgs, SyncMode, TokenCommand,
    UserCommand, WasmArgs, WorkerArgs,
};
use crate::client::Client;
use crate::print::{
    print_audit, print_blobs, print_jobs, print_json, print_status, print_token, print_users,
    print_workers,
};

/// The file `grid results JOB -o DIR` lists a wasm job's tasks in.
const INDEX_FILE: &str = "index.json";

/// The exit code for a job that failed or was cancelled.
const JOB_FAILED: u8 = 3;
/// The exit code of `results` for a job being rechecked.
const EXIT_RECHECKING: u8 = 4;

pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve(args) => serve(&cli, args).await,
        Command::Worker(args) => run_worker(&cli, args).await,
        Command::Submit(args) => submit(&client(&cli)?, args).await,
        Command::Status { job, json } => {
            let status = client(&cli)?.status(*job).await?;
            if *json {
                print_json(&status);
            } else {
                print_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs {
            json,
            limit,
            before,
            state,
        } => {
            let query = grid_protocol::api::JobQuery {
                limit: *limit,
                before: *before,
                states: state.clone(),
            };
            let (jobs, next) = client(&cli)?.jobs_page(&query).await?;
            if *json {
                print_json(&jobs);
            } else {
                print_jobs(&jobs);
            }
            if let Some(before) = next {
                eprintln!("more: {}", next_jobs_command(&query, before));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { job } => {
            let status = watch_job(&client(&cli)?, *job).await?;
            print_status(&status);
            Ok(exit_for(&status))
        }
        Command::Results {
            job,
            format,
            output,
            allow_partial,
        } => {
            results(
                &client(&cli)?,
                *job,
                *format,
                output.as_deref(),
                *allow_partial,
            )
            .await
        }
        Command::Cancel { job, json } => {
            let status = client(&cli)?.cancel(*job).await?;
            if *json {
                print_json(&status);
            } else {
                println!("job {job} cancelled");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rm {
            job,
            export,
            format,
        } => {
            let client = client(&cli)?;
            if let Some(path) = export {
                // The same export as `grid results -o FILE`; nothing is
                // removed unless it succeeded.
                let exported = results(&client, *job, *format, Some(path), false).await?;
                if exported != ExitCode::SUCCESS {
                    return Ok(exported);
                }
            }
            client.remove_job(*job).await?;
            println!("job {job} removed");
            Ok(ExitCode::SUCCESS)
        }
        Command::Blob { command } => blob(&client(&cli)?, command).await,
        Command::User { command } => user(&client(&cli)?, command).await,
        Command::Audit { since, json } => {
            let now = grid_coordinator::clock::unix_ms();
            let from = since.map_or(0, |span| {
                now.saturating_sub(u64::try_from(span.0.as_millis()).unwrap_or(u64::MAX))
            });
            let entries = client(&cli)?.audit(from).await?;
            if *json {
                print_json(&entries);
            } else {
                print_audit(&entries, now);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Rotate { name, json },
        } => {
            let rotated = client(&cli)?.rotate_token(name).await?;
            if *json {
                print_json(&rotated);
            } else {
                print_token(&rotated);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { job } => {
            client(&cli)?.pause(*job).await?;
            println!("job {job} paused");
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { job } => {
            client(&cli)?.resume(*job).await?;
            println!("job {job} resumed");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run_local(args),
        Command::Workers { json, limit, after } => {
            let query = grid_protocol::api::WorkerQuery {
                limit: *limit,
                after: *after,
            };
            let (workers, next) = client(&cli)?.workers_page(&query).await?;
            if *json {
                print_json(&workers);
            } else {
                print_workers(&workers);
            }
            if let Some(after) = next {
                eprintln!("more: grid workers --limit {limit} --after {after}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The token for client commands: `--token`, `GRID_TOKEN`, or ./grid-data/token.
fn client(cli: &Cli) -> anyhow::Result<Client> {
    let token = cli.token.clone().or_else(|| {
        std::fs::read_to_string(auth::token_path(Path::new(DEFAULT_DATA_DIR)))
            .ok()
            .map(|t| t.trim().to_string())
    });
    Client::with_ca(&cli.url, token, cli.ca_cert.as_deref())
}

async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let (token, token_note) = match &cli.token {
        Some(token) if !token.trim().is_empty() => (
            token.trim().to_string(),
            "from --token / GRID_TOKEN".to_string(),
        ),
        Some(_) => bail!("the token must not be empty"),
        None => {
            let (token, created) = auth::load_or_create(&args.data)?;
            let path = auth::token_path(&args.data);
            (
                token,
                format!(
                    "{}{}",
                    path.display(),
                    if created { " (just created)" } else { "" }
                ),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let mut config = ServerConfig::new(args.data.clone(), token);
    if let Some(www) = &args.www {
        config.www_dir = www.clone();
    }
    config.durability = match args.sync {
        SyncMode::Full => Durability::Full,
        SyncMode::Normal => Durability::Normal,
    };
    for (name, rate) in [
        ("--verify-rate", args.verify_rate),
        ("--spot-check-rate", args.spot_check_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            bail!("{name} must be between 0 and 1, got {rate}");
        }
    }
    if args.max_message_rate <= 0.0
        || args.max_connections == 0
        || args.max_connections_per_address == 0
    {
        bail!("connection and message limits must be positive");
    }
    config.max_connections = args.max_connections;
    config.max_connections_per_address = args.max_connections_per_address;
    config.max_messages_per_second = args.max_message_rate;
    config.message_burst = args.max_message_rate * 4.0;
    config.verify_rate = args.verify_rate;
    config.scheduler.trust_after = (args.trust_after > 0).then_some(args.trust_after);
    config.scheduler.spot_check_rate = args.spot_check_rate;
    config.distinct_addresses = !args.same_address_replicas;
    config.client_address_header = args.client_address_header.clone();
    config.blob_retention = args.blob_retention.0;
    config.keep_finished = args.keep_finished.map(|span| span.0);
    config.donor_frame_ancestors = args.donor_frame_ancestors.clone();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(grid_coordinator::tls::acceptor(cert, key)?);
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{local}");
    // Local workers reach the coordinator on loopback; over TLS by the name
    // a development certificate carries, trusting that certificate.
    let (local_url, local_ca) = match &args.tls_cert {
        Some(cert) => (
            format!("https://localhost:{}", local.port()),
            Some(cert.clone()),
        ),
        None => (base.clone(), None),
    };
    let token_for_url = config.token.clone();
    println!("browsergrid coordinator on {base}");
    println!("  donor page     {base}/");
    println!("  dashboard      {base}/dashboard#token={token_for_url}");
    println!("  API token      {token_note}");
    println!(
        "  data           {}",
        args.data.join("grid.sqlite3").display()
    );
    if args.local_workers > 0 {
        println!("  local workers  {}", args.local_workers);
    }
    let _ = std::io::stdout().flush();

    let (stop_workers, stopping) = watch::channel(false);
    let workers: Vec<_> = (0..args.local_workers)
        .map(|i| {
            let options = WorkerOptions {
                cache: Default::default(),
                url: local_url.clone(),
                threads: 1,
                name: Some(format!("local-{}", i + 1)),
                ca_cert: local_ca.clone(),
                for_users: Vec::new(),
            };
            let stopping = stopping.clone();
            tokio::spawn(async move {
                if let Err(error) = worker::run(options, stopping).await {
                    tracing::error!("local worker stopped: {error:#}");
                }
            })
        })
        .collect();
    // On a signal the local workers leave first (handing back their tasks),
    // then the coordinator closes.
    let signal = async move {
        shutdown_signal().await;
        let _ = stop_workers.send(true);
        for worker in workers {
            let _ = tokio::time::timeout(Duration::from_secs(2), worker).await;
        }
    };
    grid_coordinator::run(listener, config, signal).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_worker(cli: &Cli, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let threads = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let options = WorkerOptions {
        cache: worker::CacheOptions {
            dir: args.cache.clone(),
            bytes: args.cache_size,
        },
        url: cli.url.clone(),
        threads,
        name: args.name.clone(),
        ca_cert: cli.ca_cert.clone(),
        for_users: args.for_users.clone(),
    };
    worker::socket_url(&options.url)?;
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    eprintln!("grid worker: {threads} thread(s), coordinator {}", cli.url);
    worker::run(options, stopping).await?;
    Ok(ExitCode::SUCCESS)
}

async fn submit(client: &Client, args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut request = match (&args.kernel, &args.file) {
        (Some(KernelArgs::Wasm(wasm)), None) => JobRequest::new(wasm_request(client, wasm).await?),
        (Some(kernel), None) => JobRequest::new(kernel.spec().expect("a built-in kernel")),
        (None, Some(file)) => {
            let body =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            JobRequest::decode(&body)
                .with_context(|| format!("{} is not a job request", file.display()))?
        }
        (None, None) => bail!(
            "name a kernel (primes, mandelbrot, montecarlo-pi, hashsearch, wasm) or pass --file job.json"
        ),
        (Some(_), Some(_)) => bail!("pass either a kernel or --file, not both"),
    };
    // Command-line flags override the file.
    let common = &args.common;
    request.tasks = common.tasks.or(request.tasks);
    request.redundancy = common.redundancy.or(request.redundancy);
    request.quorum = common.quorum.or(request.quorum);
    request.priority = common.priority.or(request.priority);
    let status = client.submit(&request).await?;
    let id = status.id;
    if !args.common.wait {
        if args.common.json {
            print_json(&status);
        } else {
            println!("submitted job {id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.common.json {
        eprintln!("submitted job {id}");
    }
    let status = watch_job(client, id).await?;
    if args.common.json {
        print_json(&status);
    } else {
        print_status(&status);
    }
    Ok(exit_for(&status))
}

/// Uploads a wasm job's module and inputs (what the coordinator lacks) and
/// names them in a request.
async fn wasm_request(client: &Client, args: &WasmArgs) -> anyhow::Result<WasmRequest> {
    let module = upload(client, &args.module).await?;
    let inputs = match (&args.lines, &args.inputs) {
        (Some(lines), _) => Some(WasmInputs::Lines(upload(client, lines).await?)),
        (None, Some(dir)) => {
            let mut files = Vec::new();
            let mut uploaded = 0;
            for path in input_files(dir)? {
                let (blob, sent) = client.ensure_file(&path, None).await?;
                uploaded += usize::from(sent);
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{} has no UTF-8 file name", path.display()))?
                    .to_string();
                files.push(InputFile { name, blob });
            }
            eprintln!(
                "inputs: {} files in {} ({uploaded} uploaded, {} already there)",
                files.len(),
                dir.display(),
                files.len() - uploaded
            );
            Some(WasmInputs::Files(files))
        }
        (None, None) => None,
    };
    let mut files = std::collections::BTreeMap::new();
    for (name, path) in &args.files {
        if files
            .insert(name.clone(), upload(client, path).await?)
            .is_some()
        {
            bail!("--file {name}=... is given twice");
        }
    }
    Ok(WasmRequest {
        files,
        module,
        inputs,
        name: Some(program_name(&args.module, args.name.as_deref())),
        args: split_args(args.args.as_deref()),
        description: args.description.clone(),
        fuel: args.limits.fuel,
        memory_mib: args.limits.memory_mib,
        stdout_bytes: args.limits.stdout_bytes,
        stderr_bytes: None,
        seed: args.limits.seed,
    })
}

/// Files at least this large get a progress bar (on a terminal).
const PROGRESS_BYTES: u64 = 8 << 20;

/// Uploads a file unless the coordinator has it, with a progress bar on
/// stderr for a large one when stderr is a terminal, and says which on
/// stderr: its digest.
async fn upload(client: &Client, path: &Path) -> anyhow::Result<ContentDigest> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let bar = (size >= PROGRESS_BYTES && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {msg:9} [{bar:32.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(path.display().to_string());
        bar.set_message("hashing");
        bar
    });
    let outcome = client.ensure_file(path, bar.as_ref()).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (digest, sent) = outcome?;
    note_upload(path, sent);
    Ok(digest)
}

/// `grid blob put`, `ls` and `rm`.
async fn user(client: &Client, command: &UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            name,
            admin,
            weight,
            max_running,
            max_storage,
            max_queued,
            json,
        } => {
            let made = client
                .add_user(&UserRequest {
                    name: name.clone(),
                    admin: *admin,
                    weight: *weight,
                    limits: UserLimits {
                        max_running: *max_running,
                        max_storage: *max_storage,
                        max_queued: *max_queued,
                    },
                })
                .await?;
            if *json {
                print_json(&made);
            } else {
                print_token(&made);
            }
        }
        UserCommand::Ls { json } => {
            let users = client.users().await?;
            if *json {
                print_json(&users);
            } else {
                print_users(&users);
            }
        }
        UserCommand::Rm { name } => {
            client.remove_user(name).await?;
            println!("removed user {name}; its token no longer works");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn blob(client: &Client, command: &BlobCommand) -> anyhow::Result<ExitCode> {
    match command {
        BlobCommand::Put { files } => {
            for path in files {
                let digest = upload(client, path).await?;
                println!("{digest}");
            }
        }
        BlobCommand::Ls { json } => {
            let blobs = client.blobs().await?;
            if *json {
                print_json(&blobs);
            } else {
                print_blobs(&blobs, grid_coordinator::clock::unix_ms());
            }
        }
        BlobCommand::Rm { digests } => {
            for digest in digests {
                client.delete_blob(*digest).await?;
                println!("removed {digest}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn note_upload(path: &Path, sent: bool) {
    eprintln!(
        "{}: {}",
        path.display(),
        if sent { "uploaded" } else { "already there" }
    );
}

/// The regular files of `dir`, in name order (hidden ones skipped).
fn input_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("{} holds no input files", dir.display());
    }
    Ok(files)
}

/// argv[0]: `--name`, else the module's file name.
fn program_name(module: &Path, name: Option<&str>) -> String {
    name.map(str::to_string).unwrap_or_else(|| {
        module.file_name().map_or_else(
            || "kernel.wasm".into(),
            |n| n.to_string_lossy().into_owned(),
        )
    })
}

fn split_args(args: Option<&str>) -> Vec<String> {
    args.map(|a| a.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `grid run`: prepares the module as the coordinator would and runs one
/// task with this process's stdin, as a worker would.
fn run_local(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let source = std::fs::read(&args.module)
        .with_context(|| format!("cannot read {}", args.module.display()))?;
    let defaults = WasmLimits::DEFAULT;
    let params = WasmParams {
        module: ContentDigest::of(&source),
        source: ContentDigest::of(&source),
        name: program_name(&args.module, args.name.as_deref()),
        args: args.args.clone(),
        fuel: args.limits.fuel.unwrap_or(defaults.fuel),
        memory_mib: args.limits.memory_mib.unwrap_or(defaults.memory_mib),
        stdout_bytes: args.limits.stdout_bytes.unwrap_or(defaults.stdout_bytes),
        stderr_bytes: defaults.stderr_bytes,
        seed: args.limits.seed.unwrap_or(0),
        description: None,
        files: Vec::new(),
    };
    KernelSpec::Wasm(params.clone()).validate(1)?;
    let limits = params.limits();
    let prepared = grid_wasm_prep::prepare(&source, &limits, &grid_wasm_prep::Options::DEFAULT)
        .with_context(|| format!("{} cannot run on the grid", args.module.display()))?;
    // The task is keyed by the prepared module, as on the grid.
    let params = WasmParams {
        module: ContentDigest::of(&prepared.bytes),
        ..params
    };
    let mut stdin = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut stdin).context("cannot read stdin")?;
    let mut config = grid_wasi::TaskConfig::of_task(&params, args.task, stdin);
    let mut files = Vec::new();
    for (name, path) in &args.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        files.push(grid_wasi::DataFile {
            name: name.clone(),
            bytes: bytes.into(),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    config.files = files;
    // wasmtime wants a deep stack; a thread of its own has one.
    let outcome = std::thread::Builder::new()
        .stack_size(grid_wasm_runtime::THREAD_STACK)
        .spawn(move || -> anyhow::Result<WasmOutcome> {
            let kernel = grid_wasm_runtime::Engine::new()?.compile(&prepared.bytes)?;
            Ok(kernel.run(config, &limits)?)
        })
        .context("cannot start a thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the runtime panicked"))??;
    std::io::stdout().write_all(&outcome.stdout)?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(&outcome.stderr)?;
    let output = ContentDigest::of(&outcome.stdout);
    match outcome.trap {
        Some(trap) => {
            eprintln!(
                "grid: trapped ({trap}) after {} fuel, stdout {output}",
                outcome.fuel_used
            );
            Ok(ExitCode::from(JOB_FAILED))
        }
        None => {
            eprintln!(
                "grid: exit code {}, {} fuel, stdout {output}",
                outcome.exit_code, outcome.fuel_used
            );
            Ok(ExitCode::from(outcome.exit_code as u8))
        }
    }
}

fn exit_for(status: &JobStatus) -> ExitCode {
    match status.state {
        JobState::Done => ExitCode::SUCCESS,
        state => {
            let error = status.error.as_deref().unwrap_or("");
            eprintln!(
                "error: job {} {state}{}{error}",
                status.id,
                if error.is_empty() { "" } else { ": " }
            );
            ExitCode::from(JOB_FAILED)
        }
    }
}

/// Polls a job until it finishes, drawing a progress bar on a terminal.
async fn watch_job(client: &Client, job: u64) -> anyhow::Result<JobStatus> {
    let mut status = client.status(job).await?;
    let bar = ProgressBar::new(status.tasks.total.into());
    bar.set_style(
        ProgressStyle::with_template("{spinner} job {prefix} [{bar:32.cyan/blue}] {pos}/{len} tasks {percent}%  {per_sec}  ETA {eta}  {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{job} {}", status.spec.kind()));
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut failures = 0;
    loop {
        bar.set_position(status.tasks.done.into());
        bar.set_message(status.state.name());
        if status.state.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        match client.status(job).await {
            Ok(next) => {
                status = next;
                failures = 0;
            }
            // Ride out a coordinator restart.
            Err(error) if failures < 120 => {
                failures += 1;
                bar.set_message(format!("waiting for the coordinator: {error}"));
            }
            Err(error) => return Err(error),
        }
    }
    bar.finish_and_clear();
    Ok(status)
}

async fn results(
    client: &Client,
    job: u64,
    format: ExportFormat,
    output: Option<&Path>,
    allow_partial: bool,
) -> anyhow::Result<ExitCode> {
    let status = client.status(job).await?;
    if status.state == JobState::Rechecking {
        eprintln!(
            "job {job} is being rechecked: answers that came from a donor caught lying since are \
             computed again ({} revised so far), and the result may still change",
            status.revised
        );
        if !allow_partial {
            eprintln!("wait for it (grid watch {job}), or pass --allow-partial to export it now");
            return Ok(ExitCode::from(EXIT_RECHECKING));
        }
    }
    if let (ExportFormat::Json, Some(dir)) = (format, output)
        && status.spec.kind() == KernelKind::Wasm
    {
        return wasm_outputs(client, job, dir).await;
    }
    let bytes = client.results(job, format).await?;
    match output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
        None => {
            if matches!(format, ExportFormat::Png) && std::io::stdout().is_terminal() {
                bail!("a PNG is binary; write it to a file with -o FILE");
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            if matches!(format, ExportFormat::Json) {
                stdout.write_all(b"\n")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A wasm job's results as a directory: each task's stdout as a file named
/// after the task, and `index.json` (every task's exit code, fuel, output
/// digest, trap and stderr).
async fn wasm_outputs(client: &Client, job: u64, dir: &Path) -> anyhow::Result<ExitCode> {
    let JobResult::Wasm { tasks } = client.result(job).await? else {
        bail!("job {job} is not a wasm job");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let index = dir.join(INDEX_FILE);
    std::fs::write(
        &index,
        serde_json::to_vec_pretty(&JobResult::Wasm {
            tasks: tasks.clone(),
        })?,
    )
    .with_context(|| format!("cannot write {}", index.display()))?;
    let mut bytes = 0;
    for task in &tasks {
        let stdout = client.task_output(job, task.task).await?;
        // Names are plain file names (the coordinator checks); anything
        // else is written under the task's number rather than elsewhere.
        let plain = !task.name.is_empty()
            && !task.name.starts_with('.')
            && !task.name.contains(['/', '\\'])
            && task.name != INDEX_FILE;
        let path = if plain {
            dir.join(&task.name)
        } else {
            dir.join(task.task.to_string())
        };
        std::fs::write(&path, &stdout)
            .with_context(|| format!("cannot write {}", path.display()))?;
        bytes += stdout.len();
    }
    eprintln!(
        "wrote {} outputs ({bytes} bytes) and {INDEX_FILE} to {}",
        tasks.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The `grid jobs` command line that lists the page after one that ended
/// above `before`, with the same filters.
fn next_jobs_command(query: &grid_protocol::api::JobQuery, before: u64) -> String {
    let mut command = format!("grid jobs --before {before}");
    if query.limit != grid_protocol::api::JobQuery::DEFAULT_LIMIT {
        command.push_str(&format!(" --limit {}", query.limit));
    }
    if !query.states.is_empty() {
        let names: Vec<&str> = query.states.iter().map(|s| s.name()).collect();
        command.push_str(&format!(" --state {}", names.join(",")));
    }
    command
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
