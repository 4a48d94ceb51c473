//! The HTTP edge: warp filters for the job API under `/api/`, the worker
//! socket at `/ws/worker`, the monitor socket at `/ws/monitor`, and the
//! static files of `www/` at `/`. Handlers are thin; every error leaves as
//! `{"error": "..."}` with a fitting status, and every answer with the
//! security headers of [`headers`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, watch};
use warp::filters::BoxedFilter;
use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

mod blobs;
pub mod headers;
mod monitor_auth;
mod unmatched;
mod users;

use blobs::{blob_delete, blob_list, blob_put, blob_read, job_remove, module_get};
use users::{audit, token_rotate, user_add, user_list, user_remove};

use crate::auth;
use crate::export::{self, Format};
use crate::grid::{ApiError, Grid};
use crate::server::PeerAddr;
use crate::socket::worker::{ConnectionGuard, serve_worker};
use crate::upgrade;
use crate::users::Caller;
use futures_util::StreamExt;
use grid_kernels::ContentDigest;
use grid_protocol::api::{
    ErrorBody, Health, JobQuery, JobRequest, NEXT_AFTER, NEXT_BEFORE, WorkerQuery,
};

/// What every route needs besides the grid.
#[derive(Debug, Clone)]
pub struct Shared {
    pub grid: Arc<Grid>,
    pub shutdown: watch::Receiver<bool>,
    pub connections: Arc<Semaphore>,
    /// Monitor (dashboard) connections are capped separately.
    pub monitors: Arc<Semaphore>,
    /// Dropped by each connection when it ends; the server waits for all.
    pub done: mpsc::Sender<()>,
}

#[derive(Debug)]
struct Unauthorized;
impl warp::reject::Reject for Unauthorized {}

#[derive(Debug)]
struct Api(ApiError);
impl warp::reject::Reject for Api {}

fn reject(error: ApiError) -> Rejection {
    warp::reject::custom(Api(error))
}

/// Every route of the coordinator. Each route is boxed: it keeps the types
/// (and the compiler's work) small, at the cost of one indirection a request.
pub fn routes(shared: Shared) -> BoxedFilter<(Response,)> {
    let routes: Vec<BoxedFilter<(Response,)>> = vec![
        health().boxed(),
        submit(shared.clone()).boxed(),
        list_jobs(shared.clone()).boxed(),
        job_status(shared.clone()).boxed(),
        cancel(shared.clone()).boxed(),
        results(shared.clone()).boxed(),
        task_output(shared.clone()).boxed(),
        fuel(shared.clone()).boxed(),
        pause(shared.clone(), true).boxed(),
        pause(shared.clone(), false).boxed(),
        workers(shared.clone()).boxed(),
        job_remove(shared.clone()).boxed(),
        blob_put(shared.clone()).boxed(),
        blob_list(shared.clone()).boxed(),
        blob_read(shared.clone()).boxed(),
        blob_delete(shared.clone()).boxed(),
        module_get(&shared).boxed(),
        user_add(shared.clone()).boxed(),
        user_list(shared.clone()).boxed(),
        user_remove(shared.clone()).boxed(),
        token_rotate(shared.clone()).boxed(),
        audit(shared.clone()).boxed(),
        metrics(shared.clone()).boxed(),
        monitor_socket(shared.clone()).boxed(),
        worker_socket(shared.clone()).boxed(),
        static_files(&shared).boxed(),
    ];
    let any = routes
        .into_iter()
        .reduce(|all, route| all.or(route).unify().boxed())
        .expect("there are routes");
    // Last, after every route: what a request none of them took is told
    // (404, or 405 for a path served with other methods; see `unmatched`).
    let www_dir = shared.grid.config().www_dir.clone();
    any.or(unmatched::unmatched(www_dir))
        .unify()
        .recover(handle_rejection)
        .unify()
        .map(headers::everywhere)
        .boxed()
}

