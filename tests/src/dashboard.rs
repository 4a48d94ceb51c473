//! The dashboard in real Chromium: a tab of a chosen size and pixel density,
//! its console errors collected from the first moment, DOM states waited for,
//! and screenshots saved under `tests/artifacts/` for a person to look at.
//!
//! [`crate::browser`] launches Chromium for the donor page's tests, in a
//! [`BrowserTest`]; this adds what the dashboard's tests need besides:
//! dashboard tabs of a screen's size, downloads and screenshots.

use std::path::PathBuf;

use anyhow::Context;
use chromiumoxide::cdp::browser_protocol::browser::{
    SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::{CaptureScreenshotFormat, Viewport};
use chromiumoxide::page::ScreenshotParams;

use crate::browser::{BrowserTest, TestPage, repo_root};

/// A laptop screen, in CSS pixels.
pub const LAPTOP: Screen = Screen {
    width: 1280,
    height: 800,
    scale: 1.0,
    mobile: false,
};

/// A phone held upright (an iPhone 12 to 15), in CSS pixels.
pub const PHONE: Screen = Screen {
    width: 390,
    height: 844,
    scale: 2.0,
    mobile: true,
};

/// A window size and pixel density to emulate.
#[derive(Debug, Clone, Copy)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
    pub scale: f64,
    pub mobile: bool,
}

/// Where tests leave screenshots (gitignored).
pub fn artifacts_dir() -> PathBuf {
    repo_root().join("tests/artifacts")
}

impl BrowserTest {
    /// The dashboard's address, with `token` in the fragment as the links
    /// `grid serve` prints carry it; without one the page takes the token
    /// from an earlier visit, or asks for it.
    pub fn dashboard_url(&self, token: Option<&str>) -> String {
        match token {
            Some(token) => format!("{}/dashboard#token={token}", self.url()),
            None => format!("{}/dashboard", self.url()),
        }
    }

    /// Opens [`BrowserTest::dashboard_url`] in a new tab of `screen`'s size,
    /// collecting errors from before the page's first script runs.
    pub async fn open_dashboard(&self, token: Option<&str>, screen: Screen) -> DashboardPage {
        let page = DashboardPage {
            tab: self
                .browser
                .blank_tab(DASHBOARD_SUMMARY)
                .await
                .expect("a tab opens"),
        };
        page.resize(screen)
            .await
            .expect("the tab takes the screen's size");
        page.goto(&self.dashboard_url(token))
            .await
            .expect("the dashboard loads");
        page
    }

    /// Lets pages download files, into `dir` under their own names.
    pub async fn allow_downloads(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        self.browser
            .browser
            .execute(
                SetDownloadBehaviorParams::builder()
                    .behavior(SetDownloadBehaviorBehavior::Allow)
                    .download_path(dir.to_string_lossy())
                    .build()
                    .map_err(anyhow::Error::msg)?,
            )
            .await
            .context("allow downloads")?;
        Ok(())
    }
}

/// What the dashboard shows, briefly, for failure messages.
const DASHBOARD_SUMMARY: &str = "({view: document.body.dataset.view, \
      connection: document.body.dataset.connection, \
      status: document.querySelector('#connection')?.textContent, \
      tokenError: document.querySelector('#token-error')?.textContent, \
      jobs: [...document.querySelectorAll('.job')].map(j => \
        `#${j.dataset.job} ${j.dataset.state} ${j.querySelector('.percent')?.textContent}`), \
      workers: document.querySelectorAll('#workers tr').length})";

/// One dashboard tab: a [`TestPage`] (`eval`, `wait_for`, `click`, ...) with
/// screen sizes, screenshots and the dashboard's own error checks.
#[derive(Debug)]
pub struct DashboardPage {
    tab: TestPage,
}

impl std::ops::Deref for DashboardPage {
    type Target = TestPage;

    fn deref(&self) -> &TestPage {
        &self.tab
    }
}

impl std::ops::DerefMut for DashboardPage {
    fn deref_mut(&mut self) -> &mut TestPage {
        &mut self.tab
    }
}

impl From<DashboardPage> for TestPage {
    fn from(page: DashboardPage) -> TestPage {
        page.tab
    }
}

impl DashboardPage {
    /// Emulates a screen: window size, pixel density, and touch for phones.
    pub async fn resize(&self, screen: Screen) -> anyhow::Result<()> {
        self.tab
            .page
            .execute(SetDeviceMetricsOverrideParams::new(
                i64::from(screen.width),
                i64::from(screen.height),
                screen.scale,
                screen.mobile,
            ))
            .await
            .context("set the window size")?;
        Ok(())
    }

    /// The trimmed text of the first element matching `selector`.
    pub async fn text(&self, selector: &str) -> anyhow::Result<String> {
        let selector = serde_json::to_string(selector)?;
        let text: Option<String> = self
            .eval(&format!(
                "document.querySelector({selector})?.textContent?.trim() ?? null"
            ))
            .await?;
        text.with_context(|| format!("no element matches {selector}"))
    }

    /// The trimmed texts of every element matching `selector`, in order.
    pub async fn texts(&self, selector: &str) -> anyhow::Result<Vec<String>> {
        let selector = serde_json::to_string(selector)?;
        self.eval(&format!(
            "[...document.querySelectorAll({selector})].map(e => e.textContent.trim())"
        ))
        .await
    }

    /// Saves a PNG of the whole page (beyond the window, at the window's
    /// width) as `tests/artifacts/{name}.png`, prints its path and returns it.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let (width, height): (f64, f64) = self
            .eval("[document.documentElement.clientWidth, document.documentElement.scrollHeight]")
            .await?;
        let png = self
            .tab
            .page
            .screenshot(
                ScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .capture_beyond_viewport(true)
                    .clip(Viewport {
                        x: 0.0,
                        y: 0.0,
                        width,
                        height,
                        scale: 1.0,
                    })
                    .build(),
            )
            .await
            .context("take a screenshot")?;
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        println!("screenshot: {}", path.display());
        Ok(path)
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.tab.close().await
    }
}
