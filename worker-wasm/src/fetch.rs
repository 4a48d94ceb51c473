//! Getting bytes from the coordinator and checking them against their
//! digest, in any browser global (the page, a session's Web Worker): used
//! by the page's blob cache ([`crate::blob_cache`]) for jobs' files, by a
//! session for a task's large input ([`grid_protocol::TaskInput::Blob`])
//! and for prepared modules ([`crate::user_kernel`]).
//!
//! Hashing prefers `crypto.subtle.digest("SHA-256", ...)`: native code,
//! and off the calling thread (64 MiB in about a tenth of a second). It
//! exists only in secure contexts (https, or http from localhost and
//! 127.0.0.1); a page served over plain http from a LAN address hashes
//! with the `sha2` crate here instead, a MiB at a time.
//!
//! Blobs: `GET {base}/api/blobs/sha256:<hex>` with the header
//! `Grid-Capability` (the batch's); the coordinator answers 404 for a
//! blob it does not have or a capability that is wrong or expired.
//! [`fetch_checked`] fetches once more if the bytes do not match; a second
//! mismatch is the coordinator's fault, and the error names the digest:
//! no task ever runs on unchecked bytes. Blobs bypass the browser's HTTP
//! cache (`cache: "no-store"`), though the coordinator marks them
//! immutable: the tab's own cache keeps them, under the donor's quota, and
//! a second copy in the HTTP cache would take the space twice, answer a
//! fetch meant to replace wrong bytes with the same wrong bytes, and ignore
//! the capability (the HTTP cache does not key on it). Modules may come
//! from the HTTP cache, except when their bytes were wrong.

use grid_kernels::ContentDigest;
use js_sys::{ArrayBuffer, Promise, Reflect, Uint8Array};
use sha2::{Digest as _, Sha256};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::user_kernel::describe;

/// How long one fetch may take, as the native worker allows.
pub const FETCH_TIMEOUT_MS: u32 = 300_000;
/// The header that carries a batch's capability.
pub const CAPABILITY_HEADER: &str = "Grid-Capability";
/// What the Rust hash copies out of the JavaScript buffer at a time.
const HASH_CHUNK: u32 = 1 << 20;

#[wasm_bindgen]
extern "C" {
    /// The global `fetch`, of a window or a worker alike.
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(input: &str, init: &web_sys::RequestInit) -> Promise;
}

/// A hash taken, and how long it took (milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Hashed {
    pub digest: ContentDigest,
    pub ms: f64,
}

/// `crypto.subtle`, where this global has it (secure contexts only).
fn subtle() -> Option<web_sys::SubtleCrypto> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
    let subtle = Reflect::get(&crypto, &"subtle".into()).ok()?;
    subtle.dyn_into().ok()
}

/// Whether hashing here is the browser's own (`crypto.subtle`).
pub fn has_subtle_crypto() -> bool {
    subtle().is_some()
}

/// The SHA-256 of `buffer`'s bytes.
pub async fn sha256(buffer: &ArrayBuffer) -> Result<Hashed, String> {
    let started = crate::web::now();
    let digest = match subtle() {
        Some(subtle) => {
            let promise = subtle
                .digest_with_str_and_buffer_source("SHA-256", buffer)
                .map_err(|e| format!("cannot hash: {}", describe(&e)))?;
            let hash = JsFuture::from(promise)
                .await
                .map_err(|e| format!("cannot hash: {}", describe(&e)))?;
            let mut out = [0u8; 32];
            Uint8Array::new(&hash).copy_to(&mut out);
            ContentDigest(out)
        }
        None => {
            let bytes = Uint8Array::new(buffer);
            let mut hash = Sha256::new();
            let mut chunk = vec![0u8; HASH_CHUNK as usize];
            let mut at = 0;
            while at < bytes.length() {
                let end = (at + HASH_CHUNK).min(bytes.length());
                let part = &mut chunk[..(end - at) as usize];
                bytes.subarray(at, end).copy_to(part);
                hash.update(&*part);
                at = end;
            }
            ContentDigest(hash.finalize().into())
        }
    };
    Ok(Hashed {
        digest,
        ms: crate::web::now() - started,
    })
}