/// The donor page and other files of `www/` (`GET` and `HEAD`); the
/// dashboard also at /dashboard. Each carries its page's policy
/// ([`headers::PageHeaders`]).
fn static_files(
    shared: &Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    let config = shared.grid.config();
    let www_dir = config.www_dir.clone();
    let pages = headers::PageHeaders::new(&config.donor_frame_ancestors).unwrap_or_else(|error| {
        // `grid serve` checks the flag; a library caller's mistake fails
        // closed: the donor page may not be framed at all.
        tracing::error!(%error, "the donor page's frame-ancestors is refused; using 'none'");
        headers::PageHeaders::new("'none'").expect("'none' is a valid source")
    });
    let serve = move |file: warp::fs::File| {
        let page = headers::Page::of(file.path());
        let mut response = file.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-cache"),
        );
        pages.apply(page, headers);
        response
    };
    let get_or_head = || warp::get().or(warp::head()).unify();
    let dashboard = warp::path!("dashboard")
        .and(get_or_head())
        .and(warp::fs::file(www_dir.join("dashboard.html")));
    let files = get_or_head().and(warp::fs::dir(www_dir));
    dashboard.or(files).unify().map(serve)
}

fn with_shared(shared: Shared) -> impl Filter<Extract = (Shared,), Error = Infallible> + Clone {
    warp::any().map(move || shared.clone())
}

/// Who the request's `Authorization: Bearer <token>` says it is; 401 for
/// no token, or one that is no user's (never issued, rotated, removed).
fn authorized(
    shared: &Shared,
) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone + use<> {
    let grid = shared.grid.clone();
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let caller = auth::bearer(header.as_deref()).and_then(|token| grid.authenticate(token));
        async move { caller.ok_or_else(|| warp::reject::custom(Unauthorized)) }
    })
}

fn json(value: &impl serde::Serialize, status: StatusCode) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

fn health() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "health").and(warp::get()).map(|| {
        json(
            &Health {
                status: "ok".into(),
            },
            StatusCode::OK,
        )
    })
}

fn submit(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limit = shared.grid.config().max_body_bytes;
    warp::path!("api" / "jobs")
        .and(warp::post())
        .and(authorized(&shared))
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .and(with_shared(shared))
        .and_then(
            |caller: Caller, body: bytes::Bytes, shared: Shared| async move {
                let request = JobRequest::decode(&body)
                    .map_err(|e| reject(ApiError::BadRequest(e.to_string())))?;
                let status = shared.grid.submit(&caller, request).await.map_err(reject)?;
                Ok::<_, Rejection>(json(&status, StatusCode::CREATED))
            },
        )
}

/// The raw query string of a request, empty if it has none.
fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// A JSON array with, when more remain, the header naming the next page.
fn page(value: &impl serde::Serialize, next: Option<(&'static str, u64)>) -> Response {
    let mut response = json(value, StatusCode::OK);
    if let Some((name, id)) = next {
        response
            .headers_mut()
            .insert(name, header::HeaderValue::from(id));
    }
    response
}

/// `GET /api/jobs?limit=N&before=ID&state=S`: a page of the caller's jobs
/// (an admin's: everyone's), newest first (see [`JobQuery`]).
fn list_jobs(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "jobs")
        .and(warp::get())
        .and(authorized(&shared))
        .and(raw_query())
        .and(with_shared(shared))
        .and_then(|caller: Caller, query: String, shared: Shared| async move {
            let query = JobQuery::parse(&query).map_err(|e| reject(ApiError::BadRequest(e)))?;
            // Finished jobs are read from the store: off the runtime.
            let grid = shared.grid.clone();
            let jobs = tokio::task::spawn_blocking(move || grid.list_jobs_page(&caller, &query))
                .await
                .map_err(|e| reject(ApiError::Internal(e.to_string())))?;
            Ok::<_, Rejection>(page(
                &jobs.jobs,
                jobs.next_before.map(|id| (NEXT_BEFORE, id)),
            ))
        })
}

fn job_id() -> impl Filter<Extract = (u64,), Error = Rejection> + Clone {
    warp::path::param::<String>().and_then(|raw: String| async move {
        raw.parse::<u64>()
            .map_err(|_| reject(ApiError::BadRequest(format!("'{raw}' is not a job id"))))
    })
}

