//! The native worker's blobs: a job's files and large inputs, fetched from
//! the coordinator under the batch's capability (`GET /api/blobs/...` with
//! `Grid-Capability`), checked against their digest before any task sees
//! them, and kept:
//!
//! - in memory while tasks use them, one copy shared by every thread
//!   (up to [`MEMORY_BYTES`], the ones used last kept);
//! - with `--cache DIR`, on disk across restarts, under the donor's quota
//!   (`--cache-size`), least recently used first out
//!   ([`grid_protocol::cache::CacheIndex`] decides, this file carries out).
//!   A file read back from disk is checked again: a corrupt one is deleted,
//!   counted, and fetched anew.
//!
//! Threads that need the same blob wait for the first one to fetch it, so a
//! blob is fetched once per worker, not once per thread. Large inputs are
//! fetched the same way but neither cached nor kept.
//!
//! What the worker holds in memory and on disk is what it reports to the
//! coordinator; [`Blobs::version`] changes with it.
//!
//! The other way, [`Blobs::upload`] stores an output too large for a
//! results frame (`PUT /api/blobs/...` under the batch's capability).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::Bytes;
use grid_kernels::ContentDigest;
use grid_protocol::cache::CacheIndex;
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

/// Bytes of blobs kept in memory for the tasks that read them.
pub const MEMORY_BYTES: u64 = 2 << 30;

/// Where the worker keeps blobs, and how much.
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// The cache directory; `None` keeps blobs in memory only.
    pub dir: Option<PathBuf>,
    /// The most bytes the directory may hold.
    pub bytes: u64,
}

/// Counters the worker logs and tests read.
#[derive(Debug, Default)]
pub struct BlobCounters {
    /// Blobs fetched from the coordinator, and their bytes.
    pub fetched: AtomicU64,
    pub fetched_bytes: AtomicU64,
    /// Blobs found in the disk cache (each load from disk counts once).
    pub disk_hits: AtomicU64,
    /// Copies found corrupt (on disk, or as the coordinator sent them).
    pub corrupt: AtomicU64,
}

type Slot = Arc<std::sync::OnceLock<Result<Bytes, String>>>;

/// The worker's blobs.
pub(crate) struct Blobs {
    base: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    dir: Option<PathBuf>,
    index: Mutex<CacheIndex>,
    /// Blobs in memory (or being fetched), with the order they were used.
    memory: Mutex<Memory>,
    version: AtomicU64,
    pub(crate) counters: Arc<BlobCounters>,
}

#[derive(Default)]
struct Memory {
    slots: HashMap<ContentDigest, (Slot, u64, u64)>,
    bytes: u64,
    uses: u64,
}

