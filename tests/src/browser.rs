//! Real Chromium for the browser worker's end-to-end tests and benchmark:
//! builds the WebAssembly worker into `www/pkg` when it is missing or older
//! than its sources, launches Debian's headless Chromium with a fresh
//! profile, opens pages, waits for DOM states and collects console errors.
//!
//! [`BrowserTest`] is the set-up and tear-down every browser test shares:
//! its turn, a coordinator, Chromium, and at the end the check that the page
//! logged no error it was not told to expect.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::Page;
use futures_util::StreamExt;
use grid_cli::client::Client;
use grid_coordinator::ServerConfig;
use grid_kernels::KernelSpec;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::{TestGrid, TestWorker};

/// Where Debian puts Chromium; `CHROMIUM` overrides it.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// The built worker module that `www/` serves.
pub fn wasm_module() -> PathBuf {
    repo_root().join("www/pkg/grid_worker_wasm_bg.wasm")
}

fn newest_change(path: &Path) -> SystemTime {
    let own = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .map(|entry| newest_change(&entry.path()))
            .fold(own, SystemTime::max),
        Err(_) => own,
    }
}

/// Runs `scripts/build-wasm.sh` unless `www/pkg` is newer than every source
/// it is built from. Once per process; tests that share the result wait.
pub fn ensure_wasm_built() -> anyhow::Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = repo_root();
            let built = std::fs::metadata(wasm_module())
                .and_then(|m| m.modified())
                .ok();
            let sources = [
                "worker-wasm",
                "kernels/src",
                "protocol/src",
                "wasi/src",
                "Cargo.lock",
                "scripts/build-wasm.sh",
            ]
            .iter()
            .map(|p| newest_change(&root.join(p)))
            .fold(SystemTime::UNIX_EPOCH, SystemTime::max);
            if built.is_some_and(|built| built >= sources) {
                return Ok(());
            }
            eprintln!("www/pkg is missing or stale: running scripts/build-wasm.sh");
            let status = Command::new("bash")
                .arg(root.join("scripts/build-wasm.sh"))
                .current_dir(&root)
                .status()
                .map_err(|e| format!("cannot run scripts/build-wasm.sh: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("scripts/build-wasm.sh failed: {status}"))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The Chromium binary, installed with `scripts/install-chromium.sh` if it is
/// missing.
pub fn ensure_chromium() -> anyhow::Result<PathBuf> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ensure_browser(&INSTALLED, "Chromium", "CHROMIUM", DEFAULT_CHROMIUM)
}

/// Where Debian puts Firefox ESR; `FIREFOX` overrides it.
pub const DEFAULT_FIREFOX: &str = "/usr/bin/firefox-esr";

/// The Firefox binary, installed with `scripts/install-chromium.sh` (which
/// installs Firefox ESR too) if it is missing.
pub fn ensure_firefox() -> anyhow::Result<PathBuf> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ensure_browser(&INSTALLED, "Firefox", "FIREFOX", DEFAULT_FIREFOX)
}

/// A browser's binary (`$env`, else `default`), installed once per process
/// with `scripts/install-chromium.sh` if it is missing.
fn ensure_browser(
    installed: &OnceLock<Result<PathBuf, String>>,
    name: &str,
    env: &str,
    default: &str,
) -> anyhow::Result<PathBuf> {
    installed
        .get_or_init(|| {
            let path = std::env::var_os(env)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default));
            if path.is_file() {
                return Ok(path);
            }
            eprintln!("{} is missing: running scripts/install-chromium.sh", path.display());
            let status = Command::new("bash")
                .arg(repo_root().join("scripts/install-chromium.sh"))
                .status()
                .map_err(|e| format!("cannot run scripts/install-chromium.sh: {e}"))?;
            if status.success() && path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{name} is not at {} and scripts/install-chromium.sh did not install it ({status})",
                    path.display()
                ))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// For a browser test that drives a browser other than Chromium: its turn