/// `/api/jobs/{id}` (with `action` None) or `/api/jobs/{id}/{action}`,
/// authorized, yielding the job id, the caller and the shared state.
fn job_route(
    shared: &Shared,
    action: Option<&'static str>,
) -> impl Filter<Extract = (u64, Caller, Shared), Error = Rejection> + Clone + use<> {
    let action = match action {
        Some(action) => warp::path(action).boxed(),
        None => warp::any().boxed(),
    };
    warp::path("api")
        .and(warp::path("jobs"))
        .and(job_id())
        .and(action)
        .and(warp::path::end())
        .and(authorized(shared))
        .and(with_shared(shared.clone()))
}

fn job_status(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get().and(job_route(&shared, None)).and_then(
        |id: u64, caller: Caller, shared: Shared| async move {
            let status = shared.grid.job_status(&caller, id).map_err(reject)?;
            Ok::<_, Rejection>(json(&status, StatusCode::OK))
        },
    )
}

fn cancel(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::post()
        .and(job_route(&shared, Some("cancel")))
        .and_then(|id: u64, caller: Caller, shared: Shared| async move {
            let status = shared.grid.cancel(&caller, id).await.map_err(reject)?;
            Ok::<_, Rejection>(json(&status, StatusCode::OK))
        })
}

fn pause(
    shared: Shared,
    paused: bool,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let action = if paused { "pause" } else { "resume" };
    warp::post().and(job_route(&shared, Some(action))).and_then(
        move |id: u64, caller: Caller, shared: Shared| async move {
            let status = shared
                .grid
                .set_job_paused(&caller, id, paused)
                .await
                .map_err(reject)?;
            Ok::<_, Rejection>(json(&status, StatusCode::OK))
        },
    )
}

fn metrics(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_shared(shared))
        .map(|shared: Shared| {
            let mut response = Response::new(shared.grid.metrics().into());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        })
}

#[derive(Debug, Deserialize)]
struct MonitorQuery {
    /// Deprecated: the token in the URL (see [`monitor_auth`]).
    token: Option<String>,
}

/// `/ws/monitor`: the token in `Sec-WebSocket-Protocol` (browsers cannot set
/// headers on a WebSocket), or `Authorization`, or for one more release
/// `?token=` (see [`monitor_auth`]), checked before the upgrade.
fn monitor_socket(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let grid = shared.grid.clone();
    let admission = warp::query::<MonitorQuery>()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>().map(|peer: Option<PeerAddr>| peer.map(|p| p.0)))
        .and(with_shared(shared.clone()))
        .and_then(
            move |query: MonitorQuery,
                  headers: warp::http::HeaderMap,
                  remote: Option<SocketAddr>,
                  shared: Shared| {
                let admitted =
                    monitor_auth::admit(&headers, query.token.as_deref(), |t| grid.authenticate(t));
                if let Ok(monitor_auth::Admitted {
                    via: monitor_auth::Via::Query,
                    ..
                }) = admitted
                {
                    let client = client_address(&shared, remote, &headers)
                        .map_or_else(|| "unknown".to_string(), |a| a.to_string());
                    tracing::warn!(
                        %client,
                        "a monitor client sent the token in its URL (/ws/monitor?token=), \
                         where proxies and browser history keep it: deprecated, and refused \
                         from the next release; offer it in Sec-WebSocket-Protocol instead \
                         (PROTOCOL.md, Monitor channel)"
                    );
                }
                async move { admitted.map_err(warp::reject::custom) }
            },
        );
    warp::path!("ws" / "monitor")
        .and(admission)
        .and(upgrade::handshake())
        .and(with_shared(shared))
        .map(
            |admitted: monitor_auth::Admitted<Caller>,
             handshake: upgrade::Handshake,
             shared: Shared| {
                match shared.monitors.clone().try_acquire_owned() {
                    // Dashboards only listen: small frames are enough.
                    Ok(permit) => {
                        let caller = admitted.who;
                        let mut response = handshake.accept(
                            shared.grid.config().max_monitor_frame_bytes,
                            move |socket| {
                                let (sink, stream) = socket.split();
                                crate::socket::monitor::serve_monitor(
                                    shared.grid,
                                    caller,
                                    sink,
                                    stream,
                                    shared.shutdown,
                                    permit,
                                )
                            },
                        );
                        if let Some(protocol) = admitted.protocol {
                            response.headers_mut().insert(
                                header::SEC_WEBSOCKET_PROTOCOL,
                                header::HeaderValue::from_static(protocol),
                            );
                        }
                        response
                    }
                    Err(_) => json(
                        &ErrorBody {
                            error: "too many monitor connections".into(),
                        },
                        StatusCode::SERVICE_UNAVAILABLE,
                    ),
                }
            },
        )
}

