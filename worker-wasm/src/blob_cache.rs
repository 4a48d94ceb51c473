//! The tab's blob cache, on the donor page's main thread: jobs' files
//! (`WasmParams::files`), fetched from the coordinator once per tab,
//! checked against their digest, kept in the origin private file system
//! (OPFS) across page loads under the donor's quota, and handed to the
//! tab's Web Workers as `Blob`s. `www/donor.js` calls the exported
//! functions below; the bookkeeping is [`Ledger`] (tested natively).
//!
//! **One owner per tab.** The page, not the workers, owns the cache: a
//! worker asks it for a file (`fetch_blob`, see [`crate::page`]), and two
//! workers that ask for the same blob at once share one fetch (one promise
//! per blob in flight). Across tabs of the origin, which share the OPFS
//! directory, the read-or-fetch of a blob runs under a Web Lock named for
//! it, so a second tab waits for the first one's copy and reads it instead
//! of fetching it again (and never overwrites a file another tab has
//! handed out).
//!
//! **Checked before use.** A fetched blob is hashed before anything else
//! (fetched once more if wrong, then refused: see [`crate::fetch`]); a
//! copy found on disk at page load is hashed on its first use in this page
//! load, and a copy that does not match is deleted, counted and fetched
//! again. What the workers get is a `Blob` whose bytes were checked: the
//! OPFS `File` snapshot that was read and hashed (or written from checked
//! bytes); such a snapshot cannot be read once the file changes, so it
//! never yields other bytes.
//!
//! **Where the bytes live.** OPFS directory `browsergrid-blobs`, one file
//! per blob named by its 64 hex digits, written whole (`createWritable`
//! swaps the file in on close, so a reader never sees half of one). The
//! last use of each is in `localStorage["browsergrid.blobs.used"]`. OPFS,
//! Web Locks and `crypto.subtle` exist only in secure contexts (https, or
//! http from localhost or 127.0.0.1): a page served over plain http from a
//! LAN address keeps checked blobs in memory, for the page's life only,
//! under the same quota, and says so ([`CacheView::why_not`]). So does a
//! browser without OPFS writes, and `?cache=memory`.
//!
//! The clear button also empties the Cache API's `browsergrid-modules`
//! (prepared modules, see [`crate::user_kernel`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use grid_kernels::ContentDigest;
use js_sys::{ArrayBuffer, Function, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};
use web_sys::{Blob, File, FileSystemDirectoryHandle, FileSystemFileHandle};

use crate::fetch::{self, Attempt};
use crate::ledger::{CacheView, Ledger, Lookup, parse_uses};
use crate::user_kernel::{MODULE_CACHE, describe};

/// The OPFS directory of the blobs.
pub const DIRECTORY: &str = "browsergrid-blobs";
/// Where the last uses are kept.
const USES_KEY: &str = "browsergrid.blobs.used";

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (web-sys has it only behind its unstable flag).
    type LockManager;
    #[wasm_bindgen(method)]
    fn request(this: &LockManager, name: &str, callback: &Function) -> Promise;
}

/// Where checked blobs are kept.
enum Store {
    Disk {
        dir: FileSystemDirectoryHandle,
        locks: Option<LockManager>,
    },
    /// In memory, for the page's life.
    Memory { why: String },
}

struct Cache {
    ledger: RefCell<Ledger>,
    store: Store,
    /// Checked blobs' handles: OPFS snapshots, or in-memory `Blob`s.
    handles: RefCell<HashMap<ContentDigest, Blob>>,
    /// One load per blob in flight, shared by whoever asks meanwhile.
    pending: RefCell<HashMap<ContentDigest, Promise>>,
    /// `location.origin`: the coordinator.
    base: String,
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Cache>>> = const { RefCell::new(None) };
}

fn cache() -> Result<Rc<Cache>, JsValue> {
    CACHE
        .with(|c| c.borrow().clone())
        .ok_or_else(|| JsError::new("the blob cache is not open").into())
}

fn window() -> web_sys::Window {
    web_sys::window().expect("the blob cache runs on the page")
}

fn epoch_ms() -> f64 {
    js_sys::Date::now()
}

fn error(context: &str, e: &JsValue) -> String {
    format!("{context}: {}", describe(e))
}

