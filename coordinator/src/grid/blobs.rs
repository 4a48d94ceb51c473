//! Users' uploads as the grid keeps them: stored once, counted by the jobs
//! that use them, and deleted only when none does.
//!
//! - An upload is acknowledged once its file is in place (fsynced, see
//!   [`crate::blobs`]) and its row committed; the row's `last_used_at` is
//!   the upload's time.
//! - A blob's references are the stored jobs that use it
//!   ([`JobDefinition::blobs`]), recorded with the job in one transaction.
//!   A job is stored only if its blobs still are, so a job never refers to
//!   a deleted blob; `DELETE /api/jobs/{id}` ([`Grid::remove_job`]) drops a
//!   finished job and releases its blobs.
//! - The retention sweep ([`Grid::spawn_blob_retention`]: at start, then
//!   every few minutes) deletes the blobs no job uses whose last use is
//!   older than `--blob-retention`. An upload followed by a submission is
//!   safe: the upload is a use, so the blob cannot be swept before the
//!   retention has passed, and should the job still lose the race the store
//!   refuses it with a sentence rather than store a dangling reference.
//! - Downloads count as uses without a write each: the blob store remembers
//!   them, and the sweep records them first.

use std::time::Duration;

use tokio::sync::watch;

use super::*;
use crate::store::BlobDeletion;
use crate::users::Caller;
use grid_protocol::api::{BlobInfo, BlobListing};

/// How often the retention sweep runs: a quarter of the retention, between
/// a second and five minutes.
fn sweep_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// A store error as an API caller sees it: a full disk is 507.
fn store_error(error: StoreError) -> ApiError {
    if error.is_disk_full() {
        ApiError::Unavailable(format!(
            "the disk is full: the coordinator cannot record the upload ({error})"
        ))
    } else {
        ApiError::from(error)
    }
}

/// "job 3" or "jobs 3, 5".
fn jobs_named(jobs: &[u64]) -> String {
    let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
    match ids.len() {
        1 => format!("job {}", ids[0]),
        _ => format!("jobs {}", ids.join(", ")),
    }
}

impl Grid {
    /// Stores the bytes `body` streams as blob `digest` (once: a blob
    /// already stored is recorded as used and its body not read), and its
    /// row. The blob and whether it is new.
    pub async fn put_blob<S, B, E>(
        &self,
        digest: ContentDigest,
        body: S,
        limit: u64,
        owner: Option<&Caller>,
    ) -> Result<(BlobInfo, bool), ApiError>
    where
        S: futures_util::Stream<Item = Result<B, E>>,
        B: bytes::Buf,
        E: std::fmt::Display,
    {
        let owner_id = owner.map(|c| c.user);
        // Recorded first: a blob in use now cannot be swept from under us.
        if let Some(size) = self.blobs.len(&digest) {
            if let Some(caller) = owner {
                self.check_storage(caller, &digest, size)?;
            }
            if self
                .store
                .record_upload(digest, size, unix_ms(), owner_id)
                .await
                .map_err(store_error)?
            {
                return Ok((BlobInfo { digest, size }, false));
            }
        }
        let room = match owner {
            Some(caller) => self.storage_room(caller)?,
            None => None,
        };
        let created = match self
            .blobs
            .put(digest, body, limit.min(room.unwrap_or(u64::MAX)))
            .await
        {
            Err(BlobError::TooLarge { .. }) if room.is_some_and(|room| room < limit) => {
                let caller = owner.expect("a room is an owner's");
                return Err(self.over_storage(caller));
            }
            stored => stored?,
        };
        let gone = || {
            ApiError::Conflict(format!(
                "blob {digest} was deleted while it was uploaded; upload it again"
            ))
        };
        let size = self.blobs.len(&digest).ok_or_else(gone)?;
        match self
            .store
            .record_upload(digest, size, unix_ms(), owner_id)
            .await
        {
            Ok(true) => {
                if created {
                    tracing::info!(%digest, size, "blob stored");
                }
                Ok((BlobInfo { digest, size }, created))
            }
            Ok(false) => Err(gone()),
            Err(error) => {
                // Not acknowledged, so not kept: a file without its row.
                if created {
                    self.blobs.remove(&digest);
                }
                Err(store_error(error))
            }
        }
    }