/// `GET /api/jobs/{id}/outputs/{task}`: what a decided task of a wasm job
/// wrote to stdout, as it wrote it.
fn task_output(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::path("api"))
        .and(warp::path("jobs"))
        .and(job_id())
        .and(warp::path("outputs"))
        .and(warp::path::param::<u32>())
        .and(warp::path::end())
        .and(authorized(&shared))
        .and(with_shared(shared))
        .and_then(
            |id: u64, task: u32, caller: Caller, shared: Shared| async move {
                let stdout = shared
                    .grid
                    .task_output(&caller, id, task)
                    .await
                    .map_err(reject)?;
                let mut response = Response::new(stdout.into());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/octet-stream"),
                );
                Ok::<_, Rejection>(response)
            },
        )
}

/// `GET /api/jobs/{id}/fuel`: the fuel a wasm job's decided tasks used, in
/// brief (see [`crate::grid::FuelSummary`]), in any state of the job.
fn fuel(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get().and(job_route(&shared, Some("fuel"))).and_then(
        |id: u64, caller: Caller, shared: Shared| async move {
            let summary = shared.grid.fuel(&caller, id).await.map_err(reject)?;
            Ok::<_, Rejection>(json(&summary, StatusCode::OK))
        },
    )
}

#[derive(Debug, Deserialize)]
struct ResultsQuery {
    format: Option<String>,
}

fn results(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get()
        .and(job_route(&shared, Some("results")))
        .and(raw_query())
        .and_then(
            |id: u64, caller: Caller, shared: Shared, query: String| async move {
                let query: ResultsQuery =
                    serde_urlencoded_lite(&query).map_err(|e| reject(ApiError::BadRequest(e)))?;
                let format: Format = query
                    .format
                    .as_deref()
                    .unwrap_or("json")
                    .parse()
                    .map_err(|e| reject(ApiError::BadRequest(e)))?;
                let (job, result) = shared.grid.results(&caller, id).await.map_err(reject)?;
                let body =
                    export::render(&result, format).map_err(|e| reject(ApiError::BadRequest(e)))?;
                let filename = format!(
                    "job-{}-{}.{}",
                    job.id,
                    job.spec().kind(),
                    format.extension()
                );
                let mut response = Response::new(body.into());
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(format.content_type()),
                );
                if let Ok(value) =
                    header::HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
                {
                    headers.insert(header::CONTENT_DISPOSITION, value);
                }
                Ok::<_, Rejection>(response)
            },
        )
}

/// Reads `format=...` from a query string; the only parameter there is.
fn serde_urlencoded_lite(query: &str) -> Result<ResultsQuery, String> {
    let mut format = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("format", value)) => format = Some(value.to_string()),
            _ => {
                return Err(format!(
                    "unknown query parameter '{pair}' (only 'format' is accepted)"
                ));
            }
        }
    }
    Ok(ResultsQuery { format })
}

/// `GET /api/workers?limit=N&after=ID`: a page of the worker connections
/// by id (see [`WorkerQuery`]).
fn workers(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "workers")
        .and(warp::get())
        .and(authorized(&shared))
        .and(raw_query())
        .and(with_shared(shared))
        .and_then(|_: Caller, query: String, shared: Shared| async move {
            let query = WorkerQuery::parse(&query).map_err(|e| reject(ApiError::BadRequest(e)))?;
            let (workers, next) = workers_page(shared.grid.workers(), &query);
            Ok::<_, Rejection>(page(&workers, next.map(|id| (NEXT_AFTER, id))))
        })
}

/// The part of `workers` (by id) that `query` asks for, and the `after` of
/// the next page if more remain.
fn workers_page(
    workers: Vec<grid_protocol::api::WorkerInfo>,
    query: &WorkerQuery,
) -> (Vec<grid_protocol::api::WorkerInfo>, Option<u64>) {
    let limit = query.limit as usize;
    let mut page: Vec<_> = workers
        .into_iter()
        .filter(|w| query.after.is_none_or(|after| w.id > after))
        .take(limit.saturating_add(1))
        .collect();
    let next = (limit > 0 && page.len() > limit).then(|| page[limit - 1].id);
    page.truncate(limit);
    (page, next)
}

