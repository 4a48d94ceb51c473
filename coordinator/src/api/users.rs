//! The user routes, admins only (a user may rotate its own token):
//! `POST /api/users` (201, the new user and its token, shown this once),
//! `GET /api/users`, `DELETE /api/users/{name}` (204; its token stops
//! working at once) and `POST /api/users/{name}/token` (a new token, the
//! old one refused from then on).

use super::*;
use grid_protocol::api::UserRequest;

fn user_name() -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    warp::path::param::<String>()
}

pub(super) fn user_add(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limit = shared.grid.config().max_body_bytes;
    warp::path!("api" / "users")
        .and(warp::post())
        .and(authorized(&shared))
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .and(with_shared(shared))
        .and_then(
            |caller: Caller, body: bytes::Bytes, shared: Shared| async move {
                let request: UserRequest = serde_json::from_slice(&body).map_err(|e| {
                    reject(ApiError::BadRequest(format!("invalid user request: {e}")))
                })?;
                let made = shared
                    .grid
                    .add_user(&caller, request)
                    .await
                    .map_err(reject)?;
                Ok::<_, Rejection>(json(&made, StatusCode::CREATED))
            },
        )
}

pub(super) fn user_list(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "users")
        .and(warp::get())
        .and(authorized(&shared))
        .and(with_shared(shared))
        .and_then(|caller: Caller, shared: Shared| async move {
            let users = shared.grid.list_users(&caller).map_err(reject)?;
            Ok::<_, Rejection>(json(&users, StatusCode::OK))
        })
}

pub(super) fn user_remove(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::delete()
        .and(warp::path("api"))
        .and(warp::path("users"))
        .and(user_name())
        .and(warp::path::end())
        .and(authorized(&shared))
        .and(with_shared(shared))
        .and_then(|name: String, caller: Caller, shared: Shared| async move {
            shared
                .grid
                .remove_user(&caller, &name)
                .await
                .map_err(reject)?;
            Ok::<_, Rejection>(
                warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response(),
            )
        })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    since: u64,
    limit: Option<u32>,
}

/// `GET /api/audit?since=MS&limit=N`: the audit trail, oldest first
/// (admins only).
pub(super) fn audit(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "audit")
        .and(warp::get())
        .and(authorized(&shared))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(with_shared(shared))
        .and_then(|caller: Caller, query: String, shared: Shared| async move {
            let query: AuditQuery = serde_urlencoded::from_str(&query)
                .map_err(|e| reject(ApiError::BadRequest(format!("bad query: {e}"))))?;
            let entries = shared
                .grid
                .audit_trail(&caller, query.since, query.limit)
                .await
                .map_err(reject)?;
            Ok::<_, Rejection>(json(&entries, StatusCode::OK))
        })
}

pub(super) fn token_rotate(
    shared: Shared,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::post()
        .and(warp::path("api"))
        .and(warp::path("users"))
        .and(user_name())
        .and(warp::path("token"))
        .and(warp::path::end())
        .and(authorized(&shared))
        .and(with_shared(shared))
        .and_then(|name: String, caller: Caller, shared: Shared| async move {
            let rotated = shared
                .grid
                .rotate_token(&caller, &name)
                .await
                .map_err(reject)?;
            Ok::<_, Rejection>(json(&rotated, StatusCode::OK))
        })
}

#[cfg(test)]
mod tests {
    //! Users against every kind of route, in-process: each case asserts
    //! the status and that nothing changed for anyone else.

    use std::sync::Arc;

    use grid_protocol::api::{BlobListing, JobStatus, UserToken};
    use tokio::sync::{Semaphore, mpsc, watch};

    use super::*;
    use crate::grid::testing::open_grid_with;

    const ADMIN: &str = "admin-token";
    const PRIMES: &str = r#"{"kernel":"primes","params":{"start":0,"end":1000},"tasks":1}"#;

    struct Api {
        grid: Arc<Grid>,
        routes: BoxedFilter<(Response,)>,
        _dir: tempfile::TempDir,
        _shutdown: watch::Sender<bool>,
    }

