//! The blob routes: uploads (`/api/blobs/...`), prepared modules
//! (`/api/modules/...`) and removing a finished job, which releases its
//! blobs.
//!
//! A blob is immutable: its name is its SHA-256, so it is served with a
//! strong `ETag` (the digest), `Cache-Control: public, max-age=31536000,
//! immutable`, byte ranges (`warp::fs` streams the file; nothing is read
//! whole), `If-None-Match` (304) and HEAD.
//!
//! Who reads an upload: its owner with the API token, or a worker with the
//! `Grid-Capability` header of a batch it holds (see
//! `grid::capability`), which opens only that batch's job's files while the
//! lease lasts. A capability that does not open the blob (forged, expired,
//! another job's) is answered exactly as a blob that does not exist, 404
//! `no blob <digest>`, never 401 or 403: a worker learns nothing about what
//! else is stored. Without either, 401 as on every route. Listing needs the
//! token. The donor page fetches from its own origin, so there is no CORS
//! to answer.

use super::*;
use crate::auth;

/// The request header that carries a batch's blob capability.
pub const CAPABILITY_HEADER: &str = "grid-capability";

/// `{digest}` in a blob path: `sha256:<64 hex digits>`, else 400.
fn digest() -> impl Filter<Extract = (ContentDigest,), Error = Rejection> + Clone {
    warp::path::param::<String>().and_then(|raw: String| async move {
        raw.parse::<ContentDigest>()
            .map_err(|e| reject(ApiError::BadRequest(e.to_string())))
    })
}

fn no_content() -> Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}

/// Who stores an upload: a user with its token (who then owns it), or a
/// worker storing a task's output under its batch's capability (see
/// `grid::outputs`).
enum Uploader {
    User(Caller),
    Batch(String),
}

fn uploader(
    shared: &Shared,
) -> impl Filter<Extract = (Uploader,), Error = Rejection> + Clone + use<> {
    let grid = shared.grid.clone();
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>(CAPABILITY_HEADER))
        .and_then(
            move |authorization: Option<String>, capability: Option<String>| {
                let caller =
                    auth::bearer(authorization.as_deref()).and_then(|t| grid.authenticate(t));
                let decided = if let Some(caller) = caller {
                    Ok(Uploader::User(caller))
                } else if let Some(capability) = capability {
                    Ok(Uploader::Batch(capability))
                } else {
                    Err(warp::reject::custom(Unauthorized))
                };
                async move { decided }
            },
        )
}

/// `PUT /api/blobs/{digest}`: stores the body as the blob it names, once
/// (201; 200 if it was stored already, without reading the body). The bytes
/// are hashed as they arrive; a body that is not the digest it was sent to
/// (400), over the limit (413), that breaks off (400) or that finds the
/// disk full (507) is refused and leaves nothing. With the token it is an
/// upload; with a batch's `Grid-Capability` instead, a task's output (403
/// if the capability stores none, 413 over the job's largest output).
pub(super) fn blob_put(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limit = shared.grid.config().max_blob_bytes;
    warp::put()
        .and(warp::path("api"))
        .and(warp::path("blobs"))
        .and(digest())
        .and(warp::path::end())
        .and(uploader(&shared))
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::stream())
        .and(with_shared(shared))
        .and_then(
            move |digest: ContentDigest, uploader, body, shared: Shared| async move {
                let stored = match uploader {
                    Uploader::User(caller) => {
                        shared
                            .grid
                            .put_blob(digest, body, limit, Some(&caller))
                            .await
                    }
                    Uploader::Batch(capability) => {
                        shared.grid.put_output_blob(&capability, digest, body).await
                    }
                };
                let (info, created) = stored.map_err(reject)?;
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok::<_, Rejection>(json(&info, status))
            },
        )
}

/// `GET /api/blobs`: every stored upload, with its size, references and
/// last use (token only).
pub(super) fn blob_list(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "blobs")
        .and(warp::get())
        .and(authorized(&shared))
        .and(with_shared(shared))
        .and_then(|caller: Caller, shared: Shared| async move {
            let blobs = shared.grid.list_blobs(&caller).await.map_err(reject)?;
            Ok::<_, Rejection>(json(&blobs, StatusCode::OK))
        })
}

/// `DELETE /api/blobs/{digest}`: 204; 409 naming the jobs that use it; 404.
pub(super) fn blob_delete(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::delete()
        .and(warp::path("api"))
        .and(warp::path("blobs"))
        .and(digest())
        .and(warp::path::end())
        .and(authorized(&shared))
        .and(with_shared(shared))
        .and_then(
            |digest: ContentDigest, caller: Caller, shared: Shared| async move {
                shared
                    .grid
                    .delete_blob(&caller, digest)
                    .await
                    .map_err(reject)?;
                Ok::<_, Rejection>(no_content())
            },
        )
}

/// `DELETE /api/jobs/{id}`: removes a finished job, its results and its
/// hold on its blobs (204); 409 for a job still queued or running.
pub(super) fn job_remove(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::delete().and(job_route(&shared, None)).and_then(
        |id: u64, caller: Caller, shared: Shared| async move {
            shared.grid.remove_job(&caller, id).await.map_err(reject)?;
            Ok::<_, Rejection>(no_content())
        },
    )
}

/// Who may read the upload the path names: the token holder (a malformed
/// digest is then 400), or a capability that opens it (anything else with
/// a capability is 404, as for a blob not stored); else 401. Yields the
/// digest of a stored blob.
fn readable(
    shared: &Shared,
) -> impl Filter<Extract = (ContentDigest,), Error = Rejection> + Clone + use<> {
    let grid = shared.grid.clone();
    warp::path("api")
        .and(warp::path("blobs"))
        .and(warp::path::peek())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>(CAPABILITY_HEADER))
        .and_then(
            move |rest: warp::path::Peek,
                  authorization: Option<String>,
                  capability: Option<String>| {
                let decided = may_read(&grid, rest.as_str(), authorization, capability);
                async move { decided }
            },
        )
}