/// ([`exclusive`]) and a coordinator with the test settings, adjusted, on a
/// fresh data directory (returned too: it lives as long as the coordinator).
pub async fn exclusive_grid(
    adjust: fn(&mut ServerConfig),
) -> (
    TestGrid,
    tokio::sync::RwLockWriteGuard<'static, ()>,
    tempfile::TempDir,
) {
    let turn = exclusive().await;
    let dir = tempfile::tempdir().expect("a data directory");
    let grid = TestGrid::launch(dir.path(), 0, adjust, None).await;
    (grid, turn, dir)
}

/// Browser tests run alone, without another test's coordinator beside
/// them ([`crate::TURNS`]): each keeps both cores busy, and timing out
/// because a sibling test took the CPU proves nothing.
pub async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    crate::TURNS.write().await
}

/// How long a page may take to reach a state it is waited for in.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// One browser test's world: its turn ([`exclusive`]), a coordinator on a
/// fresh data directory, native workers the test asked for, and a headless
/// Chromium. [`BrowserTest::finish`] checks the test's last page and stops
/// it all, workers first.
#[derive(Debug)]
pub struct BrowserTest {
    pub(crate) browser: TestBrowser,
    grid: Option<TestGrid>,
    /// The coordinator's port, kept for a restart.
    port: u16,
    adjust: fn(&mut ServerConfig),
    workers: Vec<TestWorker>,
    dir: tempfile::TempDir,
    _turn: tokio::sync::RwLockWriteGuard<'static, ()>,
}

impl BrowserTest {
    /// Waits for its turn, then starts a coordinator with the test settings
    /// and Chromium.
    pub async fn start() -> BrowserTest {
        BrowserTest::start_with(|_| {}).await
    }

    /// [`BrowserTest::start`] with the coordinator's configuration adjusted
    /// (again on [`BrowserTest::start_grid_again`]).
    pub async fn start_with(adjust: fn(&mut ServerConfig)) -> BrowserTest {
        let turn = exclusive().await;
        let dir = tempfile::tempdir().expect("a data directory");
        let grid = TestGrid::launch(dir.path(), 0, adjust, None).await;
        let browser = TestBrowser::launch().await.expect("Chromium starts");
        BrowserTest {
            browser,
            port: grid.port(),
            grid: Some(grid),
            adjust,
            workers: Vec::new(),
            dir,
            _turn: turn,
        }
    }

    /// The coordinator, while it runs.
    pub fn grid(&self) -> &TestGrid {
        self.grid.as_ref().expect("the coordinator is running")
    }

    /// `http://127.0.0.1:port`, the same across a restart.
    pub fn url(&self) -> &str {
        &self.grid().url
    }

    pub fn client(&self) -> Client {
        self.grid().client()
    }

    /// Connects a native worker, stopped with the coordinator.
    pub fn add_worker(&mut self, threads: usize, name: &str) {
        let worker = self.grid().worker(threads, name);
        self.workers.push(worker);
    }

    /// Stops the native workers, then the coordinator, gracefully: pages
    /// see it leave.
    pub async fn stop_grid(&mut self) {
        for worker in self.workers.drain(..) {
            worker.stop().await;
        }
        if let Some(grid) = self.grid.take() {
            grid.stop().await;
        }
    }

    /// Starts the stopped coordinator again on its port and data directory,
    /// where pages and workers that knew it look for it.
    pub async fn start_grid_again(&mut self) {
        assert!(self.grid.is_none(), "the coordinator is still running");
        self.grid = Some(TestGrid::launch(self.dir.path(), self.port, self.adjust, None).await);
    }

    /// Opens the donor page with `query` (`autostart=1&threads=1&cap=25`)
    /// in a new tab, building `www/pkg` first if it is stale.
    pub async fn open_donor_page_with(&self, query: &str) -> TestPage {
        ensure_wasm_built().expect("www/pkg builds");
        let url = format!("{}/?{query}", self.url());
        self.browser
            .open(&url)
            .await
            .unwrap_or_else(|e| panic!("the donor page at {url} loads: {e:#}"))
    }

