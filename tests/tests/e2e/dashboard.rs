//! The dashboard in headless Chromium against a real coordinator with native
//! workers: it follows a Mandelbrot job to its picture (pixels checked against
//! the PNG export's colours of natively computed counts), pauses, resumes and
//! cancels jobs, downloads a result, groups a browser tab's connections, asks
//! for a token and refuses a wrong one, comes back after the coordinator
//! restarts, and shows a wasm job's failures, fuel per task and first
//! outputs as pictures. Screenshots at laptop and phone sizes land in tests/artifacts/.
//! Each test runs in a [`BrowserTest`], which stops what it started and
//! fails on errors the last page logged that the test did not expect.

use std::path::Path;
use std::time::Duration;

use grid_coordinator::export::colour;
use grid_kernels::mandelbrot::{escape_time, pixel_x, pixel_y};
use grid_kernels::spec::MandelbrotParams;
use grid_kernels::{KernelSpec, ResultSummary};
use grid_protocol::api::{ExportFormat, JobRequest, JobState, WasmRequest};
use grid_protocol::{Hello, PROTOCOL_VERSION, WorkerKind, WorkerMessage};
use grid_tests::browser::BrowserTest;
use grid_tests::dashboard::{DashboardPage, LAPTOP, PHONE};
use grid_tests::raw::RawSocket;
use grid_tests::{
    TOKEN, assert_primes, grid_cli_async, job, primes, submit, wait_for_job, wait_for_workers,
};

const WAIT: Duration = Duration::from_secs(60);

fn picture() -> MandelbrotParams {
    MandelbrotParams {
        width: 480,
        height: 320,
        x_min: -2.2,
        x_max: 0.8,
        y_min: -1.0,
        y_max: 1.0,
        max_iter: 1000,
    }
}

/// Two connections of one browser tab (one session), paused so they take no
/// work: what the donor page's Web Workers look like to the coordinator.
/// They send heartbeats until the returned task is aborted.
async fn browser_tab(base: &str, session: &str) -> tokio::task::JoinHandle<()> {
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut socket = RawSocket::connect(base).await;
        socket
            .send_message(&WorkerMessage::Hello(Hello {
                holds: Vec::new(),
                for_users: Vec::new(),
                protocol: PROTOCOL_VERSION,
                kind: WorkerKind::Browser,
                threads: 1,
                name: Some("alice's laptop".into()),
                session: Some(session.into()),
                kernels: None,
            }))
            .await;
        socket.receive().await; // the welcome
        socket.send_message(&WorkerMessage::Pause {}).await;
        sockets.push(socket);
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            for socket in &mut sockets {
                socket.send_message(&WorkerMessage::Heartbeat {}).await;
            }
        }
    })
}

/// The dashboard's canvas pixels at `points`, as [r, g, b, a].
async fn pixels(page: &DashboardPage, job: u64, points: &[(u32, u32)]) -> Vec<[u8; 4]> {
    let points = serde_json::to_string(points).unwrap();
    page.eval(&format!(
        "(() => {{ \
            const canvas = document.querySelector('.job[data-job=\"{job}\"] canvas.image'); \
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data; \
            return {points}.map(([x, y]) => Array.from(data.slice(4 * (y * canvas.width + x), 4 * (y * canvas.width + x) + 4))); \
        }})()"
    ))
    .await
    .expect("the canvas is readable")
}

