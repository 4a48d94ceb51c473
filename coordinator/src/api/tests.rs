//! The HTTP routes in-process (`warp::test`): status codes, error bodies
//! and export headers, over a real grid on a temporary store.

use std::sync::Arc;

use grid_kernels::ContentDigest;
use grid_kernels::spec::PrimesParams;
use grid_kernels::{KernelSpec, TaskRunner};
use grid_protocol::ResultsFrame;
use grid_protocol::api::{BlobInfo, ErrorBody, JobState, JobStatus};
use grid_protocol::frame::ResultsFrameBuilder;
use tokio::sync::{Semaphore, mpsc, watch};
use warp::http::StatusCode;

use super::*;
use crate::grid::testing::{join, next_batch, open_grid_with};

const TOKEN: &str = "secret";

struct Api {
    grid: Arc<Grid>,
    routes: BoxedFilter<(Response,)>,
    _dir: tempfile::TempDir,
    _shutdown: watch::Sender<bool>,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid_with(dir.path(), |c| c.token = TOKEN.into()).await;
    let (stop, shutdown) = watch::channel(false);
    let routes = routes(Shared {
        grid: grid.clone(),
        shutdown,
        connections: Arc::new(Semaphore::new(10)),
        monitors: Arc::new(Semaphore::new(10)),
        done: mpsc::channel(1).0,
    });
    Api {
        grid,
        routes,
        _dir: dir,
        _shutdown: stop,
    }
}

fn authorized(method: &str, path: &str) -> warp::test::RequestBuilder {
    warp::test::request()
        .method(method)
        .path(path)
        .header("authorization", format!("Bearer {TOKEN}"))
}

fn error_of(response: &warp::http::Response<bytes::Bytes>) -> String {
    let body: &[u8] = response.body().as_ref();
    serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {body:?}"))
        .error
}

/// `warp::test` answers with the body collected; this reads it typed.
async fn reply(
    api: &Api,
    request: warp::test::RequestBuilder,
) -> warp::http::Response<bytes::Bytes> {
    request.reply(&api.routes).await
}

const PRIMES: &str = r#"{"kernel":"primes","params":{"start":0,"end":1000},"tasks":1}"#;