fn may_read(
    grid: &Grid,
    rest: &str,
    authorization: Option<String>,
    capability: Option<String>,
) -> Result<ContentDigest, Rejection> {
    if rest.is_empty() {
        // `GET /api/blobs` is the listing's.
        return Err(warp::reject::not_found());
    }
    let parsed = rest.parse::<ContentDigest>();
    let hidden = || reject(ApiError::NotFound(format!("no blob {rest}")));
    let caller = auth::bearer(authorization.as_deref()).and_then(|t| grid.authenticate(t));
    let digest = if let Some(caller) = caller {
        // Another user's upload is answered as one that is not there.
        match parsed {
            Ok(digest) if grid.blob_readable(&caller, &digest) => digest,
            Ok(_) => return Err(hidden()),
            Err(e) => return Err(reject(ApiError::BadRequest(e.to_string()))),
        }
    } else if let Some(capability) = capability {
        match parsed {
            Ok(digest) if grid.capability_allows(&capability, &digest) => digest,
            _ => return Err(hidden()),
        }
    } else {
        return Err(warp::reject::custom(Unauthorized));
    };
    grid.blob_to_serve(&digest).ok_or_else(hidden)?;
    Ok(digest)
}

/// Whether an `If-None-Match` header names `etag` (weakly compared, as the
/// header wants) or is `*`.
fn names_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == etag
    })
}

fn etag(digest: &ContentDigest) -> String {
    format!("\"{digest}\"")
}

/// The headers every answer about a blob carries: it never changes.
fn immutable(headers: &mut header::HeaderMap, digest: &ContentDigest) {
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(value) = header::HeaderValue::from_str(&etag(digest)) {
        headers.insert(header::ETAG, value);
    }
}

/// `GET` and `HEAD /api/blobs/{digest}`: a stored upload, streamed from its
/// file, with ranges (206 and `Content-Range`); 304 when `If-None-Match`
/// names it. Bytes of 200 and 206 answers to GET are counted by their
/// `Content-Length` (`grid_blob_bytes_served_total`).
pub(super) fn blob_read(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let dir = shared.grid.blobs().dir().to_path_buf();
    warp::get()
        .or(warp::head())
        .unify()
        .and(warp::method())
        .and(readable(&shared))
        .and(warp::header::optional::<String>("if-none-match"))
        .and(blob_file(dir, "application/octet-stream"))
        .and(with_shared(shared))
        .map(
            |method: warp::http::Method,
             digest: ContentDigest,
             if_none_match: Option<String>,
             response: Response,
             shared: Shared| {
                if if_none_match.is_some_and(|tags| names_etag(&tags, &etag(&digest))) {
                    let mut unchanged =
                        warp::reply::with_status(warp::reply(), StatusCode::NOT_MODIFIED)
                            .into_response();
                    immutable(unchanged.headers_mut(), &digest);
                    return unchanged;
                }
                let sent = matches!(
                    response.status(),
                    StatusCode::OK | StatusCode::PARTIAL_CONTENT
                );
                if method == warp::http::Method::GET && sent {
                    let length = response
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                    shared
                        .grid
                        .blobs()
                        .counters()
                        .bytes_served
                        .fetch_add(length, std::sync::atomic::Ordering::Relaxed);
                }
                response
            },
        )
}

/// Serves one blob file of `dir`, named by the rest of the path, as an
/// immutable, cacheable download of type `content_type` (ranges and HEAD
/// come with `warp::fs`).
fn blob_file(
    dir: std::path::PathBuf,
    content_type: &'static str,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // Only a stored digest reaches the file system: never `tmp/`, never
    // `..`, and a missing blob is our 404 (warp's own would lose to another
    // route's 405).
    let stored = dir.clone();
    let checked = warp::path::peek().and_then(move |rest: warp::path::Peek| {
        let found = rest
            .as_str()
            .parse::<ContentDigest>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))
            .and_then(|digest| {
                if crate::blobs::blob_path(&stored, &digest).is_file() {
                    Ok(digest)
                } else {
                    Err(ApiError::NotFound(format!("no blob {digest}")))
                }
            });
        async move { found.map_err(reject) }
    });
    checked
        .and(warp::fs::dir(dir))
        .map(move |digest: ContentDigest, file: warp::fs::File| {
            let mut response = file.into_response();
            let headers = response.headers_mut();
            immutable(headers, &digest);
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            response
        })
}

/// `GET /api/modules/{digest}`: a prepared module, for any worker (no
/// token): a worker given a batch of a wasm job fetches its module here.
/// Served as `application/wasm`, so a browser can compile it as it
/// streams in (`WebAssembly.compileStreaming`) and cache its code.
pub(super) fn module_get(
    shared: &Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    let dir = shared.grid.modules().dir().to_path_buf();
    warp::get()
        .and(warp::path("api"))
        .and(warp::path("modules"))
        .and(blob_file(dir, "application/wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_names_the_etag_or_anything() {
        let etag = "\"sha256:ab\"";
        assert!(names_etag("\"sha256:ab\"", etag));
        assert!(names_etag("\"x\", W/\"sha256:ab\"", etag));
        assert!(names_etag("*", etag));
        assert!(!names_etag("\"sha256:ac\"", etag));
        assert!(!names_etag("sha256:ab", etag), "an etag is quoted");
    }
}
