//! A small HTTP client for the job API, used by the CLI and the tests. It
//! answers with the API's types (`grid_protocol::api`); errors carry a
//! one-line reason a person can act on, taken from the coordinator's
//! [`ErrorBody`] when it sent one.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use indicatif::ProgressBar;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use grid_kernels::{ContentDigest, JobResult};
use grid_protocol::api::{
    AuditEntry, BlobListing, ErrorBody, ExportFormat, Health, JobQuery, JobRequest, JobStatus,
    NEXT_AFTER, NEXT_BEFORE, UserInfo, UserRequest, UserToken, WorkerInfo, WorkerQuery,
};

/// How much of a file is read at a time, to hash it and to send it.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Client> {
        Client::with_ca(base, token, None)
    }

    /// A client that also trusts the certificates in `ca_cert` (for a
    /// coordinator with a private or self-signed certificate).
    pub fn with_ca(
        base: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> anyhow::Result<Client> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(anyhow!(
                "the coordinator URL must start with http:// or https://, got '{base}'"
            ));
        }
        let tls = grid_worker_native::tls::client_config(ca_cert)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Client { http, base, token })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "cannot reach the coordinator at {}: {}",
                    self.base,
                    root_cause(&e)
                )
            } else {
                anyhow!("request to {} failed: {}", self.base, root_cause(&e))
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&body).map_or(body, |e| e.error);
        Err(match status {
            StatusCode::UNAUTHORIZED => anyhow!(
                "the coordinator refused the token (401); pass --token or set GRID_TOKEN (the token is in the server's DATA/token file)"
            ),
            _ => anyhow!("{message} (HTTP {})", status.as_u16()),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.send(request).await?;
        response
            .json()
            .await
            .context("the coordinator sent an unreadable answer")
    }

    /// `GET /api/health`: whether the coordinator answers, and what.
    pub async fn health(&self) -> anyhow::Result<Health> {
        self.json(self.http.get(format!("{}/api/health", self.base)))
            .await
    }

    /// Uploads `bytes` as a blob unless the coordinator has it already
    /// (`HEAD` first): its digest either way, and whether it was sent.
    pub async fn ensure_blob(&self, bytes: Vec<u8>) -> anyhow::Result<(ContentDigest, bool)> {
        let digest = ContentDigest::of(&bytes);
        let size = bytes.len() as u64;
        let sent = self
            .ensure(digest, size, || async { Ok(reqwest::Body::from(bytes)) })
            .await?;
        Ok((digest, sent))
    }

    /// [`Client::ensure_blob`] for a file, which is never read whole: it is
    /// hashed in chunks, and uploaded (if the coordinator lacks it) as it is
    /// read again. `progress`, if any, counts the bytes hashed, then the
    /// bytes sent.
    pub async fn ensure_file(
        &self,
        path: &Path,
        progress: Option<&ProgressBar>,
    ) -> anyhow::Result<(ContentDigest, bool)> {
        let (digest, size) = file_digest(path, progress).await?;
        let sent = self
            .ensure(digest, size, || async {
                let file = tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if let Some(bar) = progress {
                    bar.set_position(0);
                    bar.set_message("uploading");
                }
                Ok(reqwest::Body::wrap(FileBody {
                    file,
                    remaining: size,
                    buffer: vec![0; CHUNK.min(size as usize).max(1)],
                    progress: progress.cloned(),
                }))
            })
            .await?;
        Ok((digest, sent))
    }

    /// `HEAD /api/blobs/{digest}`, then, if the coordinator lacks it, `PUT`
    /// of the body `body` makes (`size` bytes). Whether it was sent.
    async fn ensure<F, B>(&self, digest: ContentDigest, size: u64, body: F) -> anyhow::Result<bool>
    where
        F: FnOnce() -> B,
        B: Future<Output = anyhow::Result<reqwest::Body>>,
    {
        let url = format!("{}/api/blobs/{digest}", self.base);
        let head = self.http.head(&url);
        let head = match &self.token {
            Some(token) => head.bearer_auth(token),
            None => head,
        };
        let present = head
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the coordinator at {}: {}",
                    self.base,
                    root_cause(&e)
                )
            })?
            .status()
            .is_success();
        if present {
            return Ok(false);
        }
        // Always with its length: hyper leaves Content-Length out of a PUT
        // whose body is empty, and the coordinator requires it (an empty
        // input file is a task's input like any other). A large upload gets
        // time by its size: two minutes and ten seconds a MiB.
        let time = Duration::from_secs(120 + 10 * size.div_ceil(1 << 20));
        let put = self
            .http
            .put(&url)
            .timeout(time)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body().await?);
        self.send(put).await?;
        Ok(true)
    }

    /// `GET /api/blobs`: every stored blob.
    pub async fn blobs(&self) -> anyhow::Result<Vec<BlobListing>> {
        self.json(self.http.get(format!("{}/api/blobs", self.base)))
            .await
    }

    /// `DELETE /api/blobs/{digest}`: refused while a job uses it.
    pub async fn delete_blob(&self, digest: ContentDigest) -> anyhow::Result<()> {
        self.send(
            self.http
                .delete(format!("{}/api/blobs/{digest}", self.base)),
        )
        .await?;
        Ok(())
    }

    /// `POST /api/users`: a new user and its token.
    pub async fn add_user(&self, request: &UserRequest) -> anyhow::Result<UserToken> {
        self.json(
            self.http
                .post(format!("{}/api/users", self.base))
                .json(request),
        )
        .await
    }

    /// `GET /api/users`.
    pub async fn users(&self) -> anyhow::Result<Vec<UserInfo>> {
        self.json(self.http.get(format!("{}/api/users", self.base)))
            .await
    }

    /// `DELETE /api/users/{name}`.
    pub async fn remove_user(&self, name: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(format!("{}/api/users/{name}", self.base)))
            .await?;
        Ok(())
    }

    /// `POST /api/users/{name}/token`: a new token for the user.
    pub async fn rotate_token(&self, name: &str) -> anyhow::Result<UserToken> {
        self.json(
            self.http
                .post(format!("{}/api/users/{name}/token", self.base)),
        )
        .await
    }

    /// `GET /api/audit?since=MS`: the audit trail from `since` on.
    pub async fn audit(&self, since: u64) -> anyhow::Result<Vec<AuditEntry>> {
        self.json(
            self.http
                .get(format!("{}/api/audit?since={since}", self.base)),
        )
        .await
    }

    /// `DELETE /api/jobs/{job}`: a finished job, its results and its hold
    /// on its blobs.
    pub async fn remove_job(&self, job: u64) -> anyhow::Result<()> {
        self.send(self.http.delete(format!("{}/api/jobs/{job}", self.base)))
            .await?;
        Ok(())
    }

    /// What task `task` of wasm job `job` wrote to stdout.
    pub async fn task_output(&self, job: u64, task: u32) -> anyhow::Result<Vec<u8>> {
        let response = self
            .send(
                self.http
                    .get(format!("{}/api/jobs/{job}/outputs/{task}", self.base)),
            )
            .await?;
        Ok(response
            .bytes()
            .await
            .context("the output download broke off")?
            .to_vec())
    }

    pub async fn submit(&self, request: &JobRequest) -> anyhow::Result<JobStatus> {
        self.submit_raw(request.encode()).await
    }

    /// Submits a raw JSON body, for tests that send what [`JobRequest`] would not.
    pub async fn submit_raw(&self, body: Vec<u8>) -> anyhow::Result<JobStatus> {
        self.json(
            self.http
                .post(format!("{}/api/jobs", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await
    }

    pub async fn status(&self, job: u64) -> anyhow::Result<JobStatus> {
        self.json(self.http.get(format!("{}/api/jobs/{job}", self.base)))
            .await
    }

    /// A JSON array and the id a header names for its next page, if any.
    async fn page<T: DeserializeOwned>(
        &self,
        url: String,
        next: &str,
    ) -> anyhow::Result<(Vec<T>, Option<u64>)> {
        let response = self.send(self.http.get(url)).await?;
        let next = response
            .headers()
            .get(next)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let items = response
            .json()
            .await
            .context("the coordinator sent an unreadable answer")?;
        Ok((items, next))
    }

    /// `GET /api/jobs?...`: a page of jobs, newest first, and the `before`
    /// of the next page if more remain.
    pub async fn jobs_page(
        &self,
        query: &JobQuery,
    ) -> anyhow::Result<(Vec<JobStatus>, Option<u64>)> {
        self.page(
            format!("{}/api/jobs?{}", self.base, query.to_query()),
            NEXT_BEFORE,
        )
        .await
    }

    /// Every job the token may see, newest first, page by page.
    pub async fn jobs(&self) -> anyhow::Result<Vec<JobStatus>> {
        let mut query = JobQuery {
            limit: JobQuery::MAX_LIMIT,
            ..JobQuery::default()
        };
        let mut all = Vec::new();
        loop {
            let (jobs, next) = self.jobs_page(&query).await?;
            all.extend(jobs);
            match next {
                Some(before) => query.before = Some(before),
                None => return Ok(all),
            }
        }
    }

    /// `GET /api/workers?...`: a page of worker connections by id, and the
    /// `after` of the next page if more remain.
    pub async fn workers_page(
        &self,
        query: &WorkerQuery,
    ) -> anyhow::Result<(Vec<WorkerInfo>, Option<u64>)> {
        self.page(
            format!("{}/api/workers?{}", self.base, query.to_query()),
            NEXT_AFTER,
        )
        .await
    }

    /// Every connected worker, by id, page by page.
    pub async fn workers(&self) -> anyhow::Result<Vec<WorkerInfo>> {
        let mut query = WorkerQuery {
            limit: WorkerQuery::MAX_LIMIT,
            after: None,
        };
        let mut all = Vec::new();
        loop {
            let (workers, next) = self.workers_page(&query).await?;
            all.extend(workers);
            match next {
                Some(after) => query.after = Some(after),
                None => return Ok(all),
            }
        }
    }

    pub async fn cancel(&self, job: u64) -> anyhow::Result<JobStatus> {
        self.job_action(job, "cancel").await
    }

    pub async fn pause(&self, job: u64) -> anyhow::Result<JobStatus> {
        self.job_action(job, "pause").await
    }

    pub async fn resume(&self, job: u64) -> anyhow::Result<JobStatus> {
        self.job_action(job, "resume").await
    }

    /// `POST /api/jobs/{job}/{action}`: the job's status after it.
    async fn job_action(&self, job: u64, action: &str) -> anyhow::Result<JobStatus> {
        self.json(
            self.http
                .post(format!("{}/api/jobs/{job}/{action}", self.base)),
        )
        .await
    }

    /// A done job's result exported as `format`, byte for byte.
    pub async fn results(&self, job: u64, format: ExportFormat) -> anyhow::Result<Vec<u8>> {
        let response = self
            .send(self.http.get(format!(
                "{}/api/jobs/{job}/results?format={format}",
                self.base
            )))
            .await?;
        Ok(response
            .bytes()
            .await
            .context("the results download broke off")?
            .to_vec())
    }

    /// A done job's whole result: the JSON export, read back.
    pub async fn result(&self, job: u64) -> anyhow::Result<JobResult> {
        let bytes = self.results(job, ExportFormat::Json).await?;
        serde_json::from_slice(&bytes).context("the coordinator sent an unreadable result")
    }
}

/// A file's digest and size, read in chunks on a blocking thread.
async fn file_digest(
    path: &Path,
    progress: Option<&ProgressBar>,
) -> anyhow::Result<(ContentDigest, u64)> {
    let owned = path.to_path_buf();
    let bar = progress.cloned();
    tokio::task::spawn_blocking(move || -> std::io::Result<(ContentDigest, u64)> {
        use std::io::Read;
        let mut file = std::fs::File::open(&owned)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; CHUNK];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
            if let Some(bar) = &bar {
                bar.set_position(size);
            }
        }
        Ok((ContentDigest(hasher.finalize().into()), size))
    })
    .await
    .context("the hashing thread failed")?
    .with_context(|| format!("cannot read {}", path.display()))
}

/// A file as a request body, read a chunk at a time as it is sent. Ends
/// with an error if the file is shorter than it was when it was hashed (the
/// coordinator then refuses the partial body); a file that changed without
/// shrinking is refused by the coordinator as a mismatch.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buffer: Vec<u8>,
    progress: Option<ProgressBar>,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.buffer.len().min(this.remaining as usize);
        let mut read = ReadBuf::new(&mut this.buffer[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(Ok(())) => {
                let chunk = read.filled();
                if chunk.is_empty() {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was uploaded",
                    ))));
                }
                this.remaining -= chunk.len() as u64;
                if let Some(bar) = &this.progress {
                    bar.inc(chunk.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(chunk)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
