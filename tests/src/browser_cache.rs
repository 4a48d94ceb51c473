//! Helpers for the end-to-end tests of the donor page's blob cache
//! (`tests/e2e/browser_files.rs`): what the coordinator says it served, what
//! a tab's cache shows and holds in its origin private file system, a copy
//! corrupted there as a disk would corrupt it, a tab that keeps working in
//! the background, and a headless Firefox (driven without a debugging
//! protocol: the tests watch it through the coordinator).

use std::process::{Child, Command, Stdio};

use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
use grid_kernels::ContentDigest;
use serde::Deserialize;

use crate::browser::{PAGE_TIMEOUT, TestPage, ensure_firefox};

/// The coordinator's count of blob bytes it sent to workers
/// (`grid_blob_bytes_served_total` in `GET /metrics`).
pub async fn blob_bytes_served(url: &str) -> u64 {
    crate::metric(url, "grid_blob_bytes_served_total").await
}

/// What a tab's cache card shows: the blobs listed, used last first, and
/// the page's own figures (read from the card's `data-` attributes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CacheCard {
    pub persistent: bool,
    pub blobs: Vec<String>,
    pub fetched_bytes: u64,
    pub fetches: u64,
    pub corrupt_on_disk: u64,
    pub corrupt_from_network: u64,
    /// The last hash the page took: bytes, and milliseconds.
    pub check_bytes: Option<u64>,
    pub check_ms: Option<f64>,
}

/// Reads the cache card of a donor page.
pub async fn cache_card(page: &TestPage) -> CacheCard {
    page.eval(
        "(() => { \
            const d = document.querySelector('#cache-summary').dataset; \
            const n = (v) => v === undefined || v === '' ? null : Number(v); \
            return { \
              persistent: document.querySelector('#cache-persistence').dataset.persistent === 'true', \
              blobs: [...document.querySelectorAll('#cache-list tr')].map((r) => r.dataset.blob), \
              fetched_bytes: n(d.fetchedBytes) ?? 0, fetches: n(d.fetches) ?? 0, \
              corrupt_on_disk: n(d.corruptOnDisk) ?? 0, \
              corrupt_from_network: n(d.corruptFromNetwork) ?? 0, \
              check_bytes: n(d.checkBytes), check_ms: n(d.checkMs), \
            }; \
        })()",
    )
    .await
    .expect("the cache card reads")
}

/// Waits until the page's cache is open (the card is filled in).
pub async fn wait_for_cache(page: &TestPage) {
    page.wait_for("document.body.dataset.cache === 'ready'", PAGE_TIMEOUT)
        .await
        .expect("the page's cache opens");
}

/// The blobs in the tab's origin private file system (`browsergrid-blobs`),
/// by file name, with their sizes.
pub async fn blobs_on_disk(page: &TestPage) -> Vec<(String, u64)> {
    page.eval(
        "(async () => { \
            const root = await navigator.storage.getDirectory(); \
            const dir = await root.getDirectoryHandle('browsergrid-blobs', { create: true }); \
            const found = []; \
            for await (const handle of dir.values()) { \
              if (handle.kind === 'file') found.push([handle.name, (await handle.getFile()).size]); \
            } \
            return found.sort(); \
        })()",
    )
    .await
    .expect("the origin private file system lists")
}

/// The prepared modules the tab keeps in the Cache API
/// (`browsergrid-modules`): each one's URL, and whether
/// `WebAssembly.compileStreaming` takes the cached response as it is.
pub async fn cached_modules(page: &TestPage) -> Vec<(String, bool)> {
    page.eval(
        "(async () => { \
            const cache = await caches.open('browsergrid-modules'); \
            const found = []; \
            for (const request of await cache.keys()) { \
              const response = await cache.match(request); \
              const compiles = await WebAssembly.compileStreaming(response).then(() => true, () => false); \
              found.push([new URL(request.url).pathname, compiles]); \
            } \
            return found; \
        })()",
    )
    .await
    .expect("the Cache API lists")
}

/// Flips a bit of the byte at `offset` of the tab's cached copy of
/// `digest`, in place, as a failing disk would; answers the copy's size.
pub async fn corrupt_cached_blob(page: &TestPage, digest: &ContentDigest, offset: u64) -> u64 {
    let hex = digest.hex();
    page.eval(&format!(
        "(async () => {{ \
            const root = await navigator.storage.getDirectory(); \
            const dir = await root.getDirectoryHandle('browsergrid-blobs'); \
            const handle = await dir.getFileHandle('{hex}'); \
            const before = await handle.getFile(); \
            const byte = new Uint8Array(await before.slice({offset}, {offset} + 1).arrayBuffer())[0]; \
            const writable = await handle.createWritable({{ keepExistingData: true }}); \
            await writable.write({{ type: 'write', position: {offset}, data: new Uint8Array([byte ^ 0x40]) }}); \
            await writable.close(); \
            return (await handle.getFile()).size; \
        }})()"
    ))
    .await
    .expect("the cached copy can be corrupted")
}

/// Every document `page` loads from now on sees itself as visible, so the
/// donor page does not pause while another tab of the browser is in front
/// (headless Chromium shows one tab at a time; a donor would use two
/// windows).
pub async fn stay_visible(page: &TestPage) {
    const SCRIPT: &str = "Object.defineProperty(Document.prototype, 'visibilityState', \
          { get: () => 'visible', configurable: true }); \
        Object.defineProperty(Document.prototype, 'hidden', \
          { get: () => false, configurable: true }); \
        window.addEventListener('visibilitychange', (e) => e.stopImmediatePropagation(), true);";
    page.page
        .execute(AddScriptToEvaluateOnNewDocumentParams::new(SCRIPT))
        .await
        .expect("the tab takes the script");
}

/// A headless Firefox on a throwaway profile, showing one page; killed
/// when dropped.
#[derive(Debug)]
pub struct Firefox {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Firefox {
    pub fn open(url: &str) -> Firefox {
        let binary = ensure_firefox().expect("Firefox is installed");
        let profile = tempfile::tempdir().expect("a profile folder");
        // No first-run pages, no updates or telemetry: the donor page only.
        std::fs::write(
            profile.path().join("user.js"),
            [
                r#"user_pref("browser.shell.checkDefaultBrowser", false);"#,
                r#"user_pref("browser.startup.homepage_override.mstone", "ignore");"#,
                r#"user_pref("app.update.enabled", false);"#,
                r#"user_pref("datareporting.policy.dataSubmissionEnabled", false);"#,
                r#"user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);"#,
                r#"user_pref("browser.aboutwelcome.enabled", false);"#,
            ]
            .join("\n"),
        )
        .expect("the profile's preferences");
        let child = Command::new(binary)
            .args(["--headless", "--no-remote", "--profile"])
            .arg(profile.path())
            .arg(url)
            .env("MOZ_HEADLESS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Firefox starts");
        Firefox {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