async fn wait(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

/// The quota when the donor has set none: 1 GiB.
#[wasm_bindgen]
pub fn default_cache_quota() -> f64 {
    grid_protocol::cache::DEFAULT_QUOTA_BYTES as f64
}

/// Opens the tab's cache with `quota` bytes: lists what OPFS holds (or
/// starts empty in memory, if OPFS cannot be had or `memory_only`).
#[wasm_bindgen]
pub async fn open_blob_cache(quota: f64, memory_only: bool) -> Result<(), JsValue> {
    console_error_panic_hook::set_once();
    let quota = quota.max(0.0) as u64;
    let store = if memory_only {
        Store::Memory {
            why: "this page was opened with ?cache=memory".into(),
        }
    } else {
        match open_directory().await {
            Ok(store) => store,
            Err(why) => Store::Memory { why },
        }
    };
    let (ledger, evicted) = match &store {
        Store::Disk { dir, .. } => {
            let found = list(dir).await.map_err(|e| JsError::new(&e))?;
            let uses = window()
                .local_storage()
                .ok()
                .flatten()
                .and_then(|s| s.get_item(USES_KEY).ok().flatten())
                .map(|json| parse_uses(&json))
                .unwrap_or_default();
            Ledger::restore(quota, &found, uses)
        }
        Store::Memory { .. } => (Ledger::new(quota), Vec::new()),
    };
    let cache = Rc::new(Cache {
        ledger: RefCell::new(ledger),
        store,
        handles: RefCell::new(HashMap::new()),
        pending: RefCell::new(HashMap::new()),
        base: window().location().origin().unwrap_or_default(),
    });
    cache.delete(&evicted).await;
    cache.save_uses();
    CACHE.with(|c| *c.borrow_mut() = Some(cache));
    Ok(())
}

/// OPFS's `browsergrid-blobs`, if this page may keep files; else why not.
async fn open_directory() -> Result<Store, String> {
    let window = window();
    if !window.is_secure_context() {
        return Err(format!(
            "this page is not a secure context (plain http from {}): browsers keep no files \
             for it, so blobs are kept in memory while the page is open; serve it over https, \
             or open it as http://localhost, to keep them",
            window.location().host().unwrap_or_default()
        ));
    }
    let navigator = window.navigator();
    let has = |object: &JsValue, name: &str| Reflect::has(object, &name.into()).unwrap_or(false);
    let storage = Reflect::get(&navigator, &"storage".into()).unwrap_or(JsValue::UNDEFINED);
    let writable = Reflect::get(&js_sys::global(), &"FileSystemFileHandle".into())
        .and_then(|class| Reflect::get(&class, &"prototype".into()))
        .is_ok_and(|proto| has(&proto, "createWritable"));
    if storage.is_undefined() || !has(&storage, "getDirectory") || !writable {
        return Err(
            "this browser cannot write files to the origin private file system, so blobs are \
             kept in memory while the page is open"
                .into(),
        );
    }
    let storage: web_sys::StorageManager = storage.unchecked_into();
    let root: FileSystemDirectoryHandle = wait(storage.get_directory())
        .await
        .map_err(|e| error("the browser refused its file system", &e))?
        .unchecked_into();
    let options = web_sys::FileSystemGetDirectoryOptions::new();
    options.set_create(true);
    let dir = wait(root.get_directory_handle_with_options(DIRECTORY, &options))
        .await
        .map_err(|e| error("cannot open the cache's folder", &e))?
        .unchecked_into();
    let locks = Reflect::get(&navigator, &"locks".into())
        .ok()
        .filter(|l| !l.is_undefined())
        .map(JsCast::unchecked_into);
    Ok(Store::Disk { dir, locks })
}

/// The blobs in the folder, with their sizes (other entries are left alone:
/// a file being written by another tab, say).
async fn list(dir: &FileSystemDirectoryHandle) -> Result<Vec<(ContentDigest, u64)>, String> {
    let entries = dir.values();
    let mut found = Vec::new();
    loop {
        let next = entries
            .next()
            .map_err(|e| error("cannot list the cache", &e))?;
        let step = wait(next)
            .await
            .map_err(|e| error("cannot list the cache", &e))?;
        if Reflect::get(&step, &"done".into()).is_ok_and(|d| d.is_truthy()) {
            break;
        }
        let handle = Reflect::get(&step, &"value".into()).unwrap_or(JsValue::UNDEFINED);
        let name = Reflect::get(&handle, &"name".into())
            .ok()
            .and_then(|n| n.as_string());
        let is_file = Reflect::get(&handle, &"kind".into())
            .ok()
            .and_then(|k| k.as_string())
            .as_deref()
            == Some("file");
        let Some(digest) = name.as_deref().and_then(ContentDigest::from_hex) else {
            continue;
        };
        if !is_file {
            continue;
        }
        let handle: FileSystemFileHandle = handle.unchecked_into();
        if let Ok(file) = wait(handle.get_file()).await {
            found.push((digest, file.unchecked_into::<File>().size() as u64));
        }
    }
    Ok(found)
}

/// The checked `Blob` of `blob` (`sha256:<hex>`, `size` bytes), from the
/// cache or fetched with the batch's `capability`. Asking again while it
/// loads shares the load.
#[wasm_bindgen]
pub fn cache_blob(blob: &str, size: f64, capability: Option<String>) -> Promise {
    let cache = match cache() {
        Ok(cache) => cache,
        Err(e) => return Promise::reject(&e),
    };
    let digest = match blob.parse::<ContentDigest>() {
        Ok(digest) => digest,
        Err(e) => return Promise::reject(&JsError::new(&e.to_string()).into()),
    };
    if let Some(shared) = cache.pending.borrow().get(&digest) {
        return shared.clone();
    }
    let load = {
        let cache = cache.clone();
        future_to_promise(async move {
            let answer = cache.load(digest, size as u64, capability).await;
            cache.pending.borrow_mut().remove(&digest);
            cache.save_uses();
            answer
                .map(JsValue::from)
                .map_err(|e| JsError::new(&e).into())
        })
    };
    cache.pending.borrow_mut().insert(digest, load.clone());
    load
}

/// What the tab holds, used last first (`sha256:<hex>` each): what its
/// workers report to the coordinator.
#[wasm_bindgen]
pub fn blob_cache_holdings() -> Vec<String> {
    cache().map_or_else(
        |_| Vec::new(),
        |c| {
            c.ledger
                .borrow()
                .holdings()
                .iter()
                .map(ToString::to_string)
                .collect()
        },
    )
}

/// What the page shows, as JSON ([`CacheView`]).
#[wasm_bindgen]
pub fn blob_cache_view() -> String {
    let view = cache().map_or_else(
        |_| Ledger::new(0).view(false, Some("the cache is not open".into())),
        |c| c.view(),
    );
    serde_json::to_string(&view).expect("plain data")
}

/// A new quota: the blobs used longest ago go until the rest fits.
#[wasm_bindgen]
pub async fn set_blob_cache_quota(quota: f64) -> Result<(), JsValue> {
    let cache = cache()?;
    let evicted = cache.ledger.borrow_mut().set_quota(quota.max(0.0) as u64);
    cache.delete(&evicted).await;
    cache.save_uses();
    Ok(())
}

/// Empties the cache (the donor's button): every blob, and the prepared
/// modules the workers keep in the Cache API.
#[wasm_bindgen]
pub async fn clear_blob_cache() -> Result<(), JsValue> {
    let cache = cache()?;
    let held = cache.ledger.borrow_mut().clear();
    cache.delete(&held).await;
    cache.save_uses();
    if let Ok(caches) = Reflect::get(&js_sys::global(), &"caches".into())
        && !caches.is_undefined()
    {
        let caches: web_sys::CacheStorage = caches.unchecked_into();
        let _ = wait(caches.delete(MODULE_CACHE)).await;
    }
    Ok(())
}

impl Cache {
    fn view(&self) -> CacheView {
        let why = match &self.store {
            Store::Disk { .. } => None,
            Store::Memory { why } => Some(why.clone()),
        };
        self.ledger.borrow().view(why.is_none(), why)
    }

    fn save_uses(&self) {
        if let Store::Disk { .. } = self.store
            && let Ok(Some(storage)) = window().local_storage()
        {
            let _ = storage.set_item(USES_KEY, &self.ledger.borrow().uses_json());
        }
    }

    /// Drops blobs from the store (evicted, cleared, corrupt).
    async fn delete(&self, gone: &[ContentDigest]) {
        for digest in gone {
            self.handles.borrow_mut().remove(digest);
            if let Store::Disk { dir, .. } = &self.store {
                // Already gone (another tab) is fine.
                let _ = wait(dir.remove_entry(&digest.hex())).await;
            }
        }
    }

    async fn load(
        &self,
        digest: ContentDigest,
        size: u64,
        capability: Option<String>,
    ) -> Result<Blob, String> {
        let lookup = self.ledger.borrow_mut().lookup(&digest, epoch_ms());
        match lookup {
            Lookup::Refused(reason) => return Err(reason),
            Lookup::Checked => {
                if let Some(handle) = self.handles.borrow().get(&digest).cloned() {
                    self.ledger.borrow_mut().hit(&digest, epoch_ms());
                    return Ok(handle);
                }
            }
            Lookup::Unchecked | Lookup::Missing => {}
        }
        match &self.store {
            Store::Disk {
                locks: Some(locks), ..
            } => {
                let name = format!("browsergrid-blob-{}", digest.hex());
                let lock = Lock::acquire(locks, &name).await?;
                let answer = self.read_or_fetch(digest, size, capability).await;
                lock.release();
                answer
            }
            _ => self.read_or_fetch(digest, size, capability).await,
        }
    }

    /// The disk's copy if it is right (another tab may have written it
    /// since this page listed the folder), else the coordinator's.
    async fn read_or_fetch(
        &self,
        digest: ContentDigest,
        size: u64,
        capability: Option<String>,
    ) -> Result<Blob, String> {
        if let Store::Disk { dir, .. } = &self.store {
            match self.read_back(dir, &digest).await {
                Ok(Some(file)) => return Ok(file),
                Ok(None) => {}
                Err(problem) => web_sys::console::warn_1(&problem.into()),
            }
        }
        self.fetch(digest, size, capability).await
    }

    /// The copy on disk, checked; `None` if there is none or it was wrong
    /// (then it is deleted and counted).
    async fn read_back(
        &self,
        dir: &FileSystemDirectoryHandle,
        digest: &ContentDigest,
    ) -> Result<Option<Blob>, String> {
        let Ok(handle) = wait(dir.get_file_handle(&digest.hex())).await else {
            self.ledger.borrow_mut().forget(digest);
            return Ok(None);
        };
        let handle: FileSystemFileHandle = handle.unchecked_into();
        let file: File = wait(handle.get_file())
            .await
            .map_err(|e| error(&format!("cannot open the cached {digest}"), &e))?
            .unchecked_into();
        let buffer: ArrayBuffer = wait(file.array_buffer())
            .await
            .map_err(|e| error(&format!("cannot read the cached {digest}"), &e))?
            .unchecked_into();
        let hashed = fetch::sha256(&buffer).await?;
        let right = hashed.digest == *digest;
        let evicted = {
            let mut ledger = self.ledger.borrow_mut();
            ledger.hashed(u64::from(buffer.byte_length()), hashed.ms);
            if !right {
                ledger.corrupt_on_disk(digest);
                Ok(vec![*digest])
            } else if ledger.contains(digest) {
                ledger.checked_on_disk(digest, epoch_ms());
                Ok(Vec::new())
            } else {
                // Written by another tab since this one listed the folder.
                ledger.admit(*digest, file.size() as u64, epoch_ms())
            }
        };
        if !right {
            web_sys::console::warn_1(
                &format!(
                    "the cached copy of {digest} is corrupt (it hashes to {}): deleted, \
                     fetching it again",
                    hashed.digest
                )
                .into(),
            );
        }
        let held = evicted.is_ok();
        self.delete(&evicted.unwrap_or_default()).await;
        if !right {
            return Ok(None);
        }
        let blob: Blob = file.into();
        if held {
            self.handles.borrow_mut().insert(*digest, blob.clone());
        }
        Ok(Some(blob))
    }

    /// Fetches and checks the blob, stores it and makes room for it.
    async fn fetch(
        &self,
        digest: ContentDigest,
        size: u64,
        capability: Option<String>,
    ) -> Result<Blob, String> {
        let (fetched, attempts) =
            fetch::fetch_checked(&self.base, &digest, capability.as_deref()).await;
        {
            let mut ledger = self.ledger.borrow_mut();
            for Attempt { bytes, hashed } in &attempts {
                ledger.fetched(*bytes);
                ledger.hashed(*bytes, hashed.ms);
                if hashed.digest != digest {
                    ledger.corrupt_from_network();
                }
            }
        }
        let buffer = match fetched {
            Ok(buffer) => buffer,
            Err(reason) => {
                if attempts.len() == 2 {
                    self.ledger
                        .borrow_mut()
                        .refuse(digest, reason.clone(), epoch_ms());
                }
                return Err(reason);
            }
        };
        if u64::from(buffer.byte_length()) != size {
            web_sys::console::warn_1(
                &format!(
                    "{digest} is {} bytes, not the {size} its job says",
                    buffer.byte_length()
                )
                .into(),
            );
        }
        let in_memory = || {
            Blob::new_with_buffer_source_sequence(&js_sys::Array::of1(&buffer))
                .map_err(|e| error("cannot keep the blob", &e))
        };
        let size = u64::from(buffer.byte_length());
        let fits = size <= self.ledger.borrow().quota();
        // Whether the blob is kept, and the handle to give out.
        let (kept, handle): (bool, Blob) = match &self.store {
            // Larger than the quota: used this once, never written.
            _ if !fits => (false, in_memory()?),
            Store::Disk { dir, .. } => match write(dir, &digest, &buffer).await {
                Ok(file) => (true, file.into()),
                Err(problem) => {
                    web_sys::console::warn_1(&problem.into());
                    (false, in_memory()?)
                }
            },
            Store::Memory { .. } => (true, in_memory()?),
        };
        if kept {
            let admitted = self.ledger.borrow_mut().admit(digest, size, epoch_ms());
            match admitted {
                Ok(evicted) => {
                    self.delete(&evicted).await;
                    self.handles.borrow_mut().insert(digest, handle.clone());
                }
                Err(_) => self.delete(&[digest]).await,
            }
        }
        Ok(handle)
    }
}

/// Writes a checked blob whole, and answers the snapshot of it.
async fn write(
    dir: &FileSystemDirectoryHandle,
    digest: &ContentDigest,
    buffer: &ArrayBuffer,
) -> Result<File, String> {
    let fail = |e: JsValue| error(&format!("cannot store {digest} in the cache"), &e);
    let options = web_sys::FileSystemGetFileOptions::new();
    options.set_create(true);
    let handle: FileSystemFileHandle =
        wait(dir.get_file_handle_with_options(&digest.hex(), &options))
            .await
            .map_err(fail)?
            .unchecked_into();
    let writable: web_sys::FileSystemWritableFileStream = wait(handle.create_writable())
        .await
        .map_err(fail)?
        .unchecked_into();
    let written = match writable.write_with_buffer_source(buffer) {
        Ok(promise) => wait(promise).await.map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        let _ = wait(writable.abort()).await;
        let _ = wait(dir.remove_entry(&digest.hex())).await;
        return Err(fail(e));
    }
    wait(writable.close()).await.map_err(fail)?;
    Ok(wait(handle.get_file())
        .await
        .map_err(fail)?
        .unchecked_into())
}

/// A held Web Lock: released by [`Lock::release`] (or when the page goes).
struct Lock {
    release: Function,
}

impl Lock {
    async fn acquire(locks: &LockManager, name: &str) -> Result<Lock, String> {
        let mut release = None;
        let held = Promise::new(&mut |resolve, _| release = Some(resolve));
        let mut granted = None;
        let acquired = Promise::new(&mut |resolve, _| granted = Some(resolve));
        let (release, granted) = release.zip(granted).expect("executors run at once");
        let callback = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
            let _ = granted.call0(&JsValue::UNDEFINED);
            // The lock is held until this settles.
            held.into()
        });
        // Granted, `requested` settles only after the release; refused, it
        // rejects at once, which ends the race.
        let requested = locks.request(name, callback.unchecked_ref());
        wait(Promise::race(&js_sys::Array::of2(&acquired, &requested)))
            .await
            .map_err(|e| error("cannot take the cache's lock", &e))?;
        Ok(Lock { release })
    }

    fn release(self) {
        let _ = self.release.call0(&JsValue::UNDEFINED);
    }
}
