//! Outputs that travel as blobs. A task whose output (its canonical
//! encoding) is over [`OUTPUT_BLOB_BYTES`] does not go in a results frame:
//! the worker stores it first, `PUT /api/blobs/sha256:<hex>` with its
//! batch's `Grid-Capability`, and the frame names the blob (an *uploaded*
//! entry). The coordinator reads the blob back, checks its length and
//! digest, takes it as the output from then on exactly as if the frame had
//! carried it, and deletes the blob, unless a job uses it or another upload
//! of the same bytes still waits to be named.
//!
//! What a capability may store ([`UploadLedger`]): while its batch is
//! leased, outputs of at most the job's largest outcome each, and at most
//! that times the batch's tasks in all, so a donor cannot fill the disk
//! with a capability it was given. Uploads a batch never named (its worker
//! left, the batch was revoked) are deleted once the batch is gone.

use std::collections::HashMap;

use grid_protocol::frame::DigestOnly;
use grid_protocol::worker::OUTPUT_BLOB_BYTES;

use super::*;
use grid_protocol::api::BlobInfo;

/// The uploads of one batch.
#[derive(Debug, Default)]
struct Uploads {
    bytes: u64,
    /// Blobs stored and not yet named by a results frame, and whether this
    /// upload created each (rather than finding it stored already).
    waiting: Vec<(ContentDigest, bool)>,
}

/// The uploads of live batches, without I/O: what each may still store and
/// which blobs wait to be named by a results frame.
#[derive(Debug, Default)]
pub(super) struct UploadLedger {
    batches: HashMap<u64, Uploads>,
}

impl UploadLedger {
    /// The most bytes the next upload under `batch` may have, when each of
    /// its `tasks` outputs may have at most `each`: None once the batch
    /// has stored as much as its outputs could ever need.
    pub fn room(&self, batch: u64, each: u64, tasks: u32) -> Option<u64> {
        let budget = each.saturating_mul(u64::from(tasks));
        let used = self.batches.get(&batch).map_or(0, |u| u.bytes);
        (used < budget).then(|| each.min(budget - used))
    }

    /// An upload under `batch` stored `digest` (`size` bytes).
    pub fn stored(&mut self, batch: u64, digest: ContentDigest, size: u64, created: bool) {
        let uploads = self.batches.entry(batch).or_default();
        uploads.bytes = uploads.bytes.saturating_add(size);
        uploads.waiting.push((digest, created));
    }

    /// A results frame of `batch` names `digest`: Some(whether its upload
    /// created it), or None if the batch stored no such blob.
    pub fn take(&mut self, batch: u64, digest: &ContentDigest) -> Option<bool> {
        let uploads = self.batches.get_mut(&batch)?;
        let at = uploads.waiting.iter().position(|(d, _)| d == digest)?;
        Some(uploads.waiting.swap_remove(at).1)
    }

    /// Whether an upload of `digest` waits to be named, by any batch.
    pub fn waits_for(&self, digest: &ContentDigest) -> bool {
        self.batches
            .values()
            .any(|u| u.waiting.iter().any(|(d, _)| d == digest))
    }

    /// Forgets the batches `live` says are gone; returns the blobs their
    /// uploads created that nothing waits for any more.
    pub fn forget_ended(&mut self, live: impl Fn(u64) -> bool) -> Vec<ContentDigest> {
        let mut orphans = Vec::new();
        self.batches.retain(|&batch, uploads| {
            if live(batch) {
                return true;
            }
            orphans.extend(
                uploads
                    .waiting
                    .iter()
                    .filter(|(_, created)| *created)
                    .map(|(d, _)| *d),
            );
            false
        });
        orphans.retain(|d| !self.waits_for(d));
        orphans.sort();
        orphans.dedup();
        orphans
    }
}

impl Grid {
    /// Stores an output uploaded under `capability`: 401 unless it is the
    /// genuine capability of a leased batch of a job whose outputs may go
    /// as blobs, 413 over the job's largest outcome or past the batch's
    /// budget, else as any upload.
    pub async fn put_output_blob<S, B, E>(
        &self,
        capability: &str,
        digest: ContentDigest,
        body: S,
    ) -> Result<(BlobInfo, bool), ApiError>
    where
        S: futures_util::Stream<Item = Result<B, E>>,
        B: bytes::Buf,
        E: std::fmt::Display,
    {
        let refused = || {
            ApiError::Forbidden(
                "this capability stores no outputs: its batch is not leased, or its job's outputs \
                 always fit in a results frame"
                    .into(),
            )
        };
        let batch = self.capability_batch(capability).ok_or_else(refused)?;
        self.release_orphans().await;
        let (job, tasks) = self.scheduler().batch_tasks(batch).ok_or_else(refused)?;
        let each = self
            .job(job)
            .and_then(|job| job.definition.largest_output_bytes())
            .filter(|&bytes| outputs_may_upload(Some(bytes)))
            .ok_or_else(refused)?;
        let limit = crate::sync::lock(&self.uploads, "uploaded outputs")
            .room(batch, each, tasks)
            .ok_or_else(|| {
                ApiError::TooLarge(format!(
                    "batch {batch} has stored all the output its {tasks} tasks may have"
                ))
            })?;
        let (info, created) = self.put_blob(digest, body, limit, None).await?;
        crate::sync::lock(&self.uploads, "uploaded outputs")
            .stored(batch, digest, info.size, created);
        self.counters
            .output_blob_bytes
            .fetch_add(info.size, Ordering::Relaxed);
        Ok((info, created))
    }

