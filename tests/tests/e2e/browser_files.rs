//! Files for kernels in the browser: a job mounts a file, each task reads a
//! slice of it chosen by its input (the `slicehash` example, built by a real
//! toolchain) and prints the slice's SHA-256, which this test computes
//! itself with `sha2`. Done by headless Chromium tabs (and Firefox), every
//! answer exact:
//! - Two tabs of two threads each run 400 tasks over one shared 64 MiB
//!   file: the coordinator sends it about once per tab (the tab's cache
//!   fetches it for all its threads; tabs of one browser share their
//!   origin's storage, so it may be once in all), never once per task or
//!   thread. After both tabs reload, a second job on the file costs the
//!   coordinator no blob bytes at all: the tabs kept it in the origin
//!   private file system and said so in their hellos. The oracle is the
//!   coordinator's own count, `grid_blob_bytes_served_total`.
//! - A copy corrupted in a tab's cache between two page loads (one bit
//!   flipped in place, as a disk would) is caught before any task reads it:
//!   deleted, fetched again (exactly one more file's bytes served), counted
//!   on the page, and the tasks still come back right. Bytes the
//!   coordinator itself sends wrong (its stored copy altered) are fetched
//!   twice, never kept and never run on: the tasks fail with an error that
//!   names the blob, and the page counts them.
//! - The donor's quota holds: with room for one file, the file used last is
//!   kept and the other deleted from disk, and the clear button empties the
//!   cache (the prepared modules it keeps in the Cache API for
//!   `compileStreaming` too). A tab told to keep files in memory only (as one served over
//!   plain http from a LAN address must) says so, writes nothing, and still
//!   fetches a file once for all its threads.
//! - A task's input over 64 KiB (a blob reference in its batch) is fetched
//!   by the worker with the batch's capability, checked, and read as stdin.
//! - Firefox reads a mounted file exactly too, fetching it once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use grid_cli::client::Client;
use grid_kernels::JobResult;
use grid_kernels::wasm::{InputFile, WasmInputs};
use grid_protocol::api::{JobRequest, JobState, WasmRequest};
use grid_tests::browser::{BrowserTest, PAGE_TIMEOUT, TestPage, ensure_wasm_built, exclusive_grid};
use grid_tests::browser_cache::{
    Firefox, blob_bytes_served, blobs_on_disk, cache_card, cached_modules, corrupt_cached_blob,
    stay_visible, wait_for_cache,
};
use grid_tests::slices::{data, expected, slicehash, slices, submit};
use grid_tests::wait_for_workers;

