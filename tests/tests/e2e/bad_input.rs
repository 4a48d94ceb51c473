//! Bad requests over HTTP: each gets the right 4xx status and a JSON body with
//! a non-empty `error`, none of them creates a job, and the grid keeps working
//! afterwards. The requests are sent raw, as any HTTP client could send them,
//! so they are written as JSON here; the answers are read as the API's types.

use std::time::Duration;

use grid_protocol::api::{JobState, JobStatus};
use grid_tests::raw::{Answer, http};
use grid_tests::{TOKEN, TestGrid, assert_primes, job, primes, submit, wait_for_job};
use serde_json::{Value, json};

fn primes_body(start: i64, end: i64) -> Value {
    json!({"kernel": "primes", "params": {"start": start, "end": end}})
}

fn mandelbrot(width: u32, height: u32, max_iter: u32) -> Value {
    json!({"kernel": "mandelbrot", "params": {"width": width, "height": height,
        "x_min": -2.0, "x_max": 1.0, "y_min": -1.0, "y_max": 1.0, "max_iter": max_iter}})
}

/// `base` with `changes` merged into its top level.
fn with(mut base: Value, changes: Value) -> Value {
    for (key, value) in changes.as_object().unwrap() {
        base[key] = value.clone();
    }
    base
}

/// A request that must be refused with `status`.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    token: Option<&'static str>,
    body: Option<Vec<u8>>,
    status: u16,
}

fn post_job(name: &'static str, body: Value, status: u16) -> Case {
    post_raw(name, serde_json::to_vec(&body).unwrap(), status)
}

fn post_raw(name: &'static str, body: Vec<u8>, status: u16) -> Case {
    Case {
        name,
        method: "POST",
        path: "/api/jobs".into(),
        token: Some(TOKEN),
        body: Some(body),
        status,
    }
}

fn request(name: &'static str, method: &'static str, path: String, status: u16) -> Case {
    Case {
        name,
        method,
        path,
        token: Some(TOKEN),
        body: None,
        status,
    }
}

fn job_requests() -> Vec<Case> {
    let oversized = {
        let mut body = primes_body(0, 1000);
        body["params"]["padding"] = json!("x".repeat(1024 * 1024));
        serde_json::to_vec(&body).unwrap()
    };
    vec![
        post_raw(
            "malformed JSON",
            br#"{"kernel": "primes", "params": {"#.to_vec(),
            400,
        ),
        post_raw("not an object", b"[1, 2, 3]".to_vec(), 400),
        // An empty body goes without a Content-Length, which the size limit
        // needs: 411 Length Required.
        post_raw("empty body", Vec::new(), 411),
        post_raw("body over 1 MiB", oversized, 413),
        post_job(
            "unknown kernel",
            json!({"kernel": "fibonacci", "params": {}}),
            400,
        ),
        post_job(
            "missing kernel",
            json!({"params": {"start": 0, "end": 9}}),
            400,
        ),
        post_job(
            "unknown top-level field",
            with(primes_body(0, 1000), json!({"urgency": 9})),
            400,
        ),
        post_job(
            "unknown parameter",
            json!({"kernel": "primes", "params": {"start": 0, "end": 1000, "step": 2}}),
            400,
        ),
        post_job(
            "missing parameter",
            json!({"kernel": "primes", "params": {"start": 0}}),
            400,
        ),
        post_job("negative start", primes_body(-1, 1000), 400),
        post_job("end < start", primes_body(1000, 10), 400),
        post_job(
            "end beyond 2^53",
            json!({"kernel": "primes", "params": {"start": 0, "end": 1u64 << 60}}),
            400,
        ),
        post_job("zero-width image", mandelbrot(0, 100, 100), 400),
        post_job("zero-height image", mandelbrot(100, 0, 100), 400),
        post_job("max_iter 0", mandelbrot(100, 100, 0), 400),
        post_job(
            "montecarlo with no samples",
            json!({"kernel": "montecarlo-pi", "params": {"samples": 0, "seed": 1}}),
            400,
        ),
        post_job(
            "hashsearch difficulty 0",
            json!({"kernel": "hashsearch",
                   "params": {"prefix": "p", "difficulty": 0, "start": 0, "end": 100}}),
            400,
        ),
        post_job(
            "tasks 0",
            with(primes_body(0, 10_000_000), json!({"tasks": 0})),
            400,
        ),
        post_job(
            "tasks over 1,000,000",
            with(primes_body(0, 10_000_000), json!({"tasks": 1_000_001})),
            400,
        ),
        post_job(
            "more tasks than values",
            with(primes_body(0, 10), json!({"tasks": 11})),
            400,
        ),
        post_job(
            "fractional tasks",
            with(primes_body(0, 1000), json!({"tasks": 1.5})),
            400,
        ),
        post_job(
            "redundancy 0",
            with(primes_body(0, 1000), json!({"redundancy": 0})),
            400,
        ),
        post_job(
            "quorum > redundancy",
            with(primes_body(0, 1000), json!({"redundancy": 2, "quorum": 3})),
            400,
        ),
        post_job(
            "quorum 0",
            with(primes_body(0, 1000), json!({"redundancy": 2, "quorum": 0})),
            400,
        ),
        Case {
            token: Some("wrong-token"),
            ..post_job("valid job, wrong token", primes_body(0, 1000), 401)
        },
        Case {
            token: None,
            ..post_job("valid job, no token", primes_body(0, 1000), 401)
        },
    ]
}

