//! The security headers of every answer: what a browser may load and run
//! in a page of ours, who may show it in a frame, and what it tells other
//! sites (PROTOCOL.md, "HTTP API"). Every answer carries
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`;
//! besides:
//!
//! | answer | `Content-Security-Policy` | `X-Frame-Options` |
//! |---|---|---|
//! | the dashboard (`/dashboard`, `/dashboard.html`) | [`DASHBOARD_POLICY`] | `DENY` |
//! | every other file of `www/`: the donor page, its scripts (a Web Worker's policy is the one its script is served with), styles | [`DONOR_POLICY`] then `frame-ancestors` from `grid serve --donor-frame-ancestors` (default `'self'`) | `SAMEORIGIN` for `'self'`, `DENY` for `'none'`, else none |
//! | anything else: the API, errors, `/metrics` (not the 101 of a WebSocket upgrade) | [`OTHER_POLICY`] | `DENY` |
//!
//! No policy allows inline script or style, `eval` or a source outside the
//! coordinator's own origin (`'self'` covers its `ws:` and `wss:` too, in
//! Chromium and Firefox alike). The donor page compiles WebAssembly, its own
//! and users' kernels, so its `script-src` has `'wasm-unsafe-eval'` (which
//! allows WebAssembly compilation and nothing of JavaScript's eval); the
//! dashboard compiles none. `img-src blob:` is for the thumbnails of task
//! outputs the dashboard shows, `data:` for the inline icon.

use warp::http::StatusCode;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::reply::Response;

/// The dashboard's policy: its scripts and styles, its API calls and its
/// monitor socket, and never in a frame.
pub const DASHBOARD_POLICY: &str = "default-src 'none'; script-src 'self'; \
    connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The donor page's policy, and its Web Workers', before its
/// `frame-ancestors` directive: its scripts and WebAssembly, its Web
/// Workers, its fetches (blobs, modules) and its workers' sockets.
pub const DONOR_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; \
    base-uri 'none'; form-action 'none'";

/// The policy of every answer that is not a file of `www/`: nothing may
/// load, run or frame it.
pub const OTHER_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Which page of `www/` a file answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Dashboard,
    /// The donor page and every other file.
    Donor,
}

impl Page {
    /// The page a file of `www/` is served as, by its name.
    pub fn of(file: &std::path::Path) -> Page {
        if file
            .file_name()
            .is_some_and(|name| name == "dashboard.html")
        {
            Page::Dashboard
        } else {
            Page::Donor
        }
    }
}

/// The headers of the files of `www/`, made once from the configuration.
#[derive(Debug, Clone)]
pub struct PageHeaders {
    donor_policy: HeaderValue,
    donor_frame_options: Option<HeaderValue>,
}

impl PageHeaders {
    /// The headers for a donor page that the sources `frame_ancestors` (see
    /// [`frame_ancestors`]) may frame.
    pub fn new(frame_ancestors: &str) -> Result<PageHeaders, String> {
        let sources = self::frame_ancestors(frame_ancestors)?;
        let donor_policy =
            HeaderValue::from_str(&format!("{DONOR_POLICY}; frame-ancestors {sources}"))
                .map_err(|e| format!("--donor-frame-ancestors: {e}"))?;
        // X-Frame-Options is for browsers without frame-ancestors, and
        // cannot name other sites: for those, frame-ancestors alone.
        let donor_frame_options = match sources.as_str() {
            "'self'" => Some(HeaderValue::from_static("SAMEORIGIN")),
            "'none'" => Some(HeaderValue::from_static("DENY")),
            _ => None,
        };
        Ok(PageHeaders {
            donor_policy,
            donor_frame_options,
        })
    }

    /// Sets the headers of `page` on a file answer.
    pub fn apply(&self, page: Page, headers: &mut HeaderMap) {
        let (policy, frame_options) = match page {
            Page::Dashboard => (
                HeaderValue::from_static(DASHBOARD_POLICY),
                Some(HeaderValue::from_static("DENY")),
            ),
            Page::Donor => (self.donor_policy.clone(), self.donor_frame_options.clone()),
        };
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
        match frame_options {
            Some(value) => headers.insert(header::X_FRAME_OPTIONS, value),
            None => headers.remove(header::X_FRAME_OPTIONS),
        };
    }
}

/// Adds the headers every answer carries, and to an answer that has no
/// policy yet (anything but a file of `www/`) [`OTHER_POLICY`] and
/// `X-Frame-Options: DENY`. A 101 (a WebSocket upgrade) is no document and
/// gets no policy.
pub fn everywhere(mut response: Response) -> Response {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !switching && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(OTHER_POLICY),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// Checks the sources of a `frame-ancestors` directive and returns them
/// separated by single spaces: `'self'`, `'none'` (alone), schemes
/// (`https:`) and hosts (`https://example.org`, `*.example.org:8443`),
/// separated by spaces. Anything that could end the directive or the
/// header (`;`, `,`, quotes but around the two keywords, control
/// characters) is refused, with a sentence saying why.
pub fn frame_ancestors(value: &str) -> Result<String, String> {
    let sources: Vec<&str> = value.split_ascii_whitespace().collect();
    if sources.is_empty() {
        return Err(
            "frame-ancestors needs a source: 'none' to forbid every frame, \
                    'self' for this origin's pages, or sites such as https://example.org"
                .into(),
        );
    }
    for source in &sources {
        let keyword = matches!(*source, "'self'" | "'none'");
        let plain = source.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'.' | b'-' | b'_' | b'~' | b'%' | b'*' | b':' | b'/' | b'+'
                )
        });
        if !keyword && !plain {
            return Err(format!(
                "\"{source}\" is not a frame-ancestors source: use 'self', 'none', a scheme \
                 (https:) or a host (https://example.org, *.example.org)"
            ));
        }
    }
    if sources.len() > 1 && sources.contains(&"'none'") {
        return Err("'none' forbids every frame: it cannot be listed with other sources".into());
    }
    Ok(sources.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ancestors_takes_sources_and_refuses_what_would_escape_the_directive() {
        assert_eq!(frame_ancestors("'self'").unwrap(), "'self'");
        assert_eq!(
            frame_ancestors("  'self'   https://example.org *.example.net:8443 https: ").unwrap(),
            "'self' https://example.org *.example.net:8443 https:"
        );
        for bad in [
            "",
            "   ",
            "'self'; script-src *",
            "https://a.example, https://b.example",
            "'unsafe-inline'",
            "self'",
            "https://example.org\r\nSet-Cookie: a=b",
            "https://exämple.org",
            "'none' 'self'",
        ] {
            assert!(frame_ancestors(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn the_donor_page_may_be_framed_as_configured_and_the_dashboard_never() {
        let policy = |headers: &HeaderMap| {
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_string()
        };
        for (sources, frame_options) in [
            ("'self'", Some("SAMEORIGIN")),
            ("'none'", Some("DENY")),
            ("https://example.org", None),
        ] {
            let page = PageHeaders::new(sources).unwrap();
            let mut headers = HeaderMap::new();
            page.apply(Page::Donor, &mut headers);
            assert_eq!(
                policy(&headers),
                format!("{DONOR_POLICY}; frame-ancestors {sources}")
            );
            assert_eq!(
                headers
                    .get(header::X_FRAME_OPTIONS)
                    .map(|v| v.to_str().unwrap()),
                frame_options,
                "{sources}"
            );
            page.apply(Page::Dashboard, &mut headers);
            assert_eq!(policy(&headers), DASHBOARD_POLICY);
            assert!(policy(&headers).ends_with("frame-ancestors 'none'"));
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        }
        assert!(PageHeaders::new("'self'; img-src *").is_err());
    }

    #[test]
    fn every_policy_forbids_inline_script_and_eval() {
        for policy in [DASHBOARD_POLICY, DONOR_POLICY, OTHER_POLICY] {
            assert!(policy.starts_with("default-src 'none'"), "{policy}");
            assert!(!policy.contains("'unsafe-inline'"), "{policy}");
            assert!(!policy.contains("'unsafe-eval'"), "{policy}");
            assert!(!policy.contains('*'), "{policy}");
        }
    }

    #[test]
    fn a_page_keeps_its_policy_and_everything_else_gets_the_strictest() {
        let mut page = Response::new(Default::default());
        PageHeaders::new("'self'")
            .unwrap()
            .apply(Page::Dashboard, page.headers_mut());
        let page = everywhere(page);
        assert_eq!(
            page.headers()[header::CONTENT_SECURITY_POLICY],
            DASHBOARD_POLICY
        );
        let api = everywhere(Response::new(Default::default()));
        assert_eq!(api.headers()[header::CONTENT_SECURITY_POLICY], OTHER_POLICY);
        assert_eq!(api.headers()[header::X_FRAME_OPTIONS], "DENY");
        let mut upgrade = Response::new(Default::default());
        *upgrade.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let upgrade = everywhere(upgrade);
        assert!(
            !upgrade
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
        for response in [&page, &api, &upgrade] {
            assert_eq!(
                response.headers()[header::X_CONTENT_TYPE_OPTIONS],
                "nosniff"
            );
            assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
        }
    }
}
