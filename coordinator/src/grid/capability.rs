//! Blob capabilities: what lets a worker read its job's files without the
//! API token. Every batch of a job with files or blob inputs carries one,
//! `<batch>.<32 hex digits>`: the batch id and a keyed hash of it under a
//! secret drawn at start. A capability opens exactly the blobs of the
//! batch's job ([`JobDefinition::worker_blobs`]), and only while the batch
//! is leased: once it finishes, is revoked, expires or its worker leaves,
//! the same string opens nothing. A restart draws a new secret, and the
//! batches of the previous run are gone anyway.
//!
//! The hash is SHA-256 over the 32-byte secret and the 8-byte batch id: a
//! fixed-length message under a secret prefix, which length extension
//! cannot forge (it only yields longer messages, which are never checked).

use subtle::ConstantTimeEq;

use super::*;

/// Hex digits of the keyed hash in a capability: 128 bits.
const MAC_HEX: usize = 32;

impl Grid {
    /// The capability that goes with `batch`.
    pub fn capability_for(&self, batch: u64) -> String {
        format!("{batch}.{}", self.capability_mac(batch))
    }

    fn capability_mac(&self, batch: u64) -> String {
        let mut hash = Sha256::new();
        hash.update(self.capability_secret);
        hash.update(batch.to_le_bytes());
        let mut mac = hex::encode(hash.finalize());
        mac.truncate(MAC_HEX);
        mac
    }

    /// The batch of a genuine capability (leased or not).
    pub(super) fn capability_batch(&self, capability: &str) -> Option<u64> {
        let (batch, mac) = capability.trim().split_once('.')?;
        let batch = batch.parse::<u64>().ok()?;
        let genuine: bool = mac
            .as_bytes()
            .ct_eq(self.capability_mac(batch).as_bytes())
            .into();
        genuine.then_some(batch)
    }

    /// Whether `capability` opens blob `digest` now: it is genuine, its
    /// batch is still leased, and the blob is one its job's tasks read.
    pub fn capability_allows(&self, capability: &str, digest: &ContentDigest) -> bool {
        let Some(batch) = self.capability_batch(capability) else {
            return false;
        };
        let Some(job) = self.scheduler().batch_job(batch) else {
            return false;
        };
        self.jobs
            .get(&job)
            .is_some_and(|job| job.definition.worker_blobs().contains(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::testing::open_grid;

    #[tokio::test]
    async fn a_forged_or_malformed_capability_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let digest = ContentDigest::of(b"x");
        let real = grid.capability_for(7);
        let (batch, mac) = real.split_once('.').unwrap();
        assert_eq!(batch, "7");
        assert_eq!(mac.len(), MAC_HEX);
        assert_eq!(grid.capability_for(7), real, "one capability per batch");
        assert_ne!(grid.capability_for(8), real);
        let flipped = format!(
            "7.{}{}",
            if mac.starts_with('0') { "1" } else { "0" },
            &mac[1..]
        );
        for bad in ["", "7", "7.", "x.abc", &flipped, &format!("8.{mac}")] {
            assert!(!grid.capability_allows(bad, &digest), "{bad:?}");
        }
        // Genuine, but batch 7 is not leased: nothing.
        assert!(!grid.capability_allows(&real, &digest));
    }
}