/// The picture on the page is the job's: sampled pixels have exactly the
/// PNG export's colour of the natively computed escape count, the whole
/// canvas is painted, with the set's black and many other colours, and it is
/// pixel for pixel the PNG the coordinator exports.
async fn assert_picture(page: &DashboardPage, job: u64, p: &MandelbrotParams) {
    let mut points = Vec::new();
    for i in 0..12 {
        for j in 0..8 {
            points.push((i * p.width / 12 + 7, j * p.height / 8 + 5));
        }
    }
    let seen = pixels(page, job, &points).await;
    let mut inside = 0;
    for (&(x, y), rgba) in points.iter().zip(&seen) {
        let count = escape_time(pixel_x(p, x), pixel_y(p, y), p.max_iter);
        let [r, g, b] = colour(count, p.max_iter);
        assert_eq!(
            *rgba,
            [r, g, b, 255],
            "pixel ({x}, {y}) with escape count {count}"
        );
        inside += usize::from(count == p.max_iter);
    }
    assert!(
        inside > 0 && inside < points.len(),
        "samples both in and out of the set"
    );
    let (unpainted, colours): (u32, u32) = page
        .eval(&format!(
            "(() => {{ \
                const canvas = document.querySelector('.job[data-job=\"{job}\"] canvas.image'); \
                const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data; \
                let unpainted = 0; const colours = new Set(); \
                for (let i = 0; i < data.length; i += 4) {{ \
                    if (data[i + 3] !== 255) unpainted++; \
                    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]); \
                }} \
                return [unpainted, colours.size]; \
            }})()"
        ))
        .await
        .unwrap();
    assert_eq!(unpainted, 0, "every pixel is painted");
    assert!(colours > 50, "a picture, not a blank: {colours} colours");

    // And the whole canvas is the coordinator's PNG, decoded by the page.
    let differing: i64 = page
        .eval(&format!(
            "(async () => {{ \
                const canvas = document.querySelector('.job[data-job=\"{job}\"] canvas.image'); \
                const mine = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data; \
                const response = await fetch('api/jobs/{job}/results?format=png', \
                    {{headers: {{Authorization: 'Bearer {TOKEN}'}}}}); \
                const bitmap = await createImageBitmap(await response.blob()); \
                const scratch = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d'); \
                scratch.drawImage(bitmap, 0, 0); \
                const png = scratch.getImageData(0, 0, bitmap.width, bitmap.height).data; \
                if (png.length !== mine.length) return -1; \
                let differing = 0; \
                for (let i = 0; i < png.length; i += 4) {{ \
                    if (png[i] !== mine[i] || png[i + 1] !== mine[i + 1] || png[i + 2] !== mine[i + 2]) differing++; \
                }} \
                return differing; \
            }})()"
        ))
        .await
        .unwrap();
    assert_eq!(
        differing, 0,
        "pixels differing from the PNG export (-1: not even the same size)"
    );
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_jobs_to_their_results() {
    let mut test = BrowserTest::start().await;
    let downloads = tempfile::tempdir().unwrap();
    let client = test.client();

    // A Mandelbrot job held back until the page resumes it, so the page is
    // surely watching while it runs; and one the page will cancel.
    let p = picture();
    let image = submit(&client, &job(KernelSpec::Mandelbrot(p.clone()), 32)).await;
    client.pause(image).await.unwrap();
    let doomed = submit(&client, &job(primes(0, 4_000_000_000u64), 400)).await;
    client.pause(doomed).await.unwrap();

    let tab = browser_tab(test.url(), "7f3a9c2e41d0b6aa").await;
    wait_for_workers(&client, "a paused browser tab", |w| {
        w.len() == 2 && w.iter().all(|w| w.paused)
    })
    .await;
    test.add_worker(2, "native-1");
    let counted = submit(&client, &job(primes(0, 1_000_000), 4)).await;
    wait_for_job(&client, counted, WAIT).await;
    // A user's kernel: two tasks that spin until their fuel runs out.
    let spin = r#"(module (memory (export "memory") 1)
      (func (export "_start") (loop $l (br $l))))"#;
    let (module, _) = client
        .ensure_blob(wat::parse_str(spin).unwrap())
        .await
        .unwrap();
    let spinning = client
        .submit(&JobRequest {
            tasks: Some(2),
            ..JobRequest::new(WasmRequest {
                fuel: Some(50_000),
                description: Some("spins until its fuel runs out".into()),
                ..WasmRequest::new(module)
            })
        })
        .await
        .unwrap()
        .id;
    wait_for_job(&client, spinning, WAIT).await;

    test.allow_downloads(downloads.path()).await.unwrap();
    let page = test.open_dashboard(Some(TOKEN), LAPTOP).await;
    page.wait_for("document.body.dataset.connection === 'live'", WAIT)
        .await
        .unwrap();
    // The token left the address bar for localStorage.
    let (hash, stored): (String, String) = page
        .eval("[location.hash, localStorage.getItem('browsergrid.token') ?? '']")
        .await
        .unwrap();
    assert_eq!(hash, "");
    assert_eq!(stored, TOKEN);

    // The snapshot: a finished count, two paused jobs, the tab as one group.
    let card = |id: u64| format!(".job[data-job=\"{id}\"]");
    page.wait_for(
        &format!(
            "document.querySelector('{} .answer')?.textContent.includes('primes')",
            card(counted)
        ),
        WAIT,
    )
    .await
    .unwrap();
    // Each card names its owner (the token's user, the first admin), and no
    // answer was revised.
    assert_eq!(
        page.text(&format!("{} .owner", card(counted)))
            .await
            .unwrap(),
        "by admin"
    );
    let revised_hidden: bool = page
        .eval(&format!(
            "document.querySelector('{} .badge.revised').hidden",
            card(counted)
        ))
        .await
        .unwrap();
    assert!(revised_hidden);
    assert_eq!(
        digits(
            &page
                .text(&format!("{} .answer", card(counted)))
                .await
                .unwrap()
        ),
        "78498"
    );
    // The wasm job: argv and what it does, fuel as its answer, its failures.
    page.wait_for(
        &format!(
            "document.querySelector('{} .answer')?.textContent.includes('fuel')",
            card(spinning)
        ),
        WAIT,
    )
    .await
    .unwrap();
    let answer = page
        .text(&format!("{} .answer", card(spinning)))
        .await
        .unwrap();
    assert_eq!(digits(&answer), "100000", "{answer}");
    let detail = page
        .text(&format!("{} .answer-detail", card(spinning)))
        .await
        .unwrap();
    assert_eq!(detail, "2 tasks failed");
    assert_eq!(
        page.texts(&format!("{} .failures li", card(spinning)))
            .await
            .unwrap(),
        ["task 0: trap out_of_fuel", "task 1: trap out_of_fuel"]
    );
    let params = page
        .text(&format!("{} .params", card(spinning)))
        .await
        .unwrap();
    assert!(
        params.starts_with("kernel.wasm — spins until its fuel runs out"),
        "{params}"
    );
    page.wait_for(
        &format!(
            "document.querySelector('{}')?.dataset.paused === 'true'",
            card(image)
        ),
        WAIT,
    )
    .await
    .unwrap();
    page.wait_for(
        "document.querySelectorAll('#workers tr.group[data-connections=\"2\"]').length === 1 \
         && document.querySelectorAll('#workers tr.member').length === 2 \
         && document.querySelectorAll('#workers tr.worker').length === 1",
        WAIT,
    )
    .await
    .unwrap();
    assert!(
        page.text("#workers tr.group")
            .await
            .unwrap()
            .contains("alice's laptop")
    );
    assert!(
        page.text("#workers tr.worker")
            .await
            .unwrap()
            .contains("native-1")
    );

    // Resume from the page: the picture paints itself from tiles as it runs.
    assert_eq!(
        page.text(&format!("{} button.pause", card(image)))
            .await
            .unwrap(),
        "Resume"
    );
    page.click(&format!("{} button.pause", card(image)))
        .await
        .unwrap();
    page.wait_for(
        &format!(
            "document.querySelector('{}').dataset.state === 'done'",
            card(image)
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        page.text(&format!("{} .percent", card(image)))
            .await
            .unwrap(),
        "100%"
    );
    assert_eq!(
        page.text(&format!("{} .tasks", card(image))).await.unwrap(),
        "32 / 32"
    );
    let canvas = format!("{} canvas.image", card(image));
    page.wait_for(
        &format!(
            "document.querySelector('{canvas}').dataset.painted === '{}'",
            p.height
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        page.eval::<String>(&format!(
            "document.querySelector('{canvas}').dataset.source"
        ))
        .await
        .unwrap(),
        "tiles"
    );
    assert_picture(&page, image, &p).await;

    // Cancel takes a second click.
    page.click(&format!("{} button.cancel", card(doomed)))
        .await
        .unwrap();
    assert_eq!(
        page.text(&format!("{} button.cancel", card(doomed)))
            .await
            .unwrap(),
        "Confirm cancel"
    );
    page.click(&format!("{} button.cancel", card(doomed)))
        .await
        .unwrap();
    page.wait_for(
        &format!(
            "document.querySelector('{}').dataset.state === 'cancelled'",
            card(doomed)
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        client.status(doomed).await.unwrap().state,
        JobState::Cancelled
    );

    // The PNG download is the coordinator's PNG.
    page.click(&format!("{} .downloads [data-format=\"png\"]", card(image)))
        .await
        .unwrap();
    let expected = client.results(image, ExportFormat::Png).await.unwrap();
    let file = downloads.path().join(format!("job-{image}-mandelbrot.png"));
    wait_for_file(&file, expected.len()).await;
    assert!(
        std::fs::read(&file).unwrap() == expected,
        "the downloaded PNG differs"
    );

    // Opened after the fact (the token now from localStorage), the picture
    // comes from the results route instead, and is the same.
    page.goto(&test.dashboard_url(None)).await.unwrap();
    page.wait_for(&format!("document.querySelector('{}')", card(image)), WAIT)
        .await
        .unwrap();
    // Unfold the card if it is folded, as a person would to see the picture.
    page.eval::<bool>(&format!(
        "document.querySelector('{}').open = true",
        card(image)
    ))
    .await
    .unwrap();
    page.wait_for(
        &format!(
            "document.querySelector('{canvas}')?.dataset.painted === '{}' \
             && document.querySelectorAll('#workers tr').length === 4",
            p.height
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        page.eval::<String>(&format!(
            "document.querySelector('{canvas}').dataset.source"
        ))
        .await
        .unwrap(),
        "results"
    );
    assert_picture(&page, image, &p).await;
    // Let the throughput chart gather a few samples for the screenshots.
    page.wait_for(
        "document.querySelector('#throughput').dataset.samples >= 3",
        WAIT,
    )
    .await
    .unwrap();
    page.screenshot("dashboard-laptop").await.unwrap();
    page.resize(PHONE).await.unwrap();
    page.wait_for("document.documentElement.clientWidth === 390", WAIT)
        .await
        .unwrap();
    page.screenshot("dashboard-phone").await.unwrap();

    tab.abort();
    test.finish(page).await;
}

/// Echoes stdin to stdout, 64 KiB at a time.
const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (loop $more
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 65536))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.gt_u (i32.load (i32.const 8)) (i32.const 0))
        (then
          (i32.store (i32.const 4) (i32.load (i32.const 8)))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
          (br $more))))))"#;