fn job_lookups(done: u64, unfinished: u64) -> Vec<Case> {
    vec![
        Case {
            token: None,
            ..request("list without a token", "GET", "/api/jobs".into(), 401)
        },
        Case {
            token: Some("wrong-token"),
            ..request(
                "status, wrong token",
                "GET",
                format!("/api/jobs/{done}"),
                401,
            )
        },
        Case {
            token: Some("wrong-token"),
            ..request("workers, wrong token", "GET", "/api/workers".into(), 401)
        },
        request("unknown job", "GET", "/api/jobs/987654".into(), 404),
        request(
            "results of an unknown job",
            "GET",
            "/api/jobs/987654/results".into(),
            404,
        ),
        request(
            "cancel of an unknown job",
            "POST",
            "/api/jobs/987654/cancel".into(),
            404,
        ),
        request("non-numeric job id", "GET", "/api/jobs/abc".into(), 400),
        request("negative job id", "GET", "/api/jobs/-1".into(), 400),
        request(
            "non-numeric id to cancel",
            "POST",
            "/api/jobs/abc/cancel".into(),
            400,
        ),
        request(
            "results of an unfinished job",
            "GET",
            format!("/api/jobs/{unfinished}/results"),
            409,
        ),
        request(
            "cancel of a finished job",
            "POST",
            format!("/api/jobs/{done}/cancel"),
            409,
        ),
        request(
            "png of a primes job",
            "GET",
            format!("/api/jobs/{done}/results?format=png"),
            400,
        ),
        request(
            "unknown results format",
            "GET",
            format!("/api/jobs/{done}/results?format=xml"),
            400,
        ),
        request(
            "unknown query parameter",
            "GET",
            format!("/api/jobs/{done}/results?fromat=csv"),
            400,
        ),
    ]
}

async fn send(base: &str, case: &Case) -> Answer {
    http(base, case.method, &case.path, case.token, case.body.clone()).await
}

async fn job_count(base: &str) -> usize {
    let answer = http(base, "GET", "/api/jobs", Some(TOKEN), None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json::<Vec<JobStatus>>().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_json_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let client = grid.client();

    // One finished job, and one that cannot start because no worker is left.
    let worker = grid.worker(1, "a");
    let done = submit(&client, &job(primes(0, 100_000), 4)).await;
    let status = wait_for_job(&client, done, Duration::from_secs(30)).await;
    assert_primes(&status, 9592);
    worker.stop().await;
    let unfinished = submit(&client, &job(primes(0, 1_000_000), 8)).await;
    assert_eq!(job_count(&grid.url).await, 2);

    let mut failures = Vec::new();
    for case in job_requests()
        .into_iter()
        .chain(job_lookups(done, unfinished))
    {
        let answer = send(&grid.url, &case).await;
        if answer.status != case.status || answer.error_message().is_none() {
            failures.push(format!(
                "{}: expected {} with an error, got {} {}",
                case.name, case.status, answer.status, answer.text
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing was created, nothing was harmed.
    assert_eq!(job_count(&grid.url).await, 2);
    let status = client.status(done).await.unwrap();
    assert_eq!(status.state, JobState::Done);
    assert_primes(&status, 9592);

    let worker = grid.worker(1, "b");
    let status = wait_for_job(&client, unfinished, Duration::from_secs(30)).await;
    assert_primes(&status, 78_498);
    let next = submit(&client, &job(primes(0, 10_000_000), 10)).await;
    let status = wait_for_job(&client, next, Duration::from_secs(30)).await;
    assert_primes(&status, 664_579);
    assert_eq!(job_count(&grid.url).await, 3);

    worker.stop().await;
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let grid = TestGrid::start(dir.path()).await;
    let post = |body: Value| {
        let url = grid.url.clone();
        async move {
            http(
                &url,
                "POST",
                "/api/jobs",
                Some(TOKEN),
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await
        }
    };
    let cases = [
        (json!({"kernel": "fibonacci", "params": {}}), "fibonacci"),
        (primes_body(1000, 10), "start"),
        (mandelbrot(0, 10, 10), "width"),
        (mandelbrot(10, 10, 0), "max_iter"),
        (
            with(primes_body(0, 10_000_000), json!({"tasks": 0})),
            "tasks",
        ),
        (
            with(primes_body(0, 1000), json!({"redundancy": 2, "quorum": 3})),
            "quorum",
        ),
        (
            with(primes_body(0, 1000), json!({"colour": "red"})),
            "colour",
        ),
    ];
    for (body, word) in cases {
        let answer = post(body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        let error = answer.error();
        assert!(
            error.contains(word),
            "the error for {body} does not mention '{word}': {error}"
        );
    }
    grid.stop().await;
}