fn worker_socket(shared: Shared) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("ws" / "worker")
        .and(upgrade::handshake())
        .and(warp::ext::optional::<PeerAddr>().map(|peer: Option<PeerAddr>| peer.map(|p| p.0)))
        .and(warp::header::headers_cloned())
        .and(with_shared(shared))
        .map(
            |handshake: upgrade::Handshake,
             remote: Option<SocketAddr>,
             headers: warp::http::HeaderMap,
             shared: Shared| {
                let addr = client_address(&shared, remote, &headers);
                let permit = shared.connections.clone().try_acquire_owned().ok();
                let address = shared.grid.open_address_slot(addr.map(|a| a.ip()));
                let guard = ConnectionGuard {
                    permit,
                    address,
                    _done: shared.done.clone(),
                };
                handshake.accept(
                    shared.grid.config().max_worker_frame_bytes(),
                    move |socket| {
                        let (sink, stream) = socket.split();
                        serve_worker(shared.grid, sink, stream, addr, shared.shutdown, guard)
                    },
                )
            },
        )
}

/// The worker's address: the TCP peer, or behind a trusted reverse proxy the
/// first address in the header the operator named. An IPv4 address mapped
/// into IPv6 (`::ffff:a.b.c.d`) is taken as the IPv4 address, so a machine is
/// one donor (and loopback is loopback) however the coordinator listens.
fn client_address(
    shared: &Shared,
    remote: Option<SocketAddr>,
    headers: &warp::http::HeaderMap,
) -> Option<SocketAddr> {
    let address = client_address_as_sent(shared, remote, headers)?;
    Some(SocketAddr::new(address.ip().to_canonical(), address.port()))
}

fn client_address_as_sent(
    shared: &Shared,
    remote: Option<SocketAddr>,
    headers: &warp::http::HeaderMap,
) -> Option<SocketAddr> {
    let Some(name) = shared.grid.config().client_address_header.as_deref() else {
        return remote;
    };
    let forwarded = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|first| {
            let first = first.trim();
            first.parse::<SocketAddr>().ok().or_else(|| {
                first
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 0))
            })
        });
    forwarded.or(remote)
}

async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    let (status, message) = if let Some(Api(error)) = rejection.find::<Api>() {
        let status = match error {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::LimitReached(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, error.to_string())
    } else if let Some(reason) = upgrade::refusal(&rejection) {
        (StatusCode::BAD_REQUEST, reason.to_string())
    } else if let Some(refused) = rejection.find::<monitor_auth::Refused>() {
        (refused.status, refused.message.clone())
    } else if rejection.find::<Unauthorized>().is_some() {
        (
            StatusCode::UNAUTHORIZED,
            "missing or invalid token: send 'Authorization: Bearer <token>' (see DATA/token)"
                .to_string(),
        )
    } else if let Some(e) = rejection.find::<warp::reject::PayloadTooLarge>() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: {e}"),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required".to_string(),
        )
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else if let Some(unmatched) = rejection.find::<unmatched::NoRoute>() {
        // No route took the request (each one rejected it as "not found" or,
        // by the order of its filters, "method not allowed"): 405 only where
        // the path is served with other methods.
        let unmatched::NoRoute {
            method,
            path,
            allow,
        } = unmatched;
        match allow {
            Some(allow) => {
                let mut response = json(
                    &ErrorBody {
                        error: format!("method not allowed: {path} takes {allow}, not {method}"),
                    },
                    StatusCode::METHOD_NOT_ALLOWED,
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static(allow));
                return Ok(response);
            }
            None => (
                StatusCode::NOT_FOUND,
                format!("not found: nothing is served at {method} {path}"),
            ),
        }
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        (
            StatusCode::BAD_REQUEST,
            format!("bad request: {rejection:?}"),
        )
    };
    Ok(json(&ErrorBody { error: message }, status))
}

#[cfg(test)]
mod tests;