    /// Opens the donor page with `threads` threads started, and waits until
    /// they are all connected.
    pub async fn open_donor_page(&self, threads: u32) -> TestPage {
        let page = self
            .open_donor_page_with(&format!("autostart=1&threads={threads}"))
            .await;
        page.wait_for(
            &format!(
                "document.body.dataset.state === 'working' && \
                 document.querySelector('#connected-workers').textContent === '{threads}'"
            ),
            PAGE_TIMEOUT,
        )
        .await
        .expect("the page's workers connect");
        page
    }

    /// Fails if `page` logged an error it was not told to expect, then
    /// closes it, stops the workers and the coordinator, and closes Chromium.
    pub async fn finish(mut self, page: impl Into<TestPage>) {
        let page = page.into();
        page.assert_no_errors();
        page.close().await.expect("the tab closes");
        self.stop_grid().await;
        self.browser.close().await;
    }
}

/// A headless Chromium with a throwaway profile.
#[derive(Debug)]
pub struct TestBrowser {
    pub(crate) browser: Browser,
    handler: JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl TestBrowser {
    pub async fn launch() -> anyhow::Result<TestBrowser> {
        let executable = ensure_chromium()?;
        let profile = tempfile::tempdir().context("a profile folder")?;
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .user_data_dir(profile.path())
            .no_sandbox()
            .args([
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(60))
            .build()
            .map_err(anyhow::Error::msg)?;
        let (browser, mut handler) = Browser::launch(config)
            .await
            .context("launch headless Chromium")?;
        let handler = tokio::spawn(async move {
            // Errors here are CDP messages this client does not know; the
            // connection itself ends with the browser.
            while let Some(event) = handler.next().await {
                if let Err(error) = event {
                    tracing::debug!(%error, "chromium handler");
                }
            }
        });
        Ok(TestBrowser {
            browser,
            handler,
            _profile: profile,
        })
    }

    /// Opens `url` in a new tab, listening for console errors from the start.
    pub async fn open(&self, url: &str) -> anyhow::Result<TestPage> {
        let page = self.blank_tab(DONOR_PAGE_SUMMARY).await?;
        page.goto(url).await?;
        Ok(page)
    }

    /// A new, empty tab already collecting errors, for a caller to prepare
    /// before it loads anything. `summary` is a JavaScript expression whose
    /// value describes the page in failure messages.
    pub(crate) async fn blank_tab(&self, summary: &'static str) -> anyhow::Result<TestPage> {
        let page = self
            .browser
            .new_page("about:blank")
            .await
            .context("open a tab")?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let listeners = collect_errors(&page, &errors).await?;
        page.enable_log().await?;
        Ok(TestPage {
            page,
            errors,
            expected_errors: Vec::new(),
            listeners,
            summary,
        })
    }

    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.browser.wait()).await;
        self.handler.abort();
    }
}

/// Console errors, uncaught exceptions and browser log errors (failed
/// requests and sockets), each as one line.
async fn collect_errors(
    page: &Page,
    errors: &Arc<Mutex<Vec<String>>>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut console = page.event_listener::<EventConsoleApiCalled>().await?;
    let mut exceptions = page.event_listener::<EventExceptionThrown>().await?;
    let mut log = page.event_listener::<EventEntryAdded>().await?;
    let sink = errors.clone();
    let console = tokio::spawn(async move {
        while let Some(event) = console.next().await {
            if event.r#type == ConsoleApiCalledType::Error {
                let text: Vec<String> = event
                    .args
                    .iter()
                    .map(|arg| match &arg.value {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(value) => value.to_string(),
                        None => arg.description.clone().unwrap_or_default(),
                    })
                    .collect();
                sink.lock()
                    .unwrap()
                    .push(format!("console.error: {}", text.join(" ")));
            }
        }
    });
    let sink = errors.clone();
    let exceptions = tokio::spawn(async move {
        while let Some(event) = exceptions.next().await {
            let details = &event.exception_details;
            let description = details
                .exception
                .as_ref()
                .and_then(|e| e.description.clone())
                .unwrap_or_default();
            sink.lock().unwrap().push(format!(
                "uncaught exception: {} {description}",
                details.text
            ));
        }
    });
    let sink = errors.clone();
    let log = tokio::spawn(async move {
        while let Some(event) = log.next().await {
            if event.entry.level == LogEntryLevel::Error {
                sink.lock().unwrap().push(format!(
                    "log error: {} ({})",
                    event.entry.text,
                    event.entry.url.clone().unwrap_or_default()
                ));
            }
        }
    });
    Ok(vec![console, exceptions, log])
}

