//! The web edge as a browser and a third party meet it: the security headers
//! of pages, files and API answers over a real socket (and `grid serve
//! --donor-frame-ancestors` from the command line), 404 for what is not
//! there and 405 for a wrong method; the monitor channel opened with the
//! token in `Sec-WebSocket-Protocol`, with `Authorization`, and (deprecated)
//! in the URL, which logs one warning without the token; and the pages
//! under their Content-Security-Policy in real browsers: Chromium runs the
//! dashboard and the donor page without a violation and refuses an inline
//! script, refuses to show the dashboard in another site's frame (and the
//! donor page too, unless that site is named), and Firefox connects the
//! dashboard's monitor. The expected values are written out from
//! PROTOCOL.md, not taken from the coordinator's code.

use std::time::Duration;

use futures_util::StreamExt;
use grid_protocol::WorkerKind;
use grid_protocol::api::{ErrorBody, MonitorEvent};
use grid_tests::browser::{PAGE_TIMEOUT, TestBrowser, ensure_wasm_built, exclusive_grid};
use grid_tests::browser_cache::Firefox;
use grid_tests::{
    GridProcess, TOKEN, TOKEN_PROTOCOL, TestGrid, grid_cli_with, monitor_request, wait_for_workers,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite;

const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
    img-src 'self' data: blob:; style-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The donor page's policy before its `frame-ancestors` directive.
const DONOR_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; \
    base-uri 'none'; form-action 'none'";

const OTHER_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The monitor channel's own subprotocol.
const MONITOR: &str = "browsergrid.monitor";

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Checks the headers every answer carries and the policy of this one.
fn assert_headers(response: &reqwest::Response, policy: &str, frame_options: Option<&str>) {
    let what = format!("{} {}", response.url().path(), response.status());
    assert_eq!(
        header(response, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(response, "referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        header(response, "content-security-policy"),
        Some(policy),
        "{what}"
    );
    assert_eq!(header(response, "x-frame-options"), frame_options, "{what}");
}

async fn error_of(response: reqwest::Response) -> String {
    response
        .json::<ErrorBody>()
        .await
        .expect("a JSON error")
        .error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_files_and_answers_carry_their_headers_over_a_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", grid.url);

    let dashboard = http.get(url("/dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), 200);
    assert_headers(&dashboard, DASHBOARD_CSP, Some("DENY"));
    let length = dashboard.bytes().await.unwrap().len();
    assert!(length > 1000, "the dashboard's HTML");
    // HEAD: the same headers, the length, no body.
    let head = http.head(url("/dashboard")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_headers(&head, DASHBOARD_CSP, Some("DENY"));
    assert_eq!(
        header(&head, "content-length"),
        Some(length.to_string().as_str())
    );
    assert!(head.bytes().await.unwrap().is_empty());

    let donor_csp = format!("{DONOR_CSP}; frame-ancestors 'self'");
    for path in ["/", "/worker.js", "/kernel.js", "/pkg/grid_worker_wasm.js"] {
        let file = http.get(url(path)).send().await.unwrap();
        assert_eq!(file.status(), 200, "{path}");
        assert_headers(&file, &donor_csp, Some("SAMEORIGIN"));
    }

    let health = http.get(url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_headers(&health, OTHER_CSP, Some("DENY"));

    let missing = http.get(url("/no/such/page")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_headers(&missing, OTHER_CSP, Some("DENY"));
    assert_eq!(
        error_of(missing).await,
        "not found: nothing is served at GET /no/such/page"
    );
    let wrong = http
        .delete(url("/api/jobs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_headers(&wrong, OTHER_CSP, Some("DENY"));
    assert_eq!(header(&wrong, "allow"), Some("GET, POST"));
    let post_page = http.post(url("/")).send().await.unwrap();
    assert_eq!(post_page.status(), 405);
    assert_eq!(header(&post_page, "allow"), Some("GET, HEAD"));
    grid.stop().await;
}

/// The donor page's framing policy comes from `grid serve`; the dashboard's
/// does not move; a value that would escape the directive is refused
/// before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_serve_lets_the_sites_it_is_told_frame_the_donor_page() {
    let dir = tempfile::tempdir().unwrap();
    let grid = GridProcess::serve(
        dir.path(),
        &["--donor-frame-ancestors", "'self'  https://example.org"],
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let donor = http.get(format!("{}/", grid.url)).send().await.unwrap();
    assert_headers(
        &donor,
        &format!("{DONOR_CSP}; frame-ancestors 'self' https://example.org"),
        None,
    );
    let dashboard = http
        .get(format!("{}/dashboard", grid.url))
        .send()
        .await
        .unwrap();
    assert_headers(&dashboard, DASHBOARD_CSP, Some("DENY"));
    drop(grid);

    let (code, _, stderr) = grid_cli_with(
        "http://127.0.0.1:9",
        None,
        &[
            "serve",
            "--data",
            &dir.path().join("never").to_string_lossy(),
            "--donor-frame-ancestors",
            "'self'; script-src *",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("\"'self';\" is not a frame-ancestors source"),
        "{stderr}"
    );
    assert!(!dir.path().join("never").exists(), "nothing started");
}

/// Opens the monitor channel with `request`, returning the subprotocol the
/// coordinator named and the first frame, or the HTTP refusal.
async fn open_monitor(
    request: tungstenite::handshake::client::Request,
) -> Result<(Option<String>, MonitorEvent), (u16, String)> {
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, response)) => {
            let protocol = response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_string());
            let first = socket.next().await.unwrap().unwrap();
            let event = MonitorEvent::decode(first.to_text().unwrap()).unwrap();
            // Closed both ways: the coordinator has freed the connection's
            // room before it answers the close.
            socket.close(None).await.unwrap();
            while let Some(Ok(_)) = socket.next().await {}
            Ok((protocol, event))
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let error = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            Err((response.status().as_u16(), error))
        }
        Err(other) => panic!("the upgrade failed below HTTP: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_takes_its_token_in_a_subprotocol_or_a_header_and_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let offer = format!("{MONITOR}, {TOKEN_PROTOCOL}");

    let (protocol, first) = open_monitor(monitor_request(grid.addr, &offer))
        .await
        .expect("the subprotocol opens the channel");
    assert_eq!(protocol.as_deref(), Some(MONITOR), "never the token's");
    assert!(matches!(first, MonitorEvent::Snapshot { .. }), "{first:?}");

    let mut bearer = monitor_request(grid.addr, "");
    bearer
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (protocol, first) = open_monitor(bearer).await.expect("the header opens it");
    assert_eq!(protocol, None, "nothing offered, nothing named");
    assert!(matches!(first, MonitorEvent::Snapshot { .. }), "{first:?}");

    // "wrong-token" in base64url.
    for (offer, status, says) in [
        (
            format!("{MONITOR}, browsergrid.token.d3JvbmctdG9rZW4"),
            401,
            "missing or invalid token",
        ),
        (MONITOR.to_string(), 401, "missing or invalid token"),
        (
            TOKEN_PROTOCOL.to_string(),
            400,
            "offer the subprotocol browsergrid.monitor",
        ),
        (
            format!("{MONITOR}, browsergrid.token.%%%"),
            400,
            "browsergrid.token.... must carry the token in base64url",
        ),
    ] {
        let (got, error) = open_monitor(monitor_request(grid.addr, &offer))
            .await
            .expect_err("refused");
        assert_eq!(got, status, "{offer}: {error}");
        assert!(error.starts_with(says), "{offer}: {error}");
    }
    grid.stop().await;
}

/// The token in the URL still opens the channel, for this release, and
/// each such connection logs one warning line, which does not hold the
/// token; the subprotocol logs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_in_the_url_still_opens_the_monitor_with_a_warning_that_leaves_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let grid = GridProcess::serve(dir.path(), &[]).await.unwrap();
    let addr = format!("127.0.0.1:{}", grid.port).parse().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let warnings = |log: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("/ws/monitor?token="))
            .count()
    };
    assert_eq!(warnings(&log()), 0);

    let deprecated = format!("ws://{addr}/ws/monitor?token={TOKEN}");
    use tungstenite::client::IntoClientRequest;
    let (_, first) = open_monitor(deprecated.into_client_request().unwrap())
        .await
        .expect("the query still opens the channel");
    assert!(matches!(first, MonitorEvent::Snapshot { .. }), "{first:?}");
    let text = log();
    assert_eq!(warnings(&text), 1, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("/ws/monitor?token="))
        .unwrap();
    assert!(line.contains("deprecated"), "{line}");
    assert!(line.contains("Sec-WebSocket-Protocol"), "{line}");
    assert!(line.contains("127.0.0.1"), "the client is named: {line}");
    assert!(!text.contains(TOKEN), "the token is in the log:\n{text}");

    let offer = format!("{MONITOR}, {TOKEN_PROTOCOL}");
    open_monitor(monitor_request(addr, &offer)).await.unwrap();
    // A refused token in the URL is a 401, and no warning either.
    let wrong = format!("ws://{addr}/ws/monitor?token=wrong")
        .into_client_request()
        .unwrap();
    assert_eq!(open_monitor(wrong).await.unwrap_err().0, 401);
    // The subprotocol's connection has logged what it logs by now: the
    // server answered it after deciding.
    let text = log();
    assert_eq!(warnings(&text), 1, "{text}");
    assert!(!text.contains(TOKEN), "the token is in the log:\n{text}");
}

/// No page of `www/` holds inline script or style, which its policy would
/// refuse: every `<script>` has a `src`, and there is no `<style>`, no
/// `style=` and no `on...=` handler attribute.
#[test]
fn the_pages_hold_no_inline_script_or_style() {
    let www = grid_tests::browser::repo_root().join("www");
    let mut pages = 0;
    for entry in std::fs::read_dir(&www).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "html") {
            continue;
        }
        pages += 1;
        let html = std::fs::read_to_string(&path).unwrap().to_ascii_lowercase();
        let name = path.display();
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            assert!(tag.contains(" src="), "{name}: an inline script: {tag}");
        }
        assert!(!html.contains("<style"), "{name}: a <style> element");
        assert!(!html.contains("javascript:"), "{name}: a javascript: URL");
        // Attributes: a space, then `style` or `on` and letters, then `=`.
        let bytes = html.as_bytes();
        for (at, _) in html.match_indices(' ') {
            let rest = &html[at + 1..];
            let name_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let attribute = &rest[..name_end];
            let assigned = bytes.get(at + 1 + name_end) == Some(&b'=');
            let inline = attribute == "style"
                || (attribute.starts_with("on") && attribute.len() > 2 && attribute != "one");
            assert!(
                !(assigned && inline),
                "{name}: an inline {attribute}= at byte {at}"
            );
        }
    }
    assert_eq!(pages, 2, "the donor page and the dashboard");
}

/// Collects the CSP violations a page reports from now on, in
/// `window.violations`.
const WATCH_VIOLATIONS: &str = "(() => { window.violations = []; \
    document.addEventListener('securitypolicyviolation', \
      (e) => window.violations.push(e.effectiveDirective)); return true; })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_the_pages_under_their_policy_which_refuses_inline_script() {
    ensure_wasm_built().expect("www/pkg builds");
    let (grid, _turn, _dir) = exclusive_grid(|_| {}).await;
    let client = grid.client();
    let browser = TestBrowser::launch().await.expect("Chromium starts");

    // The dashboard loads, connects its monitor and logs nothing (a
    // violation is a console error).
    let mut dashboard = browser
        .open(&format!("{}/dashboard#token={TOKEN}", grid.url))
        .await
        .unwrap();
    dashboard
        .wait_for("document.body.dataset.connection === 'live'", PAGE_TIMEOUT)
        .await
        .unwrap();
    dashboard.assert_no_errors();
    // The policy holds: an inline script and an inline style are refused.
    dashboard.expect_errors("Content Security Policy");
    let _: bool = dashboard.eval(WATCH_VIOLATIONS).await.unwrap();
    let _: bool = dashboard
        .eval(
            "(() => { const s = document.createElement('script'); \
                s.textContent = 'window.inlineRan = true'; document.body.append(s); \
                document.body.setAttribute('style', 'background: red'); return true; })()",
        )
        .await
        .unwrap();
    dashboard
        .wait_for("window.violations.length >= 2", PAGE_TIMEOUT)
        .await
        .unwrap();
    let violations: Vec<String> = dashboard.eval("window.violations").await.unwrap();
    assert!(
        violations.contains(&"script-src-elem".to_string()),
        "{violations:?}"
    );
    assert!(
        violations.contains(&"style-src-attr".to_string()),
        "{violations:?}"
    );
    assert!(
        !dashboard
            .eval::<bool>("window.inlineRan === true")
            .await
            .unwrap(),
        "the inline script ran"
    );
    let background: String = dashboard
        .eval("getComputedStyle(document.body).backgroundColor")
        .await
        .unwrap();
    assert_ne!(background, "rgb(255, 0, 0)", "the inline style applied");
    dashboard.close().await.unwrap();

    // The donor page: WebAssembly compiled in the page and in its Web
    // Workers, which connect; no violation.
    let donor = browser
        .open(&format!("{}/?autostart=1&threads=1", grid.url))
        .await
        .unwrap();
    let _: bool = donor.eval(WATCH_VIOLATIONS).await.unwrap();
    wait_for_workers(&client, "the donor page's worker", |w| {
        w.iter().any(|w| w.kind == WorkerKind::Browser)
    })
    .await;
    donor
        .wait_for("document.body.dataset.state === 'working'", PAGE_TIMEOUT)
        .await
        .unwrap();
    let violations: Vec<String> = donor.eval("window.violations").await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    donor.assert_no_errors();
    donor.close().await.unwrap();
    browser.close().await;
    grid.stop().await;
}

/// Another site (127.0.0.2, another origin than the coordinator's
/// 127.0.0.1): a page that frames each of `urls`.
async fn another_site(urls: &[String]) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let frames: String = urls
        .iter()
        .map(|url| format!("<iframe src=\"{url}\" width=\"640\" height=\"400\"></iframe>"))
        .collect();
    let page = format!("<!doctype html><title>another site</title>{frames}");
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let page = page.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (origin, server)
}

/// Chromium's refusal to frame a page of `origin` under `directive`, as it
/// logs it (naming the origin, not the page).
fn refusal(origin: &str, directive: &str) -> String {
    format!(
        "Framing '{origin}/' violates the following Content Security Policy directive: \"{directive}\""
    )
}

/// Waits until `page` has logged `refusal`.
async fn wait_for_refusal(page: &grid_tests::browser::TestPage, refusal: &str) {
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    while !page.console_errors().iter().any(|e| e.contains(refusal)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {refusal}; the page logged {:?}",
            page.console_errors()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_may_frame_neither_the_dashboard_nor_by_default_the_donor_page() {
    let (grid, _turn, _dir) = exclusive_grid(|_| {}).await;
    let browser = TestBrowser::launch().await.expect("Chromium starts");
    let dashboard = format!("{}/dashboard", grid.url);
    let donor = format!("{}/", grid.url);
    let (site, server) = another_site(&[dashboard, donor]).await;
    let page = browser.open(&format!("{site}/")).await.unwrap();
    wait_for_refusal(&page, &refusal(&grid.url, "frame-ancestors 'none'")).await;
    wait_for_refusal(&page, &refusal(&grid.url, "frame-ancestors 'self'")).await;
    page.close().await.unwrap();
    server.abort();
    browser.close().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_named_may_frame_the_donor_page_and_still_not_the_dashboard() {
    ensure_wasm_built().expect("www/pkg builds");
    let (grid, _turn, _dir) =
        exclusive_grid(|c| c.donor_frame_ancestors = "http://127.0.0.2:*".into()).await;
    let client = grid.client();
    let browser = TestBrowser::launch().await.expect("Chromium starts");
    let dashboard = format!("{}/dashboard#token={TOKEN}", grid.url);
    let donor = format!("{}/?autostart=1&threads=1", grid.url);
    let (site, server) = another_site(&[dashboard, donor]).await;
    let page = browser.open(&format!("{site}/")).await.unwrap();
    // The framed donor page works: its worker joins the grid.
    wait_for_workers(&client, "the framed donor page's worker", |w| {
        w.iter().any(|w| w.kind == WorkerKind::Browser)
    })
    .await;
    // The dashboard's frame is refused, and nothing else.
    let dashboard_refused = refusal(&grid.url, "frame-ancestors 'none'");
    wait_for_refusal(&page, &dashboard_refused).await;
    let errors = page.console_errors();
    assert!(
        errors.iter().all(|e| e.contains(&dashboard_refused)),
        "{errors:?}"
    );
    page.close().await.unwrap();
    server.abort();
    browser.close().await;
    grid.stop().await;
}

/// Firefox opens the dashboard and its monitor channel under the policy.
/// Seen from the coordinator: with room for one monitor, a test client is
/// refused (503) while the dashboard holds it, and let in once Firefox has
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_opens_the_dashboards_monitor_under_its_policy() {
    let (grid, _turn, _dir) = exclusive_grid(|c| c.max_monitors = 1).await;
    let offer = format!("{MONITOR}, {TOKEN_PROTOCOL}");
    assert!(
        open_monitor(monitor_request(grid.addr, &offer))
            .await
            .is_ok(),
        "the one monitor's room is free"
    );
    let firefox = Firefox::open(&format!("{}/dashboard#token={TOKEN}", grid.url));
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    loop {
        match open_monitor(monitor_request(grid.addr, &offer)).await {
            Err((503, _)) => break,
            Ok(_) => {}
            Err(other) => panic!("{other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Firefox's dashboard never held the monitor"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(firefox);
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    while open_monitor(monitor_request(grid.addr, &offer))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the monitor's room never came free after Firefox left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    grid.stop().await;
}
