//! The dashboard's drill-down in headless Chromium: its snapshot lists the
//! newest finished jobs and "Load older jobs" pages through the rest; a job
//! not listed is found by its number (and a missing one said to be
//! missing); a hashsearch job's nonces, which the monitor sends apart from
//! its status, show the count the API gives and the smallest few; the
//! worker list is searched by name. The expected values come from the API.

use std::time::Duration;

use grid_kernels::spec::HashsearchParams;
use grid_kernels::{KernelSpec, ResultSummary};
use grid_protocol::api::MonitorEvent;
use grid_tests::browser::BrowserTest;
use grid_tests::dashboard::LAPTOP;
use grid_tests::{TOKEN, job, primes, submit, wait_for_job};

const WAIT: Duration = Duration::from_secs(60);

fn count_of(selector: &str) -> String {
    format!("document.querySelectorAll('{selector}').length")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_pages_older_jobs_finds_one_and_shows_nonces() {
    let mut test = BrowserTest::start().await;
    let client = test.client();
    test.add_worker(2, "native-1");
    let listed = MonitorEvent::SNAPSHOT_FINISHED_JOBS as u64;
    let mut ids = Vec::new();
    for _ in 0..listed + 4 {
        ids.push(submit(&client, &job(primes(0, 1000), 1)).await);
    }
    let search = submit(
        &client,
        &job(
            KernelSpec::Hashsearch(HashsearchParams {
                prefix: "browsergrid".into(),
                difficulty: 8,
                start: 0,
                end: 200_000,
            }),
            20,
        ),
    )
    .await;
    for id in ids.iter().chain([&search]) {
        wait_for_job(&client, *id, WAIT).await;
    }
    let Some(ResultSummary::Hashsearch { nonces }) = client.status(search).await.unwrap().result
    else {
        panic!("the hashsearch job has no nonces")
    };
    assert!(nonces.len() > 60, "{} nonces", nonces.len());

    let mut page = test.open_dashboard(Some(TOKEN), LAPTOP).await;
    page.wait_for("document.body.dataset.connection === 'live'", WAIT)
        .await
        .unwrap();
    // The snapshot: the newest finished jobs, the oldest left for later.
    let card = |id: u64| format!(".job[data-job=\"{id}\"]");
    page.wait_for(&format!("{} === {listed}", count_of(".job")), WAIT)
        .await
        .unwrap();
    assert!(
        page.eval::<bool>(&format!("!document.querySelector('{}')", card(ids[0])))
            .await
            .unwrap()
    );
    assert!(
        !page
            .eval::<bool>("document.querySelector('#older-jobs').hidden")
            .await
            .unwrap()
    );

    // The nonces: the count the API gives, the smallest 50 listed.
    page.wait_for(
        &format!(
            "document.querySelector('{} .answer')?.textContent.includes('nonces')",
            card(search)
        ),
        WAIT,
    )
    .await
    .unwrap();
    let answer = page
        .text(&format!("{} .answer", card(search)))
        .await
        .unwrap();
    let counted: String = answer.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(counted, nonces.len().to_string(), "{answer}");
    let shown = page
        .texts(&format!("{} .nonces li:not(.more)", card(search)))
        .await
        .unwrap();
    let smallest: Vec<String> = nonces.iter().take(50).map(u64::to_string).collect();
    assert_eq!(shown, smallest);

    // Older jobs, one page: every job is there and nothing more to load.
    page.click("#older-jobs").await.unwrap();
    page.wait_for(&format!("{} === {}", count_of(".job"), ids.len() + 1), WAIT)
        .await
        .unwrap();
    page.wait_for("document.querySelector('#older-jobs').hidden", WAIT)
        .await
        .unwrap();

    // Opened again, the oldest job is found by its number, and a missing
    // one is said to be missing.
    page.goto(&test.dashboard_url(None)).await.unwrap();
    page.wait_for(&format!("{} === {listed}", count_of(".job")), WAIT)
        .await
        .unwrap();
    let find = |id: String| {
        format!(
            "(() => {{ document.querySelector('#job-search').value = '{id}'; \
              document.querySelector('#find-job').requestSubmit(); return true; }})()"
        )
    };
    let _: bool = page.eval(&find(format!("#{}", ids[0]))).await.unwrap();
    page.wait_for(
        &format!("document.querySelector('{}')?.open === true", card(ids[0])),
        WAIT,
    )
    .await
    .unwrap();
    // The page asks for job 999999 and is told 404, which it logs.
    page.expect_errors("404");
    let _: bool = page.eval(&find("999999".into())).await.unwrap();
    page.wait_for("!document.querySelector('#find-error').hidden", WAIT)
        .await
        .unwrap();
    assert_eq!(page.text("#find-error").await.unwrap(), "No job #999999.");

    // A small fleet's list is shown at once; a search narrows it.
    page.wait_for(&format!("{} > 0", count_of("#workers tr")), WAIT)
        .await
        .unwrap();
    let type_in = |text: &str| {
        format!(
            "(() => {{ const input = document.querySelector('#worker-search'); \
              input.value = '{text}'; input.dispatchEvent(new Event('input')); return true; }})()"
        )
    };
    let _: bool = page.eval(&type_in("native-1")).await.unwrap();
    assert!(page.text("#workers tr").await.unwrap().contains("native-1"));
    let _: bool = page.eval(&type_in("nobody-by-that-name")).await.unwrap();
    assert_eq!(page.eval::<u64>(&count_of("#workers tr")).await.unwrap(), 0);
    assert_eq!(
        page.text("#workers-note").await.unwrap(),
        "No connection matches."
    );
    test.finish(page).await;
}