const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits for the job and checks every task's stdout against the oracle.
async fn assert_exact(client: &Client, job: u64, file: &[u8], slices: &[(usize, usize)]) {
    let status = grid_tests::wait_for_job(client, job, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    let JobResult::Wasm { tasks } = client.result(job).await.unwrap() else {
        panic!("not a wasm result")
    };
    assert_eq!(tasks.len(), slices.len());
    let want = expected(file, slices);
    for task in tasks {
        assert_eq!((task.trap, task.exit_code), (None, 0), "{task:?}");
        let stdout = client.task_output(job, task.task).await.unwrap();
        assert_eq!(
            String::from_utf8(stdout).unwrap(),
            want[task.task as usize],
            "task {} read {:?}",
            task.task,
            slices[task.task as usize]
        );
    }
}

/// Waits until the page's `threads` workers are all connected.
async fn wait_connected(page: &TestPage, threads: u32) {
    page.wait_for(
        &format!(
            "document.body.dataset.state === 'working' && \
             document.querySelector('#connected-workers').textContent === '{threads}'"
        ),
        PAGE_TIMEOUT,
    )
    .await
    .expect("the page's workers connect");
}

/// Loads the page again in the same tab (the same browser profile, so the
/// same origin private file system), and waits for its workers.
async fn reload(test: &BrowserTest, page: &TestPage, threads: u32) {
    page.goto(&format!("{}/?autostart=1&threads={threads}", test.url()))
        .await
        .expect("the page loads again");
    wait_connected(page, threads).await;
}

/// A donor tab of `threads` threads that works even when another tab is in
/// front, its workers connected.
async fn open_tab(test: &BrowserTest, threads: u32) -> TestPage {
    let page = test.open_donor_page_with("").await;
    stay_visible(&page).await;
    reload(test, &page, threads).await;
    page
}

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_fetch_a_shared_file_once_each_at_most_and_not_again_after_a_reload() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let file = data(64 * MIB, 1);
    let (digest, _) = client.ensure_blob(file.clone()).await.unwrap();
    let tabs = [open_tab(&test, 2).await, open_tab(&test, 2).await];
    wait_for_workers(&client, "two tabs of two threads", |w| w.len() == 4).await;
    let before = blob_bytes_served(test.url()).await;

    let cuts = slices(file.len(), 400, 0);
    let job = submit(&client, digest, &cuts, 1).await;
    let started = Instant::now();
    assert_exact(&client, job, &file, &cuts).await;
    let took = started.elapsed();
    let first = blob_bytes_served(test.url()).await - before;
    let size = file.len() as u64;
    eprintln!(
        "job 1: 400 tasks over a 64 MiB file on 2 tabs x 2 threads in {:.1} s; \
         the coordinator served {first} blob bytes ({:.2} files)",
        took.as_secs_f64(),
        first as f64 / size as f64
    );
    assert!(
        (size..=2 * size).contains(&first),
        "the file should go about once per tab ({size} to {} bytes), not once per \
         task or thread: {first} bytes were served",
        2 * size
    );
    // A tab whose workers got tasks holds the file (the scheduler may give
    // most to the tab that fetched it first: it holds the file).
    let mut fetched_by_tabs = 0;
    let mut holders = 0;
    for tab in &tabs {
        let card = cache_card(tab).await;
        eprintln!("a tab's cache after job 1: {card:?}");
        assert!(card.persistent, "127.0.0.1 is a secure context: {card:?}");
        assert!(
            card.blobs.is_empty() || card.blobs == [digest.to_string()],
            "{card:?}"
        );
        holders += usize::from(!card.blobs.is_empty());
        assert_eq!(card.corrupt_on_disk + card.corrupt_from_network, 0);
        fetched_by_tabs += card.fetched_bytes;
    }
    assert!(holders > 0, "a tab holds the file");
    assert_eq!(fetched_by_tabs, first, "the tabs count what they fetched");
    assert_eq!(
        blobs_on_disk(&tabs[0]).await,
        vec![(digest.hex(), size)],
        "the origin private file system holds the checked file"
    );

    // Both tabs load again: their caches come back from disk, and say so in
    // their workers' hellos.
    for tab in &tabs {
        reload(&test, tab, 2).await;
    }
    wait_for_workers(&client, "both tabs again", |w| w.len() == 4).await;
    let cuts = slices(file.len(), 400, 17);
    let job = submit(&client, digest, &cuts, 1).await;
    let started = Instant::now();
    assert_exact(&client, job, &file, &cuts).await;
    let took = started.elapsed();
    assert_eq!(
        blob_bytes_served(test.url()).await - before,
        first,
        "after a reload the file is read from the tabs' caches: nothing more is served"
    );
    for tab in &tabs {
        let card = cache_card(tab).await;
        eprintln!("a tab's cache after the reload and job 2: {card:?}");
        assert_eq!(card.fetched_bytes, 0, "{card:?}");
        // Both tabs found it on disk, in their origin's storage.
        assert_eq!(card.blobs, vec![digest.to_string()], "{card:?}");
    }
    // The tabs that ran tasks checked the copy they read back from disk.
    let checks: Vec<(u64, f64)> = {
        let mut checks = Vec::new();
        for tab in &tabs {
            let card = cache_card(tab).await;
            if let (Some(bytes), Some(ms)) = (card.check_bytes, card.check_ms) {
                checks.push((bytes, ms));
            }
        }
        checks
    };
    assert!(!checks.is_empty(), "a tab checked its copy before use");
    for (bytes, ms) in &checks {
        assert_eq!(*bytes, size);
        eprintln!("checking the 64 MiB copy read back from disk took {ms:.0} ms");
    }
    eprintln!("job 2 took {:.1} s", took.as_secs_f64());
    let [first_tab, second_tab] = tabs;
    second_tab.assert_no_errors();
    second_tab.close().await.unwrap();
    test.finish(first_tab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_corrupted_in_the_tabs_cache_is_caught_fetched_again_and_counted() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let file = data(4 * MIB, 2);
    let size = file.len() as u64;
    let (digest, _) = client.ensure_blob(file.clone()).await.unwrap();
    let page = test.open_donor_page(1).await;
    let before = blob_bytes_served(test.url()).await;
    let cuts = slices(file.len(), 20, 0);
    assert_exact(
        &client,
        submit(&client, digest, &cuts, 1).await,
        &file,
        &cuts,
    )
    .await;
    assert_eq!(blob_bytes_served(test.url()).await - before, size);

    // Between two page loads, with no worker running, a bit flips on disk.
    page.goto(&format!("{}/", test.url())).await.unwrap();
    wait_for_cache(&page).await;
    assert_eq!(
        corrupt_cached_blob(&page, &digest, 3 * MIB as u64 + 7).await,
        size
    );
    reload(&test, &page, 1).await;
    let cuts = slices(file.len(), 20, 5);
    assert_exact(
        &client,
        submit(&client, digest, &cuts, 1).await,
        &file,
        &cuts,
    )
    .await;
    assert_eq!(
        blob_bytes_served(test.url()).await - before,
        2 * size,
        "the corrupt copy is fetched again, once"
    );
    let card = cache_card(&page).await;
    eprintln!("the tab's cache after catching the corrupt copy: {card:?}");
    assert_eq!(
        (
            card.corrupt_on_disk,
            card.corrupt_from_network,
            card.fetched_bytes
        ),
        (1, 0, size)
    );
    assert_eq!(card.blobs, vec![digest.to_string()]);
    assert_eq!(blobs_on_disk(&page).await, vec![(digest.hex(), size)]);
    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_inputs_are_fetched_with_the_capability_checked_and_read_as_stdin() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let file = data(MIB, 8);
    let size = file.len() as u64;
    let (digest, _) = client.ensure_blob(file.clone()).await.unwrap();
    // One task per input file; past 64 KiB an input travels as a blob
    // reference, which the worker fetches itself. slicehash reads its
    // first line; the padding makes the file large.
    let cuts = slices(file.len(), 4, 9);
    let mut inputs = Vec::new();
    let mut inputs_bytes = 0;
    for (i, (offset, length)) in cuts.iter().enumerate() {
        let mut input = format!("data.bin {offset} {length}\n").into_bytes();
        if i > 0 {
            input.resize(100_000 * i, b'#');
            inputs_bytes += input.len() as u64;
        }
        let (blob, _) = client.ensure_blob(input).await.unwrap();
        inputs.push(InputFile {
            name: format!("input-{i}.txt"),
            blob,
        });
    }
    let page = test.open_donor_page(1).await;
    let before = blob_bytes_served(test.url()).await;
    let (module, _) = client.ensure_blob(slicehash()).await.unwrap();
    let mut request = WasmRequest::new(module);
    request.inputs = Some(WasmInputs::Files(inputs));
    request.files = BTreeMap::from([("data.bin".to_string(), digest)]);
    let job = client.submit(&JobRequest::new(request)).await.unwrap().id;
    assert_exact(&client, job, &file, &cuts).await;
    assert_eq!(
        blob_bytes_served(test.url()).await - before,
        size + inputs_bytes,
        "the file once, and each large input once"
    );
    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bytes_from_the_coordinator_fail_the_tasks_naming_the_blob() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let file = data(MIB, 7);
    let (digest, _) = client.ensure_blob(file.clone()).await.unwrap();
    // The coordinator's disk now holds other bytes under the digest.
    let stored = test.grid().data_dir.join("blobs").join(digest.to_string());
    let mut wrong = file.clone();
    wrong[77] ^= 1;
    std::fs::write(&stored, &wrong).expect("the stored blob is replaced");
    let page = test.open_donor_page(1).await;
    let before = blob_bytes_served(test.url()).await;
    let job = submit(&client, digest, &slices(file.len(), 3, 0), 1).await;
    let status = grid_tests::wait_for_job(&client, job, JOB_TIMEOUT).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    // The job's error is what the last worker said with `failed`.
    let error = status.error.clone().unwrap_or_default();
    assert!(
        error.contains(&digest.to_string()) && error.contains("twice"),
        "the failure names the blob: {error}"
    );
    // Fetched twice, refused, never kept, never run on; the page says so.
    let card = cache_card(&page).await;
    assert_eq!(
        (
            card.fetches,
            card.corrupt_from_network,
            card.corrupt_on_disk
        ),
        (2, 2, 0),
        "{card:?}"
    );
    assert!(card.blobs.is_empty(), "{card:?}");
    assert_eq!(
        blob_bytes_served(test.url()).await - before,
        2 * file.len() as u64,
        "fetched twice, then refused for every later task"
    );
    let summary = page.text("#cache-summary").await.unwrap();
    assert!(summary.contains("2 from the network"), "{summary}");
    assert!(!summary.contains("tasks failed for a file: 0"), "{summary}");
    let problem = page.text("#cache-error").await.unwrap();
    assert!(
        problem.contains(&digest.to_string()) && problem.contains("twice"),
        "{problem}"
    );
    assert!(blobs_on_disk(&page).await.is_empty());
    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_donors_quota_keeps_the_file_used_last_and_clear_empties_the_cache() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let first = data(MIB, 3);
    let second = data(MIB, 4);
    let (a, _) = client.ensure_blob(first.clone()).await.unwrap();
    let (b, _) = client.ensure_blob(second.clone()).await.unwrap();
    // Room for one of the two files.
    let page = test
        .open_donor_page_with(&format!(
            "autostart=1&threads=1&cache_quota={}",
            3 * MIB / 2
        ))
        .await;
    wait_connected(&page, 1).await;
    let cuts = slices(MIB, 10, 0);
    assert_exact(&client, submit(&client, a, &cuts, 1).await, &first, &cuts).await;
    assert_exact(&client, submit(&client, b, &cuts, 1).await, &second, &cuts).await;
    let card = cache_card(&page).await;
    assert_eq!(card.blobs, vec![b.to_string()], "{card:?}");
    assert_eq!(blobs_on_disk(&page).await, vec![(b.hex(), MIB as u64)]);
    // The prepared module is kept too, ready for compileStreaming.
    let modules = cached_modules(&page).await;
    assert_eq!(modules.len(), 1, "{modules:?}");
    assert!(
        modules[0].0.starts_with("/api/modules/sha256:") && modules[0].1,
        "{modules:?}"
    );
    let quota: String = page
        .eval("document.querySelector('#cache-quota').value")
        .await
        .unwrap();
    assert_eq!(quota, "2", "the quota shown in MiB, rounded");

    page.click("#cache-clear").await.unwrap();
    page.wait_for(
        "document.querySelectorAll('#cache-list tr').length === 0 && \
         !document.querySelector('#cache-empty').hidden",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the list empties");
    assert_eq!(blobs_on_disk(&page).await, Vec::<(String, u64)>::new());
    assert_eq!(cached_modules(&page).await, Vec::<(String, bool)>::new());
    // After a reload (the workers kept what they held in memory), a
    // cleared cache fetches again, and the answers stay exact.
    reload(&test, &page, 1).await;
    let before = blob_bytes_served(test.url()).await;
    let cuts = slices(MIB, 10, 3);
    assert_exact(&client, submit(&client, b, &cuts, 1).await, &second, &cuts).await;
    assert_eq!(blob_bytes_served(test.url()).await - before, MIB as u64);
    test.finish(page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_keeping_files_in_memory_says_so_and_reads_them_exactly() {
    let test = BrowserTest::start().await;
    let client = test.client();
    let file = data(2 * MIB, 6);
    let size = file.len() as u64;
    let (digest, _) = client.ensure_blob(file.clone()).await.unwrap();
    let page = test
        .open_donor_page_with("autostart=1&threads=2&cache=memory")
        .await;
    wait_connected(&page, 2).await;
    let before = blob_bytes_served(test.url()).await;
    let cuts = slices(file.len(), 30, 0);
    assert_exact(
        &client,
        submit(&client, digest, &cuts, 1).await,
        &file,
        &cuts,
    )
    .await;
    let card = cache_card(&page).await;
    assert!(!card.persistent, "{card:?}");
    assert_eq!(card.blobs, vec![digest.to_string()]);
    assert_eq!(
        (card.fetches, card.fetched_bytes),
        (1, size),
        "once for both threads"
    );
    let why: String = page.text("#cache-persistence").await.unwrap();
    assert!(
        why.contains("not kept") && why.contains("cache=memory"),
        "{why}"
    );
    assert!(blobs_on_disk(&page).await.is_empty(), "nothing written");
    assert_eq!(blob_bytes_served(test.url()).await - before, size);
    test.finish(page).await;
}

/// The first case in Firefox: its tasks read the mounted file exactly, and
/// its tab fetches it once for the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_reads_a_mounted_file_exactly_and_fetches_it_once() {
    ensure_wasm_built().expect("www/pkg builds");
    let (grid, _turn, _dir) = exclusive_grid(|_| {}).await;
    let client = grid.client();
    let file = data(8 * MIB, 5);
    let (digest, _) = client.ensure_blob(file.clone()).await.unwrap();
    let firefox = Firefox::open(&format!("{}/?autostart=1&threads=2", grid.url));
    wait_for_workers(&client, "Firefox's two threads", |w| w.len() == 2).await;
    let before = blob_bytes_served(&grid.url).await;
    let cuts = slices(file.len(), 60, 0);
    assert_exact(
        &client,
        submit(&client, digest, &cuts, 1).await,
        &file,
        &cuts,
    )
    .await;
    assert_eq!(
        blob_bytes_served(&grid.url).await - before,
        file.len() as u64,
        "one fetch for the tab's two threads"
    );
    drop(firefox);
    grid.stop().await;
}