/// `GET url` (with the capability, if any) in `mode` of the browser's
/// HTTP cache: an OK response, or why not.
pub async fn get_response(
    url: &str,
    capability: Option<&str>,
    mode: web_sys::RequestCache,
) -> Result<web_sys::Response, String> {
    let fail = |e: JsValue| format!("cannot fetch {url}: {}", describe(&e));
    let init = web_sys::RequestInit::new();
    init.set_cache(mode);
    init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(
        FETCH_TIMEOUT_MS,
    )));
    if let Some(capability) = capability {
        let headers = web_sys::Headers::new().map_err(fail)?;
        headers
            .append(CAPABILITY_HEADER, capability)
            .map_err(fail)?;
        init.set_headers_headers(&headers);
    }
    let response: web_sys::Response = JsFuture::from(global_fetch(url, &init))
        .await
        .map_err(fail)?
        .unchecked_into();
    if !response.ok() {
        return Err(match response.status() {
            404 if capability.is_some() => format!(
                "cannot fetch {url}: HTTP 404 (the coordinator has no such blob for this batch, \
                 or the batch's capability expired)"
            ),
            status => format!("cannot fetch {url}: HTTP {status}"),
        });
    }
    Ok(response)
}

/// Stores `bytes` (a task's output too large for a results frame) as blob
/// `digest` at the coordinator `base`, under the batch's `capability`:
/// `PUT {base}/api/blobs/sha256:<hex>`. An error says what it answered.
pub async fn put_blob(
    base: &str,
    digest: &ContentDigest,
    bytes: &[u8],
    capability: &str,
) -> Result<(), String> {
    let url = format!("{base}/api/blobs/{digest}");
    let fail = |e: JsValue| format!("cannot store the output as {digest}: {}", describe(&e));
    let init = web_sys::RequestInit::new();
    init.set_method("PUT");
    init.set_cache(web_sys::RequestCache::NoStore);
    init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(
        FETCH_TIMEOUT_MS,
    )));
    let headers = web_sys::Headers::new().map_err(fail)?;
    headers
        .append(CAPABILITY_HEADER, capability)
        .map_err(fail)?;
    init.set_headers_headers(&headers);
    init.set_body(&Uint8Array::from(bytes));
    let response: web_sys::Response = JsFuture::from(global_fetch(&url, &init))
        .await
        .map_err(fail)?
        .unchecked_into();
    if response.ok() {
        return Ok(());
    }
    let text = match response.text() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    Err(format!(
        "cannot store the output as {digest}: HTTP {} {}",
        response.status(),
        text.trim()
    ))
}

/// A response's body as bytes.
pub async fn body(response: &web_sys::Response) -> Result<ArrayBuffer, String> {
    let fail = |e: JsValue| format!("cannot read {}: {}", response.url(), describe(&e));
    let buffer = JsFuture::from(response.array_buffer().map_err(fail)?)
        .await
        .map_err(fail)?;
    Ok(buffer.unchecked_into())
}

/// A blob's bytes from the network, past the HTTP cache; an error says
/// why not.
pub async fn get_blob(url: &str, capability: Option<&str>) -> Result<ArrayBuffer, String> {
    body(&get_response(url, capability, web_sys::RequestCache::NoStore).await?).await
}

/// One fetch of a blob: how many bytes came, and what they hashed to.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub bytes: u64,
    pub hashed: Hashed,
}

/// Blob `digest` from the coordinator at `base` (`http://host:port`),
/// checked: fetched again once if the bytes do not match; after that, an
/// error that names the digest. Also answers each fetch made, for the
/// caller's figures.
pub async fn fetch_checked(
    base: &str,
    digest: &ContentDigest,
    capability: Option<&str>,
) -> (Result<ArrayBuffer, String>, Vec<Attempt>) {
    let url = format!("{base}/api/blobs/{digest}");
    let mut attempts = Vec::new();
    for _ in 0..2 {
        let buffer = match get_blob(&url, capability).await {
            Ok(buffer) => buffer,
            Err(error) => return (Err(error), attempts),
        };
        let hashed = match sha256(&buffer).await {
            Ok(hashed) => hashed,
            Err(error) => return (Err(error), attempts),
        };
        attempts.push(Attempt {
            bytes: u64::from(buffer.byte_length()),
            hashed,
        });
        if hashed.digest == *digest {
            return (Ok(buffer), attempts);
        }
        web_sys::console::warn_1(
            &format!(
                "the coordinator sent bytes for {digest} that hash to {}; fetching it again",
                hashed.digest
            )
            .into(),
        );
    }
    let got: Vec<String> = attempts
        .iter()
        .map(|a| a.hashed.digest.to_string())
        .collect();
    let error = format!(
        "the coordinator sent other bytes for {digest} twice ({}); no task runs on them",
        got.join(", then ")
    );
    (Err(error), attempts)
}
