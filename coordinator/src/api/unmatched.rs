//! The answer to a request no route takes: 405 with `Allow` when the path
//! is one the coordinator serves with other methods, else 404.
//!
//! warp's own verdict cannot say which: routes are tried in turn, and a
//! route that checks its method before its path (`warp::post().and(...)`)
//! rejects every other request, whatever its path, as "method not
//! allowed", which warp prefers to "not found"; so `GET /nonsense` would be
//! a 405. Instead the last route, [`unmatched`], takes no request: it
//! rejects each one it sees with a [`NoRoute`] that knows the methods its
//! path is served with, from [`API_PATHS`] (which mirrors the API's
//! routes: a test checks every entry against them) or, for any other path,
//! from the files of `www/` (`GET` and `HEAD` of a file that exists).

use std::path::{Path, PathBuf};

use warp::http::Method;
use warp::path::FullPath;
use warp::{Filter, Rejection};

/// Every path of the API and of the sockets, `{}` standing for any one
/// segment, with the methods it is served with as `Allow` lists them.
pub(super) const API_PATHS: &[(&str, &str)] = &[
    ("/api/health", "GET"),
    ("/api/jobs", "GET, POST"),
    ("/api/jobs/{}", "GET, DELETE"),
    ("/api/jobs/{}/cancel", "POST"),
    ("/api/jobs/{}/pause", "POST"),
    ("/api/jobs/{}/resume", "POST"),
    ("/api/jobs/{}/results", "GET"),
    ("/api/jobs/{}/fuel", "GET"),
    ("/api/jobs/{}/outputs/{}", "GET"),
    ("/api/blobs", "GET"),
    ("/api/blobs/{}", "GET, HEAD, PUT, DELETE"),
    ("/api/modules/{}", "GET"),
    ("/api/workers", "GET"),
    ("/api/users", "GET, POST"),
    ("/api/users/{}", "DELETE"),
    ("/api/users/{}/token", "POST"),
    ("/api/audit", "GET"),
    ("/metrics", "GET"),
    ("/ws/monitor", "GET"),
    ("/ws/worker", "GET"),
];

/// The methods of a file of `www/`.
const FILE_METHODS: &str = "GET, HEAD";

/// A request that no route took.
#[derive(Debug)]
pub(super) struct NoRoute {
    pub method: Method,
    pub path: String,
    /// The methods its path is served with, if it is served at all.
    pub allow: Option<&'static str>,
}

impl warp::reject::Reject for NoRoute {}

/// The last route: rejects every request with its [`NoRoute`].
pub(super) fn unmatched(
    www_dir: PathBuf,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and_then(move |method: Method, path: FullPath| {
            let www_dir = www_dir.clone();
            async move {
                let path = path.as_str().to_string();
                let allow = match api_methods(&path) {
                    Some(methods) => Some(methods),
                    None if is_file(&www_dir, &path).await => Some(FILE_METHODS),
                    None => None,
                };
                Err::<warp::reply::Response, _>(warp::reject::custom(NoRoute {
                    method,
                    path,
                    allow,
                }))
            }
        })
}

/// The methods `path` is served with, if it is a path of the API.
pub(super) fn api_methods(path: &str) -> Option<&'static str> {
    API_PATHS.iter().find_map(|(pattern, methods)| {
        let mut segments = path.split('/');
        let mut expected = pattern.split('/');
        loop {
            match (expected.next(), segments.next()) {
                (None, None) => return Some(*methods),
                (Some("{}"), Some(segment)) if !segment.is_empty() => {}
                (Some(want), Some(segment)) if want == segment => {}
                _ => return None,
            }
        }
    })
}

/// Whether `path` names what the static routes serve: the dashboard, or a
/// file of `www_dir` (a folder's `index.html`), read as `warp::fs::dir`
/// reads it (no segment starting with `..`, no backslash).
async fn is_file(www_dir: &Path, path: &str) -> bool {
    let tail = path.strip_prefix('/').unwrap_or(path);
    if tail == "dashboard" {
        return true;
    }
    let mut file = www_dir.to_path_buf();
    for segment in tail.split('/') {
        if segment.starts_with("..") || segment.contains('\\') {
            return false;
        }
        file.push(segment);
    }
    match tokio::fs::metadata(&file).await {
        Ok(meta) if meta.is_dir() => tokio::fs::metadata(file.join("index.html"))
            .await
            .is_ok_and(|m| m.is_file()),
        Ok(meta) => meta.is_file(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_match_segment_by_segment() {
        assert_eq!(api_methods("/api/jobs"), Some("GET, POST"));
        assert_eq!(api_methods("/api/jobs/7"), Some("GET, DELETE"));
        assert_eq!(api_methods("/api/jobs/7/cancel"), Some("POST"));
        assert_eq!(api_methods("/api/jobs/7/outputs/3"), Some("GET"));
        for unknown in [
            "/",
            "/api",
            "/api/",
            "/api/jobs/",
            "/api/jobs//cancel",
            "/api/jobs/7/explode",
            "/api/jobs/7/outputs",
            "/api/jobsx",
            "/metrics/x",
            "/ws",
        ] {
            assert_eq!(api_methods(unknown), None, "{unknown}");
        }
    }

    #[tokio::test]
    async fn files_of_www_are_found_as_the_static_routes_find_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "donor").unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/a.js"), "").unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        for found in ["/", "/index.html", "/pkg/a.js", "/dashboard"] {
            assert!(is_file(dir.path(), found).await, "{found}");
        }
        for missing in [
            "/nope",
            "/pkg",
            "/pkg/",
            "/empty",
            "/pkg/../index.html",
            "/pkg\\a.js",
        ] {
            assert!(!is_file(dir.path(), missing).await, "{missing}");
        }
    }
}
