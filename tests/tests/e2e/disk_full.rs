//! A full disk, for real: the data directory is a small tmpfs mounted for the
//! test (the tests run as root, as CI does). At start-up the coordinator
//! says so and stops; while running, a commit that fails acknowledges
//! nothing, and once there is room again the job carries on to the exact
//! answer, which a restart then still has.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use grid_kernels::spec::MandelbrotParams;
use grid_kernels::{JobResult, KernelSpec};
use grid_protocol::api::JobState;
use grid_tests::disk::SmallDisk;
use grid_tests::{
    TOKEN, TestGrid, assert_primes, free_port, grid_binary, job, primes, submit, wait_for_job,
    wait_until,
};

/// `grid serve` on `data` until it exits by itself: its exit code and
/// standard error.
fn serve_until_exit(data: &Path) -> (i32, String) {
    let port = free_port().unwrap();
    let output = Command::new(grid_binary())
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--token",
            TOKEN,
        ])
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn image_params() -> MandelbrotParams {
    MandelbrotParams {
        width: 1000,
        height: 800,
        x_min: -2.2,
        x_max: 0.8,
        y_min: -1.2,
        y_max: 1.2,
        max_iter: 60,
    }
}

async fn pixels(grid: &TestGrid, id: u64) -> Vec<u32> {
    match grid.client().result(id).await.expect("results") {
        JobResult::Mandelbrot { iterations, .. } => iterations,
        other => panic!("not an image: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_start_up_is_a_clear_error_and_the_store_survives_it() {
    let disk = SmallDisk::mount("2m");
    let data = disk.root.join("data");
    // A store with a finished job in it.
    let grid = TestGrid::start(&data).await;
    let worker = grid.worker(1, "w");
    let id = submit(&grid.client(), &job(primes(0, 1_000_000), 10)).await;
    assert_primes(
        &wait_for_job(&grid.client(), id, Duration::from_secs(60)).await,
        78_498,
    );
    worker.stop().await;
    grid.stop().await;

    let filler = disk.fill();
    let (code, stderr) = serve_until_exit(&data);
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("the disk is full"), "{stderr}");
    assert!(errors[0].contains("cannot open the store"), "{stderr}");

    // With room again, the store opens with its job and answer intact.
    std::fs::remove_file(filler).unwrap();
    let grid = TestGrid::start(&data).await;
    let status = grid.client().status(id).await.unwrap();
    assert_eq!(status.state, JobState::Done);
    assert_primes(&status, 78_498);
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_mid_job_loses_nothing_and_the_job_finishes_once_there_is_room() {
    // 3.2 MB of results in 80 tasks cannot fit in 1 MiB.
    let disk = SmallDisk::mount("1m");
    let data = disk.root.join("data");
    let grid = TestGrid::start(&data).await;
    let client = grid.client();
    let workers = [grid.worker(1, "w1"), grid.worker(1, "w2")];
    let params = image_params();
    let id = submit(&client, &job(KernelSpec::Mandelbrot(params.clone()), 80)).await;

    // The disk fills; the job stops short, and the coordinator keeps serving.
    let stuck = wait_until(&client, id, Duration::from_secs(60), "a stall", |s| {
        s.tasks.done > 0 && s.state == JobState::Running
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = client.status(id).await.unwrap();
    assert_eq!(later.state, JobState::Running, "{later:?}");
    assert!(later.tasks.done < 80, "{later:?}");
    assert!(later.tasks.done >= stuck.tasks.done, "{later:?}");

    // Room again: the same workers carry the job to the exact image.
    disk.resize("64m");
    let done = wait_for_job(&client, id, Duration::from_secs(120)).await;
    assert_eq!(done.state, JobState::Done, "{done:?}");
    let mut expected = Vec::new();
    grid_kernels::mandelbrot::render_rows(&params, 0, params.height, &mut expected);
    let got = pixels(&grid, id).await;
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the image differs from the local render");
    for worker in workers {
        worker.stop().await;
    }
    grid.stop().await;

    // And a restart finds it done, with the same image.
    let grid = TestGrid::start(&data).await;
    assert_eq!(
        grid.client().status(id).await.unwrap().state,
        JobState::Done
    );
    assert!(pixels(&grid, id).await == expected);
    grid.stop().await;
}
