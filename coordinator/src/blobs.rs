//! Content-addressed files under the data directory: what users upload
//! (modules, input files, mounted files; `DATA/blobs/`) and what the
//! coordinator makes of them (prepared modules; `DATA/modules/`), each named
//! `sha256:<hex>` after its bytes.
//!
//! A blob is written once: to a temporary name in `tmp/`, hashed while it
//! streams in, fsynced, checked against the address it was uploaded to, and
//! only then renamed into place (and the directory fsynced), so a name in the
//! store always holds exactly the bytes it names. A mismatch, a body over the
//! limit, a dropped upload (even one whose handler is dropped mid-write) or
//! a full disk leave nothing behind: the temporary file is removed at once,
//! and whatever a crash leaves in `tmp/` the next start removes. Reading is
//! plain files (`warp::fs` streams them, with ranges); nothing here holds a
//! blob in memory but [`BlobStore::read`], for the small ones the
//! coordinator parses itself.
//!
//! The uploads' metadata (size, references, last use) is in SQLite, and
//! deleting an upload is the store's: it removes the row, commits, and only
//! then the file (see `store::blobs`). What this module remembers of uses
//! is in memory, for the store to record in batches: the blobs read or
//! served since the last sweep ([`BlobStore::take_touches`]).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use grid_kernels::ContentDigest;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::clock::unix_ms;
use crate::metrics::BlobCounters;

/// The directory of users' uploads under the data directory.
pub const UPLOADS: &str = "blobs";

/// One kind of blob, in its own directory (`DATA/<name>/`). Clones share
/// the uses remembered and the counters.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
    /// Blobs read or served since the last [`BlobStore::take_touches`], and
    /// when (Unix ms): a download costs no write.
    touched: Arc<Mutex<HashMap<ContentDigest, u64>>>,
    counters: Arc<BlobCounters>,
}

/// Where blob `digest` of the directory `dir` lives.
pub fn blob_path(dir: &Path, digest: &ContentDigest) -> PathBuf {
    dir.join(digest.to_string())
}

/// Every blob file in `dir` (named by a digest; `tmp/` and anything else
/// skipped), with its size and modification time in Unix ms.
pub fn scan(dir: &Path) -> io::Result<Vec<(ContentDigest, u64, u64)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(digest) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<ContentDigest>().ok())
        else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        found.push((digest, meta.len(), modified));
    }
    Ok(found)
}

/// A temporary file, removed when dropped unless it was placed: an upload
/// whose handler is dropped halfway (its client went) leaves nothing.
struct Temporary {
    path: PathBuf,
    placed: bool,
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Why an upload was not stored. Nothing of it is left in the store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the body's sha256 is {got}, not the {expected} it was uploaded as")]
    Mismatch {
        expected: ContentDigest,
        got: ContentDigest,
    },
    #[error("a blob may be at most {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload broke off after {received} bytes: {reason}")]
    Incomplete { received: u64, reason: String },
    #[error("the disk is full: the coordinator cannot store the upload ({0})")]
    DiskFull(String),
    #[error("cannot store the upload: {0}")]
    Io(String),
}

impl BlobError {
    fn from_io(error: io::Error) -> BlobError {
        if error.kind() == io::ErrorKind::StorageFull || error.raw_os_error() == Some(28) {
            BlobError::DiskFull(error.to_string())
        } else {
            BlobError::Io(error.to_string())
        }
    }
}

impl BlobStore {
    /// Opens (creating) `DATA/<name>/`, and removes what interrupted uploads
    /// left in its `tmp/`.
    pub fn open(data_dir: &Path, name: &str) -> io::Result<BlobStore> {
        let dir = data_dir.join(name);
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(BlobStore {
            dir,
            tmp,
            touched: Arc::default(),
            counters: Arc::default(),
        })
    }

    /// The directory whose files are the blobs, named `sha256:<hex>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, digest: &ContentDigest) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    /// What the blob routes count.
    pub fn counters(&self) -> &BlobCounters {
        &self.counters
    }

    /// Remembers that `digest` was used now (read, served, asked about).
    pub fn touch(&self, digest: &ContentDigest) {
        self.touch_at(digest, unix_ms());
    }

    /// Remembers a use of `digest` at `at` (Unix ms), unless a later one is.
    pub fn touch_at(&self, digest: &ContentDigest, at: u64) {
        let mut touched = crate::sync::lock(&self.touched, "blob uses");
        let last = touched.entry(*digest).or_insert(at);
        *last = (*last).max(at);
    }

    /// The uses remembered since the last call: (blob, Unix ms).
    pub fn take_touches(&self) -> Vec<(ContentDigest, u64)> {
        std::mem::take(&mut *crate::sync::lock(&self.touched, "blob uses"))
            .into_iter()
            .collect()
    }

