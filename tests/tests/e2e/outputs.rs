//! Outputs too large for a results frame: an output over
//! `OUTPUT_BLOB_BYTES` (1 MiB) is stored by its worker as a blob, under its
//! batch's capability, and the results frame names it. The `pathtracer`
//! example (built by a real toolchain) renders tiles of a 3000 x 2000
//! image at one sample a pixel: the whole image is 18,000,000 bytes of raw
//! RGB, over the 16 MiB cap on a results frame that bounded every output
//! before; a 1000 x 600 tile is 1.8 MB; a 16 x 16 one still travels in
//! its frame. Native workers (each task computed twice, the replicas
//! agreeing), a Chromium tab and a Firefox tab return every tile byte for
//! byte as `grid run` renders it here. The coordinator counts the output
//! bytes uploaded (each large output once: the other replica sends its
//! digest) and keeps none of the blobs once read.

use std::time::Duration;

use grid_cli::client::Client;
use grid_kernels::JobResult;
use grid_kernels::wasm::WasmInputs;
use grid_protocol::api::{JobRequest, JobState, WasmRequest};
use grid_tests::browser::{BrowserTest, ensure_wasm_built, exclusive_grid, repo_root};
use grid_tests::browser_cache::{Firefox, stay_visible};
use grid_tests::{TestGrid, TestWorker, grid_run, wait_for_job, wait_for_workers};

const ARGS: [&str; 6] = ["--width", "3000", "--height", "2000", "--samples", "1"];
/// `TILE_X TILE_Y TILE_W TILE_H`: the whole image, a large tile, a small one.
const TILES: [&str; 3] = ["0 0 3000 2000", "0 0 1000 600", "0 0 16 16"];
/// Their raw RGB sizes.
const SIZES: [usize; 3] = [18_000_000, 1_800_000, 768];

fn module_path() -> String {
    repo_root()
        .join("examples/build/pathtracer.wasm")
        .to_string_lossy()
        .into_owned()
}

/// Each tile as `grid run` renders it on this machine: the oracle.
fn expected() -> Vec<Vec<u8>> {
    let module = module_path();
    TILES
        .iter()
        .zip(SIZES)
        .map(|(tile, size)| {
            let args: Vec<&str> = std::iter::once(module.as_str()).chain(ARGS).collect();
            let (code, stdout, stderr) = grid_run(&args, tile.as_bytes());
            assert_eq!(code, 0, "grid run {tile}: {stderr}");
            assert_eq!(stdout.len(), size, "{tile}");
            stdout
        })
        .collect()
}

async fn submit(client: &Client, redundancy: u32) -> u64 {
    let module = std::fs::read(module_path()).expect("make examples builds pathtracer.wasm");
    let (module, _) = client.ensure_blob(module).await.unwrap();
    let lines: String = TILES.iter().map(|t| format!("{t}\n")).collect();
    let (lines, _) = client.ensure_blob(lines.into_bytes()).await.unwrap();
    let mut request = WasmRequest::new(module);
    request.name = Some("pathtracer.wasm".into());
    request.args = ARGS.iter().map(|a| a.to_string()).collect();
    request.inputs = Some(WasmInputs::Lines(lines));
    client
        .submit(&JobRequest {
            redundancy: Some(redundancy),
            quorum: Some(redundancy),
            ..JobRequest::new(request)
        })
        .await
        .expect("the job is accepted")
        .id
}

/// Waits for the job; every tile must be the oracle's, byte for byte.
async fn assert_exact(client: &Client, job: u64, expected: &[Vec<u8>]) {
    let status = wait_for_job(client, job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    let JobResult::Wasm { tasks } = client.result(job).await.unwrap() else {
        panic!("not a wasm result")
    };
    assert_eq!(tasks.len(), TILES.len());
    for task in tasks {
        assert_eq!((task.trap, task.exit_code), (None, 0), "{task:?}");
        let stdout = client.task_output(job, task.task).await.unwrap();
        let want = &expected[task.task as usize];
        assert_eq!(
            stdout.len(),
            want.len(),
            "tile {}",
            TILES[task.task as usize]
        );
        assert!(
            stdout == *want,
            "tile {} differs",
            TILES[task.task as usize]
        );
    }
}

/// `grid_output_blob_bytes_total`.
async fn uploaded(url: &str) -> u64 {
    grid_tests::metric(url, "grid_output_blob_bytes_total").await
}

/// The bytes of the large outputs' canonical encodings (21 bytes of
/// outcome fields around each stdout, no stderr).
fn large_outputs() -> u64 {
    SIZES
        .iter()
        .filter(|&&s| s > 1 << 20)
        .map(|&s| s as u64 + 21)
        .sum()
}

/// After a job, the store holds what the user uploaded and nothing else.
async fn assert_only_uploads_kept(client: &Client) {
    let kept = client.blobs().await.unwrap();
    assert_eq!(
        kept.len(),
        2,
        "the module and the tiles list, no outputs: {kept:?}"
    );
    assert!(kept.iter().all(|b| b.size < 1 << 20), "{kept:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_workers_return_outputs_over_the_frame_cap_exactly() {
    let expected = expected();
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(&dir.path().join("data")).await;
    let workers = [
        TestWorker::start(&grid.url, 1, "a"),
        TestWorker::start(&grid.url, 1, "b"),
    ];
    wait_for_workers(&grid.client(), "two workers", |w| w.len() == 2).await;
    let job = submit(&grid.client(), 2).await;
    assert_exact(&grid.client(), job, &expected).await;
    let sent = uploaded(&grid.url).await;
    assert!(
        (large_outputs()..2 * large_outputs()).contains(&sent),
        "each large output uploaded once, the other replica sending its digest: \
         {sent} bytes uploaded for {} bytes of large outputs",
        large_outputs()
    );
    assert_only_uploads_kept(&grid.client()).await;
    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_tab_returns_outputs_over_the_frame_cap_exactly() {
    let expected = expected();
    let test = BrowserTest::start().await;
    let client = test.client();
    let page = test.open_donor_page(2).await;
    stay_visible(&page).await;
    wait_for_workers(&client, "the tab's two threads", |w| w.len() == 2).await;
    let job = submit(&client, 1).await;
    assert_exact(&client, job, &expected).await;
    assert_eq!(uploaded(test.url()).await, large_outputs());
    assert_only_uploads_kept(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firefox_tab_returns_outputs_over_the_frame_cap_exactly() {
    let expected = expected();
    ensure_wasm_built().expect("www/pkg builds");
    let (grid, _turn, _dir) = exclusive_grid(|_| {}).await;
    let client = grid.client();
    let firefox = Firefox::open(&format!("{}/?autostart=1&threads=2", grid.url));
    wait_for_workers(&client, "Firefox's two threads", |w| w.len() == 2).await;
    let job = submit(&client, 1).await;
    assert_exact(&client, job, &expected).await;
    assert_eq!(uploaded(&grid.url).await, large_outputs());
    assert_only_uploads_kept(&client).await;
    drop(firefox);
    grid.stop().await;
}