    /// The bytes `caller` may still store under its `max_storage`, if it
    /// has one.
    fn storage_room(&self, caller: &Caller) -> Result<Option<u64>, ApiError> {
        let Some(max) = self.limits_of(caller.user).max_storage else {
            return Ok(None);
        };
        let used = self.store.stored_bytes(caller.user)?;
        if used >= max {
            return Err(self.over_storage(caller));
        }
        Ok(Some(max - used))
    }

    /// 429 if `caller` taking on blob `digest` (`size` bytes, stored
    /// already) would pass its `max_storage`.
    fn check_storage(
        &self,
        caller: &Caller,
        digest: &ContentDigest,
        size: u64,
    ) -> Result<(), ApiError> {
        let Some(max) = self.limits_of(caller.user).max_storage else {
            return Ok(());
        };
        if self
            .store
            .blobs(Some(caller.user))?
            .iter()
            .any(|b| b.digest == *digest)
        {
            return Ok(());
        }
        if self.store.stored_bytes(caller.user)? + size > max {
            return Err(self.over_storage(caller));
        }
        Ok(())
    }

    fn over_storage(&self, caller: &Caller) -> ApiError {
        let max = self.limits_of(caller.user).max_storage.unwrap_or(0);
        let used = self.store.stored_bytes(caller.user).unwrap_or(0);
        ApiError::LimitReached(format!(
            "user {} stores {used} bytes of uploads; this one would pass its limit \
             (max_storage {max}); delete some (grid blob rm, grid rm JOB)",
            caller.name
        ))
    }

    /// Whether `caller` may read or use blob `digest`: an admin any; a
    /// user what it uploaded and what its jobs use.
    pub fn blob_readable(&self, caller: &Caller, digest: &ContentDigest) -> bool {
        caller.admin
            || self
                .store
                .blob_readable(digest, caller.user)
                .unwrap_or_else(|error| {
                    tracing::warn!(%digest, %error, "cannot look up a blob's owners");
                    false
                })
    }

    /// The size of an upload about to be served (or described by HEAD),
    /// which counts as a use of it; None if it is not stored.
    pub fn blob_to_serve(&self, digest: &ContentDigest) -> Option<u64> {
        let size = self.blobs.len(digest)?;
        self.blobs.touch(digest);
        Some(size)
    }

    /// Every stored upload with its references and last use.
    pub async fn list_blobs(&self, caller: &Caller) -> Result<Vec<BlobListing>, ApiError> {
        let store = self.store.clone();
        let owner = (!caller.admin).then_some(caller.user);
        let rows = tokio::task::spawn_blocking(move || store.blobs(owner))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok(rows
            .into_iter()
            .map(|row| BlobListing {
                digest: row.digest,
                size: row.size,
                references: row.references,
                created_at: row.created_at,
                last_used_at: row.last_used_at,
            })
            .collect())
    }

    /// Deletes an upload no stored job uses: 409 naming the jobs that use
    /// it, 404 if there is no such blob. A user deletes only its own
    /// uploads; one that others uploaded too stays for them.
    pub async fn delete_blob(
        &self,
        caller: &Caller,
        digest: ContentDigest,
    ) -> Result<(), ApiError> {
        let as_user = (!caller.admin).then_some(caller.user);
        match self.store.delete_blob(digest, as_user).await? {
            BlobDeletion::Deleted { size } => {
                tracing::info!(%digest, size, by = %caller.name, "blob deleted by request");
                Ok(())
            }
            BlobDeletion::Disowned { size } => {
                tracing::info!(%digest, size, by = %caller.name, "blob kept for its other owners");
                Ok(())
            }
            BlobDeletion::Referenced(jobs) => Err(ApiError::Conflict(format!(
                "blob {digest} is used by {}; remove {} first (grid rm JOB)",
                jobs_named(&jobs),
                if jobs.len() == 1 { "it" } else { "them" }
            ))),
            BlobDeletion::Absent => Err(ApiError::NotFound(format!("no blob {digest}"))),
        }
    }