    /// The blob's size, if it is stored.
    pub fn len(&self, digest: &ContentDigest) -> Option<u64> {
        std::fs::metadata(self.path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    pub fn contains(&self, digest: &ContentDigest) -> bool {
        self.len(digest).is_some()
    }

    /// A whole blob, for the small ones read by the coordinator itself.
    pub async fn read(&self, digest: &ContentDigest) -> io::Result<Option<Vec<u8>>> {
        self.touch(digest);
        match tokio::fs::read(self.path(digest)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Stores bytes the coordinator made (a prepared module); idempotent.
    pub async fn put_bytes(&self, bytes: &[u8]) -> Result<ContentDigest, BlobError> {
        let digest = ContentDigest::of(bytes);
        let body =
            futures_util::stream::iter([Ok::<_, io::Error>(bytes::Bytes::copy_from_slice(bytes))]);
        self.put(digest, body, bytes.len() as u64).await?;
        Ok(digest)
    }

    /// Stores the bytes `body` streams as blob `digest`, at most `limit` of
    /// them. Idempotent: a blob already stored is not written again (and its
    /// body not read). True if the blob is new.
    pub async fn put<S, B, E>(
        &self,
        digest: ContentDigest,
        body: S,
        limit: u64,
    ) -> Result<bool, BlobError>
    where
        S: Stream<Item = Result<B, E>>,
        B: Buf,
        E: std::fmt::Display,
    {
        if self.contains(&digest) {
            return Ok(false);
        }
        let mut temporary = Temporary {
            path: self
                .tmp
                .join(format!("{}.{:016x}", digest.hex(), rand::random::<u64>())),
            placed: false,
        };
        self.write(&temporary.path, digest, body, limit).await?;
        tokio::fs::rename(&temporary.path, self.path(&digest))
            .await
            .map_err(BlobError::from_io)?;
        temporary.placed = true;
        // The rename is durable once the directory is.
        let synced = std::fs::File::open(&self.dir).and_then(|dir| dir.sync_all());
        if let Err(error) = synced {
            self.remove(&digest);
            return Err(BlobError::from_io(error));
        }
        Ok(true)
    }

    /// Removes a blob's file (whose row, if any, is gone already).
    pub fn remove(&self, digest: &ContentDigest) {
        if let Err(error) = std::fs::remove_file(self.path(digest))
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(%digest, %error, "cannot remove a blob's file");
        }
    }

    async fn write<S, B, E>(
        &self,
        temporary: &Path,
        digest: ContentDigest,
        body: S,
        limit: u64,
    ) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<B, E>>,
        B: Buf,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::File::create(temporary)
            .await
            .map_err(BlobError::from_io)?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| BlobError::Incomplete {
                received,
                reason: e.to_string(),
            })?;
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                received += piece.len() as u64;
                if received > limit {
                    return Err(BlobError::TooLarge { limit });
                }
                hasher.update(piece);
                file.write_all(piece).await.map_err(BlobError::from_io)?;
                let n = piece.len();
                chunk.advance(n);
            }
        }
        let got = ContentDigest(hasher.finalize().into());
        if got != digest {
            return Err(BlobError::Mismatch {
                expected: digest,
                got,
            });
        }
        file.sync_all().await.map_err(BlobError::from_io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<bytes::Bytes, String>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(bytes::Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn leftovers(store: &BlobStore) -> usize {
        std::fs::read_dir(store.dir().join("tmp")).unwrap().count()
    }

    #[tokio::test]
    async fn a_blob_is_stored_under_its_digest_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), "blobs").unwrap();
        let digest = ContentDigest::of(b"hello world");
        assert!(!store.contains(&digest));
        assert!(
            store
                .put(digest, chunks(&[b"hello ", b"world"]), 100)
                .await
                .unwrap()
        );
        assert_eq!(store.len(&digest), Some(11));
        assert_eq!(store.read(&digest).await.unwrap().unwrap(), b"hello world");
        assert!(
            !store
                .put(digest, chunks(&[b"anything"]), 100)
                .await
                .unwrap(),
            "a second upload is not written"
        );
        assert_eq!(store.put_bytes(b"hello world").await.unwrap(), digest);
        assert_eq!(leftovers(&store), 0);
    }

    #[tokio::test]
    async fn bad_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), "blobs").unwrap();
        let digest = ContentDigest::of(b"hello world");
        let wrong = store.put(digest, chunks(&[b"hello there"]), 100).await;
        assert!(
            matches!(wrong, Err(BlobError::Mismatch { .. })),
            "{wrong:?}"
        );
        let large = store.put(digest, chunks(&[b"hello ", b"world"]), 8).await;
        assert!(
            matches!(large, Err(BlobError::TooLarge { limit: 8 })),
            "{large:?}"
        );
        let broken = futures_util::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"hello")),
            Err("connection reset".to_string()),
        ]);
        let cut = store.put(digest, broken, 100).await;
        assert!(
            matches!(&cut, Err(BlobError::Incomplete { received: 5, .. })),
            "{cut:?}"
        );
        assert!(!store.contains(&digest));
        assert_eq!(leftovers(&store), 0);
    }

    /// A handler dropped mid-upload (its client went away) removes what it
    /// wrote at once, not at the next start.
    #[tokio::test]
    async fn an_upload_dropped_halfway_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), "blobs").unwrap();
        let digest = ContentDigest::of(b"hello world");
        let half =
            futures_util::stream::iter([Ok::<_, String>(bytes::Bytes::from_static(b"hello"))])
                .chain(futures_util::stream::pending());
        let upload = store.put(digest, half, 100);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(200), upload).await;
        assert!(waited.is_err(), "the body never ends");
        assert_eq!(leftovers(&store), 0);
        assert!(!store.contains(&digest));
    }

    #[test]
    fn uses_are_remembered_until_taken_and_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), "blobs").unwrap();
        let (a, b) = (ContentDigest::of(b"a"), ContentDigest::of(b"b"));
        store.touch_at(&a, 10);
        store.touch_at(&a, 5);
        store.clone().touch_at(&b, 7);
        let mut taken = store.take_touches();
        taken.sort();
        let mut expected = vec![(a, 10), (b, 7)];
        expected.sort();
        assert_eq!(taken, expected);
        assert!(store.take_touches().is_empty());
    }

    #[tokio::test]
    async fn a_restart_clears_interrupted_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), "blobs").unwrap();
        std::fs::write(store.dir().join("tmp").join("abc.123"), b"half").unwrap();
        let reopened = BlobStore::open(dir.path(), "blobs").unwrap();
        assert_eq!(leftovers(&reopened), 0);
    }
}