impl Blobs {
    /// Opens the cache: lists what the directory holds (oldest use first,
    /// by modification time), evicting past the quota. Nothing is hashed
    /// here; each blob is checked when it is first read.
    pub(crate) fn open(
        options: &CacheOptions,
        base: String,
        http: reqwest::Client,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Blobs> {
        let mut index = CacheIndex::new(options.bytes);
        if let Some(dir) = &options.dir {
            std::fs::create_dir_all(dir.join("tmp"))
                .with_context(|| format!("cannot create the cache {}", dir.display()))?;
            for entry in std::fs::read_dir(dir.join("tmp"))?.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
            let mut found = Vec::new();
            for entry in std::fs::read_dir(dir)
                .with_context(|| format!("cannot read the cache {}", dir.display()))?
                .flatten()
            {
                let Ok(digest) = entry.file_name().to_string_lossy().parse::<ContentDigest>()
                else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_file() {
                    found.push((meta.modified().ok(), digest, meta.len()));
                }
            }
            found.sort_by_key(|&(time, digest, _)| (time, digest.0));
            for (_, digest, size) in found {
                for victim in index.restore(digest, size) {
                    let _ = std::fs::remove_file(dir.join(victim.to_string()));
                }
            }
            tracing::info!(dir = %dir.display(), blobs = index.len(), bytes = index.bytes(), "blob cache opened");
        }
        Ok(Blobs {
            base,
            http,
            runtime,
            dir: options.dir.clone(),
            index: Mutex::new(index),
            memory: Mutex::new(Memory::default()),
            version: AtomicU64::new(0),
            counters: Arc::new(BlobCounters::default()),
        })
    }

    /// Changes whenever what the cache holds changes.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// What the worker holds, used last first: the blobs in memory, then
    /// the rest of the disk cache.
    pub(crate) fn holdings(&self) -> Vec<ContentDigest> {
        let mut held: Vec<(u64, ContentDigest)> = self
            .memory
            .lock()
            .slots
            .iter()
            .filter(|(_, (slot, _, _))| matches!(slot.get(), Some(Ok(_))))
            .map(|(digest, (_, _, used))| (*used, *digest))
            .collect();
        held.sort_unstable_by_key(|&(used, d)| (std::cmp::Reverse(used), d.0));
        let mut holdings: Vec<ContentDigest> = held.into_iter().map(|(_, d)| d).collect();
        for (digest, _) in self.index.lock().holdings() {
            if !holdings.contains(&digest) {
                holdings.push(digest);
            }
        }
        holdings
    }

    /// Blob `digest` of `size` bytes, checked, from memory, the disk cache
    /// or the coordinator (with `capability`). Blocking: call it from a
    /// compute thread.
    pub(crate) fn get(
        &self,
        digest: &ContentDigest,
        size: u64,
        capability: Option<&str>,
    ) -> Result<Bytes, String> {
        let slot = {
            let mut memory = self.memory.lock();
            memory.uses += 1;
            let uses = memory.uses;
            match memory.slots.get_mut(digest) {
                Some((slot, _, used)) => {
                    *used = uses;
                    slot.clone()
                }
                None => {
                    let slot = Slot::default();
                    memory.slots.insert(*digest, (slot.clone(), size, uses));
                    memory.bytes += size;
                    memory.trim(digest);
                    slot
                }
            }
        };
        let mut loaded = false;
        let result = slot
            .get_or_init(|| {
                loaded = true;
                self.load(digest, size, capability)
            })
            .clone();
        if loaded && result.is_ok() {
            // Held in memory now: worth reporting even without a disk cache.
            self.version.fetch_add(1, Ordering::Relaxed);
        }
        if result.is_err() {
            // Not remembered: the next task (perhaps under a fresher
            // capability) tries again.
            let mut memory = self.memory.lock();
            if memory
                .slots
                .get(digest)
                .is_some_and(|(s, _, _)| Arc::ptr_eq(s, &slot))
                && let Some((_, size, _)) = memory.slots.remove(digest)
            {
                memory.bytes -= size;
            }
        } else {
            self.index.lock().touch(digest);
        }
        result
    }

    /// A large input: fetched and checked, not kept.
    pub(crate) fn get_uncached(
        &self,
        digest: &ContentDigest,
        size: u64,
        capability: Option<&str>,
    ) -> Result<Bytes, String> {
        self.fetch(digest, size, capability)
    }

    fn load(
        &self,
        digest: &ContentDigest,
        size: u64,
        capability: Option<&str>,
    ) -> Result<Bytes, String> {
        if let Some(bytes) = self.read_cached(digest) {
            return Ok(bytes);
        }
        let bytes = self.fetch(digest, size, capability)?;
        self.keep(digest, &bytes);
        Ok(bytes)
    }

    /// The blob from the disk cache, if it is there and intact.
    fn read_cached(&self, digest: &ContentDigest) -> Option<Bytes> {
        let dir = self.dir.as_ref()?;
        if !self.index.lock().contains(digest) {
            return None;
        }
        let path = dir.join(digest.to_string());
        match std::fs::read(&path) {
            Ok(bytes) if ContentDigest(Sha256::digest(&bytes).into()) == *digest => {
                self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                Some(Bytes::from(bytes))
            }
            other => {
                if other.is_ok() {
                    self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%digest, "a cached blob was corrupt; fetching it again");
                }
                let _ = std::fs::remove_file(&path);
                self.index.lock().remove(digest);
                self.version.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Writes a checked blob into the disk cache, making room first.
    fn keep(&self, digest: &ContentDigest, bytes: &Bytes) {
        let Some(dir) = &self.dir else { return };
        let evicted = match self.index.lock().admit(*digest, bytes.len() as u64) {
            Ok(evicted) => evicted,
            Err(error) => {
                tracing::info!(%digest, %error, "not cached");
                return;
            }
        };
        for victim in evicted {
            let _ = std::fs::remove_file(dir.join(victim.to_string()));
        }
        if let Err(error) = write_atomically(dir, digest, bytes) {
            tracing::warn!(%digest, %error, "cannot cache a blob");
            self.index.lock().remove(digest);
        }
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    fn fetch(
        &self,
        digest: &ContentDigest,
        size: u64,
        capability: Option<&str>,
    ) -> Result<Bytes, String> {
        let bytes = self
            .runtime
            .block_on(self.download(digest, size, capability))
            .map_err(|e| format!("cannot fetch {digest}: {e:#}"))?;
        self.counters.fetched.fetch_add(1, Ordering::Relaxed);
        self.counters
            .fetched_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if ContentDigest(Sha256::digest(&bytes).into()) != *digest {
            self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "the coordinator sent bytes that are not {digest}; the task cannot run on them"
            ));
        }
        Ok(bytes)
    }

    /// Stores `bytes` (a task's output) as blob `digest` under
    /// `capability`; an error says what the coordinator answered.
    pub(crate) fn upload(
        &self,
        digest: &ContentDigest,
        bytes: Vec<u8>,
        capability: &str,
    ) -> Result<(), String> {
        let url = format!("{}/api/blobs/{digest}", self.base);
        let request = self
            .http
            .put(&url)
            .header("Grid-Capability", capability)
            .body(bytes);
        self.runtime
            .block_on(async {
                let response = request.send().await?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let text = response.text().await.unwrap_or_default();
                anyhow::bail!("{status}: {}", text.trim())
            })
            .map_err(|e| format!("cannot store the output as {digest}: {e:#}"))
    }

    async fn download(
        &self,
        digest: &ContentDigest,
        size: u64,
        capability: Option<&str>,
    ) -> anyhow::Result<Bytes> {
        let url = format!("{}/api/blobs/{digest}", self.base);
        let mut request = self.http.get(&url);
        if let Some(capability) = capability {
            request = request.header("Grid-Capability", capability);
        }
        let mut response = request.send().await?.error_for_status()?;
        let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(chunk) = response.chunk().await? {
            anyhow::ensure!(
                body.len() as u64 + chunk.len() as u64 <= size,
                "the coordinator sent more than the {size} bytes announced"
            );
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }
}

impl Memory {
    /// Drops the blobs used longest ago (never `keep`) past [`MEMORY_BYTES`];
    /// tasks running on them keep their own reference.
    fn trim(&mut self, keep: &ContentDigest) {
        while self.bytes > MEMORY_BYTES {
            let Some(oldest) = self
                .slots
                .iter()
                .filter(|(d, _)| *d != keep)
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(d, _)| *d)
            else {
                return;
            };
            if let Some((_, size, _)) = self.slots.remove(&oldest) {
                self.bytes -= size;
            }
        }
    }
}

/// Writes `bytes` as `dir/<digest>`: to `dir/tmp` first, fsynced, then
/// renamed, so the cache never holds a partial blob under its name.
fn write_atomically(dir: &Path, digest: &ContentDigest, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary =
        dir.join("tmp")
            .join(format!("{}.{:016x}", digest.hex(), rand::random::<u64>()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(digest.to_string()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