/// One tab.
#[derive(Debug)]
pub struct TestPage {
    pub(crate) page: Page,
    errors: Arc<Mutex<Vec<String>>>,
    /// Errors containing one of these are the test's to expect.
    expected_errors: Vec<&'static str>,
    listeners: Vec<JoinHandle<()>>,
    summary: &'static str,
}

/// The donor page's state and figures, for failure messages.
const DONOR_PAGE_SUMMARY: &str = "({state: document.body.dataset.state, \
      status: document.querySelector('#status')?.textContent, \
      connected: document.querySelector('#connected-workers')?.textContent, \
      tasks: document.querySelector('#tasks-done')?.textContent})";

impl TestPage {
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.page
            .goto(url)
            .await
            .with_context(|| format!("load {url}"))?;
        Ok(())
    }

    /// Evaluates a JavaScript expression (awaiting a promise) and decodes
    /// its JSON value.
    pub async fn eval<T: DeserializeOwned>(&self, expression: &str) -> anyhow::Result<T> {
        let result = self
            .page
            .evaluate_expression(expression)
            .await
            .with_context(|| format!("evaluate {expression}"))?;
        result
            .into_value()
            .with_context(|| format!("decode the value of {expression}"))
    }

    /// Waits until `condition` (a JavaScript expression) is true, polling.
    pub async fn wait_for(&self, condition: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.eval::<bool>(&format!("!!({condition})")).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for `{condition}`; the page says: {}",
                    self.summary().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the element with this CSS selector.
    pub async fn text(&self, selector: &str) -> anyhow::Result<String> {
        let selector = serde_json::to_string(selector)?;
        self.eval(&format!(
            "document.querySelector({selector})?.textContent ?? null"
        ))
        .await
    }

    /// What the page shows, briefly, for failure messages.
    pub async fn summary(&self) -> String {
        match self.eval::<serde_json::Value>(self.summary).await {
            Ok(summary) => summary.to_string(),
            Err(error) => format!("(unreadable: {error:#})"),
        }
    }

    /// Clicks the element with this CSS selector, as a mouse would.
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        self.page
            .find_element(selector)
            .await
            .with_context(|| format!("find {selector}"))?
            .click()
            .await
            .with_context(|| format!("click {selector}"))?;
        Ok(())
    }

    /// Computes one task with the page's WebAssembly module (imported into
    /// the page itself) and returns its output bytes.
    pub async fn run_task_in_wasm(
        &self,
        spec: &KernelSpec,
        tasks: u32,
        index: u32,
    ) -> anyhow::Result<Vec<u8>> {
        let spec = serde_json::to_string(&serde_json::to_string(spec)?)?;
        self.eval(&format!(
            "(async () => {{ \
                const wasm = await import('/pkg/grid_worker_wasm.js'); \
                await wasm.default(); \
                return Array.from(wasm.run_task({spec}, {tasks}, {index})); \
            }})()"
        ))
        .await
    }

    /// Errors the page logged or threw so far.
    pub fn console_errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// From now on an error containing `text` is expected (the browser
    /// itself logs refused connections and 401s): not a failure.
    pub fn expect_errors(&mut self, text: &'static str) {
        self.expected_errors.push(text);
    }

    /// Fails with the list if the page logged or threw an error it was not
    /// told to expect.
    pub fn assert_no_errors(&self) {
        let unexpected: Vec<String> = self
            .console_errors()
            .into_iter()
            .filter(|e| !self.expected_errors.iter().any(|text| e.contains(text)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "the page logged errors: {unexpected:#?}"
        );
    }

    /// Closes the tab as a person would (unload handlers run).
    pub async fn close(self) -> anyhow::Result<()> {
        let result = self.page.close().await.context("close the tab");
        for listener in &self.listeners {
            listener.abort();
        }
        result
    }
}