/// Says what is wrong on stderr and exits 3.
const COMPLAIN: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "bad input: no such parameter\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 29))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 3))))"#;

/// `grid submit wasm ARGS --wait --json` against the test's grid: the job's id.
async fn submit_wasm(test: &BrowserTest, args: &[&str]) -> u64 {
    let mut all = vec!["submit", "wasm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--wait", "--json"]);
    let (code, stdout, stderr) = grid_cli_async(test.url(), &all).await;
    assert_eq!(code, 0, "{stderr}");
    let status: grid_protocol::api::JobStatus = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status.state, JobState::Done, "{status:?}");
    status.id
}

/// Each task's fuel, from `grid results JOB --format json`.
async fn fuel_of_tasks(test: &BrowserTest, job: u64) -> Vec<u64> {
    let (code, stdout, stderr) = grid_cli_async(
        test.url(),
        &["results", &job.to_string(), "--format", "json"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let grid_kernels::JobResult::Wasm { tasks } = serde_json::from_str(&stdout).unwrap() else {
        panic!("{stdout}")
    };
    tasks.iter().map(|t| t.fuel_used).collect()
}

/// The card shows the fuel per task that the export gives: its minimum,
/// its median (the lower middle one of an even count) and its maximum.
async fn assert_fuel_figures(page: &DashboardPage, test: &BrowserTest, job: u64) {
    let card = format!(".job[data-job=\"{job}\"]");
    page.wait_for(
        &format!("document.querySelector('{card} .fuel')?.hidden === false"),
        WAIT,
    )
    .await
    .unwrap();
    let mut fuel = fuel_of_tasks(test, job).await;
    fuel.sort_unstable();
    let expected = [fuel[0], fuel[(fuel.len() - 1) / 2], fuel[fuel.len() - 1]];
    let mut shown = Vec::new();
    for figure in ["min", "median", "max"] {
        let text = page.text(&format!("{card} .fuel .{figure}")).await.unwrap();
        shown.push(digits(&text).parse::<u64>().unwrap());
    }
    assert_eq!(shown, expected, "min, median and max fuel of {fuel:?}");
    let bins: String = page
        .eval(&format!(
            "document.querySelector('{card} .fuel canvas').dataset.bins"
        ))
        .await
        .unwrap();
    assert!(bins.parse::<u32>().unwrap() >= 1, "a histogram: {bins}");
}

/// Waits until a card's gallery is complete: its caption written and every
/// thumbnail decoded. Returns each thumbnail's natural size.
async fn gallery(page: &DashboardPage, job: u64) -> Vec<(u32, u32)> {
    let card = format!(".job[data-job=\"{job}\"]");
    page.wait_for(
        &format!(
            "document.querySelector('{card} .gallery-caption')?.textContent !== '' \
             && [...document.querySelectorAll('{card} .gallery img')].every(i => i.complete)"
        ),
        WAIT,
    )
    .await
    .unwrap();
    page.eval(&format!(
        "[...document.querySelectorAll('{card} .gallery img')].map(i => [i.naturalWidth, i.naturalHeight])"
    ))
    .await
    .unwrap()
}

/// A wasm job's card: the first failed tasks with their exit code and
/// stderr, the fuel per task (the figures `grid results --format json`
/// gives), and a gallery of the first outputs that are pictures: the path
/// tracer's PPM tiles, pixel for pixel what the tasks wrote, and PNG files
/// echoed back as they were, up to the first output that is not a picture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_wasm_jobs_failures_fuel_and_pictures() {
    let mut test = BrowserTest::start().await;
    test.add_worker(2, "native-1");
    let client = test.client();
    let dir = tempfile::tempdir().unwrap();

    // Two PNGs from the coordinator's own encoder, and a file that is not one.
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    let mut pngs = Vec::new();
    for (name, width, height) in [("a.png", 40, 30), ("b.png", 24, 16)] {
        let p = MandelbrotParams {
            width,
            height,
            ..picture()
        };
        let id = submit(&client, &job(KernelSpec::Mandelbrot(p), 2)).await;
        wait_for_job(&client, id, WAIT).await;
        let png = client.results(id, ExportFormat::Png).await.unwrap();
        std::fs::write(inputs.join(name), &png).unwrap();
        pngs.push(png);
    }
    std::fs::write(inputs.join("c.txt"), "not a picture\n").unwrap();
    std::fs::write(inputs.join("d.png"), &pngs[0]).unwrap();
    let echo = dir.path().join("echo.wasm");
    std::fs::write(&echo, wat::parse_str(ECHO).unwrap()).unwrap();
    let echoed = submit_wasm(
        &test,
        &[
            "--module",
            &echo.to_string_lossy(),
            "--inputs",
            &inputs.to_string_lossy(),
        ],
    )
    .await;

    // The path tracer in 16 x 12 tiles of a 48 x 36 image, each a PPM.
    let tiles: String = (0..3)
        .flat_map(|y| (0..3).map(move |x| format!("{} {} 16 12\n", x * 16, y * 12)))
        .collect();
    let lines = dir.path().join("tiles.txt");
    std::fs::write(&lines, tiles).unwrap();
    let pathtracer = grid_tests::browser::repo_root().join("examples/build/pathtracer.wasm");
    assert!(
        pathtracer.is_file(),
        "{} is missing: run `make examples` (make test does)",
        pathtracer.display()
    );
    let traced = submit_wasm(
        &test,
        &[
            "--module",
            &pathtracer.to_string_lossy(),
            "--lines",
            &lines.to_string_lossy(),
            "--args",
            "--width 48 --height 36 --samples 2 --ppm",
        ],
    )
    .await;

    // Seven tasks that fail, each saying why on stderr.
    let complain = dir.path().join("complain.wasm");
    std::fs::write(&complain, wat::parse_str(COMPLAIN).unwrap()).unwrap();
    let complaining = submit_wasm(
        &test,
        &["--module", &complain.to_string_lossy(), "--tasks", "7"],
    )
    .await;

    let page = test.open_dashboard(Some(TOKEN), LAPTOP).await;
    let card = |id: u64| format!(".job[data-job=\"{id}\"]");
    for id in [echoed, traced, complaining] {
        page.wait_for(&format!("document.querySelector('{}')", card(id)), WAIT)
            .await
            .unwrap();
        // Unfolded, as a person would to look: that is when the card asks.
        page.eval::<bool>(&format!(
            "document.querySelector('{}').open = true",
            card(id)
        ))
        .await
        .unwrap();
    }

    // The failures: the first five, their exit code and stderr, and a count
    // of the rest.
    assert_eq!(
        page.text(&format!("{} .answer-detail", card(complaining)))
            .await
            .unwrap(),
        "7 tasks failed"
    );
    let failures = page
        .texts(&format!("{} .failures li .what", card(complaining)))
        .await
        .unwrap();
    assert_eq!(
        failures,
        (0..5)
            .map(|t| format!("task {t}: exit code 3"))
            .collect::<Vec<_>>()
    );
    let stderr = page
        .texts(&format!("{} .failures .stderr", card(complaining)))
        .await
        .unwrap();
    assert_eq!(stderr, vec!["bad input: no such parameter"; 5]);
    assert!(
        page.text(&format!("{} .failures .more", card(complaining)))
            .await
            .unwrap()
            .starts_with("and 2 more failed tasks"),
    );

    // Fuel per task, as the export gives it, for each job.
    for id in [echoed, traced, complaining] {
        assert_fuel_figures(&page, &test, id).await;
    }

    // The path tracer's first six tiles, each pixel for pixel its PPM.
    assert_eq!(gallery(&page, traced).await, vec![(16, 12); 6]);
    let out = dir.path().join("traced");
    let (code, _, stderr) = grid_cli_async(
        test.url(),
        &["results", &traced.to_string(), "-o", &out.to_string_lossy()],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let shown: Vec<Vec<u8>> = page
        .eval(&format!(
            "[...document.querySelectorAll('{} .gallery img')].map(img => {{ \
                const g = Object.assign(document.createElement('canvas'), \
                    {{width: img.naturalWidth, height: img.naturalHeight}}).getContext('2d'); \
                g.drawImage(img, 0, 0); \
                const rgba = g.getImageData(0, 0, img.naturalWidth, img.naturalHeight).data; \
                return Array.from(rgba).filter((_, i) => i % 4 !== 3); \
            }})",
            card(traced)
        ))
        .await
        .unwrap();
    for (task, rgb) in shown.iter().enumerate() {
        let ppm = std::fs::read(out.join(task.to_string())).unwrap();
        assert!(ppm.starts_with(b"P6\n16 12\n255\n"), "task {task}");
        assert!(
            rgb[..] == ppm[ppm.len() - 16 * 12 * 3..],
            "task {task}'s thumbnail is not its tile"
        );
    }
    assert!(
        page.text(&format!("{} .gallery-caption", card(traced)))
            .await
            .unwrap()
            .starts_with("The first 6 outputs of 9"),
    );

    // The PNGs as they were, up to c.txt; each opens full size. The bytes
    // behind each link are saved through a copy of it: the page's policy
    // lets no script fetch them (connect-src is the coordinator's alone).
    assert_eq!(gallery(&page, echoed).await, vec![(40, 30), (24, 16)]);
    let links: Vec<(String, String)> = page
        .eval(&format!(
            "[...document.querySelectorAll('{} .gallery a')].map(a => [a.href, a.target])",
            card(echoed)
        ))
        .await
        .unwrap();
    assert_eq!(links.len(), pngs.len());
    let saved = tempfile::tempdir().unwrap();
    test.allow_downloads(saved.path()).await.unwrap();
    for (i, ((href, target), png)) in links.iter().zip(&pngs).enumerate() {
        assert!(
            href.starts_with("blob:") && target == "_blank",
            "{href} {target}"
        );
        page.eval::<bool>(&format!(
            "(() => {{ Object.assign(document.createElement('a'), \
                {{ href: '{href}', download: 'output-{i}.png' }}).click(); return true; }})()"
        ))
        .await
        .unwrap();
        let file = saved.path().join(format!("output-{i}.png"));
        wait_for_file(&file, png.len()).await;
        assert!(std::fs::read(&file).unwrap() == *png, "output {i}'s bytes");
    }
    // Every task failed: nothing to show.
    assert!(
        page.eval::<bool>(&format!(
            "document.querySelector('{} .gallery').hidden",
            card(complaining)
        ))
        .await
        .unwrap()
    );
    // The workers table shows the compute the worker donated, in fuel: the
    // API's figure, which is the three wasm jobs' fuel (one worker ran every
    // task of them, failed ones included).
    let mut jobs_fuel = 0;
    for id in [echoed, traced, complaining] {
        match client.status(id).await.unwrap().result {
            Some(ResultSummary::Wasm { fuel_used, .. }) => jobs_fuel += fuel_used,
            other => panic!("job {id}: {other:?}"),
        }
    }
    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(worker.fuel_used, jobs_fuel, "{worker:?}");
    page.wait_for(
        &format!(
            "document.querySelector('#workers tr[data-worker] td.fuel')\
                ?.textContent.replace(/\\D/g, '') === '{jobs_fuel}'"
        ),
        WAIT,
    )
    .await
    .expect("the workers table shows the worker's fuel");
    page.screenshot("dashboard-wasm").await.unwrap();
    test.finish(page).await;
}

/// Waits for a download to be complete under its final name.
async fn wait_for_file(path: &Path, len: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::metadata(path).map(|m| m.len() as usize).ok() != Some(len) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never arrived",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// From now on `page` may log the errors a refused token makes the browser
/// itself log: the 401 of the monitor upgrade and of the page's token check.
/// Anything else is a bug.
fn expect_refusals(page: &mut DashboardPage) {
    page.expect_errors("401");
    page.expect_errors("HTTP Authentication failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_a_token_and_refuses_a_wrong_one() {
    let test = BrowserTest::start().await;

    // No token anywhere: the form.
    let mut page = test.open_dashboard(None, LAPTOP).await;
    page.wait_for(
        "document.body.dataset.view === 'token' && !document.querySelector('#token-view').hidden",
        WAIT,
    )
    .await
    .unwrap();
    assert!(
        page.eval::<bool>("document.querySelector('#token-error').hidden")
            .await
            .unwrap(),
        "no error before a token was tried"
    );
    page.assert_no_errors();
    page.screenshot("dashboard-token-form").await.unwrap();

    // A wrong token: a clear message and the form again, nothing remembered.
    expect_refusals(&mut page);
    page.eval::<bool>(
        "(() => { document.querySelector('#token-input').value = 'not-the-token'; \
                  document.querySelector('#token-form').requestSubmit(); return true; })()",
    )
    .await
    .unwrap();
    page.wait_for(
        "document.body.dataset.view === 'token' && !document.querySelector('#token-error').hidden",
        WAIT,
    )
    .await
    .unwrap();
    assert!(page.text("#token-error").await.unwrap().contains("refused"));
    assert_eq!(
        page.eval::<String>("localStorage.getItem('browsergrid.token') ?? ''")
            .await
            .unwrap(),
        ""
    );
    page.assert_no_errors();

    // The right one: live, and remembered for the next visit.
    page.eval::<bool>(&format!(
        "(() => {{ document.querySelector('#token-input').value = '{TOKEN}'; \
                   document.querySelector('#token-form').requestSubmit(); return true; }})()"
    ))
    .await
    .unwrap();
    page.wait_for("document.body.dataset.connection === 'live'", WAIT)
        .await
        .unwrap();
    page.goto(&test.dashboard_url(None)).await.unwrap();
    page.wait_for("document.body.dataset.connection === 'live'", WAIT)
        .await
        .unwrap();

    // "Change token" forgets it.
    page.click("#change-token").await.unwrap();
    page.wait_for("document.body.dataset.view === 'token'", WAIT)
        .await
        .unwrap();
    assert_eq!(
        page.eval::<String>("localStorage.getItem('browsergrid.token') ?? ''")
            .await
            .unwrap(),
        ""
    );

    // A link with a wrong token, pasted into this tab's address bar (only
    // the fragment changes) or opened in a new one: the same message.
    page.eval::<String>("location.hash = '#token=wrong'")
        .await
        .unwrap();
    let refused = "document.body.dataset.view === 'token' \
                   && !document.querySelector('#token-error').hidden && location.hash === ''";
    page.wait_for(refused, WAIT).await.unwrap();
    page.assert_no_errors();
    page.close().await.unwrap();
    let mut page = test.open_dashboard(Some("wrong"), PHONE).await;
    expect_refusals(&mut page);
    page.wait_for(refused, WAIT).await.unwrap();
    page.screenshot("dashboard-token-refused-phone")
        .await
        .unwrap();

    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reconnects_when_the_coordinator_comes_back() {
    let mut test = BrowserTest::start().await;
    let client = test.client();
    test.add_worker(1, "native-1");
    let first = submit(&client, &job(primes(0, 1000), 2)).await;
    wait_for_job(&client, first, WAIT).await;

    let mut page = test.open_dashboard(Some(TOKEN), PHONE).await;
    // While the coordinator is away the browser logs refused connections;
    // nothing else.
    page.expect_errors("ERR_CONNECTION_REFUSED");
    page.wait_for(
        &format!("document.querySelector('.job[data-job=\"{first}\"]')?.dataset.state === 'done'"),
        WAIT,
    )
    .await
    .unwrap();

    test.stop_grid().await;
    page.wait_for("document.body.dataset.connection === 'reconnecting'", WAIT)
        .await
        .unwrap();
    assert!(
        page.text("#connection")
            .await
            .unwrap()
            .to_lowercase()
            .contains("reconnecting")
    );

    test.start_grid_again().await;
    page.wait_for("document.body.dataset.connection === 'live'", WAIT)
        .await
        .unwrap();
    // The new snapshot has the old job, and events flow again.
    let client = test.client();
    test.add_worker(1, "native-2");
    let second = submit(&client, &job(primes(0, 1000), 2)).await;
    page.wait_for(
        &format!(
            "document.querySelector('.job[data-job=\"{first}\"]')?.dataset.state === 'done' \
             && document.querySelector('.job[data-job=\"{second}\"]')?.dataset.state === 'done' \
             && document.querySelector('#workers').textContent.includes('native-2')"
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        digits(
            &page
                .text(&format!(".job[data-job=\"{second}\"] .answer"))
                .await
                .unwrap()
        ),
        "168"
    );

    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_marks_a_quarantined_liar() {
    let mut test = BrowserTest::start_with(|c| c.scheduler.trust_after = None).await;
    let client = test.client();
    test.add_worker(1, "honest-1");
    test.add_worker(1, "honest-2");
    let page = test.open_dashboard(Some(TOKEN), LAPTOP).await;
    page.wait_for("document.body.dataset.connection === 'live'", WAIT)
        .await
        .unwrap();

    // A worker that answers every task with a plausible wrong count.
    let mut liar = grid_tests::raw::HandWorker::join(test.url(), 1).await;
    let liar_id = liar.id;
    let lying = tokio::spawn(async move {
        loop {
            let batch = match liar.next_batch_or_close().await {
                Ok(batch) => batch,
                Err(closed) => return closed,
            };
            let mut builder = grid_protocol::frame::ResultsFrameBuilder::new(batch.batch);
            for task in batch.tasks.iter() {
                let grid_kernels::TaskOutput::Count(n) = liar.output(&batch, task) else {
                    unreachable!()
                };
                builder.push(task, &grid_kernels::TaskOutput::Count(n + 1));
            }
            liar.socket.send_binary(builder.finish()).await;
        }
    });
    let mut request = job(primes(0, 1_000_000), 60);
    request.redundancy = Some(2);
    let id = submit(&client, &request).await;
    assert_primes(&wait_for_job(&client, id, WAIT).await, 78_498);

    // The liar is closed with 4008 and leaves the list; the dashboard names
    // it among the quarantined donors, with why, and names no one else.
    let item = format!("#quarantine li[data-workers~='{liar_id}']");
    page.wait_for(
        &format!("document.querySelector(\"{item}\") !== null"),
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("the liar is not listed as quarantined: {e}"));
    let listed: bool = page
        .eval("document.querySelectorAll('#quarantine li').length === 1")
        .await
        .unwrap();
    assert!(listed, "only the liar is listed");
    let reason = page.text(&item).await.unwrap();
    assert!(reason.contains("disagreed with the quorum"), "{reason}");
    page.wait_for(
        &format!("document.querySelector(\"tr[data-worker='{liar_id}']\") === null"),
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("the liar is still in the worker list: {e}"));
    let closed = tokio::time::timeout(WAIT, lying).await.unwrap().unwrap();
    assert_eq!(closed.code, 4008);
    test.finish(page).await;
}