    impl Api {
        async fn start() -> Api {
            let dir = tempfile::tempdir().unwrap();
            let grid = open_grid_with(dir.path(), |c| c.token = ADMIN.into()).await;
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

        async fn call(
            &self,
            method: &str,
            path: &str,
            token: &str,
            body: &[u8],
        ) -> warp::http::Response<bytes::Bytes> {
            warp::test::request()
                .method(method)
                .path(path)
                .header("authorization", format!("Bearer {token}"))
                .body(body)
                .reply(&self.routes)
                .await
        }

        async fn ok<T: serde::de::DeserializeOwned>(
            &self,
            method: &str,
            path: &str,
            token: &str,
            body: &[u8],
        ) -> T {
            let response = self.call(method, path, token, body).await;
            assert!(
                response.status().is_success(),
                "{method} {path}: {} {:?}",
                response.status(),
                response.body()
            );
            serde_json::from_slice(response.body()).unwrap()
        }

        async fn add(&self, body: &str) -> UserToken {
            self.ok("POST", "/api/users", ADMIN, body.as_bytes()).await
        }

        async fn jobs(&self, token: &str) -> Vec<(u64, String)> {
            let jobs: Vec<JobStatus> = self.ok("GET", "/api/jobs", token, b"").await;
            jobs.into_iter().map(|j| (j.id, j.owner)).collect()
        }
    }