    /// The output an uploaded entry of `batch` names, read back from the
    /// store and checked against what the entry says; the blob is deleted
    /// once read (see the module's header). An error condemns the frame.
    pub(super) async fn take_uploaded_output(
        &self,
        batch: u64,
        job: &Job,
        task: u32,
        sent: DigestOnly,
    ) -> Result<Bytes, String> {
        let digest = ContentDigest(sent.digest);
        let wrong = |why: String| format!("task {task} of job {}: {why}", job.id);
        let created = crate::sync::lock(&self.uploads, "uploaded outputs")
            .take(batch, &digest)
            .ok_or_else(|| {
                wrong(format!(
                    "names blob {digest}, which its batch did not store"
                ))
            })?;
        let largest = job.definition.largest_output_bytes().unwrap_or(0);
        if u64::from(sent.len) > largest {
            return Err(wrong(format!(
                "an uploaded output of {} bytes, over the job's largest, {largest}",
                sent.len
            )));
        }
        let path = self.blobs.path(&digest);
        let read = tokio::task::spawn_blocking(move || {
            std::fs::read(&path).map(|bytes| {
                let found = ContentDigest::of(&bytes);
                (bytes, found)
            })
        })
        .await
        .map_err(|e| wrong(format!("reading blob {digest}: {e}")))?;
        let bytes = match read {
            Ok((bytes, found)) if found == digest && bytes.len() == sent.len as usize => bytes,
            Ok((bytes, found)) => {
                return Err(wrong(format!(
                    "blob {digest} holds {} bytes with digest {found}; the frame says {} bytes",
                    bytes.len(),
                    sent.len
                )));
            }
            Err(error) => return Err(wrong(format!("blob {digest}: {error}"))),
        };
        if created {
            self.release_output_blob(digest).await;
        }
        Ok(Bytes::from(bytes))
    }

    /// Deletes a blob an upload created once nothing needs it: no upload
    /// waits to be named by it, and no job uses it.
    async fn release_output_blob(&self, digest: ContentDigest) {
        if crate::sync::lock(&self.uploads, "uploaded outputs").waits_for(&digest) {
            return;
        }
        match self.store.delete_blob(digest, None).await {
            // Deleted, or kept for the jobs that use the same bytes.
            Ok(_) => {}
            // Left for the retention sweep.
            Err(error) => tracing::warn!(%digest, %error, "cannot delete a read output blob"),
        }
    }

    /// Deletes what batches that ended stored and never named.
    async fn release_orphans(&self) {
        let orphans = {
            let scheduler = self.scheduler();
            crate::sync::lock(&self.uploads, "uploaded outputs")
                .forget_ended(|batch| scheduler.batch_job(batch).is_some())
        };
        for digest in orphans {
            tracing::debug!(%digest, "deleting an output its batch never named");
            self.release_output_blob(digest).await;
        }
    }
}

/// Whether a job whose outcomes may have `largest` bytes needs its batches
/// to carry a capability for storing outputs.
pub(crate) fn outputs_may_upload(largest: Option<u64>) -> bool {
    largest.is_some_and(|bytes| bytes > OUTPUT_BLOB_BYTES as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: u8) -> ContentDigest {
        ContentDigest::of(&[n])
    }

    #[test]
    fn a_batch_stores_at_most_its_tasks_largest_outputs() {
        let mut ledger = UploadLedger::default();
        assert_eq!(ledger.room(1, 100, 3), Some(100));
        ledger.stored(1, blob(1), 100, true);
        ledger.stored(1, blob(2), 150, true);
        assert_eq!(ledger.room(1, 100, 3), Some(50), "the rest of the budget");
        ledger.stored(1, blob(3), 50, false);
        assert_eq!(ledger.room(1, 100, 3), None);
        assert_eq!(ledger.room(2, 100, 3), Some(100), "batches are apart");
    }

    #[test]
    fn a_frame_names_only_what_its_batch_stored_and_only_once() {
        let mut ledger = UploadLedger::default();
        ledger.stored(1, blob(1), 10, true);
        ledger.stored(2, blob(1), 10, false);
        assert_eq!(ledger.take(3, &blob(1)), None, "another batch's");
        assert_eq!(ledger.take(1, &blob(2)), None, "never stored");
        assert!(ledger.waits_for(&blob(1)));
        assert_eq!(ledger.take(1, &blob(1)), Some(true));
        assert_eq!(ledger.take(1, &blob(1)), None, "named once");
        assert!(ledger.waits_for(&blob(1)), "batch 2's upload still waits");
        assert_eq!(ledger.take(2, &blob(1)), Some(false));
        assert!(!ledger.waits_for(&blob(1)));
    }

    #[test]
    fn ended_batches_give_up_what_they_created_and_nobody_awaits() {
        let mut ledger = UploadLedger::default();
        ledger.stored(1, blob(1), 10, true);
        ledger.stored(1, blob(2), 10, false);
        ledger.stored(1, blob(3), 10, true);
        ledger.stored(2, blob(3), 10, false);
        let orphans = ledger.forget_ended(|batch| batch == 2);
        assert_eq!(
            orphans,
            vec![blob(1)],
            "blob 2 was not its to delete; 3 awaits batch 2"
        );
        assert_eq!(
            ledger.room(1, 10, 1),
            Some(10),
            "its budget is gone with it"
        );
        assert_eq!(ledger.take(2, &blob(3)), Some(false));
    }

    #[test]
    fn only_jobs_with_outcomes_over_the_threshold_upload() {
        assert!(!outputs_may_upload(None));
        assert!(!outputs_may_upload(Some(OUTPUT_BLOB_BYTES as u64)));
        assert!(outputs_may_upload(Some(OUTPUT_BLOB_BYTES as u64 + 1)));
    }
}
