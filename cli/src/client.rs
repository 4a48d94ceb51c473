//! A small HTTP client for the job API, used by the CLI and the tests. It
//! answers with the API's types (`grid_protocol::api`); errors carry a
//! one-line reason a person can act on, taken from the coordinator's
//! [`ErrorBody`] when it sent one.

use std::time::Duration;

use anyhow::{Context, anyhow};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use grid_kernels::{ContentDigest, JobResult};
use grid_protocol::api::{ErrorBody, ExportFormat, Health, JobRequest, JobStatus, WorkerInfo};

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
            return Ok((digest, false));
        }
        // Always with its length: hyper leaves Content-Length out of a PUT
        // whose body is empty, and the coordinator requires it (an empty
        // input file is a task's input like any other).
        let put = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_LENGTH, bytes.len())
            .body(bytes);
        self.send(put).await?;
        Ok((digest, true))
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

    pub async fn jobs(&self) -> anyhow::Result<Vec<JobStatus>> {
        self.json(self.http.get(format!("{}/api/jobs", self.base)))
            .await
    }

    pub async fn workers(&self) -> anyhow::Result<Vec<WorkerInfo>> {
        self.json(self.http.get(format!("{}/api/workers", self.base)))
            .await
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

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
