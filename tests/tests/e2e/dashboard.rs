//! The dashboard in headless Chromium against a real coordinator with native
//! workers: it follows a Mandelbrot job to its picture (pixels checked against
//! the PNG export's colours of natively computed counts), pauses, resumes and
//! cancels jobs, downloads a result, groups a browser tab's connections, asks
//! for a token and refuses a wrong one, and comes back after the coordinator
//! restarts. Screenshots at laptop and phone sizes land in tests/artifacts/.
//! Each test runs in a [`BrowserTest`], which stops what it started and
//! fails on errors the last page logged that the test did not expect.

use std::path::Path;
use std::time::Duration;

use grid_coordinator::export::colour;
use grid_kernels::KernelSpec;
use grid_kernels::mandelbrot::{escape_time, pixel_x, pixel_y};
use grid_kernels::spec::MandelbrotParams;
use grid_protocol::api::{ExportFormat, JobRequest, JobState, WasmRequest};
use grid_protocol::{Hello, PROTOCOL_VERSION, WorkerKind, WorkerMessage};
use grid_tests::browser::BrowserTest;
use grid_tests::dashboard::{DashboardPage, LAPTOP, PHONE};
use grid_tests::raw::RawSocket;
use grid_tests::{TOKEN, assert_primes, job, primes, submit, wait_for_job, wait_for_workers};

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
    assert!(
        detail.starts_with("2 tasks failed; task 0: trap out_of_fuel"),
        "{detail}"
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