    #[tokio::test]
    async fn each_user_sees_and_manages_its_own_and_admins_everything() {
        let api = Api::start().await;
        let alice = api
            .add(r#"{"name":"alice","limits":{"max_running":1}}"#)
            .await
            .token;
        let bob = api.add(r#"{"name":"bob"}"#).await.token;
        let carol = api.add(r#"{"name":"carol"}"#).await.token;
        let gone = api.call("DELETE", "/api/users/carol", ADMIN, b"").await;
        assert_eq!(gone.status(), StatusCode::NO_CONTENT);

        let mine: JobStatus = api.ok("POST", "/api/jobs", &alice, PRIMES.as_bytes()).await;
        let theirs: JobStatus = api.ok("POST", "/api/jobs", &bob, PRIMES.as_bytes()).await;
        assert_eq!(
            (mine.owner.as_str(), theirs.owner.as_str()),
            ("alice", "bob")
        );
        let a = mine.id;

        // Over alice's limit: a clear 429 naming it, and no job made.
        let over = api
            .call("POST", "/api/jobs", &alice, PRIMES.as_bytes())
            .await;
        assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(String::from_utf8_lossy(over.body()).contains("max_running 1"));

        // (method, path, token, status): bob and a removed user touching
        // alice's job, and a non-admin managing users.
        let job = format!("/api/jobs/{a}");
        let cases: Vec<(&str, String, &str, StatusCode)> = vec![
            ("GET", job.clone(), &bob, StatusCode::NOT_FOUND),
            ("POST", format!("{job}/cancel"), &bob, StatusCode::NOT_FOUND),
            ("POST", format!("{job}/pause"), &bob, StatusCode::NOT_FOUND),
            ("POST", format!("{job}/resume"), &bob, StatusCode::NOT_FOUND),
            ("GET", format!("{job}/results"), &bob, StatusCode::NOT_FOUND),
            ("GET", format!("{job}/fuel"), &bob, StatusCode::NOT_FOUND),
            (
                "GET",
                format!("{job}/outputs/0"),
                &bob,
                StatusCode::NOT_FOUND,
            ),
            ("DELETE", job.clone(), &bob, StatusCode::NOT_FOUND),
            ("GET", job.clone(), &carol, StatusCode::UNAUTHORIZED),
            (
                "POST",
                format!("{job}/cancel"),
                &carol,
                StatusCode::UNAUTHORIZED,
            ),
            ("GET", "/api/jobs".into(), &carol, StatusCode::UNAUTHORIZED),
            ("POST", "/api/jobs".into(), &carol, StatusCode::UNAUTHORIZED),
            ("GET", "/api/users".into(), &alice, StatusCode::FORBIDDEN),
            ("POST", "/api/users".into(), &alice, StatusCode::FORBIDDEN),
            (
                "DELETE",
                "/api/users/bob".into(),
                &alice,
                StatusCode::FORBIDDEN,
            ),
            (
                "POST",
                "/api/users/bob/token".into(),
                &alice,
                StatusCode::FORBIDDEN,
            ),
            (
                "POST",
                "/api/users".into(),
                &carol,
                StatusCode::UNAUTHORIZED,
            ),
            (
                "GET",
                "/api/workers".into(),
                &carol,
                StatusCode::UNAUTHORIZED,
            ),
        ];
        for (method, path, token, status) in cases {
            let body: &[u8] = if path == "/api/jobs" {
                PRIMES.as_bytes()
            } else if path == "/api/users" {
                br#"{"name":"mallory","admin":true}"#
            } else {
                b""
            };
            let response = api.call(method, &path, token, body).await;
            assert_eq!(response.status(), status, "{method} {path}");
        }
        // Nothing changed: alice's job is as it was, bob still works, no
        // mallory, and each sees its own jobs; the admin sees both, named.
        let after: JobStatus = api.ok("GET", &job, &alice, b"").await;
        assert_eq!((after.state, after.paused), (mine.state, mine.paused));
        assert_eq!(api.jobs(&alice).await, [(a, "alice".to_string())]);
        assert_eq!(api.jobs(&bob).await, [(theirs.id, "bob".to_string())]);
        assert_eq!(
            api.jobs(ADMIN).await,
            [(theirs.id, "bob".to_string()), (a, "alice".to_string())],
            "newest first"
        );
        assert!(api.grid.authenticate("mallory").is_none());
        let users: Vec<grid_protocol::api::UserInfo> =
            api.ok("GET", "/api/users", ADMIN, b"").await;
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["admin", "alice", "bob"]);

        // The admin manages alice's job; alice rotates her own token.
        let paused: JobStatus = api.ok("POST", &format!("{job}/pause"), ADMIN, b"").await;
        assert!(paused.paused);
        let rotated: UserToken = api.ok("POST", "/api/users/alice/token", &alice, b"").await;
        assert_eq!(
            api.call("GET", &job, &alice, b"").await.status(),
            StatusCode::UNAUTHORIZED,
            "the old token is refused at once"
        );
        let cancelled: JobStatus = api
            .ok("POST", &format!("{job}/cancel"), &rotated.token, b"")
            .await;
        assert_eq!(cancelled.state, grid_protocol::api::JobState::Cancelled);
    }

    #[tokio::test]
    async fn uploads_belong_to_who_uploaded_them() {
        let api = Api::start().await;
        let alice = api.add(r#"{"name":"alice"}"#).await.token;
        let bob = api
            .add(r#"{"name":"bob","limits":{"max_storage":100}}"#)
            .await
            .token;
        let bytes = b"alice's data".to_vec();
        let digest = grid_kernels::ContentDigest::of(&bytes);
        let path = format!("/api/blobs/{digest}");
        assert_eq!(
            api.call("PUT", &path, &alice, &bytes).await.status(),
            StatusCode::CREATED
        );
        // Bob cannot read, list or delete it: it is not there for him.
        assert_eq!(
            api.call("GET", &path, &bob, b"").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            api.call("DELETE", &path, &bob, b"").await.status(),
            StatusCode::NOT_FOUND
        );
        let listed: Vec<BlobListing> = api.ok("GET", "/api/blobs", &bob, b"").await;
        assert!(listed.is_empty());
        // Nor use it in a job: the same answer as for a module never stored.
        let request = format!(r#"{{"kernel":"wasm","module":"{digest}"}}"#);
        let refused = api
            .call("POST", "/api/jobs", &bob, request.as_bytes())
            .await;
        let missing = grid_kernels::ContentDigest::of(b"never stored");
        let never = format!(r#"{{"kernel":"wasm","module":"{missing}"}}"#);
        let absent = api.call("POST", "/api/jobs", &bob, never.as_bytes()).await;
        assert_eq!(refused.status(), absent.status());
        let text = |r: &warp::http::Response<bytes::Bytes>, d: &grid_kernels::ContentDigest| {
            String::from_utf8_lossy(r.body()).replace(&d.to_string(), "D")
        };
        assert_eq!(text(&refused, &digest), text(&absent, &missing));
        // Uploading the same bytes makes them his too.
        assert_eq!(
            api.call("PUT", &path, &bob, &bytes).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            api.call("GET", &path, &bob, b"").await.status(),
            StatusCode::OK
        );
        // Alice deleting it only gives it up: bob keeps it.
        assert_eq!(
            api.call("DELETE", &path, &alice, b"").await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            api.call("GET", &path, &alice, b"").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            api.call("GET", &path, &bob, b"").await.body().as_ref(),
            &bytes[..]
        );
        // Bob's storage limit: 100 bytes, 12 used.
        let big = vec![7u8; 100];
        let over = api
            .call(
                "PUT",
                &format!("/api/blobs/{}", grid_kernels::ContentDigest::of(&big)),
                &bob,
                &big,
            )
            .await;
        assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(String::from_utf8_lossy(over.body()).contains("max_storage 100"));
        assert!(
            !api.grid
                .blobs()
                .contains(&grid_kernels::ContentDigest::of(&big))
        );
        // The admin sees every upload.
        let all: Vec<BlobListing> = api.ok("GET", "/api/blobs", ADMIN, b"").await;
        assert_eq!(all.len(), 1);
    }
}