#[tokio::test]
async fn the_api_wants_the_token_and_says_where_it_is() {
    let api = api().await;
    let health = reply(&api, warp::test::request().path("/api/health")).await;
    assert_eq!(health.status(), StatusCode::OK, "health needs no token");
    let response = reply(&api, warp::test::request().path("/api/jobs")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(error_of(&response).contains("DATA/token"));
    let wrong = warp::test::request()
        .path("/api/jobs")
        .header("authorization", "Bearer nope");
    assert_eq!(reply(&api, wrong).await.status(), StatusCode::UNAUTHORIZED);
    let listed = reply(&api, authorized("GET", "/api/jobs")).await;
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(listed.body().as_ref(), b"[]");
}

#[tokio::test]
async fn bad_requests_get_a_sentence_and_change_nothing() {
    let api = api().await;
    let cases: Vec<(warp::test::RequestBuilder, StatusCode, &str)> = vec![
        (
            authorized("GET", "/api/jobs/99"),
            StatusCode::NOT_FOUND,
            "no job 99",
        ),
        (
            authorized("GET", "/api/jobs/abc"),
            StatusCode::BAD_REQUEST,
            "'abc' is not a job id",
        ),
        (
            authorized("POST", "/api/jobs").body(r#"{"kernel":"primes","colour":1}"#),
            StatusCode::BAD_REQUEST,
            "invalid job request: unknown field `colour`",
        ),
        (
            authorized("POST", "/api/jobs").body(r#"{"kernel":"fibonacci"}"#),
            StatusCode::BAD_REQUEST,
            "unknown kernel 'fibonacci'",
        ),
        (
            authorized("POST", "/api/jobs")
                .body(r#"{"kernel":"primes","params":{"start":0,"end":10},"redundancy":99}"#),
            StatusCode::BAD_REQUEST,
            "redundancy must be between 1 and 16, got 99",
        ),
        (
            authorized("POST", "/api/jobs").body(vec![b' '; 1024 * 1024 + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ),
        (
            authorized("DELETE", "/api/jobs"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
    ];
    for (request, status, message) in cases {
        let response = reply(&api, request).await;
        assert_eq!(response.status(), status, "{message}");
        let error = error_of(&response);
        assert!(error.starts_with(message), "{error:?} for {message:?}");
    }
    assert!(
        api.grid.list_jobs(&api.grid.first_admin()).is_empty(),
        "nothing was submitted"
    );
}

#[tokio::test]
async fn a_finished_job_cannot_change_and_an_unfinished_one_has_no_results() {
    let api = api().await;
    let submitted = reply(&api, authorized("POST", "/api/jobs").body(PRIMES)).await;
    assert_eq!(submitted.status(), StatusCode::CREATED);
    let status: JobStatus = serde_json::from_slice(submitted.body()).unwrap();
    assert_eq!(status.state, JobState::Queued);
    let results = reply(
        &api,
        authorized("GET", &format!("/api/jobs/{}/results", status.id)),
    )
    .await;
    assert_eq!(results.status(), StatusCode::CONFLICT);
    assert_eq!(
        error_of(&results),
        format!(
            "job {} is queued; results are available once it is done",
            status.id
        )
    );
    let path = format!("/api/jobs/{}/cancel", status.id);
    let cancelled = reply(&api, authorized("POST", &path)).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let again = reply(&api, authorized("POST", &path)).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(
        error_of(&again),
        format!("job {} is already cancelled", status.id)
    );
    let paused = reply(
        &api,
        authorized("POST", &format!("/api/jobs/{}/pause", status.id)),
    )
    .await;
    assert_eq!(paused.status(), StatusCode::CONFLICT);
}

/// Runs a one-task primes job to the end through the grid itself.
async fn finished_job(api: &Api) -> u64 {
    let (worker, mut queue) = join(&api.grid, 1);
    let submitted = reply(api, authorized("POST", "/api/jobs").body(PRIMES)).await;
    let status: JobStatus = serde_json::from_slice(submitted.body()).unwrap();
    let batch = next_batch(&mut queue).await;
    let mut frame = ResultsFrameBuilder::new(batch.batch);
    frame.push(0, &TaskRunner::new().run(&batch.spec, 1, 0).unwrap());
    let frame = ResultsFrame::decode_shared(&bytes::Bytes::from(frame.finish())).unwrap();
    api.grid.on_results(&worker, frame).await.unwrap();
    assert_eq!(
        api.grid
            .job_status(&api.grid.first_admin(), status.id)
            .unwrap()
            .state,
        JobState::Done
    );
    assert_eq!(
        batch.spec,
        KernelSpec::Primes(PrimesParams {
            start: 0,
            end: 1000
        })
    );
    status.id
}

/// `GET /api/jobs` pages newest first, names the next page in a header,
/// filters by state, and refuses bad parameters with a sentence.
#[tokio::test]
async fn the_job_list_pages_and_filters() {
    let api = api().await;
    let (worker, mut queue) = join(&api.grid, 1);
    let mut done = Vec::new();
    for _ in 0..2 {
        let submitted = reply(&api, authorized("POST", "/api/jobs").body(PRIMES)).await;
        let status: JobStatus = serde_json::from_slice(submitted.body()).unwrap();
        let batch = next_batch(&mut queue).await;
        let mut frame = ResultsFrameBuilder::new(batch.batch);
        frame.push(0, &TaskRunner::new().run(&batch.spec, 1, 0).unwrap());
        let frame = ResultsFrame::decode_shared(&bytes::Bytes::from(frame.finish())).unwrap();
        api.grid.on_results(&worker, frame).await.unwrap();
        done.push(status.id);
    }
    // No worker: the next job stays queued.
    api.grid.unregister_worker(worker.id);
    let queued: JobStatus = serde_json::from_slice(
        reply(&api, authorized("POST", "/api/jobs").body(PRIMES))
            .await
            .body(),
    )
    .unwrap();
    let list = |path: &str| {
        let api = &api;
        let path = path.to_string();
        async move {
            let response = reply(api, authorized("GET", &path)).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let jobs: Vec<JobStatus> = serde_json::from_slice(response.body()).unwrap();
            let next = header_of(&response, grid_protocol::api::NEXT_BEFORE)
                .map(|v| v.parse::<u64>().unwrap());
            (jobs.iter().map(|j| j.id).collect::<Vec<u64>>(), next)
        }
    };
    assert_eq!(
        list("/api/jobs").await,
        (vec![queued.id, done[1], done[0]], None)
    );
    let first = list("/api/jobs?limit=2").await;
    assert_eq!(first, (vec![queued.id, done[1]], Some(done[1])));
    let second = list(&format!("/api/jobs?limit=2&before={}", done[1])).await;
    assert_eq!(second, (vec![done[0]], None));
    assert_eq!(
        list("/api/jobs?state=done").await,
        (vec![done[1], done[0]], None)
    );
    assert_eq!(
        list("/api/jobs?state=queued,running").await,
        (vec![queued.id], None)
    );
    for (query, message) in [
        ("limit=0", "limit must be a number from 1 to 1000, not '0'"),
        ("limit=5000", "limit must be a number from 1 to 1000"),
        ("before=x", "before must be an id"),
        ("state=finished", "unknown job state 'finished'"),
        ("sort=id", "unknown query parameter 'sort=id'"),
    ] {
        let response = reply(&api, authorized("GET", &format!("/api/jobs?{query}"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(
            error_of(&response).starts_with(message),
            "{query}: {}",
            error_of(&response)
        );
    }
    // Workers page by id.
    let (_one, _q1) = join(&api.grid, 1);
    let (two, _q2) = join(&api.grid, 1);
    let response = reply(&api, authorized("GET", "/api/workers?limit=1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let workers: Vec<grid_protocol::api::WorkerInfo> =
        serde_json::from_slice(response.body()).unwrap();
    assert_eq!(workers.len(), 1);
    let after = header_of(&response, grid_protocol::api::NEXT_AFTER).unwrap();
    assert_eq!(after, workers[0].id.to_string());
    let response = reply(
        &api,
        authorized("GET", &format!("/api/workers?after={after}")),
    )
    .await;
    let rest: Vec<grid_protocol::api::WorkerInfo> =
        serde_json::from_slice(response.body()).unwrap();
    assert_eq!(rest.iter().map(|w| w.id).collect::<Vec<_>>(), [two.id]);
    assert_eq!(header_of(&response, grid_protocol::api::NEXT_AFTER), None);
    let bad = reply(&api, authorized("GET", "/api/workers?limit=-1")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn exports_name_their_type_and_file() {
    let api = api().await;
    let id = finished_job(&api).await;
    let csv = reply(
        &api,
        authorized("GET", &format!("/api/jobs/{id}/results?format=csv")),
    )
    .await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv.headers()["content-disposition"],
        format!("attachment; filename=\"job-{id}-primes.csv\"")
    );
    assert_eq!(csv.body().as_ref(), b"count\n168\n");
    let json = reply(&api, authorized("GET", &format!("/api/jobs/{id}/results"))).await;
    assert_eq!(json.headers()["content-type"], "application/json");
    assert_eq!(json.body().as_ref(), br#"{"count":168}"#);
    for (query, message) in [
        (
            "format=png",
            "png export is only available for mandelbrot jobs",
        ),
        ("format=gif", "unknown format 'gif' (use json, csv or png)"),
        ("colour=red", "unknown query parameter 'colour=red'"),
    ] {
        let response = reply(
            &api,
            authorized("GET", &format!("/api/jobs/{id}/results?{query}")),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(error_of(&response).starts_with(message), "{query}");
    }
    let cancel = reply(&api, authorized("POST", &format!("/api/jobs/{id}/cancel"))).await;
    assert_eq!(error_of(&cancel), format!("job {id} is already done"));
    let metrics = reply(&api, warp::test::request().path("/metrics")).await;
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = std::str::from_utf8(metrics.body()).unwrap();
    assert!(text.contains("grid_jobs{state=\"done\"} 1"), "{text}");
}

#[tokio::test]
async fn blobs_are_stored_once_under_their_digest_and_served_immutable() {
    let api = api().await;
    let bytes = b"a module, say".to_vec();
    let digest = ContentDigest::of(&bytes);
    let path = format!("/api/blobs/{digest}");
    let head = reply(&api, authorized("HEAD", &path)).await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND, "not uploaded yet");
    let put = reply(&api, authorized("PUT", &path).body(bytes.clone())).await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let info: BlobInfo = serde_json::from_slice(put.body()).unwrap();
    assert_eq!(
        info,
        BlobInfo {
            digest,
            size: bytes.len() as u64
        }
    );
    let again = reply(&api, authorized("PUT", &path).body(bytes.clone())).await;
    assert_eq!(again.status(), StatusCode::OK, "idempotent");
    let head = reply(&api, authorized("HEAD", &path)).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], bytes.len().to_string());
    let got = reply(&api, authorized("GET", &path)).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.body().as_ref(), &bytes[..]);
    assert_eq!(
        got.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(got.headers()["etag"], format!("\"{digest}\""));
    let anonymous = reply(&api, warp::test::request().path(&path)).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_blob_uploads_get_a_sentence_and_store_nothing() {
    let api = api().await;
    let digest = ContentDigest::of(b"the right bytes");
    let path = format!("/api/blobs/{digest}");
    let wrong = reply(&api, authorized("PUT", &path).body("other bytes")).await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert!(
        error_of(&wrong).contains("not the sha256:"),
        "{}",
        error_of(&wrong)
    );
    let not_a_digest = reply(&api, authorized("PUT", "/api/blobs/sha1:abc").body("x")).await;
    assert_eq!(not_a_digest.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(&not_a_digest).contains("is not a content address"));
    let escape = reply(&api, authorized("GET", "/api/blobs/tmp/x")).await;
    assert_eq!(escape.status(), StatusCode::BAD_REQUEST);
    assert!(!api.grid.blobs().contains(&digest));
}

#[tokio::test]
async fn a_blob_over_the_limit_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid_with(dir.path(), |c| {
        c.token = TOKEN.into();
        c.max_blob_bytes = 10;
    })
    .await;
    let (stop, shutdown) = watch::channel(false);
    let routes = routes(Shared {
        grid: grid.clone(),
        shutdown,
        connections: Arc::new(Semaphore::new(10)),
        monitors: Arc::new(Semaphore::new(10)),
        done: mpsc::channel(1).0,
    });
    let bytes = vec![7u8; 11];
    let path = format!("/api/blobs/{}", ContentDigest::of(&bytes));
    let response = authorized("PUT", &path).body(bytes).reply(&routes).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    drop(stop);
}

#[tokio::test]
async fn prepared_modules_are_served_to_anyone_with_their_digest() {
    let api = api().await;
    let digest = api
        .grid
        .modules()
        .put_bytes(b"\0asm prepared")
        .await
        .unwrap();
    let got = reply(
        &api,
        warp::test::request().path(&format!("/api/modules/{digest}")),
    )
    .await;
    assert_eq!(got.status(), StatusCode::OK, "no token needed");
    assert_eq!(got.body().as_ref(), b"\0asm prepared");
    assert_eq!(
        got.headers()["content-type"],
        "application/wasm",
        "what compileStreaming takes"
    );
    let missing = ContentDigest::of(b"nothing");
    let none = reply(
        &api,
        warp::test::request().path(&format!("/api/modules/{missing}")),
    )
    .await;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    // Uploads are not modules.
    let upload = ContentDigest::of(b"an upload");
    api.grid.blobs().put_bytes(b"an upload").await.unwrap();
    let other = reply(
        &api,
        warp::test::request().path(&format!("/api/modules/{upload}")),
    )
    .await;
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

/// `GET /api/jobs/{id}/fuel` sums up the stored outcomes of a wasm job's
/// decided tasks, so far and at the end, and refuses other kernels.
#[tokio::test]
async fn a_wasm_jobs_fuel_per_task_is_summed_up() {
    use grid_kernels::wasm::WasmOutcome;
    use grid_kernels::{KernelKind, TaskOutput};
    use grid_protocol::Hello;
    use grid_protocol::api::{JobRequest, WasmRequest};

    let api = api().await;
    let module =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap();
    let module = api.grid.blobs().put_bytes(&module).await.unwrap();
    let fuel = [500u64, 100, 300, 200, 400, 100];
    let status = api
        .grid
        .submit(
            &api.grid.first_admin(),
            JobRequest {
                tasks: Some(fuel.len() as u32),
                ..JobRequest::new(WasmRequest::new(module))
            },
        )
        .await
        .unwrap();
    let path = format!("/api/jobs/{}/fuel", status.id);
    let summary = |response: warp::http::Response<bytes::Bytes>| {
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_slice::<serde_json::Value>(response.body()).unwrap()
    };
    let none = summary(reply(&api, authorized("GET", &path)).await);
    assert_eq!(none["tasks"], 0, "{none}");
    assert!(none["median"].is_null(), "{none}");

    let (outbox, mut queue) = mpsc::channel(64);
    let worker = api
        .grid
        .register_worker(
            Hello {
                kernels: Some(vec![KernelKind::Wasm]),
                ..crate::grid::testing::native_hello(2, None)
            },
            None,
            outbox,
        )
        .unwrap();
    api.grid.dispatch();
    while api
        .grid
        .job_status(&api.grid.first_admin(), status.id)
        .unwrap()
        .state
        != JobState::Done
    {
        let batch = next_batch(&mut queue).await;
        let mut frame = ResultsFrameBuilder::new(batch.batch);
        for task in batch.tasks.iter() {
            let outcome = WasmOutcome {
                trap: None,
                exit_code: 0,
                fuel_used: fuel[task as usize],
                stdout: vec![b'x'; task as usize],
                stderr: Vec::new(),
            };
            frame.push(task, &TaskOutput::Wasm(outcome));
        }
        let frame = ResultsFrame::decode_shared(&bytes::Bytes::from(frame.finish())).unwrap();
        api.grid.on_results(&worker, frame).await.unwrap();
    }
    let done = summary(reply(&api, authorized("GET", &path)).await);
    assert_eq!(
        done,
        serde_json::json!({"tasks": 6, "total": 1600, "min": 100, "median": 200, "max": 500,
            "bin_width": 21, "bins": [2, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]})
    );

    let unauthorized = reply(&api, warp::test::request().path(&path)).await;
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    let primes = finished_job(&api).await;
    let refused = reply(&api, authorized("GET", &format!("/api/jobs/{primes}/fuel"))).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&refused),
        format!("job {primes} runs primes; only wasm tasks use fuel")
    );
    let missing = reply(&api, authorized("GET", "/api/jobs/99/fuel")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

// ---- blobs ----------------------------------------------------------------

/// Uploads `bytes` through the API; their digest.
async fn put_blob(api: &Api, bytes: &[u8]) -> ContentDigest {
    let digest = ContentDigest::of(bytes);
    let put = reply(
        api,
        authorized("PUT", &format!("/api/blobs/{digest}")).body(bytes),
    )
    .await;
    assert!(put.status().is_success(), "{put:?}");
    digest
}

fn served_bytes(api: &Api) -> u64 {
    let mut text = String::new();
    api.grid.render_blob_metrics(&mut text);
    let line = text
        .lines()
        .find(|l| l.starts_with("grid_blob_bytes_served_total "))
        .unwrap_or_else(|| panic!("no counter in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A blob is immutable, and served so: strong ETag, a year's caching,
/// ranges, 304 for a copy the client has, HEAD without a body. Only the
/// bodies of GETs count as bytes served.
#[tokio::test]
async fn blobs_are_served_with_ranges_validators_and_head() {
    let api = api().await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let digest = put_blob(&api, &bytes).await;
    let path = format!("/api/blobs/{digest}");
    let etag = format!("\"{digest}\"");

    let range = reply(
        &api,
        authorized("GET", &path).header("range", "bytes=100-199"),
    )
    .await;
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(range.headers()["content-length"], "100");
    assert_eq!(range.body().as_ref(), &bytes[100..200]);
    assert_eq!(range.headers()["etag"], etag.as_str());
    let tail = reply(&api, authorized("GET", &path).header("range", "bytes=-10")).await;
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.body().as_ref(), &bytes[9_990..]);
    let beyond = reply(
        &api,
        authorized("GET", &path).header("range", "bytes=20000-"),
    )
    .await;
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    for tags in [
        etag.clone(),
        format!("\"other\", W/{etag}"),
        "*".to_string(),
    ] {
        let cached = reply(
            &api,
            authorized("GET", &path).header("if-none-match", &tags),
        )
        .await;
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED, "{tags}");
        assert!(cached.body().is_empty());
        assert_eq!(cached.headers()["etag"], etag.as_str());
        assert_eq!(
            cached.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    let stale = reply(
        &api,
        authorized("GET", &path).header("if-none-match", "\"sha256:00\""),
    )
    .await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.body().len(), bytes.len());

    let head = reply(&api, authorized("HEAD", &path)).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "10000");
    assert_eq!(head.headers()["etag"], etag.as_str());
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert_eq!(
        head.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let missing = ContentDigest::of(b"missing");
    let none = reply(&api, authorized("HEAD", &format!("/api/blobs/{missing}"))).await;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);

    // Two ranges' and one whole body's bytes; not the 304s, not HEAD.
    assert_eq!(served_bytes(&api), 100 + 10 + 10_000);
}

/// A wasm job mounting `file`, submitted through the grid, and the batch a
/// worker that runs wasm was sent (leased while its outbox, returned last,
/// is held).
async fn leased_job_with_file(
    api: &Api,
    file: ContentDigest,
) -> (
    u64,
    grid_protocol::Batch,
    mpsc::Receiver<crate::grid::Outbound>,
) {
    use grid_kernels::KernelKind;
    use grid_protocol::Hello;
    use grid_protocol::api::{JobRequest, WasmRequest};
    let module =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap();
    let module = put_blob(api, &module).await;
    let mut request = WasmRequest::new(module);
    request.files = [("data.bin".to_string(), file)].into();
    let status = api
        .grid
        .submit(&api.grid.first_admin(), JobRequest::new(request))
        .await
        .unwrap();
    let (outbox, mut queue) = mpsc::channel(64);
    let hello = Hello {
        kernels: Some(vec![KernelKind::Wasm]),
        ..crate::grid::testing::native_hello(1, None)
    };
    api.grid.register_worker(hello, None, outbox).unwrap();
    api.grid.dispatch();
    let batch = next_batch(&mut queue).await;
    assert_eq!(batch.job, status.id);
    (status.id, batch, queue)
}

/// A worker reads the files of the batch it holds with the batch's
/// capability instead of the token; a capability that does not open a blob
/// is answered as a blob that is not there.
#[tokio::test]
async fn a_capability_reads_its_jobs_files_and_nothing_else_says_so() {
    let api = api().await;
    let file = put_blob(&api, b"the job's file").await;
    let other = put_blob(&api, b"another upload").await;
    let (_, batch, _worker) = leased_job_with_file(&api, file).await;
    let capability = batch
        .capability
        .clone()
        .expect("a batch of a job with files");
    let with = |digest: &ContentDigest, capability: &str| {
        warp::test::request()
            .path(&format!("/api/blobs/{digest}"))
            .header("grid-capability", capability)
    };

    let read = reply(&api, with(&file, &capability)).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.body().as_ref(), b"the job's file");
    let head = reply(&api, with(&file, &capability).method("HEAD")).await;
    assert_eq!(head.status(), StatusCode::OK);
    // A wrong token does not spoil a good capability.
    let both = with(&file, &capability).header("authorization", "Bearer nope");
    assert_eq!(reply(&api, both).await.status(), StatusCode::OK);

    let absent = ContentDigest::of(b"never uploaded");
    let forged = format!("{}.{}", batch.batch, "0".repeat(32));
    let refusals = [
        (other, capability.clone()),
        (absent, capability.clone()),
        (file, forged),
        (file, "garbage".to_string()),
    ];
    for (digest, capability) in refusals {
        let refused = reply(&api, with(&digest, &capability)).await;
        assert_eq!(refused.status(), StatusCode::NOT_FOUND, "{capability}");
        assert_eq!(error_of(&refused), format!("no blob {digest}"));
    }
    let malformed = reply(
        &api,
        warp::test::request()
            .path("/api/blobs/sha256:xyz")
            .header("grid-capability", &capability),
    )
    .await;
    assert_eq!(malformed.status(), StatusCode::NOT_FOUND);
    let anonymous = reply(
        &api,
        warp::test::request().path(&format!("/api/blobs/{file}")),
    )
    .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // The capability reads; it does not list or delete.
    for (method, path) in [
        ("GET", "/api/blobs".to_string()),
        ("DELETE", format!("/api/blobs/{other}")),
    ] {
        let request = warp::test::request()
            .method(method)
            .path(&path)
            .header("grid-capability", &capability);
        assert_eq!(
            reply(&api, request).await.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    // It stores its tasks' outputs (the job's may be too large for a
    // frame); a forged one stores nothing, and says so.
    let output = b"an output".to_vec();
    let digest = ContentDigest::of(&output);
    let put = |capability: &str| {
        warp::test::request()
            .method("PUT")
            .path(&format!("/api/blobs/{digest}"))
            .header("grid-capability", capability)
            .body(output.clone())
    };
    let forged = format!("{}.{}", batch.batch, "0".repeat(32));
    let refused = reply(&api, put(&forged)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        error_of(&refused).contains("stores no outputs"),
        "{}",
        error_of(&refused)
    );
    assert_eq!(
        reply(&api, put(&capability)).await.status(),
        StatusCode::CREATED
    );
}

/// `GET /api/blobs` lists uploads with their references, for the token
/// only; a blob in use cannot be deleted, a finished job can, and then its
/// blob can too.
#[tokio::test]
async fn jobs_hold_their_blobs_until_removed_and_removing_waits_for_the_end() {
    use grid_protocol::api::BlobListing;
    let api = api().await;
    let file = put_blob(&api, b"input data").await;
    let (job, _batch, _worker) = leased_job_with_file(&api, file).await;

    assert_eq!(
        reply(&api, warp::test::request().path("/api/blobs"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let listed = reply(&api, authorized("GET", "/api/blobs")).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let blobs: Vec<BlobListing> = serde_json::from_slice(listed.body()).unwrap();
    assert_eq!(blobs.len(), 2, "the file and the module: {blobs:?}");
    let entry = blobs.iter().find(|b| b.digest == file).unwrap();
    assert_eq!((entry.size, entry.references), (10, 1));
    assert!(entry.last_used_at >= entry.created_at);

    let blob_path = format!("/api/blobs/{file}");
    let in_use = reply(&api, authorized("DELETE", &blob_path)).await;
    assert_eq!(in_use.status(), StatusCode::CONFLICT);
    assert_eq!(
        error_of(&in_use),
        format!("blob {file} is used by job {job}; remove it first (grid rm JOB)")
    );

    let job_path = format!("/api/jobs/{job}");
    let running = reply(&api, authorized("DELETE", &job_path)).await;
    assert_eq!(running.status(), StatusCode::CONFLICT);
    assert_eq!(
        error_of(&running),
        format!("job {job} is running: cancel it first (grid cancel {job}), then remove it")
    );
    let anonymous = reply(&api, warp::test::request().method("DELETE").path(&job_path)).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    api.grid.cancel(&api.grid.first_admin(), job).await.unwrap();
    let removed = reply(&api, authorized("DELETE", &job_path)).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        reply(&api, authorized("GET", &job_path)).await.status(),
        StatusCode::NOT_FOUND
    );
    let again = reply(&api, authorized("DELETE", &job_path)).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_of(&again), format!("no job {job}"));
    assert!(!api.grid.store().job_exists(job).unwrap());

    let deleted = reply(&api, authorized("DELETE", &blob_path)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(!api.grid.blobs().contains(&file));
    let gone = reply(&api, authorized("DELETE", &blob_path)).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        reply(&api, authorized("GET", &blob_path)).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The sweep takes the uploads no job uses once their last use is older
/// than the retention, and counts what is left.
#[tokio::test]
async fn the_sweep_takes_unused_blobs_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let grid = open_grid_with(dir.path(), |c| {
        c.blob_retention = std::time::Duration::from_millis(300);
    })
    .await;
    let module =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap();
    let (module, created) = grid
        .put_blob(ContentDigest::of(&module), chunks(&module), u64::MAX, None)
        .await
        .unwrap();
    assert!(created);
    let job = grid
        .submit(
            &grid.first_admin(),
            grid_protocol::api::JobRequest::new(grid_protocol::api::WasmRequest::new(
                module.digest,
            )),
        )
        .await
        .unwrap();
    // Uploaded after the job, whose preparation may take a while: fresh.
    let (unused, _) = grid
        .put_blob(
            ContentDigest::of(b"unused"),
            chunks(b"unused"),
            u64::MAX,
            None,
        )
        .await
        .unwrap();
    assert!(grid.sweep_blobs().await.unwrap().is_empty(), "all fresh");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        grid.sweep_blobs().await.unwrap(),
        vec![(unused.digest, 6)],
        "the module is the job's"
    );
    assert!(!grid.blobs().contains(&unused.digest));
    let mut text = String::new();
    grid.render_blob_metrics(&mut text);
    assert!(text.contains("grid_blobs_stored 1\n"), "{text}");
    assert!(
        text.contains(&format!("grid_blob_bytes_stored {}\n", module.size)),
        "{text}"
    );
    // Once the job is gone, so is its module, a retention later.
    grid.cancel(&grid.first_admin(), job.id).await.unwrap();
    grid.remove_job(&grid.first_admin(), job.id).await.unwrap();
    assert!(
        grid.sweep_blobs().await.unwrap().is_empty(),
        "just released"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(grid.sweep_blobs().await.unwrap().len(), 1);
    assert!(
        grid.list_blobs(&grid.first_admin())
            .await
            .unwrap()
            .is_empty()
    );
}

fn chunks(bytes: &[u8]) -> impl futures_util::Stream<Item = Result<bytes::Bytes, String>> {
    futures_util::stream::iter([Ok(bytes::Bytes::copy_from_slice(bytes))])
}

// The security headers, 404 and 405, and the monitor's token: written out
// here rather than taken from `headers` and `unmatched`, so that changing a
// policy or a path means changing these tests too.

const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
    img-src 'self' data: blob:; style-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";
const DONOR_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'self'";
const OTHER_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

fn header_of<'a>(response: &'a warp::http::Response<bytes::Bytes>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_answer_carries_its_security_headers() {
    let api = api().await;
    let get = |path: &str| warp::test::request().path(path);
    let head = |path: &str| warp::test::request().method("HEAD").path(path);
    let cases: Vec<(warp::test::RequestBuilder, StatusCode, &str, &str)> = vec![
        (get("/dashboard"), StatusCode::OK, DASHBOARD_CSP, "DENY"),
        (head("/dashboard"), StatusCode::OK, DASHBOARD_CSP, "DENY"),
        (
            get("/dashboard.html"),
            StatusCode::OK,
            DASHBOARD_CSP,
            "DENY",
        ),
        (get("/"), StatusCode::OK, DONOR_CSP, "SAMEORIGIN"),
        (head("/"), StatusCode::OK, DONOR_CSP, "SAMEORIGIN"),
        (get("/index.html"), StatusCode::OK, DONOR_CSP, "SAMEORIGIN"),
        // Web Workers run under the policy their script comes with.
        (get("/worker.js"), StatusCode::OK, DONOR_CSP, "SAMEORIGIN"),
        (get("/kernel.js"), StatusCode::OK, DONOR_CSP, "SAMEORIGIN"),
        (get("/donor.js"), StatusCode::OK, DONOR_CSP, "SAMEORIGIN"),
        (
            get("/dashboard/monitor.js"),
            StatusCode::OK,
            DONOR_CSP,
            "SAMEORIGIN",
        ),
        (get("/style.css"), StatusCode::OK, DONOR_CSP, "SAMEORIGIN"),
        (get("/api/health"), StatusCode::OK, OTHER_CSP, "DENY"),
        (
            get("/api/jobs"),
            StatusCode::UNAUTHORIZED,
            OTHER_CSP,
            "DENY",
        ),
        (
            authorized("GET", "/api/jobs"),
            StatusCode::OK,
            OTHER_CSP,
            "DENY",
        ),
        (get("/metrics"), StatusCode::OK, OTHER_CSP, "DENY"),
        (get("/nope"), StatusCode::NOT_FOUND, OTHER_CSP, "DENY"),
        (
            authorized("DELETE", "/api/jobs"),
            StatusCode::METHOD_NOT_ALLOWED,
            OTHER_CSP,
            "DENY",
        ),
        (
            get("/ws/monitor"),
            StatusCode::UNAUTHORIZED,
            OTHER_CSP,
            "DENY",
        ),
    ];
    for (request, status, policy, frame_options) in cases {
        let response = reply(&api, request).await;
        let what = format!("{status} {policy}");
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(
            header_of(&response, "content-security-policy"),
            Some(policy),
            "{what}"
        );
        assert_eq!(
            header_of(&response, "x-frame-options"),
            Some(frame_options),
            "{what}"
        );
        assert_eq!(
            header_of(&response, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            header_of(&response, "referrer-policy"),
            Some("no-referrer"),
            "{what}"
        );
    }
    // With nosniff, a script or a style sheet of another type is refused.
    let script = reply(&api, get("/donor.js")).await;
    let script_type = header_of(&script, "content-type").unwrap();
    assert!(
        script_type.starts_with("text/javascript")
            || script_type.starts_with("application/javascript"),
        "{script_type}"
    );
    let style = reply(&api, get("/dashboard.css")).await;
    assert!(
        header_of(&style, "content-type")
            .unwrap()
            .starts_with("text/css")
    );
    let dashboard = reply(&api, get("/dashboard")).await;
    assert_eq!(header_of(&dashboard, "cache-control"), Some("no-cache"));
    assert!(
        header_of(&dashboard, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_paths_served_with_other_methods_405() {
    let api = api().await;
    let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];
    for path in [
        "/nope",
        "/api",
        "/api/nope",
        "/api/jobs/1/nope",
        "/ws/nope",
        "/metrics/nope",
        "/dashboard/nope",
        "/pkg/nope.js",
    ] {
        for method in methods {
            let response = reply(&api, authorized(method, path)).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(header_of(&response, "allow"), None, "{method} {path}");
            let error = error_of(&response);
            assert_eq!(
                error,
                format!("not found: nothing is served at {method} {path}")
            );
        }
    }
    for (method, path, allow) in [
        ("DELETE", "/api/jobs", "GET, POST"),
        ("PUT", "/api/jobs/7", "GET, DELETE"),
        ("GET", "/api/jobs/7/cancel", "POST"),
        ("POST", "/api/health", "GET"),
        ("POST", "/api/blobs", "GET"),
        ("POST", "/metrics", "GET"),
        ("POST", "/ws/monitor", "GET"),
        ("POST", "/", "GET, HEAD"),
        ("DELETE", "/dashboard", "GET, HEAD"),
        ("PUT", "/donor.js", "GET, HEAD"),
    ] {
        let response = reply(&api, authorized(method, path)).await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            header_of(&response, "allow"),
            Some(allow),
            "{method} {path}"
        );
        assert_eq!(
            error_of(&response),
            format!("method not allowed: {path} takes {allow}, not {method}")
        );
    }
}

/// The table of paths behind the 405s against the routes themselves: each
/// method it names is served (whatever the answer, it is not the 404 or 405
/// of no route), and each other one is a 405 that names them.
#[tokio::test]
async fn every_path_that_answers_405_is_served_with_the_methods_it_names() {
    let api = api().await;
    let zeros = format!("sha256:{}", "0".repeat(64));
    for (pattern, allow) in unmatched::API_PATHS {
        let mut previous = "";
        let path: Vec<&str> = pattern
            .split('/')
            .map(|segment| {
                let filled = match (segment, previous) {
                    ("{}", "jobs") => "1",
                    ("{}", "outputs") => "0",
                    ("{}", _) => zeros.as_str(),
                    _ => segment,
                };
                previous = segment;
                filled
            })
            .collect();
        let path = path.join("/");
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"] {
            let response = reply(&api, authorized(method, &path)).await;
            let status = response.status();
            if allow.split(", ").any(|m| m == method) {
                let no_route = status == StatusCode::METHOD_NOT_ALLOWED
                    || (status == StatusCode::NOT_FOUND
                        && error_of(&response).starts_with("not found: nothing is served"));
                assert!(!no_route, "{method} {path} is not served: {status}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_eq!(
                    header_of(&response, "allow"),
                    Some(*allow),
                    "{method} {path}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_monitor_checks_its_token_before_the_upgrade() {
    let api = api().await;
    // "secret" in base64url, written out.
    let offer = |token: &str| format!("browsergrid.monitor, browsergrid.token.{token}");
    let monitor = |protocols: &str, query: &str| {
        warp::test::request()
            .path(&format!("/ws/monitor{query}"))
            .header("sec-websocket-protocol", protocols)
    };
    // The token passes; the request is then refused only for not being an
    // upgrade at all.
    let not_an_upgrade = "this path takes WebSocket connections only";
    for (request, status, says) in [
        (
            monitor(&offer("c2VjcmV0"), ""),
            StatusCode::BAD_REQUEST,
            not_an_upgrade,
        ),
        (
            monitor("chat", "?token=secret"),
            StatusCode::BAD_REQUEST,
            not_an_upgrade,
        ),
        (
            monitor(&offer("d3Jvbmc"), ""),
            StatusCode::UNAUTHORIZED,
            "missing or invalid token",
        ),
        (
            monitor(&offer("d3Jvbmc"), "?token=secret"),
            StatusCode::UNAUTHORIZED,
            "missing or invalid token",
        ),
        (
            monitor("chat", "?token=wrong"),
            StatusCode::UNAUTHORIZED,
            "missing or invalid token",
        ),
        (
            monitor("browsergrid.token.c2VjcmV0", ""),
            StatusCode::BAD_REQUEST,
            "offer the subprotocol browsergrid.monitor",
        ),
    ] {
        let response = reply(&api, request).await;
        assert_eq!(response.status(), status, "{says}");
        let error = error_of(&response);
        assert!(error.starts_with(says), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
