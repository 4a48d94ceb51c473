//! Blobs end to end, through the `grid` command line and raw sockets:
//! `grid blob put` prints each file's SHA-256 (computed here) and uploads a
//! file once (the stored file is not written again); `grid blob ls` counts
//! the jobs that use each blob; a blob in use cannot be deleted, a live job
//! cannot be removed, and once a finished job is removed (`grid rm`) its
//! blobs go after the retention while a blob another job uses stays. An
//! upload cut off halfway, or one that finds the disk full, leaves no blob,
//! no row and nothing in `tmp/`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grid_kernels::ContentDigest;
use grid_protocol::api::{BlobListing, JobState, JobStatus};
use grid_tests::disk::SmallDisk;
use grid_tests::{GridProcess, TOKEN, TestGrid, TestWorker, grid_cli_async, metrics, raw};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

/// Does nothing, successfully: jobs of it finish as soon as a worker runs them.
const NOTHING: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// The digest of `bytes`, computed here rather than by the code under test.
fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn blob_file(data: &Path, digest: &str) -> PathBuf {
    data.join("blobs").join(digest)
}

/// What is left in the uploads' temporary directory.
fn temporaries(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("blobs/tmp"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// `grid ARGS` that must succeed: its stdout.
async fn ok(url: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = grid_cli_async(url, args).await;
    assert_eq!(code, 0, "grid {args:?}: {stderr}");
    stdout
}

/// `grid ARGS` that must fail with one line on stderr: that line.
async fn refused(url: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = grid_cli_async(url, args).await;
    assert_eq!(code, 1, "grid {args:?}: {stdout} {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "grid {args:?}: {stderr}");
    lines[0].to_string()
}

async fn listing(url: &str) -> Vec<BlobListing> {
    let stdout = ok(url, &["blob", "ls", "--json"]).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn entry<'a>(blobs: &'a [BlobListing], digest: &str) -> Option<&'a BlobListing> {
    blobs.iter().find(|b| b.digest.to_string() == digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_uploaded_once_and_held_by_the_jobs_that_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let grid = TestGrid::start(&data).await;
    let url = &grid.url;
    let module_bytes = wat::parse_str(NOTHING).unwrap();
    let lines_bytes = b"one\ntwo\nthree\n".to_vec();
    let module = write(dir.path(), "nothing.wasm", &module_bytes);
    let lines = write(dir.path(), "lines.txt", &lines_bytes);
    let (module_digest, lines_digest) = (sha256(&module_bytes), sha256(&lines_bytes));

    // Each digest on a line of its own, for scripts; the notes on stderr.
    let (code, stdout, stderr) = grid_cli_async(url, &["blob", "put", &module, &lines]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("{module_digest}\n{lines_digest}\n"));
    assert_eq!(stderr.matches("uploaded").count(), 2, "{stderr}");
    let stored = std::fs::metadata(blob_file(&data, &lines_digest)).unwrap();
    assert_eq!(
        std::fs::read(blob_file(&data, &lines_digest)).unwrap(),
        lines_bytes
    );

    // Again: the same digest, and the stored file is not written again.
    let (code, stdout, stderr) = grid_cli_async(url, &["blob", "put", &lines]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), lines_digest);
    assert!(stderr.contains("already there"), "{stderr}");
    let again = std::fs::metadata(blob_file(&data, &lines_digest)).unwrap();
    assert_eq!(
        (again.ino(), again.mtime_nsec(), again.mtime()),
        (stored.ino(), stored.mtime_nsec(), stored.mtime())
    );

    let blobs = listing(url).await;
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    let listed = entry(&blobs, &lines_digest).unwrap();
    assert_eq!(
        (listed.size, listed.references),
        (lines_bytes.len() as u64, 0)
    );

    // A job (queued: no worker) holds both.
    let stdout = ok(
        url,
        &[
            "submit", "wasm", "--module", &module, "--lines", &lines, "--json",
        ],
    )
    .await;
    let job: JobStatus = serde_json::from_str(&stdout).unwrap();
    let id = job.id.to_string();
    let blobs = listing(url).await;
    for digest in [&module_digest, &lines_digest] {
        assert_eq!(entry(&blobs, digest).unwrap().references, 1, "{blobs:?}");
    }
    let table = ok(url, &["blob", "ls"]).await;
    let row = table
        .lines()
        .find(|l| l.starts_with(&lines_digest))
        .unwrap_or_else(|| panic!("{table}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[1..4], ["14", "B", "1"], "size and jobs: {row}");

    let line = refused(url, &["blob", "rm", &lines_digest]).await;
    assert!(line.contains(&format!("job {id}")), "{line}");
    let line = refused(url, &["rm", &id]).await;
    assert!(line.contains("cancel it first"), "{line}");

    // Finished, it can go, and then its blobs are free.
    ok(url, &["cancel", &id]).await;
    assert_eq!(
        ok(url, &["rm", &id]).await.trim(),
        format!("job {id} removed")
    );
    refused(url, &["status", &id]).await;
    let blobs = listing(url).await;
    assert_eq!(entry(&blobs, &lines_digest).unwrap().references, 0);
    assert_eq!(
        ok(url, &["blob", "rm", &lines_digest]).await.trim(),
        format!("removed {lines_digest}")
    );
    assert!(!blob_file(&data, &lines_digest).exists());
    assert!(entry(&listing(url).await, &lines_digest).is_none());
    let line = refused(url, &["blob", "rm", &lines_digest]).await;
    assert!(line.contains("no blob"), "{line}");
    grid.stop().await;
}

/// Polls the blob list until `until` holds for it.
async fn wait_for_blobs(
    url: &str,
    what: &str,
    until: impl Fn(&[BlobListing]) -> bool,
) -> Vec<BlobListing> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let blobs = listing(url).await;
        if until(&blobs) {
            return blobs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within 20 s: {blobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn submit_and_wait(url: &str, module: &str, lines: &str) -> u64 {
    let stdout = ok(
        url,
        &[
            "submit", "wasm", "--module", module, "--lines", lines, "--wait", "--json",
        ],
    )
    .await;
    let status: JobStatus = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status.state, JobState::Done, "{status:?}");
    status.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_jobs_blobs_go_after_the_retention_and_a_shared_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let grid = GridProcess::serve(&data, &["--blob-retention", "1s"])
        .await
        .unwrap();
    let url = grid.url.clone();
    let worker = TestWorker::start(&url, 1, "w");
    let module_bytes = wat::parse_str(NOTHING).unwrap();
    let module = write(dir.path(), "nothing.wasm", &module_bytes);
    let first_lines = write(dir.path(), "first.txt", b"a\nb\n");
    let second_lines = write(dir.path(), "second.txt", b"c\nd\ne\n");
    let (shared, first, second) = (
        sha256(&module_bytes),
        sha256(b"a\nb\n"),
        sha256(b"c\nd\ne\n"),
    );
    let removed = submit_and_wait(&url, &module, &first_lines).await;
    let kept = submit_and_wait(&url, &module, &second_lines).await;

    // Longer than the retention: finished jobs still hold their blobs.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let blobs = listing(&url).await;
    assert_eq!(blobs.len(), 3, "{blobs:?}");
    assert_eq!(entry(&blobs, &shared).unwrap().references, 2);

    ok(&url, &["rm", &removed.to_string()]).await;
    let blobs = wait_for_blobs(&url, "sweep of the removed job's lines", |b| {
        entry(b, &first).is_none()
    })
    .await;
    assert!(!blob_file(&data, &first).exists());
    assert_eq!(entry(&blobs, &shared).unwrap().references, 1);
    assert_eq!(entry(&blobs, &second).unwrap().references, 1);
    assert!(blob_file(&data, &shared).exists() && blob_file(&data, &second).exists());
    let line = refused(&url, &["blob", "rm", &shared]).await;
    assert!(line.contains(&format!("job {kept}")), "{line}");

    let text = metrics(&url).await;
    assert!(text.contains("grid_blobs_stored 2\n"), "{text}");
    let bytes = module_bytes.len() + b"c\nd\ne\n".len();
    assert!(
        text.contains(&format!("grid_blob_bytes_stored {bytes}\n")),
        "{text}"
    );
    worker.stop().await;
    grid.kill();
}

/// Sends a PUT of `declared` bytes by hand, writes `sent` of them, and
/// hangs up once the coordinator is writing them.
async fn cut_off_upload(grid: &TestGrid, digest: &ContentDigest, declared: usize, sent: usize) {
    let mut socket = tokio::net::TcpStream::connect(grid.addr).await.unwrap();
    let head = format!(
        "PUT /api/blobs/{digest} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {declared}\r\n\r\n",
        grid.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&vec![7u8; sent]).await.unwrap();
    socket.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while temporaries(&grid.data_dir).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_halfway_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let whole = vec![7u8; 1 << 20];
    let digest = ContentDigest::of(&whole);
    cut_off_upload(&grid, &digest, whole.len(), whole.len() / 2).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !temporaries(&grid.data_dir).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: {:?}",
            temporaries(&grid.data_dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!blob_file(&grid.data_dir, &digest.to_string()).exists());
    let head = raw::http(
        &grid.url,
        "HEAD",
        &format!("/api/blobs/{digest}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(head.status, 404);
    assert!(listing(&grid.url).await.is_empty());
    // The whole body, sent again, is stored.
    let (_, sent) = grid.client().ensure_blob(whole).await.unwrap();
    assert!(sent);
    assert_eq!(listing(&grid.url).await.len(), 1);
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_finds_the_disk_full_is_507_and_leaves_nothing() {
    let disk = SmallDisk::mount("4m");
    let data = disk.root.join("data");
    let grid = TestGrid::start(&data).await;
    let client = grid.client();
    let large = vec![9u8; 8 << 20];
    let error = client.ensure_blob(large.clone()).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("HTTP 507"), "{message}");
    assert!(message.contains("the disk is full"), "{message}");
    assert!(temporaries(&data).is_empty(), "{:?}", temporaries(&data));
    assert!(!blob_file(&data, &sha256(&large)).exists());
    assert!(listing(&grid.url).await.is_empty(), "no row either");
    // What fits is still stored.
    let (small, sent) = client.ensure_blob(b"small".to_vec()).await.unwrap();
    assert!(sent);
    assert_eq!(listing(&grid.url).await[0].digest, small);
    grid.stop().await;
}
