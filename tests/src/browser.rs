//! Real Chromium for the browser worker's end-to-end tests and benchmark:
//! builds the WebAssembly worker into `www/pkg` when it is missing or older
//! than its sources, launches Debian's headless Chromium with a fresh
//! profile, opens pages, waits for DOM states and collects console errors.

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
use grid_kernels::KernelSpec;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

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
    INSTALLED
        .get_or_init(|| {
            let path = std::env::var_os("CHROMIUM")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
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
                    "Chromium is not at {} and scripts/install-chromium.sh did not install it ({status})",
                    path.display()
                ))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Browser tests run one at a time: each keeps both cores busy, and timing
/// out because a sibling test took the CPU proves nothing.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
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

    /// Closes the tab as a person would (unload handlers run).
    pub async fn close(self) -> anyhow::Result<()> {
        let result = self.page.close().await.context("close the tab");
        for listener in &self.listeners {
            listener.abort();
        }
        result
    }
}