    /// Deletes a finished job, its results and its references to blobs
    /// (which count as used now, so they outlive it by the retention). A job
    /// still queued or running (paused or not) is 409; an unknown one 404.
    pub async fn remove_job(&self, caller: &Caller, id: u64) -> Result<(), ApiError> {
        let job = self.job_for(caller, id)?;
        let state = job.state();
        if !state.is_finished() {
            return Err(ApiError::Conflict(format!(
                "job {id} is {state}: cancel it first (grid cancel {id}), then remove it"
            )));
        }
        let deleted = self.store.delete_job(id, unix_ms()).await?;
        self.jobs.remove(&id);
        if !deleted {
            // Another removal got there first.
            return Err(ApiError::NotFound(format!("no job {id}")));
        }
        tracing::info!(job = id, by = %caller.name, "job removed");
        self.audit(
            &caller.name,
            grid_protocol::api::AuditAction::JobRemoved,
            format!("job {id}"),
            String::new(),
        );
        Ok(())
    }

    /// One retention sweep: records the downloads since the last, then
    /// deletes the uploads no job uses that were last used longer ago than
    /// the retention. The blobs deleted, with their sizes.
    pub async fn sweep_blobs(&self) -> Result<Vec<(ContentDigest, u64)>, StoreError> {
        let touches = self.blobs.take_touches();
        let retention = u64::try_from(self.config.blob_retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = unix_ms().saturating_sub(retention);
        match self.store.sweep_blobs(touches.clone(), cutoff).await {
            Ok(swept) => {
                if !swept.is_empty() {
                    let bytes: u64 = swept.iter().map(|(_, size)| size).sum();
                    tracing::info!(blobs = swept.len(), bytes, "unused blobs swept");
                }
                Ok(swept)
            }
            Err(error) => {
                // The downloads wait for the next sweep.
                for (digest, at) in touches {
                    self.blobs.touch_at(&digest, at);
                }
                Err(error)
            }
        }
    }

    /// Sweeps unused blobs now and then every few minutes (see
    /// [`sweep_interval`]) until `stopping` turns true.
    pub fn spawn_blob_retention(
        self: &Arc<Self>,
        mut stopping: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let grid = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(sweep_interval(grid.config.blob_retention));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        if let Err(error) = grid.sweep_blobs().await {
                            tracing::error!(%error, "the blob retention sweep failed");
                        }
                    }
                    _ = stopping.changed() => break,
                }
            }
        })
    }

    /// Appends the blob families to `GET /metrics`.
    pub fn render_blob_metrics(&self, out: &mut String) {
        use crate::metrics::family;
        use std::sync::atomic::Ordering;
        let served = self.blobs.counters().bytes_served.load(Ordering::Relaxed);
        family(
            out,
            "grid_blob_bytes_served_total",
            "counter",
            "Bytes of uploaded blobs served (GET /api/blobs/{digest}, 200 and 206), by the Content-Length of each response.",
            &[("", served as f64)],
        );
        match self.store.blob_totals() {
            Ok((count, bytes)) => {
                family(
                    out,
                    "grid_blobs_stored",
                    "gauge",
                    "Uploaded blobs stored.",
                    &[("", count as f64)],
                );
                family(
                    out,
                    "grid_blob_bytes_stored",
                    "gauge",
                    "Bytes of the uploaded blobs stored.",
                    &[("", bytes as f64)],
                );
            }
            Err(error) => tracing::warn!(%error, "cannot count the stored blobs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_runs_a_few_times_a_retention_within_bounds() {
        assert_eq!(
            sweep_interval(Duration::from_secs(7 * 24 * 3600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn jobs_are_named_in_a_sentence() {
        assert_eq!(jobs_named(&[3]), "job 3");
        assert_eq!(jobs_named(&[3, 5]), "jobs 3, 5");
    }
}
